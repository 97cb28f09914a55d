"""The ProstNFound cohort format: read, validate and write.

A cohort is a directory holding three files::

    cohort.h5       groups ``bmode``, ``prostate_mask``, ``needle_mask``; in each group one
                    2-D dataset per core, named by core id (B-mode: any real dtype, masks:
                    0/1 or bool), all three of the same (H, W) for a core
    metadata.csv    one row per core: core_id, patient_id, center, grade_group (0-5),
                    pct_cancer (0-100, % of the core involved), age (years), psa (ng/mL),
                    psa_density (ng/mL/cc), family_history (0/1); empty clinical cells
                    mean "not recorded"
    splits.json     {"train": [patient ids], "val": [...], "test": [...]}; splits are by
                    patient, so no patient may appear in two of them (``Split`` is
                    :class:`envs.splits.Split`, re-exported here)

Any other ``.h5`` name works when it is the only HDF5 file in the directory. Errors
name the file, the field and what was expected, because a cohort that loads wrongly
would silently poison every reward.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from envs.errors import first_line, open_hdf5, read_json
from envs.splits import Split, parse_split

__all__ = [
    "CLINICAL_COLUMNS",
    "CLINICAL_REFERENCE",
    "IMAGE_GROUPS",
    "METADATA_COLUMNS",
    "CohortError",
    "CoreImages",
    "CoreRecord",
    "ProstateCohort",
    "Split",
    "normalize_clinical",
    "clinical_bounds",
    "write_cohort",
]

IMAGE_GROUPS: tuple[str, ...] = ("bmode", "prostate_mask", "needle_mask")
"""HDF5 groups every cohort must have (ProstNFound's ``rf`` group is optional and unused)."""

CLINICAL_COLUMNS: tuple[str, ...] = ("age", "psa", "psa_density", "family_history")
"""Clinical prompts, in observation order."""

METADATA_COLUMNS: tuple[str, ...] = (
    "core_id", "patient_id", "center", "grade_group", "pct_cancer", *CLINICAL_COLUMNS,
)

CLINICAL_REFERENCE: dict[str, tuple[str, float, float]] = {
    "age": ("linear", 65.0, 8.0),
    "psa": ("log", float(np.log(6.5)), 0.7),
    "psa_density": ("log", float(np.log(0.15)), 0.7),
    "family_history": ("linear", 0.2, 0.4),
}
"""Fixed standardisation per clinical column: (transform, centre, scale). Fixed rather than
fitted so that a value means the same thing in every split and every cohort."""

_CLINICAL_RANGES: dict[str, tuple[float, float]] = {
    "age": (18.0, 110.0),
    "psa": (1e-3, 1e4),
    "psa_density": (1e-4, 1e3),
    "family_history": (0.0, 1.0),
}


class CohortError(ValueError):
    """A cohort file is missing or malformed; the message names the file and field."""


@dataclass(frozen=True)
class CoreRecord:
    """One biopsy core's labels and its patient's clinical values (NaN = not recorded)."""

    core_id: str
    patient_id: str
    center: str
    grade_group: int
    """ISUP grade group 0 (benign) to 5."""
    pct_cancer: float
    """Percentage of the core length involved by cancer, 0-100."""
    clinical: np.ndarray
    """Raw clinical values in :data:`CLINICAL_COLUMNS` order, shape (4,), NaN if missing."""

    @property
    def involvement(self) -> float:
        """Cancer involvement as a fraction in [0, 1]."""
        return self.pct_cancer / 100.0


@dataclass(frozen=True)
class CoreImages:
    """A core's images, all of shape (H, W)."""

    bmode: np.ndarray
    """B-mode intensities (float32, any scale)."""
    prostate_mask: np.ndarray
    """bool, True inside the prostate."""
    needle_mask: np.ndarray
    """bool, True on the biopsy needle's path."""


def normalize_clinical(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise raw clinical values with :data:`CLINICAL_REFERENCE`.

    ``raw`` has shape (..., 4) with NaN for missing values. Returns ``(values, present)``:
    values float32 (..., 4) with missing entries set to 0 (the reference centre, i.e. mean
    imputation), and ``present`` bool (..., 4).
    """
    raw = np.asarray(raw, dtype=np.float64)  # (..., 4)
    present = np.isfinite(raw)  # (..., 4)
    out = np.zeros(raw.shape, dtype=np.float64)  # (..., 4)
    for j, name in enumerate(CLINICAL_COLUMNS):
        transform, centre, scale = CLINICAL_REFERENCE[name]
        column = np.where(present[..., j], raw[..., j], 1.0)  # placeholder avoids log(NaN)
        if transform == "log":
            column = np.log(column)
        out[..., j] = np.where(present[..., j], (column - centre) / scale, 0.0)
    return out.astype(np.float32), present


def clinical_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of standardised clinical values, from the validated raw ranges; both (4,) float32."""
    lo_raw = np.array([[_CLINICAL_RANGES[c][0] for c in CLINICAL_COLUMNS]])  # (1, 4)
    hi_raw = np.array([[_CLINICAL_RANGES[c][1] for c in CLINICAL_COLUMNS]])  # (1, 4)
    lo, hi = normalize_clinical(lo_raw)[0][0], normalize_clinical(hi_raw)[0][0]
    return np.minimum(lo, hi), np.maximum(lo, hi)


def _find_h5(root: Path) -> Path:
    preferred = root / "cohort.h5"
    if preferred.is_file():
        return preferred
    found = sorted([*root.glob("*.h5"), *root.glob("*.hdf5")])
    if len(found) != 1:
        raise CohortError(
            f"cohort directory {root} must hold cohort.h5 or exactly one .h5/.hdf5 file; found"
            f" {[p.name for p in found] or 'none'}"
        )
    return found[0]


_NUMERIC_COLUMNS: tuple[str, ...] = ("grade_group", "pct_cancer", *CLINICAL_COLUMNS)
"""Metadata columns that must parse as numbers (an empty cell is NaN: "not recorded")."""


def _read_metadata(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise CohortError(f"missing metadata file {path}; expected columns {list(METADATA_COLUMNS)}")
    try:
        table = pd.read_csv(path, dtype={"core_id": str, "patient_id": str, "center": str})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise CohortError(f"{path}: not a readable CSV file ({first_line(err)})") from None
    missing = [c for c in METADATA_COLUMNS if c not in table.columns]
    if missing:
        raise CohortError(f"{path}: missing column(s) {missing}; required: {list(METADATA_COLUMNS)}")
    if table.empty:
        raise CohortError(f"{path}: no cores")
    for column in _NUMERIC_COLUMNS:  # a text cell would make the range checks below raise TypeError
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = table.loc[numbers.isna() & table[column].notna(), "core_id"].tolist()
        if bad:
            raise CohortError(f"{path}: column {column!r} must hold numbers (or be empty); bad cores {bad[:5]}")
        table[column] = numbers.astype(np.float64)
    duplicated = table["core_id"][table["core_id"].duplicated()].tolist()
    if duplicated:
        raise CohortError(f"{path}: core_id must be unique, repeated: {duplicated[:5]}")
    for column in ("core_id", "patient_id", "center"):
        if table[column].isna().any():
            raise CohortError(f"{path}: column {column!r} has empty cells")
    gg = table["grade_group"]
    bad = table.loc[gg.isna() | (gg % 1 != 0) | (gg < 0) | (gg > 5), "core_id"].tolist()
    if bad:
        raise CohortError(f"{path}: grade_group must be an integer in 0..5; bad cores {bad[:5]}")
    pct = table["pct_cancer"]
    bad = table.loc[pct.isna() | (pct < 0) | (pct > 100), "core_id"].tolist()
    if bad:
        raise CohortError(f"{path}: pct_cancer must be in [0, 100]; bad cores {bad[:5]}")
    bad = table.loc[(gg == 0) & (pct > 0), "core_id"].tolist()
    if bad:
        raise CohortError(f"{path}: benign cores (grade_group 0) must have pct_cancer 0; bad cores {bad[:5]}")
    for name in CLINICAL_COLUMNS:
        lo, hi = _CLINICAL_RANGES[name]
        values = table[name]
        bad = table.loc[values.notna() & ((values < lo) | (values > hi)), "core_id"].tolist()
        if bad:
            raise CohortError(f"{path}: {name} must be in [{lo}, {hi}] or empty; bad cores {bad[:5]}")
    return table


def _read_splits(path: Path, patients: set[str]) -> dict[Split, tuple[str, ...]]:
    if not path.is_file():
        raise CohortError(f"missing splits file {path}; expected {{'train': [...], 'val': [...], 'test': [...]}}")
    raw = read_json(path, CohortError, "keys train/val/test")
    unknown_keys = set(raw) - {s.value for s in Split}
    if unknown_keys:
        raise CohortError(f"{path}: unknown split name(s) {sorted(unknown_keys)}; allowed: train, val, test")
    splits: dict[Split, tuple[str, ...]] = {}
    owner: dict[str, Split] = {}
    for split in Split:
        listed = raw.get(split.value, [])
        if not isinstance(listed, list):
            raise CohortError(f"{path}: split {split.value!r} must be a list of patient ids, got {type(listed).__name__}")
        members = tuple(str(p) for p in listed)
        for patient in members:
            if patient in owner and owner[patient] is not split:
                raise CohortError(
                    f"{path}: patient {patient!r} is in both {owner[patient].value!r} and {split.value!r};"
                    " splits must be disjoint by patient"
                )
            owner[patient] = split
        unknown = sorted(set(members) - patients)
        if unknown:
            raise CohortError(f"{path}: split {split.value!r} lists patients absent from metadata.csv: {unknown[:5]}")
        splits[split] = members
    return splits


def _real_dtype(dtype: np.dtype) -> bool:
    """Integers, floats and bools: what a B-mode image or a 0/1 mask may be stored as."""
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_


def _check_images(h5_path: Path, core_ids: Sequence[str]) -> None:
    """Structure only (groups, datasets, shapes, dtypes): reading every pixel here would
    cost each ``gym.make`` a pass over the cohort; values are checked by :meth:`ProstateCohort.read_images`."""
    with open_hdf5(h5_path, CohortError) as f:
        for group in IMAGE_GROUPS:
            if group not in f:
                raise CohortError(f"{h5_path}: missing group {group!r}; required groups: {list(IMAGE_GROUPS)}")
            if not isinstance(f[group], h5py.Group):
                raise CohortError(f"{h5_path}: {group!r} must be a group with one dataset per core, got a dataset")
        for core_id in core_ids:
            shapes = {}
            for group in IMAGE_GROUPS:
                if core_id not in f[group]:
                    raise CohortError(f"{h5_path}: group {group!r} has no dataset for core {core_id!r}")
                node = f[group][core_id]
                if not isinstance(node, h5py.Dataset):
                    raise CohortError(f"{h5_path}: {group}/{core_id} must be a dataset, got a group")
                if not _real_dtype(node.dtype):
                    kind = "real numbers" if group == "bmode" else "0/1 or bool"
                    raise CohortError(f"{h5_path}: {group}/{core_id} must hold {kind}, got dtype {node.dtype}")
                shapes[group] = node.shape
            if len(shapes["bmode"]) != 2:
                raise CohortError(f"{h5_path}: bmode/{core_id} must be 2-D (H, W), got shape {shapes['bmode']}")
            if len(set(shapes.values())) != 1:
                raise CohortError(f"{h5_path}: core {core_id!r} has mismatched shapes {shapes}; all must be equal")


class ProstateCohort:
    """A validated cohort directory; images are read on demand.

    Validation happens once at construction: required groups and columns, value ranges,
    one dataset per core in every group with matching shapes, and patient-disjoint
    splits. Patients listed in no split are not used.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise CohortError(f"cohort directory {self.root} does not exist")
        self.h5_path = _find_h5(self.root)
        table = _read_metadata(self.root / "metadata.csv")
        self.splits = _read_splits(self.root / "splits.json", set(table["patient_id"]))
        _check_images(self.h5_path, table["core_id"].tolist())
        self._records = {
            row.core_id: CoreRecord(
                core_id=row.core_id,
                patient_id=row.patient_id,
                center=row.center,
                grade_group=int(row.grade_group),
                pct_cancer=float(row.pct_cancer),
                clinical=np.array([getattr(row, c) for c in CLINICAL_COLUMNS], dtype=np.float64),
            )
            for row in table.itertuples(index=False)
        }
        self._order = tuple(table["core_id"])

    @property
    def core_ids(self) -> tuple[str, ...]:
        """Every core id, in metadata order."""
        return self._order

    def record(self, core_id: str) -> CoreRecord:
        """Labels and clinical values of one core."""
        try:
            return self._records[core_id]
        except KeyError:
            raise KeyError(f"core {core_id!r} is not in {self.root / 'metadata.csv'}") from None

    def cores(self, split: Split | str) -> tuple[CoreRecord, ...]:
        """The cores of a split's patients, in metadata order."""
        patients = set(self.splits[parse_split(split)])
        return tuple(self._records[c] for c in self._order if self._records[c].patient_id in patients)

    def read_images(self, core_id: str) -> CoreImages:
        """One core's B-mode image and masks, checked: a NaN pixel or a mask value other
        than 0/1 would be encoded into the feature cache and poison every reward."""
        arrays = {}
        with open_hdf5(self.h5_path, CohortError) as f:
            for group in IMAGE_GROUPS:
                try:
                    arrays[group] = np.asarray(f[group][core_id])
                except OSError as err:  # a chunk HDF5 cannot decompress: a damaged file
                    raise CohortError(f"{self.h5_path}: {group}/{core_id} cannot be read ({first_line(err)})") from None
        bmode = arrays["bmode"].astype(np.float32)
        if not np.isfinite(bmode).all():
            raise CohortError(f"{self.h5_path}: bmode/{core_id} contains NaN or inf")
        for group in ("prostate_mask", "needle_mask"):
            if not np.isin(arrays[group], (0, 1)).all():
                raise CohortError(f"{self.h5_path}: {group}/{core_id} must hold only 0/1 (or bool)")
        return CoreImages(
            bmode=bmode,
            prostate_mask=arrays["prostate_mask"].astype(bool),
            needle_mask=arrays["needle_mask"].astype(bool),
        )

    def read_lesion_mask(self, core_id: str) -> np.ndarray | None:
        """One core's (H, W) bool lesion ground truth, or None when the cohort has none
        (real cohorts; only the phantom writes the optional ``lesion_mask`` group)."""
        with open_hdf5(self.h5_path, CohortError) as f:
            if "lesion_mask" not in f or core_id not in f["lesion_mask"]:
                return None
            return np.asarray(f["lesion_mask"][core_id]).astype(bool)

    def fingerprint(self) -> str:
        """A short id of the files' location, sizes and modification times, used to key
        caches so that editing a cohort invalidates its features and decoder."""
        digest = hashlib.sha1()
        for path in (self.h5_path, self.root / "metadata.csv", self.root / "splits.json"):
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]


def write_cohort(
    root: str | os.PathLike[str],
    records: Iterable[CoreRecord],
    images: Mapping[str, CoreImages],
    splits: Mapping[Split | str, Sequence[str]],
    lesion_masks: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a cohort directory in the format above (used by the phantom and by tests).

    ``images`` maps core id -> :class:`CoreImages`. ``lesion_masks`` (core id -> (H, W)
    bool), when given, go to an extra ``lesion_mask`` group: ground truth that only a
    phantom has, for analysis; readers of the format ignore it. Returns the directory.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    with h5py.File(root / "cohort.h5", "w") as f:
        groups = {g: f.create_group(g) for g in IMAGE_GROUPS}
        for record in records:
            core = images[record.core_id]
            groups["bmode"].create_dataset(record.core_id, data=core.bmode, compression="gzip")
            groups["prostate_mask"].create_dataset(record.core_id, data=core.prostate_mask.astype(np.uint8), compression="gzip")
            groups["needle_mask"].create_dataset(record.core_id, data=core.needle_mask.astype(np.uint8), compression="gzip")
            if lesion_masks is not None:
                lesions = f.require_group("lesion_mask")
                lesions.create_dataset(record.core_id, data=lesion_masks[record.core_id].astype(np.uint8), compression="gzip")
            rows.append(
                {
                    "core_id": record.core_id,
                    "patient_id": record.patient_id,
                    "center": record.center,
                    "grade_group": record.grade_group,
                    "pct_cancer": round(record.pct_cancer, 3),
                    **{name: record.clinical[j] for j, name in enumerate(CLINICAL_COLUMNS)},
                }
            )
    pd.DataFrame(rows, columns=list(METADATA_COLUMNS)).to_csv(root / "metadata.csv", index=False)
    with open(root / "splits.json", "w") as f:
        json.dump({parse_split(k).value: list(v) for k, v in splits.items()}, f, indent=1)
    return root
