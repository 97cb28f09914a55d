"""``python -m benchmarks suite``: train every env's reference trainer over seeds, score
it next to the env's reference agents, and publish a leaderboard with rliable.

For each env (``benchmarks/suite.yml``: trainer and budget), the suite runs the env's
pre-training once if it has one, then ``python -m train ALGO --env ID --seed s`` for
every seed, each into ``OUT/ENV/ALGO_s`` (a finished run, one with ``eval.json``, is not
trained again, so an interrupted suite resumes). Every ``eval.json`` already holds the
trained agent and the env's reference agents on the same test cases; the suite reads
them, normalises each env's mean reward with the fixed reference scores
(:mod:`benchmarks.reference_scores`: 0 = random, 1 = the documented reference) and
aggregates over envs with rliable: IQM and optimality gap with stratified-bootstrap
CIs, performance profiles and probability of improvement.

Leaderboard rows: ``random``; ``best baseline`` (per env the best non-learning
reference agent other than the documented reference, chosen on the test split, so an
optimistic bar); the trained agent (``RL``); ``reference``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import envs
from benchmarks.aggregate import probability_of_improvement
from benchmarks.reference_scores import ReferenceScore, load_reference_scores
from train.config import UsageError

__all__ = ["SUITE_FILE", "Budget", "SuiteJob", "collect", "plan_suite", "publish", "run_suite", "run_suite_on_ray",
           "train_job"]

SUITE_FILE = Path(__file__).with_name("suite.yml")
RESULTS_BEGIN, RESULTS_END = "<!-- suite:begin -->", "<!-- suite:end -->"
ROWS = ("random", "best baseline", "RL", "reference")


class Budget:
    """Names of the suite's budgets."""

    QUICK = "quick"
    FULL = "full"
    ALL = (QUICK, FULL)


@dataclass(frozen=True)
class SuiteJob:
    """One training run of the suite."""

    env_id: str
    algo: str
    seed: int
    run_dir: Path
    total_timesteps: int | None
    pretrain_hyperparams: dict[str, Any]
    hyperparams: tuple[str, ...] = ()
    """``key=value`` overrides for ``python -m train --hyperparams``."""

    def train_argv(self) -> list[str]:
        """The ``python -m train`` arguments of this run."""
        argv = [self.algo, "--env", self.env_id, "--seed", str(self.seed), "--run-dir", str(self.run_dir), "--threads", "1"]
        if self.total_timesteps is not None:
            argv += ["--total-timesteps", str(self.total_timesteps)]
        if self.hyperparams:
            argv += ["--hyperparams", *self.hyperparams]
        return argv


def _suite_config(path: Path = SUITE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def plan_suite(
    env_ids: Sequence[str], budget: str, seeds: Sequence[int], out: Path, config_file: Path = SUITE_FILE
) -> list[SuiteJob]:
    """The training runs of a suite (env major, then seed)."""
    if budget not in Budget.ALL:
        raise UsageError(f"--budget must be one of {list(Budget.ALL)}, got {budget!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds must be distinct integers, got {list(seeds)}")
    config = _suite_config(config_file)
    jobs = []
    for env_id in env_ids:
        if env_id not in config:
            raise UsageError(f"{env_id} has no entry in {config_file}; envs with one: {', '.join(config)}")
        entry = config[env_id]
        settings = dict(entry.get(budget) or {})
        for seed in seeds:
            jobs.append(SuiteJob(
                env_id, entry["algo"], int(seed), out / env_id / f"{entry['algo']}_{seed}",
                settings.get("total_timesteps"), dict(settings.get("pretrain_hyperparams") or {}),
                tuple(settings.get("hyperparams") or ()),
            ))
    return jobs


def _pretrain(job: SuiteJob, out: Path, done: set[str]) -> None:
    """The env's pre-training, once per pre-training function (Taxonomy ids share one)."""
    from train.cli import main as train_main

    target = envs.entry(job.env_id).pretrain
    if target is None or target in done:
        return
    done.add(target)
    run_dir = out / "pretrain" / target.replace(":", ".")
    if (run_dir / "eval.json").is_file():
        return
    argv = ["pretrain", "--env", job.env_id, "--run-dir", str(run_dir), "--threads", "1"]
    if job.pretrain_hyperparams:
        argv += ["--hyperparams", *[f"{k}={v}" for k, v in job.pretrain_hyperparams.items()]]
    if train_main(argv) != 0:
        raise UsageError(f"pre-training failed: python -m train {' '.join(argv)}")


def run_suite(jobs: Sequence[SuiteJob], out: Path, ray_address: str | None = None) -> float:
    """Train every job that has no ``eval.json`` yet; returns the wall seconds spent.

    With ``ray_address`` (``local`` or a cluster address) each job is a Ray task
    (:func:`run_suite_on_ray`)."""
    if ray_address is not None:
        return run_suite_on_ray(jobs, out, ray_address)
    from train.cli import main as train_main

    start, pretrained = time.perf_counter(), set()
    for k, job in enumerate(jobs, 1):
        if (job.run_dir / "eval.json").is_file():
            print(f"[suite {k}/{len(jobs)}] {job.env_id} {job.algo} seed {job.seed}: done before, kept", flush=True)
            continue
        _pretrain(job, out, pretrained)
        print(f"[suite {k}/{len(jobs)}] python -m train {' '.join(job.train_argv())}", flush=True)
        if job.run_dir.exists():  # an interrupted run: start it again from scratch
            import shutil

            shutil.rmtree(job.run_dir)
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        if train_main(job.train_argv()) != 0:
            raise UsageError(f"training failed: python -m train {' '.join(job.train_argv())}")
    return time.perf_counter() - start


def train_job(job: SuiteJob, out: Path) -> bytes:
    """One suite job where it runs (a Ray worker): the env's pre-training if this machine
    has not done it (under a file lock: jobs on one machine share it), the training run
    with its evaluation, and the run dir packed as ``tar.gz`` for the driver."""
    import io
    import shutil
    import tarfile

    from filelock import FileLock

    from train.cli import main as train_main

    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / ".pretrain.lock")):
        _pretrain(job, out, set())
    if not (job.run_dir / "eval.json").is_file():
        if job.run_dir.exists():
            shutil.rmtree(job.run_dir)
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        if train_main(job.train_argv()) != 0:
            raise UsageError(f"training failed: python -m train {' '.join(job.train_argv())}")
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        tar.add(job.run_dir, arcname=".")
    return packed.getvalue()


