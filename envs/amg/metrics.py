"""AnisotropicAMG-v0 science metrics: what a solve cost, from episode infos.

A *solve record* is a dict with ``reward`` (the env's: log of the reference solver's
work per digit over this one's), ``solver_failed`` and, for successful solves,
``pcg_iterations`` (to ||r|| < 1e-8 ||b||), ``operator_complexity``, ``work``
(operator complexity x PCG iterations: fine-level matvec equivalents),
``work_per_digit``, ``setup_seconds`` (PyAMG setup) and ``solve_seconds`` (PCG), wall
clock (in multi-level mode the setup from the final C list; the env's level-by-level
build that showed the levels is not counted). Episodes give one
(:func:`solve_record`); PyAMG's own strength measures give them directly.

:func:`summarise_solves` reports ``mean_reward`` / ``std_reward`` (over all solves,
failures scoring ``FAILURE_REWARD``), ``mean_<metric>`` over successful solves,
``mean_policy_seconds`` (the agent's ``predict``: the cost of choosing C, not in the
setup) where known, ``n_failed`` (left out of the means) and ``n_episodes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.amg.solver import SolveResult
from envs.episodes import EpisodeRecord
from rewards.amg import FAILURE_REWARD, relative_work_reward

__all__ = ["SOLVE_METRICS", "solve_record", "solver_record", "summarise", "summarise_solves"]

SOLVE_METRICS = ("pcg_iterations", "operator_complexity", "work", "work_per_digit", "setup_seconds", "solve_seconds")


def summarise_solves(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over successful solves (rewards over all, failures scoring FAILURE_REWARD)."""
    ok = [r for r in records if not r["solver_failed"]]
    summary: dict[str, Any] = {"mean_reward": float(np.mean([r["reward"] for r in records]))}
    summary["std_reward"] = float(np.std([r["reward"] for r in records]))
    for key in SOLVE_METRICS:
        summary[f"mean_{key}"] = float(np.mean([r[key] for r in ok])) if ok else None
    if all("policy_seconds" in r for r in records):
        summary["mean_policy_seconds"] = float(np.mean([r["policy_seconds"] for r in records]))
    summary["n_failed"] = len(records) - len(ok)
    summary["n_episodes"] = len(records)
    return summary


def solve_record(episode: EpisodeRecord) -> dict[str, Any]:
    """The solve record of one episode; the reward is the env's own."""
    record = {"reward": episode.episode_return, "solver_failed": episode.final_info["solver_failed"]}
    for key in SOLVE_METRICS:
        record[key] = episode.final_info.get(key)
    record["policy_seconds"] = episode.policy_seconds
    return record


def solver_record(result: SolveResult | None, reference: SolveResult) -> dict[str, Any]:
    """The solve record of a direct solve (``None``: it failed), scored against ``reference``."""
    if result is None:
        return {"reward": FAILURE_REWARD, "solver_failed": True}
    reward, _ = relative_work_reward(result.work_per_digit, reference.work_per_digit)
    return {"reward": reward, "solver_failed": False, **{key: getattr(result, key) for key in SOLVE_METRICS}}


def summarise(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """:func:`summarise_solves` of finished episodes."""
    return summarise_solves([solve_record(r) for r in records])
