"""What one GRPO iteration costs on Prostate-v0, as ratios measured in one run.

``python -m benchmarks.grpo_cost [--iterations 5] [--backbone small vit_b] [--out FILE]``

Per iteration (B cases x G episodes, U update epochs, from ``train/hyperparams/grpo.yml``):

* ``rollout``: :func:`agents.grpo.collect_group_rollout`, i.e. the policy's sampling
  forward passes plus the env steps, whose reward is the SAM decoder on cached
  features. This is "the rollout forward pass alone".
* ``update``: :meth:`agents.grpo.GRPO.train_on_rollout`, U epochs on the stored actions
  (policy only; the decoder is not re-run) plus the BatchNorm refresh.
* ``encoder``: the SAM image encoder on the iteration's B distinct images, what an
  uncached pipeline must spend at least once per iteration (the source system re-ran
  it in each of its 5 passes over B x G replicated images, so this is a lower bound on
  its cost). ``vit_b`` (SAM ViT-B at 1024 px, random weights: the cost does not depend
  on them) is timed on ``--vit-images`` images and scaled to B, linearly in images.

Reported, each the median over iterations, interleaved so that load from other
processes hits all parts alike; times are this process's CPU time with one torch
thread (robust to other jobs on the machine), wall-clock times are reported too:

* ``iteration / rollout`` (target <= 1.5; the source needed 5 full forward passes),
* ``(iteration + encoder) / iteration`` per backbone (target >= 20).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

import envs  # noqa: F401  (registers the ids)
from agents.grpo import GRPO, collect_group_rollout
from benchmarks.provenance import provenance
from envs.prostate.backbone import BackboneConfig, BackboneName, build_image_encoder, preprocess_bmode
from envs.spec import import_target
from train.config import parse_overrides, resolve_config

__all__ = ["main", "measure"]

ENV_ID = "Prostate-v0"
ITERATION_TARGET = 1.5
ENCODER_TARGET = 20.0

VIT_B = BackboneConfig(
    name=BackboneName.VIT_B, img_size=1024, embed_dim=768, depth=12, num_heads=12, window_size=14,
    global_attn_indexes=(2, 5, 8, 11), use_rel_pos=True,
)
"""SAM ViT-B's architecture (``envs.prostate.backbone.backbone_config("vit_b")``) without
a checkpoint: random weights, the same cost."""


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, CPU seconds of this process, wall seconds)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def _build_model(seed: int, overrides: dict[str, Any]) -> GRPO:
    config = resolve_config("grpo", ENV_ID, seed=seed, overrides=overrides)
    venv = make_vec_env(ENV_ID, n_envs=config.n_envs, seed=seed, env_kwargs=config.env_kwargs)
    policy = import_target(config.policy, "policy")
    model = GRPO(policy, venv, seed=seed, policy_kwargs=config.policy_kwargs or None, **config.algo_kwargs)
    model.set_logger(configure(None, []))
    venv.reset()
    return model


def measure(iterations: int, backbones: list[str], vit_images: int, seed: int = 0,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time ``iterations`` GRPO iterations (after one warm-up) and the encoders, interleaved.
    ``overrides``: as ``python -m train --hyperparams`` (e.g. ``env_kwargs.decoder_checkpoint``)."""
    model = _build_model(seed, overrides or {})
    sub_envs = model.env.envs
    base = sub_envs[0].unwrapped
    encoders = {}
    for name in backbones:
        config = replace(base.backbone, checkpoint=None) if name == "small" else VIT_B
        encoders[name] = (build_image_encoder(config), config)
    n_images = {name: (model.config.groups_per_iteration if name == "small" else vit_images) for name in backbones}

    def one_iteration() -> dict[str, float]:
        cases = model.draw_cases(base.n_cases)
        model.policy.set_training_mode(False)
        rollout, r_cpu, r_wall = _timed(lambda: collect_group_rollout(
            model.policy, sub_envs, cases, model.config.group_size, device=model.device,
            with_values=model.config.use_critic, gamma=model.config.gamma))
        _, u_cpu, u_wall = _timed(lambda: model.train_on_rollout(rollout))
        row = {"rollout_cpu": r_cpu, "update_cpu": u_cpu, "rollout_wall": r_wall, "update_wall": u_wall,
               "steps": rollout.n_steps}
        for name, (encoder, config) in encoders.items():
            ids = [base.records[int(c)].core_id for c in cases[: n_images[name]]]
            images = torch.stack([preprocess_bmode(base.cohort.read_images(i).bmode, config.img_size) for i in ids])
            with torch.no_grad():
                _, e_cpu, e_wall = _timed(lambda: encoder(images))
            scale = model.config.groups_per_iteration / len(ids)
            row[f"encoder_{name}_cpu"], row[f"encoder_{name}_wall"] = e_cpu * scale, e_wall * scale
        return row

    one_iteration()  # warm-up: lazy init, allocator
    rows = [one_iteration() for _ in range(iterations)]
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    iteration_cpu = median["rollout_cpu"] + median["update_cpu"]
    result: dict[str, Any] = {
        "env_id": ENV_ID,
        "groups_per_iteration": model.config.groups_per_iteration,
        "group_size": model.config.group_size,
        "n_epochs": model.config.n_epochs,
        "n_envs": len(sub_envs),
        "iterations": iterations,
        "median": median,
        "iteration_over_rollout": iteration_cpu / median["rollout_cpu"],
        "iteration_over_rollout_wall": (median["rollout_wall"] + median["update_wall"]) / median["rollout_wall"],
        "iteration_target": ITERATION_TARGET,
        "encoder_target": ENCODER_TARGET,
        "per_iteration": rows,
    }
    for name in backbones:
        result[f"uncached_over_cached_{name}"] = (iteration_cpu + median[f"encoder_{name}_cpu"]) / iteration_cpu
        result[f"encoder_images_timed_{name}"] = n_images[name]
    model.env.close()
    return result


