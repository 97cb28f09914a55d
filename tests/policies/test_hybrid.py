"""HybridActorCriticPolicy / HybridDistribution: exact log-probabilities, SB3 drop-in."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env
from torch.distributions import AffineTransform, Categorical, ExpTransform, Normal, TanhTransform, TransformedDistribution

import envs  # noqa: F401
from agents.baselines import RandomAgent
from envs.hydrogel.library import FORMULATION_HIGH, FORMULATION_LOG_SCALE, FORMULATION_LOW
from envs.hydrogel.wrappers import HybridBoxAction
from policies.distributions import HybridDistribution, SquashedBoxMap
from policies.hybrid import HybridActorCriticPolicy

SMALL = dict(n_synthetic=20)


def _reference_log_prob(first, mean, log_std, second, actions) -> torch.Tensor:
    """torch.distributions' own composition of the same transforms, dimension by dimension."""
    total = Categorical(logits=first).log_prob(actions[:, 0].round().long())
    total = total + Categorical(logits=second).log_prob(actions[:, -1].round().long())
    for d in range(mean.shape[1]):
        low, high = float(FORMULATION_LOW[d]), float(FORMULATION_HIGH[d])
        if FORMULATION_LOG_SCALE[d]:
            centre, half = (math.log(high) + math.log(low)) / 2, (math.log(high) - math.log(low)) / 2
            transforms = [TanhTransform(), AffineTransform(centre, half), ExpTransform()]
        else:
            transforms = [TanhTransform(), AffineTransform((high + low) / 2, (high - low) / 2)]
        base = Normal(mean[:, d].double(), log_std[d].exp().double())
        total = total + TransformedDistribution(base, transforms).log_prob(actions[:, 1 + d].double()).float()
    return total


def _distribution() -> HybridDistribution:
    squash = SquashedBoxMap(
        torch.as_tensor(FORMULATION_LOW, dtype=torch.float64),
        torch.as_tensor(FORMULATION_HIGH, dtype=torch.float64),
        torch.as_tensor(FORMULATION_LOG_SCALE),
    )
    return HybridDistribution(24, 4, squash)


def test_log_prob_matches_torch_transformed_distribution() -> None:
    torch.manual_seed(0)
    batch = 64
    first, second = torch.randn(batch, 24), torch.randn(batch, 4)
    mean, log_std = torch.randn(batch, 4) * 0.8, torch.tensor([-0.3, 0.2, -1.0, 0.1])
    dist = _distribution().proba_distribution(first, mean, log_std, second)
    actions = dist.sample()
    ours = dist.log_prob(actions)
    reference = _reference_log_prob(first, mean, log_std, second, actions)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-3)


def test_samples_stay_inside_bounds_with_integer_discrete_slots() -> None:
    torch.manual_seed(1)
    dist = _distribution().proba_distribution(
        torch.randn(512, 24), torch.randn(512, 4) * 5, torch.full((4,), 1.0), torch.randn(512, 4)
    )
    for actions in (dist.sample(), dist.mode()):
        assert torch.equal(actions[:, 0], actions[:, 0].round()) and torch.equal(actions[:, 5], actions[:, 5].round())
        physical = actions[:, 1:5].numpy()
        assert np.all(physical >= FORMULATION_LOW) and np.all(physical <= FORMULATION_HIGH)
        assert torch.isfinite(dist.log_prob(actions)).all()


def test_sb3_clipping_never_changes_the_discrete_slots() -> None:
    env = HybridBoxAction(gym.make("Hydrogel-v0", **SMALL))
    model = PPO(HybridActorCriticPolicy, env, n_steps=64, batch_size=32, seed=0)
    obs, _ = env.reset(seed=0)
    raw = model.policy(torch.as_tensor(obs)[None])[0]
    clipped, _ = model.predict(obs, deterministic=False)
    for slot in (0, 5):
        assert clipped[slot] == np.round(clipped[slot])
    assert np.all(clipped >= env.action_space.low) and np.all(clipped <= env.action_space.high)
    assert raw.shape == (1, 6)


def test_entropy_has_gradient() -> None:
    policy = HybridActorCriticPolicy(
        gym.spaces.Box(-10, 10, (13,), np.float32),
        HybridBoxAction(gym.make("Hydrogel-v0", **SMALL)).action_space,
        lambda _: 1e-3,
    )
    obs = torch.zeros(8, 13)
    _, _, entropy = policy.evaluate_actions(obs, policy(obs)[0])
    entropy.mean().backward()
    assert policy.log_std.grad is not None and policy.log_std.grad.abs().sum() > 0


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_drop_in_policy_learn_save_load_predict(algo, tmp_path) -> None:
    venv = make_vec_env("Hydrogel-v0", n_envs=2, seed=0, env_kwargs=SMALL, wrapper_class=HybridBoxAction)
    extra = dict(n_steps=32, batch_size=32) if algo is PPO else dict(n_steps=8)
    model = algo(HybridActorCriticPolicy, venv, seed=0, policy_kwargs=dict(net_arch=[32, 32]), **extra)
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip")
    obs = venv.reset()
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_allclose(a1, a2)
    assert loaded.policy.mlp_extractor.latent_dim_pi == 32


def test_ppo_clearly_beats_random_designs_on_a_small_budget() -> None:
    from envs.hydrogel.sb3_vec import make_sb3_vec_env

    torch.set_num_threads(1)
    venv = make_sb3_vec_env("Hydrogel-v0", 32, 0, SMALL)
    model = PPO(
        HybridActorCriticPolicy, venv, n_steps=32, batch_size=256, n_epochs=5, learning_rate=1e-3, seed=0,
        policy_kwargs=dict(net_arch=[64, 64]),
    )
    model.learn(12_000)
    env = HybridBoxAction(gym.make("Hydrogel-v0", split="test", **SMALL))
    random_agent = RandomAgent(env.action_space, seed=0)

    def mean_score(agent) -> float:
        scores = []
        for case in range(len(env.unwrapped.cohort)):
            obs, _ = env.reset(seed=case, options={"case": case})
            scores.append(env.step(agent.predict(obs, deterministic=True)[0])[4]["design_score"])
        return float(np.mean(scores))

    trained, random_score = mean_score(model), mean_score(random_agent)
    assert trained > random_score + 10.0, (trained, random_score)
