"""``python -m benchmarks evaluate|throughput ...``.

Examples::

    python -m benchmarks evaluate --env Hydrogel-v0 --agent random --agent runs/ppo/Hydrogel-v0_1 \\
        --seeds 0 1 2 --episodes 43 --out runs/benchmarks/hydrogel
    python -m benchmarks evaluate --env Hydrogel-v0 --env HydrogelSearch-v0 --agent random \\
        --agent ppo=runs/ppo/Hydrogel-v0_1 --agent ppo=runs/ppo/HydrogelSearch-v0_1
    python -m benchmarks throughput --env Hydrogel-v0 --num-envs 1 64 2000 --steps 10

``evaluate`` writes results.json (every agent's evaluator output per env and seed, the
scores, the aggregate, the command and package versions), results.md and
aggregate.png; ``throughput`` writes throughput.json, throughput.md and
throughput.png. A mistake (unknown env, agent spec or option value) prints one line
naming the valid choices and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.config import UsageError, parse_overrides

__all__ = ["build_parser", "main"]

PROG = "python -m benchmarks"


def _add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument(
        "--env-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
        help="env constructor kwargs (YAML values) for every env, or ENV_ID.KEY=VALUE for one env;"
        " they win over a model's own run settings",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda[:N]")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path(default_out), help=f"output directory (default {default_out})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Benchmark agents and envs of ScienceGym.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{evaluate,throughput,references,suite}")

    evaluate = commands.add_parser(
        "evaluate", help="score agents on envs' test splits over seeds; rliable aggregate",
        description="Score agents on the test split of each env over several seeds and aggregate with"
        " the IQM (or mean) and stratified bootstrap confidence intervals.",
    )
    evaluate.add_argument("--env", dest="env_ids", action="append", required=True, metavar="ID",
                          help="registered env id, or 'all' for every ScienceGym id; repeat to aggregate across"
                          " envs (scores normalised per env)")
    evaluate.add_argument("--agent", dest="agents", action="append", required=True, metavar="SPEC",
                          help="random | baseline:NAME[:k=v,...] | run dir | model.zip, optionally LABEL=SPEC;"
                          " repeatable")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                          help="evaluation seeds = runs (default 0 1 2)")
    evaluate.add_argument("--episodes", type=int, default=20, help="test episodes per seed (default 20)")
    evaluate.add_argument("--metric", default="mean_reward",
                          help="evaluator key to aggregate, higher is better (default mean_reward)")
    evaluate.add_argument("--aggregate", choices=["iqm", "mean"], default="iqm", help="point estimate (default iqm)")
    evaluate.add_argument("--reps", type=int, default=50_000, help="bootstrap replications (default 50000, rliable's)")
    evaluate.add_argument("--confidence", type=float, default=0.95, help="CI coverage (default 0.95)")
    evaluate.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    _add_common(evaluate, "runs/benchmarks/evaluate")

    throughput = commands.add_parser(
        "throughput", help="steps/s of the torch vector env vs per-env loops, as ratios",
        description="Time the env's torch vector env against Gymnasium's SyncVectorEnv, and the SB3 VecEnv"
        " adapter against SB3's DummyVecEnv, back to back in one process.",
    )
    throughput.add_argument("--env", dest="env_id", default="Hydrogel-v0",
                            help="env with a torch vector env (default Hydrogel-v0)")
    throughput.add_argument("--num-envs", type=int, nargs="+", default=[1, 64, 2000],
                            help="batch sizes (default 1 64 2000)")
    throughput.add_argument("--steps", type=int, default=10, help="vector steps per timed repeat, at least (default 10)")
    throughput.add_argument("--repeats", type=int, default=3, help="timed repeats per backend (default 3)")
    throughput.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    throughput.add_argument("--min-seconds", type=float, default=0.5,
                            help="a repeat lasts at least this long (default 0.5)")
    _add_common(throughput, "runs/benchmarks/throughput")

    references = commands.add_parser(
        "references", help="recompute (or --check) the fixed reference scores of the normalisation",
        description="Evaluate each env's random and documented reference agents on its test split with default"
        " kwargs and write benchmarks/reference_scores.json (normalised 0 = random, 1 = reference).",
    )
    references.add_argument("--env", dest="env_ids", action="append", metavar="ID",
                            help="env id or 'all' (default all); repeatable")
    references.add_argument("--episodes", type=int, default=None,
                            help="test episodes (default: every test case once)")
    references.add_argument("--check", action="store_true",
                            help="compare with the committed file instead of writing it; exit 1 on a mismatch")
    references.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    references.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")

    suite = commands.add_parser(
        "suite", help="train every env's reference trainer over seeds and publish the leaderboard",
        description="Train each env's trainer (benchmarks/suite.yml) over seeds, score it next to the env's"
        " reference agents, aggregate with rliable and rewrite the leaderboard section of RESULTS.md."
        " Finished runs are kept, so an interrupted suite resumes.",
    )
    suite.add_argument("--budget", choices=["quick", "full"], default="quick", help="training budget (default quick)")
    suite.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    suite.add_argument("--env", dest="env_ids", action="append", metavar="ID", help="env id or 'all' (default all)")
    suite.add_argument("--reps", type=int, default=50_000, help="bootstrap replications (default 50000)")
    suite.add_argument("--config", type=Path, default=Path(__file__).with_name("suite.yml"),
                       help="trainers and budgets per env (default benchmarks/suite.yml)")
    suite.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"),
                       help="Markdown file whose leaderboard section is rewritten (default benchmarks/RESULTS.md)")
    suite.add_argument("--figures", type=Path, default=Path(__file__).with_name("figures"),
                       help="where the PNGs go (default benchmarks/figures)")
    suite.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    suite.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    suite.add_argument("--out", type=Path, default=Path("runs/suite"), help="run dirs (default runs/suite)")
    suite.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run each training run (with its evaluation) as a Ray task: on a local Ray instance,"
                       " or on the cluster at ADDRESS (e.g. auto, ray://head:10001); needs the [ray] extra")
    return parser


def _env_kwargs(pairs: list[str], env_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``--env-kwargs`` as env id -> kwargs; keys named after an env id apply to that env only."""
    import envs

    parsed = parse_overrides(pairs)
    for key in parsed:
        if key in envs.ENV_IDS and key not in env_ids:
            raise UsageError(f"--env-kwargs {key}.KEY=VALUE: {key} is not among --env {' '.join(env_ids)}")
    common = {k: v for k, v in parsed.items() if k not in env_ids}
    return {env_id: {**common, **parsed.get(env_id, {})} for env_id in env_ids}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _write(out: Path, stem: str, data: dict[str, Any], markdown: str) -> None:
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    (out / f"{stem}.md").write_text(markdown)


