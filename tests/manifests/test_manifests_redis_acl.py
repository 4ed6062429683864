"""The Redis ACL in the manifests is kubescaler.redis_acl's table (issue 24): the users files
the Redis pods load, the Secret keys they and the services read, KEDA's login."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rendering import render

from kubescaler import redis_acl

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
#: users file -> server kind
FILES = {
    MANIFESTS / "base" / "redis-users.acl": "state",
    MANIFESTS / "overlays" / "production" / "redis-lock-users.acl": "master",
}


def _rules(path: Path) -> str:
    return "".join(line + "\n" for line in path.read_text().splitlines() if line[:1] != "#")


def test_the_users_files_are_the_table() -> None:
    """After a change of the table: the files' rules lines are redis_acl.rules_file(kind)."""
    for path, kind in FILES.items():
        assert _rules(path) == redis_acl.rules_file(kind), path


def _env(container: dict[str, object]) -> dict[str, dict[str, object]]:
    return {e["name"]: e for e in container.get("env", [])}  # type: ignore[attr-defined, index]


def _secret_key(var: dict[str, object]) -> str:
    """The key of kubescaler-redis (a generated name has a hash after it) ``var`` is from."""
    ref = var["valueFrom"]["secretKeyRef"]  # type: ignore[index]
    assert ref["name"].startswith("kubescaler-redis"), ref
    return str(ref["key"])


def test_every_process_logs_in_as_its_own_user() -> None:
    for overlay in ("dev", "production"):
        rendered = render(overlay)
        for role in ("main", "stream", "lock-keeper"):
            (container,) = rendered.get("Deployment", role)["spec"]["template"]["spec"][
                "containers"
            ]
            env = _env(container)
            assert env["KUBESCALER_REDIS_USERNAME"]["value"] == role
            password = env["KUBESCALER_REDIS_PASSWORD"]
            assert _secret_key(password) == role
            if overlay == "production":
                assert _secret_key(env["KUBESCALER_REDIS_SENTINEL_PASSWORD"]) == "sentinels"


def test_every_redis_starts_with_the_acl_and_protected_mode() -> None:
    for overlay, sets in (("dev", ["redis"]), ("production", ["redis", "redis-lock"])):
        rendered = render(overlay)
        for name in sets:
            spec = rendered.get("StatefulSet", name)["spec"]["template"]["spec"]
            (container,) = spec["containers"]
            script = " ".join(container["args"])
            assert "redis-acl.sh" in script, name
            assert "--protected-mode yes" in script, name
            assert "protected-mode no" not in script
            kind = "master" if name == "redis-lock" else "state"
            env = _env(container)
            for user in redis_acl.users(kind):
                var = env[redis_acl.password_env(user)]
                assert _secret_key(var) == user, (overlay, name, user)
                assert var["valueFrom"]["secretKeyRef"].get("optional", False) == (  # type: ignore[index, union-attr]
                    overlay == "dev" and user in ("replica", "sentinel")
                )


def test_keda_logs_in_as_keda() -> None:
    for overlay in ("dev", "production"):
        rendered = render(overlay)
        trigger = rendered.get("ScaledObject", "lock-keeper")["spec"]["triggers"][0]
        assert trigger["metadata"]["username"] == "keda"
        auth = rendered.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert refs["password"]["key"] == "keda"
        secrets = {s["metadata"]["name"] for s in rendered.of_kind("Secret")}
        if overlay == "dev":  # the generated Secret's hashed name, there too
            assert refs["password"]["name"] in secrets
        else:
            assert refs["sentinelPassword"]["key"] == "sentinels"


def test_the_pods_script_writes_the_tables_acl_file(tmp_path: Path) -> None:
    """base/redis-acl.sh, run as the Redis pods run it, writes what redis_acl.acl_file writes
    for the local servers - the `default` line included (its permissions keep the AOF's
    transactions on a restart, see redis_acl.DEFAULT_OFF)."""
    for path, kind in FILES.items():
        passwords = {user: f"pw-{user}" for user in redis_acl.users(kind)}
        env = {redis_acl.password_env(u): p for u, p in passwords.items()}
        out = tmp_path / f"{kind}.acl"
        subprocess.run(
            ["sh", str(MANIFESTS / "base" / "redis-acl.sh"), str(path), str(out)],
            env={"PATH": os.environ["PATH"], **env},
            check=True,
        )
        assert out.read_text() == redis_acl.acl_file(kind, passwords), kind
