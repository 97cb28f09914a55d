"""Phase 1 classifiers for Taxonomy: a network returning per-rank logits and features.

Phase 1 is supervised: one logit head per rank over that rank's class map (index 0 =
null is a column too, but null targets are masked out of the loss, so the model is
an "expert on known taxa"). Phase 2 (:mod:`policies.linnaeus`) wraps any module that
follows :class:`HierarchicalClassifier` into a MaskablePPO policy that learns when to
abstain. Checkpoints name their class by import string, so other architectures load
through the same :func:`load_phase1`.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch as th
from torch import nn

from envs.cache import cache_path, publish
from envs.errors import first_line, state_dict_problems

__all__ = [
    "CHECKPOINT_FORMAT",
    "HierarchicalClassifier",
    "Phase1Classifier",
    "Phase1Config",
    "class_probabilities",
    "confidence_features",
    "rank_confidence",
    "default_phase1_checkpoint",
    "images_to_tensor",
    "load_phase1",
    "save_phase1",
]

CHECKPOINT_FORMAT = "sciencegym.taxonomy.phase1/v1"
PRETRAIN_COMMAND = "python -m train pretrain --env Taxonomy-v0"


@runtime_checkable
class HierarchicalClassifier(Protocol):
    """What the Linnaeus policy needs from a Phase 1 model."""

    num_classes: tuple[int, ...]
    """Class-map size per rank, coarse -> fine, null included."""
    feature_dim: int
    """Width of the feature vector returned beside the logits."""

    def __call__(self, images: th.Tensor) -> tuple[list[th.Tensor], th.Tensor]:
        """``images`` (B, 3, H, W) float in [0, 1] -> (per-rank logits [(B, n_r)], features (B, F))."""
        ...

    def backbone_blocks(self) -> nn.ModuleList:
        """Feature blocks from input to output (``last_n_blocks`` unfreezes the last N)."""
        ...

    def classifier_heads(self) -> nn.ModuleList:
        """The per-rank logit heads."""
        ...


@dataclass(frozen=True)
class Phase1Config:
    """Architecture of :class:`Phase1Classifier`."""

    num_classes: tuple[int, ...]
    """Class-map size per rank, null included."""
    channels: tuple[int, ...] = (16, 32, 64, 128)
    """Output channels of each conv block; every block after the first halves H and W."""

    def __post_init__(self) -> None:
        if not self.num_classes or any(n < 2 for n in self.num_classes):
            raise ValueError(f"num_classes must list >= 2 classes (null + 1) per rank, got {self.num_classes}")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive, got {self.channels}")


class Phase1Classifier(nn.Module):
    """A small multi-head CNN: conv blocks (conv 3x3, GroupNorm, ReLU), global average
    pooling, one linear head per rank. GroupNorm rather than BatchNorm so that frozen
    blocks stay frozen in train mode (no running statistics)."""

    def __init__(self, config: Phase1Config) -> None:
        super().__init__()
        self.config = config
        self.num_classes = tuple(config.num_classes)
        blocks, c_in = [], 3
        for i, c_out in enumerate(config.channels):
            blocks.append(nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1),
                nn.GroupNorm(min(8, c_out), c_out),
                nn.ReLU(),
            ))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = c_in
        self.heads = nn.ModuleList([nn.Linear(c_in, n) for n in self.num_classes])

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Phase1Classifier:
        """Rebuild from the ``config`` stored in a checkpoint."""
        return cls(Phase1Config(
            num_classes=tuple(config["num_classes"]), channels=tuple(config["channels"])
        ))

    def config_dict(self) -> dict[str, Any]:
        """JSON-able architecture, stored in checkpoints."""
        return {k: list(v) for k, v in asdict(self.config).items()}

    def forward(self, images: th.Tensor) -> tuple[list[th.Tensor], th.Tensor]:
        """``images`` (B, 3, H, W) in [0, 1] -> ([(B, n_r) per rank], features (B, F))."""
        x = images
        for block in self.blocks:
            x = block(x)  # (B, C, H', W')
        features = x.mean(dim=(2, 3))  # (B, F)
        return [head(features) for head in self.heads], features

    def backbone_blocks(self) -> nn.ModuleList:
        return self.blocks

    def classifier_heads(self) -> nn.ModuleList:
        return self.heads


def images_to_tensor(images: np.ndarray, device: str | th.device = "cpu") -> th.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], the input of a Phase 1 model."""
    return th.as_tensor(images, device=device).permute(0, 3, 1, 2).float() / 255.0


@th.no_grad()
def class_probabilities(
    model: HierarchicalClassifier, images: np.ndarray, device: str | th.device = "cpu", batch_size: int = 512
) -> list[np.ndarray]:
    """Per rank, the model's softmax over classes 1..K_r (null excluded): [(N, K_r)] for
    uint8 images (N, H, W, 3). Column ``k`` is class index ``k + 1``."""
    model.eval()
    out: list[list[np.ndarray]] = [[] for _ in model.num_classes]
    for s in range(0, len(images), batch_size):
        logits, _ = model(images_to_tensor(images[s : s + batch_size], device))
        for r, rank_logits in enumerate(logits):
            out[r].append(th.softmax(rank_logits[:, 1:], dim=1).cpu().numpy())
    return [np.concatenate(chunks) for chunks in out]


