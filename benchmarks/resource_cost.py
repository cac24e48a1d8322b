"""What one ModelDeployment costs the control plane by itself, and which part of the CRD that cost comes from.

    python benchmarks/resource_cost.py --n 2000 --rounds 2

Starts its own local control plane (real apiserver and etcd, in a temporary directory; always stopped) and
installs the ModelDeployment CRD as shipped, beside copies of it under other API groups that each drop one thing
the apiserver does for every write: the CEL rules; the schema's defaults (with the rules, which read defaulted
fields); the whole schema (spec and status kept as sent). Then, in rounds that alternate the variants, one client
creates N ModelDeployments of each and writes the first status the operator writes for each one (a merge patch
of the status subresource, as the operator sends it), in a fresh namespace, 16 requests in flight. The same is
done with N ConfigMaps holding the same spec and status as strings: a built-in kind, stored as protobuf.

Prints, per variant, the control plane's CPU per object (create and status write together; etcd and
kube-apiserver apart), its time, and the size of one object as the apiserver returns it. No operator runs: this
is what any operator of this resource costs the control plane before it does any work of its own (see "What any
operator of this resource costs" in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

import operator_scale as scale
from modeldeploy_devcluster import ClusterConfig, ClusterConnection, KubectlError, LocalCluster
from modeldeploy_devcluster.waiting import wait_until
from modeldeploy_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

CONFIGMAP = "configmap"
# Each variant of the CRD lives in its own API group, so all can be installed side by side.
CRD_VARIANTS = ("as-shipped", "no-cel-rules", "no-defaults", "no-schema")
VARIANTS = (*CRD_VARIANTS, CONFIGMAP)
CONCURRENCY = 16
# After the last write: lets the apiserver's and etcd's trailing work (compaction of the burst, watch cache)
# count towards the variant that caused it.
SETTLE_SECONDS = 3.0
WARM_UP_OBJECTS = 50


def variant_group(variant: str) -> str:
    return GROUP if variant == "as-shipped" else f"{variant}.resource-cost.modeldeploy.dev"


def _without(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        return {name: _without(value, key) for name, value in node.items() if name != key}
    if isinstance(node, list):
        return [_without(value, key) for value in node]
    return node


def crd_variant(crd: dict[str, Any], variant: str) -> dict[str, Any]:
    """The shipped CRD with what `variant` drops, under the variant's API group."""
    group = variant_group(variant)
    changed = copy.deepcopy(crd)
    changed["metadata"] = {"name": f"{PLURAL}.{group}"}
    changed["spec"]["group"] = group
    for version in changed["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        if variant in ("no-cel-rules", "no-defaults"):
            schema = _without(schema, "x-kubernetes-validations")
        if variant == "no-defaults":
            schema = _without(schema, "default")
        if variant == "no-schema":
            kept_as_sent = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            schema = {"type": "object", "properties": {"spec": kept_as_sent, "status": kept_as_sent}}
        version["schema"]["openAPIV3Schema"] = schema
    return changed


def object_requests(variant: str, namespace: str, index: int) -> tuple[tuple[str, dict[str, Any]], tuple[str, Any]]:
    """The create (path, body) and then the status write (path, merge patch) of object `index`."""
    name = scale.model_deployment_name(index)
    status = scale.first_status(namespace, index)
    if variant == CONFIGMAP:
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        data = {"spec": json.dumps(scale.model_deployment_spec())}
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
        return (path, configmap), (f"{path}/{name}", {"data": {"status": json.dumps(status)}})
    group = variant_group(variant)
    path = f"/apis/{group}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    manifest = {**scale.model_deployment_manifest(index), "apiVersion": f"{group}/{VERSION}"}
    return (path, manifest), (f"{path}/{name}/status", {"status": status})


@dataclass(frozen=True)
class Measured:
    variant: str
    seconds: float
    cpu_by_process: dict[str, float]
    object_bytes: int

    def per_object_ms(self, n: int, process: str | None = None) -> float:
        cpu = sum(self.cpu_by_process.values()) if process is None else self.cpu_by_process.get(process, 0.0)
        return 1000 * cpu / n


async def measure(api: scale.ApiServer, cpu: scale.ClusterCpu, variant: str, namespace: str, n: int) -> Measured:
    requests = [object_requests(variant, namespace, index) for index in range(n)]
    before = cpu.by_process()
    started = time.monotonic()
    await scale.create_all(api, (create for create, _ in requests), CONCURRENCY)
    await scale.send_all((api.merge_patch(path, patch) for _, (path, patch) in requests), CONCURRENCY)
    seconds = time.monotonic() - started
    await asyncio.sleep(SETTLE_SECONDS)
    after = cpu.by_process()
    (create_path, create_body), _ = requests[0]
    stored = await api.http.get(f"{create_path}/{create_body['metadata']['name']}")
    stored.raise_for_status()
    return Measured(variant, seconds, {name: after[name] - before[name] for name in after}, len(stored.content))


COLUMNS = (
    "variant",
    "object bytes",
    "cluster CPU ms/object",
    "kube-apiserver ms/object",
    "etcd ms/object",
    "seconds",
    "vs as shipped",
)


def report_rows(measured: list[Measured], n: int) -> list[list[str]]:
    """One row per variant, each round's figure in order (rounds alternate the variants)."""

    def figures(variant: str, figure: Callable[[Measured], float], digits: int = 1) -> str:
        return ", ".join(f"{figure(m):.{digits}f}" for m in measured if m.variant == variant)

    def mean_ms(variant: str) -> float:
        runs = [m.per_object_ms(n) for m in measured if m.variant == variant]
        return sum(runs) / len(runs)

    shipped = mean_ms("as-shipped")
    rows = []
    for variant in VARIANTS:
        rows.append(
            [
                variant,
                figures(variant, lambda m: m.object_bytes, 0),
                figures(variant, lambda m: m.per_object_ms(n)),
                figures(variant, lambda m: m.per_object_ms(n, "kube-apiserver")),
                figures(variant, lambda m: m.per_object_ms(n, "etcd")),
                figures(variant, lambda m: m.seconds),
                f"{mean_ms(variant) / shipped:.2f}x",
            ]
        )
    return rows


async def run_rounds(cluster: ClusterConnection, local: LocalCluster, n: int, rounds: int) -> list[Measured]:
    tls = ssl.create_default_context(cafile=str(local.paths.pem("ca", "crt")))
    tls.load_cert_chain(local.paths.pem("admin", "crt"), local.paths.pem("admin", "key"))
    api = scale.ApiServer(cluster.server, tls, CONCURRENCY)
    cpu = scale.ClusterCpu(local)
    measured = []
    try:
        for variant in VARIANTS:  # the first writes of a kind pay for caches and connections: not measured
            await api.create_namespace(f"{variant}-warm-up")
            await measure(api, cpu, variant, f"{variant}-warm-up", WARM_UP_OBJECTS)
        for round_index in range(rounds):
            for variant in VARIANTS:
                namespace = f"{variant}-{round_index}"
                await api.create_namespace(namespace)
                measured.append(await measure(api, cpu, variant, namespace, n))
                log(f"round {round_index + 1}, {variant}: {measured[-1].per_object_ms(n):.1f} ms per object")
    finally:
        await api.close()
    return measured


def install_variants(cluster: ClusterConnection, directory: Path) -> None:
    crd = yaml.safe_load(scale.CRD.read_text())
    for variant in CRD_VARIANTS:
        path = directory / f"{variant}.yaml"
        path.write_text(yaml.safe_dump(crd_variant(crd, variant)))
        cluster.kubectl("apply", "--server-side", "-f", str(path))
        name = f"{PLURAL}.{variant_group(variant)}"
        # kubectl wait fails at once on a CRD that has no conditions yet: ask again until it has them.
        wait_until(
            partial(cluster.kubectl, "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s"),
            f"the {variant} CRD Established",
            timeout=60,
            ignore=(KubectlError,),
        )


def log(message: str) -> None:
    print(f"resource_cost: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="objects of each variant per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each over every variant in turn")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="resource-cost-") as scratch:
        # Nothing here is scheduled: one simulated node, the fewest the cluster starts with.
        local = LocalCluster(Path(scratch) / "cluster", ClusterConfig(gpu_nodes=0, cpu_nodes=1, real_node=False))
        try:
            cluster = local.start()
            install_variants(cluster, Path(scratch))
            measured = asyncio.run(run_rounds(cluster, local, args.n, args.rounds))
        finally:
            local.down()
    print(
        f"One ModelDeployment's create and first status write, by CRD variant: N = {args.n} objects of each "
        f"per round, {args.rounds} rounds alternating the variants, one client, {CONCURRENCY} requests in flight; "
        "each cell lists the rounds in order."
    )
    print(scale.render_markdown(COLUMNS, report_rows(measured, args.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
