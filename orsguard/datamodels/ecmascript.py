"""The ``ecmascript`` datamodel on an embedded QuickJS engine (the quickjs-ng binding).

One QuickJS context per session. Each expression becomes a JavaScript function
the first time the session evaluates it and is called directly after that, so
an expression is parsed once per session, not once per evaluation.

Script time limit: the binding arms QuickJS's interrupt handler per call with a
CPU-time budget, and arming costs a CPU-clock read (several hundred ns) on every
call. Code with no loop statement and no call (``n < N``, ``n + 1``), in a
session that has defined no function it could call implicitly, finishes in
bounded time, so only the other calls are armed, with what is left of the
macrostep's ``process-event-timeout``. Once a session defines any function,
every call is armed. The step loop checks real elapsed time in any case.
"""

from __future__ import annotations

import json
import re
import weakref
from typing import Any

import quickjs
from lxml import etree

from orsguard._core import ScriptInterrupted
from orsguard.datamodels.base import Datamodel, Expression, XmlContent, expression_text
from orsguard.errors import ExecutionError

# Code that can run for long: a loop statement, any call (a built-in such as a
# RegExp test can take unbounded time too) or a tagged template. In() is ours
# and bounded, so it does not count.
_CAN_RUN_LONG = re.compile(r"\b(?:while|for|do)\b|[\w$)\]]\s*\(|`")
_IN_CALL = re.compile(r"\bIn\s*\(")


def _can_run_long(text: str) -> bool:
    return bool(_CAN_RUN_LONG.search(_IN_CALL.sub("(", text)))
# Anything through which later, loop-free looking code could call user code.
_DEFINES_CODE = re.compile(
    r"=>|\b(?:function|class|eval|Function|Proxy|Reflect|defineProperty|defineProperties|"
    r"__defineGetter__|__defineSetter__|get|set|valueOf|toString|toJSON|Symbol|constructor|prototype)\b"
)
_JS_ERRORS = (quickjs.JSException, quickjs.StackOverflow)
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")

_PRELUDE = r"""
(function (g) {
  var ev;
  function readonly(name, get) {
    Object.defineProperty(g, name, {
      get: get,
      set: function () { throw new TypeError(name + " is a read-only system variable"); },
      enumerable: true, configurable: false
    });
  }
  var sys = {};
  readonly("_event", function () { return ev; });
  readonly("_sessionid", function () { return sys.sessionid; });
  readonly("_name", function () { return sys.name; });
  readonly("_ioprocessors", function () { return sys.ioprocessors; });
  g.__og_system = function (sessionid, name, ioprocessors) {
    sys.sessionid = sessionid;
    sys.name = name;
    sys.ioprocessors = ioprocessors;
  };
  g.__og_bind = function (name, type, sendid, origin, origintype, invokeid, data, raw) {
    ev = {name: name, type: type,
          sendid: sendid === null ? undefined : sendid,
          origin: origin === null ? undefined : origin,
          origintype: origintype === null ? undefined : origintype,
          invokeid: invokeid === null ? undefined : invokeid,
          data: data === null ? undefined : data,
          raw: raw === null ? undefined : raw};
    Object.freeze(ev);
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
  g.__og_dom = function (json, xml) {
    var d = new Doc(new Element(JSON.parse(json)));
    Object.defineProperty(d, "__og_xml", {value: xml, enumerable: false});
    return d;
  };
  g.__og_xmlof = function (v) { return v instanceof Doc ? v.__og_xml : null; };
  g.In = function (id) { return __og_in(String(id)); };
})(globalThis);
"""


