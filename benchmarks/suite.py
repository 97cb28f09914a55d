"""Evaluate several agents on several envs over several seeds, and turn that into scores.

Each (agent, env, seed) is one call of :func:`agents.evaluation.evaluate` (the env
family's evaluator, on the test split). The chosen metric of every call fills one
``(runs, tasks=envs)`` array per agent, which :mod:`benchmarks.aggregate` summarises.
The runs of an agent are its evaluation seeds, times its training runs when several
run dirs share one label on an env (``ppo=runs/ppo/X_1 ppo=runs/ppo/X_2``): a trained
policy is usually deterministic, so most of its spread comes from training seeds, which
only independent run dirs show. Across several envs, scores are first normalised per env so that the
random agent scores 0 and the best agent (highest mean over runs) scores 1: raw
rewards of different envs have unrelated scales, and rliable's aggregates assume
comparable tasks.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import envs
from benchmarks.agent_spec import AgentKind, AgentSpec, build_agent
from agents.evaluation import Agent, evaluate
from train.config import UsageError
from train.runner import build_wrapper

__all__ = [
    "AgentRun", "Normalisation", "check_env_ids", "expand_env_ids", "fixed_normalisation", "kwargs_mismatches", "normalisation", "plan_runs", "play_runs",
    "raw_scores",
]


@dataclass
class AgentRun:
    """One agent on one env: where it runs and what each seed's evaluation returned."""

    label: str
    env_id: str
    spec: AgentSpec
    env_kwargs: dict[str, Any]
    env_wrapper: tuple[str, ...]
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Seed -> the evaluator's dict."""


@dataclass(frozen=True)
class Normalisation:
    """Per-env reference scores: ``(score - low) / (high - low)``."""

    low: np.ndarray
    """(envs,) mean over runs of the random agent."""
    high: np.ndarray
    """(envs,) highest mean over runs of any agent."""
    best: list[str]
    """(envs,) label of the agent that set ``high``."""


def expand_env_ids(env_ids: list[str]) -> list[str]:
    """``all`` stands for every ScienceGym id, in registry order."""
    expanded: list[str] = []
    for env_id in env_ids:
        expanded += list(envs.ENV_IDS) if env_id == "all" else [env_id]
    return expanded


