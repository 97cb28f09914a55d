"""Per-row top-k without replacement: exact probabilities against brute force, and the
properties the source system got wrong (k per row, no non-candidates, logits matter)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch as th

from policies.distributions import (
    PerRowBernoulliDistribution,
    PerRowTopKDistribution,
    bernoulli_entropy,
    bernoulli_log_prob,
    gumbel_topk,
    topk_mode,
    topk_set_entropy,
    topk_set_log_prob,
)


def _brute_force_set_probs(logits: list[float], valid: list[bool], k: int) -> dict[frozenset, float]:
    """P(set) by enumerating every ordered draw without replacement."""
    weights = [math.exp(v) if ok else 0.0 for v, ok in zip(logits, valid)]
    candidates = [i for i, ok in enumerate(valid) if ok]
    k_row = min(k, len(candidates))
    probs: dict[frozenset, float] = {}
    for order in itertools.permutations(candidates, k_row):
        p, remaining = 1.0, sum(weights)
        for i in order:
            p *= weights[i] / remaining
            remaining -= weights[i]
        probs[frozenset(order)] = probs.get(frozenset(order), 0.0) + p
    return probs


def _inputs(seed: int = 0) -> tuple[th.Tensor, th.Tensor]:
    gen = th.Generator().manual_seed(seed)
    logits = 2.0 * th.randn(2, 3, 6, generator=gen, dtype=th.float64)
    mask = th.ones(2, 3, 6, dtype=th.bool)
    mask[0, 1, [0, 4]] = False  # 4 candidates
    mask[1, 2, 2:] = False  # 2 candidates: fewer than k
    return logits, mask


@pytest.mark.parametrize("k", [1, 3])
def test_set_log_prob_matches_brute_force(k: int) -> None:
    logits, mask = _inputs()
    for b, r in itertools.product(range(2), range(3)):
        probs = _brute_force_set_probs(logits[b, r].tolist(), mask[b, r].tolist(), k)
        assert sum(probs.values()) == pytest.approx(1.0)
        for chosen, p in probs.items():
            selection = th.zeros_like(mask)
            selection[b, r, list(chosen)] = True
            for other_b, other_r in itertools.product(range(2), range(3)):  # fill other rows validly
                if (other_b, other_r) != (b, r):
                    selection[other_b, other_r] = topk_mode(logits, mask, k)[other_b, other_r]
            log_p = topk_set_log_prob(logits, mask, selection, k)[b, r]
            assert float(log_p.exp()) == pytest.approx(p, rel=1e-9)


def test_entropy_is_exact_and_differentiable() -> None:
    logits, mask = _inputs(1)
    logits.requires_grad_(True)
    k = 3
    entropy = topk_set_entropy(logits, mask, k)
    for b, r in itertools.product(range(2), range(3)):
        probs = _brute_force_set_probs(logits[b, r].tolist(), mask[b, r].tolist(), k)
        expected = -sum(p * math.log(p) for p in probs.values() if p > 0)
        assert float(entropy[b, r].detach()) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    entropy.sum().backward()
    assert logits.grad is not None and bool(logits.grad[mask].abs().sum() > 0)
    assert bool((logits.grad[~mask] == 0).all())


def test_uniform_logits_reach_maximum_entropy() -> None:
    logits, mask = th.zeros(1, 1, 8), th.ones(1, 1, 8, dtype=th.bool)
    assert float(topk_set_entropy(logits, mask, 4)) == pytest.approx(math.log(math.comb(8, 4)), rel=1e-5)


def test_monte_carlo_entropy_estimator_matches_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the estimator used when enumeration is infeasible and compare with the DP."""
    import policies.distributions as dist_module

    gen = th.Generator().manual_seed(3)
    logits = th.randn(1, 2, 8, generator=gen, dtype=th.float64, requires_grad=True)
    mask = th.ones(1, 2, 8, dtype=th.bool)
    exact = topk_set_entropy(logits, mask, 3)
    (exact_grad,) = th.autograd.grad(exact.sum(), logits)
    monkeypatch.setattr(dist_module, "EXACT_ENTROPY_MAX_SUBSETS", 0)
    estimate = topk_set_entropy(logits, mask, 3, n_samples=20000, generator=gen)
    assert th.allclose(estimate.detach(), exact.detach(), rtol=0.02)
    (estimate_grad,) = th.autograd.grad(estimate.sum(), logits)
    cosine = th.nn.functional.cosine_similarity(estimate_grad.flatten(), exact_grad.flatten(), dim=0)
    assert float(cosine) > 0.9


