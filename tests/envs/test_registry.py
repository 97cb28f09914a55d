"""`import envs` registers every id, cheaply; ids resolve without an explicit import; every
id has a complete row (what to build, how to score it, what to compare it with)."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest

import envs
from envs.spec import import_target


def test_every_id_is_registered_with_an_importable_entry_point() -> None:
    assert set(envs.ENV_IDS) == {
        "Hydrogel-v0", "HydrogelSearch-v0", "Prostate-v0", "AnisotropicAMG-v0", "Taxonomy-v0", "TaxonomyMultitask-v0",
    }
    for env_id in envs.ENV_IDS:
        spec = gym.spec(env_id)
        module_name, _, attr = spec.entry_point.partition(":")
        module = __import__(module_name, fromlist=[attr])
        assert issubclass(getattr(module, attr), gym.Env), env_id


def test_import_is_cheap_and_module_prefix_works_without_import() -> None:
    code = (
        "import sys, envs\n"
        "heavy = [m for m in ('torch', 'stable_baselines3', 'pyamg', 'torch_geometric', 'segment_anything', 'h5py')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    code = "import gymnasium as gym\nenv = gym.make('envs:Hydrogel-v0', n_synthetic=20)\nenv.reset(seed=0)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_every_id_has_a_complete_row(env_id: str) -> None:
    row = envs.entry(env_id)
    assert row.id == env_id and gym.spec(env_id).entry_point == row.entry_point
    assert callable(import_target(row.evaluation.metrics, "metrics"))
    assert row.evaluation.default_episodes >= 1 and row.evaluation.test_kwargs["split"] == "test"
    assert row.reference_agents and "random" in {ref.name for ref in row.reference_agents}
    names = [ref.name for ref in row.reference_agents]
    assert len(names) == len(set(names)), names
    for target in [ref.factory for ref in row.reference_agents] + [
        t for t in (row.evaluation.extras, row.sb3_wrapper, row.sb3_vec_env, row.pretrain, row.vector_entry_point) if t
    ]:
        assert callable(import_target(target, env_id)), target
    assert row.summary
    assert row.evaluation.reference is not None and row.evaluation.reference != "random"


def test_unknown_id_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="Hydrogel-v0"):
        envs.entry("Hydrogle-v0")
