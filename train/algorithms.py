"""The algorithms ``python -m train ALGO`` knows, by CLI name.

Every algorithm is SB3-shaped: ``Algo(policy, env: VecEnv, seed=..., device=...,
tensorboard_log=..., verbose=..., **hyperparams)`` with ``learn``, ``predict``,
``save`` and ``Algo.load``. Classes are named by import string so that listing the
choices (e.g. for an error message) imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["AlgorithmSpec", "ALGORITHMS", "algorithm_spec"]


@dataclass(frozen=True)
class AlgorithmSpec:
    """One trainable algorithm."""

    name: str
    """CLI name, also the stem of ``train/hyperparams/<name>.yml``."""
    target: str
    """``"module:Class"`` of the algorithm class."""
    uses_action_masks: bool = False
    """True when ``predict`` takes ``action_masks=`` (sb3-contrib's maskable API)."""

    def load_class(self) -> type:
        """Import and return the algorithm class."""
        module_name, _, class_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec("ppo", "stable_baselines3:PPO"),
        AlgorithmSpec("a2c", "stable_baselines3:A2C"),
        AlgorithmSpec("maskable-ppo", "sb3_contrib:MaskablePPO", uses_action_masks=True),
        AlgorithmSpec("reinforce", "agents.reinforce:Reinforce"),
        AlgorithmSpec("row-ppo", "agents.row_ppo:RowPPO"),
        AlgorithmSpec("vec-ppo", "agents.vec_ppo:VecPPO"),
        AlgorithmSpec("grpo", "agents.grpo:GRPO", uses_action_masks=True),
    )
}


def algorithm_spec(name: str) -> AlgorithmSpec:
    """Look an algorithm up by CLI name; the error lists the valid names."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        valid = ", ".join(sorted([*ALGORITHMS, "pretrain"]))
        raise ValueError(f"unknown algorithm {name!r}; choose one of: {valid}") from None
