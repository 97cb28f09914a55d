"""``--device cuda``: env, rollout and update of vec-ppo on the GPU (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from agents.vec_ppo import VecPPO
from envs.hydrogel.sb3_vec import make_sb3_vec_env
from policies.hybrid import HybridActorCriticPolicy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_vec_ppo_trains_with_env_rollout_and_update_on_the_gpu() -> None:
    venv = make_sb3_vec_env("Hydrogel-v0", 256, 0, {"n_synthetic": 20, "device": "cuda"})
    model = VecPPO(HybridActorCriticPolicy, venv, n_steps=4, batch_size=300, n_epochs=2, seed=0, device="cuda",
                   policy_kwargs={"net_arch": [32]})
    assert venv.batch.device.type == "cuda"
    model.learn(2048)
    assert model._last_obs.device.type == "cuda" and next(model.policy.parameters()).device.type == "cuda"
    assert torch.isfinite(torch.tensor(model.last_logged["train/value_loss"]))
