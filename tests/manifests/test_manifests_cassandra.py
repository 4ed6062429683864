"""Cassandra runs authenticated in every overlay (issue 24): logins and grants on, the roles made
by a sidecar of each node, base with its own role's password and never the admin's."""

from __future__ import annotations

from rendering import IMAGE, Rendered

from kubescaler import cli

AUTH_OPTIONS = (
    "-Dcassandra.config.allow_system_properties=true",
    "-Dcassandra.settings.authenticator=PasswordAuthenticator",
    "-Dcassandra.settings.authorizer=CassandraAuthorizer",
    "-Dcassandra.settings.role_manager=CassandraRoleManager",
)


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _secret_key(entry: dict) -> tuple[str, str]:
    """(Secret, key) of a variable, the Secret without the hash suffix a generator adds."""
    ref = entry["valueFrom"]["secretKeyRef"]
    name = ref["name"]
    return ("kubescaler-secrets" if name.startswith("kubescaler-secrets") else name), ref["key"]


def test_cassandra_turns_logins_and_grants_on(rendered: Rendered) -> None:
    """As system properties the JVM picks up itself, in every overlay (and once)."""
    spec = rendered.get("StatefulSet", "cassandra")["spec"]["template"]["spec"]
    (cassandra,) = [c for c in spec["containers"] if c["name"] == "cassandra"]
    options = [e for e in cassandra["env"] if e["name"] == "JAVA_TOOL_OPTIONS"]
    assert len(options) == 1, "one JAVA_TOOL_OPTIONS (a second would hide the first)"
    assert set(AUTH_OPTIONS) <= set(options[0]["value"].split())


def test_each_cassandra_node_makes_the_roles_with_the_admin_password(rendered: Rendered) -> None:
    spec = rendered.get("StatefulSet", "cassandra")["spec"]["template"]["spec"]
    (roles,) = [c for c in spec["initContainers"] if c["name"] == "roles"]
    assert roles["restartPolicy"] == "Always"  # a sidecar for the pod's life, not a one-off
    assert roles["image"].split(":")[0] == IMAGE
    args = cli.build_parser().parse_args(roles["args"])
    assert args.command == "cassandra-roles"
    assert args.local  # its own node over 127.0.0.1: other nodes' CQL admits base alone
    assert args.every > 0  # again and again: an empty replacement gets its roles back
    env = _env(roles)
    assert _secret_key(env["KUBESCALER_CASSANDRA_ADMIN_PASSWORD"]) == (
        "kubescaler-secrets",
        "cassandra-admin-password",
    )
    assert _secret_key(env["KUBESCALER_CASSANDRA_PASSWORD"]) == (
        "kubescaler-secrets",
        "cassandra-password",
    )
    assert env["KUBESCALER_CASSANDRA_ADMIN_USERNAME"]["value"]
    hardened = roles["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True
    assert hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"]["drop"] == ["ALL"]
    assert hardened["runAsUser"] != 0


def test_base_logs_in_as_its_role_and_nobody_else_sees_the_admin_password(
    rendered: Rendered,
) -> None:
    config = rendered.config()
    assert config["KUBESCALER_CASSANDRA_USERNAME"]
    for forbidden in ("PASSWORD", "ADMIN_PASSWORD", "ADMIN_USERNAME"):
        assert f"KUBESCALER_CASSANDRA_{forbidden}" not in config, "secrets come from a Secret"
    base = rendered.get("Deployment", "base")["spec"]["template"]["spec"]["containers"][0]
    assert _secret_key(_env(base)["KUBESCALER_CASSANDRA_PASSWORD"]) == (
        "kubescaler-secrets",
        "cassandra-password",
    )
    for w, spec in rendered.pod_specs():
        for c in spec["containers"] + spec.get("initContainers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef", {})
                if ref.get("key") == "cassandra-admin-password":
                    assert (w["metadata"]["name"], c["name"]) == ("cassandra", "roles")
