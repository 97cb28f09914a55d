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
from agents.baselines.taxonomy import (
    _mean_return,
    climbing_answers,
    greedy_answers,
    null_probabilities,
    score_predictions,
    selective_answers,
    supervised_abstention_answers,
    threshold_predictions,
    train_null_head,
    tune_confidence_thresholds,
    tune_thresholds,
)
from agents.evaluation import evaluate, play
from envs.spec import import_target
from envs.taxonomy.metrics import abstention_metrics, summarise
from envs.taxonomy.tree import TaxonomyTree
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
    assert set(result["baselines"]) == {"random", "threshold", "never_abstain", "supervised_abstention", "climbing"}
    threshold = result["threshold_baseline"]
    assert keys <= set(threshold) and threshold["per_rank"].keys() == result["per_rank"].keys()
    assert set(threshold["thresholds"]) == set(ranks) and threshold["n_episodes"] == 7
    # selective classification: every agent's operating point; curves where scores allow a sweep
    for scored in [result, *result["baselines"].values()]:
        assert set(scored["selective"]["per_rank"]) == set(ranks) and set(scored["selective"]["chain"]) == {
            "coverage", "selective_risk"}
        assert scored["null_causes"]["none"]["share"] <= 1
    for scored in [result, *(result["baselines"][b] for b in ("threshold", "never_abstain", "supervised_abstention",
                                                             "climbing"))]:
        curves = scored["risk_coverage"]
        assert set(curves["per_rank"]) == set(ranks) and scored["aurc"] == curves["chain"]["aurc"]
        assert set(curves["chain"]["risk_at_coverage"]) == {"0.80", "0.90", "0.95"}
    assert "risk_coverage" not in result["baselines"]["random"]
    pngs = import_target(envs.entry("Taxonomy-v0").evaluation.plots, "plots")(result, tmp_path)
    assert [p.name for p in pngs] == ["risk_coverage.png"] and pngs[0].stat().st_size > 10_000


@pytest.mark.parametrize("hierarchy", [False, True])
def test_softmax_response_answers_equal_threshold_predictions(phase1, hierarchy: bool) -> None:
    model, _ = phase1
    base = gym.make("Taxonomy-v0", synthetic=TINY, split="train").unwrapped
    probs = class_probabilities(model, base.data.images)
    tree = base.tree if hierarchy else None
    thresholds = np.array([np.median(p.max(axis=1)) for p in probs])
    answers = selective_answers(*greedy_answers(probs, tree), thresholds)
    assert np.array_equal(answers.predictions(), threshold_predictions(probs, thresholds, tree))
    predictions = answers.predictions()
    returns, _ = score_predictions(predictions, base.data.labels, base.reward_fn)
    assert _mean_return(predictions, base.data.labels, base.reward_fn) == pytest.approx(returns.mean())


def test_climbing_sums_the_finest_softmax_up_the_tree_and_chooses_top_down() -> None:
    # orders o1, o2; families f1, f2 (o1), f3 (o2); species s1 (f1), s2 (f2), s3, s4 (f3)
    tree = TaxonomyTree.from_taxon_edges(
        ["order", "family", "species"], [[1, 2], [11, 12, 21], [111, 121, 211, 212]],
        [(11, 1), (12, 1), (21, 2), (111, 11), (121, 12), (211, 21), (212, 21)],
    )
    finest = np.array([[0.35, 0.25, 0.2, 0.2], [0.1, 0.25, 0.3, 0.35], [0.4, 0.0, 0.0, 0.6]])
    classes, confidence = climbing_answers(finest, tree)
    assert classes.tolist() == [[1, 1, 1], [2, 3, 4], [2, 3, 4]]
    np.testing.assert_allclose(confidence, [[0.6, 0.35, 0.35], [0.65, 0.65, 0.35], [0.6, 0.6, 0.6]])
    answers = selective_answers(classes, confidence, np.array([0.0, 0.5, 0.5]))
    assert answers.predictions().tolist() == [[1, 0, 0], [2, 3, 0], [2, 3, 4]]  # backs off to an ancestor


def test_null_head_learns_what_confidence_does_not_show_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    n = 600
    inputs = rng.normal(size=(n, 6))
    labels = np.ones((n, 2), dtype=np.int64)
    labels[inputs[:, 0] > 0.5, 1] = 0  # a "taxonomic" cause: one feature, not the confidence columns
    head = train_null_head(inputs[:400], labels[:400], inputs[400:500], labels[400:500], seed=0)
    p_null = null_probabilities(head, inputs[500:])
    truth = labels[500:, 1] == 0
    assert ((p_null[:, 1] > 0.5) == truth).mean() > 0.9 and (p_null[:, 0] < 0.1).all()
    again = train_null_head(inputs[:400], labels[:400], inputs[400:500], labels[400:500], seed=0)
    assert np.array_equal(null_probabilities(again, inputs[500:]), p_null)


def test_supervised_abstention_beats_softmax_response_when_nulls_are_not_in_the_confidence() -> None:
    rng = np.random.default_rng(1)
    n = 800
    labels = np.ones((n, 2), dtype=np.int64)
    cryptic = rng.random(n) < 0.3
    labels[cryptic, 1] = 0  # null whatever the classifier's confidence
    probs = [np.tile([0.95, 0.05], (n, 1)), np.column_stack([u := rng.uniform(0.6, 1.0, n), 1 - u])]
    p_null = np.column_stack([np.zeros(n), np.where(cryptic, 0.9, 0.1)])
    reward = SimpleAbstentionReward()
    val, test = slice(0, 400), slice(400, None)
    returns = {}
    for name, (classes, confidence) in {
        "threshold": greedy_answers(probs), "supervised": supervised_abstention_answers(probs, p_null),
    }.items():
        thresholds, _ = tune_confidence_thresholds(classes[val], confidence[val], labels[val], reward)
        returns[name] = _mean_return(
            selective_answers(classes[test], confidence[test], thresholds).predictions(), labels[test], reward)
    assert returns["supervised"] > returns["threshold"] + 0.3


def test_evaluator_without_a_phase1_checkpoint_names_the_command(tmp_path: Path) -> None:
    env = gym.make("TaxonomyMultitask-v0", synthetic=TINY, cache_dir=tmp_path)
    result = evaluate(RandomAgent(env.action_space, 0), "TaxonomyMultitask-v0",
                      env_kwargs={"synthetic": TINY, "cache_dir": str(tmp_path)}, n_episodes=1000, seed=0)
    assert result["n_episodes"] == gym.make("TaxonomyMultitask-v0", synthetic=TINY, split="test",
                                            cache_dir=tmp_path).unwrapped.n_cases
    assert result["threshold_baseline"] is None and "python -m train pretrain" in result["note"]
