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
    assert calls == [("constant", [], (0,), False, 256)]


def test_env_keeps_the_agents_kwargs_and_sets_split_family_and_draw() -> None:
    env = _env_for({"grid_size": 8, "mode": "multilevel", "evolution_features": True, "transfer_grid_sizes": [64]},
                   "heterogeneous", 3)
    assert (env.grid_size, env.mode.value, env.evolution_features) == (8, "multilevel", True)
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
