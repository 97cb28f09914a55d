"""``python -m benchmarks evaluate``: results files, aggregation, models from run dirs, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.agent_spec import parse_agent_spec
from benchmarks.cli import main
from benchmarks.suite import kwargs_mismatches, plan_runs
from train.cli import main as train_main

TINY_ENV = ["--env-kwargs", "n_synthetic=20"]  # 7 test patients; the run below trains on the same cohort
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train_tiny(path: Path, seed: int) -> Path:
    """A PPO run dir trained for 256 steps (seconds), as python -m train writes it."""
    argv = [
        "ppo", "--env", "Hydrogel-v0", "--total-timesteps", "256", "--n-envs", "4", "--eval-episodes", "1",
        "--seed", str(seed), "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=1",
        "env_kwargs.n_synthetic=20", "eval_env_kwargs.n_synthetic=20",  # scored on its own 20-patient cohort
        "policy_kwargs.net_arch=[16,16]", "--run-dir", str(path),
    ]
    assert train_main(argv) == 0
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_tiny(tmp_path_factory.mktemp("runs") / "ppo_hydrogel_0", seed=0)


@pytest.fixture(scope="module")
def second_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_tiny(tmp_path_factory.mktemp("runs") / "ppo_hydrogel_1", seed=1)


def test_random_against_a_trained_model(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"
    argv = ["evaluate", "--env", "Hydrogel-v0", "--agent", "random", "--agent", f"tiny={run_dir}",
            "--seeds", "0", "1", "--episodes", "3", "--reps", "500", *TINY_ENV, "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["command"] == "python -m benchmarks " + " ".join(argv)
    assert {"python", "torch", "gymnasium", "stable-baselines3", "sb3-contrib", "numpy"} <= set(data["versions"])
    by_label = {label: entries[0] for label, entries in data["results"]["Hydrogel-v0"].items()}
    assert list(by_label) == ["random", "tiny"]
    assert by_label["tiny"]["env_wrapper"] == ["envs.hydrogel.wrappers:HybridBoxAction"]
    assert by_label["tiny"]["env_kwargs"] == by_label["random"]["env_kwargs"] == {"n_synthetic": 20}
    for entry in by_label.values():
        assert set(entry["seeds"]) == {"0", "1"}
        for result in entry["seeds"].values():
            assert result["n_episodes"] == 3 and "baselines" in result and "optimal_rate" in result
    for label, estimate in data["aggregates"].items():
        runs = np.array(data["scores"][label])
        assert runs.shape == (2, 1)  # (seeds, envs)
        np.testing.assert_allclose(runs[:, 0], [by_label[label]["seeds"][s]["mean_reward"] for s in ("0", "1")])
        assert estimate["low"] <= estimate["point"] <= estimate["high"]
    assert data["normalisation"] is None and data["warnings"] == []
    markdown = (out / "results.md").read_text()
    assert f"`{data['command']}`" in markdown and "| tiny |" in markdown and "| optimal_rate |" in markdown
    assert (out / "aggregate.png").read_bytes()[:8] == PNG_MAGIC
    assert "tiny: IQM mean_reward" in capsys.readouterr().out


ORACLE_FACTORY = """
import gymnasium as gym
from agents.baselines.hydrogel import OracleAgent

def make(env_id):
    return OracleAgent(gym.make(env_id, n_synthetic=20, split="test"))
