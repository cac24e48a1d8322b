"""The NetworkPolicy child on a real control plane: created, owned, restored after an edit or a delete.

(The local cluster runs no CNI that enforces policies: the object, not the packets, is what is tested here.)
"""

import json

API_KEYS = {"apiKeys": {"secretName": "resnet-keys"}}


def test_network_policy_is_created_owned_and_kept(operator, kube, md) -> None:
    access = {**API_KEYS, "allowedFrom": [{"namespaceSelector": {"matchLabels": {"team": "gateway"}}}]}
    kube.apply(md("resnet", access=access))
    policy = kube.wait_for("network policy", lambda: kube.get("networkpolicy", "resnet"))
    owner = policy["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelDeployment", "resnet", True)
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "resnet"
    clients, scraper = policy["spec"]["ingress"]
    assert clients["from"] == [{"podSelector": {}}, {"namespaceSelector": {"matchLabels": {"team": "gateway"}}}]
    assert scraper["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert clients["ports"] == [{"protocol": "TCP", "port": "http"}]

    uid = policy["metadata"]["uid"]
    kube.run("delete", "networkpolicy", "resnet")
    kube.wait_for(
        "network policy restored",
        lambda: (kube.get("networkpolicy", "resnet") or {}).get("metadata", {}).get("uid") not in (None, uid),
    )

    opened = json.dumps(
        [{"op": "replace", "path": "/spec/ingress/0/from", "value": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    )
    kube.run("patch", "networkpolicy", "resnet", "--type=json", "-p", opened)
    kube.wait_for(
        "edited network policy restored",
        lambda: kube.get("networkpolicy", "resnet")["spec"]["ingress"][0]["from"][0] == {"podSelector": {}},
    )

    deployment = kube.wait_for("deployment", lambda: kube.get("deployment", "resnet"))
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "api-keys", "secret": {"secretName": "resnet-keys", "defaultMode": 420}} in volumes


def test_an_exposed_service_with_keys_is_accepted_and_open_to_any_address(operator, kube, md) -> None:
    kube.apply(md("public", service={"type": "LoadBalancer"}, access=API_KEYS))
    policy = kube.wait_for("network policy", lambda: kube.get("networkpolicy", "public"))
    assert "from" not in policy["spec"]["ingress"][0]
    assert kube.wait_for("service", lambda: kube.get("service", "public"))["spec"]["type"] == "LoadBalancer"
