"""The host's payloads: JSON in and out, the session id rule, and the error a request is answered with."""

from __future__ import annotations

import json
import math
import re
from json.scanner import make_scanner
from typing import Any, cast

__all__ = ["MAX_SESSION_ID", "RequestError", "dumps", "loads", "valid_session_id"]


class RequestError(Exception):
    """A request the host answers on the error topic: ``code`` is documented."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


#: Longest session id (UTF-8 bytes): it becomes a topic level in every topic of the session.
MAX_SESSION_ID = 256


def valid_session_id(sid: str) -> bool:
    """True if ``sid`` can be one topic level: 1 to 256 bytes, printable, no ``/ + #``."""
    # The id becomes one topic level, so it must not split or match levels.
    return (
        0 < len(sid) <= MAX_SESSION_ID
        and len(sid.encode("utf-8", "surrogatepass")) <= MAX_SESSION_ID
        and not any(c in sid for c in "/+#\0")
        and sid.isprintable()
    )


# Built once: json.dumps/loads with keyword arguments build a new encoder or
# decoder on every call, which costs more than encoding a small event.

_SAFE_INT = 1 << 53


def _parse_int(text: str) -> int | float:
    value = int(text)
    if -_SAFE_INT <= value <= _SAFE_INT:
        return value
    # ECMAScript numbers are doubles: a larger integer becomes the nearest one,
    # and one beyond the double range is refused rather than made infinite.
    try:
        return float(value)
    except OverflowError:
        raise RequestError("bad-payload", f"number {text[:40]}... is beyond the double range") from None


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise RequestError("bad-payload", f"number {text[:40]} is beyond the double range")
    return value


def _parse_constant(name: str) -> Any:
    raise RequestError("bad-payload", f"{name} is not JSON")


_DECODE = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant).decode
# The hooks above cost a Python call per number. Only a run of 16 digits (an
# integer may pass 2**53), an exponent, NaN or Infinity can need them; any
# other payload, the usual event, goes through the plain C decoder.
_PLAIN_DECODE = json.JSONDecoder().decode
# The C scanner under that decoder, called directly: decode() adds two
# whitespace matches and two Python calls to every payload.
_SCAN = make_scanner(cast(Any, json.JSONDecoder()))
_NEEDS_HOOKS = re.compile(r"[0-9]{16}|[0-9][eE]|NaN|Infinity").search
_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode


def dumps(body: Any) -> bytes:
    """``body`` as compact JSON bytes; NaN and the infinities become ``null``."""
    try:
        return _ENCODE(body).encode()
    except ValueError:
        # Only NaN or an infinity gets here: JSON has neither, so say null.
        return _ENCODE(_finite(body)).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def loads(payload: bytes) -> Any:
    """A JSON payload (empty: ``None``); :class:`RequestError` ``bad-payload`` if it is not one."""
    if not payload:
        return None
    try:
        text = payload.decode()
        # Each of the hooks' cases has one of these letters or 16 characters;
        # four look-ups cost a quarter of the regular expression.
        if (len(text) > 15 or "e" in text or "E" in text or "N" in text or "I" in text) and _NEEDS_HOOKS(text):
            return _DECODE(text)
        try:
            value, end = _SCAN(text, 0)
            if end == len(text):
                return value
        except StopIteration:
            pass
        # Whitespace around the value, or not JSON: the decoder says which, and where.
        return _PLAIN_DECODE(text)
    except RequestError:
        raise
    except UnicodeDecodeError as exc:
        raise RequestError("bad-payload", f"payload is not UTF-8: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise RequestError("bad-payload", f"payload is not JSON: {str(exc)[:200]}") from None