"""


def test_several_envs_are_normalised_between_random_and_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "oracle_factory.py").write_text(ORACLE_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "bench"
    argv = ["evaluate", "--env", "Hydrogel-v0", "--env", "HydrogelSearch-v0", "--agent", "random",
            "--agent", "other=baseline:RandomAgent:seed=5", "--agent", "oracle=oracle_factory:make",
            "--seeds", "0", "1", "--episodes", "2", "--reps", "200",
            "--env-kwargs", "n_synthetic=20", "HydrogelSearch-v0.horizon=2", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["results"]["HydrogelSearch-v0"]["random"][0]["env_kwargs"] == {"n_synthetic": 20, "horizon": 2}
    norm = data["normalisation"]
    for column, env_id in enumerate(data["envs"]):
        raw = {label: np.mean([r["mean_reward"] for r in entries[0]["seeds"].values()])
               for label, entries in data["results"][env_id].items()}
        assert norm["low"][column] == pytest.approx(raw["random"])
        assert norm["high"][column] == pytest.approx(max(raw.values()))
        normalised = {label: np.mean(np.array(s)[:, column]) for label, s in data["scores"].items()}
        assert normalised["random"] == pytest.approx(0.0)
        assert normalised[norm["best"][column]] == pytest.approx(1.0)
    assert norm["best"] == ["oracle", "oracle"] and norm["by"] == "random and the best agent of this run"


def test_run_dirs_under_one_label_are_runs_of_one_agent(run_dir: Path, second_run_dir: Path, tmp_path: Path) -> None:
    argv = ["evaluate", "--env", "Hydrogel-v0", "--agent", f"ppo={run_dir}", "--agent", f"ppo={second_run_dir}",
            "--seeds", "0", "1", "--episodes", "2", "--reps", "100", *TINY_ENV, "--out", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    entries = data["results"]["Hydrogel-v0"]["ppo"]
    assert [e["spec"] for e in entries] == [f"ppo={run_dir}", f"ppo={second_run_dir}"]
    expected = [e["seeds"][s]["mean_reward"] for e in entries for s in ("0", "1")]  # run dir major
    np.testing.assert_allclose(np.array(data["scores"]["ppo"])[:, 0], expected)


def test_mismatched_env_kwargs_are_warned_about(run_dir: Path) -> None:
    specs = [parse_agent_spec("random"), parse_agent_spec(str(run_dir))]
    runs = plan_runs(["Hydrogel-v0"], specs, {})
    [message] = kwargs_mismatches(runs)
    assert "random: {}" in message and "ppo: {'n_synthetic': 20}" in message and "--env-kwargs" in message
    assert kwargs_mismatches(plan_runs(["Hydrogel-v0"], specs, {"Hydrogel-v0": {"n_synthetic": 20}})) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "Hydrogel-v1", "--agent", "random"], "unknown env 'Hydrogel-v1'; choose one of: Hydrogel-v0"),
        (["--env", "Hydrogel-v0", "--agent", "rnd"], "unknown agent spec 'rnd' (no such file or dir); valid: random, baseline:"),
        (["--env", "Hydrogel-v0", "--agent", "baseline:Nope"], "unknown baseline 'Nope' in agent 'baseline:Nope'; choose one of: "),
        (["--env", "Hydrogel-v0", "--agent", "baseline:AMGDirectionAgent"], "AMGDirectionAgent needs k; pass them as"),
        (["--env", "Hydrogel-v0", "--agent", "baseline:RandomAgent:speed=2"], "RandomAgent takes no argument 'speed'"),
        (["--env", "Hydrogel-v0", "--env", "HydrogelSearch-v0", "--agent", "baseline:RandomAgent"], "add --agent random"),
        (["--env", "Hydrogel-v0", "--agent", "random", "--agent", "random"], "two agents named 'random' on Hydrogel-v0"),
        (["--env", "Hydrogel-v0", "--agent", "random", "--env-kwargs", "Prostate-v0.x=1"], "Prostate-v0 is not among --env"),
        (["--env", "Hydrogel-v0", "--agent", "random", "--metric", "nope", "--episodes", "1", "--seeds", "0",
          *TINY_ENV], "--metric 'nope' is not a number in the Hydrogel-v0 results; numeric keys: "),
    ],
)
def test_mistakes_exit_2_with_one_line(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", *argv, "--out", str(tmp_path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("python -m benchmarks")]
    assert len(lines) == 1 and message in lines[0], lines


def test_a_model_runs_only_on_its_own_env(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--env", "HydrogelSearch-v0", "--agent", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "was trained on Hydrogel-v0, which is not among --env HydrogelSearch-v0" in capsys.readouterr().err


FACTORY_MODULE = '''
import numpy as np

class FirstAction:
    """Always the same action: what a user's own agent looks like to the harness."""

    def __init__(self, action_space):
        self.action = action_space.sample() * 0 if hasattr(action_space, "low") else action_space.sample()

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return self.action, state

