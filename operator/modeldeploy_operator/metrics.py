"""Prometheus metrics of the operator."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "modeldeploy_reconciles_total",
    "Reconciles of ModelDeployments, by what triggered them and the outcome.",
    ["trigger", "result"],
)
RECONCILE_SECONDS = Histogram(
    "modeldeploy_reconcile_duration_seconds",
    "Time spent in one reconcile.",
    ["trigger"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ROLLBACKS = Counter(
    "modeldeploy_rollbacks_total",
    "Automatic rollbacks to the last pod template that became Ready, by the failure that caused them.",
    ["reason"],
)
APPLIES = Counter(
    "modeldeploy_child_applies_total",
    "Server-side applies of child objects, by kind and why.",
    ["kind", "reason"],
)
UPGRADE_WAVE = Gauge(
    "modeldeploy_upgrade_wave_modeldeployments",
    "ModelDeployments rolling a pod template change of the operator's own, and those waiting for a place.",
    ["state"],
)
STATUS_WRITES = Counter("modeldeploy_status_writes_total", "Status updates written to ModelDeployments.")
ERRORS = Counter("modeldeploy_reconcile_errors_total", "Reconcile errors, by kind of error.", ["error"])
TIME_TO_READY = Histogram(
    "modeldeploy_time_to_ready_seconds",
    "From a ModelDeployment's creation to its first Ready=True.",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600),
)
LEADER = Gauge(
    "modeldeploy_leader_election_leader",
    "1 while this replica reconciles (it holds the leader Lease, or leader election is off), 0 while it waits as "
    "a standby.",
)
WATCH_EVENTS = Counter(
    "modeldeploy_watch_events_total",
    "Objects received from the apiserver by the operator's own caches (listed or streamed), by kind.",
    ["kind"],
)
WATCHED_OBJECTS = Gauge("modeldeploy_watched_objects", "Objects held in the operator's caches, by kind.", ["kind"])
RELISTS = Counter(
    "modeldeploy_watch_relists_total",
    "Lists that replaced a cache after its start: a watch that ended with 410 Gone, or the resync.",
    ["kind"],
)
REQUEUES = Counter(
    "modeldeploy_reconcile_requeues_total",
    "Reconciles retried after a transient error, and those given up until the resync.",
    ["outcome"],
)
