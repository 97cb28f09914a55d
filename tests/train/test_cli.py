"""``python -m train``: run dirs, overrides, resume, and one-line usage errors."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from train.checkpointing import latest_checkpoint
from train.cli import main
from train.config import UsageError, evaluation_kwargs, parse_overrides, resolve_config

TINY = [
    "--n-envs", "4", "--total-timesteps", "384", "--eval-episodes", "3",
    "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=2", "checkpoint_freq=128",
    "env_kwargs.n_synthetic=20", "policy_kwargs.net_arch=[32,32]",
]


def test_a_short_run_writes_a_complete_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert main(["ppo", "--env", "Hydrogel-v0", "--run-dir", str(run_dir), *TINY]) == 0
    for name in ("config.yml", "model.zip", "eval.json", "learning_curve.png"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").rglob("events.out.tfevents.*")), "no TensorBoard events"
    assert (run_dir / "csv" / "progress.csv").stat().st_size > 0
    result = json.loads((run_dir / "eval.json").read_text())
    for key in ("mean_reward", "std_reward", "n_episodes", "optimal_rate", "mean_regret", "polymer_distribution"):
        assert key in result, key
    assert result["n_episodes"] == 3 and "random" in result["baselines"]
    # the command that made the run, also when main() is called from Python (e.g. the benchmark suite)
    assert result["command"] == shlex.join(["python", "-m", "train", "ppo", "--env", "Hydrogel-v0", "--run-dir", str(run_dir), *TINY])
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["algo_kwargs"]["n_steps"] == 32  # the override over ppo.yml's training pool, the rest kept:
    assert config["env_kwargs"] == {"n_synthetic": 20, "synthetic_seed": 1, "compute_regret": False}
    assert latest_checkpoint(run_dir / "checkpoints").timesteps == 384


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert main(["ppo", "--env", "Hydrogel-v0", "--run-dir", str(run_dir), *TINY]) == 0
    checkpoints = run_dir / "checkpoints"
    # Simulate a run killed after its 256-step checkpoint.
    for path in checkpoints.iterdir():
        if int(path.name.split("_")[1]) > 256:
            path.unlink()
    (run_dir / "model.zip").unlink()
    (run_dir / "eval.json").unlink()
    assert latest_checkpoint(checkpoints).timesteps == 256
    assert main(["ppo", "--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["total_timesteps"] == 384
    assert latest_checkpoint(checkpoints).timesteps == 384


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sac", "--env", "Hydrogel-v0"], "unknown algorithm 'sac'; choose one of: ppo, a2c, maskable-ppo"),
        (["ppo", "--env", "Hydrogel-v9"], "unknown env 'Hydrogel-v9'"),
        (["ppo", "--env", "Hydrogel-v0", "--hyperparams", "learning_rat=1e-3"], "did you mean 'learning_rate'"),
        (["ppo", "--env", "Hydrogel-v0", "--hyperparams", "n_envs=0"], "n_envs must be a positive integer"),
        (["ppo", "--resume", "/nonexistent/run"], "has no config.yml"),
        (["ppo", "--env", "Hydrogel-v0", "--hyperparams", "learning_rate=abc"], "'learning_rate' of ppo must be a number"),
        (["ppo", "--env", "Hydrogel-v0", "--hyperparams", "n_epochs=many"], "'n_epochs' of ppo must be a number"),
        (["ppo", "--env", "Prostate-v0", "--hyperparams", "env_kwargs.data_dir=/nonexistent"],
         "cannot build Prostate-v0 with env_kwargs"),
        (["maskable-ppo", "--env", "Taxonomy-v0", "--hyperparams", "env_kwargs.data_path=/etc/passwd"],
         "'data_path': '/etc/passwd'"),
        (["ppo", "--env", "Hydrogel-v0", "--device", "tpu"], "unknown torch device 'tpu'"),
    ],
)
def test_mistakes_exit_2_with_one_line(argv: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "train", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in lines[0]


def test_precedence_defaults_then_config_then_flags_then_overrides(tmp_path: Path) -> None:
    config_file = tmp_path / "c.yml"
    config_file.write_text("n_envs: 8\nlearning_rate: 5.0e-4\nbatch_size: 128\n")
    config = resolve_config(
        "ppo", "Hydrogel-v0", n_envs=16, config_file=config_file,
        overrides=parse_overrides(["learning_rate=2e-4", "env_kwargs.cohort=real"]),
    )
    assert config.n_envs == 16  # flag beats --config
    assert config.algo_kwargs["learning_rate"] == 2e-4  # --hyperparams beats everything
    assert config.algo_kwargs["batch_size"] == 128  # --config beats ppo.yml
    assert config.algo_kwargs["n_epochs"] == 10  # ppo.yml default survives
    assert config.env_kwargs == {"cohort": "real", "n_synthetic": 2000, "synthetic_seed": 1, "compute_regret": False}
    assert config.evaluation_env_kwargs == {"cohort": "real"}  # ppo.yml's nulls: the env's defaults again


def test_null_in_eval_env_kwargs_restores_the_env_default() -> None:
    assert evaluation_kwargs({"a": 1, "b": 2}, {"a": None, "c": 3}) == {"b": 2, "c": 3}
    assert evaluation_kwargs({"a": None}, {}) == {"a": None}  # only eval_env_kwargs' nulls unset a key


def test_override_parsing_reads_yaml_values() -> None:
    assert parse_overrides(["a=1e-3", "b=[1, 2]", "c.d=true", "e=text"]) == {
        "a": 1e-3, "b": [1, 2], "c": {"d": True}, "e": "text",
    }
    with pytest.raises(UsageError, match="key=value"):
        parse_overrides(["no_equals_sign"])


def test_device_cuda_without_a_gpu_is_an_error_and_auto_records_what_was_used(tmp_path: Path) -> None:
    import torch

    from train.config import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        resolve_config("ppo", "Hydrogel-v0", device="cuda")
    assert resolve_config("ppo", "Hydrogel-v0", device="auto").device == "cpu"
    assert resolve_device("cpu") == "cpu"


def test_a_rejected_run_writes_no_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    argv = ["ppo", "--env", "Prostate-v0", "--run-dir", str(run_dir), "--hyperparams", "env_kwargs.data_dir=/nonexistent"]
    assert main(argv) == 2
    assert not (run_dir / "config.yml").exists()  # --resume finds nothing to continue


def test_a_rejected_run_leaves_no_numbered_run_dir(tmp_path: Path) -> None:
    argv = ["ppo", "--env", "Prostate-v0", "--runs-root", str(tmp_path), "--hyperparams", "env_kwargs.data_dir=/nonexistent"]
    assert main(argv) == 2
    assert list((tmp_path / "ppo").iterdir()) == []  # Prostate-v0_1 was made for the run, then removed
