"""GRPO: group advantages, stored-action scoring, masks, KL, learning, SB3 shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.grpo import (
    GRPO,
    GRPOConfig,
    RewardScaling,
    collect_group_rollout,
    group_advantages,
    grpo_loss,
    k3_kl,
    score_actions,
)

N_CASES, N_ARMS = 6, 6
BEST = np.array([0, 1, 2, 3, 4, 5])  # a different best arm per case: no constant action scores > 1/6


class CaseBandit(gym.Env):
    """One-step problem: the observation names the case (one-hot); the best arm of the
    case pays 1, the others 0 (plus a small arm-dependent term, so groups differ).
    Arms ``best + 1`` and ``best + 2`` (mod N_ARMS) are masked; playing one pays -1."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, (N_CASES,), np.float32)
        self.action_space = spaces.Discrete(N_ARMS)
        self.n_cases = N_CASES
        self._case = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        case = (options or {}).get("case")
        self._case = int(self.np_random.integers(N_CASES)) if case is None else int(case)
        return np.eye(N_CASES, dtype=np.float32)[self._case], {"case": self._case}

    def action_masks(self) -> np.ndarray:
        mask = np.ones(N_ARMS, dtype=bool)
        mask[[(BEST[self._case] + 1) % N_ARMS, (BEST[self._case] + 2) % N_ARMS]] = False
        return mask

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = int(action)
        masked = not self.action_masks()[a]
        reward = -1.0 if masked else float(a == BEST[self._case]) + 0.01 * a
        obs = np.eye(N_CASES, dtype=np.float32)[self._case]
        return obs, reward, True, False, {"invalid_action": masked, "case": self._case}


def _venv(n_envs: int = 2) -> DummyVecEnv:
    return DummyVecEnv([lambda: Monitor(CaseBandit()) for _ in range(n_envs)])


def _model(policy: type = MaskableActorCriticPolicy, **kwargs: Any) -> GRPO:
    defaults: dict[str, Any] = dict(groups_per_iteration=4, group_size=4, n_epochs=4, learning_rate=3e-3, seed=0,
                                    policy_kwargs={"net_arch": [32]})
    model = GRPO(policy, _venv(), **{**defaults, **kwargs})
    model.set_logger(configure(None, []))
    model.env.seed(0)
    model.env.reset()
    return model


def _rollout(model: GRPO, cases: tuple[int, ...] = (0, 1, 2, 3)):
    model.policy.set_training_mode(False)
    return collect_group_rollout(model.policy, model.env.envs, cases, model.config.group_size, with_values=True)


def _greedy_accuracy(predict) -> float:
    env = CaseBandit()
    hits = []
    for case in range(N_CASES):
        obs, _ = env.reset(seed=case, options={"case": case})
        action = predict(obs, env.action_masks())
        hits.append(int(action) == BEST[case])
    return float(np.mean(hits))


# ------------------------------------------------------------------ advantages


@pytest.mark.parametrize("scaling", list(RewardScaling))
def test_advantages_sum_to_zero_within_each_group(scaling: RewardScaling) -> None:
    rng = np.random.default_rng(0)
    returns = rng.normal(size=12) * np.repeat([1.0, 10.0, 0.1], 4) + np.repeat([0.0, 5.0, -3.0], 4)
    group = np.repeat(np.arange(3), 4)
    adv = group_advantages(returns, group, scaling, eps=1e-4)
    sums = np.bincount(group, weights=adv)
    assert np.abs(sums).max() < 1e-9
    if scaling is RewardScaling.GROUP:  # each group standardised on its own
        stds = [adv[group == g].std() for g in range(3)]
        assert stds == pytest.approx([1.0] * 3, rel=1e-2)  # eps 1e-4 against a std of ~0.05
    if scaling is RewardScaling.NONE:  # Dr. GRPO: only centred
        assert adv[:4] == pytest.approx(returns[:4] - returns[:4].mean())


def test_group_with_equal_rewards_gets_zero_advantage_and_is_counted() -> None:
    adv = group_advantages(np.array([1.0, 1.0, 0.0, 2.0]), np.array([0, 0, 1, 1]), RewardScaling.GROUP, 1e-4)
    assert adv[:2].tolist() == [0.0, 0.0] and adv[2] < 0 < adv[3]


