"""The default Stage 1 stand-in: a transparent, batched outcome model.

HYDRA-BERT's Stage 1 predictor was never published, so the default reward model is
this documented function. Every term is a rule of thumb recurring in that project's
code (``shared/reference/hydrogel.md``); each has a one-line rationale below. It is
deterministic; the env's ``noise_std`` kwarg adds seeded noise on top of any model.

Inputs (batch B): ``patients (B, 11)`` raw features in :data:`cohort.FEATURE_NAMES`
order; ``polymer (B,)`` long; ``formulation (B, 4)`` stiffness kPa, half-life days,
conductivity S/m, thickness mm, already inside the polymer's feasible window;
``coverage (B,)`` long. Output: :data:`PREDICTION_NAMES` -> (B,) float tensors.

A user's trained Stage 1 model replaces this by the env's ``outcome_model`` kwarg: any
callable or ``nn.Module`` with the same signature, or the path of a TorchScript file
(:func:`load_outcome_model`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from envs.hydrogel.library import COVERAGE_BORDER_FRACTION, Category, polymer_table

__all__ = [
    "PREDICTION_NAMES",
    "OutcomeModel",
    "SurrogateOutcomeModel",
    "load_outcome_model",
    "check_predictions",
]

PREDICTION_NAMES: tuple[str, ...] = (
    "delta_EF",
    "stress_reduction",
    "strain_normalization",
    "optimal_prob",
    "toxicity",
    "structural_integrity",
    "fibrosis_risk",
    "arrhythmia_risk",
)
"""delta_EF: absolute LVEF gain in %-points; stress_reduction and strain_normalization in
% of the untreated value; the rest are probabilities / fractions in [0, 1]."""

OutcomeModel = Callable[[Tensor, Tensor, Tensor, Tensor], Mapping[str, Tensor]]

# Bioactivity by material family: ECM-derived gels carry native repair cues, synthetics are inert.
_BIOACTIVITY = {
    Category.DECELLULARIZED: 1.00,
    Category.GLYCOSAMINOGLYCAN: 0.96,
    Category.PROTEIN_MODIFIED: 0.93,
    Category.CONDUCTIVE_HYDROGEL: 0.91,
    Category.POLYSACCHARIDE: 0.90,
    Category.PROTEIN: 0.88,
    Category.SYNTHETIC: 0.86,
    Category.CONDUCTIVE: 0.84,
}

LN2 = math.log(2.0)


class SurrogateOutcomeModel(torch.nn.Module):
    """Documented outcome model; ``forward(patients, polymer, formulation, coverage)``."""

    cache_key = "surrogate-v2"
    """Changes whenever a formula changes: it keys the oracle cache on disk."""

    def __init__(self) -> None:
        super().__init__()
        table = polymer_table()
        bio = torch.tensor([_BIOACTIVITY[Category(int(c))] for c in table["category"]])
        self.register_buffer("toxicity_by_polymer", table["toxicity"], persistent=False)
        self.register_buffer("bioactivity_by_polymer", bio, persistent=False)
        self.register_buffer(
            "border_fraction", torch.tensor(COVERAGE_BORDER_FRACTION, dtype=torch.float32), persistent=False
        )

    def forward(
        self,
        patients: Tensor,
        polymer: Tensor,
        formulation: Tensor,
        coverage: Tensor,
    ) -> dict[str, Tensor]:
        lvef, _, _, _, scar, bz, _, _, concentration, transmurality, wall = patients.unbind(-1)  # each (B,)
        stiffness, half_life, conductivity, thickness = formulation.unbind(-1)  # each (B,)
        bz_covered = self.border_fraction[coverage]  # (B,) fraction of the border zone
        bioactivity = self.bioactivity_by_polymer[polymer]  # (B,)

        # Matched stiffness transfers load without restricting motion; thicker scars want stiffer gels.
        stiffness_opt = 10.0 + 20.0 * transmurality  # (B,) kPa
        stiffness_match = torch.exp(-0.5 * (torch.log(stiffness / stiffness_opt) / 0.45) ** 2)
        # The gel must support the wall while the scar matures (longer for bigger scars), then clear.
        half_life_opt = 45.0 + 4.0 * scar  # (B,) days
        persistence = torch.exp(-0.5 * (torch.log(half_life / half_life_opt) / 0.6) ** 2)
        # About a fifth of the wall thickness carries load; thicker patches restrict filling.
        thickness_opt = (0.2 * wall).clamp(1.0, 5.0)  # (B,) mm
        thickness_match = torch.exp(-0.5 * ((thickness - thickness_opt) / 1.2) ** 2)
        # Treating the border zone stops remodelling from spreading (factors 0.6 -> 1.0) ...
        coverage_gain = 0.6 + 0.4 * bz_covered
        # ... but a patch over more than ~25 % of the ventricle restricts diastolic filling.
        covered_area = scar + bz_covered * bz  # (B,) % of LV
        restriction = torch.exp(-0.5 * ((covered_area - 25.0).clamp(min=0.0) / 5.0) ** 2)
        # Conductive gels restore border-zone conduction only above ~0.1 S/m, saturating by 0.5 S/m.
        conduction = ((conductivity - 0.1) / 0.4).clamp(0.0, 1.0)
        # Their benefit grows with the arrhythmic substrate (stress concentration) they cover.
        substrate = ((concentration - 2.0) / 1.0).clamp(0.0, 1.0)
        conduction_gain = 1.0 + 0.3 * conduction * substrate * (0.3 + 0.7 * bz_covered)
        efficacy = (
            bioactivity * stiffness_match * persistence * thickness_match * coverage_gain * restriction * conduction_gain
        )  # (B,) in [0, ~1.3]
        # EF gain is limited by headroom to a normal EF of ~60 %, capped at 15 points.
        delta_ef = (25.0 * (1.0 - lvef / 60.0).clamp(min=0.0) * efficacy).clamp(max=15.0)

        # Laplace: the patch shares wall load in proportion to its stiffness x thickness.
        retention_30d = torch.exp(-30.0 * LN2 / half_life)  # (B,) gel fraction left at 30 days
        load_share = stiffness * thickness / (stiffness * thickness + 20.0 * wall)  # myocardium ~20 kPa
        # Relief is largest where the border zone concentrates stress.
        concentration_gain = 0.5 + 0.5 * (concentration / 2.2).clamp(max=1.5)
        stress_reduction = (
            180.0 * load_share * (0.4 + 0.6 * bz_covered) * retention_30d.sqrt() * concentration_gain * restriction
        ).clamp(0.0, 60.0)
        # Strain normalises where matched, well-placed gel restores regional motion.
        strain_normalization = 35.0 * stiffness_match * thickness_match * coverage_gain * restriction * persistence

        # Smooth version of the is_optimal rule (dEF >= 3 and SR >= 15).
        optimal_prob = torch.sigmoid((delta_ef - 3.0) / 0.5) * torch.sigmoid((stress_reduction - 15.0) / 2.5)
        # Cytotoxicity is a property of the material.
        toxicity = self.toxicity_by_polymer[polymer]
        # Stiffer networks resist rupture; fast-degrading ones lose integrity within a month.
        structural_integrity = (1.0 - torch.exp(-stiffness / 4.0)) * (0.6 + 0.4 * retention_30d)
        # Mismatch, long persistence, excess thickness and wide coverage all drive a foreign-body response.
        fibrosis_risk = (
            0.04
            + 0.10 * torch.log(stiffness / stiffness_opt).abs()
            + 0.12 * (half_life / 180.0) ** 2
            + 0.04 * (thickness - thickness_opt).clamp(min=0.0)
            + 0.03 * bz_covered
        ).clamp(0.0, 1.0)
        # Arrhythmia: substrate risk, lowered by conduction, raised by insulating gel over the border zone.
        arrhythmia_risk = (
            0.1 + 0.15 * (concentration - 1.5).clamp(min=0.0)
            - 0.12 * conduction * bz_covered
            + 0.03 * (thickness / 5.0) * bz_covered * (conduction == 0).float()
        ).clamp(0.0, 1.0)
        return {
            "delta_EF": delta_ef,
            "stress_reduction": stress_reduction,
            "strain_normalization": strain_normalization,
            "optimal_prob": optimal_prob,
            "toxicity": toxicity,
            "structural_integrity": structural_integrity,
            "fibrosis_risk": fibrosis_risk,
            "arrhythmia_risk": arrhythmia_risk,
        }


def load_outcome_model(model: OutcomeModel | str | os.PathLike[str] | None) -> OutcomeModel:
    """Resolve the env's ``outcome_model`` kwarg.

    ``None`` -> :class:`SurrogateOutcomeModel`; a path -> ``torch.jit.load`` of a
    TorchScript module with the same signature; a callable is used as is.
    """
    if model is None:
        return SurrogateOutcomeModel()
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"outcome_model: TorchScript file {str(path)!r} does not exist")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as err:
            raise ValueError(f"outcome_model: {str(path)!r} is not a TorchScript file ({err})") from None
    if not callable(model):
        raise TypeError(f"outcome_model must be None, a callable or a TorchScript path, got {type(model).__name__}")
    return model


def check_predictions(predictions: Mapping[str, Tensor], batch: int) -> dict[str, Tensor]:
    """Validate a model's output: every name present, shape (B,), finite. Returns float32 tensors."""
    missing = [name for name in PREDICTION_NAMES if name not in predictions]
    if missing:
        raise ValueError(f"outcome model output lacks {missing}; it must return {list(PREDICTION_NAMES)}")
    checked: dict[str, Tensor] = {}
    for name in PREDICTION_NAMES:
        value = torch.as_tensor(predictions[name]).float().reshape(-1)
        if value.shape[0] != batch:
            raise ValueError(f"outcome model output {name!r} has {value.shape[0]} values, expected {batch}")
        if not torch.isfinite(value).all():
            raise ValueError(f"outcome model output {name!r} is not finite: {value.tolist()[:5]}")
        checked[name] = value
    return checked
