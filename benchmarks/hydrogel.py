"""Evaluation of agents on Hydrogel-v0 / HydrogelSearch-v0 test patients.

Episode ``i`` replays test patient ``i mod P`` (``reset(options={"case": ...})``), so
``n_episodes = P`` scores every test patient once. For each episode the best design
it proposed counts (the only one, in Hydrogel-v0). Reported: ``mean_reward``,
``std_reward``, ``n_episodes``, ``optimal_rate``, ``therapeutic_rate``, ``mean_regret``,
``median_regret``, ``max_regret``, ``clipped_rate``, ``polymer_distribution``,
``coverage_distribution``, and the same for ``baselines.random`` (uniform random
designs over the action space).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import RandomAgent
from benchmarks.evaluation import Agent, EnvWrapper, EpisodeRecord, run_episode

__all__ = ["evaluate", "summarise"]


def summarise(records: list[EpisodeRecord]) -> dict[str, Any]:
    """Hydrogel metrics of finished episodes (see module doc)."""
    best_steps = [max(r.infos, key=lambda info: info["design_score"]) for r in records]
    returns = np.array([r.episode_return for r in records])
    regrets = np.array([info["regret"] for info in best_steps]) if "regret" in best_steps[0] else None
    n = len(records)
    polymers = Counter(info["polymer_name"] for info in best_steps)
    coverages = Counter(info["coverage_name"] for info in best_steps)
    summary: dict[str, Any] = {
        "mean_reward": float(returns.mean()),
        "std_reward": float(returns.std()),
        "n_episodes": n,
        "mean_design_score": float(np.mean([info["design_score"] for info in best_steps])),
        "optimal_rate": float(np.mean([info["is_optimal"] for info in best_steps])),
        "therapeutic_rate": float(np.mean([info["therapeutic"] for info in best_steps])),
        "clipped_rate": float(np.mean([info["clipped"] for r in records for info in r.infos])),
        "polymer_distribution": {k: v / n for k, v in polymers.most_common()},
        "coverage_distribution": {k: v / n for k, v in coverages.most_common()},
    }
    if regrets is not None:
        summary.update(
            mean_regret=float(regrets.mean()), median_regret=float(np.median(regrets)), max_regret=float(regrets.max())
        )
    return summary


def _play(agent: Agent, env: gym.Env, n_episodes: int, seed: int) -> list[EpisodeRecord]:
    n_patients = len(env.unwrapped.cohort)
    return [run_episode(agent, env, seed + i, options={"case": i % n_patients}) for i in range(n_episodes)]


def evaluate(
    agent: Agent,
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: EnvWrapper | None = None,
    n_episodes: int = 43,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``agent`` and a uniform random baseline on the test patients."""
    kwargs = {**(env_kwargs or {}), "split": "test"}
    env = gym.make(env_id, **kwargs)
    if wrapper is not None:
        env = wrapper(env)
    try:
        result = summarise(_play(agent, env, n_episodes, seed))
        random_agent = RandomAgent(env.action_space, seed=seed)
        result["baselines"] = {"random": summarise(_play(random_agent, env, n_episodes, seed))}
        result["n_test_patients"] = len(env.unwrapped.cohort)
    finally:
        env.close()
    return result
