"""The public :class:`Session`: one running SCXML state machine under ORS limits."""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orsguard._core import Event, Interpreter, Stats
from orsguard.clock import RealClock, VirtualClock
from orsguard.document import Document, Invoke, load
from orsguard.errors import CommunicationError, DocumentError, ExecutionError
from orsguard.ioprocessors import SCXML_TYPE, EventIOProcessor
from orsguard.ioprocessors import scxml as scxml_processor
from orsguard.limits import Limits

log = logging.getLogger("orsguard")

#: Type URIs that start an SCXML session with ``<invoke>``.
INVOKE_SCXML_TYPES = ("http://www.w3.org/TR/scxml/", "http://www.w3.org/TR/scxml", "scxml",
                      "http://www.w3.org/TR/scxml/#SCXMLEventProcessor")

#: Event a parent receives when a session it invoked is stopped by a limit.
LIMIT_EVENT = "error.limit"

_send_ids = itertools.count(1)


class Session(Interpreter):
    """One SCXML session.

    ``limits`` default to :class:`~orsguard.Limits` ``()``; ``clock`` to real
    time (pass a :class:`~orsguard.VirtualClock` in tests). ``data`` overrides
    top-level ``<data>`` values with the same ids, as an invoke's parameters do.
    ``on_end(session)`` is called once when the session stops running;
    ``on_transition(label)`` for every transition taken, initial ones included.
    Sessions it invokes run under ``child_limits``, by default its own limits;
    when a limit stops one, this session receives :data:`LIMIT_EVENT`.
    """

    def __init__(self, document: Document, *, limits: Limits | None = None, clock: Any = None,
                 session_id: str | None = None, ioprocessors: Iterable[EventIOProcessor] = (),
                 stats: Stats | None = None, on_end: Callable[[Session], None] | None = None,
                 data: Mapping[str, Any] | None = None, on_log: Callable[[str | None, Any], None] | None = None,
                 on_transition: Callable[[str], None] | None = None, child_limits: Limits | None = None,
                 parent: Session | None = None, invoke_id: str | None = None) -> None:
        if not isinstance(document, Document):
            raise TypeError(f"Session needs a Document from orsguard.load(), not {type(document).__name__}")
        self._core_init(document.machine, limits if limits is not None else Limits(),
                        clock if clock is not None else RealClock(), stats)
        self.document = document
        self.session_id = session_id or uuid.uuid4().hex
        self.parent = parent
        self.invoke_id = invoke_id
        self.on_end = on_end
        self.on_log = on_log
        if on_transition is not None:
            hook = _shielded(on_transition, "on_transition")
            labels = document.machine.labels
            self.tracer = lambda t, event: hook(labels[t])
        self.initial_data = dict(data) if data else {}
        if parent is None:
            # The API boundary; an invoking parent's values come from its own datamodel.
            for value in self.initial_data.values():
                document.datamodel_class.validate(value)
        self.child_limits = child_limits
        self.ioprocessors: dict[str, EventIOProcessor] = {}
        for proc in ioprocessors:
            for uri in (proc.type_uri, *proc.aliases):
                self.ioprocessors[uri] = proc
        self._children: dict[str, tuple[Session, Invoke]] = {}
        self._cancelled: set[str] = set()
        self.dm = document.datamodel_class(self, document.expressions.items)
        scxml_processor.registry[self.session_id] = self

    # ------------------------------------------------------------ public API

    def start(self) -> Session:
        """Run the initial macrostep (datamodel, global scripts, initial states)."""
        self._boot()
        self._flush()
        return self

    def _boot(self) -> None:
        system = {"sessionid": self.session_id, "name": self.document.name, "ioprocessors": self.io_locations()}
        try:
            self.dm.setup(system, self.document.data_ids)
        except ExecutionError as exc:
            raise DocumentError(str(exc), file=self.document.path) from None
        self.start_core()
        self.process_external()

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
        if not self.enqueue_external(Event(name, data, type="external")):
            return False
        self.process_external()
        self._flush()
        return True

    def advance(self, seconds: float) -> None:
        """Move the clock on and process the delayed events that become due."""
        clock = self.clock
        if isinstance(clock, VirtualClock):
            clock.advance(seconds)
        elif isinstance(clock, RealClock):
            clock.run_until(clock.now() + seconds)
        else:
            raise TypeError("advance() needs a VirtualClock or the default real clock")

    def run(self, max_time: float) -> Session:
        """Process until the session ends or nothing more can happen within ``max_time`` seconds.

        On a virtual clock time jumps from timer to timer; on the real clock it passes.
        """
        clock = self.clock
        if isinstance(clock, VirtualClock):
            deadline = clock.now() + max_time
            while self.running:
                due = clock.next_due()
                if due is None or due > deadline:
                    break
                clock.advance_to(due)
        elif isinstance(clock, RealClock):
            clock.run_until(clock.now() + max_time, stop=lambda: not self.running)
        else:
            raise TypeError("run() needs a VirtualClock or the default real clock")
        return self

    def cancel(self) -> None:
        """Stop the session from outside; no more content runs (end reason ``cancelled``)."""
        self._halt("cancelled")

    @property
    def final(self) -> str | None:
        """Id of the top-level ``<final>`` the session ended in, or None."""
        return self.final_state

    def _flush(self) -> None:
        # Run what became due meanwhile: cross-session deliveries posted for "now",
        # and on the real clock any timer that came due. Checked after every event,
        # so the common case is one comparison (the core already read the time).
        clock = self.clock
        cls = clock.__class__
        if cls is VirtualClock:
            if clock._due_now:
                clock.advance(0)
        elif cls is RealClock:
            if clock.earliest <= self.macro_end and clock.has_due(self.macro_end):
                clock.run_due()
        elif isinstance(clock, VirtualClock) and clock.has_due():
            clock.advance(0)
        elif isinstance(clock, RealClock) and clock.has_due():
            clock.run_due()

    # ------------------------------------------------------------ services for executable content

    def io_locations(self) -> dict[str, dict[str, str]]:
        here = {"location": scxml_processor.location(self)}
        out = {uri: dict(here) for uri in scxml_processor.ALIASES}
        for uri, proc in self.ioprocessors.items():
            out[uri] = {"location": proc.location(self)}
        return out

    def apply_initial_data(self) -> None:
        """Called after top-level data is initialized: invoke parameters override it."""
        setters = self.document.data_setters
        for name, value in self.initial_data.items():
            k = setters.get(name)
            if k is not None:
                self.dm.set_location(k, value)

    def raise_internal(self, name: str) -> None:
        self.enqueue_internal(Event(name, None, type="internal"))

    def log(self, label: str | None, value: Any) -> None:
        if self.on_log is not None:
            self.on_log(label, value)
        else:
            log.info("%s: %r", label or "log", value)

    def new_send_id(self) -> str:
        return f"{self.session_id}.send{next(_send_ids)}"

    def send_event(self, name: str | None, target: str | None, type_: str | None, sendid: str,
                   delay: float, data: Any, *, public_id: bool = False) -> None:
        """``<send>``: route through the SCXML processor or a registered one.

        ``sendid`` keys the send for ``<cancel>``; it appears as ``_event.sendid``
        only when ``public_id`` (the author gave ``id`` or ``idlocation``).
        """
        type_ = type_ or SCXML_TYPE
        if type_ in scxml_processor.ALIASES:
            proc = None
        else:
            proc = self.ioprocessors.get(type_)
            if proc is None:
                raise ExecutionError(f"unsupported event I/O processor type {type_!r}")
        # Other processors may name the event themselves (BasicHTTP: HTTP.POST).
        if name is None and proc is None:
            raise ExecutionError("<send> has no event name")
        if proc is None and target and not target.startswith("#_"):
            raise ExecutionError(f"the SCXML event processor does not support target {target!r}")
        event = Event(name, data, type="external", sendid=sendid if public_id else None,
                      origin=scxml_processor.location(self), origintype=SCXML_TYPE)

        def dispatch() -> None:
            try:
                if proc is None:
                    scxml_processor.deliver(self, event, target)
                else:
                    proc.send(self, event, target or "")
            except (CommunicationError, ExecutionError) as exc:
                if public_id:
                    exc.sendid = sendid
                kind = "error.communication" if isinstance(exc, CommunicationError) else "error.execution"
                self.raise_error(kind, exc)

        if delay > 0:
            def fire() -> None:
                dispatch()
                self.process_external()

            self.schedule(sendid, delay, fire)
        else:
            dispatch()

    def cancel_send(self, sendid: str | None) -> None:
        if sendid is not None:
            self.unschedule(sendid)

    # ------------------------------------------------------------ invocations

    def child(self, invoke_id: str) -> Session | None:
        entry = self._children.get(invoke_id)
        return entry[0] if entry is not None else None

    def _invoke_start(self, s: int) -> None:
        for inv in self.machine.invokes[s]:
            try:
                self._start_one(inv)
            except ExecutionError as exc:
                self.raise_error("error.execution", exc)
            except DocumentError as exc:
                self.raise_error("error.execution", exc)

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
        if inv.inline is not None:
            doc = inv.inline
        elif inv.content is not None:
            text = inv.content(self)
            if not isinstance(text, str):
                raise ExecutionError("invoke <content> must evaluate to an SCXML document")
            doc = load(text, check_expressions=False)
        else:
            src = inv.src if inv.srcexpr < 0 else dm.value(inv.srcexpr)
            if not src:
                raise ExecutionError("<invoke> needs 'src', 'srcexpr' or <content>")
            if str(src).startswith("file:"):
                src = str(src)[5:]
            base = self.document.path
            path = src if os.path.isabs(src) or base is None else os.path.join(os.path.dirname(base), src)
            doc = load(path, check_expressions=False)
        limits = self.child_limits if self.child_limits is not None else self.limits
        child = Session(doc, limits=limits, clock=self.clock, stats=self.stats, child_limits=self.child_limits,
                        ioprocessors=set(self.ioprocessors.values()), data=data if isinstance(data, dict) else None,
                        on_log=self.on_log, parent=self, invoke_id=invoke_id)
        self._children[invoke_id] = (child, inv)
        self._cancelled.discard(invoke_id)
        child._boot()

    def _invoke_exit(self, s: int) -> None:
        state_id = self.machine.ids[s]
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
                copy = Event(event.name, event.data, type="external", sendid=event.sendid,
                             origin=event.origin, origintype=event.origintype, invokeid=event.invokeid)
                scxml_processor.post(child, copy)
        return True

    def _run_finalize(self, block: Callable[[Any], None]) -> None:
        try:
            block(self)
        except ExecutionError as exc:
            self.raise_error("error.execution", exc)

    def _child_ended(self, child: Session) -> None:
        # The record stays until the invoking state exits, so that <finalize>
        # still applies to events the child sent before it ended.
        entry = self._children.get(child.invoke_id or "")
        if entry is None or entry[0] is not child or not self.running:
            return  # cancelled by us: its events are no longer wanted
        if child.end_reason == "final":
            event = Event(f"done.invoke.{child.invoke_id}", child.final_data, type="external",
                          invokeid=child.invoke_id)
        elif child.end_reason == "limit":
            event = Event(LIMIT_EVENT, child.termination.as_dict(), type="platform", invokeid=child.invoke_id)
        else:
            return
        scxml_processor.post(self, event)

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


def _shielded(hook: Callable[..., Any], name: str) -> Callable[..., None]:
    """A host's hook that cannot break the step loop: its exceptions are logged."""

    def call(*args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            log.exception("the %s hook failed", name)

    return call
