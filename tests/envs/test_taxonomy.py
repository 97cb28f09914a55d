"""Taxonomy-v0 / TaxonomyMultitask-v0: tree, labels.h5 validation, synthetic data, env contract."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401
from envs.taxonomy import synthetic
from envs.taxonomy.data import SPLIT_CODES, NullCause, Split, hash_split, load_split, read_tree, write_labels_h5
from envs.taxonomy.env import RewardKind, TaxonomyEnv
from envs.taxonomy.synthetic import SyntheticConfig, generate, write_synthetic
from envs.taxonomy.tree import TaxonomyTree
from rewards.taxonomy import AbstentionOutcome

TINY = {"n_samples": 240, "min_species_count": 0, "seed": 1}
IDS = ("Taxonomy-v0", "TaxonomyMultitask-v0")


@pytest.fixture(scope="module")
def tiny_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("taxonomy"), SyntheticConfig(**TINY))


def make(env_id: str = "Taxonomy-v0", **kwargs) -> gym.Env:
    return gym.make(env_id, synthetic=TINY, **kwargs).unwrapped


# ------------------------------------------------------------------------ tree
def small_tree() -> TaxonomyTree:
    # orders 10, 20; families 11, 12 (order 10), 21 (order 20); species 111, 112, 121, 211
    return TaxonomyTree.from_taxon_edges(
        ["order", "family", "species"],
        [[20, 10], [11, 12, 21], [111, 112, 121, 211]],
        [(11, 10), (12, 10), (21, 20), (111, 11), (112, 11), (121, 12), (211, 21), (111, 11)],
    )


def test_tree_class_maps_are_sorted_ids_after_null() -> None:
    tree = small_tree()
    assert tree.class_maps[0] == {"null": 0, "10": 1, "20": 2}
    assert tree.num_classes == (3, 4, 5)
    assert tree.parents[1].tolist() == [0, 1, 1, 2]
    assert tree.parents[2].tolist() == [0, 1, 1, 2, 3]
    assert tree.children_mask(1, 1).tolist() == [False, True, True, False]
    assert tree.is_consistent([1, 2, 3]) and not tree.is_consistent([2, 1, 0])


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([(11, 10), (11, 20), (21, 20), (111, 11)], "two parents"),
        ([(11, 10), (10, 11), (21, 20), (111, 11)], "cycle"),
        ([(11, 10), (21, 20), (111, 10)], "adjacent coarser rank"),
        ([(11, 10), (21, 20)], "has no parent"),
        ([(11, 10), (21, 20), (111, 99)], "in no rank"),
    ],
)
def test_tree_validation(edges, message) -> None:
    with pytest.raises(ValueError, match=message):
        TaxonomyTree.from_taxon_edges(["order", "family", "species"], [[10, 20], [11, 21], [111]], edges)


def test_tree_json_round_trip(tmp_path: Path) -> None:
    tree = small_tree()
    tree.save(tmp_path / "t.json")
    assert TaxonomyTree.load(tmp_path / "t.json") == tree
    assert TaxonomyTree.load(tmp_path / "t.json").fingerprint() == tree.fingerprint()
    data = tree.to_json_dict()
    data["parents"][1][1] = 7
    with pytest.raises(ValueError, match="parent 7"):
        TaxonomyTree.from_json_dict(data)


def test_tree_encode_rejects_unknown_taxa() -> None:
    with pytest.raises(ValueError, match="taxon id 99"):
        small_tree().encode(np.array([[10, 11, 99]]))


# ------------------------------------------------------------------------ data
def write(path: Path, n: int = 12, **overrides) -> Path:
    rng = np.random.default_rng(0)
    family = rng.choice([11, 12, 21], n)
    fields = dict(
        identifiers=np.array([f"img{i}" for i in range(n)]),
        taxa={"L40": np.where(family == 21, 20, 10), "L30": family},
        images=rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8),
        split=np.arange(n) % 3,
    )
    fields.update(overrides)
    write_labels_h5(path, **fields)
    return path


def test_labels_h5_round_trip(tmp_path: Path) -> None:
    data = load_split(write(tmp_path / "labels.h5"), "val")
    assert data.tree.ranks == ("order", "family")
    assert len(data) == 4 and data.images.shape == (4, 8, 8, 3)
    assert data.labels.dtype == np.int64 and (data.labels > 0).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.__delitem__("img_identifiers"), "img_identifiers"),
        (lambda f: f.__delitem__("images"), "'images'"),
        (lambda f: (f.__delitem__("taxa_L40"), f.__delitem__("taxa_L30")), "no taxa_L"),
        (lambda f: (f.__delitem__("taxa_L30"), f.create_dataset("taxa_L30", data=np.ones(12) * 1.5)), "integer"),
        (lambda f: (f.__delitem__("taxa_L30"), f.create_dataset("taxa_L30", data=-np.ones(12, int))), "negative"),
        (lambda f: (f.__delitem__("taxa_L30"), f.create_dataset("taxa_L30", data=np.ones(5, int))), r"shape \(12,\)"),
        (lambda f: (f.__delitem__("images"), f.create_dataset("images", data=np.zeros((12, 8, 8, 3)))), "uint8"),
        (lambda f: (f.__delitem__("images"), f.create_dataset("images", data=np.zeros((12, 8, 8), np.uint8))), "H, W, 3"),
        (lambda f: (f.__delitem__("split"), f.create_dataset("split", data=np.full(12, 5))), "'split'"),
        (lambda f: f.create_dataset("spatial", data=np.zeros((12, 2))), "'spatial'"),
        (lambda f: f.create_dataset("null_cause", data=np.full(12, 9, np.uint8)), "'null_cause'"),
        (lambda f: (f.__delitem__("img_identifiers"), f.create_dataset("img_identifiers", data=np.array([b"a"] * 12))), "duplicates"),
    ],
)
def test_labels_h5_validation(tmp_path: Path, mutate, message) -> None:
    path = write(tmp_path / "labels.h5")
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(ValueError, match=message):
        load_split(path, "train")


def test_labels_contradicting_the_tree_or_two_parents_are_rejected(tmp_path: Path) -> None:
    # family 11 under order 10 in one row and under order 20 in another
    path = write(tmp_path / "labels.h5", n=3, taxa={"L40": np.array([10, 20, 10]), "L30": np.array([11, 11, 12])},
                 images=np.zeros((3, 8, 8, 3), np.uint8), identifiers=np.array(["a", "b", "c"]), split=np.arange(3))
    with pytest.raises(ValueError, match="two parents"):
        read_tree(path)
    tree = TaxonomyTree.from_taxon_edges(["order", "family"], [[10, 20], [11, 12]], [(11, 20), (12, 10)])
    tree.save(tmp_path / "taxonomy.json")
    with pytest.raises(ValueError, match="contradict the tree"):
        read_tree(path)


def test_missing_file_and_bad_split_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="labels file not found"):
        load_split(tmp_path / "none.h5", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(write(tmp_path / "labels.h5"), "training")


def test_hash_split_is_stable_and_roughly_80_10_10() -> None:
    ids = np.array([f"obs-{i}" for i in range(4000)])
    codes = hash_split(ids)
    assert np.array_equal(hash_split(ids[:100]), codes[:100])  # adding samples never moves old ones
    np.testing.assert_allclose(np.bincount(codes, minlength=3) / len(ids), [0.8, 0.1, 0.1], atol=0.03)


# ------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_nulls_are_a_fine_rank_suffix() -> None:
    cfg = SyntheticConfig(n_samples=400, seed=3)
    a, b = generate(cfg), generate(cfg)
    assert np.array_equal(a["images"], b["images"])
    taxa = np.stack([a["taxa"][k] for k in ("L40", "L30", "L20", "L10")], axis=1)
    assert np.array_equal(taxa, np.stack([b["taxa"][k] for k in ("L40", "L30", "L20", "L10")], axis=1))
    null = taxa == 0
    assert not (null[:, :-1] & ~null[:, 1:]).any(), "a null rank is followed by a labelled finer rank"
    rates = null.mean(axis=0)
    assert rates[0] < rates[1] < rates[2] < rates[3]
    # nulls come from poor images: null species are much more ambiguous than labelled ones
    assert a["ambiguity"][null[:, 2]].mean() > a["ambiguity"][~null[:, 3]].mean() + 0.3


def test_synthetic_nulls_have_taxonomic_causes_that_image_quality_does_not_reveal() -> None:
    cfg = SyntheticConfig(n_samples=3000, seed=3)
    data = generate(cfg)
    taxa = np.stack([data["taxa"][k] for k in ("L40", "L30", "L20", "L10")], axis=1)
    causes, ambiguity, split = data["null_cause"], data["ambiguity"], data["split"]
    assert np.array_equal(causes == NullCause.NONE, (taxa != 0).all(axis=1))
    shares = np.bincount(causes, minlength=len(NullCause)) / len(causes)
    assert all(shares[c] > 0.005 for c in NullCause), shares
    for cause in (NullCause.OBSERVER_GENUS, NullCause.UNSEEN_SPECIES):
        rows = causes == cause
        assert (taxa[rows, 2] != 0).all() and (taxa[rows, 3] == 0).all()  # genus known, species null
        # as many sharp images as among fully labelled records: quality says nothing
        clean = (ambiguity[rows] == 0).mean()
        assert abs(clean - (ambiguity[causes == NullCause.NONE] == 0).mean()) < 0.15 and clean > 0.5
    unseen = causes == NullCause.UNSEEN_SPECIES
    assert (split[unseen] != SPLIT_CODES[Split.TRAIN]).all() and unseen[split != SPLIT_CODES[Split.TRAIN]].any()


def test_unseen_species_never_reach_the_train_split(tiny_labels: Path) -> None:
    train, test = (load_split(tiny_labels, s) for s in ("train", "test"))
    assert not (train.null_cause == NullCause.UNSEEN_SPECIES).any()
    assert (test.null_cause == NullCause.UNSEEN_SPECIES).any()
    env = gym.make("Taxonomy-v0", data_path=tiny_labels, split="test").unwrapped
    env.reset(options={"case": int(np.flatnonzero(test.null_cause == NullCause.UNSEEN_SPECIES)[0])})
    info = env.step(env.abstain_action)[4]
    assert info["null_cause"] == "unseen_species"


def test_cache_key_names_the_generator_version(monkeypatch: pytest.MonkeyPatch) -> None:
    before = SyntheticConfig().digest()
    monkeypatch.setattr(synthetic, "DATA_VERSION", synthetic.DATA_VERSION + 1)
    assert SyntheticConfig().digest() != before


def test_synthetic_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="n_species"):
        SyntheticConfig(n_species=5)
    with pytest.raises(ValueError, match="unseen_species"):
        SyntheticConfig(unseen_species=80)


# ------------------------------------------------------------------------- env
@pytest.mark.parametrize("env_id", IDS)
def test_check_env_gymnasium_and_sb3_without_warnings(env_id: str) -> None:
    env = make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env, skip_render_check=False)
        sb3_check_env(env)
    env.reset(seed=0)
    assert env.render().shape == (36, 36, 3)


@pytest.mark.parametrize("env_id", IDS)
def test_seed_fixes_the_order_of_samples(env_id: str) -> None:
    env = make(env_id)

    def cases(seed: int) -> list[int]:
        first = env.reset(seed=seed)[1]["case"]
        return [first] + [env.reset()[1]["case"] for _ in range(env.n_cases + 5)]

    a, b, c = cases(0), cases(0), cases(1)
    assert a == b and a != c
    assert sorted(a[: env.n_cases]) == list(range(env.n_cases))  # a permutation: every sample once


def test_case_option_replays_a_sample_and_validates() -> None:
    env = make()
    obs, info = env.reset(options={"case": 3})
    obs2, info2 = env.reset(seed=5, options={"case": 3})
    assert info["img_identifier"] == info2["img_identifier"]
    assert np.array_equal(obs["image"], obs2["image"])
    with pytest.raises(ValueError, match=r"options\['case'\]"):
        env.reset(options={"case": env.n_cases})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"sample": 1})


def test_splits_are_disjoint(tiny_labels: Path) -> None:
    ids = {s: set(load_split(tiny_labels, s).identifiers) for s in Split}
    assert ids[Split.TRAIN] and ids[Split.VAL] and ids[Split.TEST]
    assert not ids[Split.TEST] & ids[Split.TRAIN] and not ids[Split.VAL] & ids[Split.TRAIN]


def _case_without_nulls(env) -> int:
    return int(np.flatnonzero((env.data.labels > 0).all(axis=1))[0])


def _case_with_null_suffix(env, first_null: int) -> int:
    labels = env.data.labels
    ok = (labels[:, :first_null] > 0).all(axis=1) & (labels[:, first_null:] == 0).all(axis=1)
    return int(np.flatnonzero(ok)[0])


def test_ranks_go_coarse_to_fine_and_a_perfect_episode_returns_4(tiny_labels: Path) -> None:
    env = TaxonomyEnv(data_path=tiny_labels)
    obs, info = env.reset(options={"case": _case_without_nulls(env)})
    labels, total = info["labels"], 0.0
    for r in range(4):
        assert obs["rank"].tolist() == [float(i == r) for i in range(4)]
        assert obs["previous"].tolist() == labels[:r].tolist() + [0] * (4 - r)
        obs, reward, terminated, truncated, info = env.step(labels[r])
        total += reward
        assert info["rank"] == r and not truncated and terminated == (r == 3)
    assert total == pytest.approx(4.0) == info["episode_reward"]
    assert info["outcomes"].tolist() == [AbstentionOutcome.CORRECT] * 4
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_abstaining_at_the_first_null_rank_scores_the_remaining_ranks(tiny_labels: Path) -> None:
    env = TaxonomyEnv(data_path=tiny_labels)
    _, info = env.reset(options={"case": _case_with_null_suffix(env, 2)})
    env.step(info["labels"][0])
    env.step(info["labels"][1])
    _, reward, terminated, _, info = env.step(env.abstain_action)
    assert terminated and reward == pytest.approx(1.0)  # +0.5 for genus and species
    assert info["episode_reward"] == pytest.approx(3.0)
    assert info["predictions"].tolist()[2:] == [0, 0]


def test_action_masks_allow_the_rank_classes_and_abstain_only(tiny_labels: Path) -> None:
    env = TaxonomyEnv(data_path=tiny_labels)
    env.reset(seed=0)
    n = env.num_classes
    mask = env.action_masks()
    assert mask.shape == (env.max_classes + 1,)
    assert not mask[0] and mask[1 : n[0]].all() and not mask[n[0] : env.max_classes].any() and mask[-1]


def test_hierarchy_consistent_masks_allow_only_children(tiny_labels: Path) -> None:
    env = TaxonomyEnv(data_path=tiny_labels, hierarchy_consistent=True)
    env.reset(seed=0)
    parent = 1
    env.step(parent)
    mask = env.action_masks()
    children = env.tree.children_mask(1, parent)
    assert np.array_equal(mask[: len(children)], children) and mask[-1]
    assert not mask[len(children) : -1].any()


@pytest.mark.parametrize("action_kind", ["null", "padding", "non_child"])
def test_masked_action_is_an_abstention_flagged_invalid(tiny_labels: Path, action_kind: str) -> None:
    env = TaxonomyEnv(data_path=tiny_labels, hierarchy_consistent=True)
    _, info = env.reset(options={"case": _case_without_nulls(env)})
    if action_kind == "non_child":
        env.step(info["labels"][0])
        action = int(np.flatnonzero(~env.tree.children_mask(1, info["labels"][0]))[1])
    else:
        action = 0 if action_kind == "null" else env.max_classes - 1
        assert env.num_classes[0] <= action or action == 0
    assert not env.action_masks()[action]
    _, reward, terminated, _, info = env.step(action)
    assert terminated and info["invalid_action"] and info["abstained"]
    assert info["predictions"][info["rank"]] == 0


@pytest.mark.parametrize("env_id", IDS)
def test_actions_outside_the_space_raise(env_id: str) -> None:
    env = make(env_id)
    env.reset(seed=0)
    bad = env.action_space.n if env_id == "Taxonomy-v0" else env.action_space.nvec
    with pytest.raises(ValueError, match="action must be"):
        env.step(bad)


def test_multitask_scores_like_the_sequential_env(tiny_labels: Path) -> None:
    seq = TaxonomyEnv(data_path=tiny_labels)
    multi = gym.make("TaxonomyMultitask-v0", data_path=tiny_labels).unwrapped
    case = _case_with_null_suffix(seq, 3)
    _, info = seq.reset(options={"case": case})
    multi.reset(options={"case": case})
    labels = info["labels"]
    total = sum(seq.step(labels[r])[1] for r in range(3)) + seq.step(seq.abstain_action)[1]
    action = np.concatenate([labels[:3], [multi.num_classes[3]]])  # abstain at species
    _, reward, terminated, _, minfo = multi.step(action)
    assert terminated and reward == pytest.approx(total) == pytest.approx(3.5)
    mask = multi.action_masks()
    assert mask.shape == (int(np.sum(multi.num_classes + 1)),) and mask.sum() == int(np.sum(multi.num_classes))


def test_reward_options(tiny_labels: Path) -> None:
    env = TaxonomyEnv(data_path=tiny_labels, reward=RewardKind.EPISODE_OUTCOME)
    _, info = env.reset(options={"case": _case_without_nulls(env)})
    rewards = [env.step(info["labels"][r])[1] for r in range(4)]
    assert rewards == [0.0, 0.0, 0.0, 1.0]
    env = TaxonomyEnv(data_path=tiny_labels, reward_params={"correct_classification": 2.0})
    _, info = env.reset(options={"case": _case_without_nulls(env)})
    assert env.step(info["labels"][0])[1] == 2.0
    with pytest.raises(ValueError, match="reward_params"):
        TaxonomyEnv(data_path=tiny_labels, reward_params={"bonus": 1.0})
    with pytest.raises(ValueError, match="reward must be one of"):
        TaxonomyEnv(data_path=tiny_labels, reward="dense")


def test_env_docstrings_list_every_option() -> None:
    doc = TaxonomyEnv.__doc__
    for heading in ("Description", "Action Space", "Observation Space", "Rewards", "Starting State",
                    "Episode End", "Arguments", "Version History"):
        assert f"## {heading}" in doc
    for kind in RewardKind:
        assert kind.value in doc
