"""Prostate-v0 feature encoding: SAM ViT-B at 1024 px, SAM's attention against the row-chunked one.

``python -m benchmarks.sam_encoder [--threads 1 2] [--repeats 2] [--out FILE]``

Encodes one random 1024 px image with ViT-B (random weights, random relative-position
tables, as a checkpoint has) twice per repeat, in one process and alternating: once with
segment-anything's ``Attention`` in every block and once with
:class:`envs.prostate.chunked_attention.RowChunkedAttention` (the encoder the env builds).
Reports the median seconds per image for each and their ratio, per torch thread count,
and the largest absolute difference between the two feature grids. Prints a JSON line;
``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from segment_anything.modeling.image_encoder import Attention

from benchmarks.report import emit_json_line
from envs.prostate.backbone import VIT_B, build_image_encoder
from envs.prostate.chunked_attention import RowChunkedAttention


def _set_attention(encoder: torch.nn.Module, cls: type) -> None:
    """Switch every block between SAM's forward and the chunked one (same parameters)."""
    for block in encoder.blocks:
        block.attn.__class__ = cls


def measure(threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    config = VIT_B  # random weights: the time does not depend on them
    encoder = build_image_encoder(config)
    with torch.no_grad():
        for block in encoder.blocks:
            block.attn.rel_pos_h.normal_(0.0, 0.02)
            block.attn.rel_pos_w.normal_(0.0, 0.02)
    image = torch.randn(1, 3, config.img_size, config.img_size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"sam": [], "chunked": []}
    outputs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for _ in range(repeats):
            for name, cls in (("sam", Attention), ("chunked", RowChunkedAttention)):
                _set_attention(encoder, cls)
                start = time.perf_counter()
                outputs[name] = encoder(image)
                times[name].append(time.perf_counter() - start)
    sam, chunked = statistics.median(times["sam"]), statistics.median(times["chunked"])
    return {"threads": threads, "sam_s": round(sam, 2), "chunked_s": round(chunked, 2), "speedup": round(sam / chunked, 2),
            "max_abs_diff": float((outputs["sam"] - outputs["chunked"]).abs().max())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sam_encoder", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.threads) < 1:
        parser.error("--repeats and --threads must be positive")
    result = {"benchmark": "sam_encoder", "backbone": "vit_b", "img_size": 1024,
              "runs": [measure(t, args.repeats) for t in args.threads]}
    emit_json_line(result, args.out)


if __name__ == "__main__":
    main()
