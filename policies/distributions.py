"""Action distributions for the action structures SB3 lacks.

One class per action structure, behind SB3's vocabulary (``proba_distribution``,
``log_prob``, ``entropy``, ``sample``, ``mode``); each class owns its parameter
layout, and nothing survives between ``sample`` and ``log_prob``.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.distributions import Distribution
from torch import nn


# ---------------------------------------------------------------------------
# Per-row top-k without replacement (owner: AnisotropicAMG-v0; reused by Prostate-v0)
# ---------------------------------------------------------------------------
# Layout shared by every function below: ``logits`` (B, R, C) float, ``mask`` (B, R, C)
# bool (True = the column is a candidate of that row), selections as multi-hot
# (B, R, C) bool. Row r of batch element b draws min(k, n_valid[b, r]) distinct
# columns without replacement, with probabilities proportional to exp(logits)
# (Plackett-Luce); a row with fewer than k candidates selects all of them. Rows are
# independent. AnisotropicAMG uses R = matrix rows, C = neighbour slots; Prostate's
# one-shot mode uses R = 1, C = cells.
#
# Stable public names: MASKED_LOGIT, per_row_k, gumbel_topk, topk_mode,
# topk_set_log_prob, topk_set_entropy, bernoulli_sample, bernoulli_mode,
# bernoulli_log_prob, bernoulli_entropy, PerRowTopKDistribution,
# PerRowBernoulliDistribution.

MASKED_LOGIT = -1.0e9
"""Finite stand-in for the logit of a non-candidate column: exp() underflows to 0, and
unlike -inf it never produces NaN gradients through logsumexp."""

MAX_EXACT_K = 7
"""Largest k whose set log-probability is summed over all k! orderings (5040)."""

EXACT_ENTROPY_MAX_SUBSETS = 4096
"""Largest number of column subsets of size <= k the exact entropy enumerates per row."""


def _check_topk_inputs(logits: th.Tensor, mask: th.Tensor, k: int) -> None:
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (B, R, C); got shape {tuple(logits.shape)}")
    if mask.shape != logits.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal logits shape {tuple(logits.shape)}")
    if mask.dtype != th.bool:
        raise TypeError(f"mask must be a bool tensor (True = candidate); got dtype {mask.dtype}")
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k must be in [1, C={logits.shape[-1]}]; got k={k}")


def _masked(logits: th.Tensor, mask: th.Tensor) -> th.Tensor:
    return logits.masked_fill(~mask, MASKED_LOGIT)  # (B, R, C)


def per_row_k(mask: th.Tensor, k: int) -> th.Tensor:
    """How many columns each row selects: min(k, number of candidates). (B, R) long."""
    return mask.sum(dim=-1).clamp(max=k)


def _scatter_selection(order: th.Tensor, mask: th.Tensor, k: int) -> th.Tensor:
    """Multi-hot of the first min(k, n_valid) columns of ``order`` (B, R, C) per row."""
    top = order[..., :k]  # (B, R, k)
    keep = mask.gather(-1, top)  # (B, R, k): drops non-candidates of short rows
    return th.zeros_like(mask).scatter(-1, top, keep)  # (B, R, C)


def gumbel_topk(
    logits: th.Tensor, mask: th.Tensor, k: int, generator: th.Generator | None = None
) -> th.Tensor:
    """Sample k columns per row without replacement (Gumbel-top-k trick).

    Adding i.i.d. Gumbel(0, 1) noise to the logits and taking the k largest draws an
    ordered Plackett-Luce sample; the returned multi-hot (B, R, C) bool forgets the order.
    Non-candidates are never selected, whatever their logit.
    """
    _check_topk_inputs(logits, mask, k)
    uniform = th.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -th.log(-th.log(uniform.clamp(min=1e-20, max=1.0 - 1e-7)))  # (B, R, C)
    perturbed = (logits.detach() + gumbel).masked_fill(~mask, float("-inf"))  # (B, R, C)
    order = perturbed.argsort(dim=-1, descending=True)  # (B, R, C)
    return _scatter_selection(order, mask, k)


def topk_mode(logits: th.Tensor, mask: th.Tensor, k: int) -> th.Tensor:
    """The k candidates with the largest logits per row (ties: lowest column first).

    This is the first k of the most likely ordering, the usual deterministic action; it
    is not always the most likely *set*. (B, R, C) bool.
    """
    _check_topk_inputs(logits, mask, k)
    ranked = logits.detach().masked_fill(~mask, float("-inf"))  # (B, R, C)
    order = th.sort(ranked, dim=-1, descending=True, stable=True).indices  # (B, R, C)
    return _scatter_selection(order, mask, k)


def _check_selection(selection: th.Tensor, mask: th.Tensor, k: int) -> th.Tensor:
    selection = selection.bool()
    if selection.shape != mask.shape:
        raise ValueError(f"selection shape {tuple(selection.shape)} must equal mask shape {tuple(mask.shape)}")
    if bool((selection & ~mask).any()):
        raise ValueError("selection contains non-candidate columns (mask False); it is outside the top-k support")
    counts, expected = selection.sum(dim=-1), per_row_k(mask, k)  # (B, R)
    if not bool((counts == expected).all()):
        bad = (counts != expected).nonzero()[0].tolist()
        raise ValueError(
            f"every row must select exactly min(k={k}, n_candidates) columns; row {bad} selects "
            f"{int(counts[tuple(bad)])}, expected {int(expected[tuple(bad)])}"
        )
    return selection


@functools.lru_cache(maxsize=16)
def _permutations(k: int) -> th.Tensor:
    return th.tensor(list(itertools.permutations(range(k))), dtype=th.long)  # (k!, k)


def topk_set_log_prob(logits: th.Tensor, mask: th.Tensor, selection: th.Tensor, k: int) -> th.Tensor:
    """Exact log-probability of the selected *set* of each row under Gumbel-top-k sampling.

    P(set) is the sum over its k! orderings of the Plackett-Luce probability
    prod_t w_(t) / (w_rest + sum_{u >= t} w_(u)), with w = exp(logit) and w_rest the mass of
    the unselected candidates; every term is computed in log space with logcumsumexp and
    logaddexp (no subtraction, so no cancellation). Rows with fewer than k candidates
    select all of them and get log-probability 0. Differentiable in ``logits``.

    Args:
        logits: (B, R, C) float.
        mask: (B, R, C) bool, True = candidate.
        selection: (B, R, C) bool or {0, 1} float; must select exactly min(k, n_valid)
            candidates per row (ValueError otherwise).
        k: selections per row, 1 <= k <= min(C, MAX_EXACT_K).

    Returns:
        (B, R) float log-probabilities.
    """
    _check_topk_inputs(logits, mask, k)
    if k > MAX_EXACT_K:
        raise ValueError(
            f"k={k} needs {math.factorial(k)} orderings per row; the exact set log-probability supports "
            f"k <= MAX_EXACT_K={MAX_EXACT_K}; use the Bernoulli alternative for larger selections"
        )
    selection = _check_selection(selection, mask, k)
    masked = _masked(logits, mask)  # (B, R, C)
    log_rest = masked.masked_fill(selection, MASKED_LOGIT).logsumexp(dim=-1)  # (B, R)
    chosen = th.sort(selection.to(th.int8), dim=-1, descending=True, stable=True).indices[..., :k]  # (B, R, k)
    chosen_valid = selection.gather(-1, chosen)  # (B, R, k); False = padding of a short row
    chosen_logit = masked.gather(-1, chosen).masked_fill(~chosen_valid, MASKED_LOGIT)  # (B, R, k)
    perms = _permutations(k).to(logits.device)  # (P, k), P = k!
    ordered = chosen_logit[..., perms]  # (B, R, P, k)
    ordered_valid = chosen_valid[..., perms]  # (B, R, P, k)
    # log of the mass still undrawn at step t: rest + selected items at positions >= t
    tail = th.logcumsumexp(ordered.flip(-1), dim=-1).flip(-1)  # (B, R, P, k)
    log_denominator = th.logaddexp(tail, log_rest[..., None, None])  # (B, R, P, k)
    step = th.where(ordered_valid, ordered - log_denominator, th.zeros_like(ordered))  # (B, R, P, k)
    log_p_orderings = step.sum(dim=-1).logsumexp(dim=-1)  # (B, R)
    # a short row's padding slots can sit anywhere: each real ordering appears k!/k_r! times
    k_row = per_row_k(mask, k).to(logits.dtype)  # (B, R)
    duplicates = math.lgamma(k + 1) - th.lgamma(k_row + 1)  # (B, R)
    return log_p_orderings - duplicates  # (B, R)


@functools.lru_cache(maxsize=16)
def _subset_levels(n_columns: int, k: int) -> tuple[tuple[th.Tensor, th.Tensor, th.Tensor], ...]:
    """For t = 1..k: (members (n_t, t), parent index per member (n_t, t), parent's
    complement (n_{t-1}, C) bool) of every size-t subset of range(C), in lexicographic order."""
    levels = []
    previous = {(): 0}
    for t in range(1, k + 1):
        subsets = list(itertools.combinations(range(n_columns), t))
        members = th.tensor(subsets, dtype=th.long)  # (n_t, t)
        parents = th.tensor(
            [[previous[s[:j] + s[j + 1:]] for j in range(t)] for s in subsets], dtype=th.long
        )  # (n_t, t)
        complement = th.ones(len(previous), n_columns, dtype=th.bool)  # (n_{t-1}, C)
        for subset, index in previous.items():
            complement[index, list(subset)] = False
        levels.append((members, parents, complement))
        previous = {s: i for i, s in enumerate(subsets)}
    return tuple(levels)


def _n_subsets(n_columns: int, k: int) -> int:
    return sum(math.comb(n_columns, t) for t in range(1, k + 1))


def topk_set_entropy(
    logits: th.Tensor,
    mask: th.Tensor,
    k: int,
    *,
    n_samples: int = 16,
    generator: th.Generator | None = None,
) -> th.Tensor:
    """Entropy (nats) of the distribution over selected *sets* of each row, (B, R).

    Exact when the row has at most EXACT_ENTROPY_MAX_SUBSETS subsets of size <= k: a
    dynamic programme over subsets gives Q(S) = P(the first |S| draws are the set S),
    Q(S) = sum_{j in S} Q(S - j) w_j / (mass outside S - j), all positive terms in log
    space; then H = -sum_{|S| = k} Q(S) log Q(S). Rows with at most k candidates have a
    single outcome and entropy 0.

    Otherwise (e.g. R = 1 over hundreds of cells) enumeration is infeasible and this
    returns the Monte Carlo estimate -mean_i log P(S_i) over ``n_samples`` Gumbel-top-k
    sets, unbiased in value, and with an unbiased score-function gradient
    (grad H = -E[grad log P(S) * log P(S)]) attached through a zero-valued surrogate.
    """
    _check_topk_inputs(logits, mask, k)
    n_columns = logits.shape[-1]
    deterministic_row = mask.sum(dim=-1) <= k  # (B, R)
    if _n_subsets(n_columns, k) > EXACT_ENTROPY_MAX_SUBSETS:
        return _topk_entropy_monte_carlo(logits, mask, k, n_samples, generator).masked_fill(deterministic_row, 0.0)
    masked = _masked(logits, mask)  # (B, R, C)
    log_q = masked.new_zeros(*masked.shape[:-1], 1)  # (B, R, 1): the empty set, probability 1
    for members, parents, complement in _subset_levels(n_columns, k):
        members, parents, complement = members.to(logits.device), parents.to(logits.device), complement.to(logits.device)
        outside = masked[..., None, :].masked_fill(~complement, float("-inf")).logsumexp(dim=-1)  # (B, R, n_{t-1})
        terms = log_q[..., parents] + masked[..., members] - outside[..., parents]  # (B, R, n_t, t)
        log_q = terms.logsumexp(dim=-1)  # (B, R, n_t)
    entropy = -(log_q.exp() * log_q).sum(dim=-1)  # (B, R)
    return entropy.masked_fill(deterministic_row, 0.0)


def _topk_entropy_monte_carlo(
    logits: th.Tensor, mask: th.Tensor, k: int, n_samples: int, generator: th.Generator | None
) -> th.Tensor:
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1 for the Monte Carlo entropy; got {n_samples}")
    expanded_logits = logits.unsqueeze(0).expand(n_samples, *logits.shape).flatten(0, 1)  # (n*B, R, C)
    expanded_mask = mask.unsqueeze(0).expand(n_samples, *mask.shape).flatten(0, 1)  # (n*B, R, C)
    sets = gumbel_topk(expanded_logits, expanded_mask, k, generator=generator)  # (n*B, R, C)
    log_p = topk_set_log_prob(expanded_logits, expanded_mask, sets, k).view(n_samples, *logits.shape[:-1])  # (n, B, R)
    surrogate = -(log_p * log_p.detach()).mean(dim=0)  # (B, R): gradient -E[grad log p * log p]
    return -log_p.detach().mean(dim=0) + surrogate - surrogate.detach()  # (B, R)


def bernoulli_sample(logits: th.Tensor, mask: th.Tensor, generator: th.Generator | None = None) -> th.Tensor:
    """Independent Bernoulli(sigmoid(logit)) per candidate; non-candidates never selected. (B, R, C) bool."""
    uniform = th.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (uniform < th.sigmoid(logits.detach())) & mask  # (B, R, C)


def bernoulli_mode(logits: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Candidates with probability > 1/2. (B, R, C) bool."""
    return (logits.detach() > 0) & mask  # (B, R, C)


