"""Taxonomy-v0 / TaxonomyMultitask-v0 reference agents, all built on the Phase 1 classifier.

Each names a class per rank and a confidence per rank, and answers a rank while the
confidences down to it reach per-rank thresholds tuned on the validation split (by
coordinate ascent on the mean return, :func:`tune_confidence_thresholds`):

=========================  ==========================================================
``threshold``              softmax response: the top softmax probability of each
                           rank's head (Geifman & El-Yaniv 2017)
``never_abstain``          Phase 1 alone (thresholds 0)
``supervised_abstention``  a null head trained supervised on the null labels of the
                           train split (:func:`train_null_head`, the same inputs as
                           the RL policy's abstain head: Phase 1 features and per-rank
                           softmax confidence); confidence = P(not null) x top prob
``climbing``               hierarchical back-off (Goren et al. 2024): the finest
                           head's softmax summed up the tree, classes chosen top-down
                           among children; stop at the first rank whose node
                           probability is below the rank's threshold
=========================  ==========================================================

They are deterministic functions of Phase 1 outputs, so the evaluation scores them in
one batch (:class:`~envs.taxonomy.metrics.SelectiveAnswers`) rather than stepping the
env; a test checks that this equals playing :class:`TaxonomyThresholdAgent`. Their
confidences also give risk-coverage curves (:func:`~envs.taxonomy.metrics.risk_coverage_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from torch import nn

from envs.taxonomy.data import NullCause, TaxonomySplit
from envs.taxonomy.metrics import SelectiveAnswers, risk_coverage_metrics, summarise_outcomes
from envs.taxonomy.tree import TaxonomyTree
from policies.phase1 import (
    PRETRAIN_COMMAND,
    HierarchicalClassifier,
    class_probabilities,
    confidence_features,
    default_phase1_checkpoint,
    load_phase1,
)
from rewards.taxonomy import AbstentionOutcome, AbstentionReward, SimpleAbstentionReward, rank_outcomes

__all__ = [
    "THRESHOLD_GRID", "TaxonomyThresholdAgent", "agent_answers", "climbing_answers", "greedy_answers",
    "null_probabilities", "score_predictions", "selective_answers", "supervised_abstention_answers",
    "threshold_predictions", "threshold_references", "train_null_head", "tune_confidence_thresholds",
    "tune_thresholds",
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


def _coordinate_ascent(
    mean_return: Callable[[np.ndarray], float], n_ranks: int, sweeps: int
) -> tuple[np.ndarray, float]:
    """Per-rank thresholds maximising ``mean_return`` by coordinate ascent over
    :data:`THRESHOLD_GRID` from all-zero (at most ``sweeps`` passes over the ranks)."""
    thresholds = np.zeros(n_ranks)
    best = mean_return(thresholds)
    for _ in range(sweeps):
        improved = False
        for r in range(n_ranks):
            for t in THRESHOLD_GRID:
                trial = thresholds.copy()
                trial[r] = t
                score = mean_return(trial)
                if score > best + 1e-12:
                    best, thresholds, improved = score, trial, True
        if not improved:
            break
    return thresholds, best


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

    return _coordinate_ascent(mean_return, labels.shape[1], sweeps)


def greedy_answers(probs: Sequence[np.ndarray], tree: TaxonomyTree | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Softmax response: classes (N, R) (top class of each rank, among children of the
    previous one with ``tree``) and their renormalised probabilities (N, R)."""
    n = len(probs[0])
    classes, confidence = np.zeros((n, len(probs)), dtype=np.int64), np.zeros((n, len(probs)))
    for r, p in enumerate(probs):
        p = p.copy()  # (N, K_r)
        if tree is not None and r > 0:
            p *= tree.parents[r][1:][None, :] == classes[:, r - 1][:, None]
        total = p.sum(axis=1)
        top = p.argmax(axis=1)
        classes[:, r] = top + 1
        confidence[:, r] = np.where(total > 0, p[np.arange(n), top] / np.where(total > 0, total, 1.0), 0.0)
    return classes, confidence


