"""AnisotropicAMG-v0 multi-level mode and the heterogeneous problem family."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
from gymnasium.utils.env_checker import check_env as gym_check_env

import envs  # noqa: F401
from agents.baselines.amg import AMGDirectionAgent, AMGRandomKPerRowAgent
from envs.amg.env import EDGE_CAPACITY_FACTOR, AnisotropicAMGEnv, EpisodeMode
from envs.amg.graph import grid_graph
from envs.amg.problems import (
    REGION_COUNT_RANGE,
    SPLIT_SIZES,
    DiffusionProblem,
    HeterogeneousProblem,
    ProblemFamily,
    Split,
    split_problems,
)
from envs.amg.solver import MAX_COARSE, PYAMG_GLOBAL_SEED, LevelByLevelHierarchy, per_level_strength
from rewards.amg import FAILURE_REWARD

SMALL = 12  # 144 unknowns: two coarsenings to <= 10


def _play(env: gym.Env, agent, seed: int, case: int) -> tuple[list[float], dict, int]:
    obs, _ = env.reset(seed=seed, options={"case": case})
    rewards, done = [], False
    while not done:
        obs, reward, done, truncated, info = env.step(agent.predict(obs)[0])
        rewards.append(reward)
        assert not truncated
    return rewards, info, len(rewards)


def test_level_by_level_hierarchy_equals_pyamg_from_the_c_list() -> None:
    """The env's incremental build and PyAMG's list form give the same operators, so only C differs."""
    env = AnisotropicAMGEnv(grid_size=32, split="test", mode="multilevel", problem_family="heterogeneous")
    agent = AMGRandomKPerRowAgent(3, seed=0)
    obs, _ = env.reset(seed=0, options={"case": 2})
    operators = [env.unwrapped._hierarchy.operator.copy()]
    strengths, done = [], False
    while not done:
        action = agent.predict(obs)[0]
        strengths.append(env.strength_of(action))
        obs, _, done, _, info = env.step(action)
        if not done:
            operators.append(env.unwrapped._hierarchy.operator.copy())
    matrix = env.problems[2].matrix()
    state = np.random.get_state()
    np.random.seed(PYAMG_GLOBAL_SEED)
    reference = pyamg.smoothed_aggregation_solver(
        sp.csr_matrix(matrix), B=np.ones((matrix.shape[0], 1)), strength=per_level_strength(strengths), max_coarse=MAX_COARSE
    )
    np.random.set_state(state)
    assert len(reference.levels) == len(strengths) + 1 == info["levels"]
    for level, operator in zip(reference.levels, operators):
        assert abs(level.A - operator).max() == 0.0
    assert reference.levels[-1].A.shape[0] <= MAX_COARSE < operators[-1].shape[0]
    assert info["operator_complexity"] == pytest.approx(reference.operator_complexity())


def test_all_edges_on_every_level_is_the_default_solver() -> None:
    """Every edge of every level = symmetric(0)'s pattern on every level: reward exactly 0."""
    env = gym.make("AnisotropicAMG-v0", grid_size=32, split="test", mode="multilevel")
    obs, _ = env.reset(seed=0, options={"case": 1})
    done, steps = False, 0
    while not done:
        action = np.zeros(env.action_space.n, np.int8)
        action[: obs["graph_size"][1]] = 1
        obs, reward, done, _, info = env.step(action)
        steps += 1
    assert steps >= 2 and reward == 0.0 and info["pcg_iterations"] == info["baseline_pcg_iterations"]
    assert info["levels"] == steps + 1


def test_multilevel_episode_shape_rewards_and_padding() -> None:
    env = AnisotropicAMGEnv(grid_size=SMALL, mode="multilevel")
    graph = grid_graph(SMALL)
    assert env.action_space.n == EDGE_CAPACITY_FACTOR * graph.n_edges
    obs, info = env.reset(seed=3)
    assert obs["graph_size"].tolist() == [SMALL**2, graph.n_edges]
    assert np.all(obs["node_features"][:, -1] == 0.0)  # level index 0
    action = np.zeros(env.action_space.n, np.int8)
    action[: graph.n_edges] = AMGDirectionAgent(4)._select(
        {"edge_index": obs["edge_index"][:, : graph.n_edges], "edge_features": obs["edge_features"][: graph.n_edges]}
    )
    action[-1] = 1  # a padding bit: ignored, flagged
    obs, reward, terminated, truncated, info = env.step(action)
    assert not terminated and reward == 0.0 and info["invalid_action"] is True and info["level"] == 0
    n_nodes, n_edges = obs["graph_size"]
    assert n_nodes == info["coarse_nodes"] < SMALL**2 and 0 < n_edges < graph.n_edges
    assert np.all(obs["node_features"][:n_nodes, -1] > 0) and np.all(obs["node_features"][n_nodes:] == 0)
    assert np.all(obs["edge_features"][n_edges:] == 0) and np.all(np.diff(obs["edge_index"][0, :n_edges]) >= 0)
    # coarse coordinates are aggregate centroids inside the square
    assert np.all((obs["node_features"][:n_nodes, -3:-1] >= 0) & (obs["node_features"][:n_nodes, -3:-1] <= 1))
    assert env.observation_space.contains(obs)
    rewards, info, steps = _play(env, AMGDirectionAgent(4), seed=3, case=info["case"])
    assert all(r == 0.0 for r in rewards[:-1]) and np.isfinite(rewards[-1]) and rewards[-1] >= FAILURE_REWARD
    assert info["levels"] == steps + 1 and info["capacity_fallback"] is False


