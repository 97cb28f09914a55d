"""The reward model: SAM's prompt encoder and mask decoder with clinical prompts.

Inputs per core: the cached image features (256, G, G), the chosen cells, and the
clinical values. Prompt tokens are one foreground point per chosen cell (SAM's
``PromptEncoder``), one token per clinical value (a scalar -> 256-d MLP, or a learned
null token when the value is missing) and a learned class token; the dense prompt is
SAM's "no mask" embedding. SAM's ``MaskDecoder`` turns them into a heatmap of 4G x 4G
logits; a small MLP on the class token's output gives csPCa logits. The core score is
the mean sigmoid of the heatmap over the prostate-and-needle pixels.

**Glimpses.** With ``glimpse_radius`` set (the default), the decoder sees the image
only around the chosen points: feature cells farther than the radius (in cells) from
every point are zeroed before decoding, like the glimpses of a recurrent attention
model. This is what makes *where* one looks matter; ``glimpse_radius=None`` gives the
decoder the whole image, as in ProstNFound, where points are hints only.

**Coordinates.** A cell (row, col) of the G x G grid covers input pixels
[col*s, (col+1)*s) x [row*s, (row+1)*s) with s = input size / G. SAM's prompt encoder
adds 0.5 to a point ("pixel centre") and divides by the encoder's input size, so the
point passed for the cell centre is ((col + 0.5) s - 0.5, (row + 0.5) s - 0.5). The
source system passed 256-px coordinates to a 1024-px prompt encoder, which put every
point in the top-left quarter; :func:`cell_to_point` is tested against SAM's dense
positional encoding.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn
from tqdm.auto import tqdm

from envs.cache import cache_path
from envs.prostate.backbone import EMBED_CHANNELS, HEATMAP_UPSCALE, BackboneConfig, FeatureFile, load_sam_state_dict
from envs.prostate.data import CLINICAL_COLUMNS, ProstateCohort, Split, normalize_clinical
from rewards.prostate import RewardMode, reward_components

__all__ = [
    "CHECKPOINT_FORMAT",
    "DecoderConfig",
    "DecoderTrainingConfig",
    "ProstateDecoder",
    "DecoderOutput",
    "CoreBatch",
    "cell_to_point",
    "glimpse_mask",
    "core_score",
    "load_core_batch",
    "sample_random_cells",
    "evaluate_decoder",
    "reward_component_stats",
    "fit_decoder",
    "default_decoder_path",
    "save_decoder",
    "load_decoder",
    "binary_auroc",
]

CHECKPOINT_FORMAT = "sciencegym-prostate-decoder-v1"


@dataclass(frozen=True)
class DecoderConfig:
    """Architecture of the reward model."""

    grid_size: int
    """G, side of the feature grid."""
    img_size: int
    """Encoder input side in pixels (the frame point prompts live in)."""
    transformer_depth: int = 1
    """Two-way transformer blocks (SAM uses 2)."""
    mlp_dim: int = 256
    """Hidden width of the two-way transformer's MLPs (SAM uses 2048)."""
    num_heads: int = 8
    class_hidden: int = 128
    glimpse_radius: float | None = 1.5
    """Cells within this distance (in cells, centre to centre) of a point are visible to
    the decoder; None = the whole image is visible."""
    n_clinical: int = len(CLINICAL_COLUMNS)

    def __post_init__(self) -> None:
        if self.grid_size < 1 or self.img_size % self.grid_size:
            raise ValueError(
                f"DecoderConfig: img_size ({self.img_size}) must be a multiple of grid_size ({self.grid_size})"
            )
        if self.glimpse_radius is not None and self.glimpse_radius < 0:
            raise ValueError(f"DecoderConfig.glimpse_radius must be >= 0 or None, got {self.glimpse_radius}")

    @property
    def heatmap_size(self) -> int:
        return HEATMAP_UPSCALE * self.grid_size


