"""Is evolution strength's drop tolerance worth choosing per case? (AnisotropicAMG-v0, issue 12)

``python -m benchmarks.amg_tolerance [--family heterogeneous] [--grid-size 32] [--train-cases 256] [--out F]``

The learned multi-level C of AnisotropicAMG-v0 reproduces PyAMG's evolution strength on
every level; the one knob left around it is evolution's drop tolerance epsilon. A policy
that picks epsilon per case (a handful of actions per episode instead of ~8,000 edge
bits) can only beat evolution's default if the best epsilon of a case is a *learnable*
property of the operator. This benchmark measures that, with PyAMG's
``strength=('evolution', {'epsilon': e})`` on every level, B = ones, the env's options
and right-hand sides, for every e in :data:`TOLERANCES` and every case:

- ``mean_work_train`` / ``mean_work_test``: mean work (operator complexity x PCG iterations) per tolerance, train
  and test splits;
- ``oracle`` (``pair_oracle``: over the pairs below): the best tolerance of each test case, chosen on the test solve itself
  (an upper bound no policy reaches);
- ``oracle_other_rhs``: the best tolerance of each test case chosen on a *second*
  right-hand side of the same matrix, scored on the env's: what an agent that knew the
  operator exactly could gain, if the per-case optimum is a property of the operator;
- ``fixed_tuned_on_train``: the single tolerance with the least mean train work, scored
  on test (the expert's tuned fixed rule);
- ``pair_default_test``: the pair (4, 4), which must equal ``evolution_default_test`` (a check);
- ``fixed_pair_tuned_on_train``: the same with one tolerance on the finest level and
  another on every coarser level (:data:`PAIR_TOLERANCES` squared): the best a policy
  that chooses per level but not per case can reach;
- ``*_minus_default``: the mean per-case test work difference to the default tolerance
  (4 on every level) with its 95 % t interval over the test cases;
- ``knn_k``: per test case, the tolerance with the least mean relative work over its k
  nearest training cases in a descriptor of the case's coefficients (constant: log10 eps,
  cos 2 theta, sin 2 theta; heterogeneous: the same, area-weighted over regions, and the
  spread of log10 eps), i.e. a supervised predictor of the best tolerance.

Prints progress to stderr and one JSON line to stdout (``--out`` also writes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from agents.baselines.amg import SEARCH_RHS_SEED_OFFSET
from benchmarks.report import emit_json_line
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.problems import FIRST_TEST_CASES, DiffusionProblem, HeterogeneousProblem, right_hand_side
from envs.amg.solver import SolverFailure, solve

__all__ = ["PAIR_TOLERANCES", "RESULT_FIELDS", "TOLERANCES", "case_descriptor", "knn_choice", "pair_works", "paired_difference",
           "strength_results", "strength_works", "tolerance_works", "main"]

TOLERANCES = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0)
"""Evolution drop tolerances compared; PyAMG's default is 4.0."""
PAIR_TOLERANCES = (3.0, 4.0, 5.0, 6.0, 8.0)
"""Tolerances of the (finest, coarser) pairs."""
DEFAULT_TOLERANCE = 4.0
KNN_SIZES = (5, 15, 45)
SECOND_RHS_SEED_OFFSET = SEARCH_RHS_SEED_OFFSET
"""The second right-hand side of a case is the env's with problem_seed + this offset (the
``evolution_tolerance_search`` reference's probe)."""


def case_descriptor(problem: DiffusionProblem | HeterogeneousProblem) -> np.ndarray:
    """Coefficient summary of a case for nearest-neighbour prediction (z-scored by the caller)."""
    if isinstance(problem, DiffusionProblem):
        return np.array([np.log10(problem.epsilon), np.cos(2 * problem.theta), np.sin(2 * problem.theta)])
    area = problem.region_weights().mean(axis=0)  # (regions,) fraction of the grid in each region
    log_eps = np.log10(np.asarray(problem.epsilons))
    thetas = np.asarray(problem.thetas)
    return np.array([area @ log_eps, area @ np.cos(2 * thetas), area @ np.sin(2 * thetas), log_eps.std(), len(log_eps)])


