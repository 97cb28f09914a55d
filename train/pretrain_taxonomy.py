"""Phase 1 for Taxonomy: supervised training of the multi-head CNN the Linnaeus policy wraps.

``python -m train pretrain --env Taxonomy-v0`` (or ``TaxonomyMultitask-v0``: same data,
same model) trains :class:`~policies.phase1.Phase1Classifier` on the env's train split
with one cross-entropy per rank, null labels masked out of the loss (Phase 1 is an
expert on known taxa; Phase 2 learns to abstain). The epoch with the best mean
validation accuracy is kept and written to the default checkpoint location, where the
policy finds it, and copied into the run directory.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F

import envs  # noqa: F401  (registers the env ids)
from envs.taxonomy.data import Split, TaxonomySplit
from policies.phase1 import (
    Phase1Classifier,
    Phase1Config,
    class_probabilities,
    default_phase1_checkpoint,
    images_to_tensor,
    save_phase1,
)

__all__ = ["Phase1TrainConfig", "per_rank_accuracy", "pretrain", "train_phase1"]


@dataclass(frozen=True)
class Phase1TrainConfig:
    """Hyperparameters of Phase 1 (``train/hyperparams/pretrain.yml``)."""

    epochs: int = 12
    """Passes over the train split."""
    batch_size: int = 128
    """Images per gradient step."""
    learning_rate: float = 2e-3
    """AdamW learning rate, decayed to 0 by a cosine schedule."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_shift: int = 2
    """Random translation augmentation, in pixels (0 = off)."""
    channels: tuple[int, ...] = (16, 32, 64, 128)
    """Conv block widths of the classifier."""

    def __post_init__(self) -> None:
        for name, ok, allowed in (
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("max_shift", self.max_shift >= 0, ">= 0"),
        ):
            if not ok:
                raise ValueError(f"pretrain hyperparameter {name} must be {allowed}, got {getattr(self, name)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Phase1TrainConfig:
        """Validate a hyperparameter mapping; unknown keys are errors that list the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown pretrain hyperparameters {sorted(unknown)} for Taxonomy; known: {sorted(known)}")
        values = dict(values)
        if "channels" in values:
            values["channels"] = tuple(int(c) for c in values["channels"])
        return cls(**values)


def _shift(images: th.Tensor, max_shift: int, rng: np.random.Generator) -> th.Tensor:
    """Translate each image by up to ``max_shift`` pixels (edge padding)."""
    if max_shift == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")  # (B, 3, H + 2s, W + 2s)
    offsets = rng.integers(0, 2 * max_shift + 1, size=(b, 2))
    return th.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets)])


def _rank_loss(logits: list[th.Tensor], labels: th.Tensor) -> th.Tensor:
    """Sum over ranks of the mean cross-entropy over non-null labels (0 if all are null)."""
    total = logits[0].new_zeros(())
    for r, rank_logits in enumerate(logits):
        target = labels[:, r]  # (B,)
        n_labelled = int((target != 0).sum())
        if n_labelled:
            total = total + F.cross_entropy(rank_logits, target, ignore_index=0, reduction="sum") / n_labelled
    return total


def per_rank_accuracy(
    model: th.nn.Module, data: TaxonomySplit, device: str | th.device = "cpu"
) -> dict[str, float | None]:
    """Top-1 accuracy per rank over samples labelled at that rank (nulls excluded);
    None for a rank without labelled samples."""
    probs = class_probabilities(model, data.images, device)
    acc = {}
    for r, rank in enumerate(data.tree.ranks):
        labelled = data.labels[:, r] != 0
        pred = probs[r].argmax(axis=1) + 1
        acc[rank] = float((pred[labelled] == data.labels[labelled, r]).mean()) if labelled.any() else None
    return acc


def train_phase1(
    train: TaxonomySplit, val: TaxonomySplit, cfg: Phase1TrainConfig, seed: int, device: str | th.device = "cpu",
    log: bool = True,
) -> tuple[Phase1Classifier, dict[str, Any]]:
    """Train and return the epoch with the best mean validation accuracy, with its history."""
    th.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Phase1Classifier(Phase1Config(num_classes=train.tree.num_classes, channels=cfg.channels)).to(device)
    optimizer = th.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(train) // cfg.batch_size)
    scheduler = th.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs * steps_per_epoch)
    labels = th.as_tensor(train.labels, device=device)
    best_score, best_state, best_epoch, history = -np.inf, None, 0, []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        losses = []
        for s in range(0, len(train), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            images = _shift(images_to_tensor(train.images[idx], device), cfg.max_shift, rng)
            logits, _ = model(images)
            loss = _rank_loss(logits, labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach().item())
        val_acc = per_rank_accuracy(model, val, device)
        score = float(np.mean([v for v in val_acc.values() if v is not None] or [0.0]))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": val_acc})
        if log:
            ranks = " ".join(f"{k}={v if v is None else round(v, 3)}" for k, v in val_acc.items())
            print(f"phase1 epoch {epoch}/{cfg.epochs} loss={np.mean(losses):.3f} val {ranks}", flush=True)
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return model, {"best_epoch": best_epoch, "history": history}


def _load(env_id: str, env_kwargs: Mapping[str, Any], split: Split) -> TaxonomySplit:
    """The data split the env would use (same data_path / synthetic / cache_dir resolution)."""
    env = gym.make(env_id, **{**env_kwargs, "split": split.value})
    try:
        return env.unwrapped.data
    finally:
        env.close()


def pretrain(
    env_id: str, run_dir: Path, seed: int, device: str, hyperparams: dict[str, Any], env_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The ``python -m train pretrain`` entry for Taxonomy-v0 / TaxonomyMultitask-v0."""
    cfg = Phase1TrainConfig.from_mapping(hyperparams)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    train, val, test = (_load(env_id, env_kwargs, s) for s in (Split.TRAIN, Split.VAL, Split.TEST))
    start = time.perf_counter()
    model, record = train_phase1(train, val, cfg, seed, device)
    seconds = time.perf_counter() - start
    checkpoint = default_phase1_checkpoint(env_kwargs.get("cache_dir"))
    save_phase1(model, checkpoint, tree_fingerprint=train.tree.fingerprint(), ranks=train.tree.ranks)
    shutil.copy2(checkpoint, run_dir / "phase1.pt")
    return {
        "per_rank_accuracy": {
            "val": per_rank_accuracy(model, val, device),
            "test": per_rank_accuracy(model, test, device),
        },
        "best_epoch": record["best_epoch"],
        "history": record["history"],
        "train_seconds": seconds,
        "n_train": len(train),
        "checkpoint": str(checkpoint),
        "config": dataclasses.asdict(cfg),
    }
