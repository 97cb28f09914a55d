"""agents.vec_ppo: GAE with terminations and truncations, determinism, learning, save/load."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents.baselines import RandomAgent
from agents.vec_ppo import Rollout, VecPPO, VecPPOConfig, collect_rollout, compute_gae
from envs.hydrogel.sb3_vec import make_sb3_vec_env
from envs.hydrogel.wrappers import HybridBoxAction
from policies.hybrid import HybridActorCriticPolicy

sys.path.append(str(Path(__file__).parents[1]))  # tests/hydrogel_scoring.py (pytest uses --import-mode=importlib)
from hydrogel_scoring import mean_design_score  # noqa: E402

SMALL = dict(n_synthetic=20)


def _rollout(rewards, values, terminated, truncated, last_values) -> Rollout:
    t = torch.tensor
    return Rollout(
        observations=torch.zeros(len(rewards), 1, 1), actions=torch.zeros(len(rewards), 1, 1),
        log_probs=torch.zeros(len(rewards), 1), values=t(values)[:, None], rewards=t(rewards)[:, None],
        terminated=t(terminated)[:, None], truncated=t(truncated)[:, None], last_values=t(last_values),
        finished_returns=torch.zeros(0), finished_lengths=torch.zeros(0),
    )


def test_gae_matches_a_hand_computation_and_stops_at_episode_ends() -> None:
    gamma, lam = 0.9, 0.5
    rollout = _rollout(
        rewards=[1.0, 2.0, 3.0, 4.0], values=[0.5, 0.4, 0.3, 0.2],
        terminated=[False, True, False, False], truncated=[False, False, False, False], last_values=[1.0],
    )
    advantages, returns = compute_gae(rollout, gamma, lam)
    d3 = 4.0 + gamma * 1.0 - 0.2
    d2 = 3.0 + gamma * 0.2 - 0.3
    d1 = 2.0 - 0.4  # terminated: no bootstrap
    d0 = 1.0 + gamma * 0.4 - 0.5
    expected = [d0 + gamma * lam * d1, d1, d2 + gamma * lam * d3, d3]
    torch.testing.assert_close(advantages[:, 0], torch.tensor(expected))
    torch.testing.assert_close(returns, advantages + rollout.values)


class _CountdownEnv:
    """Tiny TorchVecEnv: reward 1 per step, truncated after 2 steps, observation = step index."""

    num_envs = 1
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.t = 0

    def reset_tensors(self, seed=None):
        self.t = 0
        return torch.zeros(1, 1)

    def step_tensors(self, actions):
        self.t += 1
        final = torch.full((1, 1), float(self.t))
        truncated = torch.tensor([self.t == 2])
        if self.t == 2:
            self.t = 0
        return torch.full((1, 1), float(self.t)), torch.ones(1), torch.tensor([False]), truncated, final


class _ConstantValuePolicy(torch.nn.Module):
    def forward(self, obs):
        return torch.zeros(obs.shape[0], 1), torch.full((obs.shape[0], 1), 10.0), torch.zeros(obs.shape[0])

    def predict_values(self, obs):
        return torch.full((obs.shape[0], 1), 10.0)


def test_truncated_steps_bootstrap_from_the_final_observation_value() -> None:
    env = _CountdownEnv()
    rollout, _, keep_going = collect_rollout(
        _ConstantValuePolicy(), env, env.reset_tensors(), n_steps=4, gamma=0.5,
        episode_return=torch.zeros(1), episode_length=torch.zeros(1, dtype=torch.long), on_step=lambda: True,
    )
    assert keep_going
    torch.testing.assert_close(rollout.rewards[:, 0], torch.tensor([1.0, 1.0 + 0.5 * 10.0, 1.0, 6.0]))
    torch.testing.assert_close(rollout.finished_returns, torch.tensor([2.0, 2.0]))


def test_a_batch_size_that_does_not_divide_the_rollout_uses_every_sample(monkeypatch) -> None:
    """The seed's 2048 does not divide 200,000: the last minibatch of an epoch is smaller."""
    import agents.vec_ppo as vec_ppo

    sizes: list[int] = []
    real_loss = vec_ppo.ppo_loss

    def recording_loss(policy, observations, *args, **kwargs):
        sizes.append(observations.shape[0])
        return real_loss(policy, observations, *args, **kwargs)

    monkeypatch.setattr(vec_ppo, "ppo_loss", recording_loss)
    venv = make_sb3_vec_env("Hydrogel-v0", 8, 0, SMALL)
    model = VecPPO(HybridActorCriticPolicy, venv, n_steps=4, batch_size=10, n_epochs=2, seed=0,
                   policy_kwargs={"net_arch": [16]})
    model.learn(32)
    assert sizes == [10, 10, 10, 2] * 2
    for key in ("train/value_loss", "rollout/mean_reward", "time/update_seconds"):
        assert np.isfinite(model.last_logged[key]), key
    with pytest.raises(ValueError, match="gamma"):
        VecPPOConfig(gamma=1.5)


