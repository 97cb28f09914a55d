"""Torch-vectorised hydrogel envs: thousands of patients stepped in one batch, on CPU or GPU.

:class:`HydrogelBatch` is the on-device core (tensors in, tensors out) that on-device
trainers use directly; :class:`HydrogelVectorEnv` is its Gymnasium ``VectorEnv`` face
(NumPy in and out, registered as the ``vector_entry_point`` of Hydrogel-v0 and
HydrogelSearch-v0, so ``gym.make_vec("Hydrogel-v0", 2000)`` uses it). Both score
designs with the same :class:`envs.hydrogel.problem.DesignProblem` as the single envs.

Autoreset is SAME_STEP by default: when a sub-env's episode ends, the returned
observation is the first of its next episode and ``info["final_obs"]`` (with mask
``info["_final_obs"]``) holds the last one. ``autoreset_mode="next_step"`` gives
Gymnasium's default instead (the last observation is returned, and the sub-env's next
``step`` ignores its action and returns the first observation of a new episode with
reward 0), which is what RLlib's env runners expect (:mod:`envs.rllib`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from envs.hydrogel.library import FORMULATION_HIGH, FORMULATION_LOW, FORMULATION_NAMES, N_COVERAGE, N_POLYMERS
from envs.hydrogel.problem import OBSERVATION_LIMIT, OBSERVATION_SIZE, DesignProblem

__all__ = ["HydrogelBatch", "HydrogelVectorEnv", "HydrogelSearchVectorEnv", "StepResult"]

StepResult = tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]


class HydrogelBatch:
    """``num_envs`` hydrogel episodes as tensors on ``device``.

    Args:
        num_envs: parallel episodes.
        horizon: designs per episode (1 = Hydrogel-v0, T = HydrogelSearch-v0 rewards).
        **problem_kwargs: as :class:`envs.hydrogel.env.HydrogelEnv` (split, cohort, ...).
    """

    def __init__(self, num_envs: int, horizon: int = 1, **problem_kwargs: Any) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        self.problem = DesignProblem(**problem_kwargs)
        self.problem_kwargs = dict(problem_kwargs)
        """What built :attr:`problem` (so the same patients' other splits can be built)."""
        self.num_envs, self.horizon = num_envs, horizon
        device = self.device = self.problem.device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(0)
        self.patient_index = torch.zeros(num_envs, dtype=torch.long, device=device)  # (N,)
        self.step_count = torch.zeros(num_envs, dtype=torch.long, device=device)  # (N,)
        self.best_score = torch.full((num_envs,), float("nan"), device=device)  # (N,)
        self.tried = torch.zeros(num_envs, N_POLYMERS, dtype=torch.bool, device=device)  # (N, 24)

    # The RNG state under the name checkpointing code looks for.
    @property
    def np_random(self) -> Tensor:
        return self.generator.get_state()

    @np_random.setter
    def np_random(self, state: Tensor) -> None:
        self.generator.set_state(state)

    def _begin(self, which: Tensor) -> None:
        """Start new episodes for the envs flagged in ``which`` (N,) bool."""
        n = int(which.sum())
        if n == 0:
            return
        drawn = torch.randint(len(self.problem), (n,), generator=self.generator, device=self.device)
        self.patient_index[which] = drawn
        self.step_count[which] = 0
        self.best_score[which] = float("nan")
        self.tried[which] = False

    def observations(self) -> Tensor:
        """(N, 13) float32 observations of the current states."""
        progress = self.step_count.float() / self.horizon if self.horizon > 1 else torch.zeros_like(self.best_score)
        return self.problem.observations(self.patient_index, self.best_score, progress)

    def reset(self, seed: int | None = None) -> Tensor:
        """Start every episode afresh; ``seed`` reseeds the batch's generator."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self._begin(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.observations()

    def begin(self, which: Tensor) -> None:
        """Start new episodes for the envs flagged in ``which`` (N,) bool (new patients)."""
        self._begin(which)

    def step(self, polymer: Tensor, formulation: Tensor, coverage: Tensor, autoreset: bool = True) -> StepResult:
        """One design per env: polymer (N,) long, formulation (N, 4) physical, coverage (N,) long.

        Returns observations (N, 13), rewards (N,), terminated (N,) bool, truncated (N,)
        bool and an info dict of (N, ...) tensors including ``final_obs`` (N, 13). With
        ``autoreset`` (same-step) a finished env starts its next episode at once and the
        observation is that episode's first; without, it stays finished (the caller
        :meth:`begin` s it) and the observation is its last.
        """
        rows = torch.arange(self.num_envs, device=self.device)
        novel = ~self.tried[rows, polymer]  # (N,)
        assessment = self.problem.assess(self.patient_index, polymer, formulation, coverage, novel, self.generator)
        score = assessment.design_score  # (N,)
        reward = self.problem.episode_reward(assessment, self.best_score, self.horizon)
        self.best_score = torch.where(torch.isnan(self.best_score), score, torch.maximum(self.best_score, score))
        self.tried[rows, polymer] = True
        self.step_count += 1
        info = self.problem.info_arrays(assessment, self.patient_index)
        info["patient_index"] = self.patient_index.clone()
        terminated = self.step_count >= self.horizon  # (N,)
        truncated = torch.zeros_like(terminated)
        info["final_obs"] = self.observations()  # (N, 13) before autoreset
        if not autoreset:
            return info["final_obs"], reward.float(), terminated, truncated, info
        self._begin(terminated)
        return self.observations(), reward.float(), terminated, truncated, info


_AUTORESET_MODES = {"samestep": AutoresetMode.SAME_STEP, "nextstep": AutoresetMode.NEXT_STEP}
"""Accepted spellings (``"same_step"``, ``"SameStep"``, the enum) of the two supported modes."""


class HydrogelVectorEnv(VectorEnv):
    """Gymnasium ``VectorEnv`` over :class:`HydrogelBatch` (NumPy in, NumPy out).

    Spaces are the single env's batched with ``batch_space``; actions are a dict of
    arrays ``polymer (N,)``, ``formulation (N, 4)``, ``coverage (N,)``. Out-of-space
    actions raise ``ValueError`` naming the field. Infos are dicts of (N,) arrays.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self, num_envs: int, horizon: int = 1, autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        **problem_kwargs: Any,
    ) -> None:
        mode = _AUTORESET_MODES.get(str(getattr(autoreset_mode, "value", autoreset_mode)).lower().replace("_", ""))
        if mode is None:
            raise ValueError(f"autoreset_mode must be 'same_step' or 'next_step', got {autoreset_mode!r}")
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.batch = HydrogelBatch(num_envs, horizon=horizon, **problem_kwargs)
        self._needs_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.batch.device)  # (N,) next-step mode
        self.num_envs = num_envs
        self.single_observation_space = spaces.Box(
            -OBSERVATION_LIMIT, OBSERVATION_LIMIT, (OBSERVATION_SIZE,), np.float32
        )
        self.single_action_space = spaces.Dict(
            {
                "polymer": spaces.Discrete(N_POLYMERS),
                "formulation": spaces.Box(FORMULATION_LOW, FORMULATION_HIGH, (4,), np.float32),
                "coverage": spaces.Discrete(N_COVERAGE),
            }
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if options:
            raise ValueError(f"HydrogelVectorEnv.reset takes no options, got {sorted(options)}")
        if seed is not None:
            self._np_random, self._np_random_seed = np.random.default_rng(seed), seed
        obs = self.batch.reset(seed)
        self._needs_reset.zero_()
        return obs.cpu().numpy(), {"patient_index": self.batch.patient_index.cpu().numpy()}

    def step(self, actions: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        polymer, formulation, coverage = self._parse(actions)
        if self.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP:
            return self._step_next_step(polymer, formulation, coverage)
        obs, reward, terminated, truncated, info = self.batch.step(polymer, formulation, coverage)
        numpy_info = {k: v.detach().cpu().numpy() for k, v in info.items()}
        numpy_info["_final_obs"] = terminated.cpu().numpy() | truncated.cpu().numpy()
        return obs.cpu().numpy(), reward.cpu().numpy(), terminated.cpu().numpy(), truncated.cpu().numpy(), numpy_info

    def _step_next_step(self, polymer: Tensor, formulation: Tensor, coverage: Tensor) -> tuple:
        """Gymnasium's NEXT_STEP autoreset: envs that finished last step start a new episode
        now (their action is ignored: reward 0, not done); the others step without reset."""
        resetting = self._needs_reset.clone()  # (N,)
        obs, reward, terminated, truncated, info = self.batch.step(polymer, formulation, coverage, autoreset=False)
        if resetting.any():
            self.batch.begin(resetting)  # discards what the step did to those envs
            obs = self.batch.observations()
            reward = torch.where(resetting, torch.zeros_like(reward), reward)
            terminated, truncated = terminated & ~resetting, truncated & ~resetting
        self._needs_reset = terminated | truncated
        numpy_info = {k: v.detach().cpu().numpy() for k, v in info.items() if k != "final_obs"}
        numpy_info["reset"] = resetting.cpu().numpy()
        return obs.cpu().numpy(), reward.cpu().numpy(), terminated.cpu().numpy(), truncated.cpu().numpy(), numpy_info

    def _parse(self, actions: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        n, device = self.num_envs, self.batch.device
        missing = {"polymer", "formulation", "coverage"} - set(actions)
        if missing:
            raise ValueError(f"actions lack {sorted(missing)}; expected keys polymer, formulation, coverage")
        polymer = np.asarray(actions["polymer"])
        coverage = np.asarray(actions["coverage"])
        formulation = np.asarray(actions["formulation"], dtype=np.float32)
        for name, value, high in (("polymer", polymer, N_POLYMERS), ("coverage", coverage, N_COVERAGE)):
            if value.shape != (n,) or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"actions[{name!r}] must be an integer array of shape ({n},), got {value.dtype} {value.shape}")
            if value.min() < 0 or value.max() >= high:
                raise ValueError(f"actions[{name!r}] must lie in [0, {high - 1}], got [{value.min()}, {value.max()}]")
        if formulation.shape != (n, 4):
            raise ValueError(f"actions['formulation'] must have shape ({n}, 4), got {formulation.shape}")
        outside = ~((formulation >= FORMULATION_LOW) & (formulation <= FORMULATION_HIGH))
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise ValueError(
                f"actions['formulation'][{row}, {col}] ({FORMULATION_NAMES[col]}) = {formulation[row, col]!r}"
                f" is outside [{FORMULATION_LOW[col]:g}, {FORMULATION_HIGH[col]:g}]"
            )
        return (
            torch.as_tensor(polymer, dtype=torch.long, device=device),
            torch.as_tensor(formulation, device=device),
            torch.as_tensor(coverage, dtype=torch.long, device=device),
        )


class HydrogelSearchVectorEnv(HydrogelVectorEnv):
    """Vector form of HydrogelSearch-v0: ``horizon`` designs per episode (default 10)."""

    def __init__(self, num_envs: int, horizon: int = 10, **kwargs: Any) -> None:
        super().__init__(num_envs, horizon=horizon, **kwargs)
