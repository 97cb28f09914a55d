"""The HYDRA-BERT Stage 2 composite reward (seed 003, section 2), batched in torch.

    reward = 3.0 * delta_EF + 1.5 * stress_reduction / 100 + 1.0 * optimal_prob
             - 2.0 [toxicity > 0.15] - 1.0 [structural_integrity < 0.80]
             - 0.5 [fibrosis_risk > 0.20] + 0.1 [polymer not tried before]

Every weight and threshold is a field of :class:`RewardWeights`. The components are
returned separately and sum to ``total``; ``design_score`` is the total without the
exploration bonus (what a design is worth, whatever was tried before).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
from torch import Tensor

__all__ = ["RewardWeights", "COMPONENT_NAMES", "composite_reward", "is_optimal", "is_therapeutic"]

COMPONENT_NAMES: tuple[str, ...] = (
    "delta_ef_term",
    "stress_term",
    "optimal_term",
    "toxicity_penalty",
    "integrity_penalty",
    "fibrosis_penalty",
    "novelty_bonus",
)


@dataclass(frozen=True)
class RewardWeights:
    """Weights and thresholds of the composite reward (defaults: the seed's)."""

    delta_ef: float = 3.0
    """Per %-point of EF gain."""
    stress_reduction: float = 1.5
    """Per unit of stress reduction / 100 (i.e. per 100 %)."""
    optimal_prob: float = 1.0
    """Per unit of P(optimal)."""
    toxicity_penalty: float = 2.0
    """Subtracted when toxicity exceeds ``toxicity_limit``."""
    toxicity_limit: float = 0.15
    integrity_penalty: float = 1.0
    """Subtracted when structural integrity is below ``integrity_limit``."""
    integrity_limit: float = 0.80
    fibrosis_penalty: float = 0.5
    """Subtracted when fibrosis risk exceeds ``fibrosis_limit``."""
    fibrosis_limit: float = 0.20
    novelty_bonus: float = 0.1
    """Added for a polymer not yet tried (in this episode)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
                raise ValueError(f"RewardWeights.{f.name} must be a finite number, got {value!r}")


def composite_reward(
    predictions: Mapping[str, Tensor], novel: Tensor, weights: RewardWeights = RewardWeights()
) -> dict[str, Tensor]:
    """Reward components, ``design_score`` and ``total``, each (B,).

    Args:
        predictions: outcome-model outputs, each (B,).
        novel: (B,) bool, True when the polymer had not been tried before.
    """
    w = weights
    components = {
        "delta_ef_term": w.delta_ef * predictions["delta_EF"],
        "stress_term": w.stress_reduction * predictions["stress_reduction"] / 100.0,
        "optimal_term": w.optimal_prob * predictions["optimal_prob"],
        "toxicity_penalty": -w.toxicity_penalty * (predictions["toxicity"] > w.toxicity_limit).float(),
        "integrity_penalty": -w.integrity_penalty * (predictions["structural_integrity"] < w.integrity_limit).float(),
        "fibrosis_penalty": -w.fibrosis_penalty * (predictions["fibrosis_risk"] > w.fibrosis_limit).float(),
        "novelty_bonus": w.novelty_bonus * novel.float(),
    }
    total = torch.stack([components[name] for name in COMPONENT_NAMES]).sum(0)  # (B,)
    return {**components, "design_score": total - components["novelty_bonus"], "total": total}


def is_optimal(predictions: Mapping[str, Tensor]) -> Tensor:
    """The project's success rule: delta_EF >= 3 and stress_reduction >= 15 (B,) bool."""
    return (predictions["delta_EF"] >= 3.0) & (predictions["stress_reduction"] >= 15.0)


def is_therapeutic(predictions: Mapping[str, Tensor]) -> Tensor:
    """delta_EF >= 5, stress_reduction >= 25 and strain_normalization >= 15 (B,) bool."""
    return (
        (predictions["delta_EF"] >= 5.0)
        & (predictions["stress_reduction"] >= 25.0)
        & (predictions["strain_normalization"] >= 15.0)
    )
