"""``python -m benchmarks throughput``: ratios measured in one run (structure only, never speed)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.throughput import Backend, measure_throughput
from train.config import UsageError


def test_throughput_reports_ratios_of_each_pair(tmp_path: Path) -> None:
    argv = ["throughput", "--env", "Hydrogel-v0", "--num-envs", "1", "3", "--steps", "2", "--repeats", "2",
            "--warmup", "1", "--min-seconds", "0", "--env-kwargs", "n_synthetic=20", "--out", str(tmp_path)]
    assert main(argv) == 0
    data = json.loads((tmp_path / "throughput.json").read_text())
    assert data["command"] == "python -m benchmarks " + " ".join(argv)
    pairs = {(r["fast"], r["slow"], r["num_envs"]) for r in data["ratios"]}
    assert pairs == {(f, s, n) for f, s in [("torch-vector", "gym-sync"), ("sb3-torch", "sb3-dummy")] for n in (1, 3)}
    rates = {(m["backend"], m["num_envs"]): m for m in data["measurements"]}
    for m in rates.values():
        assert len(m["repeats_env_steps_per_s"]) == 2 and all(steps >= 2 for steps in m["vector_steps"])
        assert m["env_steps_per_s"] == pytest.approx(statistics.median(m["repeats_env_steps_per_s"]))
        assert m["env_steps_per_s"] > 0
    for r in data["ratios"]:
        fast, slow = rates[r["fast"], r["num_envs"]], rates[r["slow"], r["num_envs"]]
        per_repeat = [f / s for f, s in zip(fast["repeats_env_steps_per_s"], slow["repeats_env_steps_per_s"])]
        assert r["ratio"] == pytest.approx(statistics.median(per_repeat))
        assert 0 < r["min_ratio"] <= r["ratio"] <= r["max_ratio"]
    assert "| N | torch-vector / gym-sync | sb3-torch / sb3-dummy |" in (tmp_path / "throughput.md").read_text()
    assert (tmp_path / "throughput.png").read_bytes()[:4] == b"\x89PNG"


def test_envs_without_a_torch_vector_env_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["throughput", "--env", "Prostate-v0", "--out", str(tmp_path)]) == 2
    assert "no torch vector env for 'Prostate-v0'; throughput can time: Hydrogel-v0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"steps": 0}, "--steps must be an integer >= 1"), ({"num_envs": [0]}, "--num-envs must be integers >= 1"),
     ({"min_seconds": -1.0}, "--min-seconds must be >= 0")],
)
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    arguments = {"env_id": "Hydrogel-v0", "num_envs": [1], "steps": 1, **kwargs}
    with pytest.raises(UsageError, match=message):
        measure_throughput(**arguments)


def test_the_module_docstring_describes_every_backend() -> None:
    import benchmarks.throughput as module

    for backend in Backend:
        assert f"``{backend.value}``" in module.__doc__
