"""What one HYDRA-BERT Stage 2 iteration costs here, against its arithmetic floor.

``python -m benchmarks.stage2_cost [--iterations 3] [--threads 2] [--matmul-dtype bfloat16] [--out FILE]``

One iteration of ``train/configs/stage2.yml`` (2000 envs x 100 steps = 200,000 designs,
10 epochs of minibatch 2048) is timed for two trainers on the same batched torch env
(``envs.hydrogel.sb3_vec.HydrogelSB3VecEnv``) and the same policy, interleaved
iteration by iteration so that load from other jobs hits both alike:

* ``vec-ppo`` (:class:`agents.vec_ppo.VecPPO`): rollout and update on device;
* ``sb3-ppo``: SB3's ``PPO`` on the adapter (NumPy rollout buffer), ``collect_rollouts``
  then ``train``.

The floor is the update's and the rollout's matmul arithmetic at this machine's
measured fp32 matmul rate: per sample, forward = 2 x (sum of in x out over the policy's
linear layers) FLOP, backward = 2 x forward less the first layer's input gradient; an
iteration does 10 epochs x 200,000 samples of forward + backward plus 200,000 forwards
for the rollout. The rate is the median of repeated (2048 x 256) @ (256 x 256) matmuls
with the same threads. Reported: medians over iterations of rollout and update seconds
per trainer, the floor, and (iteration seconds) / floor; x 200 for the full run.

``--matmul-dtype bfloat16`` runs both trainers' policies with bfloat16 matrix products
(``policy_kwargs.matmul_dtype``); the floor stays the float32 one (the issue's), and the
same arithmetic at the measured bfloat16 rate is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure

from agents.vec_ppo import VecPPO, collect_rollout
from benchmarks.provenance import provenance
from envs.hydrogel.sb3_vec import HydrogelSB3VecEnv
from policies.hybrid import HybridActorCriticPolicy
from train.config import resolve_config
from train.schedules import parse_schedule

__all__ = ["STAGE2_CONFIG", "linear_flops", "matmul_rate", "measure", "main"]

STAGE2_CONFIG = Path(__file__).resolve().parents[1] / "train" / "configs" / "stage2.yml"
ITERATIONS_OF_THE_SEED = 200


def linear_flops(policy: torch.nn.Module) -> tuple[int, int]:
    """(forward, backward) FLOP per sample of every ``nn.Linear`` in ``policy``."""
    layers = [m for m in policy.modules() if isinstance(m, torch.nn.Linear)]
    forward = sum(2 * m.in_features * m.out_features for m in layers)
    first = layers[0]  # the trunk's input layer: no gradient with respect to the observation
    return forward, 2 * forward - 2 * first.in_features * first.out_features


def matmul_rate(repeats: int = 50, dtype: torch.dtype = torch.float32) -> float:
    """Median FLOP/s of (2048 x 256) @ (256 x 256) in ``dtype`` (default fp32), the update's typical shape."""
    a, b = torch.randn(2048, 256, dtype=dtype), torch.randn(256, 256, dtype=dtype)
    for _ in range(5):
        a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * 2048 * 256 * 256 / (time.perf_counter() - start))
    return statistics.median(rates)


def _settings(matmul_dtype: str) -> dict[str, Any]:
    config = resolve_config("vec-ppo", "Hydrogel-v0", config_file=STAGE2_CONFIG)
    algo = {k: parse_schedule(k, v) for k, v in config.algo_kwargs.items()}
    return {"n_envs": config.n_envs, "algo": algo, "policy_kwargs": {**config.policy_kwargs, "matmul_dtype": matmul_dtype}}


