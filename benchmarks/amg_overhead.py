"""AnisotropicAMG-v0 env overhead: reset + step against the PyAMG work inside them.

``python -m benchmarks.amg_overhead [--grid-size 32] [--cases 32] [--repeats 5]``

For every test case, in one process and interleaved case by case (so load from other
jobs hits both sides alike), it times

- ``env``: ``env.reset(options={"case": i})`` + ``env.step(action)`` (finest mode; the
  action is the direction heuristic's, computed beforehand and not timed; the
  reference solve is cached per case, as in training, and warmed up once);
- ``pyamg``: ``solve(matrix, finest_level_strength(C, symmetric), rhs)`` on the same
  matrix, C and right-hand side: PyAMG's SA setup + PCG, the work the env cannot avoid.

and reports the median over repeats of the summed times and their ratio
(env / pyamg; 1.0 = no overhead). Absolute milliseconds depend on the machine and its
load and are context only. Prints a JSON line; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from agents.baselines.amg import AMGDirectionAgent
from benchmarks.report import emit_json_line
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.solver import StrengthMeasure, finest_level_strength, solve

__all__ = ["measure_overhead", "main"]


def measure_overhead(grid_size: int = 32, n_cases: int = 32, repeats: int = 5) -> dict[str, float]:
    """Median (over repeats) seconds of env reset + step and of the PyAMG setup + PCG inside, and their ratio."""
    env = AnisotropicAMGEnv(grid_size=grid_size, split="test")
    agent = AMGDirectionAgent(4)
    cases = list(range(min(n_cases, env.n_cases)))
    actions, strengths = {}, {}
    for case in cases:  # untimed: actions, C, the cached reference solve, lazy imports
        obs, _ = env.reset(seed=case, options={"case": case})
        actions[case] = agent.predict(obs)[0]
        strengths[case] = finest_level_strength(env.strength_of(actions[case]), StrengthMeasure.SYMMETRIC)
        env.step(actions[case])
    env_totals, pyamg_totals = [], []
    for _ in range(repeats):
        env_seconds = pyamg_seconds = 0.0
        for case in cases:
            start = time.perf_counter()
            env.reset(seed=case, options={"case": case})
            env.step(actions[case])
            env_seconds += time.perf_counter() - start
            matrix, rhs = env.problems[case].matrix(), env.rhs(case)
            start = time.perf_counter()
            solve(matrix, strengths[case], rhs, env.max_iterations)
            pyamg_seconds += time.perf_counter() - start
        env_totals.append(env_seconds)
        pyamg_totals.append(pyamg_seconds)
    ratios = [e / p for e, p in zip(env_totals, pyamg_totals)]
    return {
        "grid_size": grid_size,
        "cases": len(cases),
        "repeats": repeats,
        "env_ms_per_episode": 1e3 * statistics.median(env_totals) / len(cases),
        "pyamg_ms_per_solve": 1e3 * statistics.median(pyamg_totals) / len(cases),
        "overhead_ratio": float(statistics.median(ratios)),
        "overhead_ratio_min": float(np.min(ratios)),
        "overhead_ratio_max": float(np.max(ratios)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-size", type=int, default=32)
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = measure_overhead(args.grid_size, args.cases, args.repeats)
    emit_json_line(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
