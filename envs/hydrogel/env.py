"""Hydrogel-v0 and HydrogelSearch-v0: design an injectable hydrogel for one patient."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from envs.hydrogel.library import (
    FORMULATION_HIGH,
    FORMULATION_LOW,
    FORMULATION_NAMES,
    N_COVERAGE,
    N_POLYMERS,
    POLYMERS,
    Coverage,
)
from envs.hydrogel.problem import OBSERVATION_LIMIT, OBSERVATION_SIZE, DesignProblem, as_numpy_info

__all__ = ["HydrogelEnv", "HydrogelSearchEnv"]


def _as_index(value: Any, field: str, n: int) -> int:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{field} must be one integer in [0, {n - 1}], got {value!r}")
    index = int(array.reshape(()))
    if not 0 <= index < n:
        raise ValueError(f"{field} must be in [0, {n - 1}], got {index}")
    return index


class HydrogelEnv(gym.Env):
    """Pick a polymer, its formulation and a coverage for a post-infarction patient.

    ## Description
    HYDRA-BERT Stage 2 (seed 003) as a single-step MDP: the agent sees one patient and
    proposes one hydrogel design; an outcome model (by default the documented
    surrogate in :mod:`envs.hydrogel.surrogate`, or a user's Stage 1 model) predicts
    its effect and the seed's composite reward scores it.

    ## Action Space
    ``Dict(polymer=Discrete(24), formulation=Box(4,), coverage=Discrete(4))``:

    | key | index | meaning | dtype | min | max | unit |
    |---|---|---|---|---|---|---|
    | polymer | - | polymer index in :data:`library.POLYMERS` | int64 | 0 | 23 | - |
    | formulation | 0 | stiffness | float32 | 0.5 | 100 | kPa |
    | formulation | 1 | degradation half-life | float32 | 7 | 180 | days |
    | formulation | 2 | conductivity | float32 | 0 | 1 | S/m |
    | formulation | 3 | patch thickness | float32 | 1 | 5 | mm |
    | coverage | - | scar only / + 25 / 50 / 100 % of border zone | int64 | 0 | 3 | - |

    Each polymer has a narrower feasible window (:mod:`envs.hydrogel.library`). A
    formulation outside it is clipped into it (component-wise) and scored there;
    ``info["clipped"]`` is True and ``info["formulation_used"]`` holds the scored values.
    An action outside the space raises ``ValueError`` naming the field. SB3 users wrap
    the env with :class:`envs.hydrogel.wrappers.HybridBoxAction`.

    ## Observation Space
    ``Box(-10, 10, (13,), float32)``:

    | index | meaning | unit before normalisation |
    |---|---|---|
    | 0-10 | LVEF, GLS, EDV, ESV, scar, border zone, BZ stress, healthy stress, stress concentration, transmurality, wall thickness, each ``(x - center) / scale`` (:data:`cohort.FEATURE_CENTER`, :data:`cohort.FEATURE_SCALE`) | %, %, mL, mL, %, %, kPa, kPa, ratio, fraction, mm |
    | 11 | best design score so far / 10, clipped to +-10 (0 before any design) | reward units |
    | 12 | design step / horizon (0 in Hydrogel-v0) | fraction |

    ## Rewards
    The composite reward of :mod:`rewards.hydrogel`: ``3 dEF + 1.5 SR/100 + P(optimal)``
    minus 2 (toxicity > 0.15), 1 (integrity < 0.8), 0.5 (fibrosis > 0.2), plus 0.1 for a
    polymer not yet tried in this episode (always, in a single-step episode). Range
    about [-3.5, 50]. ``info`` holds each component, every prediction, ``is_optimal``
    (dEF >= 3 and SR >= 15), ``therapeutic`` (dEF >= 5, SR >= 25, strain >= 15),
    ``best_achievable`` (the oracle's best design score for this patient), its polymer
    ``oracle_polymer`` / ``oracle_polymer_name``, and ``regret``
    = ``(best_achievable - design_score) / |best_achievable|``.

    ## Starting State
    A patient drawn uniformly from the split with the env's ``np_random``, or the one
    given by ``reset(options={"case": i})`` (index into ``env.unwrapped.cohort``).

    ## Episode End
    - Termination: after the single design.
    - Truncation: never.

    ## Arguments
    ``split`` ("train" / "val" / "test"), ``cohort`` ("augmented" default, "real",
    "synthetic"), ``n_synthetic`` (200), ``synthetic_seed`` (0), ``outcome_model`` (None
    = surrogate; a callable / nn.Module with the surrogate's batch signature; or a
    TorchScript path), ``reward_weights`` (:class:`RewardWeights` or a mapping of its
    fields), ``noise_std`` (0: deterministic), ``compute_regret`` (True), ``device``
    ("cpu"), ``cache_dir`` (oracle cache root).

    ## Version History
    - v0: initial release.
    """

    metadata = {"render_modes": []}
    horizon = 1

    def __init__(self, **kwargs: Any) -> None:
        self.problem = DesignProblem(**kwargs)
        self.cohort = self.problem.cohort
        self.observation_space = spaces.Box(-OBSERVATION_LIMIT, OBSERVATION_LIMIT, (OBSERVATION_SIZE,), np.float32)
        self.action_space = spaces.Dict(
            {
                "polymer": spaces.Discrete(N_POLYMERS),
                "formulation": spaces.Box(FORMULATION_LOW, FORMULATION_HIGH, (4,), np.float32),
                "coverage": spaces.Discrete(N_COVERAGE),
            }
        )
        self._patient_index = 0
        self._step = 0
        self._best_score = float("nan")
        self._tried: set[int] = set()
        self._noise_generator = torch.Generator(device=self.problem.device)

    @property
    def n_cases(self) -> int:
        """Patients in this split; ``reset(options={"case": i})`` takes i in [0, n_cases)."""
        return len(self.cohort)

    # ------------------------------------------------------------------ episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        case = options.pop("case", None)
        if options:
            raise ValueError(f"reset options: unknown keys {sorted(options)}; valid: ['case']")
        if case is None:
            self._patient_index = int(self.np_random.integers(len(self.cohort)))
        else:
            self._patient_index = _as_index(case, "options['case']", len(self.cohort))
        self._noise_generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
        self._step, self._best_score, self._tried = 0, float("nan"), set()
        return self._observation(), {"patient_id": self.cohort.ids[self._patient_index], "case": self._patient_index}

    def step(self, action: Mapping[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict]:
        polymer, formulation, coverage = self._parse_action(action)
        device = self.problem.device
        index = torch.tensor([self._patient_index], device=device)
        assessment = self.problem.assess(
            index,
            torch.tensor([polymer], device=device),
            torch.as_tensor(formulation, device=device).reshape(1, 4),
            torch.tensor([coverage], device=device),
            torch.tensor([polymer not in self._tried], device=device),
            generator=self._noise_generator,
        )
        self._tried.add(polymer)
        score = float(assessment.design_score[0])
        best = torch.tensor([self._best_score], device=device)
        reward = float(self.problem.episode_reward(assessment, best, self.horizon)[0])
        self._best_score = score if np.isnan(self._best_score) else max(self._best_score, score)
        self._step += 1
        info = as_numpy_info(self.problem.info_arrays(assessment, index), 0)
        info.update(
            formulation_requested=formulation.copy(),
            polymer=polymer,
            polymer_name=POLYMERS[polymer].name,
            coverage=coverage,
            coverage_name=Coverage(coverage).name.lower(),
            patient_id=self.cohort.ids[self._patient_index],
            case=self._patient_index,
            best_design_score=self._best_score,
        )
        if "oracle_polymer" in info:
            info["oracle_polymer_name"] = POLYMERS[info["oracle_polymer"]].name
        return self._observation(), reward, self._step >= self.horizon, False, info

    # ------------------------------------------------------------------ helpers
    def _parse_action(self, action: Mapping[str, Any]) -> tuple[int, np.ndarray, int]:
        if not isinstance(action, Mapping):
            raise ValueError(f"action must be a dict with keys polymer, formulation, coverage; got {type(action).__name__}")
        missing = {"polymer", "formulation", "coverage"} - set(action)
        if missing:
            raise ValueError(f"action lacks {sorted(missing)}; expected keys polymer, formulation, coverage")
        polymer = _as_index(action["polymer"], "action['polymer']", N_POLYMERS)
        coverage = _as_index(action["coverage"], "action['coverage']", N_COVERAGE)
        formulation = np.asarray(action["formulation"], dtype=np.float32)
        if formulation.shape != (4,):
            raise ValueError(f"action['formulation'] must have shape (4,) {FORMULATION_NAMES}, got {formulation.shape}")
        for i, name in enumerate(FORMULATION_NAMES):
            if not (FORMULATION_LOW[i] <= formulation[i] <= FORMULATION_HIGH[i]):
                raise ValueError(
                    f"action['formulation'][{i}] ({name}) = {formulation[i]!r} is outside"
                    f" [{FORMULATION_LOW[i]:g}, {FORMULATION_HIGH[i]:g}]"
                )
        return polymer, formulation, coverage

    def _observation(self) -> np.ndarray:
        progress = 0.0 if self.horizon == 1 else self._step / self.horizon
        obs = self.problem.observations(
            torch.tensor([self._patient_index], device=self.problem.device),
            torch.tensor([self._best_score], device=self.problem.device),
            torch.tensor([progress], device=self.problem.device),
        )
        return obs[0].cpu().numpy()


class HydrogelSearchEnv(HydrogelEnv):
    """HydrogelSearch-v0: ``horizon`` design attempts for the same patient.

    Same action, observation and info as :class:`HydrogelEnv` (observation index 11 is the
    best design score found so far / 10, index 12 the fraction of the budget used).

    ## Rewards
    Step 1 earns its design score; later steps earn the improvement of the best score,
    ``max(0, score_t - best_{t-1})``, so an episode's return is the best design score
    it found. Each polymer not yet tried in the episode adds the novelty bonus (0.1).

    ## Episode End
    - Termination: after ``horizon`` designs (default 10); the budget is part of the
      task and visible in the observation.
    - Truncation: never.

    ## Arguments
    As :class:`HydrogelEnv`, plus ``horizon`` (designs per episode, >= 1).

    ## Version History
    - v0: initial release.
    """

    def __init__(self, horizon: int = 10, **kwargs: Any) -> None:
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        super().__init__(**kwargs)
        self.horizon = horizon
