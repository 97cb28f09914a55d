"""``python -m train pretrain --env ID``: supervised pre-training an env depends on.

Some envs need a trained model before RL makes sense: Prostate-v0's SAM decoder
(the reward model) and Taxonomy's Phase 1 classifier (the policy's starting point).
Each is named by the env's row (``envs.entry(env_id).pretrain``, ``"module:function"``)
with the signature::

    pretrain(env_id: str, run_dir: pathlib.Path, seed: int, device: str,
             hyperparams: dict[str, Any], env_kwargs: dict[str, Any]) -> dict[str, Any]

``hyperparams`` are the resolved entries of ``train/hyperparams/pretrain.yml`` for
the env id plus command-line overrides; the function validates them (into its own
frozen config dataclass), writes its checkpoint to the env's default checkpoint
location (and a copy into ``run_dir``), and returns the metrics that the CLI writes
to ``run_dir/eval.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import envs
from envs.spec import import_target
from train.config import UsageError

__all__ = ["pretrainer"]


def pretrainer(env_id: str) -> Callable[..., dict[str, Any]]:
    """The pre-training function of ``env_id``; the error lists the envs that have one."""
    row = envs.ENTRIES.get(env_id)
    if row is None or row.pretrain is None:
        valid = ", ".join(sorted(e.id for e in envs.ENTRIES.values() if e.pretrain is not None)) or "(none yet)"
        raise ValueError(f"no pre-training for env {env_id!r}; envs with one: {valid}")
    return import_target(row.pretrain, f"pre-training of {env_id}", UsageError)