def bernoulli_log_prob(logits: th.Tensor, mask: th.Tensor, selection: th.Tensor) -> th.Tensor:
    """Log-probability of ``selection`` per row, summed over candidates. (B, R)."""
    selection = selection.bool()
    if bool((selection & ~mask).any()):
        raise ValueError("selection contains non-candidate columns (mask False); they have probability 0")
    per_column = -F.binary_cross_entropy_with_logits(logits, selection.to(logits.dtype), reduction="none")  # (B, R, C)
    return (per_column * mask).sum(dim=-1)  # (B, R)


def bernoulli_entropy(logits: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Exact entropy (nats) per row: the sum of the candidates' Bernoulli entropies. (B, R)."""
    p = th.sigmoid(logits)  # (B, R, C)
    per_column = F.binary_cross_entropy_with_logits(logits, p, reduction="none")  # (B, R, C)
    return (per_column * mask).sum(dim=-1)  # (B, R)


def _gather_rows(values: th.Tensor, rows: th.Tensor) -> th.Tensor:
    """(B, R, C) -> (B, n, C) for row indices (B, n)."""
    return values.gather(1, rows[..., None].expand(-1, -1, values.shape[-1]))


class PerRowTopKDistribution(Distribution):
    """Per-row top-k sets without replacement (Plackett-Luce), SB3 vocabulary.

    Parameters are ``logits`` (B, R, C) and ``mask`` (B, R, C) bool; actions are
    multi-hot (B, R, C) float tensors (policies flatten them into MultiBinary(E)).
    ``log_prob`` and ``entropy`` return (B,) sums over the independent rows; the per-row
    forms are ``log_prob_per_row`` and ``entropy_per_row``. Edge scores come from a
    network (e.g. :mod:`policies.gnn`), so ``proba_distribution_net`` is the identity.
    """

    def __init__(self, k: int, entropy_samples: int = 16) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k (selections per row) must be >= 1; got {k}")
        self.k = k
        self.entropy_samples = entropy_samples
        self.logits: th.Tensor | None = None
        self.mask: th.Tensor | None = None

    def proba_distribution_net(self) -> nn.Module:
        """The logits arrive ready-made from the edge scorer."""
        return nn.Identity()

    def proba_distribution(self, logits: th.Tensor, mask: th.Tensor) -> PerRowTopKDistribution:
        _check_topk_inputs(logits, mask, min(self.k, logits.shape[-1]))
        self.logits, self.mask = logits, mask
        return self

    def _params(self) -> tuple[th.Tensor, th.Tensor, int]:
        if self.logits is None or self.mask is None:
            raise RuntimeError("call proba_distribution(logits, mask) first")
        return self.logits, self.mask, min(self.k, self.logits.shape[-1])

    def log_prob_per_row(self, actions: th.Tensor) -> th.Tensor:
        logits, mask, k = self._params()
        return topk_set_log_prob(logits, mask, actions, k)  # (B, R)

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        return self.log_prob_per_row(actions).sum(dim=-1)  # (B,)

    def entropy_per_row(self, rows: th.Tensor | None = None) -> th.Tensor:
        """(B, R) exact per-row entropies, or (B, n) for the rows ``rows`` (B, n) long only."""
        logits, mask, k = self._params()
        if rows is not None:
            logits, mask = _gather_rows(logits, rows), _gather_rows(mask, rows)  # (B, n, C)
        return topk_set_entropy(logits, mask, k, n_samples=self.entropy_samples)

    def entropy(self) -> th.Tensor:
        return self.entropy_per_row().sum(dim=-1)  # (B,)

    def sample(self) -> th.Tensor:
        logits, mask, k = self._params()
        return gumbel_topk(logits, mask, k).to(logits.dtype)  # (B, R, C)

    def mode(self) -> th.Tensor:
        logits, mask, k = self._params()
        return topk_mode(logits, mask, k).to(logits.dtype)  # (B, R, C)

    def actions_from_params(self, logits: th.Tensor, mask: th.Tensor, deterministic: bool = False) -> th.Tensor:
        self.proba_distribution(logits, mask)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, logits: th.Tensor, mask: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(logits, mask)
        return actions, self.log_prob(actions)


class PerRowBernoulliDistribution(Distribution):
    """Independent keep/drop per candidate (variable count per row), SB3 vocabulary.

    The alternative to :class:`PerRowTopKDistribution` when a row's selection size
    should be learned rather than fixed; same parameter and action layout.
    """

    def __init__(self) -> None:
        super().__init__()
        self.logits: th.Tensor | None = None
        self.mask: th.Tensor | None = None

    def proba_distribution_net(self) -> nn.Module:
        """The logits arrive ready-made from the edge scorer."""
        return nn.Identity()

    def proba_distribution(self, logits: th.Tensor, mask: th.Tensor) -> PerRowBernoulliDistribution:
        _check_topk_inputs(logits, mask, 1)
        self.logits, self.mask = logits, mask
        return self

    def _params(self) -> tuple[th.Tensor, th.Tensor]:
        if self.logits is None or self.mask is None:
            raise RuntimeError("call proba_distribution(logits, mask) first")
        return self.logits, self.mask

    def log_prob_per_row(self, actions: th.Tensor) -> th.Tensor:
        return bernoulli_log_prob(*self._params(), actions)  # (B, R)

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        return self.log_prob_per_row(actions).sum(dim=-1)  # (B,)

    def entropy_per_row(self, rows: th.Tensor | None = None) -> th.Tensor:
        """(B, R) exact per-row entropies, or (B, n) for the rows ``rows`` (B, n) long only."""
        logits, mask = self._params()
        if rows is not None:
            logits, mask = _gather_rows(logits, rows), _gather_rows(mask, rows)  # (B, n, C)
        return bernoulli_entropy(logits, mask)

    def entropy(self) -> th.Tensor:
        return self.entropy_per_row().sum(dim=-1)  # (B,)

    def sample(self) -> th.Tensor:
        logits, mask = self._params()
        return bernoulli_sample(logits, mask).to(logits.dtype)  # (B, R, C)

    def mode(self) -> th.Tensor:
        logits, mask = self._params()
        return bernoulli_mode(logits, mask).to(logits.dtype)  # (B, R, C)

    def actions_from_params(self, logits: th.Tensor, mask: th.Tensor, deterministic: bool = False) -> th.Tensor:
        self.proba_distribution(logits, mask)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, logits: th.Tensor, mask: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(logits, mask)
        return actions, self.log_prob(actions)


# ---------------------------------------------------------------------------
# Hybrid discrete + continuous action (owner: Hydrogel-v0)
# ---------------------------------------------------------------------------
# Layout: the flat Box action of ``envs.hydrogel.wrappers.HybridBoxAction`` (B, 2 + D):
# slot 0 = index of the first categorical, slots 1..D = continuous values in physical
# units, slot D + 1 = index of the second categorical. The continuous part is a
# diagonal Normal on a latent ``u`` (learnable, state-independent log-std), squashed
# by tanh into (-1, 1) and mapped affinely into [low, high] -- on a log scale for the
# dimensions flagged ``log_scale`` (stiffness and half-life span two decades). The
# log-probability includes the exact log-Jacobian of that map.

class SquashedBoxMap:
    """``u -> y = tanh(u) -> x`` in [low, high] (linear or log-linear per dimension).

    Args:
        low, high: (D,) physical bounds (``low > 0`` where ``log_scale``).
        log_scale: (D,) bool.
        epsilon: ``|y|`` is kept below ``1 - epsilon`` so the inverse stays finite.
    """

    def __init__(self, low: th.Tensor, high: th.Tensor, log_scale: th.Tensor, epsilon: float = 1e-6) -> None:
        if low.shape != high.shape or low.shape != log_scale.shape or low.ndim != 1:
            raise ValueError(
                f"low, high and log_scale must be (D,) tensors of one shape; got {tuple(low.shape)},"
                f" {tuple(high.shape)}, {tuple(log_scale.shape)}"
            )
        if not bool((high > low).all()):
            raise ValueError(f"high must exceed low in every dimension; low={low.tolist()} high={high.tolist()}")
        if bool((low[log_scale] <= 0).any()):
            raise ValueError(f"log-scaled dimensions need low > 0; low={low.tolist()} log_scale={log_scale.tolist()}")
        self.log_scale = log_scale.bool()
        self.epsilon = epsilon
        base_low = th.where(self.log_scale, th.log(low.clamp(min=1e-30)), low).double()  # (D,)
        base_high = th.where(self.log_scale, th.log(high.clamp(min=1e-30)), high).double()  # (D,)
        self.center = (base_high + base_low) / 2  # (D,) in the linear / log base space
        self.half_width = (base_high - base_low) / 2  # (D,)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        """(B, D) latent -> (B, D) physical values, same dtype as ``latent``."""
        y = th.tanh(latent.double()).clamp(-1 + self.epsilon, 1 - self.epsilon)  # (B, D)
        base = self.center.to(latent.device) + self.half_width.to(latent.device) * y  # (B, D)
        return th.where(self.log_scale.to(latent.device), th.exp(base), base).to(latent.dtype)

    def inverse(self, value: th.Tensor) -> th.Tensor:
        """(B, D) physical values -> (B, D) latent (float64 for precision)."""
        value = value.double()
        log_scale = self.log_scale.to(value.device)
        base = th.where(log_scale, th.log(value.clamp(min=1e-30)), value)  # (B, D)
        y = (base - self.center.to(value.device)) / self.half_width.to(value.device)
        return th.atanh(y.clamp(-1 + self.epsilon, 1 - self.epsilon))  # (B, D)

    def log_abs_det_jacobian(self, latent: th.Tensor) -> th.Tensor:
        """``sum_d log |dx_d / du_d|`` at ``latent`` (B, D) -> (B,), float64.

        ``dx/du = half_width * (1 - tanh(u)^2)``, times ``x`` on log-scaled dimensions.
        ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` is used for stability.
        """
        latent = latent.double()
        log_dtanh = 2.0 * (math.log(2.0) - latent - F.softplus(-2.0 * latent))  # (B, D)
        log_det = log_dtanh + th.log(self.half_width.to(latent.device))  # (B, D)
        value = self.forward(latent)  # (B, D) float64
        log_det = log_det + th.where(self.log_scale.to(latent.device), th.log(value), th.zeros_like(value))
        return log_det.sum(dim=-1)  # (B,)


class HybridDistribution(Distribution):
    """Categorical(n_first) x SquashedNormal(D, physical units) x Categorical(n_second).

    Parameters (from :meth:`proba_distribution`): ``first_logits`` (B, n_first),
    ``mean`` (B, D) and ``log_std`` (D,) of the latent Normal, ``second_logits``
    (B, n_second). Actions are the flat (B, 2 + D) layout above.

    ``entropy`` returns the two categorical entropies plus the entropy of the *latent*
    Normal: the squashed distribution's entropy has no closed form (SB3 returns None for
    its tanh-Gaussian), and the latent entropy is what the entropy bonus should act on.
    """

    def __init__(self, n_first: int, n_second: int, squash: SquashedBoxMap) -> None:
        super().__init__()
        self.n_first, self.n_second, self.squash = n_first, n_second, squash
        self.dim = int(squash.center.shape[0])
        self.first: th.distributions.Categorical | None = None
        self.latent: th.distributions.Normal | None = None
        self.second: th.distributions.Categorical | None = None

    def proba_distribution_net(
        self, latent_dim: int, log_std_init: float = 0.0
    ) -> tuple[nn.Module, nn.Module, nn.Parameter, nn.Module]:
        """Heads of the seed's architecture: polymer (128), formulation mean (128),
        coverage (64), plus a learnable state-independent log-std (D,)."""
        first = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, self.n_first))
        mean = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, self.dim))
        second = nn.Sequential(nn.Linear(latent_dim, 64), nn.ReLU(), nn.Linear(64, self.n_second))
        log_std = nn.Parameter(th.full((self.dim,), float(log_std_init)), requires_grad=True)
        return first, mean, log_std, second

    def proba_distribution(
        self, first_logits: th.Tensor, mean: th.Tensor, log_std: th.Tensor, second_logits: th.Tensor
    ) -> HybridDistribution:
        self.first = th.distributions.Categorical(logits=first_logits)
        self.latent = th.distributions.Normal(mean, th.ones_like(mean) * log_std.exp())
        self.second = th.distributions.Categorical(logits=second_logits)
        return self

    def _split(self, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        if actions.shape[-1] != self.dim + 2:
            raise ValueError(f"hybrid actions must have last dimension {self.dim + 2}, got {tuple(actions.shape)}")
        first = th.round(actions[..., 0]).long()  # (B,)
        second = th.round(actions[..., -1]).long()  # (B,)
        return first, actions[..., 1:-1], second

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        """Exact log-density of (B, 2 + D) actions -> (B,)."""
        first, physical, second = self._split(actions)
        latent = self.squash.inverse(physical)  # (B, D) float64
        mean, std = self.latent.mean.double(), self.latent.stddev.double()
        gaussian = th.distributions.Normal(mean, std).log_prob(latent).sum(-1)  # (B,)
        continuous = gaussian - self.squash.log_abs_det_jacobian(latent)  # (B,)
        return self.first.log_prob(first) + continuous.to(actions.dtype) + self.second.log_prob(second)

    def entropy(self) -> th.Tensor:
        return self.first.entropy() + self.latent.entropy().sum(-1) + self.second.entropy()  # (B,)

    def _assemble(self, first: th.Tensor, latent: th.Tensor, second: th.Tensor) -> th.Tensor:
        physical = self.squash.forward(latent)  # (B, D)
        return th.cat([first[..., None].to(physical.dtype), physical, second[..., None].to(physical.dtype)], dim=-1)

    def sample(self) -> th.Tensor:
        return self._assemble(self.first.sample(), self.latent.rsample(), self.second.sample())  # (B, 2 + D)

    def mode(self) -> th.Tensor:
        return self._assemble(self.first.probs.argmax(-1), self.latent.mean, self.second.probs.argmax(-1))

    def actions_from_params(
        self, first_logits: th.Tensor, mean: th.Tensor, log_std: th.Tensor, second_logits: th.Tensor,
        deterministic: bool = False,
    ) -> th.Tensor:
        self.proba_distribution(first_logits, mean, log_std, second_logits)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(
        self, first_logits: th.Tensor, mean: th.Tensor, log_std: th.Tensor, second_logits: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(first_logits, mean, log_std, second_logits)
        return actions, self.log_prob(actions)
