"""Live change: re-reading an option file on SIGHUP, as ORS applies ``[scxml]`` changes at once.

A reload that fails leaves the values in force, so a long-running host keeps
running on the last good file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import Any

from orsguard.limits import Limits
from orsguard.options.check import int_problem
from orsguard.options.effective import limits_from_options
from orsguard.options.problem import OptionsError
from orsguard.options.reader import read
from orsguard.options.schema import SCHEMA

# Named for the package: users configure logging for "orsguard.options", where the docs point them.
log = logging.getLogger("orsguard.options")


def install_sighup(
    callback: Callable[[], Any],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Callable[[], None]:
    """Call ``callback()`` on each SIGHUP; returns a function that removes the handler.

    With ``loop`` the handler is registered with ``loop.add_signal_handler``
    and runs in the loop; without, with :func:`signal.signal`, which only the
    main thread may call. Raises RuntimeError where SIGHUP does not exist.
    """
    if not hasattr(signal, "SIGHUP"):
        raise RuntimeError("SIGHUP does not exist on this platform; reload the options another way")
    if loop is not None:
        loop.add_signal_handler(signal.SIGHUP, callback)

        def remove_from_loop() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        return remove_from_loop

    previous = signal.signal(signal.SIGHUP, lambda signum, frame: callback())

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


class LimitsSource:
    """The limits of one option file, re-read on demand or on SIGHUP.

    ORS applies ``[scxml]`` changes immediately; orsguard does the same for a
    long-running host: on SIGHUP the file is read again and the callback passes
    the new :class:`Limits` to the running sessions (``session.limits = new``),
    which apply them at their next check. A file that has become invalid is
    reported and the old values stay in force, so the host keeps running.
    """

    def __init__(self, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> None:
        self.path = os.fspath(path)
        self._environ = environ
        #: The limits now in force; replaced only by a successful :meth:`reload`.
        self.limits: Limits
        #: ``orchestration/send-retries`` now in force (the schema default when unset).
        self.send_retries: int
        self.limits, self.send_retries = self._load()

    def _load(self) -> tuple[Limits, int]:
        option_file = read(self.path)
        limits = limits_from_options(option_file, environ=self._environ)
        option = SCHEMA["orchestration/send-retries"]
        entry = option_file.get(option.section, option.name)
        if entry is None:
            return limits, int(str(option.default))
        message = int_problem(option, entry.value)
        if message:
            raise OptionsError(self.path, entry.line, message, section=option.section, option=option.name)
        return limits, int(entry.value)

    def reload(self) -> Limits:
        """Read the file again; on success the new values are kept and the limits returned.

        Raises :class:`OptionsError` (leaving :attr:`limits` and
        :attr:`send_retries` unchanged) when the file cannot be read or a value
        it uses (``[scxml]``, ``orchestration/send-retries``) is invalid.
        """
        self.limits, self.send_retries = self._load()
        return self.limits

    def install_sighup(
        self,
        callback: Callable[[Limits], Any],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_error: Callable[[OptionsError], Any] | None = None,
    ) -> Callable[[], None]:
        """On each SIGHUP: :meth:`reload`, then ``callback(new_limits)``.

        ``loop`` as for the module's :func:`install_sighup`. A failed reload
        goes to ``on_error``, or is logged as an error when there is none, and
        the callback is not called. Returns a function that removes the handler.
        """

        def handle() -> None:
            try:
                new = self.reload()
            except OptionsError as exc:
                if on_error is None:
                    log.error("options not reloaded, limits unchanged: %s", exc)
                else:
                    on_error(exc)
                return
            log.info("options reloaded from %s: %s", self.path, new)
            callback(new)

        return install_sighup(handle, loop=loop)
