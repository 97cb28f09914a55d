"""Exhaustive-search oracle: the best design score each patient can reach.

The original system had no yardstick; ``regret`` in the env's info needs one. For a
patient the oracle scores a grid over every polymer x coverage x formulation window
(stiffness and half-life log-spaced, conductivity and thickness linear), then polishes
the best grid points with a batched pattern search inside each polymer's window
(derivative-free, so the step-function safety penalties are handled exactly).
Results are cached per (model, reward weights, patient) in the cache dir.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from envs.cache import cache_path, is_complete, publish
from envs.hydrogel.library import COVERAGE_BORDER_FRACTION, N_POLYMERS, polymer_table
from envs.hydrogel.outcome import assess_designs
from envs.hydrogel.surrogate import OutcomeModel
from rewards.hydrogel import RewardWeights

__all__ = ["ORACLE_VERSION", "OptimalDesign", "DesignOracle"]

ORACLE_VERSION = "oracle-v2"
"""Part of the cache tag: changes with the grid, the polish or the stored fields."""

_GRID = {"stiffness": 8, "half_life": 6, "conductivity": 4, "thickness": 5}


@dataclass(frozen=True)
class OptimalDesign:
    """The best design found for one patient and its design score, plus the best design
    of every polymer (``by_polymer[p] = (score, formulation, coverage)``): what the
    population-best-polymer baseline and the best-vs-second-polymer gap need."""

    design_score: float
    polymer: int
    formulation: tuple[float, float, float, float]
    coverage: int
    by_polymer: tuple[tuple[float, tuple[float, float, float, float], int], ...] = ()

    @property
    def polymer_scores(self) -> np.ndarray:
        """(24,) best design score reachable with each polymer."""
        return np.array([entry[0] for entry in self.by_polymer])


def _axis(low: float, high: float, n: int, log: bool) -> np.ndarray:
    if high <= low:
        return np.array([low])
    return np.geomspace(low, high, n) if log else np.linspace(low, high, n)


def _design_grid(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All grid designs: polymer (G,), formulation (G, 4), coverage (G,)."""
    polymers, formulations, coverages = [], [], []
    for p in range(N_POLYMERS):
        axes = [
            _axis(low[p, 0], high[p, 0], _GRID["stiffness"], log=True),
            _axis(low[p, 1], high[p, 1], _GRID["half_life"], log=True),
            _axis(low[p, 2], high[p, 2], _GRID["conductivity"], log=False),
            _axis(low[p, 3], high[p, 3], _GRID["thickness"], log=False),
        ]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 4)  # (M, 4)
        for c in range(len(COVERAGE_BORDER_FRACTION)):
            polymers.append(np.full(len(mesh), p))
            formulations.append(mesh)
            coverages.append(np.full(len(mesh), c))
    return np.concatenate(polymers), np.concatenate(formulations), np.concatenate(coverages)


def _design_from_json(value: dict) -> OptimalDesign:
    by_polymer = tuple((float(s), tuple(f), int(c)) for s, f, c in value.get("by_polymer", ()))
    return OptimalDesign(value["design_score"], value["polymer"], tuple(value["formulation"]), value["coverage"], by_polymer)


