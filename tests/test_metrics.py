"""Prometheus metrics: the collector, the HTTP server, the alert rules and the dashboard."""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import orsguard
from orsguard.limits import Limits
from orsguard.metrics import (
    PEAK_HISTOGRAMS,
    REJECT_CODES,
    HostMetrics,
    OrsguardCollector,
    make_registry,
    start_metrics_server,
)
from tests.mqtt_support import (
    REPO,
    HostProcess,
    Mosquitto,
    Peer,
    broker_fixture,  # noqa: F401 (the broker fixture)
    free_port,
    require_program,
    topic_is,
)

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "orsguard.json"
SPIN = (REPO / "examples" / "documents" / "spin.scxml").read_text()


def histogram(bounds: tuple[float, ...], counts: tuple[int, ...], total: float) -> dict[str, Any]:
    return {"buckets": bounds, "counts": counts, "sum": total, "count": sum(counts)}


#: The per-session peak histograms of ``Stats.snapshot()``, as the core fills them.
PEAKS = {
    "peak_microsteps": histogram((1.0, 10.0, 100.0, math.inf), (2, 3, 1, 0), 95.0),
    "peak_state_entries": histogram((1.0, 10.0, 100.0, math.inf), (1, 4, 0, 1), 20_030.0),
    "peak_pending": histogram((0.0, 1.0, 10.0, math.inf), (3, 2, 1, 0), 9.0),
    "age_at_end_seconds": histogram((1.0, 60.0, 3600.0, math.inf), (4, 1, 0, 1), 86_432.5),
}


class FakeStats:
    """The shape of ``Stats.snapshot()``, with a call counter; ``peaks=False`` as before the peaks."""

    def __init__(self, *, peaks: bool = True) -> None:
        self.calls = 0
        self.peaks = peaks

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
            **(PEAKS if self.peaks else {}),
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


def test_peaks_are_exported_as_histograms() -> None:
    got = samples(make_registry(FakeStats(), Limits))
    names = {key: name for key, name, _ in PEAK_HISTOGRAMS}
    assert names == {
        "peak_microsteps": "orsguard_session_peak_microsteps",
        "peak_state_entries": "orsguard_session_peak_state_entries",
        "peak_pending": "orsguard_session_peak_pending_events",
        "age_at_end_seconds": "orsguard_session_age_at_end_seconds",
    }
    for key, name in names.items():
        hist = PEAKS[key]
        running = 0
        for bound, count in zip(hist["buckets"], hist["counts"], strict=True):
            running += count
            le = "+Inf" if math.isinf(bound) else repr(float(bound))
            assert got[(f"{name}_bucket", (("le", le),))] == running, (name, le)
        assert got[(f"{name}_count", ())] == hist["count"]
        assert got[(f"{name}_sum", ())] == hist["sum"]


def test_a_core_without_peaks_exports_no_peak_families() -> None:
    stats = FakeStats(peaks=False)
    got = samples(make_registry(stats, Limits))
    assert stats.calls == 1
    assert not [name for name, _ in got if name.startswith("orsguard_session_")]
    assert got[("orsguard_sessions_started_total", ())] == 7


def test_every_core_counter_exists_at_zero_before_any_session() -> None:
    got = samples(make_registry(orsguard.Stats(), Limits))
    for reason in ("final", "limit", "error", "cancelled"):
        assert got[("orsguard_sessions_ended_total", (("reason", reason),))] == 0
    for option in Limits().by_option():
        assert got[("orsguard_limit_violations_total", (("option", option),))] == 0
    for queue in ("internal", "external"):
        assert got[("orsguard_events_total", (("queue", queue),))] == 0
    assert got[("orsguard_sessions_started_total", ())] == 0
    assert got[("orsguard_microsteps_total", ())] == 0


