"""Continuous batching for text generation, on `transformers`' own ContinuousBatchingManager.

The manager (transformers.generation.continuous_batching) runs one background thread that, between every two
decode steps, admits waiting requests into the running batch (prefilling their prompts in chunks beside the
others' decode tokens) and lets finished or cancelled ones go, over a paged KV cache. This module adds what a
server needs around it: admission with a bound (429 beyond it), per-request sampling, incremental text with
stop strings, cancellation when a client goes away, and the metrics vLLM's users know.

Per-request sampling on one shared sampler: the manager samples for the whole batch with one configuration,
whose temperature, top-k and top-p warpers take a value per request. They exist only when the configuration
sets them, so it sets all three; a greedy request asks for top-k 1, which leaves the arg-max token alone to be
drawn, exactly what `model.generate(do_sample=False)` picks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from transformers import ContinuousBatchingConfig, GenerationConfig
from transformers.generation.continuous_batching import ContinuousBatchingManager, RequestStatus
from transformers.generation.continuous_batching.requests import GenerationOutput

from modeldeploy_runtime.errors import InferenceFailed, InvalidInput, ModelNotReady, Overloaded
from modeldeploy_runtime.generation.attention import use_per_sequence_attention
from modeldeploy_runtime.generation.text import IncrementalText
from modeldeploy_runtime.model.huggingface import TextGenerationModel

_log = logging.getLogger(__name__)

# Tokens per page of the paged KV cache: small pages waste little on short sequences.
_PAGE_SIZE = 64
_WARM_UP_TIMEOUT_S = 300.0
# Any value but 1.0 makes the manager build its per-request temperature and top-p warpers.
_WARPER_PLACEHOLDER = 0.5


class GenerationObserver(Protocol):
    def observe_first_token(self, seconds: float, prompt_tokens: int) -> None: ...

    def observe_next_tokens(self, seconds_each: float, count: int) -> None: ...


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    # 0: greedy decoding.
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class TextDelta:
    text: str
    # Tokens generated so far, the eos token included (OpenAI's usage.completion_tokens).
    completion_tokens: int
    finish_reason: str | None = None  # "stop" (eos or a stop string) or "length" on the last delta


class GeneratedSequence:
    """One sequence being generated: iterate for its deltas; closing the iteration cancels it."""

    def __init__(
        self, engine: GenerationEngine, request_id: str, prompt_ids: list[int], params: SamplingParams
    ) -> None:
        self._engine = engine
        self.request_id = request_id
        self.prompt_tokens = len(prompt_ids)
        self._params = params
        self._text = IncrementalText(engine.model.tokenizer.backend_tokenizer, prompt_ids, params.stop)
        self._deltas: asyncio.Queue[TextDelta | InferenceFailed] = asyncio.Queue()
        self._tokens_seen = 0
        self._last_token: int | None = None
        self._admitted_at = time.perf_counter()
        self._last_token_at: float | None = None
        self.finished = False

    def on_output(self, output: GenerationOutput) -> None:
        """The manager's result for this request (every token of a stream), run on the event loop."""
        if self.finished:
            return
        if output.status == RequestStatus.FAILED:
            self._finish()
            self._deltas.put_nowait(InferenceFailed(f"generation failed: {output.error}"))
            return
        new_tokens = output.generated_tokens[self._tokens_seen :]
        self._observe_timing(len(new_tokens))
        for token in new_tokens:
            self._tokens_seen += 1
            self._last_token = token
            self._text.add(token)
            if self._text.stopped:
                break
        done = output.is_finished() or self._text.stopped
        if not done:
            self._deltas.put_nowait(TextDelta(self._text.take(final=False), self._tokens_seen))
            return
        if self._text.stopped:
            self._engine.cancel(self.request_id)
        self._finish()
        self._deltas.put_nowait(TextDelta(self._text.take(final=True), self._tokens_seen, self._finish_reason()))

    @property
    def started(self) -> bool:
        return self._tokens_seen > 0

    def _finish_reason(self) -> str:
        ended_by_eos = not self._params.ignore_eos and self._last_token in self._engine.model.eos_token_ids
        return "stop" if self._text.stopped or ended_by_eos else "length"

    def _observe_timing(self, count: int) -> None:
        if count == 0:
            return
        now = time.perf_counter()
        previous = self._last_token_at
        if previous is None:
            self._engine.observer.observe_first_token(now - self._admitted_at, self.prompt_tokens)
            count, previous = count - 1, now
        if count:
            self._engine.observer.observe_next_tokens((now - previous) / count, count)
        self._last_token_at = now

    def _finish(self) -> None:
        self.finished = True
        self._engine.release(self)

    async def __aiter__(self) -> AsyncIterator[TextDelta]:
        try:
            while True:
                delta = await self._deltas.get()
                # Deltas that piled up while the reader was busy (its connection, a loaded event loop) go out as
                # one: under load, fewer and larger chunks, at no cost in latency (vLLM's stream interval, adaptive).
                while not isinstance(delta, InferenceFailed) and delta.finish_reason is None and self._deltas.qsize():
                    following = self._deltas.get_nowait()
                    if isinstance(following, InferenceFailed):
                        delta = following
                    else:
                        delta = TextDelta(
                            delta.text + following.text, following.completion_tokens, following.finish_reason
                        )
                if isinstance(delta, InferenceFailed):
                    raise delta
                yield delta
                if delta.finish_reason is not None:
                    return
        finally:
            # The client went away (or a sibling choice failed): stop generating, free the slot now.
            if not self.finished:
                self._engine.cancel(self.request_id)
                self._finish()


