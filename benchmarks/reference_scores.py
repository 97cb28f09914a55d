"""Fixed reference scores per env: what "normalised score 0" and "1" mean.

A normalised score is ``(score - random) / (reference - random)`` on the env's test
split with its default kwargs, where ``random`` is the mean reward of the env's
``random`` reference agent and ``reference`` that of its documented reference
(``EvalProtocol.reference``: an oracle or best-known method). The numbers live in
``benchmarks/reference_scores.json`` so that a new agent's normalised score means the
same thing tomorrow whatever else is in the run; ``python -m benchmarks references``
recomputes them (and ``--check`` compares the file with the code).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

import envs
from agents.baselines.common import RandomAgent
from agents.evaluation import evaluate

__all__ = ["REFERENCE_FILE", "ReferenceScore", "compute_reference_score", "load_reference_scores", "write_reference_scores"]

REFERENCE_FILE = Path(__file__).with_name("reference_scores.json")
REFERENCE_SEED = 0
"""Evaluation seed of the reference scores (the test cases are the env's, pinned)."""


@dataclass(frozen=True)
class ReferenceScore:
    """One env's fixed normalisation."""

    env_id: str
    random: float
    """Mean reward of the ``random`` reference agent (normalised 0)."""
    reference: float
    """Mean reward of the documented reference (normalised 1)."""
    reference_name: str
    episodes: int
    seed: int

    def normalise(self, score: float) -> float:
        """``(score - random) / (reference - random)``."""
        return (score - self.random) / (self.reference - self.random)


def compute_reference_score(env_id: str, episodes: int | None = None, seed: int = REFERENCE_SEED) -> ReferenceScore:
    """Evaluate the env's reference agents on its test split with default kwargs (by
    default on every test case once)."""
    row = envs.entry(env_id)
    name = row.evaluation.reference
    if name is None:
        raise ValueError(f"{env_id} names no reference (EvalProtocol.reference in envs/__init__.py)")
    env = gym.make(env_id, **dict(row.evaluation.test_kwargs))
    space, n_cases = env.action_space, int(env.unwrapped.n_cases)
    env.close()
    n = n_cases if episodes is None else episodes  # default: every test case once
    result = evaluate(RandomAgent(space, seed=seed), env_id, n_episodes=n, seed=seed)
    baselines = result["baselines"]
    if name not in baselines:
        raise ValueError(f"{env_id}: reference {name!r} is not among its baselines {sorted(baselines)}")
    low, high = float(baselines["random"]["mean_reward"]), float(baselines[name]["mean_reward"])
    if not high > low:
        raise ValueError(f"{env_id}: reference {name!r} ({high:.4g}) does not beat random ({low:.4g})")
    return ReferenceScore(env_id, low, high, name, n, seed)


def load_reference_scores(path: Path = REFERENCE_FILE) -> dict[str, ReferenceScore]:
    """The committed reference scores by env id (empty when the file does not exist)."""
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return {env_id: ReferenceScore(env_id=env_id, **entry) for env_id, entry in data["envs"].items()}


def write_reference_scores(scores: Sequence[ReferenceScore], command: str, path: Path = REFERENCE_FILE) -> None:
    """Merge ``scores`` into the file (other envs' entries are kept)."""
    current = load_reference_scores(path)
    current.update({s.env_id: s for s in scores})
    entries = {env_id: {k: v for k, v in asdict(s).items() if k != "env_id"} for env_id, s in sorted(current.items())}
    data = {"about": __doc__.split("\n\n")[0], "command": command, "envs": entries}
    path.write_text(json.dumps(data, indent=2) + "\n")
