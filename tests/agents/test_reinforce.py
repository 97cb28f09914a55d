"""REINFORCE: baseline and schedule pieces, entropy gradient, groups, SB3 shape (learn/save/load/predict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

import envs  # noqa: F401
from agents.reinforce import (
    EmaBaseline,
    Reinforce,
    ReinforceConfig,
    discounted_returns,
    group_centred,
    policy_gradient_loss,
    temperature_at,
)
from policies.gnn import GNNEdgePolicy
from train.checkpointing import restart_episodes

ENV_KWARGS = {"grid_size": 5}


def _model(**kwargs: object) -> Reinforce:
    venv = make_vec_env("AnisotropicAMG-v0", n_envs=2, seed=0, env_kwargs=ENV_KWARGS)
    defaults = dict(episodes_per_update=4, minibatch_size=4, seed=0, policy_kwargs={"k": 2, "hidden_dim": 8})
    return Reinforce(GNNEdgePolicy, venv, **{**defaults, **kwargs})


def test_pieces() -> None:
    assert discounted_returns([1.0, 0.0, 2.0], 0.5).tolist() == [1.5, 1.0, 2.0]
    assert group_centred(np.array([1.0, 3.0, 0.0, 0.0]), 2).tolist() == [-2.0, 2.0, 0.0, 0.0]
    config = ReinforceConfig(temperature_start=2.0, temperature_end=0.5, temperature_fraction=0.5)
    assert temperature_at(config, 1.0) == 2.0 and temperature_at(config, 0.75) == pytest.approx(1.25)
    assert temperature_at(config, 0.1) == 0.5
    baseline = EmaBaseline(momentum=0.5)
    first = baseline.advantages(np.array([1.0, 3.0]))
    assert first.tolist() == pytest.approx([-1.0, 1.0], rel=1e-6)  # first batch: its own mean and variance
    assert baseline.mean == 2.0
    second = baseline.advantages(np.array([2.0, 2.0]))  # centred on the statistics from before
    assert second.tolist() == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize(
    "field, value", [("episodes_per_update", 0), ("baseline_momentum", 1.0), ("temperature_end", 0.0), ("group_size", 3)]
)
def test_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ReinforceConfig(**{field: value})


def test_entropy_bonus_carries_gradient() -> None:
    """The source system's bug: entropy under no_grad contributed nothing."""
    model = _model()
    obs = model.env.reset()
    distribution = model.policy.get_distribution({k: th.as_tensor(v) for k, v in obs.items()})
    actions = distribution.sample()
    loss, _, entropy = policy_gradient_loss(distribution, actions, th.zeros(2), entropy_coef=1.0)
    assert entropy.requires_grad
    loss.backward()
    grads = [p.grad for p in model.policy.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


class _Counter(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    def _on_step(self) -> bool:
        self.steps += 1
        return True


@pytest.mark.parametrize("group_size", [1, 2])
def test_learn_updates_logs_and_calls_back(group_size: int, tmp_path: Path) -> None:
    model = _model(group_size=group_size)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    before = [p.detach().clone() for p in model.policy.parameters()]
    callback = _Counter()
    model.learn(8, callback=callback)
    assert model.num_timesteps >= 8 and callback.steps == model.num_timesteps // 2
    assert any(not th.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    log = pd.read_csv(tmp_path / "progress.csv")
    assert len(log) == model._n_updates >= 2  # one row per update ("epoch")
    assert log["train/entropy"].gt(0).all() and log["train/mean_return"].notna().all()


def test_same_seed_same_training() -> None:
    params = []
    for _ in range(2):
        model = _model()
        model.learn(8)
        params.append(th.cat([p.detach().flatten() for p in model.policy.parameters()]))
    assert th.equal(params[0], params[1])


def test_save_load_predict(tmp_path: Path) -> None:
    model = _model(temperature_start=2.0, temperature_end=0.5)
    model.learn(8)
    model.save(tmp_path / "model.zip")
    loaded = Reinforce.load(tmp_path / "model.zip", device="cpu")
    assert loaded.config == model.config and loaded.policy.k == 2
    obs = model.env.reset()
    single = {k: v[0] for k, v in obs.items()}
    assert np.array_equal(model.predict(single, deterministic=True)[0], loaded.predict(single, deterministic=True)[0])



def test_restart_episodes_drops_unfinished_episodes() -> None:
    """A checkpoint restarts every env between collections: the unfinished multi-step
    episodes are dropped, so no episode glues old steps to the restarted ones."""
    venv = make_vec_env("AnisotropicAMG-v0", n_envs=2, seed=0, env_kwargs={"grid_size": 12, "mode": "multilevel"})
    model = Reinforce(GNNEdgePolicy, venv, episodes_per_update=2, minibatch_size=2, seed=0,
                      policy_kwargs={"k": 2, "hidden_dim": 8})
    model.learn(4)  # sets up the logger and the collection state
    model._pending = [[("stale step", None, 0.0)], [("stale step", None, 0.0)]]  # half-done episodes (2 levels each)
    restart_episodes(model, 7)  # what the checkpoint callback calls
    assert model._pending is None
    venv.seed(7)
    fresh = venv.reset()
    assert all(np.array_equal(model._last_obs[k], fresh[k]) for k in fresh)
    callback = _Counter()
    callback.init_callback(model)
    episodes = model._collect_free(callback, 2)
    assert episodes is not None and [len(e) for e in episodes] == [2, 2]
    assert all(not isinstance(obs, str) for episode in episodes for obs, _, _ in episode)
