"""The names the manifests use are the ones the running code serves: metrics, paths, env, ports."""

from __future__ import annotations

import json
import re

import httpx
import msgspec
import pytest
import yaml
from rendering import MANIFESTS, ROOT, SERVICES, Rendered, render

from kubescaler import cli, settings, settings_reference
from kubescaler_dev.services import Service

pytestmark = pytest.mark.integration

METRIC = re.compile(r"\bkubescaler_[a-z_]+\b")


def metric_names(url: str) -> set[str]:
    """Every sample and family name on a /metrics page (families show before any sample)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "counter":
                names.add(f"{name.removesuffix('_total')}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def queried_metrics() -> dict[str, set[str]]:
    """kubescaler_* names in every query the manifests, adapter rules and dashboard hold."""
    sources = {
        "ScaledObject": json.dumps(render("dev").of_kind("ScaledObject")),
        "adapter rules": (
            MANIFESTS / "components" / "prometheus-adapter" / "adapter-rules.yaml"
        ).read_text(),
        "adapter HPA": json.dumps(render("classic").of_kind("HorizontalPodAutoscaler")),
        "dashboard": (ROOT / "dashboards" / "grafana-kubescaler.json").read_text(),
    }
    return {where: set(METRIC.findall(text)) for where, text in sources.items()}


def test_every_queried_metric_is_exported_by_a_running_service(
    stream_services: list[Service], lock_keeper_service: Service
) -> None:
    exported = metric_names(stream_services[0].url) | metric_names(lock_keeper_service.url)
    assert "kubescaler_stream_connections" in exported
    found = queried_metrics()
    assert found["ScaledObject"] == {"kubescaler_stream_connections"}
    assert {"kubescaler_stream_connections", "kubescaler_lock_commands_pending"} <= found[
        "adapter rules"
    ]
    assert {
        "kubescaler_stream_connections",
        "kubescaler_stream_sent_bytes_total",
        "kubescaler_lock_commands_total",
    } <= found["dashboard"]
    for where, names in found.items():
        assert names <= exported, f"{where} queries metrics nobody exports: {names - exported}"


def test_the_autoscaling_metric_is_the_one_the_code_names() -> None:
    from kubescaler.services.stream_metrics import CONNECTIONS_METRIC

    query = render("dev").get("ScaledObject", "stream")["spec"]["triggers"][0]["metadata"]
    assert CONNECTIONS_METRIC in query["query"]


def test_the_lock_keeper_trigger_reads_the_configured_stream_and_group(dev: Rendered) -> None:
    trigger = dev.get("ScaledObject", "lock-keeper")["spec"]["triggers"][0]["metadata"]
    lock = settings.load(dev.config()).lock
    assert trigger["stream"] == lock.command_stream
    assert trigger["consumerGroup"] == lock.command_group
    host, port = trigger["address"].split(":")
    assert host.split(".")[0] == "redis"
    assert port == "6379"


def test_probe_paths_answer_200_on_running_services(
    base_service: Service,
    main_service: Service,
    stream_services: list[Service],
    lock_keeper_service: Service,
) -> None:
    running = {
        "base": base_service,
        "main": main_service,
        "stream": stream_services[0],
        "lock-keeper": lock_keeper_service,
    }
    for _, c in render("dev").app_containers():
        svc = running[c["args"][0]]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = c[probe]["httpGet"]["path"]
            r = httpx.get(f"{svc.url}{path}", timeout=5)
            assert r.status_code == 200, f"{c['args'][0]} {path}: {r.status_code} {r.text}"
        scrape = httpx.get(f"{svc.url}/metrics", timeout=5)
        assert scrape.status_code == 200


def test_every_kubescaler_env_var_is_a_real_setting(rendered: Rendered) -> None:
    known = {name for name, _, _ in settings_reference.rows()}
    used = set(rendered.config())
    for _, spec in rendered.pod_specs():
        for c in spec["containers"]:
            used |= {e["name"] for e in c.get("env", [])}
    used = {n for n in used if n.startswith("KUBESCALER_")}
    assert used
    assert used <= known, f"not settings: {used - known}"
    settings.load(rendered.config())  # and the values parse


def _served_port(command: str, conf: settings.Settings) -> int:
    return {
        "base": conf.base_port,
        "main": conf.main_port,
        "stream": conf.stream_port,
        "lock-keeper": conf.lock.keeper_port,
    }[command]


def test_container_ports_are_the_ports_the_cli_serves(rendered: Rendered) -> None:
    """With the manifests' env (and no --port), each subcommand listens on its containerPort."""
    conf = settings.load(rendered.config())
    assert conf.host == "0.0.0.0"
    seen = set()
    for _, c in rendered.app_containers():
        args = cli.build_parser().parse_args(c["args"])
        assert args.port is None
        command = c["args"][0]
        assert c["ports"][0]["containerPort"] == _served_port(command, conf)
        seen.add(command)
    assert seen == set(SERVICES)
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    for command in SERVICES:
        assert services[command]["spec"]["ports"][0]["port"] == _served_port(command, conf)
    for route in rendered.of_kind("HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for ref in rule.get("backendRefs", []):  # https-redirect has none
                assert ref["port"] == _served_port(ref["name"], conf)
    for ing in rendered.of_kind("Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]
                assert svc["port"]["number"] == _served_port(svc["name"], conf)


def test_in_cluster_urls_name_existing_services(rendered: Rendered) -> None:
    conf = settings.load(rendered.config())
    services = {
        s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in rendered.of_kind("Service")
    }
    base = httpx.URL(conf.base.url)
    assert services[base.host] == base.port
    for url in [conf.redis.url, *conf.redis.lock_urls]:
        u = httpx.URL(url)
        assert services[u.host.split(".")[-1] if "." in u.host else u.host] == u.port
    for host in conf.cassandra.hosts:
        assert services[host] == conf.cassandra.port
    for host, port in conf.redis.sentinel_addresses:  # pod.service of a headless Service
        assert services[host.split(".")[1]] == port


def test_stream_grace_in_the_manifests_is_what_the_process_reads(dev: Rendered) -> None:
    conf = settings.load(dev.config())
    assert conf.stream.grace_s == float(dev.config()["KUBESCALER_STREAM_GRACE_S"])
    assert msgspec.structs.asdict(conf.stream)["grace_s"] == 20.0


def test_prometheus_yml_gives_pods_the_labels_the_queries_use() -> None:
    conf = yaml.safe_load(
        (MANIFESTS / "components" / "in-cluster-prometheus" / "prometheus.yml").read_text()
    )
    job = conf["scrape_configs"][0]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod"} <= targets
