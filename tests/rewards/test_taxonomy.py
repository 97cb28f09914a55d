"""Rewards of Taxonomy-v0: every rank is scored (the source scored only the first)."""

from __future__ import annotations

import numpy as np
import pytest

from rewards.taxonomy import (
    AbstentionOutcome,
    EpisodeOutcomeReward,
    SimpleAbstentionReward,
    normalise_predictions,
    rank_outcomes,
)

O = AbstentionOutcome


def test_perfect_episode_without_nulls_scores_every_rank() -> None:
    reward = SimpleAbstentionReward()
    assert reward.rank_rewards([3, 5, 7, 9], [3, 5, 7, 9]).sum() == pytest.approx(4.0)
    assert reward.rank_rewards([3, 5, 7], [3, 5, 7]).sum() == pytest.approx(3.0)


def test_abstaining_where_labels_turn_null_earns_correct_abstention_for_each_rank() -> None:
    rewards = SimpleAbstentionReward().rank_rewards([3, 5, None], [3, 5, 0, 0])
    np.testing.assert_allclose(rewards, [1.0, 1.0, 0.5, 0.5])


def test_ranks_after_an_abstention_are_scored_as_abstentions() -> None:
    reward = SimpleAbstentionReward()
    # a later "prediction" after the abstention is ignored
    np.testing.assert_allclose(reward.rank_rewards([3, None, 7, 9], [3, 5, 7, 9]), [1.0, -0.5, -0.5, -0.5])
    np.testing.assert_allclose(reward.rank_rewards([3], [3, 5, 0, 0]), [1.0, -0.5, 0.5, 0.5])


def test_wrong_class_and_prediction_at_null_are_penalised() -> None:
    rewards = SimpleAbstentionReward().rank_rewards([3, 6, 7, 9], [3, 5, 0, 0])
    np.testing.assert_allclose(rewards, [1.0, -1.0, -1.0, -1.0])


def test_values_are_configurable() -> None:
    reward = SimpleAbstentionReward(correct_classification=2.0, correct_abstention=0.25, unnecessary_abstention=-0.1)
    np.testing.assert_allclose(reward.rank_rewards([3, None], [3, 5, 0]), [2.0, -0.1, 0.25])


def test_outcomes_per_rank() -> None:
    outcomes = rank_outcomes([3, 4, 8, None], [3, 5, 0, 0])
    assert outcomes.tolist() == [O.CORRECT, O.MISCLASSIFIED, O.MISSED_ABSTENTION, O.CORRECT_ABSTENTION]
    assert rank_outcomes([None], [2, 0]).tolist() == [O.UNNECESSARY_ABSTENTION, O.CORRECT_ABSTENTION]


def test_episode_outcome_reward_credits_the_stopping_rank() -> None:
    reward = EpisodeOutcomeReward()
    np.testing.assert_allclose(reward.rank_rewards([3, 5, 7, 9], [3, 5, 7, 9]), [0, 0, 0, 1.0])
    np.testing.assert_allclose(reward.rank_rewards([3, 5, None], [3, 5, 0, 0]), [0, 0, 1.0, 0])
    # abstaining one rank too early, or too late, is suboptimal
    np.testing.assert_allclose(reward.rank_rewards([3, None], [3, 5, 0, 0]), [0, -1.0, 0, 0])
    np.testing.assert_allclose(reward.rank_rewards([3, 5, 7, None], [3, 5, 0, 0]), [0, 0, 0, -1.0])
    assert EpisodeOutcomeReward(optimal_outcome=5.0).rank_rewards([1], [1]).sum() == 5.0


@pytest.mark.parametrize("reward", [SimpleAbstentionReward(), EpisodeOutcomeReward()])
def test_rewards_are_causal(reward) -> None:
    """Rewards before the stopping rank do not depend on later predictions (the env pays them per step)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        labels = rng.integers(0, 3, 4)
        stop = int(rng.integers(0, 4))
        prefix = [int(x) for x in rng.integers(1, 3, stop)]
        a = reward.rank_rewards(prefix + [None], labels)
        b = reward.rank_rewards(prefix + [1] + [None], labels) if stop < 3 else a
        np.testing.assert_allclose(a[:stop], b[:stop])


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="correct_classification"):
        SimpleAbstentionReward(correct_classification=float("nan"))
    with pytest.raises(ValueError, match="class index >= 1"):
        normalise_predictions([0], 2)
    with pytest.raises(ValueError, match="3 predictions for 2 ranks"):
        normalise_predictions([1, 1, 1], 2)
