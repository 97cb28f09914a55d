"""Linnaeus policy: masks, per-sample ranks in minibatches, rank-aware values, freezing."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401
from policies.linnaeus import FinetuneStrategy, LinnaeusPolicy
from policies.phase1 import Phase1Classifier, Phase1Config, load_phase1, save_phase1

TINY = {"n_samples": 240, "min_species_count": 0, "seed": 1}
IDS = ("Taxonomy-v0", "TaxonomyMultitask-v0")


def make(env_id: str = "Taxonomy-v0", **kwargs) -> gym.Env:
    return gym.make(env_id, synthetic=TINY, **kwargs).unwrapped


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Phase 1 model for the tiny data set."""
    env = make()
    th.manual_seed(0)
    model = Phase1Classifier(Phase1Config(num_classes=env.tree.num_classes, channels=(4, 8, 8)))
    path = tmp_path_factory.mktemp("phase1") / "phase1.pt"
    save_phase1(model, path, tree_fingerprint=env.tree.fingerprint(), ranks=env.tree.ranks)
    return path


def policy_for(env: gym.Env, checkpoint: Path, **kwargs) -> LinnaeusPolicy:
    th.manual_seed(0)
    return LinnaeusPolicy(env.observation_space, env.action_space, lambda _: 1e-3,
                          phase1_checkpoint=checkpoint, **kwargs)


def to_tensor(obs_list: list[dict]) -> dict[str, th.Tensor]:
    return {k: th.as_tensor(np.stack([o[k] for o in obs_list])).float() for k in obs_list[0]}


def mixed_rank_batch(env) -> tuple[dict[str, th.Tensor], np.ndarray, th.Tensor]:
    """Observations at ranks 0..3 of several images, their masks and valid actions."""
    obs_list, masks, actions = [], [], []
    rng = np.random.default_rng(0)
    for case in range(6):
        obs, info = env.reset(options={"case": case})
        for r in range(int(rng.integers(1, 5))):
            mask = env.action_masks()
            obs_list.append(obs)
            masks.append(mask)
            actions.append(int(rng.choice(np.flatnonzero(mask))))
            obs, _, terminated, _, _ = env.step(max(int(info["labels"][r]), 1))
            if terminated:
                break
    return to_tensor(obs_list), np.stack(masks), th.as_tensor(actions)


def test_evaluate_actions_scores_each_sample_at_its_own_rank(checkpoint: Path) -> None:
    env = make()
    policy = policy_for(env, checkpoint)
    obs, masks, actions = mixed_rank_batch(env)
    ranks = obs["rank"].argmax(dim=1)
    assert len(set(ranks.tolist())) >= 3, "the batch must mix ranks"
    values, log_prob, entropy = policy.evaluate_actions(obs, actions, th.as_tensor(masks))
    for i in range(len(actions)):
        single = {k: v[i : i + 1] for k, v in obs.items()}
        v_i, lp_i, ent_i = policy.evaluate_actions(single, actions[i : i + 1], th.as_tensor(masks[i : i + 1]))
        th.testing.assert_close(values[i], v_i[0])
        th.testing.assert_close(log_prob[i], lp_i[0])
        th.testing.assert_close(entropy[i], ent_i[0])
    # and the log-prob is the one of that rank's own head: shuffling the batch permutes it
    perm = th.randperm(len(actions), generator=th.Generator().manual_seed(0))
    _, lp_perm, _ = policy.evaluate_actions({k: v[perm] for k, v in obs.items()}, actions[perm], th.as_tensor(masks)[perm])
    th.testing.assert_close(lp_perm, log_prob[perm])


def test_value_head_depends_on_the_rank(checkpoint: Path) -> None:
    env = make()
    policy = policy_for(env, checkpoint)
    obs, _ = env.reset(options={"case": 0})
    batch = to_tensor([obs] * 4)
    batch["rank"] = th.eye(4)
    values = policy.predict_values(batch).squeeze(1)
    assert len(set(np.round(values.detach().numpy(), 6))) == 4


