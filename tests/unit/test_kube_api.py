"""KubeApi's own decisions, on an injected stand-in for lightkube's client: how each apiserver answer is
classified (refused for good, or worth a retry), and what each request asks for. What the apiserver really answers
is tested against the local control plane (tests/integration)."""

from typing import Any

import httpx2
import pytest
from lightkube import ApiError
from lightkube.models.meta_v1 import Status
from lightkube.resources.core_v1 import Service
from modeldeploy_operator.kube import (
    CREATE_ONLY_VERSION,
    AlreadyExistsError,
    ConflictError,
    KubeApi,
    RejectedError,
    TransientError,
)

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "resnet", "namespace": "team-a", "managedFields": [{"manager": "someone"}]},
    "spec": {"ports": [{"port": 80}]},
}


class ScriptedClient:
    """lightkube's AsyncClient as far as KubeApi uses it: every request gets `answer` (raised if an exception)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.patches: list[Any] = []

    async def patch(self, resource: Any, name: str, obj: Any, **options: Any) -> Any:
        self.requests.append(("patch", name, options))
        self.patches.append(obj)
        return self._answer()

    async def get(self, resource: Any, name: str, **options: Any) -> Any:
        self.requests.append(("get", name, options))
        return self._answer()

    def _answer(self) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return Service.from_dict(self.answer)


def _api(answer: Any) -> tuple[KubeApi, ScriptedClient]:
    client = ScriptedClient(answer)
    return KubeApi(lambda: client, max_writes_in_flight=4), client  # type: ignore[arg-type, return-value]


def _status(code: int) -> ApiError:
    return ApiError(status=Status(code=code, message=f"answered {code}"))


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (_status(422), RejectedError),
        (_status(400), RejectedError),
        (_status(409), ConflictError),
        (_status(429), TransientError),
        (_status(500), TransientError),
        (_status(503), TransientError),
        (httpx2.ConnectError("connection refused"), TransientError),
    ],
)
async def test_each_answer_is_refused_for_good_or_retried(answer: Exception, raised: type[Exception]) -> None:
    api, _ = _api(answer)
    with pytest.raises(raised) as error:
        await api.apply(SERVICE)
    assert type(error.value) is raised


async def test_an_apply_forces_our_fields_and_returns_the_object_without_managed_fields() -> None:
    api, client = _api(SERVICE)
    applied = await api.apply(SERVICE)
    assert "managedFields" not in applied["metadata"] and applied["spec"] == SERVICE["spec"]
    ((request, name, options),) = client.requests
    assert (request, name, options["field_manager"], options["force"]) == (
        "patch",
        "resnet",
        "modeldeploy-operator",
        True,
    )


async def test_a_create_only_apply_carries_a_version_no_object_has_and_a_taken_name_is_told_from_a_conflict() -> None:
    api, client = _api(SERVICE)
    await api.apply(SERVICE, only_if_absent=True)
    (sent,) = client.patches
    assert sent["metadata"]["resourceVersion"] == CREATE_ONLY_VERSION and sent["spec"] == SERVICE["spec"]
    assert "resourceVersion" not in SERVICE["metadata"]  # the caller's manifest is left as it was

    api, _ = _api(_status(409))
    with pytest.raises(AlreadyExistsError):
        await api.apply(SERVICE, only_if_absent=True)
    with pytest.raises(ConflictError) as error:
        await api.apply(SERVICE)
    assert type(error.value) is ConflictError


async def test_reading_a_child_that_is_not_there_is_none_and_other_errors_still_count() -> None:
    api, client = _api(_status(404))
    assert await api.read_child("Service", "team-a", "resnet") is None
    assert client.requests == [("get", "resnet", {"namespace": "team-a"})]
    api, _ = _api(SERVICE)
    found = await api.read_child("Service", "team-a", "resnet")
    assert found is not None and "managedFields" not in found["metadata"]
    api, _ = _api(_status(403))
    with pytest.raises(TransientError, match="HTTP 403"):
        await api.read_child("Service", "team-a", "resnet")


async def test_replicas_already_owned_by_the_hpa_at_another_value_are_not_handed_over() -> None:
    api, client = _api(_status(409))
    assert await api.hand_over_replicas("team-a", "resnet", 5) is False
    ((_, _, options),) = client.requests
    assert (options["field_manager"], options["force"]) == ("modeldeploy-handover-to-hpa", False)
