"""The host's broker connection: client set-up, reconnecting with backoff, publishing with retry, the read pause.

Everything is published and subscribed with QoS 1 on a persistent broker
session (a clean start only to wipe a stale session on the first connection,
and a session expiry interval), so events published while the host
reconnects wait in the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import selectors
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import mqtt5

from orsguard.host.config import HostConfig, parse_broker
from orsguard.ioprocessors.mqtt_protocol import MqttClient, MqttError, RetryingPublisher
from orsguard.metrics import HostMetrics

__all__ = [
    "JSON_PROPERTIES",
    "Connection",
    "PacedSelector",
    "check_suback",
    "ignore_result",
    "request_properties",
    "run_paced",
    "topic_filter",
]

T = TypeVar("T")

_log = logging.getLogger("orsguard.host")

#: First reconnect delay (s): a broker restart is often over in milliseconds,
#: and every moment disconnected is a moment its clients' events wait.
_FIRST_RETRY = 0.005
_MAX_RETRY = 5.0
#: Outgoing messages the client may hold (unacknowledged or waiting for a connection).
_MAX_QUEUED = 100_000
#: Properties of the host's own messages (started, ended, errors, status).
JSON_PROPERTIES: dict[str, Any] = {"content_type": "application/json"}

#: ``connected(client, connack, first)``: runs after every successful CONNACK.
OnConnected = Callable[[MqttClient, mqtt5.ConnAckPacket, bool], Awaitable[None]]


class Connection:
    """One host's MQTT client, kept connected until the host stops.

    ``on_message(packet)`` gets every incoming PUBLISH. ``will`` is published
    by the broker if the host dies without a clean DISCONNECT. A publish the
    client refuses (its queue is full) is retried ``retries`` times
    (:class:`~orsguard.ioprocessors.mqtt_protocol.RetryingPublisher`), then
    counted as a publish failure.
    """

    def __init__(
        self,
        config: HostConfig,
        client_id: str,
        *,
        on_message: Callable[[mqtt5.PublishPacket], None],
        will: mqtt5.Will,
        retries: int,
        metrics: HostMetrics,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.client: MqttClient | None = None
        self.retrier = RetryingPublisher(retries)
        self._on_message = on_message
        self._will = will
        self._metrics = metrics

    async def run(
        self,
        stopping: asyncio.Event,
        connected: OnConnected,
        shutdown: Callable[[MqttClient], Awaitable[None]],
    ) -> bool:
        """Connect, and connect again with backoff after every loss, until ``stopping`` is set.

        ``connected`` runs after each CONNACK (subscribe, announce);
        ``shutdown(client)`` runs when ``stopping`` is set while connected,
        and True is returned. False: stopped while disconnected.
        """
        loop = asyncio.get_running_loop()
        host, port, user, password = parse_broker(self.config.broker)
        client = self.client = MqttClient(
            host,
            port,
            client_id=self.client_id,
            on_message=self._on_message,
            username=user,
            password=password,
            keepalive=self.config.keepalive,
            session_expiry=self.config.session_expiry,
            will=self._will,
            max_queued=_MAX_QUEUED,
        )
        stopper = loop.create_task(stopping.wait())
        delay = _FIRST_RETRY
        first = True
        try:
            while not stopping.is_set():
                try:
                    if first:
                        await self._wipe_stale_session(client)
                    connack = await client.connect(clean_start=False)
                    await connected(client, connack, first)
                except MqttError as exc:
                    _log.warning("broker connection lost (%s); retrying in %.3fs", exc, delay)
                else:
                    if not first:
                        self._metrics.reconnected()
                    first = False
                    delay = _FIRST_RETRY
                    closed = loop.create_task(client.wait_closed())
                    await asyncio.wait({closed, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if stopping.is_set():
                        closed.cancel()
                        await shutdown(client)
                        return True
                    _log.warning("broker connection lost (%s); retrying in %.3fs", closed.result(), delay)
                # Jitter keeps a fleet of hosts from reconnecting in lockstep.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopper), delay * random.uniform(0.5, 1.5))
                delay = min(delay * 4, _MAX_RETRY)
            return False
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

    @property
    def connected(self) -> bool:
        """True while the client has a connection the broker accepted."""
        return self.client is not None and self.client.connected

    def offer(self, topic: str, payload: bytes, properties: Any = None) -> None:
        """Queue a QoS 1 publish; raise :class:`MqttError` if the client refuses it (queue full)."""
        if self.client is None:
            raise MqttError("host not started")
        self.client.publish(topic, payload, properties=properties)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        properties: dict[str, Any] | None = None,
        retain: bool = False,
    ) -> None:
        """Publish a host message (started, ended, errors), retrying a refusal."""
        if properties is None:
            properties = JSON_PROPERTIES
        try:
            self._publish_now(topic, payload, properties, retain)
        except MqttError as exc:
            attempt = partial(self._publish_now, topic, payload, properties, retain)
            self.retrier.retry(attempt, exc, partial(self._dropped, topic), topic)

    def _publish_now(self, topic: str, payload: bytes, properties: dict[str, Any], retain: bool) -> None:
        if self.client is None:
            raise MqttError("host not started")
        self.client.publish(topic, payload, retain=retain, properties=properties)

    def _dropped(self, topic: str, reason: str) -> None:
        self._metrics.publish_failed()
        _log.warning("dropped a message to %s after %d retries: %s", topic, self.retrier.retries, reason)

    def subscribe(self, patterns: list[str]) -> asyncio.Future[list[int]] | None:
        """SUBSCRIBE ``patterns`` at QoS 1 now (None when not started); the future gets SUBACK's codes."""
        if self.client is None:
            return None
        return self.client.subscribe([topic_filter(p) for p in patterns])

    def unsubscribe(self, pattern: str) -> None:
        """UNSUBSCRIBE one filter if connected; a failure only leaves a filter nobody publishes to."""
        if self.client is not None and self.client.connected:
            self.client.unsubscribe([pattern]).add_done_callback(ignore_result)

    async def drain(self) -> None:
        """Wait until every refused host publish has been retried or dropped."""
        await self.retrier.drain()


