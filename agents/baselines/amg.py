"""AnisotropicAMG-v0 reference agents and PyAMG's own strength measures.

Agents choose the finest level's strong edges, as the learned policy does; the
solver references (:func:`solver_references`) run PyAMG's measures on every level,
so the table shows both what the agent's formulation can reach and what classical
AMG reaches outside it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import scipy.sparse as sp
from pyamg.strength import evolution_strength_of_connection

from envs.amg import DEFAULT_EDGES_PER_ROW, AnisotropicAMGEnv
from envs.amg.graph import EDGE_FEATURE_NAMES
from envs.amg.metrics import solver_record, summarise_solves
from envs.amg.solver import SolveResult, SolverFailure, StrengthMeasure, finest_level_strength, solve

__all__ = [
    "AMGDirectionAgent", "AMGRandomKPerRowAgent", "direction_agent", "edges_per_row", "random_k_per_row_agent",
    "solver_baselines", "solver_references",
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


def _amg_batched(observation: dict[str, np.ndarray], select: Any) -> np.ndarray:
    if np.asarray(observation["edge_index"]).ndim == 3:
        n = len(observation["edge_index"])
        return np.stack([select({key: value[i] for key, value in observation.items()}) for i in range(n)])
    return select(observation)


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

    From the observation only: per row, M = sum_j (-A_ij / A_ii) o_j o_j^T over the
    neighbour offsets o_j (raw grid steps, diagonal ones of length sqrt 2) is
    proportional to the 9-point stencil's diffusion tensor Q diag(1, eps) Q^T; its
    principal eigenvector is the strong direction v. Edges are ranked by |cos(o_j, v)|,
    ties by |A_ij| (the signs of o_j do not matter: M is quadratic in o_j). Computed
    from the edge features ``a_over_diagonal``, ``cos_2phi``, ``sin_2phi`` and
    ``is_diagonal`` of :data:`envs.amg.graph.EDGE_FEATURE_NAMES`.
    """

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k (edges per row) must be an integer >= 1, got {k!r}")
        self.k = k

    def _select(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        features = np.asarray(observation["edge_features"], dtype=np.float64)  # (E, Fe)
        column = {name: features[:, i] for i, name in enumerate(EDGE_FEATURE_NAMES)}
        rows = np.asarray(observation["edge_index"])[0].astype(np.int64)  # (E,)
        phi = 0.5 * np.arctan2(column["sin_2phi"], column["cos_2phi"])  # (E,) edge angle, up to a sign
        direction = np.stack([np.cos(phi), np.sin(phi)], axis=1)  # (E, 2) unit vector, up to a sign
        offset = direction * np.where(column["is_diagonal"] > 0.5, np.sqrt(2.0), 1.0)[:, None]  # (E, 2)
        coupling = column["a_over_diagonal"]  # (E,)
        second_moment = coupling[:, None, None] * offset[:, :, None] * offset[:, None, :]  # (E, 2, 2)
        tensor = np.zeros((rows.max() + 1, 2, 2))
        np.add.at(tensor, rows, second_moment)  # (N, 2, 2)
        strong = np.linalg.eigh(tensor)[1][:, :, -1]  # (N, 2) eigenvector of the largest eigenvalue
        alignment = np.abs(np.einsum("ed,ed->e", direction, strong[rows]))  # (E,)
        score = alignment + 1e-6 * np.abs(column["a_row_normalised"])  # (E,)
        return _amg_top_k_per_row(rows, score, self.k).astype(np.int8)

    def predict(
        self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        return _amg_batched(observation, self._select), state


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
    """Reference "direction": the k edges best aligned with the strong diffusion direction."""
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


def solver_references(context: Any) -> dict[str, Any]:
    """Evaluation extras: :func:`solver_baselines` on the agent's test cases, and the setting."""
    core: AnisotropicAMGEnv = context.env.unwrapped
    records: dict[str, list[dict[str, Any]]] = {}
    for case, _ in context.episodes:
        for name, record in solver_baselines(core, case).items():
            records.setdefault(name, []).append(record)
    return {
        "grid_size": core.grid_size,
        "edges_per_row": edges_per_row(context.agent),
        "coarse_strength": core.coarse_strength.value,
        "baselines": {name: summarise_solves(rs) for name, rs in records.items()},
    }
