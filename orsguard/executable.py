"""Executable content (spec section 4) compiled into Python callables.

Each block becomes one callable ``block(session)``; each element in it a small
closure over the indices of its expressions in the document's expression table.
A callable raises ``ExecutionError`` (or a datamodel's error) to abandon the
rest of its block; the step loop turns that into ``error.execution``. The
session is seen only through :class:`~orsguard.runtime.ExecutionContext`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, NoReturn, overload

from lxml import etree

from orsguard.datamodels import Expressions
from orsguard.datamodels.base import XmlContent
from orsguard.errors import ExecutionError
from orsguard.runtime import ExecutionContext, execution_failed

SCXML_NS = "http://www.w3.org/2005/07/scxml"
_Q = "{" + SCXML_NS + "}"
_XML_DECLARATION = re.compile(r"^\s*<\?xml\s[^>]*\?>")

#: One compiled element or block of executable content.
Item = Callable[[ExecutionContext], None]
#: What an element's data evaluates to (``<send>``, ``<invoke>``, ``<donedata>``).
Payload = Callable[[ExecutionContext], Any]
#: An element's tag name and source line, for locating its run-time errors.
Where = tuple[str, int | None]
#: A payload's names, expression indices and element places, one each per value.
ParamTable = tuple[tuple[str, ...], tuple[int, ...], tuple[Where, ...]]

_DELAY = re.compile(r"^\s*(\d*\.?\d+)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_delay(value: Any) -> float:
    """A CSS2-style duration (``'1.5s'``, ``'200ms'``) or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # NaN would corrupt the timer heap's order; an infinite delay is a send that never happens.
        if not math.isfinite(value):
            raise ExecutionError(f"invalid delay {value!r} (expected a finite number of seconds)")
        if value < 0:
            raise ExecutionError(f"negative delay {value!r}")
        return float(value)
    m = _DELAY.match(str(value)) if value is not None else None
    if m is None:
        raise ExecutionError(f"invalid delay {value!r} (expected e.g. '2s' or '500ms')")
    return float(m.group(1)) * _UNITS[m.group(2)]


