"""Prostate-v0 phantom v4 and the decoder's lesion-pixel loss: where a lesion sits varies
from core to core, so no fixed placement of k glimpses sees every lesion, and the
decoder is taught to read the lesion it sees (and only where it sees)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.baselines.prostate import glimpse_visibility, hypoechoic_scores, needle_path_cells
from envs.prostate.data import ProstateCohort
from envs.prostate.feature_cache import ALLOWED_FRACTION, NEEDLE_FRACTION, area_fraction
from envs.prostate.reward_model import DecoderConfig, ProstateDecoder
from envs.prostate.reward_training import CoreBatch, DecoderTrainingConfig, decoder_loss
from envs.prostate.synthetic import SyntheticCohortConfig, generate_cohort

G = 16  # the default 256 px phantom's grid


def _cells(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool at 256 px -> (G*G,) area fraction per feature cell."""
    return area_fraction(mask, G).reshape(-1)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> ProstateCohort:
    root = generate_cohort(SyntheticCohortConfig(n_patients=40, cores_per_patient=3), tmp_path_factory.mktemp("v4") / "c")
    return ProstateCohort(root)


def test_no_fixed_needle_placement_sees_every_lesion(phantom: ProstateCohort) -> None:
    """Three glimpses evenly spaced along the core (the default glimpse, one cell) miss most
    of the lesion area on cancerous cores, while a single glimpse on the lesion sees more
    than all three: the gap a policy that reads the image can close."""
    visible = glimpse_visibility(G, DecoderTrainingConfig().glimpse_radius).astype(float)
    needle_seen, lesion_seen = [], []
    for core_id in phantom.core_ids:
        record = phantom.record(core_id)
        if record.involvement <= 0:
            continue
        images = phantom.read_images(core_id)
        core = images.prostate_mask & images.needle_mask
        weight = _cells(phantom.read_lesion_mask(core_id) & core)  # lesion-on-core area per cell
        needle = (_cells(core) >= NEEDLE_FRACTION) & (_cells(images.prostate_mask) >= ALLOWED_FRACTION)  # the env's needle_mask
        path = needle_path_cells(needle.reshape(G, G), 3)
        needle_seen.append((weight * (visible[path].sum(0) > 0)).sum() / weight.sum())
        best = np.argsort(-(visible @ weight))[:1]  # one glimpse on the lesion's heaviest cell
        lesion_seen.append((weight * (visible[best].sum(0) > 0)).sum() / weight.sum())
    assert len(needle_seen) >= 20
    assert np.mean(needle_seen) < 0.4
    assert np.mean(lesion_seen) > np.mean(needle_seen) + 0.1  # one well-placed glimpse beats three fixed ones
    assert np.mean(np.array(needle_seen) < 0.5) > 0.5  # on most cores the needle path sees less than half


def test_the_darkest_cell_beside_the_needle_is_on_the_lesion(phantom: ProstateCohort) -> None:
    """The B-mode shows the lesion: the most hypoechoic cell next to the core (what the
    ``hypoechoic`` reference glimpses first) lies on it far more often than any of the
    needle path's three cells do."""
    near = glimpse_visibility(G, 1.5).astype(float)
    darkest_hits, path_hits = [], []
    for core_id in phantom.core_ids:
        if phantom.record(core_id).involvement <= 0:
            continue
        images = phantom.read_images(core_id)
        lesion = _cells(phantom.read_lesion_mask(core_id)) > 0.25  # (G*G,)
        needle = (_cells(images.prostate_mask & images.needle_mask) >= NEEDLE_FRACTION) & (
            _cells(images.prostate_mask) >= ALLOWED_FRACTION)
        scores = hypoechoic_scores(images, G) * ((near @ needle) > 0)
        darkest_hits.append(lesion[np.argmax(scores)])
        path_hits.append(lesion[needle_path_cells(needle.reshape(G, G), 3)].any())
    assert len(darkest_hits) >= 20
    assert np.mean(darkest_hits) > 0.7 and np.mean(darkest_hits) > np.mean(path_hits) + 0.2


def test_csPCa_lesions_are_darker_than_their_surroundings_with_grade(phantom: ProstateCohort) -> None:
    ratio_by_grade: dict[int, list[float]] = {}
    for core_id in phantom.core_ids:
        record, images = phantom.record(core_id), phantom.read_images(core_id)
        lesion = phantom.read_lesion_mask(core_id)
        if record.grade_group == 0 or lesion.sum() < 50:
            continue
        ratio = images.bmode[lesion].mean() / images.bmode[images.prostate_mask & ~lesion].mean()
        ratio_by_grade.setdefault(min(record.grade_group, 3), []).append(ratio)
    means = {g: float(np.mean(r)) for g, r in ratio_by_grade.items()}
    assert set(means) >= {1, 3}
    assert means[3] < means[1] < 0.95  # hypoechoic, more so with grade


def test_contrast_must_grow_with_grade() -> None:
    with pytest.raises(ValueError, match="lesion_contrast"):
        SyntheticCohortConfig(lesion_contrast=(0.0, 0.5, 0.4, 0.5, 0.6, 0.7))
    with pytest.raises(ValueError, match="lesion_contrast"):
        SyntheticCohortConfig(lesion_contrast=(0.1, 0.2, 0.3))


def _batch(lesion: torch.Tensor) -> CoreBatch:
    n, grid = 1, 4
    return CoreBatch(
        core_ids=["a"], features=torch.randn(n, 256, grid, grid, generator=torch.Generator().manual_seed(0)).half(),
        allowed=torch.ones(n, grid * grid, dtype=torch.bool), needle_cells=torch.ones(n, grid * grid, dtype=torch.bool),
        core_weights=torch.full((n, 4 * grid, 4 * grid), 1.0), lesion_cells=None, lesion_pixels=lesion,
        clinical=torch.zeros(n, 4), clinical_present=torch.ones(n, 4, dtype=torch.bool),
        involvement=torch.tensor([0.2]), grade_group=torch.tensor([2]),
    )


def test_lesion_pixel_loss_counts_only_what_the_glimpses_show() -> None:
    """The pixel term sees the lesion mask only inside the glimpses: a lesion outside them
    leaves the loss unchanged, one inside changes it, and weight 0 (or no mask) removes it."""
    torch.manual_seed(0)
    decoder = ProstateDecoder(DecoderConfig(grid_size=4, img_size=64, mlp_dim=32, class_hidden=16, glimpse_radius=0.0))
    config = DecoderTrainingConfig(lesion_pixel_weight=1.0)
    cells, valid = torch.tensor([[0]]), torch.tensor([[True]])  # the glimpse is cell (0, 0): pixels [0:4, 0:4]
    empty = torch.zeros(1, 16, 16)
    outside, inside = empty.clone(), empty.clone()
    outside[0, 8:12, 8:12] = 1.0
    inside[0, 0:4, 0:4] = 1.0
    idx = torch.tensor([0])
    with torch.no_grad():
        loss = {name: float(decoder_loss(decoder, _batch(mask), idx, cells, valid, config, torch.device("cpu")))
                for name, mask in (("empty", empty), ("outside", outside), ("inside", inside))}
        plain = float(decoder_loss(decoder, _batch(None), idx, cells, valid, config, torch.device("cpu")))
        off = float(decoder_loss(decoder, _batch(inside), idx, cells, valid, DecoderTrainingConfig(lesion_pixel_weight=0.0),
                                 torch.device("cpu")))
    assert loss["outside"] == pytest.approx(loss["empty"])
    assert loss["inside"] != pytest.approx(loss["empty"])
    assert off == pytest.approx(plain) and loss["empty"] > plain
