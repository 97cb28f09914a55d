"""AnisotropicAMG-v0 supervised baseline: choose evolution's drop tolerance per level from each candidate's aggregation quality.

With ``evolution_tolerances``, every level's observation carries the C evolution strength
would pick with each tolerance and, per candidate, two lookahead features
(:mod:`envs.amg.candidates`: the weak approximation of the smoothed vectors by that
aggregation, and its coarsening ratio). :func:`fit_tolerance_scorer` solves every training
case with each tolerance on every level (full information, no exploration) and fits a ridge
model of the relative log work per digit (the quantity the env's reward is the log of) on
the level-0 features centred over the candidates, plus one bias per tolerance;
:class:`AMGToleranceScorerAgent` then takes, on every level, the candidate with the least
predicted work. It is the supervised answer to "can the candidates' features tell which
tolerance a case needs?" that a policy-gradient learner has to match from one scalar reward
per episode. Reference name: ``tolerance_scorer`` (multi-level mode, tolerances
:data:`SCORER_TOLERANCES`).

``python -m agents.baselines.amg_tolerance_scorer --family heterogeneous`` fits it (or reads the
cache) and prints the ``--hyperparams`` that warm-start ``policies.tolerance:ToleranceChoicePolicy``
at it (:func:`warm_start_kwargs`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyamg

from envs.amg import AnisotropicAMGEnv
from envs.amg.candidates import CANDIDATE_FEATURE_NAMES
from envs.amg.graph import FIRST_TOLERANCE_COLUMN
from envs.amg.solver import SolverFailure, solve
from envs.cache import cache_path, ensure_cached
from policies.tolerance import DEFAULT_CANDIDATE_FEATURE_SCALE

__all__ = ["AMGToleranceScorerAgent", "SCORER_TOLERANCES", "fit_tolerance_scorer", "scorer_warm_start",
           "tolerance_scorer_agent", "warm_start_kwargs", "main"]

SCORER_TOLERANCES = (3.0, 4.0, 5.0, 6.0, 8.0)
"""The candidate tolerances of the reference agent (the README's tolerance-policy command)."""
FIT_CASES = 256
"""Training cases the scorer is fitted on (all of the training split at 32 x 32)."""
FIT_GRID_SIZE = 32
RIDGE_PENALTY = 1.0
SCORER_CACHE_VERSION = 1
"""Bump when the fit (features, labels, cases, model) changes, so old cache files are not reused."""


class AMGToleranceScorerAgent:
    """Per level, the ``evolution_strong_eps{t}`` edges of the candidate with the least
    ``biases[k] + weights . (f_k - mean_k f)`` over the observation's ``candidate_features`` f."""

    def __init__(self, weights: list[float], biases: list[float]) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)  # (F,)
        self.biases = np.asarray(biases, dtype=np.float64)  # (K,)
        if self.weights.shape != (len(CANDIDATE_FEATURE_NAMES),) or self.biases.ndim != 1 or not self.biases.size:
            raise ValueError(f"weights must have {len(CANDIDATE_FEATURE_NAMES)} entries and biases >= 1, "
                             f"got {self.weights.shape} and {self.biases.shape}")

    def choice(self, observation: dict[str, np.ndarray]) -> int:
        """The index of the chosen candidate for one (unbatched) observation."""
        if "candidate_features" not in observation:
            raise ValueError("AMGToleranceScorerAgent needs AnisotropicAMG-v0(evolution_tolerances=[...]) observations")
        features = np.asarray(observation["candidate_features"], dtype=np.float64)  # (K, F)
        if features.shape != (self.biases.size, self.weights.size):
            raise ValueError(f"candidate_features must be ({self.biases.size}, {self.weights.size}), got {features.shape}")
        return int(np.argmin(self.biases + (features - features.mean(axis=0)) @ self.weights))

    def _select(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        """(E,) the chosen column's edges; padding edges have all-zero features, so they are never selected."""
        column = FIRST_TOLERANCE_COLUMN + self.choice(observation)
        return (np.asarray(observation["edge_features"])[:, column] > 0).astype(np.int8)

    def predict(
        self, observation: dict[str, np.ndarray], state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        if np.asarray(observation["node_features"]).ndim == 3:  # a batch: one observation at a time
            batch = [{key: value[i] for key, value in observation.items()} for i in range(len(observation["node_features"]))]
            return np.stack([self.predict(one)[0] for one in batch]), state
        return self._select(observation), state


def _training_data(problem_family: str, problem_seed: int, tolerances: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(cases, K, F) level-0 candidate features and (cases, K) log work per digit with each tolerance on every level."""
    env = AnisotropicAMGEnv(grid_size=FIT_GRID_SIZE, split="train", mode="multilevel", problem_family=problem_family,
                            problem_seed=problem_seed, evolution_features=True, evolution_tolerances=tolerances)
    features, labels = [], []
    for case in range(min(FIT_CASES, env.n_cases)):
        observation, _ = env.reset(seed=case, options={"case": case})
        matrix, rhs, row = env.problems[case].matrix(), env.rhs(case), []
        for tolerance in tolerances:
            try:
                row.append(np.log(solve(matrix, ("evolution", {"epsilon": tolerance}), rhs, env.max_iterations).work_per_digit))
            except SolverFailure:
                row.append(np.nan)
        features.append(observation["candidate_features"])
        labels.append(row)
        if (case + 1) % 64 == 0:
            print(f"tolerance scorer ({problem_family}): {case + 1} training cases solved", file=sys.stderr, flush=True)
    return np.asarray(features, dtype=np.float64), np.asarray(labels)


def _fit(features: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Ridge of the labels centred per case on [centred features, one-hot candidate]; cases with a failure are left out."""
    keep = np.isfinite(labels).all(axis=1)
    features, labels = features[keep], labels[keep]
    n_cases, n_candidates, n_features = features.shape
    centred = features - features.mean(axis=1, keepdims=True)
    design = np.concatenate([centred, np.broadcast_to(np.eye(n_candidates), (n_cases, n_candidates, n_candidates))], axis=-1)
    x = design.reshape(-1, n_features + n_candidates)
    y = (labels - labels.mean(axis=1, keepdims=True)).reshape(-1)
    beta = np.linalg.solve(x.T @ x + RIDGE_PENALTY * np.eye(x.shape[1]), x.T @ y)
    return {"weights": beta[:n_features].tolist(), "biases": beta[n_features:].tolist(), "cases": int(n_cases)}


def _scorer_cache_file(problem_family: str, problem_seed: int, tolerances: tuple[float, ...]) -> Path:
    fields = {"family": problem_family, "problem_seed": problem_seed, "tolerances": list(tolerances), "cases": FIT_CASES,
              "size": FIT_GRID_SIZE, "penalty": RIDGE_PENALTY, "pyamg": pyamg.__version__, "version": SCORER_CACHE_VERSION}
    tag = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return cache_path("amg", f"tolerance_scorer_{tag}.json")


@lru_cache(maxsize=16)
def fit_tolerance_scorer(problem_family: str, problem_seed: int = 0,
                         tolerances: tuple[float, ...] = SCORER_TOLERANCES) -> dict[str, list[float]]:
    """``{"weights": (F,), "biases": (K,), "cases": n}`` fitted on the training split at 32 x 32
    (about 30 s; once per machine: stored in the cache dir, atomic, shared by concurrent processes)."""
    def build(tmp: Path) -> None:
        tmp.write_text(json.dumps(_fit(*_training_data(problem_family, problem_seed, tolerances)), sort_keys=True))

    return json.loads(ensure_cached(_scorer_cache_file(problem_family, problem_seed, tuple(tolerances)), build).read_text())


def tolerance_scorer_agent(env: gym.Env, agent: Any, seed: int) -> AMGToleranceScorerAgent:
    """Reference "tolerance_scorer": :class:`AMGToleranceScorerAgent` fitted on the env's problem family."""
    core = env.unwrapped
    fitted = fit_tolerance_scorer(core.problem_family.value, core.problem_seed, tuple(core.evolution_tolerances))
    return AMGToleranceScorerAgent(fitted["weights"], fitted["biases"])


WARM_START_GAIN = 100.0
"""Nats of logit per unit of predicted log work in :func:`warm_start_kwargs` (0.01 -> 1 nat)."""


def warm_start_kwargs(fitted: dict[str, list[float]], candidate_feature_scale: float = DEFAULT_CANDIDATE_FEATURE_SCALE,
                      gain: float = WARM_START_GAIN) -> dict[str, list[float]]:
    """``ToleranceChoicePolicy`` kwargs whose logits are -gain x the scorer's predicted relative log
    work, so its most probable candidate is the scorer's choice."""
    return {"initial_logits": [round(-gain * b, 4) for b in fitted["biases"]],
            "candidate_linear_init": [round(-gain * w / candidate_feature_scale, 4) for w in fitted["weights"]]}


def scorer_warm_start(env_id: str, env_kwargs: dict[str, Any], policy_kwargs: dict[str, Any]) -> dict[str, list[float]]:
    """The training ymls' ``warm_start`` (:func:`train.runner.warm_started`): the
    :func:`warm_start_kwargs` of the scorer fitted on the family, problem draw and tolerances
    that ``env_kwargs`` train on (fitted once per machine, then read from the cache dir)."""
    core = AnisotropicAMGEnv(**env_kwargs)  # the env's own parsing and defaults of the three fields
    if not core.evolution_tolerances:
        raise ValueError(f"{env_id}: the tolerance scorer's warm start needs env_kwargs.evolution_tolerances "
                         f"(e.g. {list(SCORER_TOLERANCES)}) and evolution_features=true")
    fitted = fit_tolerance_scorer(core.problem_family.value, core.problem_seed, core.evolution_tolerances)
    scale = policy_kwargs.get("candidate_feature_scale", DEFAULT_CANDIDATE_FEATURE_SCALE)
    return warm_start_kwargs(fitted, scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fit the tolerance scorer; print the policy's warm-start --hyperparams.")
    parser.add_argument("--family", choices=["constant", "heterogeneous"], default="heterogeneous")
    parser.add_argument("--problem-seed", type=int, default=0)
    args = parser.parse_args(argv)
    fitted = fit_tolerance_scorer(args.family, args.problem_seed)
    kwargs = warm_start_kwargs(fitted)
    print(json.dumps(fitted), file=sys.stderr)
    # no spaces and no quotes, so that ``--hyperparams ... $(python -m agents.baselines.amg_tolerance_scorer)`` works
    print(" ".join(f"policy_kwargs.{key}={json.dumps(value).replace(' ', '')}" for key, value in kwargs.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