def test_multilevel_env_passes_the_checker_and_is_deterministic() -> None:
    env = AnisotropicAMGEnv(grid_size=SMALL, mode="multilevel", problem_family="heterogeneous")
    gym_check_env(env, skip_render_check=True)
    outcomes = [_play(env, AMGRandomKPerRowAgent(4, seed=5), seed=11, case=4) for _ in range(2)]
    assert outcomes[0] == outcomes[1]


def test_random_actions_on_every_level_never_crash() -> None:
    env = gym.make("AnisotropicAMG-v0", grid_size=SMALL, mode="multilevel", problem_family="heterogeneous")
    env.action_space.seed(0)
    for seed in range(4):
        env.reset(seed=seed)
        done = False
        while not done:
            _, reward, done, _, info = env.step(env.action_space.sample())
            assert np.isfinite(reward)
        assert reward >= FAILURE_REWARD and "solver_failed" in info


def test_heterogeneous_splits_are_disjoint_seeded_and_spd() -> None:
    cases = {s: split_problems(s, 8, family="heterogeneous") for s in Split}
    assert {s: len(v) for s, v in cases.items()} == SPLIT_SIZES
    keys = {s: {(p.centres, p.epsilons, p.thetas) for p in v} for s, v in cases.items()}
    assert not keys[Split.TRAIN] & keys[Split.TEST] and not keys[Split.VAL] & keys[Split.TEST]
    counts = {len(p.centres) for p in cases[Split.TRAIN]}
    assert counts == set(range(REGION_COUNT_RANGE[0], REGION_COUNT_RANGE[1] + 1))
    assert split_problems("test", 8, family="heterogeneous")[0] == cases[Split.TEST][0]  # seeded
    for problem in cases[Split.TEST][:6]:
        dense = problem.matrix().toarray()
        assert np.allclose(dense, dense.T) and np.linalg.eigvalsh(dense).min() > 0
    with pytest.raises(ValueError, match="problem_family"):
        AnisotropicAMGEnv(problem_family="piecewise")
    with pytest.raises(ValueError, match="mode"):
        AnisotropicAMGEnv(mode="all_levels")


def test_heterogeneous_rows_inside_a_region_are_that_regions_operator() -> None:
    problem = HeterogeneousProblem(((0.2, 0.2), (0.8, 0.8)), (1e-3, 0.2), (0.3, 2.0), 16)
    weights = problem.region_weights()
    matrix = problem.matrix().toarray()
    for region in range(2):
        pure = np.flatnonzero(weights[:, region] == 1.0)
        inner = [i for i in pure if np.all(weights[np.flatnonzero(matrix[i]), region] == 1.0)]
        assert len(inner) > 20
        own = DiffusionProblem(problem.epsilons[region], problem.thetas[region], 16).matrix().toarray()
        assert np.allclose(matrix[inner], own[inner])
    # a region's strong direction differs from the other's: no single pattern fits both
    assert not np.allclose(matrix[inner[0]][np.flatnonzero(matrix[inner[0]])],
                           DiffusionProblem(1e-3, 0.3, 16).matrix().toarray()[inner[0]][np.flatnonzero(matrix[inner[0]])])


def test_reference_agents_cover_both_modes() -> None:
    from agents.evaluation import evaluate

    for mode in EpisodeMode:
        result = evaluate(AMGDirectionAgent(4), "AnisotropicAMG-v0",
                          env_kwargs={"grid_size": SMALL, "mode": mode.value, "problem_family": "heterogeneous"},
                          n_episodes=2, seed=0)
        baselines = result["baselines"]
        assert {"symmetric", "symmetric_0.25", "evolution", "direction", "direction_every_level", "random"} <= set(baselines)
        same = "direction" if mode is EpisodeMode.FINEST else "direction_every_level"
        assert result["mean_work"] == pytest.approx(baselines[same]["mean_work"])  # the same agent in the same mode
        assert ProblemFamily.HETEROGENEOUS.value == result["problem_family"] and result["mode"] == mode.value


def test_docstrings_list_every_mode_and_family() -> None:
    for member in EpisodeMode:
        assert f"``{member.value}``" in EpisodeMode.__doc__ and f"``{member.value}``" in AnisotropicAMGEnv.__doc__
    for member in ProblemFamily:
        assert f"``{member.value}``" in ProblemFamily.__doc__ and f"``{member.value}``" in AnisotropicAMGEnv.__doc__
