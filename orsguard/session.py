"""The public :class:`Session`: one running SCXML state machine under ORS limits."""

from __future__ import annotations

import itertools
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orsguard._core import Event, Interpreter, Stats
from orsguard.clock import Clock, RealClock
from orsguard.datamodels.base import Expression
from orsguard.document import Document, Invoke, load_file, load_string, resolve_src
from orsguard.errors import CommunicationError, DocumentError, ExecutionError
from orsguard.ioprocessors import SCXML_TYPE, EventIOProcessor, check_portable
from orsguard.ioprocessors import scxml as scxml_processor
from orsguard.limits import Limits
from orsguard.records import (
    MAX_ERRORS,
    DataView,
    ErrorRecord,
    ExpectedError,
    Sent,
    StrictError,
    TransitionTaken,
    element_column,
)
from orsguard.runtime import ExecutionContext, execution_failed
from orsguard.termination import Termination

log = logging.getLogger("orsguard")

#: Type URIs that start an SCXML session with ``<invoke>``.
INVOKE_SCXML_TYPES = (
    "http://www.w3.org/TR/scxml/",
    "http://www.w3.org/TR/scxml",
    "scxml",
    "http://www.w3.org/TR/scxml/#SCXMLEventProcessor",
)

#: Event a parent receives when a session it invoked is stopped by a limit.
LIMIT_EVENT = "error.limit"

#: What ``Session(sends=...)`` does with a ``<send>`` to an event I/O processor other than the SCXML one.
SEND_MODES = ("dispatch", "record", "both")

_send_ids = itertools.count(1)
_CLOCK_METHODS = ("now", "call_at", "advance", "run_until", "settle")


