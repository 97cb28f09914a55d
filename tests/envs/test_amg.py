"""AnisotropicAMG-v0: problems, observation graph, C, reward and the env contract."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.graph import EDGE_FEATURE_NAMES, grid_graph, observation, strength_matrix
from envs.amg.problems import EPSILON_RANGE, SPLIT_SIZES, DiffusionProblem, Split, split_problems
from envs.amg.solver import StrengthMeasure, finest_level_strength, solve
from rewards.amg import FAILURE_REWARD, relative_work_reward, work_per_digit

SMALL = 8  # grid side for fast env tests


def test_splits_are_disjoint_and_in_range() -> None:
    params = {s: {(p.epsilon, p.theta) for p in split_problems(s)} for s in Split}
    assert {s: len(v) for s, v in params.items()} == SPLIT_SIZES
    assert not params[Split.TRAIN] & params[Split.TEST]
    assert not params[Split.TRAIN] & params[Split.VAL]
    assert not params[Split.VAL] & params[Split.TEST]
    for eps, theta in set().union(*params.values()):
        assert EPSILON_RANGE[0] <= eps <= EPSILON_RANGE[1] and 0.0 <= theta < np.pi
    assert split_problems("test", 64)[3].epsilon == split_problems("test", 32)[3].epsilon  # same draw at every size


@pytest.mark.parametrize(("family", "pinned"), [
    ("constant", {("train", 0): (0.05237698411624907, 1.7731551724243484), ("val", 31): (0.11799685998458462, 2.102365497984113),
                  ("test", 0): (0.034694538819682756, 0.02072987383399975), ("test", 31): (0.21334190140788004, 2.376511516588054)}),
    ("heterogeneous", {("train", 0): (0.04677703157244801, 1.8213512969653631), ("val", 31): (0.02320545810837362, 1.9768703528492593),
                       ("test", 0): (0.0012853813263197969, 1.523510175735171), ("test", 31): (0.4682186639574277, 1.2506835134868552)}),
])
def test_first_release_cases_keep_their_parameters(family: str, pinned: dict) -> None:
    """Growing the test split (32 -> 256 cases) kept every earlier case: results measured on
    the first release's split are those of test cases 0-31 today (values from the old stream;
    heterogeneous: the first region's eps and the last region's theta)."""
    for (split, case), (epsilon, theta) in pinned.items():
        described = split_problems(split, 32, 0, family)[case].describe()
        if family == "heterogeneous":
            described = {"epsilon": described["epsilon"][0], "theta": described["theta"][-1]}
        assert (described["epsilon"], described["theta"]) == (epsilon, theta), (split, case)


def test_matrix_is_spd_nine_point_and_strong_along_theta() -> None:
    matrix = DiffusionProblem(epsilon=1e-3, theta=0.0, grid_size=5).matrix()
    dense = matrix.toarray()
    assert np.allclose(dense, dense.T) and np.linalg.eigvalsh(dense).min() > 0
    centre = 2 * 5 + 2  # (ix, iy) = (2, 2)
    assert dense[centre, centre + 5] == pytest.approx(-1.0)  # ix + 1: strong (theta = 0 is the first axis)
    assert dense[centre, centre + 1] == pytest.approx(-1e-3)  # iy + 1: weak
    assert DiffusionProblem(0.1, 0.3, 32).matrix().nnz == 8836


def test_observation_of_a_3x3_grid_by_hand() -> None:
    graph = grid_graph(3)
    # node 0 = (0, 0) has neighbours (0, 1), (1, 0), (1, 1) = nodes 1, 3, 4; the centre 4 has all 8
    assert graph.edge_index[:, :3].tolist() == [[0, 0, 0], [1, 3, 4]]
    assert graph.n_edges == 2 * 3 * 2 * 2 + 4 * 2 * 2 == 40
    centre = slice(graph.indptr[4], graph.indptr[5])
    assert graph.cols[centre].tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    eps, theta = 0.1, np.pi / 6
    matrix = DiffusionProblem(eps, theta, 3).matrix()
    obs = observation(matrix, graph, 2, np.random.default_rng(0))
    assert obs["node_features"].shape == (9, 4) and obs["edge_features"].shape == (40, len(EDGE_FEATURE_NAMES))
    assert obs["node_features"][:, 2:].tolist()[4] == [0.5, 0.5]  # coordinates of the centre
    c, s = np.cos(theta), np.sin(theta)
    strong_x, strong_y, cross = c * c + eps * s * s, eps * c * c + s * s, 0.5 * (1 - eps) * c * s
    features = obs["edge_features"][centre]
    names = list(EDGE_FEATURE_NAMES)
    # centre -> (ix+1, iy) = node 7: A = -(C^2 + eps S^2), the largest coupling of the row
    to_7 = features[list(graph.cols[centre]).index(7)]
    assert to_7[names.index("a_row_normalised")] == pytest.approx(-1.0)
    assert to_7[names.index("a_over_diagonal")] == pytest.approx(strong_x / (2 * (1 + eps)), rel=1e-6)
    assert to_7[names.index("cos_2phi")] == 1.0 and to_7[names.index("is_diagonal")] == 0.0
    to_5 = features[list(graph.cols[centre]).index(5)]  # (ix, iy+1)
    assert to_5[names.index("a_row_normalised")] == pytest.approx(-strong_y / strong_x, rel=1e-6)
    to_8 = features[list(graph.cols[centre]).index(8)]  # (ix+1, iy+1): stencil entry a = (eps - 1) C S / 2
    assert to_8[names.index("a_row_normalised")] == pytest.approx(-cross / strong_x, rel=1e-5)
    assert to_8[names.index("is_diagonal")] == 1.0 and to_8[names.index("sin_2phi")] == pytest.approx(1.0)
    # the centre row's second moment is the diffusion tensor: strong direction theta, anisotropy 1 - eps
    assert to_7[names.index("alignment")] == pytest.approx(np.cos(theta), rel=1e-5)
    assert to_5[names.index("alignment")] == pytest.approx(np.sin(theta), rel=1e-5)
    assert to_7[names.index("row_anisotropy")] == pytest.approx(1 - eps, rel=1e-5)
    assert np.all((obs["edge_features"] >= -1) & (obs["edge_features"] <= 1))


def test_strength_matrix_is_symmetric_binary_with_unit_diagonal() -> None:
    graph = grid_graph(4)
    selected = np.random.default_rng(0).random(graph.n_edges) < 0.3
    C = strength_matrix(selected, graph).toarray()
    assert np.array_equal(C, C.T) and set(np.unique(C)) <= {0.0, 1.0}
    assert np.all(np.diag(C) == 1.0)
    off = C - np.eye(16)
    expected = np.zeros((16, 16))
    expected[graph.rows[selected], graph.cols[selected]] = 1
    assert np.array_equal(off, np.maximum(expected, expected.T))


def test_reward_function() -> None:
    assert work_per_digit(1.5, 0.1) == pytest.approx(1.5)
    assert relative_work_reward(2.0, 4.0) == (pytest.approx(np.log(2.0)), False)
    assert relative_work_reward(100.0, 1.0) == (FAILURE_REWARD, True)
    with pytest.raises(ValueError, match="convergence_factor"):
        work_per_digit(1.2, 1.0)


def test_finest_level_strength_keeps_a_multilevel_hierarchy() -> None:
    """The list form applies C on the finest level only; the tuple form would stop at two levels."""
    problem = DiffusionProblem(0.01, 0.4, 32)
    matrix, rhs = problem.matrix(), np.random.default_rng(0).standard_normal(1024)
    graph = grid_graph(32)
    C = strength_matrix(np.ones(graph.n_edges, dtype=bool), graph)
    learned = solve(matrix, finest_level_strength(C, StrengthMeasure.SYMMETRIC), rhs)
    reference = solve(matrix, StrengthMeasure.SYMMETRIC.pyamg_argument(), rhs)
    assert learned.levels > 2
    # every 9-point edge selected = symmetric(0)'s C: the same solver
    assert learned.pcg_iterations == reference.pcg_iterations
    assert learned.operator_complexity == pytest.approx(reference.operator_complexity)


def test_env_passes_gymnasium_and_sb3_checkers() -> None:
    env = AnisotropicAMGEnv(grid_size=SMALL)
    gym_check_env(env)
    with pytest.warns(UserWarning, match="unconventional shape"):  # graph arrays, handled by policies.gnn
        sb3_check_env(env)


def test_reward_and_info_are_deterministic_for_a_seed() -> None:
    env = gym.make("AnisotropicAMG-v0", grid_size=SMALL)
    action = np.random.default_rng(1).integers(0, 2, env.action_space.n).astype(np.int8)
    outcomes = []
    for _ in range(2):
        obs, _ = env.reset(seed=7)
        _, reward, terminated, truncated, info = env.step(action)
        outcomes.append((obs["node_features"].copy(), reward, info))
    assert np.array_equal(outcomes[0][0], outcomes[1][0])
    assert outcomes[0][1] == outcomes[1][1] and outcomes[0][2] == outcomes[1][2]
    assert terminated and not truncated


def test_case_option_replays_a_case_and_validates() -> None:
    env = gym.make("AnisotropicAMG-v0", grid_size=SMALL, split="test")
    _, info = env.reset(seed=0, options={"case": 5})
    assert info["case"] == 5 and info["epsilon"] == env.unwrapped.problems[5].epsilon
    with pytest.raises(ValueError, match="case"):
        env.reset(options={"case": SPLIT_SIZES[Split.TEST]})


def test_random_multibinary_actions_never_crash() -> None:
    env = gym.make("AnisotropicAMG-v0", grid_size=SMALL)
    env.action_space.seed(0)
    for seed in range(6):
        env.reset(seed=seed)
        _, reward, _, _, info = env.step(env.action_space.sample())
        assert np.isfinite(reward) and reward >= FAILURE_REWARD
        assert info["invalid_action"] is False and "pcg_iterations" in info and "baseline_pcg_iterations" in info
    for action in (np.zeros(env.action_space.n, np.int8), np.ones(env.action_space.n, np.int8)):
        env.reset(seed=0)
        _, reward, *_ = env.step(action)
        assert np.isfinite(reward)


def test_all_edges_equal_the_baseline_and_a_good_c_beats_it() -> None:
    """Selecting every edge reproduces symmetric(0) (reward 0); a C along the strong axis wins."""
    env = gym.make("AnisotropicAMG-v0", grid_size=32, split="test")
    env.reset(seed=0, options={"case": 0})
    _, reward_all, _, _, info = env.step(np.ones(env.action_space.n, np.int8))
    assert reward_all == pytest.approx(0.0, abs=1e-12) and info["pcg_iterations"] == info["baseline_pcg_iterations"]
    problem = env.unwrapped.problems[0]
    graph = env.unwrapped.graph
    axis = np.array([np.cos(problem.theta), np.sin(problem.theta)])
    unit = graph.offsets / np.linalg.norm(graph.offsets, axis=1, keepdims=True)
    aligned = np.abs(unit @ axis) > np.cos(np.pi / 8)  # the neighbour pair nearest the strong direction
    env.reset(seed=0, options={"case": 0})
    _, reward_axis, *_ = env.step(aligned.astype(np.int8))
    assert reward_axis != reward_all  # the selection changes the solver


def test_invalid_actions_and_arguments_raise_clear_errors() -> None:
    env = AnisotropicAMGEnv(grid_size=SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, np.int8))
    with pytest.raises(ValueError, match="0 and 1"):
        env.step(np.full(env.action_space.n, 2, np.int8))
    with pytest.raises(ValueError, match="coarse_strength"):
        AnisotropicAMGEnv(coarse_strength="classical")
    with pytest.raises(ValueError, match="split"):
        AnisotropicAMGEnv(split="training")
    with pytest.raises(ValueError, match="grid_size"):
        AnisotropicAMGEnv(grid_size=1)


def test_docstrings_list_every_enum_member() -> None:
    for member in StrengthMeasure:
        assert f"``{member.value}``" in StrengthMeasure.__doc__
        assert member.value in AnisotropicAMGEnv.__doc__ or member is StrengthMeasure.SYMMETRIC_025


def test_timings_only_on_request() -> None:
    env = gym.make("AnisotropicAMG-v0", grid_size=SMALL, report_timings=True)
    env.reset(seed=0)
    info = env.step(np.ones(env.action_space.n, np.int8))[4]
    assert info["setup_seconds"] > 0 and info["baseline_setup_seconds"] > 0


def test_evaluator_reports_agent_and_baselines() -> None:
    from agents.baselines import AMGDirectionAgent
    from agents.evaluation import evaluate

    result = evaluate(AMGDirectionAgent(4), "AnisotropicAMG-v0", env_kwargs={"grid_size": SMALL}, n_episodes=2, seed=0)
    keys = {"mean_reward", "std_reward", "n_episodes", "mean_pcg_iterations", "mean_operator_complexity",
            "mean_work", "mean_setup_seconds"}
    assert keys <= set(result)
    assert {"symmetric", "symmetric_0.25", "evolution", "evolution_finest_level", "random", "direction",
            "direction_every_level", "evolution_threshold", "tolerance_scorer", "evolution_tolerance_search",
            "evolution_tolerance_oracle"} == set(
        result["baselines"]
    )
    for summary in result["baselines"].values():
        assert keys <= set(summary)
    assert result["baselines"]["symmetric"]["mean_reward"] == 0.0  # the reference solver itself
    assert result["mean_reward"] == pytest.approx(result["baselines"]["direction"]["mean_reward"])  # same agent
    assert result["mean_work"] == pytest.approx(result["baselines"]["direction"]["mean_work"])


@pytest.mark.parametrize("mode", ["finest", "multilevel"])
def test_a_replayed_case_observes_what_a_fresh_env_observes(mode: str) -> None:
    """The per-case cache of the operator's edge features must not change an observation."""
    cached = AnisotropicAMGEnv(grid_size=12, mode=mode)
    cached.reset(seed=1, options={"case": 3})
    replayed, _ = cached.reset(seed=2, options={"case": 3})  # operator features from the cache
    fresh, _ = AnisotropicAMGEnv(grid_size=12, mode=mode).reset(seed=2, options={"case": 3})
    for key in fresh:
        np.testing.assert_array_equal(replayed[key], fresh[key], err_msg=key)
    graph = grid_graph(12)
    direct = observation(cached.problems[3].matrix(), graph, cached.n_smoothed_vectors, np.random.default_rng(0))
    env = AnisotropicAMGEnv(grid_size=12)
    env.reset(seed=5, options={"case": 3})
    env.np_random = np.random.default_rng(0)  # the same random vectors as `direct`
    again = env._observe(env.problems[3].matrix())  # from the cache
    np.testing.assert_array_equal(again["edge_features"], direct["edge_features"])


def test_algebraic_distance_column_is_the_mean_squared_difference_over_the_row_max() -> None:
    """The distance edge feature, computed with np.take for speed, is exactly the definition:
    mean over the smoothed vectors of (v_i - v_j)^2, divided by the largest such value in row i."""
    from envs.amg.graph import DISTANCE_COLUMN, edge_features, smoothed_vectors

    graph = grid_graph(8)
    matrix = DiffusionProblem(0.01, 0.7, 8).matrix()
    vectors = smoothed_vectors(matrix, 4, np.random.default_rng(3))  # (N, 4)
    distance = np.mean((vectors[graph.rows] - vectors[graph.cols]) ** 2, axis=1)  # (E,)
    row_max = np.array([distance[graph.rows == graph.rows[e]].max() for e in range(graph.n_edges)])
    expected = (distance / row_max).astype(np.float32)
    np.testing.assert_array_equal(edge_features(matrix, graph, vectors)[:, DISTANCE_COLUMN], expected)
