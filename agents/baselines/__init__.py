"""Reference agents with SB3's ``predict`` signature, one module per env family.

Each env's row (:func:`envs.entry`) names the ones its evaluation reports next to the
agent under test, by factory ``(env, agent, seed) -> Agent``. The classes are exported
here so that ``python -m benchmarks evaluate --agent baseline:ClassName`` finds them.
"""

from __future__ import annotations

from agents.baselines.amg import AMGDirectionAgent, AMGRandomKPerRowAgent
from agents.baselines.common import RandomAgent
from agents.baselines.prostate import (
    LesionProbeAgent,
    NeedlePathAgent,
    NeedleRandomAgent,
    ProstateCenterAgent,
    ProstateRandomCellAgent,
    ProstateStopAgent,
)
from agents.baselines.taxonomy import TaxonomyThresholdAgent

__all__ = [
    "AMGDirectionAgent",
    "AMGRandomKPerRowAgent",
    "LesionProbeAgent",
    "NeedlePathAgent",
    "NeedleRandomAgent",
    "ProstateCenterAgent",
    "ProstateRandomCellAgent",
    "ProstateStopAgent",
    "RandomAgent",
    "TaxonomyThresholdAgent",
]
