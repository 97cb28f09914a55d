"""REINFORCE with an exponential-moving-average baseline, SB3-shaped.

Read top to bottom: :class:`ReinforceConfig` (validated hyperparameters), the pure
pieces (:func:`temperature_at`, :func:`discounted_returns`, :func:`group_centred`,
:class:`EmaBaseline`, :func:`policy_gradient_loss`), then :class:`Reinforce` whose
``learn`` alternates ``collect_episodes`` and ``train_on_episodes``.

What it fixes relative to the source system of AnisotropicAMG-v0 (seed 002):

- The entropy bonus is computed *with* gradient (the seed computed it under
  ``torch.no_grad()`` so ``entropy_coef`` did nothing), and it is the entropy of the
  policy's own distribution (per row, for per-row distributions), not of a softmax
  over all edges at once.
- The baseline is an EMA of the returns' mean and variance taken *before* the current
  batch (so it does not depend on the samples it centres); advantages are divided by
  the EMA standard deviation and optionally re-standardised within the batch.
- ``group_size`` > 1 samples several episodes on the same case (the env's
  ``reset(options={"case": i})``) and centres each return on the mean of the *other*
  returns of its group (leave-one-out, so the gradient stays unbiased) before the EMA
  normalisation. On AnisotropicAMG-v0 the spread of the reward between instances is
  several times its spread between two C's on one instance, so without this the
  instance difficulty drowns the signal (defect 6 of the source system).

For distributions that factor over rows (:class:`policies.gnn.EdgeSelectionDistribution`),
log-probabilities and entropies are averaged over rows rather than summed, so the
learning rate does not depend on the matrix size. The optional temperature schedule
divides the policy's logits (policy attribute ``temperature``) for sampling and for
the loss alike, so the log-probabilities are those of the actions actually drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import obs_as_tensor

__all__ = [
    "EmaBaseline",
    "EpisodeBatch",
    "Reinforce",
    "ReinforceConfig",
    "discounted_returns",
    "group_centred",
    "policy_gradient_loss",
    "temperature_at",
]

SelfReinforce = TypeVar("SelfReinforce", bound="Reinforce")

Step = tuple[Any, np.ndarray, float]
"""(observation, action as sampled, reward) of one env step."""


@dataclass(frozen=True)
class ReinforceConfig:
    """Hyperparameters of :class:`Reinforce` (the learning rate lives in SB3's schedule)."""

    episodes_per_update: int = 16
    """Completed episodes per gradient step (a multiple of ``group_size``)."""
    group_size: int = 1
    """Episodes sampled on the same case and centred on each other (1: no groups)."""
    minibatch_size: int = 8
    """Steps per forward/backward chunk (gradients are accumulated): bounds memory only."""
    entropy_coef: float = 0.01
    """Weight of the (per-row mean) policy entropy bonus."""
    baseline_momentum: float = 0.9
    """EMA momentum of the baseline's mean and variance, in [0, 1)."""
    normalize_advantage: bool = True
    """Also standardise the advantages within each batch."""
    max_grad_norm: float | None = 1.0
    """Clip the gradient's global norm (None: no clipping)."""
    gamma: float = 1.0
    """Discount of the Monte Carlo return, in [0, 1]."""
    temperature_start: float = 1.0
    """Logit temperature at the start of training (> 0)."""
    temperature_end: float = 1.0
    """Logit temperature reached after ``temperature_fraction`` of training."""
    temperature_fraction: float = 1.0
    """Fraction of the total steps over which the temperature moves linearly, in (0, 1]."""

    def __post_init__(self) -> None:
        def positive_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        checks = {
            "episodes_per_update": (self.episodes_per_update, positive_int(self.episodes_per_update), "an integer >= 1"),
            "group_size": (self.group_size, positive_int(self.group_size), "an integer >= 1"),
            "minibatch_size": (self.minibatch_size, positive_int(self.minibatch_size), "an integer >= 1"),
            "entropy_coef": (self.entropy_coef, self.entropy_coef >= 0.0, ">= 0"),
            "baseline_momentum": (self.baseline_momentum, 0.0 <= self.baseline_momentum < 1.0, "in [0, 1)"),
            "max_grad_norm": (self.max_grad_norm, self.max_grad_norm is None or self.max_grad_norm > 0.0, "> 0 or None"),
            "gamma": (self.gamma, 0.0 <= self.gamma <= 1.0, "in [0, 1]"),
            "temperature_start": (self.temperature_start, 0.0 < self.temperature_start < float("inf"), "> 0 and finite"),
            "temperature_end": (self.temperature_end, 0.0 < self.temperature_end < float("inf"), "> 0 and finite"),
            "temperature_fraction": (self.temperature_fraction, 0.0 < self.temperature_fraction <= 1.0, "in (0, 1]"),
        }
        for name, (value, ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {value!r}")
        if self.episodes_per_update % self.group_size:
            raise ValueError(
                f"episodes_per_update ({self.episodes_per_update}) must be a multiple of group_size ({self.group_size})"
            )

    @property
    def groups_per_update(self) -> int:
        return self.episodes_per_update // self.group_size


def temperature_at(config: ReinforceConfig, progress_remaining: float) -> float:
    """Linear schedule from ``temperature_start`` to ``temperature_end`` (progress 1 -> 0)."""
    done = min((1.0 - progress_remaining) / config.temperature_fraction, 1.0)
    return config.temperature_start + done * (config.temperature_end - config.temperature_start)


def discounted_returns(rewards: list[float], gamma: float) -> np.ndarray:
    """Return-to-go of every step of one episode, (T,)."""
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def group_centred(episode_returns: np.ndarray, group_size: int) -> np.ndarray:
    """(episodes,) -> each return minus the mean of the other returns of its group.

    Episodes are consecutive groups of ``group_size``; with 1 the returns are unchanged.
    """
    if group_size == 1:
        return episode_returns.copy()
    groups = episode_returns.reshape(-1, group_size)  # (n_groups, G)
    others = (groups.sum(axis=1, keepdims=True) - groups) / (group_size - 1)  # (n_groups, G)
    return (groups - others).reshape(-1)


class EmaBaseline:
    """Exponential moving average of the returns' mean and variance.

    ``advantages`` uses the statistics from *before* the batch, then folds the batch
    in; the very first batch is centred on its own mean (there is nothing else).
    """

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.mean = 0.0
        self.var = 1.0
        self.initialized = False

    def advantages(self, returns: np.ndarray) -> np.ndarray:
        """(n,) returns -> (n,) (returns - mean) / std, then update the statistics."""
        if not self.initialized:
            self.mean, self.var, self.initialized = float(returns.mean()), float(returns.var()), True
        advantages = (returns - self.mean) / np.sqrt(self.var + 1e-12)
        batch_mean = float(returns.mean())
        batch_var = float(np.mean((returns - self.mean) ** 2))
        self.mean = self.momentum * self.mean + (1.0 - self.momentum) * batch_mean
        self.var = self.momentum * self.var + (1.0 - self.momentum) * batch_var
        return advantages


def _per_row_mean(values: th.Tensor, distribution: Distribution) -> th.Tensor:
    weight = distribution.row_weight.to(values.dtype)  # (B, R)
    return (values * weight).sum(dim=-1) / weight.sum(dim=-1).clamp(min=1.0)  # (B,)


def policy_gradient_loss(
    distribution: Distribution, actions: th.Tensor, advantages: th.Tensor, entropy_coef: float
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Sum over the chunk of ``-A log pi(a) - c H(pi)``; also returns the chunk's log-probs and entropies.

    Row-factored distributions (with ``log_prob_per_row`` and ``mean_row_entropy``,
    e.g. :class:`policies.gnn.EdgeSelectionDistribution`) are averaged per row.
    Entropy carries gradient. Returns (loss_sum, log_prob (B,), entropy (B,)).
    """
    if hasattr(distribution, "log_prob_per_row"):
        log_prob = _per_row_mean(distribution.log_prob_per_row(actions), distribution)  # (B,)
        entropy = distribution.mean_row_entropy()  # (B,)
    else:
        log_prob = distribution.log_prob(actions)  # (B,)
        entropy = distribution.entropy()
        entropy = th.zeros_like(log_prob) if entropy is None else entropy  # (B,)
    loss = -(advantages * log_prob).sum() - entropy_coef * entropy.sum()
    return loss, log_prob, entropy


@dataclass
class EpisodeBatch:
    """Steps of completed episodes, flattened over episodes (episodes in group order)."""

    observations: list[Any]
    """One observation (dict of arrays or array) per step."""
    actions: np.ndarray
    """(n, *action_shape) as sampled (never clipped)."""
    episode_index: np.ndarray
    """(n,) which episode each step belongs to."""
    step_returns: np.ndarray
    """(n,) return-to-go of each step."""
    episode_returns: np.ndarray
    """(episodes,) undiscounted return of each episode."""

    @classmethod
    def from_episodes(cls, episodes: list[list[Step]], gamma: float) -> EpisodeBatch:
        observations, actions, index, returns = [], [], [], []
        for i, episode in enumerate(episodes):
            returns.append(discounted_returns([r for _, _, r in episode], gamma))
            observations.extend(o for o, _, _ in episode)
            actions.extend(a for _, a, _ in episode)
            index.extend([i] * len(episode))
        return cls(
            observations, np.stack(actions), np.array(index), np.concatenate(returns),
            np.array([sum(r for _, _, r in episode) for episode in episodes]),
        )


def _slice_obs(obs: Any, index: int) -> Any:
    if isinstance(obs, dict):
        return {key: np.array(value[index]) for key, value in obs.items()}
    return np.array(obs[index])


def _stack_obs(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


class Reinforce(BaseAlgorithm):
    """REINFORCE (Monte Carlo policy gradient) with an EMA baseline, for any SB3 policy
    exposing ``get_distribution(obs)`` and an ``optimizer`` (e.g. :class:`policies.gnn.GNNEdgePolicy`).

    Constructor arguments are SB3's (``learning_rate`` float or schedule, then keyword
    only ``policy_kwargs``, ``stats_window_size``, ``tensorboard_log``, ``verbose``,
    ``seed``, ``device``) plus every field of :class:`ReinforceConfig` as a keyword
    argument (``config_class``; the defaults live there only). One "epoch" in the logs is
    one update; it records ``train/mean_return`` (the batch's mean episode return) and
    ``train/entropy`` (mean per-row policy entropy, nats) among others.

    Truncated episodes end the return without bootstrapping (there is no critic).
    Without groups, episodes still running when an update starts are finished in the
    next collection. With groups (``group_size`` > 1; needs an env whose reset info
    holds ``"case"`` and whose ``reset`` accepts ``options={"case": i}``), every env
    is reset onto the group's case and only its first episode is kept.
    """

    policy_aliases: dict[str, type[BasePolicy]] = {
        "MlpPolicy": ActorCriticPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }
    config_class = ReinforceConfig
    """The hyperparameters ``**hyperparams`` takes (``train.config`` validates against its fields)."""

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        *,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **hyperparams: Any,
    ) -> None:
        super().__init__(
            policy=policy,
            env=env,
            learning_rate=learning_rate,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.config = self.config_class(**hyperparams)
        self.baseline = EmaBaseline(self.config.baseline_momentum)
        self._n_updates = 0
        self._pending: list[list[Step]] | None = None
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs)
        self.policy = self.policy.to(self.device)
        if not hasattr(self.policy, "get_distribution") or not hasattr(self.policy, "optimizer"):
            raise TypeError(f"policy {type(self.policy).__name__} needs get_distribution(obs) and an optimizer")

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []

    def restart_episodes(self, seed: int) -> None:
        """Start every env on a fresh episode from ``seed`` and drop the unfinished ones, whose
        first steps would otherwise be glued to the new episodes' (checkpoints do this
        between collections, so that a resumed run replays the same steps)."""
        self.env.seed(seed)
        self._last_obs = self.env.reset()
        self._last_episode_starts = np.ones((self.env.num_envs,), dtype=bool)
        self._pending = None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_pending"]

    # -- rollout ---------------------------------------------------------------------------
    def _set_temperature(self) -> float:
        temperature = temperature_at(self.config, self._current_progress_remaining)
        if hasattr(self.policy, "temperature"):
            self.policy.temperature = temperature
        return temperature

    def _env_step(self, callback: BaseCallback) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray] | None:
        """Sample actions for ``self._last_obs`` and step every env; None when a callback stops."""
        n_envs = self.env.num_envs
        with th.no_grad():
            distribution = self.policy.get_distribution(obs_as_tensor(self._last_obs, self.device))
            actions = distribution.sample().cpu().numpy()  # (n_envs, *action_shape)
        env_actions = actions.reshape((n_envs, *self.action_space.shape))
        if isinstance(self.action_space, spaces.Box):
            env_actions = np.clip(env_actions, self.action_space.low, self.action_space.high)
        elif isinstance(self.action_space, (spaces.MultiBinary, spaces.Discrete, spaces.MultiDiscrete)):
            env_actions = env_actions.astype(self.action_space.dtype)
        new_obs, rewards, dones, infos = self.env.step(env_actions)
        self.num_timesteps += n_envs
        if not callback.on_step():
            return None
        self._update_info_buffer(infos, dones)
        return actions, new_obs, rewards, dones

    def _collect_free(self, callback: BaseCallback, n_episodes: int) -> list[list[Step]] | None:
        """Step continuously until ``n_episodes`` episodes complete (partial ones carry over)."""
        n_envs = self.env.num_envs
        if self._pending is None or len(self._pending) != n_envs:
            self._pending = [[] for _ in range(n_envs)]
        finished: list[list[Step]] = []
        while len(finished) < n_episodes:
            stepped = self._env_step(callback)
            if stepped is None:
                return None
            actions, new_obs, rewards, dones = stepped
            for i in range(n_envs):
                self._pending[i].append((_slice_obs(self._last_obs, i), actions[i], float(rewards[i])))
                if dones[i]:
                    finished.append(self._pending[i])
                    self._pending[i] = []
            self._last_obs = new_obs
        return finished[:n_episodes]

    def _collect_group(self, callback: BaseCallback) -> list[list[Step]] | None:
        """``group_size`` episodes on one case drawn by an ordinary reset."""
        self.env.reset()
        case = self.env.reset_infos[0].get("case") if self.env.reset_infos else None
        if case is None:
            raise ValueError("group_size > 1 needs an env whose reset info holds 'case' (and reset(options={'case': i}))")
        n_envs = self.env.num_envs
        episodes: list[list[Step]] = []
        while len(episodes) < self.config.group_size:
            self.env.set_options({"case": case})
            self._last_obs = self.env.reset()
            current: list[list[Step]] = [[] for _ in range(n_envs)]
            open_ = np.ones(n_envs, dtype=bool)
            while open_.any():
                stepped = self._env_step(callback)
                if stepped is None:
                    return None
                actions, new_obs, rewards, dones = stepped
                for i in np.flatnonzero(open_):
                    current[i].append((_slice_obs(self._last_obs, i), actions[i], float(rewards[i])))
                    if dones[i]:
                        open_[i] = False
                self._last_obs = new_obs
            episodes.extend(current)
        self._pending = None  # the free-running state is no longer valid
        return episodes[: self.config.group_size]

    def collect_episodes(self, callback: BaseCallback) -> EpisodeBatch | None:
        """One update's episodes (in group order); None when a callback asks to stop."""
        if self.env is None or self._last_obs is None:
            raise RuntimeError("collect_episodes needs an env and a first observation: call learn()")
        self.policy.set_training_mode(False)
        callback.on_rollout_start()
        if self.config.group_size == 1:
            episodes = self._collect_free(callback, self.config.episodes_per_update)
        else:
            episodes = []
            for _ in range(self.config.groups_per_update):
                group = self._collect_group(callback)
                if group is None:
                    return None
                episodes.extend(group)
        if episodes is None:
            return None
        callback.on_rollout_end()
        return EpisodeBatch.from_episodes(episodes, self.config.gamma)

    # -- update ----------------------------------------------------------------------------
    def train_on_episodes(self, batch: EpisodeBatch) -> dict[str, float]:
        """One gradient step on a batch; returns the logged statistics."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        # per step: its return-to-go minus (the group's other episodes' mean return)
        centring = batch.episode_returns - group_centred(batch.episode_returns, self.config.group_size)  # (episodes,)
        returns = batch.step_returns - centring[batch.episode_index]  # (n,)
        baseline_before = self.baseline.mean
        advantages = self.baseline.advantages(returns)  # (n,)
        if self.config.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        n = len(returns)
        self.policy.optimizer.zero_grad()
        total_loss, log_probs, entropies = 0.0, [], []
        for start in range(0, n, self.config.minibatch_size):
            chunk = slice(start, min(start + self.config.minibatch_size, n))
            obs = obs_as_tensor(_stack_obs(batch.observations[chunk]), self.device)
            actions = th.as_tensor(batch.actions[chunk], device=self.device)
            adv = th.as_tensor(advantages[chunk], dtype=th.float32, device=self.device)
            distribution = self.policy.get_distribution(obs)
            loss, log_prob, entropy = policy_gradient_loss(distribution, actions, adv, self.config.entropy_coef)
            (loss / n).backward()
            total_loss += float(loss.detach()) / n
            log_probs.append(log_prob.detach())
            entropies.append(entropy.detach())
        if self.config.max_grad_norm is not None:
            grad_norm = float(th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.max_grad_norm))
        else:
            grad_norm = float(th.sqrt(sum((p.grad**2).sum() for p in self.policy.parameters() if p.grad is not None)))
        self.policy.optimizer.step()
        self._n_updates += 1
        residual = returns - baseline_before
        return {
            "train/mean_return": float(batch.episode_returns.mean()),
            "train/entropy": float(th.cat(entropies).mean()),
            "train/log_prob": float(th.cat(log_probs).mean()),
            "train/loss": total_loss,
            "train/grad_norm": grad_norm,
            "train/baseline_mean": self.baseline.mean,
            "train/baseline_std": float(np.sqrt(self.baseline.var)),
            "train/baseline_explained_variance": float(1.0 - residual.var() / batch.step_returns.var())
            if batch.step_returns.var() > 0 else 0.0,
            "train/n_updates": float(self._n_updates),
        }

    def learn(
        self: SelfReinforce,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "Reinforce",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfReinforce:
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        callback.on_training_start({"total_timesteps": total_timesteps}, {})
        while self.num_timesteps < total_timesteps:
            temperature = self._set_temperature()  # sampling and loss use the same temperature
            batch = self.collect_episodes(callback)
            if batch is None:
                break
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            stats = self.train_on_episodes(batch)
            stats["train/temperature"] = temperature
            for key, value in stats.items():
                self.logger.record(key, value)
            if log_interval > 0 and self._n_updates % log_interval == 0:
                self._dump_logs()
        callback.on_training_end()
        return self

    def _dump_logs(self) -> None:
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            self.logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)
