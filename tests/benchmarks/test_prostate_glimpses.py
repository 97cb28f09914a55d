"""benchmarks.prostate_glimpses: the lesion share an agent's glimpses see, checked against
the lesion masks' pixels (an independent count, not the module's cell fractions)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from benchmarks.prostate_glimpses import glimpse_coverage
from envs.episodes import EpisodeRecord
from envs.prostate.backbone import tiny_backbone
from envs.prostate.reward_training import LESION_CELL_FRACTION
from train.pretrain_prostate import pretrain

G, CELL = 8, 16  # 128 px images on an 8 x 8 grid: every cell is 16 x 16 px
TINY_COHORT = {"n_patients": 8, "cores_per_patient": 2, "image_size": 128}
TINY_DECODER = {"epochs": 1, "transformer_depth": 1, "mlp_dim": 32, "class_hidden": 16, "val_repeats": 1, "batch_size": 8}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    kwargs = {"synthetic": TINY_COHORT, "backbone": tiny_backbone(128), "on_missing_decoder": "raise",
              "cache_dir": str(tmp_path_factory.mktemp("cache"))}
    pretrain("Prostate-v0", tmp_path_factory.mktemp("pretrain"), 0, "cpu", TINY_DECODER, kwargs)
    env = gym.make("Prostate-v0", split="train", **kwargs)
    yield env
    env.close()


def _record(core_id: str, involvement: float, points: list[tuple[int, int]]) -> EpisodeRecord:
    return EpisodeRecord(0.0, 1, {"core_id": core_id, "involvement": involvement, "points": points})


def test_lesion_share_and_hit_rate_match_the_lesion_pixels(env) -> None:
    core = env.unwrapped
    assert core.glimpse_radius == 0.0 and core.grid_size == G
    records, expected_share, expected_hits, benign = [], [], [], 0
    for record in core.records:
        mask = core.cohort.read_lesion_mask(record.core_id)  # (128, 128)
        if record.involvement <= 0:
            benign += 1
            records.append(_record(record.core_id, record.involvement, [(0, 0)]))
            continue
        blocks = mask.reshape(G, CELL, G, CELL).sum(axis=(1, 3))  # lesion pixels per cell
        best = divmod(int(np.argmax(blocks)), G)
        records.append(_record(record.core_id, record.involvement, [best]))
        cancerous = record.core_id
        expected_share.append(blocks[best] / mask.sum())
        expected_hits.append(blocks[best] / CELL**2 >= LESION_CELL_FRACTION)
    assert expected_share and benign, "the tiny phantom should have benign and cancerous cores"
    records.append(_record(cancerous, 0.5, []))  # a cancerous core, no point: sees nothing
    coverage = glimpse_coverage(records, env)
    assert coverage["cancerous_cores"] == len(expected_share) + 1  # benign cores are left out
    assert coverage["lesion_share"] == pytest.approx(np.sum(expected_share) / (len(expected_share) + 1), rel=1e-5)
    assert 0 < coverage["lesion_share"] < 1
    assert coverage["hit_rate"] == pytest.approx(sum(expected_hits) / (len(expected_share) + 1))
    assert any(expected_hits)


def test_points_off_the_lesion_see_none_of_it(env) -> None:
    core = env.unwrapped
    records = []
    for record in core.records:
        if record.involvement <= 0:
            continue
        mask = core.cohort.read_lesion_mask(record.core_id)
        blocks = mask.reshape(G, CELL, G, CELL).sum(axis=(1, 3))
        empty = np.argwhere(blocks == 0)[:3]
        records.append(_record(record.core_id, record.involvement, [tuple(int(v) for v in c) for c in empty]))
    coverage = glimpse_coverage(records, env)
    assert coverage["lesion_share"] == 0.0 and coverage["hit_rate"] == 0.0
