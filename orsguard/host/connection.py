"""The host's broker connection: client set-up, reconnecting with backoff, publishing with retry.

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
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import mqtt5

from orsguard.host.config import HostConfig, parse_broker
from orsguard.ioprocessors.mqtt_protocol import MqttClient, MqttError, RetryingPublisher
from orsguard.metrics import HostMetrics

__all__ = ["JSON_PROPERTIES", "Connection", "check_suback", "ignore_result", "request_properties", "topic_filter"]

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
            read_pause=self.config.read_pause_ms / 1000,
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