def cell_to_point(cells: torch.Tensor, grid_size: int, img_size: int) -> torch.Tensor:
    """Flat cell indices (...) -> SAM point coordinates (..., 2) as (x, y) in the encoder's
    input frame, at the cell centre (SAM's prompt encoder adds the +0.5 pixel shift)."""
    stride = img_size / grid_size
    row = torch.div(cells, grid_size, rounding_mode="floor").to(torch.float32)  # (...)
    col = (cells % grid_size).to(torch.float32)  # (...)
    return torch.stack([(col + 0.5) * stride - 0.5, (row + 0.5) * stride - 0.5], dim=-1)  # (..., 2)


def glimpse_mask(cells: torch.Tensor, valid: torch.Tensor, grid_size: int, radius: float | None) -> torch.Tensor:
    """Which cells the decoder sees: (B, K) cells + (B, K) validity -> (B, 1, G, G) float.

    With ``radius`` None every cell is visible.
    """
    B = cells.shape[0]
    if radius is None:
        return torch.ones(B, 1, grid_size, grid_size, device=cells.device)
    r = torch.arange(grid_size, device=cells.device, dtype=torch.float32)
    rows = torch.div(cells, grid_size, rounding_mode="floor").float()  # (B, K)
    cols = (cells % grid_size).float()  # (B, K)
    d2 = (r.view(1, 1, -1, 1) - rows[..., None, None]) ** 2 + (r.view(1, 1, 1, -1) - cols[..., None, None]) ** 2  # (B, K, G, G)
    near = (d2 <= radius**2 + 1e-6) & valid[..., None, None]  # (B, K, G, G)
    return near.any(dim=1, keepdim=True).float()  # (B, 1, G, G)


def core_score(heatmap_logits: torch.Tensor, core_weights: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid of the heatmap over prostate-and-needle pixels.

    heatmap_logits (B, 1, H, H), core_weights (B, H, H) area fractions -> (B,) in [0, 1].
    """
    probs = torch.sigmoid(heatmap_logits[:, 0])  # (B, H, H)
    weights = core_weights.clamp_min(0)  # (B, H, H)
    total = weights.sum(dim=(1, 2))  # (B,)
    return (probs * weights).sum(dim=(1, 2)) / total.clamp_min(1e-6)  # (B,)


@dataclass
class DecoderOutput:
    """What the reward model says about a batch of cores."""

    heatmap_logits: torch.Tensor
    """(B, 1, 4G, 4G)"""
    class_logits: torch.Tensor
    """(B, 2): benign-or-GG1 vs csPCa."""


class ProstateDecoder(nn.Module):
    """SAM prompt encoder + mask decoder + clinical prompt tokens + class head."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        G, S, C = config.grid_size, config.img_size, EMBED_CHANNELS
        self.prompt_encoder = PromptEncoder(
            embed_dim=C, image_embedding_size=(G, G), input_image_size=(S, S), mask_in_chans=16
        )
        self.mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=config.transformer_depth, embedding_dim=C, mlp_dim=config.mlp_dim, num_heads=config.num_heads
            ),
            transformer_dim=C,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
        self.clinical_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(1, 64), nn.GELU(), nn.Linear(64, C)) for _ in range(config.n_clinical)
        )
        self.clinical_null = nn.Parameter(torch.randn(config.n_clinical, C) * 0.02)
        self.class_token = nn.Parameter(torch.randn(1, C) * 0.02)
        self.class_head = nn.Sequential(nn.Linear(C, config.class_hidden), nn.GELU(), nn.Linear(config.class_hidden, 2))

    def load_sam_weights(self, checkpoint: str | os.PathLike[str]) -> None:
        """Initialise the prompt encoder and mask decoder from a SAM / MedSAM checkpoint."""
        self.prompt_encoder.load_state_dict(load_sam_state_dict(checkpoint, "prompt_encoder."))
        self.mask_decoder.load_state_dict(load_sam_state_dict(checkpoint, "mask_decoder."))

    def forward(
        self,
        features: torch.Tensor,
        cells: torch.Tensor,
        valid: torch.Tensor,
        clinical: torch.Tensor,
        clinical_present: torch.Tensor,
    ) -> DecoderOutput:
        """features (B, 256, G, G); cells (B, K) long flat indices; valid (B, K) bool (False =
        padding, K may be 0); clinical (B, 4) standardised; clinical_present (B, 4) bool."""
        cfg = self.config
        B = features.shape[0]
        coords = cell_to_point(cells, cfg.grid_size, cfg.img_size)  # (B, K, 2)
        labels = torch.where(valid, 1, -1).to(coords.dtype)  # (B, K): 1 = foreground, -1 = padding
        sparse, dense = self.prompt_encoder(points=(coords, labels), boxes=None, masks=None)  # (B, K+1, C), (B, C, G, G)
        clinical_tokens = torch.stack(
            [mlp(clinical[:, j : j + 1]) for j, mlp in enumerate(self.clinical_mlps)], dim=1
        )  # (B, 4, C)
        clinical_tokens = torch.where(clinical_present[..., None], clinical_tokens, self.clinical_null[None])  # (B, 4, C)
        prompts = torch.cat([sparse, clinical_tokens, self.class_token.expand(B, 1, -1)], dim=1)  # (B, T, C)

        visible = glimpse_mask(cells, valid, cfg.grid_size, cfg.glimpse_radius)  # (B, 1, G, G)
        heatmap, class_state = self._decode(features * visible, dense, prompts)
        return DecoderOutput(heatmap_logits=heatmap, class_logits=self.class_head(class_state))

    def _decode(self, image: torch.Tensor, dense: torch.Tensor, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's ``MaskDecoder.predict_masks`` for one image per prompt set (SAM's own method
        repeats one image across prompt sets, which would square the batch). Returns the
        single-mask logits (B, 1, 4G, 4G) and the class token's output (B, C)."""
        md = self.mask_decoder
        B, C, G, _ = image.shape
        output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)  # (1+M, C)
        tokens = torch.cat([output_tokens.expand(B, -1, -1), prompts], dim=1)  # (B, 1+M+T, C)
        image_pe = self.prompt_encoder.get_dense_pe()  # (1, C, G, G)
        hs, src = md.transformer(image + dense, image_pe, tokens)  # (B, 1+M+T, C), (B, G*G, C)
        mask_token_out = hs[:, 1]  # (B, C): SAM's single-mask output token
        upscaled = md.output_upscaling(src.transpose(1, 2).reshape(B, C, G, G))  # (B, C/8, 4G, 4G)
        hyper = md.output_hypernetworks_mlps[0](mask_token_out)  # (B, C/8)
        heatmap = torch.einsum("bc,bchw->bhw", hyper, upscaled)[:, None]  # (B, 1, 4G, 4G)
        return heatmap, hs[:, -1]


