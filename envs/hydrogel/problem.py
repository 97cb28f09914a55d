"""What every hydrogel env shares: patients, outcome model, reward weights, oracle.

Single envs (:mod:`envs.hydrogel.env`) and the torch vector env
(:mod:`envs.hydrogel.vector`) hold one :class:`DesignProblem` and call its batched
:meth:`DesignProblem.assess` and :meth:`DesignProblem.observations`, so their dynamics
cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from envs.hydrogel.cohort import Cohort, make_cohort, normalise_features
from envs.hydrogel.library import polymer_table
from envs.hydrogel.oracle import DesignOracle, OptimalDesign
from envs.hydrogel.outcome import Assessment, assess_designs
from envs.hydrogel.surrogate import OutcomeModel, describe_outcome_model, load_outcome_model
from envs.splits import Split, parse_split
from rewards.hydrogel import RewardWeights

__all__ = [
    "DesignProblem",
    "OBSERVATION_SIZE",
    "SCORE_SCALE",
    "OBSERVATION_LIMIT",
    "reward_weights_from",
    "as_numpy_info",
]

OBSERVATION_SIZE = 13
SCORE_SCALE = 10.0
"""The best-score observation is ``best_design_score / SCORE_SCALE``."""
OBSERVATION_LIMIT = 10.0
"""Observation bounds are +-OBSERVATION_LIMIT."""


def reward_weights_from(value: RewardWeights | Mapping[str, float] | None) -> RewardWeights:
    """Accept a :class:`RewardWeights`, a mapping of some of its fields, or None (defaults)."""
    if value is None:
        return RewardWeights()
    if isinstance(value, RewardWeights):
        return value
    if isinstance(value, Mapping):
        valid = set(RewardWeights.__dataclass_fields__)
        unknown = set(value) - valid
        if unknown:
            raise ValueError(f"reward_weights: unknown fields {sorted(unknown)}; valid: {sorted(valid)}")
        return RewardWeights(**value)
    raise TypeError(f"reward_weights must be RewardWeights, a mapping or None, got {type(value).__name__}")


class DesignProblem:
    """The patients of one split and how designs for them are scored.

    Args: see :class:`envs.hydrogel.env.HydrogelEnv` (``split``, ``cohort``,
    ``n_synthetic``, ``synthetic_seed``, ``outcome_model``, ``reward_weights``,
    ``noise_std``, ``compute_regret``, ``device``, ``cache_dir``).
    """

    def __init__(
        self,
        split: Split | str = "train",
        cohort: str = "augmented",
        n_synthetic: int = 200,
        synthetic_seed: int = 0,
        outcome_model: OutcomeModel | str | os.PathLike[str] | None = None,
        reward_weights: RewardWeights | Mapping[str, float] | None = None,
        noise_std: float = 0.0,
        compute_regret: bool = True,
        device: str | torch.device = "cpu",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or not 0.0 <= noise_std < float("inf"):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        self.cohort: Cohort = make_cohort(cohort, split, n_synthetic, synthetic_seed)
        self.split = parse_split(split)
        self.device = torch.device(device)
        model = load_outcome_model(outcome_model)
        self.model_source = describe_outcome_model(outcome_model)
        """How errors about the model's output name it (its TorchScript file or its name)."""
        self.model = model.to(self.device) if isinstance(model, torch.nn.Module) else model
        self.weights = reward_weights_from(reward_weights)
        self.noise_std = float(noise_std)
        self.cache_dir = cache_dir
        """The cache root override (oracle and reference searches)."""
        table = polymer_table(self.device)
        self.window_low, self.window_high = table["low"], table["high"]  # (24, 4) each
        self.patients = torch.as_tensor(self.cohort.features, dtype=torch.float32, device=self.device)  # (P, 11)
        self.normalised = torch.as_tensor(normalise_features(self.cohort.features), device=self.device)  # (P, 11)
        self.best_achievable: Tensor | None = None  # (P,) oracle design scores
        self.oracle_polymer: Tensor | None = None  # (P,) the oracle's best polymer
        self.oracle: DesignOracle | None = None
        self.optimal_designs: list[OptimalDesign] = []
        """The oracle's best design of every patient of the split (empty without regret)."""
        if compute_regret:
            self.oracle = DesignOracle(self.model, self.weights, getattr(self.model, "cache_key", None), cache_dir,
                                       source=self.model_source)
            self.optimal_designs = self.oracle.precompute(self.cohort.features)  # once; later envs read the cache
            best = self.optimal_designs
            self.best_achievable = torch.tensor([b.design_score for b in best], device=self.device)
            self.oracle_polymer = torch.tensor([b.polymer for b in best], dtype=torch.long, device=self.device)
        if not torch.all(self.normalised.abs() <= OBSERVATION_LIMIT):
            raise ValueError("patient features normalise outside +-10; check FEATURE_CENTER / FEATURE_SCALE")

    def __len__(self) -> int:
        return len(self.cohort)

    def assess(
        self,
        patient_index: Tensor,
        polymer: Tensor,
        formulation: Tensor,
        coverage: Tensor,
        novel: Tensor,
        generator: torch.Generator | None = None,
    ) -> Assessment:
        """Score B designs for the patients ``patient_index`` (B,) long."""
        return assess_designs(
            self.patients[patient_index], polymer, formulation, coverage, novel,
            model=self.model, window_low=self.window_low, window_high=self.window_high,
            weights=self.weights, noise_std=self.noise_std, generator=generator, source=self.model_source,
        )

    @staticmethod
    def episode_reward(assessment: Assessment, best_score: Tensor, horizon: int) -> Tensor:
        """Reward of B designs (B,). Single-step episodes (``horizon == 1``): the composite
        reward. Search episodes: the first design's score, then the improvement of the best
        score ``max(0, score - best)``, plus the novelty bonus. ``best_score`` (B,) is NaN
        before the first design."""
        if horizon == 1:
            return assessment.reward
        score = assessment.design_score
        improvement = torch.where(torch.isnan(best_score), score, (score - best_score).clamp(min=0.0))
        return improvement + assessment.components["novelty_bonus"]

    def regret(self, patient_index: Tensor, design_score: Tensor) -> Tensor | None:
        """``(best - score) / |best|`` per design (B,), or None without an oracle."""
        if self.best_achievable is None:
            return None
        best = self.best_achievable[patient_index]
        return (best - design_score) / best.abs().clamp(min=1e-6)

    def observations(self, patient_index: Tensor, best_score: Tensor, progress: Tensor) -> Tensor:
        """(B, 13) float32: normalised features, clipped best score / 10, progress.

        ``best_score`` (B,) uses NaN for "no design yet" (observed as 0).
        """
        best = torch.nan_to_num(best_score / SCORE_SCALE, nan=0.0).clamp(-OBSERVATION_LIMIT, OBSERVATION_LIMIT)
        return torch.cat([self.normalised[patient_index], best[:, None], progress[:, None]], dim=1).float()

    def info_arrays(self, assessment: Assessment, patient_index: Tensor) -> dict[str, Any]:
        """Per-design science for infos: predictions, components, flags, regret (tensors (B,))."""
        info: dict[str, Any] = {**assessment.predictions, **assessment.components}
        info.update(
            is_optimal=assessment.is_optimal,
            therapeutic=assessment.therapeutic,
            clipped=assessment.clipped,
            formulation_used=assessment.formulation_used,
        )
        regret = self.regret(patient_index, assessment.design_score)
        if regret is not None:
            info["regret"] = regret
            info["best_achievable"] = self.best_achievable[patient_index]
            info["oracle_polymer"] = self.oracle_polymer[patient_index]
        return info


def as_numpy_info(info: Mapping[str, Any], row: int) -> dict[str, Any]:
    """One design's info as Python scalars / NumPy arrays."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, Tensor):
            item = value[row].detach().cpu()
            out[key] = item.numpy() if item.ndim else item.item()
        else:
            out[key] = value
    return out
