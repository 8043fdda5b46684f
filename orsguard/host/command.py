"""``orsguard serve``: one host process, or the ``--workers`` supervisor, from the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from typing import Any

from orsguard.host.config import (
    HostConfig,
    add_arguments,
    config_from_args,
    load_documents,
    parse_broker,
    setup_logging,
)
from orsguard.host.connection import run_paced
from orsguard.host.routing import SessionHost
from orsguard.host.workers import supervise
from orsguard.metrics import start_metrics_server
from orsguard.options.problem import OptionsError

__all__ = ["add_subcommand", "main", "serve"]

_log = logging.getLogger("orsguard.host")


async def serve(config: HostConfig) -> int:
    """Load the documents, start metrics and run the host until SIGINT/SIGTERM.

    SIGHUP re-reads ``--options``. Returns the process exit status.
    """
    parse_broker(config.broker)  # a bad URL stops here, before anything starts
    documents = load_documents(config.documents)
    try:
        host = SessionHost(config, documents)
    except OptionsError as exc:
        raise SystemExit(f"orsguard serve: {exc}") from None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, host.stop)
    host.install_reload(loop)
    server = None
    if config.metrics_port is not None:
        server = start_metrics_server(config.metrics_port, config.metrics_address, registry=host.registry)
        _log.info("metrics on http://%s:%d/metrics", server.address, server.port)
    try:
        await host.run()
    finally:
        if server is not None:
            server.close()
    return 0


def _run_from_args(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = config_from_args(args)
    workers = args.workers or os.cpu_count() or 1
    if workers > 1:
        return supervise(config, workers, args)
    return run_paced(serve(config), config.read_pause_ms / 1000)


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` to an argparse subparsers object; ``args.func(args)`` runs it."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run sessions driven over MQTT",
        description="Run SCXML sessions for the documents in DIR, driven over an MQTT 5 broker.",
    )
    add_arguments(parser)
    parser.set_defaults(func=_run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m orsguard.host``: the same options as ``orsguard serve``."""
    parser = argparse.ArgumentParser(
        prog="python -m orsguard.host",
        description="The MQTT session host: orsguard serve --mqtt mqtt://HOST:PORT --documents DIR.",
    )
    add_arguments(parser)
    return _run_from_args(parser.parse_args(argv))
