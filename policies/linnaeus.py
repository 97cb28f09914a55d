"""Linnaeus policy: a Phase 1 classifier wrapped into a MaskablePPO actor-critic.

Phase 2 of Linnaeus fine-tunes a supervised "expert" to abstain when a rank cannot be
told. The actor reuses the Phase 1 per-rank logits as the class logits and adds one
abstain logit per rank::

    abstain_logit_r = logsumexp(class_logits_r) + s_r(x)

so that P(abstain) = sigmoid(s_r) and, given no abstention, classes keep the Phase 1
softmax. The deterministic policy abstains exactly when the top class probability is
below ``exp(s_r(x))``: a max-softmax threshold rule whose threshold depends on the
image, which is why it starts where the threshold baseline lives and can improve on
it. ``s`` is a small MLP of the backbone features and the confidence (top
probability, normalised entropy) of every rank's Phase 1 softmax. The critic is a
separate head on the same inputs with one output per rank, read at the sample's
rank, so values differ by rank (the source's value head ignored the rank).

Every tensor is computed per sample, so minibatches that mix ranks get each sample's
own logits, mask and value (the source used the first sample's rank for all).

:meth:`LinnaeusPolicy.selective_answers` gives, for a batch of images, the class the
deterministic policy names at every rank and its margin over abstaining (best class
logit minus abstain logit): the confidence whose sweep gives its risk-coverage curve.

Sequential mode (``Taxonomy-v0``, ``Discrete`` actions) reads the rank from
``obs["rank"]``; multitask mode (``TaxonomyMultitask-v0``, ``MultiDiscrete``) emits
every rank's ``[classes..., abstain]`` block and uses the first rank's value.
"""

from __future__ import annotations

import math
import os
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from policies.distributions import MASKED_LOGIT
from policies.phase1 import PRETRAIN_COMMAND, default_phase1_checkpoint, load_phase1, rank_confidence
from rewards.choices import parse_choice

__all__ = ["FinetuneStrategy", "LinnaeusPolicy"]


class FinetuneStrategy(str, Enum):
    """Which parameters PPO trains; everything else has ``requires_grad=False``."""

    VALUE_HEAD_ONLY = "value_head_only"
    """Only the value head (the actor stays the initial Phase 1 + abstain head)."""
    HEADS_ONLY = "heads_only"
    """Value head, abstain head and the Phase 1 classifier heads; backbone frozen."""
    LAST_N_BLOCKS = "last_n_blocks"
    """As ``heads_only`` plus the last ``n_unfrozen_blocks`` backbone blocks."""
    FULL = "full"
    """Everything."""


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, out_dim))


class LinnaeusPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy around a Phase 1 :class:`~policies.phase1.HierarchicalClassifier`.

    :param observation_space: ``Dict`` with ``image`` (3, H, W) uint8 and, in sequential
        mode, ``rank`` (one-hot) and ``previous`` (``MultiDiscrete`` of class-map sizes).
    :param action_space: ``Discrete(max_c + 1)`` (sequential) or
        ``MultiDiscrete([n_r + 1, ...])`` (multitask); abstain is the last value.
    :param lr_schedule: learning-rate schedule (from the algorithm).
    :param phase1_checkpoint: Phase 1 checkpoint; default: where
        ``python -m train pretrain --env Taxonomy-v0`` writes it in the cache.
    :param finetune: which parameters train (:class:`FinetuneStrategy`): ``value_head_only``,
        ``heads_only`` (value, abstain and Phase 1 class heads), ``last_n_blocks`` (those
        plus the last ``n_unfrozen_blocks`` backbone blocks) or ``full``.
    :param n_unfrozen_blocks: backbone blocks trained by ``last_n_blocks`` (required
        there, 1..number of blocks; not accepted by the other strategies).
    :param hidden_dim: width of the abstain and value MLPs.
    :param initial_abstain_probability: P(abstain) of the stochastic policy at start,
        in (0, 1); sets the abstain head's output bias.
    :param optimizer_class: optimizer over the trainable parameters.
    :param optimizer_kwargs: its keyword arguments besides the learning rate.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete | spaces.MultiDiscrete,
        lr_schedule: Schedule,
        phase1_checkpoint: str | os.PathLike[str] | None = None,
        finetune: FinetuneStrategy | str = FinetuneStrategy.HEADS_ONLY,
        n_unfrozen_blocks: int | None = None,
        hidden_dim: int = 64,
        initial_abstain_probability: float = 0.1,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        finetune = parse_choice(FinetuneStrategy, finetune, "finetune")
        if finetune is FinetuneStrategy.LAST_N_BLOCKS and n_unfrozen_blocks is None:
            raise ValueError("finetune='last_n_blocks' needs n_unfrozen_blocks (an int >= 1)")
        if finetune is not FinetuneStrategy.LAST_N_BLOCKS and n_unfrozen_blocks is not None:
            raise ValueError(f"n_unfrozen_blocks is only used by finetune='last_n_blocks', not {finetune.value!r}")
        if not 0.0 < initial_abstain_probability < 1.0:
            raise ValueError(f"initial_abstain_probability must be in (0, 1), got {initial_abstain_probability}")
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {hidden_dim}")
        if not isinstance(observation_space, spaces.Dict) or "image" not in observation_space.spaces:
            raise TypeError(f"observation_space must be a Dict with an 'image' key, got {observation_space}")
        # Plain (non-Module) settings must exist before the parent constructor calls _build.
        self.phase1_checkpoint = Path(phase1_checkpoint or default_phase1_checkpoint())
        self.finetune = finetune
        self.n_unfrozen_blocks = n_unfrozen_blocks
        self.hidden_dim = int(hidden_dim)
        self.initial_abstain_probability = float(initial_abstain_probability)
        self.sequential = isinstance(action_space, spaces.Discrete)
        # SB3 builds a parameter-free FlattenExtractor here; this policy reads the
        # observation itself (see _phase1_outputs), so it is never called.
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )

    # ------------------------------------------------------------------ build
    def _build(self, lr_schedule: Schedule) -> None:
        """Load the Phase 1 model, add the abstain and value heads, freeze, make the optimizer."""
        self.phase1, _ = load_phase1(self.phase1_checkpoint, device="cpu")
        self.num_classes = tuple(int(n) for n in self.phase1.num_classes)
        self._check_spaces()
        n_ranks = len(self.num_classes)
        in_dim = self.phase1.feature_dim + 2 * n_ranks
        self.abstain_head = _mlp(in_dim, self.hidden_dim, n_ranks)
        self.value_head = _mlp(in_dim, self.hidden_dim, n_ranks)
        nn.init.orthogonal_(self.abstain_head[-1].weight, gain=0.01)
        p0 = self.initial_abstain_probability
        nn.init.constant_(self.abstain_head[-1].bias, math.log(p0 / (1.0 - p0)))
        self._freeze()
        trainable = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = self.optimizer_class(trainable, lr=lr_schedule(1), **self.optimizer_kwargs)

    def _check_spaces(self) -> None:
        """The checkpoint's class maps must match the env's spaces."""
        n = np.array(self.num_classes)
        hint = (
            f"the Phase 1 checkpoint {self.phase1_checkpoint} has class-map sizes {n.tolist()},"
            " which do not match this env's data; retrain it on this data with"
            f" `{PRETRAIN_COMMAND}` or pass the matching phase1_checkpoint"
        )
        if self.sequential:
            prev = self.observation_space.spaces.get("previous")
            if "rank" not in self.observation_space.spaces or not isinstance(prev, spaces.MultiDiscrete):
                raise TypeError("sequential mode needs observation keys 'rank' and 'previous' (Taxonomy-v0)")
            if not np.array_equal(prev.nvec, n) or self.action_space.n != n.max() + 1:
                raise ValueError(hint)
        elif isinstance(self.action_space, spaces.MultiDiscrete):
            if not np.array_equal(self.action_space.nvec, n + 1):
                raise ValueError(hint)
        else:
            raise TypeError(f"action_space must be Discrete or MultiDiscrete, got {self.action_space}")

    def _freeze(self) -> None:
        """Set ``requires_grad`` exactly as the fine-tune strategy says."""
        blocks = self.phase1.backbone_blocks()
        if self.finetune is FinetuneStrategy.LAST_N_BLOCKS and not 1 <= self.n_unfrozen_blocks <= len(blocks):
            raise ValueError(f"n_unfrozen_blocks must be in [1, {len(blocks)}], got {self.n_unfrozen_blocks}")
        trained: list[nn.Module] = {
            FinetuneStrategy.VALUE_HEAD_ONLY: [self.value_head],
            FinetuneStrategy.HEADS_ONLY: [self.value_head, self.abstain_head, self.phase1.classifier_heads()],
            FinetuneStrategy.LAST_N_BLOCKS: [
                self.value_head, self.abstain_head, self.phase1.classifier_heads(),
                *list(blocks)[len(blocks) - (self.n_unfrozen_blocks or 0):],
            ],
            FinetuneStrategy.FULL: [self],
        }[self.finetune]
        self.requires_grad_(False)
        for module in trained:
            module.requires_grad_(True)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return dict(
            observation_space=self.observation_space,
            action_space=self.action_space,
            lr_schedule=self._dummy_schedule,
            phase1_checkpoint=str(self.phase1_checkpoint),
            finetune=self.finetune.value,
            n_unfrozen_blocks=self.n_unfrozen_blocks,
            hidden_dim=self.hidden_dim,
            initial_abstain_probability=self.initial_abstain_probability,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )

    # ---------------------------------------------------------------- compute
    def _phase1_outputs(self, obs: PyTorchObs) -> tuple[th.Tensor, th.Tensor]:
        """Action logits (B, A) and values (B, 1) for a batch of observations."""
        images = obs["image"].float() / 255.0  # (B, 3, H, W)
        rank_logits, features = self.phase1(images)  # [(B, n_r)], (B, F)
        class_logits = []
        stats = []
        for logits in rank_logits:
            # the null class is never a prediction; a masked logit keeps the
            # distribution sane even when a caller passes no mask
            logits = logits.clone()
            logits[:, 0] = MASKED_LOGIT  # (B, n_r)
            class_logits.append(logits)
            stats.append(rank_confidence(logits))  # (B, 2)
        head_input = th.cat([features, *stats], dim=1)  # (B, F + 2R)
        abstain_scores = self.abstain_head(head_input)  # (B, R)
        rank_values = self.value_head(head_input)  # (B, R)
        if self.sequential:
            rank = obs["rank"].argmax(dim=1)  # (B,)
            padded = th.full(
                (images.shape[0], len(self.num_classes), self.action_space.n - 1),
                MASKED_LOGIT, device=images.device, dtype=features.dtype,
            )  # (B, R, max_c): classes that exist at no rank (padding) stay masked
            for r, logits in enumerate(class_logits):
                padded[:, r, : logits.shape[1]] = logits
            rows = th.arange(images.shape[0], device=images.device)
            current = padded[rows, rank]  # (B, max_c)
            abstain = th.logsumexp(current, dim=1, keepdim=True) + abstain_scores[rows, rank].unsqueeze(1)  # (B, 1)
            action_logits = th.cat([current, abstain], dim=1)  # (B, max_c + 1)
            values = rank_values[rows, rank].unsqueeze(1)  # (B, 1)
        else:
            blocks = [
                th.cat([logits, th.logsumexp(logits, dim=1, keepdim=True) + abstain_scores[:, r : r + 1]], dim=1)
                for r, logits in enumerate(class_logits)
            ]  # [(B, n_r + 1)]
            action_logits = th.cat(blocks, dim=1)  # (B, sum(n_r + 1))
            values = rank_values[:, :1]  # (B, 1)
        return action_logits, values

    def _distribution(self, action_logits: th.Tensor, action_masks: np.ndarray | th.Tensor | None) -> MaskableDistribution:
        distribution = self.action_dist.proba_distribution(action_logits=action_logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    def forward(
        self, obs: PyTorchObs, deterministic: bool = False, action_masks: np.ndarray | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Actions, values (B, 1) and log-probs (B,) of a batch."""
        action_logits, values = self._phase1_outputs(obs)
        distribution = self._distribution(action_logits, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob

    def evaluate_actions(
        self, obs: PyTorchObs, actions: th.Tensor, action_masks: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values (B, 1), log-probs (B,) and entropies (B,), each at the sample's own rank."""
        action_logits, values = self._phase1_outputs(obs)
        distribution = self._distribution(action_logits, action_masks)
        return values, distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs, action_masks: np.ndarray | None = None) -> MaskableDistribution:
        action_logits, _ = self._phase1_outputs(obs)
        return self._distribution(action_logits, action_masks)

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        return self._phase1_outputs(obs)[1]

    @th.no_grad()
    def selective_answers(
        self, images: np.ndarray, tree: Any = None, batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the deterministic policy answers at every rank, and how sure it is.

        ``images`` uint8 (N, 3, H, W) (observation layout); ``tree`` (a
        :class:`~envs.taxonomy.tree.TaxonomyTree`) restricts each rank to children of
        the previous answer, as ``hierarchy_consistent=True`` masks do. Returns classes
        (N, R) int64 (the class named at each rank if the policy does not abstain) and
        margins (N, R) float64: the best allowed class logit minus the abstain logit,
        so the policy answers rank r iff the margins of ranks 0..r are >= 0. Built from
        the same :meth:`_phase1_outputs` as acting, so it agrees with played episodes.
        """
        self.set_training_mode(False)
        n_ranks = len(self.num_classes)
        classes = np.zeros((len(images), n_ranks), dtype=np.int64)
        margins = np.zeros((len(images), n_ranks), dtype=np.float64)
        offsets = np.concatenate([[0], np.cumsum(np.array(self.num_classes) + 1)])
        for s in range(0, len(images), batch_size):
            batch = th.as_tensor(np.asarray(images[s : s + batch_size]), device=self.device)  # (B, 3, H, W)
            b = batch.shape[0]
            multitask_logits = None if self.sequential else self._phase1_outputs({"image": batch})[0]  # (B, sum)
            previous = None
            for r, n_r in enumerate(self.num_classes):
                if self.sequential:
                    rank = th.zeros((b, n_ranks), device=self.device)
                    rank[:, r] = 1.0  # (B, R)
                    logits = self._phase1_outputs({"image": batch, "rank": rank})[0]  # (B, max_c + 1)
                    class_logits, abstain = logits[:, :n_r], logits[:, -1]  # (B, n_r), (B,)
                else:
                    block = multitask_logits[:, offsets[r] : offsets[r + 1]]  # (B, n_r + 1)
                    class_logits, abstain = block[:, :n_r], block[:, -1]
                allowed = th.ones((b, n_r), dtype=th.bool, device=self.device)
                allowed[:, 0] = False  # null is never an answer
                if tree is not None and r > 0:
                    parents = th.as_tensor(np.asarray(tree.parents[r]), device=self.device)  # (n_r,)
                    allowed &= parents[None, :] == previous[:, None]
                masked = th.where(allowed, class_logits, th.full_like(class_logits, MASKED_LOGIT))  # (B, n_r)
                best, choice = masked.max(dim=1)  # (B,), (B,)
                classes[s : s + b, r] = choice.cpu().numpy()
                margins[s : s + b, r] = (best - abstain).double().cpu().numpy()
                previous = choice
        return classes, margins