class EcmaScriptDatamodel(Datamodel):
    """ECMAScript expressions and ``<script>`` evaluated by QuickJS."""

    name = "ecmascript"

    def __init__(self, session: Any, expressions: list[Expression]) -> None:
        super().__init__(session, expressions)
        self.ctx = quickjs.Context()
        ref = weakref.ref(session)

        def in_state(state_id: str) -> bool:
            s = ref()
            return bool(s is not None and s.is_active(state_id))

        self.ctx.add_callable("__og_in", in_state)
        self.ctx.eval(_PRELUDE)
        self._bind = self.ctx.get("__og_bind")
        self._xmlof = self.ctx.get("__og_xmlof")
        self._raw: list[Any] = [None] * len(expressions)
        self._fns: list[Any] = [None] * len(expressions)
        self._guard: list[bool] = [False] * len(expressions)
        self._guard_all = False
        self._limit = 0.0
        self._foreach_steps: dict[int, Any] = {}
        self._uses_event = any(_mentions_event(e) for e in expressions)

    # -------------------------------------------------------------- setup

    def set_time_limit(self, seconds: float) -> None:
        if seconds != self._limit:
            self._limit = seconds
            self._rearm()

    def setup(self, system: dict[str, Any], data_ids: list[str]) -> None:
        self.ctx.get("__og_system")(system["sessionid"], system.get("name"), self._js(system["ioprocessors"]))
        for data_id in dict.fromkeys(data_ids):
            if not _IDENTIFIER.match(data_id):
                raise ExecutionError(f"data id {data_id!r} is not a valid ECMAScript variable name")
            self.ctx.eval(f"var {data_id};")

    # -------------------------------------------------------------- conversion

    def _js(self, value: Any) -> Any:
        if isinstance(value, XmlContent):
            return self._dom(value)
        if value is None or isinstance(value, (bool, int, float, str, quickjs.Object)):
            return value
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
        return self.ctx.parse_json(text)

    def _dom(self, xml: str) -> Any:
        try:
            root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError:
            # Several top-level elements: wrap them so they still form one document.
            root = etree.fromstring(f"<content>{xml}</content>",
                                    etree.XMLParser(resolve_entities=False, no_network=True))
        return self.ctx.get("__og_dom")(json.dumps(_tree(root)), xml)

    def _py(self, value: Any) -> Any:
        if isinstance(value, quickjs.Object):
            xml = self._xmlof(value)
            if xml is not None:
                return XmlContent(xml)
            text = value.json()
            if text is None:
                return value
            try:
                return json.loads(text)
            except (TypeError, ValueError):
                return value
        return value

    def bind_event(self, event: Any) -> None:
        if not self._uses_event:
            return
        self._bind(event.name, event.type, event.sendid, event.origin, event.origintype,
                   event.invokeid, self._js(event.data), event.raw)

    # -------------------------------------------------------------- calling

    def _compile(self, k: int) -> Any:
        e = self.expressions[k]
        e = e._replace(text=expression_text(e.text))
        if e.kind == "cond":
            src = f"(function () {{ return !!({e.text}\n); }})"
        elif e.kind == "value":
            src = f"(function () {{ return ({e.text}\n); }})"
        elif e.kind == "assign":
            # Strict mode: assigning to an undeclared name is a ReferenceError, as the
            # spec wants for a location that does not exist.
            src = f'(function () {{ "use strict"; {e.location} = ({e.text}\n); }})'
        elif e.kind == "setter":
            src = f'(function (__og_v) {{ "use strict"; {e.location} = __og_v; }})'
        elif e.kind == "foreach":
            item, index = e.extra
            # Generated names start with __og_ so they never hide the document's variables.
            src = (
                f"(function () {{ var __og_a = ({e.text}\n);"
                " if (!Array.isArray(__og_a)) throw new TypeError('foreach array is not an array');"
                " __og_fe.push(__og_a.slice()); return __og_a.length; })"
            )
            step = f"{item} = __og_fe[__og_fe.length - 1][__og_i];"
            if index:
                step += f" {index} = __og_i;"
            self._foreach_steps[k] = self._eval(f"(function (__og_i) {{ {step} }})")
        else:
            raise ExecutionError(f"cannot compile a {e.kind} expression")
        self._raw[k] = self._eval(src)
        text = e.text + (e.location or "")
        self._guard[k] = _can_run_long(text)
        if _DEFINES_CODE.search(text):
            self._set_guard_all()
        self._fns[k] = self._callable(k)
        return self._fns[k]

    def _callable(self, k: int) -> Any:
        """The raw JS function, or a wrapper that arms the time limit around it.

        Decided once per expression (and again when the limit or the session's
        functions change), so evaluation itself tests nothing.
        """
        raw = self._raw[k]
        if self._limit > 0 and (self._guard_all or self._guard[k]):
            guarded = self._guarded
            return lambda *args: guarded(raw, *args)
        return raw

    def _rearm(self) -> None:
        for k, raw in enumerate(self._raw):
            if raw is not None:
                self._fns[k] = self._callable(k)

    def _set_guard_all(self) -> None:
        if not self._guard_all:
            self._guard_all = True
            self._rearm()

    def _eval(self, src: str) -> Any:
        try:
            return self.ctx.eval(src)
        except quickjs.JSException as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> Exception:
        text = str(exc).strip()
        if "interrupted" in text.split("\n", 1)[0]:
            return ScriptInterrupted(text)
        return ExecutionError(text.split("\n", 1)[0])

    def _guarded(self, fn: Any, *args: Any) -> Any:
        remaining = self.session.remaining_time()
        if remaining is not None and remaining <= 0:
            raise ScriptInterrupted("process-event-timeout already spent")
        self.ctx.set_time_limit(remaining if remaining is not None else -1)
        try:
            return fn(*args)
        except (quickjs.JSException, quickjs.StackOverflow) as exc:
            raise self._error(exc) from None
        finally:
            self.ctx.set_time_limit(-1)

    # -------------------------------------------------------------- the protocol

    def cond(self, k: int) -> bool:
        fn = self._fns[k] or self._compile(k)
        try:
            return fn()
        except _JS_ERRORS as exc:
            raise self._error(exc) from None

    def value(self, k: int) -> Any:
        fn = self._fns[k] or self._compile(k)
        try:
            return self._py(fn())
        except _JS_ERRORS as exc:
            raise self._error(exc) from None

    def assign(self, k: int) -> None:
        fn = self._fns[k] or self._compile(k)
        try:
            fn()
        except _JS_ERRORS as exc:
            raise self._error(exc) from None

    def set_location(self, k: int, value: Any) -> None:
        fn = self._fns[k] or self._compile(k)
        try:
            fn(self._js(value))
        except _JS_ERRORS as exc:
            raise self._error(exc) from None

    def script(self, k: int) -> None:
        e = self.expressions[k]
        if _DEFINES_CODE.search(e.text):
            self._set_guard_all()
        if self._limit > 0 and (self._guard_all or _can_run_long(e.text)):
            self._guarded(self.ctx.eval, e.text)
            return
        self._eval(e.text)

    def foreach(self, k: int, body: Any) -> None:
        fn = self._fns[k] or self._compile(k)
        step = self._foreach_steps[k]
        if fn is not self._raw[k]:
            guarded = self._guarded
            raw_step = step

            def step(i: int) -> Any:
                return guarded(raw_step, i)
        try:
            length = fn()
        except _JS_ERRORS as exc:
            raise self._error(exc) from None
        try:
            for i in range(int(length)):
                try:
                    step(i)
                except _JS_ERRORS as exc:
                    raise self._error(exc) from None
                body(self.session)
        finally:
            self.ctx.eval("__og_fe.pop();")


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