class GenerationEngine:
    def __init__(
        self,
        model: TextGenerationModel,
        observer: GenerationObserver,
        max_num_seqs: int,
        max_queue_size: int,
        max_num_batched_tokens: int,
    ) -> None:
        self.model = model
        self.observer = observer
        self._max_num_seqs = max_num_seqs
        self._max_in_flight = max_num_seqs + max_queue_size
        self._in_flight: dict[str, GeneratedSequence] = {}
        self._request_ids = itertools.count()
        self._idle = asyncio.Event()
        self._idle.set()
        blocks_per_sequence = math.ceil(model.context_length / _PAGE_SIZE)
        self._manager: ContinuousBatchingManager = model.model.init_continuous_batching(  # type: ignore[operator]
            generation_config=_shared_sampler_config(model),
            continuous_batching_config=ContinuousBatchingConfig(
                page_size=_PAGE_SIZE,
                # Room for every running sequence at full context: admitted sequences never run out of cache.
                num_blocks=max_num_seqs * blocks_per_sequence,
                max_blocks_per_request=blocks_per_sequence,
                max_batch_tokens=max(max_num_batched_tokens, max_num_seqs),
                max_requests_per_batch=max_num_seqs,
                per_request_processors=True,
                use_cuda_graph=False,
            ),
        )
        # After the manager's own choice of attention (it refuses names it does not know), before its first batch.
        use_per_sequence_attention(model.model)

    @property
    def running(self) -> int:
        """Sequences that have their first token: they are in the running batch."""
        return sum(1 for sequence in self._in_flight.values() if sequence.started)

    @property
    def waiting(self) -> int:
        """Admitted sequences without a token yet: queued, or their prompt is being computed."""
        return len(self._in_flight) - self.running

    def kv_cache_usage(self) -> float:
        """Fraction of the KV cache in use, 0 to 1; 0 before the first batch built the cache."""
        processor = self._manager.batch_processor
        if processor is None:
            return 0.0
        return 1.0 - float(processor.cache.compute_free_capacity(relative=True))

    def start(self) -> None:
        """Starts the generation thread and runs one short greedy generation (blocking: warms the model up)."""
        self._manager.start()
        prompt = self.model.encode_text("warm up") or [0]
        request_id = self._manager.add_request(prompt, request_id="warm-up", max_new_tokens=2, top_k=1)
        deadline = time.monotonic() + _WARM_UP_TIMEOUT_S
        while time.monotonic() < deadline:
            output = self._manager.get_result(request_id, timeout=1.0)
            if output is not None and output.is_finished():
                if output.status == RequestStatus.FAILED:
                    raise InferenceFailed(f"warm-up generation failed: {output.error}")
                return
        raise InferenceFailed(f"warm-up generation did not finish within {_WARM_UP_TIMEOUT_S:.0f}s")

    async def stop(self) -> None:
        await asyncio.to_thread(self._manager.stop, block=True, timeout=10.0)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def check_length(self, prompt_tokens: int, prompt_param: str, max_tokens: int | None, max_tokens_param: str) -> int:
        """The completion budget: `max_tokens`, or what the context leaves; 400 when it does not fit."""
        room = self.model.context_length - prompt_tokens
        if room <= 0:
            raise InvalidInput(
                f"the prompt has {prompt_tokens} tokens, which leaves no room in this model's context of "
                f"{self.model.context_length} tokens; shorten it",
                param=prompt_param,
            )
        if max_tokens is None:
            return room
        if max_tokens > room:
            raise InvalidInput(
                f"this model's maximum context length is {self.model.context_length} tokens; the prompt has "
                f"{prompt_tokens} and {max_tokens_param} asks for {max_tokens}: lower {max_tokens_param} to at "
                f"most {room}",
                param=max_tokens_param,
            )
        return max_tokens

    def generate(self, prompt_ids: list[int], params: SamplingParams, n: int) -> list[GeneratedSequence]:
        """Admits `n` sequences of one prompt, or none: 429 beyond the bound, 503 when the engine stopped."""
        if len(self._in_flight) + n > self._max_in_flight:
            raise Overloaded(
                f"{len(self._in_flight)} sequences are in flight ({self._max_num_seqs} running at most, the rest "
                "waiting); retry after a short delay"
            )
        sequences: list[GeneratedSequence] = []
        for _ in range(n):
            sequence = GeneratedSequence(self, f"seq-{next(self._request_ids)}", prompt_ids, params)
            self._manager.register_result_handler(sequence.request_id, sequence.on_output)
            added = self._manager.add_request(
                prompt_ids,
                request_id=sequence.request_id,
                max_new_tokens=params.max_tokens,
                streaming=True,
                eos_token_id=-1 if params.ignore_eos else list(self.model.eos_token_ids) or -1,
                **_sampling_arguments(params, self.model.vocabulary_size),
            )
            if added is None:
                for started in sequences:
                    self.cancel(started.request_id)
                raise ModelNotReady("the generation engine is not accepting requests (stopping or failed)")
            self._in_flight[sequence.request_id] = sequence
            self._idle.clear()
            sequences.append(sequence)
        return sequences

    def cancel(self, request_id: str) -> None:
        self._manager.cancel_request(request_id)
        # The manager forgets a handler only after a finished result; a cancelled request never has one.
        router = self._manager.output_router
        with router._lock:
            router.result_handlers.pop(request_id, None)

    def release(self, sequence: GeneratedSequence) -> None:
        self._in_flight.pop(sequence.request_id, None)
        if not self._in_flight:
            self._idle.set()


def _shared_sampler_config(model: TextGenerationModel) -> GenerationConfig:
    config = GenerationConfig.from_dict(model.generation_config.to_dict())
    config.do_sample = True
    config.temperature = _WARPER_PLACEHOLDER
    config.top_p = _WARPER_PLACEHOLDER
    config.top_k = model.vocabulary_size
    return config


def _sampling_arguments(params: SamplingParams, vocabulary_size: int) -> dict[str, Any]:
    if params.greedy:
        return {"temperature": 1.0, "top_p": 1.0, "top_k": 1}
    return {"temperature": params.temperature, "top_p": params.top_p, "top_k": vocabulary_size}
