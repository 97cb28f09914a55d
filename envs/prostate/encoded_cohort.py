"""The cohort an env or a pre-training run works on, with its image encoder and features.

Resolved in one place so that ``python -m train pretrain --env Prostate-v0`` with some
``env_kwargs`` trains the decoder that ``gym.make("Prostate-v0", **env_kwargs)`` then
loads: both key the decoder checkpoint by the same backbone and cohort.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from envs.prostate.backbone import BackboneConfig, backbone_config
from envs.prostate.data import ProstateCohort
from envs.prostate.feature_cache import FeatureFile, ensure_features
from envs.prostate.synthetic import SyntheticCohortConfig, ensure_synthetic_cohort

__all__ = ["COHORT_KWARGS", "EncodedCohort", "load_encoded_cohort"]

COHORT_KWARGS: tuple[str, ...] = ("data_dir", "synthetic", "backbone", "sam_checkpoint", "cache_dir")
"""The env kwargs that choose the cohort, the encoder and the cache (the arguments of
:func:`load_encoded_cohort`)."""


@dataclass(frozen=True)
class EncodedCohort:
    """A validated cohort, the image encoder that reads it and its cached features."""

    cohort: ProstateCohort
    backbone: BackboneConfig
    features: FeatureFile


def load_encoded_cohort(
    data_dir: str | os.PathLike[str] | None = None,
    synthetic: SyntheticCohortConfig | Mapping[str, Any] | None = None,
    backbone: BackboneConfig | str | Mapping[str, Any] = "small",
    sam_checkpoint: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> EncodedCohort:
    """The cohort at ``data_dir``, or the phantom configured by ``synthetic`` (generated on
    first use); the backbone preset or config; its features, encoded on first use on
    ``device``. Arguments as in :class:`envs.prostate.env.ProstateEnv`."""
    if data_dir is None:
        if isinstance(synthetic, Mapping):
            synthetic = SyntheticCohortConfig(**synthetic)
        data_dir = ensure_synthetic_cohort(synthetic, cache_dir)
    elif synthetic is not None:
        raise ValueError("pass either data_dir (a real cohort) or synthetic (the phantom), not both")
    cohort = ProstateCohort(data_dir)
    if not isinstance(backbone, BackboneConfig):
        backbone = backbone_config(backbone, sam_checkpoint)
    return EncodedCohort(cohort, backbone, ensure_features(cohort, backbone, cache_dir=cache_dir, device=device))
