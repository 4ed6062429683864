"""`kubescaler token USER [--admin] [--ttl]`: local tokens the services accept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kubescaler import cli
from kubescaler.adapters.tokens import TokenVerifier, read_or_make_secret
from kubescaler.settings import AuthSettings

USER = "123e4567-e89b-12d3-a456-426614174000"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBESCALER_LOCAL_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("KUBESCALER_AUTH_SECRET", raising=False)
    return tmp_path


def test_token_signs_with_the_key_up_made(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The printed token (alone on stdout) verifies with the local key: subject, role, ttl."""
    secret = read_or_make_secret(state / "auth.key")
    assert cli.main(["token", USER, "--admin", "--ttl", "15m"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    who = TokenVerifier(AuthSettings(enabled=True, secret=secret)).identity(printed.strip())
    assert who.subject == USER
    assert who.admin
    assert abs(who.expires_at_ms / 1000 - (time.time() + 900)) < 5


def test_the_secret_setting_wins_over_the_key_file(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With KUBESCALER_AUTH_SECRET set, tokens are signed with it (as the services verify)."""
    read_or_make_secret(state / "auth.key")
    monkeypatch.setenv("KUBESCALER_AUTH_SECRET", "e" * 40)
    assert cli.main(["token", USER]) == 0
    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier(AuthSettings(enabled=True, secret="e" * 40))
    assert not verifier.identity(token).admin


def test_without_a_key_or_with_a_bad_user_it_says_why(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No key yet: exit 2 naming the file `up` makes; a user that is not a UUID: exit 2."""
    assert cli.main(["token", USER]) == 2
    assert f"{state / 'auth.key'} does not exist" in capsys.readouterr().err
    read_or_make_secret(state / "auth.key")
    assert cli.main(["token", "alice"]) == 2
    assert "'alice' is not a user id" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("3600", 3600), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800)]
)
def test_ttl_takes_seconds_or_a_unit(text: str, seconds: int) -> None:
    """--ttl reads plain seconds or a number with s, m, h or d."""
    assert cli.build_parser().parse_args(["token", USER, "--ttl", text]).ttl == seconds


@pytest.mark.parametrize("text", ["0", "-5", "1w", "h", "1.5h"])
def test_a_bad_ttl_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A ttl that is not a positive duration stops argparse with a message saying the form."""
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["token", USER, "--ttl", text])
    assert "not a duration" in capsys.readouterr().err
