"""The one evaluation loop: play an agent over an env's pinned test cases and score it.

An *agent* is anything with SB3's ``predict(obs, state=None, episode_start=None,
deterministic=True) -> (action, state)``. Agents whose ``predict`` also takes
``action_masks=`` (sb3-contrib's maskable algorithms, our masked baselines) get the
env's ``action_masks()`` at every step.

:func:`evaluate` reads the env's row (:func:`envs.entry`): which test cases to play
(its :class:`~envs.spec.EvalProtocol`), the family's metrics (a pure function of the
episode records) and its reference agents, which play the same cases and are reported
under ``"baselines"``. The training CLI (final ``eval.json``), callbacks and the
benchmarks all call this, so a score means the same thing everywhere.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

import envs
from envs.episodes import EpisodeRecord
from envs.spec import CaseSchedule, EnvEntry, EvalProtocol, ReferenceAgent, import_target

__all__ = [
    "Agent",
    "EnvWrapper",
    "EpisodeRecord",
    "EvalContext",
    "ReferencePlayer",
    "evaluate",
    "play",
    "run_episode",
    "schedule_episodes",
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
    agent: Agent, env: gym.Env, seed: int | None = None, *, deterministic: bool = True, case: int | None = None
) -> EpisodeRecord:
    """Play one episode (unbatched observations), replaying ``case`` when given, and keep
    every step's info and the time spent in ``predict``."""
    obs, _ = env.reset(seed=seed, options=None if case is None else {"case": int(case)})
    masked = _accepts_action_masks(agent) and _has_action_masks(env)
    state, episode_start = None, np.ones((1,), dtype=bool)
    total, infos, seconds = 0.0, [], 0.0
    while True:
        extra = {"action_masks": env.get_wrapper_attr("action_masks")()} if masked else {}
        start = time.perf_counter()
        action, state = agent.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic, **extra)
        seconds += time.perf_counter() - start
        obs, reward, terminated, truncated, info = env.step(action)
        episode_start = np.zeros((1,), dtype=bool)
        total += float(reward)
        infos.append(info)
        if terminated or truncated:
            return EpisodeRecord(total, len(infos), info, infos, case, seconds)


def schedule_episodes(schedule: CaseSchedule, n_episodes: int, n_cases: int, seed: int) -> list[tuple[int, int]]:
    """``(case, reset seed)`` of every episode (rules in :class:`~envs.spec.CaseSchedule`)."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if schedule is CaseSchedule.CYCLE:
        return [(i % n_cases, seed + i) for i in range(n_episodes)]
    if schedule is CaseSchedule.PASSES:
        passes = max(1, math.ceil(n_episodes / n_cases))
        return [(c, seed + p * n_cases + c) for p in range(passes) for c in range(n_cases)]
    cases = np.arange(n_cases)
    if n_episodes < n_cases:
        cases = np.sort(np.random.default_rng(seed).choice(n_cases, n_episodes, replace=False))
    return [(int(c), seed + k) for k, c in enumerate(cases)]


def play(agent: Agent, env: gym.Env, episodes: Sequence[tuple[int, int]], *, deterministic: bool = True) -> list[EpisodeRecord]:
    """Play ``agent`` once per ``(case, seed)``."""
    return [run_episode(agent, env, seed, deterministic=deterministic, case=case) for case, seed in episodes]


@dataclass(frozen=True)
class EvalContext:
    """What a family's evaluation extras see (``EvalProtocol.extras``)."""

    env_id: str
    env: gym.Env
    """The agent's evaluation env (wrapped as the agent expects)."""
    agent: Agent
    env_kwargs: Mapping[str, Any]
    """The kwargs the evaluation env was made with (test kwargs included)."""
    episodes: tuple[tuple[int, int], ...]
    """The agent's ``(case, seed)`` episodes."""
    seed: int


def _n_cases(env: gym.Env) -> int:
    return int(env.unwrapped.n_cases)


def _play_reference(
    reference: ReferenceAgent, context: EvalContext, protocol: EvalProtocol, n_episodes: int, metrics: Callable
) -> dict[str, Any]:
    factory = import_target(reference.factory, f"reference agent {reference.name!r}")
    own_env = reference.env_kwargs is not None
    env = gym.make(context.env_id, **{**context.env_kwargs, **(reference.env_kwargs or {})}) if own_env else context.env
    try:
        agent = factory(env, context.agent, context.seed)
        episodes = list(context.episodes)
        if protocol.schedule is CaseSchedule.PASSES:
            n_cases = _n_cases(env)
            agent_passes = len(context.episodes) // n_cases
            passes = max(reference.passes or agent_passes, reference.min_passes)
            episodes = schedule_episodes(protocol.schedule, passes * n_cases, n_cases, context.seed)
        return metrics(play(agent, env, episodes))
    finally:
        if own_env:
            env.close()


