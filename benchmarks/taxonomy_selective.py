"""Taxonomy-v0 over training seeds: mean return and AURC of the agent and every baseline.

Reads the ``eval.json`` of finished ``python -m train maskable-ppo --env Taxonomy-v0``
run dirs (one per seed; their evaluations cover every test image) and reports, per
agent, the mean over runs with a stratified-bootstrap 95 % interval
(:func:`benchmarks.aggregate.interval_estimates`) of the mean return, the chain AURC,
the chain coverage and selective risk of its answers, and the chain selective risk at
90 % coverage::

    python -m benchmarks.taxonomy_selective runs/maskable-ppo/Taxonomy-v0_{1,2,3}

Baselines that do not depend on the RL seed (they share the run's Phase 1 checkpoint)
get a zero-width interval; that is their spread over RL seeds, not over Phase 1 seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.aggregate import Aggregate, interval_estimates

__all__ = ["COLUMNS", "collect", "main", "table"]

COLUMNS = {
    "mean return": lambda r: r["mean_reward"],
    "AURC (chain)": lambda r: r.get("aurc"),
    "coverage (chain)": lambda r: r["selective"]["chain"]["coverage"],
    "selective risk (chain)": lambda r: r["selective"]["chain"]["selective_risk"],
    "risk @ 90 % cov. (chain)": lambda r: (r.get("risk_coverage") or {}).get("chain", {}).get("risk_at_coverage", {}).get("0.90"),
}
"""Column -> value read from one agent's evaluation block (None: not available)."""


def collect(run_dirs: list[Path], agent_label: str = "maskable-ppo") -> dict[str, dict[str, list[float | None]]]:
    """Agent name -> column -> one value per run dir (the agent first, then baselines)."""
    rows: dict[str, dict[str, list[float | None]]] = {}
    for run_dir in run_dirs:
        path = Path(run_dir) / "eval.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: is {run_dir} a finished Taxonomy run dir?")
        result: dict[str, Any] = json.loads(path.read_text())
        blocks = {agent_label: result, **{k: v for k, v in result["baselines"].items() if isinstance(v, dict)}}
        for name, block in blocks.items():
            for column, read in COLUMNS.items():
                rows.setdefault(name, {}).setdefault(column, []).append(read(block))
    return rows


def table(rows: dict[str, dict[str, list[float | None]]], seed: int = 0) -> str:
    """Markdown: mean [95 % CI] per agent and column; '-' where an agent has no value."""
    lines = ["| agent | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, columns in rows.items():
        cells = []
        for column in COLUMNS:
            values = columns[column]
            if any(v is None for v in values):
                cells.append("-")
                continue
            scores = np.asarray(values, dtype=np.float64)[:, None]  # (runs, 1 task)
            est = interval_estimates({name: scores}, Aggregate.MEAN, reps=20_000, seed=seed)[name]
            cells.append(f"{est.point:.3f} [{est.low:.3f}, {est.high:.3f}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.taxonomy_selective", description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished Taxonomy run dirs, one per training seed")
    parser.add_argument("--label", default="maskable-ppo", help="name of the trained agent in the table")
    args = parser.parse_args(argv)
    rows = collect(args.run_dirs, args.label)
    print(f"{len(args.run_dirs)} runs: " + ", ".join(str(d) for d in args.run_dirs))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
