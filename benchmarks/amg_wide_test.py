"""AnisotropicAMG-v0 agents against evolution strength on many fresh test cases (issue 12).

``python -m benchmarks.amg_wide_test --family heterogeneous --agent L=RUN_DIR [...] [--scorer] [--problem-seeds 1 2 ... 8] [--grid-size N] [--out F] [--plot PNG]``

Until 2026-12-06 the env's test split had 32 cases, and on them differences of a few per
cent between C's are case-to-case noise (``benchmarks.amg_tolerance``: every fixed drop
tolerance's 95 % interval against the default is about ±0.65 of work). Every
``problem_seed`` draws a new, disjoint set of cases with the same distribution, so the first
``--test-cases`` (default 32) test cases of ``--problem-seeds`` (default 1-8: 256 cases none of
which any policy trained on; training uses problem_seed 0) pooled give the statistical power
to tell them apart. ``--env-test-split`` scores the env's own test split instead (256 cases
since 2026-12-06, disjoint from the training split of the same draw): the cases of eval.json,
with the paired intervals eval.json does not give. For each agent
(a run dir, played deterministically with its own env kwargs) and each fixed evolution
tolerance (:data:`benchmarks.amg_tolerance.TOLERANCES`, PyAMG's solver on every level), it
reports the mean work and the paired per-case difference to evolution with the default
tolerance, with its 95 % t interval; ``--scorer`` adds the supervised ``tolerance_scorer``
reference (:mod:`agents.baselines.amg_tolerance_scorer`) as a row. Every agent row also
carries its paired difference to PyAMG's default strength (``symmetric``, theta 0, every level:
the env's reward reference). ``--grid-size N`` plays every row on the same cases at N x N
(the coefficients live on the unit square) with the agents' policies unchanged: transfer with
paired intervals, which ``python -m benchmarks evaluate ... transfer_grid_sizes`` reports without.
Prints progress to stderr, one JSON line to stdout.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.agent_spec import build_agent, parse_agent_spec
from benchmarks.amg_tolerance import DEFAULT_TOLERANCE, TOLERANCES, paired_difference, strength_works, tolerance_works
from benchmarks.report import emit_json_line
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.problems import FIRST_TEST_CASES, SPLIT_SIZES, Split
from envs.amg.solver import StrengthMeasure

__all__ = ["DEFAULT_PROBLEM_SEEDS", "agent_works", "plot", "scorer_works", "main"]

ENV_ID = "AnisotropicAMG-v0"
DEFAULT_PROBLEM_SEEDS = tuple(range(1, 9))
"""Problem draws whose test splits are pooled; 0 is the one the policies train on."""


def _env_for(kwargs: dict[str, Any], family: str, problem_seed: int, grid_size: int | None = None) -> AnisotropicAMGEnv:
    accepted = set(inspect.signature(AnisotropicAMGEnv.__init__).parameters) - {"self"}
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    kwargs.update(split="test", problem_family=family, problem_seed=problem_seed)
    if grid_size is not None:
        kwargs["grid_size"] = grid_size
    return AnisotropicAMGEnv(**kwargs)


def _cases(env: AnisotropicAMGEnv, test_cases: int) -> list[int]:
    return list(range(min(test_cases, env.n_cases)))


def _play(make_agent: Any, env_kwargs: dict[str, Any], family: str, problem_seeds: tuple[int, ...], label: str,
          test_cases: int, grid_size: int | None = None) -> np.ndarray:
    """(cases,) work of ``make_agent(env)``'s deterministic C on the first ``test_cases`` test cases of every
    draw (NaN: solver failure)."""
    works = []
    for problem_seed in problem_seeds:
        env = _env_for(env_kwargs, family, problem_seed, grid_size)
        agent = make_agent(env)
        for case in _cases(env, test_cases):
            obs, _ = env.reset(seed=case, options={"case": case})
            terminated = False
            while not terminated:
                obs, _, terminated, _, info = env.step(agent.predict(obs, deterministic=True)[0])
            works.append(np.nan if info["solver_failed"] else info["work"])
        print(f"{label}: problem seed {problem_seed} done", file=sys.stderr, flush=True)
    return np.asarray(works)


def agent_works(agent_text: str, family: str, problem_seeds: tuple[int, ...], test_cases: int = FIRST_TEST_CASES,
                grid_size: int | None = None) -> np.ndarray:
    """(cases,) work of a run dir's agent (``LABEL=RUN_DIR``) on the test cases of every draw (NaN: solver failure)."""
    spec = parse_agent_spec(agent_text)
    make = lambda env: build_agent(spec, env.action_space, seed=0, device="cpu", env_id=ENV_ID)  # noqa: E731
    return _play(make, spec.env_kwargs(ENV_ID), family, problem_seeds, spec.label, test_cases, grid_size)


def scorer_works(family: str, problem_seeds: tuple[int, ...], test_cases: int = FIRST_TEST_CASES,
                 grid_size: int | None = None) -> np.ndarray:
    """(cases,) work of the ``tolerance_scorer`` reference (fitted on the family's training split of draw 0)."""
    from agents.baselines.amg_tolerance_scorer import SCORER_TOLERANCES, AMGToleranceScorerAgent, fit_tolerance_scorer

    fitted = fit_tolerance_scorer(family, 0, SCORER_TOLERANCES)  # the training draw, as the policies'
    env_kwargs = {"mode": "multilevel", "evolution_features": True, "evolution_tolerances": list(SCORER_TOLERANCES)}
    agent = AMGToleranceScorerAgent(fitted["weights"], fitted["biases"])
    return _play(lambda env: agent, env_kwargs, family, problem_seeds, "tolerance_scorer", test_cases, grid_size)


