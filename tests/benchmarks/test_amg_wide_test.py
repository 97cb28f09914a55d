"""The wide AMG test: fresh problem draws only, each agent on its own env kwargs."""

from __future__ import annotations

import pytest

from benchmarks.amg_wide_test import _env_for, main


def test_training_draw_is_refused() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--problem-seeds", "0", "1"])
    assert raised.value.code == 2


def test_the_env_test_split_is_every_test_case_of_the_training_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import amg_wide_test

    calls = []
    monkeypatch.setattr(amg_wide_test, "measure", lambda *args: calls.append(args) or {"family": args[0]})
    monkeypatch.setattr(amg_wide_test, "emit_json_line", lambda *args: None)
    assert main(["--env-test-split", "--family", "constant"]) == 0
    assert calls == [("constant", [], (0,), False, 256, None)]
    calls.clear()
    assert main(["--env-test-split", "--test-cases", "4", "--grid-size", "64"]) == 0
    assert calls == [("heterogeneous", [], (0,), False, 4, 64)]


def test_a_grid_size_below_two_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--grid-size", "1"])
    assert raised.value.code == 2 and "--grid-size" in capsys.readouterr().err


def test_transfer_plays_every_row_at_the_grid_size_and_pairs_it_with_pyamg_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.baselines import amg_tolerance_scorer
    from benchmarks.amg_wide_test import measure

    monkeypatch.setattr(amg_tolerance_scorer, "FIT_CASES", 3)  # fast, and a cache key of its own
    amg_tolerance_scorer.fit_tolerance_scorer.cache_clear()
    result = measure("heterogeneous", [], (1,), scorer=True, test_cases=2, grid_size=12)
    amg_tolerance_scorer.fit_tolerance_scorer.cache_clear()
    assert result["grid_size"] == 12 and result["cases"] == 2
    scorer = result["agents"]["tolerance_scorer"]
    # The scorer picks one of evolution's C's (tolerances 3-8) per level, so its work lies within the
    # range of the fixed tolerances 2-12 here; PyAMG's default (every entry strong) needs more work than
    # evolution on these anisotropic cases.
    assert scorer["mean_work"] <= max(v["mean_work"] for v in result["tolerances"].values()) + 1e-9
    assert result["pyamg_default"] > result["evolution_default"]
    low, high = scorer["minus_pyamg_default"]["ci95"]
    assert low <= scorer["minus_pyamg_default"]["mean"] <= high
    assert abs(scorer["minus_pyamg_default"]["mean"] - (scorer["mean_work"] - result["pyamg_default"])) < 1e-9


def test_env_keeps_the_agents_kwargs_and_sets_split_family_and_draw() -> None:
    env = _env_for({"grid_size": 8, "mode": "multilevel", "evolution_features": True, "transfer_grid_sizes": [64]},
                   "heterogeneous", 3)
    assert (env.grid_size, env.mode.value, env.evolution_features) == (8, "multilevel", True)
    assert _env_for({"grid_size": 32}, "heterogeneous", 3, grid_size=12).grid_size == 12  # transfer wins
    assert (env.split.value, env.problem_family.value, env.problem_seed) == ("test", "heterogeneous", 3)
    other = _env_for({"grid_size": 8}, "heterogeneous", 4)
    assert env.problems[0] != other.problems[0]  # another draw, other cases


def test_the_scorer_row_plays_every_fresh_case(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from agents.baselines import amg_tolerance_scorer
    from benchmarks.amg_wide_test import scorer_works

    monkeypatch.setattr(amg_tolerance_scorer, "FIT_CASES", 3)  # fast, and a cache key of its own
    amg_tolerance_scorer.fit_tolerance_scorer.cache_clear()
    works = scorer_works("heterogeneous", (1,))
    amg_tolerance_scorer.fit_tolerance_scorer.cache_clear()
    assert works.shape == (32,) and np.isfinite(works).all() and (works > 1.0).all()


def test_the_figure_has_a_row_per_tolerance_and_agent(tmp_path) -> None:
    from benchmarks.amg_wide_test import plot

    difference = {"mean": -0.1, "ci95": [-0.2, 0.0]}
    result = {"family": "heterogeneous", "cases": 256, "evolution_default": 15.2,
              "tolerances": {"4": {"minus_default": {"mean": 0.0, "ci95": [0.0, 0.0]}}, "8": {"minus_default": difference}},
              "agents": {"L=runs/x": {"minus_default": difference}}}
    path = plot(result, tmp_path / "wide.png")
    assert path.stat().st_size > 0
