"""The risk-coverage PNG of a Taxonomy evaluation: every agent whose scores allow a sweep.

Named by the ``plots`` hook of the Taxonomy rows (:class:`~envs.spec.EvalProtocol`): the
training CLI calls :func:`plot_risk_coverage` with the evaluation result and the run dir.
matplotlib is imported on call, so ``import envs`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_risk_coverage"]

FILENAME = "risk_coverage.png"


def _curves(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> ``risk_coverage`` block, the agent first, then baselines that have one."""
    curves = {}
    if result.get("risk_coverage"):
        curves["agent"] = result["risk_coverage"]
    for name, baseline in (result.get("baselines") or {}).items():
        if isinstance(baseline, dict) and baseline.get("risk_coverage"):
            curves[name] = baseline["risk_coverage"]
    return curves


def plot_risk_coverage(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Selective risk against coverage for the whole chain and per rank, one line per
    agent (AURC in the legend); writes ``risk_coverage.png``. No curves, no file."""
    curves = _curves(result)
    if not curves:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = list(next(iter(curves.values()))["per_rank"])
    panels = ["chain", *ranks]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), sharey=False)
    for ax, panel in zip(axes, panels):
        for label, block in curves.items():
            metrics = block["chain"] if panel == "chain" else block["per_rank"][panel]
            curve = metrics["curve"]
            style = {"lw": 2.2, "color": "black"} if label == "agent" else {"lw": 1.2}
            ax.plot(curve["coverage"], curve["risk"], label=f"{label} ({metrics['aurc']:.3f})", **style)
        ax.set_title("whole chain" if panel == "chain" else panel)
        ax.set_xlabel("coverage")
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="AURC", title_fontsize=7)
    axes[0].set_ylabel("selective risk")
    title = f"{result.get('env_id', 'Taxonomy')}: risk-coverage on the test split"
    if "seed" in result:
        title += f" (seed {result['seed']})"
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_dir) / FILENAME
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]
