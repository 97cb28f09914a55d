"""A deterministic phantom cohort in the ProstNFound format (see :mod:`envs.prostate.data`).

Real micro-ultrasound cohorts and MedSAM checkpoints are private, so the default
Prostate-v0 runs on this phantom. What it models, and why:

* **B-mode**: an echogenicity map times fully developed speckle (the magnitude of
  PSF-blurred complex Gaussian noise), depth attenuation from the transrectal probe at
  the bottom edge, log compression to uint8. A bright capsule outlines the prostate;
  benign hyperechoic nodules add clutter; each centre has its own gain.
* **Needle**: a straight band entering from the probe at a near-fixed angle, as the
  needle guide of a micro-ultrasound probe fixes it; the core is its part inside the
  prostate.
* **Lesions**: small hypoechoic regions whose echogenicity drop (``lesion_contrast``)
  grows with grade group, from 45 % (GG1) to 75 % (GG5). They are visible only where
  they are: the rest of the gland looks the same whether or not the patient has cancer.
  Biopsies are targeted, so most shown lesions (``lesion_near_needle``) sit near the needle path — at a uniformly random point
  *along* the core, shifted *across* it by up to ``lesion_lateral_offset`` (so some lie
  beside the needle, or just off it, yet within a glimpse of a point on it); the rest
  lie anywhere in the gland. Radii are drawn from ``lesion_radius``. Where a lesion
  sits thus varies from core to core and only the B-mode tells: no fixed placement of a
  few points along the needle sees every lesion. A core's involvement is the fraction
  of needle-in-prostate pixels covered by lesion (slivers under 2 % are missed, as a
  pathologist would); its grade group is the highest grade it hits.
* **Patients**: several cores each (different imaging planes), a patient-level
  disease grade, and clinical values correlated with it (age, PSA, PSA density,
  family history), some missing.

Same config -> byte-identical files. Generation takes a few seconds at the default size.

Versions (``SyntheticCohortConfig.version``, part of the cache key): v3 placed lesions
along and beside the needle; v4 raised the lesion contrast from 30-60 % to 45-75 % (on
v3 a linear probe of the small backbone's features told lesion cells from other cells
near the needle at AUROC 0.83, on v4 at 0.92).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from envs.cache import cache_path
from envs.prostate.data import CoreImages, CoreRecord, write_cohort
from envs.splits import Split

__all__ = ["SyntheticCohortConfig", "generate_cohort", "ensure_synthetic_cohort"]

_GRADE_PRIOR = (0.40, 0.15, 0.17, 0.12, 0.09, 0.07)
"""Patient-level P(grade group = 0..5): 60 % of biopsied patients have cancer."""

_LESION_CONTRAST = (0.0, 0.45, 0.55, 0.63, 0.70, 0.75)
"""Fractional echogenicity drop of a lesion by grade group (hypoechoic, GG1 faintest)."""

_MIN_INVOLVEMENT = 0.02
"""Lesion overlap below this fraction of the core is not reported (a missed sliver)."""


@dataclass(frozen=True)
class SyntheticCohortConfig:
    """Size and randomness of the phantom cohort."""

    n_patients: int = 160
    """Patients; split train/val/test by patient."""
    cores_per_patient: int = 6
    """Biopsy cores (one image each) per patient."""
    image_size: int = 256
    """Square image side in pixels."""
    n_centers: int = 3
    """Acquisition centres (each with its own gain)."""
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """Fractions of patients in train, val, test."""
    lesion_in_view: float = 0.75
    """P(a core image of a cancer patient shows a lesion)."""
    lesion_near_needle: float = 0.65
    """P(a shown lesion is placed near the needle path) — biopsies are targeted."""
    lesion_lateral_offset: float = 0.07
    """Largest shift of a near-needle lesion's centre across the needle, in image
    fractions (the needle band is 0.05 wide; one feature cell is 1/16 at 256 px)."""
    lesion_radius: tuple[float, float] = (0.04, 0.07)
    """Range of a lesion's two semi-axes, in image fractions (uniform)."""
    lesion_contrast: tuple[float, ...] = _LESION_CONTRAST
    """Fractional echogenicity drop of a lesion by grade group 0..5 (hypoechoic)."""
    seed: int = 0
    """Seed of the whole cohort."""
    version: int = field(default=4, repr=False)
    """Bumped when the generator changes, so caches of older phantoms are not reused."""

    def __post_init__(self) -> None:
        for name, low in (("n_patients", 3), ("cores_per_patient", 1), ("image_size", 32), ("n_centers", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"SyntheticCohortConfig.{name} must be an int >= {low}, got {value!r}")
        if self.image_size % 16:
            raise ValueError(f"SyntheticCohortConfig.image_size must be a multiple of 16, got {self.image_size}")
        fractions = tuple(float(f) for f in self.split_fractions)
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ValueError(
                f"SyntheticCohortConfig.split_fractions must be 3 positive numbers summing to 1, got {self.split_fractions}"
            )
        object.__setattr__(self, "split_fractions", fractions)
        for name in ("lesion_in_view", "lesion_near_needle"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SyntheticCohortConfig.{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.lesion_lateral_offset <= 0.5:
            raise ValueError(f"SyntheticCohortConfig.lesion_lateral_offset must be in [0, 0.5], got {self.lesion_lateral_offset}")
        contrast = tuple(float(c) for c in self.lesion_contrast)
        if len(contrast) != 6 or contrast[0] != 0.0 or not all(0.0 <= a <= b < 1.0 for a, b in zip(contrast, contrast[1:])):
            raise ValueError(
                "SyntheticCohortConfig.lesion_contrast must be 6 non-decreasing echogenicity drops for grade groups"
                f" 0..5, starting at 0 and below 1, got {self.lesion_contrast}"
            )
        object.__setattr__(self, "lesion_contrast", contrast)
        radius = tuple(float(r) for r in self.lesion_radius)
        if len(radius) != 2 or not 0.0 < radius[0] <= radius[1] <= 0.5:
            raise ValueError(
                f"SyntheticCohortConfig.lesion_radius must be (low, high) with 0 < low <= high <= 0.5, got {self.lesion_radius}"
            )
        object.__setattr__(self, "lesion_radius", radius)

    @property
    def key(self) -> str:
        """A short id of this config for cache paths."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Largest-remainder rounding, at least one patient per split."""
    raw = np.array(fractions) * n
    counts = np.maximum(np.floor(raw).astype(int), 1)
    while counts.sum() < n:
        counts[int(np.argmax(raw - counts))] += 1
    while counts.sum() > n:
        counts[int(np.argmax(counts))] -= 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def _clinical(rng: np.random.Generator, grade: int) -> np.ndarray:
    """Clinical values for a patient of disease grade ``grade`` (NaN = not recorded)."""
    age = float(np.clip(rng.normal(63.0 + 1.2 * grade, 7.0), 45.0, 88.0))
    psa = float(np.exp(rng.normal(np.log(5.0) + 0.22 * grade, 0.5)))
    volume_cc = float(np.clip(rng.normal(45.0, 12.0), 20.0, 100.0))
    family = float(rng.random() < 0.12 + 0.08 * (grade >= 2))
    values = np.array([age, psa, psa / volume_cc, family])
    missing = rng.random(4) < np.array([0.0, 0.03, 0.10, 0.30])
    values[missing] = np.nan
    return values


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float, angle: float) -> np.ndarray:
    """Signed ellipse level: < 1 inside. u, v in image fractions."""
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - cu, v - cv
    return ((c * du + s * dv) / a) ** 2 + ((-s * du + c * dv) / b) ** 2


def _smooth_field(rng: np.random.Generator, size: int, correlation: float) -> np.ndarray:
    """A smooth random field in [-1, 1] with correlation length ``correlation`` * size,
    drawn on a coarse grid and upsampled (cheap at any size)."""
    coarse = max(8, int(round(4 / correlation)))
    field = ndimage.gaussian_filter(rng.standard_normal((coarse, coarse)), coarse * correlation, mode="wrap")
    field = ndimage.zoom(field, size / coarse, order=1, mode="nearest")[:size, :size]
    return field / (np.abs(field).max() + 1e-9)


def _speckle(rng: np.random.Generator, size: int) -> np.ndarray:
    """Fully developed speckle, mean 1: |PSF * complex Gaussian| (axial/lateral correlation)."""
    sigma = (1.2, 0.8)  # (rows = axial, cols = lateral) in px
    re = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
    im = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
    amplitude = np.hypot(re, im)
    return amplitude / amplitude.mean()


def _core(
    rng: np.random.Generator, config: SyntheticCohortConfig, grade: int, gain: float
) -> tuple[CoreImages, np.ndarray, float, int]:
    """One core image, its lesion mask, involvement and grade group."""
    size = config.image_size
    v, u = (np.mgrid[0:size, 0:size] + 0.5) / size  # (H, W) each, rows = depth (v), cols = lateral (u)

    # Prostate: an ellipse near the centre.
    cu, cv = 0.5 + rng.normal(0, 0.04), 0.5 + rng.normal(0, 0.04)
    a, b = 0.33 + rng.uniform(-0.03, 0.04), 0.27 + rng.uniform(-0.03, 0.04)
    angle = rng.uniform(-0.3, 0.3)
    level = _ellipse(u, v, cu, cv, a, b, angle)
    prostate = level < 1.0

    # Needle: a band from the probe (bottom edge) at a near-fixed angle, tip inside the image.
    theta = 0.45 + rng.normal(0, 0.04)  # rad from vertical, leaning right
    entry_u = 0.36 + rng.normal(0, 0.02)
    direction = np.array([np.sin(theta), -np.cos(theta)])  # (du, dv), pointing up
    rel_u, rel_v = u - entry_u, v - 1.0
    along = rel_u * direction[0] + rel_v * direction[1]
    across = rel_u * direction[1] - rel_v * direction[0]
    needle = (np.abs(across) < 0.025) & (along > 0.0) & (along < 0.95)
    core_region = needle & prostate
    if core_region.sum() < 4:  # the needle missed the gland: the core is the band's first part
        core_region = needle

    # Lesions.
    echo = np.full((size, size), 0.60)
    echo[prostate] = 0.48
    smooth = _smooth_field(rng, size, correlation=1 / 12)
    echo *= 1.0 + 0.15 * smooth  # low-frequency tissue texture
    lesions: list[tuple[np.ndarray, int]] = []
    if grade > 0 and rng.random() < config.lesion_in_view:
        n_lesions = 2 if rng.random() < 0.2 else 1
        for i in range(n_lesions):
            lesion_grade = grade if i == 0 else int(max(1, grade - rng.integers(0, 2)))
            if rng.random() < config.lesion_near_needle:
                span = along[core_region]  # where the needle runs inside the prostate
                t = rng.uniform(span.min(), span.max())
                shift = rng.uniform(-config.lesion_lateral_offset, config.lesion_lateral_offset)
                # centre = entry + t * direction + shift * (unit vector across the needle)
                lu = entry_u + t * direction[0] + shift * direction[1]
                lv = 1.0 + t * direction[1] - shift * direction[0]
            else:
                inner = np.nonzero(level < 0.6)
                pick = int(rng.integers(len(inner[0])))
                lu, lv = (inner[1][pick] + 0.5) / size, (inner[0][pick] + 0.5) / size
            ra, rb = rng.uniform(*config.lesion_radius), rng.uniform(*config.lesion_radius)
            wobble = _smooth_field(rng, size, correlation=1 / 40)
            lesion = (_ellipse(u, v, lu, lv, ra, rb, rng.uniform(0, np.pi)) < 1.0 + 0.35 * wobble) & prostate
            lesions.append((lesion, lesion_grade))
            contrast = config.lesion_contrast[lesion_grade]
            soft = ndimage.gaussian_filter(lesion.astype(float), 1.5)
            echo *= 1.0 - contrast * soft

    # Benign hyperechoic nodules (clutter, not cancer).
    for _ in range(int(rng.integers(0, 3))):
        inner = np.nonzero(level < 0.7)
        pick = int(rng.integers(len(inner[0])))
        nodule = _ellipse(u, v, (inner[1][pick] + 0.5) / size, (inner[0][pick] + 0.5) / size,
                          rng.uniform(0.04, 0.09), rng.uniform(0.04, 0.09), rng.uniform(0, np.pi)) < 1.0
        echo *= 1.0 + 0.35 * ndimage.gaussian_filter((nodule & prostate).astype(float), 2.0)

    capsule = np.exp(-(((np.sqrt(level) - 1.0) * min(a, b) * size / 2.0) ** 2))  # ~2 px wide rim
    echo = echo + 0.45 * capsule

    intensity = gain * echo * _speckle(rng, size) * np.exp(-0.7 * (1.0 - v))  # attenuation with depth
    bmode = np.clip(np.log1p(12.0 * intensity) / np.log1p(12.0 * 1.6), 0.0, 1.0)
    bmode = np.round(bmode * 255).astype(np.uint8)

    core_pixels = core_region.sum()
    counted = [(m, g) for m, g in lesions if (m & core_region).sum() / core_pixels >= _MIN_INVOLVEMENT]
    involvement = 0.0
    core_grade = 0
    if counted:
        union = np.logical_or.reduce([m for m, _ in counted])
        involvement = float((union & core_region).sum() / core_pixels)
        core_grade = max(g for _, g in counted)
    lesion_mask = np.logical_or.reduce([m for m, _ in lesions]) if lesions else np.zeros_like(prostate)
    return CoreImages(bmode=bmode, prostate_mask=prostate, needle_mask=needle), lesion_mask, involvement, core_grade


def generate_cohort(config: SyntheticCohortConfig, root: str | os.PathLike[str]) -> Path:
    """Write the phantom cohort described by ``config`` into ``root``."""
    rng = np.random.default_rng(config.seed)
    n_train, n_val, _ = _split_counts(config.n_patients, config.split_fractions)
    patients = [f"P{i:04d}" for i in range(config.n_patients)]
    order = rng.permutation(config.n_patients)
    splits = {
        Split.TRAIN: [patients[i] for i in sorted(order[:n_train])],
        Split.VAL: [patients[i] for i in sorted(order[n_train : n_train + n_val])],
        Split.TEST: [patients[i] for i in sorted(order[n_train + n_val :])],
    }
    gains = 1.0 + 0.1 * (np.arange(config.n_centers) - (config.n_centers - 1) / 2)
    records: list[CoreRecord] = []
    images: dict[str, CoreImages] = {}
    lesion_masks: dict[str, np.ndarray] = {}
    for patient in patients:
        grade = int(rng.choice(6, p=_GRADE_PRIOR))
        center = int(rng.integers(config.n_centers))
        clinical = _clinical(rng, grade)
        for j in range(config.cores_per_patient):
            core_id = f"{patient}-C{j:02d}"
            core, lesion_masks[core_id], involvement, core_grade = _core(rng, config, grade, float(gains[center]))
            images[core_id] = core
            records.append(
                CoreRecord(
                    core_id=core_id,
                    patient_id=patient,
                    center=f"C{center + 1}",
                    grade_group=core_grade,
                    pct_cancer=100.0 * involvement,
                    clinical=clinical.copy(),
                )
            )
    return write_cohort(root, records, images, splits, lesion_masks)


def ensure_synthetic_cohort(
    config: SyntheticCohortConfig | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The phantom cohort's directory in the cache, generated on first use.

    Generation writes to a temporary directory and renames it, so concurrent envs
    (SubprocVecEnv workers) never read a half-written cohort.
    """
    config = config or SyntheticCohortConfig()
    target = cache_path("prostate", "synthetic", config.key, override=cache_dir)
    if (target / "splits.json").is_file():
        return target
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate_cohort(config, tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