def climbing_answers(finest_probs: np.ndarray, tree: TaxonomyTree) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical back-off from the finest rank's softmax (N, K_finest): node
    probabilities summed up the tree, classes chosen top-down among the children of the
    previous choice; returns classes (N, R) and node probabilities (N, R), which never
    grow down the chain."""
    n, n_ranks = len(finest_probs), tree.n_ranks
    node_probs = [np.zeros(0)] * n_ranks
    node_probs[-1] = np.concatenate([np.zeros((n, 1)), finest_probs], axis=1)  # (N, K + 1), null column 0
    for r in range(n_ranks - 1, 0, -1):
        coarser = np.zeros((n, tree.num_classes[r - 1]))
        np.add.at(coarser.T, tree.parents[r], node_probs[r].T)  # sum children into parents
        node_probs[r - 1] = coarser
    classes, confidence = np.zeros((n, n_ranks), dtype=np.int64), np.zeros((n, n_ranks))
    rows = np.arange(n)
    for r in range(n_ranks):
        p = node_probs[r].copy()
        p[:, 0] = -1.0  # null is never an answer
        if r > 0:
            p = np.where(tree.parents[r][None, :] == classes[:, r - 1][:, None], p, -1.0)
        classes[:, r] = p.argmax(axis=1)
        confidence[:, r] = node_probs[r][rows, classes[:, r]]
    return classes, confidence


def selective_answers(classes: np.ndarray, confidence: np.ndarray, thresholds: np.ndarray) -> SelectiveAnswers:
    """Answers that abstain from the first rank whose confidence is below its threshold."""
    return SelectiveAnswers(classes, confidence, np.asarray(thresholds, dtype=np.float64))


def _mean_return(predictions: np.ndarray, labels: np.ndarray, reward_fn: AbstentionReward) -> float:
    """Mean episode return of predictions (N, R) (0 = abstained); vectorised for the
    per-rank table of :class:`~rewards.taxonomy.SimpleAbstentionReward`."""
    if isinstance(reward_fn, SimpleAbstentionReward):
        o = AbstentionOutcome
        outcomes = np.where(
            predictions == 0,
            np.where(labels == 0, o.CORRECT_ABSTENTION, o.UNNECESSARY_ABSTENTION),
            np.where(labels == 0, o.MISSED_ABSTENTION, np.where(predictions == labels, o.CORRECT, o.MISCLASSIFIED)),
        )
        table = np.array([reward_fn.correct_classification, reward_fn.misclassification, reward_fn.correct_abstention,
                          reward_fn.unnecessary_abstention, reward_fn.prediction_at_null])
        return float(table[outcomes].sum(axis=1).mean())
    return float(score_predictions(predictions, labels, reward_fn)[0].mean())


def tune_confidence_thresholds(
    classes: np.ndarray, confidence: np.ndarray, labels: np.ndarray, reward_fn: AbstentionReward, sweeps: int = 3
) -> tuple[np.ndarray, float]:
    """Per-rank thresholds on confidences in [0, 1] maximising the mean return on
    (validation) data, by coordinate ascent over :data:`THRESHOLD_GRID` from all-zero;
    returns (thresholds, mean return)."""
    def mean_return(thresholds: np.ndarray) -> float:
        return _mean_return(selective_answers(classes, confidence, thresholds).predictions(), labels, reward_fn)

    return _coordinate_ascent(mean_return, labels.shape[1], sweeps)


def train_null_head(
    inputs: np.ndarray, labels: np.ndarray, val_inputs: np.ndarray, val_labels: np.ndarray,
    seed: int = 0, hidden_dim: int = 64, steps: int = 400, learning_rate: float = 1e-2,
) -> nn.Module:
    """Fit P(label is null) per rank, an MLP of :func:`~policies.phase1.confidence_features`
    (N, D) -> logits (N, R), by full-batch Adam on the binary cross-entropy; the step
    with the lowest validation loss is kept. Seeded and CPU-only: deterministic."""
    with th.random.fork_rng(devices=[]):
        th.manual_seed(seed)
        x, y = th.as_tensor(inputs, dtype=th.float32), th.as_tensor(labels == 0, dtype=th.float32)  # (N, D), (N, R)
        vx, vy = th.as_tensor(val_inputs, dtype=th.float32), th.as_tensor(val_labels == 0, dtype=th.float32)
        mean, std = x.mean(dim=0), x.std(dim=0) + 1e-6
        head = nn.Sequential(_Standardise(mean, std), nn.Linear(x.shape[1], hidden_dim), nn.Tanh(),
                             nn.Linear(hidden_dim, y.shape[1]))
        optimizer = th.optim.Adam(head.parameters(), lr=learning_rate)
        loss_fn = nn.BCEWithLogitsLoss()
        best_loss, best_state = np.inf, None
        for step in range(steps):
            loss = loss_fn(head(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 10 == 9:
                with th.no_grad():
                    val_loss = float(loss_fn(head(vx), vy))
                if val_loss < best_loss:
                    best_loss, best_state = val_loss, {k: v.clone() for k, v in head.state_dict().items()}
        head.load_state_dict(best_state)
    return head.eval()


class _Standardise(nn.Module):
    """(x - mean) / std with the train split's statistics."""

    def __init__(self, mean: th.Tensor, std: th.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return (x - self.mean) / self.std


@th.no_grad()
def null_probabilities(head: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """P(null) per rank (N, R) from a :func:`train_null_head` head."""
    return th.sigmoid(head(th.as_tensor(inputs, dtype=th.float32))).numpy().astype(np.float64)


def supervised_abstention_answers(
    probs: Sequence[np.ndarray], p_null: np.ndarray, tree: TaxonomyTree | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Classes of the softmax response and confidence P(not null) x top probability (N, R)."""
    classes, confidence = greedy_answers(probs, tree)
    return classes, (1.0 - p_null) * confidence


def agent_answers(agent: Any, images: np.ndarray, tree: TaxonomyTree | None) -> SelectiveAnswers | None:
    """The agent's own answers and confidences when its policy has ``selective_answers``
    (e.g. :class:`~policies.linnaeus.LinnaeusPolicy`); images uint8 (N, H, W, 3)."""
    method = getattr(getattr(agent, "policy", agent), "selective_answers", None)
    if method is None:
        return None
    classes, margins = method(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), tree)
    return SelectiveAnswers(classes, margins)


def _phase1_path(agent: Any, env_kwargs: dict[str, Any]) -> Path:
    policy = getattr(agent, "policy", None)
    path = getattr(policy, "phase1_checkpoint", None)
    return path if path is not None else default_phase1_checkpoint(env_kwargs.get("cache_dir"))


def _load_split(context: Any, split: str) -> tuple[TaxonomySplit, AbstentionReward]:
    env = gym.make(context.env_id, **{**context.env_kwargs, "split": split})
    try:
        return env.unwrapped.data, env.unwrapped.reward_fn
    finally:
        env.close()


def _cause_names(data: TaxonomySplit, cases: np.ndarray) -> list[str] | None:
    if data.null_cause is None:
        return None
    return [NullCause(int(c)).name.lower() for c in data.null_cause[cases]]


def threshold_references(context: Any) -> dict[str, Any]:
    """Evaluation extras on the agent's test cases: the ``threshold``, ``never_abstain``,
    ``supervised_abstention`` and ``climbing`` baselines (tuned on the validation split;
    the threshold one also as ``threshold_baseline``), each with its risk-coverage
    metrics, and the agent's own ``risk_coverage`` and chain ``aurc`` when its policy
    can give confidences. Skipped with a ``note`` when no matching Phase 1 checkpoint exists."""
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
    tree = base.tree if getattr(base, "hierarchy_consistent", False) else None
    val, _ = _load_split(context, "val")
    train, _ = _load_split(context, "train")
    test_images, labels = base.data.images[cases], base.data.labels[cases]
    (val_probs, val_inputs), (test_probs, test_inputs) = (
        confidence_features(model, images) for images in (val.images, test_images)
    )
    train_probs, train_inputs = confidence_features(model, train.images)
    head = train_null_head(train_inputs, train.labels, val_inputs, val.labels)
    answers_of = {
        "threshold": lambda probs, inputs: greedy_answers(probs, tree),
        "supervised_abstention": lambda probs, inputs: supervised_abstention_answers(
            probs, null_probabilities(head, inputs), tree),
        "climbing": lambda probs, inputs: climbing_answers(probs[-1], base.tree),
    }
    causes = _cause_names(base.data, cases)
    baselines: dict[str, Any] = {}
    for name, answers_fn in answers_of.items():
        thresholds, val_return = tune_confidence_thresholds(*answers_fn(val_probs, val_inputs), val.labels, base.reward_fn)
        variants = [(name, thresholds)] + ([("never_abstain", np.zeros(len(ranks)))] if name == "threshold" else [])
        for variant, values in variants:
            answers = selective_answers(*answers_fn(test_probs, test_inputs), values)
            returns, outcomes = score_predictions(answers.predictions(), labels, base.reward_fn)
            baselines[variant] = {
                **summarise_outcomes(list(returns), outcomes, ranks, causes),
                "risk_coverage": risk_coverage_metrics(answers, labels, ranks),
            }
            baselines[variant]["aurc"] = baselines[variant]["risk_coverage"]["chain"]["aurc"]
        baselines[name].update(thresholds=dict(zip(ranks, thresholds.tolist())), val_mean_reward=val_return)
    extras: dict[str, Any] = {"threshold_baseline": baselines["threshold"], "baselines": baselines}
    own = agent_answers(context.agent, test_images, tree)
    if own is not None:
        extras["risk_coverage"] = risk_coverage_metrics(own, labels, ranks)
        extras["aurc"] = extras["risk_coverage"]["chain"]["aurc"]
    return extras
