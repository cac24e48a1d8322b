"""The FastAPI application: protocols, metrics and the model's lifecycle (loaded in the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.responses import Response

from modeldeploy_runtime import __version__
from modeldeploy_runtime.metrics import RuntimeMetrics
from modeldeploy_runtime.protocol.errors import install_error_handlers
from modeldeploy_runtime.protocol.fast_path import InferenceFastPath
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

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Loading runs in the background: the server answers liveness and readiness probes meanwhile.
        loading = asyncio.create_task(service.load(), name="model-load")
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            await service.close()

    app = FastAPI(
        title="modeldeploy runtime",
        version=__version__,
        description="Open Inference Protocol (v2) and KServe v1 server for one PyTorch model; OpenAI-compatible "
        "text generation for a Hugging Face model.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
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
    install_openapi(app)
    return app