def test_critic_baseline_replaces_the_group_mean() -> None:
    returns, baseline = np.array([1.0, 3.0]), np.array([0.5, 0.5])
    adv = group_advantages(returns, np.array([0, 0]), RewardScaling.NONE, 1e-4, baseline=baseline)
    assert adv.tolist() == [0.5, 2.5]


# ----------------------------------------------------------- stored-action scoring


def test_ratio_is_exactly_one_at_the_first_epoch_on_stored_actions() -> None:
    model = _model()
    rollout = _rollout(model)
    obs = obs_as_tensor(rollout.observations, model.device)
    log_prob, _, _ = score_actions(model.policy, obs, th.as_tensor(rollout.actions), th.as_tensor(rollout.masks))
    ratio = th.exp(log_prob - th.as_tensor(rollout.old_log_prob))
    assert th.equal(ratio, th.ones_like(ratio))
    # the source system's defect: re-sampled actions give a ratio that is not 1
    resampled = th.as_tensor((rollout.actions + 3) % N_ARMS)
    other, _, _ = score_actions(model.policy, obs, resampled, None)
    assert not th.allclose(th.exp(other - th.as_tensor(rollout.old_log_prob)), th.ones_like(ratio), atol=1e-3)
    stats = model.train_on_rollout(rollout)  # the algorithm's own first minibatch
    assert stats["train/first_epoch_ratio_error"] == 0.0


def test_kl_to_an_identical_reference_is_zero() -> None:
    model = _model(kl_coef=0.1)
    rollout = _rollout(model)
    obs = obs_as_tensor(rollout.observations, model.device)
    actions, masks = th.as_tensor(rollout.actions), th.as_tensor(rollout.masks)
    log_prob, entropy, _ = score_actions(model.policy, obs, actions, masks)
    ref, _, _ = score_actions(model.reference_policy, obs, actions, masks)
    terms = grpo_loss(log_prob, log_prob.detach(), th.zeros_like(log_prob), entropy, model.config, ref)
    assert float(terms.kl_ref.detach()) == 0.0
    assert float(k3_kl(th.tensor([-1.0]), th.tensor([-2.0]))) > 0.0  # and positive when they differ
    assert not any(p.requires_grad for p in model.reference_policy.parameters())


def test_stored_masks_are_reapplied_in_the_update() -> None:
    model = _model()
    rollout = _rollout(model)
    cases = rollout.episode_case[rollout.episode]  # (n,)
    for mask, case, action in zip(rollout.masks, cases, rollout.actions):
        env = CaseBandit()
        env.reset(options={"case": int(case)})
        assert mask.tolist() == env.action_masks().tolist()  # the mask seen at sampling time
        assert mask[int(action)]  # a masked action is never sampled
    obs = obs_as_tensor(rollout.observations, model.device)
    forbidden = th.as_tensor(np.argmin(rollout.masks, axis=1))  # (n,) a masked arm of each step
    with_masks, _, _ = score_actions(model.policy, obs, forbidden, th.as_tensor(rollout.masks))
    without, _, _ = score_actions(model.policy, obs, forbidden, None)
    assert th.exp(with_masks).max() == 0.0  # no probability under the stored mask
    assert th.exp(without).min() > 0.01


def test_entropy_bonus_is_the_distribution_entropy_with_gradient() -> None:
    model = _model(ent_coef=1.0)
    rollout = _rollout(model)
    obs = obs_as_tensor(rollout.observations, model.device)
    log_prob, entropy, distribution = score_actions(model.policy, obs, th.as_tensor(rollout.actions), th.as_tensor(rollout.masks))
    assert entropy.requires_grad
    probs = distribution.distribution.probs  # (n, A), masked arms 0
    exact = -(probs * th.log(probs.clamp_min(1e-30))).sum(-1)
    assert th.allclose(entropy, exact, atol=1e-5)  # not -log p of the sampled action
    terms = grpo_loss(log_prob, log_prob.detach(), th.zeros_like(log_prob), entropy, model.config)
    terms.loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in model.policy.parameters() if p.grad is not None) > 0


# ------------------------------------------------------------------ learning


