"""KUBESCALER_ENVIRONMENT=production: placeholder secrets refused, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubescaler import settings, settings_production

GOOD = "x" * 40
PROD = {"KUBESCALER_ENVIRONMENT": "production"}


def _check(env: dict[str, str], process: str) -> None:
    settings_production.check(settings.load(env), process)


def test_development_accepts_the_defaults_and_placeholders() -> None:
    """The local system's defaults and the dev overlay's placeholders start outside production."""
    dev = {"KUBESCALER_ADMIN_TOKEN": "dev-admin-token-CHANGE-ME"}
    for process in ("base", "main", "stream", "lock-keeper"):
        _check(dev, process)
        _check({}, process)


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("KUBESCALER_ADMIN_TOKEN", "dev-admin-token-CHANGE-ME", "contains CHANGE-ME"),
        ("KUBESCALER_ADMIN_TOKEN", "abc-change-me-0123456789", "contains CHANGE-ME"),
        ("KUBESCALER_ADMIN_TOKEN", "", "empty"),
        ("KUBESCALER_ADMIN_TOKEN", "short-token", r"too short \(11 characters"),
        ("KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY", "kubescaler-local", "the code's default"),
        ("KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY", "dev-page-token-key-CHANGE-ME", "CHANGE-ME"),
    ],
)
def test_production_refuses_a_placeholder_naming_it(variable: str, value: str, why: str) -> None:
    """base refuses each kind of placeholder, and the message names the variable and why."""
    env = {
        **PROD,
        "KUBESCALER_ADMIN_TOKEN": GOOD,
        "KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY": GOOD,
        variable: value,
    }
    with pytest.raises(settings.SettingsError, match=rf"^{variable} is .*{why}"):
        _check(env, "base")


def test_production_checks_only_the_secrets_a_process_uses() -> None:
    """The page-token key's default stops base, not main; the lock-keeper holds no secret;
    the HMAC key counts only when HS* tokens are verified with it."""
    env = {**PROD, "KUBESCALER_ADMIN_TOKEN": GOOD}
    with pytest.raises(settings.SettingsError, match="KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY"):
        _check(env, "base")
    _check(env, "main")
    _check(PROD, "lock-keeper")
    auth = {**env, "KUBESCALER_AUTH_ENABLED": "true", "KUBESCALER_AUTH_SECRET": "secret"}
    with pytest.raises(settings.SettingsError, match="KUBESCALER_AUTH_SECRET is too short"):
        _check(auth, "stream")
    _check({**auth, "KUBESCALER_AUTH_ALGORITHMS": "ES256"}, "stream")
    _check({**auth, "KUBESCALER_AUTH_SECRET": GOOD}, "stream")


def test_production_with_real_secrets_starts_checks() -> None:
    """Generated secrets pass for every process."""
    env = {
        **PROD,
        "KUBESCALER_ADMIN_TOKEN": GOOD,
        "KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY": "y" * 32,
        "KUBESCALER_AUTH_ENABLED": "true",
        "KUBESCALER_AUTH_SECRET": "z" * 32,
    }
    for process in ("base", "main", "stream", "lock-keeper"):
        _check(env, process)


def test_the_environment_is_development_or_production() -> None:
    assert settings.load({}).environment == "development"
    with pytest.raises(settings.SettingsError, match="KUBESCALER_ENVIRONMENT='prod'"):
        settings.load({"KUBESCALER_ENVIRONMENT": "prod"})


def test_kubescaler_base_in_production_with_the_dev_secrets_exits_with_one_line() -> None:
    """A real `kubescaler base` process with the dev overlay's Secret and production on: exit 2
    before it connects to anything, one line on stderr naming the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBESCALER_")}
    env |= {
        **PROD,
        "KUBESCALER_ADMIN_TOKEN": "dev-admin-token-CHANGE-ME",
        "KUBESCALER_CASSANDRA_PAGE_TOKEN_KEY": "dev-page-token-key-CHANGE-ME",
        # nothing listens here: a process that got past the check would fail differently
        "KUBESCALER_CASSANDRA_HOSTS": "127.0.0.1",
        "KUBESCALER_CASSANDRA_PORT": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "kubescaler.cli", "base", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("kubescaler base: KUBESCALER_ADMIN_TOKEN is a placeholder")
    assert "KUBESCALER_ENVIRONMENT=production" in lines[0]
