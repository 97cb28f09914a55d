"""Dependencies point one way: benchmarks -> train -> agents, policies -> envs -> rewards.

Checked on the source (every ``import`` statement, also those inside functions) and at
run time (importing all of ``train`` never loads ``benchmarks``).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("rewards", "envs", "policies", "agents", "train", "benchmarks")
ALLOWED = {
    "rewards": {"rewards"},
    "envs": {"envs", "rewards"},
    "policies": {"policies", "envs", "rewards"},
    "agents": {"agents", "policies", "envs", "rewards"},
    "train": {"train", "agents", "policies", "envs", "rewards"},
    "benchmarks": set(OURS),
}


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package of ours, line) of every import in one file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in OURS}
    return found


@pytest.mark.parametrize("package", OURS)
def test_package_imports_only_the_layers_below(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    violations = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for path in files
        for imported, line in sorted(_imported_packages(path))
        if imported not in ALLOWED[package]
    ]
    assert not violations, violations


def test_importing_every_train_module_never_loads_benchmarks() -> None:
    modules = [f"train.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "train")]) if m.name != "__main__"]
    assert "train.runner" in modules and "train.abstention_callback" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'benchmarks' or m.startswith('benchmarks.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=ROOT)
