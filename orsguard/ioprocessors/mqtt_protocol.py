"""A small MQTT 5 client on asyncio for the session host, built on the ``mqtt5`` codec.

``mqtt5`` encodes and decodes packets and does no I/O; this module holds the
protocol state the host relies on:

* CONNECT with a client id, clean start on request, a session expiry interval,
  keep-alive and a will; CONNACK's receive maximum, keep-alive and errors;
* QoS 1 both ways: an incoming PUBLISH is acknowledged after the message
  callback has returned (so an event is acknowledged only once its session has
  processed it); an outgoing one stays in flight until its PUBACK, at most the
  broker's receive maximum at once, the rest queued in order;
* after a reconnect, every unacknowledged publish is sent again with DUP set,
  before anything new;
* SUBSCRIBE and UNSUBSCRIBE that return a future instead of blocking, so a
  caller may go on publishing: the broker handles one connection's packets in
  order, so a publish sent after a SUBSCRIBE is routed after the subscription
  exists;
* PINGREQ when nothing was sent for half the keep-alive; a connection that
  stays silent for a whole keep-alive after a ping is closed;
* a clean DISCONNECT that can end the broker session (session expiry 0).

Writes are batched: everything produced while handling one read, or in one
loop turn, goes out in one ``transport.write``.

Reconnecting is the caller's business (the host does it with backoff); this
client only keeps the unacknowledged messages across connections.
:class:`RetryingPublisher` is the one rule for a publish the client refuses
(its queue is full): tried again from a task, with a doubling pause.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import mqtt5

from orsguard.errors import OrsguardError

__all__ = ["ConnectionLost", "MqttClient", "MqttError", "QueueFull", "RetryingPublisher"]

_log = logging.getLogger("orsguard.mqtt")

_QOS1 = mqtt5.QoS.AT_LEAST_ONCE
_PUBLISH = mqtt5.PublishPacket
_PUBACK = mqtt5.PubAckPacket
_PINGREQ = b"\xc0\x00"
#: Initial read buffer (bytes); it grows to hold the largest packet received.
_READ_SIZE = 1 << 16
_DUP = 0x08


class MqttError(OrsguardError):
    """The broker refused something, or the connection is not usable."""


class ConnectionLost(MqttError):
    """The connection closed before the broker answered."""


class QueueFull(MqttError):
    """More outgoing messages are waiting than the client keeps."""


class _Connection(asyncio.BufferedProtocol):
    # One TCP connection; the client outlives it and keeps the session state.
    # Buffered: the transport reads into the client's buffer. A plain Protocol
    # gets a new bytes object per read, allocated at the transport's 256 KiB
    # read size, which costs more than handling a few events.

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP connection (loop.create_connection) is always given a stream transport.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.client._free_space()

    def buffer_updated(self, nbytes: int) -> None:
        self.client._received(self, nbytes)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(self, exc)


class MqttClient:
    """An MQTT 5 client connection with a persistent session (see the module docstring).

    ``on_message(packet)`` is called for every incoming ``mqtt5.PublishPacket``,
    on the event loop; its QoS 1 acknowledgement goes out after it returns, even
    if it raises (the exception is logged). ``max_queued`` bounds the outgoing
    messages kept (in flight and waiting); :meth:`publish` raises
    :class:`QueueFull` beyond it. It reads as soon as data arrives; the
    session host gathers reads under steady traffic by pacing its event loop.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        on_message: Callable[[Any], None],
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        session_expiry: int = 0,
        will: mqtt5.Will | None = None,
        max_queued: int = 100_000,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.on_message = on_message
        self.username = username
        self.password = password.encode() if password is not None else None
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        self.will = will
        self.max_queued = max_queued
        self.timeout = timeout
        #: The CONNACK of the current connection (None while disconnected).
        self.connack: mqtt5.ConnAckPacket | None = None
        self._conn: _Connection | None = None
        self._connack_waiter: asyncio.Future[mqtt5.ConnAckPacket] | None = None
        self._closed: asyncio.Future[Exception | None] | None = None
        # Incoming bytes: _inbuf[:_inlen] holds what is not yet parsed.
        self._inbuf = bytearray(_READ_SIZE)
        self._inlen = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._receiving = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Outgoing QoS 1: packet id -> encoded PUBLISH, in sending order.
        self._inflight: dict[int, bytes] = {}
        self._waiting: collections.deque[tuple[str, bytes, bool, dict[str, Any] | None]] = collections.deque()
        self._quota = 0
        self._pid = 0
        # SUBSCRIBE/UNSUBSCRIBE awaiting their acknowledgement.
        self._acks: dict[int, asyncio.Future[list[int]]] = {}
        self._ping_timer: asyncio.TimerHandle | None = None
        self._sent_since_tick = False
        self._heard_since_tick = False
        self._pinged = False
        self._idle: list[asyncio.Future[None]] = []

    # -- state -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""
        return self.connack is not None

    @property
    def unacknowledged(self) -> int:
        """Outgoing publishes not yet acknowledged by the broker (in flight or waiting)."""
        return len(self._inflight) + len(self._waiting)

    # -- connecting ------------------------------------------------------

    async def connect(self, *, clean_start: bool) -> mqtt5.ConnAckPacket:
        """Open one connection and wait for CONNACK; raise :class:`MqttError` on failure.

        On success the unacknowledged publishes of earlier connections go out
        again (DUP set) before anything new.
        """
        loop = self._loop = asyncio.get_running_loop()
        if self._conn is not None:
            raise MqttError("already connected")
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            raise MqttError(f"cannot connect to {self.host}:{self.port}: {exc or type(exc).__name__}") from None
        self._conn = conn
        self._inlen = 0
        self._closed = loop.create_future()
        self._connack_waiter = loop.create_future()
        packet = mqtt5.ConnectPacket(
            self.client_id,
            username=self.username,
            password=self.password,
            clean_start=clean_start,
            will=self.will,
            keep_alive=self.keepalive,
            session_expiry_interval=self.session_expiry,
        )
        assert conn.transport is not None
        conn.transport.write(packet.write())
        try:
            connack = await asyncio.wait_for(asyncio.shield(self._connack_waiter), self.timeout)
        except TimeoutError:
            self._abort()
            raise MqttError("no CONNACK from the broker") from None
        except ConnectionLost:
            raise
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            self._abort()
            raise MqttError(f"broker refused the connection: {connack.reason_code.name}")
        self.connack = connack
        self._quota = connack.receive_max or 65535
        if connack.server_keep_alive is not None:
            self.keepalive = connack.server_keep_alive
        # Redelivery: everything unacknowledged, oldest first, flagged DUP.
        for data in self._inflight.values():
            dup = bytearray(data)
            dup[0] |= _DUP
            self._write(bytes(dup))
        self._pump()
        self._start_keepalive()
        return connack

    async def wait_closed(self) -> Exception | None:
        """Wait until the current connection is lost; returns why (None = closed by us)."""
        if self._closed is None:
            return None
        return await asyncio.shield(self._closed)

    async def disconnect(self, *, session_expiry: int | None = None, timeout: float = 5.0) -> None:
        """Send DISCONNECT and close. ``session_expiry=0`` ends the broker session now."""
        conn = self._conn
        if conn is None or conn.transport is None:
            return
        self._write(mqtt5.DisconnectPacket(session_expiry_interval=session_expiry).write())
        self._flush()
        conn.transport.close()
        if self._closed is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), timeout)
            except TimeoutError:
                conn.transport.abort()

    def _abort(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.abort()

    # -- outgoing --------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        properties: dict[str, Any] | None = None,
    ) -> None:
        """Queue a QoS 1 publish; it is sent at the end of this loop turn, or after a reconnect.

        ``properties`` are ``mqtt5.PublishPacket`` keyword arguments
        (``content_type``, ``response_topic``, ``correlation_data``, ...).
        Raises :class:`QueueFull` when ``max_queued`` messages are waiting.
        """
        inflight = self._inflight
        if self.connack is None or len(inflight) >= self._quota:
            if len(inflight) + len(self._waiting) >= self.max_queued:
                raise QueueFull(f"{self.max_queued} messages already waiting for the broker")
            self._waiting.append((topic, payload, retain, properties))
            return
        if properties is not None or retain:
            self._send_publish(topic, payload, retain, properties)
            return
        # One publish per event: the plain case is written out here rather than
        # through _send_publish, and the next packet id, nearly always free, is
        # taken without _next_pid's search; _write keeps the one flush rule.
        pid = self._pid + 1 if self._pid < 65535 else 1
        if pid in inflight or pid in self._acks:
            pid = self._next_pid()
        else:
            self._pid = pid
        data = inflight[pid] = _plain_publish(topic.encode(), payload, pid)
        self._write(data)

    def _send_publish(self, topic: str, payload: bytes, retain: bool, properties: dict[str, Any] | None) -> None:
        pid = self._next_pid()
        if properties is None and not retain:
            data = _plain_publish(topic.encode(), payload, pid)
        else:
            data = _PUBLISH(topic, payload, qos=_QOS1, retain=retain, packet_id=pid, **(properties or {})).write()
        self._inflight[pid] = data
        self._write(data)

    def _pump(self) -> None:
        waiting = self._waiting
        while waiting and len(self._inflight) < self._quota:
            self._send_publish(*waiting.popleft())

    def subscribe(self, filters: Iterable[mqtt5.TopicFilter]) -> asyncio.Future[list[int]]:
        """Send SUBSCRIBE now; the future gets SUBACK's reason codes (>= 128: refused).

        Nothing needs to wait for it: packets sent afterwards on this
        connection are handled by the broker after the subscription.
        """
        pid = self._next_pid()
        return self._request(pid, mqtt5.SubscribePacket(pid, list(filters)).write())

    def unsubscribe(self, patterns: Iterable[str]) -> asyncio.Future[list[int]]:
        """Send UNSUBSCRIBE now; the future gets UNSUBACK's reason codes."""
        pid = self._next_pid()
        return self._request(pid, mqtt5.UnsubscribePacket(pid, list(patterns)).write())

    def _request(self, pid: int, data: bytes) -> asyncio.Future[list[int]]:
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        if self.connack is None:
            future.set_exception(ConnectionLost("not connected"))
            return future
        self._acks[pid] = future
        self._write(data)
        return future

    async def wait_acknowledged(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged every outgoing publish; False on timeout."""
        if not self.unacknowledged:
            return True
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._idle.append(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if future in self._idle:
                self._idle.remove(future)

    def _next_pid(self) -> int:
        pid = self._pid
        inflight, acks = self._inflight, self._acks
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid not in inflight and pid not in acks:
                self._pid = pid
                return pid

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled and not self._receiving:
            self._flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        conn = self._conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            # Nothing is lost: publishes stay in _inflight and go out again
            # after the reconnect; acknowledgements are owed to a dead connection.
            out.clear()
            return
        conn.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        self._sent_since_tick = True

    # -- incoming --------------------------------------------------------

    def _free_space(self) -> memoryview:
        buf = self._inbuf
        if self._inlen == len(buf):  # a packet larger than the buffer: make room for the rest
            buf += bytes(len(buf))
        return memoryview(buf)[self._inlen :]

    def _received(self, conn: _Connection, nbytes: int) -> None:
        if conn is not self._conn:
            return
        self._heard_since_tick = True
        buf = self._inbuf
        end = self._inlen + nbytes
        self._receiving = True
        pos = 0
        inflight, waiting, idle, out = self._inflight, self._waiting, self._idle, self._out
        on_message, read = self.on_message, mqtt5.read
        packet: Any  # a PUBLISH carries a packet id at QoS 1 and 2
        try:
            with memoryview(buf) as view:
                while pos < end:
                    # A PUBACK without reason code, one per event published, is
                    # read here; mqtt5 would build an object for each.
                    if buf[pos] == 0x40 and end - pos >= 4 and buf[pos + 1] == 2:
                        if inflight.pop(buf[pos + 2] << 8 | buf[pos + 3], None) is not None and (waiting or idle):
                            self._acknowledged_more()
                        pos += 4
                        continue
                    try:
                        packet, size = read(view[pos:end])
                    except IndexError:  # an incomplete packet: wait for more
                        break
                    pos += size
                    kind = type(packet)
                    if kind is not _PUBLISH:
                        self._handle(packet)
                        continue
                    # One PUBLISH per event, handled here rather than in _handle.
                    try:
                        on_message(packet)
                    except Exception:  # the host answers bad messages itself; this is a bug
                        _log.exception("message handler failed on %s", packet.topic)
                    qos = packet.qos
                    if qos == 1:
                        out.append(b"\x40\x02" + packet.packet_id.to_bytes(2, "big"))
                    elif qos == 2:
                        # Never subscribed above QoS 1; answer anyway so the broker moves on.
                        out.append(mqtt5.PubRecPacket(packet.packet_id).write())
        except ValueError as exc:
            _log.warning("malformed packet from the broker (%s); closing the connection", exc)
            self._abort()
        finally:
            self._receiving = False
            # Keep the start of an incomplete packet at the front of the buffer.
            rest = end - pos
            if rest and pos:
                buf[:rest] = buf[pos:end]
            self._inlen = rest
            self._flush()

    def _handle(self, packet: Any) -> None:
        # PUBLISH is handled in _received, the one caller.
        kind = type(packet)
        if kind is _PUBACK:
            self._acknowledged(packet.packet_id)
        elif kind is mqtt5.SubAckPacket or kind is mqtt5.UnsubAckPacket:
            ack = self._acks.pop(packet.packet_id, None)
            if ack is not None and not ack.done():
                ack.set_result([int(code) for code in packet.reason_codes])
        elif kind is mqtt5.PingRespPacket:
            pass
        elif kind is mqtt5.ConnAckPacket:
            waiter = self._connack_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(packet)
        elif kind is mqtt5.PubRelPacket:
            self._write(mqtt5.PubCompPacket(packet.packet_id).write())
        elif kind is mqtt5.DisconnectPacket:
            _log.warning("the broker disconnected: %s %s", packet.reason_code.name, packet.reason_str or "")
            self._abort()
        else:
            _log.debug("ignored %s from the broker", kind.__name__)

    def _acknowledged(self, pid: int) -> None:
        if self._inflight.pop(pid, None) is not None:
            self._acknowledged_more()

    def _acknowledged_more(self) -> None:
        # After an acknowledgement: send what waits for room, or wake who waits for none in flight.
        if self._waiting:
            self._pump()
        elif not self._inflight and self._idle:
            for future in self._idle:
                if not future.done():
                    future.set_result(None)

    def _lost(self, conn: _Connection, exc: Exception | None) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self.connack = None
        self._out.clear()
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        lost = ConnectionLost(f"connection lost: {exc}" if exc else "connection closed")
        for future in self._acks.values():
            if not future.done():
                future.set_exception(lost)
                future.exception()  # retrieved: a caller that did not wait is fine
        self._acks.clear()
        waiter = self._connack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(lost)
            waiter.exception()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(exc)

    # -- keep-alive ------------------------------------------------------

    def _start_keepalive(self) -> None:
        if self.keepalive <= 0 or self._loop is None:
            return
        self._sent_since_tick = self._heard_since_tick = self._pinged = False
        self._ping_timer = self._loop.call_later(self.keepalive / 2, self._tick)

    def _tick(self) -> None:
        if self._conn is None or self._loop is None:
            return
        if self._pinged and not self._heard_since_tick:
            _log.warning("no answer from the broker within the keep-alive; closing the connection")
            self._abort()
            return
        self._pinged = False
        if not self._sent_since_tick:
            self._write(_PINGREQ)
            self._pinged = True
        self._sent_since_tick = self._heard_since_tick = False
        self._ping_timer = self._loop.call_later(self.keepalive / 2, self._tick)


def _plain_publish(topic: bytes, payload: bytes, pid: int) -> bytes:
    # A QoS 1 PUBLISH without properties, encoded here: building an
    # mqtt5.PublishPacket and writing it costs more than the bytes themselves.
    size = len(topic) + len(payload) + 5  # topic length, packet id, property length
    length = bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        length.append(byte | 0x80 if size else byte)
        if not size:
            break
    return b"".join((b"\x32", length, len(topic).to_bytes(2, "big"), topic, pid.to_bytes(2, "big"), b"\x00", payload))


class RetryingPublisher:
    """Tries a refused publish again from a task: ``retries`` more times, the pause doubling from ``delay``.

    Both the host's own messages and the MQTT I/O processor's go through
    this: a publish runs inside a callback that must not wait, so the caller
    makes the first attempt itself and hands a refusal here. ``retries`` may be
    changed while running (the host does so on SIGHUP); a retry reads it when
    it starts.
    """

    def __init__(self, retries: int = 3, delay: float = 0.2) -> None:
        self.retries = retries
        self.delay = delay
        # Strong references: the loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def retry(
        self,
        attempt: Callable[[], object],
        refusal: BaseException,
        give_up: Callable[[str], None],
        topic: str,
    ) -> None:
        """Call ``attempt()`` again later until it does not raise; else ``give_up(last reason)``.

        Needs a running event loop (``RuntimeError`` otherwise).
        """
        task = asyncio.get_running_loop().create_task(self._run(attempt, refusal, give_up, topic))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        attempt: Callable[[], object],
        refusal: BaseException,
        give_up: Callable[[str], None],
        topic: str,
    ) -> None:
        reason = str(refusal) or type(refusal).__name__
        for number in range(self.retries):
            await asyncio.sleep(self.delay * 2**number)
            try:
                attempt()
                return
            except Exception as exc:  # any refusal counts as one failed retry
                reason = str(exc) or type(exc).__name__
                _log.debug("publish to %s refused (retry %d): %s", topic, number + 1, reason)
        give_up(reason)

    async def drain(self) -> None:
        """Wait until every refused publish has been retried or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
