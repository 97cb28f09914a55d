"""Taxonomy-v0 / TaxonomyMultitask-v0 abstention metrics, from episode infos.

Per rank, from :class:`~rewards.taxonomy.AbstentionOutcome` codes (ranks after an
abstention count as abstained, masked actions too):

==============================  ==============================================================
``abstention_rate``             abstained / episodes
``correct_abstention_rate``     abstained with a null label / abstained (None if no abstention)
``unnecessary_abstention_rate`` abstained with a label / abstained (None if no abstention)
``missed_abstention_count``     predicted a class although the label is null
``accuracy_on_non_abstained``   correct / predicted; a prediction at a null label is wrong
                                (None if never predicted)
``abstention_recall``           abstained with a null label / null labels (None if no null)
==============================  ==============================================================

Selective classification (the agent answers or abstains; risk is judged where it
answers). A rank is *covered* when the agent names a class there; the answer is an
*error* when the class is wrong or the label is null. Per rank and for the whole
chain (all (image, rank) decisions together):

- ``selective`` (every agent, from its outcomes): ``coverage`` = covered / decisions,
  ``selective_risk`` = errors / covered (None at zero coverage);
- ``risk_coverage`` (agents whose confidence scores allow a sweep,
  :class:`SelectiveAnswers`): the risk-coverage curve, ``aurc`` (area under it: the
  mean selective risk over the coverage levels k/N, Geifman et al. 2019), ``e_aurc``
  (AURC minus that of a perfect ranking of the same answers) and ``risk_at_coverage``
  at 80 / 90 / 95 % coverage. Per rank, rank r's decisions are ordered by rank r's
  score alone. The chain curve orders all decisions by the *chain score*, the
  minimum of the scores down to that rank, so every threshold yields answers that
  stop at one rank and abstain from there on (hierarchical back-off).

``null_causes`` (data that record :class:`~envs.taxonomy.data.NullCause`): the share
of each cause among the episodes and, per cause, ``abstained_in_time``: the share of
its episodes without a prediction at a null rank (None for ``"none"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.episodes import EpisodeRecord
from rewards.taxonomy import AbstentionOutcome

__all__ = [
    "COVERAGE_LEVELS",
    "SelectiveAnswers",
    "abstention_metrics",
    "null_cause_metrics",
    "risk_coverage",
    "risk_coverage_metrics",
    "selective_operating_point",
    "summarise",
    "summarise_outcomes",
]

COVERAGE_LEVELS = (0.8, 0.9, 0.95)
"""Coverages at which ``risk_at_coverage`` reports the selective risk."""
CURVE_POINTS = 101
"""Points of each stored curve (evenly spaced in coverage; AURC uses every point)."""

_O = AbstentionOutcome


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def abstention_metrics(outcomes: np.ndarray, ranks: Sequence[str]) -> dict[str, dict[str, float | int | None]]:
    """Per-rank metrics from outcome codes (episodes, ranks)."""
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


_COVERED = [_O.CORRECT, _O.MISCLASSIFIED, _O.MISSED_ABSTENTION]
_ERRORS = [_O.MISCLASSIFIED, _O.MISSED_ABSTENTION]


def _coverage_and_risk(o: np.ndarray) -> dict[str, float | None]:
    covered = int(np.isin(o, _COVERED).sum())
    return {"coverage": float(covered / o.size), "selective_risk": _ratio(int(np.isin(o, _ERRORS).sum()), covered)}


def selective_operating_point(outcomes: np.ndarray, ranks: Sequence[str]) -> dict[str, Any]:
    """Coverage and selective risk of the answers actually given, per rank and for the
    chain, from outcome codes (episodes, ranks)."""
    outcomes = np.asarray(outcomes).reshape(-1, len(ranks))
    return {
        "per_rank": {rank: _coverage_and_risk(outcomes[:, r]) for r, rank in enumerate(ranks)},
        "chain": _coverage_and_risk(outcomes),
    }


def null_cause_metrics(outcomes: np.ndarray, causes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per null cause: ``share`` of the episodes and ``abstained_in_time`` (no prediction
    at a null rank); ``causes`` are :class:`~envs.taxonomy.data.NullCause` names."""
    causes = np.asarray(causes)
    missed = (np.asarray(outcomes) == _O.MISSED_ABSTENTION).any(axis=1)
    return {
        str(c): {
            "share": float((causes == c).mean()),
            "abstained_in_time": None if c == "none" else float(1.0 - missed[causes == c].mean()),
        }
        for c in sorted(set(causes.tolist()))
    }


