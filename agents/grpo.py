"""GRPO (group relative policy optimisation) with group rollouts on replayed cases, SB3-shaped.

Read top to bottom: :class:`RewardScaling` and :class:`GRPOConfig` (validated
hyperparameters), the rollout storage :class:`GroupRollout` and
:func:`collect_group_rollout` (B cases x G episodes, each case replayed with
``reset(options={"case": c})``), :func:`group_advantages`, the scoring function
:func:`score_actions` (the *stored* actions under the *stored* masks) and
:func:`grpo_loss`, then :class:`GRPO`, whose ``learn`` alternates
``collect_group_rollout`` and ``train_on_rollout``.

What it fixes relative to the source system of Prostate-v0 (seed 001 and its fork,
``../shared/reference/prostate.md``):

- The update scores the actions that were stored with the rollout (the source
  re-sampled new actions, so its ratio compared log-probabilities of actions that had
  not earned the rewards). At the first update epoch the ratio is 1 on every action.
- The masks seen at rollout time are stored and re-applied when the actions are
  re-scored (sb3-contrib's rule), so a masked action never gets probability.
- The entropy bonus is the policy distribution's own entropy, with gradient (the
  source used -mean log p of the sampled actions).
- Features come from the env's cache: an iteration runs the policy (and the reward
  model inside the env), never an image encoder.

Multi-step episodes (Prostate-v0's sequential mode, Taxonomy-v0) are scored as
outcomes: every step of an episode gets the episode's group advantage (as GRPO does
for the tokens of a completion); with a critic, step t gets ``G_t - V(s_t)`` (G_t the
return-to-go), scaled as the option says.

**BatchNorm.** A policy with BatchNorm (the Prostate attention policy) is a function of
its minibatch in training mode, so "the probability of the stored action" would depend
on which other steps share the minibatch and the ratio would not start at 1. GRPO
therefore runs the policy in evaluation mode for sampling *and* for the loss (BatchNorm
uses its running statistics), and refreshes those statistics once per iteration, after
the update, with one no-gradient pass over the iteration's observations.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

__all__ = [
    "GRPO",
    "GRPOConfig",
    "GroupRollout",
    "RewardScaling",
    "collect_group_rollout",
    "group_advantages",
    "grpo_loss",
    "k3_kl",
    "score_actions",
]

SelfGRPO = TypeVar("SelfGRPO", bound="GRPO")


class RewardScaling(str, Enum):
    """What the centred rewards are divided by (``GRPOConfig.reward_scaling``)."""

    GROUP = "group"
    """The group's standard deviation + ``std_eps`` (GRPO)."""
    BATCH = "batch"
    """The standard deviation of all the iteration's returns + ``std_eps``."""
    NONE = "none"
    """Not scaled (Dr. GRPO: the per-group std over-weights near-constant groups)."""


