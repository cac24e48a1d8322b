"""Prometheus metrics for one served model; scraped from `/metrics` and fed to autoscaling."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Requests for names this server does not serve share one label value, so fuzzed paths cannot blow up
# the number of time series.
UNKNOWN_MODEL_LABEL = "_unknown"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# vLLM's buckets for time to first token and inter-token latency, so dashboards made for it read ours.
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0)
_ITL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)


class RuntimeMetrics:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self._requests = Counter(
            "modeldeploy_requests", "Inference requests by model, protocol and HTTP status code.",
            ["model", "protocol", "code"], registry=registry,
        )  # fmt: skip
        self._request_seconds = Histogram(
            "modeldeploy_request_duration_seconds", "Total time of an inference request, read to reply.",
            ["model", "protocol"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self._queue_seconds = Histogram(
            "modeldeploy_queue_duration_seconds", "Time a request waited in the batching queue.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        ).labels(model_name)  # fmt: skip
        self._inference_seconds = Histogram(
            "modeldeploy_inference_duration_seconds", "Time of one model call on a batch.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        ).labels(model_name)  # fmt: skip
        self._batch_size = Histogram(
            "modeldeploy_batch_size", "Items (rows along the batch dimension) per model call.",
            ["model"], buckets=_BATCH_BUCKETS, registry=registry,
        ).labels(model_name)  # fmt: skip
        self._queue_depth = Gauge(
            "modeldeploy_queue_depth", "Requests waiting in the batching queue.", ["model"], registry=registry
        ).labels(model_name)
        self._in_flight = Gauge(
            "modeldeploy_inflight_requests", "Admitted requests not yet answered.", ["model"], registry=registry
        ).labels(model_name)
        self._load_seconds = Gauge(
            "modeldeploy_model_load_duration_seconds",
            "Time to load and warm up the model.",
            ["model"],
            registry=registry,
        ).labels(model_name)
        self._ready = Gauge(
            "modeldeploy_model_ready", "1 when the model serves requests, else 0.", ["model"], registry=registry
        ).labels(model_name)

        # Text generation, with vLLM's semantics (vllm:time_to_first_token_seconds, ...).
        self._first_token_seconds = Histogram(
            "modeldeploy_time_to_first_token_seconds", "Time from admission to the first generated token.",
            ["model"], buckets=_TTFT_BUCKETS, registry=registry,
        ).labels(model_name)  # fmt: skip
        self._inter_token_seconds = Histogram(
            "modeldeploy_inter_token_latency_seconds", "Time between two generated tokens of one sequence.",
            ["model"], buckets=_ITL_BUCKETS, registry=registry,
        ).labels(model_name)  # fmt: skip
        self._prompt_tokens = Counter(
            "modeldeploy_prompt_tokens", "Prompt tokens computed.", ["model"], registry=registry
        ).labels(model_name)
        self._generation_tokens = Counter(
            "modeldeploy_generation_tokens", "Tokens generated.", ["model"], registry=registry
        ).labels(model_name)
        self._running_sequences = Gauge(
            "modeldeploy_num_requests_running", "Sequences in the running batch (they have a first token).",
            ["model"], registry=registry,
        ).labels(model_name)  # fmt: skip
        self._waiting_sequences = Gauge(
            "modeldeploy_num_requests_waiting", "Admitted sequences without a token yet (queued or in prefill).",
            ["model"], registry=registry,
        ).labels(model_name)  # fmt: skip
        self._kv_cache_usage = Gauge(
            "modeldeploy_kv_cache_usage_perc", "Fraction of the paged KV cache in use, 0 to 1.",
            ["model"], registry=registry,
        ).labels(model_name)  # fmt: skip

    def model_label(self, requested_name: str) -> str:
        return self.model_name if requested_name == self.model_name else UNKNOWN_MODEL_LABEL

    def observe_request(self, model: str, protocol: str, code: int, seconds: float) -> None:
        self._requests.labels(model, protocol, str(code)).inc()
        self._request_seconds.labels(model, protocol).observe(seconds)

    def observe_batch(self, size: int, inference_s: float) -> None:
        self._batch_size.observe(size)
        self._inference_seconds.observe(inference_s)

    def observe_queue_wait(self, wait_s: float) -> None:
        self._queue_seconds.observe(wait_s)

    def observe_load(self, seconds: float) -> None:
        self._load_seconds.set(seconds)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def track_queue(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Gauges read at scrape time, so the hot path pays nothing for them."""
        self._queue_depth.set_function(queue_depth)
        self._in_flight.set_function(in_flight)

    def observe_first_token(self, seconds: float, prompt_tokens: int) -> None:
        self._first_token_seconds.observe(seconds)
        self._prompt_tokens.inc(prompt_tokens)
        self._generation_tokens.inc()

    def observe_next_tokens(self, seconds_each: float, count: int) -> None:
        for _ in range(count):
            self._inter_token_seconds.observe(seconds_each)
        self._generation_tokens.inc(count)

    def track_generation(
        self, running: Callable[[], float], waiting: Callable[[], float], kv_cache_usage: Callable[[], float]
    ) -> None:
        """Gauges read at scrape time, like the queue's."""
        self._running_sequences.set_function(running)
        self._waiting_sequences.set_function(waiting)
        self._kv_cache_usage.set_function(kv_cache_usage)

    def track_gpu_memory(self, devices: Sequence[torch.device]) -> None:
        self.registry.register(_GpuMemoryCollector(devices))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _GpuMemoryCollector(Collector):
    def __init__(self, devices: Sequence[torch.device]) -> None:
        self._devices = list(devices)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "modeldeploy_gpu_memory_bytes",
            "GPU memory of each of the model's devices: allocated and reserved by torch, free and total.",
            labels=["device", "kind"],
        )
        for device in self._devices:
            label = str(device)
            free, total = torch.cuda.mem_get_info(device)
            family.add_metric([label, "allocated"], torch.cuda.memory_allocated(device))
            family.add_metric([label, "reserved"], torch.cuda.memory_reserved(device))
            family.add_metric([label, "free"], free)
            family.add_metric([label, "total"], total)
        yield family