def _evaluate(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from benchmarks.agent_spec import parse_agent_spec
    from benchmarks.aggregate import interval_estimates, normalise_scores
    from benchmarks.plots import plot_interval_estimates
    from benchmarks.provenance import provenance
    from benchmarks.report import evaluation_markdown
    from benchmarks.suite import (
        check_env_ids, expand_env_ids, fixed_normalisation, kwargs_mismatches, normalisation, plan_runs, play_runs,
        raw_scores,
    )

    args.env_ids = expand_env_ids(args.env_ids)
    check_env_ids(args.env_ids)
    if args.reps < 1 or not 0 < args.confidence < 1:
        raise UsageError(f"--reps must be >= 1 and --confidence in (0, 1), got {args.reps} and {args.confidence}")
    specs = [parse_agent_spec(text) for text in args.agents]
    runs = plan_runs(args.env_ids, specs, _env_kwargs(args.env_kwargs, args.env_ids))
    warnings = kwargs_mismatches(runs)
    for warning in warnings:
        print(f"{PROG} evaluate: warning: {warning}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    play_runs(runs, args.seeds, args.episodes, args.device)

    data = {
        **provenance(argv),
        "envs": args.env_ids, "seeds": args.seeds, "episodes": args.episodes, "metric": args.metric,
        "aggregate": args.aggregate, "reps": args.reps, "confidence": args.confidence,
        "bootstrap_seed": args.bootstrap_seed, "device": args.device, "warnings": warnings,
        "results": {
            env_id: {
                label: [
                    {
                        "spec": r.spec.text, "env_kwargs": r.env_kwargs, "env_wrapper": list(r.env_wrapper),
                        "seeds": {str(seed): result for seed, result in r.results.items()},
                    }
                    for r in runs if r.env_id == env_id and r.label == label
                ]
                for label in dict.fromkeys(r.label for r in runs if r.env_id == env_id)
            }
            for env_id in args.env_ids
        },
    }
    # written before aggregating, so a failed aggregation loses no evaluation
    (args.out / "results.json").write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    scores = raw_scores(runs, args.env_ids, args.seeds, args.metric)
    norm, norm_kind = None, None
    if len(args.env_ids) > 1:
        norm, why_not = fixed_normalisation(args.env_ids, runs, args.metric)
        norm_kind = "reference scores (benchmarks/reference_scores.json)"
        if norm is None:
            print(f"{PROG} evaluate: note: normalising by random and the best agent of this run: {why_not}",
                  file=sys.stderr)
            norm, norm_kind = normalisation(scores, args.env_ids, runs), "random and the best agent of this run"
        try:
            scores = normalise_scores(scores, norm.low, norm.high, args.env_ids)
        except ValueError as err:
            raise UsageError(f"{err} (per-seed results are in {args.out / 'results.json'})") from None
    estimates = interval_estimates(
        scores, args.aggregate, reps=args.reps, confidence=args.confidence, seed=args.bootstrap_seed
    )
    what = f"normalised {args.metric}" if norm is not None else args.metric
    plot = plot_interval_estimates(
        estimates, args.out / "aggregate.png",
        xlabel=f"{args.aggregate.upper()} of {what} ({args.confidence:.0%} CI)",
        title=f"{', '.join(args.env_ids)}: {len(args.seeds)} seeds x {args.episodes} test episodes",
    )
    data.update(
        normalisation=None if norm is None else {
            "low": norm.low, "high": norm.high, "best": norm.best, "by": norm_kind,
        },
        scores=scores,
        scores_layout="(run dirs x seeds, envs), run dir major",
        aggregates={label: vars(e) for label, e in estimates.items()},
        plot=plot.name,
    )
    data = json.loads(json.dumps(data, default=_json_default))
    _write(args.out, "results", data, evaluation_markdown(data))
    for label, e in estimates.items():
        print(f"{label}: {args.aggregate.upper()} {what} = {e.point:.4g} [{e.low:.4g}, {e.high:.4g}]")
    print(f"wrote {args.out / 'results.json'}, results.md, aggregate.png")
    return data


def _throughput(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from benchmarks.plots import plot_throughput
    from benchmarks.provenance import provenance
    from benchmarks.report import throughput_markdown
    from benchmarks.suite import check_env_ids
    from benchmarks.throughput import as_json, measure_throughput

    check_env_ids([args.env_id])
    env_kwargs = _env_kwargs(args.env_kwargs, [args.env_id])[args.env_id]
    measurements, ratios = measure_throughput(
        args.env_id, args.num_envs, steps=args.steps, repeats=args.repeats, warmup=args.warmup,
        min_seconds=args.min_seconds, device=args.device, env_kwargs=env_kwargs,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    plot = plot_throughput(measurements, ratios, args.out / "throughput.png",
                           title=f"{args.env_id} on {args.device}, {torch.get_num_threads()} torch thread(s)")
    data = {**provenance(argv), "env_id": args.env_id, "device": args.device, "steps": args.steps,
            "repeats": args.repeats, "min_seconds": args.min_seconds, **as_json(measurements, ratios), "plot": plot.name}
    data = json.loads(json.dumps(data, default=_json_default))
    _write(args.out, "throughput", data, throughput_markdown(data))
    for r in ratios:
        print(f"N={r.num_envs}: {r.fast} / {r.slow} = {r.ratio:.3g}x ({r.min_ratio:.3g}-{r.max_ratio:.3g})")
    print(f"wrote {args.out / 'throughput.json'}, throughput.md, throughput.png")
    return data


def _references(args: argparse.Namespace, argv: list[str]) -> int:
    from benchmarks.reference_scores import compute_reference_score, load_reference_scores, write_reference_scores
    from benchmarks.suite import check_env_ids, expand_env_ids

    env_ids = expand_env_ids(args.env_ids or ["all"])
    check_env_ids(env_ids)
    committed = load_reference_scores()
    scores, mismatches = [], []
    for env_id in env_ids:
        episodes = args.episodes
        if args.check and env_id in committed and episodes is None:
            episodes = committed[env_id].episodes
        try:
            score = compute_reference_score(env_id, episodes)
        except ValueError as err:
            raise UsageError(str(err)) from None
        scores.append(score)
        print(f"{env_id}: random {score.random:.4g}, {score.reference_name} {score.reference:.4g}", flush=True)
        old = committed.get(env_id)
        if args.check and (old is None or not np.allclose([old.random, old.reference], [score.random, score.reference],
                                                          rtol=1e-6, atol=1e-9)):
            mismatches.append(f"{env_id}: file {old}, code {score}")
    if args.check:
        for line in mismatches:
            print(f"{PROG} references: mismatch: {line}", file=sys.stderr)
        return 1 if mismatches else 0
    write_reference_scores(scores, "python -m benchmarks " + " ".join(argv))
    print("wrote benchmarks/reference_scores.json")
    return 0


def _suite(args: argparse.Namespace, argv: list[str]) -> int:
    import platform
    import time
    from datetime import datetime, timezone

    from benchmarks.leaderboard import plan_suite, run_suite, suite_report
    from benchmarks.provenance import provenance
    from benchmarks.suite import check_env_ids, expand_env_ids

    env_ids = expand_env_ids(args.env_ids or ["all"])
    check_env_ids(env_ids)
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    start = time.perf_counter()
    jobs = plan_suite(env_ids, args.budget, list(range(args.seeds)), args.out, args.config)
    train_seconds = run_suite(jobs, args.out, args.ray)
    header = {
        **provenance(argv), "when": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "train_minutes": train_seconds / 60, "wall_minutes": (time.perf_counter() - start) / 60,
    }
    report = suite_report(jobs, header, args.out, args.results, args.figures, f"suite_{args.budget}", args.reps, 0)
    header["wall_minutes"] = (time.perf_counter() - start) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suite.json").write_text(json.dumps({**header, **report}, indent=2, default=_json_default) + "\n")
    for row, a in report["aggregates"].items():
        print(f"{row}: {a}")
    print(f"wrote {args.out / 'suite.json'} and the leaderboard section of {args.results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.torch_threads < 1:
        print(f"{PROG} {args.command}: error: --torch-threads must be >= 1, got {args.torch_threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.torch_threads)
    import envs  # noqa: F401  (registers the env ids)

    try:
        if args.command == "references":
            return _references(args, argv)
        if args.command == "suite":
            return _suite(args, argv)
        (_evaluate if args.command == "evaluate" else _throughput)(args, argv)
    except UsageError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
