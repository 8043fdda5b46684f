"""The MQTT Event I/O Processor: ``<send>`` publishes to an MQTT topic.

A document selects it with ``type="http://orsguard.dev/mqtt"`` (or the short
alias ``type="mqtt"``); ``target`` is the topic. A target that begins with
``./`` is relative to the sending session's own topic, so ``target="./pong"``
from session ``s1`` under prefix ``orsguard`` publishes to
``orsguard/sessions/s1/pong``. The MQTT 5 message carries:

* payload: the event data as JSON (``null`` when the send has none);
* user properties ``event`` (the event name), ``session`` (the sender's session
  id) and ``sendid`` (when the send has one);
* content type ``application/json``.

To deliver an event to another session, target its event topic:
``orsguard/sessions/<sid>/events/<event name>``.

``send`` runs inside a microstep and cannot wait for the network, so it only
checks the target and the data (a bad one raises ``CommunicationError`` and the
session gets ``error.communication`` at once) and then hands the message to an
asyncio task. That task publishes with QoS 1 and retries up to ``send_retries``
more times (the ORS option ``orchestration/send-retries``) with a doubling
pause. If every attempt fails and the session still runs, the session receives
``error.communication`` as an external event, with data
``{"target": topic, "sendid": ..., "reason": ...}``.

docs/operations.md describes the topics this processor shares with the host.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from orsguard import CommunicationError

__all__ = ["MQTT_TYPE_URI", "MqttEventIOProcessor", "Publish"]

#: The ``<send type>`` that selects this processor.
MQTT_TYPE_URI = "http://orsguard.dev/mqtt"

_log = logging.getLogger("orsguard.mqtt")


class Publish(Protocol):
    """One QoS 1 publish attempt; raises on failure (not connected, no PUBACK)."""

    def __call__(self, topic: str, payload: bytes, properties: Properties | None) -> Awaitable[None]:
        """Publish once and return when the broker has acknowledged it."""
        ...


class MqttEventIOProcessor:
    """Publishes ``<send type="mqtt">`` events through the host's MQTT client.

    ``publish`` makes one attempt (the host provides it over its aiomqtt
    client); ``topic_prefix`` is the host's ``--topic-prefix``, used for the
    ``./`` relative targets and :meth:`location`. ``send_retries`` can be
    changed while running (the host does so on SIGHUP).
    """

    type_uri: str = MQTT_TYPE_URI
    aliases: tuple[str, ...] = ("mqtt",)

    def __init__(
        self,
        publish: Publish,
        *,
        topic_prefix: str = "orsguard",
        send_retries: int = 3,
        retry_delay: float = 0.2,
        deliver_error: Callable[[Any, str, dict[str, Any]], None] | None = None,
    ) -> None:
        if send_retries < 0:
            raise ValueError(f"send_retries must be >= 0, got {send_retries!r}")
        self._publish = publish
        self.topic_prefix = topic_prefix.rstrip("/")
        self.send_retries = send_retries
        self.retry_delay = retry_delay
        # The host routes late error.communication events through its own
        # session bookkeeping; alone, the processor calls session.send.
        self._deliver_error = deliver_error or _send_to_session
        # Strong references: the loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def location(self, session: Any) -> str:
        """The topic prefix other parties publish to in order to reach ``session``.

        Append ``/<event name>``: an event published on
        ``<prefix>/sessions/<sid>/events/<name>`` reaches the session as ``name``.
        """
        return f"{self.topic_prefix}/sessions/{session.session_id}/events"

    def resolve(self, session: Any, target: str | None) -> str:
        """The topic a ``<send target>`` names; raises ``CommunicationError`` if none."""
        if not target:
            raise CommunicationError("an MQTT <send> needs a target topic")
        topic = target
        if topic.startswith("./"):
            topic = f"{self.topic_prefix}/sessions/{session.session_id}/{topic[2:]}"
        if "+" in topic or "#" in topic or "\0" in topic:
            raise CommunicationError(f"MQTT target {target!r}: wildcards are not a topic")
        if len(topic.encode()) > 65535:
            raise CommunicationError("MQTT target is longer than 65535 bytes")
        return topic

    def send(self, session: Any, event: Any, target: str) -> None:
        """Check the message now, publish it from a task (see the module docstring)."""
        topic = self.resolve(session, target)
        try:
            payload = json.dumps(event.data, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise CommunicationError(f"event data is not JSON: {exc}") from None
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        user = [("event", str(event.name)), ("session", str(session.session_id))]
        sendid = getattr(event, "sendid", None)
        if sendid:
            user.append(("sendid", str(sendid)))
        props.UserProperty = user
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise CommunicationError("the MQTT processor runs only inside the host") from None
        task = loop.create_task(self._deliver(session, topic, payload, props, sendid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        session: Any,
        topic: str,
        payload: bytes,
        props: Properties,
        sendid: str | None,
    ) -> None:
        attempts = self.send_retries + 1
        reason = ""
        for attempt in range(attempts):
            try:
                await self._publish(topic, payload, props)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any transport failure is retried
                reason = str(exc) or type(exc).__name__
                _log.debug("publish to %s failed (attempt %d): %s", topic, attempt + 1, reason)
            if attempt + 1 < attempts:
                await asyncio.sleep(self.retry_delay * 2**attempt)
        _log.warning("giving up on %s after %d attempts: %s", topic, attempts, reason)
        if session.running:
            self._deliver_error(
                session,
                "error.communication",
                {"target": topic, "sendid": sendid, "reason": reason},
            )

    async def drain(self) -> None:
        """Wait until every publish handed over so far has finished or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _send_to_session(session: Any, name: str, data: dict[str, Any]) -> None:
    session.send(name, data)
