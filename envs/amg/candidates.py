"""Cheap lookahead features of candidate strength matrices: how good an aggregation each would give.

With ``evolution_tolerances``, AnisotropicAMG-v0 shows, per level, the C PyAMG's evolution
strength would pick with each drop tolerance. Which of them needs the least solve work
varies per case (the per-case oracle over evolution's settings saves 7-9 % on average,
``benchmarks/amg_evolution_variants.py``), and neither the coefficients nor the candidate
hierarchies' sizes predict it. What does, in part (``benchmarks/RESULTS.md``, "candidate
aggregation features"), is a classical AMG quality indicator of each
candidate's aggregation: the *weak approximation* of the level's smoothed random vectors
(the error the smoother leaves) by the tentative interpolation T of that aggregation (B =
ones: T is the aggregate indicator, so the projection onto range(T) is the aggregate mean),

    mu(C) = mean over vectors v of ||v - T T^+ v||_D^2 / ||v||_A^2,

the quantity the two-grid convergence bound of aggregation AMG is stated in (smaller: the
coarse space represents smooth error better), together with the coarsening ratio N / n_agg
(larger: a cheaper hierarchy). Both come from PyAMG's own standard aggregation along the
candidate's C (the call the env's hierarchy makes when the agent selects it), no setup
beyond it and no solve: five aggregations at 32 x 32 take about 2 ms, less than one of the
evolution measures the candidates come from (about 3 ms each).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from envs.amg.graph import GridGraph, LevelGraph, strength_matrix

__all__ = ["CANDIDATE_FEATURE_BOUND", "CANDIDATE_FEATURE_NAMES", "candidate_aggregation_features", "weak_approximation"]

CANDIDATE_FEATURE_NAMES = ("log_weak_approximation", "log_coarsening_ratio")
"""Columns of :func:`candidate_aggregation_features`."""
CANDIDATE_FEATURE_BOUND = 30.0
"""Both features are clipped to [-bound, bound] (an exact representation, mu = 0, would be -inf)."""


def weak_approximation(matrix: sp.spmatrix, aggregates: sp.spmatrix, vectors: np.ndarray) -> float:
    """mu = mean_v ||v - T T^+ v||_D^2 / ||v||_A^2 for the aggregate indicator T (N x n_agg, 0/1;
    a node in no aggregate keeps its whole value as residual) and vectors (N, m)."""
    indicator = sp.csr_matrix(aggregates, dtype=np.float64)
    sizes = np.maximum(np.asarray(indicator.sum(axis=0)).ravel(), 1.0)  # (n_agg,)
    residual = vectors - indicator @ ((indicator.T @ vectors) / sizes[:, None])  # (N, m)
    diagonal = matrix.diagonal()  # (N,)
    energy = np.einsum("im,im->m", vectors, matrix @ vectors)  # (m,)
    return float(np.mean((diagonal[:, None] * residual * residual).sum(axis=0) / np.maximum(energy, 1e-300)))


def candidate_aggregation_features(matrix: sp.spmatrix, graph: GridGraph | LevelGraph, candidates: np.ndarray,
                                   vectors: np.ndarray) -> np.ndarray:
    """(K, len(CANDIDATE_FEATURE_NAMES)) float32: log mu and log(N / n_agg) of PyAMG's standard
    aggregation along C_k = sym(S_k) + I for each candidate edge set S_k (``candidates`` (E, K) bool
    over the graph's edges), with the level's smoothed ``vectors`` (N, m)."""
    from pyamg.aggregation import standard_aggregation  # pyamg is a solver dependency, not a graph one

    operator = sp.csr_matrix(matrix, dtype=np.float64)
    features = np.empty((candidates.shape[1], len(CANDIDATE_FEATURE_NAMES)), np.float64)
    for k in range(candidates.shape[1]):
        aggregates, _ = standard_aggregation(sp.csr_matrix(strength_matrix(candidates[:, k], graph)))
        mu = weak_approximation(operator, aggregates, vectors)
        features[k] = (np.log(max(mu, 1e-300)), np.log(graph.n_nodes / max(aggregates.shape[1], 1)))
    return np.clip(features, -CANDIDATE_FEATURE_BOUND, CANDIDATE_FEATURE_BOUND).astype(np.float32)
