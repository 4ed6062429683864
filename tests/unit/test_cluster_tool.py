"""The local cluster tool's rules that need no cluster: pins, wrapper modules, the network's
limits (no DNS forwarder, the entry point on loopback only, no machine-wide forwarding, a
kube-proxy per node namespace), the journal, and the one-line refusal when something is
missing."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from kubescaler_dev.cluster import dns, gateway, machine
from kubescaler_dev.cluster import layout as net
from kubescaler_dev.cluster.cni import in_netns
from kubescaler_dev.cluster.containerd import Containerd
from kubescaler_dev.cluster.gobuild import wrapper_go_mod
from kubescaler_dev.cluster.host import Journal
from kubescaler_dev.cluster.kubelet import Kubelet, KubeProxy
from kubescaler_dev.cluster.layout import Layout, NodeNet
from kubescaler_dev.cluster.loadbalancer import LoadBalancer
from kubescaler_dev.cluster.pki import Pki
from kubescaler_dev.cluster.progress import ClusterError, Progress
from kubescaler_dev.cluster.versions import BUILDS, IMAGES


def test_a_build_key_changes_with_its_version_and_only_its_own() -> None:
    keys = {name: build.key for name, build in BUILDS.items()}
    assert len(set(keys.values())) == len(keys)
    bumped = dataclasses.replace(BUILDS["etcd"], version="v9.9.9")
    assert bumped.key != keys["etcd"]
    assert bumped.key.startswith("etcd-v9.9.9-")


def test_wrapper_module_turns_local_replaces_into_published_modules() -> None:
    """kubernetes replaces its staging repos with ./staging folders; the wrapper names the
    published staging version instead, keeps remote replaces, and drops the skipped ones."""
    edit = {
        "Go": "1.26.0",
        "Replace": [
            {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "./staging/src/k8s.io/api"}},
            {"Old": {"Path": "k8s.io/sample-controller"}, "New": {"Path": "./staging/x"}},
            {"Old": {"Path": "example.com/a"}, "New": {"Path": "example.com/b", "Version": "v1"}},
        ],
    }
    text = wrapper_go_mod(BUILDS["kubernetes"], edit)
    assert "require k8s.io/kubernetes v1.37.2" in text
    assert "replace k8s.io/api => k8s.io/api v0.37.2" in text
    assert "sample-controller" not in text
    assert "replace example.com/a => example.com/b v1" in text


def test_a_fork_is_required_by_the_original_path_and_replaced_by_the_fork() -> None:
    """k3s's kube-router fork still declares upstream's module path in its go.mod: the wrapper
    requires that path and replaces it with the fork at the pinned version."""
    build = BUILDS["netpol"]
    text = wrapper_go_mod(build, {"Go": "1.23.11"})
    assert "require github.com/cloudnativelabs/kube-router/v2 v2.6.3\n" in text
    assert (
        "replace github.com/cloudnativelabs/kube-router/v2 => "
        "github.com/k3s-io/kube-router/v2 v2.6.3-k3s1" in text
    )
    assert f"require {build.module}" not in text


def test_a_local_replace_without_a_published_version_is_an_error() -> None:
    edit = {"Replace": [{"Old": {"Path": "x.example/y"}, "New": {"Path": "./y"}}]}
    with pytest.raises(ClusterError, match="local folder"):
        wrapper_go_mod(BUILDS["coredns"], edit)


def test_coredns_answers_cluster_names_only_and_forwards_nowhere(tmp_path: Path) -> None:
    corefile = dns.COREFILE
    assert "forward" not in corefile
    assert f"kubernetes {net.CLUSTER_DOMAIN}" in corefile
    out = dns.coredns(tmp_path / "coredns").folder
    assert net.DNS_SERVICE_IP in (out / "coredns.yaml").read_text()


def test_the_entry_point_is_on_loopback_only_and_balances_over_every_node(
    tmp_path: Path,
) -> None:
    """The load balancer binds 127.0.0.1:80 and :443 alone and checks each node's Traefik;
    Traefik binds the node's own network (a namespace of the run's), never the machine's."""
    lay = Layout(tmp_path)
    nodes = [NodeNet(i) for i in (1, 2, 3)]
    lb = LoadBalancer(lay, nodes)
    lb.prepare()
    config = lb.config_file.read_text()
    binds = [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind")]
    assert binds == [f"127.0.0.1:{net.GATEWAY_PORT}", f"127.0.0.1:{net.GATEWAY_TLS_PORT}"]
    for node in nodes:
        for port in (net.GATEWAY_PORT, net.GATEWAY_TLS_PORT):
            assert f"server {node.name} {node.ip}:{port} check" in config
    assert "option httpchk GET /ping" in config
    traefik = gateway.traefik(tmp_path / "traefik")
    text = (traefik.folder / "traefik.yaml").read_text()
    assert '"kind": "DaemonSet"' in text
    assert '"hostNetwork": true' in text


def test_pods_get_no_default_route_no_nat_and_no_machine_forwarding(tmp_path: Path) -> None:
    """The CNI config keeps pod traffic in the cluster's ranges: routes to the nodes', the
    services' and the pods' ranges only, no masquerade, no `isGateway` (with which the bridge
    plugin turns forwarding on); containerd runs in the node's namespace."""
    lay = Layout(tmp_path)
    node = lay.node(2)
    containerd = Containerd(lay, node)
    containerd.prepare()
    conf = json.loads((node.config / "cni" / "10-kubescaler.conflist").read_text())
    bridge = conf["plugins"][0]
    assert bridge["isGateway"] is False
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["routes"] == [
        {"dst": net.NODE_NET},
        {"dst": net.SERVICE_CIDR},
        {"dst": net.POD_CIDR},
    ]
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == "10.216.2.0/24"
    toml = containerd.config_file.read_text()
    assert "netns_mounts_under_state_dir = true" in toml
    assert f'sandbox = "{IMAGES["pause"]}"' in toml
    assert str(tmp_path) in toml.split("root =")[1].splitlines()[0]
    assert containerd.argv[:2] == in_netns(node.net, [])


def test_kube_proxy_touches_no_conntrack_sysctl_and_no_loopback_nodeports(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    node = lay.node(1)
    node.config.mkdir(parents=True)
    proxy = KubeProxy(lay, node, Pki(lay.pki))
    proxy.prepare()
    config = json.loads(proxy.config_file.read_text())
    assert config["mode"] == "nftables"
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["nodePortAddresses"] == [f"{node.net.ip}/32"]
    assert proxy.argv[0] == "nsenter"  # its nftables are the node namespace's, not the machine's


def test_each_kubelet_has_its_own_cgroup_root_address_and_runtime(tmp_path: Path) -> None:
    """Two kubelets on one machine must not share a cgroup root: each would take the other's
    pods for orphans and kill them."""
    lay = Layout(tmp_path)
    configs = []
    for index in (1, 2):
        node = lay.node(index)
        node.config.mkdir(parents=True)
        configs.append(Kubelet(lay, node, Pki(lay.pki), Journal(tmp_path))._config())
    for key in ("cgroupRoot", "address", "containerRuntimeEndpoint", "podLogsDir"):
        assert configs[0][key] != configs[1][key], key
    assert configs[0]["cgroupRoot"] == "/ks-node-1"


def test_the_journal_records_once_and_undoes_newest_first(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    made = [tmp_path / "a", tmp_path / "b"]
    for folder in made:
        journal.record("dir", str(folder))
        journal.record("dir", str(folder))
        folder.mkdir()
    assert [c.what for c in journal.entries()] == [str(p) for p in made]
    assert journal.undo(Progress(lambda _: None)) == []
    assert not any(p.exists() for p in made)
    assert not journal.path.exists()


def test_a_missing_prerequisite_is_one_line_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(machine, "_exists", lambda tool: tool not in ("podman", "nft"))
    with pytest.raises(ClusterError) as caught:
        machine.check_prerequisites()
    message = str(caught.value)
    assert "\n" not in message
    assert "nftables podman" in message


def test_not_root_is_refused_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ClusterError, match="needs root"):
        machine.check_prerequisites()


def test_status_of_a_cluster_that_is_not_up_exits_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubescaler_dev import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.main(["cluster", "status"]) == 3
    assert "up: False" in capsys.readouterr().out


def test_a_module_version_the_proxy_refuses_is_one_line_naming_it() -> None:
    from kubescaler_dev.cluster.gobuild import _go

    refused = (
        "go: downloading example.com/sdk v1.2.3\n"
        "go: example.com/sdk@v1.2.3: reading https://proxy.example/example.com/sdk/@v/"
        "v1.2.3.zip: 403 Forbidden\n\tserver response: not available"
    )
    with pytest.raises(ClusterError) as caught:
        _go(["sh", "-c", f"printf '{refused}'; exit 1"], "go mod tidy", Progress(lambda _: None))
    message = str(caught.value)
    assert "\n" not in message
    assert "example.com/sdk@v1.2.3" in message
    assert "proxy.example" not in message
    assert "versions.py" in message


def test_a_full_disk_says_so_and_how_much_a_first_build_needs(tmp_path: Path) -> None:
    """A cold build that runs out of disk names the cause and the space it needs, not only
    the failing command's exit status."""
    from kubescaler_dev.cluster.progress import COLD_BUILD_DISK_GB, run

    full = "go: writing go.sum: write /root/go/go.sum: no space left on device"
    with pytest.raises(ClusterError) as caught:
        run(["sh", "-c", f"echo '{full}'; exit 1"], "go mod tidy for traefik", cwd=tmp_path)
    first_line = str(caught.value).splitlines()[0]
    assert "the disk is full" in first_line
    assert f"about {COLD_BUILD_DISK_GB} GB" in first_line
    assert "no space left on device" in caught.value.output


def test_a_build_key_ignores_that_sources_exist_unless_a_build_has_them() -> None:
    """Only CoreDNS, the metrics adapter and the NetworkPolicy enforcer bring their own main
    package; every other build's key is its recipe alone, so adding the field did not rebuild
    them."""
    with_sources = [name for name, build in BUILDS.items() if build.sources]
    assert with_sources == ["coredns", "metrics-adapter", "netpol"]
    bare = dataclasses.replace(BUILDS["coredns"], sources=())
    assert bare.key != BUILDS["coredns"].key


def test_traefik_redirects_http_and_keeps_the_query_string_out_of_its_access_log(
    tmp_path: Path,
) -> None:
    """Traefik serves HTTPS on the TLS port, sends plain HTTP nothing claims to it, and its
    access log drops the request path (which carries the query string: ?access_token=)."""
    text = (gateway.traefik(tmp_path / "traefik").folder / "traefik.yaml").read_text()
    assert f"--entryPoints.websecure.address=:{net.GATEWAY_TLS_PORT}" in text
    assert "--entryPoints.web.http.redirections.entryPoint.to=websecure" in text
    assert "--accesslog=true" in text
    assert "--accesslog.fields.names.RequestPath=drop" in text
