"""Post-infarction patients: the 10 real ones, a synthetic generator and splits.

A patient is a vector of 11 physical features (:data:`FEATURE_NAMES`, units in
:data:`FEATURE_UNITS`). The real cohort is the one hard-coded in the HYDRA-BERT
repository. The synthetic generator draws patients from relations fitted to those 10
(GLS, stress concentration and transmurality follow LVEF and scar size as they do
there; ESV follows EDV and LVEF), with wider spreads so the best design differs
between patients; the real patients are typical draws of it.

Splits (:class:`envs.splits.Split`) are by patient and fixed: the real test patients
never appear in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from envs.splits import Split, parse_split
from rewards.choices import parse_choice

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_UNITS",
    "FEATURE_CENTER",
    "FEATURE_SCALE",
    "FEATURE_BOUNDS",
    "REAL_PATIENT_IDS",
    "REAL_PATIENTS",
    "REAL_TEST_IDS",
    "REAL_VAL_IDS",
    "CohortKind",
    "Cohort",
    "synthetic_patients",
    "make_cohort",
    "validate_patients",
    "normalise_features",
]

FEATURE_NAMES: tuple[str, ...] = (
    "LVEF", "GLS", "EDV", "ESV", "scar_fraction", "bz_fraction", "bz_stress",
    "healthy_stress", "stress_concentration", "transmurality", "wall_thickness",
)
FEATURE_UNITS: tuple[str, ...] = ("%", "%", "mL", "mL", "%", "%", "kPa", "kPa", "ratio", "fraction", "mm")

FEATURE_BOUNDS = np.array(
    [
        [10.0, 70.0],  # LVEF %
        [-30.0, -3.0],  # GLS %
        [40.0, 700.0],  # EDV mL
        [15.0, 550.0],  # ESV mL
        [2.0, 45.0],  # scar % of LV
        [1.0, 35.0],  # border zone % of LV
        [8.0, 50.0],  # border-zone wall stress kPa
        [4.0, 14.0],  # healthy wall stress kPa
        [1.0, 5.0],  # stress concentration (bz / healthy)
        [0.1, 1.0],  # transmurality fraction
        [3.0, 30.0],  # end-diastolic wall thickness mm
    ]
)
"""Physiological bounds every patient must satisfy (loader and generator both check)."""

FEATURE_CENTER = np.array([36.0, -17.0, 250.0, 160.0, 11.0, 19.0, 20.0, 8.0, 2.6, 0.5, 18.0])
FEATURE_SCALE = np.array([8.0, 3.0, 150.0, 110.0, 8.0, 5.0, 5.0, 1.0, 0.7, 0.2, 4.5])
"""Fixed normalisation: ``(x - center) / scale`` maps the plausible range to about [-3, 3]."""

REAL_PATIENT_IDS: tuple[str, ...] = (
    "SCD0000101", "SCD0000201", "SCD0000301", "SCD0000401", "SCD0000601",
    "SCD0000701", "SCD0000801", "SCD0001001", "SCD0001101", "SCD0001201",
)
REAL_PATIENTS = np.array(
    [
        [34.75, -16.81, 112.66, 73.51, 7.53, 23.91, 18.0, 8.0, 2.25, 0.463, 17.42],
        [36.70, -17.09, 100.84, 63.83, 7.15, 21.15, 17.5, 8.0, 2.19, 0.454, 15.01],
        [33.96, -16.79, 563.66, 372.26, 9.03, 21.00, 20.0, 8.0, 2.50, 0.501, 24.03],
        [35.35, -16.94, 363.63, 235.08, 8.01, 21.26, 18.5, 8.0, 2.31, 0.475, 21.39],
        [35.15, -16.90, 394.40, 255.77, 7.90, 21.99, 18.3, 8.0, 2.29, 0.473, 23.64],
        [36.68, -17.14, 247.18, 156.51, 7.90, 18.93, 17.8, 8.0, 2.23, 0.473, 21.05],
        [37.14, -17.20, 216.50, 136.10, 7.67, 18.72, 17.5, 8.0, 2.19, 0.467, 21.80],
        [39.89, -17.59, 232.00, 139.46, 7.00, 15.23, 16.5, 8.0, 2.06, 0.450, 19.81],
        [37.57, -17.24, 249.42, 155.71, 7.25, 19.09, 17.6, 8.0, 2.20, 0.456, 21.00],
        [37.06, -17.17, 75.34, 47.43, 7.44, 19.55, 17.7, 8.0, 2.21, 0.461, 19.12],
    ]
)
"""The 10 real patients, rows in :data:`REAL_PATIENT_IDS` order, columns :data:`FEATURE_NAMES`."""

REAL_TEST_IDS: tuple[str, ...] = ("SCD0000301", "SCD0000801", "SCD0001201")
"""Held out: the largest, a mid-sized and the smallest ventricle."""
REAL_VAL_IDS: tuple[str, ...] = ("SCD0000601",)


class CohortKind(Enum):
    """Which patients an env draws from.

    - ``real``: the 10 real patients only (train 6 / val 1 / test 3).
    - ``augmented``: the real patients plus ``n_synthetic`` generated ones (default).
    - ``synthetic``: generated patients only.
    Generated patients are split 70 / 10 / 20 % into train / val / test by patient.
    """

    REAL = "real"
    AUGMENTED = "augmented"
    SYNTHETIC = "synthetic"


def validate_patients(features: np.ndarray, source: str = "patients") -> np.ndarray:
    """Check shape, finiteness and physiological bounds; return a float64 copy."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(FEATURE_NAMES):
        raise ValueError(f"{source}: expected shape (n, {len(FEATURE_NAMES)}) with columns {FEATURE_NAMES}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        row, col = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{source}: row {row} field {FEATURE_NAMES[col]!r} is not finite ({array[row, col]})")
    low, high = FEATURE_BOUNDS[:, 0], FEATURE_BOUNDS[:, 1]
    bad = (array < low) | (array > high)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{source}: row {row} field {FEATURE_NAMES[col]!r} = {array[row, col]:g} {FEATURE_UNITS[col]}"
            f" is outside [{low[col]:g}, {high[col]:g}]"
        )
    return array.copy()


