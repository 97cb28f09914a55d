"""Taxonomy selective-classification metrics: coverage, selective risk, risk-coverage, AURC."""

from __future__ import annotations

import numpy as np
import pytest

from envs.taxonomy.metrics import (
    SelectiveAnswers,
    null_cause_metrics,
    risk_coverage,
    risk_coverage_metrics,
    selective_operating_point,
)
from rewards.taxonomy import AbstentionOutcome

O = AbstentionOutcome


def test_operating_point_counts_predictions_at_null_ranks_as_errors() -> None:
    outcomes = np.array([
        [O.CORRECT, O.CORRECT_ABSTENTION],
        [O.MISCLASSIFIED, O.UNNECESSARY_ABSTENTION],
        [O.CORRECT, O.MISSED_ABSTENTION],
        [O.CORRECT_ABSTENTION, O.CORRECT_ABSTENTION],
    ])
    point = selective_operating_point(outcomes, ["a", "b"])
    assert point["per_rank"]["a"] == {"coverage": 0.75, "selective_risk": pytest.approx(1 / 3)}
    assert point["per_rank"]["b"] == {"coverage": 0.25, "selective_risk": 1.0}
    assert point["chain"] == {"coverage": 0.5, "selective_risk": 0.5}
    assert selective_operating_point(np.array([[O.CORRECT_ABSTENTION]]), ["a"])["chain"]["selective_risk"] is None


def test_risk_coverage_and_aurc_by_hand() -> None:
    errors = np.array([False, True, False, True])
    coverage, risk = risk_coverage(errors, np.array([0.7, 0.8, 0.9, 0.1]))  # order: 2, 1, 0, 3
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk == pytest.approx([0.0, 0.5, 1 / 3, 0.5])
    labels = np.array([[1], [1], [1], [1]])
    answers = SelectiveAnswers(np.array([[1], [2], [1], [2]]), np.array([[0.7], [0.8], [0.9], [0.1]]))
    m = risk_coverage_metrics(answers, labels, ["a"])["per_rank"]["a"]
    assert m["aurc"] == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    assert m["e_aurc"] == pytest.approx(m["aurc"] - (0 + 0 + 1 / 3 + 0.5) / 4)  # perfect ranking: errors last
    assert m["risk_at_coverage"] == {"0.80": 0.5, "0.90": 0.5, "0.95": 0.5}
    assert m["curve"]["coverage"] == [0.25, 0.5, 0.75, 1.0]


def test_a_better_ranking_has_a_lower_aurc_at_the_same_accuracy() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 4, (200, 1))
    classes = np.where(rng.random((200, 1)) < 0.7, labels, labels % 3 + 1)
    informative = np.where(classes == labels, 1.0, 0.0) + rng.normal(0, 0.6, (200, 1))
    constant = np.zeros((200, 1))
    good = risk_coverage_metrics(SelectiveAnswers(classes, informative), labels, ["a"])["chain"]
    flat = risk_coverage_metrics(SelectiveAnswers(classes, constant), labels, ["a"])["chain"]
    assert good["aurc"] < flat["aurc"] - 0.1
    assert flat["risk_at_coverage"]["0.80"] == pytest.approx(flat["curve"]["risk"][80], abs=0.05)


def test_chain_curve_backs_off_rank_by_rank_and_null_labels_are_errors() -> None:
    labels = np.array([[1, 1], [1, 0]])
    answers = SelectiveAnswers(np.array([[1, 1], [1, 2]]), np.array([[0.5, -0.2], [0.3, 0.4]]))
    assert answers.predictions().tolist() == [[1, 0], [1, 2]]
    chain = risk_coverage_metrics(answers, labels, ["a", "b"])["chain"]
    # chain scores [[0.5, -0.2], [0.3, 0.3]]: (0,a) (1,a) (1,b: null label, wrong) (0,b); the tie keeps a before b
    assert chain["curve"]["risk"] == pytest.approx([0.0, 0.0, round(1 / 3, 4), 0.25])
    assert chain["aurc"] == pytest.approx((1 / 3 + 0.25) / 4)


def test_bad_answers_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        SelectiveAnswers(np.ones((3, 2), dtype=int), np.ones((3, 1)))
    with pytest.raises(ValueError, match="finite"):
        SelectiveAnswers(np.ones((1, 1), dtype=int), np.array([[np.nan]]))
    with pytest.raises(ValueError, match="labels must have shape"):
        risk_coverage_metrics(SelectiveAnswers(np.ones((2, 1), dtype=int), np.ones((2, 1))), np.ones((3, 1)), ["a"])


def test_null_cause_metrics() -> None:
    outcomes = np.array([[O.CORRECT, O.MISSED_ABSTENTION], [O.CORRECT, O.CORRECT_ABSTENTION], [O.CORRECT, O.CORRECT]])
    m = null_cause_metrics(outcomes, ["degraded", "degraded", "none"])
    assert m["degraded"] == {"share": pytest.approx(2 / 3), "abstained_in_time": 0.5}
    assert m["none"] == {"share": pytest.approx(1 / 3), "abstained_in_time": None}
