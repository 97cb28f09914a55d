"""Prostate-v0 reference agents: where a clinician without a model would put the points.

They read ``prostate_mask``, ``needle_mask``, ``selected`` (and the lesion probe
``features``) from the raw observation, so they work with or without ``action_masks``
and play the sequential env unwrapped. The needle agents are the bar a learned policy
must clear: on a micro-ultrasound probe the needle guide fixes the needle's path, so
"points along the needle" needs no image at all. Two image-driven heuristics decide
where along and beside the needle to look (:class:`GlimpsePlanner`):
:class:`HypoechoicAgent` with no learning at all (the darkest cells of the B-mode, which
it reads from the env's cohort) and :class:`LesionProbeAgent` with a supervised model (a
linear probe of the cached encoder features fitted on the train split's lesion masks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from envs.prostate.data import CoreImages, ProstateCohort
from envs.prostate.feature_cache import ALLOWED_FRACTION, FeatureFile, area_fraction
from envs.prostate.reward_training import lesion_cell_labels
from envs.splits import Split

__all__ = [
    "GlimpsePlanner", "HypoechoicAgent", "glimpse_visibility", "LesionProbe", "LesionProbeAgent", "NeedlePathAgent", "NeedleRandomAgent",
    "ProstateCenterAgent", "ProstateRandomCellAgent", "ProstateStopAgent",
    "center_agent", "fit_lesion_probe", "hypoechoic_agent", "hypoechoic_scores", "lesion_probe_agent", "lesion_probe_factory", "needle_path_agent",
    "needle_path_cells", "needle_path_factory", "needle_random_agent", "needle_random_factory",
    "random_cell_agent", "stop_agent",
]


def _prostate_free_cells(observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> np.ndarray:
    """(G*G,) bool: prostate cells not chosen yet (and allowed by the masks, if given)."""
    free = (np.asarray(observation["prostate_mask"]) > 0) & ~(np.asarray(observation["selected"]) > 0)
    free = free.reshape(-1)
    if action_masks is not None:
        free &= np.asarray(action_masks, dtype=bool).reshape(-1)[: free.size]
    return free


def _prostate_predict(choose, action_space: gym.Space, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
    """Apply ``choose(obs, masks) -> action`` to one observation or a batch of them."""
    batched = np.asarray(observation["prostate_mask"]).ndim == 3
    if not batched:
        return choose(observation, action_masks)
    n = len(observation["prostate_mask"])
    masks = [None] * n if action_masks is None else np.asarray(action_masks).reshape(n, -1)
    return np.stack([choose({k: v[i] for k, v in observation.items()}, masks[i]) for i in range(n)])


class ProstateCenterAgent:
    """Prostate-v0 heuristic: the free prostate cells nearest the prostate's centroid
    (sequential: one per step, STOP when none is left; one-shot: the k nearest)."""

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def _choose(self, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
        prostate = np.asarray(observation["prostate_mask"]) > 0
        G = prostate.shape[0]
        rows, cols = np.divmod(np.arange(G * G), G)
        if prostate.any():
            centre_r, centre_c = np.argwhere(prostate).mean(axis=0)
        else:
            centre_r = centre_c = (G - 1) / 2
        distance = (rows - centre_r) ** 2 + (cols - centre_c) ** 2
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            free = _prostate_free_cells(observation, None if action_masks is None else np.asarray(action_masks).reshape(-1)[: G * G])
            order = np.lexsort((np.arange(G * G), distance))
            chosen = [c for c in order if free[c]][: len(self.action_space.nvec)]
            chosen += [chosen[-1] if chosen else 0] * (len(self.action_space.nvec) - len(chosen))
            return np.array(chosen, dtype=np.int64)
        free = _prostate_free_cells(observation, action_masks)
        if not free.any():
            return np.int64(G * G)  # STOP
        return np.int64(np.flatnonzero(free)[np.argmin(distance[free])])

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Deterministic whatever ``deterministic`` says."""
        return _prostate_predict(self._choose, self.action_space, observation, action_masks), state


