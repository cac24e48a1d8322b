"""Start-up settings: one validated object per subcommand, read from flags and `MODELDEPLOY_*` env vars.

The operator sets these through environment variables, so the env names are a contract (docs/runtime.md).
Flags given on the command line win over the environment.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MODELDEPLOY_"
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")

# Lowercased here, so it compares equal to hexdigest() wherever it is checked.
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True)]


class ModelFormat(enum.StrEnum):
    TORCHSCRIPT = "torchscript"
    EXPORTED_PROGRAM = "exported-program"
    # A Hugging Face model directory (config.json, *.safetensors, tokenizer files): text generation.
    HUGGINGFACE = "huggingface"


class DeviceChoice(enum.StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class DtypeChoice(enum.StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class _RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True, protected_namespaces=())

    termination_log: Path = Field(
        DEFAULT_TERMINATION_LOG,
        description="File that receives the reason of a fatal failure (Kubernetes' termination message).",
    )


class ServeSettings(_RuntimeSettings):
    """Everything `serve` needs; validated once at start-up."""

    model_name: str = Field(..., min_length=1, max_length=253, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
    model_path: Path
    model_format: ModelFormat | None = Field(
        None, description="Inferred when not given: a directory is a Hugging Face model, a file is read."
    )
    model_sha256: Sha256 | None = Field(
        None,
        description="Expected sha256 of the model file, checked before loading (models nothing fetched, e.g. "
        "on a volume); a mismatch is a load failure (ChecksumMismatch, exit code 5).",
    )
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    device: DeviceChoice = DeviceChoice.AUTO
    dtype: DtypeChoice = DtypeChoice.FLOAT32
    max_batch_size: int = Field(8, ge=1, le=4096)
    max_batch_delay_ms: float = Field(2.0, ge=0.0, le=10_000.0)
    max_queue_size: int = Field(256, ge=1, le=1_000_000)
    max_payload_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(30.0, gt=0.0)
    shutdown_delay_s: float = Field(
        0.0,
        ge=0.0,
        le=300.0,
        description="After SIGTERM, readiness fails but requests are still served for this long, so load "
        "balancers stop sending before the server refuses (kube-apiserver's --shutdown-delay-duration).",
    )
    drain_grace_s: float = Field(25.0, ge=0.0)
    exit_on_load_failure: bool = False
    model_workers: int = Field(
        1, ge=1, le=64, description="Batches run at once, each in its own thread (Triton's instance count)."
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Intra-op threads per worker; unset: sized from cpu_limit_millicores, else torch's default, "
        "divided among the workers.",
    )
    cpu_limit_millicores: int | None = Field(
        None,
        ge=1,
        description="The container's CPU limit in millicores (the operator passes it); sizes torch's intra-op and "
        "inter-op threads (rounded up to whole cores, at least 1).",
    )
    log_level: str = Field("info", pattern=r"^(critical|error|warning|info|debug)$")
    # Text generation (huggingface models); the names are vLLM's, which KServe's and KubeAI's users know.
    max_num_seqs: int = Field(
        32, ge=1, le=4096, description="Text generation: most sequences generated at once (the running batch)."
    )
    max_model_len: int | None = Field(
        None,
        ge=16,
        le=1_048_576,
        description="Text generation: most tokens of prompt plus completion; unset: the model's own context length.",
    )
    max_num_batched_tokens: int = Field(
        2048,
        ge=16,
        le=1_048_576,
        description="Text generation: most tokens one model step computes (prompt chunks plus one per running "
        "sequence); bounds how long a long prompt holds up the others' next token.",
    )
    body_read_timeout_s: float = Field(
        30.0, gt=0.0, description="A client that has not sent its whole body this long after the headers gets 408."
    )
    header_read_timeout_s: float = Field(
        10.0,
        gt=0.0,
        description="A connection whose request headers are not complete this long after it opened, or after the "
        "request's first byte, gets 408 and is closed (a connection that sent nothing is closed).",
    )
    max_connections: int = Field(
        2048, ge=1, description="Open connections and requests at once; beyond it new ones get 503 (uvicorn's)."
    )
    memory_limit_bytes: int | None = Field(
        None, ge=1, description="The container's memory limit (the operator passes it); sizes max_inflight_bytes."
    )
    max_inflight_bytes: int | None = Field(
        None,
        ge=1024,
        description="Request bytes held at once, being received or waiting for the model; beyond it: 429. "
        "Default: a quarter of memory_limit_bytes, else 1 GiB; never below max_payload_bytes.",
    )
    api_keys_dir: Path | None = Field(
        None,
        description="A folder with one file per key owner, each holding the SHA-256 (hex) of that owner's key "
        "(a mounted Secret). Set: every route but health, readiness and metrics needs `Authorization: Bearer`.",
    )
    api_keys_reload_s: float = Field(10.0, gt=0.0, le=60.0, description="How often the key folder is re-read.")
    key_requests_per_second: float | None = Field(None, gt=0.0, description="Requests per second per key.")
    key_requests_burst: int | None = Field(
        None, ge=1, description="Requests a key may send at once above its rate; default: one second's worth."
    )
    key_tokens_per_minute: float | None = Field(None, gt=0.0, description="Tokens per minute per key (text models).")
    key_tokens_burst: int | None = Field(None, ge=1, description="Tokens above the rate at once; default: a minute's.")
    audit: bool | None = Field(None, description="One JSON line per request to stdout; default: on with API keys.")
    audit_payloads: bool = Field(False, description="Add request bodies to the audit lines (base64).")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: serve HTTPS (with tls_key_file).")
    tls_key_file: Path | None = None
    tls_reload_s: float = Field(60.0, gt=0.0, description="How often a renewed certificate is picked up.")

    @property
    def generates_text(self) -> bool:
        """A Hugging Face model directory: served by the text generation engine and endpoints."""
        if self.model_format is not None:
            return self.model_format is ModelFormat.HUGGINGFACE
        return self.model_path.is_dir()

    @property
    def inflight_bytes_limit(self) -> int:
        if self.max_inflight_bytes is not None:
            derived = self.max_inflight_bytes
        elif self.memory_limit_bytes is not None:
            derived = self.memory_limit_bytes // 4
        else:
            derived = 1024**3
        return max(derived, self.max_payload_bytes)

    @property
    def audit_enabled(self) -> bool:
        return self.audit if self.audit is not None else self.api_keys_dir is not None

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.api_keys_dir is None and (self.key_requests_per_second or self.key_tokens_per_minute):
            raise ValueError("per-key limits need api_keys_dir: without keys there is no key to limit")
        return self

    @field_validator("model_path")
    @classmethod
    def _model_path_not_empty(cls, value: Path) -> Path:
        if str(value) in ("", "."):
            raise ValueError("must name a model file")
        return value


class FetchSettings(_RuntimeSettings):
    """Everything `fetch` (the init container) needs."""

    model_uri: str = Field(..., pattern=r"^(https?|file)://.+", description="https://, http:// or file://")
    model_dest: Path
    model_sha256: Sha256 | None = None
    fetch_timeout_s: float = Field(30.0, gt=0.0, description="Bound on each connect and each read.")
    fetch_deadline_s: float = Field(3600.0, gt=0.0, description="Bound on one whole download attempt.")
    fetch_attempts: int = Field(4, ge=1, le=20)
    fetch_backoff_s: float = Field(1.0, ge=0.0, le=300.0)
    fetch_max_bytes: int | None = Field(
        None, gt=0, description="Largest model to download: its volume's size limit (spec.model.downloadSizeLimit)."
    )
    max_unpacked_bytes: int = Field(
        1024**4, ge=1, description="Bound on what an archive of a model directory unpacks to (default 1 TiB)."
    )


def describe_validation_error(error: ValidationError, flag_names: dict[str, str]) -> str:
    """One line per bad setting, naming the flag, the env var, the value given and what is allowed."""
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "settings"
        env_name = ENV_PREFIX + field.upper()
        flag = flag_names.get(field)
        where = f"{flag} / {env_name}" if flag else env_name
        given = problem.get("input")
        given_text = "" if given is None or isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"invalid setting {where}{given_text}: {problem['msg']}")
    return "\n".join(lines)
