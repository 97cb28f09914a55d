"""Ray (the ``[ray]`` extra) for the jobs that outgrow one machine.

* :func:`ray_session`: ``ray.init`` for ``--ray`` (``local``: start a Ray instance on
  this machine; an address such as ``ray://head:10001`` or ``auto``: join that cluster),
  shut down afterwards if this call started it.
* :func:`generate_candidates_ray`: :func:`agents.candidate_generation.generate_candidates`
  with each batch drawn and scored as a Ray task (1 CPU, or 1 GPU with a CUDA policy).
  Each task returns only its batch's top-k distinct designs and its statistics (a batch's
  top-k contains every design of that batch that can be in the overall top-k), and the
  driver folds them in batch order with at most ``2 x cluster CPUs`` batches in flight,
  so the driver's memory stays constant and the ranked table equals the local path's for
  the same seed (the workers run torch with one thread, as the CLI's default).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agents.candidate_generation import GenerationConfig, GenerationState, generate_batch, reduce_batch
from agents.hydrogel_designs import DesignSummary, ScoredDesigns
from envs.hydrogel.problem import DesignProblem
from train.config import UsageError

__all__ = ["ray_session", "import_ray", "generate_candidates_ray", "score_batch"]


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install -e '.[ray]'") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str = "local", num_cpus: int | None = None) -> Iterator[Any]:
    """A connected Ray (see module doc); yields the ``ray`` module."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def score_batch(policy: Any, problem: DesignProblem, patient: int, config: GenerationConfig,
                batch: int) -> tuple[ScoredDesigns, DesignSummary]:
    """One batch on a worker (one torch thread, as the CLI's default), reduced for the driver."""
    import torch

    torch.set_num_threads(1)
    return reduce_batch(generate_batch(policy, problem, patient, config, batch), config.top_k)


def generate_candidates_ray(
    policy: Any,
    problem: DesignProblem,
    patient: int,
    config: GenerationConfig,
    checkpoint: Path | None = None,
    identity: dict[str, Any] | None = None,
    address: str = "local",
    on_batch: Callable[[GenerationState, int], None] | None = None,
    num_cpus: int | None = None,
) -> GenerationState:
    """As :func:`agents.candidate_generation.generate_candidates`, batches as Ray tasks."""
    if not 0 <= patient < len(problem):
        raise ValueError(f"patient must be an index in [0, {len(problem)}), got {patient}")
    identity = identity or {}
    state = GenerationState.start(config, checkpoint, identity)
    with ray_session(address, num_cpus) as ray:
        gpu = 1 if getattr(policy.device, "type", "cpu") == "cuda" else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpu)(score_batch)
        policy_ref, problem_ref = ray.put(policy), ray.put(problem)
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        pending: dict[Any, int] = {}
        ready: dict[int, tuple[ScoredDesigns, DesignSummary]] = {}
        submitted, started = state.next_batch, time.perf_counter()
        while not state.done:
            while submitted < config.n_batches and len(pending) + len(ready) < window:
                pending[remote.remote(policy_ref, problem_ref, patient, config, submitted)] = submitted
                submitted += 1
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                ready[pending.pop(ref)] = ray.get(ref)
            while state.next_batch in ready:  # fold in batch order
                batch = state.next_batch
                state.fold(*ready.pop(batch))
                if on_batch is not None:
                    on_batch(state, config.batch_rows(batch))
                started = state.save_if_due(checkpoint, identity, started)
        state.seconds += time.perf_counter() - started
    return state
