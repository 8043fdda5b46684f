"""What the plug-ins of a session may call on it, and the one rule for their failures.

A datamodel, compiled executable content and an event I/O processor each see
a session only through the Protocol here that names what they need; the
Session class implements all three. Typing against these instead of the
Session class keeps the imports one-way: a plug-in module never imports
``orsguard.session``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from orsguard._core import ScriptInterrupted

if TYPE_CHECKING:
    from orsguard._core import Event
    from orsguard.datamodels.base import Datamodel


class DatamodelHost(Protocol):
    """What a datamodel may call on its session."""

    def raise_error(self, name: str, exc: BaseException | None = None) -> None:
        """Enqueue ``error.execution`` (or another platform error) for ``exc``."""
        ...

    def is_active(self, state_id: str) -> bool:
        """``In(state_id)``."""
        ...


class ExecutionContext(DatamodelHost, Protocol):
    """What compiled executable content may call on the session running it."""

    @property
    def dm(self) -> Datamodel: ...

    def script_interrupted(self) -> None:
        """End the session for a script its engine stopped; raises ``Halt``."""
        ...

    def raise_internal(self, name: str) -> None: ...

    def log(self, label: str | None, value: Any) -> None: ...

    def new_send_id(self) -> str: ...

    def send_event(
        self,
        name: str | None,
        target: str | None,
        type_: str | None,
        sendid: str | None,
        delay: float,
        data: Any,
        *,
        public_id: bool = False,
    ) -> None: ...

    def cancel_send(self, sendid: str | None) -> None: ...

    def apply_initial_data(self) -> None:
        """Let invoke parameters override the top-level data just initialized."""
        ...


class IOSession(Protocol):
    """What an event I/O processor may call on a session."""

    @property
    def session_id(self) -> str: ...

    @property
    def running(self) -> bool: ...

    @property
    def invoke_id(self) -> str | None: ...

    @property
    def parent(self) -> IOSession | None: ...

    def child(self, invoke_id: str) -> IOSession | None: ...

    def enqueue_internal(self, event: Event) -> None: ...

    def enqueue_external(self, event: Event) -> bool: ...

    def send(self, name: str, data: Any = None) -> bool: ...

    def post(self, event: Event) -> None:
        """Queue ``event`` from outside the session's macrostep; it is processed on the next clock turn."""
        ...


def execution_failed(session: ExecutionContext, exc: Exception) -> None:
    """The one rule for executable content that raised: what the session does about it.

    A script the engine stopped (deadline or ``terminate()``) ends the session
    through ``script_interrupted()``, which raises ``Halt``; any other failure
    becomes ``error.execution`` and the session goes on. ``Halt`` itself is a
    BaseException and never reaches here: catch ``Exception`` around the call.
    """
    if isinstance(exc, ScriptInterrupted):
        session.script_interrupted()
    session.raise_error("error.execution", exc)
