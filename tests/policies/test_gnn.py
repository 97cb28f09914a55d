"""GNN edge policy: batching, per-row layout, top-k actions, SB3 PPO compatibility."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401
from policies.distributions import topk_set_log_prob
from policies.gnn import Backbone, EdgeScorer, GNNEdgePolicy, SelectionDistribution, batch_graphs, row_layout

GRID = 6


def _env(grid: int = GRID) -> gym.Env:
    return gym.make("AnisotropicAMG-v0", grid_size=grid)


def _policy(env: gym.Env, **kwargs: object) -> GNNEdgePolicy:
    return GNNEdgePolicy(env.observation_space, env.action_space, lambda _: 1e-3, **kwargs)


def _batch(env: gym.Env, n: int) -> dict[str, th.Tensor]:
    observations = [env.reset(seed=i)[0] for i in range(n)]
    return {k: th.as_tensor(np.stack([o[k] for o in observations])) for k in observations[0]}


def test_batch_graphs_offsets_node_indices() -> None:
    x = th.zeros(3, 4, 2)
    edge_index = th.tensor([[0, 1], [1, 3]]).expand(3, 2, 2)
    graph = batch_graphs(x, edge_index, th.zeros(3, 2, 5))
    assert graph.edge_index.tolist() == [[0, 1, 4, 5, 8, 9], [1, 3, 5, 7, 9, 11]]
    assert graph.node_graph.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_row_layout_round_trip_and_mask() -> None:
    edge_index = th.tensor([[[0, 0, 2, 2, 2], [1, 2, 0, 1, 3]]])
    layout = row_layout(edge_index, n_nodes=4)
    assert layout.mask[0].tolist() == [[True, True, False], [False] * 3, [True, True, True], [False] * 3]
    values = th.arange(5.0)[None]
    assert th.equal(layout.to_edges(layout.to_rows(values)), values)
    with pytest.raises(ValueError, match="sorted"):
        row_layout(edge_index.flip(-1), 4)


@pytest.mark.parametrize("backbone", list(Backbone))
def test_scorer_backbones_give_edge_logits_and_values(backbone: Backbone) -> None:
    env = _env()
    obs = _batch(env, 2)
    scorer = EdgeScorer(obs["node_features"].shape[-1], obs["edge_features"].shape[-1], 8, 1, backbone)
    graph = batch_graphs(obs["node_features"], obs["edge_index"], obs["edge_features"])
    logits, values = scorer(graph)
    assert logits.shape == (2, env.action_space.n) and values.shape == (2,)
    assert th.isfinite(logits).all()


def test_actions_select_exactly_k_edges_per_row() -> None:
    env = _env()
    policy = _policy(env, k=3)
    obs, _ = env.reset(seed=0)
    rows = obs["edge_index"][0]
    assert np.all(rows != obs["edge_index"][1])  # no diagonal entry is a candidate
    for deterministic in (True, False):
        action, _ = policy.predict(obs, deterministic=deterministic)
        assert action.shape == (env.action_space.n,) and env.action_space.contains(action)
        per_row = np.bincount(rows, weights=action, minlength=GRID * GRID)
        assert np.array_equal(per_row, np.minimum(3, np.bincount(rows)))  # no diagonal: edges are off-diagonal only


def test_log_prob_is_the_top_k_set_probability() -> None:
    env = _env()
    policy = _policy(env, k=2)
    obs = _batch(env, 2)
    actions, _, log_prob = policy(obs)
    distribution = policy.get_distribution(obs)
    layout = distribution.layout
    row_logits = distribution.per_row.logits  # (B, R, C)
    expected = topk_set_log_prob(row_logits, layout.mask, layout.to_rows(actions) > 0.5, 2).sum(-1)
    assert th.allclose(log_prob, expected)
    _, evaluated, entropy = policy.evaluate_actions(obs, actions.float())
    assert th.allclose(evaluated, log_prob) and (entropy > 0).all()


def test_deterministic_selection_follows_the_logits() -> None:
    env = _env()
    policy = _policy(env, k=1)
    obs, _ = env.reset(seed=0)
    first, _ = policy.predict(obs, deterministic=True)
    with th.no_grad():
        policy.scorer.edge_head[-1].bias.fill_(0.0)
        policy.scorer.edge_head[-1].weight.mul_(-1.0)  # reverses every row's ranking
    second, _ = policy.predict(obs, deterministic=True)
    assert not np.array_equal(first, second)


def test_policy_is_size_agnostic() -> None:
    policy = _policy(_env(GRID))
    big = _env(GRID + 4)
    obs, _ = big.reset(seed=0)
    action, _ = policy.predict(obs, deterministic=True)
    assert action.shape == (big.action_space.n,)


def test_bernoulli_alternative() -> None:
    env = _env()
    policy = _policy(env, distribution="bernoulli")
    obs = _batch(env, 2)
    actions, _, log_prob = policy(obs)
    assert actions.shape == (2, env.action_space.n) and th.isfinite(log_prob).all()
    with pytest.raises(ValueError, match="distribution"):
        _policy(env, distribution="gumbel")


def test_ppo_trains_with_the_gnn_policy() -> None:
    venv = make_vec_env("AnisotropicAMG-v0", n_envs=2, seed=0, env_kwargs={"grid_size": GRID})
    model = PPO(GNNEdgePolicy, venv, n_steps=4, batch_size=4, n_epochs=1, seed=0, policy_kwargs={"k": 2})
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(8)
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (2, venv.action_space.n)


def test_invalid_policy_kwargs_raise_and_enum_docs_are_complete() -> None:
    env = _env()
    with pytest.raises(ValueError, match="backbone"):
        _policy(env, backbone="gin")
    with pytest.raises(ValueError, match="k "):
        _policy(env, k=0)
    with pytest.raises(ValueError, match="temperature"):
        _policy(env, temperature=0.0)
    for enum in (Backbone, SelectionDistribution):
        for member in enum:
            assert f"``{member.value}``" in enum.__doc__
