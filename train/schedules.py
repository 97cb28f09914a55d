"""Learning-rate (and clip-range) schedules written as strings in hyperparams files.

RL Zoo spelling: ``lin_3e-4`` decays linearly from 3e-4 to 0; ``cos_3e-4`` follows a
half cosine from 3e-4 to 0 (the seed's CosineAnnealingLR). SB3 calls a schedule with
``progress_remaining`` going from 1 (start) to 0 (end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["LinearSchedule", "CosineSchedule", "parse_schedule"]


@dataclass(frozen=True)
class LinearSchedule:
    """``initial * progress_remaining``; a picklable class so checkpoints reload."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


@dataclass(frozen=True)
class CosineSchedule:
    """``initial * (1 + cos(pi * (1 - progress_remaining))) / 2``."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * 0.5 * (1.0 + math.cos(math.pi * (1.0 - progress_remaining)))


_PREFIXES = {"lin_": LinearSchedule, "cos_": CosineSchedule}


def parse_schedule(key: str, value: Any) -> Any:
    """Turn ``"lin_3e-4"`` / ``"cos_3e-4"`` into a schedule; pass anything else through."""
    if not isinstance(value, str):
        return value
    for prefix, schedule in _PREFIXES.items():
        if value.startswith(prefix):
            number = value[len(prefix):]
            try:
                return schedule(float(number))
            except ValueError:
                raise ValueError(
                    f"hyperparameter {key!r}: cannot read {value!r} as a schedule;"
                    f" expected e.g. 'lin_3e-4' or 'cos_3e-4'"
                ) from None
    return value
