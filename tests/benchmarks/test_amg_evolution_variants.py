"""The evolution-parameter study's pieces: the variants are PyAMG's, and the lookahead learns what its features carry."""

from __future__ import annotations

import numpy as np

from benchmarks.amg_evolution_variants import VARIANTS, fit_lookahead, lookahead_choice
from benchmarks.amg_tolerance import RESULT_FIELDS, strength_results
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.solver import solve


def test_variants_are_pyamgs_evolution_solver_and_the_first_is_its_default() -> None:
    env = AnisotropicAMGEnv(grid_size=12, split="test", problem_family="heterogeneous")
    strengths = [("evolution", kwargs) for _, kwargs in VARIANTS]
    results = strength_results(env, [0], strengths)  # (1, K, 3)
    assert not np.isnan(results).any()
    reference = solve(env.problems[0].matrix(), "evolution", env.rhs(0), env.max_iterations)
    np.testing.assert_array_equal(results[0, 0], [reference.work, reference.operator_complexity, reference.levels])
    assert len({float(w) for w in results[0, :, RESULT_FIELDS.index("work")]}) > 3  # the parameters change the solve


def _synthetic_results(rng: np.random.Generator, cases: int) -> np.ndarray:
    """(cases, 3, 3) results where the candidate with the least operator complexity has the least work."""
    complexity = rng.uniform(1.2, 2.0, (cases, 3))
    work = 10.0 * complexity + rng.normal(0.0, 0.01, (cases, 3))
    return np.stack([work, complexity, np.full((cases, 3), 3.0)], axis=-1)


def test_lookahead_picks_the_least_work_candidate_when_the_hierarchy_predicts_it() -> None:
    rng = np.random.default_rng(0)
    train, test = _synthetic_results(rng, 200), _synthetic_results(rng, 50)
    coefficients, penalty = fit_lookahead(train)
    choices = lookahead_choice(coefficients, test)
    np.testing.assert_array_equal(choices, test[..., 0].argmin(axis=1))
    # no fixed candidate can do that: each is the best on only about a third of the cases
    assert max(np.mean(test[..., 0].argmin(axis=1) == k) for k in range(3)) < 0.6


def test_lookahead_never_picks_a_failed_setup() -> None:
    rng = np.random.default_rng(1)
    train, test = _synthetic_results(rng, 100), _synthetic_results(rng, 10)
    coefficients, _ = fit_lookahead(train)
    best = test[..., 0].argmin(axis=1)
    test[np.arange(10), best] = np.nan  # the predicted best fails to set up
    choices = lookahead_choice(coefficients, test)
    assert not (choices == best).any() and np.isfinite(test[np.arange(10), choices, 0]).all()


def test_cli_writes_the_report_and_the_figure(tmp_path, capsys) -> None:
    import json

    from benchmarks.amg_evolution_variants import main

    out, png = tmp_path / "variants.json", tmp_path / "variants.png"
    assert main(["--grid-size", "8", "--train-cases", "8", "--fresh-draws", "1", "--out", str(out), "--plot", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text()) and png.stat().st_size > 0
    assert report["fresh_test"]["cases"] == 32 and len(report["fresh_test"]["each_variant_minus_default"]) == len(VARIANTS)
    # the oracle picks each case's best variant, so it is never worse than the default
    assert report["fresh_test"]["oracle"]["minus_default"]["ci95"][1] <= 0.0
