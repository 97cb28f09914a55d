"""The reward model: SAM's prompt encoder and mask decoder with clinical prompts, and its
checkpoints. Its training lives in :mod:`envs.prostate.reward_training`.

Inputs per core: the cached image features (256, G, G), the chosen cells, and the
clinical values. Prompt tokens are one foreground point per chosen cell (SAM's
``PromptEncoder``), one token per clinical value (a scalar -> 256-d MLP, or a learned
null token when the value is missing) and a learned class token; the dense prompt is
SAM's "no mask" embedding. SAM's ``MaskDecoder`` turns them into a heatmap of 4G x 4G
logits; a small MLP on the class token's output gives csPCa logits. The core score is
the mean sigmoid of the heatmap over the prostate-and-needle pixels;
:meth:`ProstateDecoder.score` gives it with the csPCa probability, the two numbers every
reward, loss and validation metric is computed from.

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

import os
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

from envs.cache import cache_path, publish
from envs.errors import first_line, state_dict_problems
from envs.prostate.backbone import EMBED_CHANNELS, HEATMAP_UPSCALE, BackboneConfig, load_sam_module
from envs.prostate.data import CLINICAL_COLUMNS, ProstateCohort

if TYPE_CHECKING:
    from envs.prostate.reward_training import DecoderTrainingConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "SAM_TRANSFORMER",
    "DecoderConfig",
    "ProstateDecoder",
    "DecoderOutput",
    "CoreScores",
    "cell_to_point",
    "glimpse_mask",
    "core_score",
    "default_decoder_path",
    "save_decoder",
    "load_decoder",
]

CHECKPOINT_FORMAT = "sciencegym-prostate-decoder-v1"

SAM_TRANSFORMER = {"transformer_depth": 2, "mlp_dim": 2048, "num_heads": 8}
"""SAM's two-way transformer; a decoder initialised from a SAM/MedSAM checkpoint has it."""


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
    glimpse_radius: float | None = 0.0
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


@dataclass
class CoreScores:
    """The reward model's verdict on a batch of cores."""

    core_score: torch.Tensor
    """(B,) in [0, 1]: predicted involvement (see :func:`core_score`)."""
    cspca_prob: torch.Tensor
    """(B,): the class head's P(csPCa)."""
    output: DecoderOutput
    """The raw logits the two numbers come from (the loss and the heatmap render use them)."""


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
        """Initialise the prompt encoder and mask decoder from a SAM / MedSAM checkpoint, as
        ProstNFound starts from MedSAM. Needs SAM's architecture (``SAM_TRANSFORMER``); a
        partial or mismatched checkpoint is a ValueError naming the keys."""
        load_sam_module(self.prompt_encoder, checkpoint, "prompt_encoder.")
        load_sam_module(self.mask_decoder, checkpoint, "mask_decoder.")

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

    def score(
        self,
        features: torch.Tensor,
        cells: torch.Tensor,
        valid: torch.Tensor,
        clinical: torch.Tensor,
        clinical_present: torch.Tensor,
        core_weights: torch.Tensor,
    ) -> CoreScores:
        """:meth:`forward` (same arguments) reduced to the core score over ``core_weights``
        (B, 4G, 4G) prostate-and-needle area fractions and the csPCa probability."""
        output = self(features, cells, valid, clinical, clinical_present)
        return CoreScores(
            core_score=core_score(output.heatmap_logits, core_weights),
            cspca_prob=torch.softmax(output.class_logits, dim=-1)[:, 1],
            output=output,
        )

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
        "backbone_architecture": _architecture(backbone),
        "metrics": {k: v for k, v in metrics.items() if k != "history"},
        "state_dict": decoder.state_dict(),
    }
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    publish(tmp, path)
    return path


def load_decoder(path: str | os.PathLike[str], backbone: BackboneConfig, device: str | torch.device = "cpu") -> tuple[ProstateDecoder, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_decoder`; checks it fits ``backbone``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"decoder checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types (RuntimeError, UnpicklingError, KeyError) for bad files
        raise ValueError(
            f"decoder checkpoint {path} cannot be read as a torch file ({type(err).__name__}: {first_line(err)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a Prostate-v0 decoder checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    for key in ("decoder_config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise ValueError(f"decoder checkpoint {path} has no {key!r} dict; write checkpoints with save_decoder")
    fields = {f.name for f in dataclass_fields(DecoderConfig)}
    unknown = sorted(set(payload["decoder_config"]) - fields)
    if unknown:
        raise ValueError(f"decoder checkpoint {path}: 'decoder_config' has unknown field(s) {unknown}; expected some of {sorted(fields)}")
    try:
        config = DecoderConfig(**payload["decoder_config"])
    except (TypeError, ValueError) as err:  # a required field missing, a value out of range
        raise ValueError(f"decoder checkpoint {path}: 'decoder_config' is invalid ({first_line(err)})") from None
    if (config.grid_size, config.img_size) != (backbone.grid_size, backbone.img_size):
        raise ValueError(
            f"decoder checkpoint {path} was trained for a {config.grid_size}x{config.grid_size} grid at"
            f" {config.img_size} px, but the backbone gives {backbone.grid_size}x{backbone.grid_size} at {backbone.img_size} px"
        )
    trained_on = payload.get("backbone_architecture")  # absent in checkpoints written before it was recorded
    if isinstance(trained_on, dict) and trained_on != _architecture(backbone):
        differing = sorted(k for k in trained_on.keys() | _architecture(backbone).keys()
                           if trained_on.get(k) != _architecture(backbone).get(k))
        raise ValueError(
            f"decoder checkpoint {path} was trained on features of another image encoder ('backbone_architecture'"
            f" differs in {differing}: checkpoint {[trained_on.get(k) for k in differing]}, env"
            f" {[_architecture(backbone).get(k) for k in differing]}); pass the backbone it was trained with"
        )
    decoder = ProstateDecoder(config)
    _check_state_dict(decoder, payload["state_dict"], path)
    decoder.load_state_dict(payload["state_dict"])
    return decoder.to(device).eval(), payload


def _architecture(backbone: BackboneConfig) -> dict[str, Any]:
    """The encoder fields that shape its features (not the weights file's location, so a
    moved SAM checkpoint still matches): what a decoder checkpoint must have been trained on."""
    spec = {k: v for k, v in asdict(backbone).items() if k != "checkpoint"}
    spec["name"] = backbone.name.value
    spec["global_attn_indexes"] = list(backbone.global_attn_indexes)
    return spec


def _check_state_dict(decoder: ProstateDecoder, state: dict[str, Any], path: Path) -> None:
    """Weights that do not fit the architecture ``decoder_config`` describes (another
    version's decoder, an edited config) are a one-line ValueError naming the keys, not
    torch's many-line ``RuntimeError`` from ``load_state_dict``."""
    problems = state_dict_problems(decoder.state_dict(), state)
    if problems:
        raise ValueError(
            f"decoder checkpoint {path}: 'state_dict' does not fit the architecture in its 'decoder_config' ({problems})"
        )
