"""Markdown tables of benchmark results (results.md, throughput.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["emit_json_line", "evaluation_markdown", "throughput_markdown"]


def emit_json_line(result: dict[str, Any], out: Path | None) -> None:
    """Print a single-line benchmark result as JSON; also write it to ``out`` (parents created) when given."""
    line = json.dumps(result)
    print(line)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(line + "\n")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _header(data: dict[str, Any], title: str) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    machine = data["machine"]
    return [
        f"# {title}",
        "",
        f"Command: `{data['command']}`",
        "",
        f"Versions: {versions}; git {data['git_commit']}; {machine['cpu_count']} CPUs,"
        f" {machine['torch_threads']} torch thread(s); {data['created_utc']}.",
        "",
    ]


def _scalar_keys(results: list[dict[str, Any]]) -> list[str]:
    """Numeric scalar keys present in every result, in the evaluator's order."""
    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    keys = [k for k, v in results[0].items() if numeric(v) and k != "n_episodes"]
    return [k for k in keys if all(numeric(r.get(k)) for r in results)]


def evaluation_markdown(data: dict[str, Any]) -> str:
    """results.md of ``python -m benchmarks evaluate`` from its results.json data."""
    metric, aggregate = data["metric"], data["aggregate"]
    lines = _header(data, f"Agents on {', '.join(data['envs'])}")
    normalised = data["normalisation"] is not None
    what = "normalised " + metric if normalised else metric
    lines += [
        f"## {aggregate.upper()} of {what} over runs x envs",
        "",
        f"Runs = run dirs x {len(data['seeds'])} seeds ({' '.join(map(str, data['seeds']))}),"
        f" {data['episodes']} test episodes each;"
        f" {data['confidence']:.0%} stratified bootstrap CI, {data['reps']} reps, bootstrap seed {data['bootstrap_seed']}.",
        "",
    ]
    if normalised:
        lines += [
            "Per env, 0 = the random agent's mean over runs and 1 = the best agent's mean over runs:",
            "",
            "| env | random | best | best agent |",
            "|---|---|---|---|",
        ]
        norm = data["normalisation"]
        for i, env_id in enumerate(data["envs"]):
            lines.append(f"| {env_id} | {_number(norm['low'][i])} | {_number(norm['high'][i])} | {norm['best'][i]} |")
        lines.append("")
    lines += [f"| agent | {aggregate.upper()} | {data['confidence']:.0%} CI |", "|---|---|---|"]
    for label, e in data["aggregates"].items():
        lines.append(f"| {label} | {_number(e['point'])} | [{_number(e['low'])}, {_number(e['high'])}] |")
    lines += ["", f"![{aggregate}]({data['plot']})", ""]
    for env_id, by_label in data["results"].items():
        lines += [f"## {env_id}", "", f"| agent | run | {metric} (mean ± sd over seeds) | per seed |", "|---|---|---|---|"]
        for label, entries in by_label.items():
            for entry in entries:
                values = np.array([entry["seeds"][str(s)][metric] for s in data["seeds"]], dtype=float)
                per_seed = ", ".join(_number(v) for v in values)
                lines.append(
                    f"| {label} | `{entry['spec']}` | {_number(values.mean())} ± {_number(values.std())} | {per_seed} |"
                )
        results = {label: [r for entry in entries for r in entry["seeds"].values()] for label, entries in by_label.items()}
        keys = _scalar_keys([r for rs in results.values() for r in rs])
        lines += ["", "Every scalar metric, mean over runs:", "", f"| metric | {' | '.join(results)} |",
                  f"|---|{'---|' * len(results)}"]
        for key in keys:
            cells = [_number(float(np.mean([r[key] for r in rs]))) for rs in results.values()]
            lines.append(f"| {key} | {' | '.join(cells)} |")
        lines.append("")
        for label, entries in by_label.items():
            for entry in entries:
                lines.append(f"- `{label}` = `{entry['spec']}`: env kwargs `{entry['env_kwargs']}`,"
                             f" wrapper `{entry['env_wrapper'] or 'none'}`")
        lines.append("")
    if data["warnings"]:
        lines += ["## Warnings", "", *[f"- {w}" for w in data["warnings"]], ""]
    return "\n".join(lines)


def throughput_markdown(data: dict[str, Any]) -> str:
    """throughput.md of ``python -m benchmarks throughput`` from its JSON data."""
    lines = _header(data, f"Throughput of {data['env_id']} (device {data['device']})")
    lines += [
        "Speed-up = steps/s of the batched env / steps/s of the per-env loop, timed back to back;"
        " median (min-max) over repeats.",
        "",
    ]
    pairs = list(dict.fromkeys((r["fast"], r["slow"]) for r in data["ratios"]))
    lines.append("| N | " + " | ".join(f"{fast} / {slow}" for fast, slow in pairs) + " |")
    lines.append("|---|" + "---|" * len(pairs))
    for n in dict.fromkeys(r["num_envs"] for r in data["ratios"]):
        cells = []
        for fast, slow in pairs:
            r = next(x for x in data["ratios"] if x["num_envs"] == n and (x["fast"], x["slow"]) == (fast, slow))
            cells.append(f"{r['ratio']:.3g}x ({r['min_ratio']:.3g}-{r['max_ratio']:.3g})")
        lines.append(f"| {n} | {' | '.join(cells)} |")
    lines += [
        "",
        "Absolute rates (machine- and load-dependent, for context):",
        "",
        "| backend | N | env steps/s (median) | vector steps per repeat | setup s |",
        "|---|---|---|---|---|",
    ]
    for m in data["measurements"]:
        lines.append(
            f"| {m['backend']} | {m['num_envs']} | {m['env_steps_per_s']:.4g} |"
            f" {', '.join(map(str, m['vector_steps']))} | {m['setup_s']:.3g} |"
        )
    lines += ["", f"![throughput]({data['plot']})", ""]
    return "\n".join(lines)
