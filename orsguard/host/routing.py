"""The host's sessions: start requests and events routed to them, their reports published.

A message on ``<prefix>/start`` (the shared subscription) starts a session;
one on ``<prefix>/sessions/<sid>/events/<name>`` is sent to session ``sid``;
whatever cannot be acted on is answered on ``<prefix>/errors`` with a
documented code (:mod:`orsguard.host.payload`). A session's end is published
on ``<prefix>/sessions/<sid>/ended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import mqtt5
from prometheus_client import CollectorRegistry, Counter

from orsguard.clock import AsyncioClock
from orsguard.document import Document
from orsguard.errors import DocumentError
from orsguard.host.config import HostConfig
from orsguard.host.connection import Connection, check_suback, request_properties, topic_filter
from orsguard.host.payload import MAX_SESSION_ID, RequestError, dumps, loads, valid_session_id
from orsguard.ioprocessors import PLATFORM_EVENT_PREFIXES, is_platform_event
from orsguard.ioprocessors.mqtt import MqttEventIOProcessor
from orsguard.ioprocessors.mqtt_protocol import MqttClient, MqttError
from orsguard.limits import Limits
from orsguard.metrics import HostMetrics, OrsguardCollector
from orsguard.options import LimitsSource
from orsguard.session import Session

if TYPE_CHECKING:
    from orsguard.runtime import IOSession
    from orsguard.termination import Termination

__all__ = ["DEFAULT_SEND_RETRIES", "SHARE_GROUP", "SessionHost"]

_log = logging.getLogger("orsguard.host")

#: Shared-subscription group every host joins for start requests.
SHARE_GROUP = "orsguard"
#: Send retries when the options file does not set ``orchestration/send-retries``.
DEFAULT_SEND_RETRIES = 3
#: Largest number of topic filters sent in one SUBSCRIBE after a reconnect.
_SUBSCRIBE_BATCH = 500
#: Event topics whose parsing is kept, and the longest kept (characters).
_TOPICS_KEPT = 16384
_TOPIC_KEPT_LENGTH = 320


class SessionHost:
    """Runs sessions for the documents it was given, driven over one MQTT connection."""

    def __init__(
        self,
        config: HostConfig,
        documents: dict[str, Document],
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
        # Event topic -> (session id, event name): each session's events come
        # on the same few topics. Only topics of running sessions, bounded in
        # number and length (hostile topics are many and long); emptied when full.
        self._event_topics: dict[str, tuple[str, str]] = {}
        self._max_payload = config.max_payload
        # --options: the file's limits and send-retries, re-read on SIGHUP.
        self._source = LimitsSource(config.options) if config.options is not None else None
        self._current = self._source.limits if self._source is not None else Limits()
        retries = self._source.send_retries if self._source is not None else DEFAULT_SEND_RETRIES
        self.sessions: dict[str, Session] = {}
        self._document_of: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._clock: AsyncioClock | None = None
        # Clean hand-over: start requests that arrive while stopping are held
        # until the start subscription is gone, then published again for the
        # other hosts; the drain marker tells when the broker has sent us all.
        self._handing_over = False
        self._unsubscribed = False
        self._held: list[mqtt5.PublishPacket] = []
        self._handed_back_count = 0
        self._drain_marker: bytes | None = None
        self._drained: asyncio.Future[None] | None = None
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.registry.register(OrsguardCollector(limits=lambda: self._current))
        # Rare, host-side events: plain prometheus counters cost nothing here.
        self.metrics = HostMetrics(self.registry)
        will = mqtt5.Will(
            self.status_topic,
            payload=self._status("offline"),
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            retain=True,
            content_type="application/json",
        )
        self.connection = Connection(
            config, self.client_id, on_message=self._on_message, will=will, retries=retries, metrics=self.metrics
        )
        self.processor = MqttEventIOProcessor(
            self.connection.offer,
            topic_prefix=self.prefix,
            send_retries=retries,
            deliver_error=self._deliver_late_error,
        )
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
            self.processor.send_retries = self.connection.retrier.retries = self._source.send_retries
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
        if not await self.connection.run(self._stopping, self._on_connected, self._shutdown):
            # Stopped while disconnected: sessions still end, their reports stay unsent.
            for sid in list(self.sessions):
                self._cancel(sid)

    async def _on_connected(self, client: MqttClient, connack: mqtt5.ConnAckPacket, first: bool) -> None:
        # Subscribe again every time: a broker that lost its state (restart
        # without persistence, expired session) has forgotten the old ones.
        filters = [] if self._handing_over else [topic_filter(self.share_filter)]
        filters += [topic_filter(self._events_filter(sid)) for sid in self.sessions]
        futures = [
            client.subscribe(filters[i : i + _SUBSCRIBE_BATCH]) for i in range(0, len(filters), _SUBSCRIBE_BATCH)
        ]
        for future in futures:
            future.add_done_callback(check_suback)
        if futures:
            # Wait for the first (start requests) only: later packets on this
            # connection are handled after the others anyway.
            codes = await asyncio.wait_for(asyncio.shield(futures[0]), 10)
            if codes and codes[0] >= 0x80 and not self._handing_over:
                _log.error("the broker refused the start subscription %s: %s", self.share_filter, codes[0])
        self.connection.publish(self.status_topic, self._status("online"), retain=True)
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
                marked = client.subscribe([topic_filter(self._drain_topic)])
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
        self.connection.publish(self.status_topic, b"", retain=True)
        if not await client.wait_acknowledged(5.0):
            _log.warning("%d messages unacknowledged at shutdown", client.unacknowledged)
        await client.disconnect(session_expiry=0)

    async def _drain(self) -> None:
        await self.connection.drain()
        await self.processor.drain()

    def _status(self, status: str) -> bytes:
        return dumps(
            {
                "host": self.client_id,
                "status": status,
                "documents": sorted(self.documents),
                "pid": os.getpid(),
                "since": time.time(),
            }
        )

    # -- incoming --------------------------------------------------------

    def _on_message(self, packet: mqtt5.PublishPacket) -> None:
        """Act on one incoming message; failures go to the error topic, never up."""
        topic = packet.topic
        try:
            # An event, the message of nearly every call, is handled in this
            # frame: a second one per event costs more than its topic parsing.
            parsed = self._event_topics.get(topic)
            if parsed is None:
                if not topic.startswith(self._sessions_prefix):
                    self._other(topic, packet)
                    return
                parsed = self._event_topic(topic)
            sid, name = parsed
            payload = packet.payload
            if len(payload) > self._max_payload:
                raise RequestError(
                    "too-large", f"payload of {len(payload)} bytes; at most {self._max_payload}", session=sid
                )
            try:
                data = loads(payload)
            except RequestError as exc:
                exc.detail["session"] = sid
                raise
            session = self.sessions.get(sid)
            if session is None:
                raise RequestError("unknown-session", f"no running session {sid} on this host", session=sid)
            session.send(name, data)
        except RequestError as exc:
            self._reject(exc, topic, packet)
        except Exception as exc:  # one bad message must not stop the host
            _log.exception("unexpected failure on %s", topic)
            self._reject(RequestError("internal", f"{type(exc).__name__}: {exc}"), topic, packet)

    def _event_topic(self, topic: str) -> tuple[str, str]:
        # The session id and event name of an event topic; kept for the next
        # event when it names a running session and is short enough to keep.
        plen = self._plen
        slash = topic.find("/", plen)
        if slash < 0 or not topic.startswith("events/", slash + 1) or len(topic) == slash + 8:
            raise RequestError("bad-topic", f"event topics are {self.prefix}/sessions/<sid>/events/<name>")
        sid = topic[plen:slash]
        name = topic[slash + 8 :]
        # startswith in C turns almost every name away before the full rule runs.
        if name.startswith(PLATFORM_EVENT_PREFIXES) and is_platform_event(name):
            raise RequestError(
                "reserved-event", f"{name!r}: error.* and done.* events come only from the platform", session=sid
            )
        if len(topic) <= _TOPIC_KEPT_LENGTH and sid in self.sessions:
            if len(self._event_topics) >= _TOPICS_KEPT:
                self._event_topics.clear()
            self._event_topics[topic] = (sid, name)
        return sid, name

    def _other(self, topic: str, packet: mqtt5.PublishPacket) -> None:
        if topic == self.start_topic:
            self._start(packet)
        elif topic == self._drain_topic:
            if packet.payload == self._drain_marker and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
        else:
            raise RequestError("bad-topic", f"not a topic this host serves: {topic}")

    def _start(self, packet: mqtt5.PublishPacket) -> None:
        if self._handing_over:
            if self._unsubscribed:
                self._hand_back(packet)
            else:
                self._held.append(packet)
            return
        sid: str | None = None
        try:
            payload = packet.payload
            if len(payload) > self.config.max_payload:
                raise RequestError("too-large", f"payload of {len(payload)} bytes; at most {self.config.max_payload}")
            name, document, sid, data = self._parse_start(payload)
            cap = self.config.max_sessions
            if cap and len(self.sessions) >= cap:
                raise RequestError("max-sessions", f"this host runs {cap} sessions, its --max-sessions", session=sid)
            session = Session(
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
            subscribed = self.connection.subscribe([self._events_filter(sid)])
            if subscribed is not None:
                subscribed.add_done_callback(partial(self._subscribed, sid=sid, session=session))
            session.start()
            started = {"session": sid, "document": name, "host": self.client_id}
            self._reply(f"{self._sessions_prefix}{sid}/started", started, packet)
        except RequestError as exc:
            self._reject(exc, self.start_topic, packet)
        except DocumentError as exc:
            self._reject(RequestError("start-failed", str(exc), session=sid), self.start_topic, packet)
            self._abandon(sid)
        except Exception as exc:  # one bad request must not stop the host
            _log.exception("starting a session failed")
            error = RequestError("start-failed", f"{type(exc).__name__}: {exc}", session=sid)
            self._reject(error, self.start_topic, packet)
            self._abandon(sid)

    def _subscribed(self, future: asyncio.Future[list[int]], sid: str, session: Session) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # connection lost: the reconnect subscribes again
        codes = future.result()
        if codes and codes[0] >= 0x80 and self.sessions.get(sid) is session:
            # The session cannot hear its events: end it and say why.
            self._reject(
                RequestError("unavailable", f"the broker refused the subscription for {sid}: {codes[0]}", session=sid),
                self.start_topic,
                None,
            )
            self._cancel(sid)

    def _hand_back(self, packet: mqtt5.PublishPacket) -> None:
        self._handed_back.inc()
        self._handed_back_count += 1
        self.connection.publish(self.start_topic, packet.payload, properties=request_properties(packet))

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

    def _parse_start(self, payload: bytes) -> tuple[str, Document, str | None, dict[str, Any] | None]:
        request = loads(payload)
        if not isinstance(request, dict):
            raise RequestError("bad-payload", "a start request is a JSON object")
        name = request.get("document")
        if not isinstance(name, str):
            raise RequestError("bad-payload", 'a start request needs "document": NAME')
        document = self.documents.get(name)
        if document is None:
            raise RequestError("unknown-document", f"no document {name[:200]!r} here", document=name[:200])
        sid = request.get("session")
        if sid is not None and (not isinstance(sid, str) or not valid_session_id(sid)):
            raise RequestError(
                "bad-payload",
                f'"session" must be a string of 1 to {MAX_SESSION_ID} bytes without / + # (one topic level)',
            )
        if sid is not None and sid in self.sessions:
            raise RequestError("session-exists", f"session {sid} is already running", session=sid)
        data = request.get("data")
        if data is not None and not isinstance(data, dict):
            raise RequestError("bad-payload", '"data" must be a JSON object')
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
        self.connection.publish(f"{self._sessions_prefix}{sid}/ended", dumps(report))
        self._unsubscribe(sid)

    def _unsubscribe(self, sid: str) -> None:
        # The broker would keep routing the dead session's events here.
        self.connection.unsubscribe(self._events_filter(sid))

    def _cancel(self, sid: str) -> None:
        session = self.sessions.get(sid)
        if session is None:
            return
        if session.running:
            session.cancel()
        else:
            self._on_end(session)

    def _deliver_late_error(self, session: IOSession, name: str, data: dict[str, Any]) -> None:
        if self.sessions.get(session.session_id) is session and session.running:
            session.send(name, data)

    def _reject(self, error: RequestError, topic: str, request: mqtt5.PublishPacket | None) -> None:
        self.metrics.rejected(error.code)
        _log.info("rejected message on %s: %s: %s", topic[:300], error.code, str(error)[:300])
        body = {"error": error.code, "message": str(error), "topic": topic, **error.detail}
        self._reply(self.error_topic, body, request)

    def _reply(self, topic: str, body: dict[str, Any], request: mqtt5.PublishPacket | None) -> None:
        payload = dumps(body)
        self.connection.publish(topic, payload)
        # MQTT 5 request/response: answer on the request's Response Topic too,
        # echoing its Correlation Data, so a client can wait for exactly this.
        if request is None:
            return
        response_topic = request.response_topic
        if response_topic and "+" not in response_topic and "#" not in response_topic:
            props: dict[str, Any] = {"content_type": "application/json"}
            if request.correlation_data:
                props["correlation_data"] = request.correlation_data
            self.connection.publish(response_topic, payload, properties=props)


def _log_limit(sid: str, document: str | None, termination: Termination) -> None:
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