def test_gumbel_topk_selects_exactly_k_candidates_per_row() -> None:
    logits, mask = _inputs()
    gen = th.Generator().manual_seed(0)
    for _ in range(20):
        selection = gumbel_topk(logits, mask, 3, generator=gen)
        assert not bool((selection & ~mask).any())
        assert selection.sum(-1).tolist() == mask.sum(-1).clamp(max=3).tolist()


def test_non_candidate_with_huge_logit_is_never_selected() -> None:
    logits = th.zeros(1, 1, 5)
    logits[0, 0, 2] = 1e6
    mask = th.ones(1, 1, 5, dtype=th.bool)
    mask[0, 0, 2] = False
    assert not bool(gumbel_topk(logits, mask, 2)[0, 0, 2])
    assert not bool(topk_mode(logits, mask, 2)[0, 0, 2])


def test_sampling_frequencies_follow_the_logits() -> None:
    logits = th.tensor([[[3.0, 0.0, 0.0, -3.0]]], dtype=th.float64)
    mask = th.ones(1, 1, 4, dtype=th.bool)
    gen = th.Generator().manual_seed(0)
    n = 20000
    samples = gumbel_topk(logits.expand(n, 1, 4), mask.expand(n, 1, 4), 2, generator=gen)
    counts: dict[frozenset, int] = {}
    for row in samples[:, 0].tolist():
        key = frozenset(i for i, v in enumerate(row) if v)
        counts[key] = counts.get(key, 0) + 1
    for chosen, p in _brute_force_set_probs(logits[0, 0].tolist(), [True] * 4, 2).items():
        assert counts.get(chosen, 0) / n == pytest.approx(p, abs=0.015)


def test_selection_changes_with_the_logits() -> None:
    mask = th.ones(1, 2, 8, dtype=th.bool)
    low = th.arange(8.0).expand(1, 2, 8)
    high = low.flip(-1)
    assert not th.equal(topk_mode(low, mask, 3), topk_mode(high, mask, 3))
    assert topk_mode(low, mask, 3)[0, 0].nonzero().flatten().tolist() == [5, 6, 7]


def test_selection_outside_the_support_is_rejected() -> None:
    logits, mask = _inputs()
    wrong = topk_mode(logits, mask, 3).clone()
    wrong[0, 0] = True  # 6 > k selected
    with pytest.raises(ValueError, match="exactly min"):
        topk_set_log_prob(logits, mask, wrong, 3)


def test_distribution_classes_follow_sb3_vocabulary() -> None:
    logits, mask = _inputs(2)
    dist = PerRowTopKDistribution(k=3).proba_distribution(logits, mask)
    actions = dist.sample()
    assert actions.shape == logits.shape and actions.dtype == logits.dtype
    assert th.allclose(dist.log_prob(actions), topk_set_log_prob(logits, mask, actions, 3).sum(-1))
    assert dist.entropy().shape == (2,)
    assert th.equal(dist.mode().bool(), topk_mode(logits, mask, 3))
    bern = PerRowBernoulliDistribution().proba_distribution(logits, mask)
    sample = bern.sample()
    assert not bool((sample.bool() & ~mask).any())
    assert th.allclose(bern.log_prob(sample), bernoulli_log_prob(logits, mask, sample).sum(-1))
    p = th.sigmoid(logits)
    expected = (-(p * p.log() + (1 - p) * (1 - p).log()) * mask).sum(-1)
    assert th.allclose(bernoulli_entropy(logits, mask), expected)
