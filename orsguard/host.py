"""The MQTT session host: ``orsguard serve --mqtt mqtt://HOST:PORT --documents DIR``.

One host process keeps SCXML sessions in memory and talks to one MQTT 5
broker. Start requests arrive through the shared subscription
``$share/orsguard/<prefix>/start``, so every host on the broker takes a share;
a session's events are subscribed to only by the host that started it. The
topic layout and payloads are in docs/operations.md; in short:

==========================================  =========================================
``<prefix>/start``                           start request (JSON), shared by all hosts
``<prefix>/sessions/<sid>/started``          the host has the session and takes events
``<prefix>/sessions/<sid>/events/<name>``    event ``name`` for the session (JSON data)
``<prefix>/sessions/<sid>/ended``            the session stopped (final, limit, ...)
``<prefix>/errors``                          a request the host could not act on
``<prefix>/hosts/<client id>``               retained host status (online/offline)
==========================================  =========================================

Everything is published and subscribed with QoS 1 on a persistent broker
session (never a clean start after the first connection, and a session expiry
interval), so events published while the host reconnects wait in the broker.
Delivery is at least once: a consumer may see a message twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry, Counter

import orsguard
from orsguard.clock import AsyncioClock
from orsguard.ioprocessors.mqtt import MqttEventIOProcessor
from orsguard.limits import Limits
from orsguard.metrics import OrsguardCollector, start_metrics_server
from orsguard.options import LimitsSource, OptionsError

__all__ = ["HostConfig", "SessionHost", "add_subcommand", "main", "serve"]

_log = logging.getLogger("orsguard.host")

#: Shared-subscription group every host joins for start requests.
SHARE_GROUP = "orsguard"
#: Send retries when the options file does not set ``orchestration/send-retries``.
DEFAULT_SEND_RETRIES = 3
#: Largest number of topic filters sent in one SUBSCRIBE after a reconnect.
_SUBSCRIBE_BATCH = 500


@dataclass(frozen=True)
class HostConfig:
    """Everything ``orsguard serve`` is told on its command line."""

    broker: str
    documents: Path
    options: Path | None = None
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    topic_prefix: str = "orsguard"
    client_id: str | None = None
    #: How long (s) the broker keeps this host's subscriptions and queued
    #: messages after a disconnect; long enough to ride out a broker restart.
    session_expiry: int = 600
    keepalive: int = 30


class _Error(Exception):
    """A request the host answers on the error topic: ``code`` is documented."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


def load_documents(directory: Path) -> dict[str, Any]:
    """Every ``DIR/NAME.scxml`` loaded as document ``NAME``; errors name the file."""
    if not directory.is_dir():
        raise SystemExit(f"orsguard serve: --documents {directory}: not a directory")
    documents = {}
    for path in sorted(directory.glob("*.scxml")):
        try:
            documents[path.stem] = orsguard.load(path)
        except orsguard.DocumentError as exc:
            raise SystemExit(f"orsguard serve: {path}: {exc}") from None
    if not documents:
        raise SystemExit(f"orsguard serve: no *.scxml documents in {directory}")
    return documents


