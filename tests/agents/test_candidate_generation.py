"""Candidate generation and refinement for one patient (the seed's section 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.candidate_generation import GenerationConfig, GenerationState, generate_batch, generate_candidates
from agents.hydrogel_designs import ScoredDesigns, TopDesigns
from agents.patient_refinement import RefinementConfig, refine_for_patient
from envs.hydrogel.problem import DesignProblem
from envs.hydrogel.sb3_vec import HydrogelSB3VecEnv
from policies.hybrid import HybridActorCriticPolicy

SMALL = dict(n_synthetic=20)


@pytest.fixture(scope="module")
def problem() -> DesignProblem:
    return DesignProblem(split="test", **SMALL)


@pytest.fixture(scope="module")
def policy() -> HybridActorCriticPolicy:
    torch.manual_seed(0)
    env = HydrogelSB3VecEnv(2, **SMALL)
    return HybridActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, net_arch=[32])


def _brute_force_top(parts: list[ScoredDesigns], k: int) -> list[tuple[float, int]]:
    """Best design of each distinct key, ranked by (reward desc, draw asc), the slow way."""
    every = ScoredDesigns.concat(parts)
    best: dict[int, tuple[float, int]] = {}
    for key, reward, order in zip(every.keys().tolist(), every.reward.tolist(), every.order.tolist(), strict=True):
        if key not in best or (-reward, order) < (-best[key][0], best[key][1]):
            best[key] = (reward, order)
    return sorted(best.values(), key=lambda ro: (-ro[0], ro[1]))[:k]


def test_the_streamed_table_is_the_exact_top_k_of_every_design(problem, policy) -> None:
    config = GenerationConfig(n=5000, batch_size=1024, top_k=50, seed=3)
    state = generate_candidates(policy, problem, 1, config)
    parts = [generate_batch(policy, problem, 1, config, b) for b in range(config.n_batches)]
    assert sum(len(p) for p in parts) == 5000 == state.summary.count
    expected = _brute_force_top(parts, 50)
    got = list(zip(state.top.best.reward.tolist(), state.top.best.order.tolist(), strict=True))
    assert got == expected
    assert len(set(state.top.best.keys().tolist())) == 50  # distinct designs
    every_reward = np.concatenate([p.reward for p in parts])
    report = state.summary.report()
    assert report["columns"]["reward"]["mean"] == pytest.approx(every_reward.mean(), rel=1e-9)
    assert report["columns"]["reward"]["max"] == pytest.approx(every_reward.max())
    assert sum(p["share"] for p in report["polymers"].values()) == pytest.approx(1.0)


def test_generation_is_reproducible_and_resumes_to_the_same_result(problem, policy, tmp_path) -> None:
    config = GenerationConfig(n=4000, batch_size=512, top_k=20, seed=1, checkpoint_every=1024)
    whole = generate_candidates(policy, problem, 0, config)
    assert np.array_equal(whole.top.best.designs, generate_candidates(policy, problem, 0, config).top.best.designs)

    class Killed(Exception):
        pass

    def kill_after_five(state: GenerationState, rows: int) -> None:
        if state.next_batch == 5:
            raise Killed

    checkpoint = tmp_path / "state.npz"
    with pytest.raises(Killed):
        generate_candidates(policy, problem, 0, config, checkpoint, {"patient": "p0"}, on_batch=kill_after_five)
    saved = GenerationState.load(checkpoint, config, {"patient": "p0"})
    assert saved is not None and saved.next_batch == 4  # the last checkpoint before the kill
    resumed = generate_candidates(policy, problem, 0, config, checkpoint, {"patient": "p0"})
    assert resumed.summary.count == 4000
    assert np.array_equal(resumed.top.best.designs, whole.top.best.designs)
    assert np.array_equal(resumed.top.best.reward, whole.top.best.reward)
    with pytest.raises(ValueError, match="another generation job"):
        generate_candidates(policy, problem, 1, config, checkpoint, {"patient": "p1"})


def test_a_different_seed_draws_different_designs(problem, policy) -> None:
    a = generate_batch(policy, problem, 0, GenerationConfig(n=256, batch_size=256, seed=0), 0)
    b = generate_batch(policy, problem, 0, GenerationConfig(n=256, batch_size=256, seed=1), 0)
    assert not np.array_equal(a.designs, b.designs)


def test_top_designs_rejects_a_bad_k() -> None:
    with pytest.raises(ValueError, match="top-k"):
        TopDesigns(0)


def test_refinement_improves_the_clone_and_leaves_the_base_policy_alone(problem, policy) -> None:
    """The seed's listing took log-probs under no_grad, so its policy never moved."""
    before = [p.detach().clone() for p in policy.parameters()]
    config = RefinementConfig(iterations=40, n_parallel=256, learning_rate=3e-3, top_k=10, seed=0)
    result = refine_for_patient(policy, problem, 2, config)
    for p, q in zip(policy.parameters(), before, strict=True):
        assert torch.equal(p, q)
    first = np.mean([r["mean_reward"] for r in result.history[:5]])
    last = np.mean([r["mean_reward"] for r in result.history[-5:]])
    assert last > first + 2.0, (first, last)  # a policy that does not learn stays at its start
    assert len(result.top.best) == 10 and np.all(np.diff(result.top.best.reward) <= 0)
    with pytest.raises(ValueError, match="iterations"):
        RefinementConfig(iterations=0)
