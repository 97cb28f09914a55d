"""The ``labels.h5`` data format, its validation, and train / val / test splits.

Format (one HDF5 file; ``N`` samples)

==================  ===============  =======  ===========================================
dataset             shape            dtype    meaning
==================  ===============  =======  ===========================================
``img_identifiers`` (N,)             bytes    unique sample ids (the split hashes them)
``taxa_L10``        (N,)             uint32   species taxon id, 0 = null (no label)
``taxa_L20``        (N,)             uint32   genus taxon id, 0 = null
``taxa_L30``        (N,)             uint32   family taxon id, 0 = null
``taxa_L40``        (N,)             uint32   order taxon id, 0 = null
``images``          (N, H, W, 3)     uint8    RGB images
``spatial``         (N, 3)           float    optional (e.g. unit-sphere location)
``temporal``        (N, 2) / (N, 4)  float    optional (e.g. sin/cos of date and time)
``split``           (N,)             uint8    optional: 0 train, 1 val, 2 test
``null_cause``      (N,)             uint8    optional: why the labels turn null
                                              (:class:`NullCause`; 0 = no null rank)
==================  ===============  =======  ===========================================

Any subset of ``taxa_L<level>`` datasets works (at least one); higher levels are
coarser, and ranks are ordered coarse -> fine. Without ``split`` the split of a sample
is a stable hash of its identifier (80 / 10 / 10), so adding samples never moves old
ones between splits. The taxonomy comes from ``taxonomy.json`` beside the file (see
:class:`~envs.taxonomy.tree.TaxonomyTree`) or, when absent, is derived from the labels.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import h5py
import numpy as np

from envs.errors import first_line, open_hdf5
from envs.splits import Split, parse_split
from envs.taxonomy.tree import TaxonomyTree

__all__ = [
    "NullCause",
    "RANK_NAMES",
    "SPLIT_CODES",
    "Split",
    "TaxonomySplit",
    "hash_split",
    "load_split",
    "parse_split",
    "read_tree",
    "write_labels_h5",
]

TREE_FILENAME = "taxonomy.json"
"""Name of the tree file looked for beside ``labels.h5``."""

RANK_NAMES: dict[str, str] = {"L10": "species", "L20": "genus", "L30": "family", "L40": "order"}
"""Taxonomic names of the iNaturalist-style levels; other levels keep their key."""

_TAXA_KEY = re.compile(r"^taxa_(L\d+)$")
_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Train / val / test shares of :func:`hash_split`, in the order of the split codes."""
SPLIT_CODES: dict[Split, int] = {Split.TRAIN: 0, Split.VAL: 1, Split.TEST: 2}
"""Value of each split in the optional ``split`` dataset (and of :func:`hash_split`)."""


class NullCause(IntEnum):
    """Why a record's labels turn null from some rank on (the ``null_cause`` dataset).

    Only ``DEGRADED`` is visible as poor image quality; the others are taxonomic, so
    a rule that abstains on an image-quality score alone misses them.
    """

    NONE = 0
    """Every rank is labelled."""
    DEGRADED = 1
    """Blur, noise or occlusion hide the traits of the finer ranks."""
    OBSERVER_GENUS = 2
    """The observer identified the record to genus only (cryptic species complexes:
    common in some genera, whatever the image quality)."""
    UNSEEN_SPECIES = 3
    """A species absent from the training split (val / test only): it has no class."""
    RARE_SPECIES = 4
    """A species with too few records to keep its label (rare taxa wiped)."""
    CASUAL = 5
    """A casual record that lost its species label at random."""


def hash_split(identifiers: np.ndarray) -> np.ndarray:
    """Split code per identifier (0 train, 1 val, 2 test) from a stable hash."""
    codes = np.empty(len(identifiers), dtype=np.uint8)
    edges = np.cumsum(_SPLIT_FRACTIONS)[:-1]
    for i, ident in enumerate(identifiers):
        raw = ident if isinstance(ident, bytes) else str(ident).encode()
        u = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little") / 2**64
        codes[i] = int(np.searchsorted(edges, u, side="right"))
    return codes


@dataclass(frozen=True)
class TaxonomySplit:
    """The samples of one split, labels as class indices (coarse -> fine, 0 = null)."""

    tree: TaxonomyTree
    split: Split
    identifiers: np.ndarray
    """(n,) str."""
    labels: np.ndarray
    """(n, n_ranks) int64 class indices."""
    images: np.ndarray
    """(n, H, W, 3) uint8."""
    spatial: np.ndarray | None = None
    temporal: np.ndarray | None = None
    null_cause: np.ndarray | None = None
    """(n,) int64 :class:`NullCause` codes, if the file records them."""

    def __len__(self) -> int:
        return len(self.identifiers)

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return tuple(self.images.shape[1:3])  # type: ignore[return-value]


