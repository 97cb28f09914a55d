"""Prostate-v0's real backbone path, without downloads: SAM ViT-B with random weights saved
in the SAM / MedSAM checkpoint layout (``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``), loaded through ``backbone="vit_b", sam_checkpoint=PATH``; two 1024 px
cores encoded into the feature cache (G = 64) and an episode played on them. Wrong or
partial checkpoints are errors that name the missing keys."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from segment_anything import build_sam_vit_b

import envs  # noqa: F401  (registers the ids)
from agents.baselines.prostate import NeedlePathAgent
from envs.prostate.backbone import backbone_config, build_image_encoder
from envs.prostate.data import ProstateCohort, write_cohort
from envs.prostate.reward_model import save_decoder
from envs.prostate.reward_training import DecoderTrainingConfig, initial_decoder
from envs.prostate.synthetic import SyntheticCohortConfig, generate_cohort
from envs.splits import Split


@pytest.fixture(scope="module")
def sam_state() -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_sam_vit_b(checkpoint=None).state_dict()


@pytest.fixture(scope="module")
def sam_checkpoint(sam_state: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    torch.save(sam_state, path)
    return path


@pytest.fixture(scope="module")
def two_core_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 1024 px phantom cores (one train patient, one val patient)."""
    source = ProstateCohort(generate_cohort(
        SyntheticCohortConfig(n_patients=3, cores_per_patient=1, image_size=1024, seed=1), tmp_path_factory.mktemp("src")
    ))
    records = source.cores(Split.TRAIN)[:1] + source.cores(Split.VAL)[:1]
    root = tmp_path_factory.mktemp("cohort")
    images = {r.core_id: source.read_images(r.core_id) for r in records}
    splits = {Split.TRAIN: [records[0].patient_id], Split.VAL: [records[1].patient_id], Split.TEST: []}
    return write_cohort(root, records, images, splits)


def _subset(state: dict[str, torch.Tensor], drop_prefix: str, keep: int) -> dict[str, torch.Tensor]:
    """``state`` with all but ``keep`` of the ``drop_prefix`` entries removed."""
    dropped = [k for k in state if k.startswith(drop_prefix)][keep:]
    return {k: v for k, v in state.items() if k not in dropped}


def test_vit_b_checkpoint_encodes_cores_and_plays_an_episode(
    sam_state: dict[str, torch.Tensor], sam_checkpoint: Path, two_core_cohort: Path, tmp_path: Path
) -> None:
    backbone = backbone_config("vit_b", sam_checkpoint)
    assert (backbone.img_size, backbone.grid_size) == (1024, 64)
    encoder = build_image_encoder(backbone)
    assert torch.equal(encoder.patch_embed.proj.weight, sam_state["image_encoder.patch_embed.proj.weight"])
    assert torch.equal(encoder.neck[0].weight, sam_state["image_encoder.neck.0.weight"])
    del encoder

    # The decoder starts from the checkpoint's prompt encoder and mask decoder, as ProstNFound from MedSAM.
    config = DecoderTrainingConfig(epochs=1)
    decoder = initial_decoder(config, backbone)
    for name, tensor in decoder.mask_decoder.state_dict().items():
        assert torch.equal(tensor, sam_state[f"mask_decoder.{name}"]), name
    for name, tensor in decoder.prompt_encoder.state_dict().items():
        assert torch.equal(tensor, sam_state[f"prompt_encoder.{name}"]), name
    decoder_path = save_decoder(decoder, tmp_path / "decoder.pt", backbone=backbone, training=config, metrics={})

    env = gym.make(
        "Prostate-v0", split="train", data_dir=two_core_cohort, backbone="vit_b", sam_checkpoint=sam_checkpoint,
        decoder_checkpoint=decoder_path, cache_dir=tmp_path / "cache",
    )
    try:
        obs, _ = env.reset(seed=0)
        assert obs["features"].shape == (256, 64, 64) and obs["needle_mask"].shape == (64, 64)
        assert np.isfinite(obs["features"]).all() and obs["features"].std() > 0
        agent = NeedlePathAgent(env.action_space, env.unwrapped.k)
        terminated, reward = False, 0.0
        while not terminated:
            action, _ = agent.predict(obs)
            obs, reward, terminated, _, info = env.step(action)
        assert np.isfinite(reward) and 0.0 <= info["core_score"] <= 1.0 and info["n_points"] == 3
        assert len(list((tmp_path / "cache").rglob("*.h5"))) == 1  # both cores went into one feature cache
    finally:
        env.close()


def test_partial_image_encoder_checkpoint_names_the_missing_keys(sam_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = tmp_path / "partial.pth"
    torch.save(_subset(sam_state, "image_encoder.blocks.11.", keep=0), path)
    with pytest.raises(ValueError, match=r"missing keys image_encoder\.blocks\.11\."):
        build_image_encoder(backbone_config("vit_b", path))


def test_partial_mask_decoder_checkpoint_names_the_missing_keys(sam_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = tmp_path / "no_decoder.pth"
    torch.save({k: v for k, v in _subset(sam_state, "mask_decoder.iou_prediction_head.", keep=0).items()
                if not k.startswith("image_encoder.")}, path)
    with pytest.raises(ValueError, match=r"missing keys mask_decoder\.iou_prediction_head\."):
        initial_decoder(DecoderTrainingConfig(), backbone_config("vit_b", path))


def test_a_checkpoint_that_is_not_sam_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=r"no 'image_encoder\.\*' entries"):
        build_image_encoder(backbone_config("vit_b", path))
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as a torch state dict"):
        build_image_encoder(backbone_config("vit_b", path))