def run_suite_on_ray(jobs: Sequence[SuiteJob], out: Path, address: str) -> float:
    """Every unfinished job as a Ray task (1 CPU each); run dirs come back to the driver
    (unpacked into ``job.run_dir`` unless the worker shared this machine's disk)."""
    import io
    import tarfile

    from train.ray_cluster import ray_session

    start = time.perf_counter()
    todo = [job for job in jobs if not (job.run_dir / "eval.json").is_file()]
    for job in jobs:
        if job not in todo:
            print(f"[suite] {job.env_id} {job.algo} seed {job.seed}: done before, kept", flush=True)
    if not todo:
        return time.perf_counter() - start
    with ray_session(address) as ray:
        task = ray.remote(num_cpus=1)(train_job)
        pending = {task.remote(job, out): job for job in todo}
        print(f"[suite] {len(pending)} training runs as Ray tasks on {ray.cluster_resources().get('CPU', 0):.0f} CPUs",
              flush=True)
        done = 0
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(finished[0])
            try:
                packed = ray.get(finished[0])
            except ray.exceptions.RayTaskError as err:
                raise UsageError(f"{job.env_id} {job.algo} seed {job.seed} failed on Ray: {err.cause!r}") from None
            if not (job.run_dir / "eval.json").is_file():  # the worker ran on another machine
                job.run_dir.mkdir(parents=True, exist_ok=True)
                with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
                    tar.extractall(job.run_dir, filter="data")
            done += 1
            print(f"[suite {done}/{len(todo)}] {job.env_id} {job.algo} seed {job.seed}: done", flush=True)
    return time.perf_counter() - start


