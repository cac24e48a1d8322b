"""The operator scale benchmark: its pure parts without a cluster, and one tiny end-to-end run that starts its own.

The figures themselves are the benchmark's to print (docs/benchmarks.md), never asserted here.
"""

from collections import Counter

import pytest
from benchmark_scripts import load_benchmark, run_benchmark, table_rows
from modeldeploy_operator.api import ModelDeployment
from modeldeploy_operator.manifests import build_deployment, build_network_policy, build_service
from modeldeploy_operator.manifests.deployment import BuildOptions
from modeldeploy_operator.manifests.labels import SPEC_HASH_ANNOTATION
from modeldeploy_operator.reconcile.drift import stamp
from modeldeploy_operator.settings import DEFAULT_RUNTIME_IMAGE

bench = load_benchmark("operator_scale.py")


def _sample(verb: str, group: str, resource: str, subresource: str, value: str, dry_run: str = "") -> str:
    labels = (
        f'code="200",component="apiserver",dry_run="{dry_run}",group="{group}",resource="{resource}",'
        f'scope="resource",subresource="{subresource}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}"


APISERVER_METRICS = "\n".join(
    [
        "# TYPE apiserver_request_total counter",
        _sample("APPLY", "apps", "deployments", "", "12"),
        _sample("APPLY", "apps", "deployments", "", "3").replace('code="200"', 'code="201"'),
        _sample("APPLY", "apps", "deployments", "", "50", dry_run="All"),
        _sample("LIST", "apps", "deployments", "", "7"),
        _sample("PATCH", "", "pods", "status", "4e+03"),
        _sample("POST", "", "events", "", "9"),
    ]
)


def test_write_requests_are_summed_over_codes_and_skip_reads_and_dry_runs() -> None:
    writes = bench.parse_write_requests(APISERVER_METRICS)
    assert writes == Counter(
        {
            ("apps", "deployments", "", "APPLY"): 15,
            ("", "pods", "status", "PATCH"): 4000,
            ("", "events", "", "POST"): 9,
        }
    )


NO_STAGE = bench.Stage("nothing measured", [])


def _seconds(seconds: float | None, expected: int = 100, reached: int = 100) -> object:
    return bench.Milestone(seconds, reached, expected, limit_s=480.0)


def _operator_result(writes: Counter, operator_events: int, ready: object | None = None) -> object:
    return bench.OperatorResult(
        unrelated_pods=0,
        first_reconcile_s=0.5,
        created=_seconds(1.0),
        ready=ready or _seconds(2.0),
        usage=bench.ProcessUsage(100_000_000, 1.5),
        writes=writes,
        cluster_cpu={"kube-apiserver": 80.0, "etcd": 10.0},
        operator_events=operator_events,
        steady_state_writes=Counter(),
        reconciles=0.0,
        reconcile_errors=0.0,
        stages=(),
    )


def test_the_operator_is_charged_its_own_kinds_and_events_not_the_benchmarks_creates_or_controllers() -> None:
    group, plural = bench.GROUP, bench.PLURAL
    writes = Counter(
        {
            (group, plural, "", "POST"): 10,  # the benchmark's creates
            (group, plural, "", "PATCH"): 10,  # kopf's annotations
            (group, plural, "status", "PATCH"): 20,
            ("apps", "deployments", "", "APPLY"): 10,
            ("apps", "deployments", "status", "PUT"): 30,  # the deployment controller
            ("", "services", "", "APPLY"): 10,
            ("", "events", "", "POST"): 35,  # 5 of them posted by the operator
            ("events.k8s.io", "events", "", "POST"): 10,  # the scheduler's
            ("", "pods", "", "POST"): 10,
        }
    )
    mine = bench.operator_writes(_operator_result(writes, operator_events=5))
    assert mine == Counter(
        {
            (group, plural, "", "PATCH"): 10,
            (group, plural, "status", "PATCH"): 20,
            ("apps", "deployments", "", "APPLY"): 10,
            ("", "services", "", "APPLY"): 10,
            ("", "events", "", "POST"): 5,
        }
    )


def test_steady_state_counts_writes_to_the_operators_kinds_whoever_makes_them() -> None:
    assert bench.is_operator_kind(("apps", "deployments", "scale", "PATCH"))
    assert bench.is_operator_kind(("networking.k8s.io", "networkpolicies", "", "APPLY"))
    # Events are counted by who posted them (the operator's reporting component), not by kind.
    assert not bench.is_operator_kind(("events.k8s.io", "events", "", "POST"))
    assert not bench.is_operator_kind(("", "events", "", "POST"))
    assert bench.is_operator_kind((bench.GROUP, bench.PLURAL, "status", "PATCH"))
    assert not bench.is_operator_kind(("apps", "deployments", "status", "PUT"))
    assert not bench.is_operator_kind(("coordination.k8s.io", "leases", "", "PUT"))


def test_the_floor_creates_what_the_operator_applies_less_the_owner_reference() -> None:
    deployment, service, network_policy = bench.floor_manifests("ns", 7)
    body = {"metadata": {"name": "model-00007", "namespace": "ns", "uid": "u"}, "spec": bench.model_deployment_spec()}
    md = ModelDeployment.from_body(body)
    expected = [
        stamp(build_deployment(md, BuildOptions(DEFAULT_RUNTIME_IMAGE))),
        stamp(build_service(md)),
        stamp(build_network_policy(md, "monitoring")),  # the operator's default scraper namespace
    ]
    for made, operator_made in zip((deployment, service, network_policy), expected, strict=True):
        assert "ownerReferences" not in made["metadata"]
        operator_made["metadata"].pop("ownerReferences")
        # The hash covers the owner's uid, which differs; it is there all the same.
        assert made["metadata"]["annotations"].pop(SPEC_HASH_ANNOTATION)
        operator_made["metadata"]["annotations"].pop(SPEC_HASH_ANNOTATION)
        assert made == operator_made
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_floor_with_model_deployments_posts_each_before_its_children_and_writes_the_operators_first_status() -> (
    None
):
    plain = bench.floor_requests("ns", 7, with_model_deployment=False)
    (md_path, md), *children = bench.floor_requests("ns", 7, with_model_deployment=True)

    assert md_path == f"/apis/{bench.GROUP}/{bench.VERSION}/namespaces/ns/{bench.PLURAL}"
    assert md == bench.model_deployment_manifest(7)
    assert (
        [path for path, _ in children]
        == [path for path, _ in plain]
        == [
            "/apis/apps/v1/namespaces/ns/deployments",
            "/api/v1/namespaces/ns/services",
            "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies",
        ]
    )
    status = bench.first_status("ns", 7)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert status["observedGeneration"] == 1 and conditions["Ready"][0] == "False"
    assert None not in status.values(), "as the apiserver stores a merge patch"


def test_process_usage_from_proc() -> None:
    status = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   70000 kB\n"
    stat = "4242 (python -m (odd)) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 50 0 0 20 0 7 0 100 0 0"
    assert bench.parse_process_usage(status, stat, clock_ticks=100) == bench.ProcessUsage(81920 * 1024, 3.0)


def test_deployment_ready_needs_the_rollout_of_the_current_generation() -> None:
    ready = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 2,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        },
    }
    assert bench.deployment_ready(ready)
    assert not bench.deployment_ready({**ready, "status": {**ready["status"], "observedGeneration": 1}})
    assert not bench.deployment_ready({**ready, "status": {**ready["status"], "availableReplicas": 0}})
    assert not bench.deployment_ready({**ready, "status": {**ready["status"], "replicas": 2}}), "an old pod remains"


