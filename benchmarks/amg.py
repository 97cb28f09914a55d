"""AnisotropicAMG-v0 evaluation: an agent's C against PyAMG's strength measures.

On the first ``n_episodes`` test cases (case i, reset seed ``seed + i``), for the agent
and every baseline: ``mean_reward`` (the env's reward: log of the reference solver's
work per digit over this one's), ``mean_pcg_iterations`` (to ||r|| < 1e-8 ||b||),
``mean_operator_complexity``, ``mean_work`` (operator complexity x PCG iterations:
fine-level matvec equivalents of the solve), ``mean_work_per_digit``,
``mean_setup_seconds`` (PyAMG setup, wall clock, pessimistic on a shared CPU),
``mean_policy_seconds`` (the agent's ``predict``, i.e. the cost of choosing C, not
included in the setup) and ``n_failed`` (failed solves, left out of the means).

Baselines (``baselines`` in the result):

- ``symmetric``: PyAMG's default strength, symmetric theta = 0, on every level.
- ``symmetric_0.25``: symmetric theta = 0.25 on every level.
- ``evolution``: evolution strength on every level.
- ``evolution_finest_level``: evolution's C on the finest level only, the env's
  ``coarse_strength`` below: what the best classical measure achieves in the agent's
  own formulation.
- ``random``: k random edges per row (:class:`agents.baselines.AMGRandomKPerRowAgent`).
- ``direction``: the k edges best aligned with the strong diffusion direction
  (:class:`agents.baselines.AMGDirectionAgent`).

k is the agent's policy ``k`` when it has one, else :data:`envs.amg.DEFAULT_EDGES_PER_ROW`.
``transfer_grid_sizes`` (also accepted inside ``env_kwargs``, e.g. from the CLI's
``eval_env_kwargs``) repeats the evaluation on larger grids: the GNN is size-agnostic.

``python -m benchmarks.amg --model runs/reinforce/AnisotropicAMG-v0_1/model.zip
--algo reinforce --grid-sizes 64 128`` evaluates a saved model.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
from pyamg.strength import evolution_strength_of_connection

import envs  # noqa: F401  (registers the ids)
from agents.baselines import AMGDirectionAgent, AMGRandomKPerRowAgent
from benchmarks.evaluation import Agent, EnvWrapper, run_episode
from envs.amg import DEFAULT_EDGES_PER_ROW, AnisotropicAMGEnv
from envs.amg.solver import SolveResult, SolverFailure, StrengthMeasure, finest_level_strength, solve
from rewards.amg import FAILURE_REWARD, relative_work_reward

__all__ = ["evaluate", "solver_baselines", "summarise"]

_METRICS = ("reward", "pcg_iterations", "operator_complexity", "work", "work_per_digit", "setup_seconds")


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over successful solves (rewards over all, failures scoring FAILURE_REWARD)."""
    ok = [r for r in records if not r["solver_failed"]]
    summary: dict[str, Any] = {"mean_reward": float(np.mean([r["reward"] for r in records]))}
    summary["std_reward"] = float(np.std([r["reward"] for r in records]))
    for key in _METRICS[1:]:
        summary[f"mean_{key}"] = float(np.mean([r[key] for r in ok])) if ok else None
    if all("policy_seconds" in r for r in records):
        summary["mean_policy_seconds"] = float(np.mean([r["policy_seconds"] for r in records]))
    summary["n_failed"] = len(records) - len(ok)
    summary["n_episodes"] = len(records)
    return summary


def _record(result: SolveResult | None, reference: SolveResult) -> dict[str, Any]:
    if result is None:
        return {"reward": FAILURE_REWARD, "solver_failed": True}
    reward, _ = relative_work_reward(result.work_per_digit, reference.work_per_digit)
    return {
        "reward": reward,
        "solver_failed": False,
        "pcg_iterations": result.pcg_iterations,
        "operator_complexity": result.operator_complexity,
        "work": result.work,
        "work_per_digit": result.work_per_digit,
        "setup_seconds": result.setup_seconds,
    }


def _evolution_pattern(matrix: sp.csr_array) -> sp.csr_array:
    C = evolution_strength_of_connection(sp.csr_matrix(matrix), np.ones((matrix.shape[0], 1)))
    pattern = sp.csr_array(C, copy=True)
    pattern.data[:] = 1.0
    return pattern


