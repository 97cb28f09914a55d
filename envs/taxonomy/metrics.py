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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.episodes import EpisodeRecord
from rewards.taxonomy import AbstentionOutcome

__all__ = ["abstention_metrics", "summarise", "summarise_outcomes"]

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


def summarise_outcomes(returns: Sequence[float], outcomes: np.ndarray, ranks: Sequence[str]) -> dict[str, Any]:
    """Returns and per-rank abstention metrics of N answers (outcomes (N, R))."""
    return {
        "mean_reward": float(np.mean(returns)),
        "std_reward": float(np.std(returns)),
        "n_episodes": len(returns),
        "per_rank": abstention_metrics(outcomes, ranks),
    }


def summarise(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """:func:`summarise_outcomes` of finished episodes (their final infos)."""
    ranks = records[0].final_info["rank_names"]
    outcomes = np.array([r.final_info["outcomes"] for r in records])
    return summarise_outcomes([r.episode_return for r in records], outcomes, ranks)
