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
session (a clean start only on the first connection, and a session expiry
interval), so events published while the host reconnects wait in the broker.
Delivery is at least once: a consumer may see a message twice.

``--workers N`` runs N such hosts as child processes (:func:`supervise`),
each its own MQTT client in the shared subscription, behind one metrics
endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import mqtt5
from prometheus_client import CollectorRegistry, Counter

import orsguard
from orsguard.clock import AsyncioClock
from orsguard.ioprocessors import is_platform_event
from orsguard.ioprocessors.mqtt import MqttEventIOProcessor
from orsguard.ioprocessors.mqtt_protocol import MqttClient, MqttError
from orsguard.limits import Limits
from orsguard.metrics import HostMetrics, OrsguardCollector, start_metrics_server
from orsguard.options import LimitsSource, OptionsError
from orsguard.session import Session

__all__ = ["HostConfig", "SessionHost", "add_subcommand", "main", "serve"]

_log = logging.getLogger("orsguard.host")

#: Shared-subscription group every host joins for start requests.
SHARE_GROUP = "orsguard"
#: Send retries when the options file does not set ``orchestration/send-retries``.
DEFAULT_SEND_RETRIES = 3
#: Largest number of topic filters sent in one SUBSCRIBE after a reconnect.
_SUBSCRIBE_BATCH = 500
#: First reconnect delay (s): a broker restart is often over in milliseconds,
#: and every moment disconnected is a moment its clients' events wait.
_FIRST_RETRY = 0.005
_MAX_RETRY = 5.0


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
    #: Live sessions this host runs at most; 0 = no cap.
    max_sessions: int = 100_000
    #: Largest payload (bytes) the host decodes; larger ones are refused.
    max_payload: int = 1 << 20


