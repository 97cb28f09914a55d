"""The feature cache: every core of a cohort encoded once per backbone, in one HDF5 file.

The image encoder costs ~20 s per 1024 px image on 2 CPU cores (ViT-B), so features are
computed once per (backbone, cohort), with a progress bar, and env steps and decoder
training only read this file. It also holds the masks at the resolutions the reward
model needs. This module alone knows the file's layout::

    core_ids            (N,) str
    features            (N, 256, G, G) float16, the image encoder's output
    prostate_fraction   (N, G, G) float32, prostate area fraction per feature cell
    core_weights        (N, 4G, 4G) float32, prostate-and-needle area fraction per heatmap pixel
    attrs["backbone"]   the BackboneConfig as JSON (provenance; never read back)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from envs.cache import cache_path, is_complete, publish
from envs.prostate.backbone import EMBED_CHANNELS, HEATMAP_UPSCALE, BackboneConfig, build_image_encoder, preprocess_bmode
from envs.prostate.data import ProstateCohort

__all__ = ["ALLOWED_FRACTION", "NEEDLE_FRACTION", "CachedCores", "FeatureFile", "area_fraction", "ensure_features"]

ALLOWED_FRACTION = 0.5
"""A point may go to a cell at least this fraction inside the prostate."""
NEEDLE_FRACTION = 0.1
"""A cell is on the biopsy core (the needle inside the prostate) when at least this
fraction of its area is."""

_CORE_IDS = "core_ids"
_FEATURES = "features"
_PROSTATE_FRACTION = "prostate_fraction"
_CORE_WEIGHTS = "core_weights"
_BACKBONE_ATTR = "backbone"


@dataclass(frozen=True)
class FeatureFile:
    """The cached features of one (backbone, cohort); read them with :meth:`cores`."""

    path: Path
    grid_size: int

    def cores(self, core_ids: Sequence[str]) -> CachedCores:
        """The cached data of ``core_ids``, in that order."""
        return CachedCores(self, core_ids)


class CachedCores:
    """A fixed list of cores in a feature file: their masks, read at once, and their
    features, read one core at a time (an env reads one per reset) or all together
    (training). The per-core handle opens on first use, so an env holding this object
    can still be pickled before it runs (SubprocVecEnv)."""

    def __init__(self, file: FeatureFile, core_ids: Sequence[str]) -> None:
        self.path = file.path
        with h5py.File(self.path, "r") as f:
            index = {cid: i for i, cid in enumerate(f[_CORE_IDS].asstr()[:])}
            self._rows = np.array([index[cid] for cid in core_ids], dtype=np.int64)
            self.prostate_fraction: np.ndarray = _read_rows(f[_PROSTATE_FRACTION], self._rows)  # (N, G, G) float32
            self.core_weights: np.ndarray = _read_rows(f[_CORE_WEIGHTS], self._rows)  # (N, 4G, 4G) float32
        self._h5: h5py.File | None = None

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def allowed(self) -> np.ndarray:
        """(N, G*G) bool: the cells a point may go to (see :data:`ALLOWED_FRACTION`)."""
        return (self.prostate_fraction >= ALLOWED_FRACTION).reshape(len(self), -1)

    @property
    def needle_cells(self) -> np.ndarray:
        """(N, G*G) bool: the cells the biopsy core passes through (see :data:`NEEDLE_FRACTION`),
        from the 4G x 4G core weights pooled to the feature grid."""
        pooled = F.avg_pool2d(torch.from_numpy(self.core_weights)[:, None], HEATMAP_UPSCALE)[:, 0]  # (N, G, G)
        return (pooled.numpy() >= NEEDLE_FRACTION).reshape(len(self), -1)

    def features(self, i: int) -> np.ndarray:
        """Features of the i-th core as float32 (256, G, G)."""
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        return np.asarray(self._h5[_FEATURES][self._rows[i]], dtype=np.float32)

    def all_features(self) -> np.ndarray:
        """Features of every core as stored, float16 (N, 256, G, G)."""
        with h5py.File(self.path, "r") as f:
            return _read_rows(f[_FEATURES], self._rows)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def _read_rows(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for distinct rows in any order (HDF5 wants increasing indices)."""
    order = np.argsort(rows)
    return dataset[rows[order]][np.argsort(order)]


def area_fraction(mask: np.ndarray, size: int) -> np.ndarray:
    """Fraction of each cell of a size x size grid covered by ``mask`` (H, W)."""
    tensor = torch.as_tensor(mask.astype(np.float32))[None, None]  # (1, 1, H, W)
    return F.adaptive_avg_pool2d(tensor, (size, size))[0, 0].numpy()  # (size, size)


def _feature_path(cohort: ProstateCohort, config: BackboneConfig, cache_dir: str | os.PathLike[str] | None) -> Path:
    return cache_path("prostate", "features", config.key, f"{cohort.fingerprint()}.h5", override=cache_dir)


def ensure_features(
    cohort: ProstateCohort,
    config: BackboneConfig,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    progress: bool = True,
) -> FeatureFile:
    """Encode every core of ``cohort`` once (cached); return the feature file.

    ``batch_size`` images per encoder call; None = 8 below 1024 px and 1 from 1024 px
    (ViT-B's global attention over 64 x 64 tokens needs ~1 GB per image).
    The file is written under a temporary name and renamed, so concurrent envs never
    read a half-written cache.
    """
    path = _feature_path(cohort, config, cache_dir)
    G, H = config.grid_size, config.heatmap_size
    if batch_size is None:
        batch_size = 1 if config.img_size >= 1024 else 8
    if is_complete(path):
        return FeatureFile(path, G)
    encoder = build_image_encoder(config).to(device)
    core_ids = cohort.core_ids
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:  # a core that fails its checks mid-way (CohortError) leaves no half-written file behind
        with h5py.File(tmp, "w") as f:
            f.create_dataset(_CORE_IDS, data=np.array(core_ids, dtype=object), dtype=h5py.string_dtype())
            feats = f.create_dataset(_FEATURES, (len(core_ids), EMBED_CHANNELS, G, G), dtype=np.float16, chunks=(1, EMBED_CHANNELS, G, G))
            prostate = f.create_dataset(_PROSTATE_FRACTION, (len(core_ids), G, G), dtype=np.float32)
            weights = f.create_dataset(_CORE_WEIGHTS, (len(core_ids), H, H), dtype=np.float32)
            f.attrs[_BACKBONE_ATTR] = json.dumps({**asdict(config), "name": config.name.value})
            bar = tqdm(total=len(core_ids), desc=f"Encoding cores ({config.name.value}, {config.img_size}px)", disable=not progress)
            for start in range(0, len(core_ids), batch_size):
                batch_ids = core_ids[start : start + batch_size]
                images, masks = [], []
                for core_id in batch_ids:
                    core = cohort.read_images(core_id)
                    images.append(preprocess_bmode(core.bmode, config.img_size))
                    masks.append(core)
                with torch.no_grad():
                    out = encoder(torch.stack(images).to(device))  # (b, 256, G, G)
                stop = start + len(batch_ids)
                feats[start:stop] = out.cpu().numpy().astype(np.float16)
                for i, core in enumerate(masks):
                    prostate[start + i] = area_fraction(core.prostate_mask, G)
                    weights[start + i] = area_fraction(core.prostate_mask & core.needle_mask, H)
                bar.update(len(batch_ids))
            bar.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, path)
    return FeatureFile(path, G)
