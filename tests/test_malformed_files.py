"""Malformed files, opened the way a user opens them (``gym.make`` with the env's data
path, checkpoint or outcome-model kwarg), fail with one clear line that names the file
and the field, and write nothing (issue 16).

"Clear" means a ValueError / FileNotFoundError or the env's own error class
(:class:`~envs.prostate.data.CohortError`), never a library's bare ``OSError``,
``KeyError``, ``IndexError``, ``RuntimeError`` (or a ``JSONDecodeError`` /
``UnicodeDecodeError`` that names neither file nor field). Every file is tiny: a
12-sample ``labels.h5``, a 3-core 32 px cohort, an untrained decoder checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pandas as pd
import pytest
import torch

import envs  # noqa: F401  (registers the ids)
from envs.hydrogel.surrogate import PREDICTION_NAMES
from envs.prostate.backbone import tiny_backbone
from envs.prostate.data import CohortError
from envs.prostate.reward_model import DecoderConfig, ProstateDecoder, save_decoder
from envs.prostate.reward_training import DecoderTrainingConfig
from envs.prostate.synthetic import SyntheticCohortConfig, generate_cohort
from envs.taxonomy.data import write_labels_h5

CLEAR_ERRORS = (ValueError, FileNotFoundError, CohortError)
"""Exact types a user may see; subclasses such as JSONDecodeError do not count."""


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test's cache root is its own, so "nothing written" can be checked exactly."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SCIENCEGYM_CACHE", str(cache))
    return cache


def _files(roots: Iterable[Path]) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def expect_clear_error(make: Callable[[], Any], file: str | Path, field: str, watch: Iterable[Path]) -> str:
    """Run ``make``; assert a clear one-line error naming ``file`` (a path, or the name of a
    Python callable passed instead of a file) and ``field``, and that no file appeared
    under ``watch``. Returns the message (what the user reads)."""
    watch = list(watch)
    before = _files(watch)
    with pytest.raises(Exception) as caught:
        make()
    err = caught.value
    message = str(err)
    assert type(err) in CLEAR_ERRORS, f"{type(err).__name__}: {message}"
    assert "\n" not in message, message
    assert str(file) in message, message
    assert field in message, message
    assert _files(watch) == before, sorted(map(str, _files(watch) - before))
    return message


# --------------------------------------------------------------------- Taxonomy-v0

N = 12


def _labels(path: Path, **overrides: Any) -> Path:
    """A valid 12-sample ``labels.h5`` (two ranks, 8 x 8 images; zero images compress, so
    the images dataset is really lzf-filtered)."""
    rng = np.random.default_rng(0)
    family = rng.choice([11, 12, 21], N)
    fields: dict[str, Any] = dict(
        identifiers=np.array([f"img{i}" for i in range(N)]),
        taxa={"L40": np.where(family == 21, 20, 10), "L30": family},
        images=np.zeros((N, 8, 8, 3), dtype=np.uint8),
        split=np.arange(N) % 3,
    )
    fields.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_labels_h5(path, **fields)
    return path


def _replace(f: h5py.File, key: str, data: Any) -> None:
    if key in f:
        del f[key]
    f.create_dataset(key, data=data)


def _spoil_image_chunk(path: Path) -> None:
    """Overwrite the compressed images chunk with garbage: the file opens, the read fails."""
    with h5py.File(path, "r") as f:
        info = f["images"].id.get_chunk_info(0)
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\xff" * info.size)


TAXONOMY_CASES: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    "a dataset of the wrong dtype (float images)": (
        lambda f: _replace(f, "images", np.zeros((N, 8, 8, 3))), "'images'"),
    "a dataset of the wrong shape (taxa_L30 of 5 rows)": (
        lambda f: _replace(f, "taxa_L30", np.ones(5, dtype=np.uint32)), "'taxa_L30'"),
    "NaN in a label field (taxa_L30 as float with NaN)": (
        lambda f: _replace(f, "taxa_L30", np.full(N, np.nan)), "'taxa_L30'"),
    "a missing dataset (images)": (lambda f: f.__delitem__("images"), "'images'"),
    "a missing dataset (img_identifiers)": (lambda f: f.__delitem__("img_identifiers"), "'img_identifiers'"),
    "a group where a dataset belongs (img_identifiers)": (
        lambda f: (f.__delitem__("img_identifiers"), f.create_group("img_identifiers")), "'img_identifiers'"),
    "NaN in metadata (spatial)": (
        lambda f: _replace(f, "spatial", np.where(np.eye(N, 3) > 0, np.nan, 0.0)), "'spatial'"),
    "text in metadata (spatial)": (
        lambda f: _replace(f, "spatial", np.full((N, 3), b"north")), "'spatial'"),
    "split codes out of range": (lambda f: _replace(f, "split", np.full(N, 7)), "'split'"),
}


@pytest.mark.parametrize("case", list(TAXONOMY_CASES))
def test_taxonomy_labels_h5_field_errors(case: str, tmp_path: Path) -> None:
    mutate, field = TAXONOMY_CASES[case]
    path = _labels(tmp_path / "data" / "labels.h5")
    with h5py.File(path, "a") as f:
        mutate(f)
    expect_clear_error(lambda: gym.make("Taxonomy-v0", data_path=str(path)), path, field, [tmp_path])


def test_taxonomy_truncated_labels_h5(tmp_path: Path) -> None:
    path = _labels(tmp_path / "data" / "labels.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy
    message = expect_clear_error(lambda: gym.make("Taxonomy-v0", data_path=str(path)), path, "truncated", [tmp_path])
    assert "HDF5" in message


def test_taxonomy_file_that_is_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "data" / "labels.h5"
    path.parent.mkdir()
    path.write_text("img,species\nimg0,Parus major\n")  # a CSV saved under the wrong name
    expect_clear_error(lambda: gym.make("TaxonomyMultitask-v0", data_path=str(path)), path, "HDF5", [tmp_path])


def test_taxonomy_damaged_image_chunk_names_images(tmp_path: Path) -> None:
    path = _labels(tmp_path / "data" / "labels.h5")
    _spoil_image_chunk(path)
    expect_clear_error(lambda: gym.make("Taxonomy-v0", data_path=str(path)), path, "'images'", [tmp_path])


@pytest.mark.parametrize(
    ("text", "field"),
    [("{\"ranks\": [\"order\", ", "JSON"), ("{\"class_maps\": [], \"parents\": []}", "'ranks'"), ("[1, 2]", "JSON object")],
    ids=["truncated", "no-ranks", "a-list"],
)
def test_taxonomy_malformed_tree_json(text: str, field: str, tmp_path: Path) -> None:
    path = _labels(tmp_path / "data" / "labels.h5")
    tree = tmp_path / "data" / "taxonomy.json"
    tree.write_text(text)
    expect_clear_error(lambda: gym.make("Taxonomy-v0", data_path=str(path)), tree, field, [tmp_path])
    expect_clear_error(lambda: gym.make("Taxonomy-v0", data_path=str(path), tree_path=str(tree)), tree, field, [tmp_path])


# --------------------------------------------------------------------- Prostate-v0

BACKBONE = tiny_backbone(32)
"""2 x 2 feature grid: encoding the 3-core cohort takes milliseconds."""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 3-patient, 32 px cohort, copied by each test before spoiling it."""
    config = SyntheticCohortConfig(n_patients=3, cores_per_patient=1, image_size=32)
    return generate_cohort(config, tmp_path_factory.mktemp("prostate") / "cohort")


