"""Agents named on the command line of ``python -m benchmarks evaluate``.

An agent spec is one of::

    random                              uniform random actions (agents.baselines.RandomAgent)
    baseline:ClassName                  a class of agents.baselines, built with the env's
                                        action space and/or the seed if it takes them
    baseline:ClassName:key=value,...    ... and these constructor arguments (YAML values)
    reference:NAME                      the env's reference agent NAME (a key of eval.json's
                                        "baselines", e.g. oracle, needle_path, lesion_probe),
                                        built on the env it plays; runs on the envs that have it
    package.module:factory              your own agent: a callable returning an object with
                                        SB3's ``predict``; called with those of ``action_space``,
                                        ``seed``, ``env_id`` and ``device`` it takes by name
    runs/ppo/Hydrogel-v0_1              a run dir of ``python -m train`` (its model.zip)
    runs/ppo/Hydrogel-v0_1/checkpoints/model_5000_steps.zip   one saved model of a run

Any spec may be prefixed ``LABEL=`` to name the agent in tables and plots (default:
``random``, the class name, the reference's name, or the run's algorithm). A trained model
is evaluated on the env it was trained on only, with its run's ``env_wrapper`` and
``env_kwargs`` merged with ``eval_env_kwargs``; a reference agent on the envs whose row
lists it; ``random``, baselines and factories run on every env. Agents sharing a label
across envs form one row of the aggregate (e.g. ``best=reference:oracle`` and
``best=reference:lesion_probe`` with ``--env Hydrogel-v0 --env Prostate-v0``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml

import agents.baselines
import envs
from agents.evaluation import Agent, ReferencePlayer
from envs.spec import ReferenceAgent
from train.algorithms import algorithm_spec
from train.config import RunConfig, UsageError

__all__ = ["AgentKind", "AgentSpec", "baseline_names", "build_agent", "parse_agent_spec", "valid_specs"]

BASELINE_PREFIX = "baseline:"
REFERENCE_PREFIX = "reference:"


class AgentKind(str, Enum):
    """Where an agent comes from."""

    RANDOM = "random"
    BASELINE = "baseline"
    MODEL = "model"
    FACTORY = "factory"
    REFERENCE = "reference"


@dataclass(frozen=True)
class AgentSpec:
    """One parsed ``--agent`` value."""

    text: str
    """The spec as typed."""
    label: str
    """Name in tables and plots."""
    kind: AgentKind
    baseline: str | None = None
    """Class name in agents.baselines (kind BASELINE)."""
    baseline_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments (kind BASELINE)."""
    model_path: Path | None = None
    """The model zip (kind MODEL)."""
    run_config: RunConfig | None = None
    """The run's config.yml (kind MODEL)."""
    factory: str | None = None
    """``package.module:callable`` (kind FACTORY)."""
    reference: str | None = None
    """Name of an env's reference agent (kind REFERENCE)."""

    def env_kwargs(self, env_id: str | None = None) -> dict[str, Any]:
        """Env kwargs the agent needs on ``env_id`` (a model's training kwargs with its eval
        overrides; a reference agent's own env kwargs)."""
        if self.kind is AgentKind.REFERENCE and env_id is not None:
            return dict(_reference(env_id, self.reference).env_kwargs or {})
        if self.run_config is None:
            return {}
        return self.run_config.evaluation_env_kwargs

    def env_wrapper(self) -> tuple[str, ...]:
        """``module:Class`` wrappers the agent's observations and actions go through."""
        return () if self.run_config is None else self.run_config.env_wrapper

    def runs_on(self, env_id: str) -> bool:
        """A model runs only on the env it was trained on, a reference agent on the envs
        that list it; the others on any env."""
        if self.kind is AgentKind.REFERENCE:
            return _reference(env_id, self.reference) is not None
        return self.run_config is None or self.run_config.env_id == env_id


