"""Builds and runs the operator: kopf's settings, our handlers, the API client, health and metrics."""

import asyncio
import functools
import logging
from typing import Any

import kopf
import prometheus_client

from modeldeploy_operator import leader, metrics
from modeldeploy_operator.kube import KubeApi, default_client
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
        retry_for=config.handler_timeout_seconds,
    )
    handlers.register(registry, watching)

    @kopf.on.startup(registry=registry)
    def configure(*, settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In-cluster first, then $KUBECONFIG: no API client library is needed for kopf's own connection.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def close_api_client(**_: Any) -> None:
        await api.close()

    return registry


def configure_kopf(kopf_settings: kopf.OperatorSettings) -> None:
    # kopf runs the process (start-up and clean-up, credentials, liveness, signals) and watches nothing: the
    # ModelDeployments and their children are watched and reconciled by our caches and queue (reconcile/handlers.py).
    # Restricted mode: no watching of CRDs and namespaces, so the operator needs no permission on those
    # cluster-scoped kinds (the chart installs the CRD before the operator starts).
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
