"""PyAMG smoothed aggregation in the loop: build a hierarchy for a given strength of
connection and measure the PCG solve it preconditions.

Every solver compared here is ``pyamg.smoothed_aggregation_solver`` with the same
B = ones (one near-nullspace vector), ``max_coarse`` and smoother defaults; only the
strength-of-connection argument differs. A learned C is passed in PyAMG's *list*
form ``[('predefined', {'C': C}), coarse]`` so that it applies to the finest level and
``coarse`` to every level below: the bare tuple form would make PyAMG stop at two
levels with a large direct coarse solve (defect 1 of the source system).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pyamg
import scipy.sparse as sp
from pyamg.aggregation.aggregation import _extend_hierarchy
from pyamg.krylov import cg
from pyamg.multilevel import MultilevelSolver
from pyamg.util.utils import levelize_smooth_or_improve_candidates

__all__ = [
    "MAX_COARSE",
    "MAX_LEVELS",
    "LevelByLevelHierarchy",
    "PYAMG_GLOBAL_SEED",
    "RTOL",
    "SolveResult",
    "SolverFailure",
    "StrengthMeasure",
    "finest_level_strength",
    "per_level_strength",
    "pinned_global_numpy_rng",
    "solve",
]

RTOL = 1.0e-8
"""PCG stops when ||r|| < RTOL ||b|| (2-norm, unpreconditioned residual)."""
MAX_COARSE = 10
"""PyAMG's default: levels are added until the coarsest has at most this many unknowns."""
MAX_LEVELS = 10
"""PyAMG's default ``max_levels``: at most MAX_LEVELS - 1 coarsenings (agent steps)."""


class StrengthMeasure(str, Enum):
    """PyAMG strength-of-connection measures used as baselines and below the finest level.

    - ``symmetric``: |A_ij| >= 0 * sqrt(|A_ii A_jj|): every matrix entry is strong (PyAMG's default).
    - ``symmetric_0.25``: the classical threshold variant, theta = 0.25.
    - ``evolution``: Olson, Schroder and Tuminaro's evolution measure (PyAMG defaults).
    """

    SYMMETRIC = "symmetric"
    SYMMETRIC_025 = "symmetric_0.25"
    EVOLUTION = "evolution"

    def pyamg_argument(self) -> tuple[str, dict[str, Any]]:
        """The ``strength=`` entry PyAMG expects for this measure."""
        if self is StrengthMeasure.SYMMETRIC:
            return ("symmetric", {"theta": 0.0})
        if self is StrengthMeasure.SYMMETRIC_025:
            return ("symmetric", {"theta": 0.25})
        return ("evolution", {})


class SolverFailure(RuntimeError):
    """PyAMG could not build a hierarchy, or PCG did not reduce the residual."""


@dataclass(frozen=True)
class SolveResult:
    """What one setup + PCG solve cost."""

    pcg_iterations: int
    """Iterations to ||r|| < RTOL ||b||, or ``max_iterations`` when not reached."""
    converged: bool
    final_relative_residual: float
    convergence_factor: float
    """Mean residual reduction per PCG iteration, (||r_k|| / ||r_0||)^(1/k)."""
    operator_complexity: float
    """sum of nnz(A_l) over levels / nnz(A_0): the cost of a V-cycle in fine-level matvecs."""
    levels: int
    setup_seconds: float
    solve_seconds: float

    @property
    def work(self) -> float:
        """operator complexity x PCG iterations: fine-level matvec equivalents of the solve."""
        return self.operator_complexity * self.pcg_iterations

    @property
    def work_per_digit(self) -> float:
        """operator complexity / -log10(convergence factor): work per decimal digit of residual reduction."""
        return self.operator_complexity / -np.log10(self.convergence_factor)


PYAMG_GLOBAL_SEED = 0
"""PyAMG's spectral-radius estimate (used to smooth the prolongator) starts from
``np.random.rand``, NumPy's *global* RNG, so the hierarchy (and the iteration count)
would differ from call to call. :func:`solve` pins that stream to this seed and gives
the caller's global state back afterwards, so equal inputs give equal results."""