def _reference(env_id: str, name: str | None) -> ReferenceAgent | None:
    """The reference agent ``name`` of ``env_id``'s row, or None."""
    if env_id not in envs.ENTRIES:
        return None
    return next((r for r in envs.entry(env_id).reference_agents if r.name == name), None)


def reference_names() -> list[str]:
    """Every reference agent name of every registered ScienceGym id."""
    return sorted({r.name for env_id in envs.ENV_IDS for r in envs.entry(env_id).reference_agents})


def baseline_names() -> list[str]:
    """Agent classes exported by agents.baselines."""
    return sorted(name for name in agents.baselines.__all__ if inspect.isclass(getattr(agents.baselines, name)))


def valid_specs() -> str:
    """One line listing what ``--agent`` accepts (for error messages)."""
    return (
        f"random, baseline:NAME[:key=value,...] with NAME one of {', '.join(baseline_names())},"
        f" reference:NAME with NAME one of {', '.join(reference_names())},"
        " package.module:factory (your own agent), a run dir or model .zip written by python -m train;"
        " prefix LABEL= to name it"
    )


def _split_label(text: str) -> tuple[str | None, str]:
    """``"ppo=runs/x"`` -> ``("ppo", "runs/x")``; ``"baseline:A:k=4"`` has no label."""
    head, sep, tail = text.partition("=")
    if sep and head and not any(c in head for c in ":/\\") and tail:
        return head, tail
    return None, text


def _parse_kwargs(text: str, spec: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for pair in filter(None, text.split(",")):
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"agent {spec!r}: expected key=value constructor arguments, got {pair!r}")
        kwargs[key] = yaml.safe_load(raw)
    return kwargs


def _run_files(path: Path, spec: str) -> tuple[Path, Path]:
    """(model zip, config.yml) of a run dir or of a zip inside one."""
    if path.is_dir():
        model, search = path / "model.zip", [path]
        if not model.is_file():
            raise UsageError(f"agent {spec!r}: run dir {str(path)!r} has no model.zip (training unfinished?)")
    elif path.is_file() and path.suffix == ".zip":
        model, search = path, [path.parent, path.parent.parent]
    else:
        raise UsageError(f"agent {spec!r}: {str(path)!r} is neither a run dir nor a model .zip")
    for folder in search:
        if (folder / "config.yml").is_file():
            return model, folder / "config.yml"
    raise UsageError(f"agent {spec!r}: no config.yml next to {str(model)!r}; was it written by python -m train?")


_SUPPLIED = ("action_space", "seed")
"""Constructor arguments the harness fills in for a baseline."""


def _check_baseline_arguments(name: str, kwargs: dict[str, Any], spec: str) -> None:
    """Fail before any evaluation if the spec cannot build the baseline class."""
    params = inspect.signature(getattr(agents.baselines, name)).parameters
    unknown = [key for key in kwargs if key not in params]
    if unknown:
        raise UsageError(f"agent {spec!r}: {name} takes no argument {unknown[0]!r}; its arguments: {', '.join(params)}")
    missing = [
        arg for arg, p in params.items()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and arg not in (*kwargs, *_SUPPLIED)
    ]
    if missing:
        raise UsageError(
            f"agent {spec!r}: {name} needs {', '.join(missing)}; pass them as baseline:{name}:{missing[0]}=VALUE,..."
        )


_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""``package.module:callable``."""

_FACTORY_ARGUMENTS = ("action_space", "seed", "env_id", "device")
"""What a user's factory may ask for, by parameter name."""


def _load_factory(target: str, spec: str) -> Callable[..., Agent]:
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"agent {spec!r}: cannot import {target!r} ({err}); is its package on PYTHONPATH?") from None
    if not callable(factory):
        raise UsageError(f"agent {spec!r}: {target} is not callable; expected a function or class returning an agent")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return factory
    needed = [
        name for name, p in params.items()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in _FACTORY_ARGUMENTS
    ]
    if needed:
        raise UsageError(
            f"agent {spec!r}: {target} needs {', '.join(needed)}; a factory may only require {', '.join(_FACTORY_ARGUMENTS)}"
        )
    return factory


