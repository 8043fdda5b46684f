"""The MQTT Event I/O Processor: ``<send>`` publishes to an MQTT topic.

A document selects it with ``type="http://orsguard.dev/mqtt"`` (or the short
alias ``type="mqtt"``); ``target`` is the topic. A target that begins with
``./`` is relative to the sending session's own topic, and a target that ends
with ``/`` gets the event name appended, so ``<send event="pong" target="./pong">``
and ``<send event="pong" target="./">`` from session ``s1`` under prefix
``orsguard`` both publish to ``orsguard/sessions/s1/pong``. The payload is the
event data as JSON (``null`` when the send has none), exactly like the payload
the host accepts on an event topic; the message carries no MQTT 5 properties,
because building and encoding them costs more than the rest of a publish.
Data that is not JSON (a function, NaN, an infinity) raises
``error.communication`` in the session rather than going out as invalid JSON.

To deliver an event to another session, target its event topic:
``orsguard/sessions/<sid>/events/<event name>``.

``send`` runs inside a microstep and must not wait for the network. It checks
the target and the data (a bad one raises ``CommunicationError``, so the
session gets ``error.communication`` at once) and hands the message to the
host's MQTT client with QoS 1. The client keeps it until the broker
acknowledges it, re-sending it after a reconnect, so a broker outage delays
the message rather than losing it. Only when the client refuses the message
(its outgoing queue is full) is the hand-over tried again, up to
``send_retries`` more times (the ORS option ``orchestration/send-retries``) with
a doubling pause; if it is still refused and the session still runs, the
session receives ``error.communication`` as an external event, with data
``{"target": topic, "sendid": ..., "reason": ...}``.

docs/operations.md describes the topics this processor shares with the host.
"""

from __future__ import annotations

import logging
from _json import make_encoder
from collections.abc import Callable
from functools import partial
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any, Protocol

from orsguard.errors import CommunicationError
from orsguard.ioprocessors.mqtt_protocol import RetryingPublisher

if TYPE_CHECKING:
    from orsguard._core import Event
    from orsguard.runtime import IOSession

__all__ = ["MQTT_TYPE_URI", "MqttEventIOProcessor", "Publish"]

#: The ``<send type>`` that selects this processor.
MQTT_TYPE_URI = "http://orsguard.dev/mqtt"

_log = logging.getLogger("orsguard.mqtt")
#: Resolved topics the processor keeps (see ``MqttEventIOProcessor._topics``), and
#: the most characters of session id, target and event name one may hold (its
#: topic has at most these and the prefix).
_TOPICS_KEPT = 1 << 15
_TOPIC_KEPT_LENGTH = 1024


class Publish(Protocol):
    """Hand one QoS 1 message to the MQTT client; raise if the client refuses it."""

    def __call__(self, topic: str, payload: bytes, properties: Any) -> None:
        """Queue the message for sending; returns without waiting for the broker."""
        ...


