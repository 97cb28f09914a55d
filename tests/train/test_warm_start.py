"""``warm_start``: a supervised fit the policy starts from, merged into policy_kwargs by the runner."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from agents.baselines import amg_tolerance_scorer as scorer
from train import runner
from train.cli import main
from train.config import RunConfig, UsageError, resolve_config

AMG_START = "agents.baselines.amg_tolerance_scorer:scorer_warm_start"


def _with_fake_start(monkeypatch: pytest.MonkeyPatch, start: dict) -> list:
    calls = []

    def fake(env_id, env_kwargs, policy_kwargs):
        calls.append((env_id, env_kwargs, policy_kwargs))
        return start

    monkeypatch.setattr(runner, "import_target", lambda target, what, error: fake)
    return calls


def test_the_amg_defaults_start_at_the_tolerance_scorer() -> None:
    for algo in ("reinforce", "row-ppo", "ppo"):
        config = resolve_config(algo, "AnisotropicAMG-v0")
        assert config.warm_start == AMG_START, algo
        assert config.policy == "policies.tolerance:ToleranceChoicePolicy"
        assert config.env_kwargs["evolution_tolerances"] == list(scorer.SCORER_TOLERANCES)
    assert resolve_config("reinforce", "AnisotropicAMG-v0", overrides={"warm_start": None}).warm_start is None


def test_the_start_is_merged_and_the_callers_config_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    config = resolve_config("reinforce", "AnisotropicAMG-v0", overrides={"env_kwargs": {"problem_family": "heterogeneous"}})
    calls = _with_fake_start(monkeypatch, {"initial_logits": [1.0, 0.0, 0.0, 0.0, -1.0]})
    started = runner.warm_started(config)
    assert started.policy_kwargs == {**config.policy_kwargs, "initial_logits": [1.0, 0.0, 0.0, 0.0, -1.0]}
    assert "initial_logits" not in config.policy_kwargs  # frozen config, new object
    assert calls == [("AnisotropicAMG-v0", config.env_kwargs, config.policy_kwargs)]
    # the run's own config.yml, given back, already holds the same values: no clash, no change
    assert runner.warm_started(started) == started
    assert runner.warm_started(dataclasses.replace(config, warm_start=None)) == dataclasses.replace(config, warm_start=None)


def test_a_clash_or_a_failing_start_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    config = resolve_config("reinforce", "AnisotropicAMG-v0",
                            overrides={"policy_kwargs": {"initial_logits": [0.0, 2.0, 0.0, 0.0, 0.0]}})
    _with_fake_start(monkeypatch, {"initial_logits": [1.0, 0.0, 0.0, 0.0, -1.0]})
    with pytest.raises(UsageError, match=r"\['initial_logits'\].*warm_start=null"):
        runner.warm_started(config)

    def broken(env_id, env_kwargs, policy_kwargs):
        raise ValueError("env_kwargs.evolution_tolerances must list the candidates")

    monkeypatch.setattr(runner, "import_target", lambda target, what, error: broken)
    with pytest.raises(UsageError, match="warm_start .*evolution_tolerances"):
        runner.warm_started(config)
    with pytest.raises(UsageError, match="warm_start must be 'module:function'"):
        dataclasses.replace(config, warm_start="not_an_import_string")


def test_the_scorer_start_is_fitted_on_the_family_the_run_trains_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fitted = {"weights": [0.4, -0.3], "biases": [0.03, 0.0, -0.01, 0.0, -0.02], "cases": 256}
    monkeypatch.setattr(scorer, "fit_tolerance_scorer", lambda *args: calls.append(args) or fitted)
    env_kwargs = {"mode": "multilevel", "problem_family": "heterogeneous", "problem_seed": 2,
                  "evolution_features": True, "evolution_tolerances": [3, 4, 5, 6, 8]}
    start = scorer.scorer_warm_start("AnisotropicAMG-v0", env_kwargs, {"candidate_feature_scale": 20.0})
    assert calls == [("heterogeneous", 2, (3.0, 4.0, 5.0, 6.0, 8.0))]
    assert start == scorer.warm_start_kwargs(fitted, 20.0)
    assert start["initial_logits"][4] > start["initial_logits"][0]  # less predicted work, more logit
    scorer.scorer_warm_start("AnisotropicAMG-v0", {"evolution_features": True, "evolution_tolerances": [4, 8]}, {})
    assert calls[-1] == ("constant", 0, (4.0, 8.0))  # the env's defaults
    with pytest.raises(ValueError, match="evolution_tolerances"):
        scorer.scorer_warm_start("AnisotropicAMG-v0", {"mode": "multilevel"}, {})


def test_a_default_amg_run_records_the_start_it_trained_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``python -m train reinforce --env AnisotropicAMG-v0`` end to end (tiny): the fit runs, the
    policy starts at it, config.yml says so, and eval.json has the per-case references."""
    monkeypatch.setattr(scorer, "FIT_CASES", 3)  # its own cache key, and fast
    scorer.fit_tolerance_scorer.cache_clear()
    run_dir = tmp_path / "run"
    try:
        assert main(["reinforce", "--env", "AnisotropicAMG-v0", "--run-dir", str(run_dir), "--total-timesteps", "12",
                     "--eval-episodes", "2", "--hyperparams", "env_kwargs.grid_size=8", "episodes_per_update=2",
                     "group_size=2", "minibatch_size=2", "checkpoint_freq=12"]) == 0
        expected = scorer.warm_start_kwargs(scorer.fit_tolerance_scorer("constant", 0))
    finally:
        scorer.fit_tolerance_scorer.cache_clear()
    recorded = yaml.safe_load((run_dir / "config.yml").read_text())
    assert recorded["warm_start"] == AMG_START
    assert {k: recorded["policy_kwargs"][k] for k in expected} == expected
    assert RunConfig.from_yaml_dict(recorded).policy_kwargs["initial_logits"] == expected["initial_logits"]
    baselines = json.loads((run_dir / "eval.json").read_text())["baselines"]
    assert {"evolution", "tolerance_scorer", "evolution_tolerance_search", "evolution_tolerance_oracle"} <= set(baselines)
