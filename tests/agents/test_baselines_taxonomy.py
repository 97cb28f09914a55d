"""Taxonomy evaluation: abstention metrics, the threshold baseline, eval.json keys."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import envs
from agents.baselines import RandomAgent, TaxonomyThresholdAgent
from agents.baselines.taxonomy import score_predictions, threshold_predictions, tune_thresholds
from agents.evaluation import evaluate, play
from envs.taxonomy.metrics import abstention_metrics, summarise
from policies.linnaeus import LinnaeusPolicy
from policies.phase1 import Phase1Classifier, Phase1Config, class_probabilities, save_phase1
from rewards.taxonomy import AbstentionOutcome, SimpleAbstentionReward

TINY = {"n_samples": 240, "min_species_count": 0, "seed": 1}
METRICS = {"abstention_rate", "correct_abstention_rate", "unnecessary_abstention_rate",
           "missed_abstention_count", "accuracy_on_non_abstained", "abstention_recall"}
O = AbstentionOutcome


@pytest.fixture(scope="module")
def phase1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phase1Classifier, Path]:
    env = gym.make("Taxonomy-v0", synthetic=TINY).unwrapped
    th.manual_seed(0)
    model = Phase1Classifier(Phase1Config(num_classes=env.tree.num_classes, channels=(4, 8)))
    with th.no_grad():  # peaked, varied outputs: no near-ties that batch-size rounding could flip
        for head in model.heads:
            head.weight.mul_(30.0)
    path = tmp_path_factory.mktemp("phase1") / "phase1.pt"
    save_phase1(model, path, tree_fingerprint=env.tree.fingerprint(), ranks=env.tree.ranks)
    return model.eval(), path


def test_abstention_metrics_by_hand() -> None:
    outcomes = np.array([
        [O.CORRECT, O.CORRECT_ABSTENTION],
        [O.MISCLASSIFIED, O.UNNECESSARY_ABSTENTION],
        [O.CORRECT, O.MISSED_ABSTENTION],
        [O.CORRECT_ABSTENTION, O.CORRECT_ABSTENTION],
    ])
    m = abstention_metrics(outcomes, ["a", "b"])
    assert m["a"] == {
        "abstention_rate": 0.25, "correct_abstention_rate": 1.0, "unnecessary_abstention_rate": 0.0,
        "missed_abstention_count": 0, "accuracy_on_non_abstained": 2 / 3, "abstention_recall": 1.0,
    }
    assert m["b"]["abstention_rate"] == 0.75 and m["b"]["correct_abstention_rate"] == pytest.approx(2 / 3)
    assert m["b"]["missed_abstention_count"] == 1 and m["b"]["accuracy_on_non_abstained"] == 0.0
    assert m["b"]["abstention_recall"] == pytest.approx(2 / 3)
    assert abstention_metrics(np.array([[O.CORRECT]]), ["a"])["a"]["correct_abstention_rate"] is None


@pytest.mark.parametrize(("env_id", "hierarchy"), [("Taxonomy-v0", False), ("Taxonomy-v0", True),
                                                   ("TaxonomyMultitask-v0", False)])
def test_batched_threshold_scoring_equals_playing_the_agent(phase1, env_id: str, hierarchy: bool) -> None:
    model, _ = phase1
    kwargs = {"hierarchy_consistent": True} if hierarchy else {}
    env = gym.make(env_id, synthetic=TINY, split="test", **kwargs)
    base = env.unwrapped
    probs = class_probabilities(model, base.data.images)
    # midway between two middle top-probabilities: abstains on about half, and no sample
    # sits on the threshold (single-image and batched forward passes round differently)
    thresholds = np.array([np.sort(p.max(axis=1))[len(p) // 2 - 1 : len(p) // 2 + 1].mean() for p in probs])
    cases = np.arange(base.n_cases)
    played = summarise(play(TaxonomyThresholdAgent(model, thresholds), env, [(int(c), int(c)) for c in cases]))
    predictions = threshold_predictions(probs, thresholds, base.tree if hierarchy else None)
    returns, outcomes = score_predictions(predictions, base.data.labels, base.reward_fn)
    assert played["mean_reward"] == pytest.approx(returns.mean())
    assert played["per_rank"] == abstention_metrics(outcomes, base.tree.ranks)
    assert 0 < (predictions == 0).mean() < 1


def test_tune_thresholds_learns_to_abstain_on_unsure_null_ranks() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = np.ones((n, 2), dtype=np.int64)
    unsure = rng.random(n) < 0.5
    labels[unsure, 1] = 0  # the fine rank is null exactly on the unsure samples
    confident = np.tile([0.9, 0.1], (n, 1))
    probs = [confident, np.where(unsure[:, None], [0.55, 0.45], [0.9, 0.1])]
    thresholds, best = tune_thresholds(probs, labels, SimpleAbstentionReward())
    assert thresholds[0] <= 0.9 and 0.55 < thresholds[1] <= 0.9
    u = unsure.mean()
    assert best == pytest.approx(1.0 + (1 - u) * 1.0 + u * 0.5)  # rank 0 right; rank 1 right or abstained


def test_evaluator_reports_metrics_and_baselines_on_the_same_keys(phase1, tmp_path: Path) -> None:
    _, path = phase1
    assert envs.entry("Taxonomy-v0").evaluation == envs.entry("TaxonomyMultitask-v0").evaluation
    venv = make_vec_env("Taxonomy-v0", n_envs=1, seed=0, env_kwargs={"synthetic": TINY})
    model = MaskablePPO(LinnaeusPolicy, venv, n_steps=16, batch_size=16, seed=0,
                        policy_kwargs={"phase1_checkpoint": str(path)})
    result = evaluate(model, "Taxonomy-v0", env_kwargs={"synthetic": TINY, "split": "train"}, n_episodes=7, seed=3)
    assert result["n_episodes"] == 7
    ranks = ("order", "family", "genus", "species")
    keys = {"mean_reward", "std_reward", "n_episodes", "per_rank"}
    assert keys <= set(result) and set(result["per_rank"]) == set(ranks)
    assert all(set(m) == METRICS for m in result["per_rank"].values())
    assert set(result["baselines"]) == {"random", "threshold", "never_abstain"}
    threshold = result["threshold_baseline"]
    assert keys <= set(threshold) and threshold["per_rank"].keys() == result["per_rank"].keys()
    assert set(threshold["thresholds"]) == set(ranks) and threshold["n_episodes"] == 7


def test_evaluator_without_a_phase1_checkpoint_names_the_command(tmp_path: Path) -> None:
    env = gym.make("TaxonomyMultitask-v0", synthetic=TINY, cache_dir=tmp_path)
    result = evaluate(RandomAgent(env.action_space, 0), "TaxonomyMultitask-v0",
                      env_kwargs={"synthetic": TINY, "cache_dir": str(tmp_path)}, n_episodes=1000, seed=0)
    assert result["n_episodes"] == gym.make("TaxonomyMultitask-v0", synthetic=TINY, split="test",
                                            cache_dir=tmp_path).unwrapped.n_cases
    assert result["threshold_baseline"] is None and "python -m train pretrain" in result["note"]
