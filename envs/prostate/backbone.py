"""The SAM image encoder: presets, weights and input preprocessing.

The encoder is segment-anything's own ``ImageEncoderViT`` (patch 16, 256-channel
neck), so the feature grid is G = input size / 16: 16 for 256 px, 64 for SAM's
1024 px. Two presets:

* ``vit_b`` — SAM / MedSAM ViT-B at 1024 px, weights from a checkpoint path (the
  ``sam_checkpoint`` argument or ``$SCIENCEGYM_SAM_CHECKPOINT``; a MedSAM
  checkpoint has SAM's layout). Nothing is ever downloaded.
* ``small`` (default) — the same classes at 256 px with a narrow, shallow ViT whose
  attention is windowed (no global blocks), initialised from a fixed seed. Its
  features are random but fixed local descriptors of the image; the decoder learns
  on top of them. It keeps CPU runs fast and, because nothing mixes information
  across the image, a lesion shows up only in the features near it.

The encoder never runs in an env step: :mod:`envs.prostate.feature_cache` encodes
every core once per (backbone, cohort).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from dataclasses import fields as dataclass_fields
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT

from envs.errors import first_line, state_dict_problems
from envs.prostate.chunked_attention import use_row_chunked_attention
from rewards.choices import parse_choice

__all__ = [
    "CHECKPOINT_ENV_VAR",
    "PATCH_SIZE",
    "EMBED_CHANNELS",
    "VIT_B",
    "HEATMAP_UPSCALE",
    "BackboneName",
    "BackboneConfig",
    "backbone_config",
    "build_image_encoder",
    "load_sam_module",
    "load_sam_state_dict",
    "preprocess_bmode",
    "tiny_backbone",
]

CHECKPOINT_ENV_VAR = "SCIENCEGYM_SAM_CHECKPOINT"
PATCH_SIZE = 16
"""ViT patch size in pixels: one feature cell covers PATCH_SIZE x PATCH_SIZE input pixels."""
EMBED_CHANNELS = 256
"""SAM's neck width, the channel count of the features and of every prompt token."""
HEATMAP_UPSCALE = 4
"""SAM's mask decoder upsamples the feature grid 4x: heatmap side = 4 G."""

_PIXEL_MEAN = (123.675, 116.28, 103.53)
_PIXEL_STD = (58.395, 57.12, 57.375)


class BackboneName(str, Enum):
    """Image encoder presets."""

    SMALL = "small"
    VIT_B = "vit_b"


@dataclass(frozen=True)
class BackboneConfig:
    """Architecture (and weights) of a SAM image encoder."""

    name: BackboneName = BackboneName.SMALL
    img_size: int = 256
    """Encoder input side in pixels; images are resized to img_size x img_size."""
    embed_dim: int = 96
    depth: int = 2
    num_heads: int = 4
    window_size: int = 2
    """Window attention size in tokens (0 = global attention in every block)."""
    global_attn_indexes: tuple[int, ...] = ()
    use_rel_pos: bool = False
    init_seed: int = 0
    """Seed of the random initialisation (used when no checkpoint is given)."""
    checkpoint: str | None = None
    """SAM / MedSAM checkpoint (state dict with ``image_encoder.*`` keys)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", parse_choice(BackboneName, self.name, "BackboneConfig.name"))
        object.__setattr__(self, "global_attn_indexes", tuple(self.global_attn_indexes))
        if self.img_size % PATCH_SIZE or self.img_size < PATCH_SIZE:
            raise ValueError(f"BackboneConfig.img_size must be a positive multiple of {PATCH_SIZE}, got {self.img_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"BackboneConfig.embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.checkpoint is not None and not Path(self.checkpoint).expanduser().is_file():
            raise FileNotFoundError(f"BackboneConfig.checkpoint: no file at {self.checkpoint}")

    @property
    def grid_size(self) -> int:
        """G, the side of the feature grid."""
        return self.img_size // PATCH_SIZE

    @property
    def heatmap_size(self) -> int:
        """Side of the decoder's heatmap (4 G)."""
        return HEATMAP_UPSCALE * self.grid_size

    @property
    def key(self) -> str:
        """Cache key: the architecture plus the checkpoint file's identity."""
        spec = asdict(self)
        spec["name"] = self.name.value
        if self.checkpoint is not None:
            path = Path(self.checkpoint).expanduser().resolve()
            stat = path.stat()
            spec["checkpoint"] = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.name.value}-{self.img_size}-{digest}"


VIT_B = BackboneConfig(
    name=BackboneName.VIT_B, img_size=1024, embed_dim=768, depth=12, num_heads=12, window_size=14,
    global_attn_indexes=(2, 5, 8, 11), use_rel_pos=True,
)
"""SAM ViT-B's architecture (MedSAM's too), without weights: :func:`backbone_config` adds the checkpoint."""


