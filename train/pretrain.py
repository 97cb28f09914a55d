"""``python -m train pretrain --env ID``: supervised pre-training an env depends on.

Some envs need a trained model before RL makes sense: Prostate-v0's SAM decoder
(the reward model) and Taxonomy's Phase 1 classifier (the policy's starting point).
Each is a function registered here by env id as ``"module:function"`` with the
signature::

    pretrain(env_id: str, run_dir: pathlib.Path, seed: int, device: str,
             hyperparams: dict[str, Any], env_kwargs: dict[str, Any]) -> dict[str, Any]

``hyperparams`` are the resolved entries of ``train/hyperparams/pretrain.yml`` for
the env id plus command-line overrides; the function validates them (into its own
frozen config dataclass), writes its checkpoint to the env's default checkpoint
location (and a copy into ``run_dir``), and returns the metrics that the CLI writes
to ``run_dir/eval.json``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["PRETRAINERS", "pretrainer"]

PRETRAINERS: dict[str, str] = {
    "Taxonomy-v0": "train.pretrain_taxonomy:pretrain",
    "TaxonomyMultitask-v0": "train.pretrain_taxonomy:pretrain",
    "Prostate-v0": "train.pretrain_prostate:pretrain",
}


def pretrainer(env_id: str) -> Callable[..., dict[str, Any]]:
    """The pre-training function for ``env_id``; the error lists the envs that have one."""
    try:
        target = PRETRAINERS[env_id]
    except KeyError:
        valid = ", ".join(sorted(PRETRAINERS)) or "(none yet)"
        raise ValueError(f"no pre-training for env {env_id!r}; envs with one: {valid}") from None
    module_name, _, fn_name = target.partition(":")
    return getattr(importlib.import_module(module_name), fn_name)
