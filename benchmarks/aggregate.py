"""Aggregate scores over runs and tasks with stratified bootstrap confidence intervals.

Follows rliable (Agarwal et al., 2021, "Deep RL at the edge of the statistical
precipice"): scores of one agent form an array ``(runs, tasks)`` (runs = seeds,
tasks = envs); the point estimate is the interquartile mean (IQM) or the mean of all
``runs x tasks`` scores (``rliable.metrics.aggregate_iqm`` / ``aggregate_mean``); the
interval is a percentile bootstrap that resamples runs with replacement *within each
task* (rliable's ``StratifiedBootstrap``).

The interval is rliable's own ``library.get_interval_estimates`` (``method="percentile"``).
rliable draws from NumPy's global RNG, so each call seeds it and restores the caller's
state afterwards: results are reproducible per ``seed`` without touching global state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np
from rliable import library, metrics

from rewards.choices import parse_choice

__all__ = ["Aggregate", "IntervalEstimate", "interval_estimates", "normalise_scores", "probability_of_improvement"]


class Aggregate(str, Enum):
    """Point estimate over all ``runs x tasks`` scores of one agent.

    - ``iqm``: interquartile mean, the mean of the middle 50 % (rliable's recommended
      aggregate: robust to outlier runs, less noisy than the median).
    - ``mean``: the plain mean.
    """

    IQM = "iqm"
    MEAN = "mean"


_RLIABLE: dict[Aggregate, Callable[[np.ndarray], float]] = {
    Aggregate.IQM: metrics.aggregate_iqm,
    Aggregate.MEAN: metrics.aggregate_mean,
}


@dataclass(frozen=True)
class IntervalEstimate:
    """A point estimate and its bootstrap confidence interval ``[low, high]``."""

    point: float
    low: float
    high: float


def _check_scores(name: str, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or min(scores.shape) < 1:
        raise ValueError(f"scores[{name!r}] must be a non-empty (runs, tasks) array, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores[{name!r}] holds non-finite values: {scores.tolist()}")
    return scores


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    aggregate: Aggregate | str = Aggregate.IQM,
    *,
    reps: int = 50_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, IntervalEstimate]:
    """Point estimate and stratified-bootstrap percentile CI per agent.

    Args:
        scores: agent name -> ``(runs, tasks)`` scores; agents may have different run counts.
        aggregate: :class:`Aggregate` member or its value.
        reps: bootstrap replications (rliable's default 50 000).
        confidence: coverage of the two-sided interval, in (0, 1).
        seed: seeds the resampling; agents are resampled in the given order from one stream.

    Returns:
        agent name -> :class:`IntervalEstimate`. A percentile interval usually but not
        always contains the point estimate (with very few, skewed runs it may not).
    """
    aggregate = parse_choice(Aggregate, aggregate, "aggregate")
    if not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps must be an integer >= 1, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    data = {name: _check_scores(name, raw) for name, raw in scores.items()}  # (runs, tasks) each
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        points, intervals = library.get_interval_estimates(
            data, lambda x: np.array([_RLIABLE[aggregate](x)]), reps=reps, confidence_interval_size=confidence,
            method="percentile",
        )
    finally:
        np.random.set_state(state)
    estimates = {
        name: IntervalEstimate(float(points[name][0]), float(intervals[name][0, 0]), float(intervals[name][1, 0]))
        for name in data
    }
    return estimates


def normalise_scores(
    scores: Mapping[str, np.ndarray], low: np.ndarray, high: np.ndarray, task_names: list[str]
) -> dict[str, np.ndarray]:
    """``(score - low) / (high - low)`` per task (column), so 0 = ``low`` and 1 = ``high``.

    Args:
        scores: agent name -> ``(runs, tasks)`` raw scores.
        low, high: ``(tasks,)`` reference scores (the benchmark uses the random agent and
            the best agent, each averaged over runs).
        task_names: ``(tasks,)`` names for error messages.

    Raises:
        ValueError: a task where ``high <= low`` (no agent beats the reference), for which
            this normalisation is undefined.
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if low.shape != (len(task_names),) or high.shape != low.shape:
        raise ValueError(f"low and high must have shape ({len(task_names)},), got {low.shape} and {high.shape}")
    flat = high <= low
    if flat.any():
        i = int(np.flatnonzero(flat)[0])
        raise ValueError(
            f"cannot normalise scores on {task_names[i]}: the best score {high[i]:g} does not exceed the"
            f" random score {low[i]:g}; drop that env or add an agent that beats random"
        )
    return {name: (np.asarray(s, dtype=np.float64) - low) / (high - low) for name, s in scores.items()}


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) averaged over tasks, the value of ``rliable.metrics.probability_of_improvement``
    (its Mann-Whitney U / (n_x n_y) per task: wins + half the ties over all run pairs).

    Computed for all tasks at once with NumPy instead of one ``scipy.stats.mannwhitneyu``
    call per task: rliable's bootstrap calls the statistic once per replication, and at its
    50,000 replications scipy's per-call overhead made one pair of agents take ~2 minutes.
    """
    x = np.asarray(scores_x, dtype=float)[:, None, :]  # (n_x, 1, tasks)
    y = np.asarray(scores_y, dtype=float)[None, :, :]  # (1, n_y, tasks)
    per_task = (x > y).mean(axis=(0, 1)) + 0.5 * (x == y).mean(axis=(0, 1))  # (tasks,)
    return float(per_task.mean())
