"""`kubescaler`: one subcommand per process of the system (base, main, stream, lock-keeper), the
replay tool, token minting and the settings table. The local runner and the local cluster are
not here: they are the `kubescaler-dev` tooling beside the product (devstack/)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from kubescaler import logs, settings_production, settings_reference
from kubescaler import settings as settings_module
from kubescaler.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar

DESCRIPTION = """\
kubescaler: exclusive, autoscaled Server-Sent-Event streams guarded by an event-driven Redlock.
Every process reads its settings from KUBESCALER_* environment variables (`kubescaler config`
lists them); the flags below override a few of them."""


def _serve(factory: Callable[[Settings], Litestar], port: int, settings: Settings) -> int:
    from kubescaler.entrypoints.serve import serve

    return serve(factory(settings), settings, port)


def _cmd_base(args: argparse.Namespace, settings: Settings) -> int:
    from kubescaler.entrypoints.base_app import create_app

    return _serve(create_app, args.port or settings.base_port, settings)


def _check_redis_login(settings: Settings, masters: bool = False) -> None:
    """SettingsError (one line, exit status 2) when a Redis refuses this process's login."""
    from kubescaler.adapters.redis_client import refused_login

    if line := refused_login(settings.redis, masters):
        raise settings_module.SettingsError(line)


def _cmd_main(args: argparse.Namespace, settings: Settings) -> int:
    from kubescaler.entrypoints.main_app import create_app

    _check_redis_login(settings)
    return _serve(create_app, args.port or settings.main_port, settings)


def _cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    from kubescaler.entrypoints import stream_app

    _check_redis_login(settings)
    port = args.port or settings.stream_port
    return stream_app.run(msgspec.structs.replace(settings, stream_port=port))


def _cmd_lock_keeper(args: argparse.Namespace, settings: Settings) -> int:
    from kubescaler.entrypoints import lock_keeper

    _check_redis_login(settings, masters=True)
    if args.port:
        lock = msgspec.structs.replace(settings.lock, keeper_port=args.port)
        settings = msgspec.structs.replace(settings, lock=lock)
    return lock_keeper.run(settings)


