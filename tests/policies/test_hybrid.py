"""HybridActorCriticPolicy / HybridDistribution: exact log-probabilities, SB3 drop-in."""

from __future__ import annotations

import math
import sys
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env
from torch.distributions import AffineTransform, Categorical, ExpTransform, Normal, TanhTransform, TransformedDistribution

import envs  # noqa: F401
from agents.baselines import RandomAgent
from envs.hydrogel.library import FORMULATION_HIGH, FORMULATION_LOG_SCALE, FORMULATION_LOW, polymer_table
from envs.hydrogel.wrappers import HybridBoxAction
from policies.distributions import HybridDistribution, SquashedBoxMap
from policies.hybrid import HybridActorCriticPolicy
from policies.hybrid_autoregressive import LOG_STD_RANGE, MEAN_BOUND, PolymerConditionedDistribution, WindowSquash

sys.path.append(str(Path(__file__).parents[1]))  # tests/hydrogel_scoring.py (pytest uses --import-mode=importlib)
from hydrogel_scoring import mean_design_score  # noqa: E402

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

    mean_score = partial(mean_design_score, env)
    trained, random_score = mean_score(model), mean_score(random_agent)
    assert trained > random_score + 10.0, (trained, random_score)


# ---------------------------------------------------------------- polymer-conditioned heads
def _conditioned() -> PolymerConditionedDistribution:
    table = polymer_table()
    windows = WindowSquash(table["low"].double(), table["high"].double(), torch.as_tensor(FORMULATION_LOG_SCALE))
    return PolymerConditionedDistribution(24, 4, windows)


def _conditioned_params(batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 24, generator=gen), torch.randn(batch, 25 * 4, generator=gen) * 0.8,
        torch.randn(24, 4, generator=gen) * 0.4 - 0.3, torch.randn(batch, 25 * 4, generator=gen),
    )


def test_conditioned_log_prob_matches_torch_transformed_distributions_per_polymer() -> None:
    first, mean, log_std, second = _conditioned_params(64, seed=0)
    dist = _conditioned().proba_distribution(first, mean, log_std, second)
    actions = dist.sample()
    table = polymer_table()
    blocks = mean.reshape(64, 25, 4)
    reference = []
    for b in range(64):
        k, c = int(actions[b, 0]), int(actions[b, 5])
        total = Categorical(logits=first[b]).log_prob(torch.tensor(k))
        coverage_logits = second[b].reshape(25, 4)[0] + second[b].reshape(25, 4)[1 + k]
        total = total + Categorical(logits=coverage_logits).log_prob(torch.tensor(c))
        for d in range(4):
            low, high = float(table["low"][k, d]), float(table["high"][k, d])
            if high <= low:
                assert actions[b, 1 + d] == low  # a fixed dimension: deterministic, no density
                continue
            if FORMULATION_LOG_SCALE[d]:
                centre, half = (math.log(high) + math.log(low)) / 2, (math.log(high) - math.log(low)) / 2
                transforms = [TanhTransform(), AffineTransform(centre, half), ExpTransform()]
            else:
                transforms = [TanhTransform(), AffineTransform((high + low) / 2, (high - low) / 2)]
            loc = MEAN_BOUND * torch.tanh((blocks[b, 0, d] + blocks[b, 1 + k, d]) / MEAN_BOUND)
            base = Normal(loc.double(), log_std[k, d].clamp(*LOG_STD_RANGE).exp().double())
            total = total + TransformedDistribution(base, transforms).log_prob(actions[b, 1 + d].double()).float()
        reference.append(total)
    torch.testing.assert_close(dist.log_prob(actions), torch.stack(reference), rtol=1e-4, atol=1e-3)


def test_conditioned_entropy_is_the_exact_joint_entropy() -> None:
    first, mean, log_std, second = _conditioned_params(8, seed=1)
    dist = _conditioned().proba_distribution(first, mean, log_std, second)
    free = polymer_table()["high"] > polymer_table()["low"]  # (24, 4)
    for b in range(8):
        polymer = Categorical(logits=first[b])
        expected = polymer.entropy()
        for k in range(24):
            latent = Normal(torch.zeros(4), log_std[k].clamp(*LOG_STD_RANGE).exp()).entropy()[free[k]].sum()
            coverage = Categorical(logits=second[b].reshape(25, 4)[0] + second[b].reshape(25, 4)[1 + k]).entropy()
            expected = expected + polymer.probs[k] * (latent + coverage)
        torch.testing.assert_close(dist.entropy()[b], expected, rtol=1e-5, atol=1e-5)


def test_conditioned_samples_sit_inside_the_chosen_polymers_window() -> None:
    first, mean, log_std, second = _conditioned_params(2048, seed=2)
    dist = _conditioned().proba_distribution(first, mean * 4, log_std + 1.0, second)
    table = polymer_table()
    for actions in (dist.sample(), dist.mode()):
        k = actions[:, 0].long()
        assert torch.equal(actions[:, 0], actions[:, 0].round()) and torch.equal(actions[:, 5], actions[:, 5].round())
        assert torch.all(actions[:, 1:5] >= table["low"][k]) and torch.all(actions[:, 1:5] <= table["high"][k])
        assert torch.isfinite(dist.log_prob(actions)).all()


def test_formulation_gradient_reaches_only_the_chosen_polymers_block() -> None:
    first, mean, log_std, second = _conditioned_params(1, seed=3)
    mean.requires_grad_(True)
    dist = _conditioned().proba_distribution(first, mean, log_std, second)
    action = dist.mode().detach()
    action[0, 1:5] = action[0, 1:5] * 0.9 + 0.1 * polymer_table()["low"][int(action[0, 0])]  # off the mean
    dist.log_prob(action).sum().backward()
    grad = mean.grad.reshape(25, 4).abs().sum(-1)  # (25,) shared block, then one per polymer
    chosen = int(action[0, 0])
    assert grad[0] > 0 and grad[1 + chosen] > 0
    assert torch.all(grad[1:][torch.arange(24) != chosen] == 0)


@pytest.mark.parametrize("conditioning", ["polymer", "independent"])
def test_both_conditionings_learn_save_load_and_never_get_clipped_by_window(conditioning: str, tmp_path) -> None:
    venv = make_vec_env("Hydrogel-v0", n_envs=2, seed=0, env_kwargs=SMALL, wrapper_class=HybridBoxAction)
    kwargs = dict(net_arch=[32, 32], conditioning=conditioning)
    model = PPO(HybridActorCriticPolicy, venv, seed=0, n_steps=32, batch_size=32, policy_kwargs=kwargs)
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = PPO.load(tmp_path / "model.zip")
    assert loaded.policy.conditioning.value == conditioning
    obs = venv.reset()
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    env = HybridBoxAction(gym.make("Hydrogel-v0", **SMALL))
    clipped = []
    for seed in range(32):
        obs, _ = env.reset(seed=seed)
        action, _ = loaded.predict(obs, deterministic=False)
        clipped.append(env.step(action)[4]["clipped"])
    if conditioning == "polymer":
        assert not any(clipped)
    else:
        assert np.mean(clipped) > 0.5  # the independent head asks for 0.5 S/m from non-conductive gels


def test_unknown_conditioning_names_the_field() -> None:
    space = HybridBoxAction(gym.make("Hydrogel-v0", **SMALL)).action_space
    with pytest.raises(ValueError, match="conditioning must be one of"):
        HybridActorCriticPolicy(gym.spaces.Box(-10, 10, (13,), np.float32), space, lambda _: 1e-3, conditioning="joint")
