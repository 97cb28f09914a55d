"""Taxonomy-v0 / TaxonomyMultitask-v0 reference agents: Phase 1 with a confidence threshold.

The Phase 1 classifier (:mod:`policies.phase1`) abstains when its top softmax
probability is below a per-rank threshold tuned on the validation split
(``threshold``), or never (``never_abstain``, Phase 1 alone). Both are deterministic
functions of the Phase 1 probabilities, so the evaluation scores them in one batch
(:func:`threshold_predictions`) rather than stepping the env; a test checks that this
equals playing :class:`TaxonomyThresholdAgent` in the env.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from envs.taxonomy.metrics import summarise_outcomes
from envs.taxonomy.tree import TaxonomyTree
from policies.phase1 import (
    PRETRAIN_COMMAND,
    HierarchicalClassifier,
    class_probabilities,
    default_phase1_checkpoint,
    load_phase1,
)
from rewards.taxonomy import AbstentionReward, rank_outcomes

__all__ = [
    "THRESHOLD_GRID", "TaxonomyThresholdAgent", "score_predictions", "threshold_predictions",
    "threshold_references", "tune_thresholds",
]

THRESHOLD_GRID = np.round(np.linspace(0.0, 0.99, 34), 4)
"""Candidate per-rank thresholds of the baseline."""


class TaxonomyThresholdAgent:
    """Taxonomy baseline: the Phase 1 model's top class at each rank, abstaining when its
    top softmax probability (renormalised over the classes the masks allow) is below
    that rank's threshold. Thresholds of 0 never abstain (pure Phase 1); thresholds are
    tuned on the validation split by :func:`tune_thresholds`.
    Works on both the sequential (``obs["rank"]``) and the multitask observation."""

    def __init__(self, model: HierarchicalClassifier, thresholds: Any, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self.num_classes = tuple(int(n) for n in model.num_classes)
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if thresholds.shape != (len(self.num_classes),) or not ((thresholds >= 0) & (thresholds <= 1)).all():
            raise ValueError(
                f"thresholds must be {len(self.num_classes)} values in [0, 1] (one per rank), got {thresholds.tolist()}"
            )
        self.thresholds = thresholds

    def _decide(self, probs: np.ndarray, allowed: np.ndarray | None, rank: int) -> int | None:
        """Class index (>= 1) or None (abstain) from one rank's (K_r,) probabilities."""
        if allowed is not None:
            probs = probs * allowed
        if probs.sum() <= 0:
            return None
        probs = probs / probs.sum()
        top = int(probs.argmax())
        return None if probs[top] < self.thresholds[rank] else top + 1

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True, action_masks: np.ndarray | None = None) -> tuple[Any, Any]:
        """Deterministic whatever ``deterministic`` says."""
        images = np.asarray(observation["image"])
        batched = images.ndim == 4
        images = images if batched else images[None]  # (B, 3, H, W)
        probs = class_probabilities(self.model, images.transpose(0, 2, 3, 1), self.device)  # [(B, K_r)]
        masks = None if action_masks is None else np.asarray(action_masks, dtype=bool).reshape(len(images), -1)
        sequential = "rank" in observation
        ranks = np.asarray(observation["rank"]).reshape(len(images), -1).argmax(axis=1) if sequential else None
        actions = []
        for b in range(len(images)):
            if sequential:
                r = int(ranks[b])
                abstain = max(self.num_classes)
                allowed = None if masks is None else masks[b, 1 : self.num_classes[r]]
                choice = self._decide(probs[r][b], allowed, r)
                actions.append(abstain if choice is None else choice)
            else:
                offsets = np.concatenate([[0], np.cumsum(np.array(self.num_classes) + 1)])
                row = []
                for r, n in enumerate(self.num_classes):
                    allowed = None if masks is None else masks[b, offsets[r] + 1 : offsets[r] + n]
                    choice = self._decide(probs[r][b], allowed, r)
                    row.append(n if choice is None else choice)
                actions.append(row)
        out = np.asarray(actions, dtype=np.int64)
        return (out if batched else out[0]), state