# --------------------------------------------------------------------------- data


@dataclass
class CoreBatch:
    """Tensors for a set of cores, as the decoder and the env need them."""

    core_ids: list[str]
    features: torch.Tensor
    """(N, 256, G, G) float16 (converted per batch)."""
    allowed: torch.Tensor
    """(N, G*G) bool: cells at least half inside the prostate."""
    needle_cells: torch.Tensor
    """(N, G*G) bool: allowed cells that the biopsy core passes through (>= 10 % of the cell)."""
    core_weights: torch.Tensor
    """(N, 4G, 4G) float32 prostate-and-needle area fractions."""
    clinical: torch.Tensor
    """(N, 4) standardised, missing = 0."""
    clinical_present: torch.Tensor
    """(N, 4) bool."""
    involvement: torch.Tensor
    """(N,) in [0, 1]."""
    grade_group: torch.Tensor
    """(N,) long, 0-5."""


def load_core_batch(cohort: ProstateCohort, features: FeatureFile, split: Split | str) -> CoreBatch:
    """All cores of ``split`` with their cached features (used for decoder training)."""
    records = cohort.cores(split)
    with h5py.File(features.path, "r") as f:
        index = {cid: i for i, cid in enumerate(f["core_ids"].asstr()[:])}
        rows = np.array([index[r.core_id] for r in records], dtype=np.int64)
        order = np.argsort(rows)
        inverse = np.argsort(order)
        sorted_rows = rows[order]
        feats = f["features"][sorted_rows][inverse]  # (N, 256, G, G) float16
        prostate = f["prostate_fraction"][sorted_rows][inverse]  # (N, G, G)
        weights = f["core_weights"][sorted_rows][inverse]  # (N, 4G, 4G)
    clinical, present = normalize_clinical(np.stack([r.clinical for r in records]))  # (N, 4) each
    N = len(records)
    allowed = torch.from_numpy(prostate.reshape(N, -1) >= 0.5)  # (N, G*G)
    core_cells = F.avg_pool2d(torch.from_numpy(weights)[:, None], HEATMAP_UPSCALE)[:, 0]  # (N, G, G)
    return CoreBatch(
        core_ids=[r.core_id for r in records],
        features=torch.from_numpy(feats),
        allowed=allowed,
        needle_cells=allowed & (core_cells.reshape(N, -1) >= 0.1),
        core_weights=torch.from_numpy(weights),
        clinical=torch.from_numpy(clinical),
        clinical_present=torch.from_numpy(present),
        involvement=torch.tensor([r.involvement for r in records], dtype=torch.float32),
        grade_group=torch.tensor([r.grade_group for r in records], dtype=torch.long),
    )


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


