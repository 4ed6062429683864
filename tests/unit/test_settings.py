"""Settings: environment parsing, errors, and the documented reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubescaler import settings, settings_reference

ROOT = Path(__file__).resolve().parents[2]


def test_environment_overrides_defaults() -> None:
    """KUBESCALER_* variables reach the right fields, lists split on commas."""
    s = settings.load(
        {
            "KUBESCALER_BASE_PORT": "9001",
            "KUBESCALER_REDIS_LOCK_URLS": "redis://a:1, redis://b:2,redis://c:3",
            "KUBESCALER_LOCK_TTL_MS": "1500",
            "KUBESCALER_CASSANDRA_HOSTS": "c1,c2",
            "UNRELATED": "x",
        }
    )
    assert s.base_port == 9001
    assert s.redis.redlock_urls == ["redis://a:1", "redis://b:2", "redis://c:3"]
    assert s.lock.ttl_ms == 1500
    assert s.cassandra.hosts == ["c1", "c2"]
    assert settings.load({}).redis.redlock_urls == [settings.load({}).redis.url]


def test_bad_values_name_the_variable() -> None:
    """A malformed value is reported with the variable's name, not an internal path."""
    with pytest.raises(settings.SettingsError, match="KUBESCALER_BASE_PORT='eighty'"):
        settings.load({"KUBESCALER_BASE_PORT": "eighty"})
    with pytest.raises(settings.SettingsError, match="KUBESCALER_STREAM_RELEASE_ON_DISCONNECT"):
        settings.load({"KUBESCALER_STREAM_RELEASE_ON_DISCONNECT": "yes"})
    assert settings.load(
        {"KUBESCALER_STREAM_RELEASE_ON_DISCONNECT": "true"}
    ).stream.release_on_disconnect


def test_sentinels_name_the_state_redis_and_need_independent_lock_masters() -> None:
    """KUBESCALER_REDIS_SENTINELS is a host:port list (IPv6 in brackets); without Redlock
    masters of its own it is refused, naming both variables; empty is the plain URL."""
    s = settings.load(
        {
            "KUBESCALER_REDIS_SENTINELS": "s-0.s:26379, [::1]:26380",
            "KUBESCALER_REDIS_SENTINEL_MASTER": "state",
            "KUBESCALER_REDIS_LOCK_URLS": "redis://l:6379/0",
        }
    )
    assert s.redis.sentinel_addresses == [("s-0.s", 26379), ("::1", 26380)]
    assert s.redis.sentinel_master == "state"
    assert settings.load({}).redis.sentinel_addresses == []
    with pytest.raises(settings.SettingsError, match=r"KUBESCALER_REDIS_\*: .*LOCK_URLS"):
        settings.load({"KUBESCALER_REDIS_SENTINELS": "s:26379"})
    for bad in ("s", "s:", ":26379", "s:port", "s:70000"):
        with pytest.raises(settings.SettingsError, match="a Sentinel is host:port"):
            settings.load(
                {"KUBESCALER_REDIS_SENTINELS": bad, "KUBESCALER_REDIS_LOCK_URLS": "redis://l"}
            )


def test_the_server_stack_is_one_uvicorn_knows() -> None:
    """KUBESCALER_SERVER_LOOP/HTTP take uvicorn's names of the stacks compared, nothing else."""
    assert (settings.load({}).server.loop, settings.load({}).server.http) == (
        "uvloop",
        "httptools",
    )
    old = settings.load({"KUBESCALER_SERVER_LOOP": "asyncio", "KUBESCALER_SERVER_HTTP": "h11"})
    assert (old.server.loop, old.server.http) == ("asyncio", "h11")
    with pytest.raises(settings.SettingsError, match="KUBESCALER_SERVER_LOOP='auto'"):
        settings.load({"KUBESCALER_SERVER_LOOP": "auto"})


def test_every_setting_has_a_unique_name_and_a_description() -> None:
    rows = settings_reference.rows()
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names))
    assert all(description for _, _, description in rows)


def test_readme_configuration_table_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's configuration table is exactly what `kubescaler config --markdown` prints."""
    from kubescaler.cli import main

    assert main(["config", "--markdown"]) == 0
    table = capsys.readouterr().out.strip()
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- config:start -->", "<!-- config:end -->"
    current = readme[readme.index(start) + len(start) : readme.index(end)].strip()
    assert current == table, "run `uv run kubescaler config --markdown` and paste it into README"


def test_replay_reports_a_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kubescaler replay` with a malformed KUBESCALER_* value: exit 2 naming it, no traceback."""
    from kubescaler.cli import main

    monkeypatch.setenv("KUBESCALER_REDIS_TIMEOUT_S", "soon")
    assert main(["replay", "--verify"]) == 2
    assert "KUBESCALER_REDIS_TIMEOUT_S='soon'" in capsys.readouterr().err