def threshold_predictions(
    probs: Sequence[np.ndarray], thresholds: np.ndarray, tree: TaxonomyTree | None = None
) -> np.ndarray:
    """What :class:`~agents.baselines.TaxonomyThresholdAgent` answers, computed from its
    per-rank probabilities [(N, K_r)] without stepping an env: class indices (N, R),
    0 = abstained (and every rank after it).

    With ``tree`` the classes are restricted to children of the previous prediction,
    as in ``Taxonomy-v0(hierarchy_consistent=True)``.
    """
    n, n_ranks = len(probs[0]), len(probs)
    predictions = np.zeros((n, n_ranks), dtype=np.int64)
    active = np.ones(n, dtype=bool)
    for r in range(n_ranks):
        p = probs[r].copy()  # (N, K_r)
        if tree is not None and r > 0:
            p *= tree.parents[r][1:][None, :] == predictions[:, r - 1][:, None]
        total = p.sum(axis=1)
        top = p.argmax(axis=1)
        confident = total > 0
        confident[confident] = p[confident, top[confident]] / total[confident] >= thresholds[r]
        active &= confident
        predictions[active, r] = top[active] + 1
    return predictions


def score_predictions(
    predictions: np.ndarray, labels: np.ndarray, reward_fn: AbstentionReward
) -> tuple[np.ndarray, np.ndarray]:
    """Episode returns (N,) and outcomes (N, R) of predictions (0 = abstained)."""
    as_lists = [[int(c) if c else None for c in row] for row in predictions]
    returns = np.array([reward_fn.rank_rewards(p, y).sum() for p, y in zip(as_lists, labels)])
    outcomes = np.array([rank_outcomes(p, y) for p, y in zip(as_lists, labels)])
    return returns, outcomes


def tune_thresholds(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    reward_fn: AbstentionReward,
    tree: TaxonomyTree | None = None,
    sweeps: int = 3,
) -> tuple[np.ndarray, float]:
    """Per-rank thresholds maximising the mean return on (validation) data, by coordinate
    ascent over :data:`THRESHOLD_GRID` from all-zero; returns (thresholds, mean return)."""
    def mean_return(thresholds: np.ndarray) -> float:
        predictions = threshold_predictions(probs, thresholds, tree)
        return float(np.mean([
            reward_fn.rank_rewards([int(c) if c else None for c in row], y).sum()
            for row, y in zip(predictions, labels)
        ]))

    thresholds = np.zeros(labels.shape[1])
    best = mean_return(thresholds)
    for _ in range(sweeps):
        improved = False
        for r in range(labels.shape[1]):
            for t in THRESHOLD_GRID:
                trial = thresholds.copy()
                trial[r] = t
                score = mean_return(trial)
                if score > best + 1e-12:
                    best, thresholds, improved = score, trial, True
        if not improved:
            break
    return thresholds, best


def _phase1_path(agent: Any, env_kwargs: dict[str, Any]) -> Path:
    policy = getattr(agent, "policy", None)
    path = getattr(policy, "phase1_checkpoint", None)
    return path if path is not None else default_phase1_checkpoint(env_kwargs.get("cache_dir"))


def threshold_references(context: Any) -> dict[str, Any]:
    """Evaluation extras: the ``threshold`` and ``never_abstain`` baselines on the agent's
    test cases (thresholds tuned on the validation split), also reported as
    ``threshold_baseline``; skipped with a ``note`` when no matching Phase 1 checkpoint exists."""
    base = context.env.unwrapped
    ranks = base.tree.ranks
    cases = np.array([case for case, _ in context.episodes])
    checkpoint = _phase1_path(context.agent, dict(context.env_kwargs))
    try:
        model, meta = load_phase1(checkpoint)
    except FileNotFoundError:
        model, meta = None, None
    if model is None or meta["tree_fingerprint"] != base.tree.fingerprint():
        why = "not found" if model is None else "trained on other data"
        return {
            "threshold_baseline": None,
            "note": f"threshold baseline skipped: Phase 1 checkpoint {checkpoint} {why}; run `{PRETRAIN_COMMAND}`",
        }
    val_env = gym.make(context.env_id, **{**context.env_kwargs, "split": "val"})
    try:
        val = val_env.unwrapped
        tree = base.tree if getattr(base, "hierarchy_consistent", False) else None
        thresholds, val_return = tune_thresholds(
            class_probabilities(model, val.data.images), val.data.labels, val.reward_fn, tree
        )
    finally:
        val_env.close()
    test_probs = [p[cases] for p in class_probabilities(model, base.data.images)]
    labels = base.data.labels[cases]
    baselines: dict[str, Any] = {}
    for name, values in (("threshold", thresholds), ("never_abstain", np.zeros(len(ranks)))):
        predictions = threshold_predictions(test_probs, values, tree)
        returns, outcomes = score_predictions(predictions, labels, base.reward_fn)
        baselines[name] = summarise_outcomes(list(returns), outcomes, ranks)
    baselines["threshold"].update(thresholds=dict(zip(ranks, thresholds.tolist())), val_mean_reward=val_return)
    return {"threshold_baseline": baselines["threshold"], "baselines": baselines}