def test_masked_actions_have_zero_probability_and_null_is_never_chosen(checkpoint: Path) -> None:
    env = make()
    policy = policy_for(env, checkpoint)
    obs, _ = env.reset(seed=0)
    batch = to_tensor([obs])
    mask = env.action_masks()
    probs = policy.get_distribution(batch, mask[None]).distribution.probs[0].detach().numpy()
    assert probs[~mask].max() < 1e-12 and probs.sum() == pytest.approx(1.0, abs=1e-5)
    unmasked = policy.get_distribution(batch).distribution.probs[0].detach().numpy()
    assert unmasked[0] < 1e-12 and unmasked[env.num_classes[0] : env.max_classes].max() < 1e-12
    only_abstain = np.zeros_like(mask)
    only_abstain[-1] = True
    for _ in range(5):
        action, _ = policy.predict(obs, deterministic=False, action_masks=only_abstain)
        assert int(action) == env.abstain_action


def test_initial_abstain_probability(checkpoint: Path) -> None:
    env = make()
    policy = policy_for(env, checkpoint, initial_abstain_probability=0.2)
    obs, masks, _ = mixed_rank_batch(env)
    abstain = th.full((len(masks),), env.abstain_action)
    _, log_prob, _ = policy.evaluate_actions(obs, abstain, th.as_tensor(masks))
    np.testing.assert_allclose(log_prob.exp().detach().numpy(), 0.2, atol=0.02)


def trainable_names(policy: LinnaeusPolicy) -> set[str]:
    return {name for name, p in policy.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("strategy", "n_blocks", "expected_prefixes"),
    [
        ("value_head_only", None, {"value_head."}),
        ("heads_only", None, {"value_head.", "abstain_head.", "phase1.heads."}),
        ("last_n_blocks", 1, {"value_head.", "abstain_head.", "phase1.heads.", "phase1.blocks.2."}),
        ("last_n_blocks", 2, {"value_head.", "abstain_head.", "phase1.heads.", "phase1.blocks.1.", "phase1.blocks.2."}),
        ("full", None, {"value_head.", "abstain_head.", "phase1.heads.", "phase1.blocks."}),
    ],
)
def test_finetune_strategies_freeze_exactly_what_they_say(checkpoint, strategy, n_blocks, expected_prefixes) -> None:
    policy = policy_for(make(), checkpoint, finetune=strategy, n_unfrozen_blocks=n_blocks)
    names = {name for name, _ in policy.named_parameters()}
    expected = {n for n in names if any(n.startswith(p) for p in expected_prefixes)}
    assert trainable_names(policy) == expected
    optimised = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in policy.parameters() if p.requires_grad}
    if strategy == "heads_only":  # the source's heads_only froze nothing
        assert not any(n.startswith("phase1.blocks.") for n in trainable_names(policy))


def test_frozen_parameters_do_not_change_during_ppo(checkpoint: Path) -> None:
    venv = make_vec_env("Taxonomy-v0", n_envs=2, seed=0, env_kwargs={"synthetic": TINY})
    model = MaskablePPO(LinnaeusPolicy, venv, n_steps=32, batch_size=16, n_epochs=1, seed=0,
                        policy_kwargs={"phase1_checkpoint": str(checkpoint), "finetune": "heads_only"})
    before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
    model.learn(64)
    for name, p in model.policy.named_parameters():
        changed = not th.equal(before[name], p.detach())
        assert changed == p.requires_grad, name