def check_env_ids(env_ids: list[str]) -> None:
    """Unknown or repeated env ids raise :class:`UsageError` listing the registered ones."""
    for env_id in env_ids:
        if env_id not in gym.registry or env_id not in envs.ENV_IDS:
            close = difflib.get_close_matches(env_id, envs.ENV_IDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown env {env_id!r}; choose one of: {', '.join(envs.ENV_IDS)}{hint}")
    if len(set(env_ids)) != len(env_ids):
        raise UsageError(f"--env lists an env twice: {env_ids}")


def plan_runs(
    env_ids: list[str], specs: list[AgentSpec], env_kwargs: dict[str, dict[str, Any]]
) -> list[AgentRun]:
    """Which agent runs where, with which env kwargs; every label must cover every env,
    with as many run dirs on each (one for random and baselines).

    ``env_kwargs[env_id]`` (from ``--env-kwargs``) applies to every agent on that env
    and wins over a model's own run settings.
    """
    check_env_ids(env_ids)
    for spec in specs:
        if spec.run_config is not None and spec.run_config.env_id not in env_ids:
            raise UsageError(
                f"agent {spec.text!r} was trained on {spec.run_config.env_id}, which is not among --env {' '.join(env_ids)}"
            )
    for spec in specs:
        if spec.kind is AgentKind.REFERENCE and not any(spec.runs_on(e) for e in env_ids):
            owners = [e for e in expand_env_ids(["all"]) if spec.runs_on(e)]
            raise UsageError(f"agent {spec.label!r} has nothing to run on {', '.join(env_ids)}: reference agent"
                             f" {spec.reference!r} belongs to {', '.join(owners)}")
    if len(env_ids) > 1 and not any(spec.kind is AgentKind.RANDOM for spec in specs):
        raise UsageError("several envs are normalised by the random agent's score; add --agent random")
    runs: list[AgentRun] = []
    for env_id in env_ids:
        for spec in specs:
            if not spec.runs_on(env_id):
                continue
            clash = [r for r in runs if r.label == spec.label and r.env_id == env_id]
            if clash and (spec.kind is not AgentKind.MODEL or clash[0].spec.kind is not AgentKind.MODEL):
                raise UsageError(
                    f"two agents named {spec.label!r} on {env_id}; name them apart with LABEL=SPEC"
                    f" (e.g. {spec.label}2={spec.text})"
                )
            kwargs = {**spec.env_kwargs(env_id), **env_kwargs.get(env_id, {})}
            runs.append(AgentRun(spec.label, env_id, spec, kwargs, spec.env_wrapper()))
    for label in dict.fromkeys(r.label for r in runs):
        missing = [e for e in env_ids if not any(r.label == label and r.env_id == e for r in runs)]
        if missing:
            raise UsageError(
                f"agent {label!r} has nothing to run on {', '.join(missing)}; every agent needs every env"
                f" (give a run dir per env under one label, e.g. {label}=runs/.../{missing[0]}_1)"
            )
        counts = {e: sum(r.label == label and r.env_id == e for r in runs) for e in env_ids}
        if len(set(counts.values())) > 1:
            raise UsageError(f"agent {label!r} needs as many run dirs on every env, got {counts}")
    return runs


def kwargs_mismatches(runs: list[AgentRun]) -> list[str]:
    """One message per env whose agents see different env kwargs (different test cases?)."""
    messages = []
    for env_id in dict.fromkeys(r.env_id for r in runs):
        on_env = [r for r in runs if r.env_id == env_id]
        if any(r.env_kwargs != on_env[0].env_kwargs for r in on_env):
            seen = "; ".join(f"{r.label}: {r.env_kwargs}" for r in on_env)
            messages.append(
                f"{env_id}: agents run with different env kwargs, so their test cases may differ ({seen});"
                " align them with --env-kwargs"
            )
    return messages


def _action_space(run: AgentRun) -> gym.Space:
    kwargs = dict(run.env_kwargs)
    transfer = envs.entry(run.env_id).evaluation.transfer
    if transfer is not None:  # an evaluation setting, not an env argument
        kwargs.pop(transfer[0], None)
    env = gym.make(run.env_id, **kwargs)
    wrapper = build_wrapper(run.env_wrapper)
    if wrapper is not None:
        env = wrapper(env)
    try:
        return env.action_space
    finally:
        env.close()


def play_runs(runs: list[AgentRun], seeds: list[int], episodes: int, device: str) -> None:
    """Fill ``run.results[seed]`` for every run and seed (with a progress bar)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct integers, got {seeds}")
    if episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {episodes}")
    with tqdm(total=len(runs) * len(seeds), desc="evaluate", unit="eval") as progress:
        for run in runs:
            model: Agent | None = None
            space = None if run.spec.kind in (AgentKind.MODEL, AgentKind.REFERENCE) else _action_space(run)
            for seed in seeds:
                progress.set_postfix_str(f"{run.env_id} {run.label} seed {seed}")
                if run.spec.kind is AgentKind.MODEL:  # deterministic: load once, play every seed
                    model = model or build_agent(run.spec, space, seed, device)
                    agent = model
                else:
                    agent = build_agent(run.spec, space, seed, device, env_id=run.env_id)
                run.results[seed] = evaluate(
                    agent, run.env_id, env_kwargs=run.env_kwargs, wrapper=build_wrapper(run.env_wrapper),
                    n_episodes=episodes, seed=seed,
                )
                progress.update()


def raw_scores(runs: list[AgentRun], env_ids: list[str], seeds: list[int], metric: str) -> dict[str, np.ndarray]:
    """Label -> ``(run dirs x seeds, envs)`` array of ``metric`` (run dir major)."""
    for run in runs:
        for seed, result in run.results.items():
            value = result.get(metric)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                numeric = sorted(k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
                raise UsageError(
                    f"--metric {metric!r} is not a number in the {run.env_id} results; numeric keys: {', '.join(numeric)}"
                )
    scores = {}
    for label in dict.fromkeys(r.label for r in runs):
        columns = [
            [float(r.results[s][metric]) for r in runs if r.label == label and r.env_id == env_id for s in seeds]
            for env_id in env_ids
        ]
        scores[label] = np.array(columns).T  # (run dirs * seeds, envs)
    return scores


def fixed_normalisation(env_ids: list[str], runs: list[AgentRun], metric: str) -> tuple[Normalisation | None, str]:
    """The committed reference scores (:mod:`benchmarks.reference_scores`) when they apply:
    metric ``mean_reward``, default env kwargs everywhere, an entry for every env. Else
    ``None`` and why not."""
    from benchmarks.reference_scores import load_reference_scores

    references = load_reference_scores()
    missing = [e for e in env_ids if e not in references]
    if metric != "mean_reward":
        return None, f"reference scores are for mean_reward, not {metric}"
    if missing:
        return None, f"no reference scores for {', '.join(missing)} (python -m benchmarks references)"
    # a reference agent's own env kwargs are those its reference score was computed with
    if any(r.env_kwargs and not (r.spec.kind is AgentKind.REFERENCE and r.env_kwargs == r.spec.env_kwargs(r.env_id))
           for r in runs):
        return None, "reference scores hold for default env kwargs only"
    chosen = [references[e] for e in env_ids]
    return Normalisation(
        low=np.array([r.random for r in chosen]), high=np.array([r.reference for r in chosen]),
        best=[r.reference_name for r in chosen],
    ), ""


def normalisation(scores: dict[str, np.ndarray], env_ids: list[str], runs: list[AgentRun]) -> Normalisation:
    """Random agent -> 0, best agent (by mean over runs) -> 1, per env (see module doc)."""
    random_label = next(r.label for r in runs if r.spec.kind is AgentKind.RANDOM)
    labels = list(scores)
    means = np.stack([scores[label].mean(axis=0) for label in labels])  # (agents, envs)
    best = means.argmax(axis=0)  # (envs,)
    return Normalisation(
        low=scores[random_label].mean(axis=0),
        high=means[best, np.arange(len(env_ids))],
        best=[labels[i] for i in best],
    )
