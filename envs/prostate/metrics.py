"""Prostate-v0's science metrics: ProstNFound's core-level numbers from episode infos.

All functions are pure (arrays or :class:`~envs.episodes.EpisodeRecord` lists in,
numbers out); the decoder's validation and the evaluation loop use the same ones.

:func:`summarise` reports, from the final info of each episode (one per core and pass):

* ``mean_reward`` / ``std_reward``: episode return.
* ``core_auroc``: AUROC of the core score (mean heatmap probability over the needle)
  for "the core contains cancer" (involvement > 0), ProstNFound's core-level metric.
* ``sensitivity_at_{20,40,60,80}_specificity``: best sensitivity of the core score
  among thresholds whose specificity is at least 20/40/60/80 %.
* ``balanced_accuracy``: of the class head's csPCa call (P(csPCa) >= 0.5) against the
  csPCa label (grade group >= the env's ``cspca_threshold``).
* ``cspca_auroc`` (class head), ``involvement_mae`` (|p - inv|), ``mean_points``,
  ``invalid_action_rate``.

Undefined values (one class only) are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from envs.episodes import EpisodeRecord

__all__ = ["SPECIFICITIES", "balanced_accuracy", "binary_auroc", "cohort_facts", "sensitivity_at_specificity", "summarise"]

SPECIFICITIES = (0.2, 0.4, 0.6, 0.8)


def binary_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count half); NaN with one class only."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks over ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


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


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean of the per-class recalls of boolean predictions; NaN with one class only."""
    predicted, labels = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
    rates = [np.mean(predicted[labels == c] == c) for c in (False, True) if np.any(labels == c)]
    return float(np.mean(rates)) if len(rates) == 2 else float("nan")


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def summarise(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """The metrics of the module docstring from finished episodes."""
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
        "balanced_accuracy": balanced_accuracy(cls_prob >= 0.5, cspca),
        "cspca_auroc": binary_auroc(cls_prob, cspca),
        "involvement_mae": float(np.abs(score - involvement).mean()),
        "mean_points": float(np.mean([f["n_points"] for f in finals])),
        "invalid_action_rate": float(np.mean(invalid)),
    }
    return {k: _nan_to_none(v) for k, v in metrics.items()}


def cohort_facts(context: Any) -> dict[str, Any]:
    """Evaluation extras: the number of test cores."""
    return {"test_cores": context.env.unwrapped.n_cases}