class DesignOracle:
    """Best achievable design score per patient for one outcome model and reward weights.

    Args:
        model: the outcome model the env scores with.
        weights: the env's reward weights.
        cache_key: identifies a deterministic model on disk (``model.cache_key`` when it
            has one); ``None`` keeps results in memory only.
        cache_dir: overrides the cache root.
        source: names the model in errors about its output.
        refine_top: grid points polished per (polymer, coverage) and patient.
    """

    def __init__(
        self,
        model: OutcomeModel,
        weights: RewardWeights,
        cache_key: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        refine_top: int = 1,
        refine_iterations: int = 40,
        patients_per_batch: int = 32,
        source: str = "outcome model",
    ) -> None:
        self.model = model
        self.source = source
        self.weights = weights
        table = polymer_table()
        self._low, self._high = table["low"], table["high"]
        self._grid = tuple(torch.as_tensor(a) for a in _design_grid(self._low.numpy(), self._high.numpy()))
        self._memory: dict[str, OptimalDesign] = {}
        self._file = None
        if cache_key is not None:
            tag = hashlib.sha1(json.dumps([cache_key, ORACLE_VERSION, asdict(weights)], sort_keys=True).encode()).hexdigest()[:12]
            self._file = cache_path("hydrogel", f"oracle_{tag}.json", override=cache_dir)
            if is_complete(self._file):
                stored = json.loads(self._file.read_text())
                self._memory = {k: _design_from_json(v) for k, v in stored.items()}
        self.refine_top = refine_top
        self.refine_iterations = refine_iterations
        self.patients_per_batch = patients_per_batch

    @staticmethod
    def patient_key(patient: np.ndarray) -> str:
        """Stable key of a patient's features (rounded to 1e-6)."""
        return hashlib.sha1(np.round(np.asarray(patient, dtype=np.float64), 6).tobytes()).hexdigest()[:16]

    def best(self, patient: np.ndarray) -> OptimalDesign:
        """The best design for one patient (11,), computed once then cached."""
        return self.precompute(np.asarray(patient).reshape(1, -1))[0]

    def precompute(self, patients: np.ndarray) -> list[OptimalDesign]:
        """Best designs for (P, 11) patients; misses are searched in batches and the cache
        file is rewritten once."""
        keys = [self.patient_key(p) for p in patients]
        missing = sorted({key: i for i, key in enumerate(keys) if key not in self._memory}.values())
        for start in range(0, len(missing), self.patients_per_batch):
            chunk = missing[start:start + self.patients_per_batch]
            for i, design in zip(chunk, self._search(np.asarray(patients[chunk], dtype=np.float32)), strict=True):
                self._memory[keys[i]] = design
        if missing and self._file is not None:
            payload = {k: asdict(v) for k, v in self._memory.items()}
            tmp = self._file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(payload))
            publish(tmp, self._file)
        return [self._memory[key] for key in keys]

    def _score(self, patients: Tensor, polymer: Tensor, formulation: Tensor, coverage: Tensor) -> Tensor:
        """Design scores of (B,) designs for (B, 11) patients."""
        batch = polymer.shape[0]
        assessment = assess_designs(
            patients, polymer, formulation.float(), coverage, torch.zeros(batch, dtype=torch.bool),
            model=self.model, window_low=self._low, window_high=self._high, weights=self.weights,
            source=self.source,
        )
        return assessment.design_score  # (B,)

    @property
    def grid(self) -> tuple[Tensor, Tensor, Tensor]:
        """The search grid: polymer (G,) long, formulation (G, 4) physical, coverage (G,) long."""
        return self._grid

    def grid_scores(self, patients: np.ndarray) -> Tensor:
        """Design scores (P, G) of every grid design for (P, 11) patients."""
        x = torch.as_tensor(np.asarray(patients, dtype=np.float32))  # (P, 11)
        n_patients = x.shape[0]
        polymer, formulation, coverage = self._grid  # (G,), (G, 4), (G,)
        n_grid = polymer.shape[0]
        scores = torch.empty(n_patients, n_grid)  # (P, G)
        chunk = max(1, 262_144 // n_patients)
        for i in range(0, n_grid, chunk):
            g = slice(i, i + chunk)
            m = polymer[g].shape[0]
            scores[:, g] = self._score(
                x.repeat_interleave(m, 0), polymer[g].repeat(n_patients), formulation[g].repeat(n_patients, 1),
                coverage[g].repeat(n_patients),
            ).reshape(n_patients, m)
        return scores

    def _search(self, patients: np.ndarray) -> list[OptimalDesign]:
        """Grid search then pattern-search polish for (P, 11) patients at once."""
        x = torch.as_tensor(patients)  # (P, 11)
        n_patients = x.shape[0]
        polymer, formulation, coverage = self._grid  # (G,), (G, 4), (G,)
        scores = self.grid_scores(patients)  # (P, G)
        # The best ``refine_top`` grid points of every (polymer, coverage) block: the polish
        # moves the formulation only, so every block gets its own start.
        top_list = []
        block = polymer * len(COVERAGE_BORDER_FRACTION) + coverage  # (G,)
        for b in range(N_POLYMERS * len(COVERAGE_BORDER_FRACTION)):
            members = torch.nonzero(block == b).squeeze(1)  # (M_b,)
            k_p = min(self.refine_top, members.numel())
            top_list.append(members[torch.topk(scores[:, members], k_p, dim=1).indices])  # (P, k_p)
        top = torch.cat(top_list, dim=1)  # (P, K)
        k = top.shape[1]
        best_scores = torch.gather(scores, 1, top)  # (P, K)
        top = top.reshape(-1)  # (P*K,)
        best_polymer, best_cov = polymer[top], coverage[top]  # (P*K,)
        best_form = formulation[top].double()  # (P*K, 4)
        best_scores = best_scores.reshape(-1)
        owners = x.repeat_interleave(k, 0)  # (P*K, 11)
        # Pattern search in log space for stiffness / half-life, linear for the rest.
        lo, hi = self._low[best_polymer].double(), self._high[best_polymer].double()  # (P*K, 4)
        step = torch.tensor([0.25, 0.25, 0.1, 0.3], dtype=torch.float64).expand_as(best_form).clone()
        directions = torch.cat([torch.eye(4), -torch.eye(4)]).double()  # (8, 4)
        log_dims = torch.tensor([True, True, False, False])
        rows = torch.arange(best_form.shape[0])
        for _ in range(self.refine_iterations):
            moves = directions[None] * step[:, None, :]  # (P*K, 8, 4)
            candidates = torch.where(log_dims, best_form[:, None, :] * torch.exp(moves), best_form[:, None, :] + moves)
            candidates = torch.minimum(torch.maximum(candidates, lo[:, None]), hi[:, None])  # (P*K, 8, 4)
            cand_scores = self._score(
                owners.repeat_interleave(8, 0), best_polymer.repeat_interleave(8), candidates.reshape(-1, 4),
                best_cov.repeat_interleave(8),
            ).reshape(-1, 8)  # (P*K, 8)
            gain, which = cand_scores.max(dim=1)  # (P*K,)
            improved = gain > best_scores
            best_form = torch.where(improved[:, None], candidates[rows, which], best_form)
            best_scores = torch.where(improved, gain, best_scores)
            step = torch.where(improved[:, None], step, step * 0.6)
        results = []
        per_patient = best_scores.reshape(n_patients, k)  # (P, K)
        for i in range(n_patients):
            rows_i = torch.arange(i * k, (i + 1) * k)
            by_polymer = []
            for p in range(N_POLYMERS):
                mine = rows_i[best_polymer[rows_i] == p]
                j = int(mine[best_scores[mine].argmax()])
                by_polymer.append((float(best_scores[j]), tuple(float(v) for v in best_form[j].float()), int(best_cov[j])))
            w = int(rows_i[per_patient[i].argmax()])
            results.append(
                OptimalDesign(
                    design_score=float(best_scores[w]),
                    polymer=int(best_polymer[w]),
                    formulation=tuple(float(v) for v in best_form[w].float()),
                    coverage=int(best_cov[w]),
                    by_polymer=tuple(by_polymer),
                )
            )
        return results
