"""Run agents on registered envs and summarise the episodes.

An *agent* is anything with SB3's ``predict(obs, state=None, episode_start=None,
deterministic=True) -> (action, state)``. Agents whose ``predict`` also takes
``action_masks=`` (sb3-contrib's maskable algorithms, our masked baselines) get the
env's ``action_masks()`` at every step.

Each env family may register a richer evaluator in :data:`EVALUATORS` (by env id,
as an import string ``"module:function"``) with the signature of
:func:`evaluate_returns`; it must evaluate on the env's ``split="test"`` data and
return a JSON-able dict holding at least ``mean_reward``, ``std_reward`` and
``n_episodes``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

__all__ = [
    "Agent",
    "EpisodeRecord",
    "EnvWrapper",
    "EVALUATORS",
    "evaluate",
    "evaluate_returns",
    "run_episode",
    "run_episodes",
]

EnvWrapper = Callable[[gym.Env], gym.Env]


class Agent(Protocol):
    """SB3's prediction interface."""

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[Any, Any]: ...


@dataclass
class EpisodeRecord:
    """What one episode produced."""

    episode_return: float
    length: int
    final_info: dict[str, Any]
    infos: list[dict[str, Any]] = field(default_factory=list)


def _accepts_action_masks(agent: Agent) -> bool:
    try:
        return "action_masks" in inspect.signature(agent.predict).parameters
    except (TypeError, ValueError):
        return False


def _has_action_masks(env: gym.Env) -> bool:
    try:
        env.get_wrapper_attr("action_masks")
    except AttributeError:
        return False
    return True


def run_episode(
    agent: Agent, env: gym.Env, seed: int | None = None, *, deterministic: bool = True,
    options: dict[str, Any] | None = None,
) -> EpisodeRecord:
    """Play one episode (unbatched observations) and keep every step's info."""
    obs, _ = env.reset(seed=seed, options=options)
    masked = _accepts_action_masks(agent) and _has_action_masks(env)
    state, episode_start = None, np.ones((1,), dtype=bool)
    total, length, infos = 0.0, 0, []
    while True:
        if masked:
            masks = env.get_wrapper_attr("action_masks")()
            action, state = agent.predict(
                obs, state=state, episode_start=episode_start,
                deterministic=deterministic, action_masks=masks,
            )
        else:
            action, state = agent.predict(
                obs, state=state, episode_start=episode_start, deterministic=deterministic
            )
        obs, reward, terminated, truncated, info = env.step(action)
        episode_start = np.zeros((1,), dtype=bool)
        total += float(reward)
        length += 1
        infos.append(info)
        if terminated or truncated:
            return EpisodeRecord(total, length, info, infos)


def run_episodes(
    agent: Agent, env: gym.Env, n_episodes: int, seed: int, *, deterministic: bool = True
) -> list[EpisodeRecord]:
    """Play ``n_episodes`` episodes; episode ``i`` is reset with seed ``seed + i``."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    return [run_episode(agent, env, seed + i, deterministic=deterministic) for i in range(n_episodes)]


def evaluate_returns(
    agent: Agent,
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: EnvWrapper | None = None,
    n_episodes: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Generic evaluator: mean and std of the episode return on the test split."""
    env = gym.make(env_id, **(env_kwargs or {}))
    if wrapper is not None:
        env = wrapper(env)
    try:
        returns = [r.episode_return for r in run_episodes(agent, env, n_episodes, seed)]
    finally:
        env.close()
    return {
        "mean_reward": float(np.mean(returns)),
        "std_reward": float(np.std(returns)),
        "n_episodes": n_episodes,
    }


EVALUATORS: dict[str, str] = {
    "Hydrogel-v0": "benchmarks.hydrogel:evaluate",
    "HydrogelSearch-v0": "benchmarks.hydrogel:evaluate",
    "Taxonomy-v0": "benchmarks.taxonomy:evaluate",
    "TaxonomyMultitask-v0": "benchmarks.taxonomy:evaluate",
    "Prostate-v0": "benchmarks.prostate:evaluate",
    "AnisotropicAMG-v0": "benchmarks.amg:evaluate",
}


def evaluate(
    agent: Agent,
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: EnvWrapper | None = None,
    n_episodes: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate ``agent`` with the env family's evaluator (or :func:`evaluate_returns`)."""
    target = EVALUATORS.get(env_id)
    if target is None:
        fn = evaluate_returns
    else:
        module_name, _, fn_name = target.partition(":")
        fn = getattr(importlib.import_module(module_name), fn_name)
    return fn(agent, env_id, env_kwargs=env_kwargs, wrapper=wrapper, n_episodes=n_episodes, seed=seed)
