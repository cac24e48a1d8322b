"""The operator and the runtime agree on spec.access: what the builder sets, the runtime takes and acts on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from modeldeploy_operator.api import ModelDeployment
from modeldeploy_operator.manifests import build_deployment
from modeldeploy_operator.manifests.deployment import BuildOptions
from modeldeploy_runtime.settings import ServeSettings
from runtime_server import RuntimeServer

FULL_ACCESS = {
    "apiKeys": {
        "secretName": "keys",
        "limits": {"requestsPerSecond": 2.5, "requestsBurst": 5, "tokensPerMinute": 600, "tokensBurst": 60},
    },
    "audit": {"enabled": True, "payloads": True},
    "tls": {"secretName": "tls"},
}


def runtime_env(access: dict[str, Any]) -> dict[str, str]:
    """The runtime container's variables with a value (the kubelet fills in those from the downward API)."""
    body = {"metadata": {"name": "mlp", "namespace": "ns", "uid": "u"}, "spec": {"model": {"uri": "file:///m.pt"}}}
    body["spec"]["access"] = access  # type: ignore[index]
    pod = build_deployment(ModelDeployment.from_body(body), BuildOptions(default_runtime_image="runtime:1"))
    (runtime,) = pod["spec"]["template"]["spec"]["containers"]
    return {var["name"]: var["value"] for var in runtime["env"] if "value" in var}


def test_the_runtime_takes_every_setting_spec_access_gives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**runtime_env(FULL_ACCESS), "MODELDEPLOY_MEMORY_LIMIT_BYTES": str(8 * 2**30)}.items():
        monkeypatch.setenv(name, value)
    settings = ServeSettings()  # type: ignore[call-arg]
    assert (settings.key_requests_per_second, settings.key_tokens_per_minute) == (2.5, 600)
    assert settings.audit_enabled and settings.audit_payloads and settings.tls_cert_file is not None
    assert settings.inflight_bytes_limit == 2 * 2**30


def test_the_operators_access_settings_make_the_runtime_require_a_key(
    mlp: tuple[Path, object], model_dir: Path, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"  # what the kubelet mounts at MODELDEPLOY_API_KEYS_DIR
    keys.mkdir()
    (keys / "alice").write_text(hashlib.sha256(b"alice-key").hexdigest())
    env = {**runtime_env({"apiKeys": {"secretName": "keys"}}), "MODELDEPLOY_API_KEYS_DIR": str(keys)}
    access_env = {name: value for name, value in env.items() if "KEY" in name or "AUDIT" in name}
    server = RuntimeServer(mlp[0], model_dir / "access-contract.log", model_name="mlp", env=access_env)
    try:
        server.wait_ready()
        url = f"{server.url}/v2/models/mlp/ready"
        assert httpx.get(url, timeout=5).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer alice-key"}, timeout=5).status_code == 200
    finally:
        server.terminate()