@dataclass(frozen=True)
class ReferencePlayer:
    """One of an env's reference agents played *as* the agent under test (so the benchmark
    harness can score it over seeds with CIs like any agent). It is built on the evaluation
    env it plays, ``factory(env, None, seed)``, because reference agents read the env (the
    oracle's tables, a probe fitted on the train split); pass it to :func:`evaluate` as
    the agent."""

    reference: ReferenceAgent

    def bind(self, env: gym.Env, seed: int) -> Agent:
        factory = import_target(self.reference.factory, f"reference agent {self.reference.name!r}")
        return factory(env, None, seed)


def _evaluate_once(
    agent: Agent, row: EnvEntry, env_kwargs: dict[str, Any], wrapper: EnvWrapper | None, n_episodes: int, seed: int
) -> dict[str, Any]:
    protocol = row.evaluation
    metrics = import_target(protocol.metrics, f"metrics of {row.id}")
    kwargs = {**env_kwargs, **protocol.test_kwargs}
    env = gym.make(row.id, **kwargs)
    if wrapper is not None:
        env = wrapper(env)
    try:
        if isinstance(agent, ReferencePlayer):
            agent = agent.bind(env, seed)
        episodes = tuple(schedule_episodes(protocol.schedule, n_episodes, _n_cases(env), seed))
        if protocol.warm_up:  # keep one-off costs (lazy init, JIT) out of policy_seconds
            agent.predict(env.reset(seed=seed)[0], deterministic=True)
        result = metrics(play(agent, env, episodes))
        context = EvalContext(row.id, env, agent, kwargs, episodes, seed)
        baselines = {ref.name: _play_reference(ref, context, protocol, n_episodes, metrics) for ref in row.reference_agents}
        if protocol.extras is not None:
            extras = dict(import_target(protocol.extras, f"evaluation extras of {row.id}")(context))
            baselines.update(extras.pop("baselines", {}))
            result.update(extras)
    finally:
        env.close()
    result["baselines"] = baselines
    return result


def _evaluate_returns(
    agent: Agent, env_id: str, env_kwargs: dict[str, Any], wrapper: EnvWrapper | None, n_episodes: int, seed: int
) -> dict[str, Any]:
    """Any other registered id: mean and std of the return, episode i reset with seed + i."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    env = gym.make(env_id, **env_kwargs)
    if wrapper is not None:
        env = wrapper(env)
    try:
        returns = [run_episode(agent, env, seed + i).episode_return for i in range(n_episodes)]
    finally:
        env.close()
    return {"mean_reward": float(np.mean(returns)), "std_reward": float(np.std(returns)), "n_episodes": n_episodes}


def evaluate(
    agent: Agent,
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: EnvWrapper | None = None,
    n_episodes: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``agent`` on ``env_id``'s test split next to its reference agents.

    Returns a JSON-able dict with at least ``mean_reward``, ``std_reward``,
    ``n_episodes`` and, for ScienceGym ids, the family's metrics and ``baselines``.
    ``n_episodes`` defaults to the env's ``EvalProtocol.default_episodes``; ``wrapper``
    is applied to the agent's env (not to references that play their own env).
    """
    kwargs = dict(env_kwargs or {})
    if env_id not in envs.ENTRIES:
        return _evaluate_returns(agent, env_id, kwargs, wrapper, n_episodes or 10, seed)
    row = envs.entry(env_id)
    n = row.evaluation.default_episodes if n_episodes is None else n_episodes
    transfer_values: tuple[Any, ...] = ()
    if row.evaluation.transfer is not None:
        list_kwarg, env_kwarg = row.evaluation.transfer
        transfer_values = tuple(kwargs.pop(list_kwarg, ()))
    result = _evaluate_once(agent, row, kwargs, wrapper, n, seed)
    if transfer_values:
        result["transfer"] = {
            str(v): _evaluate_once(agent, row, {**kwargs, env_kwarg: v}, wrapper, n, seed) for v in transfer_values
        }
    return result
