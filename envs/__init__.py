"""ScienceGym environments. Importing this package registers every env id.

Registration is cheap: entry points are strings, so no torch model, data set or
solver is built until ``gym.make`` is called.

>>> import gymnasium as gym, envs
>>> env = gym.make("Hydrogel-v0")
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["ENV_IDS"]

_REGISTRY: dict[str, dict] = {
    "Hydrogel-v0": dict(
        entry_point="envs.hydrogel.env:HydrogelEnv",
        vector_entry_point="envs.hydrogel.vector:HydrogelVectorEnv",
    ),
    "HydrogelSearch-v0": dict(
        entry_point="envs.hydrogel.env:HydrogelSearchEnv",
        vector_entry_point="envs.hydrogel.vector:HydrogelSearchVectorEnv",
    ),
    "Prostate-v0": dict(entry_point="envs.prostate.env:ProstateEnv"),
    "AnisotropicAMG-v0": dict(entry_point="envs.amg.env:AnisotropicAMGEnv"),
    "Taxonomy-v0": dict(entry_point="envs.taxonomy.env:TaxonomyEnv"),
    "TaxonomyMultitask-v0": dict(entry_point="envs.taxonomy.env:TaxonomyMultitaskEnv"),
}

ENV_IDS: tuple[str, ...] = tuple(_REGISTRY)

for _env_id, _spec in _REGISTRY.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, **_spec)
