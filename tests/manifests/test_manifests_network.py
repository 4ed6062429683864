"""Who may reach whom in the rendered manifests: NetworkPolicies (default-deny in and out; each
path written once) and the entry point's routes (only the public paths, streams never timed
out)."""

from __future__ import annotations

from typing import Any

from rendering import Rendered

#: public paths (entry point) and where they go; everything else stays inside the cluster
PUBLIC_MAIN = ["/main/users", "/main/profiles", "/main/suggested", "/main/login", "/main/testdata"]
PUBLIC_STREAM = ["/stream", "/index", "/", "/dashboard", "/instance", "/assets", "/auth/session"]


# ------------------------------------------------------------------ NetworkPolicies


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
    return True


def _pod_labels(rendered: Rendered, name: str) -> dict[str, str]:
    for w in rendered.workloads():
        if w["metadata"]["name"] == name:
            return dict(w["spec"]["template"]["metadata"]["labels"])
    raise AssertionError(f"no workload {name}")


def _admitted(rendered: Rendered, target: str, port: int) -> set[str]:
    """Names of the namespace's workloads whose pods may open `port` on `target`'s pods, plus
    "<outside:...>" for peers outside the namespace."""
    target_labels = _pod_labels(rendered, target)
    policies = [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if _selects(p["spec"]["podSelector"], target_labels)
    ]
    assert policies, f"no NetworkPolicy selects {target}"
    out: set[str] = set()
    for p in policies:
        for rule in p["spec"].get("ingress", []):
            ports = [r["port"] for r in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            for peer in rule.get("from", [{}]):
                if "namespaceSelector" in peer:
                    out.add(f"<outside:{peer}>")
                    continue
                for w in rendered.workloads():
                    labels = w["spec"]["template"]["metadata"]["labels"]
                    if _selects(peer.get("podSelector", {}), labels):
                        out.add(w["metadata"]["name"])
    return out


def test_default_deny_in_and_out_everywhere(rendered: Rendered) -> None:
    deny = rendered.get("NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    assert "egress" not in deny


def test_only_base_reaches_cassandra(rendered: Rendered) -> None:
    assert _admitted(rendered, "cassandra", 9042) == {"base"}


def test_only_main_stream_and_lock_keeper_reach_redis(rendered: Rendered) -> None:
    """... and, where KEDA scales the lock-keeper, the KEDA operator reading the backlog; where
    the state Redis has replicas and Sentinels (production), its own servers and Sentinels
    reach it (replication, watching, failover) and the same clients reach the Sentinels; no
    server or Sentinel of it reaches the Redlock masters."""
    stores = {"redis": {"main", "stream", "lock-keeper"}}
    if rendered.production:
        stores = {
            "redis": {"main", "stream", "lock-keeper", "redis", "redis-sentinel"},
            "redis-lock": {"main", "stream", "lock-keeper"},
            "redis-sentinel": {"main", "stream", "lock-keeper", "redis", "redis-sentinel"},
        }
    for store, inside in stores.items():
        port = 26379 if store == "redis-sentinel" else 6379
        admitted = _admitted(rendered, store, port)
        outside = {a for a in admitted if a.startswith("<outside")}
        assert admitted - outside == inside, store
        for peer in outside:
            assert "keda-operator" in peer, peer
            assert "'keda'" in peer, peer


def test_base_only_from_main_and_stream(rendered: Rendered) -> None:
    admitted = _admitted(rendered, "base", 8081)
    inside = {a for a in admitted if not a.startswith("<outside")}
    assert inside == {"main", "stream"}
    # the only other peer is Prometheus (scraping /metrics)
    for peer in admitted - inside:
        assert "'prometheus'" in peer, peer


def _egress_rules(rendered: Rendered, source: str) -> list[dict[str, Any]] | None:
    """Egress rules that apply to `source`'s pods; None when no policy restricts its egress."""
    labels = _pod_labels(rendered, source)
    policies = [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if "Egress" in p["spec"].get("policyTypes", [])
        and _selects(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return None
    return [rule for p in policies for rule in p["spec"].get("egress", [])]


#: the one egress rule out of the namespace every pod has: the kube-dns pods, by port name
DNS_RULE = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"port": "dns", "protocol": "UDP"}, {"port": "dns-tcp", "protocol": "TCP"}],
}
#: the API server (no pod: any address, its two ports)
API_RULE = {"ports": [{"port": 443}, {"port": 6443}]}
IN_NAMESPACE_RULE = {"to": [{"podSelector": {}}]}


def test_egress_leaves_the_namespace_only_for_dns_and_the_api_server(rendered: Rendered) -> None:
    """Every pod may open connections to the namespace's pods (whom they admit is their
    ingress policies' say: each path inside is written once, where it is received) and ask the
    kube-dns pods (on their ports by name: a policy sees the pod's port after the Service's
    DNAT); only stream (its pod-deletion-cost) and Prometheus (its pod discovery) reach the API
    server; nothing else leaves."""
    api_clients = {"stream"} | ({"prometheus"} if _has(rendered, "prometheus") else set())
    for w in rendered.workloads():
        name = w["metadata"]["name"]
        rules = _egress_rules(rendered, name)
        assert rules is not None, f"{name}'s egress is not restricted"
        assert IN_NAMESPACE_RULE in rules, name
        assert DNS_RULE in rules, name
        assert (API_RULE in rules) == (name in api_clients), name
        others = [r for r in rules if r not in (IN_NAMESPACE_RULE, DNS_RULE, API_RULE)]
        if name == "prometheus":  # kube-state-metrics, where it is installed
            assert others == [
                {
                    "to": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {
                                "matchLabels": {"app.kubernetes.io/name": "kube-state-metrics"}
                            },
                        }
                    ],
                    "ports": [{"port": "http-metrics"}],
                }
            ]
        else:
            assert others == [], name


