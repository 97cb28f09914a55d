"""policy_kwargs.matmul_dtype=bfloat16: faster matrix products, same PPO."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from agents.baselines import RandomAgent
from agents.vec_ppo import VecPPO
from envs.hydrogel.sb3_vec import make_sb3_vec_env
from envs.hydrogel.wrappers import HybridBoxAction
from policies.hybrid import HybridActorCriticPolicy

sys.path.append(str(Path(__file__).parents[1]))  # tests/hydrogel_scoring.py (pytest uses --import-mode=importlib)
from hydrogel_scoring import mean_design_score  # noqa: E402

SMALL = dict(n_synthetic=20)


def _policies(conditioning: str = "polymer") -> tuple[torch.Tensor, HybridActorCriticPolicy, HybridActorCriticPolicy]:
    venv = make_sb3_vec_env("Hydrogel-v0", 256, 0, SMALL)
    make = lambda dtype: HybridActorCriticPolicy(  # noqa: E731
        venv.observation_space, venv.action_space, lambda _: 1e-3, net_arch=[64, 64], conditioning=conditioning,
        matmul_dtype=dtype,
    )
    full, half = make("float32"), make("bfloat16")
    half.load_state_dict(full.state_dict())
    return torch.as_tensor(venv.reset()), full, half


@pytest.mark.parametrize("conditioning", ["polymer", "independent"])
def test_rollout_and_update_log_probs_agree_and_stay_near_float32(conditioning: str) -> None:
    obs, full, half = _policies(conditioning)
    with torch.no_grad():
        actions, values, log_prob = half(obs)
        again_values, again, entropy = half.evaluate_actions(obs, actions)
        reference_values, reference, reference_entropy = full.evaluate_actions(obs, actions)
    # PPO's first ratio is exp(0): the rollout and the update compute the same numbers
    torch.testing.assert_close(again, log_prob, rtol=0, atol=1e-6)
    torch.testing.assert_close(again_values, values, rtol=0, atol=1e-6)
    assert torch.isfinite(again).all() and torch.isfinite(entropy).all()
    # bfloat16 rounds the products' inputs (8 mantissa bits): close to float32, not equal
    difference = (again - reference).abs()
    assert 0 < difference.max() < 0.1 and difference.mean() < 0.01
    assert (again_values - reference_values).abs().max() < 0.05
    assert (entropy - reference_entropy).abs().max() < 0.05


def test_gradients_and_parameters_stay_float32() -> None:
    obs, _, half = _policies()
    with torch.no_grad():
        actions, _, _ = half(obs)
    values, log_prob, entropy = half.evaluate_actions(obs, actions)
    (log_prob.mean() + values.mean() + entropy.mean()).backward()
    for name, parameter in half.named_parameters():
        assert parameter.dtype == torch.float32 and parameter.grad is not None, name
        assert parameter.grad.dtype == torch.float32 and torch.isfinite(parameter.grad).all(), name


def test_unknown_dtype_is_named() -> None:
    venv = make_sb3_vec_env("Hydrogel-v0", 4, 0, SMALL)
    with pytest.raises(ValueError, match="matmul_dtype"):
        HybridActorCriticPolicy(venv.observation_space, venv.action_space, lambda _: 1e-3, matmul_dtype="float16")


def test_bfloat16_training_learns_is_deterministic_and_round_trips(tmp_path) -> None:
    def train(seed: int) -> VecPPO:
        venv = make_sb3_vec_env("Hydrogel-v0", 64, seed, SMALL)
        model = VecPPO(HybridActorCriticPolicy, venv, n_steps=32, batch_size=256, n_epochs=5, learning_rate=1e-3,
                       seed=seed, policy_kwargs=dict(net_arch=[64, 64], matmul_dtype="bfloat16"))
        return model.learn(12_000)

    model, again = train(0), train(0)
    for p, q in zip(model.policy.parameters(), again.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    env = HybridBoxAction(gym.make("Hydrogel-v0", split="test", **SMALL))
    random_agent = RandomAgent(env.action_space, seed=0)

    mean_score = partial(mean_design_score, env)
    assert mean_score(model) > mean_score(random_agent) + 10.0  # the float32 test's margin
    model.save(tmp_path / "bf16.zip")
    loaded = VecPPO.load(tmp_path / "bf16.zip")
    assert loaded.policy.matmul_dtype == "bfloat16"
    obs, _ = env.reset(seed=0, options={"case": 0})
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