@dataclass
class EnvScores:
    """What one env's runs produced: raw mean rewards per seed, by leaderboard row."""

    env_id: str
    algo: str
    raw: dict[str, np.ndarray]
    """Row -> (seeds,) mean reward on the test split."""
    baselines: dict[str, np.ndarray]
    """Every reference agent -> (seeds,) mean reward."""
    best_baseline: str
    metrics: dict[str, dict[str, float]]
    """Agent or baseline -> headline metric -> mean over seeds."""
    reference_name: str


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def collect(jobs: Sequence[SuiteJob]) -> list[EnvScores]:
    """Read every job's ``eval.json`` into per-env scores."""
    by_env: dict[str, list[SuiteJob]] = {}
    for job in jobs:
        by_env.setdefault(job.env_id, []).append(job)
    collected = []
    for env_id, env_jobs in by_env.items():
        results = [json.loads((j.run_dir / "eval.json").read_text()) for j in env_jobs]
        protocol = envs.entry(env_id).evaluation
        reference = protocol.reference
        names = [n for n in results[0]["baselines"] if all(n in r["baselines"] for r in results)]
        baselines = {n: np.array([r["baselines"][n]["mean_reward"] for r in results], dtype=float) for n in names}
        if reference not in baselines:
            raise UsageError(f"{env_id}: its eval.json has no baseline {reference!r} (EvalProtocol.reference)")
        candidates = [n for n in names if n not in ("random", reference)]
        best = max(candidates, key=lambda n: baselines[n].mean()) if candidates else "random"
        raw = {
            "random": baselines["random"], "best baseline": baselines[best],
            "RL": np.array([r["mean_reward"] for r in results], dtype=float), "reference": baselines[reference],
        }
        metrics = {}
        for name, pick in [("RL", lambda r: r)] + [(n, lambda r, n=n: r["baselines"][n]) for n in names]:
            metrics[name] = {
                key: float(np.mean([pick(r)[key] for r in results]))
                for key in ("mean_reward", *protocol.headline_metrics)
                if all(_numeric(pick(r).get(key)) for r in results)
            }
        collected.append(EnvScores(env_id, env_jobs[0].algo, raw, baselines, best, metrics, reference))
    return collected


def normalised(scores: Sequence[EnvScores], references: dict[str, ReferenceScore]) -> dict[str, np.ndarray]:
    """Row -> (seeds, envs) normalised scores; an env without a committed reference score
    is normalised by its own runs' random and reference means."""
    table: dict[str, list[np.ndarray]] = {row: [] for row in ROWS}
    for env in scores:
        ref = references.get(env.env_id)
        low, high = (ref.random, ref.reference) if ref else (env.raw["random"].mean(), env.raw["reference"].mean())
        for row in ROWS:
            table[row].append((env.raw[row] - low) / (high - low))
    return {row: np.stack(columns, axis=1) for row, columns in table.items()}


PROFILE_REPS = 2000
"""Bootstrap replications of the performance profiles' bands: rliable's default for
``create_performance_profile`` (its interval estimates default to 50,000)."""
IMPROVEMENT_ROWS = ("best baseline", "random", "reference")
"""P(RL > row) is reported and drawn for these rows."""

Improvement = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]
"""rliable's (point estimates, intervals) of P(RL > row), keyed ``"RL,row"``."""


def _aggregates(norm: dict[str, np.ndarray], reps: int, seed: int) -> tuple[dict[str, dict[str, float]], Improvement]:
    """IQM and optimality gap per row, and P(RL > row), with ``reps``-replication
    stratified-bootstrap CIs (rliable); the probabilities are returned for the figure too."""
    from rliable import library, metrics

    def iqm_and_gap(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_optimality_gap(x, 1.0)])

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        points, intervals = library.get_interval_estimates(norm, iqm_and_gap, reps=reps)
        pairs = {f"RL,{row}": (norm["RL"], norm[row]) for row in IMPROVEMENT_ROWS}
        p_points, p_intervals = library.get_interval_estimates(pairs, probability_of_improvement, reps=reps)
    finally:
        np.random.set_state(state)
    out = {
        row: {"iqm": points[row][0], "iqm_low": intervals[row][0, 0], "iqm_high": intervals[row][1, 0],
              "optimality_gap": points[row][1], "gap_low": intervals[row][0, 1], "gap_high": intervals[row][1, 1]}
        for row in norm
    }
    for pair in pairs:
        out[f"P({pair.replace(',', ' > ')})"] = {
            "p": float(np.squeeze(p_points[pair])), "low": float(p_intervals[pair][0].item()),
            "high": float(p_intervals[pair][1].item()),
        }
    return {k: {m: float(v) for m, v in d.items()} for k, d in out.items()}, (p_points, p_intervals)


