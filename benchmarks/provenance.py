"""What a benchmark figure depends on: the exact command, package versions, code and machine.

Every results file of ``python -m benchmarks`` embeds :func:`provenance` so that a
number can be traced to the command that produced it and rerun.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

__all__ = ["PACKAGES", "command_line", "provenance"]

PACKAGES = ("torch", "gymnasium", "stable-baselines3", "sb3-contrib", "numpy", "rliable")
"""Distributions whose versions are recorded (plus Python's)."""


def command_line(subcommand_argv: list[str]) -> str:
    """The shell command that reruns this benchmark (``python -m benchmarks ...``)."""
    return shlex.join(["python", "-m", "benchmarks", *subcommand_argv])


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """HEAD of the checkout holding this package, with ``-dirty`` if files differ."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


def provenance(subcommand_argv: list[str]) -> dict[str, Any]:
    """Command, versions, git commit and machine, as JSON-able data."""
    return {
        "command": command_line(subcommand_argv),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in PACKAGES}},
        "git_commit": _git_commit(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
