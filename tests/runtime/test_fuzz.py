"""Fuzzing the HTTP API from its own OpenAPI document: no 500s, and answers conform to the document.

Schemathesis' pytest plugin does not run under this pytest, so the operations are driven through
hypothesis directly. The document comes from the app factory (no model needed to describe the API);
the model name is pinned to the served model so the generated requests reach the model's decoding.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from modeldeploy_runtime.app import create_app
from modeldeploy_runtime.settings import ServeSettings
from runtime_server import RuntimeServer
from schemathesis.specs.openapi.checks import positive_data_acceptance

EXAMPLES_PER_OPERATION = 50
# The document describes the protocol; which tensor names and shapes a model accepts is per model and
# served by the metadata endpoint. A schema-valid body with the wrong tensor is rightly a 400, so the
# "schema-valid data must be accepted" check does not apply. Every other check does.
NOT_APPLICABLE = [positive_data_acceptance]


def _document(pin_model_name: str | None) -> dict[str, Any]:
    document = copy.deepcopy(create_app(ServeSettings(model_name="mlp", model_path=Path("unused.pt"))).openapi())
    if pin_model_name is not None:
        for operations in document["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "model_name":
                        parameter["schema"] = {"type": "string", "enum": [pin_model_name]}
    return document


OPERATIONS = [
    result.ok()
    for pinned in ("mlp", None)
    for result in schemathesis.openapi.from_dict(_document(pinned)).get_all_operations()
    if pinned or "{model_name}" in result.ok().path
]


@pytest.mark.parametrize(
    "operation", OPERATIONS, ids=[f"{index}-{operation.label}" for index, operation in enumerate(OPERATIONS)]
)
def test_api_conforms_and_never_fails(operation: Any, mlp_server: RuntimeServer) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=mlp_server.url, timeout=30, excluded_checks=NOT_APPLICABLE)

    call()
