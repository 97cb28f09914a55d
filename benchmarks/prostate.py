"""Prostate-v0 evaluation: every test core, ProstNFound's metrics, and three baselines.

Metrics (on the test split; one episode per core and pass):

* ``mean_reward`` / ``std_reward``: episode return.
* ``core_auroc``: AUROC of the core score (mean heatmap probability over the needle)
  for "the core contains cancer" (involvement > 0), ProstNFound's core-level metric.
* ``sensitivity_at_{20,40,60,80}_specificity``: best sensitivity of the core score
  among thresholds whose specificity is at least 20/40/60/80 %.
* ``balanced_accuracy``: of the class head's csPCa call (P(csPCa) >= 0.5) against the
  csPCa label (grade group >= the env's ``cspca_threshold``).
* ``cspca_auroc`` (class head), ``involvement_mae`` (|p - inv|), ``mean_points``,
  ``invalid_action_rate``.

``baselines`` holds the same keys for ``none`` (no points: STOP at once, in an env with
``min_points=0``), ``random`` (k random valid points; 3 passes so its noise is lower) and
``center`` (the k prostate cells nearest the prostate centroid). Baselines run on the
sequential env with the agent's other env kwargs, unwrapped (they read the raw
observation). Every env here has ``relative_reward=False``: rewards are reported on the
plain scale whatever the agent trained on.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import ProstateCenterAgent, ProstateRandomCellAgent, ProstateStopAgent
from benchmarks.evaluation import Agent, EnvWrapper, EpisodeRecord, run_episode
from envs.prostate.decoder import binary_auroc

__all__ = ["evaluate", "prostate_metrics", "sensitivity_at_specificity", "RANDOM_BASELINE_PASSES"]

RANDOM_BASELINE_PASSES = 3
SPECIFICITIES = (0.2, 0.4, 0.6, 0.8)


def sensitivity_at_specificity(scores: np.ndarray, labels: np.ndarray, specificity: float) -> float:
    """Highest sensitivity over thresholds t (positive = score >= t) with specificity >= the target."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    positives, negatives = scores[labels], scores[~labels]
    if positives.size == 0 or negatives.size == 0:
        return float("nan")
    best = 0.0
    for t in np.unique(scores):
        if np.mean(negatives < t) >= specificity:
            best = max(best, float(np.mean(positives >= t)))
    return best


def _balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    rates = [np.mean(predicted[labels == c] == c) for c in (False, True) if np.any(labels == c)]
    return float(np.mean(rates)) if len(rates) == 2 else float("nan")


def _nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def prostate_metrics(records: list[EpisodeRecord]) -> dict[str, Any]:
    """The metrics above from finished episodes (their final infos)."""
    finals = [r.final_info for r in records]
    returns = np.array([r.episode_return for r in records])
    score = np.array([f["core_score"] for f in finals])
    involvement = np.array([f["involvement"] for f in finals])
    cls_prob = np.array([f["cls_prob"] for f in finals])
    cspca = np.array([f["cspca"] for f in finals], dtype=bool)
    cancer = involvement > 0
    invalid = [i.get("invalid_action", False) for r in records for i in r.infos]
    metrics: dict[str, Any] = {
        "mean_reward": float(returns.mean()),
        "std_reward": float(returns.std()),
        "n_episodes": len(records),
        "core_auroc": binary_auroc(score, cancer),
        **{
            f"sensitivity_at_{round(100 * s)}_specificity": sensitivity_at_specificity(score, cancer, s)
            for s in SPECIFICITIES
        },
        "balanced_accuracy": _balanced_accuracy(cls_prob >= 0.5, cspca),
        "cspca_auroc": binary_auroc(cls_prob, cspca),
        "involvement_mae": float(np.abs(score - involvement).mean()),
        "mean_points": float(np.mean([f["n_points"] for f in finals])),
        "invalid_action_rate": float(np.mean(invalid)),
    }
    return {k: _nan_to_none(v) for k, v in metrics.items()}


def _play_all_cases(agent: Agent, env: gym.Env, passes: int, seed: int) -> list[EpisodeRecord]:
    n_cases = env.unwrapped.n_cases
    return [
        run_episode(agent, env, seed + p * n_cases + case, deterministic=True, options={"case": case})
        for p in range(passes)
        for case in range(n_cases)
    ]


def evaluate(
    agent: Agent,
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: EnvWrapper | None = None,
    n_episodes: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``agent`` on every test core (``ceil(n_episodes / n_test)`` passes, at least
    one), plus the none / random / center baselines."""
    kwargs = {**(env_kwargs or {}), "split": "test", "relative_reward": False}
    env = gym.make(env_id, **kwargs)
    if wrapper is not None:
        env = wrapper(env)
    try:
        n_test = env.unwrapped.n_cases
        passes = max(1, math.ceil(n_episodes / n_test))
        result = prostate_metrics(_play_all_cases(agent, env, passes, seed))
    finally:
        env.close()

    baseline_kwargs = {**kwargs, "action_mode": "sequential"}
    baselines: dict[str, Any] = {}
    specs = (
        ("none", {**baseline_kwargs, "min_points": 0}, lambda space: ProstateStopAgent(space), 1),
        ("random", baseline_kwargs, lambda space: ProstateRandomCellAgent(space, seed=seed), max(passes, RANDOM_BASELINE_PASSES)),
        ("center", baseline_kwargs, lambda space: ProstateCenterAgent(space), 1),
    )
    for name, kw, make_agent, n_passes in specs:
        baseline_env = gym.make(env_id, **kw)
        try:
            baselines[name] = prostate_metrics(_play_all_cases(make_agent(baseline_env.action_space), baseline_env, n_passes, seed))
        finally:
            baseline_env.close()
    result["baselines"] = baselines
    result["test_cores"] = n_test
    return result