def _copy(cohort: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cohort, tmp_path / "cohort"))


def _first_core(root: Path) -> str:
    with h5py.File(root / "cohort.h5", "r") as f:
        return sorted(f["bmode"])[0]


def _make_prostate(root: Path, cache: Path, **kwargs: Any) -> Callable[[], Any]:
    return lambda: gym.make("Prostate-v0", data_dir=str(root), backbone=BACKBONE, cache_dir=str(cache),
                            on_missing_decoder="raise", **kwargs)


def _edit_h5(root: Path, edit: Callable[[h5py.File, str], None]) -> None:
    core = _first_core(root)
    with h5py.File(root / "cohort.h5", "a") as f:
        edit(f, core)


def _set_core(f: h5py.File, group: str, core: str, data: np.ndarray) -> None:
    del f[group][core]
    f[group].create_dataset(core, data=data)


def _edit_csv(root: Path, column: str, value: Any) -> None:
    table = pd.read_csv(root / "metadata.csv", dtype=str)
    table.loc[0, column] = value
    table.to_csv(root / "metadata.csv", index=False)


PROSTATE_H5_CASES: dict[str, tuple[Callable[[h5py.File, str], None], str]] = {
    "a missing group (needle_mask)": (lambda f, core: f.__delitem__("needle_mask"), "'needle_mask'"),
    "a dataset where a group belongs (needle_mask)": (
        lambda f, core: (f.__delitem__("needle_mask"), f.create_dataset("needle_mask", data=np.zeros(3))), "'needle_mask'"),
    "a core missing from one group": (lambda f, core: f["prostate_mask"].__delitem__(core), "'prostate_mask'"),
    "a 3-D B-mode image": (lambda f, core: _set_core(f, "bmode", core, np.zeros((2, 32, 32), np.float32)), "bmode/{core}"),
    "a mask of another shape than its B-mode": (
        lambda f, core: _set_core(f, "prostate_mask", core, np.zeros((16, 32), np.uint8)), "'{core}'"),
    "a B-mode image of the wrong dtype (text)": (
        lambda f, core: _set_core(f, "bmode", core, np.full((32, 32), b"a")), "bmode/{core}"),
    "NaN in a B-mode image": (
        lambda f, core: _set_core(f, "bmode", core, np.where(np.eye(32) > 0, np.nan, 1.0).astype(np.float32)),
        "bmode/{core}"),
    "a mask with values other than 0/1": (
        lambda f, core: _set_core(f, "prostate_mask", core, np.full((32, 32), 0.5, np.float32)), "prostate_mask/{core}"),
}


