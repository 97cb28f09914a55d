"""On-device PPO for torch-vectorised envs (thousands of envs on one CPU or GPU).

SB3's PPO keeps its rollout buffer in NumPy, so every step copies observations and
actions between device and host; with 2000 envs on a GPU that copy dominates (why
Isaac Gym, Brax and PureJaxRL keep rollouts on the accelerator). :class:`VecPPO`
keeps everything on ``device``: it needs an env exposing the :class:`TorchVecEnv`
protocol (``envs.hydrogel.sb3_vec.HydrogelSB3VecEnv`` does) and uses any SB3
``ActorCriticPolicy`` (e.g. ``policies.hybrid.HybridActorCriticPolicy``).

It is SB3-shaped (``VecPPO(policy, env, ...)``, ``learn``, ``predict``, ``save``,
``load``, loggers, callbacks) and reads top to bottom: :func:`collect_rollout`,
:func:`compute_gae`, :func:`ppo_loss`, then :meth:`VecPPO.learn` calling them.
Terminated episodes do not bootstrap; truncated ones bootstrap from the value of
their final observation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import Tensor

__all__ = ["TorchVecEnv", "PreparesActions", "VecPPOConfig", "Rollout", "collect_rollout", "compute_gae", "ppo_loss", "VecPPO"]

SelfVecPPO = TypeVar("SelfVecPPO", bound="VecPPO")


@runtime_checkable
class TorchVecEnv(Protocol):
    """A vector env that steps tensors on ``device`` (same-step autoreset)."""

    num_envs: int
    device: th.device

    def reset_tensors(self, seed: int | None = None) -> Tensor:
        """(N, *obs_shape) observations."""

    def step_tensors(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(N, *act_shape) actions -> obs, reward (N,), terminated (N,), truncated (N,), final_obs."""


@dataclass(frozen=True)
class VecPPOConfig:
    """PPO hyperparameters (validated; SB3's names and meanings)."""

    n_steps: int = 32
    """Env steps per env per rollout (rollout size = n_steps x num_envs)."""
    batch_size: int = 4096
    """Minibatch size; when it does not divide the rollout size the last minibatch of each
    epoch is smaller (as in SB3), so no sample is dropped."""
    n_epochs: int = 10
    """Passes over each rollout."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE smoothing."""
    clip_range: float = 0.2
    """Policy ratio clip."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""
    normalize_advantage: bool = True
    """Standardise advantages per minibatch."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{f.name} must be an integer >= 1, got {value!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("clip_range", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def rollout_size(self, num_envs: int) -> int:
        return self.n_steps * num_envs


@dataclass
class Rollout:
    """One rollout on device; T = n_steps, N = num_envs."""

    observations: Tensor  # (T, N, *obs)
    actions: Tensor  # (T, N, *act)
    log_probs: Tensor  # (T, N)
    values: Tensor  # (T, N)
    rewards: Tensor  # (T, N), truncations already bootstrapped
    terminated: Tensor  # (T, N) bool
    truncated: Tensor  # (T, N) bool
    last_values: Tensor  # (N,) value of the observation after the last step
    finished_returns: Tensor  # (E,) returns of episodes that ended in this rollout
    finished_lengths: Tensor  # (E,)


def collect_rollout(
    policy: ActorCriticPolicy,
    env: TorchVecEnv,
    last_obs: Tensor,
    n_steps: int,
    gamma: float,
    episode_return: Tensor,
    episode_length: Tensor,
    on_step: Callable[[], bool],
) -> tuple[Rollout, Tensor, bool]:
    """Play ``n_steps`` steps of every env with ``policy``; returns (rollout, next obs, continue?).

    ``episode_return`` / ``episode_length`` (N,) are running per-env tallies, updated in place.
    """
    observations, actions, log_probs, values, rewards, terminated, truncated = [], [], [], [], [], [], []
    done_returns, done_lengths = [], []
    obs, keep_going = last_obs, True
    for _ in range(n_steps):
        with th.no_grad():
            action, value, log_prob = policy(obs)  # (N, A), (N, 1), (N,)
        next_obs, reward, term, trunc, final_obs = env.step_tensors(action)
        reward = reward.float()  # (N,)
        episode_return += reward
        episode_length += 1
        if trunc.any():  # bootstrap truncations from the value of their final observation
            with th.no_grad():
                final_value = policy.predict_values(final_obs).flatten()  # (N,)
            reward = reward + gamma * th.where(trunc, final_value, th.zeros_like(final_value))
        done = term | trunc  # (N,)
        done_returns.append(episode_return[done].clone())
        done_lengths.append(episode_length[done].clone())
        episode_return[done] = 0.0
        episode_length[done] = 0
        observations.append(obs)
        actions.append(action)
        log_probs.append(log_prob)
        values.append(value.flatten())
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        obs = next_obs
        if not on_step():
            keep_going = False
            break
    with th.no_grad():
        last_values = policy.predict_values(obs).flatten()  # (N,)
    rollout = Rollout(
        observations=th.stack(observations), actions=th.stack(actions), log_probs=th.stack(log_probs),
        values=th.stack(values), rewards=th.stack(rewards), terminated=th.stack(terminated),
        truncated=th.stack(truncated), last_values=last_values,
        finished_returns=th.cat(done_returns), finished_lengths=th.cat(done_lengths),
    )
    return rollout, obs, keep_going


