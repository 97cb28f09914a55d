"""The learning-curve PNG of a run: from the Monitor files its training envs wrote, or,
for trainers that keep episodes on device (``vec-ppo``), from ``rollout/ep_rew_mean``
in its ``progress.csv``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from stable_baselines3.common.monitor import LoadMonitorResultsError, load_results  # noqa: E402

__all__ = ["plot_learning_curve"]


def plot_learning_curve(
    monitor_dir: Path, out_path: Path, title: str, window: int = 100, progress_csv: Path | None = None
) -> Path:
    """Episode return against env steps (raw points and a ``window``-episode mean)."""
    try:
        frame = load_results(str(monitor_dir)).sort_values("t")
    except LoadMonitorResultsError:
        frame = pd.DataFrame()
    if frame.empty:
        if progress_csv is None or not progress_csv.exists():
            raise FileNotFoundError(f"no episodes in {monitor_dir} and no progress.csv to plot from")
        return _plot_progress(pd.read_csv(progress_csv), out_path, title)
    steps = np.cumsum(frame["l"].to_numpy())  # (episodes,)
    returns = frame["r"].to_numpy()  # (episodes,)
    window = max(1, min(window, len(returns)))
    smoothed = np.convolve(returns, np.ones(window) / window, mode="valid")  # (episodes - window + 1,)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, returns, ".", ms=2, alpha=0.15, label="episode return")
    ax.plot(steps[window - 1:], smoothed, lw=2, label=f"mean of {window} episodes")
    return _save(fig, ax, title, out_path)


def _plot_progress(progress: pd.DataFrame, out_path: Path, title: str) -> Path:
    """Mean episode return per rollout, as logged by the trainer."""
    rows = progress.dropna(subset=["rollout/ep_rew_mean", "time/total_timesteps"])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rows["time/total_timesteps"], rows["rollout/ep_rew_mean"], lw=2, label="mean episode return (rollout)")
    return _save(fig, ax, title, out_path)


def _save(fig: plt.Figure, ax: plt.Axes, title: str, out_path: Path) -> Path:
    """Shared axes labels and styling, then write the PNG."""
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
