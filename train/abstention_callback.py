"""Periodic abstention metrics for Taxonomy runs, on an env instance of their own.

The source evaluated on its training env and so consumed training samples; this
callback builds a separate env (same id and kwargs as the training env, validation
split) and replays the same validation cases at every evaluation, so curves compare
like with like. It logs ``eval/mean_reward`` and, per rank,
``eval/<metric>/<rank>`` for the metrics of :func:`envs.taxonomy.metrics.abstention_metrics`,
``eval/coverage/<rank|chain>`` and ``eval/selective_risk/<rank|chain>`` of the answers
given, and, when the policy gives confidences (``selective_answers``, e.g.
:class:`~policies.linnaeus.LinnaeusPolicy`), ``eval/aurc/<rank|chain>`` and
``eval/risk_at_<coverage>/chain``, to every SB3 output (TensorBoard, CSV).

In ``train/hyperparams/<algo>.yml``::

    callbacks:
      - train.abstention_callback:AbstentionMetricsCallback
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.evaluation import play
from envs.taxonomy.metrics import SelectiveAnswers, risk_coverage_metrics, summarise

__all__ = ["AbstentionMetricsCallback"]


class AbstentionMetricsCallback(BaseCallback):
    """Every ``eval_freq`` env steps, play ``n_eval_episodes`` fixed validation cases
    deterministically and log per-rank abstention metrics.

    :param eval_freq: env steps (summed over envs) between evaluations.
    :param n_eval_episodes: validation cases per evaluation (capped at the split size).
    :param split: data split of the evaluation env (``"val"``; never the test split).
    :param seed: seed of the case sample.
    """

    def __init__(self, eval_freq: int = 10_000, n_eval_episodes: int = 300, split: str = "val",
                 seed: int = 0, verbose: int = 0) -> None:
        super().__init__(verbose)
        if eval_freq < 1 or n_eval_episodes < 1:
            raise ValueError(f"eval_freq and n_eval_episodes must be >= 1, got {eval_freq}, {n_eval_episodes}")
        if split == "test":
            raise ValueError("split='test' would tune training on test data; use 'val' (or 'train')")
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.split = split
        self.seed = seed
        self._last_eval = 0
        self.eval_env: gym.Env | None = None
        self._cases = np.zeros(0, dtype=np.int64)

    def _init_callback(self) -> None:
        spec = self.training_env.get_attr("spec", indices=[0])[0]
        if spec is None:
            raise ValueError("AbstentionMetricsCallback needs a training env made with gym.make (it has no spec)")
        kwargs: dict[str, Any] = {k: v for k, v in spec.kwargs.items() if k != "render_mode"}
        self.eval_env = gym.make(spec.id, **{**kwargs, "split": self.split})
        n_cases = self.eval_env.unwrapped.n_cases
        rng = np.random.default_rng(self.seed)
        self._cases = np.sort(rng.choice(n_cases, min(self.n_eval_episodes, n_cases), replace=False))

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_eval >= self.eval_freq:
            self._last_eval = self.num_timesteps
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, Any]:
        """Play the fixed cases now and record the metrics; returns them too."""
        episodes = [(int(case), self.seed + k) for k, case in enumerate(self._cases)]
        summary = summarise(play(self.model, self.eval_env, episodes))
        self.logger.record("eval/mean_reward", summary["mean_reward"])
        for rank, metrics in summary["per_rank"].items():
            for name, value in metrics.items():
                if value is not None:
                    self.logger.record(f"eval/{name}/{rank}", value)
        selective = summary["selective"]
        for where, metrics in [*selective["per_rank"].items(), ("chain", selective["chain"])]:
            for name, value in metrics.items():
                if value is not None:
                    self.logger.record(f"eval/{name}/{where}", value)
        curves = self._risk_coverage()
        if curves is not None:
            summary["risk_coverage"] = curves
            for where, metrics in [*curves["per_rank"].items(), ("chain", curves["chain"])]:
                self.logger.record(f"eval/aurc/{where}", metrics["aurc"])
            for level, risk in curves["chain"]["risk_at_coverage"].items():
                self.logger.record(f"eval/risk_at_{level}/chain", risk)
        if self.verbose:
            print(f"abstention eval at {self.num_timesteps} steps: mean_reward={summary['mean_reward']:.3f}")
        self.logger.dump(self.num_timesteps)
        return summary

    def _risk_coverage(self) -> dict[str, Any] | None:
        """Risk-coverage metrics of the policy's confidences on the fixed cases, if it has them."""
        method = getattr(self.model.policy, "selective_answers", None)
        if method is None:
            return None
        base = self.eval_env.unwrapped
        images = base.data.images[self._cases].transpose(0, 3, 1, 2)  # (n, 3, H, W)
        tree = base.tree if getattr(base, "hierarchy_consistent", False) else None
        classes, margins = method(np.ascontiguousarray(images), tree)
        return risk_coverage_metrics(SelectiveAnswers(classes, margins), base.data.labels[self._cases], base.tree.ranks)

    def _on_training_end(self) -> None:
        if self.eval_env is not None:
            self.eval_env.close()
