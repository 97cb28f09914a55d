"""The supervised tolerance scorer: what it fits, what it picks, and that the fit is stored once."""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines import amg_tolerance_scorer as scorer
from agents.baselines.amg_tolerance_scorer import AMGToleranceScorerAgent, SCORER_TOLERANCES
from envs.amg.env import AnisotropicAMGEnv


def test_the_fit_recovers_a_planted_linear_relation() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(0.0, 0.1, (300, 5, 2))  # (cases, K, F)
    biases = np.array([0.03, 0.0, -0.01, 0.0, -0.02])
    labels = features @ np.array([0.5, -0.3]) + biases + rng.normal(0.0, 1e-3, (300, 5))
    labels += rng.normal(0.0, 1.0, (300, 1))  # a per-case offset the scorer must ignore
    labels[7, 2] = np.nan  # a failed solve leaves its case out
    fitted = scorer._fit(features, labels)
    np.testing.assert_allclose(fitted["weights"], [0.5, -0.3], atol=0.05)
    assert fitted["cases"] == 299
    agent = AMGToleranceScorerAgent(fitted["weights"], fitted["biases"])
    truth = (features @ np.array([0.5, -0.3]) + biases).argmin(axis=1)
    picks = np.array([agent.choice({"candidate_features": f}) for f in features])
    assert np.mean(picks == truth) > 0.8  # no fixed candidate is right that often
    assert max(np.mean(truth == k) for k in range(5)) < 0.5


def test_the_agent_plays_the_env_on_every_level_and_names_missing_features() -> None:
    env = AnisotropicAMGEnv(grid_size=12, split="test", mode="multilevel", problem_family="heterogeneous",
                            evolution_features=True, evolution_tolerances=list(SCORER_TOLERANCES))
    agent = AMGToleranceScorerAgent([10.0, 0.0], [0.0] * len(SCORER_TOLERANCES))  # predicted work grows with mu: the best weak approximation
    obs, _ = env.reset(seed=0, options={"case": 0})
    terminated, steps = False, 0
    while not terminated:
        k = int(np.argmin(obs["candidate_features"][:, 0]))
        action = agent.predict(obs)[0]
        np.testing.assert_array_equal(action, (obs["edge_features"][:, scorer.FIRST_TOLERANCE_COLUMN + k] > 0))
        obs, _, terminated, _, info = env.step(action)
        steps += 1
    assert steps >= 2 and not info["solver_failed"] and not info["invalid_action"]
    batch = {key: np.stack([value, value]) for key, value in obs.items()}
    assert agent.predict(batch)[0].shape == (2, env.action_space.n)
    with pytest.raises(ValueError, match="evolution_tolerances"):
        agent.predict({key: value for key, value in obs.items() if key != "candidate_features"})
    with pytest.raises(ValueError, match="weights"):
        AMGToleranceScorerAgent([1.0], [0.0])


def test_the_fit_is_stored_once_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = scorer._training_data
    monkeypatch.setattr(scorer, "_training_data", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(scorer, "FIT_CASES", 3)  # a different cache key from the real fit's, and fast
    scorer.fit_tolerance_scorer.cache_clear()
    # a problem draw no other test fits, so the session's cache holds nothing for it yet
    first = scorer.fit_tolerance_scorer("heterogeneous", 7)
    scorer.fit_tolerance_scorer.cache_clear()  # a new process: only the disk cache is left
    assert scorer.fit_tolerance_scorer("heterogeneous", 7) == first
    assert len(calls) == 1 and first["cases"] == 3 and len(first["biases"]) == len(SCORER_TOLERANCES)
    scorer.fit_tolerance_scorer.cache_clear()


def test_the_registered_reference_uses_the_scorers_tolerances() -> None:
    import envs

    (reference,) = [r for r in envs.entry("AnisotropicAMG-v0").reference_agents if r.name == "tolerance_scorer"]
    assert tuple(reference.env_kwargs["evolution_tolerances"]) == SCORER_TOLERANCES


def test_the_cli_prints_warm_start_hyperparams_the_trainer_parses(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from train.config import parse_overrides

    monkeypatch.setattr(scorer, "FIT_CASES", 3)
    scorer.fit_tolerance_scorer.cache_clear()
    assert scorer.main(["--family", "heterogeneous"]) == 0
    scorer.fit_tolerance_scorer.cache_clear()
    tokens = capsys.readouterr().out.split()  # as the shell splits $(...)
    overrides = parse_overrides(tokens)
    assert len(overrides["policy_kwargs"]["initial_logits"]) == len(SCORER_TOLERANCES)
    assert len(overrides["policy_kwargs"]["candidate_linear_init"]) == 2
