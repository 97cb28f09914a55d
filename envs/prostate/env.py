"""Prostate-v0: choose where a SAM decoder should look on a micro-ultrasound biopsy core."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from envs.cache import is_complete
from envs.prostate.backbone import EMBED_CHANNELS, BackboneConfig
from envs.prostate.data import clinical_bounds, normalize_clinical
from envs.prostate.encoded_cohort import load_encoded_cohort
from envs.prostate.reward_model import ProstateDecoder, default_decoder_path, load_decoder, save_decoder
from envs.prostate.reward_training import DecoderTrainingConfig, fit_decoder
from envs.prostate.synthetic import SyntheticCohortConfig
from envs.splits import Split, parse_split
from rewards.choices import parse_choice
from rewards.prostate import RewardConfig, RewardMode, prostate_reward

__all__ = ["ActionMode", "MissingDecoder", "ProstateEnv", "FEATURE_BOUND"]

FEATURE_BOUND = float(np.finfo(np.float16).max)
"""Features are cached as float16, so they lie within +-65504."""


class ActionMode(str, Enum):
    """How points are chosen."""

    SEQUENTIAL = "sequential"
    """One cell per step (or STOP), Discrete(G*G + 1), masked."""
    ONE_SHOT = "one_shot"
    """All k cells in one step, MultiDiscrete([G*G] * k)."""


class MissingDecoder(str, Enum):
    """What to do when no decoder checkpoint exists at the default location."""

    BUILD = "build"
    """Train one now with the default pre-training config (progress bar) and save it."""
    RAISE = "raise"
    """Raise FileNotFoundError naming the pre-training command."""


class ProstateEnv(gym.Env):
    """
    ## Description

    A biopsy core is imaged with micro-ultrasound; a foundation-model pipeline
    (ProstNFound: a SAM/MedSAM image encoder, SAM's prompt encoder and mask decoder,
    clinical prompts) predicts a cancer heatmap and a csPCa probability. The agent
    chooses the *attention points* — cells of the encoder's G x G feature grid —
    that prompt the decoder. The decoder sees the image only in glimpses around the
    points (``glimpse_radius`` of the decoder checkpoint: the point's own cell by default), so
    points on the lesion let it see the lesion; points elsewhere do not. The reward
    scores the decoder's verdict against the pathology of the core.

    The image encoder never runs in a step: features are computed once per
    (backbone, cohort) into a cache. The default cohort is a deterministic phantom
    (:mod:`envs.prostate.synthetic`); a real cohort in the ProstNFound format loads from
    ``data_dir`` (:mod:`envs.prostate.data`).

    ## Action Space

    ``action_mode="sequential"`` (default): ``Discrete(G*G + 1)``. Action ``a < G*G``
    picks cell (row, col) = (a // G, a % G); action ``G*G`` is STOP. Masked (see
    ``action_masks()``): cells outside the prostate (less than half covered), cells
    already chosen, and STOP before ``min_points`` points (STOP is always allowed when
    no cell is left). A masked action is not an error: it wastes the step (no point is
    added, the episode does not stop) and ``info["invalid_action"] = True``.

    ``action_mode="one_shot"``: ``MultiDiscrete([G*G] * k)``, all k cells at once.
    Duplicates are collapsed (the cell counts once; ``info["n_duplicates"]``); cells
    outside the prostate are dropped and set ``info["invalid_action"] = True``.
    ``action_masks()`` is the prostate mask repeated k times (shape (k*G*G,)).

    ## Observation Space

    ``Dict``:

    | key              | shape        | dtype   | meaning                                                     |
    |------------------|--------------|---------|-------------------------------------------------------------|
    | ``features``     | (256, G, G)  | float32 | cached SAM image-encoder features (unitless, LayerNorm'd;   |
    |                  |              |         | within +-65504, the float16 range of the cache)             |
    | ``prostate_mask``| (G, G)       | int8    | 1 where the cell is at least half inside the prostate       |
    | ``needle_mask``  | (G, G)       | int8    | 1 where at least 10 % of the cell is on the biopsy core     |
    |                  |              |         | (the needle inside the prostate; ``NEEDLE_FRACTION``)       |
    | ``clinical``     | (4,)         | float32 | age, PSA, PSA density, family history, standardised (see    |
    |                  |              |         | ``CLINICAL_REFERENCE``; missing values are 0, the centre;   |
    |                  |              |         | bounds from the validated raw ranges)                       |
    | ``selected``     | (G, G)       | int8    | 1 where a point has been placed                             |

    G = encoder input / 16: 16 for the default 256 px encoder, 64 for SAM's 1024 px.

    ## Rewards

    0 on every step but the last; at the end, the reward of
    :func:`rewards.prostate.prostate_reward` (``reward_mode``, default ``combined``:
    0.7 (2(1 - |p - inv|) - 1) + 0.3 (2 q - 1), with p the core score, inv the
    involvement, q the class head's probability of the true csPCa label, and the csPCa
    bonus applied so that it never lowers a reward). Bounded in [-1, 2*bonus - 1] for
    every mode but ``loss_based``; with ``relative_reward`` the no-point reward of the
    core is subtracted. The final ``info`` holds ``core_score``,
    ``involvement``, ``cls_prob`` (P(csPCa)), ``grade_group``, ``cspca``,
    ``components``, ``base_reward``, ``absolute_reward``, ``n_points``, ``points`` ((row, col) pairs),
    ``core_id`` and ``case``.

    ## Starting State

    A core of ``split`` drawn uniformly with the env's seeded generator, no point
    chosen. ``reset(options={"case": i})`` replays core ``i`` of the split (0 <= i <
    ``n_cases``) or ``{"case": "<core id>"}`` a core by id.

    ## Episode End

    Termination: STOP (allowed once ``min_points`` points are placed), or after ``k``
    steps (every step, valid or not, spends one of the k glimpses); one-shot episodes
    terminate after their single step. Truncation: never (episodes last at most k
    steps).

    ## Arguments

    * ``split``: ``"train"``, ``"val"`` or ``"test"`` (patient-level splits).
    * ``k`` (3): maximum points; ``min_points`` (1): points required before STOP.
    * ``action_mode``: :class:`ActionMode` value, ``"sequential"`` or ``"one_shot"``.
    * ``reward_mode``: :class:`rewards.prostate.RewardMode` value (``loss_based``,
      ``combined``, ``confidence_based``, ``roi_only``, ``classification_only``);
      ``heatmap_weight`` (0.7), ``cspca_threshold`` (2: GG >= 2 is csPCa),
      ``cspca_bonus`` (1.5), ``normalize_components`` (False).
    * ``relative_reward`` (False): subtract the reward the decoder earns on the same
      core with no point at all. The subtracted term does not depend on the actions,
      so the optimal policy is unchanged, but most of the reward's variation across
      cores (clinical risk, how easy the core is) cancels, which makes policy-gradient
      training far less noisy. ``info["absolute_reward"]`` keeps the plain reward.
    * ``data_dir``: a ProstNFound-format cohort directory; None = the phantom cohort,
      configured by ``synthetic`` (a :class:`SyntheticCohortConfig` or a mapping of
      its fields).
    * ``backbone``: ``"small"`` (default), ``"vit_b"``, a :class:`BackboneConfig` or a
      mapping of its fields over a preset (``{"img_size": 96, "depth": 1}``);
      ``sam_checkpoint``: SAM/MedSAM weights (or ``$SCIENCEGYM_SAM_CHECKPOINT``).
    * ``decoder_checkpoint``: a decoder saved by ``python -m train pretrain --env
      Prostate-v0``; None = the default location for this backbone and cohort, where
      ``on_missing_decoder`` (``"build"`` | ``"raise"``) decides what happens if absent.
    * ``cache_dir``: cache root (default ``$SCIENCEGYM_CACHE`` or ~/.cache/sciencegym).
    * ``device``: torch device of the decoder.

    ## Version History

    * v0: initial version. Observation key ``needle_mask`` added with the phantom's
      version 3 (lesions along and beside the needle).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        split: Split | str = Split.TRAIN,
        *,
        k: int = 3,
        min_points: int = 1,
        action_mode: ActionMode | str = ActionMode.SEQUENTIAL,
        reward_mode: RewardMode | str = RewardMode.COMBINED,
        heatmap_weight: float = 0.7,
        cspca_threshold: int = 2,
        cspca_bonus: float = 1.5,
        normalize_components: bool = False,
        relative_reward: bool = False,
        data_dir: str | os.PathLike[str] | None = None,
        synthetic: SyntheticCohortConfig | Mapping[str, Any] | None = None,
        backbone: BackboneConfig | str | Mapping[str, Any] = "small",
        sam_checkpoint: str | os.PathLike[str] | None = None,
        decoder_checkpoint: str | os.PathLike[str] | None = None,
        on_missing_decoder: MissingDecoder | str = MissingDecoder.BUILD,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.split = parse_split(split)
        self.action_mode = parse_choice(ActionMode, action_mode, "action_mode")
        on_missing = parse_choice(MissingDecoder, on_missing_decoder, "on_missing_decoder")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if not isinstance(min_points, int) or not 0 <= min_points <= k:
            raise ValueError(f"min_points must be an int in [0, k={k}], got {min_points!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.k, self.min_points, self.render_mode = k, min_points, render_mode
        self.relative_reward = bool(relative_reward)
        self.device = torch.device(device)
        self.reward_config_kwargs = dict(
            mode=reward_mode, heatmap_weight=heatmap_weight, cspca_threshold=cspca_threshold,
            cspca_bonus=cspca_bonus, normalize_components=normalize_components,
        )

        encoded = load_encoded_cohort(data_dir, synthetic, backbone, sam_checkpoint, cache_dir, device=self.device)
        self.cohort, self.backbone, self.feature_file = encoded.cohort, encoded.backbone, encoded.features
        self.decoder, payload = self._load_or_build_decoder(decoder_checkpoint, on_missing, cache_dir)
        self.reward_config = RewardConfig(
            **self.reward_config_kwargs, component_stats=payload.get("metrics", {}).get("reward_stats")
        )
        self.glimpse_radius = self.decoder.config.glimpse_radius

        self.records = self.cohort.cores(self.split)
        if not self.records:
            raise ValueError(f"split {self.split.value!r} of cohort {self.cohort.root} has no cores")
        self.grid_size = G = self.backbone.grid_size
        self.n_cells = G * G
        self.stop_action = self.n_cells
        self._cores = self.feature_file.cores([r.core_id for r in self.records])
        self._core_weights = self._cores.core_weights  # (N, 4G, 4G)
        self._allowed = self._cores.allowed  # (N, G*G)
        self._needle = self._cores.needle_cells  # (N, G*G)
        self._clinical, self._clinical_present = normalize_clinical(np.stack([r.clinical for r in self.records]))
        self._case_index = {r.core_id: i for i, r in enumerate(self.records)}

        clinical_low, clinical_high = clinical_bounds()
        self.observation_space = spaces.Dict(
            {
                "features": spaces.Box(-FEATURE_BOUND, FEATURE_BOUND, (EMBED_CHANNELS, G, G), np.float32),
                "prostate_mask": spaces.MultiBinary([G, G]),
                "needle_mask": spaces.MultiBinary([G, G]),
                "clinical": spaces.Box(clinical_low, clinical_high, dtype=np.float32),
                "selected": spaces.MultiBinary([G, G]),
            }
        )
        if self.action_mode is ActionMode.SEQUENTIAL:
            self.action_space: spaces.Space = spaces.Discrete(self.n_cells + 1)
        else:
            self.action_space = spaces.MultiDiscrete(np.full(k, self.n_cells, dtype=np.int64))

        self._case = 0
        self._features = np.zeros((EMBED_CHANNELS, G, G), dtype=np.float32)
        self._selected = np.zeros(self.n_cells, dtype=bool)
        self._points: list[int] = []
        self._steps = 0
        self._last_heatmap: np.ndarray | None = None

    # ------------------------------------------------------------------ set-up

    def _load_or_build_decoder(self, path: str | os.PathLike[str] | None, on_missing: MissingDecoder,
                               cache_dir: str | os.PathLike[str] | None) -> tuple[ProstateDecoder, dict[str, Any]]:
        if path is not None:
            return load_decoder(path, self.backbone, self.device)
        default = default_decoder_path(self.backbone, self.cohort, cache_dir)
        if is_complete(default):
            return load_decoder(default, self.backbone, self.device)
        if on_missing is MissingDecoder.RAISE:
            raise FileNotFoundError(
                f"no Prostate-v0 decoder at {default}; run `python -m train pretrain --env Prostate-v0`"
                " (with the same env_kwargs) or pass decoder_checkpoint=PATH"
            )
        print(f"Prostate-v0: no decoder checkpoint at {default}; training one now (default pre-training config).",
              file=sys.stderr)
        config = DecoderTrainingConfig()
        decoder, metrics = fit_decoder(self.cohort, self.feature_file, self.backbone, config, device=self.device)
        save_decoder(decoder, default, backbone=self.backbone, training=config, metrics=metrics)
        return load_decoder(default, self.backbone, self.device)

    @property
    def n_cases(self) -> int:
        """Number of cores in this split (valid ``options={"case": i}`` are 0..n_cases-1)."""
        return len(self.records)

    @property
    def core_id(self) -> str:
        """The current episode's core (after ``reset``): what an agent that reads the raw
        images, e.g. the ``hypoechoic`` reference, looks up in ``self.cohort``."""
        if not hasattr(self, "_case"):
            raise RuntimeError("core_id: call reset() first")
        return self.records[self._case].core_id

    # ------------------------------------------------------------------- API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        unknown = sorted(set(options or {}) - {"case"})
        if unknown:
            raise ValueError(f"reset options: unknown keys {unknown}; valid: ['case']")
        case = (options or {}).get("case")
        if case is None:
            self._case = int(self.np_random.integers(self.n_cases))
        elif isinstance(case, str):
            if case not in self._case_index:
                raise ValueError(f"options['case']={case!r} is not a core id of split {self.split.value!r}")
            self._case = self._case_index[case]
        elif isinstance(case, (int, np.integer)) and 0 <= int(case) < self.n_cases:
            self._case = int(case)
        else:
            raise ValueError(f"options['case'] must be a core id or an int in [0, {self.n_cases}), got {case!r}")
        self._features = self._cores.features(self._case)  # (256, G, G)
        self._selected = np.zeros(self.n_cells, dtype=bool)
        self._points, self._steps, self._last_heatmap = [], 0, None
        return self._observation(), {"case": self._case, "core_id": self.records[self._case].core_id}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.action_mode is ActionMode.ONE_SHOT:
            cells = np.asarray(action)
            if cells.shape != (self.k,) or not np.issubdtype(cells.dtype, np.integer) or not self.action_space.contains(cells.astype(np.int64)):
                raise ValueError(f"action must be {self.k} integers in [0, {self.n_cells}), got {action!r}")
            return self._step_one_shot(cells.astype(np.int64))
        cell = _as_int(action)
        if not 0 <= cell <= self.stop_action:
            raise ValueError(f"action must be an int in [0, {self.stop_action}] (G*G cells + STOP), got {action!r}")
        return self._step_sequential(cell)

    def _step_sequential(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        allowed = self.action_masks()
        invalid = not allowed[action]
        stop = action == self.stop_action and not invalid
        if not invalid and not stop:
            self._selected[action] = True
            self._points.append(action)
        self._steps += 1
        info: dict[str, Any] = {"invalid_action": invalid, "n_points": len(self._points)}
        if stop or self._steps >= self.k:
            reward, final = self._score()
            info.update(final)
            return self._observation(), reward, True, False, info
        return self._observation(), 0.0, False, False, info

    def _step_one_shot(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        allowed = self._allowed[self._case]
        distinct = list(dict.fromkeys(int(a) for a in action))
        self._points = [c for c in distinct if allowed[c]]
        self._selected[self._points] = True
        self._steps = 1
        reward, final = self._score()
        info = {
            "invalid_action": len(self._points) < len(distinct),
            "n_duplicates": len(action) - len(distinct),
            **final,
        }
        return self._observation(), reward, True, False, info

    def action_masks(self) -> np.ndarray:
        """True = allowed. Sequential: (G*G + 1,); one-shot: (k * G*G,)."""
        allowed = self._allowed[self._case]
        if self.action_mode is ActionMode.ONE_SHOT:
            return np.tile(allowed, self.k)
        cells = allowed & ~self._selected
        stop_ok = len(self._points) >= self.min_points or not cells.any()
        return np.append(cells, stop_ok)

    def render(self) -> np.ndarray | None:
        """rgb_array: the B-mode image with the prostate (yellow), needle (cyan), glimpses
        (green tint), points (red) and, after the last step, the heatmap (red tint)."""
        if self.render_mode is None:
            return None
        images = self.cohort.read_images(self.records[self._case].core_id)
        size = self.backbone.img_size
        bmode = torch.as_tensor(images.bmode, dtype=torch.float32)[None, None]
        bmode = torch.nn.functional.interpolate(bmode, size=(size, size), mode="bilinear", antialias=True)[0, 0].numpy()
        gray = (bmode - bmode.min()) / max(float(np.ptp(bmode)), 1e-6)
        rgb = np.repeat(gray[..., None], 3, axis=-1)
        scale = size // self.grid_size
        for mask, color in ((images.prostate_mask, (1.0, 1.0, 0.0)), (images.needle_mask, (0.0, 1.0, 1.0))):
            m = torch.as_tensor(mask, dtype=torch.float32)[None, None]
            m = torch.nn.functional.interpolate(m, size=(size, size), mode="nearest")[0, 0].numpy() > 0.5
            edge = m ^ _erode(m)
            rgb[edge] = color
        if self._last_heatmap is not None:
            heat = np.kron(self._last_heatmap, np.ones((size // self._last_heatmap.shape[0],) * 2))
            rgb[..., 0] = np.clip(rgb[..., 0] + 0.6 * heat, 0, 1)
        for cell in self._points:
            r, c = divmod(cell, self.grid_size)
            rgb[r * scale : (r + 1) * scale, c * scale : (c + 1) * scale] *= (0.6, 1.0, 0.6)
            centre = (r * scale + scale // 2, c * scale + scale // 2)
            rgb[centre[0] - 2 : centre[0] + 3, centre[1] - 2 : centre[1] + 3] = (1.0, 0.0, 0.0)
        return (rgb * 255).astype(np.uint8)

    def close(self) -> None:
        self._cores.close()
        super().close()

    # --------------------------------------------------------------- helpers

    def _observation(self) -> dict[str, np.ndarray]:
        G = self.grid_size
        return {
            "features": self._features.copy(),
            "prostate_mask": self._allowed[self._case].reshape(G, G).astype(np.int8),
            "needle_mask": self._needle[self._case].reshape(G, G).astype(np.int8),
            "clinical": self._clinical[self._case].copy(),
            "selected": self._selected.reshape(G, G).astype(np.int8),
        }

    @torch.no_grad()
    def _score(self) -> tuple[float, dict[str, Any]]:
        """Run the decoder on the chosen points (and, when the reward is relative, on no
        points in the same batch); the reward and the final info."""
        record = self.records[self._case]
        rows = 2 if self.relative_reward else 1
        K = len(self._points)
        cells = torch.tensor(self._points, dtype=torch.long, device=self.device).reshape(1, K).expand(rows, K)  # (rows, K)
        valid = torch.zeros(rows, K, dtype=torch.bool, device=self.device)
        valid[0] = True  # row 1, if any, is the same core without points
        verdict = self.decoder.score(
            torch.from_numpy(self._features)[None].to(self.device).expand(rows, -1, -1, -1),  # (rows, 256, G, G)
            cells,
            valid,
            torch.from_numpy(self._clinical[self._case])[None].to(self.device).expand(rows, -1),  # (rows, 4)
            torch.from_numpy(self._clinical_present[self._case])[None].to(self.device).expand(rows, -1),  # (rows, 4)
            torch.from_numpy(self._core_weights[self._case])[None].to(self.device).expand(rows, -1, -1),  # (rows, 4G, 4G)
        )
        scores = verdict.core_score.tolist()  # (rows,)
        cspca_probs = verdict.cspca_prob.tolist()  # (rows,)
        self._last_heatmap = torch.sigmoid(verdict.output.heatmap_logits[0, 0]).cpu().numpy()
        breakdown = prostate_reward(self.reward_config, scores[0], record.involvement, cspca_probs[0], record.grade_group)
        info: dict[str, Any] = {
            "core_score": scores[0],
            "involvement": record.involvement,
            "cls_prob": cspca_probs[0],
            "grade_group": record.grade_group,
            "cspca": breakdown.cspca,
            "components": breakdown.components,
            "base_reward": breakdown.base_reward,
            "absolute_reward": breakdown.reward,
            "n_points": K,
            "points": [divmod(c, self.grid_size) for c in self._points],
            "core_id": record.core_id,
            "case": self._case,
        }
        if not self.relative_reward:
            return breakdown.reward, info
        without = prostate_reward(self.reward_config, scores[1], record.involvement, cspca_probs[1], record.grade_group)
        info["no_point_reward"] = without.reward
        return breakdown.reward - without.reward, info


def _as_int(action: Any) -> int:
    """A scalar action as int (numpy scalars and 0-d/1-element arrays from SB3 included)."""
    array = np.asarray(action)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"action must be a single integer, got {action!r}")
    return int(array.reshape(()))


def _erode(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out
