"""benchmarks/taxonomy_selective.py: the Taxonomy table over training seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.taxonomy_selective import collect, main, table


def _block(reward: float, aurc: float | None) -> dict:
    block = {"mean_reward": reward, "selective": {"chain": {"coverage": 0.8, "selective_risk": 0.1}}}
    if aurc is not None:
        block.update(aurc=aurc, risk_coverage={"chain": {"risk_at_coverage": {"0.90": 0.2}}})
    return block


def _run(tmp_path: Path, name: str, reward: float, aurc: float) -> Path:
    run = tmp_path / name
    run.mkdir()
    result = {**_block(reward, aurc), "baselines": {"random": _block(-2.0, None), "threshold": _block(2.4, 0.07)}}
    (run / "eval.json").write_text(json.dumps(result))
    return run


def test_table_means_over_runs_and_marks_agents_without_curves(tmp_path: Path, capsys) -> None:
    runs = [_run(tmp_path, "a", 2.0, 0.05), _run(tmp_path, "b", 3.0, 0.07)]
    rows = collect(runs, "ppo")
    assert list(rows) == ["ppo", "random", "threshold"] and rows["ppo"]["mean return"] == [2.0, 3.0]
    text = table(rows)
    assert "| ppo | 2.500 [2.000, 3.000] | 0.060 [0.050, 0.070]" in text
    assert text.splitlines()[3].startswith("| random | -2.000") and "| - |" in text.splitlines()[3]
    assert main([str(r) for r in runs]) == 0 and "maskable-ppo" in capsys.readouterr().out


def test_missing_eval_json_names_the_run_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="finished Taxonomy run dir"):
        collect([tmp_path], "ppo")