def normalise_features(features: np.ndarray) -> np.ndarray:
    """Fixed z-scoring of patient features, (n, 11) -> (n, 11) float32."""
    return ((np.asarray(features) - FEATURE_CENTER) / FEATURE_SCALE).astype(np.float32)


def synthetic_patients(n: int, seed: int = 0) -> np.ndarray:
    """``n`` generated patients (n, 11), deterministic for ``seed``.

    The 10 real patients are all mid-sized, partly transmural infarcts (scar 7-9 %);
    the generator spans the post-infarction range around them (the source's training
    pool: scar 5-40 %, transmurality 0.2-1.0, LVEF 15-55 %), keeping the relations that
    hold across the real 10 where they apply: scar grows as LVEF falls; transmurality
    and stress concentration grow with scar size (concentration also with border-zone
    size); GLS = -11.6 - 0.15 LVEF; ESV = EDV (1 - LVEF/100); bz stress = healthy stress
    x concentration. Each relation has noise so that the features are not redundant.
    """
    if n < 0:
        raise ValueError(f"n_synthetic must be >= 0, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x48594453]))
    lvef = np.clip(rng.normal(36.0, 7.0, n), 18.0, 58.0)
    scar = np.clip(np.exp(rng.normal(np.log(9.0) + 0.03 * (36.0 - lvef), 0.55, n)), 3.0, 40.0)
    bz = np.clip(rng.normal(19.0, 5.0, n), 5.0, 32.0)
    edv = np.clip(np.exp(rng.normal(np.log(220.0), 0.45, n)), 60.0, 600.0)
    esv = edv * (1.0 - lvef / 100.0) * rng.normal(1.0, 0.01, n)
    gls = np.clip(-11.6 - 0.15 * lvef + rng.normal(0.0, 1.5, n), -28.0, -4.0)
    healthy = np.clip(rng.normal(8.0, 0.4, n), 6.0, 10.0)
    concentration = np.clip(1.0 + 0.1 * scar + 0.025 * bz + rng.normal(0.0, 0.2, n), 1.2, 4.8)
    transmurality = np.clip(0.25 + 0.022 * scar + rng.normal(0.0, 0.12, n), 0.15, 1.0)
    wall = np.clip(rng.normal(18.0, 4.5, n), 6.0, 28.0)
    patients = np.stack(
        [lvef, gls, edv, esv, scar, bz, healthy * concentration, healthy, concentration, transmurality, wall],
        axis=1,
    )  # (n, 11)
    return validate_patients(patients, source="synthetic cohort")


@dataclass(frozen=True)
class Cohort:
    """The patients of one split: ids and raw features (n, 11)."""

    ids: tuple[str, ...]
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def _split_real(split: Split) -> list[int]:
    test = [REAL_PATIENT_IDS.index(i) for i in REAL_TEST_IDS]
    val = [REAL_PATIENT_IDS.index(i) for i in REAL_VAL_IDS]
    train = [i for i in range(len(REAL_PATIENT_IDS)) if i not in test + val]
    return {Split.TRAIN: train, Split.VAL: val, Split.TEST: test}[split]


def _split_synthetic(n: int, split: Split) -> list[int]:
    n_train, n_val = int(round(0.7 * n)), int(round(0.1 * n))
    bounds = {Split.TRAIN: (0, n_train), Split.VAL: (n_train, n_train + n_val), Split.TEST: (n_train + n_val, n)}
    start, stop = bounds[split]
    return list(range(start, stop))


def make_cohort(
    kind: CohortKind | str = CohortKind.AUGMENTED,
    split: Split | str = Split.TRAIN,
    n_synthetic: int = 200,
    synthetic_seed: int = 0,
) -> Cohort:
    """The patients of ``split`` in the ``kind`` cohort (see :class:`CohortKind`)."""
    kind = parse_choice(CohortKind, kind, "cohort")
    split = parse_split(split)
    ids: list[str] = []
    rows: list[np.ndarray] = []
    if kind in (CohortKind.REAL, CohortKind.AUGMENTED):
        index = _split_real(split)
        ids += [REAL_PATIENT_IDS[i] for i in index]
        rows.append(REAL_PATIENTS[index])
    if kind in (CohortKind.AUGMENTED, CohortKind.SYNTHETIC):
        generated = synthetic_patients(n_synthetic, synthetic_seed)
        index = _split_synthetic(n_synthetic, split)
        ids += [f"SYN{synthetic_seed:03d}-{i:05d}" for i in index]
        rows.append(generated[index])
    features = np.concatenate(rows, axis=0) if rows else np.zeros((0, len(FEATURE_NAMES)))
    if len(ids) == 0:
        raise ValueError(f"cohort {kind.value!r} has no patients in split {split.value!r} (n_synthetic={n_synthetic})")
    return Cohort(tuple(ids), validate_patients(features, source=f"{kind.value} cohort"))