class MqttEventIOProcessor:
    """Publishes ``<send type="mqtt">`` events through the host's MQTT client.

    ``publish`` hands a message to the host's MQTT client; ``topic_prefix`` is
    the host's ``--topic-prefix``, used for the ``./`` relative targets and
    :meth:`location`. ``send_retries`` may be changed while running (the host
    does so on SIGHUP).
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
        deliver_error: Callable[[IOSession, str, dict[str, Any]], None] | None = None,
    ) -> None:
        if send_retries < 0:
            raise ValueError(f"send_retries must be >= 0, got {send_retries!r}")
        self._publish = publish
        # (session id, target, event name) -> topic: a session sends to the
        # same few targets with every event, and resolving costs more than the
        # look-up. Bounded: emptied when full (sessions come and go).
        self._topics: dict[tuple[str, str, str | None], str] = {}
        self.topic_prefix = topic_prefix
        self._retrier = RetryingPublisher(send_retries, retry_delay)
        # The host routes late error.communication events through its own
        # session bookkeeping; alone, the processor calls session.send.
        self._deliver_error = deliver_error or _send_to_session

    @property
    def topic_prefix(self) -> str:
        """The host's ``--topic-prefix``, without a trailing ``/``."""
        return self._prefix

    @topic_prefix.setter
    def topic_prefix(self, prefix: str) -> None:
        self._prefix = prefix.rstrip("/")
        self._topics.clear()

    def location(self, session: IOSession) -> str:
        """The topic prefix other parties publish to in order to reach ``session``.

        Append ``/<event name>``: an event published on
        ``<prefix>/sessions/<sid>/events/<name>`` reaches the session as ``name``.
        """
        return f"{self.topic_prefix}/sessions/{session.session_id}/events"

    def resolve(self, session: IOSession, target: str | None, event_name: str = "") -> str:
        """The topic a ``<send target>`` names; raises ``CommunicationError`` if none."""
        if not target:
            raise CommunicationError("an MQTT <send> needs a target topic")
        topic = target
        if topic.endswith("/") and event_name:
            topic += event_name
        if topic.startswith("./"):
            topic = f"{self.topic_prefix}/sessions/{session.session_id}/{topic[2:]}"
        if "+" in topic or "#" in topic or "\0" in topic:
            raise CommunicationError(f"MQTT target {target!r}: wildcards are not a topic")
        # Four bytes of UTF-8 at most per character: short topics need no encoding to check.
        if len(topic) > 16383 and len(topic.encode()) > 65535:
            raise CommunicationError("MQTT target is longer than 65535 bytes")
        return topic

    @property
    def send_retries(self) -> int:
        """Retries of a refused hand-over (``orchestration/send-retries``)."""
        return self._retrier.retries

    @send_retries.setter
    def send_retries(self, retries: int) -> None:
        self._retrier.retries = retries

    def send(self, session: IOSession, event: Event, target: str) -> None:
        """Check the message and hand it to the MQTT client (see the module docstring)."""
        name = event.name
        key = (session.session_id, target, name)
        topic = self._topics.get(key)
        if topic is None:
            topic = self.resolve(session, target, name or "")
            # Targets and names may come from event data: long ones are not
            # kept, or the full table could hold gigabytes.
            if len(key[0]) + len(target) + len(name or "") <= _TOPIC_KEPT_LENGTH:
                if len(self._topics) >= _TOPICS_KEPT:
                    self._topics.clear()
                self._topics[key] = topic
        try:
            payload = "".join(_ENCODE(event.data, 0)).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise CommunicationError(f"event data is not JSON: {exc}") from None
        try:
            self._publish(topic, payload, None)
        except Exception as exc:  # a refused hand-over is retried from a task
            try:
                self._retrier.retry(
                    partial(self._publish, topic, payload, None),
                    exc,
                    partial(self._gave_up, session, topic, getattr(event, "sendid", None)),
                    topic,
                )
            except RuntimeError:  # no running loop to retry from
                raise CommunicationError(f"MQTT publish to {topic} refused: {exc}") from None

    def _gave_up(self, session: IOSession, topic: str, sendid: str | None, reason: str) -> None:
        _log.warning("giving up on %s after %d retries: %s", topic, self.send_retries, reason)
        if session.running:
            self._deliver_error(
                session,
                "error.communication",
                {"target": topic, "sendid": sendid, "reason": reason},
            )

    async def drain(self) -> None:
        """Wait until every refused publish has been retried or given up."""
        await self._retrier.drain()


def _not_json(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not JSON")


# json's C encoder (json.encoder's c_make_encoder), built once: JSONEncoder.encode builds a new one on every
# call, which costs as much as encoding a small event. NaN and the infinities
# are refused: they are not JSON, and a consumer's parser may reject the whole
# message. No circular-reference bookkeeping (its table would be shared by
# every thread); data that contains itself ends in RecursionError instead.
_ENCODE = make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, False)


def _send_to_session(session: IOSession, name: str, data: dict[str, Any]) -> None:
    session.send(name, data)
