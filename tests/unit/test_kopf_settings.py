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