def topic_filter(pattern: str) -> mqtt5.TopicFilter:
    """A QoS 1 subscription to ``pattern`` that never delivers retained messages."""
    return mqtt5.TopicFilter(
        pattern,
        max_qos=mqtt5.QoS.AT_LEAST_ONCE,
        retain_handling=mqtt5.RetainHandling.SEND_NEVER,
    )


def check_suback(future: asyncio.Future[list[int]]) -> None:
    """Log the subscriptions a SUBACK refused (a done callback)."""
    if future.cancelled() or future.exception() is not None:
        return
    refused = [code for code in future.result() if code >= 0x80]
    if refused:
        _log.error("the broker refused %d subscriptions (codes %s)", len(refused), sorted(set(refused)))


def ignore_result(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved (a done callback for acknowledgements nobody waits for)."""
    if not future.cancelled():
        future.exception()


def request_properties(packet: mqtt5.PublishPacket) -> dict[str, Any]:
    """The MQTT 5 properties of ``packet`` worth keeping when it is published again."""
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


# The read pause: an event loop that reads its sockets at most once per pause under steady traffic.
# The host handles many small messages; waking once per message costs far more
# CPU than the message itself. Pausing each connection's reading
# (``pause_reading``, a timer, ``resume_reading``) gathers them, but costs two
# ``epoll_ctl`` calls, a timer and several Python calls per wake-up. Here the
# selector itself waits: after the work a wake-up with ready sockets brought,
# no socket is polled for the pause; timers and callbacks due meanwhile still
# run on time. Nothing is unregistered, and a message arriving after a
# quiet spell is still read at once.


class PacedSelector(selectors.DefaultSelector):
    """The default selector, polling no socket for ``pause`` seconds after the work a ready socket brought."""

    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause = pause
        self._busy = False
        self._until = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Poll once the pause is over; until then wait out ``timeout`` and return nothing."""
        if self._busy:
            # Counted from the end of the work, as a paused transport would:
            # the next wake-up then finds a full pause's worth of messages.
            self._busy = False
            wait = self.pause
            self._until = time.monotonic() + wait
        elif self._until:
            wait = self._until - time.monotonic()
        else:
            wait = 0.0
        if wait > 0:
            if timeout is not None and timeout < wait:
                # A timer or a callback is due first: it runs, the sockets wait.
                if timeout > 0:
                    time.sleep(timeout)
                return []
            time.sleep(wait)
            if timeout is not None:
                timeout -= wait
        self._until = 0.0
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        self._busy = bool(ready)
        return ready


class _PacedPolicy(asyncio.DefaultEventLoopPolicy):
    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause = pause

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(PacedSelector(self.pause))


def run_paced(main: Coroutine[Any, Any, T], pause: float) -> T:
    """``asyncio.run(main)`` on a loop paced at ``pause`` seconds (0: the default loop)."""
    if pause <= 0:
        return asyncio.run(main)
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_PacedPolicy(pause))
    try:
        return asyncio.run(main)
    finally:
        asyncio.set_event_loop_policy(previous)
