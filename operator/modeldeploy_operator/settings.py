"""The operator's configuration: one object, from MODELDEPLOY_* environment variables and CLI flags,
validated at start-up so a bad setting stops the operator with a clear message instead of failing later."""

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RUNTIME_IMAGE = "ghcr.io/modeldeploy/runtime:0.1.0"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELDEPLOY_", frozen=True, extra="ignore")

    runtime_image: str = Field(
        default=DEFAULT_RUNTIME_IMAGE,
        min_length=1,
        description="Runtime image for ModelDeployments that set none.",
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch, comma-separated; empty watches all namespaces.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    health_port: int = Field(default=8080, ge=1, le=65535, description="Port of the /healthz liveness endpoint.")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Port of /metrics; 0 turns it off.")
    bind_address: str = Field(default="0.0.0.0", description="Address the health and metrics endpoints bind.")
    # A watch can die silently (kopf#585, #1120): the server closes it after this long and we reconnect,
    # relisting everything, which also re-checks every child for drift.
    watch_server_timeout_seconds: int = Field(default=300, ge=10, le=3600)
    watch_client_timeout_seconds: int = Field(default=330, ge=15, le=3900)
    handler_timeout_seconds: int = Field(default=120, ge=5, le=3600)

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value
