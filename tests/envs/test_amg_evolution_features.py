"""AnisotropicAMG-v0(evolution_features=True): PyAMG's evolution measure as two extra edge columns."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

from envs.amg.env import AnisotropicAMGEnv
from envs.amg.graph import EDGE_FEATURE_NAMES, EVOLUTION_FEATURE_NAMES
from envs.amg.solver import StrengthMeasure, solve

GRID = 16


def _evolution_action(env: AnisotropicAMGEnv, obs: dict[str, np.ndarray]) -> np.ndarray:
    """Select the edges the observation marks ``evolution_strong = +1`` (padding slots unselected)."""
    column = env.edge_feature_names.index("evolution_strong")
    n_edges = int(obs["graph_size"][1]) if "graph_size" in obs else env.edge_capacity
    action = np.zeros(env.edge_capacity, np.int8)
    action[:n_edges] = obs["edge_features"][:n_edges, column] > 0
    return action


@pytest.mark.parametrize("mode", ["finest", "multilevel"])
def test_columns_are_appended_in_bounds_and_pass_the_checker(mode: str) -> None:
    env = AnisotropicAMGEnv(grid_size=8, mode=mode, evolution_features=True)
    assert env.edge_feature_names == EDGE_FEATURE_NAMES + EVOLUTION_FEATURE_NAMES
    assert env.observation_space["edge_features"].shape == (env.edge_capacity, len(EDGE_FEATURE_NAMES) + 2)
    gym_check_env(env)
    obs, _ = env.reset(seed=0)
    strong, measure = obs["edge_features"][:, -2], obs["edge_features"][:, -1]
    real = slice(0, int(obs["graph_size"][1])) if mode == "multilevel" else slice(None)
    assert set(np.unique(strong[real])) == {-1.0, 1.0}  # some edges kept, some dropped
    assert measure[real].min() >= 0.0 and measure[real].max() == pytest.approx(1.0)
    # the strongest edges by the undropped measure are the kept ones
    assert measure[real][strong[real] > 0].mean() > measure[real][strong[real] < 0].mean()
    plain, _ = AnisotropicAMGEnv(grid_size=8, mode=mode).reset(seed=0)
    np.testing.assert_array_equal(obs["edge_features"][:, : len(EDGE_FEATURE_NAMES)], plain["edge_features"])


@pytest.mark.parametrize("family", ["constant", "heterogeneous"])
def test_selecting_the_strong_column_on_every_level_is_the_evolution_solver(family: str) -> None:
    """So a policy warm-started on that column starts at the strongest fixed baseline."""
    env = AnisotropicAMGEnv(grid_size=GRID, mode="multilevel", problem_family=family, split="test",
                            evolution_features=True)
    works, references, defaults = [], [], []
    for case in range(4):
        obs, _ = env.reset(options={"case": case})
        terminated = False
        while not terminated:
            obs, reward, terminated, _, info = env.step(_evolution_action(env, obs))
        assert not info["solver_failed"] and info["level"] >= 1
        evolution = solve(env.problems[case].matrix(), StrengthMeasure.EVOLUTION.pyamg_argument(), env.rhs(case))
        works.append(info["work"])
        references.append(evolution.work)
        defaults.append(info["baseline_work"])
    np.testing.assert_allclose(works, references, rtol=0.01)
    assert np.mean(works) < 0.95 * np.mean(defaults)  # and that is not PyAMG's default


def test_finest_mode_uses_the_finest_operator_and_caches_per_case() -> None:
    env = AnisotropicAMGEnv(grid_size=GRID, evolution_features=True)
    first, _ = env.reset(seed=0, options={"case": 2})
    again, _ = env.reset(seed=1, options={"case": 2})
    np.testing.assert_array_equal(first["edge_features"][:, -2:], again["edge_features"][:, -2:])
    _, _, _, _, info = env.step(_evolution_action(env, first))
    assert not info["solver_failed"]


def test_bad_flag_is_named() -> None:
    with pytest.raises(TypeError, match="evolution_features"):
        AnisotropicAMGEnv(grid_size=8, evolution_features="yes")