def _has(rendered: Rendered, name: str) -> bool:
    return any(w["metadata"]["name"] == name for w in rendered.workloads())


def test_no_egress_rule_names_a_pod_of_the_namespace(rendered: Rendered) -> None:
    """A path inside the namespace is written once, in the receiver's ingress policy: no
    egress rule repeats it by naming the namespace's pods."""
    for policy in rendered.of_kind("NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                assert "namespaceSelector" in peer or peer == {"podSelector": {}}, (
                    policy["metadata"]["name"],
                    peer,
                )


def test_lock_keeper_takes_no_traffic_but_scrapes(rendered: Rendered) -> None:
    admitted = _admitted(rendered, "lock-keeper", 8085)
    assert admitted
    assert all("'prometheus'" in a for a in admitted), admitted


# ------------------------------------------------------------------ entry point


def _route_paths(rendered: Rendered) -> dict[str, str]:
    """public path prefix -> backend Service name, from HTTPRoutes or Ingresses."""
    out = {}
    for route in rendered.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            if "backendRefs" not in rule:  # https-redirect: answers itself, reaches nothing
                continue
            (backend,) = {b["name"] for b in rule["backendRefs"]}
            for match in rule["matches"]:
                out[match["path"]["value"]] = backend
    for ing in rendered.of_kind("Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                out[p["path"].rstrip("/") or "/"] = p["backend"]["service"]["name"]
    return out


def test_entry_point_routes_only_the_public_paths(rendered: Rendered) -> None:
    """/main/<public> -> main; streams and the web client -> stream; nothing reaches base or
    any /metrics or /readyz."""
    routes = _route_paths(rendered)
    expected = dict.fromkeys(PUBLIC_MAIN, "main") | dict.fromkeys(PUBLIC_STREAM, "stream")
    assert routes == expected


def test_gateway_rewrites_the_main_prefix_and_never_times_out_streams(dev: Rendered) -> None:
    main = dev.get("HTTPRoute", "main")
    for rule in main["spec"]["rules"]:
        prefix = rule["matches"][0]["path"]["value"]
        rewrite = rule["filters"][0]["urlRewrite"]["path"]
        assert rewrite["type"] == "ReplacePrefixMatch"
        assert rewrite["replacePrefixMatch"] == prefix.removeprefix("/main")
    stream_rule = dev.get("HTTPRoute", "stream")["spec"]["rules"][0]
    assert stream_rule["timeouts"] == {"request": "0s", "backendRequest": "0s"}


def test_the_ingress_is_controller_neutral_and_tells_nginx_not_to_buffer(classic: Rendered) -> None:
    """No class (the cluster's default serves it), no rewrite, Prefix and Exact paths only
    (every controller implements them alike); ingress-nginx is told not to buffer SSE or time
    it out, which other controllers ignore."""
    [ingress] = classic.of_kind("Ingress")
    assert "ingressClassName" not in ingress["spec"]
    ann = ingress["metadata"]["annotations"]
    assert not [a for a in ann if "rewrite" in a or "regex" in a]
    kinds = {p["pathType"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert kinds == {"Prefix", "Exact"}
    assert ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
