"""The protocol-neutral data plane: model state, admission and inference. Protocol modules call it."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import torch

from modeldeploy_runtime.batching import DynamicBatcher, Slot
from modeldeploy_runtime.checksum import sha256_of
from modeldeploy_runtime.errors import (
    ChecksumMismatch,
    InferenceFailed,
    InvalidInput,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    client_safe,
)
from modeldeploy_runtime.generation import GenerationEngine
from modeldeploy_runtime.intake import ByteBudget, ReceivedBody, receive_body
from modeldeploy_runtime.metrics import RuntimeMetrics
from modeldeploy_runtime.model.devices import ModelCopies, detect_devices, worker_count
from modeldeploy_runtime.model.huggingface import load_text_generation_model
from modeldeploy_runtime.model.loading import COMPUTE_DTYPES, load_model
from modeldeploy_runtime.model.servable import ServableModel
from modeldeploy_runtime.settings import ServeSettings
from modeldeploy_runtime.torch_threads import plan_threads

_log = logging.getLogger(__name__)


class ModelState(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPING = "stopping"  # readiness fails while requests are still served
    DRAINING = "draining"


class InferenceService:
    def __init__(self, settings: ServeSettings, metrics: RuntimeMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = ModelState.LOADING
        self.reason = "model is loading"
        self.load_failure: ModelLoadError | None = None
        self.on_load_failure: Callable[[], None] | None = None
        self._model: ServableModel | None = None
        self.inflight_bytes = ByteBudget(settings.inflight_bytes_limit)
        self._batcher: DynamicBatcher | None = None
        self._text_engine: GenerationEngine | None = None
        self.threads = plan_threads(settings, os.cpu_count() or 1)

    @property
    def name(self) -> str:
        return self.settings.model_name

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    async def load(self) -> None:
        """Loads and warms the model off the event loop, so probes keep answering meanwhile."""
        started = time.perf_counter()
        try:
            if self.settings.generates_text:
                engine = await asyncio.to_thread(self._load_text_generation)
                self._start_text_generation(engine)
                devices = str(engine.model.device)
            else:
                models = await asyncio.to_thread(self._load_and_warm_up)
                self._start_batching(models)
                devices = ", ".join(str(copy.device) for copy in models)
        except ModelLoadError as error:
            self._fail(error)
            return
        except Exception as error:
            _log.exception("unexpected error while loading the model")
            self._fail(ModelLoadError(f"{error.__class__.__name__}: {error}"))
            return
        # torch, FastAPI and the model leave ~350k long-lived objects whose every full collection would stall
        # the event loop for ~300 ms; frozen, they are never scanned again and collections stay short.
        gc.collect()
        gc.freeze()
        elapsed = time.perf_counter() - started
        self.metrics.observe_load(elapsed)
        if self.state is ModelState.LOADING:
            self.state, self.reason = ModelState.READY, "model is ready"
            self.metrics.set_ready(True)
        _log.info("model %s ready on %s after %.2fs", self.name, devices, elapsed)

    def _start_batching(self, models: list[ServableModel]) -> None:
        copies, model = ModelCopies(models), models[0]
        self._model = model
        # Cheap batches run on the event loop's thread (see the batching engine): it needs the setting too.
        self._configure_torch_threads()

        def start_inference_thread() -> None:
            self._configure_torch_threads()
            copies.bind_thread()

        self._batcher = DynamicBatcher(
            copies.run,
            max_batch_size=self.settings.max_batch_size,
            max_delay_s=self.settings.max_batch_delay_ms / 1000.0,
            max_queue_size=self.settings.max_queue_size,
            request_timeout_s=self.settings.request_timeout_s,
            combine_requests=model.metadata.batchable and self.settings.max_batch_size > 1,
            observer=self.metrics,
            workers=worker_count(self.settings.model_workers, len(copies)),
            thread_initializer=start_inference_thread,
        )
        self._batcher.start()
        batcher = self._batcher
        self.metrics.track_queue(lambda: batcher.queue_depth, lambda: batcher.in_flight)
        if model.device.type == "cuda":
            self.metrics.track_gpu_memory([copy.device for copy in models])

    def _start_text_generation(self, engine: GenerationEngine) -> None:
        self._text_engine = engine
        self.metrics.track_generation(lambda: engine.running, lambda: engine.waiting, engine.kv_cache_usage)
        if engine.model.device.type == "cuda":
            self.metrics.track_gpu_memory([engine.model.device])

    def _configure_torch_threads(self) -> None:
        """Per thread: OpenMP keeps the intra-op thread count per calling thread."""
        if self.threads.intra_op is not None:
            torch.set_num_threads(self.threads.intra_op)

    def _configure_loading_thread(self) -> None:
        self._configure_torch_threads()
        _log.info(
            "torch threads: %d intra-op per worker, %d inter-op (%s)",
            torch.get_num_threads(),
            torch.get_num_interop_threads(),
            self.threads.source,
        )

    def _verify_checksum(self) -> None:
        expected = self.settings.model_sha256
        if expected is None:
            return
        if self.settings.model_path.is_dir():
            raise ModelLoadError(
                f"{self.settings.model_path} is a directory: a sha256 covers one file (an archive, checked by fetch)"
            )
        actual = sha256_of(self.settings.model_path)
        if actual != expected:
            raise ChecksumMismatch(f"{self.settings.model_path}: expected sha256 {expected}, got {actual}")

    def _load_text_generation(self) -> GenerationEngine:
        """One copy on the first device the container sees: the engine runs one model (no tensor parallelism)."""
        self._configure_loading_thread()
        self._verify_checksum()
        model = load_text_generation_model(
            self.name,
            self.settings.model_path,
            detect_devices(self.settings.device)[0],
            COMPUTE_DTYPES[self.settings.dtype],
            self.settings.max_model_len,
        )
        engine = GenerationEngine(
            model,
            self.metrics,
            max_num_seqs=self.settings.max_num_seqs,
            max_queue_size=self.settings.max_queue_size,
            max_num_batched_tokens=self.settings.max_num_batched_tokens,
        )
        try:
            engine.start()
        except InferenceFailed as error:
            raise ModelLoadError(error.message) from error
        return engine

    def _load_and_warm_up(self) -> list[ServableModel]:
        """One warmed-up copy of the model on each device the container sees."""
        self._configure_loading_thread()
        self._verify_checksum()
        models = []
        for device in detect_devices(self.settings.device):
            model = load_model(
                self.name, self.settings.model_path, self.settings.model_format, device, self.settings.dtype
            )
            batch_sizes = sorted({1, self.settings.max_batch_size})
            try:
                model.warm_up(batch_sizes)
            except Exception as error:
                raise ModelLoadError(f"warm-up with the declared input shapes failed: {error}") from error
            models.append(model)
        return models

    def _fail(self, failure: ModelLoadError) -> None:
        self.state, self.load_failure = ModelState.FAILED, failure
        # Clients see the reason on readiness and in 503s: without the server's paths (the log has them).
        self.reason = f"model failed to load: {client_safe(str(failure))}"
        _log.error("%s: %s", failure.termination_reason, failure)
        if self.on_load_failure is not None:
            self.on_load_failure()

    def begin_stopping(self) -> bool:
        """Fails readiness but keeps serving; False when there was nothing to serve (not ready)."""
        if self.state is not ModelState.READY:
            return False
        self.state, self.reason = ModelState.STOPPING, "server is shutting down"
        self.metrics.set_ready(False)
        return True

    def begin_drain(self) -> None:
        self.state, self.reason = ModelState.DRAINING, "server is draining before shutdown"
        self.metrics.set_ready(False)

    async def wait_idle(self, timeout_s: float) -> bool:
        engine = self._batcher or self._text_engine
        if engine is None:
            return True
        try:
            await asyncio.wait_for(engine.wait_idle(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()
        if self._text_engine is not None:
            await self._text_engine.stop()

    def _check_serving(self, name: str) -> None:
        if name != self.name:
            raise ModelNotFound(name)
        if self.state not in (ModelState.READY, ModelState.STOPPING):
            raise ModelNotReady(f"model '{name}' is not ready: {self.reason}")

    def model(self, name: str) -> ServableModel:
        """The model to describe or run; raises ModelNotFound or ModelNotReady."""
        self._check_serving(name)
        if self.settings.generates_text:
            raise InvalidInput(
                f"model '{name}' generates text: use /v1/completions, /v1/chat/completions or "
                f"/v2/models/{name}/generate"
            )
        if self._model is None:
            raise ModelNotReady(f"model '{name}' is not ready: {self.reason}")
        return self._model

    @property
    def text_model_created(self) -> int | None:
        """When the text generation model was loaded (Unix time); None before."""
        return None if self._text_engine is None else self._text_engine.model.created

    def text_engine(self, name: str) -> GenerationEngine:
        """The engine that generates text for `name`; raises ModelNotFound, ModelNotReady or InvalidInput."""
        self._check_serving(name)
        if not self.settings.generates_text:
            raise InvalidInput(f"model '{name}' is a tensor model: it does not generate text; use /v2 infer")
        if self._text_engine is None:
            raise ModelNotReady(f"model '{name}' is not ready: {self.reason}")
        return self._text_engine

    def metadata_model(self, name: str) -> ServableModel | None:
        """The model for metadata even while draining; None while loading or after a failure."""
        if name != self.name:
            raise ModelNotFound(name)
        return self._model

    @property
    def live(self) -> bool:
        """False once a model call has run longer than the request timeout: a wedged device never returns."""
        return self._batcher is None or self._batcher.longest_running_s() <= self.settings.request_timeout_s

    @contextlib.asynccontextmanager
    async def admit(
        self, name: str, body_chunks: AsyncIterator[bytes], declared_length: int | None
    ) -> AsyncIterator[Admitted]:
        """Reads the body under the intake bounds, then takes a place in the queue; both held until the answer.

        A full queue is refused before the body is read (cheap overload answers), and checked again after it.
        """
        model = self.model(name)
        assert self._batcher is not None  # set together with the model
        self._batcher.check_room()
        settings = self.settings
        body = await receive_body(
            body_chunks, declared_length, settings.max_payload_bytes, self.inflight_bytes, settings.body_read_timeout_s
        )
        try:
            async with self._batcher.admit() as slot:
                yield Admitted(model, body, slot)
        finally:
            body.release()


@dataclass(frozen=True)
class Admitted:
    """An admitted request: the model it runs on, its body (to take once, for decoding) and its queue place."""

    model: ServableModel
    body: ReceivedBody
    slot: Slot
