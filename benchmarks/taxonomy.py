"""Evaluation of Taxonomy-v0 / TaxonomyMultitask-v0: rewards, abstention metrics, baselines.

``evaluate`` (registered in :data:`benchmarks.evaluation.EVALUATORS`) plays the agent
on the test split and reports, besides ``mean_reward``, the per-rank abstention
metrics of the Linnaeus Phase 2 write-up, and the same numbers for baselines on the
same test cases:

- ``threshold``: :class:`~agents.baselines.TaxonomyThresholdAgent`, the Phase 1 model
  abstaining when its top softmax probability falls below a per-rank threshold tuned
  on the validation split (also reported as ``threshold_baseline``);
- ``never_abstain``: the same agent with all thresholds 0 (Phase 1 alone);
- ``random``: uniform over the allowed actions (played in the env).

The first two are deterministic functions of the Phase 1 probabilities, so they are
scored in one batch (:func:`threshold_predictions`) rather than stepped; a test checks
that this equals playing the agent in the env.

Per-rank metrics (ranks after an abstention count as abstained, masked actions too):

==============================  ==============================================================
``abstention_rate``             abstained / episodes
``correct_abstention_rate``     abstained with a null label / abstained (None if no abstention)
``unnecessary_abstention_rate`` abstained with a label / abstained (None if no abstention)
``missed_abstention_count``     predicted a class although the label is null
``accuracy_on_non_abstained``   correct / predicted; a prediction at a null label is wrong
                                (None if never predicted)
``abstention_recall``           abstained with a null label / null labels (None if no null)
==============================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the env ids)
from agents.baselines import RandomAgent
from benchmarks.evaluation import Agent, EnvWrapper, run_episode
from envs.taxonomy.tree import TaxonomyTree
from policies.phase1 import PRETRAIN_COMMAND, class_probabilities, default_phase1_checkpoint, load_phase1
from rewards.taxonomy import AbstentionOutcome, AbstentionReward, rank_outcomes

__all__ = ["abstention_metrics", "evaluate", "play", "score_predictions", "threshold_predictions", "tune_thresholds"]

_O = AbstentionOutcome
THRESHOLD_GRID = np.round(np.linspace(0.0, 0.99, 34), 4)
"""Candidate per-rank thresholds of the baseline."""


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def abstention_metrics(outcomes: np.ndarray, ranks: Sequence[str]) -> dict[str, dict[str, float | int | None]]:
    """Per-rank metrics from :class:`~rewards.taxonomy.AbstentionOutcome` codes (episodes, ranks)."""
    outcomes = np.asarray(outcomes).reshape(-1, len(ranks))
    n = len(outcomes)
    metrics = {}
    for r, rank in enumerate(ranks):
        o = outcomes[:, r]
        abstained = int(np.isin(o, [_O.CORRECT_ABSTENTION, _O.UNNECESSARY_ABSTENTION]).sum())
        correct_abst = int((o == _O.CORRECT_ABSTENTION).sum())
        missed = int((o == _O.MISSED_ABSTENTION).sum())
        correct = int((o == _O.CORRECT).sum())
        metrics[rank] = {
            "abstention_rate": _ratio(abstained, n),
            "correct_abstention_rate": _ratio(correct_abst, abstained),
            "unnecessary_abstention_rate": _ratio(abstained - correct_abst, abstained),
            "missed_abstention_count": missed,
            "accuracy_on_non_abstained": _ratio(correct, n - abstained),
            "abstention_recall": _ratio(correct_abst, correct_abst + missed),
        }
    return metrics


def threshold_predictions(
    probs: Sequence[np.ndarray], thresholds: np.ndarray, tree: TaxonomyTree | None = None
) -> np.ndarray:
    """What :class:`~agents.baselines.TaxonomyThresholdAgent` answers, computed from its
    per-rank probabilities [(N, K_r)] without stepping an env: class indices (N, R),
    0 = abstained (and every rank after it).

    With ``tree`` the classes are restricted to children of the previous prediction,
    as in ``Taxonomy-v0(hierarchy_consistent=True)``.
    """
    n, n_ranks = len(probs[0]), len(probs)
    predictions = np.zeros((n, n_ranks), dtype=np.int64)
    active = np.ones(n, dtype=bool)
    for r in range(n_ranks):
        p = probs[r].copy()  # (N, K_r)
        if tree is not None and r > 0:
            p *= tree.parents[r][1:][None, :] == predictions[:, r - 1][:, None]
        total = p.sum(axis=1)
        top = p.argmax(axis=1)
        confident = total > 0
        confident[confident] = p[confident, top[confident]] / total[confident] >= thresholds[r]
        active &= confident
        predictions[active, r] = top[active] + 1
    return predictions


def score_predictions(
    predictions: np.ndarray, labels: np.ndarray, reward_fn: AbstentionReward
) -> tuple[np.ndarray, np.ndarray]:
    """Episode returns (N,) and outcomes (N, R) of predictions (0 = abstained)."""
    as_lists = [[int(c) if c else None for c in row] for row in predictions]
    returns = np.array([reward_fn.rank_rewards(p, y).sum() for p, y in zip(as_lists, labels)])
    outcomes = np.array([rank_outcomes(p, y) for p, y in zip(as_lists, labels)])
    return returns, outcomes


def tune_thresholds(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    reward_fn: AbstentionReward,
    tree: TaxonomyTree | None = None,
    sweeps: int = 3,
) -> tuple[np.ndarray, float]:
    """Per-rank thresholds maximising the mean return on (validation) data, by coordinate
    ascent over :data:`THRESHOLD_GRID` from all-zero; returns (thresholds, mean return)."""
    def mean_return(thresholds: np.ndarray) -> float:
        predictions = threshold_predictions(probs, thresholds, tree)
        return float(np.mean([
            reward_fn.rank_rewards([int(c) if c else None for c in row], y).sum()
            for row, y in zip(predictions, labels)
        ]))

    thresholds = np.zeros(labels.shape[1])
    best = mean_return(thresholds)
    for _ in range(sweeps):
        improved = False
        for r in range(labels.shape[1]):
            for t in THRESHOLD_GRID:
                trial = thresholds.copy()
                trial[r] = t
                score = mean_return(trial)
                if score > best + 1e-12:
                    best, thresholds, improved = score, trial, True
        if not improved:
            break
    return thresholds, best


def _summary(returns: list[float], outcomes: np.ndarray, ranks: Sequence[str]) -> dict[str, Any]:
    return {
        "mean_reward": float(np.mean(returns)),
        "std_reward": float(np.std(returns)),
        "n_episodes": len(returns),
        "per_rank": abstention_metrics(outcomes, ranks),
    }


def play(agent: Agent, env: gym.Env, cases: np.ndarray, seed: int, ranks: Sequence[str]) -> dict[str, Any]:
    """Play ``agent`` once on each case (deterministic) and summarise."""
    returns, outcomes = [], []
    for k, case in enumerate(cases):
        record = run_episode(agent, env, seed + k, deterministic=True, options={"case": int(case)})
        returns.append(record.episode_return)
        outcomes.append(record.final_info["outcomes"])
    return _summary(returns, np.array(outcomes), ranks)


def _phase1_path(agent: Agent, env_kwargs: dict[str, Any]) -> Any:
    policy = getattr(agent, "policy", None)
    path = getattr(policy, "phase1_checkpoint", None)
    return path if path is not None else default_phase1_checkpoint(env_kwargs.get("cache_dir"))


def evaluate(
    agent: Agent,
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: EnvWrapper | None = None,
    n_episodes: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate on the test split (``split`` in ``env_kwargs`` is overridden).

    ``n_episodes`` test cases are played once each: all of them when ``n_episodes``
    is at least the split size, else a seeded sample. Baselines play the same cases.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    env_kwargs = {**(env_kwargs or {}), "split": "test"}
    env = gym.make(env_id, **env_kwargs)
    if wrapper is not None:
        env = wrapper(env)
    base = env.unwrapped
    ranks = base.tree.ranks
    cases = np.arange(base.n_cases)
    if n_episodes < base.n_cases:
        cases = np.sort(np.random.default_rng(seed).choice(base.n_cases, n_episodes, replace=False))
    try:
        result = play(agent, env, cases, seed, ranks)
        baselines: dict[str, Any] = {"random": play(RandomAgent(env.action_space, seed), env, cases, seed, ranks)}
        checkpoint = _phase1_path(agent, env_kwargs)
        try:
            model, meta = load_phase1(checkpoint)
        except FileNotFoundError:
            model, meta = None, None
        if model is None or meta["tree_fingerprint"] != base.tree.fingerprint():
            why = "not found" if model is None else "trained on other data"
            result["threshold_baseline"] = None
            result["note"] = f"threshold baseline skipped: Phase 1 checkpoint {checkpoint} {why}; run `{PRETRAIN_COMMAND}`"
        else:
            val_env = gym.make(env_id, **{**env_kwargs, "split": "val"})
            val = val_env.unwrapped
            tree = base.tree if getattr(base, "hierarchy_consistent", False) else None
            thresholds, val_return = tune_thresholds(
                class_probabilities(model, val.data.images), val.data.labels, val.reward_fn, tree
            )
            val_env.close()
            test_probs = [p[cases] for p in class_probabilities(model, base.data.images)]
            labels = base.data.labels[cases]
            for name, values in (("threshold", thresholds), ("never_abstain", np.zeros(len(ranks)))):
                predictions = threshold_predictions(test_probs, values, tree)
                returns, outcomes = score_predictions(predictions, labels, base.reward_fn)
                baselines[name] = _summary(list(returns), outcomes, ranks)
            baselines["threshold"].update(thresholds=dict(zip(ranks, thresholds.tolist())), val_mean_reward=val_return)
            result["threshold_baseline"] = baselines["threshold"]
    finally:
        env.close()
    result["baselines"] = baselines
    return result
