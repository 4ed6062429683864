"""kubescaler's alerts (issue 26): the rules file is valid, every alert fires on series that
should fire it and stays quiet on series that should not (`promtool test rules` with
tests/alerts/kubescaler.rules.test.yml), production's PrometheusRule carries the same groups,
and every alert has its runbook entry in docs/operating.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "manifests" / "components" / "in-cluster-prometheus" / "kubescaler.rules.yml"
OPERATOR = ROOT / "manifests" / "components" / "prometheus-operator" / "prometheusrule.yaml"
TESTS = ROOT / "tests" / "alerts" / "kubescaler.rules.test.yml"
RUNBOOK = ROOT / "docs" / "operating.md"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: Debian's prometheus package ships it (./dev installs it)")
    return found


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_the_rules_file_is_valid() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_when_it_should_and_only_then() -> None:
    done = subprocess.run(
        [_promtool(), "test", "rules", TESTS.name],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", TESTS.read_text()))
    assert tested == set(_alerts()), "an alert without its promtool test"


def test_the_prometheus_rule_carries_the_same_groups() -> None:
    rule = yaml.safe_load(OPERATOR.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_every_alert_has_a_runbook_entry() -> None:
    text = RUNBOOK.read_text()
    for alert in _alerts():
        assert f"### {alert}\n" in text, f"docs/operating.md has no runbook for {alert}"
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["annotations"]["runbook"] == f"docs/operating.md#{rule['alert'].lower()}"
