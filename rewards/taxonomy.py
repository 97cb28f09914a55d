"""Rewards for hierarchical classification with abstention (Taxonomy-v0).

Pure functions of an episode's predictions and labels, one entry per rank, coarse ->
fine. A label is a class index with 0 = null (the rank cannot be determined); a
prediction is a class index or ``None`` for "abstain". Abstaining ends the
classification, so every rank after an abstention is scored as an abstention too:
the score always covers all ranks (the source scored only the first rank).

Every reward here is *causal*: the per-rank rewards before the rank where the episode
stops do not depend on what comes after it. Sequential envs can therefore pay
``rank_rewards(...)[r]`` at a non-final step and the sum of the rest at the last step,
and the episode return equals the multitask (one-step) return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Protocol

import numpy as np

__all__ = [
    "AbstentionOutcome",
    "AbstentionReward",
    "EpisodeOutcomeReward",
    "SimpleAbstentionReward",
    "normalise_predictions",
    "rank_outcomes",
]

NULL = 0


class AbstentionOutcome(IntEnum):
    """What happened at one rank of one episode."""

    CORRECT = 0
    """Predicted the labelled class."""
    MISCLASSIFIED = 1
    """Predicted a class; the label is a different class."""
    CORRECT_ABSTENTION = 2
    """Abstained; the label is null."""
    UNNECESSARY_ABSTENTION = 3
    """Abstained; a label exists."""
    MISSED_ABSTENTION = 4
    """Predicted a class; the label is null."""


def normalise_predictions(predictions: Sequence[int | None], n_ranks: int) -> list[int | None]:
    """Pad to ``n_ranks`` and score every rank after the first abstention as abstained."""
    if len(predictions) > n_ranks:
        raise ValueError(f"got {len(predictions)} predictions for {n_ranks} ranks")
    out: list[int | None] = []
    for p in list(predictions) + [None] * (n_ranks - len(predictions)):
        if out and out[-1] is None:
            p = None
        if p is not None and p <= NULL:
            raise ValueError(f"a prediction must be a class index >= 1 or None (abstain), got {p}")
        out.append(p)
    return out


def rank_outcomes(predictions: Sequence[int | None], labels: Sequence[int]) -> np.ndarray:
    """:class:`AbstentionOutcome` per rank, int64 ``(n_ranks,)``."""
    labels = [int(x) for x in labels]
    preds = normalise_predictions(predictions, len(labels))
    out = np.empty(len(labels), dtype=np.int64)
    for r, (p, y) in enumerate(zip(preds, labels)):
        if p is None:
            out[r] = AbstentionOutcome.CORRECT_ABSTENTION if y == NULL else AbstentionOutcome.UNNECESSARY_ABSTENTION
        elif y == NULL:
            out[r] = AbstentionOutcome.MISSED_ABSTENTION
        else:
            out[r] = AbstentionOutcome.CORRECT if p == y else AbstentionOutcome.MISCLASSIFIED
    return out


class AbstentionReward(Protocol):
    """A causal reward over the ranks of one episode."""

    def rank_rewards(self, predictions: Sequence[int | None], labels: Sequence[int]) -> np.ndarray:
        """Reward credited at each rank, float64 ``(n_ranks,)``; the sum is the return."""
        ...


def _check_finite(obj: object) -> None:
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if not np.isfinite(value):
            raise ValueError(f"{type(obj).__name__}.{f.name} must be finite, got {value}")


@dataclass(frozen=True)
class SimpleAbstentionReward:
    """Per-rank scores, summed over every rank.

    With the defaults an episode without nulls answered correctly at all four ranks
    earns 4.0; abstaining exactly where the labels turn null earns +0.5 for each
    remaining rank.
    """

    correct_classification: float = 1.0
    """Predicted the labelled class."""
    misclassification: float = -1.0
    """Predicted another class than the label."""
    unnecessary_abstention: float = -0.5
    """Abstained although the rank has a label."""
    correct_abstention: float = 0.5
    """Abstained at a null rank."""
    prediction_at_null: float = -1.0
    """Predicted a class at a null rank (a missed abstention)."""

    def __post_init__(self) -> None:
        _check_finite(self)

    def rank_rewards(self, predictions: Sequence[int | None], labels: Sequence[int]) -> np.ndarray:
        """Score of each rank's :class:`AbstentionOutcome`."""
        table = np.array([
            self.correct_classification,
            self.misclassification,
            self.correct_abstention,
            self.unnecessary_abstention,
            self.prediction_at_null,
        ])
        return table[rank_outcomes(predictions, labels)]


@dataclass(frozen=True)
class EpisodeOutcomeReward:
    """Sparse: ``optimal_outcome`` if every rank is right down to the first null rank
    and the agent abstains exactly there (or is right at every rank when no label is
    null), else ``suboptimal_outcome``; credited at the rank where the episode stops."""

    optimal_outcome: float = 1.0
    """The whole chain is right."""
    suboptimal_outcome: float = -1.0
    """Anything else."""

    def __post_init__(self) -> None:
        _check_finite(self)

    def rank_rewards(self, predictions: Sequence[int | None], labels: Sequence[int]) -> np.ndarray:
        """Zeros except at the stopping rank (the first abstention, else the last rank)."""
        n = len(labels)
        preds = normalise_predictions(predictions, n)
        outcomes = rank_outcomes(preds, labels)
        optimal = bool(np.isin(outcomes, [AbstentionOutcome.CORRECT, AbstentionOutcome.CORRECT_ABSTENTION]).all())
        stop = next((r for r, p in enumerate(preds) if p is None), n - 1)
        out = np.zeros(n)
        out[stop] = self.optimal_outcome if optimal else self.suboptimal_outcome
        return out
