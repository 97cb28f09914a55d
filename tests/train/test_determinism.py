"""The same command twice gives the same eval.json and the same weights, for every
algorithm on every env it has defaults for (CPU, small budgets).

The two runs are separate processes with different hash seeds that play the cases in
opposite orders (``benchmarks/determinism.py``), so a run that depends on an unseeded
RNG, on string hashing or on state an earlier run left behind is caught."""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks.determinism import CASES, check

ROOT = Path(__file__).parents[2]


def test_every_algorithm_with_defaults_for_an_env_is_a_case() -> None:
    pairs = set()
    for path in (ROOT / "train" / "hyperparams").glob("*.yml"):
        if path.stem != "pretrain":
            pairs |= {f"{path.stem}:{env_id}" for env_id in yaml.safe_load(path.read_text())}
    assert pairs == set(CASES)


def test_the_same_command_twice_gives_the_same_eval_json_and_weights(tmp_path: Path) -> None:
    results = check(list(CASES), tmp_path, timeout=420)
    failed = [r for r in results if r["status"] != "identical"]
    assert not failed, failed
