"""Env-steps per second of batched torch envs against per-env Python loops, as ratios.

Two pairs are timed in the same process, interleaved repeat by repeat so that load
from other jobs hits both sides alike:

==================  ==================================================================
``torch-vector``    ``gym.make_vec(env_id, N)``: the env's torch ``VectorEnv`` (one
                    batched step for all N envs), on ``device``
``gym-sync``        ``gym.make_vec(env_id, N, vectorization_mode="sync")``: Gymnasium's
                    ``SyncVectorEnv`` looping over N single envs (CPU)
``sb3-torch``       the SB3 ``VecEnv`` adapter over the torch batch that
                    ``python -m train`` uses with ``vec_env: torch``, on ``device``
``sb3-dummy``       SB3 ``DummyVecEnv`` of N single envs in their SB3-facing wrapper
                    (what ``vec_env: dummy`` trains on), CPU
==================  ==================================================================

Single envs stay on the CPU whatever ``device`` says: that is how they run best.
Actions are pre-sampled (seeded) and cycled, so sampling is not timed; observations
are returned as NumPy by every backend, so device-to-host copies are timed. The
reported ratio is the median over repeats of (fast steps/s) / (slow steps/s) measured
back to back; absolute steps/s depend on the machine and its load and are reported
for context only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm.auto import tqdm

import envs
from envs.spec import import_target
from train.config import UsageError

__all__ = [
    "Backend", "PAIRS", "Measurement", "Ratio", "TimingPlan", "as_json", "measure_throughput",
    "throughput_envs",
]


class Backend(str, Enum):
    """How N envs are stepped (see the module table)."""

    TORCH_VECTOR = "torch-vector"
    GYM_SYNC = "gym-sync"
    SB3_TORCH = "sb3-torch"
    SB3_DUMMY = "sb3-dummy"


PAIRS: tuple[tuple[Backend, Backend], ...] = (
    (Backend.TORCH_VECTOR, Backend.GYM_SYNC),
    (Backend.SB3_TORCH, Backend.SB3_DUMMY),
)
"""(batched, per-env loop) pairs whose steps/s ratio is reported."""

@dataclass(frozen=True)
class Measurement:
    """Steps/s of one backend at one ``num_envs``."""

    backend: str
    num_envs: int
    env_steps_per_s: float
    """Median over repeats of num_envs * vector steps / seconds."""
    repeats_env_steps_per_s: tuple[float, ...]
    vector_steps: tuple[int, ...]
    """Vector steps timed in each repeat."""
    setup_s: float
    """Construction and first reset (not in the rate)."""


@dataclass(frozen=True)
class Ratio:
    """Speed-up of the batched backend over the per-env loop at one ``num_envs``."""

    fast: str
    slow: str
    num_envs: int
    ratio: float
    """Median over repeats of fast / slow steps/s, each repeat timed back to back."""
    min_ratio: float
    max_ratio: float


def throughput_envs() -> list[str]:
    """Env ids with a torch vector entry point (the ones this benchmark can time)."""
    return [env_id for env_id in envs.ENV_IDS if gym.registry[env_id].vector_entry_point is not None]


class _Stepper:
    """A built backend: ``step()`` advances all envs once with the next pooled action."""

    def __init__(self, venv: Any, actions: list[Any], step: Callable[[Any, Any], None]) -> None:
        self.venv, self.actions, self._step, self._next = venv, actions, step, 0

    def step(self) -> None:
        self._step(self.venv, self.actions[self._next % len(self.actions)])
        self._next += 1

    def close(self) -> None:
        self.venv.close()


def _build(backend: Backend, env_id: str, n: int, device: str, env_kwargs: dict[str, Any], pool: int) -> _Stepper:
    rng = np.random.default_rng(0)
    if backend in (Backend.TORCH_VECTOR, Backend.GYM_SYNC):
        if backend is Backend.TORCH_VECTOR:
            venv = gym.make_vec(env_id, num_envs=n, device=device, **env_kwargs)
        else:
            venv = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", **env_kwargs)
        venv.reset(seed=0)
        venv.action_space.seed(0)
        actions = [venv.action_space.sample() for _ in range(pool)]
        return _Stepper(venv, actions, lambda v, a: v.step(a))
    if backend is Backend.SB3_TORCH:
        factory = import_target(envs.entry(env_id).sb3_vec_env, "vec_env", UsageError)
        venv: VecEnv = factory(env_id, n, 0, {**env_kwargs, "device": device})
    else:
        wrapper = import_target(envs.entry(env_id).sb3_wrapper, "env_wrapper", UsageError)
        venv = DummyVecEnv([lambda: wrapper(gym.make(env_id, **env_kwargs)) for _ in range(n)])
        venv.seed(0)
    venv.reset()
    low, high = venv.action_space.low, venv.action_space.high
    actions = [rng.uniform(low, high, size=(n, *low.shape)).astype(np.float32) for _ in range(pool)]
    return _Stepper(venv, actions, lambda v, a: v.step(a))


def _timed(stepper: _Stepper, steps: int, min_seconds: float) -> tuple[int, float]:
    """Step at least ``steps`` times and for at least ``min_seconds``; (steps, seconds)."""
    done, start = 0, time.perf_counter()
    while True:
        stepper.step()
        done += 1
        elapsed = time.perf_counter() - start
        if done >= steps and elapsed >= min_seconds:
            return done, elapsed


@dataclass(frozen=True)
class TimingPlan:
    """How each backend is timed (see :func:`measure_throughput`)."""

    steps: int
    repeats: int
    warmup: int
    min_seconds: float
    device: str
    env_kwargs: dict[str, Any]

    def __post_init__(self) -> None:
        for name, value, least in (("steps", self.steps, 1), ("repeats", self.repeats, 1), ("warmup", self.warmup, 0)):
            if not isinstance(value, int) or value < least:
                raise UsageError(f"--{name} must be an integer >= {least}, got {value!r}")
        if self.min_seconds < 0:
            raise UsageError(f"--min-seconds must be >= 0, got {self.min_seconds!r}")


def measure_throughput(
    env_id: str,
    num_envs: list[int],
    *,
    steps: int,
    repeats: int = 3,
    warmup: int = 2,
    min_seconds: float = 0.5,
    device: str = "cpu",
    env_kwargs: dict[str, Any] | None = None,
) -> tuple[list[Measurement], list[Ratio]]:
    """Time every backend pair of :data:`PAIRS` at each ``num_envs``.

    Args:
        env_id: an id of :func:`throughput_envs`.
        num_envs: batch sizes N to time.
        steps: vector steps per timed repeat (at least; see ``min_seconds``).
        repeats: timed repeats per backend, interleaved between the two of a pair.
        warmup: untimed vector steps after the first reset.
        min_seconds: a repeat keeps stepping until this long, so fast backends are
            timed over more than a few milliseconds.
        device: torch device of the batched backends.
        env_kwargs: passed to every env (single and batched).
    """
    if env_id not in throughput_envs():
        raise UsageError(f"no torch vector env for {env_id!r}; throughput can time: {', '.join(throughput_envs())}")
    if not num_envs or any(not isinstance(n, int) or n < 1 for n in num_envs):
        raise UsageError(f"--num-envs must be integers >= 1, got {num_envs!r}")
    plan = TimingPlan(steps, repeats, warmup, min_seconds, device, dict(env_kwargs or {}))
    row = envs.entry(env_id)
    has_sb3 = row.sb3_vec_env is not None and row.sb3_wrapper is not None  # the adapter has the wrapper's action layout
    pairs = [pair for pair in PAIRS if Backend.SB3_TORCH not in pair or has_sb3]
    measurements: list[Measurement] = []
    ratios: list[Ratio] = []
    with tqdm(total=len(num_envs) * len(pairs) * repeats * 2, desc=f"throughput {env_id}", unit="timing") as progress:
        for n in num_envs:
            for pair in pairs:
                pair_measurements, ratio = _measure_pair(env_id, n, pair, plan, progress)
                measurements += pair_measurements
                ratios.append(ratio)
    return measurements, ratios


def _measure_pair(
    env_id: str, n: int, pair: tuple[Backend, Backend], plan: TimingPlan, progress: tqdm
) -> tuple[list[Measurement], Ratio]:
    """Build both backends at ``n`` envs, then time them in alternation."""
    built: dict[Backend, _Stepper] = {}
    setup: dict[Backend, float] = {}
    rates: dict[Backend, list[float]] = {b: [] for b in pair}
    counts: dict[Backend, list[int]] = {b: [] for b in pair}
    try:
        for backend in pair:
            progress.set_postfix_str(f"N={n} building {backend.value}")
            start = time.perf_counter()
            built[backend] = _build(backend, env_id, n, plan.device, plan.env_kwargs, pool=min(plan.steps, 8))
            for _ in range(plan.warmup):
                built[backend].step()
            setup[backend] = time.perf_counter() - start
        for _ in range(plan.repeats):
            for backend in pair:
                progress.set_postfix_str(f"N={n} {backend.value}")
                done, seconds = _timed(built[backend], plan.steps, plan.min_seconds)
                rates[backend].append(n * done / seconds)
                counts[backend].append(done)
                progress.update()
    finally:
        for stepper in built.values():
            stepper.close()
    measurements = [
        Measurement(b.value, n, statistics.median(rates[b]), tuple(rates[b]), tuple(counts[b]), round(setup[b], 3))
        for b in pair
    ]
    per_repeat = [fast / slow for fast, slow in zip(rates[pair[0]], rates[pair[1]])]
    ratio = Ratio(pair[0].value, pair[1].value, n, statistics.median(per_repeat), min(per_repeat), max(per_repeat))
    return measurements, ratio


def as_json(measurements: list[Measurement], ratios: list[Ratio]) -> dict[str, Any]:
    """Plain data for throughput.json."""
    return {"measurements": [asdict(m) for m in measurements], "ratios": [asdict(r) for r in ratios]}
