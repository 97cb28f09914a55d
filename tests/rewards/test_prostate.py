"""Prostate-v0 reward modes, the csPCa bonus rule and the threshold parameter."""

from __future__ import annotations

import itertools
import math

import pytest

import rewards.prostate as rp
from rewards.prostate import RewardConfig, RewardMode, prostate_reward, reward_components


def test_docstring_lists_every_mode() -> None:
    for mode in RewardMode:
        assert f"``{mode.value}``" in rp.__doc__


def test_combined_matches_fork_formula() -> None:
    config = RewardConfig(cspca_bonus=1.0)
    # p = 0.3, inv = 0.5, P(csPCa) = 0.8, grade group 3 (csPCa): 0.7 (2(1-0.2)-1) + 0.3 (2*0.8-1)
    result = prostate_reward(config, core_score=0.3, involvement=0.5, cspca_prob=0.8, grade_group=3)
    assert result.reward == pytest.approx(0.7 * 0.6 + 0.3 * 0.6)
    assert result.components == pytest.approx({"heatmap": 0.6, "classification": 0.6})


def test_loss_based_matches_seed_formula() -> None:
    components = reward_components(RewardMode.LOSS_BASED, core_score=0.2, involvement=0.0, cspca_prob=0.1, cspca=False)
    assert components["heatmap"] == pytest.approx(math.log(0.8) / 2)
    assert components["classification"] == pytest.approx(math.log(0.9) / 2)


def test_confidence_roi_and_classification_only() -> None:
    conf = reward_components(RewardMode.CONFIDENCE_BASED, 0.9, 0.1, 0.5, cspca=False)
    assert conf["heatmap"] == pytest.approx(2 * 0.9 - 1)  # inv > 0: confident cancer call is right
    benign = reward_components(RewardMode.CONFIDENCE_BASED, 0.9, 0.0, 0.5, cspca=False)
    assert benign["heatmap"] == pytest.approx(2 * 0.1 - 1)
    roi = prostate_reward(RewardConfig(mode="roi_only"), 0.4, 0.4, 0.0, grade_group=0)
    assert roi.reward == pytest.approx(1.0) and set(roi.components) == {"heatmap"}
    cls = prostate_reward(RewardConfig(mode="classification_only"), 0.0, 0.0, 0.25, grade_group=0)
    assert cls.reward == pytest.approx(2 * 0.75 - 1) and set(cls.components) == {"classification"}


@pytest.mark.parametrize("mode", list(RewardMode))
@pytest.mark.parametrize("bonus", [1.0, 1.5, 2.0])
def test_cspca_bonus_never_makes_a_reward_worse(mode: RewardMode, bonus: float) -> None:
    config = RewardConfig(mode=mode, cspca_bonus=bonus)
    grid = (0.0, 0.01, 0.3, 0.7, 0.99, 1.0)
    for p, inv, q in itertools.product(grid, (0.0, 0.2, 1.0), grid):
        result = prostate_reward(config, p, inv, q, grade_group=4)
        assert result.cspca
        assert result.reward >= result.base_reward - 1e-12
        if bonus > 1.0 and result.base_reward > -1.0 + 1e-9 and mode is not RewardMode.LOSS_BASED:
            assert result.reward > result.base_reward


def test_bonus_never_worse_with_normalised_components() -> None:
    stats = {m.value: {"heatmap": (0.1, 0.4), "classification": (-0.2, 0.3)} for m in RewardMode}
    config = RewardConfig(mode="loss_based", cspca_bonus=2.0, normalize_components=True, component_stats=stats)
    for p in (0.001, 0.5, 0.999):
        result = prostate_reward(config, p, 0.3, 0.6, grade_group=2)
        assert result.reward >= result.base_reward


def test_cspca_threshold_is_a_parameter() -> None:
    default = prostate_reward(RewardConfig(), 0.5, 0.5, 0.5, grade_group=2)
    fork = prostate_reward(RewardConfig(cspca_threshold=3), 0.5, 0.5, 0.5, grade_group=2)
    assert default.cspca and not fork.cspca


def test_normalisation_z_scores_components() -> None:
    stats = {"combined": {"heatmap": (0.5, 0.25), "classification": (0.0, 0.5)}}
    config = RewardConfig(normalize_components=True, component_stats=stats, cspca_bonus=1.0)
    result = prostate_reward(config, 0.5, 0.5, 0.5, grade_group=0)  # heatmap 1.0, classification 0.0
    assert result.reward == pytest.approx(0.7 * (1.0 - 0.5) / 0.25 + 0.3 * 0.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cspca_bonus": 0.5}, "cspca_bonus"),
        ({"mode": "combined_v3"}, "reward mode"),
        ({"heatmap_weight": 1.5}, "heatmap_weight"),
        ({"cspca_threshold": 0}, "cspca_threshold"),
        ({"normalize_components": True}, "component_stats"),
    ],
)
def test_invalid_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RewardConfig(**kwargs)


def test_rewards_are_finite_at_extremes() -> None:
    for mode in RewardMode:
        result = prostate_reward(RewardConfig(mode=mode), 0.0, 1.0, 1.0, grade_group=0)
        assert math.isfinite(result.reward)
        assert result.reward >= rp.component_floor(mode, next(iter(result.components))) - 1e-9
