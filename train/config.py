"""Resolve one training run's configuration.

Precedence, lowest first: ``train/hyperparams/<algo>.yml`` entry for the env id (RL Zoo
layout) < ``--config FILE`` < explicit flags (``--n-envs``, ``--total-timesteps``) <
``--hyperparams key=value`` (dotted keys reach into mappings, e.g.
``env_kwargs.cohort=synthetic``). The result is a frozen :class:`RunConfig`; every
unknown name is rejected with the list of valid ones.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from train.algorithms import ALGORITHMS, algorithm_spec

__all__ = [
    "HYPERPARAMS_DIR",
    "RESERVED_KEYS",
    "RunConfig",
    "UsageError",
    "load_hyperparams",
    "parse_overrides",
    "resolve_config",
    "resolve_device",
]

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"

RESERVED_KEYS: dict[str, str] = {
    "n_envs": "number of parallel envs in the training VecEnv",
    "n_timesteps": "total env steps to train for",
    "policy": "SB3 policy name (e.g. MlpPolicy) or 'module:Class'",
    "policy_kwargs": "mapping passed to the policy constructor",
    "warm_start": "'module:function' (env_id, env_kwargs, policy_kwargs) -> the policy_kwargs that start the policy"
    " at a supervised fit (e.g. AMG's tolerance scorer), merged in before the model is built; null: none",
    "env_wrapper": "'module:Class' (or a list of them) applied to every env, innermost first"
    " (with vec_env 'torch': to the evaluation env only, the torch VecEnv being already SB3-facing)",
    "env_kwargs": "mapping passed to gym.make for training envs",
    "eval_env_kwargs": "mapping merged over env_kwargs for the final evaluation (null: back to the env's default)",
    "checkpoint_freq": "env steps between checkpoints",
    "eval_episodes": "episodes of the final evaluation (default 20; --eval-episodes wins)",
    "callbacks": "list of 'module:Class' SB3 callbacks, each built with no arguments",
    "vec_env": "'dummy' (one process), 'subproc' (one process per env) or 'torch' (the env's batched torch VecEnv)",
}


VEC_ENV_KINDS = ("dummy", "subproc", "torch")


class UsageError(ValueError):
    """A user mistake on the command line or in a config file: reported in one line."""


def _did_you_mean(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a training run; written to ``run_dir/config.yml``."""

    algo: str
    """CLI algorithm name (a key of ``train.algorithms.ALGORITHMS``)."""
    env_id: str
    """Registered Gymnasium id."""
    seed: int
    """Seeds the algorithm, the envs (env i gets seed + i) and the evaluation."""
    device: str
    """Torch device the run uses: 'cpu', 'cuda' or 'cuda:1' (``--device auto`` is resolved
    before it is recorded, so config.yml says what was used)."""
    n_envs: int
    """Parallel envs in the training VecEnv."""
    total_timesteps: int
    """Env steps to train for (summed over envs)."""
    policy: str
    """SB3 policy name or 'module:Class'."""
    eval_episodes: int
    """Episodes in the final evaluation (on the env's test split)."""
    checkpoint_freq: int
    """Env steps between checkpoints."""
    vec_env: str = "dummy"
    """'dummy', 'subproc' or 'torch' (the env row's ``sb3_vec_env``)."""
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    env_wrapper: tuple[str, ...] = ()
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    callbacks: tuple[str, ...] = ()
    warm_start: str | None = None
    """``"module:function"`` whose returned policy kwargs start the policy at a supervised fit;
    the runner merges them into ``policy_kwargs`` (config.yml records both)."""
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor keyword arguments of the algorithm (everything not reserved)."""

    def __post_init__(self) -> None:
        for name in ("n_envs", "total_timesteps", "eval_episodes", "checkpoint_freq"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
        if self.vec_env not in VEC_ENV_KINDS:
            raise UsageError(f"vec_env must be one of {', '.join(VEC_ENV_KINDS)}; got {self.vec_env!r}")
        if self.warm_start is not None and (not isinstance(self.warm_start, str) or ":" not in self.warm_start):
            raise UsageError(f"warm_start must be 'module:function' or null, got {self.warm_start!r}")

    @property
    def evaluation_env_kwargs(self) -> dict[str, Any]:
        """The kwargs of the final evaluation env (:func:`evaluation_kwargs`)."""
        return evaluation_kwargs(self.env_kwargs, self.eval_env_kwargs)

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain data for ``config.yml`` (tuples become lists)."""
        data = asdict(self)
        data["env_wrapper"] = list(self.env_wrapper)
        data["callbacks"] = list(self.callbacks)
        return data

    @classmethod
    def from_yaml_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_yaml_dict` (used by ``--resume``)."""
        data = dict(data)
        data["env_wrapper"] = tuple(data.get("env_wrapper", ()))
        data["callbacks"] = tuple(data.get("callbacks", ()))
        return cls(**data)


def evaluation_kwargs(env_kwargs: Mapping[str, Any], eval_env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` updated by ``eval_env_kwargs``, where a ``None`` (YAML ``null``) in
    ``eval_env_kwargs`` removes the key: the evaluation env then uses the env's default, so
    a run that trains on a custom cohort is scored on exactly the default test split (and a
    benchmark sees the default kwargs, not a restatement of them)."""
    merged = {**env_kwargs, **eval_env_kwargs}
    return {k: v for k, v in merged.items() if not (k in eval_env_kwargs and eval_env_kwargs[k] is None)}


def load_hyperparams(algo: str, env_id: str, required: bool = True) -> dict[str, Any]:
    """The entry for ``env_id`` in ``train/hyperparams/<algo>.yml`` (a deep copy)."""
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    table = yaml.safe_load(path.read_text()) if path.exists() else None
    table = table or {}
    if env_id in table:
        return copy.deepcopy(table[env_id] or {})
    if not required:
        return {}
    valid = ", ".join(sorted(table)) or "(none)"
    raise UsageError(
        f"no defaults for env {env_id!r} in {path.name}; envs with defaults: {valid}"
        f"{_did_you_mean(env_id, table)}; or pass --config FILE"
    )


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["a=1", "env_kwargs.split=val"]`` -> ``{"a": 1, "env_kwargs": {"split": "val"}}``.

    Values are read as YAML, so ``1e-3``, ``true``, ``[64, 64]`` and ``{a: 1}`` work.
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--hyperparams expects key=value, got {pair!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UsageError(f"--hyperparams {key}: cannot parse value {raw!r}") from None
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        node = result
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise UsageError(f"--hyperparams {key}: {parent!r} is not a mapping")
        node[leaf] = value
    return result


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Returns a new dict."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _constructor_parameters(algo_class: type) -> set[str]:
    """Keyword arguments the algorithm constructor accepts (its own and its bases').

    Our algorithms take their hyperparameters as ``**hyperparams``, the fields of the
    frozen dataclass ``config_class`` where each default is written once.
    """
    names: set[str] = set()
    for klass in algo_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names.update(p for p, spec in params.items() if spec.kind is not spec.VAR_KEYWORD)
        if not any(spec.kind is spec.VAR_KEYWORD for spec in params.values()):
            break
        if "config_class" in klass.__dict__:
            names.update(f.name for f in fields(klass.config_class))
            break
    return names - {"self", "policy", "env"}


_RUNNER_OWNED = {"seed", "device", "tensorboard_log", "verbose", "policy_kwargs", "_init_setup_model"}

_SCHEDULE_PREFIXES = ("lin_", "cos_")


def _constructor_defaults(algo_class: type) -> dict[str, Any]:
    """Default value of every constructor keyword that has one (own, bases', config_class)."""
    defaults: dict[str, Any] = {}
    for klass in reversed(algo_class.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            for name, spec in inspect.signature(init).parameters.items():
                if spec.default is not spec.empty:
                    defaults[name] = spec.default
        if "config_class" in klass.__dict__:
            defaults.update({f.name: f.default for f in fields(klass.config_class)})
    return defaults


def _check_value_types(algo: str, settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """A value of the wrong kind (``learning_rate=abc``) is a one-line error here, not an
    ``AssertionError`` deep inside the algorithm's constructor."""
    for key, value in settings.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise UsageError(f"hyperparameter {key!r} of {algo} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, str) and value.startswith(_SCHEDULE_PREFIXES):
                continue  # a schedule; parse_schedule reads it
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                hint = " or a schedule such as 'lin_3e-4'" if isinstance(default, float) else ""
                raise UsageError(f"hyperparameter {key!r} of {algo} must be a number{hint}, got {value!r}")
            if isinstance(default, int) and not isinstance(value, int) and not float(value).is_integer():
                raise UsageError(f"hyperparameter {key!r} of {algo} must be an integer, got {value!r}")


def _whole_number(reserved: Mapping[str, Any], name: str, default: int) -> int:
    """``reserved[name]`` as an int (``1e5`` and ``100000.0`` are fine; ``abc`` is a one-line error)."""
    value = reserved.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def resolve_device(device: str) -> str:
    """The torch device a run will use: ``auto`` becomes ``cuda`` when a GPU is present,
    else ``cpu``; asking for CUDA without one is an error (never a silent CPU run)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device: unknown torch device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: no CUDA GPU is available to torch; use --device cpu,"
                " or --device auto to take the GPU only when there is one"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) exist")
    elif parsed.type != "cpu":
        raise UsageError(f"--device {device}: only cpu, cuda, cuda:N and auto are supported")
    return str(parsed)


def resolve_config(
    algo: str,
    env_id: str,
    *,
    seed: int = 0,
    device: str = "cpu",
    n_envs: int | None = None,
    total_timesteps: int | None = None,
    eval_episodes: int | None = None,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Merge every source of settings into a validated :class:`RunConfig`."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    try:
        spec = algorithm_spec(algo)
    except ValueError as err:
        raise UsageError(f"{err}{_did_you_mean(algo, ALGORITHMS)}") from None
    if env_id not in gym.registry:
        raise UsageError(
            f"unknown env {env_id!r}; choose one of: {', '.join(envs.ENV_IDS)}"
            f"{_did_you_mean(env_id, envs.ENV_IDS)}"
        )
    settings = load_hyperparams(algo, env_id, required=config_file is None)
    if config_file is not None:
        if not config_file.exists():
            raise UsageError(f"--config: file {str(config_file)!r} does not exist")
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise UsageError(f"--config: {config_file} must hold a mapping of hyperparameters")
        settings = _merge(settings, loaded)
    flags = {"n_envs": n_envs, "n_timesteps": total_timesteps}
    settings = _merge(settings, {k: v for k, v in flags.items() if v is not None})
    settings = _merge(settings, overrides or {})

    reserved = {k: settings.pop(k) for k in list(settings) if k in RESERVED_KEYS}
    algo_class = spec.load_class()
    accepted = _constructor_parameters(algo_class) - _RUNNER_OWNED
    unknown = sorted(set(settings) - accepted)
    if unknown:
        valid = ", ".join(sorted(accepted | set(RESERVED_KEYS)))
        raise UsageError(
            f"unknown hyperparameter {unknown[0]!r} for {algo}{_did_you_mean(unknown[0], accepted | set(RESERVED_KEYS))};"
            f" valid: {valid}"
        )
    _check_value_types(algo, settings, _constructor_defaults(algo_class))
    for name in ("env_kwargs", "eval_env_kwargs", "policy_kwargs"):
        if reserved.get(name) is not None and not isinstance(reserved[name], Mapping):
            raise UsageError(f"{name} must be a mapping (e.g. {name}.key=value), got {reserved[name]!r}")
    wrappers = reserved.get("env_wrapper") or ()
    n_timesteps = _whole_number(reserved, "n_timesteps", 100_000)
    return RunConfig(
        algo=algo,
        env_id=env_id,
        seed=seed,
        device=resolve_device(device),
        n_envs=_whole_number(reserved, "n_envs", 1),
        total_timesteps=n_timesteps,
        policy=reserved.get("policy", "MlpPolicy"),
        eval_episodes=eval_episodes if eval_episodes is not None else _whole_number(reserved, "eval_episodes", 20),
        checkpoint_freq=_whole_number(reserved, "checkpoint_freq", max(n_timesteps // 10, 1)),
        vec_env=reserved.get("vec_env", "dummy"),
        policy_kwargs=dict(reserved.get("policy_kwargs") or {}),
        env_wrapper=(wrappers,) if isinstance(wrappers, str) else tuple(wrappers),
        env_kwargs=dict(reserved.get("env_kwargs") or {}),
        eval_env_kwargs=dict(reserved.get("eval_env_kwargs") or {}),
        callbacks=tuple(reserved.get("callbacks") or ()),
        warm_start=reserved.get("warm_start"),
        algo_kwargs=settings,
    )
