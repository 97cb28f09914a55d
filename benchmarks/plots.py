"""PNG figures of benchmark results (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from benchmarks.aggregate import IntervalEstimate
    from benchmarks.throughput import Measurement, Ratio

__all__ = ["plot_interval_estimates", "plot_paired_differences", "plot_throughput"]


def plot_interval_estimates(
    estimates: Mapping[str, IntervalEstimate], path: Path, *, xlabel: str, title: str
) -> Path:
    """One row per agent: point estimate and confidence interval (rliable's layout)."""
    names = list(estimates)
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.5 * len(names)))
    for row, name in enumerate(names):
        e = estimates[name]
        ax.barh(row, e.high - e.low, left=e.low, height=0.6, color=f"C{row % 10}", alpha=0.6)
        ax.plot([e.point], [row], marker="D", color="black", markersize=5)
        ax.annotate(f"{e.point:.3g}", (e.point, row), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.4, -0.7)
    lowest = min(e.low for e in estimates.values())
    highest = max(e.high for e in estimates.values())
    pad = 0.08 * (highest - lowest) or 0.5  # bars are sticky, so margins() does not pad
    ax.set_xlim(lowest - pad, highest + pad)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_paired_differences(differences: Mapping[str, Mapping[str, object]], path: Path, *, title: str) -> Path:
    """One row per rule: its mean work minus a reference's with the paired 95 % interval
    (``{"mean": m, "ci95": [lo, hi]}``, as ``benchmarks.amg_tolerance.paired_difference`` gives)."""
    from benchmarks.aggregate import IntervalEstimate

    estimates = {name: IntervalEstimate(float(d["mean"]), *map(float, d["ci95"])) for name, d in differences.items()}
    return plot_interval_estimates(estimates, path, xlabel="mean work minus evolution's (< 0: less work)", title=title)


def plot_throughput(measurements: Sequence[Measurement], ratios: Sequence[Ratio], path: Path, *, title: str) -> Path:
    """Left: env-steps/s against the number of envs per backend (log-log). Right: speed-ups."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, backend in enumerate(dict.fromkeys(m.backend for m in measurements)):
        rows = sorted((m for m in measurements if m.backend == backend), key=lambda m: m.num_envs)
        dashed = "--" if backend in {r.slow for r in ratios} else "-"
        left.plot([m.num_envs for m in rows], [m.env_steps_per_s for m in rows], dashed, marker="o",
                  color=f"C{i}", label=backend)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("number of envs N")
    left.set_ylabel("env steps / s (median of repeats)")
    left.grid(which="both", alpha=0.3)
    left.legend(fontsize=8)
    pairs = list(dict.fromkeys((r.fast, r.slow) for r in ratios))
    sizes = sorted({r.num_envs for r in ratios})
    width = 0.8 / max(len(pairs), 1)
    for j, (fast, slow) in enumerate(pairs):
        by_n = {r.num_envs: r for r in ratios if (r.fast, r.slow) == (fast, slow)}
        xs = [k + (j - (len(pairs) - 1) / 2) * width for k in range(len(sizes))]
        values = [by_n[n].ratio for n in sizes]
        errors = [[by_n[n].ratio - by_n[n].min_ratio for n in sizes], [by_n[n].max_ratio - by_n[n].ratio for n in sizes]]
        bars = right.bar(xs, values, width, yerr=errors, capsize=3, label=f"{fast} / {slow}", color=f"C{j + 4}")
        right.bar_label(bars, labels=[f"{v:.3g}x" for v in values], fontsize=8)
    right.axhline(1.0, color="black", linewidth=0.8)
    right.set_yscale("log")
    right.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    right.set_xlabel("number of envs N")
    right.set_ylabel("speed-up (median, min-max over repeats)")
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
