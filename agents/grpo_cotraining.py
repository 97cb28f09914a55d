"""Supervised co-training of Prostate-v0's reward model inside GRPO (seed 001).

With ``GRPO(..., cotrain_decoder=True)`` every update step's loss is
``supervised + rl_weight x RL`` and one backward pass reaches both the policy and a
trainable copy of the env's decoder (SAM prompt encoder + mask decoder + class head).
The supervised loss is the pre-training loss (involvement BCE on the core score +
``class_weight`` x csPCa cross-entropy) on the points of **every** rollout of the
minibatch's episodes — all G of each group, not only the last one (the seed's
drawback #6). The encoder never runs: features come from the env's cache.

Staleness: the episodes of iteration t are scored by the decoder as it was after
iteration t-1 (the trained copy is loaded into every sub-env's decoder at the end of
each iteration, :meth:`DecoderCoTrainer.sync_envs`); their stored rewards are not
re-scored while the decoder moves during the U update epochs. So the reward is
non-stationary by one iteration at most. The final decoder is written to
``<run dir>/decoder_cotrained.pt``; the run's ``eval.json`` still scores with the
pre-trained decoder (the fixed yardstick every other agent is scored with) unless
``eval_env_kwargs.decoder_checkpoint`` points at the co-trained one.

The loss is :func:`envs.prostate.reward_training.decoder_loss`, the one pre-training
minimises, so co-training cannot drift from it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.logger import Logger

from envs.prostate.reward_model import ProstateDecoder, save_decoder
from envs.prostate.reward_training import CoreBatch, DecoderTrainingConfig, decoder_loss, evaluate_decoder, load_core_batch
from envs.splits import Split

if TYPE_CHECKING:
    from agents.grpo import GroupRollout

__all__ = ["DecoderCoTrainer", "episode_points"]

VAL_POINTS = 3
"""Random points per validation core when the decoder's core AUROC is measured (as pre-training)."""
VAL_REPEATS = 2
VAL_SEED = 1


def episode_points(final_infos: Sequence[dict[str, Any]], grid_size: int) -> tuple[th.Tensor, th.Tensor]:
    """Each episode's chosen cells from its final ``info["points"]`` ((row, col) pairs):
    cells (E, K) long, valid (E, K) bool, K = most points of any episode (>= 1)."""
    points = [[int(r) * grid_size + int(c) for r, c in info["points"]] for info in final_infos]
    K = max(1, max(len(p) for p in points))
    cells = th.zeros(len(points), K, dtype=th.long)
    valid = th.zeros(len(points), K, dtype=th.bool)
    for e, row in enumerate(points):
        cells[e, : len(row)] = th.tensor(row, dtype=th.long)
        valid[e, : len(row)] = True
    return cells, valid


class DecoderCoTrainer:
    """A trainable copy of the envs' decoder, its AdamW, and the cores it learns from."""

    def __init__(self, envs: Sequence[gym.Env], decoder: ProstateDecoder, train: CoreBatch, val: CoreBatch,
                 lr: float, device: th.device) -> None:
        self.envs, self.decoder, self.train, self.val, self.device = list(envs), decoder, train, val, device
        base = envs[0].unwrapped
        self.grid_size = int(base.grid_size)
        self.cspca_threshold = int(base.reward_config.cspca_threshold)
        self.training = DecoderTrainingConfig(cspca_threshold=self.cspca_threshold)
        self.optimizer = th.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=self.training.weight_decay)
        self.before: dict[str, float] = {}
        self._last_loss: list[float] = []

    @classmethod
    def from_envs(cls, envs: Sequence[gym.Env], lr: float, device: th.device | str) -> DecoderCoTrainer:
        """Build from the training sub-envs (Prostate-v0, all on one split and decoder)."""
        base = envs[0].unwrapped
        for needed in ("decoder", "cohort", "feature_file", "records", "split", "backbone"):
            if not hasattr(base, needed):
                raise TypeError(f"cotrain_decoder=True needs Prostate-v0 envs (with {needed!r}); got {base}")
        device = th.device(device)
        train = load_core_batch(base.cohort, base.feature_file, base.split)
        if train.core_ids != [r.core_id for r in base.records]:
            raise ValueError("the env's cores and the decoder's training cores are not in the same order")
        val = load_core_batch(base.cohort, base.feature_file, Split.VAL)
        decoder = copy.deepcopy(base.decoder).to(device).train()
        return cls(envs, decoder, train, val, lr, device)

    def validation_metrics(self) -> dict[str, float]:
        """Core AUROC (and csPCa AUROC, |p - inv|) on the val split with random points."""
        metrics = evaluate_decoder(self.decoder, self.val, VAL_POINTS, VAL_REPEATS, VAL_SEED,
                                   self.cspca_threshold, self.device)
        self.decoder.train()
        return metrics

    def start(self, logger: Logger) -> None:
        self.before = self.validation_metrics()
        logger.record("cotrain/val_core_auroc_before", self.before["core_auroc"])

    def supervised_loss(self, rollout: GroupRollout, index: np.ndarray) -> th.Tensor:
        """Loss over the episodes that end in the minibatch ``index`` (every episode once per epoch)."""
        last_step = np.zeros(len(rollout.episode_group), dtype=np.int64)
        np.maximum.at(last_step, rollout.episode, np.arange(rollout.n_steps))
        episodes = np.flatnonzero(np.isin(last_step, index))
        if len(episodes) == 0:
            return th.zeros((), device=self.device)
        cells, valid = episode_points([rollout.final_infos[e] for e in episodes], self.grid_size)
        cases = th.as_tensor(rollout.episode_case[episodes])
        loss = decoder_loss(self.decoder, self.train, cases, cells, valid, self.training, self.device)
        self._last_loss.append(float(loss.detach()))
        return loss

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        th.nn.utils.clip_grad_norm_(self.decoder.parameters(), self.training.grad_clip)
        self.optimizer.step()

    def sync_envs(self) -> None:
        """Load the trained weights into every sub-env's decoder (used from the next episode on)."""
        state = self.decoder.state_dict()
        for env in self.envs:
            env.unwrapped.decoder.load_state_dict(state)

    def last_metrics(self) -> dict[str, float]:
        out = {"cotrain/supervised_loss": float(np.mean(self._last_loss))} if self._last_loss else {}
        self._last_loss = []
        return out

    def finish(self, logger: Logger) -> dict[str, Any]:
        """Validation AUROC after training; writes cotraining.json and the decoder into the run dir."""
        after = self.validation_metrics()
        logger.record("cotrain/val_core_auroc_after", after["core_auroc"])
        summary = {"before": self.before, "after": after, "val_points": VAL_POINTS, "val_repeats": VAL_REPEATS}
        directory = logger.get_dir()
        if directory is not None:
            out = Path(directory)
            (out / "cotraining.json").write_text(json.dumps(summary, indent=2) + "\n")
            base = self.envs[0].unwrapped
            save_decoder(self.decoder.eval(), out / "decoder_cotrained.pt", backbone=base.backbone,
                         training=self.training, metrics={"val_core_auroc": after["core_auroc"], "cotrained": True})
            self.decoder.train()
        print(f"co-training: decoder val core AUROC {self.before['core_auroc']:.3f} -> {after['core_auroc']:.3f}", flush=True)
        return summary
