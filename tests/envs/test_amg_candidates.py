"""The candidate aggregation features: the weak-approximation measure, and what the env shows with them."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from envs.amg.candidates import CANDIDATE_FEATURE_NAMES, weak_approximation
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.graph import FIRST_TOLERANCE_COLUMN

TOLERANCES = [3.0, 4.0, 8.0]


def _laplacian(n: int) -> sp.csr_array:
    return sp.csr_array(sp.diags([-np.ones(n - 1), 2.0 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1]))


def test_weak_approximation_is_the_d_norm_of_the_aggregate_mean_residual_over_the_energy() -> None:
    rng = np.random.default_rng(0)
    A, v = _laplacian(6), rng.standard_normal((6, 2))
    aggregates = sp.csr_array((np.ones(6), (np.arange(6), [0, 0, 1, 1, 1, 2])), shape=(6, 3))
    residual = v.copy()
    for members in ([0, 1], [2, 3, 4], [5]):
        residual[members] -= v[members].mean(axis=0)
    expected = np.mean([2.0 * residual[:, j] @ residual[:, j] / (v[:, j] @ (A @ v[:, j])) for j in range(2)])
    assert weak_approximation(A, aggregates, v) == pytest.approx(expected, rel=1e-12)
    assert weak_approximation(A, sp.eye_array(6, format="csr"), v) == 0.0  # singletons represent everything
    smooth = np.linspace(0.0, 1.0, 6)[:, None]  # a smooth vector is represented better than a rough one by pairs
    pairs = sp.csr_array((np.ones(6), (np.arange(6), [0, 0, 1, 1, 2, 2])), shape=(6, 3))
    rough = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])[:, None]
    assert weak_approximation(A, pairs, smooth) < weak_approximation(A, pairs, rough)


@pytest.mark.parametrize("mode", ["finest", "multilevel"])
def test_the_env_shows_each_candidates_aggregation_and_its_coarsening_ratio_is_the_envs(mode: str) -> None:
    env = AnisotropicAMGEnv(grid_size=16, split="test", mode=mode, problem_family="heterogeneous",
                            evolution_features=True, evolution_tolerances=TOLERANCES)
    assert env.observation_space["candidate_features"].shape == (len(TOLERANCES), len(CANDIDATE_FEATURE_NAMES))
    first = FIRST_TOLERANCE_COLUMN
    obs, _ = env.reset(seed=0, options={"case": 1})
    again, _ = env.reset(seed=0, options={"case": 1})
    np.testing.assert_array_equal(obs["candidate_features"], again["candidate_features"])  # deterministic per seed
    assert env.observation_space.contains(obs) and np.isfinite(obs["candidate_features"]).all()
    assert len(set(obs["candidate_features"][:, 0].tolist())) > 1  # the tolerances aggregate differently
    if mode == "multilevel":
        for k in range(len(TOLERANCES)):
            obs, _ = env.reset(seed=0, options={"case": 1})
            action = (obs["edge_features"][:, first + k] > 0).astype(np.int8)
            _, _, _, _, info = env.step(action)
            ratio = np.exp(obs["candidate_features"][k, 1])
            assert env.graph.n_nodes / info["coarse_nodes"] == pytest.approx(ratio, rel=1e-5)


def test_no_candidate_features_without_tolerances() -> None:
    env = AnisotropicAMGEnv(grid_size=8, split="test", evolution_features=True)
    assert "candidate_features" not in env.observation_space.spaces
    assert "candidate_features" not in env.reset(seed=0)[0]