def local(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag[len(_Q) :] if tag.startswith(_Q) else tag


def sourceline(el: etree._Element) -> int | None:
    """The line ``el`` starts on in its document, or None when lxml does not know it."""
    # lxml-stubs declares ``sourceline = ...`` (so EllipsisType); lxml gives int or None.
    return el.sourceline  # type: ignore[return-value]


def content_value(el: etree._Element, *, parse_json: bool) -> Any:
    """The value of inline ``<content>``/``<data>`` children: XML, JSON, or whitespace-normalized text."""
    children = [c for c in el if isinstance(c.tag, str)]
    if children:
        return XmlContent("".join(etree.tostring(c, encoding="unicode", with_tail=False) for c in children))
    return text_value(el.text or "", parse_json=parse_json)


def text_value(text: str, *, parse_json: bool) -> Any:
    """Spec B.2.2: JSON becomes a value, XML a document, anything else a normalized string."""
    # The text is decoded already: an XML declaration (with its encoding) has done its job.
    stripped = _XML_DECLARATION.sub("", text, count=1).strip()
    if parse_json and stripped:
        try:
            return json.loads(stripped)
        except ValueError:
            pass
        if stripped.startswith("<"):
            try:
                etree.fromstring(stripped, etree.XMLParser(resolve_entities=False, no_network=True))
            except etree.XMLSyntaxError:
                pass
            else:
                return XmlContent(stripped)
    return " ".join(text.split())


def where(el: etree._Element) -> Where:
    """An element's tag name and source line, for locating its run-time errors."""
    return local(el), sourceline(el)


def locate(exc: BaseException, at: Where) -> None:
    """Mark ``exc`` as raised by the element ``at``; the innermost element (the first to mark it) wins.

    The session copies these into ``error.execution`` data (``tagname``, ``line``).
    """
    if getattr(exc, "tagname", None) is None:
        try:
            exc.tagname, exc.line = at  # type: ignore[attr-defined]
        except AttributeError:
            pass  # an exception type without a __dict__: left unlocated


def run_items(items: Sequence[Item]) -> Item:
    """One callable running ``items`` in order."""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        # The usual pair (an assignment and a send) without a loop.
        first, second = items

        def pair(session: ExecutionContext) -> None:
            first(session)
            second(session)

        return pair
    items = tuple(items)

    def block(session: ExecutionContext) -> None:
        for item in items:
            item(session)

    return block


_EXPR: Any = object()


def assignment(k: int, at: Where, value: Any = _EXPR) -> Item:
    """An item assigning to the location of expression ``k`` its own ``expr``, or ``value`` when given.

    ``<assign>`` and ``<data>`` share it; a failure is located at ``at``.
    """

    if value is _EXPR:

        def assign(session: ExecutionContext) -> None:
            try:
                session.dm.assign(k)
            except Exception as exc:
                locate(exc, at)
                raise

        return assign

    def assign_value(session: ExecutionContext) -> None:
        try:
            session.dm.set_location(k, value)
        except Exception as exc:
            locate(exc, at)
            raise

    return assign_value


class Compiler:
    """Turns executable-content elements into callables.

    ``fail(element, message)`` raises the document error; ``check(kind, text,
    element)`` validates an expression's syntax at load time where wanted;
    ``load_src(element, src)`` reads a ``src`` resource relative to the document.
    """

    def __init__(
        self,
        exprs: Expressions,
        fail: Callable[[etree._Element | None, str], NoReturn],
        check: Callable[..., None],
        load_src: Callable[[etree._Element, str], str],
        json_content: bool,
    ) -> None:
        self.exprs = exprs
        self.fail = fail
        self.check = check
        self.load_src = load_src
        self.json_content = json_content

    def expr(
        self, kind: str, text: str, el: etree._Element, *, location: str | None = None, extra: tuple[str, ...] = ()
    ) -> int:
        self.check(kind, text, el, location=location, extra=extra)
        return self.exprs.add(kind, text, line=sourceline(el), location=location, extra=extra)

    @overload
    def attr(self, el: etree._Element, name: str, required: Literal[True]) -> str: ...

    @overload
    def attr(self, el: etree._Element, name: str, required: bool = False) -> str | None: ...

    def attr(self, el: etree._Element, name: str, required: bool = False) -> str | None:
        value = el.get(name)
        if required and value is None:
            self.fail(el, f"missing required attribute '{name}'")
        return value

    def exclusive(self, el: etree._Element, *names: str) -> None:
        present = [n for n in names if el.get(n) is not None]
        if len(present) > 1:
            self.fail(el, "attributes " + " and ".join(f"'{n}'" for n in present) + " may not be used together")

    # ------------------------------------------------------------ blocks

    def block(self, parent: etree._Element | None) -> Item | None:
        """The children of ``parent`` (an onentry, onexit, transition, ...) as one callable."""
        if parent is None:
            return None
        compiled = [self.item(c) for c in parent if isinstance(c.tag, str)]
        items = [i for i in compiled if i is not None]
        return run_items(items) if items else None

    def item(self, el: etree._Element) -> Item | None:
        name = local(el)
        if not el.tag.startswith(_Q):
            return None  # foreign-namespace elements are extension points; ignore them
        method: Callable[[etree._Element], Item] | None = getattr(self, "_c_" + name, None)
        if method is None:
            self.fail(el, f"<{name}> is not executable content here")
        return method(el)

    # ------------------------------------------------------------ elements

    def _c_raise(self, el: etree._Element) -> Item:
        event = self.attr(el, "event", required=True)

        def raise_(session: ExecutionContext) -> None:
            session.raise_internal(event)

        return raise_

    def _c_log(self, el: etree._Element) -> Item:
        label = el.get("label")
        text = el.get("expr")
        # An empty expr (W3C test 307) logs the label alone.
        k = self.expr("value", text, el) if text is not None and text.strip() else -1

        at = where(el)

        def log(session: ExecutionContext) -> None:
            try:
                session.log(label, session.dm.value(k) if k >= 0 else None)
            except Exception as exc:
                locate(exc, at)
                raise

        return log

    def _c_assign(self, el: etree._Element) -> Item:
        location = self.attr(el, "location", required=True)
        self.exclusive(el, "expr")
        text = el.get("expr")
        if text is not None:
            if len(el) or (el.text or "").strip():
                self.fail(el, "'expr' and child content may not be used together")
            return assignment(self.expr("assign", text, el, location=location), where(el))
        value = content_value(el, parse_json=True)
        return assignment(self.expr("setter", "", el, location=location), where(el), value)

    def _c_script(self, el: etree._Element) -> Item:
        src = el.get("src")
        if src is not None:
            if (el.text or "").strip():
                self.fail(el, "'src' and inline script may not be used together")
            code = self.load_src(el, src)
        else:
            code = el.text or ""
        k = self.expr("script", code, el)
        at = where(el)

        def script(session: ExecutionContext) -> None:
            try:
                session.dm.script(k)
            except Exception as exc:
                locate(exc, at)
                raise

        return script

    def _c_if(self, el: etree._Element) -> Item:
        branches: list[tuple[int, list[Item]]] = [(self.expr("cond", self.attr(el, "cond", required=True), el), [])]
        places = [where(el)]
        for c in el:
            if not isinstance(c.tag, str):
                continue
            name = local(c)
            if name == "elseif":
                branches.append((self.expr("cond", self.attr(c, "cond", required=True), c), []))
                places.append(where(c))
            elif name == "else":
                branches.append((-1, []))
                places.append(where(c))
            else:
                item = self.item(c)
                if item is not None:
                    branches[-1][1].append(item)
        compiled = tuple(
            (k, run_items(items) if items else None, at) for (k, items), at in zip(branches, places, strict=True)
        )

        def if_(session: ExecutionContext) -> None:
            dm = session.dm
            for k, body, at in compiled:
                if k >= 0:
                    try:
                        ok = dm.cond(k)
                    except Exception as exc:
                        # Spec 5.9.1: a condition that cannot be evaluated is false.
                        locate(exc, at)
                        execution_failed(session, exc)
                        ok = False
                    if not ok:
                        continue
                if body is not None:
                    body(session)
                return

        return if_

    def _c_foreach(self, el: etree._Element) -> Item:
        array = self.attr(el, "array", required=True)
        item = self.attr(el, "item", required=True)
        index = el.get("index") or ""
        k = self.expr("foreach", array, el, extra=(item, index))
        body = self.block(el)
        at = where(el)

        def foreach(session: ExecutionContext) -> None:
            try:
                session.dm.foreach(k, _nothing if body is None else lambda: body(session))
            except Exception as exc:
                locate(exc, at)
                raise

        return foreach

    def _c_send(self, el: etree._Element) -> Item:
        self.exclusive(el, "event", "eventexpr")
        self.exclusive(el, "target", "targetexpr")
        self.exclusive(el, "type", "typeexpr")
        self.exclusive(el, "id", "idlocation")
        self.exclusive(el, "delay", "delayexpr")
        event, target, type_ = el.get("event"), el.get("target"), el.get("type")
        sendid = el.get("id")
        ek = self.optional_value(el, "eventexpr")
        tk = self.optional_value(el, "targetexpr")
        yk = self.optional_value(el, "typeexpr")
        dk = self.optional_value(el, "delayexpr")
        idk = self.expr("setter", "", el, location=el.get("idlocation")) if el.get("idlocation") else -1
        delay = el.get("delay")
        if delay is not None:
            try:
                delay_s: float | None = parse_delay(delay)
            except ExecutionError as exc:
                self.fail(el, str(exc))
        else:
            delay_s = None
        data, table = self.payload_table(el, allow_namelist=True)
        if (el.get("namelist") or self.params_of(el)) and self.content_of(el) is not None:
            self.fail(el, "<content> may not be used with 'namelist' or <param>")

        # _event.sendid carries an id the author asked for (id or idlocation); other sends
        # still get one internally, so that a delayed send can be cancelled or replaced.
        public_id = sendid is not None or idk >= 0
        at = where(el)
        if ek < 0 and tk < 0 and yk < 0 and dk < 0 and idk < 0:
            return _fixed_send(event, target, type_, sendid, delay_s or 0.0, data, table, at)

        def send(session: ExecutionContext) -> None:
            dm = session.dm
            sid = sendid
            if idk >= 0:
                sid = session.new_send_id()
                dm.set_location(idk, sid)
            try:
                name = event if ek < 0 else _as_str(dm.value(ek))
                tgt = target if tk < 0 else _as_str(dm.value(tk))
                typ = type_ if yk < 0 else _as_str(dm.value(yk))
                d = delay_s if dk < 0 else parse_delay(dm.value(dk))
                payload = data(session)
                session.send_event(name, tgt, typ, sid, d or 0.0, payload, public_id=public_id)
            except ExecutionError as exc:
                if public_id:
                    exc.sendid = sid
                locate(exc, at)
                raise

        return send

    def _c_cancel(self, el: etree._Element) -> Item:
        self.exclusive(el, "sendid", "sendidexpr")
        sendid = el.get("sendid")
        k = self.optional_value(el, "sendidexpr")
        if sendid is None and k < 0:
            self.fail(el, "needs 'sendid' or 'sendidexpr'")

        at = where(el)

        def cancel(session: ExecutionContext) -> None:
            try:
                session.cancel_send(sendid if k < 0 else _as_str(session.dm.value(k)))
            except Exception as exc:
                locate(exc, at)
                raise

        return cancel

    # ------------------------------------------------------------ payloads

    def optional_value(self, el: etree._Element, name: str) -> int:
        """The index of the expression in attribute ``name`` of ``el``, or -1 when it has none."""
        text = el.get(name)
        return self.expr("value", text, el) if text is not None else -1

    def params_of(self, el: etree._Element) -> list[etree._Element]:
        """The ``<param>`` children of ``el``."""
        return [c for c in el if isinstance(c.tag, str) and local(c) == "param" and c.tag.startswith(_Q)]

    def content_of(self, el: etree._Element) -> etree._Element | None:
        """The ``<content>`` child of ``el`` (at most one), or None."""
        found = [c for c in el if isinstance(c.tag, str) and local(c) == "content" and c.tag.startswith(_Q)]
        if len(found) > 1:
            self.fail(found[1], "only one <content> is allowed")
        return found[0] if found else None

    def payload(self, el: etree._Element, *, allow_namelist: bool) -> Payload:
        """The event data an element (send, invoke, donedata) carries, as a callable."""
        return self.payload_table(el, allow_namelist=allow_namelist)[0]

    def payload_table(self, el: etree._Element, *, allow_namelist: bool) -> tuple[Payload, ParamTable | None]:
        """:meth:`payload`, and the names, expressions and places of its values when it is
        a plain object of ``namelist`` and ``<param>`` values (no name given twice), else None."""
        names: list[tuple[str, int, Where]] = []
        namelist = el.get("namelist") if allow_namelist else None
        for name in (namelist or "").split():
            names.append((name, self.expr("value", name, el, location=name), where(el)))
        for p in self.params_of(el):
            pname = self.attr(p, "name", required=True)
            self.exclusive(p, "expr", "location")
            source = p.get("expr") if p.get("expr") is not None else p.get("location")
            if source is None:
                self.fail(p, "needs 'expr' or 'location'")
            names.append((pname, self.expr("value", source, p, location=p.get("location")), where(p)))
        content = self.content_of(el)
        if content is not None:
            content_source = content.get("expr")
            if content_source is not None:
                if len(content) or (content.text or "").strip():
                    self.fail(content, "'expr' and child content may not be used together")
                ck = self.expr("value", content_source, content)
                at = where(content)

                def content_expr(session: ExecutionContext) -> Any:
                    try:
                        return session.dm.value(ck)
                    except Exception as exc:
                        locate(exc, at)
                        raise

                return content_expr, None
            value = content_value(content, parse_json=self.json_content)

            def content_inline(session: ExecutionContext) -> Any:
                return value

            return content_inline, None
        if not names:
            return _no_data, None
        pairs = tuple(names)
        counts: dict[str, int] = {}
        for n, _, _ in pairs:
            counts[n] = counts.get(n, 0) + 1
        repeated = frozenset(n for n, c in counts.items() if c > 1)

        keys = tuple(n for n, _, _ in pairs)
        ks = tuple(k for _, k, _ in pairs)
        places = tuple(at for _, _, at in pairs)

        def params(session: ExecutionContext) -> Any:
            try:
                values = session.dm.values(ks)
            except Exception as exc:
                index = getattr(exc, "index", None)
                if index is not None:
                    locate(exc, places[index])
                raise
            if not repeated:
                # values() gives one value per slot: strict's keyword would cost a
                # C argument parser per event for a check that cannot fail.
                return dict(zip(keys, values))  # noqa: B905
            data: dict[str, Any] = {}
            for n, value in zip(keys, values, strict=True):
                if n in repeated:
                    # A name given more than once keeps every value, in document order (W3C test 178).
                    data.setdefault(n, []).append(value)
                else:
                    data[n] = value
            return data

        return params, (None if repeated else (keys, ks, places))


def _fixed_send(
    event: str | None,
    target: str | None,
    type_: str | None,
    sendid: str | None,
    delay: float,
    data: Payload,
    table: ParamTable | None,
    at: Where,
) -> Item:
    """A ``<send>`` whose attributes are all literal, the usual one: nothing to evaluate
    but its data, and a plain object of values built in the same frame."""
    public_id = sendid is not None
    if table is None:

        def send(session: ExecutionContext) -> None:
            try:
                session.send_event(event, target, type_, sendid, delay, data(session), public_id=public_id)
            except ExecutionError as exc:
                if public_id:
                    exc.sendid = sendid
                locate(exc, at)
                raise

        return send

    keys, ks, places = table

    def send_values(session: ExecutionContext) -> None:
        try:
            try:
                values = session.dm.values(ks)
            except Exception as exc:
                index = getattr(exc, "index", None)
                if index is not None:
                    locate(exc, places[index])
                raise
            # values() gives one value per slot: strict's keyword would cost a
            # C argument parser per event for a check that cannot fail.
            payload = dict(zip(keys, values))  # noqa: B905
            session.send_event(event, target, type_, sendid, delay, payload, public_id=public_id)
        except ExecutionError as exc:
            if public_id:
                exc.sendid = sendid
            locate(exc, at)
            raise

    return send_values


def _nothing() -> None:
    return None


def _no_data(session: ExecutionContext) -> Any:
    return None


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
