"""Designs for one patient: sample them from a policy, score them, keep the best distinct ones.

Shared by per-patient refinement (:mod:`agents.patient_refinement`) and mass candidate
generation (:mod:`agents.candidate_generation`), the seed's section 5. A batch of designs
is a (B, 6) tensor in the flat layout of ``envs.hydrogel.wrappers.HybridBoxAction``
(polymer, stiffness, half-life, conductivity, thickness, coverage).

Two designs are *the same* when they agree on polymer and coverage and on the
formulation at the precision a lab would make it (:data:`DESIGN_RESOLUTION`: 0.1 kPa,
1 day, 0.01 S/m, 0.1 mm); :class:`TopDesigns` keeps the best-scoring of each and ranks
by reward, ties broken by the order the designs were drawn in, so the same draws give
the same table whatever the batch size or the machine that scored them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from envs.hydrogel.library import COVERAGE_BORDER_FRACTION, FORMULATION_NAMES, N_POLYMERS, POLYMERS
from envs.hydrogel.outcome import Assessment
from envs.hydrogel.problem import DesignProblem
from envs.hydrogel.wrappers import COVERAGE_SLOT, FORMULATION_SLOTS, POLYMER_SLOT

__all__ = [
    "DESIGN_RESOLUTION", "FORMULATION_COLUMNS", "ScoredDesigns", "TopDesigns", "DesignSummary",
    "patient_observations", "sample_designs", "score_designs", "batch_seed",
]

DESIGN_RESOLUTION = np.array([0.1, 1.0, 0.01, 0.1])
"""Formulation precision (kPa, days, S/m, mm) below which two designs are the same."""
FORMULATION_COLUMNS = ("stiffness_kPa", "degradation_days", "conductivity_S_m", "thickness_mm")
"""Table columns of the four formulation values, in :data:`FORMULATION_NAMES` order."""
assert len(FORMULATION_COLUMNS) == len(FORMULATION_NAMES)


def batch_seed(seed: int, batch: int) -> int:
    """The seed of batch ``batch`` of a job seeded ``seed`` (independent of who runs it)."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def patient_observations(problem: DesignProblem, patient: int, n: int) -> Tensor:
    """(n, 13) copies of the first observation of ``patient`` (no design yet)."""
    index = torch.full((n,), patient, dtype=torch.long, device=problem.device)
    no_design = torch.full((n,), float("nan"), device=problem.device)
    return problem.observations(index, no_design, torch.zeros_like(no_design))


def sample_designs(policy: Any, observations: Tensor, seed: int | None = None) -> Tensor:
    """(B, 6) designs drawn from ``policy`` (an SB3 policy) for (B, 13) observations.

    With ``seed`` the draw uses its own RNG stream (the global one is left untouched).
    """
    observations = observations.to(policy.device)
    with torch.no_grad():
        if seed is None:
            return policy.get_distribution(observations).get_actions(deterministic=False)
        with torch.random.fork_rng(devices=[] if policy.device.type == "cpu" else [policy.device]):
            torch.manual_seed(seed)
            return policy.get_distribution(observations).get_actions(deterministic=False)


@dataclass
class ScoredDesigns:
    """B designs with everything the outcome model said about them (NumPy, host memory)."""

    designs: np.ndarray  # (B, 6) float32, flat layout
    reward: np.ndarray  # (B,) float64, the env's reward of the design (novelty bonus included)
    columns: dict[str, np.ndarray]  # predictions, reward components, flags, regret: (B,) each
    order: np.ndarray  # (B,) int64 draw order (ties are broken by it)

    def __len__(self) -> int:
        return int(self.reward.shape[0])

    def take(self, index: np.ndarray) -> ScoredDesigns:
        return ScoredDesigns(
            self.designs[index], self.reward[index], {k: v[index] for k, v in self.columns.items()}, self.order[index]
        )

    @staticmethod
    def concat(parts: list[ScoredDesigns]) -> ScoredDesigns:
        return ScoredDesigns(
            np.concatenate([p.designs for p in parts]), np.concatenate([p.reward for p in parts]),
            {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns},
            np.concatenate([p.order for p in parts]),
        )

    def keys(self) -> np.ndarray:
        """(B,) int64 identity at :data:`DESIGN_RESOLUTION` (polymer, coverage, formulation)."""
        steps = np.rint(self.designs[:, FORMULATION_SLOTS].astype(np.float64) / DESIGN_RESOLUTION).astype(np.int64)
        key = np.rint(self.designs[:, POLYMER_SLOT]).astype(np.int64) * 4 + np.rint(self.designs[:, COVERAGE_SLOT]).astype(np.int64)
        for column, size in zip(steps.T, (2**12, 2**9, 2**8, 2**7), strict=True):  # 1000, 180, 100, 50 steps
            key = key * size + column
        return key