def test_a_goal_is_reached_when_every_object_of_every_kind_is() -> None:
    deployments, services = bench.Progress(2, bench.deployment_ready), bench.Progress(2, bench.always)
    created = bench.Goal("created", (deployments, services))
    ready = bench.Goal("ready", (deployments,), done=True)
    deployments.seen.update({"a": 1.0, "b": 4.0})
    services.seen.update({"a": 2.0})
    assert (created.reached(), created.reached_at(), created.last_moment()) == (1, None, 4.0)
    services.seen["b"] = 3.0
    assert (created.reached(), created.reached_at()) == (2, 4.0)
    assert (ready.reached(), ready.reached_at(), ready.last_moment()) == (0, None, None)


def test_a_stage_is_each_objects_time_between_two_moments_of_its_own() -> None:
    seen = {f"model-{i}": float(i) for i in range(101)}
    ready = {name: moment + (10.0 if name == "model-7" else 1.0) for name, moment in seen.items()}
    ready["not-seen"] = 5.0
    stage = bench.Stage.between("seen -> Ready", seen, ready)
    assert len(stage.seconds) == 101, "an object with no start is left out"
    assert str(stage) == "seen -> Ready: median 1.00 s, p90 1.00, p99 1.00, max 10.00 (101 objects)"
    assert str(bench.Stage.between("seen -> Ready", seen, {})) == "seen -> Ready: none"


