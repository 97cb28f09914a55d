"""The ``[ray]`` extra: the suite and candidate generation through a local Ray instance give
the same results as without Ray, and RLlib trains on our envs (one PPO iteration, 2 CPUs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from benchmarks.resume_equivalence import comparable  # noqa: E402
from agents.candidate_generation import GenerationConfig, generate_candidates  # noqa: E402
from envs.hydrogel.problem import DesignProblem  # noqa: E402
from envs.hydrogel.sb3_vec import HydrogelSB3VecEnv  # noqa: E402
from policies.hybrid import HybridActorCriticPolicy  # noqa: E402

TINY_SUITE = """
AnisotropicAMG-v0:
  algo: reinforce
  quick:
    total_timesteps: 8
    hyperparams: [env_kwargs.grid_size=8, eval_episodes=2]
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_the_suite_through_ray_publishes_the_same_report(local_ray, tmp_path: Path) -> None:
    from benchmarks.cli import main

    config = tmp_path / "suite.yml"
    config.write_text(TINY_SUITE)
    reports = []
    for name, extra in (("local", []), ("ray", ["--ray"])):
        argv = ["suite", "--budget", "quick", "--seeds", "2", "--env", "AnisotropicAMG-v0", "--config", str(config),
                "--reps", "100", "--out", str(tmp_path / name), "--results", str(tmp_path / f"{name}.md"),
                "--figures", str(tmp_path / f"{name}_figures"), *extra]
        assert main(argv) == 0
        reports.append(json.loads((tmp_path / name / "suite.json").read_text()))
    local, through_ray = reports
    assert through_ray["normalised"] == local["normalised"]
    assert through_ray["aggregates"] == local["aggregates"]
    for seed in (0, 1):
        run = Path("AnisotropicAMG-v0") / f"reinforce_{seed}"
        a, b = comparable(tmp_path / "local" / run), comparable(tmp_path / "ray" / run)  # without timings
        a.pop("command", None), b.pop("command", None)
        assert a == b
        assert (tmp_path / "ray" / run / "model.zip").is_file()


def test_generation_through_ray_gives_the_local_ranking(local_ray) -> None:
    from train.ray_cluster import generate_candidates_ray

    torch.set_num_threads(1)  # as the Ray workers
    torch.manual_seed(0)
    env = HydrogelSB3VecEnv(2, n_synthetic=20)
    policy = HybridActorCriticPolicy(env.observation_space, env.action_space, lambda _: 1e-3, net_arch=[32])
    problem = DesignProblem(split="test", n_synthetic=20)
    config = GenerationConfig(n=5000, batch_size=512, top_k=30, seed=4)
    local = generate_candidates(policy, problem, 1, config)
    remote = generate_candidates_ray(policy, problem, 1, config, address="local")
    assert np.array_equal(remote.top.best.designs, local.top.best.designs)
    assert np.array_equal(remote.top.best.reward, local.top.best.reward)
    assert remote.summary.report() == local.summary.report()


@pytest.mark.parametrize("env_id", ["Hydrogel-v0", "Taxonomy-v0"])
def test_rllib_ppo_trains_one_iteration(local_ray, env_id: str) -> None:
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.connectors.env_to_module import FlattenObservations

    import envs.rllib

    envs.rllib.register_rllib_envs((env_id,))
    hydrogel = env_id.startswith("Hydrogel")
    config = (
        PPOConfig()
        .environment(env_id, env_config={"n_synthetic": 20} if hydrogel else {})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=8,
                     gym_env_vectorize_mode="vector_entry_point" if hydrogel else "sync",
                     env_to_module_connector=None if hydrogel else (lambda env, spaces, device: FlattenObservations()))
        .training(train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1)
        .learners(num_learners=0)
        .debugging(seed=0)
    )
    algo = config.build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["num_env_steps_sampled_lifetime"] >= 128
    assert np.isfinite(result["env_runners"]["episode_return_mean"])
    assert np.isfinite(result["learners"]["default_policy"]["total_loss"])
