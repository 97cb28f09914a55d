"""Checkpoints that a killed run can resume from.

A checkpoint is SB3's model zip (weights, optimizer state, ``num_timesteps``) plus a
pickle of every random state the run consumes: Python's, NumPy's global, torch's (CPU
and CUDA) and each env's ``np_random``. ``--resume`` restores all of them, so a
killed run loses at most one checkpoint interval.
"""

from __future__ import annotations

import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["Checkpoint", "RNGCheckpointCallback", "capture_rng", "restore_rng", "latest_checkpoint"]

_MODEL_PATTERN = re.compile(r"model_(\d+)_steps\.zip$")


def capture_rng(env: VecEnv | None) -> dict[str, Any]:
    """Every random state of this process and of ``env``'s sub-envs."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if env is not None:
        state["envs"] = env.get_attr("np_random")
    return state


def restore_rng(state: dict[str, Any], env: VecEnv | None) -> None:
    """Inverse of :func:`capture_rng`. Env states are restored only if the env count matches."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("torch_cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    env_states = state.get("envs")
    if env is not None and env_states is not None:
        if len(env_states) != env.num_envs:
            raise ValueError(
                f"checkpoint holds RNG states for {len(env_states)} envs, the env has"
                f" {env.num_envs}; resume with the same n_envs"
            )
        for index, generator in enumerate(env_states):
            env.set_attr("np_random", generator, indices=[index])


@dataclass(frozen=True)
class Checkpoint:
    """One saved point of a run."""

    timesteps: int
    model_path: Path
    rng_path: Path


class RNGCheckpointCallback(BaseCallback):
    """Save ``model_<t>_steps.zip`` + ``rng_<t>_steps.pkl`` every ``save_freq_steps`` env steps."""

    def __init__(self, save_dir: Path, save_freq_steps: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if save_freq_steps < 1:
            raise ValueError(f"save_freq_steps must be >= 1, got {save_freq_steps}")
        self.save_dir = Path(save_dir)
        self.save_freq_steps = save_freq_steps
        self._next_save = save_freq_steps

    def _init_callback(self) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        # Resumed runs continue the schedule from the restored step count.
        self._next_save = (self.model.num_timesteps // self.save_freq_steps + 1) * self.save_freq_steps

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next_save:
            self.save()
            self._next_save = (self.model.num_timesteps // self.save_freq_steps + 1) * self.save_freq_steps
        return True

    def save(self) -> Checkpoint:
        """Write a checkpoint now (also used for the final one)."""
        steps = self.model.num_timesteps
        model_path = self.save_dir / f"model_{steps}_steps.zip"
        rng_path = self.save_dir / f"rng_{steps}_steps.pkl"
        self.model.save(model_path)
        with rng_path.open("wb") as handle:
            pickle.dump(capture_rng(self.model.get_env()), handle)
        if self.verbose >= 1:
            print(f"checkpoint: {model_path}")
        return Checkpoint(steps, model_path, rng_path)


def latest_checkpoint(save_dir: Path) -> Checkpoint | None:
    """The checkpoint with the most timesteps whose model and RNG files both exist."""
    found: list[Checkpoint] = []
    for model_path in Path(save_dir).glob("model_*_steps.zip"):
        match = _MODEL_PATTERN.search(model_path.name)
        rng_path = model_path.with_name(model_path.name.replace("model_", "rng_").replace(".zip", ".pkl"))
        if match and rng_path.exists():
            found.append(Checkpoint(int(match.group(1)), model_path, rng_path))
    return max(found, key=lambda c: c.timesteps, default=None)
