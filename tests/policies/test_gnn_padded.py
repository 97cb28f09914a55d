"""GNN edge policy on padded graphs (AnisotropicAMG-v0 multi-level mode)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch as th

import envs  # noqa: F401
from agents.baselines.amg import AMGDirectionAgent
from policies.gnn import GNNEdgePolicy, row_layout

GRID = 12


def _coarse_observation(env: gym.Env) -> dict[str, np.ndarray]:
    obs, _ = env.reset(seed=0, options={"case": 0})
    obs, *_ = env.step(AMGDirectionAgent(4).predict(obs)[0])
    return obs


def test_padding_never_selected_and_does_not_change_the_valid_part() -> None:
    env = gym.make("AnisotropicAMG-v0", grid_size=GRID, mode="multilevel")
    th.manual_seed(0)
    policy = GNNEdgePolicy(env.observation_space, env.action_space, lambda _: 1e-3, k=3, hidden_dim=8, entropy_rows=None)
    obs = _coarse_observation(env)
    n_nodes, n_edges = obs["graph_size"]
    assert n_edges < env.action_space.n
    action, _ = policy.predict(obs, deterministic=False)
    assert action[n_edges:].sum() == 0 and action[:n_edges].sum() > 0
    rows = obs["edge_index"][0, :n_edges]
    counts = np.bincount(rows[action[:n_edges] == 1], minlength=n_nodes)
    degree = np.bincount(rows, minlength=n_nodes)
    assert np.array_equal(counts, np.minimum(degree, 3))  # exactly min(k, degree) per real row
    # garbage in the padding changes nothing: logits, log-probs and the value use the real graph only
    noisy = {key: value.copy() for key, value in obs.items()}
    noisy["edge_features"][n_edges:] = 0.7
    noisy["node_features"][n_nodes:] = 3.0
    tensors = [policy.obs_to_tensor(o)[0] for o in (obs, noisy)]
    actions = th.as_tensor(action[None])
    with th.no_grad():
        outputs = [policy.evaluate_actions_per_row(t, actions) for t in tensors]
    for a, b in zip(outputs[0], outputs[1]):
        assert th.allclose(a, b) if a.dtype != th.bool else th.equal(a, b)
    assert int(outputs[0][2].sum()) == n_nodes  # rows with candidates: the real nodes


def test_row_layout_ignores_padding_edges() -> None:
    edge_index = th.tensor([[[0, 0, 2, 0, 0], [1, 2, 0, 0, 0]]])
    valid = th.tensor([[True, True, True, False, False]])
    layout = row_layout(edge_index, n_nodes=3, edge_valid=valid)
    assert layout.mask[0].tolist() == [[True, True], [False, False], [True, False]]
    values = th.tensor([[1.0, 2.0, 3.0, 9.0, 9.0]])
    assert layout.to_edges(layout.to_rows(values)).tolist() == [[1.0, 2.0, 3.0, 0.0, 0.0]]
