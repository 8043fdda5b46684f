"""The BasicHTTP Event I/O Processor against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import orsguard
from orsguard.ioprocessors import BASICHTTP_TYPE
from orsguard.ioprocessors.basichttp import (
    EVENT_NAME_PARAM,
    ORIGIN_HEADER,
    ORIGIN_SIGNATURE_HEADER,
    BasicHTTPProcessor,
    decode_request,
    encode_send,
)

SCXML = '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript" initial="s0">{}</scxml>'


@pytest.fixture
def http() -> Iterator[BasicHTTPProcessor]:
    with BasicHTTPProcessor(timeout=2.0) as proc:
        yield proc


class Recorder:
    """A plain HTTP server that records the POSTs it gets and answers with ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(recorder.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class name
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/inbox"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    http: BasicHTTPProcessor, body: str, logs: list[Any] | None = None, clock: orsguard.RealClock | None = None
) -> orsguard.Session:
    sink = logs if logs is not None else []
    session = orsguard.Session(
        orsguard.load(SCXML.format(body)),
        clock=clock or orsguard.RealClock(),
        ioprocessors=[http],
        on_log=lambda label, value: sink.append(value),
    )
    session.start()
    return session


def settle(http: BasicHTTPProcessor, session: orsguard.Session, seconds: float = 2.0) -> None:
    clock = session.clock
    http.run_until(clock, clock.now() + seconds, stop=lambda: not session.running)