def measure(family: str, agents: list[str], problem_seeds: tuple[int, ...], scorer: bool = False,
            test_cases: int = FIRST_TEST_CASES, grid_size: int | None = None) -> dict[str, Any]:
    blocks, pyamg_blocks = [], []
    for problem_seed in problem_seeds:
        env = _env_for({}, family, problem_seed, grid_size)
        cases = _cases(env, test_cases)
        blocks.append(tolerance_works(env, cases, label=f"tolerances, problem seed {problem_seed}"))
        pyamg_blocks.append(strength_works(env, cases, [StrengthMeasure.SYMMETRIC.pyamg_argument()],
                                           label=f"PyAMG default, problem seed {problem_seed}")[:, 0])
    fixed = np.concatenate(blocks)  # (cases, len(TOLERANCES))
    pyamg_default = np.concatenate(pyamg_blocks)  # (cases,)
    default = TOLERANCES.index(DEFAULT_TOLERANCE)
    result: dict[str, Any] = {
        "family": family,
        "problem_seeds": list(problem_seeds),
        "grid_size": env.grid_size,  # every draw's env is built at the same size
        "cases": len(fixed),
        "evolution_default": float(np.nanmean(fixed[:, default])),
        "pyamg_default": float(np.nanmean(pyamg_default)),
        "tolerances": {
            f"{t:g}": {"mean_work": float(np.nanmean(fixed[:, c])),
                       "minus_default": paired_difference(fixed, np.full(len(fixed), c), default)}
            for c, t in enumerate(TOLERANCES)
        },
        "agents": {},
    }
    rows = [(text, lambda text=text: agent_works(text, family, problem_seeds, test_cases, grid_size)) for text in agents]
    if scorer:
        rows.append(("tolerance_scorer", lambda: scorer_works(family, problem_seeds, test_cases, grid_size)))
    for text, play in rows:
        works = play()
        both = np.column_stack([fixed[:, default], works])  # (cases, 2): column 1 minus column 0
        versus_pyamg = np.column_stack([pyamg_default, works])
        second = np.ones(len(works), int)
        result["agents"][text] = {"mean_work": float(np.nanmean(works)),
                                  "minus_default": paired_difference(both, second, 0),
                                  "minus_pyamg_default": paired_difference(versus_pyamg, second, 0),
                                  "solver_failures": int(np.isnan(works).sum())}
    return result


def plot(result: dict[str, Any], path: Path) -> Path:
    """PNG: every fixed tolerance's and agent's mean work minus evolution's, with paired 95 % intervals."""
    from benchmarks.plots import plot_paired_differences

    rows = {f"evolution, tolerance {t}": v["minus_default"] for t, v in result["tolerances"].items() if float(t) != DEFAULT_TOLERANCE}
    rows.update({label.split("=", 1)[0]: v["minus_default"] for label, v in result["agents"].items()})
    cases = "test cases" if result.get("problem_seeds") == [0] else "fresh cases"  # --env-test-split: the env's own
    grid = result.get("grid_size", 32)
    return plot_paired_differences(
        rows, path,
        title=f"{result['family']}, {result['cases']} {cases}, {grid} x {grid} (evolution {result['evolution_default']:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["constant", "heterogeneous"], default="heterogeneous")
    parser.add_argument("--agent", action="append", default=[], help="LABEL=RUN_DIR (repeatable); none: tolerances only")
    parser.add_argument("--problem-seeds", type=int, nargs="+", default=list(DEFAULT_PROBLEM_SEEDS))
    parser.add_argument("--scorer", action="store_true",
                        help="add the tolerance_scorer reference (agents.baselines.amg_tolerance_scorer) as an agent row")
    parser.add_argument("--test-cases", type=int, default=None,
                        help=f"the first N test cases of each draw (default {FIRST_TEST_CASES}: 8 draws give 256 "
                             "cases; with --env-test-split, all of them)")
    parser.add_argument("--env-test-split", action="store_true",
                        help="score the env's own test split instead (problem draw 0, all its cases: the split "
                             "eval.json reports; disjoint from the training split)")
    parser.add_argument("--grid-size", type=int, default=None,
                        help="play every row at N x N on the same cases (default: each row's own grid, 32)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="PNG of every row's difference to evolution")
    args = parser.parse_args(argv)
    if 0 in args.problem_seeds:
        parser.error("--problem-seeds: 0 is the draw the policies train on; use fresh draws (>= 1), "
                     "or --env-test-split for its test split")
    if args.grid_size is not None and args.grid_size < 2:
        parser.error(f"--grid-size: expected an integer >= 2, got {args.grid_size}")
    if args.env_test_split:
        seeds, cases = (0,), args.test_cases or SPLIT_SIZES[Split.TEST]
    else:
        seeds, cases = tuple(args.problem_seeds), args.test_cases or FIRST_TEST_CASES
    result = measure(args.family, args.agent, seeds, args.scorer, cases, args.grid_size)
    emit_json_line(result, args.out)
    if args.plot is not None:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
