"""No churn: at steady state, and across an operator restart, nothing is written to the API.

Counted at the apiserver (its request metrics), so writes by kopf itself count too, not only ours.
"""

import os
import re
import time

WRITE_VERBS = {"APPLY", "PATCH", "POST", "CREATE", "PUT", "UPDATE", "DELETE"}
# Kinds only the operator writes at steady state; the controllers' status updates use the status subresource.
WATCHED = {
    ("serving.modeldeploy.dev", "modeldeployments"): None,  # any subresource
    ("apps", "deployments"): {"", "scale"},
    ("", "services"): {""},
    ("", "events"): None,
    ("events.k8s.io", "events"): None,
}
QUIET_SECONDS = int(os.environ.get("MODELDEPLOY_QUIET_SECONDS", "60"))
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def operator_kind_writes(cluster) -> dict[str, float]:
    """Write requests so far, by request kind (the metric's labels)."""
    counts: dict[str, float] = {}
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        subresources = WATCHED.get((labels.get("group", ""), labels.get("resource", "")), False)
        if subresources is False or labels.get("verb") not in WRITE_VERBS or labels.get("dry_run"):
            continue
        if subresources is None or labels.get("subresource", "") in subresources:
            counts[match["labels"]] = float(match["value"])
    return counts


def writes_since(cluster, before: dict[str, float]) -> dict[str, float]:
    after = operator_kind_writes(cluster)
    return {labels: value - before.get(labels, 0) for labels, value in after.items() if value != before.get(labels, 0)}


def no_namespace_terminating(cluster) -> bool:
    """The namespaces of earlier tests are gone: the controllers' DELETEs of their objects would count here."""
    phases = cluster.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].status.phase}").stdout.split()
    return "Terminating" not in phases


# Short enough that the quiet minute holds several resyncs: they must write nothing either.
RESYNC = {"MODELDEPLOY_RESYNC_PERIOD_SECONDS": "10"}


def test_steady_state_and_restart_write_nothing(cluster, start_operator, kube, md) -> None:
    operator = start_operator(**RESYNC)
    kube.apply(md("quiet", replicas=2, gpu={"count": 1}))
    kube.wait_condition("quiet", "Ready", "True")
    template_hash = kube.get("deployment", "quiet")["spec"]["template"]
    time.sleep(5)  # let the last status write and its watch events settle
    kube.wait_for("earlier tests' namespaces to go", lambda: no_namespace_terminating(cluster), timeout=180)

    before = operator_kind_writes(cluster)
    time.sleep(QUIET_SECONDS)
    assert writes_since(cluster, before) == {}, "writes during a quiet minute"
    assert operator.metric("modeldeploy_status_writes_total") > 0, "the counter is live"
    assert operator.metric("modeldeploy_reconciles_total", trigger="resync") >= 1, "resyncs ran"

    operator.stop()
    kube.wait_for("earlier tests' namespaces to go", lambda: no_namespace_terminating(cluster), timeout=180)
    before = operator_kind_writes(cluster)
    restarted = start_operator(**RESYNC)
    kube.wait_for("the restarted operator reconciled", lambda: restarted.metric("modeldeploy_reconciles_total") >= 1)
    time.sleep(5)
    assert writes_since(cluster, before) == {}, "an operator restart wrote to the API"
    assert kube.get("deployment", "quiet")["spec"]["template"] == template_hash, "a restart rolls no pods"
    assert restarted.metric("modeldeploy_child_applies_total") == 0


def test_resync_heals_what_no_event_reports(start_operator, kube, md) -> None:
    """A status overwritten by someone else triggers no handler (kopf ignores status changes): the resync,
    the backstop for missed events, puts the truth back."""
    start_operator(MODELDEPLOY_RESYNC_PERIOD_SECONDS="5")
    kube.apply(md("healed", replicas=1))
    kube.wait_condition("healed", "Ready", "True")
    kube.run("patch", "md", "healed", "--subresource=status", "--type=merge", "-p", '{"status":{"readySummary":"9/9"}}')
    assert kube.get("md", "healed")["status"]["readySummary"] == "9/9"
    kube.wait_for("the resync restored the status", lambda: kube.get("md", "healed")["status"]["readySummary"] == "1/1")