def post(url: str, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> int:
    return post_with(url, body, {"Content-Type": content_type})


def post_with(url: str, body: bytes, headers: dict[str, str]) -> int:
    """The HTTP status of a POST to ``url`` (errors included)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=2.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


RECEIVER = """
<state id="s0">
  <transition event="*" target="done">
    <log expr="JSON.stringify([_event.name, _event.data, _event.origintype])"/>
  </transition>
</state>
<final id="done"/>
"""


def received(logs: list[Any]) -> list[Any]:
    assert logs, "the session received no event"
    return json.loads(logs[0])


# ---------------------------------------------------------------- location


def test_location_is_per_session_and_under_both_names(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(
        http,
        """
<state id="s0"><onentry>
  <log expr="_ioprocessors['basichttp'].location"/>
  <log expr="_ioprocessors['http://www.w3.org/TR/scxml/#BasicHTTPEventProcessor'].location"/>
</onentry></state>""",
        logs,
    )
    expected = f"http://127.0.0.1:{http.port}/{session.session_id}"
    assert logs == [expected, expected]
    assert http.location(session) == expected


def test_location_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = BasicHTTPProcessor().port


# ---------------------------------------------------------------- receiving


def test_form_post_with_event_name_and_fields(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    status = post(http.location(session), b"_scxmleventname=call.arrived&ani=5551234&dnis=800")
    assert status == 200
    settle(http, session)
    assert received(logs) == ["call.arrived", {"ani": "5551234", "dnis": "800"}, BASICHTTP_TYPE]


def test_post_without_event_name_is_http_post(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    assert post(http.location(session), b"a=1&a=2") == 200
    settle(http, session)
    assert received(logs)[:2] == ["HTTP.POST", {"a": ["1", "2"]}]


def test_json_body_and_name_in_query(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    url = http.location(session) + "?_scxmleventname=order.placed"
    assert post(url, json.dumps({"items": [1, 2], "total": 3.5}).encode(), "application/json") == 200
    settle(http, session)
    assert received(logs)[:2] == ["order.placed", {"items": [1, 2], "total": 3.5}]


def test_event_name_inside_json_object(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    assert post(http.location(session), b'{"_scxmleventname": "go", "x": 1}', "application/json") == 200
    settle(http, session)
    assert received(logs)[:2] == ["go", {"x": 1}]


def test_run_until_wakes_for_a_request_instead_of_sleeping_to_the_deadline(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    url = http.location(session) + "?_scxmleventname=late"
    sender = threading.Timer(0.2, post, (url, b""))
    sender.start()
    began = time.monotonic()
    settle(http, session, 60.0)
    sender.join()
    assert received(logs)[0] == "late"
    assert time.monotonic() - began < 30.0


def test_a_failing_timer_is_logged_and_run_until_goes_on(
    http: BasicHTTPProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    clock = session.clock

    def boom() -> None:
        raise RuntimeError("boom")

    clock.call_at(clock.now(), boom)
    assert post(http.location(session) + "?_scxmleventname=after.failure", b"") == 200
    with caplog.at_level("ERROR", logger="orsguard.basichttp"):
        settle(http, session)
    assert received(logs)[0] == "after.failure"
    assert "a session failed while handling an event" in caplog.text
    assert "boom" in caplog.text


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"_scxmleventname=a&_scxmleventname=b", "application/x-www-form-urlencoded", 400),
        (b"_scxmleventname=not+a+name", "application/x-www-form-urlencoded", 400),
        (b"{not json", "application/json", 400),
        (b"\xff\xfe", "text/plain", 400),
    ],
)
def test_requests_that_are_no_event_are_refused(
    http: BasicHTTPProcessor, body: bytes, content_type: str, status: int
) -> None:
    session = start(http, RECEIVER)
    assert post(http.location(session), body, content_type) == status
    settle(http, session, 0.1)
    assert session.running


def test_unknown_session_is_404_and_get_is_405(http: BasicHTTPProcessor) -> None:
    start(http, RECEIVER)
    assert post(f"http://127.0.0.1:{http.port}/no-such-session", b"") == 404
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{http.port}/", timeout=2.0).close()
    refused.value.close()
    assert refused.value.code == 405


def test_events_after_the_session_ended_are_dropped(http: BasicHTTPProcessor) -> None:
    session = start(http, RECEIVER)
    session.cancel()
    assert post(http.location(session), b"") == 200
    assert http.pump() == 0


# ---------------------------------------------------------------- sending


def test_send_posts_form_encoded_event_and_data(http: BasicHTTPProcessor, recorder: Recorder) -> None:
    session = start(
        http,
        f"""
<datamodel><data id="Var1" expr="2"/></datamodel>
<state id="s0"><onentry>
  <send event="ping" type="basichttp" target="{recorder.url}" namelist="Var1">
    <param name="who" expr="'me'"/><param name="tags" expr="['a', 'b']"/>
  </send>
</onentry></state>""",
    )
    assert session.running
    [(path, headers, body)] = recorder.requests
    assert path == "/inbox"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers[ORIGIN_HEADER.lower()] == http.location(session)
    assert urllib.parse.parse_qsl(body.decode()) == [
        (EVENT_NAME_PARAM, "ping"),
        ("Var1", "2"),
        ("who", "me"),
        ("tags", '["a", "b"]'),
    ]


@pytest.mark.parametrize("status", [404, 500])
def test_refused_answer_is_error_communication(http: BasicHTTPProcessor, recorder: Recorder, status: int) -> None:
    recorder.status = status
    logs: list[Any] = []
    start(
        http,
        f"""
<state id="s0">
  <onentry><send event="ping" type="basichttp" target="{recorder.url}"/></onentry>
  <transition event="error.communication" target="done"><log expr="_event.name"/></transition>
</state><final id="done"/>""",
        logs,
    )
    assert logs == ["error.communication"]


def test_unreachable_target_is_error_communication(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(
        http,
        f"""
<state id="s0">
  <onentry><send event="ping" type="basichttp" target="http://127.0.0.1:{free_port()}/x"/></onentry>
  <transition event="error.communication" target="done"><log expr="_event.name"/></transition>
</state><final id="done"/>""",
        logs,
    )
    assert logs == ["error.communication"]
    assert session.final == "done"


def test_non_http_target_is_error_execution(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    start(
        http,
        """
<state id="s0">
  <onentry><send event="ping" type="basichttp" target="mailto:someone@example.com"/></onentry>
  <transition event="error.*" target="done"><log expr="_event.name"/></transition>
</state><final id="done"/>""",
        logs,
    )
    assert logs == ["error.execution"]


def test_two_sessions_talk_and_reply_to_origin(http: BasicHTTPProcessor) -> None:
    clock = orsguard.RealClock()
    server_logs: list[Any] = []
    server = start(
        http,
        """
<state id="s0">
  <transition event="ping" target="done">
    <log expr="_event.data.n"/>
    <send event="pong" type="basichttp" targetexpr="_event.origin">
      <param name="n" expr="Number(_event.data.n) + 1"/>
    </send>
  </transition>
</state><final id="done"/>""",
        server_logs,
        clock,
    )
    client_logs: list[Any] = []
    client = start(
        http,
        f"""
<state id="s0">
  <onentry>
    <send event="ping" type="basichttp" target="{http.location(server)}"><param name="n" expr="1"/></send>
  </onentry>
  <transition event="pong" target="done"><log expr="_event.data.n"/></transition>
</state><final id="done"/>""",
        client_logs,
        clock,
    )
    settle(http, client)
    assert server_logs == ["1"]
    assert client_logs == ["2"]
    assert server.final == client.final == "done"


def test_asyncio_loop_gets_events_without_pumping() -> None:
    async def scenario() -> tuple[str | None, list[Any]]:
        logs: list[Any] = []
        with BasicHTTPProcessor(loop=asyncio.get_running_loop()) as http:
            session = orsguard.Session(
                orsguard.load(SCXML.format(RECEIVER)),
                clock=orsguard.AsyncioClock(),
                ioprocessors=[http],
                on_log=lambda label, value: logs.append(value),
            )
            session.start()
            status = await asyncio.to_thread(post, http.location(session) + "?_scxmleventname=hello", b"k=v")
            assert status == 200
            for _ in range(100):
                if not session.running:
                    break
                await asyncio.sleep(0.01)
            return session.final, logs

    final, logs = asyncio.run(scenario())
    assert final == "done"
    assert json.loads(logs[0])[:2] == ["hello", {"k": "v"}]


# ---------------------------------------------------------------- message format


@pytest.mark.parametrize("content", ["this is some content", "a=b&c", "naïve 100%"])
def test_content_string_round_trips_as_one_value(content: str) -> None:
    url, body, content_type = encode_send(None, content, "http://h/s1")
    assert url == "http://h/s1"
    assert decode_request("POST", "/s1", content_type, body) == ("s1", "HTTP.POST", content)


def test_content_with_event_name_puts_name_in_query() -> None:
    url, body, content_type = encode_send("ev", [1, 2], "http://h/s1?x=1")
    assert url == "http://h/s1?x=1&_scxmleventname=ev"
    assert content_type == "application/json"
    assert decode_request("POST", "/s1?_scxmleventname=ev", content_type, body) == ("s1", "ev", [1, 2])


def test_event_attribute_wins_over_param_of_the_same_name() -> None:
    _, body, _ = encode_send("real", {EVENT_NAME_PARAM: "other", "k": 1.0}, "http://h/s1")
    assert decode_request("POST", "/s1", None, body) == ("s1", "real", {"k": "1"})


def test_text_body_is_json_or_normalized_text() -> None:
    assert decode_request("POST", "/s", "text/plain", b'{"a": 1}')[2] == {"a": 1}
    assert decode_request("POST", "/s", "text/plain", b"  some\n  text ")[2] == "some text"


# ---------------------------------------------------------------- hostile clients


@pytest.mark.parametrize("name", ["error.execution", "error.communication", "done.invoke.x", "done.state.s0", "error"])
def test_platform_event_names_are_forbidden(http: BasicHTTPProcessor, name: str) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    assert post(http.location(session) + f"?{EVENT_NAME_PARAM}={name}", b"") == 403
    assert post(http.location(session), f"{EVENT_NAME_PARAM}={name}".encode()) == 403
    assert post(http.location(session), json.dumps({EVENT_NAME_PARAM: name}).encode(), "application/json") == 403
    assert http.pump() == 0
    assert session.running and logs == []


def test_platform_event_names_can_be_allowed() -> None:
    with BasicHTTPProcessor(allow_platform_events=True) as http:
        logs: list[Any] = []
        session = start(http, RECEIVER, logs)
        assert post(http.location(session) + f"?{EVENT_NAME_PARAM}=error.remote", b"") == 200
        settle(http, session)
        assert received(logs)[0] == "error.remote"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b"[Infinity]",
        b'{"a": 1' + b"0" * 400 + b"}",
        b'{"a": "\\ud800"}',
        b"[" * 70 + b"]" * 70,
    ],
)
def test_data_no_session_can_hold_is_refused_and_the_loop_goes_on(http: BasicHTTPProcessor, body: bytes) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    assert post(http.location(session) + f"?{EVENT_NAME_PARAM}=bad", body, "application/json") == 400
    assert post(http.location(session) + f"?{EVENT_NAME_PARAM}=good", b'{"a": 1}', "application/json") == 200
    settle(http, session)
    assert received(logs)[:2] == ["good", {"a": 1}]


def test_text_body_with_nan_is_text_not_a_number(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(http, RECEIVER, logs)
    assert post(http.location(session), b"NaN", "text/plain") == 200
    settle(http, session)
    assert received(logs)[1] == "NaN"


def test_a_failing_session_does_not_end_the_loop(http: BasicHTTPProcessor) -> None:
    broken = start(http, '<state id="s0"/>')
    logs: list[Any] = []
    healthy = start(http, RECEIVER, logs)

    def explode() -> None:
        raise RuntimeError("a session failed")

    broken._process_external = explode  # type: ignore[method-assign]
    assert post(http.location(broken), b"x=1") == 200
    assert post(http.location(healthy), b"y=2") == 200
    settle(http, healthy)
    assert received(logs)[:2] == ["HTTP.POST", {"y": "2"}]


def test_unsigned_origin_is_left_out_and_signed_origin_kept(http: BasicHTTPProcessor) -> None:
    body = (
        '<state id="s0"><transition event="*" target="done"><log expr="String(_event.origin)"/></transition>'
        '</state><final id="done"/>'
    )
    logs: list[Any] = []
    session = start(http, body, logs)
    assert post_with(http.location(session), b"", {ORIGIN_HEADER: "http://attacker.invalid/x"}) == 200
    settle(http, session)
    assert logs == ["undefined"]


def test_origin_is_kept_when_trusted() -> None:
    with BasicHTTPProcessor(trust_origin=True) as http:
        logs: list[Any] = []
        session = start(
            http,
            '<state id="s0"><transition event="*" target="done"><log expr="_event.origin"/>'
            '</transition></state><final id="done"/>',
            logs,
        )
        assert post_with(http.location(session), b"", {ORIGIN_HEADER: "http://peer.invalid/x"}) == 200
        settle(http, session)
        assert logs == ["http://peer.invalid/x"]


def test_a_forged_signature_is_not_trusted(http: BasicHTTPProcessor) -> None:
    logs: list[Any] = []
    session = start(
        http,
        '<state id="s0"><transition event="*" target="done"><log expr="String(_event.origin)"/>'
        '</transition></state><final id="done"/>',
        logs,
    )
    headers = {ORIGIN_HEADER: "http://127.0.0.1:1/x", ORIGIN_SIGNATURE_HEADER: "0" * 64}
    assert post_with(http.location(session), b"", headers) == 200
    settle(http, session)
    assert logs == ["undefined"]


def connect(http: BasicHTTPProcessor) -> socket.socket:
    return socket.create_connection(("127.0.0.1", http.port), timeout=5.0)


def answer_of(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_slow_client_is_dropped_after_the_read_timeout() -> None:
    with BasicHTTPProcessor(read_timeout=0.3) as http:
        sock = connect(http)
        sock.sendall(b"POST /x HTTP/1.0\r\nContent-Length: 10\r\n")  # and then nothing more
        with sock:
            assert answer_of(sock) == b""  # closed by the server, without an answer


def test_a_client_that_sends_half_a_body_is_dropped() -> None:
    with BasicHTTPProcessor(read_timeout=0.3) as http:
        sock = connect(http)
        sock.sendall(b"POST /x HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc")
        with sock:
            assert answer_of(sock) == b""


def test_connections_beyond_the_cap_get_503_without_a_thread() -> None:
    with BasicHTTPProcessor(read_timeout=5.0, max_connections=4) as http:
        threads_before = threading.active_count()
        slow = [connect(http) for _ in range(4)]
        for sock in slow:
            sock.sendall(b"POST /x HTTP/1.0\r\n")
        # The server has accepted all four once each holds a thread.
        deadline = time.monotonic() + 5.0
        while threading.active_count() < threads_before + 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert threading.active_count() == threads_before + 4
        extra = [connect(http) for _ in range(20)]
        for sock in extra:
            with sock:
                assert answer_of(sock).startswith(b"HTTP/1.0 503")
        assert threading.active_count() == threads_before + 4
        for sock in slow:
            sock.close()
        # Once the slow clients are gone their slots serve requests again.
        logs: list[Any] = []
        session = start(http, RECEIVER, logs)
        deadline = time.monotonic() + 5.0
        while post_while_slots_free(http.location(session), b"z=1") != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        settle(http, session)
        assert received(logs)[1] == {"z": "1"}


def post_while_slots_free(url: str, body: bytes) -> int | None:
    """``post``, or None when the server closed the connection before reading it all.

    While the slow clients' threads wind down, the server may still be at its cap: it
    answers 503 and closes at once, and a request still being written then fails with a
    broken pipe or a reset instead of reading the 503.
    """
    try:
        return post(url, body)
    except (urllib.error.URLError, ConnectionError):
        return None


def test_body_shorter_than_its_length_is_refused(http: BasicHTTPProcessor) -> None:
    session = start(http, RECEIVER)
    sock = connect(http)
    path = urllib.parse.urlsplit(http.location(session)).path
    sock.sendall(f"POST {path} HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc".encode())
    sock.shutdown(socket.SHUT_WR)
    with sock:
        assert answer_of(sock).startswith(b"HTTP/1.0 400")
    assert http.pump() == 0
