"""Prostate-v0's needle and image baselines: the bars a learned policy must clear.

The needle agents must stay on the biopsy core; the lesion-probe heuristic must follow
what the image shows (a fixed rule cannot find a lesion placed at random)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.baselines.prostate import (
    HypoechoicAgent,
    LesionProbe,
    LesionProbeAgent,
    NeedlePathAgent,
    NeedleRandomAgent,
    fit_lesion_probe,
    hypoechoic_scores,
    needle_path_cells,
)
from agents.evaluation import run_episode
from envs.prostate.backbone import tiny_backbone
from envs.prostate.data import CoreImages, ProstateCohort
from envs.prostate.synthetic import SyntheticCohortConfig, generate_cohort
from train.pretrain_prostate import pretrain

G = 8
TINY_COHORT = {"n_patients": 8, "cores_per_patient": 2, "image_size": 128}
TINY_DECODER = {"epochs": 1, "transformer_depth": 1, "mlp_dim": 32, "class_hidden": 16, "val_repeats": 1, "batch_size": 8}


def _diagonal_needle() -> np.ndarray:
    needle = np.zeros((G, G), dtype=bool)
    for i in range(1, 7):
        needle[i, i] = True
    return needle


def _observation(needle: np.ndarray, features: np.ndarray | None = None) -> dict[str, np.ndarray]:
    prostate = np.zeros((G, G), dtype=np.int8)
    prostate[1:7, 1:7] = 1
    return {
        "features": np.zeros((4, G, G), np.float32) if features is None else features,
        "prostate_mask": prostate,
        "needle_mask": needle.astype(np.int8),
        "clinical": np.zeros(4, np.float32),
        "selected": np.zeros((G, G), np.int8),
    }


def _play(agent, observation: dict[str, np.ndarray], k: int) -> list[int]:
    """The cells a sequential agent picks in k steps on a fixed observation."""
    observation = {key: value.copy() for key, value in observation.items()}
    chosen = []
    for _ in range(k):
        action, _ = agent.predict(observation)
        chosen.append(int(action))
        observation["selected"].reshape(-1)[int(action)] = 1
    return chosen


def test_needle_path_spreads_k_points_along_the_needle() -> None:
    cells = needle_path_cells(_diagonal_needle(), 3)
    assert [divmod(c, G) for c in cells] == [(2, 2), (4, 4), (6, 6)]  # the middles of three equal stretches
    agent = NeedlePathAgent(gym.spaces.Discrete(G * G + 1), k=3)
    assert _play(agent, _observation(_diagonal_needle()), 3) == cells
    one_shot = NeedlePathAgent(gym.spaces.MultiDiscrete([G * G] * 3), k=3)
    assert sorted(one_shot.predict(_observation(_diagonal_needle()))[0].tolist()) == sorted(cells)


def test_needle_random_stays_on_the_needle_and_is_seeded() -> None:
    needle = _diagonal_needle()
    space = gym.spaces.Discrete(G * G + 1)
    runs = [_play(NeedleRandomAgent(space, seed=s), _observation(needle), 3) for s in (0, 0, 1, 2, 3)]
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs}) > 1
    for run in runs:
        assert len(set(run)) == 3 and all(needle.reshape(-1)[c] for c in run)


@pytest.mark.parametrize("lesion", [(2, 4), (5, 3)])
def test_lesion_probe_agent_looks_where_the_image_shows_a_lesion(lesion: tuple[int, int]) -> None:
    # A probe that reads channel 0; a bright spot there beside the needle is the lesion.
    probe = LesionProbe(mean=np.zeros(4), scale=np.ones(4), weight=np.array([1.0, 0, 0, 0]), bias=-6.0, target="test")
    features = np.zeros((4, G, G), np.float32)
    features[0][lesion] = 12.0
    agent = LesionProbeAgent(gym.spaces.Discrete(G * G + 1), probe, G, glimpse_radius=1.0, k=3)
    first = _play(agent, _observation(_diagonal_needle(), features), 1)[0]
    r, c = divmod(first, G)
    assert (r - lesion[0]) ** 2 + (c - lesion[1]) ** 2 <= 1  # its glimpse covers the lesion
    # with nothing in the image it covers the needle like the needle path
    blank = _play(agent, _observation(_diagonal_needle()), 3)
    assert all(min(abs(r - c) for r, c in [divmod(cell, G)]) <= 1 for cell in blank)


@pytest.fixture(scope="module")
def tiny_env_kwargs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    kwargs = {"synthetic": TINY_COHORT, "backbone": tiny_backbone(128), "on_missing_decoder": "raise",
              "cache_dir": str(tmp_path_factory.mktemp("cache"))}
    pretrain("Prostate-v0", tmp_path_factory.mktemp("pretrain"), 0, "cpu", TINY_DECODER, kwargs)
    return kwargs


def test_needle_agents_place_every_point_on_the_core_in_the_env(tiny_env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", split="test", **tiny_env_kwargs)
    try:
        base = env.unwrapped
        for agent in (NeedlePathAgent(env.action_space, base.k), NeedleRandomAgent(env.action_space, seed=0)):
            for case in range(base.n_cases):
                record = run_episode(agent, env, seed=case, case=case)
                needle = base._needle[case].reshape(G, G) & base._allowed[case].reshape(G, G)
                on_core = [needle[r, c] for r, c in record.final_info["points"]]
                assert len(on_core) == min(base.k, int(base._allowed[case].sum()))
                assert all(on_core[: int(needle.sum())]), (type(agent).__name__, case)
    finally:
        env.close()


def test_lesion_probe_fits_lesion_cells_of_the_phantom(tiny_env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", split="val", **tiny_env_kwargs)
    try:
        base = env.unwrapped
        probe = fit_lesion_probe(base.cohort, base.feature_file)
        assert probe.target == "lesion_mask" and np.isfinite(probe.weight).all()
        assert np.array_equal(probe.weight, fit_lesion_probe(base.cohort, base.feature_file).weight)  # deterministic
        p = probe.probability(base._cores.features(0))
        assert p.shape == (G * G,) and np.all((p >= 0) & (p <= 1))
    finally:
        env.close()


def test_hypoechoic_scores_find_the_dark_spot_inside_the_gland() -> None:
    rng = np.random.default_rng(0)
    size = G * 16
    bmode = rng.normal(100.0, 5.0, (size, size)).astype(np.float32)
    prostate = np.zeros((size, size), dtype=bool)
    prostate[16:112, 16:112] = True
    bmode[48:64, 80:96] *= 0.5  # a hypoechoic cell: row 3, column 5
    bmode[0:16, 0:16] = 0.0  # darker still, but outside the gland
    scores = hypoechoic_scores(CoreImages(bmode, prostate, np.zeros_like(prostate)), G).reshape(G, G)
    assert np.unravel_index(np.argmax(scores), scores.shape) == (3, 5)
    assert scores[0, 0] == 0.0 and np.all(scores >= 0) and scores[3, 5] > 3.0


def test_hypoechoic_agent_plays_the_env_and_refuses_batches(tiny_env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", split="test", **tiny_env_kwargs)
    try:
        base = env.unwrapped
        agent = HypoechoicAgent(env)
        for case in range(base.n_cases):
            record = run_episode(agent, env, seed=case, case=case)
            assert record.final_info["n_points"] == min(base.k, int(base._allowed[case].sum()))
            assert not record.final_info["invalid_action"]
        obs, _ = env.reset(seed=0)
        with pytest.raises(ValueError, match="one env"):
            agent.predict({k: np.stack([v, v]) for k, v in obs.items()})
    finally:
        env.close()


def test_phantom_places_lesions_along_and_beside_the_needle(tmp_path: Path) -> None:
    config = SyntheticCohortConfig(n_patients=24, cores_per_patient=2, image_size=128, lesion_near_needle=1.0)
    cohort = ProstateCohort(generate_cohort(config, tmp_path / "c"))
    size = config.image_size
    along, across = [], []
    for core_id in cohort.core_ids:
        lesion = cohort.read_lesion_mask(core_id)
        if lesion is None or not lesion.any():
            continue
        images = cohort.read_images(core_id)
        core = np.argwhere(images.needle_mask & images.prostate_mask).astype(float)  # (n, 2)
        centre = core.mean(axis=0)
        axis = np.linalg.svd(core - centre, full_matrices=False)[2][0]
        span = (core - centre) @ axis
        spot = np.argwhere(lesion).mean(axis=0) - centre
        along.append((spot @ axis - span.min()) / np.ptp(span))
        across.append(abs(spot @ np.array([-axis[1], axis[0]])) / size)
    along, across = np.array(along), np.array(across)
    assert len(along) >= 10
    assert along.std() > 0.15  # where along the core varies
    assert np.mean(across > 0.025) > 0.2  # some lesions sit beside the needle (its half-width is 0.025)...
    assert across.max() < config.lesion_lateral_offset + 0.03  # ...but within reach of a glimpse on it
