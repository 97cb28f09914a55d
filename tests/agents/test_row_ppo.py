"""RowPPO: the per-row clipped surrogate, and SB3's shape on AnisotropicAMG-v0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401
from agents.row_ppo import RowPPO, per_row_ppo_loss
from policies.gnn import GNNEdgePolicy


def test_per_row_clip_bounds_each_row_not_the_product() -> None:
    """1,000 rows moved by +0.1 each: the joint ratio is e^100, but every row stays unclipped."""
    old = th.zeros(1, 1000)
    new = th.full((1, 1000), 0.1, requires_grad=True)
    terms = per_row_ppo_loss(new, old, th.ones(1, 1000, dtype=th.bool), th.tensor([1.0]), clip_range=0.2)
    assert terms.clip_fraction == 0.0 and terms.joint_log_ratio == pytest.approx(100.0, rel=1e-5)
    terms.policy_loss.backward()
    assert th.all(new.grad < 0)  # positive advantage: gradient still pushes every row up
    # a row beyond the clip gets no gradient with a positive advantage; empty rows are ignored
    moved = th.tensor([[0.5, 0.0, 7.0]], requires_grad=True)
    terms = per_row_ppo_loss(moved, th.zeros(1, 3), th.tensor([[True, True, False]]), th.tensor([1.0]), 0.2)
    terms.policy_loss.backward()
    assert moved.grad[0, 0] == 0.0 and moved.grad[0, 1] < 0 and moved.grad[0, 2] == 0.0
    assert terms.clip_fraction == pytest.approx(0.5)
    assert terms.policy_loss.item() == pytest.approx(-(1.2 + 1.0) / 2)


def test_row_ppo_learns_saves_and_reloads(tmp_path: Path) -> None:
    venv = make_vec_env("AnisotropicAMG-v0", n_envs=2, seed=0, env_kwargs={"grid_size": 12, "mode": "multilevel"})
    model = RowPPO(GNNEdgePolicy, venv, n_steps=4, batch_size=4, n_epochs=2, seed=0, gamma=1.0,
                   policy_kwargs={"k": 3, "hidden_dim": 8})
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(8)
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    clip_fraction = model.logger.name_to_value.get("train/clip_fraction")
    assert clip_fraction is not None and 0.0 <= clip_fraction < 1.0
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "model")
    loaded = RowPPO.load(tmp_path / "model", env=venv)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], action)


def test_row_ppo_needs_a_row_factored_policy() -> None:
    venv = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    with pytest.raises(TypeError, match="evaluate_actions_per_row"):
        RowPPO("MlpPolicy", venv)
