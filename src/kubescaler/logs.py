"""Where every process's log lines go, and in what shape (``KUBESCALER_LOG_FORMAT``).

``text`` (the local default): ``time LEVEL logger: message``, for a person at a terminal.
``json`` (the manifests' default): one JSON object per line, for a log pipeline -

    {"time": "2026-12-08T01:02:03.456Z", "level": "warning", "service": "lock-keeper",
     "instance": "lock-keeper-5d8f-x2k", "logger": "kubescaler.adapters.redlock_recovery",
     "event": "Redlock master 1 came back empty: it abstains until caught up"}

plus, where the code passed them with ``extra=``, only the fields of :data:`FIELDS` (ids
that join a line to a pair, a lock command or a trace - never a credential, whatever else a
caller puts in ``extra``), and ``error`` with the traceback of a logged exception.
uvicorn's own loggers go through the same handler (the server is started without its
logging config).
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from typing import Any, Literal

import msgspec

LogFormat = Literal["text", "json"]

#: The ``extra=`` fields a JSON line carries: identifiers, never secrets.
FIELDS = (
    "user_id",
    "profile_id",
    "pair",
    "owner",
    "request_id",
    "fencing_token",
    "dependency",
    "trace_id",
    "span_id",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Loggers whose per-request, driver and broker chatter is kept below WARNING (FastStream says
#: "callback for Task-N is being executed..." at INFO for every subscriber task that ends).
NOISY = ("httpx", "cassandra", "kubescaler.broker")

_encode = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's docstring)."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "instance": self.instance,
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None and value != "":
                line[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["error"] = record.exc_text
        return _encode(line).decode()


def configure(level: str, fmt: LogFormat, service: str, instance: str = "") -> None:
    """Every log record of the process to stderr, as ``fmt`` says, from ``level`` up;
    ``instance`` empty: the host's name (a pod's name in Kubernetes)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service, instance or socket.gethostname())
        if fmt == "json"
        else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python's warnings as log records, in the same shape
    for noisy in NOISY:  # errors still show
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
