"""The record each env id carries: everything other layers need to know about it.

Like Gymnasium's ``EnvSpec``, a row names its parts by import string (``"module:attr"``)
so that ``import envs`` stays cheap; :func:`import_target` is the one place that turns
such a string into the object. The training CLI, the evaluation loop, pre-training and
the benchmarks read these rows; none of them keeps its own table keyed by env id.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["CaseSchedule", "EnvEntry", "EvalProtocol", "ReferenceAgent", "import_target"]


def import_target(target: str, what: str, error: type[Exception] = ValueError) -> Any:
    """Import ``"module:attr"``; a malformed or missing target raises ``error`` naming
    ``what`` it was for (the training CLI passes its one-line ``UsageError``)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise error(f"{what}: expected 'module:Name', got {target!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise error(f"{what}: cannot import {target!r} ({err})") from None


class CaseSchedule(str, Enum):
    """Which test cases an evaluation of ``n`` episodes plays, and with which reset seeds.

    ``cycle``: episode i replays case ``i mod n_cases`` with seed ``seed + i``.
    ``passes``: every case, ``ceil(n / n_cases)`` times (at least once); case c of pass p
    has seed ``seed + p * n_cases + c``.
    ``sample``: every case once when ``n >= n_cases``, else ``n`` cases drawn without
    replacement by ``default_rng(seed)`` (sorted); the k-th has seed ``seed + k``.
    """

    CYCLE = "cycle"
    PASSES = "passes"
    SAMPLE = "sample"


@dataclass(frozen=True)
class ReferenceAgent:
    """A non-learning agent every evaluation reports next to the agent under test."""

    name: str
    """Key in ``eval.json["baselines"]``."""
    factory: str
    """``"module:function"`` with signature ``(env, agent, seed) -> Agent``: ``env`` is
    the env it will play (its action space is the one to act in), ``agent`` the agent
    under test (some baselines copy its settings, e.g. AMG's edges per row)."""
    env_kwargs: Mapping[str, Any] | None = None
    """``None``: play the agent's own (wrapped) env. A mapping: play a fresh, unwrapped
    env made with the test kwargs updated by these (baselines that read the raw
    observation)."""
    passes: int | None = None
    """Passes over the test cases (``passes`` schedule); ``None``: as many as the agent."""
    min_passes: int = 1
    """At least this many passes (random baselines: lower noise)."""


@dataclass(frozen=True)
class EvalProtocol:
    """How a family scores an agent on its test split."""

    metrics: str
    """``"module:function"``: ``(list[EpisodeRecord]) -> dict`` with at least
    ``mean_reward``, ``std_reward`` and ``n_episodes``: a pure function of the records."""
    test_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"split": "test"})
    """Overrides of the user's env kwargs for every evaluation env."""
    schedule: CaseSchedule = CaseSchedule.CYCLE
    default_episodes: int = 10
    warm_up: bool = False
    """Call the agent's ``predict`` once before timing it (``policy_seconds``)."""
    extras: str | None = None
    """``"module:function"`` ``(EvalContext) -> dict``: more keys for the result; a
    ``"baselines"`` mapping in it is merged into the reference agents' results (for
    references that are not agents, e.g. PyAMG's own strength measures)."""
    headline_metrics: tuple[str, ...] = ()
    """Keys of the metrics' result a domain expert reads first (leaderboard tables)."""
    reference: str | None = None
    """Name in ``baselines`` of the env's documented reference (its oracle or best-known
    method): the benchmark suite's normalised score is 0 for random and 1 for it."""
    plots: str | None = None
    """``"module:function"`` ``(result: dict, out_dir: Path) -> list[Path]``: PNGs drawn from
    an evaluation result (e.g. risk-coverage curves), written by the training CLI into the
    run dir next to ``eval.json``."""
    transfer: tuple[str, str] | None = None
    """``(list_kwarg, env_kwarg)``: the evaluation is repeated, under
    ``result["transfer"][str(v)]``, for every value v listed in ``env_kwargs[list_kwarg]``
    with ``env_kwarg=v`` (AMG: ``("transfer_grid_sizes", "grid_size")``)."""


@dataclass(frozen=True)
class EnvEntry:
    """One registered env id: how to build it, train on it, and score it."""

    id: str
    entry_point: str
    """``"module:Class"`` of the single env (passed to ``gym.register``)."""
    evaluation: EvalProtocol
    reference_agents: tuple[ReferenceAgent, ...] = ()
    vector_entry_point: str | None = None
    """``"module:Class"`` of a batched (torch) ``gymnasium.vector.VectorEnv``."""
    sb3_wrapper: str | None = None
    """``"module:Class"``: the wrapper that makes the single env SB3-facing, if it needs one."""
    sb3_vec_env: str | None = None
    """``"module:function"`` ``(env_id, n_envs, seed, env_kwargs) -> VecEnv``: a batched
    SB3 ``VecEnv`` with the SB3-facing action layout (``vec_env: torch`` in training)."""
    pretrain: str | None = None
    """``"module:function"``: the supervised pre-training the env depends on
    (``python -m train pretrain --env ID``; signature in ``train.pretrain``)."""
    summary: str = ""
    """One line: what the agent decides."""

    def gym_kwargs(self) -> dict[str, Any]:
        """The arguments of ``gym.register`` for this id."""
        kwargs: dict[str, Any] = {"id": self.id, "entry_point": self.entry_point}
        if self.vector_entry_point is not None:
            kwargs["vector_entry_point"] = self.vector_entry_point
        return kwargs
