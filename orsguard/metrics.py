"""Prometheus metrics for orsguard sessions.

The core counts into plain C fields of a ``Stats`` object (``orsguard._core``)
and never calls Prometheus. :class:`OrsguardCollector` reads one
``Stats.snapshot()`` per scrape and turns it into metric families, so the cost
of metrics is paid at scrape time, not per microstep or event.

Embedding orsguard in an application that already exposes Prometheus metrics::

    from prometheus_client import REGISTRY
    from orsguard.metrics import OrsguardCollector

    REGISTRY.register(OrsguardCollector(limits=lambda: my_limits))

Without an existing exporter, :func:`start_metrics_server` serves a registry
over HTTP on 127.0.0.1; :func:`make_registry` builds a registry holding only
the orsguard collector. :class:`HostMetrics` holds the MQTT host's own
counters. Every counter series exists at 0 from the first scrape.
docs/operations.md lists every metric.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString as _untyped_float_to_go_string

from orsguard._core import END_REASONS, default_stats
from orsguard.limits import OPTION_NAMES, Limits

__all__ = [
    "PEAK_HISTOGRAMS",
    "REJECT_CODES",
    "HostMetrics",
    "MetricsServer",
    "OrsguardCollector",
    "StatsSource",
    "make_registry",
    "start_metrics_server",
]

# prometheus_client leaves this helper unannotated.
_float_to_go_string = cast(Callable[[float], str], _untyped_float_to_go_string)

#: Event queues; the values of ``orsguard_events_total{queue}``.
QUEUES: tuple[str, ...] = ("internal", "external")
#: ORS option names; the values of every ``option`` label.
OPTIONS: tuple[str, ...] = tuple(OPTION_NAMES.values())

#: The per-session high-water marks, each observed once when a session ends:
#: ``Stats.snapshot()`` key, metric name, help text.
PEAK_HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    (
        "peak_microsteps",
        "orsguard_session_peak_microsteps",
        "Most microsteps one macrostep of a session took, observed when the session ends; "
        "compare with the max-microstep-count limit.",
    ),
    (
        "peak_state_entries",
        "orsguard_session_peak_state_entries",
        "Most times a session entered one state, observed when the session ends; "
        "compare with the max-state-entry-count limit.",
    ),
    (
        "peak_pending",
        "orsguard_session_peak_pending_events",
        "Most events pending at once in a session (internal, external and delayed), observed when "
        "the session ends; compare with the max-pending-events limit.",
    ),
    (
        "age_at_end_seconds",
        "orsguard_session_age_at_end_seconds",
        "Age of a session when it ended, on its own clock; compare with the max-session-age limit.",
    ),
)

#: Error codes the host answers on its error topic; the values of
#: ``orsguard_mqtt_rejected_messages_total{code}``, all exported from start-up.
REJECT_CODES: tuple[str, ...] = (
    "bad-payload",
    "bad-topic",
    "internal",
    "max-sessions",
    "reserved-event",
    "session-exists",
    "start-failed",
    "too-large",
    "unavailable",
    "unknown-document",
    "unknown-session",
)


class StatsSource(Protocol):
    """Anything with the ``snapshot()`` of ``orsguard._core.Stats``."""

    def snapshot(self) -> Mapping[str, Any]:
        """Return the current counters (shape documented on ``Stats.snapshot``)."""
        ...


class OrsguardCollector(Collector):
    """Exports a ``Stats`` object's counters and the configured limits.

    ``stats`` defaults to ``orsguard._core.default_stats``, the instance every
    session counts into unless it was given its own. ``limits`` is a callable
    returning the :class:`~orsguard.limits.Limits` in force now; it is called at
    each scrape so a SIGHUP reload shows up without re-registering. Without it
    the ``orsguard_limit`` gauge is left out.
    """

    def __init__(
        self,
        stats: StatsSource | None = None,
        limits: Callable[[], Limits] | None = None,
    ) -> None:
        self._stats = stats if stats is not None else default_stats
        self._limits = limits

    def describe(self) -> Iterator[Metric]:
        """Describe the families without taking a snapshot (registry duplicate check)."""
        yield from _families(None, None)

    def collect(self) -> Iterator[Metric]:
        """One snapshot, turned into metric families."""
        limits = self._limits() if self._limits is not None else None
        yield from _families(self._stats.snapshot(), limits)


def _families(snap: Mapping[str, Any] | None, limits: Limits | None) -> Iterator[Metric]:
    # describe() passes snap=None: the same families, no samples.
    started = CounterMetricFamily("orsguard_sessions_started", "Sessions started since the process started.")
    ended = CounterMetricFamily(
        "orsguard_sessions_ended",
        "Sessions that stopped running, by reason: final (reached a top-level final "
        "state), limit (terminated by an ORS limit), error, cancelled.",
        labels=["reason"],
    )
    active = GaugeMetricFamily("orsguard_sessions_active", "Sessions running now.")
    violations = CounterMetricFamily(
        "orsguard_limit_violations",
        "Sessions terminated by an ORS limit, by option name.",
        labels=["option"],
    )
    events = CounterMetricFamily("orsguard_events", "Events processed, by queue.", labels=["queue"])
    microsteps = CounterMetricFamily("orsguard_microsteps", "Microsteps taken.")
    if snap is not None:
        started.add_metric([], snap["sessions_started"])
        for reason in END_REASONS:
            ended.add_metric([reason], snap["sessions_ended"].get(reason, 0))
        active.add_metric([], snap["sessions_active"])
        for option in OPTIONS:
            violations.add_metric([option], snap["limit_violations"].get(option, 0))
        for queue in QUEUES:
            events.add_metric([queue], snap["events"].get(queue, 0))
        microsteps.add_metric([], snap["microsteps"])
    yield from (started, ended, active, violations, events, microsteps)

    yield _histogram(
        "orsguard_microsteps_per_macrostep",
        "Microsteps taken per macrostep; compare with the max-microstep-count limit.",
        None if snap is None else snap["microsteps_per_macrostep"],
    )
    yield _histogram(
        "orsguard_macrostep_duration_seconds",
        "Wall time of one macrostep; compare with the process-event-timeout limit.",
        None if snap is None else snap["macrostep_seconds"],
    )
    yield _histogram(
        "orsguard_pending_events",
        "Events pending in a session (internal, external and delayed together) at the start of each "
        "macrostep; compare with the max-pending-events limit.",
        None if snap is None else snap["pending_events"],
    )

    for key, name, documentation in PEAK_HISTOGRAMS:
        # A core without per-session peaks has no such key: the family is left
        # out rather than exported empty, which would read as "no session ended".
        if snap is None or key in snap:
            yield _histogram(name, documentation, None if snap is None else snap[key])

    if snap is None or limits is not None:
        gauge = GaugeMetricFamily(
            "orsguard_limit",
            "Configured ORS session limit by option name: counts for the *-count and "
            "max-pending-events options; seconds for process-event-timeout (written in "
            "milliseconds in the options file: 5000 there is 5 here) and max-session-age; "
            "0 means the limit is off.",
            labels=["option"],
        )
        if limits is not None:
            for option, value in limits.by_option().items():
                gauge.add_metric([option], float(value))
        yield gauge


def _histogram(name: str, documentation: str, hist: Mapping[str, Any] | None) -> Metric:
    if not hist:
        return HistogramMetricFamily(name, documentation)
    bounds: Sequence[float] = hist["buckets"]
    counts: Sequence[int] = hist["counts"]
    if len(bounds) != len(counts) or not bounds or not math.isinf(bounds[-1]):
        raise ValueError(f"{name}: snapshot buckets must end with +Inf and match counts")
    # The core keeps one count per bucket; Prometheus wants running totals.
    cumulative = []
    total = 0
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        cumulative.append((_float_to_go_string(bound), total))
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=hist["sum"])


class HostMetrics:
    """The host's own counters, every series exported at 0 from start-up.

    ``orsguard_mqtt_rejected_messages_total{code}`` has one series per code in
    ``codes`` before the first rejection, so dashboards and ``increase()`` have
    data from the first scrape; a code outside ``codes`` is still counted.
    """

    def __init__(self, registry: CollectorRegistry, codes: Sequence[str] = REJECT_CODES) -> None:
        self._rejected = Counter(
            "orsguard_mqtt_rejected_messages",
            "MQTT messages the host answered on the error topic, by error code.",
            ["code"],
            registry=registry,
        )
        for code in codes:
            self._rejected.labels(code)
        self._reconnects = Counter(
            "orsguard_mqtt_reconnects",
            "Times the host lost its broker connection and connected again.",
            registry=registry,
        )
        self._publish_failures = Counter(
            "orsguard_mqtt_publish_failures",
            "Host publishes (started, ended, errors) dropped after all retries.",
            registry=registry,
        )

    def rejected(self, code: str) -> None:
        """Count one message answered on the error topic with ``code``."""
        self._rejected.labels(code).inc()

    def reconnected(self) -> None:
        """Count one reconnection to the broker."""
        self._reconnects.inc()

    def publish_failed(self) -> None:
        """Count one host publish dropped after all retries."""
        self._publish_failures.inc()


def make_registry(
    stats: StatsSource | None = None,
    limits: Callable[[], Limits] | None = None,
) -> CollectorRegistry:
    """A registry holding only an :class:`OrsguardCollector` (no process metrics)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(OrsguardCollector(stats, limits))
    return registry


class MetricsServer:
    """A running ``/metrics`` HTTP server; :meth:`close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The bound TCP port (useful when 0 was asked for)."""
        return int(self._server.server_port)

    @property
    def address(self) -> str:
        """The bound address."""
        return str(self._server.server_address[0])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int,
    address: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve ``registry`` at ``http://address:port/metrics`` from a daemon thread.

    Bound to loopback unless ``address`` says otherwise, because the metrics
    name documents and limits an operator may not want on every interface.
    ``registry`` defaults to :func:`make_registry` with the process-wide stats.
    Port 0 picks a free port; read it back from :attr:`MetricsServer.port`.
    """
    if registry is None:
        registry = make_registry()
    server, thread = start_http_server(port, addr=address, registry=registry)
    return MetricsServer(server, thread)
