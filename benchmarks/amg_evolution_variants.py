"""Does any fixed setting of evolution strength, or a setup-only lookahead, beat PyAMG's default? (issue 12)

``python -m benchmarks.amg_evolution_variants [--family heterogeneous] [--train-cases 256] [--fresh-draws 8] [--out F] [--plot PNG]``

:mod:`benchmarks.amg_tolerance` showed that evolution's drop tolerance, chosen per case,
could save 4-6 % (oracle) but that the best tolerance is no smooth function of the
coefficients. Two more things an AMG expert would try before calling PyAMG's default
evolution strength the baseline to beat on AnisotropicAMG-v0:

- evolution's other parameters: the time steps k of the measure's ODE (PyAMG default 2;
  non-powers of two, e.g. 3 or 6, fail in PyAMG 5.4 with ``ValueError: Scalar operands are
  not allowed``) and the projection (``l2`` or ``D_A``), crossed with the drop tolerance:
  :data:`VARIANTS`, the same on every level, tuned on the training cases, scored on test;
- a setup-only lookahead: build the hierarchy of every variant for a case (setup, no
  solve) and pick the variant a ridge model of relative work predicts best from each
  candidate hierarchy's operator complexity and level count, fit on the training cases
  (ridge penalty by 4-fold cross-validation over cases). What an agent could learn that
  sees the K hierarchies it might build, but not their convergence.

Each is scored on the first ``--test-cases`` (default 32, the test split these studies were
measured on) test cases and, because 32 cases cannot resolve differences below ~4 % (README),
on those of ``--fresh-draws`` further problem draws
(``problem_seed`` 1, 2, ...), as mean work with the paired 95 % t interval of the
per-case difference to the default. Prints progress to stderr and one JSON line to stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.amg_tolerance import RESULT_FIELDS, paired_difference, strength_results
from benchmarks.report import emit_json_line
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.problems import FIRST_TEST_CASES

__all__ = ["VARIANTS", "lookahead_features", "fit_lookahead", "lookahead_choice", "measure", "plot", "main"]

VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default", {}),
    ("proj D_A", {"proj_type": "D_A"}),
    *((f"k {k}, eps {eps:g}", {"k": k, "epsilon": eps}) for k in (2, 4, 8) for eps in (3.0, 4.0, 5.0, 6.0, 8.0)
      if (k, eps) != (2, 4.0)),
)
"""(name, ``pyamg.strength.evolution_strength_of_connection`` keyword arguments); the first is PyAMG's default."""
RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
CV_FOLDS = 4
WORK, COMPLEXITY, LEVELS = (RESULT_FIELDS.index(name) for name in ("work", "operator_complexity", "levels"))


def lookahead_features(results: np.ndarray) -> np.ndarray:
    """(cases, K, F) per-candidate features of the hierarchies only (no solve): log operator
    complexity and level count relative to the case's mean over candidates, the squared
    relative complexity, a one-hot of the candidate and its product with the relative complexity."""
    log_complexity = np.log(results[..., COMPLEXITY])  # (C, K)
    relative = log_complexity - np.nanmean(log_complexity, axis=1, keepdims=True)
    levels = results[..., LEVELS] - np.nanmean(results[..., LEVELS], axis=1, keepdims=True)
    one_hot = np.broadcast_to(np.eye(results.shape[1]), results.shape[:2] + (results.shape[1],))  # (C, K, K)
    return np.concatenate([relative[..., None], relative[..., None] ** 2, levels[..., None], one_hot,
                           one_hot * relative[..., None]], axis=-1)


def _relative_log_work(results: np.ndarray) -> np.ndarray:
    log_work = np.log(results[..., WORK])  # (C, K)
    return log_work - np.nanmean(log_work, axis=1, keepdims=True)


def _ridge(features: np.ndarray, target: np.ndarray, penalty: float) -> np.ndarray:
    x, y = features.reshape(-1, features.shape[-1]), target.reshape(-1)
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
    x, y = x[keep], y[keep]
    return np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ y)


def lookahead_choice(coefficients: np.ndarray, results: np.ndarray) -> np.ndarray:
    """(cases,) the candidate with the least predicted relative work (a failed setup is never chosen)."""
    predicted = lookahead_features(results) @ coefficients  # (C, K)
    return np.where(np.isfinite(predicted), predicted, np.inf).argmin(axis=1)


