"""Prometheus metrics: the collector, the HTTP server, the alert rules and the dashboard."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import orsguard
from orsguard.limits import Limits
from orsguard.metrics import OrsguardCollector, make_registry, start_metrics_server

# The helper module sits beside the tests; this works under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))
from mqtt_support import REPO, HostProcess, Mosquitto, Peer, free_port, require_program, topic_is  # noqa: E402

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "orsguard.json"
SPIN = (REPO / "examples" / "documents" / "spin.scxml").read_text()


def histogram(bounds: tuple[float, ...], counts: tuple[int, ...], total: float) -> dict[str, Any]:
    return {"buckets": bounds, "counts": counts, "sum": total, "count": sum(counts)}


class FakeStats:
    """The shape of ``Stats.snapshot()``, with a call counter."""

    def __init__(self) -> None:
        self.calls = 0

    def snapshot(self) -> dict[str, Any]:
        self.calls += 1
        return {
            "sessions_started": 7,
            "sessions_ended": {"final": 3, "limit": 2, "error": 1, "cancelled": 0},
            "sessions_active": 1,
            "limit_violations": {
                "max-microstep-count": 2,
                "max-state-entry-count": 0,
                "max-pending-events": 0,
                "process-event-timeout": 0,
                "max-session-age": 0,
            },
            "events": {"internal": 11, "external": 13},
            "microsteps": 42,
            "microsteps_per_macrostep": histogram((1.0, 10.0, math.inf), (4, 5, 1), 60.0),
            "macrostep_seconds": histogram((0.001, 0.01, math.inf), (8, 2, 0), 0.02),
            "pending_events": histogram((0.0, 1.0, math.inf), (6, 3, 1), 9.0),
        }


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_collector_exports_the_snapshot() -> None:
    got = samples(make_registry(FakeStats(), lambda: Limits(max_microstep_count=50)))
    assert got[("orsguard_sessions_started_total", ())] == 7
    assert got[("orsguard_sessions_ended_total", (("reason", "limit"),))] == 2
    assert got[("orsguard_sessions_ended_total", (("reason", "cancelled"),))] == 0
    assert got[("orsguard_sessions_active", ())] == 1
    assert got[("orsguard_limit_violations_total", (("option", "max-microstep-count"),))] == 2
    assert got[("orsguard_events_total", (("queue", "external"),))] == 13
    assert got[("orsguard_microsteps_total", ())] == 42
    # Buckets become cumulative, ending at +Inf == count.
    bucket = "orsguard_microsteps_per_macrostep_bucket"
    assert got[(bucket, (("le", "1.0"),))] == 4
    assert got[(bucket, (("le", "10.0"),))] == 9
    assert got[(bucket, (("le", "+Inf"),))] == 10
    assert got[("orsguard_microsteps_per_macrostep_count", ())] == 10
    assert got[("orsguard_pending_events_sum", ())] == 9
    assert got[("orsguard_macrostep_duration_seconds_bucket", (("le", "0.001"),))] == 8
    assert got[("orsguard_limit", (("option", "max-microstep-count"),))] == 50
    assert got[("orsguard_limit", (("option", "process-event-timeout"),))] == 5.0


def test_label_values_are_bounded() -> None:
    allowed = {
        "reason": {"final", "limit", "error", "cancelled"},
        "option": set(Limits().by_option()),
        "queue": {"internal", "external"},
    }
    for (_, labels), _value in samples(make_registry(FakeStats(), Limits)).items():
        for key, value in labels:
            if key != "le":
                assert value in allowed[key], (key, value)


def test_no_limits_gauge_without_a_limits_source_and_no_snapshot_on_register() -> None:
    stats = FakeStats()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(OrsguardCollector(stats))
    assert stats.calls == 0  # describe() works without a snapshot
    got = samples(registry)
    assert stats.calls == 1
    assert not [name for name, _ in got if name == "orsguard_limit"]


def test_a_real_limit_violation_is_counted() -> None:
    stats = orsguard.Stats()
    session = orsguard.Session(orsguard.load(SPIN), stats=stats, limits=Limits(max_microstep_count=20))
    session.start()
    session.send("go")
    assert session.termination is not None
    got = samples(make_registry(stats))
    assert got[("orsguard_limit_violations_total", (("option", "max-microstep-count"),))] == 1
    assert got[("orsguard_sessions_ended_total", (("reason", "limit"),))] == 1
    assert got[("orsguard_sessions_started_total", ())] == 1
    assert got[("orsguard_microsteps_total", ())] >= 20


def test_metrics_server_binds_loopback_by_default() -> None:
    server = start_metrics_server(0, registry=make_registry(FakeStats(), Limits))
    try:
        assert server.address == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert "orsguard_sessions_started_total 7.0" in body
    finally:
        server.close()


def test_alert_rules_pass_promtool() -> None:
    promtool = require_program("promtool")
    run = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_alert_rules_fire_as_intended() -> None:
    promtool = require_program("promtool")
    run = subprocess.run([promtool, "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_queries_name_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set()
    for family in text_string_to_metric_families(generate_latest(make_registry(FakeStats(), Limits)).decode()):
        exported |= {s.name for s in family.samples}
    exported |= {"orsguard_mqtt_rejected_messages_total", "orsguard_mqtt_reconnects_total"}
    exported |= {"orsguard_mqtt_publish_failures_total"}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    for expr in exprs:
        for name in re.findall(r"\borsguard_[a-z_]+", expr):
            assert name in exported, (name, expr)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, HostProcess]]:
    broker = Mosquitto(tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        host = HostProcess(broker, tmp_path_factory.mktemp("host"), client_id="metrics-host", metrics_port=free_port())
        try:
            yield broker, host
        finally:
            host.stop()
    finally:
        broker.stop()


def test_a_real_scrape_passes_promtool_check_metrics(served: tuple[Mosquitto, HostProcess]) -> None:
    promtool = require_program("promtool")
    broker, host = served

    async def traffic() -> None:
        async with Peer(broker.port, "t-metrics", ["orsguard/sessions/+/#", "orsguard/errors"]) as peer:
            await peer.publish("orsguard/start", {"document": "spin", "session": "m-spin"})
            await peer.expect(topic_is("orsguard/sessions/m-spin/started"))
            await peer.publish("orsguard/sessions/m-spin/events/go")
            await peer.expect(topic_is("orsguard/sessions/m-spin/ended"))
            await peer.publish("orsguard/start", {"document": "pingpong", "session": "m-pp"})
            await peer.expect(topic_is("orsguard/sessions/m-pp/started"))
            await peer.publish("orsguard/sessions/m-pp/events/ping", {"seq": 1})
            await peer.expect(topic_is("orsguard/sessions/m-pp/pong"))
            await peer.publish("orsguard/start", {"document": "missing"})
            await peer.expect(topic_is("orsguard/errors"))

    asyncio.run(traffic())
    with urllib.request.urlopen(f"http://127.0.0.1:{host.metrics_port}/metrics", timeout=5) as response:
        scrape = response.read()
    run = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True)
    assert run.returncode == 0, (run.stdout + run.stderr).decode()
    text = scrape.decode()
    assert 'orsguard_limit_violations_total{option="max-microstep-count"} 1.0' in text
    assert "orsguard_sessions_active 1.0" in text
    assert 'orsguard_mqtt_rejected_messages_total{code="unknown-document"} 1.0' in text
