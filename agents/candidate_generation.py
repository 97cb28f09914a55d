"""Mass candidate generation for one patient (HYDRA-BERT section 5.2), in constant memory.

The seed sampled ~13M designs per patient from the trained policy and kept every one in
a Python list of dicts (about 10 GB per patient). Here designs are drawn in batches of
``batch_size``, scored with the outcome model in one call per batch, and folded into a
:class:`agents.hydrogel_designs.TopDesigns` table (the best ``top_k`` distinct designs
with every prediction) and a :class:`agents.hydrogel_designs.DesignSummary` (statistics
of all of them); memory is one batch plus the table, whatever ``n``.

Batch ``b`` draws with its own seed (:func:`agents.hydrogel_designs.batch_seed`), so the
result depends only on (policy, patient, ``n``, ``batch_size``, ``seed``): not on which
process or machine scores which batch (batches may be scored anywhere and folded in
batch order) and not on interruptions: :func:`generate_candidates`
saves its state every ``checkpoint_every`` designs and resumes from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.hydrogel_designs import (
    DesignSummary, ScoredDesigns, TopDesigns, batch_seed, patient_observations, sample_designs, score_designs,
)
from envs.cache import is_complete, publish, temporary_path
from envs.hydrogel.problem import DesignProblem

__all__ = ["GenerationConfig", "GenerationState", "generate_batch", "generate_candidates", "CHECKPOINT_NAME", "reduce_batch"]

CHECKPOINT_NAME = "generation_state.npz"


@dataclass(frozen=True)
class GenerationConfig:
    """How many designs, in what batches, keeping how many."""

    n: int = 13_000_000
    batch_size: int = 65_536
    top_k: int = 1000
    seed: int = 0
    checkpoint_every: int = 1_000_000
    """Designs between saved states (rounded up to whole batches)."""

    def __post_init__(self) -> None:
        for name in ("n", "batch_size", "top_k", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def batch_rows(self, batch: int) -> int:
        return min(self.batch_size, self.n - batch * self.batch_size)


@dataclass
class GenerationState:
    """Where a generation job stands: the next batch, the table and the statistics."""

    config: GenerationConfig
    next_batch: int = 0
    top: TopDesigns = field(default_factory=TopDesigns)
    summary: DesignSummary = field(default_factory=DesignSummary)
    seconds: float = 0.0
    """Wall time spent generating, over every resumed segment."""

    @property
    def done(self) -> bool:
        return self.next_batch >= self.config.n_batches

    @classmethod
    def start(cls, config: GenerationConfig, checkpoint: Path | None, identity: dict[str, Any]) -> GenerationState:
        """The job's saved state at ``checkpoint`` if there is one, else a fresh state."""
        saved = cls.load(checkpoint, config, identity) if checkpoint is not None else None
        return saved or cls(config, top=TopDesigns(config.top_k))

    def fold(self, best: ScoredDesigns, summary: DesignSummary) -> None:
        """Add the next batch, as :func:`reduce_batch` left it (batches must be folded in order)."""
        self.top.update(best)
        self.summary.merge(summary)
        self.next_batch += 1

    def save_if_due(self, checkpoint: Path | None, identity: dict[str, Any], started: float) -> float:
        """Save every ``checkpoint_every`` designs and at the end, adding the time since
        ``started`` to :attr:`seconds`; returns the new start of the clock."""
        per_checkpoint = max(1, self.config.checkpoint_every // self.config.batch_size)
        if checkpoint is None or (self.next_batch % per_checkpoint and not self.done):
            return started
        now = time.perf_counter()
        self.seconds += now - started
        self.save(checkpoint, identity)
        return now

    def save(self, path: Path, identity: dict[str, Any]) -> None:
        """Atomically (temporary file + rename + completeness record)."""
        meta = {"config": asdict(self.config), "next_batch": self.next_batch, "seconds": self.seconds,
                "summary": self.summary.to_json(), "identity": identity}
        tmp = temporary_path(path)
        with tmp.open("wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **self.top.state())
        publish(tmp, path)

    @classmethod
    def load(cls, path: Path, config: GenerationConfig, identity: dict[str, Any]) -> GenerationState | None:
        """The saved state at ``path`` if it belongs to this job, None if there is none.

        A state of another job (other patient, model, seed or batch size) is an error, not
        silently overwritten."""
        if not is_complete(path):
            return None
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
        saved = GenerationConfig(**meta["config"])
        same = {k: v for k, v in asdict(saved).items() if k not in ("n", "checkpoint_every")}
        if same != {k: v for k, v in asdict(config).items() if k not in ("n", "checkpoint_every")} \
                or meta["identity"] != identity:
            raise ValueError(
                f"{path} holds another generation job ({meta['identity']}, {meta['config']}); use another --out"
                " or delete it"
            )
        if saved.n != config.n and (saved.n % config.batch_size or config.n < saved.n):
            raise ValueError(
                f"{path} holds a job of n={saved.n}; it can only grow to a larger n when n was a whole number"
                f" of batches ({config.batch_size}), so that the result equals a fresh run's"
            )
        return cls(config, meta["next_batch"], TopDesigns.from_state(arrays),
                   DesignSummary.from_json(meta["summary"]), meta["seconds"])


def reduce_batch(scored: ScoredDesigns, top_k: int) -> tuple[ScoredDesigns, DesignSummary]:
    """A batch reduced to what folding needs: its best ``top_k`` distinct designs (they hold
    every design of the batch that can enter the overall top-k) and its statistics."""
    top = TopDesigns(top_k)
    top.update(scored)
    summary = DesignSummary()
    summary.update(scored)
    assert top.best is not None
    return top.best, summary


def generate_batch(policy: Any, problem: DesignProblem, patient: int, config: GenerationConfig, batch: int) -> ScoredDesigns:
    """Draw and score batch ``batch`` of the job (pure: the same inputs give the same designs)."""
    rows = config.batch_rows(batch)
    observations = patient_observations(problem, patient, rows)
    designs = sample_designs(policy, observations, seed=batch_seed(config.seed, batch))
    return score_designs(problem, patient, designs, first_order=batch * config.batch_size)


def generate_candidates(
    policy: Any,
    problem: DesignProblem,
    patient: int,
    config: GenerationConfig,
    checkpoint: Path | None = None,
    identity: dict[str, Any] | None = None,
    on_batch: Callable[[GenerationState, int], None] | None = None,
) -> GenerationState:
    """Run (or resume, from ``checkpoint``) the job; ``on_batch(state, rows)`` after each batch."""
    if not 0 <= patient < len(problem):
        raise ValueError(f"patient must be an index in [0, {len(problem)}), got {patient}")
    identity = identity or {}
    state = GenerationState.start(config, checkpoint, identity)
    started = time.perf_counter()
    while not state.done:
        batch = state.next_batch
        state.fold(*reduce_batch(generate_batch(policy, problem, patient, config, batch), config.top_k))
        if on_batch is not None:
            on_batch(state, config.batch_rows(batch))
        started = state.save_if_due(checkpoint, identity, started)
    state.seconds += time.perf_counter() - started
    return state