def backbone_config(
    name: BackboneName | str | Mapping[str, Any] = BackboneName.SMALL,
    sam_checkpoint: str | os.PathLike[str] | None = None,
) -> BackboneConfig:
    """The preset ``name``; ``vit_b`` needs a checkpoint (argument or ``$SCIENCEGYM_SAM_CHECKPOINT``).

    A mapping is a preset (its ``name``, default ``small``) with some fields replaced,
    e.g. ``{"img_size": 96, "embed_dim": 32, "depth": 1, "num_heads": 2}``, so a config
    file or ``--hyperparams`` can ask for a custom encoder."""
    if isinstance(name, Mapping):
        fields = {f.name for f in dataclass_fields(BackboneConfig)}
        unknown = sorted(set(name) - fields)
        if unknown:
            raise ValueError(f"backbone: unknown field(s) {unknown}; expected some of {sorted(fields)}")
        changes = {k: v for k, v in name.items() if k != "name"}
        return replace(backbone_config(name.get("name", BackboneName.SMALL), sam_checkpoint), **changes)
    name = parse_choice(BackboneName, name, "backbone")
    checkpoint = sam_checkpoint or os.environ.get(CHECKPOINT_ENV_VAR) or None
    if name is BackboneName.SMALL:
        return BackboneConfig(checkpoint=str(checkpoint) if sam_checkpoint else None)
    if checkpoint is None:
        raise ValueError(
            "backbone='vit_b' needs SAM/MedSAM weights: pass sam_checkpoint=PATH or set"
            f" ${CHECKPOINT_ENV_VAR}; nothing is downloaded. Use backbone='small' to run without weights."
        )
    return replace(VIT_B, checkpoint=str(checkpoint))


def load_sam_state_dict(path: str | os.PathLike[str], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a SAM checkpoint under ``prefix`` (e.g. ``"image_encoder."``), prefix removed.

    A SAM / MedSAM checkpoint is a state dict of the whole ``Sam`` model (keys
    ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), possibly wrapped as
    ``{"model": state_dict}``.
    """
    path = Path(path).expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoint files
        raise ValueError(
            f"SAM checkpoint {path} cannot be read as a torch state dict ({type(err).__name__}: {first_line(err)})"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"SAM checkpoint {path} holds a {type(state).__name__}, not a state dict")
    selected = {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    if not selected:
        raise ValueError(
            f"SAM checkpoint {path} has no '{prefix}*' entries; is it a SAM/MedSAM state dict"
            " (keys image_encoder.*, prompt_encoder.*, mask_decoder.*)?"
        )
    return selected


def load_sam_module(module: torch.nn.Module, path: str | os.PathLike[str], prefix: str) -> None:
    """Load ``module`` from the ``prefix`` entries of a SAM checkpoint, strictly: missing
    or unexpected keys and shape mismatches are a ValueError that names them."""
    state = load_sam_state_dict(path, prefix)
    problems = state_dict_problems({prefix + k: v for k, v in module.state_dict().items()},
                                   {prefix + k: v for k, v in state.items()}, shown=8)
    if problems:
        raise ValueError(
            f"SAM checkpoint {path} does not fit {type(module).__name__} ({problems});"
            " expected a complete SAM/MedSAM ViT-B checkpoint"
        )
    module.load_state_dict(state)


def build_image_encoder(config: BackboneConfig) -> ImageEncoderViT:
    """segment-anything's ``ImageEncoderViT`` for ``config``, in eval mode, with its attention
    computed a few query rows at a time (:mod:`envs.prostate.chunked_attention`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        encoder = ImageEncoderViT(
            img_size=config.img_size,
            patch_size=PATCH_SIZE,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=4.0,
            out_chans=EMBED_CHANNELS,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=config.use_rel_pos,
            window_size=config.window_size,
            global_attn_indexes=config.global_attn_indexes,
        )
    if config.checkpoint is not None:
        load_sam_module(encoder, config.checkpoint, "image_encoder.")
    return use_row_chunked_attention(encoder).eval()


def preprocess_bmode(bmode: np.ndarray, img_size: int) -> torch.Tensor:
    """A B-mode image (H, W), any scale, -> SAM input (3, img_size, img_size).

    Intensities are min-max scaled to 0-255 per image, resized (bilinear, antialiased)
    to the square input, replicated to 3 channels and standardised with SAM's pixel
    mean and std.
    """
    image = torch.as_tensor(np.asarray(bmode, dtype=np.float32))  # (H, W)
    lo, hi = image.min(), image.max()
    image = (image - lo) / (hi - lo).clamp_min(1e-6) * 255.0
    image = F.interpolate(image[None, None], size=(img_size, img_size), mode="bilinear", antialias=True, align_corners=False)[0]  # (1, S, S)
    image = image.expand(3, -1, -1)  # (3, S, S)
    mean = torch.tensor(_PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(_PIXEL_STD).view(3, 1, 1)
    return (image - mean) / std


def tiny_backbone(img_size: int = 64) -> BackboneConfig:
    """A very small encoder for tests and quick experiments (G = img_size / 16)."""
    return replace(BackboneConfig(), img_size=img_size, embed_dim=32, depth=1, num_heads=2)
