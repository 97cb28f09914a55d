"""AnisotropicAMG-v0: choose the strong connections PyAMG aggregates along."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
from gymnasium import spaces

from envs.amg.graph import EDGE_FEATURE_NAMES, GridGraph, grid_graph, observation, strength_matrix
from envs.amg.problems import DiffusionProblem, right_hand_side, split_problems
from envs.amg.solver import SolveResult, SolverFailure, StrengthMeasure, finest_level_strength, solve
from envs.splits import Split, parse_split
from rewards.amg import FAILURE_REWARD, relative_work_reward
from rewards.choices import parse_choice

__all__ = ["AnisotropicAMGEnv", "DEFAULT_EDGES_PER_ROW"]

DEFAULT_EDGES_PER_ROW = 4
"""k of the per-row top-k policies and baselines (the env itself accepts any edge set).
Four neighbours per row, symmetrised, can express every two-axis aggregation pattern,
the family the best fixed patterns come from (see README)."""


def _as_int(value: Any, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{field} must be an integer, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{field} must be {allowed}, got {value}")
    return int(value)


class AnisotropicAMGEnv(gym.Env):
    """Select, for one anisotropic diffusion matrix, the strong connections of AMG.

    ## Description
    The matrix is the 9-point finite-difference discretisation of
    -div(Q diag(1, eps) Q^T grad u) = f on an n x n grid (:mod:`envs.amg.problems`).
    The agent selects a set S of off-diagonal edges; C = sym(S) + I becomes the
    strength-of-connection matrix of PyAMG's smoothed-aggregation solver on the
    finest level, and ``coarse_strength`` is used on every level below
    (:mod:`envs.amg.solver`). The hierarchy preconditions PCG on a seeded
    right-hand side. Single step: one matrix, one C, one reward.

    ## Action Space
    ``MultiBinary(E)``: bit e = 1 selects edge e = (i, j) of the observation's edge
    list (E = 2 n (n - 1) * 2 + 4 (n - 1)^2: 7,812 at n = 32). Every bit pattern is
    valid: C = (S or S^T) + I. Policies usually pick k edges per row
    (:data:`DEFAULT_EDGES_PER_ROW`); the env does not require it and reports the
    resulting ``strong_edges_per_row``. An action outside the space (wrong shape,
    a value other than 0/1) raises ``ValueError``.

    ## Observation Space
    ``Dict`` of fixed size for a given n (N = n^2 nodes, E edges, m =
    ``n_smoothed_vectors``):

    | key | shape | dtype | meaning | range |
    |---|---|---|---|---|
    | node_features | (N, m + 2) | float32 | m random vectors after 5 weighted-Jacobi sweeps (omega 2/3) on A e = 0, z-scored; then grid coordinates ix/(n-1), iy/(n-1) | [-sqrt N, sqrt N]; [0, 1] |
    | edge_index | (2, E) | int64 | [source; target] node of each edge, sorted by source then target (CSR order), the same for every matrix of size n | [0, N - 1] |
    | edge_features | (E, 8) | float32 | :data:`envs.amg.graph.EDGE_FEATURE_NAMES`: A_ij / row max abs, -A_ij / A_ii, doubled-angle direction (cos 2phi, sin 2phi: the same for (i, j) and its mirror edge), is-diagonal, algebraic distance of the smoothed vectors / row max, alignment with the row's strong diffusion direction, the row's anisotropy | [-1, 1] |

    ## Rewards
    ``log(W_baseline / W)`` with W = operator complexity / -log10(rho), the work per
    digit of accuracy (:mod:`rewards.amg`); rho is the mean PCG residual reduction per
    iteration to ||r|| < 1e-8 ||b||. The baseline is PyAMG with ``coarse_strength`` on
    *every* level (the default ``symmetric``: PyAMG's own default, theta = 0), same B =
    ones, same options, same right-hand side, so only the finest-level C differs.
    0 = as good as the baseline; > 0 = less work. A PyAMG failure (exception,
    numerical warning, no residual reduction) gives ``FAILURE_REWARD`` = -log 8 and
    ``info["solver_failed"] = True``; successful solves are floored at the same value
    (``info["reward_floored"]``). Deterministic for a given seed and action.

    ``info``: ``case``, ``epsilon``, ``theta``, ``solver_failed``, ``reward_floored``,
    ``invalid_action`` (always False: every bit pattern is a valid C),
    ``strong_edges_per_row``, and for the learned C and the baseline
    (``baseline_`` prefix): ``pcg_iterations``, ``converged``, ``convergence_factor``,
    ``operator_complexity``, ``levels``, ``work`` (complexity x iterations),
    ``work_per_digit``, and with ``report_timings=True`` ``setup_seconds`` and
    ``solve_seconds`` (wall clock, so not reproducible: off by default, so that equal
    seeds and actions give equal infos). The learned-C entries are None when the
    solver failed.

    ## Starting State
    A case drawn uniformly from the split with the env's ``np_random`` (or
    ``reset(options={"case": i})``); the smoothed node vectors are drawn from
    ``np_random`` too. The right-hand side is fixed per case
    (:func:`envs.amg.problems.right_hand_side`), so the baseline is cached per case.

    ## Episode End
    - Termination: after the single step.
    - Truncation: never.

    ## Arguments
    ``grid_size`` (32; unknowns per side, >= 2; 64 and 128 for transfer),
    ``split`` ("train" 256 cases / "val" 32 / "test" 32, disjoint parameters),
    ``coarse_strength`` (:class:`StrengthMeasure`: "symmetric" default, as the source
    system; "evolution"; "symmetric_0.25"), ``n_smoothed_vectors`` (4),
    ``max_iterations`` (300 PCG iterations), ``problem_seed`` (0: which parameter draw),
    ``report_timings`` (False: add wall-clock setup/solve seconds to ``info``).

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        grid_size: int = 32,
        split: Split | str = "train",
        coarse_strength: StrengthMeasure | str = "symmetric",
        n_smoothed_vectors: int = 4,
        max_iterations: int = 300,
        problem_seed: int = 0,
        report_timings: bool = False,
    ) -> None:
        self.grid_size = _as_int(grid_size, "grid_size", 2)
        self.n_smoothed_vectors = _as_int(n_smoothed_vectors, "n_smoothed_vectors", 1)
        self.max_iterations = _as_int(max_iterations, "max_iterations", 1)
        self.problem_seed = _as_int(problem_seed, "problem_seed", 0)
        if not isinstance(report_timings, bool):
            raise TypeError(f"report_timings must be a bool, got {report_timings!r}")
        self.report_timings = report_timings
        self.coarse_strength = parse_choice(StrengthMeasure, coarse_strength, "coarse_strength")
        self.split = parse_split(split)
        self.problems: list[DiffusionProblem] = split_problems(self.split, self.grid_size, self.problem_seed)
        self.graph: GridGraph = grid_graph(self.grid_size)
        n_nodes, n_edges = self.graph.n_nodes, self.graph.n_edges
        self.observation_space = spaces.Dict(
            {
                # a z-score of N values is at most sqrt(N - 1) in magnitude
                "node_features": spaces.Box(
                    -np.sqrt(n_nodes), np.sqrt(n_nodes), (n_nodes, self.n_smoothed_vectors + 2), np.float32
                ),
                "edge_index": spaces.Box(0, n_nodes - 1, (2, n_edges), np.int64),
                "edge_features": spaces.Box(-1.0, 1.0, (n_edges, len(EDGE_FEATURE_NAMES)), np.float32),
            }
        )
        self.action_space = spaces.MultiBinary(n_edges)
        self._baselines: dict[int, SolveResult] = {}
        self._case: int | None = None

    # -- public helpers (also used by benchmarks.amg) -------------------------------------
    def rhs(self, case: int) -> np.ndarray:
        """The seeded right-hand side of ``case``."""
        return right_hand_side(self.problem_seed, self.split, case, self.graph.n_nodes)

    def baseline(self, case: int) -> SolveResult:
        """PyAMG with ``coarse_strength`` on every level for ``case`` (cached)."""
        if case not in self._baselines:
            matrix = self.problems[case].matrix()
            self._baselines[case] = solve(matrix, self.coarse_strength.pyamg_argument(), self.rhs(case), self.max_iterations)
        return self._baselines[case]

    def strength_of(self, action: np.ndarray) -> sp.csr_array:
        """C = sym(S) + I for a MultiBinary action (validated)."""
        return strength_matrix(self._selected_edges(action), self.graph)

    # -- Gymnasium API -------------------------------------------------------------------
    @property
    def n_cases(self) -> int:
        """Problems in this split; ``reset(options={"case": i})`` takes i in [0, n_cases)."""
        return len(self.problems)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"case"}
        if unknown:
            raise ValueError(f"reset options: unknown keys {sorted(unknown)}; valid: ['case']")
        if "case" in options:
            case = _as_int(options["case"], 'options["case"]', 0, len(self.problems) - 1)
        else:
            case = int(self.np_random.integers(len(self.problems)))
        self._case = case
        problem = self.problems[case]
        obs = observation(problem.matrix(), self.graph, self.n_smoothed_vectors, self.np_random)
        return obs, {"case": case, "epsilon": problem.epsilon, "theta": problem.theta}

    def _selected_edges(self, action: Any) -> np.ndarray:
        array = np.asarray(action)
        if array.shape != (self.graph.n_edges,):
            raise ValueError(f"action must have shape ({self.graph.n_edges},) (one bit per edge), got {array.shape}")
        if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
            raise ValueError("action must contain only 0 and 1 (MultiBinary)")
        return array.astype(bool)

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._case is None:
            raise RuntimeError("step() called before reset(), or after the episode terminated; call reset()")
        selected = self._selected_edges(action)
        case, self._case = self._case, None
        problem = self.problems[case]
        matrix = problem.matrix()
        baseline = self.baseline(case)
        C = strength_matrix(selected, self.graph)
        info: dict[str, Any] = {
            "case": case,
            "epsilon": problem.epsilon,
            "theta": problem.theta,
            "invalid_action": False,
            "strong_edges_per_row": (C.nnz - self.graph.n_nodes) / self.graph.n_nodes,
            **{f"baseline_{k}": v for k, v in self._metrics(baseline).items()},
        }
        try:
            result = solve(matrix, finest_level_strength(C, self.coarse_strength), self.rhs(case), self.max_iterations)
        except SolverFailure as failure:
            reward, floored = FAILURE_REWARD, False
            info.update({k: None for k in self._metrics(baseline)}, solver_failed=True, failure=str(failure))
        else:
            reward, floored = relative_work_reward(result.work_per_digit, baseline.work_per_digit)
            info.update(self._metrics(result), solver_failed=False)
        info["reward_floored"] = floored
        obs = observation(matrix, self.graph, self.n_smoothed_vectors, self.np_random)
        return obs, float(reward), True, False, info

    def _metrics(self, result: SolveResult) -> dict[str, Any]:
        metrics = {
            "pcg_iterations": result.pcg_iterations,
            "converged": result.converged,
            "convergence_factor": result.convergence_factor,
            "operator_complexity": result.operator_complexity,
            "levels": result.levels,
            "work": result.work,
            "work_per_digit": float(result.work_per_digit),
        }
        if self.report_timings:
            metrics.update(setup_seconds=result.setup_seconds, solve_seconds=result.solve_seconds)
        return metrics
