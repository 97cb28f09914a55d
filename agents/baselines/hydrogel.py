"""Hydrogel-v0 / HydrogelSearch-v0 reference agents: what a scientist would use instead of RL.

Every agent here acts in whatever form of the env it is given (the Dict action of the
raw env or the flat ``Box(6,)`` of :class:`envs.hydrogel.wrappers.HybridBoxAction`) and
recognises the patient from the observation (the nearest row of the split's normalised
features), as a clinician reads the chart.

- :class:`BestConstantDesignAgent`: the one design that minimises mean regret over the
  evaluated patients, searched over the oracle's grid with hindsight (an upper bound on
  any patient-blind design).
- :class:`PopulationBestPolymerAgent`: the one polymer with the lowest mean regret over
  the evaluated patients when each patient gets the oracle's best formulation and
  coverage for that polymer (hindsight again): what choosing the polymer per patient
  is worth.
- :class:`OracleAgent`: the oracle's best design of each patient (regret 0 by definition).
- :class:`BlackBoxSearchAgent`: per-patient black-box optimisation of the outcome model
  with a fixed budget of model calls -- random search, or Optuna's TPE over the mixed
  categorical + continuous space. In Hydrogel-v0 it proposes the best design found after
  ``budget`` calls; in HydrogelSearch-v0 its trials are the episode's designs (budget =
  horizon), so it competes under the env's own rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import optuna
import torch
from gymnasium import spaces

from envs.cache import cache_path, is_complete, publish, temporary_path
from envs.hydrogel.library import FORMULATION_LOG_SCALE, N_COVERAGE, N_POLYMERS, polymer_table
from envs.hydrogel.oracle import DesignOracle, OptimalDesign
from envs.hydrogel.problem import DesignProblem

__all__ = [
    "Design",
    "BestConstantDesignAgent",
    "PopulationBestPolymerAgent",
    "OracleAgent",
    "BlackBoxSearchAgent",
    "SearchMethod",
    "best_constant_design",
    "population_best_polymer",
    "best_constant_design_agent",
    "population_best_polymer_agent",
    "oracle_agent",
    "random_search_10_agent",
    "random_search_100_agent",
    "tpe_10_agent",
    "tpe_100_agent",
    "random_search_horizon_agent",
    "tpe_horizon_agent",
]

Design = tuple[int, tuple[float, float, float, float], int]
"""(polymer index, formulation in physical units, coverage index)."""

SearchMethod = str
"""``"random"`` or ``"tpe"``."""


def _problem(env: gym.Env) -> DesignProblem:
    problem = getattr(env.unwrapped, "problem", None)
    if not isinstance(problem, DesignProblem):
        raise TypeError(f"hydrogel reference agents need a Hydrogel env, got {type(env.unwrapped).__name__}")
    return problem


def _require_oracle(problem: DesignProblem, who: str) -> list[OptimalDesign]:
    if not problem.optimal_designs:
        raise ValueError(f"{who} needs the oracle: make the env with compute_regret=True (the default)")
    return problem.optimal_designs


def _to_action(space: spaces.Space, design: Design) -> Any:
    """A design as an action of ``space`` (Dict or the flat Box(6,))."""
    polymer, formulation, coverage = design
    formulation_arr = np.asarray(formulation, dtype=np.float32)
    if isinstance(space, spaces.Dict):
        box = space["formulation"]
        return {
            "polymer": np.int64(polymer),
            "formulation": np.clip(formulation_arr, box.low, box.high).astype(np.float32),
            "coverage": np.int64(coverage),
        }
    if isinstance(space, spaces.Box) and space.shape == (6,):
        flat = np.concatenate([[polymer], formulation_arr, [coverage]]).astype(np.float32)
        return np.clip(flat, space.low, space.high).astype(np.float32)
    raise TypeError(f"expected the hydrogel Dict action space or its Box(6,) form, got {space}")


class _PatientReader:
    """Which patient of the split an observation shows: nearest normalised feature row."""

    def __init__(self, problem: DesignProblem) -> None:
        self.features = problem.normalised.cpu().numpy()  # (P, 11)

    def __call__(self, observation: np.ndarray) -> int:
        obs = np.asarray(observation, dtype=np.float32).reshape(-1)[:11]
        return int(np.argmin(((self.features - obs) ** 2).sum(axis=1)))


def _search_progress(observation: np.ndarray) -> float:
    return float(np.asarray(observation).reshape(-1)[12])


class _PerPatientDesignAgent:
    """Proposes ``design_of(patient)`` at every step (the same design each step)."""

    def __init__(self, env: gym.Env, design_of: Callable[[int], Design]) -> None:
        self.action_space = env.action_space
        self.read_patient = _PatientReader(_problem(env))
        self.design_of = design_of

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[Any, Any]:
        """``deterministic`` is ignored: the agent has one answer per patient."""
        return _to_action(self.action_space, self.design_of(self.read_patient(observation))), state


def best_constant_design(problem: DesignProblem) -> tuple[Design, float]:
    """The grid design with the lowest mean regret over ``problem``'s patients, and that regret."""
    best = _require_oracle(problem, "best_constant_design")
    scores = problem.oracle.grid_scores(problem.cohort.features)  # (P, G)
    top = torch.tensor([b.design_score for b in best])[:, None]  # (P, 1)
    regret = ((top - scores) / top.abs().clamp(min=1e-6)).mean(0)  # (G,)
    j = int(regret.argmin())
    polymer, formulation, coverage = problem.oracle.grid
    design = (int(polymer[j]), tuple(float(v) for v in formulation[j]), int(coverage[j]))
    return design, float(regret[j])


