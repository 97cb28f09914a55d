"""``python -m train refine|generate``: the seed's section 5 for one patient of a trained run.

Examples::

    python -m train refine --env Hydrogel-v0 --patient SCD0000301 --model runs/vec-ppo/Hydrogel-v0_1
    python -m train generate --env Hydrogel-v0 --patient SCD0000301 --model runs/vec-ppo/Hydrogel-v0_1 --n 13000000

``--model`` is a run directory of ``python -m train`` (its ``config.yml`` says which
algorithm, cohort and outcome model it used, and the patients are looked up in that
cohort, every split). ``refine`` writes ``top_designs.csv``, ``history.csv`` and the
fine-tuned ``policy.zip`` (``HybridActorCriticPolicy.load``); ``generate`` writes
``top_designs.csv`` and ``summary.json`` and keeps ``generation_state.npz`` so that
the same command resumes an interrupted job. Outputs go to ``--out`` (default
``MODEL/refine/PATIENT`` or ``MODEL/generate/PATIENT``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from agents.candidate_generation import CHECKPOINT_NAME, GenerationConfig, GenerationState, generate_candidates
from agents.hydrogel_designs import TopDesigns
from agents.patient_refinement import RefinementConfig, refine_for_patient
from envs.hydrogel.cohort import make_cohort
from envs.hydrogel.problem import DesignProblem
from envs.splits import Split
from train.algorithms import algorithm_spec
from train.config import RunConfig, UsageError, resolve_device

__all__ = ["COMMANDS", "main", "load_run", "find_patient", "write_rows"]

COMMANDS = ("refine", "generate")
HYDROGEL_IDS = ("Hydrogel-v0", "HydrogelSearch-v0")


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m train {command}", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", dest="env_id", default="Hydrogel-v0", choices=HYDROGEL_IDS)
    parser.add_argument("--patient", required=True, help="patient id (e.g. SCD0000301 or SYN000-00170)")
    parser.add_argument("--model", type=Path, required=True, metavar="RUN_DIR", help="a python -m train run directory")
    parser.add_argument("--out", type=Path, help="output directory (default RUN_DIR/COMMAND/PATIENT)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    if command == "refine":
        defaults = RefinementConfig()
        parser.add_argument("--iterations", type=int, default=defaults.iterations)
        parser.add_argument("--n-parallel", type=int, default=defaults.n_parallel, help="designs per iteration")
        parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
        parser.add_argument("--top-k", type=int, default=defaults.top_k)
    else:
        defaults_g = GenerationConfig()
        parser.add_argument("--n", type=int, default=defaults_g.n, help="designs to draw (default 13,000,000)")
        parser.add_argument("--batch-size", type=int, default=defaults_g.batch_size)
        parser.add_argument("--top-k", type=int, default=defaults_g.top_k)
        parser.add_argument("--checkpoint-every", type=int, default=defaults_g.checkpoint_every)
        parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                            help="draw and score batches as Ray tasks: on a local Ray instance, or on the"
                            " cluster at ADDRESS (e.g. auto, ray://head:10001); needs the [ray] extra")
    return parser


def load_run(run_dir: Path, env_id: str, device: str) -> tuple[Any, RunConfig]:
    """The trained model of ``run_dir`` and its run config."""
    config_path, model_path = run_dir / "config.yml", run_dir / "model.zip"
    if not config_path.is_file() or not model_path.is_file():
        raise UsageError(f"--model: {run_dir} is not a finished run directory (needs config.yml and model.zip)")
    config = RunConfig.from_yaml_dict(yaml.safe_load(config_path.read_text()))
    if config.env_id != env_id:
        raise UsageError(f"--model: {run_dir} was trained on {config.env_id}, not {env_id}")
    model = algorithm_spec(config.algo).load_class().load(model_path, device=resolve_device(device))
    return model, config


def find_patient(run: RunConfig, patient_id: str, device: str) -> tuple[DesignProblem, int]:
    """The problem of the split holding ``patient_id`` and its index: in the cohort the run
    evaluated on (``env_kwargs`` updated by ``eval_env_kwargs``), then the one it trained on."""
    known: list[str] = []
    for settings in ({**run.evaluation_env_kwargs, "compute_regret": True}, dict(run.env_kwargs)):
        kwargs = {k: v for k, v in settings.items() if k not in ("split", "horizon", "device")}
        cohort = {k: kwargs[k] for k in ("n_synthetic", "synthetic_seed") if k in kwargs}
        for split in Split:
            ids = make_cohort(kwargs.get("cohort", "augmented"), split, **cohort).ids
            if patient_id in ids:
                return DesignProblem(split=split, device=device, **kwargs), ids.index(patient_id)
            known += [i for i in ids if i not in known]
    examples = ", ".join(known[:3])
    raise UsageError(f"--patient: {patient_id!r} is not in this run's cohort ({len(known)} patients, e.g. {examples})")


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """A CSV with the first row's keys as header; returns the number of rows."""
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return len(rows)


