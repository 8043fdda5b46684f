"""The ``ecmascript`` datamodel on orsguard's own QuickJS binding (:mod:`._quickjs`).

One JavaScript context per session, on the runtime its thread shares with the
thread's other sessions. Each expression is compiled into a JavaScript
function the first time the session evaluates it and called directly after
that. Every call runs under the runtime's deadline, which the core sets once
per macrostep from ``process-event-timeout``: nothing is armed per call.

No expression text is pasted into code that runs before it was checked: an
expression must compile (compile only, nothing runs) both as ``(T)`` and as
``[T]``, which proves it is one balanced expression that cannot close the
function it is then wrapped in. Locations must also compile as the target of
an assignment. :meth:`EcmaScriptDatamodel.check` does this at load time, and
the datamodel again before compiling when a document was loaded with
``check_expressions=False``.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lxml import etree

from orsguard._core import ScriptInterrupted
from orsguard.datamodels import _quickjs as qjs
from orsguard.datamodels.base import Datamodel, Expression, expression_text
from orsguard.errors import ExecutionError

if TYPE_CHECKING:
    from orsguard._core import Event
    from orsguard.runtime import DatamodelHost

_PRELUDE = r"""
(function (g) {
  function readonly(name, get) {
    Object.defineProperty(g, name, {
      get: get,
      set: function () { throw new TypeError(name + " is a read-only system variable"); },
      enumerable: true, configurable: false
    });
  }
  var sys = {};
  readonly("_event", g.__og_event);
  delete g.__og_event;
  readonly("_sessionid", function () { return sys.sessionid; });
  readonly("_name", function () { return sys.name; });
  readonly("_ioprocessors", function () { return sys.ioprocessors; });
  g.__og_system = function (sessionid, name, ioprocessors) {
    sys.sessionid = sessionid;
    sys.name = name;
    sys.ioprocessors = ioprocessors;
  };
  g.__og_fe = [];
  function Text(t) { this.nodeType = 3; this.nodeValue = t; this.textContent = t; }
  function Element(n) {
    this.nodeType = 1; this.tagName = this.nodeName = this.localName = n[0];
    this.attributes = n[1];
    this.childNodes = n[2].map(function (c) { return typeof c === "string" ? new Text(c) : new Element(c); });
  }
  Element.prototype.getAttribute = function (a) {
    return Object.prototype.hasOwnProperty.call(this.attributes, a) ? this.attributes[a] : null;
  };
  Element.prototype.hasAttribute = function (a) {
    return Object.prototype.hasOwnProperty.call(this.attributes, a);
  };
  Element.prototype.getElementsByTagName = function (t) {
    var out = [];
    (function walk(e) {
      e.childNodes.forEach(function (c) {
        if (c.nodeType === 1) { if (t === "*" || c.tagName === t) out.push(c); walk(c); }
      });
    })(this);
    return out;
  };
  Object.defineProperty(Element.prototype, "textContent", {
    get: function () { return this.childNodes.map(function (c) { return c.textContent; }).join(""); }
  });
  function Doc(root) { this.nodeType = 9; this.documentElement = root; this.childNodes = [root]; }
  Doc.prototype.getElementsByTagName = function (t) {
    var r = this.documentElement;
    return ((t === "*" || r.tagName === t) ? [r] : []).concat(r.getElementsByTagName(t));
  };
  g.__og_dom = function (tree, xml) {
    var d = new Doc(new Element(tree));
    Object.defineProperty(d, "__og_xml", {value: xml, enumerable: false});
    return d;
  };
})(globalThis);
"""


_KINDS = {
    "cond": "condition",
    "value": "expression",
    "assign": "assignment",
    "setter": "location",
    "script": "script",
    "foreach": "foreach array",
    "data": "data id",
}


@lru_cache(maxsize=8192)
def _check(kind: str, text: str, location: str | None, extra: tuple[str, ...]) -> str | None:
    return qjs.check(kind, text, location, extra)


def _why(kind: str, text: str, location: str | None, extra: tuple[str, ...]) -> str | None:
    """What the engine's compile-only check says against one expression, or None."""
    if kind not in ("script", "data"):
        text = expression_text(text)
    return _check(kind, text, location, tuple(extra))