def measure(iterations: int = 3, seed: int = 0, matmul_dtype: str = "float32") -> dict[str, Any]:
    """Rollout and update seconds of both trainers per iteration, and the floor."""
    settings = _settings(matmul_dtype)
    algo, n_envs = settings["algo"], settings["n_envs"]
    n_steps, samples = algo["n_steps"], algo["n_steps"] * n_envs
    vec_env, sb3_env = HydrogelSB3VecEnv(n_envs), HydrogelSB3VecEnv(n_envs)
    vec = VecPPO(HybridActorCriticPolicy, vec_env, seed=seed, device="cpu", policy_kwargs=settings["policy_kwargs"],
                 **algo)
    vec.set_logger(configure(None, []))
    sb3_kwargs = {k: v for k, v in algo.items() if k != "normalize_advantage"}
    sb3 = PPO(HybridActorCriticPolicy, sb3_env, seed=seed, device="cpu", policy_kwargs=settings["policy_kwargs"],
              **sb3_kwargs)
    _, callback = sb3._setup_learn(samples * (iterations + 1), callback=None)
    sb3.set_logger(configure(None, []))
    callback.init_callback(sb3)
    obs = vec_env.reset_tensors(seed)
    returns, lengths = torch.zeros(n_envs), torch.zeros(n_envs, dtype=torch.long)
    times: dict[str, list[float]] = {k: [] for k in ("vec_rollout", "vec_update", "sb3_rollout", "sb3_update")}
    for _ in range(iterations):
        start = time.perf_counter()
        rollout, obs, _ = collect_rollout(vec.policy, vec_env, obs, n_steps, algo["gamma"], returns, lengths, lambda: True)
        middle = time.perf_counter()
        vec._train(rollout)
        times["vec_rollout"].append(middle - start)
        times["vec_update"].append(time.perf_counter() - middle)
        start = time.perf_counter()
        sb3.collect_rollouts(sb3.env, callback, sb3.rollout_buffer, n_rollout_steps=n_steps)
        middle = time.perf_counter()
        sb3.train()
        times["sb3_rollout"].append(middle - start)
        times["sb3_update"].append(time.perf_counter() - middle)
        print({k: round(v[-1], 2) for k, v in times.items()}, flush=True)
    forward, backward = linear_flops(vec.policy)
    flop = algo["n_epochs"] * samples * (forward + backward) + samples * forward
    rate = matmul_rate()
    floor = flop / rate
    bf16_rate = matmul_rate(dtype=torch.bfloat16)
    median = {k: statistics.median(v) for k, v in times.items()}
    vec_iteration = median["vec_rollout"] + median["vec_update"]
    sb3_iteration = median["sb3_rollout"] + median["sb3_update"]
    return {
        "samples_per_iteration": samples, "n_epochs": algo["n_epochs"], "batch_size": algo["batch_size"],
        "policy_parameters": sum(p.numel() for p in vec.policy.parameters()),
        "flop_per_sample_forward": forward, "flop_per_sample_backward": backward,
        "flop_per_iteration": flop, "matmul_gflops": rate / 1e9, "floor_seconds": floor,
        "matmul_dtype": matmul_dtype, "bf16_matmul_gflops": bf16_rate / 1e9, "bf16_floor_seconds": flop / bf16_rate,
        "median_seconds": median, "all_seconds": times,
        "vec_ppo_iteration_seconds": vec_iteration, "sb3_ppo_iteration_seconds": sb3_iteration,
        "vec_ppo_over_floor": vec_iteration / floor, "sb3_ppo_over_floor": sb3_iteration / floor,
        "full_run_minutes": {"floor": ITERATIONS_OF_THE_SEED * floor / 60,
                             "vec_ppo": ITERATIONS_OF_THE_SEED * vec_iteration / 60,
                             "sb3_ppo": ITERATIONS_OF_THE_SEED * sb3_iteration / 60},
        "threads": torch.get_num_threads(),
    }


def _markdown(result: dict[str, Any]) -> str:
    m = result["median_seconds"]
    return "\n".join([
        "| trainer | rollout s | update s | iteration s | / floor | 200 iterations (min) |",
        "|---|---|---|---|---|---|",
        f"| vec-ppo | {m['vec_rollout']:.2f} | {m['vec_update']:.2f} | {result['vec_ppo_iteration_seconds']:.2f} |"
        f" {result['vec_ppo_over_floor']:.2f} | {result['full_run_minutes']['vec_ppo']:.0f} |",
        f"| SB3 PPO | {m['sb3_rollout']:.2f} | {m['sb3_update']:.2f} | {result['sb3_ppo_iteration_seconds']:.2f} |"
        f" {result['sb3_ppo_over_floor']:.2f} | {result['full_run_minutes']['sb3_ppo']:.0f} |",
        f"| floor ({result['flop_per_iteration'] / 1e12:.2f} TFLOP at {result['matmul_gflops']:.0f} GFLOP/s) | | |"
        f" {result['floor_seconds']:.2f} | 1.00 | {result['full_run_minutes']['floor']:.0f} |",
        f"| bf16 floor (the same at {result['bf16_matmul_gflops']:.0f} GFLOP/s) | | |"
        f" {result['bf16_floor_seconds']:.2f} | {result['bf16_floor_seconds'] / result['floor_seconds']:.2f} |"
        f" {ITERATIONS_OF_THE_SEED * result['bf16_floor_seconds'] / 60:.0f} |",
        f"(policy matmuls in {result['matmul_dtype']})",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stage2_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--matmul-dtype", choices=["float32", "bfloat16"], default="float32",
                        help="policy_kwargs.matmul_dtype of both trainers (default float32)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/stage2_cost.json"))
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.threads < 1:
        parser.error("--iterations and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    result = measure(args.iterations, args.seed, args.matmul_dtype)
    command = shlex.join(["python", "-m", "benchmarks.stage2_cost", *(sys.argv[1:] if argv is None else argv)])
    result["provenance"] = {**provenance([]), "command": command}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
