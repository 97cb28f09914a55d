"""Shared by the Hydrogel training tests: the score a trained agent is judged by."""

from __future__ import annotations

from typing import Any

import numpy as np


def mean_design_score(env: Any, agent: Any) -> float:
    """Mean ``info["design_score"]`` of ``agent``'s deterministic design for every patient of ``env``'s cohort."""
    scores = []
    for case in range(len(env.unwrapped.cohort)):
        obs, _ = env.reset(seed=case, options={"case": case})
        scores.append(env.step(agent.predict(obs, deterministic=True)[0])[4]["design_score"])
    return float(np.mean(scores))
