"""Build, train, checkpoint, evaluate and record one run.

A run directory holds::

    config.yml            the resolved RunConfig (``--resume`` reads it back)
    tb/                   TensorBoard event files (``tensorboard --logdir runs``)
    csv/progress.csv      the same scalars as CSV (resumed segments: csv/resumed_at_<t>/)
    monitor/              per-env episode returns and lengths (SB3 Monitor)
    checkpoints/          model_<t>_steps.zip + rng_<t>_steps.pkl
    model.zip             the final model (``Algo.load("model.zip")``)
    eval.json             final evaluation on the env's test split
    learning_curve.png    episode return against env steps
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor

import envs
from agents.evaluation import evaluate
from envs.spec import import_target
from train.algorithms import algorithm_spec
from train.checkpointing import RNGCheckpointCallback, latest_checkpoint, restore_rng
from train.config import RunConfig, UsageError, resolve_device
from train.plots import plot_learning_curve
from train.schedules import parse_schedule

__all__ = ["RunResult", "new_run_dir", "build_wrapper", "train_run", "resume_run", "warm_started"]

RunResult = dict[str, Any]


def new_run_dir(root: Path, algo: str, env_id: str) -> Path:
    """``root/<algo>/<env_id>_<n>`` with the next free ``n`` (RL Zoo layout)."""
    parent = root / algo
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.rsplit("_", 1)[1]) for p in parent.glob(f"{env_id}_*") if p.name.rsplit("_", 1)[1].isdigit()]
    run_dir = parent / f"{env_id}_{max(taken, default=0) + 1}"
    run_dir.mkdir()
    return run_dir


def build_wrapper(targets: tuple[str, ...]) -> Callable[[gym.Env], gym.Env] | None:
    """One callable applying every ``module:Class`` wrapper, innermost first."""
    if not targets:
        return None
    classes = [import_target(t, "env_wrapper", UsageError) for t in targets]

    def wrap(env: gym.Env) -> gym.Env:
        for wrapper_class in classes:
            env = wrapper_class(env)
        return env

    return wrap


def _torch_vec_env_factory(env_id: str) -> Callable[..., VecEnv]:
    """The env's batched SB3 VecEnv factory (its row's ``sb3_vec_env``), for ``vec_env: torch``."""
    row = envs.ENTRIES.get(env_id)
    if row is None or row.sb3_vec_env is None:
        with_one = [e.id for e in envs.ENTRIES.values() if e.sb3_vec_env is not None]
        raise UsageError(f"vec_env 'torch' is not available for {env_id}; envs with it: {', '.join(with_one)}")
    return import_target(row.sb3_vec_env, "vec_env", UsageError)


def _one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (h5py's and torch's messages span lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _build_env(config: RunConfig, run_dir: Path, seed: int | None, resuming: bool) -> VecEnv:
    """The training VecEnv; a bad ``env_kwargs`` value (a missing data directory, a file
    that is not HDF5) is a one-line :class:`UsageError` naming the kwargs."""
    try:
        if config.vec_env == "subproc":  # fail here, not in a worker; and build caches once, not per worker
            gym.make(f"envs:{config.env_id}", **config.env_kwargs).close()
        return _build_vec_env(config, run_dir, seed, resuming)
    except UsageError:
        raise
    except (ValueError, TypeError, KeyError, OSError) as err:
        raise UsageError(f"cannot build {config.env_id} with env_kwargs {config.env_kwargs}: {_one_line(err)}") from err


def _build_vec_env(config: RunConfig, run_dir: Path, seed: int | None, resuming: bool) -> VecEnv:
    if config.vec_env == "torch":
        factory = _torch_vec_env_factory(config.env_id)
        # The batched env lives where the trainer does (--device), unless env_kwargs say otherwise.
        venv = factory(config.env_id, config.n_envs, seed, {"device": config.device, **config.env_kwargs})
        (run_dir / "monitor").mkdir(exist_ok=True)
        monitor_file = run_dir / "monitor" / ("resumed" if resuming else "0")
        return VecMonitor(venv, filename=str(monitor_file))
    return make_vec_env(
        f"envs:{config.env_id}",  # imports envs (registers the id) in forkserver/spawn workers
        n_envs=config.n_envs,
        seed=seed,
        env_kwargs=config.env_kwargs,
        wrapper_class=build_wrapper(config.env_wrapper),
        vec_env_cls=SubprocVecEnv if config.vec_env == "subproc" else DummyVecEnv,
        monitor_dir=str(run_dir / "monitor"),
        monitor_kwargs={"override_existing": not resuming},
    )


def warm_started(config: RunConfig) -> RunConfig:
    """``config`` with the policy kwargs of its ``warm_start`` function merged in.

    A key the function sets that ``policy_kwargs`` already gives differently is an error (a
    silent winner would hide which start was used); an equal value is fine, so a run's own
    config.yml, which records the merged kwargs, can be given back with ``--config``."""
    if config.warm_start is None:
        return config
    function = import_target(config.warm_start, "warm_start", UsageError)
    print(f"warm start: {config.warm_start} ...", flush=True)
    try:
        start = function(config.env_id, dict(config.env_kwargs), dict(config.policy_kwargs))
    except (ValueError, TypeError) as err:
        raise UsageError(f"warm_start {config.warm_start}: {_one_line(err)}") from err
    clashes = sorted(k for k, v in start.items() if k in config.policy_kwargs and config.policy_kwargs[k] != v)
    if clashes:
        raise UsageError(f"policy_kwargs {clashes} are set by warm_start {config.warm_start!r}; "
                         "pass --hyperparams warm_start=null to set them yourself")
    return dataclasses.replace(config, policy_kwargs={**config.policy_kwargs, **start})


def _resolve_policy(policy: str) -> Any:
    return import_target(policy, "policy", UsageError) if ":" in policy else policy


def _logger(run_dir: Path, segment: str | None) -> Logger:
    csv_dir = run_dir / "csv" if segment is None else run_dir / "csv" / segment
    csv_dir.mkdir(parents=True, exist_ok=True)
    formats = [make_output_format("csv", str(csv_dir)), make_output_format("tensorboard", str(run_dir / "tb"))]
    return Logger(str(run_dir), formats)


def _callbacks(config: RunConfig, run_dir: Path) -> tuple[RNGCheckpointCallback, CallbackList]:
    checkpoint = RNGCheckpointCallback(run_dir / "checkpoints", config.checkpoint_freq)
    extra: list[BaseCallback] = [import_target(t, "callbacks", UsageError)() for t in config.callbacks]
    return checkpoint, CallbackList([checkpoint, *extra])


def _learn(model: BaseAlgorithm, config: RunConfig, run_dir: Path, reset: bool) -> float:
    checkpoint, callbacks = _callbacks(config, run_dir)
    remaining = config.total_timesteps - (0 if reset else model.num_timesteps)
    start = time.perf_counter()
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=callbacks,
            progress_bar=True,
            reset_num_timesteps=reset,
            tb_log_name=config.algo,
        )
    seconds = time.perf_counter() - start
    checkpoint.init_callback(model)
    checkpoint.save()
    model.save(run_dir / "model.zip")
    return seconds


def _finish(
    model: BaseAlgorithm, config: RunConfig, run_dir: Path, train_seconds: float, command: str | None
) -> RunResult:
    """Evaluate on the test split, write eval.json and the learning curve."""
    model.get_env().close()
    eval_kwargs = config.evaluation_env_kwargs
    print(f"evaluating on {config.eval_episodes} test episodes ...", flush=True)
    result = evaluate(
        model,
        config.env_id,
        env_kwargs=eval_kwargs,
        wrapper=build_wrapper(config.env_wrapper),
        n_episodes=config.eval_episodes,
        seed=config.seed + 1_000_000,
    )
    for key in ("mean_reward", "std_reward", "n_episodes"):
        if key not in result:
            raise RuntimeError(f"the evaluator for {config.env_id} returned no {key!r}")
    result = {
        **result,
        "env_id": config.env_id,
        "algo": config.algo,
        "seed": config.seed,
        "total_timesteps": int(model.num_timesteps),
        "train_seconds": round(train_seconds, 2),
        "command": command or " ".join(["python", "-m", "train", *sys.argv[1:]]),
        "python": platform.python_version(),
    }
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    row = envs.ENTRIES.get(config.env_id)
    if row is not None and row.evaluation.plots is not None:
        import_target(row.evaluation.plots, f"evaluation plots of {config.env_id}")(result, run_dir)
    plot_learning_curve(
        run_dir / "monitor", run_dir / "learning_curve.png", f"{config.algo} on {config.env_id}",
        progress_csv=run_dir / "csv" / "progress.csv",
    )
    return result


def train_run(config: RunConfig, run_dir: Path, command: str | None = None) -> RunResult:
    """A fresh run: build env and model, write config.yml, train with checkpoints, evaluate.

    config.yml is written once both are built, so a run rejected for a bad setting leaves
    no config behind that ``--resume`` would pick up."""
    config = warm_started(config)
    print(yaml.safe_dump({"run_dir": str(run_dir), **config.to_yaml_dict()}, sort_keys=False), flush=True)
    env = _build_env(config, run_dir, seed=config.seed, resuming=False)
    algo_class = algorithm_spec(config.algo).load_class()
    algo_kwargs = {k: parse_schedule(k, v) for k, v in config.algo_kwargs.items()}
    try:
        model = algo_class(
            _resolve_policy(config.policy),
            env,
            seed=config.seed,
            device=config.device,
            verbose=0,
            policy_kwargs=copy.deepcopy(config.policy_kwargs) or None,  # A2C adds its optimizer class in place
            **algo_kwargs,
        )
    except (TypeError, ValueError, AssertionError, OSError) as err:  # bad hyperparameter, missing checkpoint
        env.close()
        raise UsageError(f"cannot build {config.algo} for {config.env_id}: {_one_line(err)}") from err
    (run_dir / "config.yml").write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    model.set_logger(_logger(run_dir, segment=None))
    seconds = _learn(model, config, run_dir, reset=True)
    return _finish(model, config, run_dir, seconds, command)


def resume_run(run_dir: Path, device: str | None = None, command: str | None = None) -> RunResult:
    """Continue an interrupted run from its newest checkpoint (model, optimizer, steps, RNG)."""
    config_path = run_dir / "config.yml"
    if not config_path.exists():
        raise UsageError(f"--resume: {run_dir} has no config.yml; is it a run directory?")
    config = RunConfig.from_yaml_dict(yaml.safe_load(config_path.read_text()))
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise UsageError(f"--resume: {run_dir / 'checkpoints'} holds no complete checkpoint")
    print(f"resuming {run_dir} from {checkpoint.timesteps} steps", flush=True)
    env = _build_env(config, run_dir, seed=None, resuming=True)
    algo_class = algorithm_spec(config.algo).load_class()
    model = algo_class.load(checkpoint.model_path, env=env, device=resolve_device(device) if device else config.device)
    with checkpoint.rng_path.open("rb") as handle:
        restore_rng(pickle.load(handle), env)
    model.set_logger(_logger(run_dir, segment=f"resumed_at_{checkpoint.timesteps}"))
    seconds = _learn(model, config, run_dir, reset=False)
    return _finish(model, config, run_dir, seconds, command)
