"""The OpenAPI document: request bodies are parsed by hand for speed, so their schemas are added here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from modeldeploy_runtime.protocol.schemas import ErrorResponse

_REF_TEMPLATE = "#/components/schemas/{model}"
_DOCUMENTED_BODIES: list[type[BaseModel]] = []

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad input: names the tensor and what is wrong."},
    404: {"model": ErrorResponse, "description": "No model of that name is served here."},
    413: {"model": ErrorResponse, "description": "The body is larger than the payload cap."},
    429: {"model": ErrorResponse, "description": "The queue is full; see Retry-After."},
    500: {"model": ErrorResponse, "description": "The model raised while running."},
    503: {"model": ErrorResponse, "description": "Not ready, draining, or timed out; see Retry-After."},
}


def request_body(model: type[BaseModel], binary: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its body itself; the schema joins the components later."""
    _DOCUMENTED_BODIES.append(model)
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model=model.__name__)}}}
    if binary:
        content["application/octet-stream"] = {
            "schema": {"type": "string", "format": "binary"},
            "description": "Binary tensor data extension: JSON header (Inference-Header-Content-Length "
            "bytes) followed by the raw tensors.",
        }
    return {"requestBody": {"required": True, "content": content}}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in _DOCUMENTED_BODIES:
                schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
