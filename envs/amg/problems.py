"""Rotated anisotropic diffusion problems, -div(Q diag(1, eps) Q^T grad u) = f.

The 9-point finite-difference stencil of PyAMG's gallery on an n x n grid (Dirichlet
boundary, unknowns ordered like ``np.ravel`` of an (n, n) array: index = ix * n + iy).
The parameters (eps, theta) of every split are drawn once from a seeded generator:
eps log-uniform in [1e-3, 0.5] (strong to mild anisotropy), theta uniform in [0, pi)
(the operator is pi-periodic in theta). Train, validation and test draws are
consecutive blocks of one stream and are checked to be disjoint; the grid size does
not enter the draw, so the same test parameters serve every grid size (transfer).
``Split`` is :class:`envs.splits.Split`, re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from pyamg.gallery import diffusion_stencil_2d, stencil_grid

from envs.splits import Split, parse_split

__all__ = [
    "EPSILON_RANGE",
    "THETA_RANGE",
    "SPLIT_SIZES",
    "DiffusionProblem",
    "Split",
    "split_problems",
    "right_hand_side",
]

EPSILON_RANGE = (1.0e-3, 0.5)
"""Anisotropy ratio eps (dimensionless), sampled log-uniformly."""
THETA_RANGE = (0.0, np.pi)
"""Rotation angle theta (radians), sampled uniformly."""


SPLIT_SIZES: dict[Split, int] = {Split.TRAIN: 256, Split.VAL: 32, Split.TEST: 32}
"""Number of (eps, theta) cases per split, in the order the stream is consumed."""


@dataclass(frozen=True)
class DiffusionProblem:
    """One anisotropic diffusion operator on an n x n grid."""

    epsilon: float
    """Anisotropy ratio: diffusion 1 along the rotated x axis, eps across it."""
    theta: float
    """Rotation of the strong direction from the grid's first axis, radians."""
    grid_size: int
    """Unknowns per side (n); the matrix is n^2 x n^2."""

    def matrix(self) -> sp.csr_array:
        """The SPD system matrix (CSR, float64)."""
        return _matrix(self.epsilon, self.theta, self.grid_size)


@lru_cache(maxsize=64)
def _matrix(epsilon: float, theta: float, grid_size: int) -> sp.csr_array:
    stencil = diffusion_stencil_2d(epsilon=epsilon, theta=theta, type="FD")  # (3, 3)
    matrix = sp.csr_array(stencil_grid(stencil, (grid_size, grid_size), format="csr"))
    matrix.sort_indices()
    return matrix


def _check_grid_size(grid_size: int) -> None:
    if not isinstance(grid_size, (int, np.integer)) or isinstance(grid_size, bool) or grid_size < 2:
        raise ValueError(f"grid_size must be an integer >= 2 (unknowns per side), got {grid_size!r}")


@lru_cache(maxsize=8)
def _parameter_stream(problem_seed: int) -> dict[Split, np.ndarray]:
    rng = np.random.default_rng(problem_seed)
    total = sum(SPLIT_SIZES.values())
    log_eps = rng.uniform(np.log(EPSILON_RANGE[0]), np.log(EPSILON_RANGE[1]), size=total)
    theta = rng.uniform(*THETA_RANGE, size=total)
    params = np.stack([np.exp(log_eps), theta], axis=1)  # (total, 2)
    if len(np.unique(params, axis=0)) != total:
        raise RuntimeError(f"problem_seed={problem_seed} drew a repeated (eps, theta); splits would overlap")
    blocks, start = {}, 0
    for split, size in SPLIT_SIZES.items():
        blocks[split] = params[start:start + size]
        start += size
    return blocks


def split_problems(split: Split | str, grid_size: int = 32, problem_seed: int = 0) -> list[DiffusionProblem]:
    """The cases of ``split`` (a fixed list: case i is always the same problem)."""
    split = parse_split(split)
    _check_grid_size(grid_size)
    return [
        DiffusionProblem(epsilon=float(eps), theta=float(theta), grid_size=int(grid_size))
        for eps, theta in _parameter_stream(int(problem_seed))[split]
    ]


def right_hand_side(problem_seed: int, split: Split | str, case: int, size: int) -> np.ndarray:
    """The seeded right-hand side b ~ N(0, I) of one case, shared by every solver compared on it."""
    key = [int(problem_seed), list(Split).index(parse_split(split)), int(case), int(size)]
    return np.random.default_rng(key).standard_normal(size)  # (n^2,)
