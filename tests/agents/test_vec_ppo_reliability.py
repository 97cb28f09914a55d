"""VecPPO: GAE stops at truncations, and ``load(path, env=...)`` (the ``--resume`` path)
works for a batch size other than the default."""

from __future__ import annotations

import torch

import envs  # noqa: F401
from agents.vec_ppo import Rollout, VecPPO, compute_gae
from envs.hydrogel.sb3_vec import make_sb3_vec_env
from policies.hybrid import HybridActorCriticPolicy


def test_gae_does_not_run_across_a_truncated_episode_boundary() -> None:
    gamma, lam = 0.9, 0.5
    t = torch.tensor
    # Step 1 ends an episode by truncation; its reward already holds gamma * V(final obs).
    rollout = Rollout(
        observations=torch.zeros(4, 1, 1), actions=torch.zeros(4, 1, 1), log_probs=torch.zeros(4, 1),
        values=t([0.5, 0.4, 0.3, 0.2])[:, None], rewards=t([1.0, 2.0 + gamma * 7.0, 3.0, 4.0])[:, None],
        terminated=t([False, False, False, False])[:, None], truncated=t([False, True, False, False])[:, None],
        last_values=t([1.0]), finished_returns=torch.zeros(0), finished_lengths=torch.zeros(0),
    )
    advantages, returns = compute_gae(rollout, gamma, lam)
    d3 = 4.0 + gamma * 1.0 - 0.2
    d2 = 3.0 + gamma * 0.2 - 0.3
    d1 = 2.0 + gamma * 7.0 - 0.4  # bootstrapped in the reward; not from V(s_2) of the next episode
    d0 = 1.0 + gamma * 0.4 - 0.5
    expected = [d0 + gamma * lam * d1, d1, d2 + gamma * lam * d3, d3]
    torch.testing.assert_close(advantages[:, 0], torch.tensor(expected))
    torch.testing.assert_close(returns, advantages + rollout.values)


def test_load_with_env_keeps_a_non_default_batch_size(tmp_path) -> None:
    venv = make_sb3_vec_env("Hydrogel-v0", 8, 0, {"n_synthetic": 20})
    model = VecPPO(HybridActorCriticPolicy, venv, n_steps=4, batch_size=16, n_epochs=1, seed=0,
                   policy_kwargs={"net_arch": [16]})
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = VecPPO.load(tmp_path / "model.zip", env=venv)  # default batch_size 4096 does not divide 32
    assert loaded.config == model.config and loaded.num_timesteps == model.num_timesteps
    for p, q in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    loaded.learn(32, reset_num_timesteps=False)
