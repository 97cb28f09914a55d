"""AnisotropicAMG-v0's per-case references over evolution's drop tolerance: the search and the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from agents.baselines.amg import SEARCH_RHS_SEED_OFFSET, SEARCH_TOLERANCES, tolerance_search_baselines
from envs.amg.env import AnisotropicAMGEnv
from envs.amg.problems import right_hand_side
from envs.amg.solver import solve


def test_the_search_keeps_the_tolerance_best_on_its_probe_and_the_oracle_bounds_it() -> None:
    env = AnisotropicAMGEnv(grid_size=16, split="test", problem_family="heterogeneous")
    picked_other_than_default = 0
    for case in range(4):
        matrix = env.problems[case].matrix()
        probe = right_hand_side(env.problem_seed + SEARCH_RHS_SEED_OFFSET, env.split, case, env.graph.n_nodes)
        assert not np.array_equal(probe, env.rhs(case))  # never the right-hand side it is scored on
        scored = [solve(matrix, ("evolution", {"epsilon": t}), env.rhs(case)) for t in SEARCH_TOLERANCES]
        probed = [solve(matrix, ("evolution", {"epsilon": t}), probe).work for t in SEARCH_TOLERANCES]
        records = tolerance_search_baselines(env, case)
        kept = scored[int(np.argmin(probed))]
        assert records["evolution_tolerance_search"]["work"] == kept.work
        assert records["evolution_tolerance_search"]["pcg_iterations"] == kept.pcg_iterations
        assert records["evolution_tolerance_oracle"]["work"] == min(r.work for r in scored)
        default = scored[SEARCH_TOLERANCES.index(4.0)]  # PyAMG's evolution default
        assert records["evolution_tolerance_oracle"]["work"] <= default.work
        assert records["evolution_tolerance_oracle"]["reward"] == pytest.approx(
            np.log(env.baseline(case).work_per_digit / min(scored, key=lambda r: r.work).work_per_digit))
        picked_other_than_default += int(np.argmin(probed)) != SEARCH_TOLERANCES.index(4.0)
    assert picked_other_than_default >= 1  # a per-case choice, not evolution's default under another name
