"""Attention for continuous batching on CPU: each sequence of the packed batch attends to its own keys only.

Without flash attention (a CUDA kernel), transformers' ContinuousBatchingManager packs every sequence of a step
into one row and runs SDPA over all of them at once, behind a block-diagonal mask it builds each step. The work
grows with the whole batch's queries times the whole batch's keys: at 32 running sequences, 31 of every 32
products computed are masked away again. This registers an attention function (transformers' own extension
point, `AttentionInterface`) that runs SDPA once per sequence over its slice of the batch, sized by the
cumulative lengths the manager passes anyway. It computes what the masked call computes, the way
`model.generate` computes it for one sequence: a prompt with no cached past is causal, a decoded token sees
every key, a prompt chunk after cached keys gets the causal mask shifted by the past.

Measured on the tiny test model at 32 concurrent streams (docs/benchmarks.md): about 40% less CPU per
generated token, greedy text unchanged. The manager builds no mask for an implementation name it does not
know, which saves filling one of up to batch-tokens times cache-tokens each step as well.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, PreTrainedModel

PER_SEQUENCE_SDPA = "modeldeploy_per_sequence_sdpa"


def per_sequence_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,  # [1, heads, batch queries, head dim]
    key: torch.Tensor,  # [1, kv heads, batch keys (cached and new), head dim]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # none: the manager builds no mask for this implementation
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    query_bounds = kwargs["cu_seq_lens_q"].tolist()
    key_bounds = kwargs["cu_seq_lens_k"].tolist()
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    output = query.new_empty(query.shape[0], query.shape[2], query.shape[1], query.shape[3])
    for query_start, query_end, key_start, key_end in zip(
        query_bounds, query_bounds[1:], key_bounds, key_bounds[1:], strict=False
    ):
        queries, keys = query_end - query_start, key_end - key_start
        if queries == 0:
            continue
        mask = None
        if 1 < queries < keys:  # a prompt chunk after cached tokens: causal, shifted by the cached length
            mask = torch.ones(queries, keys, dtype=torch.bool, device=query.device).tril(keys - queries)
        attended = torch.nn.functional.scaled_dot_product_attention(
            query[:, :, query_start:query_end],
            key[:, :, key_start:key_end],
            value[:, :, key_start:key_end],
            attn_mask=mask,
            scale=scaling,
            is_causal=1 < queries == keys,
            enable_gqa=grouped,
        )
        output[:, query_start:query_end] = attended.transpose(1, 2)
    return output, None


AttentionInterface.register(PER_SEQUENCE_SDPA, per_sequence_sdpa)


def use_per_sequence_attention(model: PreTrainedModel) -> bool:
    """Switches a model the manager left on SDPA on CPU to per-sequence attention; says whether it did.

    Only where it was measured and where it computes the same thing: CPU (on a GPU the manager prefers flash
    attention), SDPA (eager covers models SDPA cannot serve, e.g. attention sinks), and full attention in every
    layer (a sliding window would need a mask per query).
    """
    text_config = model.config.get_text_config()
    layer_types = getattr(text_config, "layer_types", None) or ["full_attention"]
    eligible = (
        model.device.type == "cpu"
        and model.config._attn_implementation == "sdpa"
        and set(layer_types) == {"full_attention"}
        and getattr(text_config, "sliding_window", None) is None
    )
    if eligible:
        model.set_attn_implementation(PER_SEQUENCE_SDPA)
    return eligible
