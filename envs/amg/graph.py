"""The observation graph of a grid operator, and the C matrix an edge selection means.

Nodes are the n^2 unknowns; edges are the ordered pairs (i, j), i != j, of the 9-point
grid neighbourhood, i.e. every off-diagonal position the stencil can occupy. The edge
list is fixed for a given n (sorted by row, then column: CSR order), so observations
have a fixed size and edge e always means the same pair. Everything is vectorised numpy.

Coarse levels (multi-level mode) have no grid: :func:`level_graph` takes the
off-diagonal pattern of the level's operator (CSR order) and node coordinates carried
down as aggregate centroids (in fine-grid steps), and the same edge features are
computed from the centroid offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

__all__ = [
    "EDGE_FEATURE_NAMES",
    "EVOLUTION_FEATURE_NAMES",
    "FIRST_TOLERANCE_COLUMN",
    "tolerance_feature_names",
    "JACOBI_OMEGA",
    "JACOBI_SWEEPS",
    "GridGraph",
    "LevelGraph",
    "coarse_coordinates",
    "edge_features",
    "evolution_edge_features",
    "operator_edge_features",
    "edge_values",
    "grid_graph",
    "level_graph",
    "node_feature_names",
    "node_features",
    "observation",
    "principal_directions",
    "row_diffusion_tensors",
    "smoothed_vectors",
    "strength_matrix",
]

JACOBI_OMEGA = 2.0 / 3.0
"""Weight of the Jacobi sweeps that smooth the random node vectors."""
JACOBI_SWEEPS = 5
"""Number of weighted-Jacobi sweeps on A e = 0 (the error left after them is algebraically smooth)."""

EDGE_FEATURE_NAMES: tuple[str, ...] = (
    "a_row_normalised",  # A_ij / max_k |A_ik| over the row's off-diagonals, in [-1, 1]
    "a_over_diagonal",  # -A_ij / sqrt(A_ii A_jj), scale-free coupling in [-1, 1] for SPD A (= -A_ij / A_ii on a constant stencil)
    "cos_2phi",  # direction of the edge as a doubled angle phi from the first grid axis:
    "sin_2phi",  # the same for offsets o and -o, as the operator's couplings are
    "is_diagonal",  # 1 when the edge is nearer a grid diagonal than an axis (|cos 2phi| < 1/sqrt 2), else 0
    "algebraic_distance",  # mean_v (v_i - v_j)^2 over the smoothed vectors / row max, in [0, 1]
    "alignment",  # |cos| between the edge and the row's principal diffusion direction, in [0, 1]
    "row_anisotropy",  # 1 - lambda_min / lambda_max of the row's diffusion tensor, in [0, 1]
)

EVOLUTION_FEATURE_NAMES: tuple[str, ...] = (
    "evolution_strong",  # +1 when PyAMG's evolution measure (default options) keeps the edge, -1 when it drops it
    "evolution_measure",  # the measure without its drop tolerance (epsilon = inf), symmetrised and row-scaled, in [0, 1]
)
"""Optional edge features (``AnisotropicAMG-v0(evolution_features=True)``): the strong
classical measure as an input, so a policy can start from it and learn where to deviate."""
FIRST_TOLERANCE_COLUMN = len(EDGE_FEATURE_NAMES) + len(EVOLUTION_FEATURE_NAMES)
"""Edge-feature column of the first ``evolution_strong_eps{t}`` column (they follow the evolution features)."""

_OFFSETS = np.array([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)])  # (8, 2)
"""Neighbour offsets sorted by flat offset dx * n + dy, so each row's edges are in column order."""


