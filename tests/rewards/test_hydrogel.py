"""rewards.hydrogel: the seed's composite reward, component by component."""

from __future__ import annotations

import pytest
import torch

from rewards.hydrogel import COMPONENT_NAMES, RewardWeights, composite_reward, is_optimal, is_therapeutic


def _predictions(**overrides: float) -> dict[str, torch.Tensor]:
    base = dict(
        delta_EF=6.0, stress_reduction=20.0, strain_normalization=18.0, optimal_prob=0.9,
        toxicity=0.05, structural_integrity=0.9, fibrosis_risk=0.1, arrhythmia_risk=0.2,
    )
    base.update(overrides)
    return {k: torch.tensor([v]) for k, v in base.items()}


def test_components_add_up_to_total_and_match_the_seed_formula() -> None:
    out = composite_reward(_predictions(), novel=torch.tensor([True]))
    total = sum(out[name] for name in COMPONENT_NAMES)
    torch.testing.assert_close(out["total"], total)
    assert float(out["total"]) == pytest.approx(3.0 * 6.0 + 1.5 * 20.0 / 100 + 0.9 + 0.1)
    assert float(out["design_score"]) == pytest.approx(float(out["total"]) - 0.1)


@pytest.mark.parametrize(
    "field, value, component, penalty",
    [
        ("toxicity", 0.16, "toxicity_penalty", -2.0),
        ("structural_integrity", 0.79, "integrity_penalty", -1.0),
        ("fibrosis_risk", 0.21, "fibrosis_penalty", -0.5),
    ],
)
def test_safety_penalties_switch_on_past_their_limits(field: str, value: float, component: str, penalty: float) -> None:
    assert float(composite_reward(_predictions(), torch.tensor([False]))[component]) == 0.0
    assert float(composite_reward(_predictions(**{field: value}), torch.tensor([False]))[component]) == penalty


def test_weights_are_configurable_and_validated() -> None:
    weights = RewardWeights(delta_ef=1.0, novelty_bonus=0.0)
    out = composite_reward(_predictions(), torch.tensor([True]), weights)
    assert float(out["delta_ef_term"]) == 6.0 and float(out["novelty_bonus"]) == 0.0
    with pytest.raises(ValueError, match="delta_ef"):
        RewardWeights(delta_ef=float("nan"))


def test_success_rules() -> None:
    assert bool(is_optimal(_predictions(delta_EF=3.0, stress_reduction=15.0)))
    assert not bool(is_optimal(_predictions(delta_EF=2.99, stress_reduction=40.0)))
    assert bool(is_therapeutic(_predictions(delta_EF=5.0, stress_reduction=25.0, strain_normalization=15.0)))
    assert not bool(is_therapeutic(_predictions(delta_EF=5.0, stress_reduction=25.0, strain_normalization=14.0)))
