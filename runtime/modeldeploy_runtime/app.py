"""The FastAPI application: protocols, metrics and the model's lifecycle (loaded in the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.responses import Response

from modeldeploy_runtime import __version__
from modeldeploy_runtime.access.audit import AuditLog
from modeldeploy_runtime.access.keys import ApiKeys
from modeldeploy_runtime.access.limits import KeyLimits, Rate
from modeldeploy_runtime.access.middleware import AccessControl
from modeldeploy_runtime.metrics import RuntimeMetrics
from modeldeploy_runtime.protocol.errors import install_error_handlers
from modeldeploy_runtime.protocol.fast_path import InferenceFastPath, answers_on_fast_path
from modeldeploy_runtime.protocol.openai import openai_router
from modeldeploy_runtime.protocol.openapi import install_openapi
from modeldeploy_runtime.protocol.v1 import v1_router
from modeldeploy_runtime.protocol.v2 import v2_router
from modeldeploy_runtime.protocol.v2_generate import v2_generate_router
from modeldeploy_runtime.service import InferenceService
from modeldeploy_runtime.settings import ServeSettings


def create_app(settings: ServeSettings) -> FastAPI:
    metrics = RuntimeMetrics(settings.model_name)
    service = InferenceService(settings, metrics)
    keys = ApiKeys(settings.api_keys_dir) if settings.api_keys_dir is not None else None
    audit = AuditLog() if settings.audit_enabled else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Loading runs in the background: the server answers liveness and readiness probes meanwhile.
        background = [asyncio.create_task(service.load(), name="model-load")]
        if keys is not None:
            background.append(asyncio.create_task(keys.keep_fresh(settings.api_keys_reload_s), name="api-keys"))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await service.close()
            if audit is not None:
                audit.close()

    app = FastAPI(
        title="modeldeploy runtime",
        version=__version__,
        description="Open Inference Protocol (v2) and KServe v1 server for one PyTorch model; OpenAI-compatible "
        "text generation for a Hugging Face model.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app, settings.generates_text)
    app.include_router(v2_router(service))
    if settings.generates_text:
        app.include_router(v2_generate_router(service))
        app.include_router(openai_router(service))
    else:
        app.include_router(v1_router(service))

    @app.get("/metrics", tags=["Observability"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus text format."""
        content, content_type = metrics.render()
        return Response(content, media_type=content_type)

    app.add_middleware(InferenceFastPath, service=service)
    # Added last, so outermost: every route, the fast path included, is behind it.
    app.add_middleware(
        AccessControl,
        keys=keys,
        limits=_key_limits(settings),
        audit=audit,
        payloads=settings.audit_payloads,
        text_model=settings.generates_text,
        stamps_its_answer=answers_on_fast_path,
    )
    install_openapi(app)
    return app


def _key_limits(settings: ServeSettings) -> KeyLimits | None:
    requests = tokens = None
    if settings.key_requests_per_second is not None:
        rate = settings.key_requests_per_second
        requests = Rate("requestsPerSecond", rate, settings.key_requests_burst or max(1.0, rate))
    if settings.key_tokens_per_minute is not None:
        rate = settings.key_tokens_per_minute
        tokens = Rate("tokensPerMinute", rate / 60.0, settings.key_tokens_burst or rate)
    return KeyLimits(requests, tokens) if requests or tokens else None
