"""Taxonomy training pieces: Phase 1 pre-training and the abstention-metrics callback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch as th
import torch.nn.functional as F
from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

import envs  # noqa: F401
from envs.taxonomy.data import Split
from policies.linnaeus import LinnaeusPolicy
from policies.phase1 import default_phase1_checkpoint, load_phase1
from train.abstention_callback import AbstentionMetricsCallback
from train.pretrain import pretrainer
from train.pretrain_taxonomy import Phase1TrainConfig, _rank_loss

TINY = {"n_samples": 240, "min_species_count": 0, "seed": 1}


def test_phase1_loss_ignores_null_labels() -> None:
    th.manual_seed(0)
    logits = [th.randn(4, 3), th.randn(4, 5)]
    labels = th.tensor([[1, 0], [2, 4], [1, 0], [2, 0]])
    expected = F.cross_entropy(logits[0], labels[:, 0]) + F.cross_entropy(logits[1][1:2], labels[1:2, 1])
    th.testing.assert_close(_rank_loss(logits, labels), expected)
    assert _rank_loss(logits, th.zeros(4, 2, dtype=th.long)).item() == 0.0  # all null: no NaN


def test_pretrain_writes_the_default_checkpoint_and_reports_per_rank_accuracy(tmp_path: Path) -> None:
    assert envs.entry("Taxonomy-v0").pretrain == envs.entry("TaxonomyMultitask-v0").pretrain is not None
    cache = tmp_path / "cache"
    metrics = pretrainer("Taxonomy-v0")(
        "Taxonomy-v0", tmp_path / "run", 0, "cpu", {"epochs": 1, "channels": [4, 8]},
        {"synthetic": TINY, "cache_dir": str(cache)},
    )
    checkpoint = default_phase1_checkpoint(cache)
    assert metrics["checkpoint"] == str(checkpoint) and checkpoint.is_file()
    assert (tmp_path / "run" / "phase1.pt").is_file()
    ranks = ["order", "family", "genus", "species"]
    for split in ("val", "test"):
        assert list(metrics["per_rank_accuracy"][split]) == ranks
        assert all(v is None or 0.0 <= v <= 1.0 for v in metrics["per_rank_accuracy"][split].values())
    model, meta = load_phase1(checkpoint)
    assert meta["ranks"] == tuple(ranks)


def test_pretrain_hyperparameters_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown pretrain hyperparameters"):
        Phase1TrainConfig.from_mapping({"epoch": 3})
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        Phase1TrainConfig.from_mapping({"learning_rate": 0})


def test_callback_logs_per_rank_abstention_metrics_from_its_own_val_env(tmp_path: Path) -> None:
    pretrainer("Taxonomy-v0")("Taxonomy-v0", tmp_path / "run", 0, "cpu", {"epochs": 1, "channels": [4]},
                              {"synthetic": TINY})
    phase1 = default_phase1_checkpoint()
    venv = make_vec_env("Taxonomy-v0", n_envs=2, seed=0, env_kwargs={"synthetic": TINY})
    model = MaskablePPO(LinnaeusPolicy, venv, n_steps=16, batch_size=16, n_epochs=1, seed=0,
                        policy_kwargs={"phase1_checkpoint": str(phase1)})
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    callback = AbstentionMetricsCallback(eval_freq=32, n_eval_episodes=5)
    model.learn(64, callback=callback)
    assert callback.eval_env.unwrapped.split is Split.VAL
    assert callback.eval_env.unwrapped is not venv.envs[0].unwrapped
    columns = set(pd.read_csv(tmp_path / "log" / "progress.csv").columns)
    for rank in ("order", "family", "genus", "species"):  # the always-defined ones (others may be None)
        assert {f"eval/abstention_rate/{rank}", f"eval/missed_abstention_count/{rank}"} <= columns
    assert "eval/mean_reward" in columns
    with pytest.raises(ValueError, match="test"):
        AbstentionMetricsCallback(split="test")