def population_best_polymer(problem: DesignProblem) -> tuple[int, float]:
    """The polymer with the lowest mean regret over ``problem``'s patients when each gets
    the oracle's best formulation and coverage for it, and that regret."""
    best = _require_oracle(problem, "population_best_polymer")
    scores = np.array([b.polymer_scores for b in best])  # (P, 24)
    top = np.array([b.design_score for b in best])[:, None]  # (P, 1)
    regret = ((top - scores) / np.maximum(np.abs(top), 1e-6)).mean(0)  # (24,)
    polymer = int(regret.argmin())
    return polymer, float(regret[polymer])


class BestConstantDesignAgent(_PerPatientDesignAgent):
    """The hindsight-best patient-blind design (module doc)."""

    def __init__(self, env: gym.Env) -> None:
        self.design, self.train_regret = best_constant_design(_problem(env))
        super().__init__(env, lambda patient: self.design)


class PopulationBestPolymerAgent(_PerPatientDesignAgent):
    """The hindsight-best single polymer, with the oracle's formulation and coverage for it."""

    def __init__(self, env: gym.Env) -> None:
        problem = _problem(env)
        self.polymer, _ = population_best_polymer(problem)
        best = _require_oracle(problem, "population_best_polymer")

        def design_of(patient: int) -> Design:
            _, formulation, coverage = best[patient].by_polymer[self.polymer]
            return self.polymer, formulation, coverage

        super().__init__(env, design_of)


class OracleAgent(_PerPatientDesignAgent):
    """The oracle's best design of each patient."""

    def __init__(self, env: gym.Env) -> None:
        best = _require_oracle(_problem(env), "oracle")
        super().__init__(env, lambda patient: (best[patient].polymer, best[patient].formulation, best[patient].coverage))


