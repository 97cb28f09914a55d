"""The two-head attention policy of Prostate-v0 (seed 000), as an sb3-contrib policy.

A shared convolutional processor reads the feature grid; an attention-map head gives
one logit per cell (hard-masked outside the prostate and on cells already chosen) plus,
in the sequential mode, a STOP logit; a value head pools the processed grid and adds
the clinical values. ::

    obs["features"] (B, 256, G, G) ++ prostate_mask, selected, needle_mask, row, col (B, 5, G, G)
        -> [conv k x k -> norm -> ReLU] x len(hidden_channels)           shared (B, C, G, G)
        ├─ attention head: 1x1 conv -> (B, G*G) cell logits (masked) [+ STOP logit]
        └─ value head: global average pool ++ clinical -> MLP -> (B, 1)

The mask channels are inputs too, so the processor knows where it has already looked
(the value of a state depends on it) and where the biopsy core runs (the needle mask,
as ProstNFound's data has it: the reward is about the tissue under the needle), and so
are two coordinate channels (CoordConv), since convolutions alone cannot tell where in
the image a cell is. The seed's width is 256 -> 512 -> 512
(``hidden_channels=(512, 512)``, the default); ``train/hyperparams/maskable-ppo.yml``
uses a narrower processor so that CPU training takes minutes.

Hard masking uses the finite :data:`policies.distributions.MASKED_LOGIT` (-1e9) rather
than -inf, which keeps entropies finite; a masked cell's probability is exactly 0
either way. Works with ``MaskablePPO("policies.prostate_attention:AttentionPolicy", env)``
on the sequential env; :class:`OneShotAttentionPolicy` (PPO, one-shot env) samples k
distinct cells at once with Gumbel-top-k.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from policies.distributions import MASKED_LOGIT, PerRowTopKDistribution

__all__ = ["NORMS", "AttentionTrunk", "AttentionHeads", "AttentionPolicy", "CellSetDistribution", "OneShotAttentionPolicy"]

NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,  # the seed's
    "group": lambda width: nn.GroupNorm(1, width),  # per sample: the same in rollouts and updates
    "none": lambda width: nn.Identity(),
}
"""The processor's normalisation after each conv. BatchNorm normalises a rollout step with
its running statistics but an update minibatch with the minibatch's own, so PPO's ratio
compares two different functions; ``group`` (one group = LayerNorm over C, G, G) and
``none`` do not."""


def _grid_shape(observation_space: spaces.Dict) -> tuple[int, int]:
    """(channels, G) of the ``features`` sub-space; clear errors for the wrong env."""
    required = ("features", "prostate_mask", "needle_mask", "clinical", "selected")
    if not isinstance(observation_space, spaces.Dict) or any(k not in observation_space.spaces for k in required):
        raise TypeError(
            f"AttentionPolicy needs a Dict observation with keys {', '.join(required)}"
            f" (Prostate-v0); got {observation_space}"
        )
    shape = observation_space["features"].shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"observation 'features' must be (C, G, G), got shape {shape}")
    return shape[0], shape[1]


class AttentionTrunk(BaseFeaturesExtractor):
    """The shared conv processor. Its output is flat, for SB3's plumbing:
    (B, C*G*G + 2*G*G + n_clinical) = processed grid ++ (prostate, selected) ++ clinical."""

    def __init__(self, observation_space: spaces.Dict, hidden_channels: Sequence[int] = (512, 512),
                 kernel_size: int | Sequence[int] = 3, norm: str = "batch") -> None:
        in_channels, G = _grid_shape(observation_space)
        n_clinical = int(np.prod(observation_space["clinical"].shape))
        if not hidden_channels or min(hidden_channels) < 1:
            raise ValueError(f"hidden_channels must be a non-empty sequence of positive ints, got {hidden_channels}")
        kernels = [kernel_size] * len(hidden_channels) if isinstance(kernel_size, int) else list(kernel_size)
        if len(kernels) != len(hidden_channels) or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(
                f"kernel_size must be a positive odd int or one per layer of hidden_channels={list(hidden_channels)},"
                f" got {kernel_size}"
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
        super().__init__(observation_space, hidden_channels[-1] * G * G + 2 * G * G + n_clinical)
        layers: list[nn.Module] = []
        channels = in_channels + 5
        for width, kernel in zip(hidden_channels, kernels):
            layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2), NORMS[norm](width), nn.ReLU()]
            channels = width
        self.processor = nn.Sequential(*layers)
        self.grid_size, self.out_channels, self.n_clinical = G, channels, n_clinical
        axis = torch.linspace(-1.0, 1.0, G)
        self.register_buffer("coordinates", torch.stack(torch.meshgrid(axis, axis, indexing="ij"))[None], persistent=False)  # (1, 2, G, G)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        masks = torch.stack([observations["prostate_mask"], observations["selected"]], dim=1)  # (B, 2, G, G)
        needle = observations["needle_mask"][:, None]  # (B, 1, G, G)
        coordinates = self.coordinates.expand(masks.shape[0], -1, -1, -1)  # (B, 2, G, G)
        x = torch.cat([observations["features"], masks, needle, coordinates], dim=1)  # (B, 256+5, G, G)
        processed = self.processor(x)  # (B, C, G, G)
        clinical = observations["clinical"].flatten(1)  # (B, n_clinical)
        return torch.cat([processed.flatten(1), masks.flatten(1), clinical], dim=1)  # (B, features_dim)


class AttentionHeads(nn.Module):
    """The two heads, in SB3's ``mlp_extractor`` slot: ``forward_actor`` returns the action
    logits (B, G*G [+1]) themselves, ``forward_critic`` the value head's hidden layer."""

    def __init__(self, grid_size: int, channels: int, n_clinical: int, value_hidden: int, with_stop: bool) -> None:
        super().__init__()
        self.grid_size, self.channels, self.n_clinical, self.with_stop = grid_size, channels, n_clinical, with_stop
        self.attention_map = nn.Conv2d(channels, 1, kernel_size=1)
        self.stop_head = nn.Linear(channels + 1 + n_clinical, 1) if with_stop else None
        self.value_mlp = nn.Sequential(nn.Linear(channels + 1 + n_clinical, value_hidden), nn.ReLU(),
                                       nn.Linear(value_hidden, value_hidden), nn.ReLU())
        self.latent_dim_pi = grid_size * grid_size + int(with_stop)
        self.latent_dim_vf = value_hidden
        nn.init.normal_(self.attention_map.weight, std=0.01)  # near-uniform initial attention
        nn.init.zeros_(self.attention_map.bias)
        if self.stop_head is not None:
            nn.init.normal_(self.stop_head.weight, std=0.01)
            nn.init.zeros_(self.stop_head.bias)

    def _split(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        G, C = self.grid_size, self.channels
        B = latent.shape[0]
        grid = latent[:, : C * G * G].view(B, C, G, G)  # (B, C, G, G)
        masks = latent[:, C * G * G : (C + 2) * G * G].view(B, 2, G * G)  # (B, 2, G*G)
        clinical = latent[:, (C + 2) * G * G :]  # (B, n_clinical)
        pooled = torch.cat([grid.mean(dim=(2, 3)), masks[:, 1].mean(dim=1, keepdim=True), clinical], dim=1)  # (B, C+1+n)
        return grid, masks, clinical, pooled

    def forward_actor(self, latent: torch.Tensor) -> torch.Tensor:
        grid, masks, _, pooled = self._split(latent)
        logits = self.attention_map(grid).flatten(1)  # (B, G*G)
        allowed = (masks[:, 0] > 0.5) & (masks[:, 1] < 0.5)  # (B, G*G): in the prostate, not yet chosen
        logits = torch.where(allowed, logits, torch.full_like(logits, MASKED_LOGIT))
        if self.stop_head is not None:
            logits = torch.cat([logits, self.stop_head(pooled)], dim=1)  # (B, G*G+1)
        return logits

    def forward_critic(self, latent: torch.Tensor) -> torch.Tensor:
        return self.value_mlp(self._split(latent)[3])  # (B, value_hidden)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(latent), self.forward_critic(latent)


class AttentionPolicy(MaskableActorCriticPolicy):
    """Two-head attention policy for MaskablePPO on Prostate-v0's sequential mode.

    :param hidden_channels: widths of the shared conv processor (seed: (512, 512)).
    :param kernel_size: conv kernel of the processor, one for all layers or one per layer
        (e.g. ``[1, 3]``: a cheap 1x1 channel reduction, then 3x3 spatial context).
    :param norm: normalisation after each conv, a key of :data:`NORMS` (seed: ``batch``).
    :param value_hidden: width of the value MLP.
    Other arguments are MaskableActorCriticPolicy's (``net_arch`` is unused).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        hidden_channels: Sequence[int] = (512, 512),
        kernel_size: int | Sequence[int] = 3,
        norm: str = "batch",
        value_hidden: int = 256,
        **kwargs: Any,
    ) -> None:
        _, G = _grid_shape(observation_space)
        if not isinstance(action_space, spaces.Discrete) or action_space.n not in (G * G, G * G + 1):
            raise ValueError(
                f"AttentionPolicy needs Discrete(G*G) or Discrete(G*G + 1) actions for G={G}, got {action_space};"
                " use OneShotAttentionPolicy for the one-shot mode"
            )
        self.hidden_channels = tuple(int(c) for c in hidden_channels)
        self.kernel_size = int(kernel_size) if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
        self.value_hidden = int(value_hidden)
        kwargs["features_extractor_class"] = AttentionTrunk
        self.norm = str(norm)
        kwargs["features_extractor_kwargs"] = {"hidden_channels": self.hidden_channels, "kernel_size": self.kernel_size,
                                               "norm": self.norm}
        kwargs.setdefault("ortho_init", False)  # the heads initialise themselves
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        trunk: AttentionTrunk = self.features_extractor  # type: ignore[assignment]
        with_stop = self.action_space.n == trunk.grid_size**2 + 1  # type: ignore[attr-defined]
        self.mlp_extractor = AttentionHeads(trunk.grid_size, trunk.out_channels, trunk.n_clinical, self.value_hidden, with_stop)

    def _build(self, lr_schedule: Schedule) -> None:
        self._build_mlp_extractor()
        self.action_net = nn.Identity()  # the attention head already gives one logit per action
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(hidden_channels=self.hidden_channels, kernel_size=self.kernel_size, norm=self.norm,
                    value_hidden=self.value_hidden)
        data.pop("features_extractor_class", None)
        data.pop("features_extractor_kwargs", None)
        return data


# ------------------------------------------------------------------ one-shot mode


class CellSetDistribution(PerRowTopKDistribution):
    """k distinct cells at once (Gumbel-top-k, exact Plackett-Luce set log-probability),
    with actions as cell indices (B, k) — the layout of the env's MultiDiscrete([G*G] * k).

    A thin adapter over :class:`policies.distributions.PerRowTopKDistribution` with one
    row (R = 1, C = G*G cells). Indices come out sorted ascending; a state with fewer
    than k allowed cells repeats its last cell (the env collapses duplicates).
    """

    def proba_distribution(self, logits: torch.Tensor, mask: torch.Tensor) -> "CellSetDistribution":  # type: ignore[override]
        """logits (B, C), mask (B, C) bool."""
        super().proba_distribution(logits[:, None, :], mask[:, None, :])  # (B, 1, C) each
        return self

    def _to_indices(self, multi_hot: torch.Tensor) -> torch.Tensor:
        selected = multi_hot[:, 0] > 0.5  # (B, C)
        C = selected.shape[-1]
        index = torch.arange(C, device=selected.device).expand_as(selected)  # (B, C)
        chosen = torch.where(selected, index, C).sort(dim=-1).values[:, : self.k]  # (B, k), C = no cell
        count = selected.sum(dim=-1, keepdim=True).clamp(min=1)  # (B, 1)
        last = chosen.gather(1, count - 1).clamp(max=C - 1)  # (B, 1)
        return torch.where(chosen < C, chosen, last)  # (B, k)

    def _to_multi_hot(self, actions: torch.Tensor) -> torch.Tensor:
        logits, _, _ = self._params()
        multi_hot = torch.zeros(logits.shape[0], logits.shape[-1], dtype=torch.bool, device=logits.device)  # (B, C)
        return multi_hot.scatter(1, actions.long(), True)[:, None, :]  # (B, 1, C)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """actions (B, k) cell indices -> (B,)."""
        return super().log_prob(self._to_multi_hot(actions))

    def sample(self) -> torch.Tensor:
        return self._to_indices(super().sample())

    def mode(self) -> torch.Tensor:
        return self._to_indices(super().mode())


class OneShotAttentionPolicy(ActorCriticPolicy):
    """The two-head attention policy for PPO on Prostate-v0's one-shot mode
    (``action_mode="one_shot"``, MultiDiscrete([G*G] * k)): the attention map's logits
    parameterise Gumbel-top-k sampling of k distinct cells, scored with the exact set
    log-probability. Same processor and heads as :class:`AttentionPolicy` (no STOP).
    Masking is the head's own (prostate, from the observation), so plain PPO suffices.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        hidden_channels: Sequence[int] = (512, 512),
        kernel_size: int | Sequence[int] = 3,
        norm: str = "batch",
        value_hidden: int = 256,
        entropy_samples: int = 16,
        **kwargs: Any,
    ) -> None:
        _, G = _grid_shape(observation_space)
        if not isinstance(action_space, spaces.MultiDiscrete) or not np.all(action_space.nvec == G * G):
            raise ValueError(f"OneShotAttentionPolicy needs MultiDiscrete([G*G] * k) actions for G={G}, got {action_space}")
        self.hidden_channels = tuple(int(c) for c in hidden_channels)
        self.kernel_size = int(kernel_size) if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
        self.value_hidden = int(value_hidden)
        self.entropy_samples = int(entropy_samples)
        kwargs["features_extractor_class"] = AttentionTrunk
        self.norm = str(norm)
        kwargs["features_extractor_kwargs"] = {"hidden_channels": self.hidden_channels, "kernel_size": self.kernel_size,
                                               "norm": self.norm}
        kwargs.setdefault("ortho_init", False)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        trunk: AttentionTrunk = self.features_extractor  # type: ignore[assignment]
        self.mlp_extractor = AttentionHeads(trunk.grid_size, trunk.out_channels, trunk.n_clinical, self.value_hidden, with_stop=False)

    def _build(self, lr_schedule: Schedule) -> None:
        self._build_mlp_extractor()
        self.action_dist = CellSetDistribution(k=len(self.action_space.nvec), entropy_samples=self.entropy_samples)  # type: ignore[attr-defined]
        self.action_net = nn.Identity()
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> CellSetDistribution:  # type: ignore[override]
        logits = self.action_net(latent_pi)  # (B, G*G), MASKED_LOGIT outside the allowed cells
        return self.action_dist.proba_distribution(logits, logits > MASKED_LOGIT / 2)  # type: ignore[return-value]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(hidden_channels=self.hidden_channels, kernel_size=self.kernel_size, norm=self.norm,
                    value_hidden=self.value_hidden, entropy_samples=self.entropy_samples)
        data.pop("features_extractor_class", None)
        data.pop("features_extractor_kwargs", None)
        return data
