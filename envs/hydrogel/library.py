"""The hydrogel design space: 24 polymers, 4 formulation parameters, 4 coverage options.

Polymer facts (category, feasible stiffness / half-life / conductivity ranges,
biocompatibility) come from the HYDRA-BERT repository's polymer table
(``shared/reference/hydrogel.md``). Toxicity of a polymer is ``1 - biocompatibility``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Category",
    "Coverage",
    "Polymer",
    "POLYMERS",
    "N_POLYMERS",
    "FORMULATION_NAMES",
    "FORMULATION_UNITS",
    "FORMULATION_LOW",
    "FORMULATION_HIGH",
    "FORMULATION_LOG_SCALE",
    "COVERAGE_BORDER_FRACTION",
    "N_COVERAGE",
    "polymer_table",
]


class Category(enum.IntEnum):
    """Material family; the surrogate gives each a bioactivity factor."""

    PROTEIN_MODIFIED = 0
    CONDUCTIVE_HYDROGEL = 1
    SYNTHETIC = 2
    POLYSACCHARIDE = 3
    GLYCOSAMINOGLYCAN = 4
    DECELLULARIZED = 5
    PROTEIN = 6
    CONDUCTIVE = 7


class Coverage(enum.IntEnum):
    """Where the patch goes: the scar plus 0 / 25 / 50 / 100 % of the border zone."""

    SCAR_ONLY = 0
    SCAR_BZ25 = 1
    SCAR_BZ50 = 2
    SCAR_BZ100 = 3


COVERAGE_BORDER_FRACTION: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
"""Fraction of the border zone covered, indexed by :class:`Coverage`."""
N_COVERAGE = len(COVERAGE_BORDER_FRACTION)


@dataclass(frozen=True)
class Polymer:
    """One polymer with its feasible formulation window."""

    name: str
    category: Category
    stiffness_kpa: tuple[float, float]
    half_life_days: tuple[float, float]
    conductivity_s_per_m: tuple[float, float]
    biocompatibility: float

    @property
    def toxicity(self) -> float:
        """Toxicity risk in [0, 1]: ``1 - biocompatibility``."""
        return 1.0 - self.biocompatibility

    @property
    def is_conductive(self) -> bool:
        """True when the polymer can carry current at all."""
        return self.conductivity_s_per_m[1] > 0.0


_C = Category
POLYMERS: tuple[Polymer, ...] = (
    Polymer("GelMA_3pct", _C.PROTEIN_MODIFIED, (1, 10), (7, 60), (0, 0), 0.95),
    Polymer("GelMA_5pct", _C.PROTEIN_MODIFIED, (2, 25), (14, 90), (0, 0), 0.94),
    Polymer("GelMA_7pct", _C.PROTEIN_MODIFIED, (5, 50), (21, 120), (0, 0), 0.93),
    Polymer("GelMA_10pct", _C.PROTEIN_MODIFIED, (10, 100), (30, 180), (0, 0), 0.92),
    Polymer("GelMA_BioIL", _C.CONDUCTIVE_HYDROGEL, (3, 30), (14, 60), (0.2, 0.8), 0.87),
    Polymer("GelMA_Polypyrrole", _C.CONDUCTIVE_HYDROGEL, (5, 50), (14, 90), (0.1, 1.0), 0.88),
    Polymer("GelMA_rGO", _C.CONDUCTIVE_HYDROGEL, (10, 80), (30, 120), (0.05, 0.5), 0.85),
    Polymer("GelMA_MXene", _C.CONDUCTIVE_HYDROGEL, (20, 100), (60, 180), (0.5, 1.0), 0.82),
    Polymer("PEGDA_575", _C.SYNTHETIC, (1, 30), (30, 180), (0, 0), 0.90),
    Polymer("PEGDA_700", _C.SYNTHETIC, (1, 25), (30, 180), (0, 0), 0.91),
    Polymer("PEGDA_3400", _C.SYNTHETIC, (0.5, 15), (60, 180), (0, 0), 0.93),
    Polymer("Alginate_CaCl2", _C.POLYSACCHARIDE, (1, 20), (14, 90), (0, 0), 0.95),
    Polymer("Alginate_RGD", _C.POLYSACCHARIDE, (2, 25), (21, 120), (0, 0), 0.96),
    Polymer("Chitosan_thermogel", _C.POLYSACCHARIDE, (1, 15), (14, 60), (0, 0), 0.94),
    Polymer("Chitosan_EGCG", _C.POLYSACCHARIDE, (2, 20), (21, 90), (0, 0), 0.93),
    Polymer("Chitosan_HA", _C.POLYSACCHARIDE, (3, 30), (30, 120), (0, 0), 0.95),
    Polymer("HA_acellular", _C.GLYCOSAMINOGLYCAN, (0.5, 10), (7, 45), (0, 0), 0.97),
    Polymer("HA_ECM", _C.GLYCOSAMINOGLYCAN, (1, 20), (14, 90), (0, 0), 0.98),
    Polymer("MeHA_photocrosslink", _C.GLYCOSAMINOGLYCAN, (2, 40), (21, 120), (0, 0), 0.94),
    Polymer("dECM_VentriGel", _C.DECELLULARIZED, (1, 15), (14, 60), (0, 0), 0.99),
    Polymer("dECM_cardiac", _C.DECELLULARIZED, (2, 20), (21, 90), (0, 0), 0.98),
    Polymer("Gelatin_crosslinked", _C.PROTEIN, (1, 30), (14, 90), (0, 0), 0.94),
    Polymer("Fibrin_thrombin", _C.PROTEIN, (0.5, 10), (7, 30), (0, 0), 0.97),
    Polymer("PEDOT_PSS", _C.CONDUCTIVE, (10, 100), (90, 180), (0.5, 1.0), 0.80),
)
N_POLYMERS = len(POLYMERS)

FORMULATION_NAMES: tuple[str, ...] = ("stiffness", "degradation", "conductivity", "thickness")
FORMULATION_UNITS: tuple[str, ...] = ("kPa", "days (half-life)", "S/m", "mm")
FORMULATION_LOW = np.array([0.5, 7.0, 0.0, 1.0], dtype=np.float32)
"""Lower bounds of the formulation action: the union of the polymers' windows; thickness 1 mm."""
FORMULATION_HIGH = np.array([100.0, 180.0, 1.0, 5.0], dtype=np.float32)
"""Upper bounds of the formulation action: the union of the polymers' windows; thickness 5 mm."""
FORMULATION_LOG_SCALE = np.array([True, True, False, False])
"""Stiffness and half-life span two orders of magnitude: policies move them on a log scale."""


def polymer_table(device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The library as tensors for batched lookups by polymer index.

    Returns ``low`` / ``high`` (24, 4) feasible formulation windows (thickness is 1-5 mm for
    every polymer), ``toxicity`` (24,), ``category`` (24,) long and ``conductive`` (24,) bool.
    """
    low = np.array(
        [[p.stiffness_kpa[0], p.half_life_days[0], p.conductivity_s_per_m[0], 1.0] for p in POLYMERS],
        dtype=np.float32,
    )  # (24, 4)
    high = np.array(
        [[p.stiffness_kpa[1], p.half_life_days[1], p.conductivity_s_per_m[1], 5.0] for p in POLYMERS],
        dtype=np.float32,
    )  # (24, 4)
    return {
        "low": torch.as_tensor(low, device=device),
        "high": torch.as_tensor(high, device=device),
        "toxicity": torch.tensor([p.toxicity for p in POLYMERS], dtype=torch.float32, device=device),
        "category": torch.tensor([int(p.category) for p in POLYMERS], dtype=torch.long, device=device),
        "conductive": torch.tensor([p.is_conductive for p in POLYMERS], dtype=torch.bool, device=device),
    }
