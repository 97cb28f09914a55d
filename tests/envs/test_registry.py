"""`import envs` registers every id, cheaply; ids resolve without an explicit import."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym

import envs


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
