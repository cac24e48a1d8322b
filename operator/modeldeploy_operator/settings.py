"""The operator's configuration: one object, from MODELDEPLOY_* environment variables and CLI flags,
validated at start-up so a bad setting stops the operator with a clear message instead of failing later."""

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RUNTIME_IMAGE = "ghcr.io/modeldeploy/runtime:0.1.0"
# Where a pod finds its own namespace: the default namespace of the leader election Lease.
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


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
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR (any case)."
    )
    log_format: Literal["text", "json"] = Field(default="text", description="text, or json: one object per line.")
    health_port: int = Field(default=8080, ge=1, le=65535, description="Port of the /healthz liveness endpoint.")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Port of /metrics; 0 turns it off.")
    bind_address: str = Field(default="0.0.0.0", description="Address the health and metrics endpoints bind.")
    metrics_scraper_namespace: str = Field(
        default="monitoring",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        max_length=63,
        description="Namespace whose pods may scrape the runtimes' metrics through their NetworkPolicy; empty: "
        "none besides the model's own namespace.",
    )
    # A watch can die silently (kopf#585, #1120): the server closes it after this long and the operator reconnects.
    watch_server_timeout_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="The apiserver ends each watch after this long; the operator reconnects.",
    )
    watch_client_timeout_seconds: int = Field(
        default=330, ge=15, le=3900, description="A watch silent this long is dropped and reconnected."
    )
    handler_timeout_seconds: int = Field(
        default=600,
        ge=5,
        le=3600,
        description="How long a reconcile is retried through transient API errors (1 s up to 60 s apart); the "
        "resync keeps trying after that.",
    )
    resync_period_seconds: int = Field(
        default=300,
        ge=5,
        le=86400,
        description="Every ModelDeployment is re-checked this often from the watches' caches: the backstop for a "
        "missed event or a failed write. It writes only what drifted.",
    )
    max_writes_in_flight: int = Field(
        default=16, ge=1, le=256, description="API writes at once; more wait their turn instead of timing out."
    )
    max_objects_in_flight: int = Field(
        default=128,
        ge=1,
        le=4096,
        description="ModelDeployments reconciled at once; the others wait their turn, in order. Bounds the "
        "operator's memory under a burst. One waiting to retry a transient error does not hold a place.",
    )
    upgrade_wave_size: int = Field(
        default=10,
        ge=1,
        le=10000,
        description="ModelDeployments that roll a pod template change of the operator's own (a new operator "
        "version or runtime image default) at once; the others keep their pods until those are Ready. A spec "
        "change is never held back.",
    )
    # Leader election (leader.py): controller-runtime's defaults, 15s / 10s / 2s.
    leader_election: bool = Field(
        default=False, description="Run as one candidate of several: reconcile only while holding the Lease."
    )
    leader_election_namespace: str = Field(
        default_factory=lambda: POD_NAMESPACE_FILE.read_text().strip() if POD_NAMESPACE_FILE.is_file() else "",
        max_length=63,
        description="Namespace of the Lease; defaults to the pod's own namespace.",
    )
    leader_election_lease_name: str = Field(
        default="modeldeploy-operator",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        description="Name of the Lease the replicas compete for.",
    )
    leader_election_lease_duration_seconds: int = Field(
        default=15, ge=2, le=600, description="How long a standby waits for a silent leader before taking over."
    )
    leader_election_renew_deadline_seconds: float = Field(
        default=10, gt=0, le=600, description="How long a leader keeps trying to renew before it gives up and exits."
    )
    leader_election_retry_period_seconds: float = Field(
        default=2, gt=0, le=60, description="How often the leader renews and a standby tries to take over."
    )

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

    @model_validator(mode="after")
    def _leader_election_consistent(self) -> Self:
        if not self.leader_election:
            return self
        if self.leader_election_renew_deadline_seconds >= self.leader_election_lease_duration_seconds:
            raise ValueError(
                "leader_election_renew_deadline_seconds must be less than leader_election_lease_duration_seconds, "
                "so that a leader that cannot renew stops before a standby may take over"
            )
        if self.leader_election_retry_period_seconds * 1.2 >= self.leader_election_renew_deadline_seconds:
            raise ValueError(
                "leader_election_retry_period_seconds x 1.2 must be less than leader_election_renew_deadline_seconds, "
                "so that a leader gets more than one try to renew"
            )
        if not self.leader_election_namespace:
            raise ValueError(
                "leader_election_namespace is required when leader_election is on outside a pod "
                "(MODELDEPLOY_LEADER_ELECTION_NAMESPACE or --leader-election-namespace)"
            )
        return self
