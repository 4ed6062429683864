"""Pure lock logic: log record fields, the history verifier, state reconstruction, replay."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pytest

from kubescaler.domain.locks import (
    LockCommand,
    LockRecord,
    Result,
    outcome,
    record_fields,
    record_from_fields,
    state_at,
    superseded,
    verify,
)
from kubescaler.entrypoints import replay

USER, PROFILE = uuid.UUID(int=1), uuid.UUID(int=2)
TTL = 1000


def rec(result: Result, owner: str, at: int, token: int = 0, until: int = 0) -> LockRecord:
    action = {"refreshed": "refresh", "released": "release", "lost": "refresh"}.get(
        result, "acquire"
    )
    return LockRecord(
        request_id=f"{owner}-{at}",
        action=action,  # type: ignore[arg-type]
        result=result,
        user_id=USER,
        profile_id=PROFILE,
        owner=owner,
        at_ms=at,
        fencing_token=token,
        expires_at_ms=until,
        worker="w",
    )


GOOD = [
    rec("granted", "a", 0, 1, 1000),
    rec("denied", "b", 100, until=1000),
    rec("refreshed", "a", 900, 1, 1900),
    rec("released", "a", 1200),
    rec("granted", "b", 1300, 2, 2300),
    rec("granted", "c", 2400, 3, 3400),  # b lapsed at 2300 without a release
    rec("granted", "c", 2500, 4, 3500),  # same owner again: a new, larger token
]


def test_log_fields_are_plain_strings_and_read_back() -> None:
    """A record survives the XADD field encoding; unknown fields from newer versions are ignored."""
    cmd = LockCommand(
        action="acquire",
        user_id=USER,
        profile_id=PROFILE,
        owner="a",
        request_id="r1",
        deadline_ms=5,
    )
    out = outcome(cmd, "granted", 10, fencing_token=7, expires_at_ms=99)
    fields = record_fields(out, "w1")
    assert all(isinstance(v, str) for v in fields.values())
    raw = {k.encode(): v.encode() for k, v in fields.items()} | {b"future_field": b"x"}
    back = record_from_fields(raw, "1-0")
    assert back == LockRecord(**msgspec.structs.asdict(out), worker="w1", log_id="1-0")


def test_old_record_missing_new_fields_gets_defaults() -> None:
    """Replay reads a minimal v1 record: missing optional fields take their defaults."""
    fields = {
        "v": "1",
        "request_id": "r",
        "action": "release",
        "result": "released",
        "user_id": str(USER),
        "profile_id": str(PROFILE),
        "owner": "a",
        "at_ms": "5",
    }
    assert record_from_fields(fields).fencing_token == 0


def test_a_clean_history_verifies() -> None:
    """Grants after release or lapse, refreshes and same-owner re-grants are no violation."""
    assert verify(GOOD) == []


def test_overlapping_holders_are_caught() -> None:
    """A grant to b while a's refreshed hold still runs is reported with both records."""
    bad = [*GOOD[:3], rec("granted", "b", 1500, 2, 2500)]
    (violation,) = verify(bad)
    assert violation.kind == "overlap"
    assert [r.owner for r in violation.records] == ["a", "b"]


def test_non_increasing_fencing_token_is_caught() -> None:
    bad = [rec("granted", "a", 0, 5, 100), rec("granted", "b", 200, 5, 300)]
    (violation,) = verify(bad)
    assert violation.kind == "token"


def test_a_superseded_token_that_refreshes_is_a_second_live_holder() -> None:
    """Same session granted tokens 1 then 2: a later `refreshed` for token 1 is reported."""
    bad = [
        rec("granted", "a", 0, 1, 1000),
        rec("granted", "a", 100, 2, 1100),
        rec("refreshed", "a", 200, 1, 1200),
    ]
    (violation,) = verify(bad)
    assert violation.kind == "superseded"
    assert [r.fencing_token for r in violation.records] == [2, 1]


def test_a_superseded_tokens_end_does_not_end_the_newer_hold() -> None:
    """`lost`/`released` for the older token leave token 2 holding: b's grant is an overlap."""
    history = [
        rec("granted", "a", 0, 1, 1000),
        rec("granted", "a", 100, 2, 1100),
        rec("lost", "a", 200, 1),
        rec("released", "a", 300, 1),
    ]
    assert verify(history) == []
    assert state_at(history, 400)[f"{USER}:{PROFILE}"].token == 2
    (violation,) = verify([*history, rec("granted", "b", 500, 3, 1500)])
    assert violation.kind == "overlap"


def test_superseded_compares_tokens_and_ignores_unknown_ones() -> None:
    assert superseded(1, 2)
    assert not superseded(2, 2)
    assert not superseded(3, 2)
    assert not superseded(0, 2)  # a command from before tokens were sent: no check


def test_log_order_does_not_matter_time_does() -> None:
    """Records appended out of order by different workers verify by their times."""
    assert verify(list(reversed(GOOD))) == []


def test_state_at_reconstructs_holders() -> None:
    assert state_at(GOOD, 500)[f"{USER}:{PROFILE}"].owner == "a"
    assert state_at(GOOD, 1250) == {}
    assert state_at(GOOD, 2350) == {}
    assert state_at(GOOD, 2600)[f"{USER}:{PROFILE}"].token == 4


def write(path: Path, records: list[LockRecord]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))
    return path


def test_replay_verify_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--verify exits 0 on a clean file and 1, printing the offenders, on a corrupted one."""
    assert replay.run(["--file", str(write(tmp_path / "ok.jsonl", GOOD)), "--verify"]) == 0
    corrupted = [*GOOD, rec("granted", "z", 2450, 2, 9999)]
    assert replay.run(["--file", str(write(tmp_path / "bad.jsonl", corrupted)), "--verify"]) == 1
    printed = capsys.readouterr().out
    assert "VIOLATION overlap" in printed
    assert "VIOLATION token" in printed


def test_replay_views(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Timeline, --at, --jsonl and filters over a file."""
    path = str(write(tmp_path / "log.jsonl", GOOD))
    assert replay.run(["--file", path, "--pair", f"{USER}:{PROFILE}"]) == 0
    assert capsys.readouterr().out.count("granted") == 4
    assert replay.run(["--file", path, "--at", "500"]) == 0
    assert "owner=a token=1" in capsys.readouterr().out
    assert replay.run(["--file", path, "--jsonl", "--since", "1000", "--until", "1300"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert replay.run(["--file", path, "--user", str(uuid.uuid4())]) == 0
    assert capsys.readouterr().out == ""


def test_parse_time_forms() -> None:
    assert replay.parse_time("1700000000000") == 1_700_000_000_000
    assert replay.parse_time("1700000000000-3") == 1_700_000_000_000
    assert replay.parse_time("1970-01-01T00:00:01Z") == 1000