def _source(e: Expression) -> tuple[int, str, str | None]:
    """``(binding kind, source, foreach step source)`` of a checked expression."""
    text = expression_text(e.text)
    kind = e.kind
    if kind == "cond":
        return qjs.KIND_COND, f"(function () {{ return !!({text}\n); }})", None
    if kind == "value":
        return qjs.KIND_VALUE, f"(function () {{ return ({text}\n); }})", None
    if kind == "assign":
        # Strict mode: assigning to an undeclared name is a ReferenceError, as the
        # spec wants for a location that does not exist.
        return qjs.KIND_CALL, f'(function () {{ "use strict"; ({e.location}\n) = ({text}\n); }})', None
    if kind == "setter":
        return qjs.KIND_CALL, f'(function (__og_v) {{ "use strict"; ({e.location}\n) = __og_v; }})', None
    if kind == "script":
        return qjs.KIND_SCRIPT, e.text, None
    if kind == "foreach":
        item, index = e.extra
        # Generated names start with __og_ so they never hide the document's variables.
        # Sloppy mode: an item that is not declared yet becomes a global (spec 4.6).
        src = (
            f"(function () {{ var __og_a = ({text}\n);"
            " if (!Array.isArray(__og_a)) throw new TypeError('foreach array is not an array');"
            " __og_fe.push(__og_a.slice()); return __og_a.length; })"
        )
        step = f"({item}\n) = __og_fe[__og_fe.length - 1][__og_i];"
        if index:
            step += f" ({index}\n) = __og_i;"
        return qjs.KIND_CALL, src, f"(function (__og_i) {{ {step} }})"
    raise ExecutionError(f"cannot compile a {kind} expression")


def _xml_tree(xml: str) -> list[Any]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError:
        # Several top-level elements: wrap them so they still form one document.
        root = etree.fromstring(f"<content>{xml}</content>", parser)
    return _tree(root)


# A value expression that is one plain identifier reads the global variable of that
# name without a call (Context.mark_global_name); words that are not variables there
# (keywords, literals, `arguments` inside the expression's function) keep the call.
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NOT_NAMES = frozenset(
    "arguments await break case catch class const continue debugger default delete do else enum eval export"
    " extends false finally for function if implements import in instanceof interface let new null package"
    " private protected public return static super switch this throw true try typeof var void while with"
    " yield undefined NaN Infinity".split()
)


@lru_cache(maxsize=8192)
def _direct_read(text: str) -> str | None:
    """What a value expression reads without a call: ``_event.data``, one global name, or None.

    Decided once per expression text, not again for every session of a document.
    """
    text = expression_text(text)
    if text == "_event.data" or (_NAME.fullmatch(text) and text not in _NOT_NAMES):
        return text
    return None