RESULT_FIELDS = ("work", "operator_complexity", "levels")
"""The columns of :func:`strength_results`' last axis."""


def strength_results(env: AnisotropicAMGEnv, cases: list[int], strengths: list[Any], rhs_seed_offset: int = 0,
                     label: str = "") -> np.ndarray:
    """(cases, len(strengths), len(RESULT_FIELDS)) work, operator complexity and level count of PyAMG's
    solver with each ``strength`` argument (NaN: solver failure), on the env's right-hand side of each
    case (``rhs_seed_offset`` > 0: another one)."""
    results = np.full((len(cases), len(strengths), len(RESULT_FIELDS)), np.nan)
    for row, case in enumerate(cases):
        matrix = env.problems[case].matrix()
        rhs = right_hand_side(env.problem_seed + rhs_seed_offset, env.split, case, env.graph.n_nodes)
        for column, strength in enumerate(strengths):
            try:
                result = solve(matrix, strength, rhs, env.max_iterations)
            except SolverFailure:
                continue
            results[row, column] = (result.work, result.operator_complexity, result.levels)
        if (row + 1) % 16 == 0 or row + 1 == len(cases):
            print(f"{label}: {row + 1}/{len(cases)} cases", file=sys.stderr, flush=True)
    return results


def strength_works(env: AnisotropicAMGEnv, cases: list[int], strengths: list[Any], rhs_seed_offset: int = 0,
                   label: str = "") -> np.ndarray:
    """(cases, len(strengths)) work of :func:`strength_results`."""
    return strength_results(env, cases, strengths, rhs_seed_offset, label)[..., 0]


def tolerance_works(env: AnisotropicAMGEnv, cases: list[int], rhs_seed_offset: int = 0, label: str = "") -> np.ndarray:
    """(cases, len(TOLERANCES)) work of evolution with each tolerance on every level (NaN: solver failure)."""
    strengths = [("evolution", {"epsilon": t}) for t in TOLERANCES]
    return strength_works(env, cases, strengths, rhs_seed_offset, label)


def pair_works(env: AnisotropicAMGEnv, cases: list[int], label: str = "") -> np.ndarray:
    """(cases, len(PAIR_TOLERANCES) ** 2) work with tolerance a on the finest level and b below
    (PyAMG repeats a strength list's last entry on the remaining levels); column a_index * K + b_index."""
    strengths = [[("evolution", {"epsilon": a}), ("evolution", {"epsilon": b})] for a in PAIR_TOLERANCES for b in PAIR_TOLERANCES]
    return strength_works(env, cases, strengths, label=label)


def knn_choice(train_descriptors: np.ndarray, train_works: np.ndarray, descriptors: np.ndarray, k: int) -> np.ndarray:
    """Per query, the tolerance index with the least mean relative work (work / the case's best) over its k nearest training cases."""
    centre, scale = train_descriptors.mean(axis=0), train_descriptors.std(axis=0) + 1e-12
    train_z, query_z = (train_descriptors - centre) / scale, (descriptors - centre) / scale
    relative = train_works / np.nanmin(train_works, axis=1, keepdims=True)  # (T, K)
    choices = []
    for query in query_z:
        nearest = np.argsort(((train_z - query) ** 2).sum(axis=1))[:k]
        choices.append(int(np.nanargmin(np.nanmean(relative[nearest], axis=0))))
    return np.array(choices)


def _chosen(works: np.ndarray, choices: np.ndarray) -> float:
    return float(np.nanmean(works[np.arange(len(works)), choices]))