def make(action_space, seed):
    action_space.seed(seed)
    return FirstAction(action_space)

NOT_AN_AGENT = 3
'''


def test_a_users_factory_agent_is_benchmarked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mypkg_agents.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "bench"
    argv = ["evaluate", "--env", "Hydrogel-v0", "--agent", "random", "--agent", "mypkg_agents:make",
            "--seeds", "0", "1", "--episodes", "3", "--reps", "200", *TINY_ENV, "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    entry = data["results"]["Hydrogel-v0"]["make"][0]
    returns = {s: r["mean_reward"] for s, r in entry["seeds"].items()}
    random_returns = {s: r["mean_reward"] for s, r in data["results"]["Hydrogel-v0"]["random"][0]["seeds"].items()}
    assert set(returns) == {"0", "1"} and returns != random_returns


@pytest.mark.parametrize(("spec", "message"), [
    ("mypkg_missing:make", "cannot import"),
    ("mypkg_agents:NOT_AN_AGENT", "not callable"),
])
def test_a_bad_factory_is_one_line_naming_it(
    spec: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "mypkg_agents.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["evaluate", "--env", "Hydrogel-v0", "--agent", spec, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and spec in err


def test_env_all_means_every_registered_id() -> None:
    import envs
    from benchmarks.suite import expand_env_ids

    env_ids = expand_env_ids(["all"])
    assert env_ids == list(envs.ENV_IDS) and len(env_ids) == 6
    runs = plan_runs(env_ids, [parse_agent_spec("random")], {})
    assert [r.env_id for r in runs] == env_ids


def test_reference_agents_are_benchmarked_like_any_agent(tmp_path: Path) -> None:
    """``reference:NAME`` plays the env's own reference agent (built on the env it plays) and
    scores what eval.json's ``baselines`` reports for it; one label may name a different
    reference per env, so "best baseline" is one row of a cross-env aggregate."""
    out = tmp_path / "bench"
    argv = ["evaluate", "--env", "Hydrogel-v0", "--env", "HydrogelSearch-v0", "--agent", "random",
            "--agent", "best=reference:population_best_polymer", "--agent", "oracle=reference:oracle",
            "--seeds", "0", "--episodes", "3", "--reps", "200",
            "--env-kwargs", "n_synthetic=20", "HydrogelSearch-v0.horizon=2", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    for env_id in ("Hydrogel-v0", "HydrogelSearch-v0"):
        results = data["results"][env_id]
        played = results["best"][0]["seeds"]["0"]
        reported = results["random"][0]["seeds"]["0"]["baselines"]["population_best_polymer"]
        assert played["mean_reward"] == pytest.approx(reported["mean_reward"])
        assert results["oracle"][0]["seeds"]["0"]["mean_regret"] == pytest.approx(0.0, abs=1e-6)  # float32 scores
        assert played["mean_reward"] > results["random"][0]["seeds"]["0"]["mean_reward"]


def test_a_reference_agent_runs_only_where_its_env_lists_it(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["evaluate", "--env", "Hydrogel-v0", "--agent", "random", "--agent", "reference:needle_path",
                 "--out", str(tmp_path)]) == 2
    assert "agent 'needle_path' has nothing to run on Hydrogel-v0" in capsys.readouterr().err
    assert main(["evaluate", "--env", "Hydrogel-v0", "--agent", "reference:nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown reference agent 'nope'" in err and "needle_path" in err and "oracle" in err
