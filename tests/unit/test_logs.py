"""Log lines as text or one JSON object each (KUBESCALER_LOG_FORMAT; kubescaler.logs)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from kubescaler.logs import JsonFormatter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("kubescaler.x", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_time_level_service_instance_logger_and_the_event() -> None:
    line = JsonFormatter("stream", "stream-7f-abc").format(_record("opened %s", "a pair"))
    got = json.loads(line)
    assert got.pop("time").endswith("Z")
    assert got == {
        "level": "warning",
        "service": "stream",
        "instance": "stream-7f-abc",
        "logger": "kubescaler.x",
        "event": "opened a pair",
    }


def test_only_identifier_extras_reach_a_json_line_never_a_credential() -> None:
    record = _record(
        "refused",
        user_id="u-1",
        profile_id="p-2",
        fencing_token=7,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        password="hunter2",
        token="eyJhbGciOi",
        authorization="Bearer x",
    )
    got = json.loads(JsonFormatter("main", "m").format(record))
    assert (got["user_id"], got["profile_id"], got["fencing_token"]) == ("u-1", "p-2", 7)
    assert got["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert not {"password", "token", "authorization"} & got.keys()
    assert "hunter2" not in json.dumps(got)


def test_a_logged_exception_travels_as_error_in_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter("base", "b").format(record)
    assert "\n" not in line
    got = json.loads(line)
    assert got["event"] == "failed"
    assert "ValueError: boom" in got["error"]


def _configured(fmt: str) -> str:
    """stderr of a process that configured its logs as ``fmt``, made a service app, and logged
    as uvicorn and as FastStream's broker logger do (its INFO chatter kept out)."""
    code = (
        "import logging; from kubescaler import logs; "
        f"logs.configure('info', {fmt!r}, 'lock-keeper', 'k-1'); "
        # a service app made after (Litestar's own logging config would replace the handler)
        "from kubescaler.settings import load; "
        "from kubescaler.entrypoints.web import create_service_app; "
        "create_service_app('x', load({}), handlers=[], checks={}); "
        "logging.getLogger('uvicorn.error').info('Started server process'); "
        "logging.getLogger('kubescaler.broker').info('callback for Task-5 is being executed...'); "
        "logging.getLogger('kubescaler.broker').warning('consumer restarted'); "
        "logging.getLogger('httpx').info('per-request chatter')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr


def test_json_configured_every_logger_writes_json_lines_and_chatter_stays_out() -> None:
    lines = [json.loads(line) for line in _configured("json").splitlines()]
    assert [(x["logger"], x["event"]) for x in lines] == [
        ("uvicorn.error", "Started server process"),
        ("kubescaler.broker", "consumer restarted"),
    ]
    assert {x["service"] for x in lines} == {"lock-keeper"}


def test_text_is_one_readable_line_per_record() -> None:
    lines = _configured("text").splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO uvicorn.error: Started server process")
    assert not lines[0].startswith("{")
