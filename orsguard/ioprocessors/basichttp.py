"""The BasicHTTP Event I/O Processor (spec C.2): events in and out as HTTP POST requests.

Receiving: :class:`BasicHTTPProcessor` runs an HTTP server on loopback in a
thread of its own. A session's access URI (its ``_ioprocessors`` location) is
``http://127.0.0.1:<port>/<session id>``. A POST to it becomes an external event:

* the name is the ``_scxmleventname`` parameter (query string or body), else
  ``HTTP.<method>`` (``HTTP.POST``);
* the other parameters become ``_event.data`` fields (a key given twice gives a
  list). A JSON body (``Content-Type: application/json``) gives its value as
  the data; a form body without ``=`` is one encoded value, the data string;
* ``_event.raw`` is the request as text (request line, headers, body),
  ``origintype`` the BasicHTTP type URI and ``origin`` the sender's access URI
  from the ``SCXML-Origin`` header, when that header can be trusted: sessions
  of this process sending through a BasicHTTP processor sign it (an HMAC with a
  key made at start-up, in ``SCXML-Origin-Signature``), and ``trust_origin=True``
  accepts any. An unsigned origin is left out, so that no client can make a
  session reply to an address of its choosing.

What the server refuses (docs/security.md): an event named ``error.*`` or
``done.*`` (403, unless ``allow_platform_events=True``), data no session can
hold exactly, such as ``NaN`` or an integer beyond 2**53 (400, see
:func:`orsguard.ioprocessors.check_external_event`), a body over
:data:`MAX_BODY_BYTES` (413). A client has ``read_timeout`` seconds to send
its request; at most ``max_connections`` are served at once, and one more is
answered 503 and closed at once, without a thread.

The server thread never touches a session: it queues the event and answers 200,
and :meth:`BasicHTTPProcessor.pump`, called on the thread that runs the
sessions, hands queued events to them. :meth:`BasicHTTPProcessor.run_until`
is a loop for a :class:`~orsguard.RealClock` that does both; with asyncio, pass
``loop=`` and the server thread schedules ``pump`` on that loop itself.

Sending: ``<send type="basichttp" target="http://...">`` POSTs to the target,
form-encoded: ``_scxmleventname=<event>`` plus one parameter per namelist
entry and ``<param>`` (strings as they are, other values as JSON). A
``<content>`` string is the body, percent-encoded; other content is a JSON
body; the event name then travels in the query string. The POST is made at
once and waits up to ``timeout`` seconds for the answer, so a send to a
session of this process is queued before the sending microstep goes on (the
order of events is the order of the sends). A refused connection, a timeout
or an answer other than 2xx raises :class:`~orsguard.CommunicationError`
(the session gets ``error.communication``), as does a send without a target.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import queue
import re
import secrets
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

from orsguard._core import Event
from orsguard.clock import RealClock
from orsguard.errors import CommunicationError, ExecutionError
from orsguard.ioprocessors import BASICHTTP_TYPE, check_external_event, is_platform_event
from orsguard.runtime import IOSession

__all__ = [
    "BASICHTTP_TYPE",
    "EVENT_NAME_PARAM",
    "ORIGIN_HEADER",
    "ORIGIN_SIGNATURE_HEADER",
    "BasicHTTPProcessor",
    "decode_request",
    "encode_send",
]

#: The parameter that carries the event name (spec C.2.1).
EVENT_NAME_PARAM = "_scxmleventname"
#: Header with the sending session's access URI, so the receiver can reply to ``_event.origin``.
ORIGIN_HEADER = "SCXML-Origin"
#: Header with an HMAC of the origin, proving it comes from a session of this process.
ORIGIN_SIGNATURE_HEADER = "SCXML-Origin-Signature"
#: Requests with a longer body are refused (413) rather than read into memory.
MAX_BODY_BYTES = 1 << 20

_log = logging.getLogger("orsguard.basichttp")
# One key per process: every BasicHTTP processor here trusts the origins the others sign.
_ORIGIN_KEY = secrets.token_bytes(32)
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _sign(origin: str) -> str:
    return hmac.new(_ORIGIN_KEY, origin.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
_EVENT_NAME = re.compile(r"^[^\s.]+(?:\.[^\s.]+)*$")


@dataclass(frozen=True)
class _Inbound:
    session_id: str
    event: Event


# ---------------------------------------------------------------- message format


def decode_request(method: str, path: str, content_type: str | None, body: bytes) -> tuple[str, str, Any]:
    """Turn a request into ``(session id, event name, data)``; ValueError when it cannot be an event."""
    url = urllib.parse.urlsplit(path)
    session_id = urllib.parse.unquote(url.path.strip("/"))
    pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
    media = (content_type or _FORM).split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    value: Any = None
    if media == _JSON:
        try:
            value = json.loads(text, parse_constant=_no_constant) if text.strip() else None
        except ValueError as exc:
            raise ValueError(f"the JSON body does not parse: {exc}") from None
        if isinstance(value, dict):
            # A JSON object is key-value pairs like a form; its name field names the event too.
            name = value.pop(EVENT_NAME_PARAM, None)
            if name is not None:
                pairs.append((EVENT_NAME_PARAM, str(name)))
    elif media == _FORM:
        if "=" in text:
            pairs.extend(urllib.parse.parse_qsl(text, keep_blank_values=True))
        elif text:
            value = urllib.parse.unquote_plus(text)
    elif text.strip():
        # Spec B.2.8.1: JSON if it is JSON, else the space-normalized text.
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except ValueError:
            value = " ".join(text.split())
    names = [v for k, v in pairs if k == EVENT_NAME_PARAM]
    if len(names) > 1:
        raise ValueError(f"{EVENT_NAME_PARAM} is given {len(names)} times")
    name = names[0] if names else f"HTTP.{method.upper()}"
    if not _EVENT_NAME.match(name):
        raise ValueError(f"{name!r} is not an event name")
    fields: dict[str, Any] = {}
    for key, item in pairs:
        if key == EVENT_NAME_PARAM:
            continue
        if key in fields:
            old = fields[key]
            fields[key] = [*old, item] if isinstance(old, list) else [old, item]
        else:
            fields[key] = item
    if isinstance(value, dict):
        fields = {**value, **fields}
    elif value is not None:
        if fields:
            raise ValueError("the body is a single value but the query string has parameters")
        return session_id, name, value
    return session_id, name, fields or None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def encode_send(name: str | None, data: Any, target: str) -> tuple[str, bytes, str]:
    """The ``(url, body, content type)`` of the POST that sends an event (spec C.2.2)."""
    if isinstance(data, dict):
        params = [(EVENT_NAME_PARAM, name)] if name else []
        # The <send> event attribute wins over a parameter of the same name (spec C.2.2).
        params += [(str(k), _form_value(v)) for k, v in data.items() if not (name and k == EVENT_NAME_PARAM)]
        return target, urllib.parse.urlencode(params).encode(), _FORM
    url = target
    if name:
        split = urllib.parse.urlsplit(target)
        query = urllib.parse.urlencode(
            [*urllib.parse.parse_qsl(split.query, keep_blank_values=True), (EVENT_NAME_PARAM, name)]
        )
        url = urllib.parse.urlunsplit(split._replace(query=query))
    if data is None:
        return url, b"", _FORM
    if isinstance(data, str):
        # <content> is the body (spec C.2.2); percent-encoding keeps it one form value, '=' and all.
        return url, urllib.parse.quote(data, safe="").encode(), _FORM
    return url, json.dumps(data).encode(), _JSON


def _form_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # ECMAScript numbers come back as floats; 2, not 2.0
    return json.dumps(value)


# ---------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A deep accept queue, so that a burst is accepted (and answered 503 beyond the cap) at once
    # instead of waiting in the kernel for the client's connection retries.
    request_queue_size = 128
    processor: BasicHTTPProcessor
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        # The cap is taken before a thread is started, so slow clients cannot pile up threads.
        if not self.slots.acquire(blocking=False):
            self._turn_away(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _turn_away(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that times out or drops the connection is not a server error.
        _log.debug("BasicHTTP request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "orsguard-basichttp"

    def setup(self) -> None:
        # The read timeout of this connection (StreamRequestHandler applies self.timeout).
        # typeshed types timeout as a ClassVar, but setup() reads it through the instance.
        self.timeout = self.server.processor.read_timeout  # type: ignore[misc]
        super().setup()

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._answer(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body may have at most {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self._answer(HTTPStatus.BAD_REQUEST, "the body is shorter than Content-Length")
            return
        try:
            session_id, name, data = decode_request("POST", self.path, self.headers.get("Content-Type"), body)
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, str(exc))
            return
        processor = self.server.processor
        if is_platform_event(name) and not processor.allow_platform_events:
            self._answer(
                HTTPStatus.FORBIDDEN, f"{name!r}: events named error.* and done.* are raised by the platform only"
            )
            return
        try:
            check_external_event(name, data, allow_platform=True)
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, str(exc))
            return
        if not processor.knows(session_id):
            self._answer(HTTPStatus.NOT_FOUND, f"no session {session_id!r} here")
            return
        event = Event(
            name, data, type="external", origin=processor.trusted_origin(self.headers), origintype=BASICHTTP_TYPE
        )
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        event.raw = f"{self.requestline}\r\n{head}\r\n{body.decode('utf-8')}"
        # Spec C.2.1: answer 2xx once the event is queued, before it is processed.
        processor.receive(_Inbound(session_id, event))
        self._answer(HTTPStatus.OK, "")

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _refuse  # noqa: N815

    def _answer(self, status: HTTPStatus, text: str) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        # Requests are part of normal operation; a session's own log shows the events.
        return


class BasicHTTPProcessor:
    """The BasicHTTP Event I/O Processor with its own loopback HTTP server.

    ``port=0`` picks a free port. :meth:`start` (or ``with``) starts the server
    before sessions are started with ``Session(ioprocessors=[processor])``;
    :meth:`close` stops it. ``timeout`` bounds each outgoing POST;
    ``read_timeout`` each incoming request, ``max_connections`` the requests
    served at once; ``trust_origin`` and ``allow_platform_events`` relax the
    policy on incoming events (see the module docstring). One
    processor serves the sessions of one thread: the thread that calls
    :meth:`pump` or :meth:`run_until`, or the asyncio ``loop`` given here.
    """

    type_uri: str = BASICHTTP_TYPE
    aliases: tuple[str, ...] = ("basichttp",)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 5.0,
        loop: asyncio.AbstractEventLoop | None = None,
        read_timeout: float = 10.0,
        max_connections: int = 64,
        trust_origin: bool = False,
        allow_platform_events: bool = False,
    ) -> None:
        if not read_timeout > 0:
            raise ValueError("read_timeout must be a positive number of seconds")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.trust_origin = trust_origin
        self.allow_platform_events = allow_platform_events
        self._requested_port = port
        self._loop = loop
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._inbox: queue.SimpleQueue[_Inbound] = queue.SimpleQueue()
        self._arrived = threading.Event()
        self._lock = threading.Lock()
        self._sessions: weakref.WeakValueDictionary[str, IOSession] = weakref.WeakValueDictionary()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> BasicHTTPProcessor:
        """Bind the server and serve requests in a background thread."""
        if self._server is not None:
            return self
        server = _Server((self.host, self._requested_port), _Handler)
        server.processor = self
        server.slots = threading.BoundedSemaphore(self.max_connections)
        self._server = server
        # A short poll interval keeps close() quick: shutdown() waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"basichttp:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the server and release its socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> BasicHTTPProcessor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the BasicHTTP processor is not started: call start() first")
        return int(self._server.server_address[1])

    # ------------------------------------------------------------ EventIOProcessor

    def location(self, session: IOSession) -> str:
        """The access URI of ``session``; also makes the server accept events for it."""
        url = f"http://{self.host}:{self.port}/{urllib.parse.quote(session.session_id, safe='')}"
        with self._lock:
            self._sessions[session.session_id] = session
        return url

    def send(self, session: IOSession, event: Event, target: str) -> None:
        """POST ``event`` to the URL ``target`` and wait for the answer (see the module docstring)."""
        if not target:
            raise CommunicationError("a BasicHTTP <send> needs a target URL")
        scheme = urllib.parse.urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            raise ExecutionError(f"BasicHTTP target {target!r} is not an http or https URL")
        try:
            url, body, content_type = encode_send(event.name, event.data, target)
        except (TypeError, ValueError) as exc:
            raise CommunicationError(f"the event data cannot be sent over HTTP: {exc}") from None
        origin = self.location(session)
        headers = {"Content-Type": content_type, ORIGIN_HEADER: origin, ORIGIN_SIGNATURE_HEADER: _sign(origin)}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            raise CommunicationError(f"POST {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommunicationError(f"POST {url}: {reason}") from None
        # An event this server just accepted goes on its session's queue now, ahead of
        # anything the sending session does next.
        self.pump()

    # ------------------------------------------------------------ inbound events

    def trusted_origin(self, headers: Message) -> str | None:
        """The request's ``SCXML-Origin`` when it may be believed (signed here, or ``trust_origin``), else None."""
        origin: str | None = headers.get(ORIGIN_HEADER)
        if origin is None or self.trust_origin:
            return origin
        signature: str = headers.get(ORIGIN_SIGNATURE_HEADER) or ""
        return (
            origin if hmac.compare_digest(signature.encode("ascii", "replace"), _sign(origin).encode("ascii")) else None
        )

    def knows(self, session_id: str) -> bool:
        """Whether ``session_id`` is a session this processor gave an access URI to."""
        with self._lock:
            return session_id in self._sessions

    def receive(self, inbound: _Inbound) -> None:
        """Queue an event from the server thread for :meth:`pump`."""
        self._inbox.put(inbound)
        self._arrived.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.pump)

    def pump(self) -> int:
        """Hand the queued events to their sessions; returns how many were delivered."""
        self._arrived.clear()
        delivered = 0
        while True:
            try:
                inbound = self._inbox.get_nowait()
            except queue.Empty:
                return delivered
            with self._lock:
                session = self._sessions.get(inbound.session_id)
            if session is not None and session.running:
                session.post(inbound.event)
                delivered += 1

    def run_until(self, clock: RealClock, deadline: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Run a :class:`~orsguard.RealClock`'s timers and the inbound events until ``deadline`` or ``stop()``."""
        while True:
            try:
                self.pump()
                clock.run_until(deadline, stop, wait=self._wait)
                return
            except Exception:
                # One failing session must not stop the loop that serves all the others.
                _log.exception("a session failed while handling an event")

    def _wait(self, seconds: float) -> None:
        # Wakes early when a request arrives, so events are not held until the next timer.
        self._arrived.wait(seconds)
        self.pump()