def test_grpo_clearly_beats_random_on_a_fixed_seed_bandit() -> None:
    th.manual_seed(0)
    model = _model(groups_per_iteration=6, group_size=4, ent_coef=0.0)
    before = _greedy_accuracy(lambda obs, mask: model.predict(obs, deterministic=True, action_masks=mask)[0])
    model.learn(total_timesteps=24 * 25)
    after = _greedy_accuracy(lambda obs, mask: model.predict(obs, deterministic=True, action_masks=mask)[0])
    rng = np.random.default_rng(0)
    random = np.mean([_greedy_accuracy(lambda obs, mask: rng.choice(np.flatnonzero(mask))) for _ in range(50)])
    assert after == 1.0, (before, after)
    assert random < 0.4  # random valid arm: 1/4 on average; any constant arm: 1/6


def test_unmasked_policy_with_critic_learns_and_logs() -> None:
    th.manual_seed(0)
    model = _model(policy=ActorCriticPolicy, groups_per_iteration=6, use_critic=True, reward_scaling="batch")
    model.learn(total_timesteps=24 * 25)
    assert _greedy_accuracy(lambda obs, mask: model.predict(obs, deterministic=True)[0]) >= 5 / 6
    stats = model.train_on_rollout(_rollout(model, cases=(0, 1, 2, 3, 4, 5)))
    for key in ("rollout/reward_mean", "rollout/group_reward_std", "rollout/zero_variance_groups", "train/entropy",
                "train/clip_fraction", "train/explained_variance", "train/approx_kl"):
        assert np.isfinite(stats[key]), key


def test_learn_logs_every_iteration_to_csv(tmp_path: Path) -> None:
    model = _model(kl_coef=0.05)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(total_timesteps=16 * 3)
    log = pd.read_csv(tmp_path / "progress.csv")
    assert len(log) == 3 and log["time/total_timesteps"].tolist() == [16, 32, 48]
    for column in ("rollout/zero_variance_groups", "train/kl_ref", "train/clip_fraction", "train/entropy"):
        assert column in log


def test_same_seed_same_training_curve() -> None:
    curves = []
    for _ in range(2):
        th.manual_seed(0)
        model = _model()
        model.learn(total_timesteps=16 * 3)
        curves.append([p.detach().clone() for p in model.policy.parameters()])
    assert all(th.equal(a, b) for a, b in zip(*curves))


def test_save_load_predict_identical(tmp_path: Path) -> None:
    model = _model(kl_coef=0.05)
    model.learn(total_timesteps=32)
    model.save(tmp_path / "grpo.zip")
    loaded = GRPO.load(tmp_path / "grpo.zip", env=_venv())
    obs = np.eye(N_CASES, dtype=np.float32)
    masks = np.ones((N_CASES, N_ARMS), dtype=bool)
    for deterministic in (True,):
        a, _ = model.predict(obs, deterministic=deterministic, action_masks=masks)
        b, _ = loaded.predict(obs, deterministic=deterministic, action_masks=masks)
        assert a.tolist() == b.tolist()
    for p, q in zip(model.reference_policy.parameters(), loaded.reference_policy.parameters()):
        assert th.equal(p, q)
    assert loaded.config == model.config


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "field, value",
    [("group_size", 1), ("n_epochs", 0), ("clip_range", 1.5), ("reward_scaling", "median"), ("minibatch_size", 0),
     ("std_eps", 0.0)],
)
def test_config_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        GRPOConfig(**{field: value})


def test_config_docstring_lists_every_scaling() -> None:
    for member in RewardScaling:
        assert f"``{member.value}``" in GRPOConfig.__doc__


def test_env_that_is_not_a_dummy_vec_env_is_refused() -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    model = GRPO(MaskableActorCriticPolicy, VecNormalize(_venv()), groups_per_iteration=2, group_size=2)
    with pytest.raises(TypeError, match="DummyVecEnv"):
        model.learn(8)


# ------------------------------------------------- Prostate-v0: masks, BatchNorm, co-training


@pytest.fixture(scope="module")
def prostate_kwargs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from envs.prostate.backbone import tiny_backbone
    from train.pretrain_prostate import pretrain

    kwargs = {"synthetic": {"n_patients": 8, "cores_per_patient": 2, "image_size": 96}, "backbone": tiny_backbone(96),
              "on_missing_decoder": "raise"}
    decoder = {"epochs": 1, "transformer_depth": 1, "mlp_dim": 32, "class_hidden": 16, "val_repeats": 1, "batch_size": 8}
    pretrain("Prostate-v0", tmp_path_factory.mktemp("pretrain"), 0, "cpu", decoder, kwargs)
    return kwargs