def _train(seed: int, steps: int, **kwargs) -> VecPPO:
    venv = make_sb3_vec_env("Hydrogel-v0", 32, seed, SMALL)
    model = VecPPO(
        HybridActorCriticPolicy, venv, n_steps=32, batch_size=256, n_epochs=5, learning_rate=1e-3, seed=seed,
        policy_kwargs=dict(net_arch=[64, 64]), **kwargs,
    )
    return model.learn(steps)


def test_same_seed_same_training_curve() -> None:
    a, b = _train(1, 2048), _train(1, 2048)
    for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("conditioning", ["polymer", "independent"])
def test_prepared_actions_give_the_same_log_probs_and_the_same_training(monkeypatch, conditioning: str) -> None:
    """Preparing the actions once per rollout is an optimisation only: the same log-probs
    bit for bit, and the same parameters after training as evaluating the raw actions."""
    import agents.vec_ppo as vec_ppo

    venv = make_sb3_vec_env("Hydrogel-v0", 32, 0, SMALL)
    policy = HybridActorCriticPolicy(venv.observation_space, venv.action_space, lambda _: 1e-3,
                                     net_arch=[32], conditioning=conditioning)
    obs = torch.as_tensor(venv.reset())
    with torch.no_grad():
        actions, _, log_prob = policy(obs)
        raw = policy.evaluate_actions(obs, actions)
        prepared = policy.evaluate_prepared_actions(obs, policy.prepare_actions(actions))
    for x, y in zip(raw, prepared, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    torch.testing.assert_close(raw[1], log_prob, rtol=0, atol=0)

    calls = []
    real = HybridActorCriticPolicy.evaluate_prepared_actions
    monkeypatch.setattr(HybridActorCriticPolicy, "evaluate_prepared_actions",
                        lambda self, *a: calls.append(1) or real(self, *a))
    kwargs = {"policy_kwargs": dict(net_arch=[64, 64], conditioning=conditioning)}
    fast = VecPPO(HybridActorCriticPolicy, make_sb3_vec_env("Hydrogel-v0", 32, 1, SMALL), n_steps=32, batch_size=256,
                  n_epochs=5, learning_rate=1e-3, seed=1, **kwargs).learn(2048)
    assert len(calls) == 2 * 5 * 4  # 2 iterations x 5 epochs x 4 minibatches, all prepared

    class Never(Protocol):  # no policy prepares its actions
        def never_implemented(self) -> None: ...

    monkeypatch.setattr(vec_ppo, "PreparesActions", runtime_checkable(Never))
    slow = VecPPO(HybridActorCriticPolicy, make_sb3_vec_env("Hydrogel-v0", 32, 1, SMALL), n_steps=32, batch_size=256,
                  n_epochs=5, learning_rate=1e-3, seed=1, **kwargs).learn(2048)
    assert len(calls) == 40  # the raw path did not prepare
    for p, q in zip(fast.policy.parameters(), slow.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_learns_to_beat_random_designs_and_round_trips_through_save(tmp_path) -> None:
    model = _train(0, 12_000)
    env = HybridBoxAction(gym.make("Hydrogel-v0", split="test", **SMALL))
    random_agent = RandomAgent(env.action_space, seed=0)

    mean_score = partial(mean_design_score, env)
    assert mean_score(model) > mean_score(random_agent) + 10.0
    model.save(tmp_path / "vec_ppo.zip")
    loaded = VecPPO.load(tmp_path / "vec_ppo.zip")
    obs, _ = env.reset(seed=0, options={"case": 0})
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
