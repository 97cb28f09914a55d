"""Hydrogel-v0 / HydrogelSearch-v0 science metrics, from episode infos.

For each episode the best design it proposed counts (the only one, in Hydrogel-v0).
:func:`summarise` reports ``mean_reward``, ``std_reward``, ``n_episodes``,
``mean_design_score``, ``optimal_rate``, ``therapeutic_rate``, ``mean_regret``,
``median_regret``, ``max_regret`` (against the per-patient oracle, when the env has
one), ``clipped_rate`` (designs clipped into the polymer's window, over every step),
``polymer_distribution``, ``coverage_distribution``, ``n_distinct_polymers`` and, with an
oracle, ``oracle_polymer_distribution`` (the oracle's best polymer of each episode's
patient, counted the same way; :func:`oracle_polymer_distribution`) and
``oracle_polymer_rate`` (episodes whose best design uses the oracle's polymer).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.episodes import EpisodeRecord

__all__ = ["cohort_facts", "oracle_polymer_distribution", "summarise"]


def oracle_polymer_distribution(records: Sequence[EpisodeRecord]) -> dict[str, float]:
    """Fraction of episodes whose patient has each polymer as the oracle's best (most common first)."""
    counts = Counter(r.infos[0]["oracle_polymer_name"] for r in records)
    return {k: v / len(records) for k, v in counts.most_common()}


def summarise(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """The metrics of the module docstring from finished episodes."""
    best_steps = [max(r.infos, key=lambda info: info["design_score"]) for r in records]
    returns = np.array([r.episode_return for r in records])
    regrets = np.array([info["regret"] for info in best_steps]) if "regret" in best_steps[0] else None
    n = len(records)
    polymers = Counter(info["polymer_name"] for info in best_steps)
    coverages = Counter(info["coverage_name"] for info in best_steps)
    summary: dict[str, Any] = {
        "mean_reward": float(returns.mean()),
        "std_reward": float(returns.std()),
        "n_episodes": n,
        "mean_design_score": float(np.mean([info["design_score"] for info in best_steps])),
        "optimal_rate": float(np.mean([info["is_optimal"] for info in best_steps])),
        "therapeutic_rate": float(np.mean([info["therapeutic"] for info in best_steps])),
        "clipped_rate": float(np.mean([info["clipped"] for r in records for info in r.infos])),
        "polymer_distribution": {k: v / n for k, v in polymers.most_common()},
        "coverage_distribution": {k: v / n for k, v in coverages.most_common()},
        "n_distinct_polymers": len(polymers),
    }
    if "oracle_polymer_name" in best_steps[0]:
        summary["oracle_polymer_distribution"] = oracle_polymer_distribution(records)
        summary["oracle_polymer_rate"] = float(
            np.mean([info["polymer_name"] == info["oracle_polymer_name"] for info in best_steps])
        )
    if regrets is not None:
        summary.update(
            mean_regret=float(regrets.mean()), median_regret=float(np.median(regrets)), max_regret=float(regrets.max())
        )
    return summary


def cohort_facts(context: Any) -> dict[str, Any]:
    """Evaluation extras: the number of test patients."""
    return {"n_test_patients": context.env.unwrapped.n_cases}
