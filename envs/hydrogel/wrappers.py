"""The SB3-facing form of the hydrogel envs.

SB3 has no Dict action spaces, so :class:`HybridBoxAction` flattens the hybrid action
into one ``Box(6,)``::

    [polymer index, stiffness kPa, half-life days, conductivity S/m, thickness mm, coverage index]

The discrete slots have bounds [0, 23] and [0, 3]: a policy that emits exact integers
(``policies.hybrid.HybridActorCriticPolicy`` does) is never changed by SB3's clipping to
the Box bounds, and clipping a continuous slot only ever moves it inside the env's own
formulation bounds. Non-integer values in a discrete slot (e.g. from ``Box.sample``)
are rounded to the nearest index.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.hydrogel.library import FORMULATION_HIGH, FORMULATION_LOW, N_POLYMERS

__all__ = ["HybridBoxAction", "POLYMER_SLOT", "FORMULATION_SLOTS", "COVERAGE_SLOT"]

POLYMER_SLOT = 0
FORMULATION_SLOTS = slice(1, 5)
COVERAGE_SLOT = 5


class HybridBoxAction(gym.ActionWrapper):
    """Expose ``Dict(polymer, formulation, coverage)`` as ``Box(6,)`` (layout in the module doc)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        inner = env.action_space
        if not (isinstance(inner, spaces.Dict) and set(inner.spaces) == {"polymer", "formulation", "coverage"}):
            raise TypeError(f"HybridBoxAction wraps the hydrogel Dict action space, got {inner}")
        self.n_coverage = int(inner["coverage"].n)
        low = np.concatenate([[0.0], FORMULATION_LOW, [0.0]]).astype(np.float32)
        high = np.concatenate([[N_POLYMERS - 1], FORMULATION_HIGH, [self.n_coverage - 1]]).astype(np.float32)
        self.action_space = spaces.Box(low, high, (6,), np.float32)

    def action(self, action: np.ndarray) -> dict[str, Any]:
        flat = np.asarray(action, dtype=np.float32)
        if flat.shape != (6,):
            raise ValueError(f"action must have shape (6,) [polymer, 4 formulation values, coverage], got {flat.shape}")
        if not np.all(np.isfinite(flat)):
            raise ValueError(f"action must be finite, got {flat.tolist()}")
        return {
            "polymer": np.int64(np.rint(flat[POLYMER_SLOT])),
            "formulation": flat[FORMULATION_SLOTS].copy(),
            "coverage": np.int64(np.rint(flat[COVERAGE_SLOT])),
        }
