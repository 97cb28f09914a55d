"""Prostate-v0 rewards: how good the reward model's verdict on a core is.

Symbols: p = core score (mean heatmap probability over the prostate-and-needle
pixels), inv = the core's cancer involvement in [0, 1], q = the class head's
probability of the true csPCa label. A core is csPCa when its grade group is
``>= cspca_threshold`` (default 2, the standard clinical definition ISUP GG >= 2; the
RL fork used GG >= 3, i.e. ``cspca_threshold=3``).

Modes (:class:`RewardMode`); every mode but ``loss_based`` has components in [-1, 1]:

=====================  ===============================================  ================================
mode                   heatmap component                                classification component
=====================  ===============================================  ================================
``loss_based``         -BCE(p, inv) / 2 (the seed's text)               log q / 2
``combined``           2 (1 - |p - inv|) - 1 (the fork's main reward)   2 q - 1
``confidence_based``   2 c - 1, c = p if inv > 0 else 1 - p             2 q - 1
``roi_only``           2 (1 - |p - inv|) - 1                            —
``classification_only``  —                                              2 q - 1
=====================  ===============================================  ================================

With both components, reward = w * heatmap + (1 - w) * classification, w =
``heatmap_weight`` (0.7). Probabilities are clamped to [1e-6, 1 - 1e-6], so
``loss_based`` components are bounded below by log(1e-6) / 2 ≈ -6.91.

**csPCa bonus.** The seed multiplied the reward by a bonus (2.0; 1.5 in the fork) for
csPCa cores, which makes a negative reward *worse* (seed drawback #4). Here the bonus
scales the reward's height above its floor: r' = floor + bonus * (r - floor), with
bonus >= 1, so r' >= r always and differences between actions on csPCa cores are
amplified by the bonus.

**Normalisation** (optional): each component is z-scored with reference statistics
(mean, std) — the env takes them from the decoder checkpoint, where pre-training
measured them under random valid points on the train split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from rewards.choices import parse_choice

__all__ = [
    "PROB_EPS",
    "RewardMode",
    "RewardConfig",
    "RewardBreakdown",
    "reward_components",
    "component_floor",
    "prostate_reward",
]

PROB_EPS = 1e-6
"""Probabilities are clamped to [PROB_EPS, 1 - PROB_EPS] before logs."""


class RewardMode(str, Enum):
    """Reward definitions (see the module docstring for formulas)."""

    LOSS_BASED = "loss_based"
    COMBINED = "combined"
    CONFIDENCE_BASED = "confidence_based"
    ROI_ONLY = "roi_only"
    CLASSIFICATION_ONLY = "classification_only"


_COMPONENTS: dict[RewardMode, tuple[str, ...]] = {
    RewardMode.LOSS_BASED: ("heatmap", "classification"),
    RewardMode.COMBINED: ("heatmap", "classification"),
    RewardMode.CONFIDENCE_BASED: ("heatmap", "classification"),
    RewardMode.ROI_ONLY: ("heatmap",),
    RewardMode.CLASSIFICATION_ONLY: ("classification",),
}


@dataclass(frozen=True)
class RewardConfig:
    """Parameters of the Prostate-v0 reward."""

    mode: RewardMode = RewardMode.COMBINED
    heatmap_weight: float = 0.7
    """w in w * heatmap + (1 - w) * classification (modes with both components)."""
    cspca_threshold: int = 2
    """Grade group from which a core is clinically significant (GG >= 2 by default)."""
    cspca_bonus: float = 1.5
    """>= 1; scales the reward's height above its floor on csPCa cores (1 = off)."""
    normalize_components: bool = False
    """z-score each component with ``component_stats`` before weighting."""
    component_stats: Mapping[str, Mapping[str, tuple[float, float]]] | None = field(default=None, repr=False)
    """mode value -> component name -> (mean, std); required when normalising."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", parse_choice(RewardMode, self.mode, "reward mode"))
        if not 0.0 <= self.heatmap_weight <= 1.0:
            raise ValueError(f"heatmap_weight must be in [0, 1], got {self.heatmap_weight}")
        if not (isinstance(self.cspca_threshold, int) and 1 <= self.cspca_threshold <= 5):
            raise ValueError(f"cspca_threshold must be a grade group in 1..5, got {self.cspca_threshold!r}")
        if not self.cspca_bonus >= 1.0:
            raise ValueError(
                f"cspca_bonus must be >= 1 (a bonus below 1 would make csPCa rewards worse), got {self.cspca_bonus}"
            )
        if self.normalize_components:
            stats = (self.component_stats or {}).get(self.mode.value)
            missing = [c for c in _COMPONENTS[self.mode] if stats is None or c not in stats]
            if missing:
                raise ValueError(
                    f"normalize_components=True needs component_stats for mode {self.mode.value!r},"
                    f" components {missing}; re-run `python -m train pretrain --env Prostate-v0` to record them"
                )
            for name in _COMPONENTS[self.mode]:
                if not stats[name][1] > 0:
                    raise ValueError(f"component_stats[{self.mode.value!r}][{name!r}] std must be > 0, got {stats[name][1]}")

    def weights(self) -> dict[str, float]:
        """Weight of each component of the mode."""
        names = _COMPONENTS[self.mode]
        if len(names) == 1:
            return {names[0]: 1.0}
        return {"heatmap": self.heatmap_weight, "classification": 1.0 - self.heatmap_weight}


@dataclass(frozen=True)
class RewardBreakdown:
    """A reward and how it came about (goes into ``info``)."""

    reward: float
    components: dict[str, float]
    """Raw component values (before normalisation and weighting)."""
    base_reward: float
    """Weighted sum before the csPCa bonus."""
    cspca: bool


def _clamp(p: float) -> float:
    return min(max(p, PROB_EPS), 1.0 - PROB_EPS)


def reward_components(mode: RewardMode, core_score: float, involvement: float, cspca_prob: float, cspca: bool) -> dict[str, float]:
    """Raw components of ``mode``. ``cspca_prob`` is the class head's P(csPCa)."""
    p, inv = _clamp(core_score), involvement
    q = _clamp(cspca_prob if cspca else 1.0 - cspca_prob)  # probability of the true label
    heat: float
    if mode is RewardMode.LOSS_BASED:
        heat = (inv * math.log(p) + (1.0 - inv) * math.log(1.0 - p)) / 2.0
        cls = math.log(q) / 2.0
    else:
        cls = 2.0 * q - 1.0
        if mode is RewardMode.CONFIDENCE_BASED:
            heat = 2.0 * (p if inv > 0 else 1.0 - p) - 1.0
        else:
            heat = 2.0 * (1.0 - abs(p - inv)) - 1.0
    values = {"heatmap": heat, "classification": cls}
    return {name: values[name] for name in _COMPONENTS[mode]}