def _prostate_model(kwargs: dict, **hyper: Any) -> GRPO:
    from stable_baselines3.common.env_util import make_vec_env

    from policies.prostate_attention import AttentionPolicy

    venv = make_vec_env("Prostate-v0", n_envs=2, seed=0, env_kwargs=kwargs)
    settings = {"groups_per_iteration": 2, "group_size": 2, "n_epochs": 2, **hyper}
    model = GRPO(AttentionPolicy, venv, seed=0, policy_kwargs={"hidden_channels": [8], "kernel_size": 1, "value_hidden": 8},
                 **settings)
    venv.reset()
    return model


def test_prostate_sequential_masks_and_batch_norm(prostate_kwargs: dict) -> None:
    model = _prostate_model(prostate_kwargs)
    model.set_logger(configure(None, []))
    rollout = _rollout(model, cases=(0, 1))
    assert rollout.masks is not None and all(m[a] for m, a in zip(rollout.masks, rollout.actions))
    obs = obs_as_tensor(rollout.observations, model.device)
    log_prob, _, _ = score_actions(model.policy, obs, th.as_tensor(rollout.actions), th.as_tensor(rollout.masks))
    assert th.allclose(log_prob, th.as_tensor(rollout.old_log_prob), atol=1e-5)  # eval-mode BatchNorm: same function
    before = [b.clone() for b in model.policy.buffers() if b.dtype.is_floating_point]
    model.train_on_rollout(rollout)
    after = [b for b in model.policy.buffers() if b.dtype.is_floating_point]
    assert any(not th.equal(x, y) for x, y in zip(before, after))  # running statistics refreshed once


def test_cotraining_uses_every_rollout_and_updates_the_envs_decoder(prostate_kwargs: dict, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.grpo_cotraining as cotraining

    seen: list[int] = []
    original = cotraining.decoder_loss

    def spy(decoder, batch, cases, *args):  # noqa: ANN001, ANN202
        seen.append(len(cases))
        return original(decoder, batch, cases, *args)

    monkeypatch.setattr(cotraining, "decoder_loss", spy)
    model = _prostate_model(prostate_kwargs, cotrain_decoder=True, n_epochs=1, decoder_lr=1e-2)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    decoders = [env.unwrapped.decoder for env in model.env.envs]
    initial = [p.clone() for p in decoders[0].parameters()]
    model.learn(total_timesteps=1)  # one iteration: B x G = 4 episodes
    assert sum(seen) == 4  # every rollout of every group, not only the last one
    for decoder in decoders:  # later episodes are scored by the updated decoder
        for p, q, p0 in zip(decoder.parameters(), model.cotrainer.decoder.parameters(), initial):
            assert th.equal(p, q)
    assert any(not th.equal(p, p0) for p, p0 in zip(decoders[0].parameters(), initial))
    summary = pd.read_json(tmp_path / "cotraining.json", typ="series")
    assert {"before", "after"} <= set(summary.index) and "core_auroc" in summary["after"]
    assert (tmp_path / "decoder_cotrained.pt").is_file()


def test_prostate_one_shot_mode_trains_on_stored_cell_sets(prostate_kwargs: dict) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    from policies.prostate_attention import OneShotAttentionPolicy

    venv = make_vec_env("Prostate-v0", n_envs=2, seed=0, env_kwargs={**prostate_kwargs, "action_mode": "one_shot"})
    model = GRPO(OneShotAttentionPolicy, venv, seed=0, groups_per_iteration=2, group_size=2, n_epochs=1, ent_coef=0.01,
                 policy_kwargs={"hidden_channels": [8], "kernel_size": 1, "value_hidden": 8, "entropy_samples": 4})
    model.set_logger(configure(None, []))
    venv.reset()
    rollout = _rollout(model, cases=(0, 1))
    assert rollout.masks is None and rollout.actions.shape == (4, 3)  # one step per episode, k = 3 cells
    stats = model.train_on_rollout(rollout)
    assert stats["train/first_epoch_ratio_error"] < 1e-5 and np.isfinite(stats["train/entropy"])
