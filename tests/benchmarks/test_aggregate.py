"""Aggregates and stratified bootstrap CIs (rliable's method) and per-env normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from rliable import metrics

from benchmarks.aggregate import Aggregate, interval_estimates, normalise_scores


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    scores = np.array([[1.0, 8.0], [2.0, 7.0], [3.0, 1000.0], [4.0, 5.0]])  # (runs=4, tasks=2)
    estimate = interval_estimates({"a": scores}, Aggregate.IQM, reps=200)["a"]
    assert estimate.point == pytest.approx(np.mean([3.0, 4.0, 5.0, 7.0]))  # drops 1, 2 and 8, 1000
    assert estimate.point == pytest.approx(metrics.aggregate_iqm(scores))
    mean = interval_estimates({"a": scores}, "mean", reps=200)["a"]
    assert mean.point == pytest.approx(scores.mean())


def test_interval_contains_the_estimate_and_is_reproducible() -> None:
    scores = {"a": np.random.default_rng(0).normal(size=(10, 3)), "b": np.random.default_rng(1).normal(5, 2, (6, 3))}
    first = interval_estimates(scores, reps=2000, seed=3)
    assert first == interval_estimates(scores, reps=2000, seed=3)
    assert first != interval_estimates(scores, reps=2000, seed=4)
    for estimate in first.values():
        assert estimate.low < estimate.point < estimate.high
    wider = interval_estimates(scores, reps=2000, seed=3, confidence=0.99)
    assert wider["a"].low <= first["a"].low and wider["a"].high >= first["a"].high


def test_resampling_is_stratified_by_task() -> None:
    # Runs are resampled within each task: with each task constant over runs, every
    # replicate equals the data, so the CI collapses (an unstratified bootstrap would not).
    scores = np.tile([0.0, 10.0, 4.0], (5, 1))  # (runs=5, tasks=3)
    estimate = interval_estimates({"a": scores}, "mean", reps=500)["a"]
    assert estimate.low == estimate.high == pytest.approx(14.0 / 3)


def test_is_rliable_get_interval_estimates_and_leaves_the_global_rng_alone() -> None:
    from rliable import library

    data = {"a": np.random.RandomState(0).rand(5, 3), "b": np.random.RandomState(1).rand(4, 3)}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    estimates = interval_estimates(data, "iqm", reps=300, seed=7)
    assert (np.random.get_state()[1] == before).all()
    np.random.seed(7)
    points, intervals = library.get_interval_estimates(
        data, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=300, method="percentile"
    )
    for name in data:
        assert (estimates[name].point, estimates[name].low, estimates[name].high) == pytest.approx(
            (points[name][0], intervals[name][0, 0], intervals[name][1, 0]), abs=1e-12
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": {"a": np.zeros(3)}}, "(runs, tasks)"),
        ({"scores": {"a": np.array([[0.0, np.nan]])}}, "non-finite"),
        ({"reps": 0}, "reps"),
        ({"confidence": 1.0}, "confidence"),
        ({"aggregate": "median"}, "aggregate must be one of"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict, message: str) -> None:
    arguments = {"scores": {"a": np.zeros((2, 2))}, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        interval_estimates(**arguments)


def test_normalisation_maps_reference_scores_to_zero_and_one() -> None:
    scores = {"random": np.array([[1.0, 10.0], [3.0, 30.0]]), "best": np.array([[5.0, 50.0], [5.0, 70.0]])}
    normalised = normalise_scores(scores, low=np.array([2.0, 20.0]), high=np.array([5.0, 60.0]), task_names=["a", "b"])
    np.testing.assert_allclose(normalised["random"].mean(axis=0), [0.0, 0.0])
    np.testing.assert_allclose(normalised["best"].mean(axis=0), [1.0, 1.0])
    with pytest.raises(ValueError, match="cannot normalise scores on b"):
        normalise_scores(scores, low=np.array([2.0, 20.0]), high=np.array([5.0, 20.0]), task_names=["a", "b"])


def test_the_docstring_lists_every_aggregate() -> None:
    for member in Aggregate:
        assert f"``{member.value}``" in Aggregate.__doc__


def test_probability_of_improvement_is_rliables_value() -> None:
    """The vectorised statistic equals rliable's Mann-Whitney one, ties and identical runs included."""
    from benchmarks.aggregate import probability_of_improvement

    rng = np.random.default_rng(0)
    for trial in range(20):
        x = rng.integers(0, 4, size=(3, 5)).astype(float)  # small integers: many ties
        y = rng.integers(0, 4, size=(4, 5)).astype(float)
        if trial == 0:
            y = x.copy()  # identical runs on every task: 0.5
        assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
    assert probability_of_improvement(np.ones((2, 3)), np.zeros((2, 3))) == 1.0