@dataclass(frozen=True, eq=False)
class GridGraph:
    """Fixed 9-point neighbour graph of an n x n grid (index = ix * n + iy)."""

    grid_size: int
    rows: np.ndarray
    """(E,) int64 source node of each edge (sorted)."""
    cols: np.ndarray
    """(E,) int64 target node of each edge."""
    offsets: np.ndarray
    """(E, 2) int64 grid offset (dx, dy) from source to target."""
    indptr: np.ndarray
    """(N + 1,) int64 CSR row pointer into the edge list."""

    @property
    def n_nodes(self) -> int:
        return self.grid_size**2

    @property
    def n_edges(self) -> int:
        return int(self.rows.size)

    @property
    def edge_index(self) -> np.ndarray:
        """(2, E) int64 [source; target], PyG layout."""
        return np.stack([self.rows, self.cols])


@lru_cache(maxsize=8)
def grid_graph(grid_size: int) -> GridGraph:
    """The 9-point neighbour graph of an ``grid_size`` x ``grid_size`` grid."""
    n = int(grid_size)
    ix, iy = np.divmod(np.arange(n * n), n)  # (N,), (N,)
    target_x = ix[:, None] + _OFFSETS[None, :, 0]  # (N, 8)
    target_y = iy[:, None] + _OFFSETS[None, :, 1]  # (N, 8)
    inside = (target_x >= 0) & (target_x < n) & (target_y >= 0) & (target_y < n)  # (N, 8)
    rows = np.broadcast_to(np.arange(n * n)[:, None], inside.shape)[inside]  # (E,)
    cols = (target_x * n + target_y)[inside]  # (E,)
    offsets = np.broadcast_to(_OFFSETS[None], (n * n, 8, 2))[inside]  # (E, 2)
    indptr = np.concatenate([[0], np.cumsum(inside.sum(axis=1))])  # (N + 1,)
    for array in (rows, cols, offsets, indptr):
        array.setflags(write=False)
    return GridGraph(n, rows.astype(np.int64), cols.astype(np.int64), offsets.astype(np.int64), indptr.astype(np.int64))


@dataclass(frozen=True, eq=False)
class LevelGraph:
    """The off-diagonal pattern of one hierarchy level's operator, with node coordinates."""

    grid_size: int
    """Unknowns per side of the *finest* grid (coordinates are scaled by it)."""
    rows: np.ndarray
    """(E,) int64 source node of each edge (CSR order)."""
    cols: np.ndarray
    """(E,) int64 target node of each edge."""
    offsets: np.ndarray
    """(E, 2) float64 centroid offset from source to target, in fine-grid steps."""
    indptr: np.ndarray
    """(N + 1,) int64 CSR row pointer into the edge list."""
    coordinates: np.ndarray
    """(N, 2) float64 node positions (ix, iy) in fine-grid steps."""

    @property
    def n_nodes(self) -> int:
        return int(self.coordinates.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.rows.size)

    @property
    def edge_index(self) -> np.ndarray:
        """(2, E) int64 [source; target], PyG layout."""
        return np.stack([self.rows, self.cols])


def grid_coordinates(grid_size: int) -> np.ndarray:
    """(n^2, 2) float64 (ix, iy) of every unknown."""
    ix, iy = np.divmod(np.arange(grid_size * grid_size), grid_size)  # (N,), (N,)
    return np.stack([ix, iy], axis=1).astype(np.float64)


def coarse_coordinates(aggregation: sp.spmatrix, coordinates: np.ndarray) -> np.ndarray:
    """(N_coarse, 2) centroids of the aggregates: AggOp^T x / aggregate sizes."""
    agg = sp.csr_array(aggregation)
    sizes = np.maximum(np.asarray(agg.sum(axis=0)).ravel(), 1.0)  # (N_coarse,)
    return (agg.T @ coordinates) / sizes[:, None]  # (N_coarse, 2)


def level_graph(matrix: sp.spmatrix, coordinates: np.ndarray, grid_size: int) -> LevelGraph:
    """The graph of any sparse operator: its off-diagonal nonzeros in CSR order."""
    csr = sp.csr_array(matrix)
    csr.sort_indices()
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))  # (nnz,)
    keep = rows != csr.indices  # (nnz,)
    rows, cols = rows[keep].astype(np.int64), csr.indices[keep].astype(np.int64)  # (E,)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=csr.shape[0]))]).astype(np.int64)
    offsets = coordinates[cols] - coordinates[rows]  # (E, 2)
    return LevelGraph(int(grid_size), rows, cols, offsets, indptr, np.asarray(coordinates, dtype=np.float64))


