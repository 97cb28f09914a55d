"""A run SIGKILLed mid-rollout and continued with ``--resume`` ends with the same
eval.json (and model) as the uninterrupted run. Keys that measure the machine, not the
run (``train_seconds``, ``command``, timings), are left out of the comparison. (The same
command twice giving the same result: tests/train/test_determinism.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.resume_equivalence import comparable

ROOT = Path(__file__).parents[2]
KILLER = "callbacks=[benchmarks.resume_equivalence:SigkillAt]"  # SIGKILL at $SCIENCEGYM_KILL_AT_STEPS

RUNS = {
    "ppo": [
        "ppo", "--env", "Hydrogel-v0", "--n-envs", "4", "--total-timesteps", "384", "--eval-episodes", "4",
        "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=2", "checkpoint_freq=128",
        "env_kwargs.n_synthetic=20", "policy_kwargs.net_arch=[16]",
    ],
    "vec-ppo": [
        "vec-ppo", "--env", "Hydrogel-v0", "--n-envs", "16", "--total-timesteps", "1536", "--eval-episodes", "4",
        "--hyperparams", "n_steps=16", "batch_size=128", "n_epochs=2", "checkpoint_freq=512",
        "env_kwargs.n_synthetic=20", "policy_kwargs.net_arch=[16]",
    ],
}
KILL_AT = {"ppo": 300, "vec-ppo": 1100}  # mid-rollout, after the second checkpoint


def _train(args: list[str], run_dir: Path | None = None, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SCIENCEGYM_KILL_AT_STEPS"}
    extra = []
    if kill_at is not None:
        env["SCIENCEGYM_KILL_AT_STEPS"] = str(kill_at)
        extra = [KILLER]  # appended to --hyperparams
    run = [] if run_dir is None else ["--run-dir", str(run_dir)]
    return subprocess.run([sys.executable, "-m", "train", *args, *extra, *run],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_a_killed_and_resumed_run_ends_like_the_uninterrupted_one(algo: str, tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = _train(RUNS[algo], whole)
    assert done.returncode == 0, done.stderr[-3000:]

    crashed = _train(RUNS[algo], killed, kill_at=KILL_AT[algo])
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert not (killed / "eval.json").exists()
    resumed = _train([algo, "--resume", str(killed)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout

    assert comparable(killed) == comparable(whole)
    assert (killed / "model.zip").is_file()

