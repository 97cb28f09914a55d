"""The row-chunked SAM attention is SAM's attention: same outputs, parameters and keys."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from envs.prostate import chunked_attention
from envs.prostate.backbone import BackboneConfig, BackboneName, build_image_encoder
from envs.prostate.chunked_attention import RowChunkedAttention, use_row_chunked_attention


def _sam_attention(dim: int, heads: int, size: tuple[int, int], use_rel_pos: bool) -> Attention:
    torch.manual_seed(0)
    attention = Attention(dim, num_heads=heads, qkv_bias=True, use_rel_pos=use_rel_pos, input_size=size).eval()
    if use_rel_pos:  # SAM zero-initialises them; a checkpoint's are not zero
        with torch.no_grad():
            attention.rel_pos_h.normal_(0.0, 0.5)
            attention.rel_pos_w.normal_(0.0, 0.5)
    return attention


@pytest.mark.parametrize("use_rel_pos", [True, False])
@pytest.mark.parametrize(("batch", "size", "chunk_bytes"), [
    (1, (12, 12), 4 * 2 * 12 * 144 * 5),  # 5 query rows per block: blocks of 5, 5, 2
    (3, (7, 7), 1),  # windowed-attention shape (windows in the batch), one row per block
    (2, (9, 9), 2**30),  # everything in one block
])
def test_row_chunked_attention_matches_sam(batch: int, size: tuple[int, int], chunk_bytes: int, use_rel_pos: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunked_attention, "CHUNK_BYTES", chunk_bytes)
    sam = _sam_attention(32, 2, size, use_rel_pos)
    chunked = torch.nn.Module()
    chunked.blocks = torch.nn.ModuleList([torch.nn.Module()])
    chunked.blocks[0].attn = sam
    x = torch.randn(batch, *size, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = sam(x)
        use_row_chunked_attention(chunked)  # type: ignore[arg-type]
        swapped = chunked.blocks[0].attn
        assert isinstance(swapped, RowChunkedAttention)
        assert swapped.qkv.weight.data_ptr() == sam.qkv.weight.data_ptr()  # the same tensors, not copies
        got = swapped(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_encoder_keeps_sam_state_dict_and_draws_nothing_from_the_global_rng() -> None:
    config = BackboneConfig(name=BackboneName.VIT_B, img_size=64, embed_dim=32, depth=2, num_heads=2, window_size=2,
                            global_attn_indexes=(1,), use_rel_pos=True)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    encoder = build_image_encoder(config)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(isinstance(block.attn, RowChunkedAttention) for block in encoder.blocks)
    keys = set(encoder.state_dict())
    assert "blocks.1.attn.rel_pos_h" in keys and "blocks.0.attn.qkv.weight" in keys
    assert not any(t.is_meta for t in encoder.state_dict().values())