def fit_lookahead(results: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """Ridge coefficients on the training ``results`` and the penalty chosen by
    :data:`CV_FOLDS`-fold cross-validation of the chosen candidates' mean work."""
    features, target = lookahead_features(results), _relative_log_work(results)
    folds = np.random.default_rng(seed).permutation(len(results)) % CV_FOLDS
    scores = []
    for penalty in RIDGE_PENALTIES:
        chosen_work = []
        for fold in range(CV_FOLDS):
            held = folds == fold
            coefficients = _ridge(features[~held], target[~held], penalty)
            choice = lookahead_choice(coefficients, results[held])
            chosen_work.append(results[held][np.arange(held.sum()), choice, WORK])
        scores.append(float(np.nanmean(np.concatenate(chosen_work))))
    penalty = RIDGE_PENALTIES[int(np.argmin(scores))]
    return _ridge(features, target, penalty), penalty


def _score(results: np.ndarray, choices: np.ndarray) -> dict[str, Any]:
    works = results[..., WORK]
    return {"work": float(np.nanmean(works[np.arange(len(works)), choices])),
            "minus_default": paired_difference(works, choices, 0)}


def _split_results(family: str, grid_size: int, split: str, cases: int | None, problem_seeds: list[int],
                   strengths: list[Any]) -> np.ndarray:
    pooled = []
    for problem_seed in problem_seeds:
        env = AnisotropicAMGEnv(grid_size=grid_size, split=split, problem_family=family, problem_seed=problem_seed)
        ids = list(range(env.n_cases if cases is None else min(cases, env.n_cases)))
        pooled.append(strength_results(env, ids, strengths, label=f"{family} {split}, problem draw {problem_seed}"))
    return np.concatenate(pooled)


def measure(family: str, grid_size: int = 32, train_cases: int = 256, fresh_draws: int = 8,
            test_cases: int = FIRST_TEST_CASES) -> dict[str, Any]:
    strengths = [("evolution", kwargs) for _, kwargs in VARIANTS]
    train = _split_results(family, grid_size, "train", train_cases, [0], strengths)
    tests = {"test": _split_results(family, grid_size, "test", test_cases, [0], strengths)}
    if fresh_draws:
        tests["fresh_test"] = _split_results(family, grid_size, "test", test_cases, list(range(1, fresh_draws + 1)), strengths)
    tuned = int(np.nanargmin(np.nanmean(train[..., WORK], axis=0)))
    coefficients, penalty = fit_lookahead(train)
    report: dict[str, Any] = {
        "family": family, "grid_size": grid_size, "train_cases": len(train),
        "variants": [name for name, _ in VARIANTS],
        "mean_work_train": [round(float(w), 4) for w in np.nanmean(train[..., WORK], axis=0)],
        "tuned_on_train": VARIANTS[tuned][0],
        "lookahead_penalty": penalty,
        "lookahead_train_work": _score(train, lookahead_choice(coefficients, train))["work"],
        "solver_failures": int(np.isnan(train[..., WORK]).sum() + sum(np.isnan(r[..., WORK]).sum() for r in tests.values())),
    }
    for split, results in tests.items():
        works = results[..., WORK]
        fixed = lambda column: np.full(len(results), column)  # noqa: E731
        report[split] = {
            "cases": len(results),
            "mean_work": [round(float(w), 4) for w in np.nanmean(works, axis=0)],
            "default": float(np.nanmean(works[:, 0])),
            "each_variant_minus_default": [paired_difference(works, fixed(column), 0) for column in range(len(VARIANTS))],
            "tuned_on_train": _score(results, fixed(tuned)),
            "lookahead": _score(results, lookahead_choice(coefficients, results)),
            "lookahead_choices": np.bincount(lookahead_choice(coefficients, results), minlength=len(VARIANTS)).tolist(),
            "oracle": _score(results, np.nanargmin(works, axis=1)),
        }
    return report


def plot(report: dict[str, Any], path: Path, split: str = "fresh_test") -> Path:
    """PNG: every variant's, the lookahead's and the oracle's mean work minus the default's, with paired 95 % intervals."""
    from benchmarks.plots import plot_paired_differences

    scores = report[split]
    rows = {f"evolution, {name}": difference
            for name, difference in zip(report["variants"], scores["each_variant_minus_default"]) if name != "default"}
    rows["setup-only lookahead (per case)"] = scores["lookahead"]["minus_default"]
    rows["oracle (best variant per case)"] = scores["oracle"]["minus_default"]
    return plot_paired_differences(
        rows, path, title=f"AnisotropicAMG-v0 {report['family']}, {report['grid_size']}^2, {scores['cases']} {split.replace('_', ' ')} cases")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["constant", "heterogeneous"], default="heterogeneous")
    parser.add_argument("--grid-size", type=int, default=32)
    parser.add_argument("--train-cases", type=int, default=256)
    parser.add_argument("--fresh-draws", type=int, default=8, help="further problem draws whose test splits are scored too")
    parser.add_argument("--test-cases", type=int, default=FIRST_TEST_CASES,
                        help="the first N test cases of each draw (default: the 32 these studies were measured on)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the differences to the default (fresh draws, else test)")
    args = parser.parse_args(argv)
    report = measure(args.family, args.grid_size, args.train_cases, args.fresh_draws, args.test_cases)
    emit_json_line(report, args.out)
    if args.plot is not None:
        plot(report, args.plot, "fresh_test" if args.fresh_draws else "test")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
