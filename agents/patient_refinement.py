"""Per-patient policy refinement (HYDRA-BERT section 5.1), done right.

Clone a trained hydrogel policy and fine-tune the clone on one patient: each iteration
draws ``n_parallel`` designs (the seed: 500) for that patient, scores them with the
outcome model and takes one policy-gradient step (Adam, the seed's lr 1e-4) on the
standardised rewards, while :class:`agents.hydrogel_designs.TopDesigns` keeps the
best distinct designs seen (the seed: top 100) with every prediction.

What differs from the seed's listing: its loss used log-probabilities taken under
``torch.no_grad`` (so the "update" had no gradient and the policy never changed) and
its advantage was ``r - mean(r)`` (scale-dependent); here the sampled designs' exact
log-probabilities are recomputed with gradient and the advantage is standardised.
The base policy is never modified.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agents.hydrogel_designs import TopDesigns, batch_seed, patient_observations, sample_designs, score_designs
from envs.hydrogel.problem import DesignProblem

__all__ = ["RefinementConfig", "RefinementResult", "refine_for_patient"]


@dataclass(frozen=True)
class RefinementConfig:
    """The seed's settings (section 5.1) as defaults."""

    iterations: int = 50
    n_parallel: int = 500
    learning_rate: float = 1e-4
    top_k: int = 100
    max_grad_norm: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("iterations", "n_parallel", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("learning_rate", "max_grad_norm"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass
class RefinementResult:
    """The fine-tuned clone, the best designs and one history row per iteration."""

    policy: Any
    top: TopDesigns
    history: list[dict[str, float]] = field(default_factory=list)


def refine_for_patient(
    policy: Any,
    problem: DesignProblem,
    patient: int,
    config: RefinementConfig = RefinementConfig(),
    on_iteration: Callable[[dict[str, float]], None] | None = None,
) -> RefinementResult:
    """Fine-tune a clone of ``policy`` (an SB3 actor-critic policy) on ``patient`` (an index
    into ``problem``'s cohort); ``on_iteration`` gets each history row (progress)."""
    if not 0 <= patient < len(problem):
        raise ValueError(f"patient must be an index in [0, {len(problem)}), got {patient}")
    clone = copy.deepcopy(policy)
    clone.set_training_mode(True)
    optimizer = torch.optim.Adam(clone.parameters(), lr=config.learning_rate)
    observations = patient_observations(problem, patient, config.n_parallel).to(clone.device)
    top = TopDesigns(config.top_k)
    result = RefinementResult(clone, top)
    for iteration in range(config.iterations):
        designs = sample_designs(clone, observations, seed=batch_seed(config.seed, iteration))
        scored = score_designs(problem, patient, designs, first_order=iteration * config.n_parallel)
        top.update(scored)
        reward = torch.as_tensor(scored.reward, dtype=torch.float32, device=clone.device)
        advantage = (reward - reward.mean()) / (reward.std() + 1e-8)
        _, log_prob, _ = clone.evaluate_actions(observations, designs.to(clone.device))
        loss = -(log_prob * advantage).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clone.parameters(), config.max_grad_norm)
        optimizer.step()
        row = {
            "iteration": iteration + 1, "mean_reward": float(reward.mean()), "max_reward": float(reward.max()),
            "best_so_far": float(top.best.reward[0]), "loss": float(loss.detach()),
        }
        if "regret" in scored.columns:
            row["best_regret"] = float(top.best.columns["regret"][0])
        result.history.append(row)
        if on_iteration is not None:
            on_iteration(row)
    clone.set_training_mode(False)
    return result