def paired_difference(works: np.ndarray, choices: np.ndarray, reference: int) -> dict[str, float]:
    """Mean per-case work difference (choices - reference column) and its 95 % t interval:
    whether a difference between two rules on the test cases is more than case-to-case noise."""
    difference = works[np.arange(len(works)), choices] - works[:, reference]  # (cases,)
    difference = difference[np.isfinite(difference)]
    half = float(scipy.stats.t.ppf(0.975, len(difference) - 1) * difference.std(ddof=1) / np.sqrt(len(difference)))
    mean = float(difference.mean())
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def measure(family: str, grid_size: int = 32, train_cases: int = 256, test_cases: int = FIRST_TEST_CASES) -> dict[str, Any]:
    train = AnisotropicAMGEnv(grid_size=grid_size, split="train", problem_family=family)
    test = AnisotropicAMGEnv(grid_size=grid_size, split="test", problem_family=family)
    train_ids, test_ids = list(range(min(train_cases, train.n_cases))), list(range(min(test_cases, test.n_cases)))
    train_works = tolerance_works(train, train_ids, label=f"{family} train")
    test_works = tolerance_works(test, test_ids, label=f"{family} test")
    other_rhs = tolerance_works(test, test_ids, SECOND_RHS_SEED_OFFSET, label=f"{family} test, second rhs")
    train_pairs = pair_works(train, train_ids, label=f"{family} train, pairs")
    test_pairs = pair_works(test, test_ids, label=f"{family} test, pairs")
    tuned_pair = int(np.nanargmin(np.nanmean(train_pairs, axis=0)))
    n_pair = len(PAIR_TOLERANCES)
    default_pair = PAIR_TOLERANCES.index(DEFAULT_TOLERANCE) * (n_pair + 1)
    train_descriptors = np.stack([case_descriptor(train.problems[c]) for c in train_ids])
    test_descriptors = np.stack([case_descriptor(test.problems[c]) for c in test_ids])
    tuned = int(np.nanargmin(np.nanmean(train_works, axis=0)))
    default = TOLERANCES.index(DEFAULT_TOLERANCE)
    best_test, best_other = np.nanargmin(test_works, axis=1), np.nanargmin(other_rhs, axis=1)
    return {
        "family": family,
        "grid_size": grid_size,
        "train_cases": len(train_ids),
        "test_cases": len(test_ids),
        "tolerances": list(TOLERANCES),
        "mean_work_train": [round(float(w), 4) for w in np.nanmean(train_works, axis=0)],
        "mean_work_test": [round(float(w), 4) for w in np.nanmean(test_works, axis=0)],
        "evolution_default_test": _chosen(test_works, np.full(len(test_ids), default)),
        "fixed_tuned_on_train": {
            "tolerance": TOLERANCES[tuned],
            "test_work": _chosen(test_works, np.full(len(test_ids), tuned)),
            "test_minus_default": paired_difference(test_works, np.full(len(test_ids), tuned), default),
        },
        "each_tolerance_test_minus_default": [
            paired_difference(test_works, np.full(len(test_ids), column), default) for column in range(len(TOLERANCES))
        ],
        "fixed_pair_tuned_on_train": {
            "tolerances": [PAIR_TOLERANCES[tuned_pair // n_pair], PAIR_TOLERANCES[tuned_pair % n_pair]],
            "train_work": float(np.nanmean(train_pairs[:, tuned_pair])),
            "test_work": _chosen(test_pairs, np.full(len(test_ids), tuned_pair)),
            "test_minus_default": paired_difference(test_pairs, np.full(len(test_ids), tuned_pair), default_pair),
        },
        "pair_default_test": _chosen(test_pairs, np.full(len(test_ids), default_pair)),
        "pair_oracle": _chosen(test_pairs, np.nanargmin(test_pairs, axis=1)),
        "oracle": _chosen(test_works, best_test),
        "oracle_other_rhs": _chosen(test_works, best_other),
        "best_tolerance_agrees_across_rhs": float(np.mean(best_test == best_other)),
        **{f"knn_{k}": _chosen(test_works, knn_choice(train_descriptors, train_works, test_descriptors, k)) for k in KNN_SIZES},
        "solver_failures": int(sum(np.isnan(w).sum() for w in (train_works, test_works, other_rhs, train_pairs, test_pairs))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["constant", "heterogeneous"], default="heterogeneous")
    parser.add_argument("--grid-size", type=int, default=32)
    parser.add_argument("--train-cases", type=int, default=256)
    parser.add_argument("--test-cases", type=int, default=FIRST_TEST_CASES,
                        help="the first N test cases (default: the 32 of the split these studies were measured on)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    emit_json_line(measure(args.family, args.grid_size, args.train_cases, args.test_cases), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