@dataclass(frozen=True)
class GRPOConfig:
    """Hyperparameters of :class:`GRPO` (the learning rate lives in SB3's schedule).

    ``reward_scaling`` takes the values of :class:`RewardScaling`: ``group``, ``batch``
    or ``none``.
    """

    groups_per_iteration: int = 8
    """B: cases drawn per iteration (without replacement when the split has enough)."""
    group_size: int = 8
    """G: episodes sampled on each case; advantages compare them with each other."""
    n_epochs: int = 4
    """U: update epochs over the iteration's stored steps."""
    minibatch_size: int | None = None
    """Steps per gradient step; None: the whole iteration in one step per epoch."""
    clip_range: float = 0.2
    """PPO clipping of the probability ratio, in (0, 1)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL estimate to the frozen initial policy (0: no reference kept)."""
    ent_coef: float = 0.0
    """Weight of the policy entropy bonus (the distribution's entropy, with gradient)."""
    max_grad_norm: float | None = 0.5
    """Clip the gradient's global norm (None: no clipping)."""
    reward_scaling: RewardScaling | str = RewardScaling.GROUP
    """How centred returns are scaled: ``group``, ``batch`` or ``none`` (see RewardScaling)."""
    std_eps: float = 1e-4
    """Added to the standard deviation before dividing (the source's 1e-4)."""
    use_critic: bool = False
    """Advantage ``G_t - V(s_t)`` from the policy's value head (trained with ``vf_coef``)
    instead of the group mean."""
    vf_coef: float = 0.5
    """Weight of the value loss (with ``use_critic``)."""
    gamma: float = 1.0
    """Discount of the return-to-go, in [0, 1]."""
    cotrain_decoder: bool = False
    """Prostate-v0 only: train the env's reward model (the SAM decoder) on every rollout's
    points with its supervised loss, in the same backward pass (``agents.grpo_cotraining``)."""
    rl_weight: float = 0.8
    """With ``cotrain_decoder``: total loss = supervised + rl_weight x RL."""
    decoder_lr: float = 1e-4
    """With ``cotrain_decoder``: AdamW learning rate of the decoder."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reward_scaling", _parse_scaling(self.reward_scaling))

        def positive_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        checks = {
            "groups_per_iteration": (self.groups_per_iteration, positive_int(self.groups_per_iteration), "an integer >= 1"),
            "group_size": (self.group_size, positive_int(self.group_size) and self.group_size >= 2, "an integer >= 2"),
            "n_epochs": (self.n_epochs, positive_int(self.n_epochs), "an integer >= 1"),
            "minibatch_size": (self.minibatch_size, self.minibatch_size is None or positive_int(self.minibatch_size),
                               "an integer >= 1 or None"),
            "clip_range": (self.clip_range, 0.0 < self.clip_range < 1.0, "in (0, 1)"),
            "kl_coef": (self.kl_coef, self.kl_coef >= 0.0, ">= 0"),
            "ent_coef": (self.ent_coef, self.ent_coef >= 0.0, ">= 0"),
            "max_grad_norm": (self.max_grad_norm, self.max_grad_norm is None or self.max_grad_norm > 0.0, "> 0 or None"),
            "std_eps": (self.std_eps, self.std_eps > 0.0, "> 0"),
            "vf_coef": (self.vf_coef, self.vf_coef >= 0.0, ">= 0"),
            "gamma": (self.gamma, 0.0 <= self.gamma <= 1.0, "in [0, 1]"),
            "rl_weight": (self.rl_weight, self.rl_weight >= 0.0, ">= 0"),
            "decoder_lr": (self.decoder_lr, self.decoder_lr > 0.0, "> 0"),
        }
        for name, (value, ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"GRPO {name} must be {allowed}, got {value!r}")

    @property
    def episodes_per_iteration(self) -> int:
        return self.groups_per_iteration * self.group_size


def _parse_scaling(value: RewardScaling | str) -> RewardScaling:
    try:
        return RewardScaling(value)
    except ValueError:
        valid = ", ".join(m.value for m in RewardScaling)
        raise ValueError(f"GRPO reward_scaling must be one of {valid}, got {value!r}") from None


# ----------------------------------------------------------------------------- rollout


@dataclass
class GroupRollout:
    """One iteration's steps, flattened in the order they were taken (n steps, E episodes).

    ``masks`` is None when the policy takes no masks.
    """

    observations: dict[str, np.ndarray] | np.ndarray
    """(n, *obs_shape) per key."""
    actions: np.ndarray
    """(n, *action_shape) as sampled (never clipped)."""
    masks: np.ndarray | None
    """(n, mask_dim) bool, True = allowed, as seen when the action was sampled."""
    old_log_prob: np.ndarray
    """(n,) log-probability of the stored action under the sampling policy."""
    old_values: np.ndarray | None
    """(n,) value estimates at sampling time (with a critic)."""
    episode: np.ndarray
    """(n,) index of the step's episode in 0..E-1."""
    step_rewards: np.ndarray
    """(n,) the env's reward for the step."""
    episode_group: np.ndarray
    """(E,) group (case slot 0..B-1) of each episode."""
    episode_case: np.ndarray
    """(E,) case index replayed by each episode."""
    final_infos: list[dict[str, Any]]
    """(E,) the info of each episode's last step (the science: points, scores, ...)."""
    gamma: float = 1.0

    @property
    def n_steps(self) -> int:
        return len(self.actions)

    @property
    def episode_returns(self) -> np.ndarray:
        """(E,) undiscounted return of each episode."""
        return np.bincount(self.episode, weights=self.step_rewards, minlength=len(self.episode_group))

    @property
    def returns_to_go(self) -> np.ndarray:
        """(n,) discounted return from each step to its episode's end."""
        out = np.zeros(self.n_steps)
        running = np.zeros(len(self.episode_group))
        for t in range(self.n_steps - 1, -1, -1):  # steps of one episode are in order
            e = self.episode[t]
            running[e] = self.step_rewards[t] + self.gamma * running[e]
            out[t] = running[e]
        return out


