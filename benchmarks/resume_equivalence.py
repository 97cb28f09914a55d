"""Killed and resumed runs end like uninterrupted ones, for every algorithm.

``python benchmarks/resume_equivalence.py [--algos ppo vec-ppo ...] [--out runs/resume]``
trains each case three ways on a small budget, CPU, seed 0:

1. uninterrupted;
2. the same command with :class:`SigkillAt` in its callbacks, which SIGKILLs the process
   mid-rollout at ``kill_at`` env steps (after at least one checkpoint);
3. ``python -m train ALGO --resume`` on the killed run dir.

and reports whether the resumed ``eval.json`` equals the uninterrupted one (leaving out
the keys that measure the machine: ``train_seconds``, ``command``, ``python`` and
``*seconds*`` timings). Exit status 1 if any case differs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

KILL_AT_VAR = "SCIENCEGYM_KILL_AT_STEPS"
MACHINE_KEYS = {"train_seconds", "command", "python"}
ROOT = Path(__file__).resolve().parents[1]


class SigkillAt(BaseCallback):
    """SIGKILL this process (no clean-up, like the OOM killer) at the first step past
    ``$SCIENCEGYM_KILL_AT_STEPS`` env steps; a no-op when the variable is unset (so the
    resumed run, which reads the same callbacks from config.yml, runs to the end)."""

    def _on_step(self) -> bool:
        limit = os.environ.get(KILL_AT_VAR)
        if limit is not None and self.model.num_timesteps >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)
        return True


@dataclass(frozen=True)
class Case:
    algo: str
    args: tuple[str, ...]
    kill_at: int


_TINY_HYDROGEL = ("env_kwargs.n_synthetic=20", "policy_kwargs.net_arch=[16]")
CASES = {
    "ppo": Case("ppo", ("--env", "Hydrogel-v0", "--n-envs", "4", "--total-timesteps", "384", "--eval-episodes", "4",
                        "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=2", "checkpoint_freq=128",
                        *_TINY_HYDROGEL), 300),
    "vec-ppo": Case("vec-ppo", ("--env", "Hydrogel-v0", "--n-envs", "16", "--total-timesteps", "1536",
                                "--eval-episodes", "4", "--hyperparams", "n_steps=16", "batch_size=128", "n_epochs=2",
                                "checkpoint_freq=512", *_TINY_HYDROGEL), 1100),
    "maskable-ppo": Case("maskable-ppo", ("--env", "Prostate-v0", "--n-envs", "2", "--total-timesteps", "192",
                                          "--eval-episodes", "4", "--hyperparams", "n_steps=32", "batch_size=32",
                                          "n_epochs=1", "checkpoint_freq=64"), 150),
    "reinforce": Case("reinforce", ("--env", "AnisotropicAMG-v0", "--n-envs", "2", "--total-timesteps", "48",
                                    "--eval-episodes", "2", "--hyperparams", "checkpoint_freq=16",
                                    "env_kwargs.grid_size=8", "eval_env_kwargs.grid_size=8"), 36),
    "grpo": Case("grpo", ("--env", "Hydrogel-v0", "--n-envs", "4", "--total-timesteps", "384", "--eval-episodes", "4",
                          "--hyperparams", "checkpoint_freq=128", "env_kwargs.n_synthetic=20"), 300),
}


def _train(argv: list[str], kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(KILL_AT_VAR, None)
    if kill_at is not None:
        env[KILL_AT_VAR] = str(kill_at)
    return subprocess.run([sys.executable, "-m", "train", *argv], capture_output=True, text=True, env=env, cwd=ROOT)


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in MACHINE_KEYS and "seconds" not in k}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def comparable(run_dir: Path) -> dict[str, Any]:
    """``eval.json`` without the keys that measure the machine rather than the run
    (at any depth: baselines report their own ``mean_solve_seconds``)."""
    return _without_timings(json.loads((run_dir / "eval.json").read_text()))


def check(case: Case, out: Path, seed: int = 0) -> dict[str, Any]:
    """Run the three ways; the verdict and, when they differ, the differing keys."""
    whole, killed = out / case.algo / "whole", out / case.algo / "killed"
    common = [case.algo, *case.args[:case.args.index("--hyperparams")], "--seed", str(seed)]
    hyper = list(case.args[case.args.index("--hyperparams"):])
    first = _train([*common, "--run-dir", str(whole), *hyper])
    if first.returncode != 0:
        return {"algo": case.algo, "status": "uninterrupted run failed", "stderr": first.stderr[-800:]}
    crashed = _train([*common, "--run-dir", str(killed), *hyper,
                      "callbacks=[benchmarks.resume_equivalence:SigkillAt]"], kill_at=case.kill_at)
    if crashed.returncode != -signal.SIGKILL:
        return {"algo": case.algo, "status": f"not killed (exit {crashed.returncode})", "stderr": crashed.stderr[-800:]}
    resumed = _train([case.algo, "--resume", str(killed)])
    if resumed.returncode != 0:
        return {"algo": case.algo, "status": "resume failed", "stderr": resumed.stderr[-800:]}
    a, b = comparable(whole), comparable(killed)
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return {"algo": case.algo, "env_id": a.get("env_id"), "status": "identical" if not differing else "differs",
            "differing_keys": differing, "mean_reward": [a.get("mean_reward"), b.get("mean_reward")]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/resume_equivalence.py", description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="*", default=list(CASES), help=f"subset of {', '.join(CASES)}")
    parser.add_argument("--out", type=Path, default=Path("runs/resume"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.algos) - set(CASES))
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {', '.join(CASES)}")
    results = []
    for algo in args.algos:
        result = check(CASES[algo], args.out)
        print(json.dumps(result), flush=True)
        results.append(result)
    (args.out / "resume_equivalence.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["status"] == "identical" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
