"""The resource cost benchmark: its CRD variants and report without a cluster, and one tiny run that starts its own.

The figures themselves are the benchmark's to print (docs/benchmarks.md), never asserted here.
"""

import yaml
from benchmark_scripts import load_benchmark, run_benchmark, table_rows
from modeldeploy_operator.api.v1alpha1 import GROUP, PLURAL

cost = load_benchmark("resource_cost.py")
SHIPPED = yaml.safe_load(cost.scale.CRD.read_text())


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in _keys(value)}
    if isinstance(node, list):
        return {key for value in node for key in _keys(value)}
    return set()


def _schema(crd: dict) -> dict:
    (version,) = crd["spec"]["versions"]
    schema: dict = version["schema"]["openAPIV3Schema"]
    return schema


def test_as_shipped_is_the_crd_itself() -> None:
    variant = cost.crd_variant(SHIPPED, "as-shipped")
    assert variant["metadata"] == {"name": f"{PLURAL}.{GROUP}"}
    assert variant["spec"] == SHIPPED["spec"]


def test_each_variant_drops_only_what_it_names_under_its_own_group() -> None:
    shipped_keys = _keys(_schema(SHIPPED))
    assert {"x-kubernetes-validations", "default"} <= shipped_keys

    no_rules = cost.crd_variant(SHIPPED, "no-cel-rules")
    assert no_rules["spec"]["group"] == "no-cel-rules.resource-cost.modeldeploy.dev"
    assert no_rules["metadata"]["name"] == f"{PLURAL}.no-cel-rules.resource-cost.modeldeploy.dev"
    rule_keys = {"x-kubernetes-validations", "rule", "message", "messageExpression", "fieldPath", "reason"}
    assert "x-kubernetes-validations" not in _keys(_schema(no_rules))
    assert shipped_keys - _keys(_schema(no_rules)) <= rule_keys
    assert "default" in _keys(_schema(no_rules))
    assert no_rules["spec"]["names"] == SHIPPED["spec"]["names"]

    no_defaults = cost.crd_variant(SHIPPED, "no-defaults")
    assert not {"x-kubernetes-validations", "default"} & _keys(_schema(no_defaults))
    assert shipped_keys - _keys(_schema(no_defaults)) <= rule_keys | {"default"}
    spec_fields = _schema(SHIPPED)["properties"]["spec"]["properties"]
    assert _schema(no_defaults)["properties"]["spec"]["properties"].keys() == spec_fields.keys()

    kept_as_sent = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert _schema(cost.crd_variant(SHIPPED, "no-schema")) == {
        "type": "object",
        "properties": {"spec": kept_as_sent, "status": kept_as_sent},
    }
    assert _schema(SHIPPED) != _schema(no_rules), "the shipped CRD is left as it was"


def test_a_variant_writes_what_the_operator_writes_to_its_own_group() -> None:
    (create_path, manifest), (status_path, patch) = cost.object_requests("no-defaults", "ns", 7)
    group = "no-defaults.resource-cost.modeldeploy.dev"
    assert create_path == f"/apis/{group}/v1alpha1/namespaces/ns/{PLURAL}"
    assert manifest["apiVersion"] == f"{group}/v1alpha1"
    assert manifest["spec"] == cost.scale.model_deployment_spec()
    assert status_path == f"{create_path}/model-00007/status"
    assert set(patch) == {"status"} and patch["status"]["modelName"] == "model-00007"

    (create_path, configmap), (patch_path, patch) = cost.object_requests("configmap", "ns", 7)
    assert create_path == "/api/v1/namespaces/ns/configmaps"
    assert patch_path == "/api/v1/namespaces/ns/configmaps/model-00007"
    assert set(configmap["data"]) == {"spec"} and set(patch["data"]) == {"status"}


def test_the_report_lists_each_round_and_compares_the_means_with_the_crd_as_shipped() -> None:
    def measured(variant: str, apiserver_s: float) -> object:
        return cost.Measured(variant, 2.0, {"kube-apiserver": apiserver_s, "etcd": 1.0}, 4000)

    runs = [measured(variant, 9.0) for variant in cost.VARIANTS]
    runs += [measured("as-shipped", 11.0), measured("no-cel-rules", 11.0), measured("no-defaults", 4.0)]
    runs += [measured(variant, 3.0) for variant in ("no-schema", "configmap")]
    rows = {row[0]: row[1:] for row in cost.report_rows(runs, 1000)}
    assert list(rows) == list(cost.VARIANTS)
    assert rows["as-shipped"] == ["4000, 4000", "10.0, 12.0", "9.0, 11.0", "1.0, 1.0", "2.0, 2.0", "1.00x"]
    assert rows["no-defaults"][1:] == ["10.0, 5.0", "9.0, 4.0", "1.0, 1.0", "2.0, 2.0", "0.68x"]


def test_a_tiny_run_end_to_end() -> None:
    """Its own cluster, every variant written and measured: the benchmark keeps working and prints its table."""
    rows = table_rows(run_benchmark("resource_cost.py", "--n", "5", "--rounds", "1"))
    assert [cells[0].strip() for cells in rows[1:]] == list(cost.VARIANTS)
    for cells in rows[1:]:
        assert len(cells) == len(cost.COLUMNS)
        assert int(cells[1]) > 0, "an object read back"