class ProstateRandomCellAgent:
    """Prostate-v0 baseline "random valid points": a uniformly random free prostate cell per
    step, never STOP while a cell is free (so episodes use all k points)."""

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def _choose(self, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
        free = _prostate_free_cells(observation, action_masks)
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            k = len(self.action_space.nvec)
            cells = np.flatnonzero(free)
            return self.rng.choice(cells, size=k, replace=len(cells) < k).astype(np.int64)
        if not free.any():
            return np.int64(free.size)  # STOP
        return np.int64(self.rng.choice(np.flatnonzero(free)))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Random whatever ``deterministic`` says (seeded at construction)."""
        return _prostate_predict(self._choose, self.action_space, observation, action_masks), state


class ProstateStopAgent:
    """Prostate-v0 baseline "no points": STOP at once (the env needs ``min_points=0``;
    otherwise STOP is masked and every step is wasted, with the same outcome)."""

    def __init__(self, action_space: gym.Space) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise TypeError(f"ProstateStopAgent needs the sequential (Discrete) action space, got {action_space}")
        self.action_space = action_space

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]:
        """The STOP action (the last one)."""
        stop = np.int64(self.action_space.n - 1)
        if np.asarray(observation["prostate_mask"]).ndim == 3:
            return np.full(len(observation["prostate_mask"]), stop), state
        return stop, state


def stop_agent(env: gym.Env, agent: Any, seed: int) -> ProstateStopAgent:
    """Reference "none": no points at all (the env must allow ``min_points=0``)."""
    return ProstateStopAgent(env.action_space)


def random_cell_agent(env: gym.Env, agent: Any, seed: int) -> ProstateRandomCellAgent:
    """Reference "random": k random valid prostate cells."""
    return ProstateRandomCellAgent(env.action_space, seed=seed)


def center_agent(env: gym.Env, agent: Any, seed: int) -> ProstateCenterAgent:
    """Reference "center": the k prostate cells nearest the centroid."""
    return ProstateCenterAgent(env.action_space)


# ------------------------------------------------------------------ needle baselines


def _padded(chosen: list[int], k: int) -> np.ndarray:
    """k cells for the one-shot space: ``chosen`` repeated at its last cell (the env
    collapses duplicates)."""
    chosen = chosen[:k] or [0]
    return np.array(chosen + [chosen[-1]] * (k - len(chosen)), dtype=np.int64)


def needle_path_cells(needle: np.ndarray, k: int) -> list[int]:
    """k cells evenly spaced along the needle: needle (G, G) bool -> flat cell indices.

    The cells are ordered by their projection on the needle's principal axis and the
    ones at quantiles (i + 1/2) / k (the middle of k equal stretches) are taken; fewer than k needle cells give all of them.
    """
    cells = np.flatnonzero(needle.reshape(-1))
    if cells.size <= k:
        return [int(c) for c in cells]
    G = needle.shape[0]
    coords = np.stack(np.divmod(cells, G), axis=1).astype(float)  # (n, 2) (row, col)
    centred = coords - coords.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]  # (2,) principal direction
    order = cells[np.lexsort((cells, centred @ axis))]
    picks = np.floor((np.arange(k) + 0.5) * cells.size / k).astype(int)  # the middle of k equal stretches
    return [int(order[i]) for i in picks]


def _nearest_to(free: np.ndarray, target: np.ndarray, G: int) -> int | None:
    """The free cell nearest any target cell (flat indices; ties by index), or None."""
    if not free.any():
        return None
    rows, cols = np.divmod(np.arange(G * G), G)
    if not target.any():
        return int(np.flatnonzero(free)[0])
    tr, tc = np.divmod(np.flatnonzero(target), G)
    distance = ((rows[:, None] - tr[None]) ** 2 + (cols[:, None] - tc[None]) ** 2).min(axis=1)
    candidates = np.flatnonzero(free)
    return int(candidates[np.argmin(distance[candidates])])


class NeedlePathAgent:
    """Prostate-v0 baseline "needle path": k points evenly spaced along the biopsy core
    (the needle inside the prostate), no image read. Sequential: one per step, then the
    free prostate cell nearest the needle if the core has fewer than k cells; STOP when no
    cell is left. One-shot: the k cells at once."""

    def __init__(self, action_space: gym.Space, k: int) -> None:
        self.action_space, self.k = action_space, int(k)

    def _choose(self, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
        prostate = np.asarray(observation["prostate_mask"]) > 0
        needle = (np.asarray(observation["needle_mask"]) > 0) & prostate
        G = prostate.shape[0]
        plan = needle_path_cells(needle, self.k)
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            return _padded(plan, len(self.action_space.nvec))
        free = _prostate_free_cells(observation, action_masks)
        for cell in plan:
            if free[cell]:
                return np.int64(cell)
        nearest = _nearest_to(free, needle.reshape(-1), G)
        return np.int64(G * G if nearest is None else nearest)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Deterministic whatever ``deterministic`` says."""
        return _prostate_predict(self._choose, self.action_space, observation, action_masks), state


class NeedleRandomAgent:
    """Prostate-v0 baseline "random needle cells": a uniformly random free cell of the
    biopsy core per step (a random free prostate cell once the core's cells are used up)."""

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def _choose(self, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
        needle = (np.asarray(observation["needle_mask"]) > 0).reshape(-1)
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            k = len(self.action_space.nvec)
            prostate = (np.asarray(observation["prostate_mask"]) > 0).reshape(-1)
            cells = np.flatnonzero(needle & prostate)
            if cells.size < k:
                rest = self.rng.permutation(np.flatnonzero(prostate & ~needle))
                return _padded([int(c) for c in self.rng.permutation(cells)] + [int(c) for c in rest], k)
            return self.rng.choice(cells, size=k, replace=False).astype(np.int64)
        free = _prostate_free_cells(observation, action_masks)
        pool = free & needle if (free & needle).any() else free
        if not pool.any():
            return np.int64(free.size)  # STOP
        return np.int64(self.rng.choice(np.flatnonzero(pool)))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Random whatever ``deterministic`` says (seeded at construction)."""
        return _prostate_predict(self._choose, self.action_space, observation, action_masks), state


# --------------------------------------------------------------- image heuristic


@dataclass(frozen=True)
class LesionProbe:
    """A logistic regression on one feature cell's 256 channels: P(the cell is lesion)."""

    mean: np.ndarray
    """(C,) feature mean of the training cells."""
    scale: np.ndarray
    """(C,) feature std of the training cells."""
    weight: np.ndarray
    """(C,) on standardised features."""
    bias: float
    target: str
    """What it was fitted to: ``"lesion_mask"`` (cells >= 25 % lesion, the phantom's
    ground truth) or ``"core_label"`` (needle cells of cancerous cores, real cohorts)."""

    def probability(self, features: np.ndarray) -> np.ndarray:
        """features (C, G, G) -> (G*G,) lesion probability per cell."""
        cells = np.asarray(features, dtype=np.float64).reshape(features.shape[0], -1).T  # (G*G, C)
        logits = ((cells - self.mean) / self.scale) @ self.weight + self.bias  # (G*G,)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))


def fit_lesion_probe(cohort: ProstateCohort, features: FeatureFile, *, l2: float = 1e-2,
                     iterations: int = 200) -> LesionProbe:
    """Fit :class:`LesionProbe` on the prostate cells of the train split (deterministic:
    full-batch L-BFGS from zero). Labels from the cohort's lesion masks when it has them,
    else every needle cell of a core with cancer is a positive (multiple-instance style)."""
    records = cohort.cores(Split.TRAIN)
    cached = features.cores([r.core_id for r in records])
    try:
        feats = cached.all_features().astype(np.float32)  # (N, C, G, G)
        allowed, needle = cached.allowed, cached.needle_cells  # (N, G*G) each
    finally:
        cached.close()
    N, C, G, _ = feats.shape
    labels = lesion_cell_labels(cohort, [r.core_id for r in records], G)  # (N, G*G) or None
    if labels is not None:
        target = "lesion_mask"
    else:
        target = "core_label"
        cancer = np.array([r.involvement > 0 for r in records])
        labels = needle & cancer[:, None]
    x = feats.reshape(N, C, -1).transpose(0, 2, 1)[allowed]  # (M, C)
    y = labels[allowed].astype(np.float32)  # (M,)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = torch.from_numpy((x - mean) / scale).double()  # (M, C)
    ys = torch.from_numpy(y).double()  # (M,)
    weight = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(xs @ weight + bias, ys) + l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LesionProbe(mean.astype(np.float64), scale.astype(np.float64), weight.detach().numpy().copy(),
                       float(bias.item()), target)


def glimpse_visibility(G: int, radius: float | None) -> np.ndarray:
    """(G*G, G*G) bool: V[c, d] = cell d is inside the glimpse of a point at cell c."""
    if radius is None:
        return np.ones((G * G, G * G), dtype=bool)
    rows, cols = np.divmod(np.arange(G * G), G)
    d2 = (rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2
    return d2 <= radius**2 + 1e-6


class GlimpsePlanner(ABC):
    """Greedy image-driven placement: the free prostate cell whose glimpse adds the most
    lesion score near the biopsy core (cells in the 3 x 3 neighbourhood of a needle cell)
    that no earlier glimpse saw, plus ``coverage_weight`` per unseen needle cell, so that a
    core where the score sees nothing is covered like the needle path. Subclasses say
    where the per-cell lesion score comes from (:meth:`lesion_scores`)."""

    def __init__(self, action_space: gym.Space, grid_size: int, glimpse_radius: float | None,
                 k: int, coverage_weight: float = 0.1) -> None:
        self.action_space, self.k = action_space, int(k)
        self.grid_size, self.coverage_weight = int(grid_size), float(coverage_weight)
        self.visible = glimpse_visibility(self.grid_size, glimpse_radius).astype(np.float64)  # (G*G, G*G)
        self.near = glimpse_visibility(self.grid_size, 1.5).astype(np.float64)  # (G*G, G*G): the 3 x 3 neighbourhood

    @abstractmethod
    def lesion_scores(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """(G*G,) how lesion-like each cell looks, >= 0."""

    def _values(self, observation: dict[str, np.ndarray], selected: np.ndarray) -> np.ndarray:
        """(G*G,) the gain of a glimpse at each cell given the cells already chosen."""
        needle = (np.asarray(observation["needle_mask"]) > 0).reshape(-1).astype(np.float64)
        near_needle = (self.near @ needle) > 0  # (G*G,)
        lesion = self.lesion_scores(observation) * near_needle  # (G*G,)
        seen = (self.visible[selected].sum(axis=0) > 0) if selected.any() else np.zeros(needle.size, bool)
        unseen = ~seen
        return self.visible @ (lesion * unseen) + self.coverage_weight * (self.visible @ (needle * unseen))

    def _choose(self, observation: dict[str, np.ndarray], action_masks: np.ndarray | None) -> Any:
        G = self.grid_size
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            prostate = (np.asarray(observation["prostate_mask"]) > 0).reshape(-1)
            selected = np.zeros(G * G, dtype=bool)
            chosen: list[int] = []
            for _ in range(len(self.action_space.nvec)):
                free = prostate & ~selected
                if not free.any():
                    break
                values = np.where(free, self._values(observation, selected), -np.inf)
                chosen.append(int(np.argmax(values)))
                selected[chosen[-1]] = True
            return _padded(chosen, len(self.action_space.nvec))
        free = _prostate_free_cells(observation, action_masks)
        if not free.any():
            return np.int64(G * G)  # STOP
        selected = (np.asarray(observation["selected"]) > 0).reshape(-1)
        values = np.where(free, self._values(observation, selected), -np.inf)
        return np.int64(np.argmax(values))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Deterministic whatever ``deterministic`` says."""
        return _prostate_predict(self._choose, self.action_space, observation, action_masks), state


class LesionProbeAgent(GlimpsePlanner):
    """Prostate-v0 image heuristic with a supervised model (no RL): :class:`GlimpsePlanner`
    on the probe's lesion probability of each cell's cached features."""

    def __init__(self, action_space: gym.Space, probe: LesionProbe, grid_size: int, glimpse_radius: float | None,
                 k: int, coverage_weight: float = 0.1) -> None:
        super().__init__(action_space, grid_size, glimpse_radius, k, coverage_weight)
        self.probe = probe

    def lesion_scores(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return self.probe.probability(np.asarray(observation["features"]))


def hypoechoic_scores(images: CoreImages, grid_size: int) -> np.ndarray:
    """(G*G,) how much darker than the gland each cell is, in gland standard deviations, >= 0.

    The B-mode is averaged over each feature cell (a 16 x 16 px box at the encoder's input),
    and a cell's darkness is (median cell intensity in the prostate - cell intensity) / std
    of the prostate's cells: cancer is hypoechoic on micro-ultrasound. Cells outside the
    prostate score 0. No learning, no labels."""
    bmode = area_fraction(images.bmode, grid_size).reshape(-1)  # (G*G,) mean intensity per cell (the same box mean)
    prostate = area_fraction(images.prostate_mask, grid_size).reshape(-1) >= ALLOWED_FRACTION
    if not prostate.any():
        return np.zeros(grid_size * grid_size)
    gland = bmode[prostate]
    darkness = (np.median(gland) - bmode) / (gland.std() + 1e-6)
    return np.where(prostate, np.clip(darkness, 0.0, None), 0.0)


class HypoechoicAgent(GlimpsePlanner):
    """Prostate-v0 image heuristic without learning: :class:`GlimpsePlanner` on
    :func:`hypoechoic_scores` of the current core's B-mode, which it reads from the env's
    cohort (``env.unwrapped.core_id``), as a sonographer reads the image: one unbatched env."""

    def __init__(self, env: gym.Env, coverage_weight: float = 0.1) -> None:
        base = env.unwrapped
        super().__init__(env.action_space, base.grid_size, base.glimpse_radius, base.k, coverage_weight)
        self.env = base
        self._scores: dict[str, np.ndarray] = {}

    def lesion_scores(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        core_id = self.env.core_id
        if core_id not in self._scores:
            self._scores[core_id] = hypoechoic_scores(self.env.cohort.read_images(core_id), self.grid_size)
        return self._scores[core_id]

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        if np.asarray(observation["prostate_mask"]).ndim == 3:
            raise ValueError("HypoechoicAgent plays one env (it reads the current core's image); got a batch")
        return super().predict(observation, state, episode_start, deterministic, action_masks)


_PROBES: dict[tuple[str, str], LesionProbe] = {}
"""Fitted probes by (cohort root, feature file): an evaluation over several seeds fits once."""


def needle_path_agent(env: gym.Env, agent: Any, seed: int) -> NeedlePathAgent:
    """Reference "needle_path": k points evenly spaced along the needle inside the prostate."""
    return NeedlePathAgent(env.action_space, env.unwrapped.k)


def needle_random_agent(env: gym.Env, agent: Any, seed: int) -> NeedleRandomAgent:
    """Reference "needle_random": k random cells of the biopsy core."""
    return NeedleRandomAgent(env.action_space, seed=seed)


def hypoechoic_agent(env: gym.Env, agent: Any, seed: int) -> HypoechoicAgent:
    """Reference "hypoechoic": the darkest cells beside the needle in the B-mode, no learning."""
    return HypoechoicAgent(env)


def lesion_probe_agent(env: gym.Env, agent: Any, seed: int) -> LesionProbeAgent:
    """Reference "lesion_probe": the image heuristic, its probe fitted on the train split."""
    base = env.unwrapped
    key = (str(base.cohort.root), str(base.feature_file.path))
    if key not in _PROBES:
        _PROBES[key] = fit_lesion_probe(base.cohort, base.feature_file)
    return LesionProbeAgent(env.action_space, _PROBES[key], base.grid_size, base.glimpse_radius, base.k)


# ------------------------------------------------- `python -m benchmarks evaluate --agent`


def needle_path_factory(action_space: gym.Space, k: int = 3) -> NeedlePathAgent:
    """``--agent needle_path=agents.baselines.prostate:needle_path_factory`` (the env's default k = 3)."""
    return NeedlePathAgent(action_space, k)


def needle_random_factory(action_space: gym.Space, seed: int) -> NeedleRandomAgent:
    """``--agent needle_random=agents.baselines.prostate:needle_random_factory``."""
    return NeedleRandomAgent(action_space, seed=seed)


def lesion_probe_factory(action_space: gym.Space, env_id: str) -> LesionProbeAgent:
    """``--agent lesion_probe=agents.baselines.prostate:lesion_probe_factory``: the probe is
    fitted on the train split of the default cohort (the one the benchmark's env uses)."""
    env = gym.make(env_id)
    try:
        base = env.unwrapped
        agent = lesion_probe_agent(env, None, 0)
        return LesionProbeAgent(action_space, agent.probe, base.grid_size, base.glimpse_radius, base.k)
    finally:
        env.close()
