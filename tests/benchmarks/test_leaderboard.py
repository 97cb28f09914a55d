"""``python -m benchmarks suite``: a tiny suite trains, resumes, normalises and publishes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.leaderboard import RESULTS_BEGIN, RESULTS_END, ROWS, normalised, plan_suite
from benchmarks.reference_scores import ReferenceScore

TINY_SUITE = """
Hydrogel-v0:
  algo: ppo
  quick:
    total_timesteps: 256
    hyperparams: [n_envs=4, n_steps=32, batch_size=64, n_epochs=1, env_kwargs.n_synthetic=20,
                  "policy_kwargs.net_arch=[16,16]", eval_episodes=7]
AnisotropicAMG-v0:
  algo: reinforce
  quick:
    total_timesteps: 8
    hyperparams: [env_kwargs.grid_size=8, eval_episodes=2]
"""


def test_a_tiny_suite_trains_resumes_and_publishes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "suite.yml"
    config.write_text(TINY_SUITE)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nhand-written text that must stay\n")
    argv = ["suite", "--budget", "quick", "--seeds", "1", "--env", "Hydrogel-v0", "--env", "AnisotropicAMG-v0",
            "--config", str(config), "--reps", "200", "--out", str(tmp_path / "runs"), "--results", str(results),
            "--figures", str(tmp_path / "figures")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "runs" / "suite.json").read_text())
    assert report["envs"] == ["Hydrogel-v0", "AnisotropicAMG-v0"]
    assert set(report["normalised"]) == set(ROWS)
    assert all(len(row) == 1 and len(row[0]) == 2 for row in report["normalised"].values())  # (seeds, envs)
    text = results.read_text()
    assert "hand-written text that must stay" in text and text.count(RESULTS_BEGIN) == text.count(RESULTS_END) == 1
    assert "| reference |" in text and "### AnisotropicAMG-v0" in text
    for figure in report["figures"]:
        assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    eval_json = tmp_path / "runs" / "Hydrogel-v0" / "ppo_0" / "eval.json"
    stamp = eval_json.stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0  # resumable: finished runs are kept, the report is rewritten
    assert "done before, kept" in capsys.readouterr().out and eval_json.stat().st_mtime_ns == stamp
    assert results.read_text().count(RESULTS_BEGIN) == 1


def test_normalisation_maps_random_to_zero_and_the_reference_to_one(tmp_path: Path) -> None:
    from benchmarks.leaderboard import EnvScores

    raw = {"random": np.array([1.0, 3.0]), "best baseline": np.array([4.0, 4.0]), "RL": np.array([5.0, 6.0]),
           "reference": np.array([6.0, 6.0])}
    env = EnvScores("Hydrogel-v0", "ppo", raw, {}, "x", {}, "oracle")
    fixed = normalised([env], {"Hydrogel-v0": ReferenceScore("Hydrogel-v0", 2.0, 6.0, "oracle", 43, 0)})
    np.testing.assert_allclose(fixed["random"][:, 0], [-0.25, 0.25])
    np.testing.assert_allclose(fixed["reference"][:, 0], [1.0, 1.0])
    own = normalised([env], {})  # no committed reference: the runs' own random and reference means
    np.testing.assert_allclose(own["random"].mean(), 0.0)
    np.testing.assert_allclose(own["reference"].mean(), 1.0)


def test_unknown_budget_or_env_is_a_usage_error(tmp_path: Path) -> None:
    from train.config import UsageError

    with pytest.raises(UsageError, match="--budget must be one of"):
        plan_suite(["Hydrogel-v0"], "huge", [0], tmp_path)
    config = tmp_path / "suite.yml"
    config.write_text(TINY_SUITE)
    with pytest.raises(UsageError, match="Prostate-v0 has no entry"):
        plan_suite(["Prostate-v0"], "quick", [0], tmp_path, config)
