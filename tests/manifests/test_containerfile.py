"""The one image, checked statically (tests/cluster builds it and runs it on a real cluster)."""

from __future__ import annotations

import re

from rendering import ROOT, SERVICES, render

CONTAINERFILE = ROOT / "Containerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _base_image_defaults() -> dict[str, str]:
    """The ARGs before the first FROM: the base images, overridable with --build-arg."""
    defaults = {}
    for op, rest in _instructions():
        if op == "FROM":
            break
        if op == "ARG":
            name, _, value = rest.partition("=")
            defaults[name] = value
    return defaults


def test_base_images_are_pinned() -> None:
    """Python 3.11 slim for the app stages, a pinned Node.js for the web client's build."""
    defaults = _base_image_defaults()
    froms = [
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], rest.split()[0])
        for op, rest in _instructions()
        if op == "FROM"
    ]
    pythons = [image.partition(":")[2] for image in froms if image.startswith("python:")]
    nodes = [image.partition(":")[2] for image in froms if image.startswith("node:")]
    assert len(pythons) + len(nodes) == len(froms), froms
    assert pythons
    assert nodes
    for tag in pythons:
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), tag
    for tag in nodes:
        assert re.fullmatch(r"20\.(19|[2-9]\d)\.\d+-\w+-slim", tag), tag


def test_the_web_client_is_built_into_the_image_and_found() -> None:
    """The stream service serves frontend/dist; in the image it lives where the env says."""
    text = CONTAINERFILE.read_text()
    assert "npm ci" in text
    assert "COPY --from=web /web/dist /app/web" in text
    assert "KUBESCALER_STREAM_WEB_DIR=/app/web" in text


def test_dependencies_come_from_the_lock_file_without_dev_tools() -> None:
    steps = _instructions()
    copies = " ".join(rest for op, rest in steps if op == "COPY")
    assert "uv.lock" in copies
    syncs = [rest for op, rest in steps if op == "RUN" and "uv sync" in rest]
    assert syncs
    for sync in syncs:
        assert "--frozen" in sync
        assert "--no-dev" in sync
        assert "--no-default-groups" in sync  # pyproject's default groups add load tools


def test_runs_as_non_root_with_the_cli_as_entrypoint() -> None:
    steps = _instructions()
    users = [rest for op, rest in steps if op == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0  # numeric, so runAsNonRoot can verify it
    assert [rest for op, rest in steps if op == "ENTRYPOINT"] == ['["kubescaler"]']
    assert [op for op, _ in steps].index("USER") > [op for op, _ in steps].index("COPY")


def test_manifests_run_as_the_image_user() -> None:
    users = [rest for op, rest in _instructions() if op == "USER"]
    uid = int(users[-1].split(":")[0])
    for w, _ in render("dev").app_containers():
        assert w["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_image_exposes_every_service_port() -> None:
    exposed = {int(p) for op, rest in _instructions() if op == "EXPOSE" for p in rest.split()}
    ports = {c["ports"][0]["containerPort"] for _, c in render("dev").app_containers()}
    assert ports == exposed
    assert len(ports) == len(SERVICES)


def test_build_context_is_small() -> None:
    ignore = (ROOT / ".containerignore").read_text()
    lines = [line for line in ignore.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then the few things the build needs back in
    assert {"!pyproject.toml", "!uv.lock", "!src/"} <= set(lines)
    assert (ROOT / ".dockerignore").read_text() == ignore