def test_a_run_that_gave_up_says_how_far_it_got() -> None:
    assert str(_seconds(12.34)) == "12.3"
    assert str(_seconds(None, expected=1000, reached=853)) == ">480 (853/1000)"
    assert str(bench.Milestone(None, 999, 1000, 480.0, last_s=231.44)) == ">480 (999/1000, last at 231.4)"


def test_the_operator_waits_twice_the_floor_within_the_phase_timeout() -> None:
    settings = bench.parse_args([])

    def floor(ready: float | None) -> object:
        return bench.FloorResult(
            created=_seconds(1.0),
            ready=_seconds(ready),
            writes=Counter(),
            cluster_cpu={"kube-apiserver": 50.0, "etcd": 10.0},
            controllers=NO_STAGE,
        )

    assert bench.operator_patience(floor(240.0), settings) == 480.0
    assert bench.operator_patience(floor(20.0), settings) == bench.MIN_PATIENCE_SECONDS
    assert bench.operator_patience(floor(600.0), settings) == settings.phase_timeout_s
    assert bench.operator_patience(floor(None), settings) == settings.phase_timeout_s


def test_summary_row_and_markdown() -> None:
    floor = bench.FloorResult(
        created=_seconds(10.0),
        ready=_seconds(200.0),
        writes=Counter(),
        cluster_cpu={"kube-apiserver": 50.0, "etcd": 10.0},
        controllers=NO_STAGE,
    )
    writes = Counter({("", "services", "", "APPLY"): 100, (bench.GROUP, bench.PLURAL, "status", "PATCH"): 300})
    row = bench.summary_row(100, floor, _operator_result(writes, operator_events=100, ready=_seconds(300.0)))
    assert row == ["100", "0", "0.5", "10.0", "200.0", "1.0", "300.0", "1.50x", "100", "1.5", "60 / 90", "5.00", "0"]
    markdown = bench.render_markdown(bench.SUMMARY_COLUMNS, [row])
    assert (
        markdown.splitlines()[2]
        == "| 100 | 0 | 0.5 | 10.0 | 200.0 | 1.0 | 300.0 | 1.50x | 100 | 1.5 | 60 / 90 | 5.00 | 0 |"
    )
    stuck = bench.summary_row(100, floor, _operator_result(writes, 100, ready=_seconds(None, reached=85)))
    assert stuck[6:8] == [">480 (85/100)", ">2.40x"]
    resource_floor = bench.FloorResult(
        created=_seconds(20.0), ready=_seconds(250.0), writes=Counter({("", "services", "", "POST"): 200}),
        cluster_cpu={"kube-apiserver": 64.0, "etcd": 11.0}, controllers=NO_STAGE,
    )  # fmt: skip
    assert bench.resource_floor_row(100, floor, resource_floor, _operator_result(writes, 100, _seconds(300.0))) == [
        "100", "200.0", "250.0", "300.0", "60 / 75 / 90", "0.00 / 2.00 / 4.00", "1.20x",
    ]  # fmt: skip
    assert bench.cpu_rows(100, floor, resource_floor, _operator_result(writes, 100)) == [
        ["100", "0", "etcd", "10.0", "11.0", "10.0"],
        ["100", "0", "kube-apiserver", "50.0", "64.0", "80.0"],
        ["100", "0", "all", "60.0", "75.0", "90.0"],
    ]
    assert bench.cpu_rows(100, floor, None, _operator_result(writes, 100))[-1] == [
        "100",
        "0",
        "all",
        "60.0",
        "-",
        "90.0",
    ]


