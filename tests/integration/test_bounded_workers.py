"""The bound on objects in flight (kopf's worker limit) queues work; it never stalls it."""

BURST = 6


def test_a_burst_goes_ready_with_one_object_of_each_kind_in_flight(start_operator, kube, md) -> None:
    """With one slot per kind, every object waits for the one before it to go idle and give its slot back."""
    operator = start_operator(MODELDEPLOY_MAX_OBJECTS_IN_FLIGHT="1")
    names = [f"burst-{index}" for index in range(BURST)]
    for name in names:
        kube.apply(md(name, replicas=1))
    for name in names:
        condition = kube.wait_condition(name, "Ready", "True")
        assert condition["observedGeneration"] == 1
    applies = operator.metric("modeldeploy_child_applies_total")
    assert applies == 3 * BURST, "a Deployment, a Service and a NetworkPolicy each"
