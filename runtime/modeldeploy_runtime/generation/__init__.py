"""Text generation: continuous batching over a paged KV cache, per-request sampling, streamed text."""

from modeldeploy_runtime.generation.engine import GeneratedSequence, GenerationEngine, SamplingParams, TextDelta

__all__ = ["GeneratedSequence", "GenerationEngine", "SamplingParams", "TextDelta"]
