"""Protocol-neutral domain errors. `protocol/errors.py` is the one place that maps them to HTTP."""

from __future__ import annotations

import re
from typing import ClassVar

# An absolute file path (two or more components): what a traceback or an OS error leaks about the server.
_SERVER_PATH = re.compile(r"(?<![\w.])/(?:[\w.\-]+/)+[\w.\-]*")


class ServingError(Exception):
    """Base of every error a client can cause or observe; `message` is safe to send to the client."""

    # Retry-After seconds: tells clients and load balancers that a retry is welcome. None: no header.
    retry_after_s: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServingError):
    """The request is malformed or does not fit the model's declared inputs."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        # The request field at fault, for protocols that name it apart from the message (OpenAI's error.param).
        self.param = param


class ModelNotFound(ServingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' is not served here")


class ModelNotReady(ServingError):
    """The model is loading, failed to load, or the server is draining."""

    retry_after_s = 5


class PayloadTooLarge(ServingError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request body exceeds the payload cap of {limit_bytes} bytes")


class Overloaded(ServingError):
    """The bounded queue is full: the client should retry later (or elsewhere)."""

    retry_after_s = 1


class RequestTimedOut(ServingError):
    """The request waited longer than the per-request timeout (queue plus inference)."""

    retry_after_s = 1


class ClientDisconnected(ServingError):
    """The client went away while its request waited; nobody will read the answer."""


class InferenceFailed(ServingError):
    """The model raised while running a batch."""


class BodyReadTimedOut(ServingError):
    """The client did not send its whole body within the read deadline (a slow or stalled client)."""


class Unauthenticated(ServingError):
    """No API key, or one that matches no entry of the key Secret."""


class RateLimited(ServingError):
    """A key went over one of its limits; the message names the limit."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def client_safe(text: str) -> str:
    """The last line of an error's text with file paths cut out: what a client may see of a model's failure.

    TorchScript errors carry the interpreter's traceback, with server paths, before the one line that says
    what went wrong (`RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x3 and 16x32)`).
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _SERVER_PATH.sub("<path>", lines[-1]) if lines else ""


class FatalError(Exception):
    """A failure that can end the process; the operator tells them apart by exit code and termination message.

    Both are a contract with the operator (reconcile/status.py) and are listed in docs/runtime.md.
    """

    # The word the termination message starts with, which the operator reports as lastFailure.reason.
    termination_reason: ClassVar[str]
    exit_code: ClassVar[int]


class ModelLoadError(FatalError):
    """The model file could not be loaded; the reason is shown on the ready endpoint and in the log."""

    termination_reason = "ModelLoadFailed"
    exit_code = 3


class ChecksumMismatch(ModelLoadError):
    """The model file is not the one its expected sha256 names, whether `fetch` or `serve` found it."""

    termination_reason = "ChecksumMismatch"
    exit_code = 5


class FetchFailed(FatalError):
    """`fetch` could not download the model file, after retries where a retry could help."""

    termination_reason = "FetchFailed"
    exit_code = 4
