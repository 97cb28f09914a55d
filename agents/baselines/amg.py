"""AnisotropicAMG-v0 reference agents and PyAMG's own strength measures.

Agents choose strong edges on whatever level the env shows (the finest level only,
or every level in ``mode="multilevel"``), as the learned policy does; the solver
references (:func:`solver_references`) run PyAMG's measures on every level, so the
table shows both what the agent's formulation can reach and what classical AMG
reaches outside it. Reference names: ``random`` (the agent's own mode), ``direction``
(finest level only), ``direction_every_level`` (multi-level mode), ``evolution_threshold``
(multi-level mode: a threshold on the undropped evolution measure, tuned on training cases),
and, from :func:`tolerance_search_baselines`, ``evolution_tolerance_search`` (a per-case
black-box search over evolution's drop tolerance) and ``evolution_tolerance_oracle``.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyamg
import scipy.sparse as sp
from pyamg.strength import evolution_strength_of_connection

from envs.amg import DEFAULT_EDGES_PER_ROW, AnisotropicAMGEnv
from envs.amg.graph import EDGE_FEATURE_NAMES, EVOLUTION_FEATURE_NAMES
from envs.amg.metrics import solver_record, summarise_solves
from envs.amg.problems import right_hand_side
from envs.amg.solver import SolveResult, SolverFailure, StrengthMeasure, finest_level_strength, solve
from envs.cache import cache_path, ensure_cached

__all__ = [
    "AMGDirectionAgent", "AMGMeasureThresholdAgent", "AMGRandomKPerRowAgent", "THRESHOLD_GRID", "direction_agent",
    "edges_per_row", "evolution_threshold_agent", "random_k_per_row_agent", "solver_baselines", "solver_references",
    "SEARCH_RHS_SEED_OFFSET", "SEARCH_TOLERANCES", "tolerance_search_baselines", "tuned_measure_threshold",
]


def _amg_top_k_per_row(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Bool (E,): the k highest-scoring edges of every row (rows sorted or not; ties: lower index)."""
    order = np.lexsort((np.arange(rows.size), -scores, rows))  # by row, then score descending
    sorted_rows = rows[order]
    starts = np.searchsorted(sorted_rows, sorted_rows, side="left")  # (E,) first position of each row
    rank = np.arange(rows.size) - starts  # (E,) rank within the row
    selected = np.zeros(rows.size, dtype=bool)
    selected[order[rank < k]] = True
    return selected


def _valid_part(observation: dict[str, np.ndarray], select: Any) -> np.ndarray:
    """Run ``select`` on the valid leading edges of a (possibly padded) graph; pad the result with 0."""
    if "graph_size" not in observation:
        return select(observation)
    n_edges = int(observation["graph_size"][1])
    selection = np.zeros(np.asarray(observation["edge_index"]).shape[-1], np.int8)  # (E_cap,)
    selection[:n_edges] = select({
        "edge_index": np.asarray(observation["edge_index"])[:, :n_edges],
        "edge_features": np.asarray(observation["edge_features"])[:n_edges],
    })
    return selection


def _amg_batched(observation: dict[str, np.ndarray], select: Any) -> np.ndarray:
    if np.asarray(observation["edge_index"]).ndim == 3:
        n = len(observation["edge_index"])
        return np.stack([_valid_part({key: value[i] for key, value in observation.items()}, select) for i in range(n)])
    return _valid_part(observation, select)