def test_bad_options_raise(checkpoint: Path, tmp_path: Path) -> None:
    env = make()
    with pytest.raises(ValueError, match="finetune must be one of"):
        policy_for(env, checkpoint, finetune="backbone")
    with pytest.raises(ValueError, match="needs n_unfrozen_blocks"):
        policy_for(env, checkpoint, finetune="last_n_blocks")
    with pytest.raises(ValueError, match=r"n_unfrozen_blocks must be in \[1, 3\]"):
        policy_for(env, checkpoint, finetune="last_n_blocks", n_unfrozen_blocks=4)
    with pytest.raises(ValueError, match="only used by"):
        policy_for(env, checkpoint, finetune="full", n_unfrozen_blocks=1)
    with pytest.raises(FileNotFoundError, match="python -m train pretrain --env Taxonomy-v0"):
        policy_for(env, tmp_path / "missing.pt")
    other = Phase1Classifier(Phase1Config(num_classes=(3, 4, 5, 6), channels=(4,)))
    save_phase1(other, tmp_path / "other.pt", tree_fingerprint="x", ranks=("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="do not match this env"):
        policy_for(env, tmp_path / "other.pt")
    for strategy in FinetuneStrategy:
        assert f"``{strategy.value}``" in LinnaeusPolicy.__doc__


@pytest.mark.parametrize("env_id", IDS)
def test_maskable_ppo_trains_saves_and_loads(env_id: str, checkpoint: Path, tmp_path: Path) -> None:
    venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs={"synthetic": TINY})
    model = MaskablePPO(LinnaeusPolicy, venv, n_steps=32, batch_size=16, n_epochs=1, seed=0,
                        policy_kwargs={"phase1_checkpoint": str(checkpoint)})
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = MaskablePPO.load(tmp_path / "model.zip", device="cpu")
    env = make(env_id)
    obs, _ = env.reset(seed=0)
    masks = env.action_masks()
    a1, _ = model.predict(obs, deterministic=True, action_masks=masks)
    a2, _ = loaded.predict(obs, deterministic=True, action_masks=masks)
    assert np.array_equal(a1, a2) and env.action_space.contains(np.asarray(a1, dtype=np.int64).reshape(env.action_space.shape))


def test_multitask_abstain_is_the_last_value_of_each_rank(checkpoint: Path) -> None:
    env = make("TaxonomyMultitask-v0")
    policy = policy_for(env, checkpoint, initial_abstain_probability=0.999)
    obs, _ = env.reset(seed=0)
    action, _ = policy.predict(obs, deterministic=True, action_masks=env.action_masks())
    assert action.tolist() == env.num_classes.tolist()


def test_checkpoint_round_trip(checkpoint: Path) -> None:
    model, meta = load_phase1(checkpoint)
    env = make()
    assert model.num_classes == env.tree.num_classes and meta["tree_fingerprint"] == env.tree.fingerprint()


@pytest.mark.parametrize(("env_id", "hierarchy"), [("Taxonomy-v0", False), ("Taxonomy-v0", True),
                                                   ("TaxonomyMultitask-v0", False)])
def test_selective_answers_agree_with_played_episodes(checkpoint: Path, env_id: str, hierarchy: bool) -> None:
    env = make(env_id, **({"hierarchy_consistent": True} if hierarchy else {}))
    policy = policy_for(env, checkpoint)
    images = env.data.images.transpose(0, 3, 1, 2)
    tree = env.tree if hierarchy else None
    with th.no_grad():  # image-dependent abstain scores, centred so that about half abstain at each rank
        policy.abstain_head[-1].weight.normal_(0.0, 3.0)
        policy.abstain_head[-1].bias.zero_()
        policy.abstain_head[-1].bias.add_(th.as_tensor(np.median(policy.selective_answers(images, tree)[1], axis=0)))
    classes, margins = policy.selective_answers(images, tree, batch_size=7)
    covered = np.cumprod(margins >= 0, axis=1).astype(bool)
    expected = np.where(covered, classes, 0)
    assert 0 < covered[:, 0].mean() < 1 and 0 < covered[:, -1].mean(), "need both answers and abstentions"
    for case in range(env.n_cases):
        obs, _ = env.reset(options={"case": case})
        while True:
            action, _ = policy.predict(obs, deterministic=True, action_masks=env.action_masks())
            obs, _, terminated, _, info = env.step(action)
            if terminated:
                break
        assert info["predictions"].tolist() == expected[case].tolist(), case
