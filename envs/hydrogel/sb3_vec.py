"""SB3 ``VecEnv`` over the torch hydrogel batch, with the flat Box(6,) action.

SB3 does not accept Gymnasium vector envs; this adapter gives SB3's PPO / A2C the
batched torch env (one surrogate call per step for all envs instead of one per env)
with exactly the action layout of :class:`envs.hydrogel.wrappers.HybridBoxAction`
and SB3's conventions: same-step autoreset, ``infos[i]["terminal_observation"]`` and
``infos[i]["TimeLimit.truncated"]``. The CLI uses it with ``vec_env: torch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from envs.hydrogel.library import FORMULATION_HIGH, FORMULATION_LOW, N_COVERAGE, N_POLYMERS
from envs.hydrogel.problem import OBSERVATION_LIMIT, OBSERVATION_SIZE
from envs.hydrogel.vector import HydrogelBatch
from envs.hydrogel.wrappers import COVERAGE_SLOT, FORMULATION_SLOTS, POLYMER_SLOT

__all__ = ["HydrogelSB3VecEnv", "make_sb3_vec_env"]

_INFO_KEYS = ("design_score", "delta_EF", "stress_reduction", "is_optimal", "regret", "clipped")


class HydrogelSB3VecEnv(VecEnv):
    """``num_envs`` hydrogel episodes for SB3 (see module doc)."""

    def __init__(self, num_envs: int, horizon: int = 1, **problem_kwargs: Any) -> None:
        self.batch = HydrogelBatch(num_envs, horizon=horizon, **problem_kwargs)
        observation_space = spaces.Box(-OBSERVATION_LIMIT, OBSERVATION_LIMIT, (OBSERVATION_SIZE,), np.float32)
        low = np.concatenate([[0.0], FORMULATION_LOW, [0.0]]).astype(np.float32)
        high = np.concatenate([[N_POLYMERS - 1], FORMULATION_HIGH, [N_COVERAGE - 1]]).astype(np.float32)
        self.render_mode = None
        super().__init__(num_envs, observation_space, spaces.Box(low, high, (6,), np.float32))
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        self._reset_seeds()
        self._reset_options()
        return self.batch.reset(seed).cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_envs, 6):
            raise ValueError(f"actions must have shape ({self.num_envs}, 6), got {actions.shape}")
        if not (np.all(actions >= self.action_space.low) and np.all(actions <= self.action_space.high)):
            bad = np.argwhere((actions < self.action_space.low) | (actions > self.action_space.high))[0]
            raise ValueError(
                f"action[{bad[0]}][{bad[1]}] = {actions[tuple(bad)]!r} is outside"
                f" [{self.action_space.low[bad[1]]:g}, {self.action_space.high[bad[1]]:g}]"
            )
        self._actions = actions

    # -- the TorchVecEnv protocol of agents.vec_ppo: tensors stay on the batch's device --
    @property
    def device(self) -> torch.device:
        return self.batch.device

    def reset_tensors(self, seed: int | None = None) -> torch.Tensor:
        """(N, 13) first observations; ``seed`` reseeds the batch."""
        return self.batch.reset(seed)

    def _step_flat(self, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        polymer = torch.round(actions[:, POLYMER_SLOT]).long()
        coverage = torch.round(actions[:, COVERAGE_SLOT]).long()
        return self.batch.step(polymer, actions[:, FORMULATION_SLOTS], coverage)

    def step_tensors(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 6) flat actions on device, clipped to the Box (the one named boundary, as SB3
        does) -> observations, rewards, terminated, truncated, final observations."""
        low = torch.as_tensor(self.action_space.low, device=actions.device)
        high = torch.as_tensor(self.action_space.high, device=actions.device)
        obs, reward, terminated, truncated, info = self._step_flat(torch.minimum(torch.maximum(actions, low), high))
        return obs, reward, terminated, truncated, info["final_obs"]

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait called before step_async")
        obs, reward, terminated, truncated, info = self._step_flat(torch.as_tensor(self._actions, device=self.batch.device))
        self._actions = None
        obs_np, final_np = obs.cpu().numpy(), info["final_obs"].cpu().numpy()
        done = (terminated | truncated).cpu().numpy()
        time_limit = (truncated & ~terminated).cpu().tolist()
        scalars = {k: info[k].detach().cpu().tolist() for k in _INFO_KEYS if k in info}  # one copy per key
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            entry = {k: v[i] for k, v in scalars.items()}
            if done[i]:
                entry["terminal_observation"] = final_np[i]
                entry["TimeLimit.truncated"] = time_limit[i]
            infos.append(entry)
        return obs_np, reward.cpu().numpy(), done, infos

    def close(self) -> None:
        """Nothing to release."""

    # -- attribute access, as SB3 expects of any VecEnv ---------------------------------
    def _indices(self, indices: None | int | Iterable[int]) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: None | int | Iterable[int] = None) -> list[Any]:
        owner = self.batch if hasattr(self.batch, attr_name) else self  # e.g. render_mode lives here
        return [getattr(owner, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Iterable[int] = None) -> None:
        setattr(self.batch, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: None | int | Iterable[int] = None, **kwargs: Any) -> list[Any]:
        return [getattr(self.batch, method_name)(*args, **kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: None | int | Iterable[int] = None) -> list[bool]:
        return [False for _ in self._indices(indices)]


def make_sb3_vec_env(env_id: str, n_envs: int, seed: int | None, env_kwargs: dict[str, Any]) -> HydrogelSB3VecEnv:
    """Factory used by the CLI for ``vec_env: torch``."""
    kwargs = dict(env_kwargs)
    horizon = 1 if env_id == "Hydrogel-v0" else int(kwargs.pop("horizon", 10))
    venv = HydrogelSB3VecEnv(n_envs, horizon=horizon, **kwargs)
    venv.seed(seed)
    return venv