class AMGRandomKPerRowAgent:
    """AnisotropicAMG-v0 baseline: k edges per row uniformly at random (without replacement).

    Works on any grid size; the action is a MultiBinary (E,) int8 vector.
    """

    def __init__(self, k: int, seed: int | None = None) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (edges per row) must be an integer >= 1, got {k!r}")
        self.k = k
        self.rng = np.random.default_rng(seed)

    def _select(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        rows = np.asarray(observation["edge_index"])[0].astype(np.int64)  # (E,)
        return _amg_top_k_per_row(rows, self.rng.random(rows.size), self.k).astype(np.int8)

    def predict(
        self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """``deterministic`` is ignored: the agent is random by definition."""
        return _amg_batched(observation, self._select), state


class AMGDirectionAgent:
    """AnisotropicAMG-v0 baseline: the k neighbours best aligned with the strong diffusion direction.

    From the observation only: the edge feature ``alignment``
    (:data:`envs.amg.graph.EDGE_FEATURE_NAMES`) is |cos(o_j, v)|, v the principal
    eigenvector of M = sum_j (-A_ij / A_ii) o_j o_j^T over the row's neighbour offsets
    o_j (grid steps on the finest level, aggregate-centroid offsets on coarse ones),
    which on a 9-point stencil is proportional to the diffusion tensor
    Q diag(1, eps) Q^T. Edges are ranked by it, ties by |A_ij|.
    """

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (edges per row) must be an integer >= 1, got {k!r}")
        self.k = k

    def _select(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        features = np.asarray(observation["edge_features"], dtype=np.float64)  # (E, Fe)
        column = {name: features[:, i] for i, name in enumerate(EDGE_FEATURE_NAMES)}
        rows = np.asarray(observation["edge_index"])[0].astype(np.int64)  # (E,)
        score = column["alignment"] + 1e-6 * np.abs(column["a_row_normalised"])  # (E,)
        return _amg_top_k_per_row(rows, score, self.k).astype(np.int8)

    def predict(
        self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        return _amg_batched(observation, self._select), state


class AMGMeasureThresholdAgent:
    """AnisotropicAMG-v0 baseline: every edge whose ``evolution_measure`` exceeds a threshold.

    Needs ``AnisotropicAMG-v0(evolution_features=True)``. The measure is PyAMG's evolution
    measure without its drop tolerance, symmetrised and row-scaled
    (:func:`envs.amg.graph.evolution_edge_features`), so a threshold on it plays the role
    of evolution's drop tolerance, applied after symmetrisation; a variable number of
    edges per row, as evolution keeps.
    """

    def __init__(self, threshold: float) -> None:
        if not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        self.threshold = float(threshold)

    def _select(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        features = np.asarray(observation["edge_features"])
        if features.shape[-1] < len(EDGE_FEATURE_NAMES) + len(EVOLUTION_FEATURE_NAMES):
            raise ValueError("AMGMeasureThresholdAgent needs AnisotropicAMG-v0(evolution_features=True) observations")
        return (features[:, MEASURE_COLUMN] > self.threshold).astype(np.int8)

    def predict(
        self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        return _amg_batched(observation, self._select), state


MEASURE_COLUMN = len(EDGE_FEATURE_NAMES) + EVOLUTION_FEATURE_NAMES.index("evolution_measure")
"""Edge-feature column of ``evolution_measure`` (per-tolerance columns, if any, follow it)."""

THRESHOLD_GRID = (0.06, 0.09, 0.12, 0.15, 0.18, 0.21, 0.25)
"""Thresholds :func:`tuned_measure_threshold` tries."""
TUNING_CASES = 32
"""Training cases the threshold is tuned on."""
TUNING_GRID_SIZE = 32
"""Grid the threshold is tuned on, whatever grid it is evaluated on (as a 32 x 32 policy is)."""


THRESHOLD_CACHE_VERSION = 1
"""Bump when the tuning (env, grid, cases, rule) changes, so old cache files are not reused."""


def _threshold_cache_file(problem_family: str, problem_seed: int) -> Path:
    fields = {"family": problem_family, "problem_seed": problem_seed, "grid": list(THRESHOLD_GRID),
              "cases": TUNING_CASES, "size": TUNING_GRID_SIZE, "pyamg": pyamg.__version__,
              "version": THRESHOLD_CACHE_VERSION}
    tag = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return cache_path("amg", f"measure_threshold_{tag}.json")


def _tune_measure_threshold(problem_family: str, problem_seed: int) -> dict[str, float]:
    """Mean work of every :data:`THRESHOLD_GRID` value on the tuning cases (about 10 s)."""
    env = AnisotropicAMGEnv(grid_size=TUNING_GRID_SIZE, split="train", mode="multilevel",
                            problem_family=problem_family, problem_seed=problem_seed, evolution_features=True)
    mean_work = {}
    for threshold in THRESHOLD_GRID:
        agent, works = AMGMeasureThresholdAgent(threshold), []
        for case in range(min(TUNING_CASES, env.n_cases)):
            observation, _ = env.reset(seed=case, options={"case": case})
            terminated = False
            while not terminated:
                observation, _, terminated, _, info = env.step(agent.predict(observation)[0])
            works.append(np.inf if info["solver_failed"] else info["work"])
        mean_work[str(threshold)] = float(np.mean(works))
    return mean_work


@lru_cache(maxsize=16)
def tuned_measure_threshold(problem_family: str, problem_seed: int = 0) -> float:
    """The :data:`THRESHOLD_GRID` value with the least mean work (operator complexity x PCG
    iterations) on the first :data:`TUNING_CASES` training cases at 32 x 32, every level.

    Tuned once per machine: the mean works are stored in the cache dir (atomic, shared by
    concurrent processes), since every evaluation of the env needs the reference."""
    def build(tmp: Path) -> None:
        tmp.write_text(json.dumps(_tune_measure_threshold(problem_family, problem_seed), sort_keys=True))

    mean_work = json.loads(ensure_cached(_threshold_cache_file(problem_family, problem_seed), build).read_text())
    return min(THRESHOLD_GRID, key=lambda t: (mean_work[str(t)], t))


def evolution_threshold_agent(env: gym.Env, agent: Any, seed: int) -> AMGMeasureThresholdAgent:
    """Reference "evolution_threshold": :class:`AMGMeasureThresholdAgent` at the threshold tuned
    on the env's problem family (:func:`tuned_measure_threshold`)."""
    core = env.unwrapped
    return AMGMeasureThresholdAgent(tuned_measure_threshold(core.problem_family.value, core.problem_seed))


def edges_per_row(agent: Any) -> int:
    """The agent's (policy's) ``k`` when it has one, else :data:`envs.amg.DEFAULT_EDGES_PER_ROW`:
    reference agents select as many edges per row as the agent under test."""
    policy = getattr(agent, "policy", agent)
    k = getattr(policy, "k", None)
    return k if isinstance(k, int) else DEFAULT_EDGES_PER_ROW


def random_k_per_row_agent(env: gym.Env, agent: Any, seed: int) -> AMGRandomKPerRowAgent:
    """Reference "random": k random edges per row."""
    return AMGRandomKPerRowAgent(edges_per_row(agent), seed=seed)


def direction_agent(env: gym.Env, agent: Any, seed: int) -> AMGDirectionAgent:
    """Reference "direction" / "direction_every_level": the k edges best aligned with the
    strong diffusion direction (the env's mode decides on which levels)."""
    return AMGDirectionAgent(edges_per_row(agent))


def _evolution_pattern(matrix: sp.csr_array) -> sp.csr_array:
    C = evolution_strength_of_connection(sp.csr_matrix(matrix), np.ones((matrix.shape[0], 1)))
    pattern = sp.csr_array(C, copy=True)
    pattern.data[:] = 1.0
    return pattern


def solver_baselines(env: AnisotropicAMGEnv, case: int) -> dict[str, dict[str, Any]]:
    """Solve records of PyAMG's own measures on ``case``, scored against the env's reference solver.

    ``symmetric`` (PyAMG's default, theta 0), ``symmetric_0.25`` and ``evolution`` on every
    level; ``evolution_finest_level``: evolution's C on the finest level only, the env's
    ``coarse_strength`` below (the best classical measure in the agent's own formulation).
    """
    matrix, rhs = env.problems[case].matrix(), env.rhs(case)
    reference = env.baseline(case)
    strengths: dict[str, Any] = {measure.value: measure.pyamg_argument() for measure in StrengthMeasure}
    strengths["evolution_finest_level"] = finest_level_strength(_evolution_pattern(matrix), env.coarse_strength)
    records = {}
    for name, strength in strengths.items():
        try:
            result: SolveResult | None = solve(matrix, strength, rhs, env.max_iterations)
        except SolverFailure:
            result = None
        records[name] = solver_record(result, reference)
    return records


SEARCH_TOLERANCES = (3.0, 4.0, 5.0, 6.0, 8.0)
"""Evolution drop tolerances the search and the oracle choose from (PyAMG's default is 4; the
tolerance policy's and the tolerance scorer's candidates)."""
SEARCH_RHS_SEED_OFFSET = 1_000
"""The search's probe right-hand side of a case is the env's for ``problem_seed`` + this offset:
another seeded N(0, I) vector, never the one the score is measured on."""


def tolerance_search_baselines(env: AnisotropicAMGEnv, case: int) -> dict[str, dict[str, Any]]:
    """Two per-case references over evolution strength's drop tolerance on every level.

    ``evolution_tolerance_search``: solve the case with every :data:`SEARCH_TOLERANCES` value
    on a probe right-hand side (:data:`SEARCH_RHS_SEED_OFFSET`) and keep the tolerance with the
    least work: the black-box search an AMG user who solves many right-hand sides with one
    matrix would run. Its record is the kept tolerance's solve of the scored right-hand side;
    the 5 probe setups and solves (about 5 x its work) are not counted.
    ``evolution_tolerance_oracle``: the tolerance with the least work on the scored solve
    itself, an upper bound for any choice among these C's (the tolerance policy's action set).
    """
    matrix, reference = env.problems[case].matrix(), env.baseline(case)
    probe = right_hand_side(env.problem_seed + SEARCH_RHS_SEED_OFFSET, env.split, case, env.graph.n_nodes)

    def attempt(tolerance: float, rhs: np.ndarray) -> SolveResult | None:
        try:
            return solve(matrix, ("evolution", {"epsilon": tolerance}), rhs, env.max_iterations)
        except SolverFailure:
            return None

    scored = [attempt(t, env.rhs(case)) for t in SEARCH_TOLERANCES]
    probed = [attempt(t, probe) for t in SEARCH_TOLERANCES]
    work = [np.inf if r is None else r.work for r in probed]  # (K,)
    searched = scored[int(np.argmin(work))] if np.isfinite(min(work)) else None
    successes = [r for r in scored if r is not None]
    oracle = min(successes, key=lambda r: r.work) if successes else None
    return {"evolution_tolerance_search": solver_record(searched, reference),
            "evolution_tolerance_oracle": solver_record(oracle, reference)}


def solver_references(context: Any) -> dict[str, Any]:
    """Evaluation extras: :func:`solver_baselines` and :func:`tolerance_search_baselines` on the
    agent's test cases, and the setting."""
    core: AnisotropicAMGEnv = context.env.unwrapped
    records: dict[str, list[dict[str, Any]]] = {}
    for case, _ in context.episodes:
        for name, record in {**solver_baselines(core, case), **tolerance_search_baselines(core, case)}.items():
            records.setdefault(name, []).append(record)
    return {
        "grid_size": core.grid_size,
        "edges_per_row": edges_per_row(context.agent),
        "coarse_strength": core.coarse_strength.value,
        "mode": core.mode.value,
        "problem_family": core.problem_family.value,
        "baselines": {name: summarise_solves(rs) for name, rs in records.items()},
    }
