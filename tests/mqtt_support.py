"""Real components for the MQTT host tests and the load benchmark.

* :class:`Mosquitto` - a broker of its own on a free loopback port, with a
  generated config and on-disk persistence so it can be restarted mid-test.
* :class:`HostProcess` - ``python -m orsguard.host`` as a child process.
* :class:`Peer` - the test's side of the conversation: an MQTT 5 client with a
  persistent session that reconnects and re-publishes until acknowledged, so
  it survives a broker restart like a well-behaved production client.
* the ``broker`` fixture (one Mosquitto per test module; import ``broker_fixture``) and :func:`metric`,
  one sample read from a host's ``/metrics``.

Mosquitto comes from ``scripts/install-services.sh``. Without it the tests
skip, except under CI (``CI`` set), where a missing broker is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = REPO / "examples" / "documents"


def require_program(name: str, *extra_dirs: str) -> str:
    """Path of ``name``; skip the test without it, fail under CI."""
    found = shutil.which(name) or next((str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None)
    if found:
        return found
    message = f"{name} is not installed; run scripts/install-services.sh"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must install it)", pytrace=False)
    pytest.skip(message)


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process dies without its
    # teardown (killed, timed out), the kernel sends the child SIGTERM instead
    # of leaving it running.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Return once something accepts connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on port {port}") from None
            time.sleep(0.02)


class Mosquitto:
    """A private Mosquitto broker in ``directory``; ``restart`` keeps its state."""

    def __init__(self, directory: Path, port: int | None = None, *, persistence: bool = True) -> None:
        self.binary = require_program("mosquitto", "/usr/sbin")
        self.directory = directory
        self.port = port or free_port()
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        # Queue and in-flight limits are raised above Mosquitto's defaults (1000
        # queued, 20 in flight per client) so that neither the load benchmark
        # nor a restart test drops QoS 1 messages; docs/operations.md says the
        # same for production brokers.
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"persistence {'true' if persistence else 'false'}",
                    f"persistence_location {directory / 'data'}/",
                    f"user {getpass.getuser()}",
                    "max_queued_messages 1000000",
                    "max_inflight_messages 1000",
                    "set_tcp_nodelay true",
                    f"log_dest file {self.log}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` for ``--mqtt``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        # The death signal follows the thread that started the child, not the
        # process: a broker restarted from a worker thread would be stopped
        # when that thread ends, so only the main thread asks for it.
        in_main = threading.current_thread() is threading.main_thread()
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if in_main else None,
        )
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start:\n{self.tail()}") from None

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def crash(self) -> None:
        """SIGKILL: the broker dies at once, saving nothing."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down for ``down_for`` seconds, start on the same port."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def tail(self, lines: int = 30) -> str:
        """The end of the broker log, for failure messages."""
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module", name="broker")
def broker_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto of the test module's own, started once and stopped after its last test."""
    mosquitto = Mosquitto(tmp_path_factory.mktemp("broker"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def metric(port: int, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` scraped from ``127.0.0.1:port/metrics``; fails if absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {wanted} in:\n{text}")


class HostProcess:
    """``python -m orsguard.host`` against ``broker``; waits until it is ready."""

    def __init__(
        self,
        broker: Mosquitto,
        directory: Path,
        *,
        client_id: str,
        metrics_port: int | None = None,
        documents: Path = DOCUMENTS,
        extra: Iterable[str] = (),
    ) -> None:
        self.client_id = client_id
        self.metrics_port = metrics_port
        self.log = directory / f"{client_id}.log"
        args = [
            sys.executable,
            "-m",
            "orsguard.host",
            "--mqtt",
            broker.url,
            "--documents",
            str(documents),
            "--client-id",
            client_id,
            "--workers",
            "1",
            *extra,
        ]
        if metrics_port is not None:
            args += ["--metrics-port", str(metrics_port)]
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            args, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=_die_with_parent
        )
        try:
            self.wait_for_log("ready on")
        except BaseException:
            self.stop()
            raise

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Block until ``text`` appears in the host's log (or it exits)."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None:
                raise RuntimeError(f"host exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"host never logged {text!r}:\n{self.tail()}")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the host process."""
        self.process.send_signal(signum)

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return int(self.process.returncode)

    def tail(self, lines: int = 40) -> str:
        """The end of the host log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Peer:
    """An MQTT 5 client for tests: persistent session, reconnects, retries publishes.

    Incoming messages on ``subscriptions`` collect in :attr:`messages` as
    ``(topic, decoded JSON payload)``; :meth:`expect` waits for one.
    """

    def __init__(self, port: int, client_id: str, subscriptions: Iterable[str] = ()) -> None:
        self.port = port
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.messages: list[tuple[str, Any]] = []
        self.reconnects = 0
        self._connected = asyncio.Event()
        self._arrived = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[str, Any], None]] = []

    async def __aenter__(self) -> Peer:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self._client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            # Test client ids are unique per broker, so there is never a stale
            # session; and aiomqtt would otherwise clean start on each reconnect.
            clean_start=False,
            properties=props,
            max_inflight_messages=1000,
            timeout=3,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self._connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    def on_message(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(topic, payload)`` for every message as it arrives."""
        self._listeners.append(listener)

    async def _run(self) -> None:
        assert self._client is not None
        first = True
        while True:
            try:
                async with self._client as client:
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    if not first:
                        self.reconnects += 1
                    first = False
                    self._connected.set()
                    async for message in client.messages:
                        decoded = _decode(message.payload)
                        topic = message.topic.value
                        self.messages.append((topic, decoded))
                        for listener in self._listeners:
                            listener(topic, decoded)
                        self._arrived.set()
            except aiomqtt.MqttError:
                self._connected.clear()
                await asyncio.sleep(0.1)

    async def publish(self, topic: str, body: Any = None, *, raw: bytes | None = None, properties: Any = None) -> None:
        """Publish with QoS 1 until the broker acknowledges it (at least once)."""
        assert self._client is not None
        payload = raw if raw is not None else json.dumps(body).encode()
        while True:
            await self._connected.wait()
            try:
                await self._client.publish(topic, payload, qos=1, properties=properties)
                return
            except aiomqtt.MqttError:
                # The reader task notices the broken connection and reconnects;
                # paho also re-sends the unacknowledged original, so the
                # subscriber may see this message twice (QoS 1 is at least once).
                await asyncio.sleep(0.05)

    async def expect(self, predicate: Callable[[str, Any], bool], timeout: float = 10.0) -> tuple[str, Any]:
        """The first collected message matching ``predicate``, waiting if needed."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = 0
        while True:
            for topic, payload in self.messages[seen:]:
                if predicate(topic, payload):
                    return topic, payload
            seen = len(self.messages)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                recent = self.messages[-10:]
                raise AssertionError(f"no matching message within {timeout}s; last: {recent}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)


def _decode(payload: Any) -> Any:
    # Tests publish deliberately broken payloads too; keep those as bytes.
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def topic_is(expected: str) -> Callable[[str, Any], bool]:
    """A predicate for :meth:`Peer.expect` matching one exact topic."""
    return lambda topic, _payload: topic == expected
