"""Pre-training of the reward model (:mod:`envs.prostate.reward_model`).

Supervised, on the train split, with random valid points per core: involvement BCE on
the core score plus csPCa cross-entropy on the class head (plus, on the phantom, a pixel
BCE against the lesion masks inside the glimpses). Uniform points rarely land on a
lesion, so a share of the samples draws its points from the cells the biopsy core
passes through. Model selection by validation loss; the reward-component
statistics of the selected model go into the checkpoint for ``normalize_components``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from envs.prostate.backbone import BackboneConfig
from envs.prostate.data import ProstateCohort, normalize_clinical
from envs.prostate.feature_cache import FeatureFile, area_fraction
from envs.prostate.metrics import binary_auroc
from envs.prostate.reward_model import SAM_TRANSFORMER, CoreScores, DecoderConfig, ProstateDecoder, glimpse_mask
from envs.splits import Split
from rewards.prostate import RewardMode, reward_components

__all__ = [
    "DecoderTrainingConfig",
    "CoreBatch",
    "decoder_loss",
    "LESION_CELL_FRACTION",
    "lesion_cell_labels",
    "lesion_area_fractions",
    "load_core_batch",
    "sample_random_cells",
    "training_points",
    "validation_loss",
    "evaluate_decoder",
    "reward_component_stats",
    "initial_decoder",
    "fit_decoder",
]


@dataclass(frozen=True)
class DecoderTrainingConfig:
    """How the reward model is built and trained (``train/hyperparams/pretrain.yml``)."""

    epochs: int = 10
    """Passes over the train split; each pass draws fresh random points per core."""
    batch_size: int = 32
    lr: float = 1e-3
    """Peak learning rate of the one-cycle schedule (AdamW)."""
    weight_decay: float = 0.01
    max_points: int = 3
    """Random points per core are drawn uniformly from 1..max_points."""
    p_no_points: float = 0.1
    """Fraction of samples with no point at all (the decoder must cope with STOP-only)."""
    needle_point_fraction: float = 0.5
    """Fraction of samples whose random points are drawn from the cells the biopsy core
    passes through rather than from the whole prostate. Uniform points rarely land on a
    lesion, so without this the decoder gets too few examples of reading a lesion to
    learn it (and learns to rely on clinical values alone)."""
    lesion_point_fraction: float = 0.25
    """Fraction of samples whose random points are drawn from cells at or next to a lesion
    (lesion ground truth of the train split; only the phantom has it, so real cohorts
    skip this). Without examples of glimpses that contain a lesion, a decoder with small
    glimpses never learns to read one. Taken before ``needle_point_fraction``."""
    class_weight: float = 0.5
    """Weight of the csPCa cross-entropy against the involvement BCE."""
    lesion_pixel_weight: float = 1.0
    """Weight of a pixel-level BCE of the heatmap against the lesion ground truth, on the
    prostate pixels inside the glimpses (phantom only: real cohorts have no lesion masks
    and skip it). The core-level BCE alone gives every pixel of a core the same gradient,
    so in a few hundred steps the decoder learns the clinical prior, not to read the lesion
    it sees (phantom v3: core AUROC 0.72 with points on the lesions, while a linear probe
    of the same features reaches 0.90 from the needle's cells)."""
    cspca_threshold: int = 2
    """Grade group from which a core counts as clinically significant (class head target)."""
    grad_clip: float = 1.0
    transformer_depth: int = 1
    """Two-way transformer blocks (SAM: 2; one keeps CPU pre-training to minutes). Ignored
    when a SAM checkpoint initialises the decoder (SAM's 2 blocks are used)."""
    mlp_dim: int = 256
    """Transformer MLP width (SAM: 2048; ignored, like ``transformer_depth``, with a SAM checkpoint)."""
    class_hidden: int = 128
    glimpse_radius: float | None = 0.0
    """Cells the decoder sees around each point (in cells, centre to centre; 0 = the
    point's own cell, 1.0 = the cell and its four neighbours). At 0, three glimpses evenly
    spaced along a biopsy core see 22 % of its lesion area on the default phantom (79 %
    at 1.0, 98 % at 1.5), so where along and beside the needle one looks matters; None =
    the whole image."""
    val_repeats: int = 2
    """Random point sets per validation core when measuring AUROC."""
    seed: int = 0
    threads: int | None = None
    """torch intra-op threads during training (None = leave as is)."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_points", "transformer_depth", "mlp_dim", "class_hidden", "val_repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DecoderTrainingConfig.{name} must be a positive int, got {value!r}")
        for name in ("needle_point_fraction", "lesion_point_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DecoderTrainingConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.p_no_points < 1.0:
            raise ValueError(f"DecoderTrainingConfig.p_no_points must be in [0, 1), got {self.p_no_points}")
        if not 1 <= self.cspca_threshold <= 5:
            raise ValueError(f"DecoderTrainingConfig.cspca_threshold must be a grade group in 1..5, got {self.cspca_threshold}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.class_weight < 0 or self.lesion_pixel_weight < 0:
            raise ValueError(
                "DecoderTrainingConfig: lr and grad_clip must be > 0, weight_decay, class_weight and lesion_pixel_weight"
                f" >= 0; got lr={self.lr}, grad_clip={self.grad_clip}, weight_decay={self.weight_decay},"
                f" class_weight={self.class_weight}, lesion_pixel_weight={self.lesion_pixel_weight}"
            )

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "DecoderTrainingConfig":
        """Build from a hyperparameter mapping; unknown keys are an error that lists the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown Prostate-v0 pretrain hyperparameter(s) {unknown}; valid: {sorted(known)}")
        return cls(**values)

    def decoder_config(self, backbone: BackboneConfig) -> DecoderConfig:
        """The architecture to train on ``backbone``'s feature grid. With a SAM/MedSAM
        checkpoint the decoder starts from its weights, so it takes SAM's transformer
        (:data:`~envs.prostate.reward_model.SAM_TRANSFORMER`) instead of
        ``transformer_depth`` / ``mlp_dim``."""
        transformer = {"transformer_depth": self.transformer_depth, "mlp_dim": self.mlp_dim}
        if backbone.checkpoint is not None:
            transformer = SAM_TRANSFORMER
        return DecoderConfig(
            grid_size=backbone.grid_size, img_size=backbone.img_size, class_hidden=self.class_hidden,
            glimpse_radius=self.glimpse_radius, **transformer,
        )


# --------------------------------------------------------------------------- data


@dataclass
class CoreBatch:
    """Tensors for a set of cores, as decoder training needs them."""

    core_ids: list[str]
    features: torch.Tensor
    """(N, 256, G, G) float16 (converted per batch)."""
    allowed: torch.Tensor
    """(N, G*G) bool: cells at least half inside the prostate."""
    needle_cells: torch.Tensor
    """(N, G*G) bool: allowed cells that the biopsy core passes through (>= 10 % of the cell)."""
    core_weights: torch.Tensor
    """(N, 4G, 4G) float32 prostate-and-needle area fractions."""
    lesion_cells: torch.Tensor | None
    """(N, G*G) bool: allowed cells at or next to a lesion (None: the cohort has no lesion
    ground truth)."""
    lesion_pixels: torch.Tensor | None
    """(N, 4G, 4G) float32 lesion area fraction per heatmap pixel (None: no lesion ground truth)."""
    clinical: torch.Tensor
    """(N, 4) standardised, missing = 0."""
    clinical_present: torch.Tensor
    """(N, 4) bool."""
    involvement: torch.Tensor
    """(N,) in [0, 1]."""
    grade_group: torch.Tensor
    """(N,) long, 0-5."""


LESION_CELL_FRACTION = 0.25
"""A feature cell counts as lesion when at least this fraction of its area is."""


def lesion_cell_labels(cohort: ProstateCohort, core_ids: Sequence[str], grid_size: int) -> np.ndarray | None:
    """(N, G*G) bool: cells at least :data:`LESION_CELL_FRACTION` lesion, from the cohort's
    lesion ground truth; None if any core has none (real cohorts)."""
    fractions = lesion_area_fractions(cohort, core_ids, grid_size)  # (N, G, G)
    return None if fractions is None else fractions.reshape(len(fractions), grid_size * grid_size) >= LESION_CELL_FRACTION


def lesion_area_fractions(cohort: ProstateCohort, core_ids: Sequence[str], size: int) -> np.ndarray | None:
    """(N, size, size) float32 lesion area fraction per cell of a size x size grid (the
    feature grid, or the heatmap's) from the cohort's lesion ground truth; None if any core
    has none (real cohorts)."""
    fractions = []
    for core_id in core_ids:
        mask = cohort.read_lesion_mask(core_id)
        if mask is None:
            return None
        fractions.append(area_fraction(mask, size))
    return np.stack(fractions) if fractions else np.zeros((0, size, size), dtype=np.float32)


def load_core_batch(cohort: ProstateCohort, features: FeatureFile, split: Split | str) -> CoreBatch:
    """All cores of ``split`` with their cached features (used for decoder training)."""
    records = cohort.cores(split)
    cached = features.cores([r.core_id for r in records])
    weights = cached.core_weights  # (N, 4G, 4G)
    clinical, present = normalize_clinical(np.stack([r.clinical for r in records]))  # (N, 4) each
    allowed = torch.from_numpy(cached.allowed)  # (N, G*G)
    pixels = lesion_area_fractions(cohort, [r.core_id for r in records], weights.shape[-1])
    return CoreBatch(
        core_ids=[r.core_id for r in records],
        features=torch.from_numpy(cached.all_features()),
        allowed=allowed,
        needle_cells=allowed & torch.from_numpy(cached.needle_cells),
        core_weights=torch.from_numpy(weights),
        lesion_cells=_near_lesion(lesion_cell_labels(cohort, [r.core_id for r in records], features.grid_size),
                                  allowed, features.grid_size),
        lesion_pixels=None if pixels is None else torch.from_numpy(pixels),
        clinical=torch.from_numpy(clinical),
        clinical_present=torch.from_numpy(present),
        involvement=torch.tensor([r.involvement for r in records], dtype=torch.float32),
        grade_group=torch.tensor([r.grade_group for r in records], dtype=torch.long),
    )


def _near_lesion(labels: np.ndarray | None, allowed: torch.Tensor, grid_size: int) -> torch.Tensor | None:
    """Lesion cells grown by one cell (3 x 3), within the allowed cells; None stays None."""
    if labels is None:
        return None
    grid = torch.from_numpy(labels).float().view(-1, 1, grid_size, grid_size)  # (N, 1, G, G)
    grown = F.max_pool2d(grid, 3, stride=1, padding=1).view(len(labels), -1) > 0  # (N, G*G)
    return grown & allowed


def sample_random_cells(allowed: torch.Tensor, n_points: torch.Tensor, k_max: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, ``n_points[b]`` distinct allowed cells uniformly at random.

    allowed (B, G*G) bool, n_points (B,) long <= k_max -> cells (B, k_max) long, valid (B, k_max) bool.
    Rows with fewer allowed cells than asked get all of them.
    """
    B = allowed.shape[0]
    if k_max == 0:
        return torch.zeros(B, 0, dtype=torch.long), torch.zeros(B, 0, dtype=torch.bool)
    keys = torch.rand(allowed.shape, generator=generator)  # (B, G*G)
    keys = torch.where(allowed, keys, torch.full_like(keys, 2.0))
    cells = keys.argsort(dim=1)[:, :k_max]  # (B, k_max)
    ranks = torch.arange(k_max).expand(B, -1)  # (B, k_max)
    valid = (ranks < n_points[:, None]) & allowed.gather(1, cells)  # (B, k_max)
    return cells, valid


# ----------------------------------------------------------------------- training


def _score(decoder: ProstateDecoder, batch: CoreBatch, idx: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor,
           device: torch.device) -> CoreScores:
    """The reward model's verdict on the cores ``idx`` of ``batch`` with the given points."""
    return decoder.score(
        batch.features[idx].to(device, torch.float32), cells.to(device), valid.to(device),
        batch.clinical[idx].to(device), batch.clinical_present[idx].to(device), batch.core_weights[idx].to(device),
    )


def decoder_loss(decoder: ProstateDecoder, batch: CoreBatch, idx: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor,
                 config: DecoderTrainingConfig, device: torch.device) -> torch.Tensor:
    """The reward model's supervised loss on the cores ``idx`` of ``batch`` with the given
    points: involvement BCE on the core score + ``class_weight`` x csPCa cross-entropy
    (+ ``lesion_pixel_weight`` x the heatmap's BCE against the lesion ground truth on the
    prostate pixels the glimpses show, when the cohort has one).
    Pre-training and GRPO's co-training (``agents.grpo_cotraining``) minimise this one loss."""
    scores = _score(decoder, batch, idx, cells, valid, device)
    involvement = batch.involvement[idx].to(device)
    cspca = (batch.grade_group[idx] >= config.cspca_threshold).long().to(device)
    bce = F.binary_cross_entropy(scores.core_score.clamp(1e-6, 1 - 1e-6), involvement)
    ce = F.cross_entropy(scores.output.class_logits, cspca)
    loss = bce + config.class_weight * ce
    if batch.lesion_pixels is not None and config.lesion_pixel_weight > 0:
        G = decoder.config.grid_size
        heatmap = scores.output.heatmap_logits[:, 0]  # (b, H, H)
        upsample = heatmap.shape[-1] // G
        seen = glimpse_mask(cells.to(device), valid.to(device), G, decoder.config.glimpse_radius)[:, 0]  # (b, G, G)
        seen = seen * batch.allowed[idx].view(-1, G, G).to(device)  # prostate cells only
        seen = seen.repeat_interleave(upsample, dim=1).repeat_interleave(upsample, dim=2)  # (b, H, H)
        target = batch.lesion_pixels[idx].to(device)  # (b, H, H)
        pixel_bce = F.binary_cross_entropy_with_logits(heatmap, target, reduction="none")  # (b, H, H)
        loss = loss + config.lesion_pixel_weight * (pixel_bce * seen).sum() / seen.sum().clamp_min(1.0)
    return loss


def _random_point_counts(n: int, config: DecoderTrainingConfig, generator: torch.Generator) -> torch.Tensor:
    """(n,) points per training sample: 1..max_points, or 0 with probability p_no_points."""
    counts = torch.randint(1, config.max_points + 1, (n,), generator=generator)
    none = torch.rand(n, generator=generator) < config.p_no_points
    return torch.where(none, torch.zeros_like(counts), counts)


def training_points(batch: CoreBatch, idx: torch.Tensor, config: DecoderTrainingConfig,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random points for the cores ``idx`` as pre-training draws them: 0..max_points per
    core, from the lesion's cells (``lesion_point_fraction``, phantom only), else the
    needle's (``needle_point_fraction``), else the whole prostate. -> cells, valid (b, max_points)."""
    counts = _random_point_counts(len(idx), config, generator)
    on_needle = (torch.rand(len(idx), generator=generator) < config.needle_point_fraction)[:, None]
    on_needle &= batch.needle_cells[idx].any(dim=1, keepdim=True)
    candidates = torch.where(on_needle, batch.needle_cells[idx], batch.allowed[idx])  # (b, G*G)
    if batch.lesion_cells is not None:
        on_lesion = (torch.rand(len(idx), generator=generator) < config.lesion_point_fraction)[:, None]
        on_lesion &= batch.lesion_cells[idx].any(dim=1, keepdim=True)
        candidates = torch.where(on_lesion, batch.lesion_cells[idx], candidates)  # (b, G*G)
    return sample_random_cells(candidates, counts, config.max_points, generator)


@torch.no_grad()
def validation_loss(decoder: ProstateDecoder, batch: CoreBatch, config: DecoderTrainingConfig, seed: int,
                    device: torch.device, batch_size: int = 64) -> float:
    """:func:`decoder_loss` on ``batch`` with points drawn as in training (``val_repeats``
    draws per core, seeded): the model-selection criterion, because the env's rewards score
    the core score's calibration (|p - involvement|) as much as its ranking."""
    decoder.eval()
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(config.val_repeats):
        for start in range(0, len(batch.core_ids), batch_size):
            idx = torch.arange(start, min(len(batch.core_ids), start + batch_size))
            cells, valid = training_points(batch, idx, config, generator)
            total += float(decoder_loss(decoder, batch, idx, cells, valid, config, device)) * len(idx)
            count += len(idx)
    return total / count


@torch.no_grad()
def evaluate_decoder(decoder: ProstateDecoder, batch: CoreBatch, n_points: int, repeats: int, seed: int,
                     cspca_threshold: int, device: torch.device, batch_size: int = 64) -> dict[str, float]:
    """Core AUROC (core score vs any cancer) and csPCa AUROC (class head) with ``n_points``
    random valid points per core, averaged over ``repeats`` draws."""
    decoder.eval()
    generator = torch.Generator().manual_seed(seed)
    N = len(batch.core_ids)
    scores, probs = [], []
    for _ in range(repeats):
        for start in range(0, N, batch_size):
            idx = torch.arange(start, min(N, start + batch_size))
            cells, valid = sample_random_cells(batch.allowed[idx], torch.full((len(idx),), n_points), n_points, generator)
            verdict = _score(decoder, batch, idx, cells, valid, device)
            scores.append(verdict.core_score.cpu())
            probs.append(verdict.cspca_prob.cpu())
    score = torch.cat(scores).numpy()
    prob = torch.cat(probs).numpy()
    cancer = np.tile((batch.involvement > 0).numpy(), repeats)
    cspca = np.tile((batch.grade_group >= cspca_threshold).numpy(), repeats)
    return {
        "core_auroc": binary_auroc(score, cancer),
        "cspca_auroc": binary_auroc(prob, cspca),
        "involvement_mae": float(np.abs(score - np.tile(batch.involvement.numpy(), repeats)).mean()),
    }


@torch.no_grad()
def reward_component_stats(decoder: ProstateDecoder, batch: CoreBatch, max_points: int, seed: int,
                           cspca_threshold: int, device: torch.device, batch_size: int = 64) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and std of every reward mode's components under 1..max_points random valid
    points per core: the reference for ``normalize_components``."""
    decoder.eval()
    generator = torch.Generator().manual_seed(seed)
    N = len(batch.core_ids)
    scores, probs = [], []
    for start in range(0, N, batch_size):
        idx = torch.arange(start, min(N, start + batch_size))
        counts = torch.randint(1, max_points + 1, (len(idx),), generator=generator)
        cells, valid = sample_random_cells(batch.allowed[idx], counts, max_points, generator)
        verdict = _score(decoder, batch, idx, cells, valid, device)
        scores.append(verdict.core_score.cpu())
        probs.append(verdict.cspca_prob.cpu())
    score, prob = torch.cat(scores).tolist(), torch.cat(probs).tolist()
    stats: dict[str, dict[str, tuple[float, float]]] = {}
    for mode in RewardMode:
        rows = [
            reward_components(mode, p, float(inv), q, int(gg) >= cspca_threshold)
            for p, q, inv, gg in zip(score, prob, batch.involvement.tolist(), batch.grade_group.tolist())
        ]
        stats[mode.value] = {
            name: (float(np.mean([r[name] for r in rows])), float(max(np.std([r[name] for r in rows]), 1e-6)))
            for name in rows[0]
        }
    return stats


def initial_decoder(config: DecoderTrainingConfig, backbone: BackboneConfig) -> ProstateDecoder:
    """The decoder before training: seeded random weights, with the prompt encoder and mask
    decoder loaded from the backbone's SAM/MedSAM checkpoint when it has one (as
    ProstNFound starts from MedSAM)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        decoder = ProstateDecoder(config.decoder_config(backbone))
    if backbone.checkpoint is not None:
        decoder.load_sam_weights(backbone.checkpoint)
    return decoder


def fit_decoder(
    cohort: ProstateCohort,
    features: FeatureFile,
    backbone: BackboneConfig,
    config: DecoderTrainingConfig,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[ProstateDecoder, dict[str, Any]]:
    """Train the reward model on the train split with random valid points; keep the epoch
    with the lowest validation loss (:func:`validation_loss`). Returns the decoder (eval
    mode) and metrics."""
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        decoder = initial_decoder(config, backbone).to(device)
        train = load_core_batch(cohort, features, Split.TRAIN)
        val = load_core_batch(cohort, features, Split.VAL)
        if len(train.core_ids) == 0 or len(val.core_ids) == 0:
            raise ValueError(f"cohort {cohort.root} needs cores in both train and val splits to train the decoder")
        optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = -(-len(train.core_ids) // config.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
        )
        generator = torch.Generator().manual_seed(config.seed)
        best_loss, best_state, best_epoch, history = float("inf"), None, -1, []
        start_time = time.perf_counter()
        bar = tqdm(range(config.epochs), desc="Training the Prostate-v0 decoder", disable=not progress)
        for epoch in bar:
            decoder.train()
            order = torch.randperm(len(train.core_ids), generator=generator)
            losses = []
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                cells, valid = training_points(train, idx, config, generator)
                loss = decoder_loss(decoder, train, idx, cells, valid, config, device)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(decoder.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
            metrics = evaluate_decoder(decoder, val, config.max_points, config.val_repeats, config.seed + 1,
                                       config.cspca_threshold, device)
            val_loss = validation_loss(decoder, val, config, config.seed + 3, device)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                            **{f"val_{k}": v for k, v in metrics.items()}})
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_loss=f"{val_loss:.3f}", val_auroc=f"{metrics['core_auroc']:.3f}")
            if val_loss < best_loss:
                best_loss, best_state, best_epoch = val_loss, copy.deepcopy(decoder.state_dict()), epoch
        decoder.load_state_dict(best_state)
        decoder.eval()
        val_random = evaluate_decoder(decoder, val, config.max_points, config.val_repeats, config.seed + 1, config.cspca_threshold, device)
        val_none = evaluate_decoder(decoder, val, 0, 1, config.seed + 1, config.cspca_threshold, device)
        summary = {
            "reward_stats": reward_component_stats(decoder, train, config.max_points, config.seed + 2,
                                                   config.cspca_threshold, device),
            "best_epoch": best_epoch,
            "val_core_auroc": val_random["core_auroc"],
            "val_cspca_auroc": val_random["cspca_auroc"],
            "val_involvement_mae": val_random["involvement_mae"],
            "val_core_auroc_no_points": val_none["core_auroc"],
            "train_cores": len(train.core_ids),
            "val_cores": len(val.core_ids),
            "train_seconds": time.perf_counter() - start_time,
            "history": history,
        }
        return decoder, summary
    finally:
        torch.set_num_threads(previous_threads)
