"""AnisotropicAMG-v0: choose the strong connections PyAMG aggregates along."""

from __future__ import annotations

from enum import Enum
from typing import Any

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
from gymnasium import spaces

from envs.amg.candidates import CANDIDATE_FEATURE_BOUND, CANDIDATE_FEATURE_NAMES, candidate_aggregation_features
from envs.amg.graph import (
    EDGE_FEATURE_NAMES,
    EVOLUTION_FEATURE_NAMES,
    FIRST_TOLERANCE_COLUMN,
    GridGraph,
    LevelGraph,
    coarse_coordinates,
    evolution_edge_features,
    grid_coordinates,
    grid_graph,
    level_graph,
    observation,
    operator_edge_features,
    smoothed_vectors,
    strength_matrix,
    tolerance_feature_names,
)
from envs.amg.problems import Problem, ProblemFamily, right_hand_side, split_problems
from envs.amg.solver import (
    MAX_LEVELS,
    LevelByLevelHierarchy,
    SolveResult,
    SolverFailure,
    StrengthMeasure,
    finest_level_strength,
    per_level_strength,
    solve,
)
from envs.splits import Split, parse_split
from rewards.amg import FAILURE_REWARD, relative_work_reward
from rewards.choices import parse_choice

__all__ = ["AnisotropicAMGEnv", "DEFAULT_EDGES_PER_ROW", "EDGE_CAPACITY_FACTOR", "EpisodeMode"]

DEFAULT_EDGES_PER_ROW = 4
"""k of the per-row top-k policies and baselines (the env itself accepts any edge set).
Four neighbours per row, symmetrised, can express every two-axis aggregation pattern,
the family the best fixed patterns come from (see README)."""


EDGE_CAPACITY_FACTOR = 2
"""Multi-level mode pads every level's edge list to this many times the finest level's
edges (coarse SA operators are denser; measured at 32 x 32: <= 0.3 x E for 4 edges per
row, 1.05 x E for 1 random edge per row)."""
OPERATOR_FEATURE_CACHE_BYTES = 64 * 2**20
"""Memory for the per-case operator edge features (about 250 cases at 32 x 32, 16 at 128 x 128)."""


class EpisodeMode(str, Enum):
    """Where the agent's C is used.

    - ``finest``: one step, C on the finest level, ``coarse_strength`` below (default).
    - ``multilevel``: one step per level, C_l on level l; the env aggregates with C_l and
      shows the next coarse operator.
    """

    FINEST = "finest"
    MULTILEVEL = "multilevel"


