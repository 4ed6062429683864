"""The machine's load balancer in front of the cluster: what a cloud gives a Gateway.

HAProxy (Debian's) listens on 127.0.0.1:80 and 127.0.0.1:443 and passes each connection, as
bytes (TLS ends at Traefik), to the same port of Traefik on a node whose ``/ping`` answered its
last health checks (every second; down after two failures, up after one success). A lost
or frozen node stops answering and gets no new connections within about two seconds, and
the connections it held are closed then (``on-marked-down shutdown-sessions``): a client's
pooled keep-alive connection or SSE stream through a dead node would otherwise hang until
the client's own timeout - the fault suite measured every probe timing out, one pooled
connection after another, for 34 s of a lost node. Cloud load balancers have the same switch
(connection termination for unhealthy targets; docs/kubernetes.md). Long timeouts: an SSE
stream lasts as long as its client.
"""

from __future__ import annotations

import shutil

from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.component import Component
from kubescaler_dev.cluster.layout import Layout, NodeNet
from kubescaler_dev.proc import port_open


class LoadBalancer(Component):
    def __init__(self, lay: Layout, nodes: list[NodeNet]) -> None:
        self.nodes = nodes
        self.config_file = lay.config / "haproxy.cfg"
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        # -db: in the foreground, as a child of ours (recorded and stopped like the others)
        super().__init__("gateway-lb", lay.logs, [haproxy, "-db", "-f", str(self.config_file)])

    def _servers(self, port: int) -> str:
        return "\n".join(
            f"    server {n.name} {n.ip}:{port} check port {net.GATEWAY_PING_PORT}"
            for n in self.nodes
        )

    def prepare(self) -> None:
        http, https = net.GATEWAY_PORT, net.GATEWAY_TLS_PORT
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            f"""global
    maxconn 4096
    log stdout format raw local0 notice

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    retries 2
    option redispatch

frontend gateway
    bind 127.0.0.1:{http}
    default_backend nodes

frontend gateway_tls
    bind 127.0.0.1:{https}
    default_backend nodes_tls

backend nodes
    balance leastconn
    option httpchk GET /ping
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{self._servers(http)}

backend nodes_tls
    balance leastconn
    option httpchk GET /ping
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{self._servers(https)}
"""
        )

    def ready(self) -> bool:
        return port_open(net.GATEWAY_PORT) and port_open(net.GATEWAY_TLS_PORT)
