"""Every ScienceGym id for RLlib: build it from an RLlib ``env_config``.

RLlib (the ``[ray]`` extra) makes envs inside its env runners, in other processes or on
other machines, from a registered name and an ``env_config`` dict::

    from ray.rllib.algorithms.ppo import PPOConfig
    import envs.rllib

    envs.rllib.register_rllib_envs()  # "Hydrogel-v0", "Taxonomy-v0", ... for RLlib
    config = (PPOConfig().environment("Hydrogel-v0", env_config={"n_synthetic": 200})
              .env_runners(num_env_runners=1, num_envs_per_env_runner=64,
                           gym_env_vectorize_mode="vector_entry_point"))

``env_config`` holds the env's keyword arguments (those of ``gym.make(ID, **kwargs)``).
What must be picklable: the ``env_config`` values (paths as strings, numbers, lists:
they travel to every env runner) and the creator, which is a ``functools.partial`` of
:func:`make_from_config` (a module-level function, so it pickles by reference). Nothing
heavy is built in the driver: each runner builds its env from the cache directory.

Vectorisation: RLlib asks the creator for ``num_envs`` copies. Hydrogel-v0 and
HydrogelSearch-v0 then return their torch vector env (one batched outcome-model call per
step), with Gymnasium's NEXT_STEP autoreset that RLlib's runners assume; every other id
returns a Gymnasium ``SyncVectorEnv`` of single envs (``gym_env_vectorize_mode="sync"``
in the RLlib config gives the same).

Gymnasium: RLlib 2.60 pins ``gymnasium==1.2.2``; the project runs on it (the ``[ray]``
extra installs it) and on later 1.x.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

import envs

__all__ = ["make_from_config", "register_rllib_envs"]


def make_from_config(env_id: str, env_config: Mapping[str, Any] | None = None) -> gym.Env | gym.vector.VectorEnv:
    """``env_id`` built from an RLlib ``env_config`` (an ``EnvContext`` or a plain dict).

    A ``num_envs`` key asks for a vector env of that many copies (see module doc).
    """
    if env_id not in envs.ENV_IDS:
        raise ValueError(f"unknown env {env_id!r}; choose one of: {', '.join(envs.ENV_IDS)}")
    kwargs = dict(env_config or {})  # EnvContext is a dict with worker_index etc. as attributes
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is None:
        return gym.make(env_id, **kwargs)
    if envs.entry(env_id).vector_entry_point is not None:
        return gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode="vector_entry_point",
                            autoreset_mode="next_step", **kwargs)
    return gym.make_vec(env_id, num_envs=int(num_envs), vectorization_mode="sync", **kwargs)


def register_rllib_envs(env_ids: tuple[str, ...] = envs.ENV_IDS) -> list[str]:
    """Register ``env_ids`` (default all) with RLlib's env registry under their own names."""
    try:
        from ray.tune.registry import register_env
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("envs.rllib needs the ray extra: pip install -e '.[ray]'") from err
    for env_id in env_ids:
        register_env(env_id, functools.partial(make_from_config, env_id))
    return list(env_ids)