@pytest.mark.parametrize("case", list(PROSTATE_H5_CASES))
def test_prostate_cohort_h5_field_errors(case: str, cohort: Path, tmp_path: Path, _own_cache: Path) -> None:
    edit, field = PROSTATE_H5_CASES[case]
    root = _copy(cohort, tmp_path)
    _edit_h5(root, edit)
    cache = tmp_path / "kwarg-cache"
    field = field.format(core=_first_core(root))
    expect_clear_error(_make_prostate(root, cache), root / "cohort.h5", field, [root, cache, _own_cache])


def test_prostate_truncated_cohort_h5(cohort: Path, tmp_path: Path, _own_cache: Path) -> None:
    root = _copy(cohort, tmp_path)
    data = (root / "cohort.h5").read_bytes()
    (root / "cohort.h5").write_bytes(data[: len(data) // 2])
    cache = tmp_path / "kwarg-cache"
    expect_clear_error(_make_prostate(root, cache), root / "cohort.h5", "truncated", [root, cache, _own_cache])


def test_prostate_patient_in_two_splits(cohort: Path, tmp_path: Path) -> None:
    root = _copy(cohort, tmp_path)
    splits = json.loads((root / "splits.json").read_text())
    patient = splits["train"][0]
    splits["test"].append(patient)
    (root / "splits.json").write_text(json.dumps(splits))
    cache = tmp_path / "kwarg-cache"
    message = expect_clear_error(_make_prostate(root, cache), root / "splits.json", f"patient {patient!r}", [root, cache])
    assert "'train'" in message and "'test'" in message


@pytest.mark.parametrize(
    ("text", "field"),
    [("{\"train\": [\"P0000\"", "JSON"), ("{\"train\": \"P0000\"}", "'train'"), ("{\"holdout\": []}", "holdout")],
    ids=["truncated", "a-string-not-a-list", "unknown-split"],
)
def test_prostate_malformed_splits_json(text: str, field: str, cohort: Path, tmp_path: Path) -> None:
    root = _copy(cohort, tmp_path)
    (root / "splits.json").write_text(text)
    cache = tmp_path / "kwarg-cache"
    expect_clear_error(_make_prostate(root, cache), root / "splits.json", field, [root, cache])


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("grade_group", "", "grade_group"),  # NaN label
        ("pct_cancer", "nan", "pct_cancer"),
        ("psa", "high", "'psa'"),  # text in a clinical column
        ("age", "inf", "age"),
        ("patient_id", "", "'patient_id'"),
    ],
)
def test_prostate_bad_metadata_cells(column: str, value: str, field: str, cohort: Path, tmp_path: Path) -> None:
    root = _copy(cohort, tmp_path)
    _edit_csv(root, column, value)
    cache = tmp_path / "kwarg-cache"
    expect_clear_error(_make_prostate(root, cache), root / "metadata.csv", field, [root, cache])


