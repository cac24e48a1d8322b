import logging

import kopf
from modeldeploy_operator.app import configure_kopf
from modeldeploy_operator.settings import OperatorSettings


def test_kopf_follows_our_settings_and_keeps_its_bookkeeping_under_our_domain() -> None:
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings, OperatorSettings(max_objects_in_flight=64, watch_server_timeout_seconds=120))

    assert kopf_settings.queueing.worker_limit == 64
    assert kopf_settings.watching.server_timeout == 120
    assert kopf_settings.persistence.finalizer == "serving.modeldeploy.dev/finalizer"
    assert kopf_settings.posting.level > logging.INFO  # kopf's per-handler INFO chatter is not posted as events
    assert kopf_settings.posting.reporting_component == "modeldeploy-operator"
    assert kopf_settings.scanning.disabled


def test_objects_in_flight_are_bounded_by_default_and_idle_workers_let_others_in() -> None:
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings, OperatorSettings())

    assert kopf_settings.queueing.worker_limit == 128
    # kopf's own 5 s would keep a slot per idle object: at 128 slots, about 25 new objects a second at most.
    assert kopf_settings.queueing.idle_timeout <= 1.0


def test_children_are_selected_on_the_apiserver_but_autoscalers_are_not() -> None:
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings, OperatorSettings())
    selectors = kopf_settings.watching.label_selectors

    def selector_of(group: str, version: str, plural: str) -> list[str]:
        return selectors.collect(kopf.Resource(group, version, plural, namespaced=True))

    owned = ["app.kubernetes.io/managed-by=modeldeploy-operator"]
    assert selector_of("", "v1", "pods") == owned
    assert selector_of("apps", "v1", "deployments") == owned
    assert selector_of("", "v1", "services") == owned
    assert selector_of("networking.k8s.io", "v1", "networkpolicies") == owned
    assert selector_of("autoscaling", "v2", "horizontalpodautoscalers") == []
    assert selector_of("serving.modeldeploy.dev", "v1alpha1", "modeldeployments") == []
