"""Builds and runs the operator: kopf's settings, our handlers, the API client, health and metrics."""

import asyncio
import functools
import logging
from typing import Any

import kopf
import prometheus_client

from modeldeploy_operator import leader, metrics
from modeldeploy_operator.api.v1alpha1 import GROUP
from modeldeploy_operator.kube import KubeApi, default_client
from modeldeploy_operator.manifests.labels import FIELD_MANAGER
from modeldeploy_operator.reconcile import handlers
from modeldeploy_operator.reconcile.reconciler import Reconciler
from modeldeploy_operator.settings import OperatorSettings
from modeldeploy_operator.watch.informer import watch_client

logger = logging.getLogger(__name__)


def build_registry(config: OperatorSettings, api: KubeApi) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    reconciler = Reconciler(api, config.runtime_image, config.metrics_scraper_namespace, config.upgrade_wave_size)
    watching = handlers.Watching(
        reconciler,
        functools.partial(watch_client, config.watch_client_timeout_seconds),
        config.namespaces,
        server_timeout=config.watch_server_timeout_seconds,
        workers=config.max_objects_in_flight,
        resync_period=config.resync_period_seconds,
    )
    handlers.register(registry, watching, reconciler, handler_timeout=config.handler_timeout_seconds)

    @kopf.on.startup(registry=registry)
    def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, config)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In-cluster first, then $KUBECONFIG: no API client library is needed for kopf's own connection.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def close_api_client(**_: Any) -> None:
        await api.close()

    return registry


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: OperatorSettings) -> None:
    # kopf's bookkeeping lives under our domain, in annotations only: the status is ours alone.
    kopf_settings.persistence.finalizer = f"{GROUP}/finalizer"
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Only our own meaningful events reach users; kopf's per-handler chatter does not.
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.posting.reporting_component = FIELD_MANAGER
    kopf_settings.watching.server_timeout = settings.watch_server_timeout_seconds
    kopf_settings.watching.client_timeout = settings.watch_client_timeout_seconds
    kopf_settings.watching.connect_timeout = 30
    kopf_settings.networking.request_timeout = 60
    kopf_settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    kopf_settings.execution.max_workers = 20
    # kopf's own (not our handlers') errors back off to at most 60 s, not kopf's 610 s.
    kopf_settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    # kopf runs one worker per object with events, unbounded by default: a thousand ModelDeployments created at once
    # meant thousands of workers, each holding its object's queued events: 278 MB at the peak, over 500 MB when
    # the control plane keeps up. Bounded: 158 and 211 MB, at the same time to Ready (docs/benchmarks.md). An idle
    # worker holds its slot until it exits, so it exits soon after its last event (kopf's default is 5 s) to let
    # the waiting objects in.
    kopf_settings.queueing.worker_limit = settings.max_objects_in_flight
    kopf_settings.queueing.idle_timeout = 0.5
    # kopf's restricted mode: API discovery once at start, no watching of CRDs and namespaces, so the operator
    # needs no permission on those cluster-scoped kinds (the chart installs the CRD before the operator starts).
    kopf_settings.scanning.disabled = True


def run(settings: OperatorSettings) -> None:
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        quiet=settings.log_level in ("WARNING", "ERROR"),
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # kopf logs every handled event at INFO, and the API client every request: one line per pod event
        # at scale. Failures still show (WARNING and up); our own log says what was applied and why.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("httpx2").setLevel(logging.WARNING)
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.bind_address)
    registry = build_registry(settings, KubeApi(default_client, settings.max_writes_in_flight))
    operate = functools.partial(
        kopf.operator,
        registry=registry,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://{settings.bind_address}:{settings.health_port}/healthz",
        standalone=True,
    )
    if settings.leader_election:
        asyncio.run(leader.run_elected(settings, operate))
    else:
        metrics.LEADER.set(1)  # the only replica: it always reconciles
        asyncio.run(operate())
