"""One batched design-assessment step, shared by the single env, the search env,
the torch vector env and the oracle, so that they cannot disagree.

Feasibility rule (documented once, here): a formulation outside the chosen polymer's
feasible window is clipped into it, component by component; ``clipped`` reports it and
``formulation_used`` holds the values that were scored. Non-conductive polymers have the
window [0, 0] S/m, so their conductivity is always 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from envs.hydrogel.surrogate import OutcomeModel, check_predictions
from rewards.hydrogel import RewardWeights, composite_reward, is_optimal, is_therapeutic

__all__ = ["Assessment", "clip_to_window", "assess_designs"]


@dataclass(frozen=True)
class Assessment:
    """Everything known about a batch of B designs; every tensor is (B,) unless noted."""

    predictions: dict[str, Tensor]
    components: dict[str, Tensor]
    """Reward components plus ``design_score`` and ``total``."""
    is_optimal: Tensor
    therapeutic: Tensor
    clipped: Tensor
    formulation_used: Tensor
    """(B, 4) in physical units."""

    @property
    def reward(self) -> Tensor:
        return self.components["total"]

    @property
    def design_score(self) -> Tensor:
        return self.components["design_score"]


def clip_to_window(polymer: Tensor, formulation: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """Clip (B, 4) formulations into the (24, 4) windows of their polymers.

    Returns the used formulation (B, 4) and whether any component moved (B,) bool.
    """
    lo, hi = low[polymer], high[polymer]  # (B, 4)
    used = torch.minimum(torch.maximum(formulation, lo), hi)  # (B, 4)
    return used, (used != formulation).any(dim=-1)


def assess_designs(
    patients: Tensor,
    polymer: Tensor,
    formulation: Tensor,
    coverage: Tensor,
    novel: Tensor,
    *,
    model: OutcomeModel,
    window_low: Tensor,
    window_high: Tensor,
    weights: RewardWeights = RewardWeights(),
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    source: str = "outcome model",
) -> Assessment:
    """Clip to the feasible window, predict outcomes, score.

    Args:
        patients: (B, 11) raw patient features.
        polymer, coverage: (B,) long indices. formulation: (B, 4) physical units.
        novel: (B,) bool, polymer not tried before in this episode.
        noise_std: relative std of multiplicative noise on delta_EF, stress reduction and
            strain normalisation (0 = deterministic), drawn from ``generator``.
        source: names the model in errors about its output
            (:func:`~envs.hydrogel.surrogate.describe_outcome_model`).
    """
    used, clipped = clip_to_window(polymer, formulation, window_low, window_high)
    with torch.no_grad():
        raw = model(patients, polymer, used, coverage)
    predictions = check_predictions(raw, batch=patients.shape[0], source=source)
    if noise_std > 0.0:
        noise = 1.0 + noise_std * torch.randn((3, patients.shape[0]), generator=generator, device=patients.device)
        predictions["delta_EF"] = (predictions["delta_EF"] * noise[0]).clamp(min=0.0)
        predictions["stress_reduction"] = (predictions["stress_reduction"] * noise[1]).clamp(min=0.0)
        predictions["strain_normalization"] = (predictions["strain_normalization"] * noise[2]).clamp(min=0.0)
    return Assessment(
        predictions=predictions,
        components=composite_reward(predictions, novel, weights),
        is_optimal=is_optimal(predictions),
        therapeutic=is_therapeutic(predictions),
        clipped=clipped,
        formulation_used=used,
    )