def compute_gae(rollout: Rollout, gamma: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
    """Advantages and returns (T, N). An episode boundary (terminated or truncated) stops
    the recursion; truncated rewards already hold their bootstrap."""
    steps = rollout.rewards.shape[0]
    advantages = th.zeros_like(rollout.rewards)  # (T, N)
    running = th.zeros_like(rollout.last_values)  # (N,)
    next_value = rollout.last_values
    for t in reversed(range(steps)):
        not_done = (~(rollout.terminated[t] | rollout.truncated[t])).float()  # (N,)
        delta = rollout.rewards[t] + gamma * next_value * not_done - rollout.values[t]
        running = delta + gamma * gae_lambda * not_done * running
        advantages[t] = running
        next_value = rollout.values[t]
    return advantages, advantages + rollout.values


@runtime_checkable
class PreparesActions(Protocol):
    """A policy that can do the parameter-free part of its log-probability once per rollout
    (``policies.hybrid.HybridActorCriticPolicy``); :meth:`VecPPO._train` then evaluates
    the prepared actions every epoch instead of the raw ones."""

    def prepare_actions(self, actions: Tensor) -> Tensor: ...

    def evaluate_prepared_actions(self, obs: Tensor, prepared: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...


LOSS_STATS = ("policy_gradient_loss", "value_loss", "entropy_loss", "clip_fraction", "approx_kl")
"""The diagnostics :func:`ppo_loss` returns, in order."""


def ppo_loss(
    policy: ActorCriticPolicy,
    observations: Tensor,
    actions: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    returns: Tensor,
    config: VecPPOConfig,
    evaluate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Clipped surrogate + value loss - entropy bonus for one minibatch (B, ...).

    ``evaluate(observations, actions)`` gives values, log-probs and entropy (default the
    policy's ``evaluate_actions``; :meth:`VecPPO._train` passes ``evaluate_prepared_actions``
    for a :class:`PreparesActions` policy).

    Returns the loss and its diagnostics (:data:`LOSS_STATS`) as one detached tensor on the
    loss's device: reading them with ``.item()`` per minibatch would make a GPU wait for
    every minibatch; the caller averages them once per update."""
    values, log_prob, entropy = (evaluate or policy.evaluate_actions)(observations, actions)  # (B, 1), (B,), (B,)
    if config.normalize_advantage and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = th.exp(log_prob - old_log_probs)  # (B,)
    surrogate = th.min(ratio * advantages, th.clamp(ratio, 1 - config.clip_range, 1 + config.clip_range) * advantages)
    policy_loss = -surrogate.mean()
    value_loss = th.nn.functional.mse_loss(returns, values.flatten())
    entropy_loss = -(entropy.mean() if entropy is not None else (-log_prob).mean())
    loss = policy_loss + config.ent_coef * entropy_loss + config.vf_coef * value_loss
    with th.no_grad():  # diagnostics only
        stats = th.stack([
            policy_loss, value_loss, entropy_loss,
            (th.abs(ratio - 1) > config.clip_range).float().mean(), ((ratio - 1) - th.log(ratio)).mean(),
        ])
    return loss, stats


def _torch_env(env: VecEnv) -> TorchVecEnv:
    """The TorchVecEnv under any SB3 VecEnv wrappers (e.g. VecMonitor)."""
    inner: Any = env
    while isinstance(inner, VecEnvWrapper):
        inner = inner.venv
    if not isinstance(inner, TorchVecEnv):
        raise TypeError(
            f"VecPPO needs an env with reset_tensors/step_tensors (a torch VecEnv, e.g. vec_env: torch);"
            f" got {type(inner).__name__}"
        )
    return inner


class VecPPO(BaseAlgorithm):
    """PPO with the rollout on device.

    Constructor arguments are SB3's (``learning_rate`` float or schedule, then keyword
    only ``policy_kwargs``, ``tensorboard_log``, ``verbose``, ``seed``, ``device``) plus
    every field of :class:`VecPPOConfig` as a keyword argument (``config_class``; the
    defaults live there only).
    """

    policy: ActorCriticPolicy
    config_class = VecPPOConfig
    """The hyperparameters ``**hyperparams`` takes (``train.config`` validates against its fields)."""

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 3e-4,
        *,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **hyperparams: Any,
    ) -> None:
        super().__init__(
            policy, env, learning_rate, policy_kwargs=policy_kwargs, tensorboard_log=tensorboard_log,
            verbose=verbose, device=device, seed=seed, support_multi_env=True, monitor_wrapper=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.config = self.config_class(**hyperparams)
        self.last_logged: dict[str, Any] = {}
        """The logger's values of the last iteration (rollout, update and timing), kept after dumping."""
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(
            self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs
        ).to(self.device)

    def learn(
        self: SelfVecPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "VecPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfVecPPO:
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        env = _torch_env(self.env)
        config, n = self.config, env.num_envs
        self._last_obs = env.reset_tensors(self.seed if reset_num_timesteps else None).to(self.device)
        self._episode_return = episode_return = th.zeros(n, device=self.device)
        self._episode_length = episode_length = th.zeros(n, dtype=th.long, device=self.device)
        callback.on_training_start(locals(), globals())
        iteration = 0

        def on_step() -> bool:
            self.num_timesteps += n
            callback.update_locals({})
            return callback.on_step()

        while self.num_timesteps < total_timesteps:
            self.policy.set_training_mode(False)
            callback.on_rollout_start()  # may restart the episodes (train.checkpointing)
            started = time.perf_counter()
            rollout, self._last_obs, keep_going = collect_rollout(
                self.policy, env, self._last_obs, config.n_steps, config.gamma, episode_return, episode_length, on_step
            )
            returns = rollout.finished_returns.tolist()
            for r, length in zip(returns, rollout.finished_lengths.tolist(), strict=True):
                self.ep_info_buffer.append({"r": r, "l": length})
            if returns:  # this rollout's episodes (ep_rew_mean averages the last 100 episodes)
                self.logger.record("rollout/mean_reward", sum(returns) / len(returns))
                self.logger.record("rollout/max_reward", max(returns))
            rollout_seconds = time.perf_counter() - started
            callback.update_locals({"rollout": rollout})
            callback.on_rollout_end()
            if not keep_going:
                break
            iteration += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            started = time.perf_counter()
            self._train(rollout)
            self.logger.record("time/rollout_seconds", rollout_seconds)
            self.logger.record("time/update_seconds", time.perf_counter() - started)
            self.last_logged = dict(self.logger.name_to_value)  # this iteration's values (dumping clears them)
            if log_interval and iteration % log_interval == 0:  # after the update: one row per iteration
                self._dump_logs(iteration)
        callback.on_training_end()
        return self

    def restart_episodes(self, seed: int) -> None:
        """Start every env on a fresh episode from ``seed`` (between rollouts; checkpoints
        do this so that a resumed run replays the same steps)."""
        self._last_obs = _torch_env(self.env).reset_tensors(seed).to(self.device)
        self._episode_return.zero_()
        self._episode_length.zero_()

    def _train(self, rollout: Rollout) -> None:
        """``n_epochs`` passes of minibatch PPO updates over one rollout."""
        config = self.config
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        advantages, returns = compute_gae(rollout, config.gamma, config.gae_lambda)  # (T, N) each
        size = rollout.rewards.numel()
        flat_obs = rollout.observations.reshape(size, *rollout.observations.shape[2:])  # (T*N, *obs)
        flat_actions = rollout.actions.reshape(size, *rollout.actions.shape[2:])  # (T*N, *act)
        evaluate = self.policy.evaluate_actions
        if isinstance(self.policy, PreparesActions):  # the action-only maths once, not once per epoch
            flat_actions, evaluate = self.policy.prepare_actions(flat_actions), self.policy.evaluate_prepared_actions
        flat = [flat_obs, flat_actions, rollout.log_probs.reshape(size), advantages.reshape(size), returns.reshape(size)]
        parameters = list(self.policy.parameters())
        stats = th.zeros(len(LOSS_STATS), device=self.device)
        n_minibatches = 0
        for _ in range(config.n_epochs):
            order = th.randperm(size, device=self.device)
            shuffled = [x[order] for x in flat]  # one gather per epoch; minibatches are then views
            for start in range(0, size, config.batch_size):
                loss, batch_stats = ppo_loss(
                    self.policy, *(x[start:start + config.batch_size] for x in shuffled), config=config,
                    evaluate=evaluate,
                )
                self.policy.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                th.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                self.policy.optimizer.step()
                stats += batch_stats
                n_minibatches += 1
        self._n_updates += config.n_epochs
        for key, value in zip(LOSS_STATS, (stats / n_minibatches).tolist(), strict=True):  # one host sync
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/n_updates", self._n_updates)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

    def _dump_logs(self, iteration: int) -> None:
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", sum(e["r"] for e in self.ep_info_buffer) / len(self.ep_info_buffer))
            self.logger.record("rollout/ep_len_mean", sum(e["l"] for e in self.ep_info_buffer) / len(self.ep_info_buffer))
        self.logger.record("time/iterations", iteration)
        self.logger.record("time/total_timesteps", self.num_timesteps)
        self.logger.dump(step=self.num_timesteps)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_obs", "_episode_return", "_episode_length", "last_logged"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []
