"""Taxonomy-v0 (rank by rank) and TaxonomyMultitask-v0 (all ranks at once).

Hierarchical image classification with abstention: for one image, commit to a taxon
at each rank from coarse to fine, or abstain ("null") when the rank cannot be told.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.splits import parse_split
from envs.taxonomy.data import NullCause, TaxonomySplit, load_split
from envs.taxonomy.synthetic import SyntheticConfig, default_data_path
from envs.taxonomy.tree import NULL_CLASS
from rewards.choices import parse_choice
from rewards.taxonomy import (
    AbstentionReward,
    EpisodeOutcomeReward,
    SimpleAbstentionReward,
    normalise_predictions,
    rank_outcomes,
)

__all__ = ["RewardKind", "TaxonomyEnv", "TaxonomyMultitaskEnv", "make_reward"]


class RewardKind(str, Enum):
    """Reward of the taxonomy envs (values in :mod:`rewards.taxonomy`)."""

    SIMPLE = "simple"
    """:class:`~rewards.taxonomy.SimpleAbstentionReward`: per-rank scores, summed."""
    EPISODE_OUTCOME = "episode_outcome"
    """:class:`~rewards.taxonomy.EpisodeOutcomeReward`: +1 / -1 for the whole chain."""


_REWARDS: dict[RewardKind, type] = {
    RewardKind.SIMPLE: SimpleAbstentionReward,
    RewardKind.EPISODE_OUTCOME: EpisodeOutcomeReward,
}


def make_reward(kind: RewardKind | str, params: Mapping[str, float] | None = None) -> AbstentionReward:
    """Build a reward by kind, overriding its default values with ``params``."""
    kind = parse_choice(RewardKind, kind, "reward")
    cls = _REWARDS[kind]
    allowed = set(cls.__dataclass_fields__)
    unknown = set(params or {}) - allowed
    if unknown:
        raise ValueError(f"reward_params {sorted(unknown)} are not values of {kind.value!r}; allowed: {sorted(allowed)}")
    return cls(**{k: float(v) for k, v in (params or {}).items()})


class _TaxonomyBase(gym.Env):
    """Data, seeded sample order and reward shared by both modes."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        split: str = "train",
        data_path: str | os.PathLike[str] | None = None,
        tree_path: str | os.PathLike[str] | None = None,
        synthetic: SyntheticConfig | Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        reward: RewardKind | str = RewardKind.SIMPLE,
        reward_params: Mapping[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.split = parse_split(split)
        if data_path is None:
            if not isinstance(synthetic, SyntheticConfig):
                synthetic = SyntheticConfig(**dict(synthetic or {}))
            data_path = default_data_path(synthetic, cache_dir)
        elif synthetic is not None:
            raise ValueError("pass either data_path (your labels.h5) or synthetic (generated data), not both")
        self.data_path = os.fspath(data_path)
        self.data: TaxonomySplit = load_split(data_path, self.split, tree_path)
        self.tree = self.data.tree
        self.reward_fn = make_reward(reward, reward_params)
        self._images = self.data.images.transpose(0, 3, 1, 2)  # (n, 3, H, W) view; observations copy
        self.num_classes = np.array(self.tree.num_classes, dtype=np.int64)  # (R,) incl. null
        self.n_ranks = self.tree.n_ranks
        self._image_space = spaces.Box(0, 255, self._images.shape[1:], dtype=np.uint8)
        self._order: np.ndarray | None = None
        self._cursor = 0
        self._case = -1
        self._labels = np.zeros(self.n_ranks, dtype=np.int64)

    @property
    def n_cases(self) -> int:
        """Samples in this split; ``reset(options={"case": i})`` takes i in [0, n_cases)."""
        return len(self.data)

    def _draw_case(self, seed: int | None, options: dict[str, Any] | None) -> int:
        """The case replayed by ``options["case"]``, else the next in a seeded permutation."""
        options = dict(options or {})
        unknown = set(options) - {"case"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; the only option is 'case'")
        if seed is not None or self._order is None or self._cursor >= self.n_cases:
            self._order = self.np_random.permutation(self.n_cases)
            self._cursor = 0
        if "case" in options:
            case = options["case"]
            if not isinstance(case, (int, np.integer)) or not 0 <= case < self.n_cases:
                raise ValueError(f"options['case'] must be an int in [0, {self.n_cases}), got {case!r}")
            return int(case)
        case = int(self._order[self._cursor])
        self._cursor += 1
        return case

    def _start(self, seed: int | None, options: dict[str, Any] | None) -> dict[str, Any]:
        super().reset(seed=seed)
        self._case = self._draw_case(seed, options)
        self._labels = self.data.labels[self._case].copy()
        return {
            "labels": self._labels.copy(),
            "case": self._case,
            "img_identifier": str(self.data.identifiers[self._case]),
        }

    def render(self) -> np.ndarray | None:
        """``render_mode="rgb_array"``: the current image, (H, W, 3) uint8."""
        if self.render_mode == "rgb_array":
            return self.data.images[max(self._case, 0)].copy()
        return None

    def _episode_info(self, predictions: list[int | None]) -> dict[str, Any]:
        """Science of a finished episode: predictions (0 = abstained), outcomes, rewards."""
        rank_rewards = self.reward_fn.rank_rewards(predictions, self._labels)
        scored = normalise_predictions(predictions, self.n_ranks)
        return {
            "predictions": np.array([NULL_CLASS if p is None else p for p in scored], dtype=np.int64),
            "outcomes": rank_outcomes(predictions, self._labels),
            "rank_rewards": rank_rewards,
            "episode_reward": float(rank_rewards.sum()),
            "rank_names": tuple(self.tree.ranks),
            "null_cause": self._null_cause(),
        }

    def _null_cause(self) -> str | None:
        """Name of the sample's :class:`~envs.taxonomy.data.NullCause` (``"none"`` without
        a null rank), or None when the data file does not record causes."""
        if self.data.null_cause is None:
            return None
        return NullCause(int(self.data.null_cause[self._case])).name.lower()


class TaxonomyEnv(_TaxonomyBase):
    """Classify one image rank by rank, coarse to fine, abstaining when unsure.

    ## Description
    Hierarchical taxonomic classification as a sequential decision (Linnaeus Phase 2).
    An episode is one image. At each rank, from the coarsest (order) to the finest
    (species), the agent commits to a class of that rank or abstains; abstaining ends
    the episode and every later rank counts as abstained. Labels are null (class 0)
    where the rank cannot be determined, a suffix of fine ranks: on poor images, but
    also for taxonomic reasons image quality does not show (records the observer
    identified to genus only, species unseen in training; see
    :class:`~envs.taxonomy.data.NullCause`), so a good agent classifies what it can and
    abstains where the label is null.

    ## Action Space
    ``Discrete(max_c + 1)`` where ``max_c = max_r (K_r + 1)`` is the largest class-map
    size (null included). Action ``a < max_c`` predicts class index ``a`` of the current
    rank's class map (the indices of ``info["labels"]``); action ``max_c`` abstains.
    ``action_masks()`` allows the classes 1..K_r of the current rank (only children of
    the previous prediction when ``hierarchy_consistent=True``) and abstain. A masked
    action (null class 0, an index >= K_r + 1, a non-child) is not an error: it is
    treated as an abstention and flagged with ``info["invalid_action"] = True``.

    ## Observation Space
    ``Dict``:

    =============  ===============  =======  ======================================
    key            shape            dtype    meaning (units)
    =============  ===============  =======  ======================================
    ``image``      (3, H, W)        uint8    RGB image, channels first, 0..255
    ``rank``       (n_ranks,)       float32  one-hot of the current rank (0 = coarsest)
    ``previous``   (n_ranks,)       int64    class predicted at each earlier rank;
                                             0 at the current and later ranks
    =============  ===============  =======  ======================================

    ``previous`` is ``MultiDiscrete(num_classes)``.

    ## Rewards
    Per step, the reward function's score of the rank just decided; at an abstention,
    the scores of that rank and every later rank (all scored as abstentions). With
    ``reward="simple"`` (defaults): correct class +1, wrong class -1, abstain at a
    labelled rank -0.5, abstain at a null rank +0.5, predict at a null rank -1; a
    perfect episode without nulls returns 4.0 on four ranks. ``reward="episode_outcome"``
    pays +1 / -1 at the last step for the whole chain. ``reward_params`` overrides values.

    ## Starting State
    A sample of the split: the next one in a permutation drawn from the env's seeded
    RNG (``reset(seed=s)`` redraws it, so the seed fixes the order of samples), or
    sample ``i`` with ``reset(options={"case": i})``. ``rank`` is 0, ``previous`` zeros.
    ``info["labels"]`` holds the true class index per rank, coarse -> fine, 0 = null.

    ## Episode End
    - Termination: the agent abstains (or takes a masked action), or it has committed
      at the finest rank. An episode lasts 1..n_ranks steps.
    - Truncation: never.
    At termination ``info`` adds ``predictions`` (0 = abstained), ``outcomes``
    (:class:`rewards.taxonomy.AbstentionOutcome` per rank), ``rank_rewards`` and
    ``episode_reward``, ``rank_names`` and ``null_cause`` (why the labels turn null:
    a :class:`~envs.taxonomy.data.NullCause` name, ``"none"``, or None when the data
    do not record it).

    ## Arguments
    - ``split``: ``"train"`` / ``"val"`` / ``"test"``.
    - ``data_path``: a ``labels.h5`` (format in :mod:`envs.taxonomy.data`); default: the
      synthetic set (:mod:`envs.taxonomy.synthetic`) generated once into the cache.
    - ``tree_path``: taxonomy JSON; default ``taxonomy.json`` beside the labels, else
      derived from them.
    - ``synthetic``: :class:`~envs.taxonomy.synthetic.SyntheticConfig` or its fields
      as a mapping, for generated data (not with ``data_path``).
    - ``cache_dir``: overrides the cache root.
    - ``reward``: a :class:`RewardKind` value; ``reward_params``: its values.
    - ``hierarchy_consistent``: mask classes that are not children of the previous
      prediction.
    - ``render_mode``: ``None`` or ``"rgb_array"`` (``render()`` returns the image).

    ## Version History
    - v0: initial version. Built-in data v2 (new cache key): nulls with taxonomic
      causes besides image degradation; ``info["null_cause"]``.
    """

    def __init__(
        self,
        split: str = "train",
        data_path: str | os.PathLike[str] | None = None,
        tree_path: str | os.PathLike[str] | None = None,
        synthetic: SyntheticConfig | Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        reward: RewardKind | str = RewardKind.SIMPLE,
        reward_params: Mapping[str, float] | None = None,
        hierarchy_consistent: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(split, data_path, tree_path, synthetic, cache_dir, reward, reward_params, render_mode)
        self.hierarchy_consistent = bool(hierarchy_consistent)
        self.max_classes = int(self.num_classes.max())
        self.abstain_action = self.max_classes
        self.action_space = spaces.Discrete(self.max_classes + 1)
        self.observation_space = spaces.Dict({
            "image": self._image_space,
            "rank": spaces.Box(0.0, 1.0, (self.n_ranks,), dtype=np.float32),
            "previous": spaces.MultiDiscrete(self.num_classes),
        })
        self._rank = 0
        self._predictions: list[int | None] = []
        self._done = True

    def _obs(self) -> dict[str, np.ndarray]:
        rank = np.zeros(self.n_ranks, dtype=np.float32)
        rank[min(self._rank, self.n_ranks - 1)] = 1.0
        previous = np.zeros(self.n_ranks, dtype=np.int64)
        previous[: len(self._predictions)] = [p or NULL_CLASS for p in self._predictions]
        return {"image": self._images[self._case].copy(), "rank": rank, "previous": previous}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        info = self._start(seed, options)
        self._rank, self._predictions, self._done = 0, [], False
        info["rank"] = 0
        return self._obs(), info

    def action_masks(self) -> np.ndarray:
        """Bool ``(max_c + 1,)``, True = allowed at the current rank; abstain always allowed."""
        mask = np.zeros(self.max_classes + 1, dtype=bool)
        mask[self.abstain_action] = True
        if self._done:
            return mask
        r = self._rank
        mask[1 : self.num_classes[r]] = True
        if self.hierarchy_consistent and r > 0:
            mask[: self.num_classes[r]] &= self.tree.children_mask(r, self._predictions[-1])
        return mask

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.max_classes}], got {action!r}")
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before step()")
        a = int(action)
        r = self._rank
        invalid = not self.action_masks()[a]
        abstained = invalid or a == self.abstain_action
        self._predictions.append(None if abstained else a)
        terminated = abstained or r == self.n_ranks - 1
        rank_rewards = self.reward_fn.rank_rewards(self._predictions, self._labels)
        reward = float(rank_rewards[r:].sum() if terminated else rank_rewards[r])
        info: dict[str, Any] = {
            "rank": r,
            "rank_name": self.tree.ranks[r],
            "prediction": NULL_CLASS if abstained else a,
            "abstained": abstained,
            "invalid_action": invalid,
            "labels": self._labels.copy(),
            "case": self._case,
        }
        if terminated:
            self._done = True
            info.update(self._episode_info(self._predictions))
        else:
            self._rank += 1
        return self._obs(), reward, terminated, False, info


class TaxonomyMultitaskEnv(_TaxonomyBase):
    """Classify one image at every rank in a single step, abstaining per rank.

    ## Description
    The one-step (multitask) form of :class:`TaxonomyEnv`: the agent sees the image and
    answers all ranks at once. As in the sequential form, every rank after the first
    abstention is scored as an abstention.

    ## Action Space
    ``MultiDiscrete([K_r + 2 for each rank])`` (coarse -> fine): value ``v`` in
    ``1..K_r`` predicts class ``v`` of rank ``r``; ``K_r + 1`` (the class-map size)
    abstains. ``action_masks()`` is one flat bool vector of length ``sum(K_r + 2)``
    masking the null class 0 of every rank (hierarchy consistency cannot be expressed
    by independent per-rank masks). A null (masked) value is treated as an abstention
    at that rank with ``info["invalid_action"] = True``.

    ## Observation Space
    ``Dict``:

    =============  ===============  =======  ======================================
    key            shape            dtype    meaning (units)
    =============  ===============  =======  ======================================
    ``image``      (3, H, W)        uint8    RGB image, channels first, 0..255
    =============  ===============  =======  ======================================

    ## Rewards
    The sum over ranks of the reward function's per-rank scores (see
    :class:`TaxonomyEnv`); 4.0 for a perfect answer without nulls on four ranks.

    ## Starting State
    As :class:`TaxonomyEnv`: a seeded permutation of the split's samples, or
    ``reset(options={"case": i})``; ``info["labels"]`` holds the true class indices.

    ## Episode End
    - Termination: after the single step.
    - Truncation: never.
    ``info`` then holds ``predictions`` (0 = abstained), ``outcomes``, ``rank_rewards``,
    ``episode_reward``, ``rank_names`` and ``null_cause`` (as in :class:`TaxonomyEnv`).

    ## Arguments
    As :class:`TaxonomyEnv`, without ``hierarchy_consistent``.

    ## Version History
    - v0: initial version.
    """

    def __init__(
        self,
        split: str = "train",
        data_path: str | os.PathLike[str] | None = None,
        tree_path: str | os.PathLike[str] | None = None,
        synthetic: SyntheticConfig | Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        reward: RewardKind | str = RewardKind.SIMPLE,
        reward_params: Mapping[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(split, data_path, tree_path, synthetic, cache_dir, reward, reward_params, render_mode)
        self.action_space = spaces.MultiDiscrete(self.num_classes + 1)
        self.observation_space = spaces.Dict({"image": self._image_space})
        self._done = True

    def _obs(self) -> dict[str, np.ndarray]:
        return {"image": self._images[self._case].copy()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        info = self._start(seed, options)
        self._done = False
        return self._obs(), info

    def action_masks(self) -> np.ndarray:
        """Bool ``(sum(K_r + 2),)``, rank after rank: null masked, classes and abstain allowed."""
        return np.concatenate([np.arange(n + 1) != NULL_CLASS for n in self.num_classes])

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(np.asarray(action, dtype=np.int64)):
            raise ValueError(
                f"action must be {self.n_ranks} integers with value r in [0, {(self.num_classes).tolist()}[r]],"
                f" got {action!r}"
            )
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before step()")
        self._done = True
        action = np.asarray(action, dtype=np.int64)
        invalid = bool(np.any(action == NULL_CLASS))
        predictions = [None if a in (NULL_CLASS, n) else int(a) for a, n in zip(action, self.num_classes)]
        info = self._episode_info(predictions)
        info.update(labels=self._labels.copy(), case=self._case, invalid_action=invalid)
        return self._obs(), info["episode_reward"], True, False, info
