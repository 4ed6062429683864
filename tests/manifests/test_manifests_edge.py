"""Issue 24 in the manifests: the stream account's admission policy, HTTPS at the entry point
with HTTP redirected, and production's switch that refuses placeholder secrets."""

from __future__ import annotations

import base64

import pytest
from rendering import Rendered, render

from kubescaler import settings, settings_production

TLS_SECRET = "kubescaler-tls"


def test_the_stream_account_is_held_to_its_own_pods_deletion_cost(rendered: Rendered) -> None:
    """Every overlay has the policy, bound with Deny in the namespace it labels, matching the
    stream account, checking the pod name the token carries and every other field."""
    (policy,) = rendered.of_kind("ValidatingAdmissionPolicy")
    (binding,) = rendered.of_kind("ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
    (namespace,) = rendered.of_kind("Namespace")
    assert selector.items() <= namespace["metadata"]["labels"].items()
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (condition,) = spec["matchConditions"]
    assert "':stream'" in condition["expression"]
    text = str(spec["variables"]) + str(spec["validations"])
    assert "authentication.kubernetes.io/pod-name" in text
    assert "controller.kubernetes.io/pod-deletion-cost" in text
    for field in ("labels", "ownerReferences", "finalizers", "object.spec == oldObject.spec"):
        assert field in text, field
    assert all(v["reason"] == "Forbidden" for v in spec["validations"])


def test_the_gateway_serves_https_and_only_redirects_http(rendered: Rendered) -> None:
    """The Gateway's https listener serves kubescaler-tls; every app route attaches to it
    alone; the http listener has the one redirect route. The Ingress serves the same Secret."""
    gateways = rendered.of_kind("Gateway")
    if not gateways:
        (ingress,) = rendered.of_kind("Ingress")
        assert ingress["spec"]["tls"] == [{"secretName": TLS_SECRET}]
        return
    (gateway,) = gateways
    listeners = {lst["name"]: lst for lst in gateway["spec"]["listeners"]}
    assert (listeners["http"]["port"], listeners["https"]["port"]) == (80, 443)
    assert listeners["https"]["tls"]["certificateRefs"] == [{"kind": "Secret", "name": TLS_SECRET}]
    routes = {r["metadata"]["name"]: r for r in rendered.of_kind("HTTPRoute")}
    redirect = routes.pop("https-redirect")
    assert [p["sectionName"] for p in redirect["spec"]["parentRefs"]] == ["http"]
    (rule,) = redirect["spec"]["rules"]
    assert rule["filters"][0]["requestRedirect"] == {"scheme": "https", "statusCode": 301}
    assert routes
    for name, route in routes.items():
        assert [p.get("sectionName") for p in route["spec"]["parentRefs"]] == ["https"], name


def test_production_alone_is_production(rendered: Rendered) -> None:
    conf = settings.load(rendered.config())
    assert (conf.environment == "production") == rendered.production


def _secret(rendered: Rendered, name: str) -> dict[str, str]:
    [doc] = [d for d in rendered.of_kind("Secret") if d["metadata"]["name"].startswith(name)]
    return {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}


#: a production start where every secret is a generated one
GENERATED = {
    "KUBESCALER_ENVIRONMENT": "production",
    "KUBESCALER_ADMIN_TOKEN": "a" * 40,
    "KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY": "b" * 40,
    "KUBESCALER_CASSANDRA_USERNAME": "base",
    "KUBESCALER_CASSANDRA_PASSWORD": "c" * 40,
    "KUBESCALER_CASSANDRA_ADMIN_PASSWORD": "d" * 40,
    "KUBESCALER_REDIS_USERNAME": "someone",
    "KUBESCALER_REDIS_PASSWORD": "e" * 40,
}


@pytest.mark.parametrize("overlay", ["dev", "classic"])
def test_the_dev_secrets_would_stop_every_process_in_production(overlay: str) -> None:
    """Each placeholder of dev and classic (their two Secrets), put alone among generated
    secrets, stops the process that uses it once KUBESCALER_ENVIRONMENT=production, naming
    the variable; with generated secrets only, every process starts."""
    rendered = render(overlay)
    secrets = _secret(rendered, "kubescaler-secrets")
    redis = _secret(rendered, "kubescaler-redis")
    cases = [
        ("base", "KUBESCALER_ADMIN_TOKEN", secrets["admin-token"]),
        ("main", "KUBESCALER_ADMIN_TOKEN", secrets["admin-token"]),
        ("stream", "KUBESCALER_ADMIN_TOKEN", secrets["admin-token"]),
        ("base", "KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY", secrets["cassandra-page-token-key"]),
        ("base", "KUBESCALER_CASSANDRA_PASSWORD", secrets["cassandra-password"]),
        (
            "cassandra-roles",
            "KUBESCALER_CASSANDRA_ADMIN_PASSWORD",
            secrets["cassandra-admin-password"],
        ),
        ("main", "KUBESCALER_REDIS_PASSWORD", redis["main"]),
        ("stream", "KUBESCALER_REDIS_PASSWORD", redis["stream"]),
        ("lock-keeper", "KUBESCALER_REDIS_PASSWORD", redis["lock-keeper"]),
    ]
    for process, variable, value in cases:
        settings_production.check(settings.load(GENERATED), process)
        with pytest.raises(settings.SettingsError, match=rf"^{variable} is a placeholder"):
            settings_production.check(settings.load({**GENERATED, variable: value}), process)
