"""Per-sequence attention computes what the continuous-batching manager's masked SDPA over the packed batch does."""

from __future__ import annotations

from pathlib import Path

import torch
from modeldeploy_runtime.generation.attention import PER_SEQUENCE_SDPA, per_sequence_sdpa, use_per_sequence_attention
from modeldeploy_runtime.model.tiny_text_model import build_tiny_text_model
from transformers.generation.continuous_batching.utils import build_attention_mask
from transformers.integrations.sdpa_attention import sdpa_attention_forward

HEADS, KV_HEADS, HEAD_DIM = 4, 2, 16
# (new tokens, cached tokens before them): a prompt with no past, a decoded token, a prompt chunk after a past one.
SEQUENCES = [(5, 0), (1, 6), (3, 6), (1, 0)]


class _GroupedAttention(torch.nn.Module):
    num_key_value_groups = HEADS // KV_HEADS


def _cumulative(lengths: list[int]) -> list[int]:
    bounds = [0]
    for length in lengths:
        bounds.append(bounds[-1] + length)
    return bounds


def test_each_sequence_attends_as_under_the_managers_block_diagonal_mask() -> None:
    torch.manual_seed(0)
    query_bounds = _cumulative([new for new, _ in SEQUENCES])
    key_bounds = _cumulative([new + cached for new, cached in SEQUENCES])
    query = torch.randn(1, HEADS, query_bounds[-1], HEAD_DIM)
    key = torch.randn(1, KV_HEADS, key_bounds[-1], HEAD_DIM)
    value = torch.randn(1, KV_HEADS, key_bounds[-1], HEAD_DIM)
    mask = torch.empty(1, 1, query_bounds[-1], key_bounds[-1])
    mask.fill_(torch.finfo(mask.dtype).min)
    build_attention_mask(mask, query_bounds, key_bounds)
    module = _GroupedAttention()

    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=HEAD_DIM**-0.5, is_causal=False)
    actual, _ = per_sequence_sdpa(
        module,
        query,
        key,
        value,
        None,
        scaling=HEAD_DIM**-0.5,
        cu_seq_lens_q=torch.tensor(query_bounds, dtype=torch.int32),
        cu_seq_lens_k=torch.tensor(key_bounds, dtype=torch.int32),
    )

    assert actual.shape == expected.shape == (1, query_bounds[-1], HEADS, HEAD_DIM)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_a_cpu_model_on_sdpa_switches_and_one_on_eager_keeps_its_attention(tmp_path: Path) -> None:
    model = build_tiny_text_model(tmp_path / "model")
    model.set_attn_implementation("sdpa")
    assert use_per_sequence_attention(model)
    assert model.config._attn_implementation == PER_SEQUENCE_SDPA

    model.set_attn_implementation("eager")
    assert not use_per_sequence_attention(model)
    assert model.config._attn_implementation == "eager"
