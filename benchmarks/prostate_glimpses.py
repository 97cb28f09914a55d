"""Prostate-v0: how much of the lesion each agent's glimpses see, on the train and test splits.

``python -m benchmarks.prostate_glimpses --agent SPEC [--agent SPEC ...] [--split train test] [--out FILE]``

The decoder sees the image only inside the glimpses of the chosen points, so a core's
score can only be as good as the placement. This measures the placement itself, on the
phantom's lesion ground truth (a real cohort has none, and the command says so): for
every cancerous core of a split (involvement > 0, the label of the core AUROC), the share of its lesion area inside the agent's
glimpses (``lesion_share``), and whether any glimpsed cell is a lesion cell (at least
:data:`~envs.prostate.reward_training.LESION_CELL_FRACTION` lesion; ``hit_rate``), next
to the agent's absolute mean reward and core AUROC on the same episodes. Run on the
train split too, it tells a policy that placed well on the cores it trained on but not
on new ones (overfitting) from one that never learned to place.

``SPEC`` is any ``python -m benchmarks evaluate --agent`` value that plays Prostate-v0
(a run dir, ``reference:hypoechoic``, ...); every core of the split is played once with
evaluation seed 0, deterministically.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs
from agents.baselines.prostate import glimpse_visibility
from agents.evaluation import ReferencePlayer, play, schedule_episodes
from benchmarks.agent_spec import AgentSpec, build_agent, parse_agent_spec
from benchmarks.provenance import provenance
from envs.episodes import EpisodeRecord
from envs.prostate.metrics import summarise
from envs.prostate.reward_training import LESION_CELL_FRACTION, lesion_area_fractions
from envs.spec import CaseSchedule
from train.config import UsageError
from train.runner import build_wrapper

__all__ = ["ENV_ID", "glimpse_coverage", "measure", "main"]

ENV_ID = "Prostate-v0"


def glimpse_coverage(records: list[EpisodeRecord], env: gym.Env) -> dict[str, Any]:
    """``lesion_share`` and ``hit_rate`` over the cancerous cores of ``records`` (module doc)."""
    core = env.unwrapped
    grid, radius = core.grid_size, core.glimpse_radius
    visible = glimpse_visibility(grid, radius)  # (G*G, G*G)
    core_ids = [r.final_info["core_id"] for r in records]
    fractions = lesion_area_fractions(core.cohort, core_ids, grid)  # (N, G, G)
    if fractions is None:
        raise UsageError(f"the cohort {core.cohort.root} has no lesion masks: glimpse coverage needs the phantom's")
    shares, hits = [], []
    for record, fraction in zip(records, fractions.reshape(len(records), -1), strict=True):
        total = float(fraction.sum())
        if record.final_info["involvement"] <= 0 or total <= 0:  # benign (the label AUROC uses): nothing to find
            continue
        cells = [row * grid + col for row, col in record.final_info["points"]]
        seen = visible[cells].any(axis=0) if cells else np.zeros(grid * grid, dtype=bool)  # (G*G,)
        shares.append(float(fraction[seen].sum()) / total)
        hits.append(bool((fraction[seen] >= LESION_CELL_FRACTION).any()))
    return {
        "cancerous_cores": len(shares),
        "lesion_share": float(np.mean(shares)) if shares else None,
        "hit_rate": float(np.mean(hits)) if hits else None,
    }


def _play_split(spec: AgentSpec, split: str, seed: int) -> dict[str, Any]:
    kwargs = {**spec.env_kwargs(ENV_ID), **envs.entry(ENV_ID).evaluation.test_kwargs, "split": split}  # plain rewards
    env = gym.make(ENV_ID, **kwargs)
    wrap = build_wrapper(spec.env_wrapper())
    if wrap is not None:
        env = wrap(env)
    try:
        agent = build_agent(spec, env.action_space, seed, "cpu", ENV_ID)
        if isinstance(agent, ReferencePlayer):
            agent = agent.bind(env, seed)
        episodes = schedule_episodes(CaseSchedule.PASSES, env.unwrapped.n_cases, env.unwrapped.n_cases, seed)
        records = play(agent, env, episodes)
        metrics = summarise(records)
        return {
            "cores": len(records), "mean_reward": metrics["mean_reward"], "core_auroc": metrics["core_auroc"],
            **glimpse_coverage(records, env),
        }
    finally:
        env.close()


def measure(specs: list[str], splits: list[str], seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """``{agent label: {split: figures}}``; labels made unique by their order (``A``, ``A#2``)."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for text in specs:
        spec = parse_agent_spec(text)
        if not spec.runs_on(ENV_ID):
            raise UsageError(f"agent {text!r} does not play {ENV_ID}")
        label, n = spec.label, 2
        while label in results:
            label, n = f"{spec.label}#{n}", n + 1
        results[label] = {}
        for split in splits:
            results[label][split] = _play_split(spec, split, seed)
            print(json.dumps({"agent": label, "split": split, **results[label][split]}), flush=True)
    return results


def _markdown(results: dict[str, dict[str, dict[str, Any]]], splits: list[str]) -> str:
    def fmt(value: Any) -> str:
        return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    header = "| agent | " + " | ".join(
        f"{s} {name}" for s in splits for name in ("reward", "AUROC", "lesion share", "hit rate")
    ) + " |"
    lines = [header, "|---" * (1 + 4 * len(splits)) + "|"]
    for label, by_split in results.items():
        cells = [fmt(by_split[s][k]) for s in splits for k in ("mean_reward", "core_auroc", "lesion_share", "hit_rate")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prostate_glimpses", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", action="append", required=True, help="an agent spec (as for benchmarks evaluate)")
    parser.add_argument("--split", nargs="+", default=["train", "test"], choices=["train", "val", "test"])
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed (random agents, reset seeds)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/prostate_glimpses.json"))
    args = parser.parse_args(argv)
    try:
        results = measure(args.agent, args.split, args.seed)
    except UsageError as err:
        parser.error(str(err))
    command = shlex.join(["python", "-m", "benchmarks.prostate_glimpses", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "provenance": {**provenance([]), "command": command}}, indent=2) + "\n")
    print(_markdown(results, args.split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
