"""Prostate-v0: data format validation, phantom, coordinate frame, masks, STOP rule,
replay, determinism and the env checkers. Runs on a tiny phantom (96 px, G = 6) with a
tiny encoder and a decoder pre-trained for two epochs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from segment_anything.modeling import PromptEncoder
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers the ids)
from agents.baselines import ProstateCenterAgent
from agents.evaluation import evaluate
from envs.prostate.metrics import sensitivity_at_specificity
import envs.prostate.feature_cache as feature_cache_module
from envs.prostate.backbone import tiny_backbone
from envs.prostate.data import CohortError, ProstateCohort
from envs.prostate.reward_model import cell_to_point, glimpse_mask
from envs.prostate.env import ActionMode, MissingDecoder, ProstateEnv
from envs.prostate.synthetic import SyntheticCohortConfig, generate_cohort
from train.pretrain_prostate import pretrain

TINY_COHORT = {"n_patients": 8, "cores_per_patient": 2, "image_size": 96}
TINY_DECODER = {"epochs": 2, "transformer_depth": 1, "mlp_dim": 32, "class_hidden": 16, "val_repeats": 1, "batch_size": 8}


@pytest.fixture(scope="module")
def env_kwargs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    kwargs = {"synthetic": TINY_COHORT, "backbone": tiny_backbone(96), "on_missing_decoder": "raise"}
    pretrain("Prostate-v0", tmp_path_factory.mktemp("pretrain"), 0, "cpu", TINY_DECODER, kwargs)
    return kwargs


@pytest.fixture
def env(env_kwargs: dict) -> ProstateEnv:
    environment = gym.make("Prostate-v0", **env_kwargs).unwrapped
    yield environment
    environment.close()


# ----------------------------------------------------------------- coordinate frame


@pytest.mark.parametrize(("grid", "size"), [(16, 256), (64, 1024), (6, 96)])
def test_cell_maps_to_its_pixel_centre_in_the_encoder_frame(grid: int, size: int) -> None:
    """SAM's prompt encoder must encode a cell's point exactly like its dense grid position
    (the source system put 256-px points into a 1024-px frame)."""
    torch.manual_seed(0)
    encoder = PromptEncoder(embed_dim=32, image_embedding_size=(grid, grid), input_image_size=(size, size), mask_in_chans=4)
    cells = torch.tensor([[0, grid - 1, grid * (grid - 1), grid * grid - 1, grid * (grid // 2) + grid // 3]])
    points = cell_to_point(cells, grid, size)  # (1, 5, 2)
    stride = size / grid
    assert points[0, 0].tolist() == pytest.approx([stride / 2 - 0.5, stride / 2 - 0.5])
    assert points[0, 3].tolist() == pytest.approx([size - stride / 2 - 0.5] * 2)
    with torch.no_grad():
        point_pe = encoder.pe_layer.forward_with_coords(points + 0.5, (size, size))[0]  # SAM adds the +0.5
        dense_pe = encoder.get_dense_pe()[0]  # (C, G, G)
    for j, cell in enumerate(cells[0].tolist()):
        row, col = divmod(cell, grid)
        torch.testing.assert_close(point_pe[j], dense_pe[:, row, col], atol=1e-4, rtol=1e-4)


def test_glimpse_covers_the_radius_around_each_valid_point() -> None:
    cells = torch.tensor([[0, 35]])
    visible = glimpse_mask(cells, torch.tensor([[True, False]]), grid_size=6, radius=1.5)[0, 0]
    assert visible[:2, :2].all() and visible.sum() == 4  # corner: 2 x 2 of the 3 x 3 block
    assert glimpse_mask(cells, torch.tensor([[False, False]]), 6, 1.5).sum() == 0
    assert glimpse_mask(cells, torch.tensor([[True, True]]), 6, None).sum() == 36


# ----------------------------------------------------------------------- data format


def _write_tiny_cohort(tmp_path: Path) -> Path:
    return generate_cohort(SyntheticCohortConfig(n_patients=3, cores_per_patient=1, image_size=32), tmp_path / "cohort")


def test_cohort_missing_group_is_named(tmp_path: Path) -> None:
    root = _write_tiny_cohort(tmp_path)
    with h5py.File(root / "cohort.h5", "a") as f:
        del f["needle_mask"]
    with pytest.raises(CohortError, match="missing group 'needle_mask'"):
        ProstateCohort(root)


def test_cohort_shape_mismatch_is_named(tmp_path: Path) -> None:
    root = _write_tiny_cohort(tmp_path)
    with h5py.File(root / "cohort.h5", "a") as f:
        core = next(iter(f["bmode"]))
        del f["prostate_mask"][core]
        f["prostate_mask"].create_dataset(core, data=np.zeros((16, 32), dtype=np.uint8))
    with pytest.raises(CohortError, match=f"core '{core}' has mismatched shapes"):
        ProstateCohort(root)


def test_patient_in_two_splits_is_an_error(tmp_path: Path) -> None:
    root = _write_tiny_cohort(tmp_path)
    splits = json.loads((root / "splits.json").read_text())
    splits["test"].append(splits["train"][0])
    (root / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(CohortError, match=f"patient '{splits['train'][0]}' is in both 'train' and 'test'"):
        ProstateCohort(root)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("grade_group", 7, "grade_group must be an integer in 0..5"), ("pct_cancer", 130, "pct_cancer must be in")],
)
def test_metadata_ranges_are_checked(tmp_path: Path, column: str, value: float, message: str) -> None:
    root = _write_tiny_cohort(tmp_path)
    table = pd.read_csv(root / "metadata.csv")
    table.loc[0, column] = value
    table.to_csv(root / "metadata.csv", index=False)
    with pytest.raises(CohortError, match=message):
        ProstateCohort(root)


def test_missing_metadata_column_is_named(tmp_path: Path) -> None:
    root = _write_tiny_cohort(tmp_path)
    pd.read_csv(root / "metadata.csv").drop(columns=["psa"]).to_csv(root / "metadata.csv", index=False)
    with pytest.raises(CohortError, match=r"missing column\(s\) \['psa'\]"):
        ProstateCohort(root)


# --------------------------------------------------------------------------- phantom


def test_phantom_is_deterministic_and_split_by_patient(tmp_path: Path) -> None:
    config = SyntheticCohortConfig(n_patients=6, cores_per_patient=2, image_size=64, seed=3)
    a, b = generate_cohort(config, tmp_path / "a"), generate_cohort(config, tmp_path / "b")
    assert (a / "metadata.csv").read_text() == (b / "metadata.csv").read_text()
    cohort_a, cohort_b = ProstateCohort(a), ProstateCohort(b)
    core = cohort_a.core_ids[0]
    np.testing.assert_array_equal(cohort_a.read_images(core).bmode, cohort_b.read_images(core).bmode)
    train = {r.patient_id for r in cohort_a.cores("train")}
    test = {r.patient_id for r in cohort_a.cores("test")}
    assert train and test and not train & test


def test_phantom_lesions_are_local_dark_and_define_involvement(tmp_path: Path) -> None:
    root = generate_cohort(SyntheticCohortConfig(n_patients=10, cores_per_patient=2, image_size=256), tmp_path / "c")
    cohort = ProstateCohort(root)
    ratios = []
    with h5py.File(cohort.h5_path) as f:
        for core_id in cohort.core_ids:
            record, images = cohort.record(core_id), cohort.read_images(core_id)
            lesion = f["lesion_mask"][core_id][:].astype(bool)
            region = images.prostate_mask & images.needle_mask
            if record.involvement > 0:
                assert record.grade_group >= 1
                assert record.involvement == pytest.approx((lesion & region).sum() / region.sum(), abs=1e-3)
            else:
                assert record.grade_group == 0
            if record.grade_group >= 2:
                assert lesion.sum() < 0.5 * images.prostate_mask.sum()  # local: most of the gland is normal
                ratios.append(images.bmode[lesion].mean() / images.bmode[images.prostate_mask & ~lesion].mean())
    assert len(ratios) >= 3
    assert np.mean(ratios) < 0.85  # csPCa lesions are hypoechoic: visible where they are


# ------------------------------------------------------------------------------ env


def test_observation_layout_and_grid_size(env: ProstateEnv) -> None:
    obs, info = env.reset(seed=0)
    G = env.grid_size
    assert G == 96 // 16
    assert obs["features"].shape == (256, G, G) and obs["features"].dtype == np.float32
    assert obs["prostate_mask"].shape == (G, G) and obs["selected"].shape == (G, G)
    assert obs["clinical"].shape == (4,)
    assert env.action_space == gym.spaces.Discrete(G * G + 1)
    assert all(np.isfinite(v).all() for v in obs.values())
    assert obs in env.observation_space


def test_masks_forbid_outside_prostate_chosen_cells_and_early_stop(env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", **env_kwargs, min_points=2).unwrapped
    obs, _ = env.reset(seed=1)
    mask = env.action_masks()
    prostate = obs["prostate_mask"].reshape(-1).astype(bool)
    np.testing.assert_array_equal(mask[:-1], prostate)
    assert not mask[env.stop_action]
    first = int(np.flatnonzero(mask[:-1])[0])
    obs, reward, terminated, _, info = env.step(first)
    assert not terminated and reward == 0.0 and not info["invalid_action"]
    assert not env.action_masks()[first] and obs["selected"].reshape(-1)[first] == 1
    assert not env.action_masks()[env.stop_action]  # one point < min_points
    second = int(np.flatnonzero(env.action_masks()[:-1])[0])
    env.step(second)
    assert env.action_masks()[env.stop_action]
    env.close()


def test_masked_actions_waste_the_step_without_crashing(env: ProstateEnv) -> None:
    obs, _ = env.reset(seed=2)
    outside = int(np.flatnonzero(obs["prostate_mask"].reshape(-1) == 0)[0])
    obs, reward, terminated, truncated, info = env.step(outside)
    assert info["invalid_action"] and info["n_points"] == 0 and not terminated and not truncated
    obs, reward, terminated, _, info = env.step(env.stop_action)  # STOP before min_points=1
    assert info["invalid_action"] and not terminated
    inside = int(np.flatnonzero(env.action_masks()[:-1])[0])
    obs, reward, terminated, _, info = env.step(inside)  # third of k=3 steps
    assert terminated and info["n_points"] == 1 and np.isfinite(reward)


def test_stop_ends_the_episode_with_the_final_info(env: ProstateEnv) -> None:
    env.reset(seed=3)
    env.step(int(np.flatnonzero(env.action_masks()[:-1])[0]))
    _, reward, terminated, truncated, info = env.step(env.stop_action)
    assert terminated and not truncated and not info["invalid_action"]
    for key in ("core_score", "involvement", "cls_prob", "grade_group", "components", "cspca", "points"):
        assert key in info
    assert info["n_points"] == 1 and 0.0 <= info["core_score"] <= 1.0 and np.isfinite(reward)


def test_episode_ends_after_k_points(env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", **env_kwargs, k=2).unwrapped
    env.reset(seed=4)
    for step in range(2):
        _, _, terminated, _, info = env.step(int(np.flatnonzero(env.action_masks()[:-1])[0]))
    assert terminated and info["n_points"] == 2
    env.close()


def test_actions_outside_the_space_raise(env: ProstateEnv) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be an int in"):
        env.step(env.stop_action + 1)
    with pytest.raises(ValueError, match="action must be a single integer"):
        env.step(1.5)


def test_case_replay_and_seeded_determinism(env: ProstateEnv) -> None:
    obs_a, info_a = env.reset(seed=7)
    obs_b, info_b = env.reset(seed=7)
    assert info_a == info_b
    np.testing.assert_array_equal(obs_a["features"], obs_b["features"])
    _, info_c = env.reset(options={"case": 1})
    _, info_d = env.reset(options={"case": info_c["core_id"]})
    assert info_c["case"] == info_d["case"] == 1

    def play() -> tuple[float, dict]:
        env.reset(options={"case": 0})
        env.step(int(np.flatnonzero(env.action_masks()[:-1])[-1]))
        _, reward, _, _, info = env.step(env.stop_action)
        return reward, info

    assert play() == play()
    with pytest.raises(ValueError, match="options\\['case'\\]"):
        env.reset(options={"case": env.n_cases})


def test_splits_draw_disjoint_patients(env_kwargs: dict) -> None:
    patients = {}
    for split in ("train", "val", "test"):
        environment = gym.make("Prostate-v0", **env_kwargs, split=split).unwrapped
        patients[split] = {r.patient_id for r in environment.records}
        environment.close()
    assert not patients["train"] & patients["test"] and not patients["train"] & patients["val"]
    with pytest.raises(ValueError, match="split must be one of"):
        ProstateEnv(split="holdout", **env_kwargs)


def test_one_shot_collapses_duplicates_and_drops_outside_cells(env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", **env_kwargs, action_mode="one_shot").unwrapped
    obs, _ = env.reset(seed=0)
    assert env.action_space == gym.spaces.MultiDiscrete([env.n_cells] * 3)
    assert env.action_masks().shape == (3 * env.n_cells,)
    inside = np.flatnonzero(obs["prostate_mask"].reshape(-1))
    outside = np.flatnonzero(obs["prostate_mask"].reshape(-1) == 0)
    _, reward, terminated, _, info = env.step(np.array([inside[0], inside[0], outside[0]]))
    assert terminated and info["n_duplicates"] == 1 and info["invalid_action"] and info["n_points"] == 1
    env.close()


@pytest.mark.parametrize("mode", list(ActionMode))
def test_env_checkers_pass(env_kwargs: dict, mode: ActionMode) -> None:
    environment = ProstateEnv(**env_kwargs, action_mode=mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(environment, skip_render_check=True)
        sb3_check_env(environment)
    # SB3 takes every 3-D Box for an image; ``features`` is a float feature grid, not one.
    substantive = [w for w in caught if "image" not in str(w.message) and "channels-last" not in str(w.message)]
    assert not substantive, [str(w.message) for w in substantive]
    environment.close()


def test_steps_never_run_the_image_encoder(env_kwargs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    gym.make("Prostate-v0", **env_kwargs).close()  # features cached
    monkeypatch.setattr(feature_cache_module, "build_image_encoder", lambda *a, **k: pytest.fail("encoder built"))
    env = gym.make("Prostate-v0", **env_kwargs).unwrapped
    env.reset(seed=0)
    env.step(int(np.flatnonzero(env.action_masks()[:-1])[0]))
    env.close()


def test_missing_decoder_names_the_pretrain_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m train pretrain --env Prostate-v0"):
        ProstateEnv(synthetic=TINY_COHORT, backbone=tiny_backbone(96), on_missing_decoder=MissingDecoder.RAISE,
                    cache_dir=tmp_path)


def test_render_shows_the_image(env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", **env_kwargs, render_mode="rgb_array").unwrapped
    env.reset(seed=0)
    env.step(env.stop_action)
    env.step(int(np.flatnonzero(env.action_masks()[:-1])[0]))
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8
    env.close()


def test_docstring_lists_every_option() -> None:
    for member in (*ActionMode, *MissingDecoder):
        assert f'"{member.value}"' in ProstateEnv.__doc__


def test_relative_reward_subtracts_the_no_point_reward(env_kwargs: dict) -> None:
    plain = gym.make("Prostate-v0", **env_kwargs).unwrapped
    relative = gym.make("Prostate-v0", **env_kwargs, relative_reward=True).unwrapped
    outcomes = []
    for environment in (plain, relative):
        environment.reset(options={"case": 2})
        environment.step(int(np.flatnonzero(environment.action_masks()[:-1])[0]))
        outcomes.append(environment.step(environment.stop_action)[1:])
    (r_plain, *_, info_plain), (r_relative, *_, info_relative) = outcomes
    assert info_relative["absolute_reward"] == pytest.approx(r_plain)
    assert r_relative == pytest.approx(r_plain - info_relative["no_point_reward"], abs=1e-6)
    none = gym.make("Prostate-v0", **env_kwargs, min_points=0, relative_reward=True).unwrapped
    none.reset(options={"case": 2})
    assert none.step(none.stop_action)[1] == pytest.approx(0.0, abs=1e-6)
    for environment in (plain, relative, none):
        environment.close()


def test_sensitivity_at_specificity_picks_the_best_admissible_threshold() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.5, 0.6, 0.05])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    # t = 0.35: negatives below 3/4 (specificity 0.75), positives at or above 3/4
    assert sensitivity_at_specificity(scores, labels, 0.75) == pytest.approx(0.75)
    assert sensitivity_at_specificity(scores, labels, 0.4) == pytest.approx(0.75)  # t = 0.3 gives spec 0.5, sens 0.75
    assert sensitivity_at_specificity(scores, labels, 0.0) == pytest.approx(1.0)


def test_evaluator_reports_metrics_and_baselines_on_the_test_split(env_kwargs: dict) -> None:
    environment = gym.make("Prostate-v0", **env_kwargs)
    agent = ProstateCenterAgent(environment.action_space)
    environment.close()
    result = evaluate(agent, "Prostate-v0", env_kwargs={**env_kwargs, "relative_reward": True}, n_episodes=1, seed=0)
    keys = ("mean_reward", "std_reward", "n_episodes", "core_auroc", "sensitivity_at_40_specificity", "balanced_accuracy")
    for key in keys:
        assert key in result
    assert set(result["baselines"]) == {"none", "random", "center", "needle_path", "needle_random", "hypoechoic", "lesion_probe"}
    assert result["baselines"]["none"]["mean_points"] == 0.0
    for name in ("random", "needle_path", "needle_random", "lesion_probe"):
        assert result["baselines"][name]["mean_points"] == 3.0, name
    assert result["n_episodes"] == result["test_cores"]
    # the evaluator reports plain rewards: the center agent matches the center baseline
    assert result["mean_reward"] == pytest.approx(result["baselines"]["center"]["mean_reward"])


def test_normalised_components_use_the_statistics_recorded_at_pretraining(env_kwargs: dict) -> None:
    env = gym.make("Prostate-v0", **env_kwargs, normalize_components=True).unwrapped
    stats = env.reward_config.component_stats["combined"]
    env.reset(options={"case": 0})
    env.step(int(np.flatnonzero(env.action_masks()[:-1])[0]))
    _, reward, _, _, info = env.step(env.stop_action)
    expected = sum(
        weight * (info["components"][name] - stats[name][0]) / stats[name][1]
        for name, weight in (("heatmap", 0.7), ("classification", 0.3))
    )
    if info["cspca"]:
        assert reward >= expected - 1e-9
    else:
        assert reward == pytest.approx(expected)
    env.close()