def _takes_masks(policy: BasePolicy) -> bool:
    """sb3-contrib's convention: masked policies take ``action_masks=`` (found by name)."""
    try:
        return "action_masks" in inspect.signature(policy.get_distribution).parameters
    except (TypeError, ValueError):
        return False


def _env_masks(env: gym.Env) -> np.ndarray:
    try:
        method = env.get_wrapper_attr("action_masks")
    except AttributeError:
        raise TypeError(f"the policy takes action masks but env {env} has no action_masks()") from None
    return np.asarray(method(), dtype=bool).reshape(-1)


def _stack(observations: Sequence[Any]) -> dict[str, np.ndarray] | np.ndarray:
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


def _select(observations: dict[str, np.ndarray] | np.ndarray, index: np.ndarray) -> dict[str, np.ndarray] | np.ndarray:
    if isinstance(observations, dict):
        return {key: value[index] for key, value in observations.items()}
    return observations[index]


def _distribution(policy: BasePolicy, obs: Any, masks: th.Tensor | np.ndarray | None) -> Any:
    if masks is None:
        return policy.get_distribution(obs)
    return policy.get_distribution(obs, action_masks=masks)


def _env_action(action: np.ndarray, space: spaces.Space) -> np.ndarray:
    """The action as the env takes it: Box clipped to its bounds (one named boundary; the
    stored action stays unclipped), integer spaces cast to their dtype."""
    action = action.reshape(space.shape)
    if isinstance(space, spaces.Box):
        return np.clip(action, space.low, space.high)
    if isinstance(space, spaces.Discrete):
        return np.int64(action.reshape(()))
    return action.astype(space.dtype)


def collect_group_rollout(
    policy: BasePolicy,
    envs: Sequence[gym.Env],
    cases: Sequence[int],
    group_size: int,
    *,
    device: th.device | str = "cpu",
    with_values: bool = False,
    on_step: Callable[[int, list[tuple[dict[str, Any], bool]]], bool] | None = None,
    gamma: float = 1.0,
) -> GroupRollout | None:
    """Play ``group_size`` episodes on each of ``cases`` with ``policy`` (sampling).

    The B x G episodes are dealt to the envs: every env plays one episode at a time and,
    when it ends, replays the next queued case with ``reset(options={"case": c})``. All
    envs with a running episode are stepped with one batched policy call. ``on_step(n,
    finished)`` is called after each batched step with the number of env steps taken and
    the (final info, done) of those that ended an episode; returning False stops the
    rollout (None is returned). The policy should be in evaluation mode.
    """
    queue = [(group, int(case)) for group, case in enumerate(cases) for _ in range(group_size)]
    masked = _takes_masks(policy)
    action_space = envs[0].action_space
    n_envs = len(envs)
    current: list[int | None] = [None] * n_envs  # episode index each env plays
    obs_now: list[Any] = [None] * n_envs
    observations, actions, masks, log_probs, values, step_episode, rewards = [], [], [], [], [], [], []
    final_infos: list[dict[str, Any]] = [{} for _ in queue]
    next_episode = 0

    def start(env_index: int) -> None:
        nonlocal next_episode
        if next_episode >= len(queue):
            current[env_index] = None
            return
        current[env_index] = next_episode
        obs_now[env_index], _ = envs[env_index].reset(options={"case": queue[next_episode][1]})
        next_episode += 1

    for i in range(n_envs):
        start(i)
    while any(e is not None for e in current):
        active = [i for i in range(n_envs) if current[i] is not None]
        obs_batch = _stack([obs_now[i] for i in active])
        mask_batch = np.stack([_env_masks(envs[i]) for i in active]) if masked else None
        with th.no_grad():
            obs_tensor = obs_as_tensor(obs_batch, device)
            distribution = _distribution(policy, obs_tensor, mask_batch)
            sampled = distribution.sample()  # (b, *action_shape)
            log_prob = distribution.log_prob(sampled)  # (b,)
            value = policy.predict_values(obs_tensor).flatten() if with_values else None  # (b,)
        sampled_np = sampled.cpu().numpy()
        finished: list[tuple[dict[str, Any], bool]] = []
        for row, i in enumerate(active):
            episode = current[i]
            observations.append(obs_now[i])
            actions.append(sampled_np[row])
            if mask_batch is not None:
                masks.append(mask_batch[row])
            log_probs.append(float(log_prob[row]))
            if value is not None:
                values.append(float(value[row]))
            step_episode.append(episode)
            obs, reward, terminated, truncated, info = envs[i].step(_env_action(sampled_np[row], action_space))
            if not np.isfinite(reward):
                raise ValueError(f"env returned a non-finite reward {reward!r} on case {queue[episode][1]}")
            rewards.append(float(reward))
            obs_now[i] = obs
            if terminated or truncated:
                final_infos[episode] = info
                finished.append((info, True))
                start(i)
        if on_step is not None and not on_step(len(active), finished):
            return None
    return GroupRollout(
        observations=_stack(observations),
        actions=np.stack(actions),
        masks=np.stack(masks) if masked else None,
        old_log_prob=np.asarray(log_probs, dtype=np.float32),
        old_values=np.asarray(values, dtype=np.float32) if with_values else None,
        episode=np.asarray(step_episode, dtype=np.int64),
        step_rewards=np.asarray(rewards, dtype=np.float64),
        episode_group=np.asarray([g for g, _ in queue], dtype=np.int64),
        episode_case=np.asarray([c for _, c in queue], dtype=np.int64),
        final_infos=final_infos,
        gamma=gamma,
    )


