"""`kubescaler-dev`: the local tooling's commands, beside the product (which never imports it).

`up` runs the whole local system under a supervisor; `cluster` builds, starts and stops the
local Kubernetes cluster. `./dev up` and `./dev cluster ...` call them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from kubescaler import settings as settings_module
from kubescaler.settings import Settings


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from kubescaler_dev import stack

    if args.streams < 1 or args.keepers < 1:
        print("kubescaler-dev up: --streams and --keepers must be at least 1", file=sys.stderr)
        return 2
    return stack.run(
        settings,
        args.streams,
        args.keepers,
        backing_only=args.backing_only,
        sentinel=not args.plain_redis,
    )


def _print_status(report: dict[str, object]) -> None:
    for key, value in report.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, what in value.items():
                print(f"  {name:<24} {what}")
        elif isinstance(value, str) and "\n" in value:
            print(f"{key}:\n{value}")
        else:
            print(f"{key}: {value}")


def _cmd_cluster(args: argparse.Namespace, _: Settings) -> int:
    from kubescaler_dev.cluster import stack
    from kubescaler_dev.cluster.progress import ClusterError

    cluster = stack.Cluster()

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop what it runs, as Ctrl-C does
    faults = {"lose": cluster.lose, "freeze": cluster.freeze, "resume": cluster.resume,
              "back": cluster.back}  # fmt: skip
    try:
        if args.action in faults:
            if args.node is None:
                print(
                    f"kubescaler-dev cluster {args.action}: which node? (--node N)", file=sys.stderr
                )
                return 2
            faults[args.action](args.node)
        elif args.action == "up":
            cluster.up(app=not args.no_app, nodes=args.nodes)
        elif args.action == "apply":
            cluster.apply()
        elif args.action == "build":
            stack.check_prerequisites()
            cluster.build()
        elif args.action == "down":
            return 1 if cluster.down() else 0
        else:
            _print_status(cluster.status())
            return 0 if cluster.running() else 3
    except ClusterError as exc:
        print(f"kubescaler-dev cluster {args.action}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubescaler-dev",
        description="kubescaler's local tooling: the local system and the local cluster.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, help_: str, func: Callable[[argparse.Namespace, Settings], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    up = add(
        "up",
        "Bring the whole local system up (Redis, Cassandra, every service, the nginx entry point) "
        "and print its URLs; Ctrl-C stops it. Data persists under .local/.",
        _cmd_up,
    )
    up.add_argument("--streams", type=int, default=2, help="stream instances (default 2)")
    up.add_argument("--keepers", type=int, default=1, help="lock-keeper workers (default 1)")
    up.add_argument(
        "--backing-only",
        action="store_true",
        help="only Redis and Cassandra (for running "
        "kubescaler's own processes by hand or from an IDE)",
    )
    up.add_argument(
        "--plain-redis",
        action="store_true",
        help="one state Redis (KUBESCALER_REDIS_URL), no replicas or Sentinels; by default the "
        "state Redis is a primary, two replicas and three Sentinels, as in production",
    )
    cluster = add(
        "cluster",
        "A Kubernetes cluster of real parts on this machine, one to nine nodes (etcd, "
        "kube-apiserver, kube-controller-manager, kube-scheduler; per node a kubelet, containerd "
        "and kube-proxy in a network namespace of its own; CoreDNS, metrics-server, KEDA, "
        "Traefik behind a load balancer on 127.0.0.1:80 and :443), built from Go modules and "
        "Debian packages into a cache (~/.cache/kubescaler/cluster); `up` also builds kubescaler's "
        "image and applies manifests/overlays/local. Needs root. docs/kubernetes.md.",
        _cmd_cluster,
    )
    cluster.add_argument(
        "action",
        choices=["up", "down", "status", "apply", "build", "lose", "freeze", "resume", "back"],
        help="up: build what is missing, start, deploy kubescaler; down: stop everything it "
        "started and undo its changes to the machine; status: what runs (exit 3 when down); "
        "apply: rebuild the image and re-apply the overlay; build: only build; "
        "lose --node N: node N's network cut and every process of it killed (its disk kept); "
        "back --node N: a lost node started again; freeze / resume --node N: every process of "
        "node N stopped (SIGSTOP) / continued",
    )
    cluster.add_argument(
        "--no-app", action="store_true", help="up: the cluster and its add-ons, not kubescaler"
    )
    cluster.add_argument("--nodes", type=int, default=1, help="up: how many nodes (1-9, default 1)")
    cluster.add_argument("--node", type=int, help="lose, back, freeze, resume: which node (1-9)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as exc:
        print(f"kubescaler-dev: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "cassandra"):  # per-request and driver chatter; errors still show
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    result: int = args.func(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