def _markdown(result: dict[str, Any], backbones: list[str]) -> str:
    m = result["median"]
    lines = [
        f"| quantity | {ENV_ID}, B={result['groups_per_iteration']} G={result['group_size']} U={result['n_epochs']} | target |",
        "|---|---|---|",
        f"| rollout CPU s (policy sampling + decoder reward, {m['steps']:.0f} steps) | {m['rollout_cpu']:.2f} | |",
        f"| update CPU s (U epochs, stored actions) | {m['update_cpu']:.2f} | |",
        f"| iteration / rollout | **{result['iteration_over_rollout']:.2f}** (wall {result['iteration_over_rollout_wall']:.2f}) | <= {ITERATION_TARGET} |",
    ]
    for name in backbones:
        lines.append(f"| encoder CPU s on B images, {name} | {m[f'encoder_{name}_cpu']:.2f} | |")
        lines.append(f"| (iteration + encoder) / iteration, {name} | **{result[f'uncached_over_cached_{name}']:.1f}** | >= {ENCODER_TARGET:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grpo_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations after one warm-up (median)")
    parser.add_argument("--backbone", nargs="+", default=["small", "vit_b"], choices=["small", "vit_b"],
                        help="image encoders to time against the cached iteration")
    parser.add_argument("--vit-images", type=int, default=1, help="images the ViT-B encoder is timed on (scaled to B)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of grpo.yml's Prostate-v0 entry, as in python -m train")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/grpo_cost.json"))
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.vit_images < 1:
        parser.error(f"--iterations and --vit-images must be >= 1, got {args.iterations} and {args.vit_images}")
    torch.set_num_threads(args.threads)
    result = measure(args.iterations, args.backbone, args.vit_images, args.seed, parse_overrides(args.hyperparams))
    result["provenance"] = {**provenance([]), "command": shlex.join(["python", "-m", "benchmarks.grpo_cost", *sys.argv[1:]])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = _markdown(result, args.backbone)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