def _as_int(value: Any, field: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{field} must be an integer, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{field} must be {allowed}, got {value}")
    return int(value)


def _as_tolerances(value: Any, evolution_features: bool) -> tuple[float, ...]:
    """``evolution_tolerances`` as a tuple of distinct finite floats >= 1 (PyAMG's drop rule needs epsilon >= 1)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"evolution_tolerances must be a list of numbers >= 1, got {value!r}")
    tolerances = tuple(value)
    for t in tolerances:
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not 1.0 <= float(t) < np.inf:
            raise ValueError(f"evolution_tolerances: every entry must be a finite number >= 1, got {t!r}")
    if len(set(float(t) for t in tolerances)) != len(tolerances):
        raise ValueError(f"evolution_tolerances: entries must be distinct, got {list(tolerances)}")
    if tolerances and not evolution_features:
        raise ValueError("evolution_tolerances needs evolution_features=True (its columns follow the evolution features)")
    return tuple(float(t) for t in tolerances)


class AnisotropicAMGEnv(gym.Env):
    """Select, for one anisotropic diffusion matrix, the strong connections of AMG.

    ## Description
    The matrix is the 9-point finite-difference discretisation of
    -div(Q diag(1, eps) Q^T grad u) = f on an n x n grid (:mod:`envs.amg.problems`),
    with constant (eps, theta) (``problem_family="constant"``) or (eps, theta)
    piecewise constant over 2-6 Voronoi regions (``"heterogeneous"``). The agent
    selects sets S of off-diagonal edges; C = sym(S) + I becomes a
    strength-of-connection matrix of PyAMG's smoothed-aggregation solver
    (:mod:`envs.amg.solver`), whose hierarchy preconditions PCG on a seeded
    right-hand side.

    - ``mode="finest"`` (default): one step; C on the finest level, ``coarse_strength``
      on every level below.
    - ``mode="multilevel"``: one step per coarsening. Step l shows level l's operator
      A_l (level 0: the matrix; node coordinates carried down as aggregate centroids),
      the agent selects its edges, the env aggregates along C_l with PyAMG's own level
      code and forms A_{l+1} = P^T A_l P; after the last level (PyAMG's rule: at most
      10 unknowns, or 10 levels) PyAMG builds the hierarchy from the list
      ``[('predefined', {'C': C_0}), ('predefined', {'C': C_1}), ...]`` with the
      reference's B and options, so only C differs, and the PCG solve gives the reward.
      When a coarse level has more edges than the padded capacity
      (:data:`EDGE_CAPACITY_FACTOR` x the finest level's), the episode ends there and
      ``coarse_strength`` is used on the remaining levels (``info["capacity_fallback"]``).

    ## Action Space
    ``MultiBinary(E)``: bit e = 1 selects edge e = (i, j) of the observation's edge
    list. Finest mode: E = 2 n (n - 1) * 2 + 4 (n - 1)^2 (7,812 at n = 32), every bit
    pattern is valid. Multi-level mode: E = :data:`EDGE_CAPACITY_FACTOR` x that; only
    the first ``graph_size[1]`` bits are edges of the current level; a set bit beyond
    them is ignored and flagged ``info["invalid_action"] = True``. Policies usually
    pick k edges per row (:data:`DEFAULT_EDGES_PER_ROW`); the env reports the resulting
    ``strong_edges_per_row``. An action outside the space (wrong shape, a value other
    than 0/1) raises ``ValueError``.

    ## Observation Space
    ``Dict`` of fixed size for a given n (N = n^2 nodes, E edges as above, m =
    ``n_smoothed_vectors``). In multi-level mode level l's N_l nodes and E_l edges
    fill the first rows; the rest is zero padding.

    | key | shape | dtype | meaning | range |
    |---|---|---|---|---|
    | node_features | (N, m + 2), multilevel (N, m + 3) | float32 | m random vectors after 5 weighted-Jacobi sweeps (omega 2/3) on A_l e = 0, z-scored; node coordinates x/(n-1), y/(n-1) (grid index, or aggregate centroid); multilevel: the level index l / 9 | [-sqrt N, sqrt N]; [0, 1]; [0, 1] |
    | edge_index | (2, E) | int64 | [source; target] node of each edge, sorted by source then target (CSR order); finest: the same for every matrix of size n | [0, N - 1] |
    | edge_features | (E, 8), with ``evolution_features`` (E, 10 + len(evolution_tolerances)) | float32 | :data:`envs.amg.graph.EDGE_FEATURE_NAMES` (then :data:`envs.amg.graph.EVOLUTION_FEATURE_NAMES` and the ``evolution_strong_eps{t}`` columns): A_ij / row max abs, -A_ij / sqrt(A_ii A_jj), doubled-angle direction (cos 2phi, sin 2phi: the same for (i, j) and its mirror edge), is-diagonal, algebraic distance of the smoothed vectors / row max, alignment with the row's strong diffusion direction, the row's anisotropy | [-1, 1] |
    | graph_size (multilevel only) | (2,) | int64 | [N_l, E_l] of the current level | [0, E] |
    | candidate_features (with ``evolution_tolerances``) | (len(evolution_tolerances), 2) | float32 | per tolerance t, of PyAMG's standard aggregation along the level's ``evolution_strong_eps{t}`` C: log of the weak approximation of the smoothed vectors by its tentative interpolation, log(N_l / aggregates) (:mod:`envs.amg.candidates`) | [-30, 30] |

    ## Rewards
    ``log(W_baseline / W)`` with W = operator complexity / -log10(rho), the work per
    digit of accuracy (:mod:`rewards.amg`); rho is the mean PCG residual reduction per
    iteration to ||r|| < 1e-8 ||b||. The baseline is PyAMG with ``coarse_strength`` on
    *every* level (the default ``symmetric``: PyAMG's own default, theta = 0), same B =
    ones, same options, same right-hand side, so only C differs. 0 = as good as the
    baseline; > 0 = less work. Multi-level mode: 0 on every step but the last (no
    per-level shaping; the return is the same reward). A PyAMG failure (exception,
    numerical warning, no residual reduction) gives ``FAILURE_REWARD`` = -log 8 and
    ``info["solver_failed"] = True``; successful solves are floored at the same value
    (``info["reward_floored"]``). Deterministic for a given seed and actions.

    ``info`` (last step): ``case``, ``epsilon``, ``theta`` (lists per region, and
    ``n_regions``, for ``heterogeneous``), ``solver_failed``, ``reward_floored``,
    ``invalid_action``, ``strong_edges_per_row`` (of the step's level), ``level``,
    ``capacity_fallback``, and for the learned C and the baseline (``baseline_``
    prefix): ``pcg_iterations``, ``converged``, ``convergence_factor``,
    ``operator_complexity``, ``levels``, ``work`` (complexity x iterations),
    ``work_per_digit``, and with ``report_timings=True`` ``setup_seconds`` and
    ``solve_seconds`` (wall clock, so not reproducible: off by default, so that equal
    seeds and actions give equal infos). The learned-C entries are None when the
    solver failed. Intermediate multi-level steps give ``case``, ``level``,
    ``invalid_action``, ``strong_edges_per_row``, ``coarse_nodes``.

    ## Starting State
    A case drawn uniformly from the split with the env's ``np_random`` (or
    ``reset(options={"case": i})``); the smoothed node vectors are drawn from
    ``np_random`` too. The right-hand side is fixed per case
    (:func:`envs.amg.problems.right_hand_side`), so the baseline is cached per case.

    ## Episode End
    The terminal observation is the last one the agent acted on (nothing follows it).

    - Termination: finest mode after the single step; multi-level mode after the step
      of the last level to coarsen (3 steps at n = 32 with 4 edges per row), a solver
      failure, or a capacity fallback.
    - Truncation: never.

    ## Arguments
    | Parameter | Type | Default | Description |
    |---|---|---|---|
    | grid_size | int | 32 | unknowns per side, >= 2 (64, 128 for transfer) |
    | split | str | "train" | "train" 256 cases / "val" 32 / "test" 256 (32 until 2026-12-06: today's cases 0-31), disjoint parameters |
    | mode | str | "finest" | :class:`EpisodeMode`: ``finest`` or ``multilevel`` |
    | problem_family | str | "constant" | :class:`envs.amg.problems.ProblemFamily`: ``constant`` or ``heterogeneous`` |
    | coarse_strength | str | "symmetric" | :class:`StrengthMeasure` of the reference and of the levels the agent does not choose: ``symmetric`` (theta 0, PyAMG's default), ``evolution``, ``symmetric_0.25`` |
    | n_smoothed_vectors | int | 4 | random smoothed vectors per node |
    | max_iterations | int | 300 | PCG iteration cap |
    | problem_seed | int | 0 | which parameter draw |
    | report_timings | bool | False | add wall-clock setup/solve seconds to ``info`` |
    | evolution_features | bool | False | append :data:`envs.amg.graph.EVOLUTION_FEATURE_NAMES` (PyAMG's evolution measure on the level, with the level's B) to ``edge_features``: (E, 10) |
    | evolution_tolerances | list of float | () | with ``evolution_features``: one more ±1 column per drop tolerance t, ``evolution_strong_eps{t}`` (evolution's C with ``epsilon=t``), for policies that choose a tolerance per level (:class:`policies.tolerance.ToleranceChoicePolicy`): (E, 10 + len), and the ``candidate_features`` key |

    ## Version History
    - v0: initial release; ``mode``, ``problem_family`` and ``evolution_features`` added
      with defaults that keep the original behaviour (the ``is_diagonal`` and ``a_over_diagonal`` features are
      unchanged on constant-coefficient grids). 2026-12-06: the test split grew from 32 to 256
      cases (cases 0-31, train and val unchanged), so that a 1-2 % difference in work is resolvable.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        grid_size: int = 32,
        split: Split | str = "train",
        mode: EpisodeMode | str = "finest",
        problem_family: ProblemFamily | str = "constant",
        coarse_strength: StrengthMeasure | str = "symmetric",
        n_smoothed_vectors: int = 4,
        max_iterations: int = 300,
        problem_seed: int = 0,
        report_timings: bool = False,
        evolution_features: bool = False,
        evolution_tolerances: tuple[float, ...] | list[float] = (),
    ) -> None:
        self.grid_size = _as_int(grid_size, "grid_size", 2)
        self.n_smoothed_vectors = _as_int(n_smoothed_vectors, "n_smoothed_vectors", 1)
        self.max_iterations = _as_int(max_iterations, "max_iterations", 1)
        self.problem_seed = _as_int(problem_seed, "problem_seed", 0)
        if not isinstance(report_timings, bool):
            raise TypeError(f"report_timings must be a bool, got {report_timings!r}")
        self.report_timings = report_timings
        if not isinstance(evolution_features, bool):
            raise TypeError(f"evolution_features must be a bool, got {evolution_features!r}")
        self.evolution_features = evolution_features
        self.evolution_tolerances = _as_tolerances(evolution_tolerances, evolution_features)
        self.edge_feature_names: tuple[str, ...] = EDGE_FEATURE_NAMES + (
            EVOLUTION_FEATURE_NAMES + tolerance_feature_names(self.evolution_tolerances) if evolution_features else ()
        )
        """The columns of ``edge_features``, in order."""
        self.mode = parse_choice(EpisodeMode, mode, "mode")
        self.problem_family = parse_choice(ProblemFamily, problem_family, "problem_family")
        self.coarse_strength = parse_choice(StrengthMeasure, coarse_strength, "coarse_strength")
        self.split = parse_split(split)
        self.problems: list[Problem] = split_problems(self.split, self.grid_size, self.problem_seed, self.problem_family)
        self.graph: GridGraph = grid_graph(self.grid_size)
        self._operator_features: dict[int, np.ndarray] = {}
        """Per case, the fine operator's edge features that do not depend on the random
        vectors (:func:`envs.amg.graph.operator_edge_features`, then the evolution columns
        when enabled), at most
        :data:`OPERATOR_FEATURE_CACHE_BYTES` of them."""
        n_nodes = self.graph.n_nodes
        multilevel = self.mode is EpisodeMode.MULTILEVEL
        self.edge_capacity = self.graph.n_edges * (EDGE_CAPACITY_FACTOR if multilevel else 1)
        n_node_features = self.n_smoothed_vectors + 2 + int(multilevel)
        spaces_ = {
            # a z-score of N values is at most sqrt(N - 1) in magnitude
            "node_features": spaces.Box(-np.sqrt(n_nodes), np.sqrt(n_nodes), (n_nodes, n_node_features), np.float32),
            "edge_index": spaces.Box(0, n_nodes - 1, (2, self.edge_capacity), np.int64),
            "edge_features": spaces.Box(-1.0, 1.0, (self.edge_capacity, len(self.edge_feature_names)), np.float32),
        }
        if multilevel:
            spaces_["graph_size"] = spaces.Box(0, self.edge_capacity, (2,), np.int64)
        if self.evolution_tolerances:
            bound = CANDIDATE_FEATURE_BOUND
            spaces_["candidate_features"] = spaces.Box(
                -bound, bound, (len(self.evolution_tolerances), len(CANDIDATE_FEATURE_NAMES)), np.float32)
        self.observation_space = spaces.Dict(spaces_)
        self.action_space = spaces.MultiBinary(self.edge_capacity)
        self._baselines: dict[int, SolveResult] = {}
        self._case: int | None = None
        self._hierarchy: LevelByLevelHierarchy | None = None
        self._level_graph: GridGraph | LevelGraph = self.graph
        self._strengths: list[sp.csr_array] = []
        self._last_observation: dict[str, np.ndarray] | None = None

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
        """C = sym(S) + I of the current level (the finest before a multi-level episode) for a MultiBinary action."""
        return strength_matrix(self._selected_edges(action)[0], self._level_graph)

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
        self._level_graph, self._strengths = self.graph, []
        if self.mode is EpisodeMode.MULTILEVEL:
            self._hierarchy = LevelByLevelHierarchy(problem.matrix())
            self._coordinates = grid_coordinates(self.grid_size)
        return self._observe(problem.matrix()), {"case": case, **problem.describe()}

    def _level_operator_features(self, matrix: sp.spmatrix) -> np.ndarray:
        """The current level's edge features that depend on the operator only: the columns of
        :func:`operator_edge_features`, then (``evolution_features``) those of
        :func:`evolution_edge_features` with the level's B. The fine level's once per case."""
        fine = self._level_graph is self.graph
        if fine and self._case in self._operator_features:
            return self._operator_features[self._case]
        features = operator_edge_features(matrix, self._level_graph)
        if self.evolution_features:
            candidates = self._hierarchy.levels[-1].B if self._hierarchy is not None else None
            evolution = evolution_edge_features(matrix, self._level_graph, candidates, self.evolution_tolerances)
            features = np.concatenate([features, evolution], axis=1)
        if fine and (len(self._operator_features) + 1) * features.nbytes <= OPERATOR_FEATURE_CACHE_BYTES:
            self._operator_features[self._case] = features
        return features

    def _candidate_features(self, matrix: sp.spmatrix, operator: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """(K, 2) :mod:`envs.amg.candidates` features of the level's ``evolution_strong_eps{t}`` edge sets."""
        first = FIRST_TOLERANCE_COLUMN
        candidates = operator[:, first:first + len(self.evolution_tolerances)] > 0  # (E_l, K)
        return candidate_aggregation_features(matrix, self._level_graph, candidates, vectors)

    def _observe(self, matrix: sp.spmatrix) -> dict[str, np.ndarray]:
        operator = self._level_operator_features(matrix)
        vectors = smoothed_vectors(matrix, self.n_smoothed_vectors, self.np_random)  # (N_l, m)
        obs = observation(matrix, self._level_graph, self.n_smoothed_vectors, self.np_random, operator, vectors)
        extra = {"candidate_features": self._candidate_features(matrix, operator, vectors)} if self.evolution_tolerances else {}
        if self.mode is EpisodeMode.FINEST:
            self._last_observation = {**obs, **extra}
            return self._last_observation
        level = len(self._strengths)
        n_nodes, n_edges = self._level_graph.n_nodes, self._level_graph.n_edges
        node_features = np.zeros(self.observation_space["node_features"].shape, np.float32)  # (N, m + 3)
        node_features[:n_nodes, :-1] = obs["node_features"]
        node_features[:n_nodes, -1] = level / (MAX_LEVELS - 1)
        edge_index = np.zeros((2, self.edge_capacity), np.int64)  # (2, E)
        edge_index[:, :n_edges] = obs["edge_index"]
        edge_features = np.zeros((self.edge_capacity, len(self.edge_feature_names)), np.float32)  # (E, Fe)
        edge_features[:n_edges] = obs["edge_features"]
        self._last_observation = {
            "node_features": node_features,
            "edge_index": edge_index,
            "edge_features": edge_features,
            "graph_size": np.array([n_nodes, n_edges], np.int64),
            **extra,
        }
        return self._last_observation

    def _selected_edges(self, action: Any) -> tuple[np.ndarray, bool]:
        """(the current level's selected-edge mask, whether a padding bit was set)."""
        array = np.asarray(action)
        if array.shape != (self.edge_capacity,):
            raise ValueError(f"action must have shape ({self.edge_capacity},) (one bit per edge slot), got {array.shape}")
        if array.dtype.kind not in "biuf" or not (array.dtype.kind == "b" or ((array == 0) | (array == 1)).all()):
            raise ValueError("action must contain only 0 and 1 (MultiBinary)")
        selected = array.astype(bool)
        n_edges = self._level_graph.n_edges
        return selected[:n_edges], bool(selected[n_edges:].any())

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._case is None:
            raise RuntimeError("step() called before reset(), or after the episode terminated; call reset()")
        selected, padding_set = self._selected_edges(action)
        case = self._case
        problem = self.problems[case]
        C = strength_matrix(selected, self._level_graph)
        info: dict[str, Any] = {
            "case": case,
            "level": len(self._strengths),
            "invalid_action": padding_set,
            "strong_edges_per_row": (C.nnz - C.shape[0]) / C.shape[0],
        }
        if self.mode is EpisodeMode.FINEST:
            return self._finish(finest_level_strength(C, self.coarse_strength), info, fallback=False)
        self._strengths.append(C)
        try:
            aggregation = self._hierarchy.coarsen(C)
        except SolverFailure as failure:
            return self._finish(None, info, fallback=False, failure=failure)
        if self._hierarchy.finished:
            return self._finish(per_level_strength(self._strengths), info, fallback=False)
        self._coordinates = coarse_coordinates(aggregation, self._coordinates)
        coarse = self._hierarchy.operator
        graph = level_graph(coarse, self._coordinates, self.grid_size)
        if graph.n_edges > self.edge_capacity:
            return self._finish(per_level_strength(self._strengths, self.coarse_strength), info, fallback=True)
        self._level_graph = graph
        info["coarse_nodes"] = graph.n_nodes
        return self._observe(coarse), 0.0, False, False, info

    def _finish(
        self, strength: Any, info: dict[str, Any], *, fallback: bool, failure: SolverFailure | None = None
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Solve with ``strength`` (None: the setup already failed) and end the episode."""
        case, self._case = self._case, None
        problem = self.problems[case]
        matrix = problem.matrix()
        baseline = self.baseline(case)
        info.update(problem.describe(), capacity_fallback=fallback)
        info.update({f"baseline_{k}": v for k, v in self._metrics(baseline).items()})
        if failure is None:
            try:
                result = solve(matrix, strength, self.rhs(case), self.max_iterations)
            except SolverFailure as err:
                failure = err
        if failure is not None:
            reward, floored = FAILURE_REWARD, False
            info.update({k: None for k in self._metrics(baseline)}, solver_failed=True, failure=str(failure))
        else:
            reward, floored = relative_work_reward(result.work_per_digit, baseline.work_per_digit)
            info.update(self._metrics(result), solver_failed=False)
        info["reward_floored"] = floored
        self._level_graph, self._hierarchy, self._strengths = self.graph, None, []
        # Gymnasium needs a terminal observation; it carries nothing new, so it is the last one shown
        terminal = {key: value.copy() for key, value in self._last_observation.items()}
        return terminal, float(reward), True, False, info

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