def test_prostate_metadata_that_is_not_csv(cohort: Path, tmp_path: Path) -> None:
    root = _copy(cohort, tmp_path)
    (root / "metadata.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)  # an image saved under the wrong name
    cache = tmp_path / "kwarg-cache"
    expect_clear_error(_make_prostate(root, cache), root / "metadata.csv", "CSV", [root, cache])


# ---------------------------------------------------------- Prostate-v0 checkpoints


def _decoder(backbone: Any = BACKBONE, **config: Any) -> ProstateDecoder:
    shape = {"transformer_depth": 1, "mlp_dim": 32, "class_hidden": 16, **config}
    return ProstateDecoder(DecoderConfig(grid_size=backbone.grid_size, img_size=backbone.img_size, **shape))


@pytest.fixture(scope="module")
def encoded(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(cohort, cache dir with its features, a valid untrained decoder checkpoint); the env
    builds with it, so each failure below is the checkpoint's alone."""
    root = tmp_path_factory.mktemp("encoded")
    good = save_decoder(_decoder(), root / "good.pt", backbone=BACKBONE, training=DecoderTrainingConfig(), metrics={})
    cache = root / "cache"
    _make_prostate(cohort, cache, decoder_checkpoint=str(good))().close()
    return cohort, cache, good


def _spoil_payload(good: Path, path: Path, spoil: Callable[[dict[str, Any]], None]) -> Path:
    payload = torch.load(good, map_location="cpu", weights_only=True)
    spoil(payload)
    torch.save(payload, path)
    return path


def test_decoder_checkpoint_for_another_backbone(encoded: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cohort, cache, _ = encoded
    other = tiny_backbone(64)
    path = save_decoder(_decoder(other), tmp_path / "decoder_64px.pt", backbone=other,
                        training=DecoderTrainingConfig(), metrics={})
    message = expect_clear_error(_make_prostate(cohort, cache, decoder_checkpoint=str(path)), path, "grid",
                                 [tmp_path, cache, cohort])
    assert "4x4" in message and "2x2" in message


def test_decoder_checkpoint_for_another_encoder_with_the_same_grid(encoded: tuple[Path, Path, Path],
                                                                   tmp_path: Path) -> None:
    """Same grid and image size, other encoder weights: the features it learnt on are not
    the env's, so its rewards would be meaningless; it must not load silently."""
    cohort, cache, _ = encoded
    other = replace(BACKBONE, init_seed=1)
    path = save_decoder(_decoder(other), tmp_path / "decoder_seed1.pt", backbone=other,
                        training=DecoderTrainingConfig(), metrics={})
    message = expect_clear_error(_make_prostate(cohort, cache, decoder_checkpoint=str(path)), path,
                                 "'backbone_architecture'", [tmp_path, cache, cohort])
    assert "init_seed" in message


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        (lambda p: p["decoder_config"].update(transformer_depth=2), "'state_dict'"),  # weights of another depth
        (lambda p: p["decoder_config"].update(mlp_dim=64), "'state_dict'"),  # same keys, other shapes
        (lambda p: p["decoder_config"].update(attention="linear"), "'decoder_config'"),  # a newer version's field
        (lambda p: p["decoder_config"].pop("grid_size"), "'decoder_config'"),
        (lambda p: p.pop("state_dict"), "'state_dict'"),
        (lambda p: p.update(format="something-else"), "format"),
    ],
    ids=["deeper-transformer", "wider-mlp", "unknown-config-field", "config-without-grid", "no-weights", "other-format"],
)
def test_decoder_checkpoint_of_another_architecture(spoil: Callable[[dict[str, Any]], None], field: str,
                                                    encoded: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cohort, cache, good = encoded
    path = _spoil_payload(good, tmp_path / "decoder.pt", spoil)
    expect_clear_error(_make_prostate(cohort, cache, decoder_checkpoint=str(path)), path, field, [tmp_path, cache, cohort])


def test_decoder_checkpoint_that_is_a_bare_state_dict(encoded: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cohort, cache, _ = encoded
    path = tmp_path / "state_dict.pt"
    torch.save(_decoder().state_dict(), path)
    expect_clear_error(_make_prostate(cohort, cache, decoder_checkpoint=str(path)), path, "format", [tmp_path, cache, cohort])


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_decoder_checkpoint_unreadable(damage: str, encoded: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cohort, cache, good = encoded
    path = tmp_path / "decoder.pt"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint\n")
    expect_clear_error(_make_prostate(cohort, cache, decoder_checkpoint=str(path)), path, "torch file",
                       [tmp_path, cache, cohort])


@pytest.mark.parametrize("damage", ["wrong keys", "truncated"])
def test_sam_checkpoint_wrong_keys_or_truncated(damage: str, encoded: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """``sam_checkpoint`` initialises the image encoder; the failure comes before any
    feature is encoded, so no cache file appears."""
    cohort, cache, good = encoded
    path = tmp_path / "medsam.pt"
    if damage == "wrong keys":
        torch.save({"image_encoder.patch_embed.weight": torch.zeros(3), "decoder.head.weight": torch.zeros(2)}, path)
        field = "image_encoder."
    else:
        path.write_bytes(good.read_bytes()[:200])
        field = "state dict"
    make = lambda: gym.make("Prostate-v0", data_dir=str(cohort), backbone={"img_size": 32, "embed_dim": 32, "depth": 1,  # noqa: E731
                                                                          "num_heads": 2},
                            sam_checkpoint=str(path), decoder_checkpoint=str(good), cache_dir=str(cache))
    expect_clear_error(make, path, field, [tmp_path, cache, cohort])


# --------------------------------------------------------------------- Hydrogel-v0

HYDROGEL = {"n_synthetic": 20}


def nan_outcomes(patients: torch.Tensor, polymer: torch.Tensor, formulation: torch.Tensor,
                 coverage: torch.Tensor) -> dict[str, torch.Tensor]:
    """A Stage 1 model whose output is NaN (e.g. log of a negative input)."""
    return {name: torch.full((patients.shape[0],), float("nan")) for name in PREDICTION_NAMES}


def two_column_outcomes(patients: torch.Tensor, polymer: torch.Tensor, formulation: torch.Tensor,
                        coverage: torch.Tensor) -> dict[str, torch.Tensor]:
    """A Stage 1 model returning (B, 2) per output (e.g. mean and std) instead of (B,)."""
    return {name: torch.zeros(patients.shape[0], 2) for name in PREDICTION_NAMES}


def tensor_outcomes(patients: torch.Tensor, polymer: torch.Tensor, formulation: torch.Tensor,
                    coverage: torch.Tensor) -> torch.Tensor:
    """A Stage 1 model returning one (B, 8) tensor instead of a dict of named outputs."""
    return torch.zeros(patients.shape[0], len(PREDICTION_NAMES))


class ScriptedNaN(torch.nn.Module):
    """TorchScript form of :func:`nan_outcomes` (what ``outcome_model=PATH`` loads)."""

    def forward(self, patients: torch.Tensor, polymer: torch.Tensor, formulation: torch.Tensor,
                coverage: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name in ["delta_EF", "stress_reduction", "strain_normalization", "optimal_prob", "toxicity",
                     "structural_integrity", "fibrosis_risk", "arrhythmia_risk"]:
            out[name] = torch.full((patients.shape[0],), float("nan"))
        return out


@pytest.mark.parametrize("env_id", ["Hydrogel-v0", "HydrogelSearch-v0"])
@pytest.mark.parametrize(
    ("model", "field"),
    [(nan_outcomes, "'delta_EF' is not finite"), (two_column_outcomes, "'delta_EF' has shape"),
     (tensor_outcomes, "returned a Tensor")],
    ids=["nan", "wrong-shape", "not-a-dict"],
)
def test_outcome_model_bad_output_at_make(env_id: str, model: Callable[..., Any], field: str, tmp_path: Path,
                                          _own_cache: Path) -> None:
    """With regret on (the default), the oracle runs the model in ``gym.make``."""
    make = lambda: gym.make(env_id, outcome_model=model, cache_dir=str(tmp_path / "cache"), **HYDROGEL)  # noqa: E731
    message = expect_clear_error(make, model.__qualname__, field, [tmp_path])
    assert message.startswith(f"outcome_model {model.__qualname__} ")


@pytest.mark.parametrize(("model", "field"), [(nan_outcomes, "'delta_EF'"), (two_column_outcomes, "'delta_EF'")],
                         ids=["nan", "wrong-shape"])
def test_outcome_model_bad_output_at_step(model: Callable[..., Any], field: str, tmp_path: Path) -> None:
    env = gym.make("Hydrogel-v0", outcome_model=model, compute_regret=False, **HYDROGEL)
    env.reset(seed=0)
    env.action_space.seed(0)
    expect_clear_error(lambda: env.step(env.action_space.sample()), model.__qualname__, field, [tmp_path])


def test_torchscript_outcome_model_returning_nan_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stage1.pt"
    torch.jit.script(ScriptedNaN()).save(str(path))
    make = lambda: gym.make("Hydrogel-v0", outcome_model=str(path), cache_dir=str(tmp_path / "cache"), **HYDROGEL)  # noqa: E731
    expect_clear_error(make, path, "'delta_EF' is not finite", [tmp_path])


@pytest.mark.parametrize("content", ["truncated", "state dict"])
def test_outcome_model_file_that_is_not_torchscript(content: str, tmp_path: Path) -> None:
    path = tmp_path / "stage1.pt"
    if content == "truncated":
        torch.jit.script(ScriptedNaN()).save(str(path))
        path.write_bytes(path.read_bytes()[:300])
    else:  # the weights of a model rather than the scripted model
        torch.save(torch.nn.Linear(11, 8).state_dict(), path)
    make = lambda: gym.make("Hydrogel-v0", outcome_model=str(path), cache_dir=str(tmp_path / "cache"), **HYDROGEL)  # noqa: E731
    expect_clear_error(make, path, "TorchScript", [tmp_path])


# ----------------------------------------------- Taxonomy Phase 1 (Linnaeus policy)


@pytest.fixture(scope="module")
def phase1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a labels.h5, an untrained tiny Phase 1 checkpoint that fits it)."""
    from policies.phase1 import Phase1Classifier, Phase1Config, save_phase1

    root = tmp_path_factory.mktemp("phase1")
    labels = _labels(root / "data" / "labels.h5")
    env = gym.make("Taxonomy-v0", data_path=str(labels)).unwrapped
    torch.manual_seed(0)
    model = Phase1Classifier(Phase1Config(num_classes=env.tree.num_classes, channels=(4, 8)))
    path = root / "phase1.pt"
    save_phase1(model, path, tree_fingerprint=env.tree.fingerprint(), ranks=env.tree.ranks)
    return labels, path


def _linnaeus(labels: Path, checkpoint: Path) -> Callable[[], Any]:
    """What ``MaskablePPO(LinnaeusPolicy, env, policy_kwargs={"phase1_checkpoint": ...})`` builds."""
    from policies.linnaeus import LinnaeusPolicy

    env = gym.make("Taxonomy-v0", data_path=str(labels))
    return lambda: LinnaeusPolicy(env.observation_space, env.action_space, lambda _: 1e-3,
                                  phase1_checkpoint=str(checkpoint))


def test_phase1_checkpoint_fits(phase1: tuple[Path, Path]) -> None:
    _linnaeus(*phase1)()  # the valid checkpoint the failures below are spoiled from


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        (lambda p: p["config"].update(channels=[4, 16]), "'state_dict'"),  # weights of another architecture
        (lambda p: p["config"].pop("channels"), "'config'"),
        (lambda p: p.update(target="policies.phase1:ResNet50Classifier"), "'target'"),
        (lambda p: p.pop("state_dict"), "'state_dict'"),
        (lambda p: p.update(format="sciencegym-prostate-decoder-v1"), "format"),
    ],
    ids=["wider-blocks", "config-without-channels", "unknown-class", "no-weights", "a-prostate-decoder"],
)
def test_phase1_checkpoint_of_another_architecture(spoil: Callable[[dict[str, Any]], None], field: str,
                                                   phase1: tuple[Path, Path], tmp_path: Path) -> None:
    labels, good = phase1
    path = _spoil_payload(good, tmp_path / "phase1.pt", spoil)
    expect_clear_error(_linnaeus(labels, path), path, field, [tmp_path, labels.parent])


def test_phase1_checkpoint_for_other_data(phase1: tuple[Path, Path], tmp_path: Path) -> None:
    """A checkpoint trained on another taxonomy (here: one rank more) does not fit the spaces."""
    from policies.phase1 import Phase1Classifier, Phase1Config, save_phase1

    labels, _ = phase1
    path = tmp_path / "phase1_other.pt"
    save_phase1(Phase1Classifier(Phase1Config(num_classes=(3, 4, 5), channels=(4, 8))), path,
                tree_fingerprint="other", ranks=("order", "family", "species"))
    expect_clear_error(_linnaeus(labels, path), path, "class-map sizes", [tmp_path, labels.parent])


def test_phase1_checkpoint_truncated(phase1: tuple[Path, Path], tmp_path: Path) -> None:
    labels, good = phase1
    path = tmp_path / "phase1.pt"
    path.write_bytes(good.read_bytes()[:500])
    expect_clear_error(_linnaeus(labels, path), path, "torch file", [tmp_path, labels.parent])