def _figures(norm: dict[str, np.ndarray], improvement: Improvement, figures: Path, stem: str, reps: int,
             seed: int) -> list[Path]:
    """Performance profiles (bands from ``min(reps, PROFILE_REPS)`` replications) and the
    probability-of-improvement plot of :func:`_aggregates`' estimates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library, plot_utils

    figures.mkdir(parents=True, exist_ok=True)
    thresholds = np.linspace(-0.5, 1.5, 81)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        profiles, profile_cis = library.create_performance_profile(norm, thresholds, reps=min(reps, PROFILE_REPS))
    finally:
        np.random.set_state(state)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, thresholds, performance_profile_cis=profile_cis,
                                         xlabel=r"normalised score $\tau$ (0 = random, 1 = reference)", ax=ax)
    ax.legend(list(profiles), loc="upper right")
    paths = [figures / f"{stem}_performance_profiles.png"]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    axes = plot_utils.plot_probability_of_improvement(*improvement, figsize=(7, 3))
    paths.append(figures / f"{stem}_probability_of_improvement.png")
    axes.figure.savefig(paths[1], dpi=120, bbox_inches="tight")
    plt.close(axes.figure)
    return paths


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def markdown(scores: Sequence[EnvScores], norm: dict[str, np.ndarray], aggregates: dict[str, dict[str, float]],
             figures: Sequence[Path], header: dict[str, Any], results_dir: Path) -> str:
    """The suite's section of RESULTS.md."""
    env_ids = [s.env_id for s in scores]
    lines = [RESULTS_BEGIN, "## Leaderboard: every env (`python -m benchmarks suite`)", "", "```", header["command"], "```",
             "", f"{header['when']}, {header['machine']}, wall time {header['wall_minutes']:.1f} min"
             f" (training {header['train_minutes']:.1f} min), {len(norm['RL'])} seeds, code {header['git_commit']}.",
             f"Versions: {', '.join(f'{k} {v}' for k, v in header['versions'].items() if v)}.", "",
             "Normalised mean reward on each env's test split (0 = random, 1 = the env's documented reference),"
             " mean over seeds; aggregate = IQM and optimality gap over seeds x envs with 95 % stratified-bootstrap"
             " CIs (rliable). `best baseline` is, per env, the best non-learning reference agent on the test split.", "",
             "| agent | " + " | ".join(env_ids) + " | IQM [95 % CI] | optimality gap [95 % CI] |",
             "|---|" + "---|" * (len(env_ids) + 2)]
    for row in ROWS:
        a = aggregates[row]
        cells = [_fmt(v) for v in norm[row].mean(axis=0)]
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {_fmt(a['iqm'])} [{_fmt(a['iqm_low'])}, {_fmt(a['iqm_high'])}]"
                     f" | {_fmt(a['optimality_gap'])} [{_fmt(a['gap_low'])}, {_fmt(a['gap_high'])}] |")
    lines += ["", "| trained agent per env | " + " | ".join(f"{s.env_id}: {s.algo}" for s in scores) + " |",
              "|---|" + "---|" * len(scores),
              "| best baseline | " + " | ".join(s.best_baseline for s in scores) + " |",
              "| reference | " + " | ".join(s.reference_name for s in scores) + " |", ""]
    for key, value in aggregates.items():
        if key.startswith("P("):
            lines.append(f"- {key} = {_fmt(value['p'])} [{_fmt(value['low'])}, {_fmt(value['high'])}]")
    lines.append("")
    for path in figures:
        lines.append(f"![{path.stem}](figures/{path.name})")
    lines.append("")
    for env in scores:
        keys = list(dict.fromkeys(k for m in env.metrics.values() for k in m))
        lines += [f"### {env.env_id} (raw, mean over seeds; runs in `{results_dir / env.env_id}`)", "",
                  "| agent | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for name, values in env.metrics.items():
            label = f"{env.algo} (RL)" if name == "RL" else name
            lines.append(f"| {label} | " + " | ".join(_fmt(values[k]) if k in values else "" for k in keys) + " |")
        lines.append("")
    lines.append(RESULTS_END)
    return "\n".join(lines) + "\n"


def publish(section: str, results_file: Path) -> None:
    """Replace the suite's section of ``results_file`` (or put it first after the title)."""
    text = results_file.read_text() if results_file.is_file() else "# Benchmark results\n"
    if RESULTS_BEGIN in text and RESULTS_END in text:
        head, _, rest = text.partition(RESULTS_BEGIN)
        _, _, tail = rest.partition(RESULTS_END)
        text = head + section.rstrip("\n") + tail
    else:
        title, sep, body = text.partition("\n")
        text = title + sep + "\n" + section + body
    results_file.write_text(text)


def suite_report(jobs: Sequence[SuiteJob], header: dict[str, Any], results_dir: Path, results_file: Path,
                 figures: Path, stem: str, reps: int, seed: int) -> dict[str, Any]:
    """Collect, normalise, aggregate, draw and publish; returns what was computed."""
    scores = collect(jobs)
    norm = normalised(scores, load_reference_scores())
    aggregates, improvement = _aggregates(norm, reps, seed)
    paths = _figures(norm, improvement, figures, stem, reps, seed)
    publish(markdown(scores, norm, aggregates, paths, header, results_dir), results_file)
    return {"normalised": {k: v.tolist() for k, v in norm.items()}, "aggregates": aggregates,
            "figures": [str(p) for p in paths], "envs": [s.env_id for s in scores]}
