"""Prostate-v0 reference agents: where a clinician without a model would put the points.

They read ``prostate_mask`` and ``selected`` from the raw observation, so they work
with or without ``action_masks`` and play the sequential env unwrapped.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "ProstateCenterAgent", "ProstateRandomCellAgent", "ProstateStopAgent",
    "center_agent", "random_cell_agent", "stop_agent",
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