def _parse_broker(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise SystemExit(f"orsguard serve: --mqtt wants mqtt://HOST[:PORT], got {url!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, parts.port or 1883, user, password


def _valid_session_id(sid: str) -> bool:
    # The id becomes one topic level, so it must not split or match levels.
    return bool(sid) and not any(c in sid for c in "/+#\0") and len(sid) <= 256


class SessionHost:
    """Runs sessions for the documents it was given, driven over one MQTT connection."""

    def __init__(
        self,
        config: HostConfig,
        documents: dict[str, Any],
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.documents = documents
        self.prefix = config.topic_prefix.strip("/")
        self.client_id = config.client_id or f"orsguard-{socket.gethostname()}-{os.getpid()}"
        self.start_topic = f"{self.prefix}/start"
        self.error_topic = f"{self.prefix}/errors"
        self.status_topic = f"{self.prefix}/hosts/{self.client_id}"
        self._sessions_prefix = f"{self.prefix}/sessions/"
        # --options: the file's limits and send-retries, re-read on SIGHUP.
        self._source = LimitsSource(config.options) if config.options is not None else None
        self._current = self._source.limits if self._source is not None else Limits()
        retries = self._source.send_retries if self._source is not None else DEFAULT_SEND_RETRIES
        self.sessions: dict[str, Any] = {}
        self._document_of: dict[str, str] = {}
        self._early: dict[str, list[tuple[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: aiomqtt.Client | None = None
        self._paho: paho.Client | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._clock: Any = None
        self.processor = MqttEventIOProcessor(
            self._offer,
            topic_prefix=self.prefix,
            send_retries=retries,
            deliver_error=self._deliver_late_error,
        )
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.registry.register(OrsguardCollector(limits=lambda: self._current))
        # Rare, host-side events: plain prometheus counters cost nothing here.
        self._rejected = Counter(
            "orsguard_mqtt_rejected_messages",
            "MQTT messages the host answered on the error topic, by error code.",
            ["code"],
            registry=self.registry,
        )
        self._reconnects = Counter(
            "orsguard_mqtt_reconnects",
            "Times the host lost its broker connection and connected again.",
            registry=self.registry,
        )
        self._give_ups = Counter(
            "orsguard_mqtt_publish_failures",
            "Host publishes (started, ended, errors) dropped after all retries.",
            registry=self.registry,
        )

    @property
    def limits(self) -> Limits:
        """The limits new and running sessions use now."""
        return self._current

    def install_reload(self, loop: asyncio.AbstractEventLoop) -> None:
        """Re-read ``--options`` on SIGHUP (no-op without an options file)."""
        if self._source is not None:
            self._source.install_sighup(self.apply_limits, loop=loop)

    def apply_limits(self, limits: Limits) -> None:
        """Use ``limits`` (and the source's send-retries) for new and running sessions."""
        self._current = limits
        if self._source is not None:
            self.processor.send_retries = self._source.send_retries
        # Each running session applies them at its next check.
        for session in list(self.sessions.values()):
            session.limits = limits

    def stop(self) -> None:
        """Ask :meth:`run` to end: running sessions are cancelled and reported."""
        self._stopping.set()

    async def run(self) -> None:
        """Connect, serve until :meth:`stop`, reconnecting with backoff meanwhile."""
        loop = asyncio.get_running_loop()
        self._clock = AsyncioClock(loop)
        host, port, user, password = _parse_broker(self.config.broker)
        connect_props = Properties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = self.config.session_expiry
        will_props = Properties(PacketTypes.PUBLISH)
        will_props.ContentType = "application/json"
        await self._wipe_stale_session(host, port, user, password)
        self._client = aiomqtt.Client(
            host,
            port,
            username=user,
            password=password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            # Never clean start: aiomqtt re-runs paho's connect() on every
            # reconnect, and paho's "first connection only" option then asks for
            # a clean start each time, which throws away the events queued for
            # us. _wipe_stale_session has already cleaned up once.
            clean_start=False,
            properties=connect_props,
            keepalive=self.config.keepalive,
            will=aiomqtt.Will(
                self.status_topic,
                self._status("offline"),
                qos=1,
                retain=True,
                properties=will_props,
            ),
            max_inflight_messages=_MAX_INFLIGHT,
            # Bounded, so that a long outage ends in error.communication
            # (see send-retries) rather than in unbounded memory.
            max_queued_outgoing_messages=_MAX_QUEUED,
            timeout=10,
            # Without it Nagle's algorithm meets delayed ACKs and every
            # acknowledged publish waits ~40 ms.
            socket_options=[_NODELAY],
        )
        # The per-event path talks to aiomqtt's paho client directly: aiomqtt
        # already runs paho's socket I/O on this loop, but its awaitable
        # publish and message iterator cost a future, a task and a warning
        # log line per message, more than processing the event itself.
        # Messages are dispatched from paho's callback (so the PUBACK for an
        # event goes out only after the session has processed it) and
        # publishes are queued without waiting; paho keeps each QoS 1 message
        # until the broker acknowledges it, across reconnects.
        self._paho = self._client._client
        self._paho.on_message = self._on_paho_message
        stopper = loop.create_task(self._stopping.wait())
        delay = 0.1
        first = True
        try:
            while not self._stopping.is_set():
                try:
                    async with self._client as client:
                        await self._on_connected(client)
                        if not first:
                            self._reconnects.inc()
                        first = False
                        delay = 0.1
                        reader = loop.create_task(self._read(client))
                        await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        if self._stopping.is_set():
                            reader.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await reader
                            await self._shutdown(client)
                            return
                        reader.result()
                except aiomqtt.MqttError as exc:
                    self._connected.clear()
                    _log.warning("broker connection lost (%s); retrying in %.1fs", exc, delay)
                # Jitter keeps a fleet of hosts from reconnecting in lockstep.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopper), delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)
            # Stopped while disconnected: sessions still end, their reports stay unsent.
            for sid in list(self.sessions):
                self._cancel(sid)
        finally:
            stopper.cancel()
            self._connected.clear()

    async def _wipe_stale_session(self, host: str, port: int, user: str | None, password: str | None) -> None:
        # A previous process with the same client id may have left a broker
        # session behind, subscribed to sessions that died with it. One clean
        # connection with no session expiry ends that session for good.
        delay = 0.1
        while not self._stopping.is_set():
            try:
                async with aiomqtt.Client(
                    host,
                    port,
                    username=user,
                    password=password,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=True,
                    timeout=10,
                ):
                    return
            except aiomqtt.MqttError as exc:
                _log.warning("cannot reach the broker (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 5.0)

    async def _on_connected(self, client: aiomqtt.Client) -> None:
        # Subscribe again every time: a broker that lost its state (restart
        # without persistence, expired session) has forgotten the old ones.
        no_retained = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        filters = [(f"$share/{SHARE_GROUP}/{self.start_topic}", no_retained)]
        filters += [(self._events_filter(sid), no_retained) for sid in self.sessions]
        for i in range(0, len(filters), _SUBSCRIBE_BATCH):
            await client.subscribe(filters[i : i + _SUBSCRIBE_BATCH])
        self._connected.set()
        await client.publish(self.status_topic, self._status("online"), qos=1, retain=True, properties=_json_props())
        _log.info(
            "host %s ready on %s: documents %s",
            self.client_id,
            self.config.broker,
            ", ".join(sorted(self.documents)),
        )

    async def _shutdown(self, client: aiomqtt.Client) -> None:
        for sid in list(self.sessions):
            self._cancel(sid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), 5.0)
        with contextlib.suppress(aiomqtt.MqttError):
            # An empty retained message deletes the status: a cleanly stopped
            # host leaves nothing behind; a crashed one leaves its will.
            await client.publish(self.status_topic, b"", qos=1, retain=True)
        self._connected.clear()

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.processor.drain()

    def _status(self, status: str) -> bytes:
        return _dumps(
            {
                "host": self.client_id,
                "status": status,
                "documents": sorted(self.documents),
                "pid": os.getpid(),
                "since": time.time(),
            }
        )

    # -- incoming --------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        # Messages arrive through _on_paho_message; iterating aiomqtt's (empty)
        # queue is how the loop learns that the connection is gone.
        async for message in client.messages:
            self.dispatch(message.topic.value, message.payload, message.properties)

    def _on_paho_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        self.dispatch(message.topic, message.payload, getattr(message, "properties", None))

    def dispatch(self, topic: str, payload: Any, properties: Properties | None = None) -> None:
        """Act on one incoming message; failures go to the error topic, never up."""
        try:
            if topic == self.start_topic:
                self._spawn(self._start(payload, properties))
            elif topic.startswith(self._sessions_prefix):
                self._event(topic, payload)
            else:
                raise _Error("bad-topic", f"not a topic this host serves: {topic}")
        except _Error as exc:
            self._reject(exc, topic, properties)
        except Exception as exc:  # one bad message must not stop the host
            _log.exception("unexpected failure on %s", topic)
            self._reject(_Error("internal", f"{type(exc).__name__}: {exc}"), topic, properties)

    def _event(self, topic: str, payload: Any) -> None:
        sid, _, rest = topic[len(self._sessions_prefix) :].partition("/")
        if not rest.startswith("events/") or len(rest) == len("events/"):
            raise _Error("bad-topic", f"event topics are {self.prefix}/sessions/<sid>/events/<name>")
        name = rest[len("events/") :]
        data = _loads(payload)
        early = self._early.get(sid)
        if early is not None:
            early.append((name, data))
            return
        session = self.sessions.get(sid)
        if session is None or not session.running:
            raise _Error("unknown-session", f"no running session {sid} on this host", session=sid)
        session.send(name, data)

    async def _start(self, payload: Any, properties: Properties | None) -> None:
        sid: str | None = None
        try:
            name, document, sid, data = self._parse_start(payload)
            session = orsguard.Session(
                document,
                limits=self._current,
                clock=self._clock,
                session_id=sid,
                ioprocessors=[self.processor],
                on_end=self._on_end,
                data=data,
            )
            sid = session.session_id
            if not _valid_session_id(sid):
                raise _Error("internal", f"session id {sid!r} cannot be a topic level")
            self.sessions[sid] = session
            self._document_of[sid] = name
            # Events that overtake start() (possible between SUBACK and here)
            # wait in this list; see _event.
            self._early[sid] = []
            # Subscribe before starting: the "started" message promises that
            # events published from now on reach the session.
            if self._client is not None:
                await self._client.subscribe(
                    self._events_filter(sid),
                    options=SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND),
                )
            early = self._early.pop(sid, [])
            if self.sessions.get(sid) is not session:
                return  # cancelled (host stopping) while subscribing
            started = {"session": sid, "document": name, "host": self.client_id}
            session.start()
            for event_name, event_data in early:
                if not session.running:
                    break
                session.send(event_name, event_data)
            self._reply(f"{self._sessions_prefix}{sid}/started", started, properties)
        except _Error as exc:
            self._reject(exc, self.start_topic, properties)
        except aiomqtt.MqttError as exc:
            # Lost the broker while subscribing: the session cannot hear its
            # events, so it must not run; the client may ask again.
            error = _Error("unavailable", f"broker connection lost: {exc}", session=sid)
            self._reject(error, self.start_topic, properties)
            self._abandon(sid)
        except orsguard.DocumentError as exc:
            self._reject(_Error("start-failed", str(exc), session=sid), self.start_topic, properties)
            self._abandon(sid)
        except Exception as exc:  # one bad request must not stop the host
            _log.exception("starting a session failed")
            error = _Error("start-failed", f"{type(exc).__name__}: {exc}", session=sid)
            self._reject(error, self.start_topic, properties)
            self._abandon(sid)

    def _abandon(self, sid: str | None) -> None:
        # A session that failed to start: forget it and stop listening for it.
        if sid is None:
            return
        self._early.pop(sid, None)
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.running:
            self._cancel(sid)
            return
        self.sessions.pop(sid, None)
        self._document_of.pop(sid, None)
        self._spawn(self._unsubscribe(sid))

    def _parse_start(self, payload: Any) -> tuple[str, Any, str | None, dict[str, Any] | None]:
        request = _loads(payload)
        if not isinstance(request, dict):
            raise _Error("bad-payload", "a start request is a JSON object")
        name = request.get("document")
        if not isinstance(name, str):
            raise _Error("bad-payload", 'a start request needs "document": NAME')
        document = self.documents.get(name)
        if document is None:
            raise _Error("unknown-document", f"no document {name!r} here", document=name)
        sid = request.get("session")
        if sid is not None and (not isinstance(sid, str) or not _valid_session_id(sid)):
            raise _Error("bad-payload", '"session" must be a string without / + # (one topic level)')
        if sid is not None and sid in self.sessions:
            raise _Error("session-exists", f"session {sid} is already running", session=sid)
        data = request.get("data")
        if data is not None and not isinstance(data, dict):
            raise _Error("bad-payload", '"data" must be a JSON object')
        return name, document, sid, data

    def _events_filter(self, sid: str) -> str:
        return f"{self._sessions_prefix}{sid}/events/#"

    # -- outgoing --------------------------------------------------------

    def _on_end(self, session: Any) -> None:
        # Called by the core, possibly in the middle of a macrostep: only
        # bookkeeping here, the network work goes to a task.
        sid = session.session_id
        self.sessions.pop(sid, None)
        name = self._document_of.pop(sid, None)
        termination = session.termination
        report: dict[str, Any] = {
            "session": sid,
            "document": name,
            # A session cancelled before it started has no end reason of its own.
            "reason": session.end_reason or "cancelled",
            "final": session.final,
            "termination": None,
        }
        if termination is not None:
            report["termination"] = {**termination.as_dict(), "message": str(termination)}
        self._spawn(self._ended(sid, report))

    async def _ended(self, sid: str, report: dict[str, Any]) -> None:
        self._publish(f"{self._sessions_prefix}{sid}/ended", _dumps(report))
        await self._unsubscribe(sid)

    async def _unsubscribe(self, sid: str) -> None:
        if self._client is not None and self._connected.is_set():
            # The broker drops the subscription with the session otherwise;
            # a failure here only leaves a filter nobody publishes to.
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.unsubscribe(self._events_filter(sid))

    def _cancel(self, sid: str) -> None:
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.running:
            session.cancel()
        else:
            self._on_end(session)

    def _deliver_late_error(self, session: Any, name: str, data: dict[str, Any]) -> None:
        if self.sessions.get(session.session_id) is session and session.running:
            session.send(name, data)

    def _reject(self, error: _Error, topic: str, properties: Properties | None) -> None:
        self._rejected.labels(error.code).inc()
        _log.info("rejected message on %s: %s: %s", topic, error.code, error)
        body = {"error": error.code, "message": str(error), "topic": topic, **error.detail}
        self._reply(self.error_topic, body, properties)

    def _reply(self, topic: str, body: dict[str, Any], request_props: Properties | None) -> None:
        payload = _dumps(body)
        self._publish(topic, payload)
        # MQTT 5 request/response: answer on the request's Response Topic too,
        # echoing its Correlation Data, so a client can wait for exactly this.
        response_topic = getattr(request_props, "ResponseTopic", None)
        if response_topic:
            props = _json_props()
            correlation = getattr(request_props, "CorrelationData", None)
            if correlation:
                props.CorrelationData = correlation
            self._publish(response_topic, payload, props)

    def _offer(self, topic: str, payload: bytes, properties: Properties | None) -> None:
        """Queue a QoS 1 publish in paho; raise if paho refuses it (queue full)."""
        if self._paho is None:
            raise aiomqtt.MqttError("host not started")
        info = self._paho.publish(topic, payload, qos=1, properties=properties)
        # NO_CONN still queues a QoS 1 message: paho sends it after reconnecting.
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise aiomqtt.MqttCodeError(info.rc, f"publish to {topic} refused")

    def _publish(self, topic: str, payload: bytes, properties: Properties | None = None) -> None:
        """Publish a host message (started, ended, errors), retrying a refusal."""
        if properties is None:
            properties = _JSON_PROPS
        try:
            self._offer(topic, payload, properties)
        except aiomqtt.MqttError:
            self._spawn(self._retry(topic, payload, properties))

    async def _retry(self, topic: str, payload: bytes, properties: Properties) -> None:
        retries = self.processor.send_retries
        for attempt in range(retries):
            await asyncio.sleep(0.2 * 2**attempt)
            try:
                self._offer(topic, payload, properties)
                return
            except aiomqtt.MqttError as exc:
                _log.debug("publish to %s refused (retry %d): %s", topic, attempt + 1, exc)
        self._give_ups.inc()
        _log.warning("dropped a message to %s after %d retries", topic, retries)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
#: QoS 1 publishes awaiting PUBACK. A broker disconnects a client that exceeds
#: the Receive Maximum of its CONNACK, which paho does not apply by itself;
#: 20 is Mosquitto's default. paho also scans all of them on every PUBACK, so
#: a larger window costs CPU and buys nothing on a LAN.
_MAX_INFLIGHT = 20
#: Outgoing messages paho may hold (unacknowledged or waiting for a connection).
_MAX_QUEUED = 100_000


def _json_props() -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    return props


_JSON_PROPS = _json_props()


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def _loads(payload: Any) -> Any:
    if payload is None or payload == b"" or payload == "":
        return None
    try:
        return json.loads(payload)
    except (ValueError, TypeError) as exc:
        raise _Error("bad-payload", f"payload is not JSON: {exc}") from None


async def serve(config: HostConfig) -> int:
    """Load the documents, start metrics and run the host until SIGINT/SIGTERM.

    SIGHUP re-reads ``--options``. Returns the process exit status.
    """
    _parse_broker(config.broker)  # a bad URL stops here, before anything starts
    documents = load_documents(config.documents)
    try:
        host = SessionHost(config, documents)
    except OptionsError as exc:
        raise SystemExit(f"orsguard serve: {exc}") from None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, host.stop)
    host.install_reload(loop)
    server = None
    if config.metrics_port is not None:
        server = start_metrics_server(config.metrics_port, config.metrics_address, registry=host.registry)
        _log.info("metrics on http://%s:%d/metrics", server.address, server.port)
    try:
        await host.run()
    finally:
        if server is not None:
            server.close()
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt", required=True, metavar="URL", help="broker, mqtt://[USER:PASS@]HOST[:PORT]")
    parser.add_argument(
        "--documents",
        required=True,
        type=Path,
        metavar="DIR",
        help="serve every DIR/NAME.scxml as NAME",
    )
    parser.add_argument(
        "--options",
        type=Path,
        metavar="FILE",
        help="ORS options file with the limits; re-read on SIGHUP",
    )
    parser.add_argument("--metrics-port", type=int, metavar="N", help="serve Prometheus /metrics on port N")
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for /metrics (default 127.0.0.1)",
    )
    parser.add_argument("--topic-prefix", default="orsguard", metavar="PREFIX", help="first topic level(s)")
    parser.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT client id (default orsguard-<hostname>-<pid>); unique per host",
    )
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=600,
        metavar="SECONDS",
        help="how long the broker keeps queued events for a disconnected host (default 600)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")


def _run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = HostConfig(
        broker=args.mqtt,
        documents=args.documents,
        options=args.options,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        topic_prefix=args.topic_prefix,
        client_id=args.client_id,
        session_expiry=args.session_expiry,
    )
    return asyncio.run(serve(config))


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to an argparse subparsers object; ``args.func(args)`` runs it."""
    parser = subparsers.add_parser(
        "serve",
        help="run sessions driven over MQTT",
        description="Run SCXML sessions for the documents in DIR, driven over an MQTT 5 broker.",
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m orsguard.host``: the same options as ``orsguard serve``."""
    parser = argparse.ArgumentParser(prog="python -m orsguard.host", description=__doc__.splitlines()[0])
    _add_arguments(parser)
    return _run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