# -------------------------------------------------------------------------- advantages


def group_advantages(
    returns: np.ndarray, group: np.ndarray, scaling: RewardScaling, eps: float, baseline: np.ndarray | None = None
) -> np.ndarray:
    """Advantages of E episodes (or n steps) from their returns (E,) and group ids (E,).

    Without ``baseline``: ``(r - group mean) / scale``; with ``baseline`` (E,) (a
    critic's V(s)): ``(r - baseline) / scale``. ``scale`` is the group's std + eps
    (``group``), the batch's std + eps (``batch``) or 1 (``none``). Group std is the
    population std over the group's entries.
    """
    returns = np.asarray(returns, dtype=np.float64)
    n_groups = int(group.max()) + 1
    count = np.bincount(group, minlength=n_groups).astype(np.float64)  # (B,)
    mean = np.bincount(group, weights=returns, minlength=n_groups) / count  # (B,)
    var = np.bincount(group, weights=(returns - mean[group]) ** 2, minlength=n_groups) / count  # (B,)
    centred = returns - (mean[group] if baseline is None else baseline)  # (E,)
    if scaling is RewardScaling.GROUP:
        return centred / (np.sqrt(var)[group] + eps)
    if scaling is RewardScaling.BATCH:
        return centred / (returns.std() + eps)
    return centred


# ------------------------------------------------------------------------------- loss


def score_actions(
    policy: BasePolicy, obs: Any, actions: th.Tensor, masks: th.Tensor | None
) -> tuple[th.Tensor, th.Tensor | None, Any]:
    """Log-probability (B,) of the *stored* actions under the stored masks, the
    distribution's entropy (B,) (None if it has none) and the distribution itself.
    Both carry gradient."""
    distribution = _distribution(policy, obs, masks)
    return distribution.log_prob(actions), distribution.entropy(), distribution


def k3_kl(log_prob: th.Tensor, ref_log_prob: th.Tensor) -> th.Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per sample: exp(d) - d - 1 with
    d = ref - log_prob; unbiased, >= 0, exactly 0 where the two policies agree."""
    d = ref_log_prob - log_prob
    return th.exp(d) - d - 1.0


@dataclass
class LossTerms:
    """One minibatch's loss and its pieces (diagnostics detached)."""

    loss: th.Tensor
    policy_loss: th.Tensor
    entropy: th.Tensor
    kl_ref: th.Tensor
    ratio: th.Tensor
    """(b,) detached."""
    clip_fraction: float