def _cmd_cassandra_roles(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import time

    from kubescaler.adapters import cassandra_roles

    # as a container's main process SIGTERM would be ignored: the pod would wait its whole grace
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = settings.cassandra
    if args.local:  # the node of this pod only (its peers' CQL port admits base alone)
        s = msgspec.structs.replace(s, hosts=["127.0.0.1"])
    log = logging.getLogger("kubescaler.cassandra_roles")
    # the driver's tracebacks of a node not listening yet: each failure is one line below
    logging.getLogger("cassandra").setLevel(logging.CRITICAL)
    timeout = float("inf") if args.every else args.timeout
    first = True
    while True:
        try:
            took = cassandra_roles.ensure_until(s, timeout, say=log.warning)
        except cassandra_roles.RolesError as exc:
            print(f"kubescaler cassandra-roles: {exc}", file=sys.stderr)
            return 1
        if first:
            log.warning("cassandra roles, grants and schema in place (%.1f s)", took)
            first = False
        if not args.every:
            return 0
        time.sleep(args.every)


def _ttl_seconds(text: str) -> int:
    """``3600``, ``90s``, ``15m``, ``12h`` or ``7d`` as seconds (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a positive whole number, optionally with s, m, h or d"
        )
    return int(number) * units[unit]


def _cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    import uuid
    from pathlib import Path

    from kubescaler.adapters import tokens

    try:
        user = str(uuid.UUID(args.user))
    except ValueError:
        print(f"kubescaler token: {args.user!r} is not a user id (a UUID)", file=sys.stderr)
        return 2
    secret = settings.auth.secret
    if not secret:
        key = Path(settings.local_state_dir) / tokens.LOCAL_KEY
        if not key.is_file():
            print(
                f"kubescaler token: no key: {key} does not exist (`./dev up` makes it) and "
                "KUBESCALER_AUTH_SECRET is empty",
                file=sys.stderr,
            )
            return 2
        secret = key.read_text().strip()
    print(tokens.mint(settings.auth, secret, user, admin=args.admin, ttl_s=args.ttl))
    return 0


def _cmd_config(args: argparse.Namespace, __: Settings) -> int:
    print(settings_reference.markdown() if args.markdown else settings_reference.text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubescaler", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, help_: str, func: Callable[[argparse.Namespace, Settings], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    for name, func, port_var, what in [
        (
            "base",
            _cmd_base,
            "KUBESCALER_BASE_PORT",
            "Serve the base service: users and profiles over REST, backed by Cassandra.",
        ),
        (
            "main",
            _cmd_main,
            "KUBESCALER_MAIN_PORT",
            "Serve the main service: users, profiles, suggested, test data, /login.",
        ),
        (
            "stream",
            _cmd_stream,
            "KUBESCALER_STREAM_PORT",
            "Serve the stream service: one exclusive SSE stream per (user, profile) pair; "
            "SIGTERM drains (clients are told to reconnect elsewhere, their locks handed over).",
        ),
    ]:
        add(name, what, func).add_argument(
            "--port", type=int, help=f"listen port (default ${port_var})"
        )

    add(
        "lock-keeper",
        "Run a lock-keeper worker: applies lock commands from the Redis Stream through Redlock.",
        _cmd_lock_keeper,
    ).add_argument(
        "--port", type=int, help="health and metrics port (default $KUBESCALER_LOCK_KEEPER_PORT)"
    )
    add(
        "replay",
        "Read the lock event log: timelines, state at a time, JSON lines, --verify. "
        "`kubescaler replay --help` for its options.",
        lambda _a, _s: 0,
    ).add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    token = add(
        "token",
        "Mint a JWT for a user with the local HMAC key (KUBESCALER_AUTH_SECRET, else the key "
        "`./dev up` keeps in <KUBESCALER_LOCAL_STATE_DIR>/auth.key), carrying the issuer "
        "and audience the services check; prints it alone, for $(...).",
        _cmd_token,
    )
    token.add_argument("user", metavar="USER", help="the user id (a UUID): the token's subject")
    token.add_argument(
        "--admin", action="store_true", help="add the admin role (test data, any /login)"
    )
    token.add_argument(
        "--ttl",
        type=_ttl_seconds,
        default=3600,
        help="lifetime: seconds, or with a unit: 90s, 15m, 12h, 7d (default 1h)",
    )
    roles = add(
        "cassandra-roles",
        "Make Cassandra's roles (idempotent): the admin superuser, base's role with SELECT and "
        "MODIFY on the keyspace, the schema, system_auth's replication; disable the default "
        "superuser. Reads KUBESCALER_CASSANDRA_ADMIN_USERNAME/_PASSWORD and _USERNAME/_PASSWORD.",
        _cmd_cassandra_roles,
    )
    roles.add_argument(
        "--local", action="store_true", help="only the node on 127.0.0.1 (a sidecar of the node)"
    )
    roles.add_argument(
        "--every",
        type=float,
        default=0.0,
        help="keep running, making them again every this many seconds (default: once)",
    )
    roles.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="once: retry for this long (a fresh node makes its default superuser late)",
    )
    add(
        "config", "List every KUBESCALER_* setting with its default and meaning.", _cmd_config
    ).add_argument("--markdown", action="store_true", help="as the README's table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["replay"]:  # the replay tool owns its own options and --help
        from kubescaler.entrypoints import replay

        return replay.run(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        print(f"kubescaler: {exc}", file=sys.stderr)
        return 2
    logs.configure(
        settings.log_level,
        settings.log_format,
        service=args.command,
        instance=settings.instance,
    )
    try:
        settings_production.check(settings, args.command)
        result: int = args.func(args, settings)
    except settings_module.SettingsError as exc:  # e.g. auth on without a key
        print(f"kubescaler {args.command}: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