def _refine(args: argparse.Namespace) -> dict[str, Any]:
    model, run = load_run(args.model, args.env_id, args.device)
    problem, patient = find_patient(run, args.patient, args.device)
    try:
        config = RefinementConfig(args.iterations, args.n_parallel, args.learning_rate, args.top_k, seed=args.seed)
    except ValueError as err:
        raise UsageError(str(err)) from None
    out = args.out or args.model / "refine" / args.patient
    bar = tqdm(total=config.iterations, desc=f"refine {args.patient}", unit="it")

    def progress(row: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(best=f"{row['best_so_far']:.2f}", mean=f"{row['mean_reward']:.2f}")

    result = refine_for_patient(model.policy, problem, patient, config, on_iteration=progress)
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    n_rows = write_rows(out / "top_designs.csv", result.top.rows(args.patient))
    write_rows(out / "history.csv", result.history)
    result.policy.save(str(out / "policy.zip"))
    first, last = result.history[0], result.history[-1]
    return {"patient_id": args.patient, "out": str(out), "top_designs": n_rows,
            "best_reward": float(result.top.best.reward[0]), "first_mean_reward": first["mean_reward"],
            "last_mean_reward": last["mean_reward"],
            **({"best_regret": last["best_regret"]} if "best_regret" in last else {})}


def _generate(args: argparse.Namespace) -> dict[str, Any]:
    model, run = load_run(args.model, args.env_id, args.device)
    problem, patient = find_patient(run, args.patient, args.device)
    try:
        config = GenerationConfig(args.n, args.batch_size, args.top_k, args.seed, args.checkpoint_every)
    except ValueError as err:
        raise UsageError(str(err)) from None
    out = args.out or args.model / "generate" / args.patient
    out.mkdir(parents=True, exist_ok=True)
    identity = {"patient_id": args.patient, "model": str(args.model.resolve()), "env_id": args.env_id}
    bar = tqdm(total=config.n, desc=f"generate {args.patient}", unit="design", unit_scale=True)

    def progress(state: GenerationState, rows: int) -> None:
        if bar.n == 0 and state.next_batch > 1:  # resumed: count what was already done
            bar.update(min(config.n, (state.next_batch - 1) * config.batch_size))
        bar.update(rows)
        bar.set_postfix(best=f"{state.top.best.reward[0]:.2f}")

    try:
        if args.ray is not None:
            from train.ray_cluster import generate_candidates_ray

            state = generate_candidates_ray(model.policy, problem, patient, config, out / CHECKPOINT_NAME, identity,
                                            address=args.ray, on_batch=progress)
        else:
            state = generate_candidates(model.policy, problem, patient, config, out / CHECKPOINT_NAME, identity,
                                        on_batch=progress)
    except ValueError as err:
        raise UsageError(str(err)) from None
    bar.close()
    top: TopDesigns = state.top
    n_rows = write_rows(out / "top_designs.csv", top.rows(args.patient))
    summary = {"patient_id": args.patient, "model": str(args.model), "seed": config.seed, "n": config.n,
               "batch_size": config.batch_size, "seconds": round(state.seconds, 2),
               "designs_per_second": round(config.n / state.seconds, 1) if state.seconds else None,
               **state.summary.report()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"patient_id": args.patient, "out": str(out), "top_designs": n_rows, "n_designs": state.summary.count,
            "best_reward": float(top.best.reward[0]), "seconds": summary["seconds"],
            "designs_per_second": summary["designs_per_second"]}


def main(command: str, argv: list[str]) -> int:
    """Run ``refine`` or ``generate`` with ``argv``; one-line errors, exit status 2."""
    args = _parser(command).parse_args(argv)
    if args.threads < 1:
        print(f"python -m train {command}: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    try:
        result = _refine(args) if command == "refine" else _generate(args)
    except UsageError as err:
        print(f"python -m train {command}: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0