class EcmaScriptDatamodel(Datamodel):
    """ECMAScript expressions and ``<script>`` evaluated by QuickJS."""

    name = "ecmascript"

    def __init__(self, session: DatamodelHost, expressions: list[Expression]) -> None:
        super().__init__(session, expressions)
        ref = weakref.ref(session)

        def in_state(state_id: str) -> bool:
            s = ref()
            return bool(s is not None and s.is_active(state_id))

        n = len(expressions)
        # Slots 0..n-1 hold the expressions, n..2n-1 the foreach step functions.
        # The context must not refer back to this object: no cycle, so the context
        # is freed as soon as the session lets go of its datamodel.
        compile_ref = weakref.WeakMethod(self._compile)

        def compiler(k: int) -> None:
            method = compile_ref()
            if method is None:
                raise ExecutionError("the ECMAScript datamodel is gone")
            method(k)

        self._ctx = ctx = qjs.Context(2 * n, _PRELUDE, in_state, _xml_tree, compiler)
        failed_ref = weakref.WeakMethod(self._bind_failed)

        def bind_failed(event: Event, exc: BaseException) -> None:
            method = failed_ref()
            if method is not None:
                method(event, exc)

        ctx.bind_failed = bind_failed
        self._n = n
        self.reads_event = any(_mentions_event(e) for e in expressions)
        for k, e in enumerate(expressions):
            if e.kind == "value":
                read = _direct_read(e.text)
                if read == "_event.data":
                    ctx.mark_event_data(k)
                elif read is not None:
                    ctx.mark_global_name(k, read)
        # The step loop calls these straight into the binding, with no Python frame in between:
        # each replaces the Datamodel method of the same signature on this instance, the one
        # pattern mypy's method-assign check exists to flag.
        self.bind_event = ctx.bind  # type: ignore[method-assign]
        self.cond = ctx.cond  # type: ignore[method-assign]
        self.value = ctx.value  # type: ignore[method-assign]
        self.values = ctx.values  # type: ignore[method-assign]
        self.assign = ctx.call  # type: ignore[method-assign]
        self.set_location = ctx.call_with  # type: ignore[method-assign]
        self.script = ctx.run  # type: ignore[method-assign]
        self.terminate = ctx.terminate  # type: ignore[method-assign]
        self._address = ctx.runtime.deadline_address()

    @classmethod
    def check(
        cls, kind: str, text: str, location: str | None = None, extra: tuple[str, ...] = (), *, defer: bool = False
    ) -> str | None:
        # A <data> id is declared when the session starts, before any expression
        # runs: a bad one is refused at load time even when expressions wait.
        if defer and kind != "data":
            return None
        why = _why(kind, text, location, extra)
        if why is None:
            return None
        if kind == "data":
            return f"data id {text!r} {why}"
        what = {"setter": "location", "assign": "assignment", "foreach": "foreach"}.get(kind, kind + " expression")
        shown = location if kind == "setter" else text
        return f"invalid ECMAScript {what} {shown!r}: {why}"

    # The binding's own function: Session.send calls it for every event.
    validate = staticmethod(qjs.validate)

    def deadline_address(self) -> int:
        return self._address

    def close(self) -> None:
        self._ctx.close()

    # -------------------------------------------------------------- setup

    def setup(self, system: dict[str, Any], data_ids: list[str]) -> None:
        self._ctx.call_global("__og_system", (system["sessionid"], system.get("name"), system["ioprocessors"]))
        for data_id in dict.fromkeys(data_ids):
            problem = self.check("data", data_id)
            if problem is not None:
                raise ExecutionError(problem)
            self._ctx.declare(data_id)

    def _bind_failed(self, event: Event, exc: BaseException) -> None:
        ctx = self._ctx
        if isinstance(exc, ScriptInterrupted):
            # The request was meant for a script: keep it for the next one.
            ctx.terminate()
            return
        # The event still becomes _event (without its data); the failure is
        # the document's business, not the caller's.
        try:
            ctx.bind_event(str(event.name), event.type, None, None, None, None, None, None)
        except (ExecutionError, ScriptInterrupted):
            pass
        session = self.session
        if session is not None:
            session.raise_error("error.execution", exc)

    # -------------------------------------------------------------- compiling

    def _compile(self, k: int) -> None:
        n = self._n
        e = self.expressions[k % n] if n else None
        if e is None:
            raise ExecutionError(f"no expression {k}")
        why = _why(e.kind, e.text, e.location, e.extra)
        if why is not None:
            raise ExecutionError(f"invalid ECMAScript {_KINDS.get(e.kind, e.kind)} {e.text or e.location!r}: {why}")
        kind, src, step = _source(e)
        self._ctx.compile(k % n, kind, src)
        if step is not None:
            self._ctx.compile(k % n + n, qjs.KIND_CALL, step)

    def foreach(self, k: int, body: Callable[[], None]) -> None:
        ctx = self._ctx
        if not ctx.compiled(k):
            self._compile(k)
        length = ctx.value(k)
        step = k + self._n
        try:
            for i in range(int(length)):
                ctx.call_int(step, i)
                body()
        finally:
            ctx.eval("void __og_fe.pop();")


def _tree(el: Any) -> list[Any]:
    """An lxml element as ``[tag, attributes, children]`` for the DOM prelude."""
    children: list[Any] = [el.text] if el.text else []
    for c in el:
        if isinstance(c.tag, str):
            children.append(_tree(c))
        if c.tail:
            children.append(c.tail)
    return [etree.QName(el).localname, dict(el.attrib), children]


def _mentions_event(e: Expression) -> bool:
    text = e.text + (e.location or "")
    return "_event" in text or "eval" in text or "Function" in text
