"""The operator's own caches of the ModelDeployments and what they own: list + watch per kind.

Written by hand rather than with kopf's indexes for two reasons, both read in kopf 1.45.2's source:
- kopf's indexes never converge: after a watch ends with 410 Gone, kopf lists again and re-indexes what it
  lists, but keeps the entries of objects deleted while the watch was away (`OperatorIndexers` only drops an
  entry on a DELETED event). A deleted crash-looping pod kept its ModelDeployment Degraded, and a deleted
  ModelDeployment stayed in the index, so the resync re-created its children. Here a list REPLACES the store.
- kopf can select on the apiserver (`settings.watching.label_selectors`), but a kopf watch runs every object
  through a per-object worker and holds the operator's readiness until each is indexed: at 10,000 unrelated pods
  the first reconcile came 300 s after the start. Here the children are selected on the apiserver
  (app.kubernetes.io/managed-by=modeldeploy-operator), kept as slim snapshots, and the initial list triggers
  nothing (every ModelDeployment is reconciled once all the caches have listed: reconcile/handlers.py).

What is still watched unselected, and what it costs: ModelDeployments (all of them are ours) and
HorizontalPodAutoscalers (users create them without our labels): every HPA in scope is listed and streamed, and
kept as its scale target's key only (tens of bytes each).
"""