def score_designs(problem: DesignProblem, patient: int, designs: Tensor, first_order: int = 0) -> ScoredDesigns:
    """Score (B, 6) designs for ``patient`` with the problem's outcome model (one call)."""
    n = designs.shape[0]
    designs = designs.to(problem.device)
    index = torch.full((n,), patient, dtype=torch.long, device=problem.device)
    polymer = torch.round(designs[:, POLYMER_SLOT]).long().clamp(0, N_POLYMERS - 1)
    coverage = torch.round(designs[:, COVERAGE_SLOT]).long().clamp(0, len(COVERAGE_BORDER_FRACTION) - 1)
    novel = torch.ones(n, dtype=torch.bool, device=problem.device)
    assessment: Assessment = problem.assess(index, polymer, designs[:, FORMULATION_SLOTS], coverage, novel)
    info = problem.info_arrays(assessment, index)
    columns = {k: v.detach().cpu().numpy() for k, v in info.items() if v.ndim == 1 and k != "oracle_polymer"}
    used = assessment.formulation_used.detach().cpu().numpy().astype(np.float32)
    flat = designs.detach().cpu().numpy().astype(np.float32).copy()
    flat[:, FORMULATION_SLOTS] = used  # what was scored (the polymer's window), not the raw sample
    reward = assessment.reward.detach().cpu().numpy().astype(np.float64)
    return ScoredDesigns(flat, reward, columns, np.arange(first_order, first_order + n, dtype=np.int64))


