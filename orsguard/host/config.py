"""What ``orsguard serve`` is told: command-line arguments, the broker URL, the documents, logging."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

from orsguard.document import Document, load
from orsguard.errors import DocumentError
from orsguard.host.payload import dumps

__all__ = [
    "HostConfig",
    "JsonLogFormatter",
    "add_arguments",
    "config_from_args",
    "load_documents",
    "parse_broker",
    "setup_logging",
    "usage_error",
]


@dataclass(frozen=True)
class HostConfig:
    """Everything ``orsguard serve`` is told on its command line."""

    broker: str
    documents: Path
    options: Path | None = None
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    topic_prefix: str = "orsguard"
    client_id: str | None = None
    #: How long (s) the broker keeps this host's subscriptions and queued
    #: messages after a disconnect; long enough to ride out a broker restart.
    session_expiry: int = 600
    keepalive: int = 30
    #: Live sessions this host runs at most; 0 = no cap.
    max_sessions: int = 100_000
    #: Largest payload (bytes) the host decodes; larger ones are refused.
    max_payload: int = 1 << 20
    #: Least time (ms) between two reads of the broker connection: the host
    #: handles what arrived meanwhile in one go (see ``PacedSelector``).
    read_pause_ms: float = 2.0


def usage_error(message: str) -> NoReturn:
    """A bad command-line value: the message, then exit status 2 as for the parser's own errors."""
    print(f"orsguard serve: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_documents(directory: Path) -> dict[str, Document]:
    """Every ``DIR/NAME.scxml`` loaded as document ``NAME``; errors name the file."""
    if not directory.is_dir():
        usage_error(f"--documents {directory}: not a directory")
    documents = {}
    for path in sorted(directory.glob("*.scxml")):
        try:
            documents[path.stem] = load(path)
        except DocumentError as exc:
            raise SystemExit(f"orsguard serve: {path}: {exc}") from None
    if not documents:
        raise SystemExit(f"orsguard serve: no *.scxml documents in {directory}")
    return documents


def parse_broker(url: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt://[USER:PASS@]HOST[:PORT]`` as (host, port, user, password); a usage error otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        usage_error(f"--mqtt {url!r}: {exc}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        usage_error(f"--mqtt wants mqtt://HOST[:PORT], got {url!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        usage_error(f"--mqtt {url!r}: bad port")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, user, password


def _whole(highest: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 0 <= value <= highest:
            raise argparse.ArgumentTypeError(f"{value} is not between 0 and {highest}")
        return value

    return parse


_positive = _whole(2**31 - 1)


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1000 ms")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``orsguard serve`` (and ``python -m orsguard.host``)."""
    parser.add_argument("--mqtt", required=True, metavar="URL", help="broker, mqtt://[USER:PASS@]HOST[:PORT]")
    parser.add_argument(
        "--documents",
        required=True,
        type=Path,
        metavar="DIR",
        help="serve every DIR/NAME.scxml as NAME",
    )
    parser.add_argument(
        "--options",
        type=Path,
        metavar="FILE",
        help="ORS options file with the limits; re-read on SIGHUP",
    )
    parser.add_argument("--metrics-port", type=_whole(65535), metavar="N", help="serve Prometheus /metrics on port N")
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for /metrics (default 127.0.0.1)",
    )
    parser.add_argument("--topic-prefix", default="orsguard", metavar="PREFIX", help="first topic level(s)")
    parser.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT client id (default orsguard-<hostname>-<pid>); unique per host; workers add -1, -2, ...",
    )
    parser.add_argument(
        "--session-expiry",
        # The MQTT 5 property is four bytes.
        type=_whole(2**32 - 1),
        default=600,
        metavar="SECONDS",
        help="how long the broker keeps queued events for a disconnected host (default 600)",
    )
    parser.add_argument(
        "--max-sessions",
        type=_positive,
        default=100_000,
        metavar="N",
        help="live sessions per host process at most; more start requests are refused (default 100000; 0 = no cap)",
    )
    parser.add_argument(
        "--max-payload",
        type=_positive,
        default=1 << 20,
        metavar="BYTES",
        help="largest start request or event payload accepted (default 1048576)",
    )
    parser.add_argument(
        "--read-pause",
        type=_milliseconds,
        default=2.0,
        metavar="MS",
        help="least time between two reads of the broker connection: under steady traffic the host "
        "handles what arrived meanwhile in one go, for far less CPU per event and at most MS more "
        "latency (default 2; 0 = read at once)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=0,
        metavar="N",
        help="host processes sharing the work, one metrics endpoint for all (default: one per CPU)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object per line (default text)",
    )


def config_from_args(args: argparse.Namespace) -> HostConfig:
    """The :class:`HostConfig` of parsed :func:`add_arguments` options."""
    return HostConfig(
        broker=args.mqtt,
        documents=args.documents,
        options=args.options,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        topic_prefix=args.topic_prefix,
        client_id=args.client_id,
        session_expiry=args.session_expiry,
        max_sessions=args.max_sessions,
        max_payload=args.max_payload,
        read_pause_ms=args.read_pause,
    )


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.process is not None:
            entry["pid"] = record.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return dumps(entry).decode()


def setup_logging(args: argparse.Namespace) -> None:
    """Log to stderr at ``--log-level``, as text or JSON lines (``--log-format``)."""
    handler = logging.StreamHandler()
    if args.log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(args.log_level.upper())
    except ValueError:
        usage_error(f"--log-level {args.log_level!r}: not a logging level")
