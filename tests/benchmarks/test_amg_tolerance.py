"""The drop-tolerance study's pieces: the nearest-neighbour predictor and the solves it scores."""

from __future__ import annotations

import numpy as np

from benchmarks.amg_tolerance import DEFAULT_TOLERANCE, TOLERANCES, case_descriptor, knn_choice, pair_works, tolerance_works
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.solver import solve


def test_knn_recovers_a_best_tolerance_that_depends_smoothly_on_the_case() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (200, 1))  # (T, 1) descriptor
    works = np.full((200, 3), 2.0)
    works[x[:, 0] < 0.5, 0] = 1.0  # tolerance 0 is best on the left, 2 on the right
    works[x[:, 0] >= 0.5, 2] = 1.0
    choices = knn_choice(x, works, np.array([[0.1], [0.4], [0.6], [0.9]]), k=15)
    np.testing.assert_array_equal(choices, [0, 0, 2, 2])


def test_descriptors_summarise_the_coefficients() -> None:
    constant = AnisotropicAMGEnv(grid_size=8, split="test").problems[0]
    np.testing.assert_allclose(case_descriptor(constant)[0], np.log10(constant.epsilon))
    heterogeneous = AnisotropicAMGEnv(grid_size=8, split="test", problem_family="heterogeneous").problems[0]
    descriptor = case_descriptor(heterogeneous)
    log_eps = np.log10(heterogeneous.epsilons)
    assert descriptor.shape == (5,) and log_eps.min() - 1e-12 <= descriptor[0] <= log_eps.max() + 1e-12
    assert descriptor[-1] == len(heterogeneous.epsilons)


def test_default_tolerance_column_is_pyamgs_evolution_solver() -> None:
    env = AnisotropicAMGEnv(grid_size=12, split="test", problem_family="heterogeneous")
    works = tolerance_works(env, [0, 1])
    pairs = pair_works(env, [0, 1])
    for row, case in enumerate([0, 1]):
        reference = solve(env.problems[case].matrix(), ("evolution", {}), env.rhs(case), env.max_iterations).work
        assert works[row, TOLERANCES.index(DEFAULT_TOLERANCE)] == reference
        assert reference in pairs[row]  # the (4, 4) pair
    assert not np.isnan(works).any() and len(set(works[0])) > 1  # the tolerance changes the solve