def rank_confidence(rank_logits: th.Tensor) -> th.Tensor:
    """Top probability and entropy / log K_r of one rank's softmax over classes 1..K_r
    (null column excluded), detached: (B, n_r) logits -> (B, 2)."""
    logp = th.log_softmax(rank_logits[:, 1:].detach(), dim=1)  # (B, K_r)
    entropy = -(logp.exp() * logp).sum(dim=1) / max(math.log(logp.shape[1]), 1e-6)  # (B,)
    return th.stack([logp.max(dim=1).values.exp(), entropy], dim=1)  # (B, 2)


@th.no_grad()
def confidence_features(
    model: HierarchicalClassifier, images: np.ndarray, device: str | th.device = "cpu", batch_size: int = 512
) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`class_probabilities` [(N, K_r)] and the inputs of an abstain head (N, F + 2R):
    the model's features, then per rank the top probability and the entropy / log K_r
    of its softmax over classes 1..K_r (what the Linnaeus policy's abstain head reads)."""
    model.eval()
    probs: list[list[np.ndarray]] = [[] for _ in model.num_classes]
    inputs = []
    for s in range(0, len(images), batch_size):
        logits, features = model(images_to_tensor(images[s : s + batch_size], device))  # [(B, n_r)], (B, F)
        for r, rank_logits in enumerate(logits):
            probs[r].append(th.softmax(rank_logits[:, 1:], dim=1).cpu().numpy())
        stats = [rank_confidence(rank_logits) for rank_logits in logits]  # [(B, 2)]
        inputs.append(th.cat([features, *stats], dim=1).cpu().numpy())  # (B, F + 2R)
    return [np.concatenate(p) for p in probs], np.concatenate(inputs)


def default_phase1_checkpoint(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``python -m train pretrain --env Taxonomy-v0`` writes, and the policy reads."""
    return cache_path("taxonomy", "phase1.pt", override=cache_dir)


def save_phase1(
    model: nn.Module, path: str | os.PathLike[str], *, tree_fingerprint: str, ranks: tuple[str, ...]
) -> None:
    """Save weights plus what is needed to rebuild the model and check it fits the data."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "target": f"{type(model).__module__}:{type(model).__qualname__}",
        "config": model.config_dict(),
        "state_dict": model.state_dict(),
        "tree_fingerprint": tree_fingerprint,
        "ranks": list(ranks),
    }
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    th.save(payload, tmp)
    publish(tmp, path)


def load_phase1(
    path: str | os.PathLike[str], device: str | th.device = "cpu"
) -> tuple[HierarchicalClassifier, dict[str, Any]]:
    """Load a Phase 1 checkpoint: (model, metadata with ``tree_fingerprint`` and ``ranks``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Phase 1 checkpoint not found: {path}. Train one with `{PRETRAIN_COMMAND}`"
            " (it writes this default location), or pass the path of yours."
        )
    # A truncated file, another architecture's weights or an edited config is one line
    # naming the file and the field, not torch's RuntimeError / KeyError traceback.
    try:
        payload = th.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types (RuntimeError, UnpicklingError, KeyError) for bad files
        raise ValueError(f"Phase 1 checkpoint {path} cannot be read as a torch file ({type(err).__name__}: {first_line(err)})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a Phase 1 checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    missing = [k for k in ("target", "config", "state_dict", "tree_fingerprint", "ranks") if k not in payload]
    if missing:
        raise ValueError(f"Phase 1 checkpoint {path} lacks {missing}; write checkpoints with save_phase1")
    target = str(payload["target"])
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"Phase 1 checkpoint {path}: 'target' {target!r} cannot be imported ({first_line(err)})") from None
    try:
        model = cls.from_config(payload["config"])
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"Phase 1 checkpoint {path}: 'config' does not build {target} ({type(err).__name__}: {first_line(err)})"
        ) from None
    if not isinstance(payload["state_dict"], dict) or not isinstance(model, nn.Module):
        raise ValueError(f"Phase 1 checkpoint {path}: 'state_dict' is not a dict of weights for an nn.Module {target}")
    problems = state_dict_problems(model.state_dict(), payload["state_dict"])
    if problems:
        raise ValueError(f"Phase 1 checkpoint {path}: 'state_dict' does not fit {target} built from its 'config' ({problems})")
    model.load_state_dict(payload["state_dict"])
    model.to(device)
    if not isinstance(model, HierarchicalClassifier):
        raise TypeError(f"Phase 1 checkpoint {path}: 'target' {target} does not implement HierarchicalClassifier")
    meta = {"tree_fingerprint": payload["tree_fingerprint"], "ranks": tuple(payload["ranks"])}
    return model, meta
