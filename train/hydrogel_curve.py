"""The seed's Stage 2 learning-curve table, written while a hydrogel run trains.

HYDRA-BERT (seed 003, section 4) reports one row per PPO iteration: Iteration,
Mean_Reward, Max_Reward, Policy_Loss, Value_Loss, Entropy. :class:`HydrogelCurveCallback`
writes that table to ``<run_dir>/stage2_curve.csv`` after every iteration (so a long run
can be watched and a killed one keeps its rows), with two columns the seed lacked because
it never evaluated on held-out patients: ``Optimal_Rate`` and ``Mean_Regret`` of the
deterministic policy on every test patient once (the patients of the run's final
evaluation: its ``env_kwargs`` updated by ``eval_env_kwargs``). At the end of training it draws
``stage2_curve.png`` and writes ``polymer_selection.json`` (how often each polymer is
chosen: sampled, over the last rollout's designs; deterministic, over the test patients).

Use it with any trainer of the torch hydrogel batch (``vec_env: torch``), e.g.
``callbacks: [train.hydrogel_curve:HydrogelCurveCallback]`` in a hyperparams entry.
The per-iteration values are read from the trainer's ``last_logged`` (the logger's
values of its last iteration, which ``vec-ppo`` keeps) and its ``rollout`` local.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.vec_env import VecEnvWrapper  # noqa: E402

from envs.hydrogel.library import POLYMERS  # noqa: E402
from envs.hydrogel.problem import DesignProblem  # noqa: E402
from envs.hydrogel.vector import HydrogelBatch  # noqa: E402
from envs.hydrogel.wrappers import COVERAGE_SLOT, FORMULATION_SLOTS, POLYMER_SLOT  # noqa: E402
from train.config import evaluation_kwargs  # noqa: E402

__all__ = ["COLUMNS", "HydrogelCurveCallback", "score_test_patients"]

COLUMNS = (
    "Iteration", "Timesteps", "Mean_Reward", "Max_Reward", "Policy_Loss", "Value_Loss", "Entropy",
    "Optimal_Rate", "Mean_Regret", "Rollout_Seconds", "Update_Seconds",
)
"""The seed's columns, then test-patient quality and the iteration's wall time."""
_FROM_LOGGER = {
    "Mean_Reward": "rollout/mean_reward", "Max_Reward": "rollout/max_reward",
    "Policy_Loss": "train/policy_gradient_loss", "Value_Loss": "train/value_loss",
    "Entropy": "train/entropy_loss", "Rollout_Seconds": "time/rollout_seconds",
    "Update_Seconds": "time/update_seconds",
}


def score_test_patients(policy: Any, problem: DesignProblem) -> dict[str, Any]:
    """The deterministic design of ``policy`` for every patient of ``problem`` once.

    Returns ``optimal_rate``, ``mean_regret`` (NaN without an oracle) and ``polymers``
    (P,) long, from one batched forward pass and one outcome-model call.
    """
    patients = torch.arange(len(problem), device=problem.device)  # (P,)
    no_design = torch.full((len(problem),), float("nan"), device=problem.device)
    obs = problem.observations(patients, no_design, torch.zeros_like(no_design))  # (P, 13)
    with torch.no_grad():
        actions, _ = policy.predict(obs.cpu().numpy(), deterministic=True)
    actions = torch.as_tensor(actions, device=problem.device)  # (P, 6)
    polymer = torch.round(actions[:, POLYMER_SLOT]).long()
    coverage = torch.round(actions[:, COVERAGE_SLOT]).long()
    novel = torch.ones_like(polymer, dtype=torch.bool)
    assessment = problem.assess(patients, polymer, actions[:, FORMULATION_SLOTS], coverage, novel)
    regret = problem.regret(patients, assessment.design_score)
    return {
        "optimal_rate": float(assessment.is_optimal.float().mean()),
        "mean_regret": float(regret.mean()) if regret is not None else float("nan"),
        "polymers": polymer,
    }


def _batch_of(env: Any) -> HydrogelBatch:
    inner = env
    while isinstance(inner, VecEnvWrapper):
        inner = inner.venv
    batch = getattr(inner, "batch", None)
    if not isinstance(batch, HydrogelBatch):
        raise TypeError(
            f"HydrogelCurveCallback needs the torch hydrogel VecEnv (vec_env: torch), got {type(inner).__name__}"
        )
    return batch


class HydrogelCurveCallback(BaseCallback):
    """Append one row of :data:`COLUMNS` per iteration to ``stage2_curve.csv`` (module doc).

    Args:
        test_split: the split whose patients are scored every iteration (default ``test``).
    """

    def __init__(self, test_split: str = "test", verbose: int = 0) -> None:
        super().__init__(verbose)
        self.test_split = test_split
        self.rows: list[dict[str, float]] = []
        self._iteration = 0
        self._seen_updates: int | None = None
        self._last_polymers: torch.Tensor | None = None
        self._test_polymers: torch.Tensor | None = None

    def _init_callback(self) -> None:
        batch = _batch_of(self.training_env)
        self.run_dir = Path(self.logger.get_dir() or ".")
        kwargs = {k: v for k, v in batch.problem_kwargs.items() if k != "split"}
        config_path = self.run_dir / "config.yml"
        if config_path.is_file():  # a python -m train run: score the patients its eval.json will
            run = yaml.safe_load(config_path.read_text())
            kwargs = evaluation_kwargs({**kwargs, **(run.get("env_kwargs") or {})}, run.get("eval_env_kwargs") or {})
            kwargs.pop("split", None)
        self.test_problem = DesignProblem(split=self.test_split, **kwargs)
        self.csv_path = self.run_dir / "stage2_curve.csv"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.csv_path.exists():
            with self.csv_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(COLUMNS)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        actions = self.locals.get("rollout")
        if actions is not None:  # the sampled polymers of this rollout (vec-ppo's locals)
            self._last_polymers = torch.round(actions.actions[..., POLYMER_SLOT]).long().flatten()

    def _on_rollout_start(self) -> None:
        self._record()

    def _on_training_end(self) -> None:
        self._record()
        self._plot()
        self._write_selection()

    def _record(self) -> None:
        """A row for the update just made (nothing before the first one, nothing twice)."""
        values = getattr(self.model, "last_logged", None) or {}
        updates = values.get("train/n_updates")
        if updates is None or updates == self._seen_updates:
            return
        self._seen_updates = updates
        self._iteration += 1
        quality = score_test_patients(self.model, self.test_problem)
        self._test_polymers = quality["polymers"]
        row = {"Iteration": self._iteration, "Timesteps": self.model.num_timesteps,
               "Optimal_Rate": quality["optimal_rate"], "Mean_Regret": quality["mean_regret"]}
        row.update({column: values.get(key, float("nan")) for column, key in _FROM_LOGGER.items()})
        self.rows.append(row)
        with self.csv_path.open("a", newline="") as handle:
            csv.writer(handle).writerow([row[c] for c in COLUMNS])
        if self.verbose:
            print(f"iteration {self._iteration}: mean reward {row['Mean_Reward']:.2f}, optimal"
                  f" {row['Optimal_Rate']:.3f}, regret {row['Mean_Regret']:.4f}", flush=True)

    def _plot(self) -> None:
        if not self.rows:
            return
        x = [r["Iteration"] for r in self.rows]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        axes[0].plot(x, [r["Mean_Reward"] for r in self.rows], label="mean")
        axes[0].plot(x, [r["Max_Reward"] for r in self.rows], label="max", alpha=0.6)
        axes[0].set_title("training reward per iteration")
        axes[0].legend()
        axes[1].plot(x, [r["Optimal_Rate"] for r in self.rows])
        axes[1].set_ylim(0, 1.02)
        axes[1].set_title(f"optimal rate, {self.test_split} patients")
        axes[2].plot(x, [r["Mean_Regret"] for r in self.rows])
        axes[2].set_yscale("log")
        axes[2].set_title(f"mean regret, {self.test_split} patients")
        for ax in axes:
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.run_dir / "stage2_curve.png", dpi=120)
        plt.close(fig)

    def _write_selection(self) -> None:
        def distribution(polymers: torch.Tensor | None) -> dict[str, float]:
            if polymers is None or polymers.numel() == 0:
                return {}
            counts = Counter(polymers.cpu().tolist())
            return {POLYMERS[k].name: n / polymers.numel() for k, n in counts.most_common()}

        selection = {
            "sampled_last_rollout": distribution(self._last_polymers),
            f"deterministic_{self.test_split}_patients": distribution(self._test_polymers),
        }
        (self.run_dir / "polymer_selection.json").write_text(json.dumps(selection, indent=2) + "\n")
