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

from envs.errors import first_line
from envs.hydrogel.library import COVERAGE_BORDER_FRACTION, Category, polymer_table

__all__ = [
    "PREDICTION_NAMES",
    "OutcomeModel",
    "SurrogateOutcomeModel",
    "load_outcome_model",
    "describe_outcome_model",
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

# Native repair cues by material family (angiogenic / pro-survival signalling of ECM-derived
# gels; methacrylated or ionically cross-linked gels keep part of it; synthetics have none).
_BIOACTIVITY = {
    Category.DECELLULARIZED: 0.70,
    Category.GLYCOSAMINOGLYCAN: 0.65,
    Category.PROTEIN: 0.55,
    Category.PROTEIN_MODIFIED: 0.45,
    Category.CONDUCTIVE_HYDROGEL: 0.35,
    Category.POLYSACCHARIDE: 0.30,
    Category.SYNTHETIC: 0.0,
    Category.CONDUCTIVE: 0.0,
}
# Susceptibility to enzymatic (MMP / hyaluronidase / lysozyme) degradation: in an
# inflamed, MMP-rich infarct, natural gels lose mass faster than their nominal half-life;
# hydrolytic synthetics (PEG) and PEDOT do not.
_ENZYMATIC = {
    Category.DECELLULARIZED: 1.00,
    Category.PROTEIN: 1.00,
    Category.PROTEIN_MODIFIED: 0.75,
    Category.GLYCOSAMINOGLYCAN: 0.65,
    Category.CONDUCTIVE_HYDROGEL: 0.55,
    Category.POLYSACCHARIDE: 0.35,
    Category.SYNTHETIC: 0.0,
    Category.CONDUCTIVE: 0.0,
}

LN2 = math.log(2.0)


def _unit(x: Tensor, low: float, high: float) -> Tensor:
    """``(x - low) / (high - low)`` clipped to [0, 1]: where a patient sits on an indication."""
    return ((x - low) / (high - low)).clamp(0.0, 1.0)


def _log_match(value: Tensor, optimum: Tensor, width: float) -> Tensor:
    """Log-normal-shaped match in (0, 1]: 1 at the optimum, ``exp(-1/2)`` at ``width`` decades (e-folds) off."""
    return torch.exp(-0.5 * (torch.log(value / optimum) / width) ** 2)


class SurrogateOutcomeModel(torch.nn.Module):
    """Documented outcome model; ``forward(patients, polymer, formulation, coverage)``.

    Version 3. The best design depends on the patient through four indications read off
    the features, each in [0, 1]:

    - ``load``: transmurality, scar size and dilation (end-systolic volume) -> the stiffness
      and persistence the wall needs (4 kPa for a small subendocardial scar, ~60 kPa for a
      large transmural one in a dilated ventricle);
    - ``inflammation``: scar size -> how much faster enzymatically degradable gels vanish;
    - ``viability``: non-transmural scar with preserved strain (GLS) -> benefit from the
      native repair cues of bioactive natural gels;
    - ``substrate``: stress concentration and border-zone size -> benefit from conductive
      gels (and harm from insulating gel spread over the border zone).
    Wall thickness sets the patch thickness (thin walls penalise thick patches) and the
    filling-restriction limit; LVEF sets the headroom and how mechanical vs biological
    support is weighted.
    """

    cache_key = "surrogate-v3"
    """Changes whenever a formula changes: it keys the oracle cache on disk."""

    def __init__(self) -> None:
        super().__init__()
        table = polymer_table()
        categories = [Category(int(c)) for c in table["category"]]
        self.register_buffer("toxicity_by_polymer", table["toxicity"], persistent=False)
        self.register_buffer("bioactivity_by_polymer", torch.tensor([_BIOACTIVITY[c] for c in categories]), persistent=False)
        self.register_buffer("enzymatic_by_polymer", torch.tensor([_ENZYMATIC[c] for c in categories]), persistent=False)
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
        lvef, gls, _, esv, scar, bz, _, _, concentration, transmurality, wall = patients.unbind(-1)  # each (B,)
        stiffness, half_life, conductivity, thickness = formulation.unbind(-1)  # each (B,)
        bz_covered = self.border_fraction[coverage]  # (B,) fraction of the border zone
        toxicity = self.toxicity_by_polymer[polymer]  # (B,)

        # -- patient indications, each (B,) in [0, 1]
        dilation = _unit(torch.log(esv / 60.0), 0.0, math.log(5.0))  # ESV 60 -> 300 mL: remodelled, high wall stress
        load = (0.5 * _unit(transmurality, 0.25, 0.95) + 0.3 * _unit(scar, 4.0, 30.0) + 0.2 * dilation).clamp(0.0, 1.0)
        inflammation = _unit(scar, 4.0, 30.0)
        viability = _unit(0.65 - transmurality, 0.0, 0.35) * _unit(-gls, 10.0, 20.0)
        substrate = _unit(concentration, 2.2, 3.6) * _unit(bz, 10.0, 28.0)

        # -- mechanics: the wall needs a stiffer patch the more load the scar has to shed
        stiffness_opt = 4.0 * torch.exp(math.log(15.0) * load)  # (B,) kPa, 4 -> 60
        stiffness_match = _log_match(stiffness, stiffness_opt, 0.7)
        # The gel must last until the scar has matured: weeks for small scars, months for large.
        half_life_opt = (18.0 + 4.5 * scar).clamp(14.0, 180.0)  # (B,) days
        # MMP-rich large infarcts digest natural gels faster than their nominal half-life.
        effective_half_life = half_life / (1.0 + 1.6 * self.enzymatic_by_polymer[polymer] * inflammation)
        persistence = _log_match(effective_half_life, half_life_opt, 0.55)
        # About a fifth of the wall carries load; a patch thicker than that stiffens a thin wall
        # and restricts filling (penalised twice as fast as a too-thin patch).
        thickness_opt = (0.2 * wall).clamp(1.0, 5.0)  # (B,) mm
        excess = thickness - thickness_opt
        thickness_match = torch.exp(-0.5 * (excess / torch.where(excess > 0, 0.7, 1.4)) ** 2)
        # Treating the border zone stops remodelling from spreading (factors 0.6 -> 1.0) ...
        coverage_gain = 0.6 + 0.4 * bz_covered
        # ... but a patch over more than ~25 % of the ventricle restricts diastolic filling.
        covered_area = scar + bz_covered * bz  # (B,) % of LV
        restriction = torch.exp(-0.5 * ((covered_area - 25.0).clamp(min=0.0) / 8.0) ** 2)
        mechanical = stiffness_match * persistence * thickness_match

        # -- biology: native cues help where there is viable myocardium to save; the lower
        # the EF, the more the ventricle depends on mechanical unloading instead.
        ef_weight = _unit(lvef, 20.0, 45.0)
        biological = 0.55 * self.bioactivity_by_polymer[polymer] * viability * (0.5 + 0.5 * ef_weight)
        # -- electrophysiology: conductive gels restore border-zone conduction above ~0.1 S/m
        # (saturating by 0.5 S/m) where there is an arrhythmic substrate; insulating gel over
        # that border zone slows conduction further.
        conduction = ((conductivity - 0.1) / 0.4).clamp(0.0, 1.0)
        electrical = substrate * (0.6 * conduction - 0.25 * (1.0 - conduction)) * (0.3 + 0.7 * bz_covered)
        # -- host response: less biocompatible materials lose efficacy to inflammation.
        host = 1.0 - 1.5 * toxicity

        efficacy = (
            mechanical * coverage_gain * restriction * (1.0 + biological + electrical).clamp(min=0.0) * host
        )  # (B,) in [0, ~1.5]
        # EF gain is limited by headroom to a normal EF of ~60 %, capped at 15 points.
        delta_ef = (25.0 * (1.0 - lvef / 60.0).clamp(min=0.0) * efficacy).clamp(max=15.0)

        # Laplace: the patch shares wall load in proportion to its stiffness x thickness, against
        # the wall's own (stiffness the scarred wall needs x wall thickness).
        retention_30d = torch.exp(-30.0 * LN2 / effective_half_life)  # (B,) gel fraction left at 30 days
        load_share = stiffness * thickness / (stiffness * thickness + stiffness_opt * wall)
        # Relief is largest where the border zone concentrates stress.
        concentration_gain = 0.5 + 0.5 * (concentration / 2.2).clamp(max=1.5)
        stress_reduction = (
            180.0 * load_share * (0.4 + 0.6 * bz_covered) * retention_30d.sqrt() * concentration_gain * restriction
        ).clamp(0.0, 60.0)
        # Strain normalises where matched, well-placed gel restores regional motion.
        strain_normalization = 35.0 * mechanical * coverage_gain * restriction

        # Smooth version of the is_optimal rule (dEF >= 3 and SR >= 15).
        optimal_prob = torch.sigmoid((delta_ef - 3.0) / 0.5) * torch.sigmoid((stress_reduction - 15.0) / 2.5)
        # Stiffer networks resist rupture; fast-degrading ones lose integrity within a month.
        structural_integrity = (1.0 - torch.exp(-stiffness / 4.0)) * (0.6 + 0.4 * retention_30d)
        # Mismatch, long persistence, excess thickness and wide coverage all drive a foreign-body response.
        fibrosis_risk = (
            0.04
            + 0.10 * torch.log(stiffness / stiffness_opt).abs()
            + 0.12 * (effective_half_life / 180.0) ** 2
            + 0.04 * excess.clamp(min=0.0)
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
        except RuntimeError as err:  # torch's message spans lines; its first says what failed
            raise ValueError(f"outcome_model: {str(path)!r} is not a TorchScript file ({first_line(err)})") from None
    if not callable(model):
        raise TypeError(f"outcome_model must be None, a callable or a TorchScript path, got {type(model).__name__}")
    return model


def describe_outcome_model(model: OutcomeModel | str | os.PathLike[str] | None) -> str:
    """How errors name the env's ``outcome_model`` kwarg: the TorchScript file, or the
    callable's name (a user's model that misbehaves must be identifiable in one line)."""
    if model is None:
        return f"outcome model {SurrogateOutcomeModel.__name__}"
    if isinstance(model, (str, os.PathLike)):
        return f"outcome_model {str(Path(model))!r}"
    return f"outcome_model {getattr(model, '__qualname__', None) or type(model).__name__}"


def check_predictions(predictions: Mapping[str, Tensor], batch: int, source: str = "outcome model") -> dict[str, Tensor]:
    """Validate a model's output: a mapping with every name, B values each, finite.
    Returns float32 (B,) tensors. ``source`` names the model in errors
    (:func:`describe_outcome_model`)."""
    if not isinstance(predictions, Mapping):
        raise ValueError(
            f"{source} returned a {type(predictions).__name__}; it must return a dict of (B,) tensors"
            f" with keys {list(PREDICTION_NAMES)}"
        )
    missing = [name for name in PREDICTION_NAMES if name not in predictions]
    if missing:
        raise ValueError(f"{source} output lacks {missing}; it must return {list(PREDICTION_NAMES)}")
    checked: dict[str, Tensor] = {}
    for name in PREDICTION_NAMES:
        try:
            raw = torch.as_tensor(predictions[name])
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{source} output {name!r} is not a tensor of numbers ({first_line(err)})") from None
        value = raw.float().reshape(-1)
        if value.shape[0] != batch:
            raise ValueError(
                f"{source} output {name!r} has shape {tuple(raw.shape)} ({value.shape[0]} values), expected ({batch},)"
            )
        if not torch.isfinite(value).all():
            raise ValueError(f"{source} output {name!r} is not finite: {value.tolist()[:5]}")
        checked[name] = value
    return checked