def edge_values(matrix: sp.csr_array, graph: GridGraph | LevelGraph) -> np.ndarray:
    """A_ij on every graph edge (0 where A has no entry). Raises if A has entries off the graph."""
    csr = sp.csr_array(matrix)
    if not csr.has_sorted_indices:
        csr = csr.sorted_indices()
    rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))  # (nnz,)
    off_diagonal = rows != csr.indices
    keys = rows[off_diagonal] * graph.n_nodes + csr.indices[off_diagonal]  # (nnz_off,) sorted: CSR order
    data = csr.data[off_diagonal]
    edge_keys = graph.rows * graph.n_nodes + graph.cols  # (E,)
    if keys.size == edge_keys.size and np.array_equal(keys, edge_keys):
        return data.astype(np.float64)  # the usual case: A's pattern is the graph
    position = np.searchsorted(keys, edge_keys).clip(max=max(len(keys) - 1, 0))  # (E,)
    found = keys[position] == edge_keys if len(keys) else np.zeros(graph.n_edges, dtype=bool)  # (E,)
    if int(found.sum()) != len(keys):
        raise ValueError(
            f"matrix has {len(keys) - int(found.sum())} off-diagonal entries outside the 9-point grid graph "
            f"of grid_size={graph.grid_size}; expected a 9-point stencil matrix of shape {(graph.n_nodes,) * 2}"
        )
    return np.where(found, data[position] if len(keys) else 0.0, 0.0)  # (E,)


def smoothed_vectors(matrix: sp.csr_array, n_vectors: int, rng: np.random.Generator) -> np.ndarray:
    """Random vectors after weighted-Jacobi sweeps on A e = 0, z-scored per vector. (N, m) float64.

    What survives the smoother varies slowly along strong couplings: the raw material
    of evolution-type strength measures.
    """
    n = matrix.shape[0]
    vectors = rng.standard_normal((n, n_vectors))  # (N, m)
    inverse_diagonal = 1.0 / matrix.diagonal()  # (N,)
    for _ in range(JACOBI_SWEEPS):
        vectors = vectors - JACOBI_OMEGA * inverse_diagonal[:, None] * (matrix @ vectors)  # (N, m)
    vectors = vectors - vectors.mean(axis=0, keepdims=True)  # (N, m)
    return vectors / np.maximum(vectors.std(axis=0, keepdims=True), 1e-12)  # (N, m)


def node_feature_names(n_vectors: int) -> tuple[str, ...]:
    """Smoothed vectors, then the grid coordinates scaled to [0, 1]."""
    return (*(f"smoothed_vector_{i}" for i in range(n_vectors)), "x", "y")


def node_features(graph: GridGraph | LevelGraph, vectors: np.ndarray) -> np.ndarray:
    """(N, m + 2) float32: smoothed vectors and coordinates ix / (n - 1), iy / (n - 1) (n: finest grid)."""
    points = graph.coordinates if isinstance(graph, LevelGraph) else grid_coordinates(graph.grid_size)  # (N, 2)
    coordinates = points / max(graph.grid_size - 1, 1)  # (N, 2)
    return np.concatenate([vectors, coordinates], axis=1).astype(np.float32)  # (N, m + 2)


def _row_max(values: np.ndarray, graph: GridGraph | LevelGraph) -> np.ndarray:
    """(E,) max of ``values`` (>= 0) over each edge's row."""
    if values.size == 0:
        return values
    counts = np.diff(graph.indptr)  # (N,)
    if counts.min() > 0:
        return np.repeat(np.maximum.reduceat(values, graph.indptr[:-1]), counts)  # (E,)
    maxima = np.zeros(graph.n_nodes)  # (N,) a row without edges (coarse levels)
    np.maximum.at(maxima, graph.rows, values)
    return maxima[graph.rows]  # (E,)


