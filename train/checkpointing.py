"""Checkpoints that a killed run resumes from, to the same result.

A checkpoint is SB3's model zip (weights, optimizer state, ``num_timesteps``) plus a
pickle of every random state the run consumes: Python's, NumPy's global, torch's (CPU
and CUDA) and each env's ``np_random``. Both files are written atomically (temporary
name + rename), so a run killed while writing leaves the previous checkpoint intact.

Checkpoints are taken at rollout boundaries (the model holds no half-collected
rollout), and at each one — and at the start of every ``learn`` call — every env
starts a fresh episode from a seed derived from the run seed and the step count
(:func:`restart_seed`). The episodes in flight cannot be saved (an env holds open
files, solvers, torch models), so the uninterrupted run cuts them too: the run killed
and continued with ``--resume`` then replays exactly the steps of the uninterrupted
one, and ends with the same model and the same ``eval.json``. The cut is a truncation
(the last rollout already bootstrapped from the value of its final observation).
"""

from __future__ import annotations

import os
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["Checkpoint", "RNGCheckpointCallback", "capture_rng", "restore_rng", "restart_episodes", "restart_seed",
           "latest_checkpoint"]

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


def restart_seed(run_seed: int | None, timesteps: int) -> int:
    """The seed every env restarts from at step ``timesteps`` of a run (a pure function)."""
    return int(np.random.SeedSequence([run_seed or 0, timesteps]).generate_state(1)[0])


def restart_episodes(model: BaseAlgorithm, seed: int) -> None:
    """Start every env of ``model`` on a fresh episode from ``seed``.

    An algorithm that keeps its own observations (``agents.vec_ppo.VecPPO``) exposes
    ``restart_episodes(seed)``; SB3's on-policy algorithms keep ``_last_obs``.
    """
    own = getattr(model, "restart_episodes", None)
    if callable(own):
        own(seed)
        return
    env = model.get_env()
    env.seed(seed)
    model._last_obs = env.reset()  # type: ignore[assignment]
    model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)


class RNGCheckpointCallback(BaseCallback):
    """Save ``model_<t>_steps.zip`` + ``rng_<t>_steps.pkl`` at the first rollout boundary
    after every ``save_freq_steps`` env steps, restarting the envs there (module doc)."""

    def __init__(self, save_dir: Path, save_freq_steps: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if save_freq_steps < 1:
            raise ValueError(f"save_freq_steps must be >= 1, got {save_freq_steps}")
        self.save_dir = Path(save_dir)
        self.save_freq_steps = save_freq_steps
        self._next_save = save_freq_steps
        self._learn_started = False

    def _init_callback(self) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        # Resumed runs continue the schedule from the restored step count.
        self._next_save = (self.model.num_timesteps // self.save_freq_steps + 1) * self.save_freq_steps
        self._learn_started = False

    def _on_rollout_start(self) -> None:
        steps = self.model.num_timesteps
        at_checkpoint = steps >= self._next_save
        if at_checkpoint or not self._learn_started:
            restart_episodes(self.model, restart_seed(self.model.seed, steps))
            self._learn_started = True
        if at_checkpoint:
            self.save()
            self._next_save = (steps // self.save_freq_steps + 1) * self.save_freq_steps

    def _on_step(self) -> bool:
        return True

    def save(self) -> Checkpoint:
        """Write a checkpoint now (also used for the final one); RNG first, model last."""
        steps = self.model.num_timesteps
        model_path = self.save_dir / f"model_{steps}_steps.zip"
        rng_path = self.save_dir / f"rng_{steps}_steps.pkl"
        tag = f"tmp-{os.getpid()}"
        rng_tmp = rng_path.with_name(f"rng_{steps}_steps.{tag}.pkl")
        with rng_tmp.open("wb") as handle:
            pickle.dump(capture_rng(self.model.get_env()), handle)
        os.replace(rng_tmp, rng_path)
        model_tmp = model_path.with_name(f"model_{steps}_steps.{tag}.zip")
        self.model.save(model_tmp)
        os.replace(model_tmp, model_path)
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
