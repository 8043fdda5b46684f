"""``orsguard serve --workers N``: N host processes under one supervisor, behind one metrics endpoint.

Each worker is ``python -m orsguard.host --workers 1`` with client id
``<client id>-<i>``, its own MQTT client in the shared start subscription.
The supervisor passes SIGHUP, SIGINT and SIGTERM on, starts a worker that
died again, and serves one ``/metrics`` gathering the workers' own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from orsguard.host.config import HostConfig, load_documents, parse_broker
from orsguard.metrics import start_metrics_server

__all__ = ["WorkersCollector", "supervise"]

_log = logging.getLogger("orsguard.host")


class WorkersCollector:
    """Gathers the workers' metrics into one exposition (for ``--workers N``).

    Each worker serves its own registry on a loopback port; a scrape of the
    supervisor reads them all and adds samples with the same name and labels
    (``orsguard_limit`` takes the largest, ``*_created`` the earliest), so
    dashboards and alerts see one host. ``orsguard_workers_up`` counts the
    workers that answered. The workers are read at the same time, so a worker
    that hangs delays a scrape by ``timeout`` at most.
    """

    def __init__(self, ports: Sequence[int], timeout: float = 2.0) -> None:
        self.ports = list(ports)
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        """Yield the merged metric families."""
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        up = 0
        for text in self._gather():
            if text is None:
                continue
            try:
                parsed = list(text_string_to_metric_families(text))
            except ValueError as exc:  # a worker's page cut short: counted as not answering
                _log.warning("unreadable metrics from a worker: %s", exc)
                continue
            up += 1
            for family in parsed:
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

    def _gather(self) -> list[str | None]:
        # All workers at once: one that hangs costs a scrape one timeout, not one per worker.
        if len(self.ports) < 2:
            return [self._fetch(port) for port in self.ports]
        with ThreadPoolExecutor(max_workers=len(self.ports), thread_name_prefix="orsguard-scrape") as pool:
            return list(pool.map(self._fetch, self.ports))

    def _fetch(self, port: int) -> str | None:
        """One worker's exposition, or None when it does not answer within the timeout."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=self.timeout) as response:
                text: str = response.read().decode()
        except (OSError, ValueError):
            return None
        return text


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
    argv += ["--max-payload", str(config.max_payload), "--read-pause", str(config.read_pause_ms)]
    argv += ["--log-level", args.log_level, "--log-format", args.log_format]
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
    parse_broker(config.broker)
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