def row_diffusion_tensors(coupling: np.ndarray, graph: GridGraph | LevelGraph) -> np.ndarray:
    """(N, 2, 2) second moment M_i = sum_j c_ij o_ij o_ij^T of each row's couplings over its grid offsets.

    With c_ij = -A_ij / A_ii, M_i of a 9-point stencil is proportional to the
    diffusion tensor Q diag(1, eps) Q^T it discretises (for the FD stencil of
    :mod:`envs.amg.problems` exactly, at interior rows), so its principal eigenvector
    is the strong direction and 1 - lambda_min / lambda_max its anisotropy.
    """
    offsets = graph.offsets.astype(float)  # (E, 2)
    tensors = np.empty((graph.n_nodes, 2, 2))
    for a, b in ((0, 0), (0, 1), (1, 1)):
        tensors[:, a, b] = np.bincount(graph.rows, coupling * offsets[:, a] * offsets[:, b], minlength=graph.n_nodes)
    tensors[:, 1, 0] = tensors[:, 0, 1]
    return tensors  # (N, 2, 2)


def principal_directions(tensors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form eigen-decomposition of symmetric 2 x 2 tensors (N, 2, 2):
    (lambda_min (N,), lambda_max (N,), unit eigenvector of lambda_max (N, 2))."""
    a, b, d = tensors[:, 0, 0], tensors[:, 0, 1], tensors[:, 1, 1]  # (N,)
    mean, radius = 0.5 * (a + d), np.hypot(0.5 * (a - d), b)  # (N,)
    angle = 0.5 * np.arctan2(2.0 * b, a - d)  # (N,)
    return mean - radius, mean + radius, np.stack([np.cos(angle), np.sin(angle)], axis=1)


DISTANCE_COLUMN = 5
"""The one column of :func:`edge_features` that depends on the smoothed random vectors."""


def operator_edge_features(matrix: sp.csr_array, graph: GridGraph | LevelGraph) -> np.ndarray:
    """(E, Fe) float32: every column of :func:`edge_features` that depends on the operator
    only, the ``distance`` column zero. A fixed problem's are the same at every reset, so the
    env computes them once per case."""
    a = edge_values(matrix, graph)  # (E,)
    diagonal_all = matrix.diagonal()  # (N,)
    diagonal = diagonal_all[graph.rows]  # (E,)
    geometric_diagonal = np.sqrt(diagonal * diagonal_all[graph.cols])  # (E,)
    row_scale = np.maximum(_row_max(np.abs(a), graph), 1e-300)  # (E,)
    length = np.maximum(np.hypot(graph.offsets[:, 0], graph.offsets[:, 1]), 1e-12)  # (E,) coincident centroids: 0
    direction = graph.offsets / length[:, None]  # (E, 2)
    cos_2phi = direction[:, 0] ** 2 - direction[:, 1] ** 2  # (E,)
    sin_2phi = 2.0 * direction[:, 0] * direction[:, 1]  # (E,)
    smallest, largest, strong = principal_directions(row_diffusion_tensors(-a / diagonal, graph))  # (N,), (N,), (N, 2)
    alignment = np.abs(np.einsum("ed,ed->e", direction, strong[graph.rows]))  # (E,)
    top = np.maximum(np.abs(largest), 1e-300)  # (N,)
    anisotropy = np.clip(1.0 - smallest / top, 0.0, 1.0)[graph.rows]  # (E,)
    features = np.stack(
        [a / row_scale, -a / geometric_diagonal, cos_2phi, sin_2phi, (np.abs(cos_2phi) < np.sqrt(0.5)).astype(float),
         np.zeros_like(a), np.minimum(alignment, 1.0), anisotropy],
        axis=1,
    )  # (E, Fe)
    return features.astype(np.float32)


PYAMG_EVOLUTION_EPSILON = 4.0
"""PyAMG's default drop tolerance of ``evolution_strength_of_connection`` (the ``evolution_strong`` column)."""


def tolerance_feature_names(tolerances: tuple[float, ...]) -> tuple[str, ...]:
    """Column names of :func:`evolution_edge_features`' per-tolerance columns, e.g. ``evolution_strong_eps8``."""
    return tuple(f"evolution_strong_eps{t:g}" for t in tolerances)


def evolution_edge_features(matrix: sp.spmatrix, graph: GridGraph | LevelGraph,
                            candidates: np.ndarray | None = None, tolerances: tuple[float, ...] = ()) -> np.ndarray:
    """(E, 2 + len(tolerances)) float32: :data:`EVOLUTION_FEATURE_NAMES` of one level's operator,
    then, for each drop tolerance t of ``tolerances``, ``evolution_strong`` with ``epsilon=t``
    (:func:`tolerance_feature_names`): the C's PyAMG's evolution would choose with each t,
    for a policy that picks the tolerance rather than the edges.

    The measure is ``pyamg.strength.evolution_strength_of_connection`` with PyAMG's
    defaults and the level's near-nullspace ``candidates`` (B; None = ones), exactly what
    ``strength=('evolution', {})`` computes on that level, so selecting the edges with
    ``evolution_strong = +1`` on every level reproduces the evolution baseline's C;
    ``evolution_measure`` orders every edge, dropped or kept, by the same measure
    (a threshold on it plays the role of the drop tolerance epsilon).
    """
    from pyamg.strength import evolution_strength_of_connection  # pyamg is a solver dependency, not a graph one

    from envs.amg.solver import PYAMG_GLOBAL_SEED, pinned_global_numpy_rng

    operator = sp.csr_matrix(matrix, dtype=np.float64)
    B = np.ones((operator.shape[0], 1)) if candidates is None else np.asarray(candidates, dtype=np.float64)
    pattern = sp.csr_array((np.ones(graph.n_edges), (graph.rows, graph.cols)), shape=operator.shape)
    on_graph = lambda m: sp.csr_array(m).multiply(pattern).tocsr()  # noqa: E731 an entry off A's pattern (rare on coarse levels) cannot be selected
    # the measure's time step comes from a spectral-radius estimate that starts from NumPy's
    # global RNG: pinned, so that equal operators give equal features
    with pinned_global_numpy_rng(PYAMG_GLOBAL_SEED):
        kept = edge_values(on_graph(evolution_strength_of_connection(operator, B)), graph) > 0  # (E,)
    with pinned_global_numpy_rng(PYAMG_GLOBAL_SEED):
        measure = edge_values(on_graph(evolution_strength_of_connection(operator, B, epsilon=np.inf)), graph)  # (E,)
    columns = [np.where(kept, 1.0, -1.0), np.clip(measure, 0.0, 1.0)]
    for tolerance in tolerances:
        if float(tolerance) == PYAMG_EVOLUTION_EPSILON:  # the default's C is ``kept``, already measured
            columns.append(columns[0])
            continue
        with pinned_global_numpy_rng(PYAMG_GLOBAL_SEED):
            kept_at = edge_values(on_graph(evolution_strength_of_connection(operator, B, epsilon=float(tolerance))), graph) > 0
        columns.append(np.where(kept_at, 1.0, -1.0))
    return np.stack(columns, axis=1).astype(np.float32)


def edge_features(matrix: sp.csr_array, graph: GridGraph | LevelGraph, vectors: np.ndarray,
                  operator_features: np.ndarray | None = None) -> np.ndarray:
    """(E, len(EDGE_FEATURE_NAMES)) float32, in the order of :data:`EDGE_FEATURE_NAMES`;
    ``operator_features`` (:func:`operator_edge_features` of the same matrix and graph)
    skips recomputing the operator's part; columns it carries after those (e.g.
    :func:`evolution_edge_features`) are kept, after the named ones."""
    features = operator_edge_features(matrix, graph) if operator_features is None else operator_features.copy()
    by_vector = np.ascontiguousarray(vectors.T)  # (m, N): np.take along rows is ~4x faster than fancy indexing here
    difference = np.take(by_vector, graph.rows, axis=1) - np.take(by_vector, graph.cols, axis=1)  # (m, E)
    difference *= difference
    distance = np.add.reduce(difference, axis=0) / vectors.shape[1]  # (E,) mean over vectors, same summation order as np.mean
    features[:, DISTANCE_COLUMN] = distance / np.maximum(_row_max(distance, graph), 1e-300)
    return features


def observation(matrix: sp.csr_array, graph: GridGraph | LevelGraph, n_vectors: int, rng: np.random.Generator,
                operator_features: np.ndarray | None = None, vectors: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The env's Dict observation for one operator; the smoothed vectors come from ``rng``
    unless given (``vectors`` (N, m) from :func:`smoothed_vectors`; ``operator_features``: see
    :func:`edge_features`)."""
    if vectors is None:
        vectors = smoothed_vectors(matrix, n_vectors, rng)  # (N, m)
    return {
        "node_features": node_features(graph, vectors),
        "edge_index": graph.edge_index,
        "edge_features": edge_features(matrix, graph, vectors, operator_features),
    }


def _csr_with_diagonal(graph: GridGraph | LevelGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(mirror (E,): index of edge (j, i) for edge (i, j); slot (E,) of each edge and diag (N,) of each
    diagonal in the CSR order of edges + diagonal; columns (E + N,) in that order), or None when the
    edge list is not symmetric."""
    n = graph.n_nodes
    keys = graph.rows * n + graph.cols  # (E,) sorted
    mirror = np.searchsorted(keys, graph.cols * n + graph.rows)  # (E,)
    if mirror.size and (mirror.max() >= keys.size or not np.array_equal(keys[mirror], graph.cols * n + graph.rows)):
        return None
    all_keys = np.concatenate([keys, np.arange(n) * (n + 1)])  # (E + N,) edges, then diagonals
    order = np.argsort(all_keys, kind="stable")  # (E + N,)
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    columns = np.concatenate([graph.cols, np.arange(n)])[order]  # (E + N,)
    return mirror, position, columns


@lru_cache(maxsize=8)
def _grid_csr_with_diagonal(grid_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    return _csr_with_diagonal(grid_graph(grid_size))


def strength_matrix(selected: np.ndarray, graph: GridGraph | LevelGraph) -> sp.csr_array:
    """C = sym(S) + I as a binary CSR matrix, S the selected edges (a bool mask over the edge list).

    sym(S) = S or S^T: a connection is strong if either endpoint selected it.
    """
    n = graph.n_nodes
    layout = _grid_csr_with_diagonal(graph.grid_size) if isinstance(graph, GridGraph) else _csr_with_diagonal(graph)
    if layout is not None:  # vectorised: the pattern is a subset of the (symmetric) graph + diagonal
        mirror, position, columns = layout
        keep = np.ones(position.size, dtype=bool)  # (E + N,) diagonals always kept
        keep[position[: graph.n_edges]] = selected | selected[mirror]
        counts = np.bincount(np.concatenate([graph.rows, np.arange(n)])[keep[position]], minlength=n)  # (N,)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = columns[keep]
        pattern = sp.csr_array((np.ones(indices.size), indices, indptr), shape=(n, n))
        pattern.has_sorted_indices = True
        return pattern
    rows, cols = graph.rows[selected], graph.cols[selected]  # (n_selected,)
    diagonal = np.arange(n)
    pattern = sp.coo_array(
        (np.ones(2 * rows.size + n), (np.concatenate([rows, cols, diagonal]), np.concatenate([cols, rows, diagonal]))),
        shape=(n, n),
    ).tocsr()
    pattern.sum_duplicates()
    pattern.data[:] = 1.0
    pattern.sort_indices()
    return pattern
