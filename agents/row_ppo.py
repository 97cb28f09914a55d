"""PPO with per-row importance ratios and per-row clipping, for row-factored policies.

SB3's PPO takes the ratio of the *joint* probability of an action. For an edge
selection that factors over the rows of a matrix (:class:`policies.gnn.GNNEdgePolicy`:
1,024 independent per-row top-k sets at 32 x 32), the joint ratio is a product of
1,024 per-row ratios, so a clip range of 0.2 on it allows almost no per-row change and
nearly every sample is clipped after the first gradient step. This is the graph
analogue of token-level PPO: each row r of sample b gets its own ratio
rho_br = pi(a_br | s_b) / pi_old(a_br | s_b), the clipped surrogate
min(rho A_b, clip(rho, 1 - eps, 1 + eps) A_b) is taken per row, averaged over the
sample's rows (rows with candidates only), then over the minibatch; the entropy bonus
is the mean per-row entropy. Everything else (rollout collection with SB3's buffer,
GAE, value loss, gradient clipping, logging) is SB3's PPO.

The old per-row log-probabilities are recomputed at the start of every update from
the stored observations and actions with the parameters that collected them (the
policy's log-probabilities are deterministic functions of both), so SB3's buffer and
``collect_rollouts`` stay unchanged.

Read top to bottom: :func:`per_row_ppo_loss` (pure), then :class:`RowPPO`, whose
``train`` is SB3's update loop with that loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, RolloutBufferSamples
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

__all__ = ["PerRowLoss", "RowPPO", "per_row_ppo_loss"]


@dataclass(frozen=True)
class PerRowLoss:
    """The clipped surrogate of one minibatch and its diagnostics."""

    policy_loss: th.Tensor
    """Scalar, with gradient: -mean_b mean_r min(rho A, clip(rho) A)."""
    clip_fraction: float
    """Share of (sample, row) pairs whose ratio left [1 - eps, 1 + eps]."""
    approx_kl: float
    """Mean over samples of the per-row mean of (rho - 1) - log rho (Schulman's k3 estimator)."""
    joint_log_ratio: float
    """Mean |sum_r log rho|: how far the joint ratio that SB3's PPO would clip has moved."""


def per_row_ppo_loss(
    row_log_prob: th.Tensor,
    old_row_log_prob: th.Tensor,
    row_weight: th.Tensor,
    advantages: th.Tensor,
    clip_range: float,
) -> PerRowLoss:
    """Per-row clipped surrogate.

    Args:
        row_log_prob: (B, R) log pi(a_r | s) under the current parameters (with gradient).
        old_row_log_prob: (B, R) the same under the parameters that sampled the actions.
        row_weight: (B, R) bool or {0, 1}: rows that have candidates (others are ignored).
        advantages: (B,) one advantage per sample, shared by its rows.
        clip_range: eps > 0.
    """
    if clip_range <= 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range!r}")
    weight = row_weight.to(row_log_prob.dtype)  # (B, R)
    n_rows = weight.sum(dim=-1).clamp(min=1.0)  # (B,)
    log_ratio = (row_log_prob - old_row_log_prob) * weight  # (B, R)
    ratio = th.exp(log_ratio)  # (B, R)
    adv = advantages[:, None]  # (B, 1)
    surrogate = th.min(ratio * adv, th.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * adv)  # (B, R)
    policy_loss = -((surrogate * weight).sum(dim=-1) / n_rows).mean()
    with th.no_grad():
        clipped = ((ratio - 1.0).abs() > clip_range).to(weight.dtype) * weight  # (B, R)
        kl = (((ratio - 1.0) - log_ratio) * weight).sum(dim=-1) / n_rows  # (B,)
        return PerRowLoss(
            policy_loss=policy_loss,
            clip_fraction=float(clipped.sum() / weight.sum().clamp(min=1.0)),
            approx_kl=float(kl.mean()),
            joint_log_ratio=float(log_ratio.sum(dim=-1).abs().mean()),
        )


