"""What spec.access adds to the runtime's pod: the key and certificate Secrets as volumes, and the settings.

The Secrets are mounted, never read through the API: kubelet refreshes a mounted Secret in place, the runtime
re-reads it (keys every 10 s, the certificate every minute), and the runtime needs no API token.
"""

from dataclasses import dataclass, field
from typing import Any

from modeldeploy_operator.api.v1alpha1 import AccessSpec

API_KEYS_VOLUME = "api-keys"
API_KEYS_DIR = "/etc/modeldeploy/api-keys"
TLS_VOLUME = "tls"
TLS_DIR = "/etc/modeldeploy/tls"


@dataclass(frozen=True)
class AccessPlan:
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "HTTP"


def plan_access(access: AccessSpec) -> AccessPlan:
    volumes, mounts, env = [], [], {}
    if access.api_keys is not None:
        volumes.append({"name": API_KEYS_VOLUME, "secret": {"secretName": access.api_keys.secret_name}})
        mounts.append({"name": API_KEYS_VOLUME, "mountPath": API_KEYS_DIR, "readOnly": True})
        env["MODELDEPLOY_API_KEYS_DIR"] = API_KEYS_DIR
        limits = access.api_keys.limits
        for name, value in (
            ("MODELDEPLOY_KEY_REQUESTS_PER_SECOND", limits.requests_per_second),
            ("MODELDEPLOY_KEY_REQUESTS_BURST", limits.requests_burst),
            ("MODELDEPLOY_KEY_TOKENS_PER_MINUTE", limits.tokens_per_minute),
            ("MODELDEPLOY_KEY_TOKENS_BURST", limits.tokens_burst),
        ):
            if value is not None:
                env[name] = str(value)
    if access.audit.enabled is not None:
        env["MODELDEPLOY_AUDIT"] = "true" if access.audit.enabled else "false"
    if access.audit.payloads:
        env["MODELDEPLOY_AUDIT_PAYLOADS"] = "true"
    if access.tls is None:
        return AccessPlan(volumes, mounts, env)
    volumes.append({"name": TLS_VOLUME, "secret": {"secretName": access.tls.secret_name}})
    mounts.append({"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True})
    env["MODELDEPLOY_TLS_CERT_FILE"] = f"{TLS_DIR}/tls.crt"
    env["MODELDEPLOY_TLS_KEY_FILE"] = f"{TLS_DIR}/tls.key"
    return AccessPlan(volumes, mounts, env, scheme="HTTPS")
