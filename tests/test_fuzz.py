"""Property tests over every registered id (hypothesis).

In-space actions — masked ones included, since they are drawn from the whole space —
never crash and never give NaN/inf in observations, rewards or numeric infos;
out-of-space actions raise ``ValueError`` naming the action (and the sub-action of a
Dict space); fuzzed reset options either replay a valid case or raise a ``ValueError``
/ ``TypeError`` naming the option. Small env kwargs and few examples keep it to
seconds per id.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs

sys.path.append(str(Path(__file__).parent))  # tests/small_envs.py (pytest uses --import-mode=importlib)
from small_envs import SMALL_KWARGS, prepare  # noqa: E402

FUZZ = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
MAX_STEPS = 6

_made: dict[str, gym.Env] = {}


@pytest.fixture(scope="module", autouse=True)
def _prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    prepare(tmp_path_factory.mktemp("pretrain"))
    yield
    for env in _made.values():
        env.close()
    _made.clear()


def _env(env_id: str) -> gym.Env:
    if env_id not in _made:
        _made[env_id] = gym.make(env_id, **SMALL_KWARGS[env_id])
    return _made[env_id]


def _numbers(value: Any, where: str) -> Iterator[tuple[str, np.ndarray]]:
    """Every numeric leaf of an observation or info, with its path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{where}[{i}]")
    elif isinstance(value, (bool, np.bool_)):
        return
    elif isinstance(value, (int, float, np.number)) or (isinstance(value, np.ndarray) and value.dtype.kind in "fiuc"):
        yield where, np.asarray(value)


def _assert_finite(value: Any, where: str) -> None:
    for path, array in _numbers(value, where):
        assert np.isfinite(array).all(), f"{path} is not finite: {array}"


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
@FUZZ
@given(seed=st.integers(0, 2**31 - 1))
def test_in_space_actions_never_crash_or_give_nan(env_id: str, seed: int) -> None:
    env = _env(env_id)
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    _assert_finite(obs, "obs")
    _assert_finite(info, "info")
    for _ in range(MAX_STEPS):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())  # masked ones too
        assert env.observation_space.contains(obs), f"{env_id}: observation outside observation_space"
        _assert_finite(obs, "obs")
        _assert_finite(reward, "reward")
        _assert_finite(info, "info")
        if terminated or truncated:
            break


def _out_of_space(space: spaces.Space, data: st.DataObject) -> tuple[Any, str]:
    """An action just outside ``space`` and the word its error must contain."""
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n - 1)
        bad = data.draw(st.one_of(st.integers(high + 1, high + 10**6), st.integers(low - 10**6, low - 1)))
        return bad, "action"
    if isinstance(space, spaces.MultiDiscrete):
        action = space.sample()
        index = data.draw(st.integers(0, action.size - 1))
        action.flat[index] = data.draw(st.sampled_from([-1, int(space.nvec.flat[index]), int(space.nvec.flat[index]) + 7]))
        return action, "action"
    if isinstance(space, spaces.MultiBinary):
        action = space.sample()
        action.flat[data.draw(st.integers(0, action.size - 1))] = data.draw(st.sampled_from([-1, 2, 9]))
        return action, "action"
    if isinstance(space, spaces.Box):
        action = space.sample()
        index = data.draw(st.integers(0, action.size - 1))
        action.flat[index] = data.draw(st.sampled_from([np.nan, np.inf, float(space.high.flat[index]) + 1e3,
                                                        float(space.low.flat[index]) - 1e3]))
        return action, "action"
    if isinstance(space, spaces.Dict):
        key = data.draw(st.sampled_from(sorted(space.spaces)))
        action = space.sample()
        action[key], _ = _out_of_space(space.spaces[key], data)
        return action, key
    raise TypeError(f"the fuzz tests have no out-of-space strategy for {type(space).__name__} spaces yet")


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
@FUZZ
@given(data=st.data())
def test_out_of_space_actions_raise_a_value_error_naming_the_field(env_id: str, data: st.DataObject) -> None:
    env = _env(env_id)
    env.reset(seed=data.draw(st.integers(0, 1000)))
    env.action_space.seed(0)
    action, field = _out_of_space(env.action_space, data)
    with pytest.raises(ValueError, match=field):
        env.step(action)


def _n_cases(env: gym.Env) -> int:
    return int(env.unwrapped.n_cases)


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
@FUZZ
@given(case=st.one_of(st.integers(-(10**9), 10**9), st.integers(0, 30), st.floats(allow_nan=True), st.text(max_size=4),
                      st.none(), st.lists(st.integers(0, 3), max_size=2)))
def test_fuzzed_reset_cases_replay_a_case_or_raise_naming_the_option(env_id: str, case: Any) -> None:
    env = _env(env_id)
    valid = isinstance(case, int) and 0 <= case < _n_cases(env)
    if valid:
        obs, _ = env.reset(seed=0, options={"case": case})
        assert env.observation_space.contains(obs)
        return
    try:
        obs, _ = env.reset(seed=0, options={"case": case})
    except (ValueError, TypeError) as err:
        assert "case" in str(err), f"{env_id}: error does not name options['case']: {err}"
    else:  # an alternative spelling (a core id, None = draw, [i]) must still give a valid case
        assert env.observation_space.contains(obs)
        assert case is None or isinstance(case, str) or _one_valid_integer(case, _n_cases(env)), (
            f"{env_id}: reset accepted options={{'case': {case!r}}}"
        )


def _one_valid_integer(case: Any, n_cases: int) -> bool:
    """``[3]`` or ``3.0``: one integral number in range (Hydrogel-v0 reads cases this way)."""
    array = np.asarray(case)
    if array.size != 1 or array.dtype.kind not in "iuf" or not np.isfinite(array).all():
        return False
    value = float(array.reshape(()))
    return value.is_integer() and 0 <= value < n_cases




@pytest.mark.parametrize("env_id", envs.ENV_IDS)
@FUZZ
@given(key=st.text(min_size=1, max_size=8).filter(lambda k: k != "case"))
def test_unknown_reset_options_raise_naming_the_key(env_id: str, key: str) -> None:
    env = _env(env_id)
    with pytest.raises(ValueError, match="unknown"):
        env.reset(seed=0, options={key: 1})