def _index(samples: RolloutBufferSamples | DictRolloutBufferSamples, index: th.Tensor) -> Any:
    """Row ``index`` of every field of a buffer sample (observations may be a dict)."""
    fields = []
    for value in samples:
        fields.append({k: v[index] for k, v in value.items()} if isinstance(value, dict) else value[index])
    return type(samples)(*fields)


class RowPPO(PPO):
    """SB3 PPO whose policy ratio and clipping are per row (see the module docstring).

    The policy must provide ``evaluate_actions_per_row(obs, actions) -> (values (B, 1),
    row_log_prob (B, R), row_weight (B, R), mean_row_entropy (B,))``, as
    :class:`policies.gnn.GNNEdgePolicy` does. Constructor arguments are SB3 PPO's;
    ``target_kl`` applies to the per-row KL. Logs SB3's ``train/*`` keys (``clip_fraction``
    and ``approx_kl`` per row) plus ``train/joint_log_ratio``.
    """

    def _setup_model(self) -> None:
        super()._setup_model()
        if not hasattr(self.policy, "evaluate_actions_per_row"):
            raise TypeError(
                f"RowPPO needs a row-factored policy with evaluate_actions_per_row(obs, actions); "
                f"{type(self.policy).__name__} has none (use policies.gnn:GNNEdgePolicy, or SB3's PPO)"
            )

    def _old_row_log_probs(self, data: Any) -> th.Tensor:
        """(n, R) per-row log-probabilities of the stored actions under the collecting parameters."""
        chunks = []
        with th.no_grad():
            for start in range(0, len(data.actions), self.batch_size):
                part = _index(data, th.arange(start, min(start + self.batch_size, len(data.actions))))
                chunks.append(self.policy.evaluate_actions_per_row(part.observations, part.actions)[1])
        width = max(c.shape[-1] for c in chunks)
        return th.cat([F.pad(c, (0, width - c.shape[-1])) for c in chunks])  # (n, R)

    def train(self) -> None:
        """One PPO update on the rollout buffer with the per-row clipped surrogate."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        data = next(self.rollout_buffer.get(batch_size=None))  # every sample, as tensors
        n = len(data.actions)
        old_row_log_prob = self._old_row_log_probs(data)  # (n, R)
        logs: dict[str, list[float]] = {k: [] for k in ("pg", "value", "entropy", "clip", "kl", "joint")}
        continue_training = True
        for epoch in range(self.n_epochs):
            permutation = th.as_tensor(np.random.permutation(n))
            for start in range(0, n, self.batch_size):
                index = permutation[start:start + self.batch_size]
                batch = _index(data, index)
                values, row_log_prob, row_weight, entropy = self.policy.evaluate_actions_per_row(
                    batch.observations, batch.actions
                )
                values = values.flatten()
                advantages = batch.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                old = old_row_log_prob[index][:, : row_log_prob.shape[-1]]  # (B, R)
                loss_terms = per_row_ppo_loss(row_log_prob, old, row_weight, advantages, clip_range)
                if clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = batch.old_values + th.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
                value_loss = F.mse_loss(batch.returns, values_pred)
                entropy_loss = -th.mean(entropy)
                loss = loss_terms.policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                for key, value in (("pg", loss_terms.policy_loss.item()), ("value", value_loss.item()),
                                   ("entropy", entropy_loss.item()), ("clip", loss_terms.clip_fraction),
                                   ("kl", loss_terms.approx_kl), ("joint", loss_terms.joint_log_ratio)):
                    logs[key].append(value)
                if self.target_kl is not None and loss_terms.approx_kl > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at epoch {epoch}: per-row KL {loss_terms.approx_kl:.4f}")
                    break
                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())
        self.logger.record("train/entropy_loss", float(np.mean(logs["entropy"])))
        self.logger.record("train/policy_gradient_loss", float(np.mean(logs["pg"])))
        self.logger.record("train/value_loss", float(np.mean(logs["value"])))
        self.logger.record("train/approx_kl", float(np.mean(logs["kl"])))
        self.logger.record("train/clip_fraction", float(np.mean(logs["clip"])))
        self.logger.record("train/joint_log_ratio", float(np.mean(logs["joint"])))
        self.logger.record("train/loss", float(loss.item()))
        self.logger.record("train/explained_variance", float(explained_var))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