def component_floor(mode: RewardMode, name: str) -> float:
    """The lowest value component ``name`` of ``mode`` can take."""
    if name not in _COMPONENTS[mode]:
        raise ValueError(f"mode {mode.value!r} has components {_COMPONENTS[mode]}, not {name!r}")
    return math.log(PROB_EPS) / 2.0 if mode is RewardMode.LOSS_BASED else -1.0


def prostate_reward(config: RewardConfig, core_score: float, involvement: float, cspca_prob: float, grade_group: int) -> RewardBreakdown:
    """The reward for one core given the reward model's outputs and the core's labels."""
    if not 0.0 <= involvement <= 1.0:
        raise ValueError(f"involvement must be in [0, 1], got {involvement}")
    if not (math.isfinite(core_score) and math.isfinite(cspca_prob)):
        raise ValueError(f"core_score and cspca_prob must be finite, got {core_score}, {cspca_prob}")
    cspca = grade_group >= config.cspca_threshold
    components = reward_components(config.mode, core_score, involvement, cspca_prob, cspca)
    weights = config.weights()
    base = floor = 0.0
    for name, value in components.items():
        low = component_floor(config.mode, name)
        if config.normalize_components:
            mean, std = config.component_stats[config.mode.value][name]  # type: ignore[index]
            value, low = (value - mean) / std, (low - mean) / std
        base += weights[name] * value
        floor += weights[name] * low
    reward = floor + config.cspca_bonus * (base - floor) if cspca else base
    return RewardBreakdown(reward=float(reward), components=components, base_reward=float(base), cspca=cspca)