def grpo_loss(
    log_prob: th.Tensor,
    old_log_prob: th.Tensor,
    advantages: th.Tensor,
    entropy: th.Tensor | None,
    config: GRPOConfig,
    ref_log_prob: th.Tensor | None = None,
) -> LossTerms:
    """Clipped ratio objective on stored actions - ent_coef H + kl_coef KL_k3(pi || ref).

    All inputs (b,); ``log_prob`` and ``entropy`` carry gradient, the rest is data.
    """
    ratio = th.exp(log_prob - old_log_prob)  # (b,)
    clipped = th.clamp(ratio, 1.0 - config.clip_range, 1.0 + config.clip_range)
    policy_loss = -th.min(ratio * advantages, clipped * advantages).mean()
    if entropy is None:
        if config.ent_coef > 0:
            raise TypeError("ent_coef > 0 needs a policy distribution with entropy(); it returned None")
        entropy = th.zeros_like(log_prob)
    entropy_mean = entropy.mean()
    kl = k3_kl(log_prob, ref_log_prob).mean() if ref_log_prob is not None else th.zeros((), device=log_prob.device)
    loss = policy_loss - config.ent_coef * entropy_mean + config.kl_coef * kl
    with th.no_grad():
        clip_fraction = float(((ratio - 1.0).abs() > config.clip_range).float().mean())
    return LossTerms(loss, policy_loss, entropy_mean, kl, ratio.detach(), clip_fraction)


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


# --------------------------------------------------------------------------- algorithm


