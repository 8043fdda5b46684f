"""The values in force: each option's effective value, and session limits from a file.

A value comes from an ``ORSGUARD_SCXML_*`` environment variable (``[scxml]``
limits only), else from the file, else from the schema's default. Units are the
file's: ``scxml/process-event-timeout`` is in milliseconds and
``scxml/max-session-age`` in seconds; :class:`~orsguard.limits.Limits` holds
both in seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orsguard.limits import Limits
from orsguard.options.check import int_problem, plausibility_problem
from orsguard.options.problem import OptionsError
from orsguard.options.reader import OptionFile, read
from orsguard.options.schema import SCHEMA

# Named for the package: users configure logging for "orsguard.options", where the docs point them.
log = logging.getLogger("orsguard.options")

#: Environment variables that override ``[scxml]`` values, e.g.
#: ``ORSGUARD_SCXML_MAX_MICROSTEP_COUNT=500``; same units as the file.
ENV_PREFIX = "ORSGUARD_SCXML_"


@dataclass(frozen=True, slots=True)
class Setting:
    """One effective value: ``origin`` is ``line N``, ``default``, ``unset`` or an env var name."""

    section: str
    option: str
    value: str | None
    unit: str
    origin: str
    known: bool


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.upper().replace("-", "_")


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def effective(option_file: OptionFile, *, environ: Mapping[str, str] | None = None) -> list[Setting]:
    """The value each option has: from the environment, the file or the default.

    Lists the schema's options (removed ones only when the file has them) in
    schema order, then the file's other options in file order. ``environ``
    (default :data:`os.environ`) overrides ``[scxml]`` limits.
    """
    env = _environ(environ)
    settings: list[Setting] = []
    for option in SCHEMA.values():
        entry = option_file.get(option.section, option.name)
        if option.removed and entry is None:
            continue
        value, origin = (entry.value, f"line {entry.line}") if entry else (option.default, "default")
        if value is None:
            origin = "unset"
        if option.limit and _env_name(option.name) in env:
            value, origin = env[_env_name(option.name)].strip(), _env_name(option.name)
        settings.append(Setting(option.section, option.name, value, option.unit, origin, True))
    shown = {(s.section, s.option) for s in settings}
    last = option_file.last_entries()
    for entry in option_file.entries:
        key = (entry.section, entry.option)
        if key not in shown and last[key] is entry:
            settings.append(Setting(entry.section, entry.option, entry.value, "", f"line {entry.line}", False))
    return settings


def limits_from_options(
    source: str | os.PathLike[str] | OptionFile | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Limits:
    """Limits from an option file's ``[scxml]`` section, then the environment.

    ``source`` is a path, an already read :class:`OptionFile`, or None for the
    defaults. Options absent from the file keep :class:`Limits` defaults. The
    variables ``ORSGUARD_SCXML_<OPTION>`` (e.g. ``ORSGUARD_SCXML_MAX_PENDING_EVENTS``)
    override the file in the file's units; ``environ`` defaults to
    :data:`os.environ`, pass ``{}`` to ignore it. Raises :class:`OptionsError`
    naming the file and line (or the variable) of a bad value; problems outside
    ``[scxml]`` do not stop the limits from being built.
    """
    option_file = read(source) if isinstance(source, (str, os.PathLike)) else source
    env = _environ(environ)
    # Keyed by Limits field; Limits.__post_init__ checks and converts each value.
    values: dict[str, Any] = {}
    for option in SCHEMA.values():
        if option.limit is None:
            continue
        var = _env_name(option.name)
        if var in env:
            text, where, line = env[var].strip(), f"environment variable {var}", None
        elif option_file is not None and (entry := option_file.get(option.section, option.name)):
            text, where, line = entry.value, option_file.path, entry.line
        else:
            continue
        message = int_problem(option, text)
        if message:
            raise OptionsError(where, line, message, section=option.section, option=option.name)
        doubt = plausibility_problem(option, text)
        if doubt:
            # Still applied: the value is valid, only unlikely. A host logs it at
            # start and on every SIGHUP reload.
            log.warning("%s", OptionsError.locate(where, line, option.section, option.name, f"warning: {doubt}"))
        number = int(text)
        values[option.limit] = number / 1000 if option.unit == "ms" else number
    return Limits(**values)