@dataclass(frozen=True)
class SelectiveAnswers:
    """What an agent answers at every rank, with a confidence score per rank.

    ``classes`` (N, R) int: the class the agent names at each rank when it does not
    abstain (its chain of answers if it never abstained). ``scores`` (N, R) float: its
    confidence, higher = surer (any scale; curves depend only on the order).
    ``thresholds`` (R,): the agent answers rank r iff ``scores[:, r'] >= thresholds[r']``
    for every r' <= r (default 0, e.g. for margins). The curves sweep the confidence,
    whatever the thresholds, so they judge the confidence function itself.
    """

    classes: np.ndarray
    scores: np.ndarray
    thresholds: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.classes.shape != self.scores.shape or self.classes.ndim != 2:
            raise ValueError(
                f"classes and scores must both have shape (N, R), got {self.classes.shape} and {self.scores.shape}"
            )
        if not np.isfinite(self.scores).all():
            raise ValueError("scores must be finite")
        if self.thresholds is not None and np.shape(self.thresholds) != (self.scores.shape[1],):
            raise ValueError(f"thresholds must have shape ({self.scores.shape[1]},), got {np.shape(self.thresholds)}")

    def predictions(self) -> np.ndarray:
        """Class indices (N, R), 0 = abstained (and every rank after it)."""
        thresholds = np.zeros(self.scores.shape[1]) if self.thresholds is None else np.asarray(self.thresholds)
        covered = np.cumprod(self.scores >= thresholds[None, :], axis=1).astype(bool)
        return np.where(covered, self.classes, 0)


def risk_coverage(errors: np.ndarray, scores: np.ndarray, order_keys: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Coverage k/N and selective risk of the k most confident answers, k = 1..N.

    ``errors`` (N,) bool; ``scores`` (N,) higher = more confident; ties are broken by
    ``order_keys`` (earlier first), then by position.
    """
    errors, scores = np.asarray(errors, dtype=bool).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    order = np.lexsort((np.arange(len(scores)), *[np.asarray(k).ravel() for k in reversed(order_keys)], -scores))
    k = np.arange(1, len(scores) + 1)
    return k / len(scores), np.cumsum(errors[order]) / k


def _curve_summary(errors: np.ndarray, coverage: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    n, n_errors = len(risk), int(np.sum(errors))
    k = np.arange(1, n + 1)
    optimal = np.maximum(0, k - (n - n_errors)) / k  # every correct answer first
    at = {f"{c:.2f}": float(risk[min(int(np.ceil(c * n)) - 1, n - 1)]) for c in COVERAGE_LEVELS}
    points = np.unique(np.linspace(0, n - 1, min(CURVE_POINTS, n)).round().astype(int))
    return {
        "aurc": float(risk.mean()),
        "e_aurc": float(risk.mean() - optimal.mean()),
        "risk_at_coverage": at,
        "curve": {"coverage": coverage[points].round(4).tolist(), "risk": risk[points].round(4).tolist()},
    }


def risk_coverage_metrics(answers: SelectiveAnswers, labels: np.ndarray, ranks: Sequence[str]) -> dict[str, Any]:
    """Risk-coverage curves, AURC, E-AURC and risk at fixed coverage, per rank and for
    the chain (rules in the module docstring); ``labels`` (N, R) class indices."""
    labels = np.asarray(labels)
    if labels.shape != answers.classes.shape:
        raise ValueError(f"labels must have shape {answers.classes.shape} like the answers, got {labels.shape}")
    errors = (answers.classes != labels) | (labels == 0)  # (N, R)
    per_rank = {}
    for r, rank in enumerate(ranks):
        coverage, risk = risk_coverage(errors[:, r], answers.scores[:, r])
        per_rank[rank] = _curve_summary(errors[:, r], coverage, risk)
    chain_scores = np.minimum.accumulate(answers.scores, axis=1)  # (N, R)
    rank_index = np.broadcast_to(np.arange(len(ranks)), labels.shape)
    coverage, risk = risk_coverage(errors, chain_scores, order_keys=(rank_index,))
    return {"per_rank": per_rank, "chain": _curve_summary(errors.ravel(), coverage, risk)}


def summarise_outcomes(
    returns: Sequence[float], outcomes: np.ndarray, ranks: Sequence[str], causes: Sequence[str] | None = None
) -> dict[str, Any]:
    """Returns, per-rank abstention metrics, coverage and selective risk of N answers
    (outcomes (N, R)); per null cause when ``causes`` (N,) names them."""
    out = {
        "mean_reward": float(np.mean(returns)),
        "std_reward": float(np.std(returns)),
        "n_episodes": len(returns),
        "per_rank": abstention_metrics(outcomes, ranks),
        "selective": selective_operating_point(outcomes, ranks),
    }
    if causes is not None:
        out["null_causes"] = null_cause_metrics(outcomes, causes)
    return out


def summarise(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """:func:`summarise_outcomes` of finished episodes (their final infos)."""
    ranks = records[0].final_info["rank_names"]
    outcomes = np.array([r.final_info["outcomes"] for r in records])
    causes = [r.final_info.get("null_cause") for r in records]
    return summarise_outcomes(
        [r.episode_return for r in records], outcomes, ranks, None if None in causes else causes
    )