def binary_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ----------------------------------------------------------------------- training


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
    class_weight: float = 0.5
    """Weight of the csPCa cross-entropy against the involvement BCE."""
    cspca_threshold: int = 2
    """Grade group from which a core counts as clinically significant (class head target)."""
    grad_clip: float = 1.0
    transformer_depth: int = 1
    """Two-way transformer blocks (SAM: 2; one keeps CPU pre-training to minutes)."""
    mlp_dim: int = 256
    """Transformer MLP width (SAM: 2048)."""
    class_hidden: int = 128
    glimpse_radius: float | None = 1.5
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
        if not 0.0 <= self.needle_point_fraction <= 1.0:
            raise ValueError(f"DecoderTrainingConfig.needle_point_fraction must be in [0, 1], got {self.needle_point_fraction}")
        if not 0.0 <= self.p_no_points < 1.0:
            raise ValueError(f"DecoderTrainingConfig.p_no_points must be in [0, 1), got {self.p_no_points}")
        if not 1 <= self.cspca_threshold <= 5:
            raise ValueError(f"DecoderTrainingConfig.cspca_threshold must be a grade group in 1..5, got {self.cspca_threshold}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0 or self.class_weight < 0:
            raise ValueError(
                "DecoderTrainingConfig: lr and grad_clip must be > 0, weight_decay and class_weight >= 0;"
                f" got lr={self.lr}, grad_clip={self.grad_clip}, weight_decay={self.weight_decay}, class_weight={self.class_weight}"
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
        return DecoderConfig(
            grid_size=backbone.grid_size, img_size=backbone.img_size, transformer_depth=self.transformer_depth,
            mlp_dim=self.mlp_dim, class_hidden=self.class_hidden, glimpse_radius=self.glimpse_radius,
        )


def _decoder_loss(decoder: ProstateDecoder, batch: CoreBatch, idx: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor,
                  config: DecoderTrainingConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = decoder(
        batch.features[idx].to(device, torch.float32), cells.to(device), valid.to(device),
        batch.clinical[idx].to(device), batch.clinical_present[idx].to(device),
    )
    score = core_score(out.heatmap_logits, batch.core_weights[idx].to(device))  # (b,)
    involvement = batch.involvement[idx].to(device)
    cspca = (batch.grade_group[idx] >= config.cspca_threshold).long().to(device)
    bce = F.binary_cross_entropy(score.clamp(1e-6, 1 - 1e-6), involvement)
    ce = F.cross_entropy(out.class_logits, cspca)
    return bce + config.class_weight * ce, score.detach(), torch.softmax(out.class_logits, -1)[:, 1].detach()


def _random_point_counts(n: int, config: DecoderTrainingConfig, generator: torch.Generator) -> torch.Tensor:
    counts = torch.randint(1, config.max_points + 1, (n,), generator=generator)
    none = torch.rand(n, generator=generator) < config.p_no_points
    return torch.where(none, torch.zeros_like(counts), counts)


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
            out = decoder(batch.features[idx].to(device, torch.float32), cells.to(device), valid.to(device),
                          batch.clinical[idx].to(device), batch.clinical_present[idx].to(device))
            scores.append(core_score(out.heatmap_logits, batch.core_weights[idx].to(device)).cpu())
            probs.append(torch.softmax(out.class_logits, -1)[:, 1].cpu())
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
        out = decoder(batch.features[idx].to(device, torch.float32), cells.to(device), valid.to(device),
                      batch.clinical[idx].to(device), batch.clinical_present[idx].to(device))
        scores.append(core_score(out.heatmap_logits, batch.core_weights[idx].to(device)).cpu())
        probs.append(torch.softmax(out.class_logits, -1)[:, 1].cpu())
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
    with the best validation core AUROC. Returns the decoder (eval mode) and metrics."""
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            decoder = ProstateDecoder(config.decoder_config(backbone))
        if backbone.checkpoint is not None:
            decoder.load_sam_weights(backbone.checkpoint)
        decoder.to(device)
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
        best_auroc, best_state, best_epoch, history = -1.0, None, -1, []
        start_time = time.perf_counter()
        bar = tqdm(range(config.epochs), desc="Training the Prostate-v0 decoder", disable=not progress)
        for epoch in bar:
            decoder.train()
            order = torch.randperm(len(train.core_ids), generator=generator)
            losses = []
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                counts = _random_point_counts(len(idx), config, generator)
                on_needle = (torch.rand(len(idx), generator=generator) < config.needle_point_fraction)[:, None]
                on_needle &= train.needle_cells[idx].any(dim=1, keepdim=True)
                candidates = torch.where(on_needle, train.needle_cells[idx], train.allowed[idx])  # (b, G*G)
                cells, valid = sample_random_cells(candidates, counts, config.max_points, generator)
                loss, _, _ = _decoder_loss(decoder, train, idx, cells, valid, config, device)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(decoder.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
            metrics = evaluate_decoder(decoder, val, config.max_points, config.val_repeats, config.seed + 1,
                                       config.cspca_threshold, device)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), **{f"val_{k}": v for k, v in metrics.items()}})
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_auroc=f"{metrics['core_auroc']:.3f}")
            if np.nan_to_num(metrics["core_auroc"], nan=0.0) > best_auroc:
                best_auroc = float(np.nan_to_num(metrics["core_auroc"], nan=0.0))
                best_state = copy.deepcopy(decoder.state_dict())
                best_epoch = epoch
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


# -------------------------------------------------------------------- checkpoints


def default_decoder_path(backbone: BackboneConfig, cohort: ProstateCohort, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``python -m train pretrain --env Prostate-v0`` puts the decoder the env loads."""
    return cache_path("prostate", "decoders", backbone.key, f"{cohort.fingerprint()}.pt", override=cache_dir)


def save_decoder(decoder: ProstateDecoder, path: str | os.PathLike[str], *, backbone: BackboneConfig,
                 training: DecoderTrainingConfig, metrics: dict[str, Any]) -> Path:
    """Write a self-describing checkpoint (architecture, training config, metrics, weights)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "decoder_config": asdict(decoder.config),
        "training_config": asdict(training),
        "backbone_key": backbone.key,
        "metrics": {k: v for k, v in metrics.items() if k != "history"},
        "state_dict": decoder.state_dict(),
    }
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_decoder(path: str | os.PathLike[str], backbone: BackboneConfig, device: str | torch.device = "cpu") -> tuple[ProstateDecoder, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_decoder`; checks it fits ``backbone``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"decoder checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a Prostate-v0 decoder checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    config = DecoderConfig(**payload["decoder_config"])
    if (config.grid_size, config.img_size) != (backbone.grid_size, backbone.img_size):
        raise ValueError(
            f"decoder checkpoint {path} was trained for a {config.grid_size}x{config.grid_size} grid at"
            f" {config.img_size} px, but the backbone gives {backbone.grid_size}x{backbone.grid_size} at {backbone.img_size} px"
        )
    decoder = ProstateDecoder(config)
    decoder.load_state_dict(payload["state_dict"])
    return decoder.to(device).eval(), payload
