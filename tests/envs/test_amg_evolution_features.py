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


def test_threshold_agent_keeps_a_variable_count_per_row_and_nests() -> None:
    from agents.baselines.amg import AMGMeasureThresholdAgent

    env = AnisotropicAMGEnv(grid_size=GRID, mode="multilevel", problem_family="heterogeneous", evolution_features=True)
    obs, _ = env.reset(seed=0, options={"case": 1})
    loose, tight = AMGMeasureThresholdAgent(0.1).predict(obs)[0], AMGMeasureThresholdAgent(0.3).predict(obs)[0]
    assert loose.shape == (env.edge_capacity,) and not loose[int(obs["graph_size"][1]):].any()  # no padding bits
    assert (tight <= loose).all() and tight.sum() < loose.sum()  # a higher threshold keeps a subset
    rows = obs["edge_index"][0, : int(obs["graph_size"][1])]
    per_row = np.bincount(rows, weights=loose[: rows.size], minlength=GRID * GRID)
    assert per_row.min() < per_row.max()  # not a fixed k per row
    with pytest.raises(ValueError, match="evolution_features"):
        AMGMeasureThresholdAgent(0.1).predict(AnisotropicAMGEnv(grid_size=8).reset(seed=0)[0])
    with pytest.raises(ValueError, match="threshold"):
        AMGMeasureThresholdAgent(1.5)


def test_a_policy_warm_started_at_the_threshold_rule_acts_as_the_rule() -> None:
    """edge_linear_bias makes the rule `evolution_measure > t` one linear path of the GNN policy."""
    import torch

    from agents.baselines.amg import AMGMeasureThresholdAgent
    from policies.gnn import GNNEdgePolicy

    env = AnisotropicAMGEnv(grid_size=GRID, mode="multilevel", evolution_features=True)
    weights = [0.0] * len(env.edge_feature_names)
    weights[env.edge_feature_names.index("evolution_measure")] = 100.0
    policy = GNNEdgePolicy(env.observation_space, env.action_space, lambda _: 1e-3, distribution="bernoulli",
                           edge_linear_init=weights, edge_linear_bias=-100.0 * 0.15)
    obs, _ = env.reset(seed=0, options={"case": 0})
    measure = obs["edge_features"][: int(obs["graph_size"][1]), -1]
    clear = np.abs(measure - 0.15) > 1e-3  # edges the untrained MLP (output ~1e-3) cannot tip over
    action = policy.predict(obs, deterministic=True)[0]
    rule = AMGMeasureThresholdAgent(0.15).predict(obs)[0]
    np.testing.assert_array_equal(action[: measure.size][clear], rule[: measure.size][clear])
    assert (action[measure.size:] == 0).all()
    bias = policy.scorer.edge_linear.bias
    assert bias is not None and bias.requires_grad and torch.isclose(bias, torch.tensor(-15.0)).all()
    assert GNNEdgePolicy(env.observation_space, env.action_space, lambda _: 1e-3).scorer.edge_linear.bias is None


def test_features_do_not_depend_on_numpy_global_rng() -> None:
    """PyAMG's evolution measure estimates a spectral radius from np.random: pinned here."""
    from envs.amg.graph import evolution_edge_features, grid_graph

    env = AnisotropicAMGEnv(grid_size=GRID, split="test", problem_family="heterogeneous")
    matrix = env.problems[0].matrix()
    np.random.seed(1)
    first = evolution_edge_features(matrix, grid_graph(GRID))
    np.random.seed(2)
    state = np.random.get_state()
    second = evolution_edge_features(matrix, grid_graph(GRID))
    np.testing.assert_array_equal(first, second)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # the caller's stream is given back


def test_tuned_threshold_is_stored_once_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator tunes the ``evolution_threshold`` reference in every process; after the
    first process the tuning comes from the cache dir, with the same answer."""
    from agents.baselines import amg

    calls = []
    real = amg._tune_measure_threshold
    monkeypatch.setattr(amg, "_tune_measure_threshold", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(amg, "TUNING_CASES", 2)  # a different cache key from the real tuning's, and fast
    amg.tuned_measure_threshold.cache_clear()
    first = amg.tuned_measure_threshold("heterogeneous", 0)
    amg.tuned_measure_threshold.cache_clear()  # a new process: only the disk cache is left
    assert amg.tuned_measure_threshold("heterogeneous", 0) == first
    assert first in amg.THRESHOLD_GRID and len(calls) == 1
    amg.tuned_measure_threshold.cache_clear()


def test_tolerance_columns_follow_and_nest_by_tolerance() -> None:
    """A larger drop tolerance keeps a superset of the edges; the default's column is evolution_strong."""
    env = AnisotropicAMGEnv(grid_size=12, mode="multilevel", problem_family="heterogeneous", evolution_features=True,
                            evolution_tolerances=[2, 4, 12])
    assert env.edge_feature_names[-3:] == ("evolution_strong_eps2", "evolution_strong_eps4", "evolution_strong_eps12")
    gym_check_env(env)
    obs, _ = env.reset(seed=0)
    real = obs["edge_features"][: int(obs["graph_size"][1])]
    strong, eps2, eps4, eps12 = (real[:, env.edge_feature_names.index(n)] > 0 for n in (
        "evolution_strong", "evolution_strong_eps2", "evolution_strong_eps4", "evolution_strong_eps12"))
    np.testing.assert_array_equal(eps4, strong)
    assert (eps2 <= eps4).all() and (eps4 <= eps12).all() and eps2.sum() < eps12.sum()


def test_the_reused_default_column_is_pyamgs_default_tolerance() -> None:
    """``evolution_strong_eps4`` reuses ``evolution_strong`` only while 4 is PyAMG's default epsilon."""
    import inspect

    from pyamg.strength import evolution_strength_of_connection

    from envs.amg.graph import PYAMG_EVOLUTION_EPSILON

    default = inspect.signature(evolution_strength_of_connection).parameters["epsilon"].default
    assert default == PYAMG_EVOLUTION_EPSILON
