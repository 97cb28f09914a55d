"""``python -m train vec-ppo --config train/configs/stage2.yml`` (the seed's Stage 2 table),
then ``refine`` and ``generate`` on one patient of that run, from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from train.cli import main
from train.hydrogel_curve import COLUMNS

STAGE2 = Path(__file__).resolve().parents[2] / "train" / "configs" / "stage2.yml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The Stage 2 config, shrunk to 2 iterations of 32 envs x 4 steps."""
    run = tmp_path_factory.mktemp("stage2") / "run"
    code = main([
        "vec-ppo", "--env", "Hydrogel-v0", "--config", str(STAGE2), "--n-envs", "32", "--total-timesteps", "256",
        "--eval-episodes", "4", "--run-dir", str(run),
        "--hyperparams", "n_steps=4", "batch_size=48", "checkpoint_freq=128", "env_kwargs.n_synthetic=20",
        "eval_env_kwargs.n_synthetic=20", "policy_kwargs.net_arch=[32, 32]",
    ])
    assert code == 0
    return run


def test_the_stage2_run_writes_the_seeds_learning_curve_table(run_dir) -> None:
    with (run_dir / "stage2_curve.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS
    assert [int(r["Iteration"]) for r in rows] == [1, 2]
    assert [int(r["Timesteps"]) for r in rows] == [128, 256]
    for row in rows:
        assert 0.0 <= float(row["Optimal_Rate"]) <= 1.0 and float(row["Mean_Regret"]) >= 0.0
        assert float(row["Max_Reward"]) >= float(row["Mean_Reward"])
    assert (run_dir / "stage2_curve.png").stat().st_size > 0
    selection = json.loads((run_dir / "polymer_selection.json").read_text())
    assert sum(selection["sampled_last_rollout"].values()) == pytest.approx(1.0)
    assert sum(selection["deterministic_test_patients"].values()) == pytest.approx(1.0)


def test_refine_writes_the_top_designs_and_a_loadable_policy(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "refine"
    code = main(["refine", "--env", "Hydrogel-v0", "--patient", "SCD0000301", "--model", str(run_dir),
                 "--iterations", "3", "--n-parallel", "64", "--top-k", "10", "--out", str(out)])
    assert code == 0
    with (out / "top_designs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and [int(r["rank"]) for r in rows] == list(range(1, 11))
    rewards = [float(r["reward"]) for r in rows]
    assert rewards == sorted(rewards, reverse=True)
    assert {"polymer", "stiffness_kPa", "delta_EF", "stress_reduction", "regret"} <= set(rows[0])
    assert len((out / "history.csv").read_text().splitlines()) == 4
    from policies.hybrid import HybridActorCriticPolicy

    HybridActorCriticPolicy.load(str(out / "policy.zip"))


def test_generate_is_resumable_and_reproducible_from_the_command_line(run_dir, tmp_path) -> None:
    args = ["generate", "--env", "Hydrogel-v0", "--patient", "SYN000-00017", "--model", str(run_dir),
            "--n", "3000", "--batch-size", "1024", "--top-k", "25"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--checkpoint-every", "1024"]) == 0
    a = (tmp_path / "a" / "top_designs.csv").read_text()
    assert a == (tmp_path / "b" / "top_designs.csv").read_text()
    assert len(a.splitlines()) == 26
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["n_designs"] == 3000 and summary["designs_per_second"] > 0
    assert main([*args, "--out", str(tmp_path / "a")]) == 0  # finished job: read back, not redone
    assert (tmp_path / "a" / "top_designs.csv").read_text() == a


def test_bad_patient_or_model_is_a_one_line_error(run_dir, tmp_path, capsys) -> None:
    assert main(["generate", "--patient", "NOPE", "--model", str(run_dir), "--n", "10"]) == 2
    assert "--patient: 'NOPE' is not in this run's cohort" in capsys.readouterr().err
    assert main(["refine", "--patient", "SCD0000301", "--model", str(tmp_path)]) == 2
    assert "not a finished run directory" in capsys.readouterr().err
    assert main(["refine", "--env", "HydrogelSearch-v0", "--patient", "SCD0000301", "--model", str(run_dir)]) == 2
    assert "was trained on Hydrogel-v0" in capsys.readouterr().err
