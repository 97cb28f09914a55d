"""Reference agents that work on any env: uniform random actions."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["RandomAgent", "random_agent"]


class RandomAgent:
    """Uniform random actions from the action space, restricted to allowed actions
    when the caller passes ``action_masks`` (True = allowed)."""

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)
        self.action_space.seed(int(self.rng.integers(2**31)))

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[Any, Any]:
        """Ignore the observation; ``deterministic`` has no meaning for a random agent."""
        if action_masks is None:
            return self.action_space.sample(), state
        masks = np.asarray(action_masks, dtype=bool)
        if isinstance(self.action_space, gym.spaces.Discrete):
            allowed = np.flatnonzero(masks.reshape(-1))
            if allowed.size == 0:
                raise ValueError("action_masks allows no action")
            return np.int64(self.rng.choice(allowed)), state
        if isinstance(self.action_space, gym.spaces.MultiDiscrete):
            splits = np.split(masks.reshape(-1), np.cumsum(self.action_space.nvec)[:-1])
            action = np.array([self.rng.choice(np.flatnonzero(m)) for m in splits], dtype=np.int64)
            return action, state
        raise TypeError(
            f"action_masks given for unsupported action space {type(self.action_space).__name__};"
            " expected Discrete or MultiDiscrete"
        )


def random_agent(env: gym.Env, agent: Any, seed: int) -> RandomAgent:
    """Reference-agent factory: uniform random actions in ``env``'s action space."""
    return RandomAgent(env.action_space, seed=seed)