@contextmanager
def pinned_global_numpy_rng(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def finest_level_strength(C: sp.csr_array, coarse: StrengthMeasure) -> list[tuple[str, dict[str, Any]]]:
    """PyAMG's list form: the predefined C on the finest level, ``coarse`` below."""
    return [("predefined", {"C": sp.csr_matrix(C)}), coarse.pyamg_argument()]


def per_level_strength(
    strengths: list[sp.csr_array], rest: StrengthMeasure | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """PyAMG's list form with C_l on level l; ``rest`` (if given) on every level below the list."""
    levels = [("predefined", {"C": sp.csr_matrix(C)}) for C in strengths]
    return levels + ([rest.pyamg_argument()] if rest is not None else [])


_DEFAULT_SMOOTH = ("jacobi", {"omega": 4.0 / 3.0})
_DEFAULT_IMPROVE = (("block_gauss_seidel", {"sweep": "symmetric", "iterations": 4}), None)


class LevelByLevelHierarchy:
    """PyAMG's SA setup (B = ones, default options) advanced one coarsening per call.

    ``coarsen(C)`` runs exactly the code ``smoothed_aggregation_solver`` runs for level
    l with ``('predefined', {'C': C})`` (aggregation, candidate improvement, tentative
    and smoothed prolongator, Galerkin product), with NumPy's global RNG (used by the
    prolongation smoother's spectral-radius estimate) continued from the previous level
    and seeded with :data:`PYAMG_GLOBAL_SEED` at the start, as :func:`solve` does.
    """

    def __init__(self, matrix: sp.csr_array) -> None:
        operator = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        operator.symmetry = "hermitian"
        level = MultilevelSolver.Level()
        level.A, level.B = operator, np.ones((operator.shape[0], 1))
        self.levels = [level]
        self._smooth = levelize_smooth_or_improve_candidates(_DEFAULT_SMOOTH, MAX_LEVELS)
        self._improve = levelize_smooth_or_improve_candidates(_DEFAULT_IMPROVE, MAX_LEVELS)
        state = np.random.get_state()
        np.random.seed(PYAMG_GLOBAL_SEED)
        self._rng_state = np.random.get_state()
        np.random.set_state(state)

    @property
    def operator(self) -> sp.csr_matrix:
        """The coarsest operator built so far (the one the next C applies to)."""
        return self.levels[-1].A

    @property
    def finished(self) -> bool:
        """PyAMG's stopping rule: MAX_LEVELS levels, or at most MAX_COARSE unknowns."""
        return len(self.levels) >= MAX_LEVELS or self.operator.shape[0] <= MAX_COARSE

    def coarsen(self, C: sp.csr_array) -> sp.csr_matrix:
        """Aggregate the current level along C; returns AggOp (fine x coarse, 0/1 CSR)."""
        if self.finished:
            raise RuntimeError("the hierarchy is complete: no level left to coarsen")
        depth = len(self.levels) - 1
        strength = [None] * depth + [("predefined", {"C": sp.csr_matrix(C)})]
        caller_state = np.random.get_state()
        np.random.set_state(self._rng_state)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                _extend_hierarchy(self.levels, strength, ["standard"] * (depth + 1), self._smooth, self._improve,
                                  False, True)
        except (ValueError, ArithmeticError, RuntimeWarning, np.linalg.LinAlgError, IndexError) as err:
            raise SolverFailure(f"{type(err).__name__}: {err}") from err
        finally:
            self._rng_state = np.random.get_state()
            np.random.set_state(caller_state)
        return self.levels[-2].AggOp


def solve(
    matrix: sp.csr_array,
    strength: tuple[str, dict[str, Any]] | list[tuple[str, dict[str, Any]]],
    rhs: np.ndarray,
    max_iterations: int = 300,
) -> SolveResult:
    """Set up SA with ``strength`` and B = ones, then PCG (one V-cycle as preconditioner) from x0 = 0.

    Raises :class:`SolverFailure` when PyAMG raises or warns about a numerical failure,
    or PCG reduces the residual by nothing (convergence factor >= 1 or not finite).
    """
    operator = sp.csr_matrix(matrix)
    ones = np.ones((operator.shape[0], 1))
    try:
        with warnings.catch_warnings(), pinned_global_numpy_rng(PYAMG_GLOBAL_SEED):
            warnings.simplefilter("error", RuntimeWarning)
            start = time.perf_counter()
            hierarchy = pyamg.smoothed_aggregation_solver(operator, B=ones, strength=strength, max_coarse=MAX_COARSE)
            setup_seconds = time.perf_counter() - start
            residuals: list[float] = []
            start = time.perf_counter()
            cg(operator, rhs, x0=np.zeros_like(rhs), tol=RTOL, maxiter=max_iterations,
               M=hierarchy.aspreconditioner(cycle="V"), residuals=residuals)
            solve_seconds = time.perf_counter() - start
            complexity = float(hierarchy.operator_complexity())
    except (ValueError, ArithmeticError, RuntimeWarning, np.linalg.LinAlgError, IndexError) as err:
        raise SolverFailure(f"{type(err).__name__}: {err}") from err
    iterations = len(residuals) - 1
    relative = residuals[-1] / residuals[0] if residuals and residuals[0] > 0 else float("nan")
    factor = relative ** (1.0 / iterations) if iterations > 0 else float("nan")
    if not (np.isfinite(factor) and 0.0 < factor < 1.0 and np.isfinite(complexity)):
        raise SolverFailure(f"PCG did not reduce the residual (factor {factor!r} after {iterations} iterations)")
    return SolveResult(
        pcg_iterations=iterations,
        converged=bool(relative < RTOL),
        final_relative_residual=float(relative),
        convergence_factor=float(factor),
        operator_complexity=complexity,
        levels=len(hierarchy.levels),
        setup_seconds=setup_seconds,
        solve_seconds=solve_seconds,
    )