def test_host_counters_exist_at_zero_from_start_up() -> None:
    registry = CollectorRegistry(auto_describe=True)
    metrics = HostMetrics(registry)
    got = samples(registry)
    for code in REJECT_CODES:
        assert got[("orsguard_mqtt_rejected_messages_total", (("code", code),))] == 0, code
    assert got[("orsguard_mqtt_reconnects_total", ())] == 0
    assert got[("orsguard_mqtt_publish_failures_total", ())] == 0

    metrics.rejected("bad-payload")
    metrics.rejected("bad-payload")
    metrics.rejected("a-code-added-later")
    metrics.reconnected()
    metrics.publish_failed()
    got = samples(registry)
    assert got[("orsguard_mqtt_rejected_messages_total", (("code", "bad-payload"),))] == 2
    assert got[("orsguard_mqtt_rejected_messages_total", (("code", "a-code-added-later"),))] == 1
    assert got[("orsguard_mqtt_rejected_messages_total", (("code", "unknown-session"),))] == 0
    assert got[("orsguard_mqtt_reconnects_total", ())] == 1
    assert got[("orsguard_mqtt_publish_failures_total", ())] == 1


def test_reject_codes_cover_every_code_the_host_answers_with() -> None:
    # The host answers with RequestError(code, ...); a code missing here would
    # appear on dashboards only after its first rejection.
    codes = {
        node.args[0].value
        for path in (REPO / "orsguard" / "host").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "RequestError"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert codes
    assert codes <= set(REJECT_CODES), codes - set(REJECT_CODES)


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


def test_a_real_session_s_peaks_are_exported_when_it_ends() -> None:
    stats = orsguard.Stats()
    clock = orsguard.VirtualClock()
    session = orsguard.Session(orsguard.load(SPIN), stats=stats, clock=clock, limits=Limits(max_microstep_count=20))
    session.start()
    before = samples(make_registry(stats))
    # Still running: nothing is observed before a session ends.
    assert before[("orsguard_session_peak_microsteps_count", ())] == 0
    clock.advance(42.0)
    session.send("go")
    assert session.termination is not None
    got = samples(make_registry(stats))
    # The session stopped at its 21st microstep in one macrostep, after entering spin 20 times.
    assert got[("orsguard_session_peak_microsteps_count", ())] == 1
    assert got[("orsguard_session_peak_microsteps_sum", ())] == 21
    assert got[("orsguard_session_peak_microsteps_bucket", (("le", "20.0"),))] == 0
    assert got[("orsguard_session_peak_microsteps_bucket", (("le", "50.0"),))] == 1
    assert got[("orsguard_session_peak_state_entries_sum", ())] == 20
    assert got[("orsguard_session_peak_state_entries_bucket", (("le", "20.0"),))] == 1
    assert got[("orsguard_session_peak_pending_events_count", ())] == 1
    assert got[("orsguard_session_age_at_end_seconds_sum", ())] == 42.0
    assert got[("orsguard_session_age_at_end_seconds_bucket", (("le", "10.0"),))] == 0
    assert got[("orsguard_session_age_at_end_seconds_bucket", (("le", "60.0"),))] == 1
    assert session.peaks.as_dict()["max-microstep-count"] == 21


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


def exported_names() -> set[str]:
    registry = make_registry(FakeStats(), Limits)
    HostMetrics(registry)
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_alert_rules_name_exported_metrics_and_cover_every_limit() -> None:
    rules = ALERTS.read_text()
    names = set(re.findall(r"\borsguard_[a-z_]+", rules))
    assert names <= exported_names(), names - exported_names()
    # Every option's limit is compared with what real traffic reaches.
    compared = set(re.findall(r'orsguard_limit\{option="([a-z-]+)"\}', rules))
    assert compared == set(Limits().by_option())
    # Counts are printed as whole numbers: humanize would print increase()'s 3.75.
    for line in rules.splitlines():
        if "session(s)" in line or "message(s)" in line:
            assert 'printf "%.0f" $value' in line, line


@pytest.fixture(scope="module")
def served(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, HostProcess]]:
    host = HostProcess(broker, tmp_path_factory.mktemp("host"), client_id="metrics-host", metrics_port=free_port())
    try:
        yield broker, host
    finally:
        host.stop()


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