class Session(Interpreter):
    """One SCXML session.

    ``limits`` default to :class:`~orsguard.Limits` ``()``; ``clock`` to real
    time (pass a :class:`~orsguard.VirtualClock` in tests). ``data`` overrides
    top-level ``<data>`` values with the same ids, as an invoke's parameters do.
    ``on_end(session)`` is called once when the session stops running;
    ``on_transition(label)`` for every transition taken, initial ones and those
    of invoked sessions included; ``label`` is a
    :class:`~orsguard.records.TransitionTaken` (a ``str``) that also names the
    selecting event and the invoke id.
    Sessions it invokes run under ``child_limits``, by default its own limits;
    when a limit stops one, this session receives :data:`LIMIT_EVENT`.

    For tests: ``strict=True`` makes :meth:`check` fail on any ``error.*``
    event the platform raised that :meth:`expect_error` did not announce.
    ``sends`` says what happens to a ``<send>`` that leaves the session (a
    processor other than the SCXML one): ``"dispatch"`` (the default),
    ``"record"`` in :attr:`outbox` instead, or ``"both"``. Invoked sessions
    share their invoker's settings, outbox and error list.
    """

    clock: Clock

    def __init__(
        self,
        document: Document,
        *,
        limits: Limits | None = None,
        clock: Clock | None = None,
        session_id: str | None = None,
        ioprocessors: Iterable[EventIOProcessor] = (),
        stats: Stats | None = None,
        on_end: Callable[[Session], None] | None = None,
        data: Mapping[str, Any] | None = None,
        on_log: Callable[[str | None, Any], None] | None = None,
        on_transition: Callable[[str], None] | None = None,
        child_limits: Limits | None = None,
        parent: Session | None = None,
        invoke_id: str | None = None,
        strict: bool = False,
        sends: str = "dispatch",
    ) -> None:
        # The core's constructor has checked ``document`` and allocated the session's tables.
        if clock is None:
            clock = RealClock()
        else:
            missing = [m for m in _CLOCK_METHODS if not callable(getattr(clock, m, None))]
            if missing:
                raise TypeError(
                    f"a session clock needs the methods of orsguard.clock.Clock; "
                    f"{type(clock).__name__} has no {', '.join(missing)}"
                )
        self.clock = clock
        self.limits = limits if limits is not None else Limits()
        if stats is not None:
            self.stats = stats
        self.document = document
        self.session_id = session_id or uuid.uuid4().hex
        # Weak: the parent holds its children; a strong way back would be a cycle
        # that keeps both engine contexts alive until the cycle collector runs.
        self._parent = weakref.ref(parent) if parent is not None else None
        self.invoke_id = invoke_id
        self.on_end = on_end
        self.on_log = on_log
        self._init_harness(on_transition, strict, sends)
        self._initial_data = dict(data) if data else {}
        if parent is None:
            # The API boundary; an invoking parent's values come from its own datamodel.
            for value in self._initial_data.values():
                document.datamodel_class.validate(value)
        self._child_limits = child_limits
        self._ioprocessors: dict[str, EventIOProcessor] = {}
        for proc in ioprocessors:
            for uri in (proc.type_uri, *proc.aliases):
                self._ioprocessors[uri] = proc
        # The processors send_event's fast path dispatches to: not the SCXML
        # processor's names, and none when sends are recorded.
        self._remote = (
            {uri: p for uri, p in self._ioprocessors.items() if uri not in scxml_processor.ALIASES}
            if self._sends == "dispatch"
            else {}
        )
        self._origin = scxml_processor.location(self)
        self._children: dict[str, tuple[Session, Invoke]] = {}
        self._cancelled: set[str] = set()
        self.dm = document.datamodel_class(self, document.expressions.items + self._data_readers())
        scxml_processor.registry[self.session_id] = self

    # ------------------------------------------------------------ public API

    def start(self) -> Session:
        """Run the initial macrostep (datamodel, global scripts, initial states)."""
        self._boot()
        self.clock.settle(self._macro_end)
        return self

    def _boot(self) -> None:
        system = {"sessionid": self.session_id, "name": self.document.name, "ioprocessors": self._io_locations()}
        try:
            self.dm.setup(system, self.document.data_ids)
        except ExecutionError as exc:
            raise DocumentError(str(exc), file=self.document.path) from None
        self._start_core()
        self._process_external()

    def send(self, name: str, data: Any = None) -> bool:
        """Queue an external event and process until stable.

        False when the event was not queued: the session has ended, or queuing it
        exceeded ``max-pending-events`` (which ends the session). ValueError when
        ``data`` has no form in the datamodel (see ``_quickjs.validate``).
        """
        if not self.started:
            raise RuntimeError("call start() before send()")
        if data is not None:
            self.dm.validate(data)
        # Event's type defaults to "external": no keyword arguments to parse per event.
        if not self.enqueue_external(Event(name, data)):
            return False
        self._process_external()
        # Run what became due meanwhile: cross-session deliveries posted for "now",
        # and on the real clock any timer that came due. Asked after every event, so
        # the clock answers "nothing" with one comparison (the core already read the time).
        self.clock.settle(self._macro_end)
        return True

    def post(self, event: Event) -> None:
        """Queue ``event`` from outside this session's macrostep and process it on the next clock turn.

        How other sessions and transports deliver, so that no session runs inside
        another's step loop. Ignored once the session has ended; an event beyond
        ``max-pending-events`` stops the session, as any enqueue does.
        """
        if self.enqueue_external(event):
            clock = self.clock
            clock.call_at(clock.now(), self._process_external)

    def advance(self, seconds: float) -> None:
        """Move the clock on and process the delayed events that become due."""
        self.clock.advance(seconds)

    def run(self, max_time: float) -> Session:
        """Process until the session ends or nothing more can happen within ``max_time`` seconds.

        On a virtual clock time jumps from timer to timer; on the real clock it passes.
        """
        clock = self.clock
        clock.run_until(clock.now() + max_time, stop=lambda: not self.running)
        return self

    def cancel(self) -> None:
        """Stop the session from outside; no more content runs (end reason ``cancelled``).

        Any thread may call it. While another thread runs one of the session's
        macrosteps, that thread stops it at its next event, microstep or
        script instruction and this call returns at once; an idle session is
        halted here and now, its active states exited.
        """
        if not self._request_cancel():
            self._halt("cancelled")

    @property
    def final(self) -> str | None:
        """Id of the top-level ``<final>`` the session ended in, or None."""
        return self._final_state

    @property
    def termination(self) -> Termination | None:
        """Why a limit stopped the session, or None."""
        facts = self._violation
        return Termination(*facts) if facts is not None else None

    # ------------------------------------------------------------ services for executable content

    def _io_locations(self) -> dict[str, dict[str, str]]:
        here = {"location": scxml_processor.location(self)}
        out = {uri: dict(here) for uri in scxml_processor.ALIASES}
        for uri, proc in self._ioprocessors.items():
            out[uri] = {"location": proc.location(self)}
        return out

    def apply_initial_data(self) -> None:
        """Called after top-level data is initialized: invoke parameters override it."""
        setters = self.document.data_setters
        for name, value in self._initial_data.items():
            k = setters.get(name)
            if k is not None:
                self.dm.set_location(k, value)

    def raise_internal(self, name: str) -> None:
        """``<raise>``: queue ``name`` on the internal queue."""
        self.enqueue_internal(Event(name, None, type="internal"))

    def log(self, label: str | None, value: Any) -> None:
        """``<log>``: to ``on_log`` when given, else to the ``orsguard`` logger."""
        if self.on_log is not None:
            self.on_log(label, value)
        else:
            log.info("%s: %r", label or "log", value)

    def new_send_id(self) -> str:
        """A send id unique in this process."""
        return f"{self.session_id}.send{next(_send_ids)}"

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
    ) -> None:
        """``<send>``: route through the SCXML processor or a registered one.

        ``sendid`` keys the send for ``<cancel>``; it appears as ``_event.sendid``
        only when ``public_id`` (the author gave ``id`` or ``idlocation``). None
        when the author gave neither: a send gets an id of its own only where one
        is used (a delay, the outbox).
        """
        # The usual send: to another processor, now, dispatched. Checked in this
        # frame with the event built here, the general path's rules all pass.
        proc = self._remote.get(type_ or "")
        if proc is not None and not delay > 0:
            try:
                proc.send(
                    self,
                    Event(name, data, sendid=sendid if public_id else None, origin=self._origin, origintype=SCXML_TYPE),
                    target or "",
                )
            except Exception as exc:
                self._send_failed(exc, sendid, public_id)
            return
        type_ = type_ or SCXML_TYPE
        local = type_ in scxml_processor.ALIASES
        proc = None if local else self._ioprocessors.get(type_)
        if not local and proc is None and self._sends != "record":
            raise ExecutionError(f"unsupported event I/O processor type {type_!r}")
        # Other processors may name the event themselves (BasicHTTP: HTTP.POST).
        if name is None and local:
            raise ExecutionError("<send> has no event name")
        if local and target and not target.startswith("#_"):
            raise ExecutionError(f"the SCXML event processor does not support target {target!r}")
        if sendid is None and (delay > 0 or self._sends != "dispatch"):
            sendid = self.new_send_id()
        event = Event(name, data, sendid=sendid if public_id else None, origin=self._origin, origintype=SCXML_TYPE)
        if delay > 0:

            def fire() -> None:
                self._dispatch(proc, event, target, type_, delay, sendid, public_id)
                self._process_external()

            self._schedule(sendid, delay, fire)
        else:
            self._dispatch(proc, event, target, type_, delay, sendid, public_id)

    def _dispatch(
        self,
        proc: EventIOProcessor | None,
        event: Event,
        target: str | None,
        type_: str,
        delay: float,
        sendid: str | None,
        public_id: bool,
    ) -> None:
        # proc is None: the SCXML processor, or a send only recorded.
        try:
            if proc is None and type_ in scxml_processor.ALIASES:
                scxml_processor.deliver(self, event, target)
                return
            if self._sends != "dispatch":
                assert sendid is not None  # send_event gives every send it does not dispatch an id
                self.outbox.append(
                    Sent(
                        event.name,
                        target,
                        type_,
                        event.data,
                        delay,
                        sendid,
                        self.invoke_id if self.parent is not None else None,
                        self.clock.now(),
                    )
                )
                if self._sends == "record" or proc is None:
                    return
            # send_event refuses a type with no processor unless sends are only recorded.
            assert proc is not None
            proc.send(self, event, target or "")
        except Exception as exc:
            self._send_failed(exc, sendid, public_id)

    def _send_failed(self, exc: Exception, sendid: str | None, public_id: bool) -> None:
        if isinstance(exc, ExecutionError):
            if public_id:
                exc.sendid = sendid
            self.raise_error("error.execution", exc)
            return
        # Whatever a processor fails with, the event was not dispatched (spec 6.2.4).
        error = exc if isinstance(exc, CommunicationError) else CommunicationError(f"{type(exc).__name__}: {exc}")
        if public_id:
            error.sendid = sendid
        self.raise_error("error.communication", error)

    def cancel_send(self, sendid: str | None) -> None:
        """``<cancel>``: drop the delayed send ``sendid`` if it has not left yet."""
        if sendid is not None:
            self._unschedule(sendid)

    # ------------------------------------------------------------ for tests

    def _init_harness(self, on_transition: Callable[[str], None] | None, strict: bool, sends: str) -> None:
        parent = self.parent
        if parent is None:
            if sends not in SEND_MODES:
                raise ValueError(f"sends must be one of {', '.join(SEND_MODES)}, not {sends!r}")
            # None rather than self: a session must not keep itself alive (its JS context
            # is freed by reference counting when the last reference goes).
            self._invoker_root: weakref.ref[Session] | None = None
            self.strict = strict
            self._sends = sends
            #: Every ``<send>`` that left the session tree, in order (:class:`~orsguard.records.Sent`).
            self.outbox: list[Sent] = []
            #: The ``error.*`` events the platform raised in the session tree (the first ``MAX_ERRORS``).
            self.errors: list[ErrorRecord] = []
            self._errors_dropped = 0
            self._expected: list[ExpectedError] = []
            self._checked = 0
            self._on_transition = on_transition
            # Coverage.add, once coverage counts this session tree.
            self._coverage_sink: Callable[[Session], None] | None = None
        else:
            root = parent._root
            self._invoker_root = weakref.ref(root)
            self.strict = root.strict
            self._sends = root._sends
            self.outbox = root.outbox
            self.errors = root.errors
            self._on_transition = root._on_transition
            self.coverage = parent.coverage
            self._coverage_sink = root._coverage_sink
            if self._coverage_sink is not None:
                self._coverage_sink(self)
        self._source_lines: list[str] | None = None
        hook = self._on_transition
        if hook is None:
            self._tracer = None
            return
        labels = self._machine.labels
        invokeid = self.invoke_id if parent is not None else None

        def trace(t: int, event: Event | None) -> None:
            hook(TransitionTaken(labels[t], t, event.name if event is not None else None, invokeid))

        self._tracer = _shielded(trace, "on_transition")

    def collect_coverage(self, sink: Callable[[Session], None]) -> None:
        """Count the transitions this session takes and hand ``sink`` each session it invokes (before start).

        How :class:`~orsguard.coverage.Coverage` follows a session tree; sets :attr:`coverage`.
        """
        self.coverage = True
        self._coverage_sink = sink

    @property
    def _root(self) -> Session:
        """The session at the top of this one's invocation tree (itself when not invoked)."""
        root = self._invoker_root() if self._invoker_root is not None else None
        return root if root is not None else self

    @property
    def parent(self) -> Session | None:
        """The session that invoked this one (None for a session started by the API, or once it is gone)."""
        return self._parent() if self._parent is not None else None

    @property
    def data(self) -> DataView:
        """The document's ``<data>`` variables, read live as Python values (read-only)."""
        return DataView(list(self._readers), self._read_data)

    def _data_readers(self) -> list[Expression]:
        # One value expression per data id, appended to the document's table so that
        # the datamodel reads variables through its ordinary protocol.
        base = len(self.document.expressions.items)
        names = list(dict.fromkeys(self.document.data_ids))
        self._readers = {name: base + i for i, name in enumerate(names)}
        return [Expression("value", name, None, None, ()) for name in names]

    def _read_data(self, name: str) -> Any:
        return self.dm.value(self._readers[name])

    def expect_error(self, event: str = "error.execution", *, match: str | None = None) -> Session:
        """Announce that error events named ``event`` (a descriptor: ``error`` covers all) will be raised.

        ``match`` is a regular expression the reason must contain. :meth:`check`
        fails when no such event was raised.
        """
        self._root._expected.append(ExpectedError(event, match))
        return self

    def check(self, *, expectations: bool = True) -> None:
        """Raise :class:`~orsguard.records.StrictError` for unexpected error events (strict sessions)
        and, with ``expectations``, for expected ones that never came. Each error is reported once."""
        root = self._root
        fresh = root.errors[root._checked :]
        root._checked = len(root.errors)
        problems = []
        if root.strict:
            problems += [f"unexpected {r}" for r in fresh if not any(e.matches(r) for e in root._expected)]
            if root._errors_dropped:
                problems.append(f"... and {root._errors_dropped} more error events")
                root._errors_dropped = 0
        for e in root._expected if expectations else ():
            if not any(e.matches(r) for r in root.errors):
                problems.append(
                    f"expected {e} in {self.document.path or 'the SCXML text'}, but no such error event was raised"
                )
        if problems:
            raise StrictError("\n".join(problems))

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
        if exc[0] is None:
            self.check()

    def _error_data(self, name: str, exc: BaseException | None, t: int, k: int) -> dict[str, Any]:
        record = self._error_record(name, exc, t, k)
        self._note_error(record)
        return record.as_data()

    def _error_record(self, name: str, exc: BaseException | None, t: int, k: int) -> ErrorRecord:
        invokeid = self.invoke_id if self.parent is not None else None
        if isinstance(exc, DocumentError):  # a document to invoke did not load: its own location
            return ErrorRecord(name, exc.message, exc.element, exc.line, exc.column, exc.file, None, invokeid)
        reason = str(exc) if exc is not None else name
        tagname = getattr(exc, "tagname", None)
        line = getattr(exc, "line", None)
        transition = None
        if tagname is None and k >= 0:
            tagname = "transition"
            line = self.document.expressions.items[k].line
            transition = self._machine.labels[t] if t >= 0 else None
        elif tagname is None:
            inv = _invoke_of(exc)
            if inv is not None:
                tagname, line = "invoke", inv.element_line
        if self._source_lines is None:
            self._source_lines = self._source_text()
        line, column = element_column(self._source_lines, line, tagname)
        return ErrorRecord(name, reason, tagname, line, column, self.document.path, transition, invokeid)

    def _source_text(self) -> list[str] | None:
        # Inline <invoke> content has no source of its own: its lines are its invoker's.
        session: Session | None = self
        while session is not None:
            doc = session.document
            if doc.source is not None and doc.path == self.document.path:
                return doc.source.decode("utf-8", "replace").splitlines()
            session = session.parent
        return None

    def _note_error(self, record: ErrorRecord) -> None:
        root = self._root
        if len(root.errors) < MAX_ERRORS:
            root.errors.append(record)
        else:
            root._errors_dropped += 1

    # ------------------------------------------------------------ invocations

    def child(self, invoke_id: str) -> Session | None:
        """The session this one invoked as ``invoke_id``, until the invoking state exits; else None."""
        entry = self._children.get(invoke_id)
        return entry[0] if entry is not None else None

    def _invoke_start(self, s: int) -> None:
        for inv in self._machine.invokes[s]:
            try:
                self._start_one(inv)
            except Exception as exc:
                # Evaluating the invoke or loading its document failed: spec 6.4.1, error.execution.
                execution_failed(self, exc)

    def _start_one(self, inv: Invoke) -> None:
        dm = self.dm
        type_ = inv.type if inv.typeexpr < 0 else dm.value(inv.typeexpr)
        if type_ is not None and type_ not in INVOKE_SCXML_TYPES:
            raise ExecutionError(f"unsupported invoke type {type_!r}")
        if inv.id is not None:
            invoke_id = inv.id
        else:
            invoke_id = f"{inv.state_id}.{uuid.uuid4().hex[:12]}"
            if inv.idlocation >= 0:
                dm.set_location(inv.idlocation, invoke_id)
        data = inv.data(self)
        if data is not None:
            try:
                check_portable(data)
            except ValueError as exc:
                raise ExecutionError(f"invoke data: {exc}") from None
        if inv.inline is not None:
            doc = inv.inline
        elif inv.content is not None:
            text = inv.content(self)
            if not isinstance(text, str):
                raise ExecutionError("invoke <content> must evaluate to an SCXML document")
            # Always text, never a path: an expression must not pick a file to read.
            doc = load_string(text, base=inv.base_dir, roots=inv.roots, check_expressions=False)
        else:
            src = inv.src if inv.srcexpr < 0 else dm.value(inv.srcexpr)
            if not src:
                raise ExecutionError("<invoke> needs 'src', 'srcexpr' or <content>")
            if not isinstance(src, str):
                raise ExecutionError(f"<invoke> 'srcexpr' must give a string, not {type(src).__name__}")
            try:
                path = resolve_src(src, inv.base_dir, inv.roots)
            except ValueError as exc:
                raise ExecutionError(f"<invoke> src: {exc}") from None
            doc = load_file(path, roots=inv.roots, check_expressions=False)
        limits = self._child_limits if self._child_limits is not None else self.limits
        child = Session(
            doc,
            limits=limits,
            clock=self.clock,
            stats=self.stats,
            child_limits=self._child_limits,
            ioprocessors=set(self._ioprocessors.values()),
            data=data if isinstance(data, dict) else None,
            on_log=self.on_log,
            parent=self,
            invoke_id=invoke_id,
        )
        self._children[invoke_id] = (child, inv)
        self._cancelled.discard(invoke_id)
        child._boot()

    def _invoke_exit(self, s: int) -> None:
        state_id = self._machine.ids[s]
        for invoke_id, (child, inv) in list(self._children.items()):
            if inv.state_id == state_id:
                del self._children[invoke_id]
                if child.running:
                    self._cancelled.add(invoke_id)
                    child.cancel()

    def _external_preprocess(self, event: Event) -> bool:
        """Finalize and autoforward (spec 6.4); False drops an event from a cancelled invocation."""
        if event.invokeid is not None:
            if event.invokeid in self._cancelled:
                return False
            entry = self._children.get(event.invokeid)
            if entry is not None and entry[1].finalize is not None:
                self._run_finalize(entry[1].finalize)
        for child, inv in list(self._children.values()):
            if inv.autoforward and child.running:
                try:
                    check_portable(event.data)
                except ValueError as exc:
                    self.raise_error(
                        "error.communication",
                        CommunicationError(f"cannot forward {event.name!r} to {child.invoke_id!r}: {exc}"),
                    )
                    continue
                copy = Event(
                    event.name,
                    event.data,
                    type="external",
                    sendid=event.sendid,
                    origin=event.origin,
                    origintype=event.origintype,
                    invokeid=event.invokeid,
                )
                child.post(copy)
        return True

    def _run_finalize(self, block: Callable[[ExecutionContext], None]) -> None:
        try:
            block(self)
        except Exception as exc:
            execution_failed(self, exc)

    def _child_ended(self, child: Session) -> None:
        # The record stays until the invoking state exits, so that <finalize>
        # still applies to events the child sent before it ended.
        entry = self._children.get(child.invoke_id or "")
        if entry is None or entry[0] is not child or not self.running:
            return  # cancelled by us: its events are no longer wanted
        if child.end_reason == "final":
            data = child.final_data
            try:
                check_portable(data)
            except ValueError as exc:
                self.raise_error("error.communication", CommunicationError(f"done.invoke data: {exc}"))
                data = None
            event = Event(f"done.invoke.{child.invoke_id}", data, type="external", invokeid=child.invoke_id)
        elif child.end_reason == "limit":
            assert child.termination is not None  # the core sets it before it ends a session on a limit
            event = Event(LIMIT_EVENT, child.termination.as_dict(), type="platform", invokeid=child.invoke_id)
            self._note_error(
                ErrorRecord(
                    LIMIT_EVENT,
                    str(child.termination),
                    "invoke",
                    entry[1].element_line,
                    file=self.document.path,
                    invokeid=child.invoke_id,
                )
            )
        else:
            return
        self.post(event)

    # ------------------------------------------------------------ ending

    def _on_stopped(self) -> None:
        for child, _ in list(self._children.values()):
            child.cancel()
        self._children.clear()
        if self.parent is not None:
            self.parent._child_ended(self)
        scxml_processor.registry.pop(self.session_id, None)
        if self.on_end is not None:
            _shielded(self.on_end, "on_end")(self)

    def __repr__(self) -> str:
        if self.running:
            state = "running"
        elif self.final:
            state = f"final {self.final!r}"
        else:
            state = str(self.termination or self.end_reason or "new")
        return f"<Session {self.session_id} {state}>"


def _invoke_of(exc: BaseException | None) -> Invoke | None:
    """The ``<invoke>`` whose start raised ``exc``, read from its traceback (errors only, so the
    start path carries no bookkeeping)."""
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        if tb.tb_frame.f_code is Session._start_one.__code__:
            inv = tb.tb_frame.f_locals.get("inv")
            return inv if isinstance(inv, Invoke) else None
        tb = tb.tb_next
    return None


def _shielded(hook: Callable[..., object], name: str) -> Callable[..., None]:
    """A host's hook that cannot break the step loop: its exceptions are logged."""

    def call(*args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            log.exception("the %s hook failed", name)

    return call
