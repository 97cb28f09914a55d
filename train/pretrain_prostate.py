"""``python -m train pretrain --env Prostate-v0``: train the reward model (SAM decoder).

Supervised training on the train split with random valid points (involvement BCE on the
core score + csPCa cross-entropy on the class head), model selection by validation core
AUROC. The checkpoint goes where ``gym.make("Prostate-v0", **env_kwargs)`` looks for it
(the cache, keyed by backbone and cohort), with a copy in the run directory.

Hyperparameters (``train/hyperparams/pretrain.yml`` under ``Prostate-v0``) are the fields
of :class:`envs.prostate.reward_training.DecoderTrainingConfig`. ``env_kwargs`` select the
cohort and backbone exactly as the env does, through the same function
(:func:`envs.prostate.encoded_cohort.load_encoded_cohort`: ``data_dir``, ``synthetic``,
``backbone``, ``sam_checkpoint``, ``cache_dir``); other env kwargs are accepted and ignored.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from envs.prostate.encoded_cohort import COHORT_KWARGS, load_encoded_cohort
from envs.prostate.reward_model import default_decoder_path, save_decoder
from envs.prostate.reward_training import DecoderTrainingConfig, fit_decoder

__all__ = ["pretrain"]


def pretrain(env_id: str, run_dir: Path, seed: int, device: str, hyperparams: dict[str, Any],
             env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Train and save the Prostate-v0 decoder; return metrics for ``eval.json``.

    ``seed`` overrides the config's seed unless the hyperparameters set one.
    """
    config = DecoderTrainingConfig.from_mapping({"seed": seed, **hyperparams})
    start = time.perf_counter()
    encoded = load_encoded_cohort(**{k: env_kwargs[k] for k in COHORT_KWARGS if k in env_kwargs}, device=device)
    feature_seconds = time.perf_counter() - start
    decoder, metrics = fit_decoder(encoded.cohort, encoded.features, encoded.backbone, config, device=device)
    target = default_decoder_path(encoded.backbone, encoded.cohort, env_kwargs.get("cache_dir"))
    save_decoder(decoder, target, backbone=encoded.backbone, training=config, metrics=metrics)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target, run_dir / "decoder.pt")
    summary = {k: v for k, v in metrics.items() if k not in ("history", "reward_stats")}
    print(
        f"Prostate-v0 decoder: val core AUROC {metrics['val_core_auroc']:.3f} with random points"
        f" ({metrics['val_core_auroc_no_points']:.3f} without), csPCa AUROC {metrics['val_cspca_auroc']:.3f};"
        f" saved to {target}",
        flush=True,
    )
    return {
        "env_id": env_id,
        **summary,
        "feature_seconds": round(feature_seconds, 2),
        "checkpoint": str(target),
        "history": metrics["history"],
    }
