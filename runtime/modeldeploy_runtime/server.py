"""Runs the app under uvicorn with graceful draining, a deadline on request headers (header_deadline.py) and the exit
codes the operator reads.

SIGTERM (or SIGINT): readiness turns false at once. Requests are still served for `shutdown_delay_s`, the time
Kubernetes takes to take the pod out of the Service's endpoints; then new inference requests get 503 with
Retry-After while admitted ones finish, for at most `drain_grace_s`; then uvicorn closes the connections and the
process exits 0. A second signal stops waiting. With `exit_on_load_failure`, a model that fails to load ends the
process after writing `<termination reason>: <detail>` to the termination log: exit 3 and `ModelLoadFailed`,
or exit 5 and `ChecksumMismatch` when the file does not match `model_sha256` (errors.py holds both pairs).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import FrameType

import torch
import uvicorn

from modeldeploy_runtime.app import create_app
from modeldeploy_runtime.header_deadline import HeaderDeadline
from modeldeploy_runtime.service import InferenceService
from modeldeploy_runtime.settings import ServeSettings
from modeldeploy_runtime.termination import write_termination_message
from modeldeploy_runtime.tls import CertificateReloader

# After draining, connections get this long to finish their last response.
CONNECTION_CLOSE_GRACE_S = 5

_log = logging.getLogger(__name__)


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: InferenceService, settings: ServeSettings) -> None:
        super().__init__(config)
        self._service = service
        self._shutdown_delay_s = settings.shutdown_delay_s
        self._drain_grace_s = settings.drain_grace_s
        self._draining: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls_reload_s = settings.tls_reload_s
        self._certificate_reloading: asyncio.Task[None] | None = None
        self._header_deadline = HeaderDeadline(self.server_state, settings.header_read_timeout_s)
        self._header_deadline_enforcing: asyncio.Task[None] | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)
        self._header_deadline_enforcing = self._loop.create_task(self._header_deadline.enforce(), name="headers")
        config = self.config
        if config.ssl is not None and config.ssl_certfile is not None and config.ssl_keyfile is not None:
            reloader = CertificateReloader(config.ssl, Path(config.ssl_certfile), Path(str(config.ssl_keyfile)))
            self._certificate_reloading = self._loop.create_task(
                reloader.keep_fresh(self._tls_reload_s), name="tls-reload"
            )

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Deliberately not recording the signal as uvicorn does: it would re-raise it after shutdown and
        # turn a clean drain into death by SIGTERM instead of exit code 0.
        if self._draining is not None or self._loop is None:
            self.should_exit = True
            self.force_exit = self._draining is not None
            return
        _log.info(
            "signal %d: serving for %.1fs more, then draining for up to %.1fs",
            sig,
            self._shutdown_delay_s,
            self._drain_grace_s,
        )
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        if self._shutdown_delay_s > 0 and self._service.begin_stopping():
            await asyncio.sleep(self._shutdown_delay_s)
        self._service.begin_drain()
        if not await self._service.wait_idle(self._drain_grace_s):
            _log.warning("drain grace period of %.1fs ran out with requests in flight", self._drain_grace_s)
        self.should_exit = True

    def stop_for_load_failure(self) -> None:
        self.should_exit = True


def serve(settings: ServeSettings) -> int:
    logging.getLogger().setLevel(settings.log_level.upper())
    app = create_app(settings)
    service: InferenceService = app.state.service
    if service.threads.inter_op is not None:
        # Process-wide, and only before torch's first parallel work: here, before the model loads.
        torch.set_num_interop_threads(service.threads.inter_op)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=CONNECTION_CLOSE_GRACE_S,
        limit_concurrency=settings.max_connections,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )
    server = _DrainingServer(config, service, settings)
    if settings.exit_on_load_failure:
        service.on_load_failure = server.stop_for_load_failure
    server.run()
    failure = service.load_failure
    if failure is not None and settings.exit_on_load_failure:
        write_termination_message(settings.termination_log, failure.termination_reason, str(failure))
        return failure.exit_code
    return 0
