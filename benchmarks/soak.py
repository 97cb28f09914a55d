"""Soak: resident memory of long runs of each env, after warm-up.

``python benchmarks/soak.py [--scale 1.0] [--out runs/soak.json]`` steps, with seeded
random in-space actions and automatic resets:

==========================  ==========  =================================================
target                      steps       how
==========================  ==========  =================================================
``Hydrogel-v0`` vector      1,000,000   the torch ``HydrogelVectorEnv``, 1000 envs per step
``Prostate-v0``             10,000      one env, default kwargs
``AnisotropicAMG-v0``       2,000       one env, default kwargs
``Taxonomy-v0``             20,000      one env, default kwargs
==========================  ==========  =================================================

Each target runs in its own process (so one env's allocations do not hide another's),
torch single-threaded. Resident memory (RSS) is sampled after a warm-up of 10 % of the
steps and then 20 times; the figure is the growth from the warm-up sample to the last,
in percent (the issue's bar: < 5 %). ``--scale`` multiplies every step count (0.1 for a
quick look).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

WARM_UP_FRACTION = 0.1
SAMPLES = 20
GROWTH_LIMIT_PERCENT = 5.0


@dataclass(frozen=True)
class SoakTarget:
    name: str
    env_id: str
    steps: int
    num_envs: int = 1
    """> 1: the env's torch vector env with this many envs (steps count env steps)."""


TARGETS = (
    SoakTarget("Hydrogel-v0 (torch vector, 1000 envs)", "Hydrogel-v0", 1_000_000, num_envs=1000),
    SoakTarget("Prostate-v0", "Prostate-v0", 10_000),
    SoakTarget("AnisotropicAMG-v0", "AnisotropicAMG-v0", 2_000),
    SoakTarget("Taxonomy-v0", "Taxonomy-v0", 20_000),
)


def resident_mib() -> float:
    """This process's resident set size in MiB (Linux /proc; psutil elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _soak(target: SoakTarget, steps: int, queue: Any) -> None:
    import gymnasium as gym
    import numpy as np
    import torch

    import envs  # noqa: F401

    torch.set_num_threads(1)
    start = time.perf_counter()
    if target.num_envs > 1:
        env = gym.make_vec(target.env_id, num_envs=target.num_envs, vectorization_mode="vector_entry_point")
    else:
        env = gym.make(target.env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    calls = max(steps // target.num_envs, SAMPLES)
    warm_up = max(int(calls * WARM_UP_FRACTION), 1)
    every = max((calls - warm_up) // SAMPLES, 1)
    samples: list[float] = []
    nan_seen = False
    for call in range(calls):
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        nan_seen |= not bool(np.isfinite(np.asarray(reward, dtype=float)).all())
        if target.num_envs == 1 and (terminated or truncated):
            env.reset()
        if call + 1 == warm_up or (call + 1 > warm_up and (call + 1 - warm_up) % every == 0):
            samples.append(resident_mib())
    env.close()
    queue.put({
        "target": target.name, "env_steps": calls * target.num_envs, "seconds": round(time.perf_counter() - start, 1),
        "rss_after_warm_up_mib": round(samples[0], 1), "rss_end_mib": round(samples[-1], 1),
        "rss_max_mib": round(max(samples), 1),
        "growth_percent": round(100 * (samples[-1] - samples[0]) / samples[0], 2), "non_finite_reward": nan_seen,
    })


def run(scale: float, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Soak every target (or those whose env id is in ``names``), each in a fresh process."""
    results = []
    context = multiprocessing.get_context("spawn")
    for target in TARGETS:
        if names and target.env_id not in names:
            continue
        queue = context.Queue()
        proc = context.Process(target=_soak, args=(target, max(int(target.steps * scale), 1), queue))
        proc.start()
        result = queue.get()
        proc.join()
        result["passes"] = result["growth_percent"] < GROWTH_LIMIT_PERCENT and not result["non_finite_reward"]
        print(json.dumps(result), flush=True)
        results.append({**result, "target_steps": target.steps})
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| target | env steps | RSS after warm-up (MiB) | RSS at end (MiB) | growth | < 5 % |",
             "|---|---:|---:|---:|---:|:---:|"]
    for r in results:
        lines.append(f"| {r['target']} | {r['env_steps']:,} | {r['rss_after_warm_up_mib']} | {r['rss_end_mib']} |"
                     f" {r['growth_percent']:+.2f} % | {'yes' if r['passes'] else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step count (default 1)")
    parser.add_argument("--env", nargs="*", help="only these env ids")
    parser.add_argument("--out", type=Path, default=Path("runs/soak.json"))
    args = parser.parse_args(argv)
    results = run(args.scale, args.env)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(["python", "benchmarks/soak.py", *(argv or sys.argv[1:])]),
              "python": platform.python_version(), "results": results}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(results))
    return 0 if all(r["passes"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
