"""What one played episode leaves behind: the input of every family's metrics.

Metrics (``envs/<family>/metrics.py``) are pure functions of these records, so the
same numbers come out whether an episode was played by the evaluation loop, a
callback during training or a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpisodeRecord"]


@dataclass
class EpisodeRecord:
    """One finished episode."""

    episode_return: float
    length: int
    final_info: dict[str, Any]
    """The ``info`` of the last step (where the envs put episode-level outcomes)."""
    infos: list[dict[str, Any]] = field(default_factory=list)
    """Every step's ``info``, first to last."""
    case: int | None = None
    """The case replayed (``reset(options={"case": ...})``), if one was pinned."""
    policy_seconds: float = 0.0
    """Wall-clock time spent in the agent's ``predict`` (the cost of deciding)."""