@dataclass
class TopDesigns:
    """The ``k`` best distinct designs seen so far (module doc), in constant memory."""

    k: int = 100
    best: ScoredDesigns | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"top-k must be an integer >= 1, got {self.k!r}")

    def update(self, scored: ScoredDesigns) -> None:
        """Merge a batch; only designs that can enter the table are looked at."""
        if self.best is not None and len(self.best) >= self.k:
            threshold = self.best.reward[-1]
            scored = scored.take(np.flatnonzero(scored.reward >= threshold))
            if len(scored) == 0:
                return
        pool = scored if self.best is None else ScoredDesigns.concat([self.best, scored])
        ranked = np.lexsort((pool.order, -pool.reward))  # best first, earlier draw first on ties
        _, first = np.unique(pool.keys()[ranked], return_index=True)  # best of each distinct design
        keep = ranked[np.sort(first)][: self.k]
        self.best = pool.take(keep)

    def rows(self, patient_id: str) -> Iterator[dict[str, Any]]:
        """Ranked table rows: design in physical units, then every prediction and score."""
        if self.best is None:
            return
        for rank in range(len(self.best)):
            design = self.best.designs[rank]
            row: dict[str, Any] = {"rank": rank + 1, "patient_id": patient_id,
                                   "polymer": POLYMERS[int(round(design[POLYMER_SLOT]))].name}
            row.update({c: float(v) for c, v in zip(FORMULATION_COLUMNS, design[FORMULATION_SLOTS], strict=True)})
            row["coverage_border_fraction"] = COVERAGE_BORDER_FRACTION[int(round(design[COVERAGE_SLOT]))]
            row["reward"] = float(self.best.reward[rank])
            row.update({k: _plain(v[rank]) for k, v in self.best.columns.items()})
            row["draw"] = int(self.best.order[rank])
            yield row

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to save (``np.savez``) and :meth:`from_state` back."""
        if self.best is None:
            return {"k": np.array(self.k)}
        out = {"k": np.array(self.k), "designs": self.best.designs, "reward": self.best.reward, "order": self.best.order}
        out.update({f"col_{name}": value for name, value in self.best.columns.items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> TopDesigns:
        top = cls(int(state["k"]))
        if "designs" in state:
            columns = {name[4:]: np.asarray(v) for name, v in state.items() if name.startswith("col_")}
            top.best = ScoredDesigns(np.asarray(state["designs"]), np.asarray(state["reward"]), columns,
                                     np.asarray(state["order"]))
        return top


def _plain(value: Any) -> Any:
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    return float(value)


@dataclass
class DesignSummary:
    """Running statistics of every design scored (count, mean, std, min, max per column,
    optimal / therapeutic rates, per-polymer share and mean reward) in constant memory."""

    count: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    squares: dict[str, float] = field(default_factory=dict)
    minima: dict[str, float] = field(default_factory=dict)
    maxima: dict[str, float] = field(default_factory=dict)
    polymer_count: list[int] = field(default_factory=lambda: [0] * N_POLYMERS)
    polymer_reward: list[float] = field(default_factory=lambda: [0.0] * N_POLYMERS)

    def update(self, scored: ScoredDesigns) -> None:
        self.count += len(scored)
        for name, values in {"reward": scored.reward, **scored.columns}.items():
            values = values.astype(np.float64)
            self.sums[name] = self.sums.get(name, 0.0) + float(values.sum())
            self.squares[name] = self.squares.get(name, 0.0) + float(np.square(values).sum())
            self.minima[name] = min(self.minima.get(name, np.inf), float(values.min()))
            self.maxima[name] = max(self.maxima.get(name, -np.inf), float(values.max()))
        polymers = np.rint(scored.designs[:, POLYMER_SLOT]).astype(np.int64)
        counts = np.bincount(polymers, minlength=N_POLYMERS)
        rewards = np.bincount(polymers, weights=scored.reward, minlength=N_POLYMERS)
        self.polymer_count = [a + int(b) for a, b in zip(self.polymer_count, counts, strict=True)]
        self.polymer_reward = [a + float(b) for a, b in zip(self.polymer_reward, rewards, strict=True)]

    def merge(self, other: DesignSummary) -> None:
        """Add another summary's designs (the same arithmetic as :meth:`update` on them)."""
        self.count += other.count
        for name in other.sums:
            self.sums[name] = self.sums.get(name, 0.0) + other.sums[name]
            self.squares[name] = self.squares.get(name, 0.0) + other.squares[name]
            self.minima[name] = min(self.minima.get(name, np.inf), other.minima[name])
            self.maxima[name] = max(self.maxima.get(name, -np.inf), other.maxima[name])
        self.polymer_count = [a + b for a, b in zip(self.polymer_count, other.polymer_count, strict=True)]
        self.polymer_reward = [a + b for a, b in zip(self.polymer_reward, other.polymer_reward, strict=True)]

    def report(self) -> dict[str, Any]:
        """JSON-ready statistics."""
        if self.count == 0:
            return {"n_designs": 0}
        stats = {}
        for name in self.sums:
            mean = self.sums[name] / self.count
            var = max(self.squares[name] / self.count - mean * mean, 0.0)
            stats[name] = {"mean": mean, "std": var**0.5, "min": self.minima[name], "max": self.maxima[name]}
        polymers = {
            POLYMERS[k].name: {"share": n / self.count, "mean_reward": self.polymer_reward[k] / n}
            for k, n in sorted(enumerate(self.polymer_count), key=lambda kv: -kv[1]) if n
        }
        return {"n_designs": self.count, "columns": stats, "polymers": polymers}

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sums": self.sums, "squares": self.squares, "minima": self.minima,
                "maxima": self.maxima, "polymer_count": self.polymer_count, "polymer_reward": self.polymer_reward}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DesignSummary:
        return cls(**data)