class GRPO(BaseAlgorithm):
    """GRPO for any SB3 actor-critic policy (``get_distribution``, ``predict_values``,
    ``optimizer``; ``action_masks=`` found by name) on envs that replay cases.

    Constructor arguments are SB3's (``learning_rate`` float or schedule, then keyword
    only ``policy_kwargs``, ``stats_window_size``, ``tensorboard_log``, ``verbose``,
    ``seed``, ``device``) plus every field of :class:`GRPOConfig` (``config_class``; the
    defaults live there only). The env must be a ``DummyVecEnv`` (GRPO resets each
    sub-env on the case it replays) of envs with ``unwrapped.n_cases`` and
    ``reset(options={"case": i})``.

    One iteration = B cases x G episodes, then U epochs. Logged per iteration:
    ``rollout/reward_mean``, ``rollout/group_reward_std`` (mean within-group std),
    ``rollout/zero_variance_groups`` (fraction of groups whose returns are all equal:
    they carry no gradient), ``train/entropy``, ``train/kl_ref`` (k3, with a reference),
    ``train/approx_kl`` (to the sampling policy), ``train/clip_fraction``,
    ``train/explained_variance`` (with a critic), losses and ``train/n_updates``.
    """

    policy_aliases: dict[str, type[BasePolicy]] = {
        "MlpPolicy": ActorCriticPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }
    config_class = GRPOConfig
    """The hyperparameters ``**hyperparams`` takes (``train.config`` validates against its fields)."""

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
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
        self._n_updates = 0
        self._case_rng = np.random.default_rng(seed)
        self.reference_policy: BasePolicy | None = None
        self.cotrainer: Any = None
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs)
        self.policy = self.policy.to(self.device)
        for needed in ("get_distribution", "predict_values", "optimizer"):
            if not hasattr(self.policy, needed):
                raise TypeError(f"GRPO needs a policy with {needed}; {type(self.policy).__name__} has none")
        if self.config.kl_coef > 0:
            self.reference_policy = copy.deepcopy(self.policy).requires_grad_(False)
            self.reference_policy.set_training_mode(False)
        if self.config.cotrain_decoder and self.env is not None:
            from agents.grpo_cotraining import DecoderCoTrainer  # Prostate-v0 only: imported on demand

            self.cotrainer = DecoderCoTrainer.from_envs(self._sub_envs(), self.config.decoder_lr, self.device)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        names = ["policy", "policy.optimizer"]
        if self.reference_policy is not None:
            names.append("reference_policy")
        return names, []

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "reference_policy", "cotrainer"]

    def _sub_envs(self) -> list[gym.Env]:
        if not isinstance(self.env, DummyVecEnv):
            raise TypeError(
                f"GRPO replays cases on each sub-env, so it needs a DummyVecEnv (vec_env: dummy); got {type(self.env).__name__}"
            )
        for env in self.env.envs:
            if not hasattr(env.unwrapped, "n_cases"):
                raise TypeError(f"GRPO needs envs that replay cases (unwrapped.n_cases, reset(options={{'case': i}})); {env} has no n_cases")
        return list(self.env.envs)

    # -- prediction ------------------------------------------------------------------------
    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``; ``action_masks`` is passed on to policies that take masks."""
        if action_masks is not None and _takes_masks(self.policy):
            return self.policy.predict(observation, state, episode_start, deterministic, action_masks=action_masks)
        return self.policy.predict(observation, state, episode_start, deterministic)

    # -- rollout ---------------------------------------------------------------------------
    def draw_cases(self, n_cases: int) -> np.ndarray:
        """B case indices: without replacement when the split has at least B cases."""
        B = self.config.groups_per_iteration
        return self._case_rng.choice(n_cases, size=B, replace=B > n_cases)

    def collect(self, callback: BaseCallback) -> GroupRollout | None:
        """One iteration's B x G episodes; None when a callback asks to stop."""
        envs = self._sub_envs()
        self.policy.set_training_mode(False)
        callback.on_rollout_start()

        def on_step(n_steps: int, finished: list[tuple[dict[str, Any], bool]]) -> bool:
            self.num_timesteps += n_steps
            if finished:
                self._update_info_buffer([info for info, _ in finished], np.array([d for _, d in finished]))
            return callback.on_step()

        rollout = collect_group_rollout(
            self.policy, envs, self.draw_cases(int(envs[0].unwrapped.n_cases)), self.config.group_size,
            device=self.device, with_values=self.config.use_critic, on_step=on_step, gamma=self.config.gamma,
        )
        if rollout is not None:
            callback.on_rollout_end()
        return rollout

    # -- update ----------------------------------------------------------------------------
    def step_advantages(self, rollout: GroupRollout) -> np.ndarray:
        """(n,) advantage of every stored step (see the module docstring)."""
        scaling = self.config.reward_scaling
        if not self.config.use_critic:
            per_episode = group_advantages(rollout.episode_returns, rollout.episode_group, scaling, self.config.std_eps)
            return per_episode[rollout.episode]
        returns = rollout.returns_to_go  # (n,)
        step_group = rollout.episode_group[rollout.episode]  # (n,)
        return group_advantages(returns, step_group, scaling, self.config.std_eps, baseline=rollout.old_values)

    def _tensors(self, rollout: GroupRollout, index: np.ndarray) -> tuple[Any, th.Tensor, th.Tensor | None]:
        obs = obs_as_tensor(_select(rollout.observations, index), self.device)
        actions = th.as_tensor(rollout.actions[index], device=self.device)
        masks = None if rollout.masks is None else th.as_tensor(rollout.masks[index], device=self.device)
        return obs, actions, masks

    def _reference_log_prob(self, rollout: GroupRollout) -> np.ndarray | None:
        """(n,) log-probs of the stored actions under the frozen reference (one pass)."""
        if self.reference_policy is None:
            return None
        out = []
        with th.no_grad():
            for index in self._chunks(rollout.n_steps):
                obs, actions, masks = self._tensors(rollout, index)
                out.append(score_actions(self.reference_policy, obs, actions, masks)[0].cpu().numpy())
        return np.concatenate(out)

    def _chunks(self, n: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        order = np.arange(n) if rng is None else rng.permutation(n)
        size = self.config.minibatch_size or n
        return [order[s : s + size] for s in range(0, n, size)]

    def _refresh_batch_norm(self, rollout: GroupRollout) -> None:
        """Update BatchNorm running statistics from this iteration's observations."""
        if not _has_batch_norm(self.policy):
            return
        self.policy.set_training_mode(True)
        with th.no_grad():
            for index in self._chunks(rollout.n_steps):
                self.policy.extract_features(obs_as_tensor(_select(rollout.observations, index), self.device))
        self.policy.set_training_mode(False)

    def train_on_rollout(self, rollout: GroupRollout) -> dict[str, float]:
        """U epochs of the GRPO loss on the stored steps; returns the logged statistics."""
        self.policy.set_training_mode(False)  # see the module docstring (BatchNorm)
        self._update_learning_rate(self.policy.optimizer)
        advantages = self.step_advantages(rollout)  # (n,)
        ref_log_prob = self._reference_log_prob(rollout)
        returns_to_go = rollout.returns_to_go
        rng = np.random.default_rng(int(self._case_rng.integers(2**31)))
        stats: dict[str, list[float]] = {k: [] for k in ("loss", "policy_loss", "entropy", "kl_ref", "approx_kl",
                                                          "clip_fraction", "value_loss", "supervised_loss", "grad_norm")}
        first_ratio_error = 0.0
        for epoch in range(self.config.n_epochs):
            for index in self._chunks(rollout.n_steps, rng):
                obs, actions, masks = self._tensors(rollout, index)
                log_prob, entropy, _ = score_actions(self.policy, obs, actions, masks)
                old = th.as_tensor(rollout.old_log_prob[index], device=self.device)
                adv = th.as_tensor(advantages[index], dtype=th.float32, device=self.device)
                ref = None if ref_log_prob is None else th.as_tensor(ref_log_prob[index], device=self.device)
                terms = grpo_loss(log_prob, old, adv, entropy, self.config, ref)
                loss = terms.loss
                if self.config.use_critic:
                    values = self.policy.predict_values(obs).flatten()  # (b,)
                    target = th.as_tensor(returns_to_go[index], dtype=th.float32, device=self.device)
                    value_loss = th.nn.functional.mse_loss(values, target)
                    loss = loss + self.config.vf_coef * value_loss
                    stats["value_loss"].append(float(value_loss.detach()))
                if self.cotrainer is not None:
                    supervised = self.cotrainer.supervised_loss(rollout, index)
                    loss = supervised + self.config.rl_weight * loss
                    stats["supervised_loss"].append(float(supervised.detach()))
                self.policy.optimizer.zero_grad()
                if self.cotrainer is not None:
                    self.cotrainer.zero_grad()
                loss.backward()  # one backward pass through policy (and decoder)
                if self.config.max_grad_norm is not None:
                    grad_norm = float(th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.max_grad_norm))
                else:
                    grads = [p.grad.norm() ** 2 for p in self.policy.parameters() if p.grad is not None]
                    grad_norm = float(th.sqrt(sum(grads))) if grads else 0.0
                self.policy.optimizer.step()
                if self.cotrainer is not None:
                    self.cotrainer.step()
                if epoch == 0 and not stats["loss"]:
                    first_ratio_error = float((terms.ratio - 1.0).abs().max())
                with th.no_grad():
                    stats["approx_kl"].append(float(k3_kl(old, log_prob.detach()).mean()))
                for key, value in (("loss", loss), ("policy_loss", terms.policy_loss), ("entropy", terms.entropy)):
                    stats[key].append(float(value.detach()))
                if ref is not None:
                    stats["kl_ref"].append(float(terms.kl_ref.detach()))
                stats["clip_fraction"].append(terms.clip_fraction)
                stats["grad_norm"].append(grad_norm)
                self._n_updates += 1
        self._refresh_batch_norm(rollout)
        if self.cotrainer is not None:
            self.cotrainer.sync_envs()  # later episodes are scored by the updated decoder
        return self._iteration_stats(rollout, stats, first_ratio_error)

    def _iteration_stats(self, rollout: GroupRollout, stats: dict[str, list[float]], first_ratio_error: float) -> dict[str, float]:
        returns = rollout.episode_returns  # (E,)
        by_group = returns.reshape(-1, self.config.group_size)  # (B, G): episodes are dealt group by group
        out = {
            "rollout/reward_mean": float(returns.mean()),
            "rollout/group_reward_std": float(by_group.std(axis=1).mean()),
            "rollout/zero_variance_groups": float(np.mean(np.ptp(by_group, axis=1) == 0.0)),
            "rollout/steps": float(rollout.n_steps),
            "train/first_epoch_ratio_error": first_ratio_error,
            "train/n_updates": float(self._n_updates),
        }
        for key, values in stats.items():
            if values:
                out[f"train/{key}"] = float(np.mean(values))
        if self.config.use_critic and rollout.old_values is not None:
            out["train/explained_variance"] = float(explained_variance(rollout.old_values, rollout.returns_to_go))
        if self.cotrainer is not None:
            out.update(self.cotrainer.last_metrics())
        return out

    def learn(
        self: SelfGRPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "GRPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfGRPO:
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        callback.on_training_start({"total_timesteps": total_timesteps}, {})
        if self.cotrainer is not None:
            self.cotrainer.start(self.logger)
        iteration = 0
        while self.num_timesteps < total_timesteps:
            rollout = self.collect(callback)
            if rollout is None:
                break
            iteration += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            for key, value in self.train_on_rollout(rollout).items():
                self.logger.record(key, value)
            if log_interval > 0 and iteration % log_interval == 0:
                self._dump_logs()
        if self.cotrainer is not None:
            self.cotrainer.finish(self.logger)
            self.logger.dump(step=self.num_timesteps)
        callback.on_training_end()
        return self

    def _dump_logs(self) -> None:
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            self.logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

