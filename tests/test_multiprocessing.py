"""Every id under Gymnasium's AsyncVectorEnv (fork, forkserver, spawn) and SB3's
SubprocVecEnv, after the parent already built the same env and ran torch on more than
one thread (the state in which a forked worker used to hang in ``load_state_dict``).

Each id runs in its own Python process with a time limit, so a hang fails the test
instead of blocking CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import envs

sys.path.append(str(Path(__file__).parent))  # tests/small_envs.py (pytest uses --import-mode=importlib)
from small_envs import prepare  # noqa: E402

TIME_LIMIT_SECONDS = 480  # an idle machine needs ~30-60 s per id; generous for loaded CI runners

SCRIPT = textwrap.dedent(
    """
    import sys
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3.common.vec_env import SubprocVecEnv

    import envs
    from envs.spec import import_target
    from small_envs import SMALL_KWARGS

    env_id = sys.argv[1]
    kwargs = SMALL_KWARGS[env_id]
    torch.set_num_threads(2)  # the parent's OpenMP pool must be running when it forks
    x = torch.randn(256, 2048)
    (x @ x.T).sum()
    parent = gym.make(env_id, **kwargs)
    parent.reset(seed=0)
    parent.step(parent.action_space.sample())

    for method in ("fork", "forkserver", "spawn"):
        vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="async", vector_kwargs={"context": method}, **kwargs)
        vec.action_space.seed(0)
        obs, _ = vec.reset(seed=0)
        for _ in range(2):
            obs, reward, terminated, truncated, _ = vec.step(vec.action_space.sample())
            assert np.isfinite(np.asarray(reward, dtype=float)).all(), (method, reward)
        vec.close()
        print("async", method, "ok", flush=True)

    row = envs.entry(env_id)
    wrapper = import_target(row.sb3_wrapper, "sb3_wrapper") if row.sb3_wrapper else (lambda e: e)
    for method in ("fork", "forkserver"):  # forkserver is SB3's default; spawn is Gymnasium's case above
        # "envs:ID" imports envs (registering the id) in a worker that did not inherit it
        venv = SubprocVecEnv([lambda: wrapper(gym.make(f"envs:{env_id}", **kwargs))] * 2, start_method=method)
        venv.seed(0)
        venv.reset()
        venv.action_space.seed(0)
        venv.step([venv.action_space.sample() for _ in range(2)])
        venv.close()
        print("subproc", method, "ok", flush=True)
    """
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> None:
    prepare(tmp_path_factory.mktemp("pretrain"))


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_vector_workers_start_with_every_method(env_id: str, prepared: None) -> None:
    tests_dir = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, env_id], capture_output=True, text=True, env=env,
            timeout=TIME_LIMIT_SECONDS, cwd=Path(__file__).parents[1],
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{env_id}: vector env hung for {TIME_LIMIT_SECONDS} s; output so far: {err.stdout!r}")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    for line in ("async fork ok", "async spawn ok", "subproc fork ok", "subproc forkserver ok"):
        assert line in proc.stdout, proc.stdout
