"""Small, fast kwargs for every registered id, shared by the reliability tests.

``prepare(cache_dir)`` builds what an env needs before ``gym.make`` (Prostate-v0's
decoder, which an env must not train in its constructor during a test), so that the
multiprocessing and fuzz tests time the env, not a first-use build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.determinism import PROSTATE_KWARGS as PROSTATE
from benchmarks.determinism import TAXONOMY_KWARGS as TAXONOMY
from benchmarks.determinism import TINY_DECODER

SMALL_KWARGS: dict[str, dict[str, Any]] = {
    "Hydrogel-v0": {"n_synthetic": 20},
    "HydrogelSearch-v0": {"n_synthetic": 20, "horizon": 3},
    "Prostate-v0": PROSTATE,
    "AnisotropicAMG-v0": {"grid_size": 8},
    "Taxonomy-v0": TAXONOMY,
    "TaxonomyMultitask-v0": TAXONOMY,
}


def prepare(run_dir: Path) -> None:
    """Build Prostate-v0's tiny decoder into the (session) cache; idempotent."""
    import gymnasium as gym

    import envs  # noqa: F401
    from train.pretrain_prostate import pretrain

    try:
        gym.make("Prostate-v0", **PROSTATE).close()
    except FileNotFoundError:
        pretrain("Prostate-v0", run_dir, 0, "cpu", TINY_DECODER, dict(PROSTATE))