class _Error(Exception):
    """A request the host answers on the error topic: ``code`` is documented."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


def _usage_error(message: str) -> NoReturn:
    """A bad command-line value: the message, then exit status 2 as for the parser's own errors."""
    print(f"orsguard serve: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_documents(directory: Path) -> dict[str, Any]:
    """Every ``DIR/NAME.scxml`` loaded as document ``NAME``; errors name the file."""
    if not directory.is_dir():
        _usage_error(f"--documents {directory}: not a directory")
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
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        _usage_error(f"--mqtt {url!r}: {exc}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        _usage_error(f"--mqtt wants mqtt://HOST[:PORT], got {url!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        _usage_error(f"--mqtt {url!r}: bad port")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, user, password


#: Longest session id (UTF-8 bytes): it becomes a topic level in every topic of the session.
MAX_SESSION_ID = 256


def _valid_session_id(sid: str) -> bool:
    # The id becomes one topic level, so it must not split or match levels.
    return (
        0 < len(sid) <= MAX_SESSION_ID
        and len(sid.encode("utf-8", "surrogatepass")) <= MAX_SESSION_ID
        and not any(c in sid for c in "/+#\0")
        and sid.isprintable()
    )


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
        self.share_filter = f"$share/{SHARE_GROUP}/{self.start_topic}"
        self.error_topic = f"{self.prefix}/errors"
        self.status_topic = f"{self.prefix}/hosts/{self.client_id}"
        self._drain_topic = f"{self.prefix}/drain/{self.client_id}"
        self._sessions_prefix = f"{self.prefix}/sessions/"
        self._plen = len(self._sessions_prefix)
        # --options: the file's limits and send-retries, re-read on SIGHUP.
        self._source = LimitsSource(config.options) if config.options is not None else None
        self._current = self._source.limits if self._source is not None else Limits()
        retries = self._source.send_retries if self._source is not None else DEFAULT_SEND_RETRIES
        self.sessions: dict[str, Session] = {}
        self._document_of: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client: MqttClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._clock: Any = None
        # Clean hand-over: start requests that arrive while stopping are held
        # until the start subscription is gone, then published again for the
        # other hosts; the drain marker tells when the broker has sent us all.
        self._handing_over = False
        self._unsubscribed = False
        self._held: list[Any] = []
        self._handed_back_count = 0
        self._drain_marker: bytes | None = None
        self._drained: asyncio.Future[None] | None = None
        self.processor = MqttEventIOProcessor(
            self._offer,
            topic_prefix=self.prefix,
            send_retries=retries,
            deliver_error=self._deliver_late_error,
        )
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.registry.register(OrsguardCollector(limits=lambda: self._current))
        # Rare, host-side events: plain prometheus counters cost nothing here.
        self.metrics = HostMetrics(self.registry)
        self._handed_back = Counter(
            "orsguard_mqtt_start_requests_handed_back",
            "Start requests a stopping host published again for the other hosts.",
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
        """Ask :meth:`run` to end: hand over, cancel and report sessions, disconnect."""
        self._stopping.set()

    async def run(self) -> None:
        """Connect, serve until :meth:`stop`, reconnecting with backoff meanwhile."""
        loop = self._loop = asyncio.get_running_loop()
        self._clock = AsyncioClock(loop)
        host, port, user, password = _parse_broker(self.config.broker)
        client = self._client = MqttClient(
            host,
            port,
            client_id=self.client_id,
            on_message=self._on_message,
            username=user,
            password=password,
            keepalive=self.config.keepalive,
            session_expiry=self.config.session_expiry,
            will=mqtt5.Will(
                self.status_topic,
                payload=self._status("offline"),
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                retain=True,
                content_type="application/json",
            ),
            max_queued=_MAX_QUEUED,
        )
        stopper = loop.create_task(self._stopping.wait())
        delay = _FIRST_RETRY
        first = True
        try:
            while not self._stopping.is_set():
                try:
                    if first:
                        await self._wipe_stale_session(client)
                    connack = await client.connect(clean_start=False)
                    await self._on_connected(client, connack, first)
                except MqttError as exc:
                    _log.warning("broker connection lost (%s); retrying in %.3fs", exc, delay)
                else:
                    if not first:
                        self.metrics.reconnected()
                    first = False
                    delay = _FIRST_RETRY
                    closed = loop.create_task(client.wait_closed())
                    await asyncio.wait({closed, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if self._stopping.is_set():
                        closed.cancel()
                        await self._shutdown(client)
                        return
                    _log.warning("broker connection lost (%s); retrying in %.3fs", closed.result(), delay)
                # Jitter keeps a fleet of hosts from reconnecting in lockstep.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopper), delay * random.uniform(0.5, 1.5))
                delay = min(delay * 4, _MAX_RETRY)
            # Stopped while disconnected: sessions still end, their reports stay unsent.
            for sid in list(self.sessions):
                self._cancel(sid)
        finally:
            stopper.cancel()

    async def _wipe_stale_session(self, client: MqttClient) -> None:
        # A previous process with this client id may have left a broker session
        # subscribed to sessions that died with it: a clean start with no
        # expiry ends it. The real session then starts without clean start,
        # because Mosquitto 2.0 does not persist a session created with clean
        # start, and a broker restart would forget it.
        expiry, client.session_expiry = client.session_expiry, 0
        try:
            await client.connect(clean_start=True)
            await client.disconnect()
        finally:
            client.session_expiry = expiry

    async def _on_connected(self, client: MqttClient, connack: Any, first: bool) -> None:
        # Subscribe again every time: a broker that lost its state (restart
        # without persistence, expired session) has forgotten the old ones.
        filters = [] if self._handing_over else [_filter(self.share_filter)]
        filters += [_filter(self._events_filter(sid)) for sid in self.sessions]
        futures = [
            client.subscribe(filters[i : i + _SUBSCRIBE_BATCH]) for i in range(0, len(filters), _SUBSCRIBE_BATCH)
        ]
        for future in futures:
            future.add_done_callback(_check_suback)
        if futures:
            # Wait for the first (start requests) only: later packets on this
            # connection are handled after the others anyway.
            codes = await asyncio.wait_for(asyncio.shield(futures[0]), 10)
            if codes and codes[0] >= 0x80 and not self._handing_over:
                _log.error("the broker refused the start subscription %s: %s", self.share_filter, codes[0])
        self._publish(self.status_topic, self._status("online"), retain=True)
        _log.info(
            "host %s ready on %s (%s): documents %s",
            self.client_id,
            self.config.broker,
            "new broker session" if not connack.session_present else "broker session resumed",
            ", ".join(sorted(self.documents)),
        )

    async def _shutdown(self, client: MqttClient) -> None:
        # Clean hand-over: leave the start group first, so the broker routes
        # new start requests to the other hosts; collect what it had already
        # routed here and publish it again for them; then end the sessions and
        # the broker session, so nothing more is queued for this client id.
        self._handing_over = True
        loop = asyncio.get_running_loop()
        if client.connected:
            with contextlib.suppress(MqttError, TimeoutError):
                marked = client.subscribe([_filter(self._drain_topic)])
                left = client.unsubscribe([self.share_filter])
                await asyncio.wait_for(asyncio.gather(marked, left), 5.0)
                self._unsubscribed = True
                for packet in self._held:
                    self._hand_back(packet)
                self._held.clear()
                # The broker delivers a client's messages in order, so when the
                # marker comes back every start request routed here has arrived.
                self._drain_marker = os.urandom(8).hex().encode()
                self._drained = loop.create_future()
                client.publish(self._drain_topic, self._drain_marker)
                await asyncio.wait_for(self._drained, 5.0)
        if self._held:
            _log.warning("%d start requests could not be handed back", len(self._held))
        _log.info("left the start group; handed back %d start requests", self._handed_back_count)
        for sid in list(self.sessions):
            self._cancel(sid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), 5.0)
        # An empty retained message deletes the status: a cleanly stopped
        # host leaves nothing behind; a crashed one leaves its will.
        self._publish(self.status_topic, b"", retain=True)
        if not await client.wait_acknowledged(5.0):
            _log.warning("%d messages unacknowledged at shutdown", client.unacknowledged)
        await client.disconnect(session_expiry=0)

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

    def _on_message(self, packet: Any) -> None:
        """Act on one incoming message; failures go to the error topic, never up."""
        topic = packet.topic
        try:
            if topic.startswith(self._sessions_prefix):
                self._event(topic, packet.payload)
            elif topic == self.start_topic:
                self._start(packet)
            elif topic == self._drain_topic:
                if packet.payload == self._drain_marker and self._drained is not None and not self._drained.done():
                    self._drained.set_result(None)
            else:
                raise _Error("bad-topic", f"not a topic this host serves: {topic}")
        except _Error as exc:
            self._reject(exc, topic, packet)
        except Exception as exc:  # one bad message must not stop the host
            _log.exception("unexpected failure on %s", topic)
            self._reject(_Error("internal", f"{type(exc).__name__}: {exc}"), topic, packet)

    def _event(self, topic: str, payload: bytes) -> None:
        plen = self._plen
        slash = topic.find("/", plen)
        if slash < 0 or not topic.startswith("events/", slash + 1) or len(topic) == slash + 8:
            raise _Error("bad-topic", f"event topics are {self.prefix}/sessions/<sid>/events/<name>")
        sid = topic[plen:slash]
        name = topic[slash + 8 :]
        if is_platform_event(name):
            raise _Error(
                "reserved-event", f"{name!r}: error.* and done.* events come only from the platform", session=sid
            )
        if len(payload) > self.config.max_payload:
            raise _Error(
                "too-large", f"payload of {len(payload)} bytes; at most {self.config.max_payload}", session=sid
            )
        try:
            data = _loads(payload)
        except _Error as exc:
            exc.detail["session"] = sid
            raise
        session = self.sessions.get(sid)
        if session is None:
            raise _Error("unknown-session", f"no running session {sid} on this host", session=sid)
        session.send(name, data)

    def _start(self, packet: Any) -> None:
        if self._handing_over:
            if self._unsubscribed:
                self._hand_back(packet)
            else:
                self._held.append(packet)
            return
        sid: str | None = None
        client = self._client
        try:
            payload = packet.payload
            if len(payload) > self.config.max_payload:
                raise _Error("too-large", f"payload of {len(payload)} bytes; at most {self.config.max_payload}")
            name, document, sid, data = self._parse_start(payload)
            cap = self.config.max_sessions
            if cap and len(self.sessions) >= cap:
                raise _Error("max-sessions", f"this host runs {cap} sessions, its --max-sessions", session=sid)
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
            self.sessions[sid] = session
            self._document_of[sid] = name
            # Not waited for: the broker handles this connection's packets in
            # order, so the subscription exists before "started" is routed.
            if client is not None:
                subscribed = client.subscribe([_filter(self._events_filter(sid))])
                subscribed.add_done_callback(partial(self._subscribed, sid=sid, session=session))
            session.start()
            started = {"session": sid, "document": name, "host": self.client_id}
            self._reply(f"{self._sessions_prefix}{sid}/started", started, packet)
        except _Error as exc:
            self._reject(exc, self.start_topic, packet)
        except orsguard.DocumentError as exc:
            self._reject(_Error("start-failed", str(exc), session=sid), self.start_topic, packet)
            self._abandon(sid)
        except Exception as exc:  # one bad request must not stop the host
            _log.exception("starting a session failed")
            error = _Error("start-failed", f"{type(exc).__name__}: {exc}", session=sid)
            self._reject(error, self.start_topic, packet)
            self._abandon(sid)

    def _subscribed(self, future: asyncio.Future[list[int]], sid: str, session: Session) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # connection lost: the reconnect subscribes again
        codes = future.result()
        if codes and codes[0] >= 0x80 and self.sessions.get(sid) is session:
            # The session cannot hear its events: end it and say why.
            self._reject(
                _Error("unavailable", f"the broker refused the subscription for {sid}: {codes[0]}", session=sid),
                self.start_topic,
                None,
            )
            self._cancel(sid)

    def _hand_back(self, packet: Any) -> None:
        self._handed_back.inc()
        self._handed_back_count += 1
        self._publish(self.start_topic, packet.payload, properties=_request_properties(packet))

    def _abandon(self, sid: str | None) -> None:
        # A session that failed to start: forget it and stop listening for it.
        if sid is None:
            return
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.running:
            self._cancel(sid)
            return
        self.sessions.pop(sid, None)
        self._document_of.pop(sid, None)
        self._unsubscribe(sid)

    def _parse_start(self, payload: bytes) -> tuple[str, Any, str | None, dict[str, Any] | None]:
        request = _loads(payload)
        if not isinstance(request, dict):
            raise _Error("bad-payload", "a start request is a JSON object")
        name = request.get("document")
        if not isinstance(name, str):
            raise _Error("bad-payload", 'a start request needs "document": NAME')
        document = self.documents.get(name)
        if document is None:
            raise _Error("unknown-document", f"no document {name[:200]!r} here", document=name[:200])
        sid = request.get("session")
        if sid is not None and (not isinstance(sid, str) or not _valid_session_id(sid)):
            raise _Error(
                "bad-payload",
                f'"session" must be a string of 1 to {MAX_SESSION_ID} bytes without / + # (one topic level)',
            )
        if sid is not None and sid in self.sessions:
            raise _Error("session-exists", f"session {sid} is already running", session=sid)
        data = request.get("data")
        if data is not None and not isinstance(data, dict):
            raise _Error("bad-payload", '"data" must be a JSON object')
        return name, document, sid, data

    def _events_filter(self, sid: str) -> str:
        return f"{self._sessions_prefix}{sid}/events/#"

    # -- outgoing --------------------------------------------------------

    def _on_end(self, session: Session) -> None:
        # Called by the core, possibly in the middle of a macrostep: only
        # bookkeeping here; the report goes out after the current message.
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
            _log_limit(sid, name, termination)
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(self._ended, sid, report)

    def _ended(self, sid: str, report: dict[str, Any]) -> None:
        self._publish(f"{self._sessions_prefix}{sid}/ended", _dumps(report))
        self._unsubscribe(sid)

    def _unsubscribe(self, sid: str) -> None:
        # The broker drops the subscription with the session otherwise; a
        # failure here only leaves a filter nobody publishes to.
        if self._client is not None and self._client.connected:
            self._client.unsubscribe([self._events_filter(sid)]).add_done_callback(_ignore)

    def _cancel(self, sid: str) -> None:
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.running:
            session.cancel()
        else:
            self._on_end(session)

    def _deliver_late_error(self, session: Session, name: str, data: dict[str, Any]) -> None:
        if self.sessions.get(session.session_id) is session and session.running:
            session.send(name, data)

    def _reject(self, error: _Error, topic: str, request: Any) -> None:
        self.metrics.rejected(error.code)
        _log.info("rejected message on %s: %s: %s", topic[:300], error.code, str(error)[:300])
        body = {"error": error.code, "message": str(error), "topic": topic, **error.detail}
        self._reply(self.error_topic, body, request)

    def _reply(self, topic: str, body: dict[str, Any], request: Any) -> None:
        payload = _dumps(body)
        self._publish(topic, payload)
        # MQTT 5 request/response: answer on the request's Response Topic too,
        # echoing its Correlation Data, so a client can wait for exactly this.
        response_topic = request.response_topic if request is not None else None
        if response_topic and "+" not in response_topic and "#" not in response_topic:
            props: dict[str, Any] = {"content_type": "application/json"}
            if request.correlation_data:
                props["correlation_data"] = request.correlation_data
            self._publish(response_topic, payload, properties=props)

    def _offer(self, topic: str, payload: bytes, properties: Any = None) -> None:
        """Queue a QoS 1 publish; raise if the client refuses it (queue full)."""
        if self._client is None:
            raise MqttError("host not started")
        self._client.publish(topic, payload, properties=properties)

    def _publish(
        self,
        topic: str,
        payload: bytes,
        *,
        properties: dict[str, Any] | None = None,
        retain: bool = False,
    ) -> None:
        """Publish a host message (started, ended, errors), retrying a refusal."""
        if properties is None:
            properties = _JSON_PROPS
        client = self._client
        try:
            if client is None:
                raise MqttError("host not started")
            client.publish(topic, payload, retain=retain, properties=properties)
        except MqttError:
            self._spawn(self._retry(topic, payload, properties, retain))

    async def _retry(self, topic: str, payload: bytes, properties: dict[str, Any], retain: bool) -> None:
        retries = self.processor.send_retries
        for attempt in range(retries):
            await asyncio.sleep(0.2 * 2**attempt)
            try:
                if self._client is None:
                    raise MqttError("host not started")
                self._client.publish(topic, payload, retain=retain, properties=properties)
                return
            except MqttError as exc:
                _log.debug("publish to %s refused (retry %d): %s", topic, attempt + 1, exc)
        self.metrics.publish_failed()
        _log.warning("dropped a message to %s after %d retries", topic, retries)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


#: Outgoing messages the client may hold (unacknowledged or waiting for a connection).
_MAX_QUEUED = 100_000
_JSON_PROPS: dict[str, Any] = {"content_type": "application/json"}


def _filter(pattern: str) -> mqtt5.TopicFilter:
    return mqtt5.TopicFilter(
        pattern,
        max_qos=mqtt5.QoS.AT_LEAST_ONCE,
        retain_handling=mqtt5.RetainHandling.SEND_NEVER,
    )


def _check_suback(future: asyncio.Future[list[int]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    refused = [code for code in future.result() if code >= 0x80]
    if refused:
        _log.error("the broker refused %d subscriptions (codes %s)", len(refused), sorted(set(refused)))


def _ignore(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _request_properties(packet: Any) -> dict[str, Any] | None:
    props: dict[str, Any] = {}
    for name in ("content_type", "response_topic", "correlation_data", "message_expiry_interval"):
        value = getattr(packet, name)
        if value is not None:
            props[name] = value
    if packet.payload_format_indicator:
        props["payload_format_indicator"] = packet.payload_format_indicator
    if packet.user_properties:
        props["user_properties"] = list(packet.user_properties)
    return props


def _log_limit(sid: str, document: str | None, termination: Any) -> None:
    loop = termination.loop
    fields = {
        "session": sid,
        "document": document,
        "option": termination.option,
        "limit": termination.limit,
        "observed": termination.observed,
        "state": termination.state,
        "transition": termination.transition,
        "loop": loop[0] if loop is not None else None,
    }
    _log.warning(
        "session %s (%s) ended by %s: limit %s, observed %s, state %s, loop %s",
        sid,
        document,
        termination.option,
        _number(termination.limit),
        _number(termination.observed),
        termination.state,
        fields["loop"],
        extra={"fields": fields},
    )


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- JSON in and out ---------------------------------------------------------
#
# Built once: json.dumps/loads with keyword arguments build a new encoder or
# decoder on every call, which costs more than encoding a small event.

_SAFE_INT = 1 << 53


def _parse_int(text: str) -> int | float:
    value = int(text)
    if -_SAFE_INT <= value <= _SAFE_INT:
        return value
    # ECMAScript numbers are doubles: a larger integer becomes the nearest one,
    # and one beyond the double range is refused rather than made infinite.
    try:
        return float(value)
    except OverflowError:
        raise _Error("bad-payload", f"number {text[:40]}... is beyond the double range") from None


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Error("bad-payload", f"number {text[:40]} is beyond the double range")
    return value


def _parse_constant(name: str) -> Any:
    raise _Error("bad-payload", f"{name} is not JSON")


_DECODE = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant).decode
# The hooks above cost a Python call per number. Only a run of 16 digits (an
# integer may pass 2**53), an exponent, NaN or Infinity can need them; any
# other payload, the usual event, goes through the plain C decoder.
_PLAIN_DECODE = json.JSONDecoder().decode
_NEEDS_HOOKS = re.compile(r"[0-9]{16}|[0-9][eE]|NaN|Infinity").search
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode


def _dumps(body: Any) -> bytes:
    try:
        return _ENCODE(body).encode()
    except ValueError:
        # Only NaN or an infinity gets here: JSON has neither, so say null.
        return _ENCODE(_finite(body)).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _loads(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        text = payload.decode()
        return _DECODE(text) if _NEEDS_HOOKS(text) else _PLAIN_DECODE(text)
    except _Error:
        raise
    except UnicodeDecodeError as exc:
        raise _Error("bad-payload", f"payload is not UTF-8: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise _Error("bad-payload", f"payload is not JSON: {str(exc)[:200]}") from None


# -- the process -------------------------------------------------------------


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


class WorkersCollector:
    """Gathers the workers' metrics into one exposition (for ``--workers N``).

    Each worker serves its own registry on a loopback port; a scrape of the
    supervisor reads them all and adds samples with the same name and labels
    (``orsguard_limit`` takes the largest, ``*_created`` the earliest), so
    dashboards and alerts see one host. ``orsguard_workers_up`` counts the
    workers that answered.
    """

    def __init__(self, ports: Sequence[int], timeout: float = 2.0) -> None:
        self.ports = list(ports)
        self.timeout = timeout

    def collect(self) -> Any:
        """Yield the merged metric families."""
        from prometheus_client.core import GaugeMetricFamily, Metric
        from prometheus_client.parser import text_string_to_metric_families

        families: dict[str, Any] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        up = 0
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=self.timeout) as response:
                    text = response.read().decode()
            except (OSError, ValueError):
                continue
            up += 1
            for family in text_string_to_metric_families(text):
                if family.name not in families:
                    families[family.name] = Metric(family.name, family.documentation, family.type)
                    values[family.name] = {}
                merged = values[family.name]
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    old = merged.get(key)
                    if old is None:
                        merged[key] = sample.value
                    elif sample.name.endswith("_created"):
                        merged[key] = min(old, sample.value)
                    elif family.name == "orsguard_limit":
                        merged[key] = max(old, sample.value)
                    else:
                        merged[key] = old + sample.value
        yield GaugeMetricFamily("orsguard_workers_up", "Worker processes that answered this scrape.", value=up)
        for name, family in families.items():
            for (sample_name, labels), value in values[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # In the child before exec: a worker must not outlive a killed supervisor.
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_argv(config: HostConfig, client_id: str, metrics_port: int | None, args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "orsguard.host", "--workers", "1", "--mqtt", config.broker]
    argv += ["--documents", str(config.documents), "--topic-prefix", config.topic_prefix, "--client-id", client_id]
    argv += ["--session-expiry", str(config.session_expiry), "--max-sessions", str(config.max_sessions)]
    argv += ["--max-payload", str(config.max_payload), "--log-level", args.log_level, "--log-format", args.log_format]
    if config.options is not None:
        argv += ["--options", str(config.options)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port), "--metrics-address", "127.0.0.1"]
    return argv


def supervise(config: HostConfig, workers: int, args: argparse.Namespace) -> int:
    """Run ``workers`` host processes (``--workers N``) until SIGINT/SIGTERM.

    Worker ``i`` is a host with client id ``<client id>-<i>``; SIGHUP, SIGINT
    and SIGTERM are passed on to every worker; a worker that dies is started
    again after a second. With ``--metrics-port`` the supervisor serves one
    endpoint gathering all workers (:class:`WorkersCollector`).
    """
    _parse_broker(config.broker)
    load_documents(config.documents)  # a broken document stops here, once
    return asyncio.run(_supervise(config, workers, args))


async def _supervise(config: HostConfig, workers: int, args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    base = config.client_id or f"orsguard-{socket.gethostname()}-{os.getpid()}"
    ports: list[int | None] = [_free_port() if config.metrics_port is not None else None for _ in range(workers)]
    procs: list[asyncio.subprocess.Process | None] = [None] * workers
    stopping = asyncio.Event()

    async def launch(i: int) -> None:
        argv = _worker_argv(config, f"{base}-{i + 1}", ports[i], args)
        procs[i] = await asyncio.create_subprocess_exec(*argv, preexec_fn=_die_with_parent)

    def forward(signum: int) -> None:
        if signum != signal.SIGHUP:
            stopping.set()
        for proc in procs:
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, forward, signum)
    server = None
    if config.metrics_port is not None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(WorkersCollector([p for p in ports if p is not None]))
        server = start_metrics_server(config.metrics_port, config.metrics_address, registry=registry)
        _log.info("metrics of %d workers on http://%s:%d/metrics", workers, server.address, server.port)
    try:
        for i in range(workers):
            await launch(i)
        _log.info("started %d workers", workers)
        while not stopping.is_set():
            waits = {loop.create_task(p.wait()): i for i, p in enumerate(procs) if p is not None}
            stopper = loop.create_task(stopping.wait())
            done, _ = await asyncio.wait({*waits, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (*waits, stopper):
                if task not in done:
                    task.cancel()
            if stopping.is_set():
                break
            for task in done:
                i = waits[task]
                _log.error("worker %d exited with %s; starting it again", i + 1, task.result())
                await asyncio.sleep(1.0)
                if not stopping.is_set():
                    await launch(i)
        codes = [await p.wait() for p in procs if p is not None]
        return 0 if all(code == 0 for code in codes) else 1
    finally:
        if server is not None:
            server.close()


def _whole(highest: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 0 <= value <= highest:
            raise argparse.ArgumentTypeError(f"{value} is not between 0 and {highest}")
        return value

    return parse


_positive = _whole(2**31 - 1)


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
    parser.add_argument("--metrics-port", type=_whole(65535), metavar="N", help="serve Prometheus /metrics on port N")
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
        help="MQTT client id (default orsguard-<hostname>-<pid>); unique per host; workers add -1, -2, ...",
    )
    parser.add_argument(
        "--session-expiry",
        # The MQTT 5 property is four bytes.
        type=_whole(2**32 - 1),
        default=600,
        metavar="SECONDS",
        help="how long the broker keeps queued events for a disconnected host (default 600)",
    )
    parser.add_argument(
        "--max-sessions",
        type=_positive,
        default=100_000,
        metavar="N",
        help="live sessions per host process at most; more start requests are refused (default 100000; 0 = no cap)",
    )
    parser.add_argument(
        "--max-payload",
        type=_positive,
        default=1 << 20,
        metavar="BYTES",
        help="largest start request or event payload accepted (default 1048576)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=0,
        metavar="N",
        help="host processes sharing the work, one metrics endpoint for all (default: one per CPU)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per line (default text)",
    )


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.process is not None:
            entry["pid"] = record.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _dumps(entry).decode()


def _setup_logging(args: argparse.Namespace) -> None:
    handler = logging.StreamHandler()
    if args.log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(args.log_level.upper())
    except ValueError:
        _usage_error(f"--log-level {args.log_level!r}: not a logging level")


def _config_from_args(args: argparse.Namespace) -> HostConfig:
    return HostConfig(
        broker=args.mqtt,
        documents=args.documents,
        options=args.options,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        topic_prefix=args.topic_prefix,
        client_id=args.client_id,
        session_expiry=args.session_expiry,
        max_sessions=args.max_sessions,
        max_payload=args.max_payload,
    )


def _run_from_args(args: argparse.Namespace) -> int:
    _setup_logging(args)
    config = _config_from_args(args)
    workers = args.workers or os.cpu_count() or 1
    if workers > 1:
        return supervise(config, workers, args)
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
