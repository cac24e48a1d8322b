"""Open Inference Protocol (KServe v2) REST endpoints."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from starlette.responses import Response

from modeldeploy_runtime import __version__
from modeldeploy_runtime.errors import ModelNotReady
from modeldeploy_runtime.intake import off_loop_when_large
from modeldeploy_runtime.model.huggingface import PLATFORM as TEXT_GENERATION_PLATFORM
from modeldeploy_runtime.protocol.http import (
    JSON_MEDIA_TYPE,
    body_chunks,
    declared_length,
    json_response,
    wait_for_disconnect,
)
from modeldeploy_runtime.protocol.openapi import ERROR_RESPONSES, request_body
from modeldeploy_runtime.protocol.schemas import (
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    MetadataTensor,
    ModelMetadataResponse,
    ModelReadyResponse,
    ReadyResponse,
    ServerMetadataResponse,
)
from modeldeploy_runtime.protocol.v2_codec import (
    BINARY_EXTENSION,
    HEADER_LENGTH,
    decode_request,
    encode_response,
)
from modeldeploy_runtime.service import InferenceService

SERVER_NAME = "modeldeploy-runtime"


def v2_router(service: InferenceService) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])

    @router.get(
        "/health/live",
        response_model=LiveResponse,
        responses={503: {"model": LiveResponse, "description": "A model call has hung past the request timeout."}},
    )
    async def live() -> Response:
        """Liveness: the process answers and no model call has hung past the request timeout. The liveness probe."""
        return json_response(LiveResponse(live=service.live).model_dump(), 200 if service.live else 503)

    @router.get(
        "/health/ready",
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse, "description": "Loading, failed to load, or draining."}},
    )
    async def ready() -> Response:
        """Readiness: the model is loaded and warm, and the server is not draining. The readiness probe."""
        document = ReadyResponse(ready=service.ready, reason=service.reason)
        return json_response(document.model_dump(), 200 if service.ready else 503)

    @router.get("", response_model=ServerMetadataResponse)
    async def server_metadata() -> ServerMetadataResponse:
        return ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[BINARY_EXTENSION])

    @router.get(
        "/models/{model_name}",
        response_model=ModelMetadataResponse,
        responses=ERROR_RESPONSES,
    )
    async def model_metadata(model_name: str) -> ModelMetadataResponse:
        """Input and output names, datatypes and shapes (batch dimension first, -1 = dynamic)."""
        model = service.metadata_model(model_name)
        if model is None and service.text_model_created is not None:
            # Text in, text out: the generate extension's endpoints and OpenAI's describe the rest.
            return ModelMetadataResponse(
                name=model_name, versions=["1"], platform=TEXT_GENERATION_PLATFORM, inputs=[], outputs=[]
            )
        if model is None:
            raise ModelNotReady(f"model '{model_name}' has no metadata yet: {service.reason}")
        return ModelMetadataResponse(
            name=model.name,
            versions=["1"],
            platform=model.platform,
            inputs=[
                MetadataTensor(name=spec.name, datatype=spec.datatype, shape=spec.protocol_shape)
                for spec in model.metadata.inputs
            ],
            outputs=[
                MetadataTensor(name=spec.name, datatype=spec.datatype, shape=spec.protocol_shape)
                for spec in model.metadata.outputs
            ],
        )

    @router.get(
        "/models/{model_name}/ready",
        response_model=ModelReadyResponse,
        responses={404: ERROR_RESPONSES[404], 503: {"model": ModelReadyResponse, "description": "Not ready."}},
    )
    async def model_ready(model_name: str) -> Response:
        service.metadata_model(model_name)
        document = ModelReadyResponse(name=model_name, ready=service.ready, reason=service.reason)
        return json_response(document.model_dump(), 200 if service.ready else 503)

    @router.post(
        "/models/{model_name}/infer",
        response_model=InferenceResponse,
        responses={
            **ERROR_RESPONSES,
            200: {
                "description": "Outputs as JSON, or with binary outputs a JSON header followed by raw bytes "
                "(see the Inference-Header-Content-Length response header).",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            },
        },
        openapi_extra=request_body(InferenceRequest, binary=True),
    )
    async def infer(model_name: str, request: Request) -> Response:
        """Runs the model. JSON tensors, or the binary tensor data extension."""
        return await infer_v2(service, model_name, request)

    return router


async def infer_v2(service: InferenceService, model_name: str, request: Request) -> Response:
    """The v2 inference sequence, shared by the documented route and the ASGI fast path.

    Access control (key, limits, audit) happened before this, in the outermost middleware.
    """
    async with service.admit(model_name, body_chunks(request), declared_length(request)) as admitted:
        body = admitted.body.take()
        metadata = admitted.model.metadata
        header_length = request.headers.get(HEADER_LENGTH)
        decoded = await off_loop_when_large(
            len(body), decode_request, body, header_length, metadata, service.settings.max_batch_size
        )
        del body  # the raw body goes; the decoded tensors stay
        outputs = await admitted.slot.infer(decoded.inputs, partial(wait_for_disconnect, request))
    content, header_length_out = encode_response(admitted.model.name, decoded, outputs, metadata)
    if header_length_out is None:
        return Response(content, media_type=JSON_MEDIA_TYPE)
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length_out)},
    )