def solver_baselines(env: AnisotropicAMGEnv, case: int) -> dict[str, dict[str, Any]]:
    """PyAMG's own measures on ``case``, scored against the env's reference solver."""
    matrix, rhs = env.problems[case].matrix(), env.rhs(case)
    reference = env.baseline(case)
    strengths: dict[str, Any] = {measure.value: measure.pyamg_argument() for measure in StrengthMeasure}
    strengths["evolution_finest_level"] = finest_level_strength(_evolution_pattern(matrix), env.coarse_strength)
    records = {}
    for name, strength in strengths.items():
        try:
            result: SolveResult | None = solve(matrix, strength, rhs, env.max_iterations)
        except SolverFailure:
            result = None
        records[name] = _record(result, reference)
    return records


class _TimedAgent:
    """Forwards ``predict`` and accumulates its wall-clock time."""

    def __init__(self, agent: Agent) -> None:
        self.agent, self.seconds = agent, 0.0

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True) -> Any:
        start = time.perf_counter()
        try:
            return self.agent.predict(observation, state=state, episode_start=episode_start, deterministic=deterministic)
        finally:
            self.seconds += time.perf_counter() - start


def _agent_record(agent: Agent, env: gym.Env, case: int, seed: int) -> dict[str, Any]:
    """One deterministic episode on ``case``; the reward is the env's own."""
    timed = _TimedAgent(agent)
    episode = run_episode(timed, env, seed, deterministic=True, options={"case": case})
    record = {"reward": episode.episode_return, "solver_failed": episode.final_info["solver_failed"]}
    for key in _METRICS[1:]:
        record[key] = episode.final_info.get(key)
    record["policy_seconds"] = timed.seconds
    return record


def _policy_k(agent: Agent) -> int:
    policy = getattr(agent, "policy", agent)
    k = getattr(policy, "k", None)
    return k if isinstance(k, int) else DEFAULT_EDGES_PER_ROW


def _evaluate_grid(
    agent: Agent, env_id: str, env_kwargs: dict[str, Any], wrapper: EnvWrapper | None, n_episodes: int, seed: int
) -> dict[str, Any]:
    env = gym.make(env_id, **{**env_kwargs, "split": "test", "report_timings": True})
    if wrapper is not None:
        env = wrapper(env)
    core: AnisotropicAMGEnv = env.unwrapped
    k = _policy_k(agent)
    agents: dict[str, Agent] = {"random": AMGRandomKPerRowAgent(k, seed=seed), "direction": AMGDirectionAgent(k)}
    records: dict[str, list[dict[str, Any]]] = {"agent": [], **{name: [] for name in agents}}
    try:
        agent.predict(env.reset(seed=seed)[0], deterministic=True)  # warm-up: keep one-off costs out of the timing
        for episode in range(n_episodes):
            case = episode % len(core.problems)
            for name, player in (("agent", agent), *agents.items()):
                records[name].append(_agent_record(player, env, case, seed + episode))
            for name, record in solver_baselines(core, case).items():
                records.setdefault(name, []).append(record)
    finally:
        env.close()
    result = summarise(records.pop("agent"))
    result["grid_size"] = core.grid_size
    result["edges_per_row"] = k
    result["coarse_strength"] = core.coarse_strength.value
    result["baselines"] = {name: summarise(rs) for name, rs in records.items()}
    return result


def evaluate(
    agent: Agent,
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: EnvWrapper | None = None,
    n_episodes: int = 20,
    seed: int = 0,
    transfer_grid_sizes: Sequence[int] = (),
) -> dict[str, Any]:
    """Evaluate ``agent`` and the baselines on the test split (see the module docstring)."""
    kwargs = dict(env_kwargs or {})
    transfer = tuple(kwargs.pop("transfer_grid_sizes", ())) + tuple(transfer_grid_sizes)
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    result = _evaluate_grid(agent, env_id, kwargs, wrapper, n_episodes, seed)
    if transfer:
        result["transfer"] = {
            str(size): _evaluate_grid(agent, env_id, {**kwargs, "grid_size": int(size)}, wrapper, n_episodes, seed)
            for size in transfer
        }
    return result


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.amg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved model.zip")
    parser.add_argument("--algo", default="reinforce", help="its algorithm name in train.algorithms (default reinforce)")
    parser.add_argument("--grid-sizes", type=int, nargs="+", default=[32], help="grid sizes to evaluate on")
    parser.add_argument("--episodes", type=int, default=20, help="test cases per grid size")
    parser.add_argument("--coarse-strength", default="symmetric", choices=[m.value for m in StrengthMeasure])
    parser.add_argument("--seed", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from train.algorithms import algorithm_spec

    model = algorithm_spec(args.algo).load_class().load(args.model, device="cpu")
    first, *rest = args.grid_sizes
    result = evaluate(
        model, "AnisotropicAMG-v0", env_kwargs={"grid_size": first, "coarse_strength": args.coarse_strength},
        n_episodes=args.episodes, seed=args.seed, transfer_grid_sizes=rest,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    _main()
