"""Hydrogel reference agents: hindsight designs, the oracle and per-patient black-box search."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from agents.baselines import hydrogel as H
from agents.evaluation import evaluate, play
from envs.hydrogel.metrics import summarise
from envs.hydrogel.wrappers import HybridBoxAction

SMALL = dict(n_synthetic=20)


@pytest.fixture(scope="module")
def box_env() -> gym.Env:
    return HybridBoxAction(gym.make("Hydrogel-v0", split="test", **SMALL))


def _every_patient(env: gym.Env) -> list[tuple[int, int]]:
    return [(case, case) for case in range(env.unwrapped.n_cases)]


def _summary(agent, env: gym.Env) -> dict:
    return summarise(play(agent, env, _every_patient(env)))


def test_oracle_agent_has_zero_regret_in_both_action_forms(box_env: gym.Env) -> None:
    for env in (box_env, gym.make("Hydrogel-v0", split="test", **SMALL)):
        result = _summary(H.oracle_agent(env, None, 0), env)
        assert result["mean_regret"] == pytest.approx(0.0, abs=1e-5)
        assert result["oracle_polymer_rate"] == 1.0


def test_hindsight_designs_are_ordered_and_match_their_definitions(box_env: gym.Env) -> None:
    problem = box_env.unwrapped.problem
    constant = _summary(H.best_constant_design_agent(box_env, None, 0), box_env)
    _, expected_constant = H.best_constant_design(problem)
    assert constant["mean_regret"] == pytest.approx(expected_constant, abs=1e-4)
    assert constant["n_distinct_polymers"] == 1
    single = _summary(H.population_best_polymer_agent(box_env, None, 0), box_env)
    _, expected_single = H.population_best_polymer(problem)
    assert single["mean_regret"] == pytest.approx(expected_single, abs=1e-4)
    assert 0.0 < single["mean_regret"] < constant["mean_regret"]


def test_black_box_search_improves_with_budget_and_tpe_beats_random_search(box_env: gym.Env) -> None:
    regret = {
        name: _summary(getattr(H, f"{name}_agent")(box_env, None, 0), box_env)["mean_regret"]
        for name in ("random_search_10", "random_search_100", "tpe_100")
    }
    assert regret["random_search_100"] < regret["random_search_10"]
    assert regret["tpe_100"] < regret["random_search_100"]
    again = _summary(H.random_search_10_agent(box_env, None, 0), box_env)["mean_regret"]
    assert again == regret["random_search_10"]  # seeded: same searches


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_in_the_search_env_the_trials_are_the_episode(method: str) -> None:
    env = HybridBoxAction(gym.make("HydrogelSearch-v0", horizon=4, split="test", **SMALL))
    agent = H.BlackBoxSearchAgent(env, method, budget=None, seed=0)
    assert agent.budget == 4
    record = play(agent, env, [(2, 0)])[0]
    plan = agent.plans[2]
    assert record.length == 4 and [info["polymer"] for info in record.infos] == [d[0] for d in plan]
    scores = [info["design_score"] for info in record.infos]
    novel = 0.1 * len({d[0] for d in plan})
    assert record.episode_return == pytest.approx(max(scores) + novel, rel=1e-5)
    with pytest.raises(ValueError, match="budget is the horizon"):
        H.BlackBoxSearchAgent(env, method, budget=10)


def test_bad_arguments_name_the_field(box_env: gym.Env) -> None:
    with pytest.raises(ValueError, match="method"):
        H.BlackBoxSearchAgent(box_env, "cma", 10)
    with pytest.raises(ValueError, match="budget"):
        H.BlackBoxSearchAgent(box_env, "random", 0)
    with pytest.raises(ValueError, match="compute_regret"):
        H.OracleAgent(gym.make("Hydrogel-v0", compute_regret=False, **SMALL))


def test_eval_json_reports_every_baseline_and_the_oracles_polymers() -> None:
    agent = H.OracleAgent(HybridBoxAction(gym.make("Hydrogel-v0", split="test", **SMALL)))
    result = evaluate(agent, "Hydrogel-v0", env_kwargs=SMALL, wrapper=HybridBoxAction, n_episodes=7)
    expected = {"random", "best_constant_design", "population_best_polymer", "oracle",
                "random_search_10", "random_search_100", "tpe_10", "tpe_100"}
    assert set(result["baselines"]) == expected
    assert result["mean_regret"] == pytest.approx(0.0, abs=1e-5)
    assert result["oracle_polymer_distribution"] == result["polymer_distribution"]
    assert sum(result["oracle_polymer_distribution"].values()) == pytest.approx(1.0)
    assert result["baselines"]["best_constant_design"]["mean_regret"] > result["baselines"]["oracle"]["mean_regret"]
    assert np.isfinite([b["mean_regret"] for b in result["baselines"].values()]).all()
