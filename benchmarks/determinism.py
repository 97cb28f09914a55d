"""The same command twice gives the same eval.json, for every algorithm on every env.

``python benchmarks/determinism.py [--cases ALGO:ENV ...] [--out runs/determinism]``
trains every (algorithm, env) pair that has defaults in ``train/hyperparams/`` on a
small budget (CPU, seed 0, tiny envs and policies) in two fresh processes at once, and
compares the final ``eval.json`` files, leaving out the keys that time the machine
(:func:`benchmarks.resume_equivalence.comparable`), and the trained weights bit for bit. The two processes differ where a
hidden dependence would show:

* a different ``PYTHONHASHSEED`` (set and dict-of-set orders of strings);
* the cases in opposite order (a run that reads state a previous run left behind, e.g.
  an unseeded global RNG or a module-level cache);
* fresh OS entropy (an RNG that was never seeded).

Each process runs its cases in-process (``train.runner.train_run``, as ``python -m
train`` does), so one import of torch serves every case. Exit status 1 if any case
differs or fails.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repo's packages importable
    sys.path.insert(0, str(ROOT))

__all__ = ["CASES", "Case", "PROSTATE_KWARGS", "TAXONOMY_KWARGS", "TINY_DECODER", "check", "prepare", "run_cases"]

PROSTATE_KWARGS: dict[str, Any] = {
    "synthetic": {"n_patients": 8, "cores_per_patient": 2, "image_size": 96},
    "backbone": {"img_size": 96, "embed_dim": 32, "depth": 1, "num_heads": 2},  # tiny_backbone(96)
    "on_missing_decoder": "raise",
}
"""A 16-core phantom on a tiny encoder; its decoder is built by :func:`prepare`."""
TINY_DECODER: dict[str, Any] = {"epochs": 1, "transformer_depth": 1, "mlp_dim": 32, "class_hidden": 16,
                                "val_repeats": 1, "batch_size": 8}
TAXONOMY_KWARGS: dict[str, Any] = {"synthetic": {"n_samples": 240, "min_species_count": 0, "seed": 1}}
TINY_PHASE1: dict[str, Any] = {"epochs": 1, "channels": [4, 8]}
_HYDROGEL = {"env_kwargs": {"n_synthetic": 20}, "eval_env_kwargs": {"n_synthetic": 20}, "policy_kwargs": {"net_arch": [16]}}
_SEARCH = {"env_kwargs": {"n_synthetic": 20, "horizon": 3}, "policy_kwargs": {"net_arch": [16]}}
_AMG = {"env_kwargs": {"grid_size": 8}, "eval_env_kwargs": {"grid_size": 8}}
_PROSTATE = {"env_kwargs": PROSTATE_KWARGS}
_TAXONOMY = {"env_kwargs": TAXONOMY_KWARGS}
_PPO = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}
_GRPO = {"groups_per_iteration": 2, "group_size": 2, "n_epochs": 1, "minibatch_size": 4}


@dataclass(frozen=True)
class Case:
    """One small run: ``python -m train ALGO --env ENV`` with these settings."""

    algo: str
    env_id: str
    n_envs: int
    total_timesteps: int
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 4

    @property
    def name(self) -> str:
        return f"{self.algo}:{self.env_id}"


def _case(algo: str, env_id: str, n_envs: int, steps: int, *parts: dict[str, Any]) -> Case:
    overrides: dict[str, Any] = {}
    for part in parts:
        overrides.update(part)
    return Case(algo, env_id, n_envs, steps, overrides)


CASES: dict[str, Case] = {c.name: c for c in [
    _case("ppo", "Hydrogel-v0", 4, 128, _HYDROGEL, _PPO),
    _case("ppo", "HydrogelSearch-v0", 4, 144, _SEARCH, _PPO, {"n_steps": 18, "batch_size": 36}),
    _case("ppo", "AnisotropicAMG-v0", 2, 16, _AMG, {"n_steps": 4, "batch_size": 8, "n_epochs": 1}),
    _case("ppo", "Prostate-v0", 2, 32, _PROSTATE, _PPO),
    _case("a2c", "Hydrogel-v0", 4, 64, _HYDROGEL),
    _case("vec-ppo", "Hydrogel-v0", 16, 512, _HYDROGEL, _PPO, {"batch_size": 128}),
    _case("vec-ppo", "HydrogelSearch-v0", 16, 576, _SEARCH, _PPO, {"n_steps": 18, "batch_size": 144}),
    _case("maskable-ppo", "Prostate-v0", 2, 64, _PROSTATE, _PPO),
    _case("maskable-ppo", "Taxonomy-v0", 2, 64, _TAXONOMY, _PPO),
    _case("maskable-ppo", "TaxonomyMultitask-v0", 2, 64, _TAXONOMY, _PPO),
    _case("grpo", "Prostate-v0", 2, 32, _PROSTATE, _GRPO),
    _case("grpo", "Hydrogel-v0", 2, 32, _HYDROGEL, _GRPO),
    _case("grpo", "Taxonomy-v0", 2, 32, _TAXONOMY, _GRPO),
    _case("reinforce", "AnisotropicAMG-v0", 2, 16, _AMG,
          {"episodes_per_update": 4, "group_size": 2, "minibatch_size": 4}),
    _case("row-ppo", "AnisotropicAMG-v0", 2, 16, _AMG, {"n_steps": 4, "batch_size": 8, "n_epochs": 1}),
]}
"""Every (algorithm, env) pair with defaults in ``train/hyperparams/``, shrunk."""


def prepare(work_dir: Path) -> dict[str, str]:
    """Build what the cases load but must not train in a constructor: Prostate-v0's tiny
    decoder (into the default cache location) and a tiny Taxonomy Phase 1 classifier.
    Returns the policy_kwargs the Taxonomy cases need. Idempotent."""
    import gymnasium as gym

    import envs  # noqa: F401
    from train.pretrain import pretrainer

    try:
        gym.make("Prostate-v0", **PROSTATE_KWARGS).close()
    except FileNotFoundError:
        pretrainer("Prostate-v0")("Prostate-v0", work_dir / "pretrain-prostate", 0, "cpu", dict(TINY_DECODER),
                                  dict(PROSTATE_KWARGS))
    phase1 = work_dir / "phase1-cache"
    metrics = pretrainer("Taxonomy-v0")("Taxonomy-v0", work_dir / "pretrain-taxonomy", 0, "cpu", dict(TINY_PHASE1),
                                        {**TAXONOMY_KWARGS, "cache_dir": str(phase1)})
    return {"phase1_checkpoint": str(metrics["checkpoint"])}


def _with_policy_kwargs(case: Case, taxonomy_policy: dict[str, str]) -> dict[str, Any]:
    overrides = json.loads(json.dumps(case.overrides))  # a deep copy the run may keep
    if case.env_id.startswith("Taxonomy"):
        overrides["policy_kwargs"] = {**overrides.get("policy_kwargs", {}), **taxonomy_policy}
    return overrides


def run_cases(names: list[str], out: Path, taxonomy_policy: dict[str, str]) -> None:
    """Train the named cases one after another in this process, into ``out/ALGO/ENV``."""
    import torch

    from train.config import resolve_config
    from train.runner import train_run

    torch.set_num_threads(1)
    for name in names:
        case = CASES[name]
        config = resolve_config(case.algo, case.env_id, seed=0, n_envs=case.n_envs,
                                total_timesteps=case.total_timesteps, eval_episodes=case.eval_episodes,
                                overrides=_with_policy_kwargs(case, taxonomy_policy))
        run_dir = out / case.algo / case.env_id
        run_dir.mkdir(parents=True, exist_ok=True)
        train_run(config, run_dir, command=f"benchmarks/determinism.py {name}")


def _worker_command(names: list[str], out: Path, taxonomy_policy: dict[str, str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(out),
            "--taxonomy-policy", json.dumps(taxonomy_policy), "--cases", *names]


def policy_digest(run_dir: Path) -> str:
    """SHA-256 of the trained policy's parameters (``policy.pth`` in ``model.zip``), bit for
    bit: a tiny budget can leave ``eval.json`` unchanged by a different training run, the
    weights cannot."""
    import torch

    with zipfile.ZipFile(run_dir / "model.zip") as archive:
        state = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check(names: list[str], out: Path, timeout: float | None = None) -> list[dict[str, Any]]:
    """Run ``names`` in two processes (opposite orders, different hash seeds) and compare."""
    from benchmarks.resume_equivalence import comparable

    out.mkdir(parents=True, exist_ok=True)
    taxonomy_policy = prepare(out / "prepare")
    runs = {"a": (names, "1"), "b": (names[::-1], "2")}
    procs = {}
    for label, (order, hash_seed) in runs.items():
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        log = (out / f"{label}.log").open("w")
        procs[label] = subprocess.Popen(_worker_command(order, out / label, taxonomy_policy), stdout=log,
                                        stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    codes = {label: proc.wait(timeout=timeout) for label, proc in procs.items()}
    results = []
    for name in names:
        case = CASES[name]
        dirs = [out / label / case.algo / case.env_id for label in runs]
        if not all((d / "eval.json").is_file() for d in dirs):
            failed = [label for label in runs if codes[label] != 0]
            results.append({"case": name, "status": f"no eval.json (worker {failed} failed; see {out}/*.log)"})
            continue
        a, b = ({**comparable(d), "policy_parameters": policy_digest(d)} for d in dirs)
        differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        results.append({"case": name, "status": "identical" if not differing else "differs",
                        "differing_keys": differing, "mean_reward": a.get("mean_reward")})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/determinism.py", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), metavar="ALGO:ENV", help=f"subset of {', '.join(CASES)}")
    parser.add_argument("--out", type=Path, default=Path("runs/determinism"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--taxonomy-policy", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    if args.worker:
        run_cases(args.cases, args.out, json.loads(args.taxonomy_policy))
        return 0
    results = check(args.cases, args.out)
    for result in results:
        print(json.dumps(result), flush=True)
    (args.out / "determinism.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["status"] == "identical" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