def parse_agent_spec(text: str) -> AgentSpec:
    """Parse one ``--agent`` value; a mistake raises :class:`UsageError` listing the valid forms."""
    label, body = _split_label(text)
    if body == "random":
        return AgentSpec(text, label or "random", AgentKind.RANDOM)
    if body.startswith(BASELINE_PREFIX):
        name, _, kwargs_text = body[len(BASELINE_PREFIX):].partition(":")
        if name not in baseline_names():
            raise UsageError(f"unknown baseline {name!r} in agent {text!r}; choose one of: {', '.join(baseline_names())}")
        kwargs = _parse_kwargs(kwargs_text, text)
        _check_baseline_arguments(name, kwargs, text)
        return AgentSpec(text, label or name, AgentKind.BASELINE, baseline=name, baseline_kwargs=kwargs)
    if body.startswith(REFERENCE_PREFIX):
        name = body[len(REFERENCE_PREFIX):]
        if name not in reference_names():
            raise UsageError(f"unknown reference agent {name!r} in agent {text!r}; choose one of: {', '.join(reference_names())}")
        return AgentSpec(text, label or name, AgentKind.REFERENCE, reference=name)
    path = Path(body)
    if not path.exists() and _FACTORY.match(body):
        _load_factory(body, text)
        return AgentSpec(text, label or body.rpartition(":")[2], AgentKind.FACTORY, factory=body)
    if not path.exists():
        raise UsageError(f"unknown agent spec {text!r} (no such file or dir); valid: {valid_specs()}")
    model, config_path = _run_files(path, text)
    try:
        config = RunConfig.from_yaml_dict(yaml.safe_load(config_path.read_text()))
    except (TypeError, ValueError, yaml.YAMLError) as err:
        raise UsageError(f"agent {text!r}: {config_path} is not a python -m train config ({err})") from None
    return AgentSpec(text, label or config.algo, AgentKind.MODEL, model_path=model, run_config=config)


def _build_baseline(spec: AgentSpec, action_space: gym.Space, seed: int) -> Agent:
    cls = getattr(agents.baselines, spec.baseline)
    params = inspect.signature(cls).parameters
    supplied = {"action_space": action_space, "seed": seed}
    kwargs = {**{k: v for k, v in supplied.items() if k in params}, **spec.baseline_kwargs}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise UsageError(f"agent {spec.text!r}: cannot build {spec.baseline}: {err}") from None


def _build_from_factory(spec: AgentSpec, env_id: str, action_space: gym.Space, seed: int, device: str) -> Agent:
    factory = _load_factory(spec.factory, spec.text)
    supplied = {"action_space": action_space, "seed": seed, "env_id": env_id, "device": device}
    try:
        params = inspect.signature(factory).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = supplied if takes_all else {k: v for k, v in supplied.items() if k in params}
    except (TypeError, ValueError):
        kwargs = {}
    agent = factory(**kwargs)
    if not callable(getattr(agent, "predict", None)):
        raise UsageError(f"agent {spec.text!r}: {spec.factory} returned {type(agent).__name__}, which has no predict()")
    return agent


def build_agent(spec: AgentSpec, action_space: gym.Space, seed: int, device: str, env_id: str = "") -> Agent:
    """The agent for one evaluation seed (random agents are seeded with it)."""
    if spec.kind is AgentKind.RANDOM:
        return agents.baselines.RandomAgent(action_space, seed=seed)
    if spec.kind is AgentKind.FACTORY:
        return _build_from_factory(spec, env_id, action_space, seed, device)
    if spec.kind is AgentKind.BASELINE:
        return _build_baseline(spec, action_space, seed)
    if spec.kind is AgentKind.REFERENCE:
        return ReferencePlayer(_reference(env_id, spec.reference))  # built on its env by evaluate()
    algo_class = algorithm_spec(spec.run_config.algo).load_class()
    return algo_class.load(spec.model_path, device=device)
