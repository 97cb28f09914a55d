"""The hydrogel torch vector env in Gymnasium's NEXT_STEP autoreset mode (what RLlib's env
runners assume), and ``envs.rllib.make_from_config`` (no Ray needed)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.hydrogel.vector import HydrogelVectorEnv
from envs.rllib import make_from_config


def _actions(env: gym.vector.VectorEnv, seed: int) -> dict:
    env.action_space.seed(seed)
    return env.action_space.sample()


def test_next_step_returns_the_last_observation_then_resets_with_reward_zero() -> None:
    same = HydrogelVectorEnv(4, n_synthetic=20)
    nxt = HydrogelVectorEnv(4, n_synthetic=20, autoreset_mode="next_step")
    assert nxt.metadata["autoreset_mode"] is gym.vector.AutoresetMode.NEXT_STEP
    obs_same, _ = same.reset(seed=3)
    obs_next, _ = nxt.reset(seed=3)
    np.testing.assert_array_equal(obs_same, obs_next)
    a = _actions(nxt, 0)
    _, r_same, term_same, _, info_same = same.step(a)
    final, r_next, term_next, _, _ = nxt.step(a)
    np.testing.assert_array_equal(r_same, r_next)  # the same designs scored alike
    assert term_next.all() and term_same.all()
    np.testing.assert_array_equal(final, info_same["final_obs"])  # the last observation, not a new patient
    new_obs, r_reset, term_reset, trunc_reset, info = nxt.step(_actions(nxt, 1))  # actions ignored
    assert np.all(r_reset == 0) and not term_reset.any() and not trunc_reset.any() and info["reset"].all()
    assert not np.array_equal(new_obs, final)
    _, r_again, term_again, _, info_again = nxt.step(_actions(nxt, 2))
    assert term_again.all() and not info_again["reset"].any() and np.all(r_again != 0)


def test_an_unknown_autoreset_mode_is_named() -> None:
    with pytest.raises(ValueError, match="autoreset_mode must be 'same_step' or 'next_step'"):
        HydrogelVectorEnv(2, n_synthetic=20, autoreset_mode="disabled")


def test_make_from_config_builds_single_and_vector_envs() -> None:
    single = make_from_config("Hydrogel-v0", {"n_synthetic": 20})
    assert single.observation_space.shape == (13,)
    vector = make_from_config("Hydrogel-v0", {"n_synthetic": 20, "num_envs": 3})
    assert isinstance(vector.unwrapped, HydrogelVectorEnv) and vector.num_envs == 3
    assert vector.metadata["autoreset_mode"] is gym.vector.AutoresetMode.NEXT_STEP
    taxonomy = make_from_config("Taxonomy-v0", {"num_envs": 2})
    assert isinstance(taxonomy, gym.vector.SyncVectorEnv) and taxonomy.num_envs == 2
    with pytest.raises(ValueError, match="unknown env 'Nope-v0'"):
        make_from_config("Nope-v0", {})