class BlackBoxSearchAgent:
    """Per-patient black-box optimisation of the outcome model (module doc).

    Args:
        env: the env it plays (Hydrogel-v0 or HydrogelSearch-v0, either action form).
        method: ``"random"`` (uniform polymer and coverage, formulation uniform inside the
            polymer's window, log-uniform for stiffness and half-life) or ``"tpe"``
            (Optuna's multivariate TPE over the same space: polymer and coverage categorical,
            the four formulation values as unit coordinates mapped into the chosen polymer's
            window; ``max(3, budget // 5)`` random start-up trials).
        budget: outcome-model calls per patient; ``None`` = the env's horizon.
        seed: seeds every search (patient ``i`` uses the stream ``(seed, i)``, so a replayed
            patient gets the same search).

    Every patient of the env's split is searched once, when the agent is built (the
    searches are deterministic, so they are cached on disk next to the oracle when the
    outcome model has a ``cache_key``). The position in a patient's plan travels in SB3's
    recurrent ``state``: in HydrogelSearch-v0 the t-th step plays the t-th trial.
    """

    def __init__(self, env: gym.Env, method: SearchMethod, budget: int | None, seed: int = 0) -> None:
        if method not in ("random", "tpe"):
            raise ValueError(f"method must be 'random' or 'tpe', got {method!r}")
        self.problem = _problem(env)
        self.horizon = int(getattr(env.unwrapped, "horizon", 1))
        self.budget = self.horizon if budget is None else int(budget)
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1 outcome-model call, got {budget!r}")
        if self.horizon > 1 and self.budget != self.horizon:
            raise ValueError(f"in a search env the budget is the horizon ({self.horizon}), got budget={budget}")
        self.method, self.seed = method, seed
        self.tpe_startup_trials = max(3, self.budget // 5)
        """Random trials before TPE models the space (Optuna's default 10 would make a
        10-call TPE pure random search)."""
        self.action_space = env.action_space
        self.read_patient = _PatientReader(self.problem)
        table = polymer_table()
        self.low, self.high = table["low"].double().numpy(), table["high"].double().numpy()  # (24, 4)
        self.plans = self._all_plans()
        """Designs to play, per patient of the split."""

    def _cache_file(self) -> Path | None:
        key = getattr(self.problem.model, "cache_key", None)
        if key is None:
            return None
        fields = [
            key, asdict(self.problem.weights), self.method, self.budget, self.horizon, self.seed,
            self.tpe_startup_trials, optuna.__version__,
        ]
        tag = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
        return cache_path("hydrogel", f"search_{tag}.json", override=self.problem.cache_dir)

    def _all_plans(self) -> list[list[Design]]:
        file = self._cache_file()
        stored: dict[str, list] = json.loads(file.read_text()) if file is not None and is_complete(file) else {}
        keys = [DesignOracle.patient_key(p) for p in self.problem.cohort.features]
        plans, missing = [], False
        for patient, key in enumerate(keys):
            if key not in stored:
                stream = int(np.random.SeedSequence([self.seed, patient]).generate_state(1)[0])
                stored[key] = [[d[0], list(d[1]), d[2]] for d in self.plan(patient, stream)]
                missing = True
            plans.append([(int(p), tuple(float(v) for v in f), int(c)) for p, f, c in stored[key]])
        if missing and file is not None:
            tmp = temporary_path(file)
            tmp.write_text(json.dumps(stored))
            publish(tmp, file)
        return plans

    # -- the search ----------------------------------------------------------------
    def _physical(self, polymer: int, unit: np.ndarray) -> np.ndarray:
        """Unit coordinates (4,) in [0, 1] -> formulation inside ``polymer``'s window."""
        lo, hi = self.low[polymer], self.high[polymer]
        log_value = np.exp(np.log(np.maximum(lo, 1e-12)) + unit * (np.log(np.maximum(hi, 1e-12)) - np.log(np.maximum(lo, 1e-12))))
        return np.where(FORMULATION_LOG_SCALE, log_value, lo + unit * (hi - lo))

    def _scores(self, patient: int, designs: list[Design]) -> np.ndarray:
        n = len(designs)
        assessment = self.problem.assess(
            torch.full((n,), patient, dtype=torch.long, device=self.problem.device),
            torch.tensor([d[0] for d in designs], device=self.problem.device),
            torch.tensor(np.array([d[1] for d in designs]), dtype=torch.float32, device=self.problem.device),
            torch.tensor([d[2] for d in designs], device=self.problem.device),
            torch.zeros(n, dtype=torch.bool, device=self.problem.device),
        )
        return assessment.design_score.cpu().numpy()

    def _random_trials(self, patient: int, rng: np.random.Generator) -> list[Design]:
        designs = []
        for _ in range(self.budget):
            polymer = int(rng.integers(N_POLYMERS))
            designs.append((polymer, tuple(self._physical(polymer, rng.random(4))), int(rng.integers(N_COVERAGE))))
        return designs

    def _tpe_trials(self, patient: int, seed: int) -> list[Design]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.tpe_startup_trials, multivariate=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        space = {
            "polymer": optuna.distributions.CategoricalDistribution(list(range(N_POLYMERS))),
            "coverage": optuna.distributions.CategoricalDistribution(list(range(N_COVERAGE))),
            **{f"u{d}": optuna.distributions.FloatDistribution(0.0, 1.0) for d in range(4)},
        }
        designs = []
        for _ in range(self.budget):
            trial = study.ask(space)
            polymer = int(trial.params["polymer"])
            unit = np.array([trial.params[f"u{d}"] for d in range(4)])
            design = (polymer, tuple(self._physical(polymer, unit)), int(trial.params["coverage"]))
            study.tell(trial, float(self._scores(patient, [design])[0]))  # one model call per trial
            designs.append(design)
        return designs

    def plan(self, patient: int, seed: int) -> list[Design]:
        """The designs to play: all trials (search env) or the best one (single step)."""
        if self.method == "random":
            trials = self._random_trials(patient, np.random.default_rng(seed))
        else:
            trials = self._tpe_trials(patient, seed)
        if self.horizon > 1:
            return trials
        scores = self._scores(patient, trials)  # re-scoring is free: the model is deterministic
        return [trials[int(np.argmax(scores))]]

    def predict(
        self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[Any, Any]:
        """``state`` carries the remaining plan between the steps of an episode."""
        if state is None or _search_progress(observation) == 0.0:
            state = tuple(self.plans[self.read_patient(observation)])
        design, rest = state[0], state[1:]
        return _to_action(self.action_space, design), (rest if rest else (design,))


# -- factories of the env rows: (env, agent under test, seed) -> agent -------------------
def best_constant_design_agent(env: gym.Env, agent: Any, seed: int) -> BestConstantDesignAgent:
    return BestConstantDesignAgent(env)


def population_best_polymer_agent(env: gym.Env, agent: Any, seed: int) -> PopulationBestPolymerAgent:
    return PopulationBestPolymerAgent(env)


def oracle_agent(env: gym.Env, agent: Any, seed: int) -> OracleAgent:
    return OracleAgent(env)


def random_search_10_agent(env: gym.Env, agent: Any, seed: int) -> BlackBoxSearchAgent:
    return BlackBoxSearchAgent(env, "random", 10, seed)


def random_search_100_agent(env: gym.Env, agent: Any, seed: int) -> BlackBoxSearchAgent:
    return BlackBoxSearchAgent(env, "random", 100, seed)


def tpe_10_agent(env: gym.Env, agent: Any, seed: int) -> BlackBoxSearchAgent:
    return BlackBoxSearchAgent(env, "tpe", 10, seed)


def tpe_100_agent(env: gym.Env, agent: Any, seed: int) -> BlackBoxSearchAgent:
    return BlackBoxSearchAgent(env, "tpe", 100, seed)


def random_search_horizon_agent(env: gym.Env, agent: Any, seed: int) -> BlackBoxSearchAgent:
    """HydrogelSearch-v0: random search whose trials are the episode's designs."""
    return BlackBoxSearchAgent(env, "random", None, seed)


def tpe_horizon_agent(env: gym.Env, agent: Any, seed: int) -> BlackBoxSearchAgent:
    """HydrogelSearch-v0: TPE whose trials are the episode's designs."""
    return BlackBoxSearchAgent(env, "tpe", None, seed)
