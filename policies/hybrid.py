"""Actor-critic for hybrid discrete + continuous actions (HYDRA-BERT Stage 2).

A drop-in ``policy=`` for SB3's PPO and A2C on the ``Box(6,)`` form of the hydrogel
envs (``envs.hydrogel.wrappers.HybridBoxAction``)::

    PPO(HybridActorCriticPolicy, env)

Architecture (seed 003, section 3.2): shared trunk Linear-LayerNorm-ReLU x 2 (256),
then a polymer head Categorical(24), a formulation head Normal(4) squashed into the
physical ranges (log scale for stiffness and half-life), a coverage head
Categorical(4) and a critic. ``conditioning`` (:class:`Conditioning`) chooses how the
heads relate: ``polymer`` (default) conditions the formulation and coverage on the
chosen polymer and squashes the formulation into that polymer's feasible window
(:class:`policies.hybrid_autoregressive.PolymerConditionedDistribution`);
``independent`` keeps the seed's three independent heads
(:class:`policies.distributions.HybridDistribution`), for ablations.
The discrete slots of every action are exact integers, so SB3's clipping to the Box
bounds never changes them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from envs.hydrogel.library import FORMULATION_LOG_SCALE, polymer_table
from policies.distributions import HybridDistribution, SquashedBoxMap
from policies.hybrid_autoregressive import PolymerConditionedDistribution, WindowSquash
from rewards.choices import parse_choice

__all__ = ["Conditioning", "MATMUL_DTYPES", "SharedTrunk", "HybridActorCriticPolicy", "linear"]

MATMUL_DTYPES = {"float32": th.float32, "bfloat16": th.bfloat16}
"""``matmul_dtype`` choices. ``bfloat16`` runs the policy's matrix products (trunk, fused
first head layer, head outputs) with bfloat16 inputs and float32 results; weights,
LayerNorm, the distributions' maths, gradients and Adam stay float32. On a CPU with
AVX512-BF16 (or a GPU) a bfloat16 matmul runs several times faster than float32."""


def linear(x: th.Tensor, weight: th.Tensor, bias: th.Tensor | None, dtype: th.dtype) -> th.Tensor:
    """``F.linear`` in ``dtype`` with a float32 result (plain ``F.linear`` for float32)."""
    if dtype == th.float32:
        return F.linear(x, weight, bias)
    return F.linear(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)).float()


class Conditioning(str, enum.Enum):
    """How the formulation and coverage heads depend on the polymer.

    - ``polymer``: one formulation mean, log-std and coverage head per polymer, chosen by
      the sampled polymer (autoregressive; exact joint log-prob and entropy).
    - ``independent``: one formulation mean and coverage head for every polymer (the
      seed's architecture).
    """

    POLYMER = "polymer"
    INDEPENDENT = "independent"


class SharedTrunk(nn.Module):
    """Linear-LayerNorm-ReLU blocks shared by actor and critic (SB3's mlp_extractor slot)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], matmul_dtype: th.dtype = th.float32) -> None:
        super().__init__()
        self.matmul_dtype = matmul_dtype
        if not hidden:
            raise ValueError("net_arch must list at least one hidden width, got []")
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.LayerNorm(width), nn.ReLU()]
            in_dim = width
        self.net = nn.Sequential(*layers)
        self.latent_dim_pi = self.latent_dim_vf = in_dim

    def _latent(self, features: th.Tensor) -> th.Tensor:
        if self.matmul_dtype == th.float32:
            return self.net(features)
        x = features
        for layer in self.net:  # Linear, LayerNorm, ReLU, ...
            x = linear(x, layer.weight, layer.bias, self.matmul_dtype) if isinstance(layer, nn.Linear) else layer(x)
        return x  # (B, H)

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        latent = self._latent(features)  # (B, H)
        return latent, latent

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self._latent(features)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self._latent(features)


class HybridActorCriticPolicy(ActorCriticPolicy):
    """SB3 actor-critic whose action distribution is :class:`HybridDistribution`.

    The action space must be a ``Box(2 + D,)``: slot 0 a categorical index in
    ``[0, high[0]]``, slots 1..D continuous in physical units, slot D + 1 a categorical
    index in ``[0, high[-1]]`` (the layout of ``HybridBoxAction``).

    Args:
        net_arch: widths of the shared trunk (default ``[256, 256]``).
        log_scale: per continuous dimension, whether it is squashed on a log scale
            (default: the hydrogel formulation's, stiffness and half-life).
        log_std_init: initial log-std of the latent Normal.
        conditioning: ``"polymer"`` (default) or ``"independent"`` (:class:`Conditioning`).
        matmul_dtype: ``"float32"`` (default) or ``"bfloat16"`` (:data:`MATMUL_DTYPES`):
            the input precision of the policy's matrix products, in rollouts and updates alike.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: Sequence[int] | None = None,
        log_scale: Sequence[bool] | None = None,
        log_std_init: float = 0.0,
        conditioning: Conditioning | str = Conditioning.POLYMER,
        matmul_dtype: str = "float32",
        **kwargs: Any,
    ) -> None:
        if not isinstance(action_space, spaces.Box) or action_space.shape is None or len(action_space.shape) != 1 \
                or action_space.shape[0] < 3:
            raise TypeError(f"HybridActorCriticPolicy needs a flat Box(2 + D,) action space, got {action_space}")
        low, high = action_space.low, action_space.high
        for slot in (0, -1):
            if low[slot] != 0 or high[slot] != np.round(high[slot]) or high[slot] < 1:
                raise ValueError(
                    f"action slot {slot} must be a categorical index with bounds [0, n - 1], got [{low[slot]}, {high[slot]}]"
                )
        n_continuous = action_space.shape[0] - 2
        flags = tuple(FORMULATION_LOG_SCALE.tolist()) if log_scale is None else tuple(bool(f) for f in log_scale)
        if len(flags) != n_continuous:
            raise ValueError(f"log_scale must have {n_continuous} entries (one per continuous slot), got {len(flags)}")
        self.log_scale = flags
        self.hidden = list(net_arch) if net_arch is not None else [256, 256]
        self.log_std_init = log_std_init
        self.conditioning = parse_choice(Conditioning, conditioning, "conditioning")
        if matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype must be one of {sorted(MATMUL_DTYPES)}, got {matmul_dtype!r}")
        self.matmul_dtype = matmul_dtype
        if not kwargs.get("share_features_extractor", True):
            raise ValueError("HybridActorCriticPolicy shares its trunk between actor and critic;"
                             " share_features_extractor must be True")
        super().__init__(observation_space, action_space, lr_schedule, net_arch=None, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SharedTrunk(self.features_dim, self.hidden, MATMUL_DTYPES[self.matmul_dtype])

    def _build(self, lr_schedule: Schedule) -> None:
        self._build_mlp_extractor()
        low = th.as_tensor(self.action_space.low, dtype=th.float64)
        high = th.as_tensor(self.action_space.high, dtype=th.float64)
        n_first, n_second = int(high[0]) + 1, int(high[-1]) + 1
        if self.conditioning is Conditioning.POLYMER:
            windows = self._polymer_windows(n_first, low[1:-1], high[1:-1])
            self.action_dist = PolymerConditionedDistribution(n_first, n_second, windows)
        else:
            squash = SquashedBoxMap(low[1:-1], high[1:-1], th.tensor(self.log_scale))
            self.action_dist = HybridDistribution(n_first, n_second, squash)
        latent = self.mlp_extractor.latent_dim_pi
        self.first_head, self.mean_head, self.log_std, self.second_head = self.action_dist.proba_distribution_net(
            latent, self.log_std_init
        )
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            gains = {self.features_extractor: np.sqrt(2), self.mlp_extractor: np.sqrt(2), self.value_net: 1.0}
            for module, gain in gains.items():
                module.apply(lambda m, g=gain: self.init_weights(m, gain=g))
            for head in (self.first_head, self.mean_head, self.second_head):
                head.apply(lambda m: self.init_weights(m, gain=np.sqrt(2)))
                self.init_weights(head[-1], gain=0.01)  # near-uniform, near-centred start
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _polymer_windows(self, n_first: int, box_low: th.Tensor, box_high: th.Tensor) -> WindowSquash:
        """The library's feasible window of every polymer (they must lie inside the Box)."""
        table = polymer_table()
        low, high = table["low"].double(), table["high"].double()  # (24, 4)
        if low.shape != (n_first, box_low.shape[0]):
            raise ValueError(
                f"conditioning='polymer' uses the hydrogel library's {tuple(low.shape)} windows; the action space"
                f" has {n_first} first-slot choices and {box_low.shape[0]} continuous slots"
            )
        if bool((low < box_low - 1e-6).any() or (high > box_high + 1e-6).any()):
            raise ValueError("the library's polymer windows must lie inside the action Box")
        return WindowSquash(low, high, th.tensor(self.log_scale))

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> HybridDistribution | PolymerConditionedDistribution:
        return self.action_dist.proba_distribution(
            self.first_head(latent_pi), self.mean_head(latent_pi), self.log_std, self.second_head(latent_pi)
        )

    def _heads(self, latent: th.Tensor) -> tuple[HybridDistribution | PolymerConditionedDistribution, th.Tensor]:
        """Distribution and values (B, 1) from the shared latent (B, H), with the first layers
        of the three heads and the critic as one matmul over their concatenated weights.

        The same parameters and values as calling each head, in one kernel instead of four
        (in backward too): a third of the PPO update's time went to these small matmuls.
        """
        firsts = (self.first_head[0], self.mean_head[0], self.second_head[0], self.value_net)
        weight = th.cat([layer.weight for layer in firsts])  # (sum widths, H)
        bias = th.cat([layer.bias for layer in firsts])
        dtype = MATMUL_DTYPES[self.matmul_dtype]
        first_hidden, mean_hidden, second_hidden, values = linear(latent, weight, bias, dtype).split(
            [layer.out_features for layer in firsts], dim=-1
        )

        def output(head: nn.Sequential, hidden: th.Tensor) -> th.Tensor:
            return linear(F.relu(hidden), head[2].weight, head[2].bias, dtype)

        distribution = self.action_dist.proba_distribution(
            output(self.first_head, first_hidden), output(self.mean_head, mean_hidden), self.log_std,
            output(self.second_head, second_hidden),
        )
        return distribution, values

    def predict_values(self, obs: th.Tensor) -> th.Tensor:
        """SB3's ``predict_values`` in :attr:`matmul_dtype` (the critic as in :meth:`_heads`)."""
        latent = self.mlp_extractor.forward_critic(self.extract_features(obs))
        return linear(latent, self.value_net.weight, self.value_net.bias, MATMUL_DTYPES[self.matmul_dtype])

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """SB3's ``forward`` (actions, values, log-probs) through :meth:`_heads`."""
        distribution, values = self._heads(self.mlp_extractor.forward_actor(self.extract_features(obs)))
        actions = distribution.get_actions(deterministic=deterministic)
        return actions.reshape((-1, *self.action_space.shape)), values, distribution.log_prob(actions)

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """SB3's ``evaluate_actions`` (values, log-probs, entropy) through :meth:`_heads`."""
        distribution, values = self._heads(self.mlp_extractor.forward_actor(self.extract_features(obs)))
        return values, distribution.log_prob(actions), distribution.entropy()

    def prepare_actions(self, actions: th.Tensor) -> th.Tensor:
        """``actions`` as :meth:`evaluate_prepared_actions` takes them: the parameter-free part
        of the log-probability (inverse squash, Jacobian) done once, for trainers that
        evaluate the same actions every epoch (``agents.vec_ppo``). Unchanged for the
        independent heads."""
        prepare = getattr(self.action_dist, "prepare_actions", None)
        return actions if prepare is None else prepare(actions)

    def evaluate_prepared_actions(self, obs: th.Tensor, prepared: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """:meth:`evaluate_actions` of :meth:`prepare_actions`' output (the same values)."""
        distribution, values = self._heads(self.mlp_extractor.forward_actor(self.extract_features(obs)))
        log_prob = getattr(distribution, "log_prob_prepared", distribution.log_prob)
        return values, log_prob(prepared), distribution.entropy()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.hidden, log_scale=self.log_scale, log_std_init=self.log_std_init,
            conditioning=self.conditioning.value, matmul_dtype=self.matmul_dtype,
        )
        return data
