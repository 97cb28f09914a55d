"""AnisotropicAMG-v0 reward: the work saved per digit of accuracy, relative to PyAMG's
own strength of connection on the same instance with the same test vector.

``W = operator_complexity / -log10(rho)`` is the cost (in fine-level matvec
equivalents of V-cycles) of gaining one decimal digit of residual reduction, with rho
the measured mean PCG residual reduction per iteration. The reward is
``log(W_baseline / W)``: 0 when the learned C does as well as the baseline, log(2)
when it halves the work. Iterations alone would reward denser, costlier hierarchies;
W charges for the operator complexity they add. A solver failure gets
``FAILURE_REWARD``, and no successful solve is scored below it.
"""

from __future__ import annotations

import math

__all__ = ["FAILURE_REWARD", "work_per_digit", "relative_work_reward"]

FAILURE_REWARD = -math.log(8.0)
"""Reward of a failed setup/solve, as if it cost 8 times the baseline's work (about -2.08)."""


def work_per_digit(operator_complexity: float, convergence_factor: float) -> float:
    """Operator complexity / -log10(rho); requires 0 < rho < 1 and complexity >= 1."""
    if not 0.0 < convergence_factor < 1.0:
        raise ValueError(f"convergence_factor must be in (0, 1), got {convergence_factor!r}")
    if not operator_complexity >= 1.0:
        raise ValueError(f"operator_complexity must be >= 1, got {operator_complexity!r}")
    return operator_complexity / -math.log10(convergence_factor)


def relative_work_reward(work: float, baseline_work: float) -> tuple[float, bool]:
    """``(max(log(baseline_work / work), FAILURE_REWARD), floored)``; both works must be > 0."""
    if not (work > 0.0 and baseline_work > 0.0 and math.isfinite(work) and math.isfinite(baseline_work)):
        raise ValueError(f"work and baseline_work must be finite and > 0, got {work!r} and {baseline_work!r}")
    reward = math.log(baseline_work / work)
    return max(reward, FAILURE_REWARD), reward < FAILURE_REWARD