def test_bad_arguments_name_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["--n", "0"], "--n: Input should be greater than or equal to 1"),
        (["--concurrency", "300"], "--concurrency: Input should be less than or equal to 256"),
        (["--operator-env", "KUBECONFIG=/elsewhere"], "--operator-env: String should match pattern"),
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err
    assert bench.parse_args([]).sizes == [100, 1000]
    assert bench.parse_args(["--n", "1000"]).gpu_nodes == 20
    among = bench.parse_args(["--n", "1000", "--unrelated-pods", "10000"])
    assert among.operator_cluster_wide and bench.unrelated_nodes(among.unrelated_pods) == 91
    assert bench.unrelated_pod(109)["spec"]["nodeName"] == "cpu-node-0"
    assert bench.unrelated_pod(110)["spec"]["nodeName"] == "cpu-node-1"
    assert bench.parse_args(["--operator-own-core"]).operator_own_core
    assert not bench.parse_args([]).operator_own_core
    assert bench.parse_args(["--operator-env", "MODELDEPLOY_MAX_OBJECTS_IN_FLIGHT=4096"]).operator_env == {
        "MODELDEPLOY_MAX_OBJECTS_IN_FLIGHT": "4096"
    }


IN_FLIGHT = "MODELDEPLOY_MAX_OBJECTS_IN_FLIGHT=2"


def test_a_tiny_run_end_to_end() -> None:
    """Its own cluster, floor and operator runs at N=5, then the operator among 30 churning unrelated pods: the
    benchmark keeps working, and says what it measured."""
    printed = run_benchmark(
        "operator_scale.py",
        "--n",
        "5",
        "--quiet-seconds",
        "3",
        "--operator-env",
        IN_FLIGHT,
        "--unrelated-pods",
        "30",
        "--floor-with-model-deployments",
    )
    rows = table_rows(printed, "| 5 | ")
    summaries = [cells for cells in rows if len(cells) == len(bench.SUMMARY_COLUMNS)]
    assert [cells[1].strip() for cells in summaries] == ["0", "30"], "without, then among unrelated pods"
    for cells in summaries:
        assert not any(">" in cell for cell in cells), "a run that gave up"
        assert cells[2].strip() != "-", "a first reconcile"
        assert cells[-1].strip() == "0", "writes at steady state"
    (resource_floor,) = [cells for cells in rows if len(cells) == len(bench.RESOURCE_FLOOR_COLUMNS)]
    assert not any(">" in cell for cell in resource_floor), "a floor with ModelDeployments that gave up"
    cpu = {(cells[1].strip(), cells[2].strip()): cells[3:] for cells in rows if len(cells) == len(bench.CPU_COLUMNS)}
    assert {process for _, process in cpu} >= {"kube-apiserver", "etcd", "kube-controller-manager", "all"}
    assert all(float(seconds) > 0 for seconds in cpu[("0", "all")]), "each run's control-plane CPU"
    assert "30 unrelated pods on 1 KWOK CPU nodes" in printed
    assert "Kubernetes' defaults (20 QPS, burst 30)" in printed
    assert f"at its defaults, {IN_FLIGHT}." in printed
    assert "operator run: Deployment Ready -> ModelDeployment Ready: median" in printed
    stages = [line for line in printed.splitlines() if " -> " in line]
    assert stages and all(line.endswith("(5 objects)") for line in stages), "every stage of every object timed"
