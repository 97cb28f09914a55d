"""``python -m train ALGO --env ID [options]``.

Examples::

    python -m train ppo --env Hydrogel-v0
    python -m train ppo --env Hydrogel-v0 --total-timesteps 20000 --hyperparams learning_rate=1e-3
    python -m train maskable-ppo --env Prostate-v0 --n-envs 4 --device cuda
    python -m train pretrain --env Prostate-v0
    python -m train ppo --resume runs/ppo/Hydrogel-v0_3
    python -m train refine --env Hydrogel-v0 --patient SCD0000301 --model runs/vec-ppo/Hydrogel-v0_1
    python -m train generate --env Hydrogel-v0 --patient SCD0000301 --model runs/vec-ppo/Hydrogel-v0_1 --n 1000000

A mistake (unknown env, algorithm or hyperparameter, bad value) prints one line that
lists the valid choices and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from train.algorithms import ALGORITHMS
from train.config import UsageError, load_hyperparams, parse_overrides, resolve_config

__all__ = ["build_parser", "main"]

PRETRAIN = "pretrain"
PATIENT_COMMANDS = ("refine", "generate")
"""Per-patient commands of a trained hydrogel run (``train.patient_commands``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train an agent on a ScienceGym env; defaults from train/hyperparams/ALGO.yml.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"algorithms: {', '.join([*ALGORITHMS, PRETRAIN])}; per-patient commands of a trained hydrogel"
        f" run: {', '.join(PATIENT_COMMANDS)} (python -m train refine --help)",
    )
    parser.add_argument("algo", help="algorithm (see the list below)")
    parser.add_argument("--env", dest="env_id", help="registered env id, e.g. Hydrogel-v0")
    parser.add_argument("--total-timesteps", type=int, help="env steps (overrides n_timesteps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of algorithm, envs and evaluation (default 0)")
    parser.add_argument("--n-envs", type=int, help="parallel training envs (overrides n_envs)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N or auto")
    parser.add_argument(
        "--hyperparams", nargs="+", default=[], metavar="KEY=VALUE",
        help="override any hyperparameter; values are YAML; dotted keys reach into mappings",
    )
    parser.add_argument("--config", type=Path, help="YAML file of hyperparameters (over the ALGO.yml defaults)")
    parser.add_argument("--run-dir", type=Path, help="run directory (default runs/ALGO/ENV_N)")
    parser.add_argument("--runs-root", type=Path, default=Path("runs"), help="parent of default run dirs")
    parser.add_argument("--eval-episodes", type=int, help="episodes of the final evaluation (default 20)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: small policies run fastest single-threaded, and"
        " oversubscribed cores slow torch down badly; raise it for CNN policies on idle cores)",
    )
    return parser


def _run(args: argparse.Namespace) -> dict:
    from train.runner import new_run_dir, resume_run, train_run

    if args.resume is not None:
        return resume_run(args.resume, device=None if args.device == "cpu" else args.device, command=args.command_line)
    if args.env_id is None:
        raise UsageError("--env is required (e.g. --env Hydrogel-v0) unless --resume is given")
    overrides = parse_overrides(args.hyperparams)
    if args.algo == PRETRAIN:
        return _pretrain(args, overrides)
    config = resolve_config(
        args.algo, args.env_id, seed=args.seed, device=args.device, n_envs=args.n_envs,
        total_timesteps=args.total_timesteps, eval_episodes=args.eval_episodes,
        config_file=args.config, overrides=overrides,
    )
    run_dir = args.run_dir or new_run_dir(args.runs_root, args.algo, args.env_id)
    if args.run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return train_run(config, run_dir, command=args.command_line)
    except UsageError:
        if args.run_dir is None and not any(run_dir.iterdir()):  # the numbered dir we made for a rejected run
            run_dir.rmdir()
        raise


def _pretrain(args: argparse.Namespace, overrides: dict) -> dict:
    import gymnasium as gym

    import envs
    from train.pretrain import pretrainer
    from train.runner import new_run_dir

    if args.env_id not in gym.registry:
        raise UsageError(f"unknown env {args.env_id!r}; choose one of: {', '.join(envs.ENV_IDS)}")
    try:
        fn = pretrainer(args.env_id)
    except ValueError as err:
        raise UsageError(str(err)) from None
    hyperparams = load_hyperparams(PRETRAIN, args.env_id, required=False)
    env_kwargs = {**hyperparams.pop("env_kwargs", {}), **overrides.pop("env_kwargs", {})}
    hyperparams.update(overrides)
    run_dir = args.run_dir or new_run_dir(args.runs_root, PRETRAIN, args.env_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = fn(args.env_id, run_dir, args.seed, args.device, hyperparams, env_kwargs)
    (run_dir / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments and arguments[0] in PATIENT_COMMANDS:  # the seed's section 5, for one patient
        from train.patient_commands import main as patient_main

        return patient_main(arguments[0], arguments[1:])
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "train", *(sys.argv[1:] if argv is None else argv)])
    if args.algo != PRETRAIN and args.algo not in ALGORITHMS:
        valid = ", ".join([*ALGORITHMS, PRETRAIN])
        print(f"python -m train: error: unknown algorithm {args.algo!r}; choose one of: {valid}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"python -m train: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    try:
        result = _run(args)
    except UsageError as err:
        print(f"python -m train: error: {err}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in result.items() if isinstance(v, (int, float, str))}
    print(json.dumps(summary, indent=2))
    return 0