def _dataset(f: h5py.File, key: str, path: Path) -> h5py.Dataset:
    """The dataset ``key`` (present); a group under that name is a ValueError naming it."""
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{path}: '{key}' must be a dataset, got an HDF5 {type(node).__name__.lower()}")
    return node


def _read(f: h5py.File, key: str, path: Path) -> np.ndarray:
    """All of dataset ``key``; data HDF5 cannot read (a truncated chunk, a type without a
    NumPy equivalent) is a ValueError naming the file and the dataset."""
    dataset = _dataset(f, key, path)
    try:
        return np.asarray(dataset[()])
    except (OSError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: dataset '{key}' cannot be read ({first_line(err)})") from None


def _read_rows(dataset: h5py.Dataset, rows: np.ndarray, block: int = 2048) -> np.ndarray:
    """``dataset[rows]`` for sorted ``rows``, read in contiguous blocks: h5py's fancy
    indexing re-reads compressed chunks per row and is orders of magnitude slower."""
    out = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
    filled = 0
    for start in range(0, dataset.shape[0], block):
        stop = min(start + block, dataset.shape[0])
        lo, hi = np.searchsorted(rows, [start, stop])
        if hi > lo:
            out[filled : filled + hi - lo] = dataset[start:stop][rows[lo:hi] - start]
            filled += hi - lo
    return out


def _rank_keys(f: h5py.File, path: Path) -> list[str]:
    """Dataset keys ``taxa_L<level>`` ordered coarse -> fine (high level first)."""
    keys = [k for k in f.keys() if _TAXA_KEY.match(k)]
    if not keys:
        raise ValueError(f"{path}: no taxa_L<level> dataset (expected e.g. taxa_L10..taxa_L40)")
    return sorted(keys, key=lambda k: -int(k[len("taxa_L"):]))


def _rank_name(key: str) -> str:
    level = _TAXA_KEY.match(key).group(1)  # type: ignore[union-attr]
    return RANK_NAMES.get(level, level)


def _read_taxa(f: h5py.File, path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Validated (rank names, taxa (N, R) int64 coarse -> fine, identifiers (N,))."""
    if "img_identifiers" not in f:
        raise ValueError(f"{path}: missing dataset 'img_identifiers' (N,) of unique sample ids")
    identifiers = _read(f, "img_identifiers", path)
    if identifiers.ndim != 1 or len(identifiers) == 0:
        raise ValueError(f"{path}: 'img_identifiers' must have shape (N,) with N >= 1, got {identifiers.shape}")
    identifiers = np.array([i.decode() if isinstance(i, bytes) else str(i) for i in identifiers])
    if len(np.unique(identifiers)) != len(identifiers):
        raise ValueError(f"{path}: 'img_identifiers' contains duplicates; every sample needs its own id")
    n = len(identifiers)
    keys = _rank_keys(f, path)
    columns = []
    for key in keys:
        col = _read(f, key, path)
        if col.shape != (n,):
            raise ValueError(f"{path}: '{key}' must have shape ({n},) like img_identifiers, got {col.shape}")
        if not np.issubdtype(col.dtype, np.integer):
            raise ValueError(f"{path}: '{key}' must hold integer taxon ids (uint32), got dtype {col.dtype}")
        if np.any(col < 0):
            raise ValueError(f"{path}: '{key}' has negative taxon ids; ids are >= 0 with 0 = null")
        columns.append(col.astype(np.int64))
    return [_rank_name(k) for k in keys], np.stack(columns, axis=1), identifiers


def read_tree(path: str | os.PathLike[str], tree_path: str | os.PathLike[str] | None = None) -> TaxonomyTree:
    """The taxonomy of a ``labels.h5``: from ``tree_path``, else ``taxonomy.json`` beside
    the file, else derived from the labels. Labels must agree with the tree."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    with open_hdf5(path, ValueError, "HDF5 labels file") as f:
        ranks, taxa, _ = _read_taxa(f, path)
    sibling = path.parent / TREE_FILENAME
    if tree_path is not None:
        tree = TaxonomyTree.load(tree_path)
    elif sibling.is_file():
        tree = TaxonomyTree.load(sibling)
    else:
        return TaxonomyTree.from_labels(ranks, taxa)
    if list(tree.ranks) != ranks:
        raise ValueError(f"{path}: ranks {ranks} in the labels differ from the tree's {list(tree.ranks)}")
    classes = tree.encode(taxa)
    bad = [i for i, row in enumerate(classes) if not tree.is_consistent(row)]
    if bad:
        raise ValueError(
            f"{path}: {len(bad)} samples have labels that contradict the tree, e.g. sample"
            f" {bad[0]} with taxa {taxa[bad[0]].tolist()} (coarse -> fine)"
        )
    return tree


def load_split(
    path: str | os.PathLike[str],
    split: str | Split,
    tree_path: str | os.PathLike[str] | None = None,
) -> TaxonomySplit:
    """Load and validate one split of a ``labels.h5`` (images of that split only)."""
    split = parse_split(split)
    path = Path(path)
    tree = read_tree(path, tree_path)
    with open_hdf5(path, ValueError, "HDF5 labels file") as f:
        _, taxa, identifiers = _read_taxa(f, path)
        n = len(identifiers)
        if "images" not in f:
            raise ValueError(f"{path}: missing dataset 'images' (N, H, W, 3) uint8")
        images_ds = _dataset(f, "images", path)
        if images_ds.ndim != 4 or images_ds.shape[0] != n or images_ds.shape[3] != 3:
            raise ValueError(f"{path}: 'images' must have shape ({n}, H, W, 3), got {images_ds.shape}")
        if images_ds.dtype != np.uint8:
            raise ValueError(f"{path}: 'images' must be uint8 RGB, got dtype {images_ds.dtype}")
        if "split" in f:
            codes = _read(f, "split", path)
            if codes.shape != (n,) or not np.isin(codes, [0, 1, 2]).all():
                raise ValueError(f"{path}: 'split' must have shape ({n},) with values 0 train, 1 val, 2 test")
        else:
            codes = hash_split(identifiers)
        rows = np.flatnonzero(codes == SPLIT_CODES[split])
        if rows.size == 0:
            raise ValueError(f"{path}: split {split.value!r} has no samples")
        optional = {}
        for key, widths in (("spatial", (3,)), ("temporal", (2, 4))):
            if key in f:
                arr = _read(f, key, path)
                if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
                    raise ValueError(f"{path}: '{key}' must hold numbers (float), got dtype {arr.dtype}")
                arr = arr.astype(np.float32)
                if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] not in widths:
                    raise ValueError(f"{path}: '{key}' must have shape ({n}, {' or '.join(map(str, widths))}), got {arr.shape}")
                if not np.isfinite(arr).all():
                    raise ValueError(f"{path}: '{key}' contains NaN or inf")
                optional[key] = arr[rows]
        if "null_cause" in f:
            causes = _read(f, "null_cause", path)
            valid = [c.value for c in NullCause]
            if causes.shape != (n,) or not np.isin(causes, valid).all():
                raise ValueError(f"{path}: 'null_cause' must have shape ({n},) with values in {valid} (NullCause)")
            optional["null_cause"] = causes[rows].astype(np.int64)
        try:
            images = _read_rows(images_ds, rows)
        except OSError as err:  # a chunk HDF5 cannot decompress: a damaged file
            raise ValueError(f"{path}: dataset 'images' cannot be read ({first_line(err)})") from None
    return TaxonomySplit(
        tree=tree,
        split=split,
        identifiers=identifiers[rows],
        labels=tree.encode(taxa[rows]),
        images=images,
        **optional,
    )


def write_labels_h5(
    path: str | os.PathLike[str],
    *,
    identifiers: np.ndarray,
    taxa: dict[str, np.ndarray],
    images: np.ndarray,
    spatial: np.ndarray | None = None,
    temporal: np.ndarray | None = None,
    split: np.ndarray | None = None,
    null_cause: np.ndarray | None = None,
) -> None:
    """Write a ``labels.h5``; ``taxa`` maps level keys (``"L10"``..) to (N,) taxon ids."""
    with h5py.File(path, "w") as f:
        f.create_dataset("img_identifiers", data=np.asarray(identifiers, dtype="S"))
        for level, ids in taxa.items():
            f.create_dataset(f"taxa_{level}", data=np.asarray(ids, dtype=np.uint32))
        f.create_dataset("images", data=np.asarray(images, dtype=np.uint8), compression="lzf")
        for key, arr in (("spatial", spatial), ("temporal", temporal), ("split", split), ("null_cause", null_cause)):
            if arr is not None:
                f.create_dataset(key, data=arr)
