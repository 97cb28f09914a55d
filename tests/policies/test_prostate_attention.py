"""The two-head attention policy: masking, heads, and MaskablePPO on Prostate-v0."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401
from envs.prostate.backbone import tiny_backbone
from policies.distributions import MASKED_LOGIT
from policies.prostate_attention import AttentionPolicy, OneShotAttentionPolicy
from train.pretrain_prostate import pretrain

G = 6
TINY_COHORT = {"n_patients": 8, "cores_per_patient": 2, "image_size": 96}
TINY_DECODER = {"epochs": 1, "transformer_depth": 1, "mlp_dim": 32, "class_hidden": 16, "val_repeats": 1, "batch_size": 8}
SMALL_NET = {"hidden_channels": (8, 8), "value_hidden": 16}


def _spaces(with_stop: bool = True) -> tuple[spaces.Dict, spaces.Discrete]:
    observation_space = spaces.Dict(
        {
            "features": spaces.Box(-10, 10, (256, G, G), np.float32),
            "prostate_mask": spaces.MultiBinary([G, G]),
            "needle_mask": spaces.MultiBinary([G, G]),
            "clinical": spaces.Box(-10, 10, (4,), np.float32),
            "selected": spaces.MultiBinary([G, G]),
        }
    )
    return observation_space, spaces.Discrete(G * G + int(with_stop))


def _obs(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    prostate = torch.zeros(batch, G, G)
    prostate[:, 1:5, 1:4] = 1
    selected = torch.zeros(batch, G, G)
    selected[:, 2, 2] = 1
    needle = torch.zeros(batch, G, G)
    needle[:, 1:5, 2] = 1
    return {
        "features": torch.randn(batch, 256, G, G, generator=generator),
        "prostate_mask": prostate,
        "needle_mask": needle,
        "clinical": torch.randn(batch, 4, generator=generator),
        "selected": selected,
    }


def test_attention_head_masks_outside_prostate_and_chosen_cells() -> None:
    observation_space, action_space = _spaces()
    policy = AttentionPolicy(observation_space, action_space, lambda _: 1e-3, **SMALL_NET)
    policy.set_training_mode(False)
    obs = _obs()
    distribution = policy.get_distribution(obs)
    probs = distribution.distribution.probs  # (B, G*G + 1)
    assert probs.shape == (2, G * G + 1)
    allowed = (obs["prostate_mask"] > 0) & (obs["selected"] == 0)
    cell_probs = probs[:, :-1].reshape(2, G, G)
    assert torch.all(cell_probs[~allowed] == 0)
    assert torch.all(cell_probs[allowed] > 0) and torch.all(probs[:, -1] > 0)  # STOP has its own logit
    assert torch.isfinite(distribution.entropy()).all()
    values = policy.predict_values(obs)
    assert values.shape == (2, 1)


def test_initial_attention_is_near_uniform_over_allowed_cells() -> None:
    observation_space, action_space = _spaces(with_stop=False)
    policy = AttentionPolicy(observation_space, action_space, lambda _: 1e-3, **SMALL_NET)
    policy.set_training_mode(False)
    latent = policy.mlp_extractor.forward_actor(policy.extract_features(_obs()))
    allowed = latent > MASKED_LOGIT / 2
    assert latent.shape == (2, G * G) and allowed.sum(dim=1).tolist() == [11, 11]
    assert latent[allowed].abs().max() < 0.5


def test_wrong_spaces_are_rejected() -> None:
    observation_space, _ = _spaces()
    with pytest.raises(ValueError, match="Discrete\\(G\\*G\\)"):
        AttentionPolicy(observation_space, spaces.Discrete(7), lambda _: 1e-3)
    with pytest.raises(TypeError, match="Dict observation"):
        AttentionPolicy(spaces.Box(0, 1, (3,)), spaces.Discrete(4), lambda _: 1e-3)


def test_maskable_ppo_trains_predicts_and_reloads(tmp_path: Path) -> None:
    env_kwargs = {"synthetic": TINY_COHORT, "backbone": tiny_backbone(96)}
    pretrain("Prostate-v0", tmp_path / "pretrain", 0, "cpu", TINY_DECODER, env_kwargs)
    vec_env = make_vec_env("Prostate-v0", n_envs=2, seed=0, env_kwargs=env_kwargs)
    model = MaskablePPO(AttentionPolicy, vec_env, n_steps=8, batch_size=8, n_epochs=1, seed=0, policy_kwargs=SMALL_NET)
    model.learn(16)
    env = gym.make("Prostate-v0", **env_kwargs).unwrapped
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True, action_masks=env.action_masks())
        assert env.action_masks()[int(action)]
        obs, _, done, _, info = env.step(action)
    assert not info["invalid_action"]
    model.save(tmp_path / "model.zip")
    loaded = MaskablePPO.load(tmp_path / "model.zip")
    assert loaded.policy.hidden_channels == (8, 8)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True, action_masks=env.action_masks())[0],
        model.predict(obs, deterministic=True, action_masks=env.action_masks())[0],
    )
    env.close()
    vec_env.close()


def test_one_shot_policy_samples_distinct_allowed_cells_with_exact_log_prob() -> None:
    observation_space, _ = _spaces()
    policy = OneShotAttentionPolicy(observation_space, spaces.MultiDiscrete([G * G] * 3), lambda _: 1e-3, **SMALL_NET)
    policy.set_training_mode(False)
    obs = _obs()
    allowed = ((obs["prostate_mask"] > 0) & (obs["selected"] == 0)).reshape(2, -1)
    distribution = policy.get_distribution(obs)
    for _ in range(5):
        cells = distribution.sample()  # (B, 3)
        assert cells.shape == (2, 3)
        assert all(len(set(row.tolist())) == 3 for row in cells)
        assert allowed.gather(1, cells).all()
    # near-uniform start: every 3-set of the 11 allowed cells has probability ~ 1 / C(11, 3)
    log_prob = distribution.log_prob(distribution.mode())
    assert torch.allclose(log_prob, torch.full((2,), -np.log(165.0)), atol=0.05)
    values, log_prob_eval, entropy = policy.evaluate_actions(obs, distribution.sample().float())
    assert values.shape == (2, 1) and log_prob_eval.shape == (2,) and torch.isfinite(entropy).all()


@pytest.mark.parametrize("norm", ["group", "none"])
def test_per_sample_norms_give_rollout_and_update_the_same_function(norm: str) -> None:
    """BatchNorm processes an update minibatch with its own statistics and a rollout step with
    running ones; the per-sample norms must give the same features and log-probs either way."""
    observation_space, action_space = _spaces()
    obs = _obs(batch=3)
    obs["features"][1:] *= 3.0  # samples of different scale, so batch statistics matter
    first = {k: v[:1] for k, v in obs.items()}
    actions = torch.tensor([0, 7, G * G])

    def trunk(policy: AttentionPolicy, training: bool, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        policy.set_training_mode(training)
        return policy.extract_features(batch)

    policy = AttentionPolicy(observation_space, action_space, lambda _: 1e-3, norm=norm, **SMALL_NET)
    torch.testing.assert_close(trunk(policy, True, obs), trunk(policy, False, obs))
    torch.testing.assert_close(trunk(policy, True, obs)[:1], trunk(policy, True, first))
    policy.set_training_mode(False)
    rollout = policy.evaluate_actions(obs, actions)[1]
    policy.set_training_mode(True)
    torch.testing.assert_close(policy.evaluate_actions(obs, actions)[1], rollout)
    batch_norm = AttentionPolicy(observation_space, action_space, lambda _: 1e-3, **SMALL_NET)
    assert not torch.allclose(trunk(batch_norm, True, obs)[:1], trunk(batch_norm, True, first), atol=1e-3)
    assert not torch.allclose(trunk(batch_norm, True, obs), trunk(batch_norm, False, obs), atol=1e-3)


def test_unknown_norm_is_rejected() -> None:
    observation_space, action_space = _spaces()
    with pytest.raises(ValueError, match="norm must be one of"):
        AttentionPolicy(observation_space, action_space, lambda _: 1e-3, norm="layer", **SMALL_NET)
