"""Loading SCXML: hardened lxml parsing, validation, and compilation into core tables.

States are numbered in document order with the ``<scxml>`` element as 0, so the
core's entry and exit orders are plain index orders. Every error names the
file, line and element and says what is wrong.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from lxml import etree

from orsguard._core import (
    KIND_ATOMIC,
    KIND_COMPOUND,
    KIND_FINAL,
    KIND_HISTORY_DEEP,
    KIND_HISTORY_SHALLOW,
    KIND_PARALLEL,
    KIND_ROOT,
    Halt,
    Machine,
)
from orsguard.datamodels import DATAMODELS, Datamodel, Expressions, datamodel_class
from orsguard.datamodels.null import parse_in, parse_literal
from orsguard.errors import DocumentError
from orsguard.executable import (
    _Q,
    SCXML_NS,
    Compiler,
    content_value,
    local,
    locate,
    sourceline,
    text_value,
    where,
)

_XML_ENCODING = re.compile(r"""^(\ufeff?\s*<\?xml\s[^>]*?\bencoding\s*=\s*)(["'])[^"']*\2""")
_STATE_TAGS = {"state", "parallel", "final", "history", "initial"}
_CHILDREN = {
    "scxml": {"state", "parallel", "final", "datamodel", "script"},
    "state": {"onentry", "onexit", "transition", "initial", "state", "parallel", "final", "history",
              "datamodel", "invoke"},
    "parallel": {"onentry", "onexit", "transition", "state", "parallel", "history", "datamodel", "invoke"},
    "final": {"onentry", "onexit", "donedata"},
    "history": {"transition"},
    "initial": {"transition"},
}


def _parser() -> etree.XMLParser:
    # No DTD loading, no entity expansion, no network: a document cannot read
    # local files through entities or blow up through nested entity definitions.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)


@dataclass
class Invoke:
    """A compiled ``<invoke>``; the session layer starts and cancels it."""

    element_line: int | None
    type: str | None
    typeexpr: int
    src: str | None
    srcexpr: int
    id: str | None
    idlocation: int
    autoforward: bool
    data: Callable[[Any], Any]
    content: Callable[[Any], Any] | None
    inline: Document | None
    finalize: Callable[[Any], None] | None
    state_id: str
    base_dir: str
    roots: tuple[str, ...]


@dataclass
class Document:
    """A loaded SCXML document: compile once, run many :class:`~orsguard.Session` s."""

    name: str | None
    datamodel: str
    binding: str
    machine: Machine
    expressions: Expressions
    data_ids: list[str]
    path: str | None
    send_types: set[str] = field(default_factory=set)
    data_setters: dict[str, int] = field(default_factory=dict)
    #: Directories its ``src`` and ``srcexpr`` may read from (empty: none).
    roots: tuple[str, ...] = ()
    #: The bytes it was loaded from (None for inline ``<invoke>`` content), for error columns.
    source: bytes | None = field(default=None, repr=False)

    @property
    def datamodel_class(self) -> type[Datamodel]:
        return datamodel_class(self.datamodel)

    @property
    def state_ids(self) -> list[str]:
        """Every state id in document order (generated ids start with ``_``)."""
        return list(self.machine.ids[1:])

    def __repr__(self) -> str:
        where = self.path or "<string>"
        return f"<Document {self.name or where} states={self.machine.n - 1} datamodel={self.datamodel}>"


#: Largest file load() reads, for a document and for every ``src`` it names.
MAX_FILE_BYTES = 8 << 20

def load(source: str | bytes | os.PathLike[str], *, check_expressions: bool = True,
         roots: Iterable[str | os.PathLike[str]] | None = None) -> Document:
    """Load an SCXML document from a path or from SCXML text.

    How ``source`` is read: an ``os.PathLike`` is a path and ``bytes`` are
    SCXML text. A ``str`` is SCXML text when it contains ``<``, a line break or
    a NUL character, and a path otherwise. :func:`load_file` and
    :func:`load_string` say which without guessing.

    ``check_expressions=False`` defers ill-formed expressions to run time, where
    they raise ``error.execution`` (spec 5.9.4 allows either; the W3C tests
    expect the run-time behaviour). By default they are rejected at load time.
    ``roots`` are the directories ``src`` attributes may read from (see
    :func:`load_file`). Every failure is a :class:`~orsguard.DocumentError`.
    """
    if isinstance(source, (bytes, bytearray)):
        return load_string(bytes(source), check_expressions=check_expressions, roots=roots)
    if isinstance(source, str) and _looks_like_text(source):
        return load_string(source, check_expressions=check_expressions, roots=roots)
    if not isinstance(source, (str, os.PathLike)):
        raise DocumentError(f"load() takes a path or SCXML text, not {type(source).__name__}")
    return load_file(source, check_expressions=check_expressions, roots=roots)


def load_file(path: str | os.PathLike[str], *, check_expressions: bool = True,
              roots: Iterable[str | os.PathLike[str]] | None = None) -> Document:
    """Load the SCXML document in the file ``path``.

    ``src`` attributes in it (``<data>``, ``<script>``, ``<invoke>``, and
    ``srcexpr`` at run time) resolve relative to the file and may only read
    regular files of at most :data:`MAX_FILE_BYTES` under ``roots``: by default
    the document's own directory.
    """
    try:
        name = os.fspath(path)
    except TypeError:
        raise DocumentError(f"load_file() takes a path, not {type(path).__name__}") from None
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    try:
        data = read_regular_file(name)
    except (OSError, ValueError) as exc:
        raise DocumentError(f"cannot read the document: {_reason(exc)}", file=name) from None
    base = os.path.dirname(os.path.abspath(name))
    allowed = _roots(roots, base)
    return _Loader(name, check_expressions, base, allowed).load_bytes(data)


def load_string(text: str | bytes, *, base: str | os.PathLike[str] | None = None, check_expressions: bool = True,
                roots: Iterable[str | os.PathLike[str]] | None = None) -> Document:
    """Load a document from SCXML text (``str``, or ``bytes`` in the encoding its XML declaration names).

    Text has no directory of its own: relative ``src`` attributes resolve against
    ``base`` (default: the current directory), and they may only read under
    ``roots`` (default: ``base`` when given, else nothing).
    """
    if isinstance(text, str):
        # The text is already decoded: whatever encoding its declaration names, the parser gets UTF-8.
        data = _XML_ENCODING.sub(r"\g<1>\g<2>UTF-8\g<2>", text, count=1).encode("utf-8", "surrogatepass")
    else:
        data = bytes(text)
    base_dir = os.path.abspath(os.fspath(base)) if base is not None else None
    allowed = _roots(roots, base_dir)
    return _Loader(None, check_expressions, base_dir or os.getcwd(), allowed).load_bytes(data)


def _looks_like_text(source: str) -> bool:
    return "<" in source or "\n" in source or "\r" in source or "\0" in source


def _roots(roots: Iterable[str | os.PathLike[str]] | None, default: str | None) -> tuple[str, ...]:
    if roots is None:
        return (os.path.realpath(default),) if default is not None else ()
    if isinstance(roots, (str, bytes, os.PathLike)):
        raise DocumentError("'roots' is a list of directories, not one path")
    return tuple(os.path.realpath(os.fspath(r)) for r in roots)


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def read_regular_file(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path``; ValueError for anything else or anything larger than ``limit``.

    Opened without blocking, so a FIFO cannot hang the caller, and checked
    after opening, so the file read is the file checked.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def resolve_src(src: str, base_dir: str, roots: tuple[str, ...]) -> str:
    """The real path a ``src`` names, checked against ``roots``; ValueError when it may not be read.

    ``src`` is a path or a ``file:`` URL, relative to ``base_dir``; symbolic
    links are followed before the check, so none leads out of the roots.
    """
    if not isinstance(src, str):
        raise ValueError(f"'src' must be a string, not {type(src).__name__}")
    if "\0" in src:
        raise ValueError("'src' contains a NUL character")
    if src.startswith("file:"):
        src = src[5:]
        if src.startswith("//"):
            src = src[2:]
    elif "://" in src:
        raise ValueError(f"{src!r} must be a relative path or a file: URL")
    path = os.path.realpath(os.path.join(base_dir, src))
    for root in roots:
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return path
    if not roots:
        raise ValueError(f"{src!r}: this document may not read files (load it from a file, or pass roots=)")
    raise ValueError(f"{src!r} is outside the directories this document may read ({', '.join(roots)})")


def read_src(src: str, base_dir: str, roots: tuple[str, ...]) -> bytes:
    """Read what ``src`` names under the file-access policy (see :func:`resolve_src`)."""
    path = resolve_src(src, base_dir, roots)
    try:
        return read_regular_file(path)
    except OSError as exc:
        raise ValueError(f"cannot read {src!r}: {_reason(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"cannot read {src!r}: {exc}") from None


class _Loader:
    def __init__(self, path: str | None, check_expressions: bool, base_dir: str, roots: tuple[str, ...]) -> None:
        self.path = path
        self.check_expressions = check_expressions
        self.base_dir = base_dir
        self.roots = roots

    # ------------------------------------------------------------ errors

    def fail(self, el: etree._Element | None, message: str) -> NoReturn:
        line = sourceline(el) if el is not None else None
        element = local(el) if el is not None else None
        raise DocumentError(message, file=self.path, line=line, element=element)

    # ------------------------------------------------------------ parsing

    def load_bytes(self, data: bytes) -> Document:
        try:
            return self._load_bytes(data)
        except DocumentError:
            raise
        except (ValueError, TypeError, LookupError, RecursionError, MemoryError, etree.LxmlError) as exc:
            # The contract of load() is DocumentError and nothing else, whatever the text.
            raise DocumentError(f"cannot load the document: {type(exc).__name__}: {exc}",
                                file=self.path) from None

    def _load_bytes(self, data: bytes) -> Document:
        try:
            tree = etree.fromstring(data, _parser()).getroottree()
        except etree.XMLSyntaxError as exc:
            line, column = exc.position if exc.position else (None, None)
            message = re.sub(r", line \d+, column \d+$", "", exc.msg or "")
            raise DocumentError(f"malformed XML: {message}", file=self.path, line=line or None,
                                column=column or None) from None
        if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
            at = data.find(b"<!DOCTYPE")
            doctype_line = data.count(b"\n", 0, at) + 1 if at >= 0 else None
            raise DocumentError("DOCTYPE declarations are not allowed in SCXML documents", file=self.path,
                                line=doctype_line)
        doc = self.compile(tree.getroot())
        doc.source = data
        return doc

    def load_src(self, el: etree._Element, src: str) -> str:
        try:
            data = read_src(src, self.base_dir, self.roots)
        except ValueError as exc:
            self.fail(el, f"'src': {exc}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(el, f"'src' {src!r} is not UTF-8 text")
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ expression checks

    def check(self, kind: str, text: str, el: etree._Element, *, location: str | None = None,
              extra: tuple[str, ...] = ()) -> None:
        if self.datamodel == "null":
            if kind == "cond" and parse_in(text) is None:
                self.fail(el, f"the null datamodel only allows In('state') conditions, not {text!r}")
            if kind == "value" and parse_literal(text) is None:
                self.fail(el, f"the null datamodel only allows quoted string values, not {text!r}")
            if kind not in ("cond", "value"):
                self.fail(el, f"the null datamodel has no {kind} expressions")
            return
        if not self.check_expressions:
            return
        why = datamodel_class(self.datamodel).check(kind, text, location, extra)
        if why is not None:
            what = {"setter": "location", "assign": "assignment", "foreach": "foreach"}.get(kind, kind + " expression")
            shown = location if kind == "setter" else text
            self.fail(el, f"invalid ECMAScript {what} {shown!r}: {why}")

    # ------------------------------------------------------------ compiling

    def compile(self, root: etree._Element) -> Document:
        if root.tag != _Q + "scxml":
            self.fail(root, f"the root element must be <scxml> in namespace {SCXML_NS}, not {root.tag!r}")
        version = root.get("version")
        if version is not None and version != "1.0":
            self.fail(root, f"unsupported SCXML version {version!r} (expected 1.0)")
        dm = root.get("datamodel", "ecmascript")
        if dm not in DATAMODELS:
            self.fail(root, f"unknown datamodel {dm!r} (orsguard supports: {', '.join(sorted(DATAMODELS))})")
        self.datamodel = dm
        binding = root.get("binding", "early")
        if binding not in ("early", "late"):
            self.fail(root, f"'binding' must be 'early' or 'late', not {binding!r}")
        self.exprs = Expressions()
        self.compiler = Compiler(self.exprs, self.fail, self.check, self.load_src, dm)

        # pass 1: number the states and check the structure
        self.elements: list[etree._Element] = [root]
        self.ids: list[str] = ["__scxml__"]
        self.kinds: list[int] = [KIND_ROOT]
        self.parents: list[int] = [-1]
        seen: dict[str, etree._Element] = {}
        self._number(root, 0, seen)

        # pass 2: transitions, initial transitions, executable content
        n = len(self.ids)
        self.initial = [-1] * n
        self.t_source: list[int] = []
        self.t_targets: list[list[int]] = []
        self.t_events: list[tuple[str, ...]] = []
        self.t_cond: list[int] = []
        self.t_internal: list[bool] = []
        self.t_content: list[Any] = []
        onentry: list[list[Any]] = [[] for _ in range(n)]
        onexit: list[list[Any]] = [[] for _ in range(n)]
        donedata: list[Any] = [None] * n
        invokes: list[list[Invoke]] = [[] for _ in range(n)]
        data_init: list[Any] = [None] * n
        self.index = {sid: i for i, sid in enumerate(self.ids)}
        data_ids: list[str] = []
        state_data: list[list[tuple[str, Callable[[Any], None]]]] = [[] for _ in range(n)]

        for s, el in enumerate(self.elements):
            kind = self.kinds[s]
            for c in el:
                if not isinstance(c.tag, str) or not c.tag.startswith(_Q):
                    continue
                name = local(c)
                if name == "transition" and kind not in (KIND_HISTORY_SHALLOW, KIND_HISTORY_DEEP):
                    self._transition(s, c)
                elif name == "onentry":
                    block = self.compiler.block(c)
                    if block is not None:
                        onentry[s].append(block)
                elif name == "onexit":
                    block = self.compiler.block(c)
                    if block is not None:
                        onexit[s].append(block)
                elif name == "donedata":
                    donedata[s] = self._donedata(c)
                elif name == "invoke":
                    invokes[s].append(self._invoke(s, c))
                elif name == "datamodel":
                    for d in c:
                        if not isinstance(d.tag, str) or not d.tag.startswith(_Q):
                            continue
                        if local(d) != "data":
                            self.fail(d, "<datamodel> may only contain <data>")
                        data_id = self.compiler.attr(d, "id", required=True)
                        why = datamodel_class(dm).check("data", data_id)
                        if why is not None:
                            self.fail(d, f"data id {data_id!r} {why}")
                        data_ids.append(data_id)
                        state_data[s].append((data_id, self._data(d, data_id)))
            self._initial_of(s, el)

        # data binding: early = everything at start, in document order; late = per state
        scripts = [self.compiler.item(c) for c in root
                   if isinstance(c.tag, str) and c.tag == _Q + "script"]
        if binding == "early":
            everything = [item for per_state in state_data for item in per_state]
            data_init[0] = _root_init(everything, scripts)
        else:
            data_init[0] = _root_init(state_data[0], scripts)
            for s in range(1, n):
                if state_data[s]:
                    data_init[s] = _data_block(state_data[s])

        # Setters for every top-level data id, so that invoke parameters and a
        # host's start data can override them without touching the table later.
        setters = {}
        if dm != "null":
            for data_id, _ in state_data[0]:
                setters[data_id] = self.exprs.add("setter", "", location=data_id)
        machine = Machine(
            self.ids, self.kinds, self.parents, self.initial, self.t_source, self.t_targets,
            self.t_events, self.t_cond, self.t_internal, self.t_content, onentry, onexit, donedata,
            invokes, data_init,
        )
        return Document(root.get("name"), dm, binding, machine, self.exprs, data_ids, self.path,
                        send_types=self.compiler.send_types, data_setters=setters, roots=self.roots)

    def _number(self, el: etree._Element, index: int, seen: dict[str, etree._Element]) -> None:
        parent_name = local(el)
        allowed = _CHILDREN[parent_name]
        for c in el:
            if not isinstance(c.tag, str):
                continue
            if not c.tag.startswith(_Q):
                continue  # other namespaces are extension points
            name = local(c)
            if name not in allowed:
                self.fail(c, f"<{name}> is not allowed inside <{parent_name}>")
            if name not in _STATE_TAGS or name == "initial":
                continue
            sid = c.get("id")
            if sid is None:
                sid = f"_{name}{len(self.ids)}"
                while sid in seen:
                    sid = "_" + sid
            elif sid in seen:
                self.fail(c, f"duplicate id {sid!r} (first defined on line {seen[sid].sourceline})")
            seen[sid] = c
            if name == "history":
                htype = c.get("type", "shallow")
                if htype not in ("shallow", "deep"):
                    self.fail(c, f"history 'type' must be 'shallow' or 'deep', not {htype!r}")
                kind = KIND_HISTORY_DEEP if htype == "deep" else KIND_HISTORY_SHALLOW
            elif name == "final":
                kind = KIND_FINAL
            elif name == "parallel":
                kind = KIND_PARALLEL
            else:
                has_children = any(isinstance(g.tag, str) and local(g) in ("state", "parallel", "final")
                                   and g.tag.startswith(_Q) for g in c)
                kind = KIND_COMPOUND if has_children else KIND_ATOMIC
            i = len(self.ids)
            self.elements.append(c)
            self.ids.append(sid)
            self.kinds.append(kind)
            self.parents.append(index)
            if name != "history":
                self._number(c, i, seen)

    def _targets(self, el: etree._Element, text: str | None) -> list[int]:
        out: list[int] = []
        for tid in (text or "").split():
            idx = self.index.get(tid)
            if idx is None or idx == 0:
                self.fail(el, f"unknown target state {tid!r}")
            out.append(idx)
        if len(out) > 1:
            self._check_legal(el, out)
        return out

    def _check_legal(self, el: etree._Element, targets: list[int]) -> None:
        """Spec 3.11: several targets must be a legal state specification (no two exclusive states).

        Each target's ancestor chain is walked once, recording through which child
        each ancestor was reached, and stops at the first ancestor already seen, so
        the check is linear in the targets' depths.
        """
        wanted = set(targets)
        via: dict[int, tuple[int, int]] = {}
        for t in dict.fromkeys(targets):
            child, a = t, self.parents[t]
            while a >= 0:
                if a in wanted:
                    self.fail(el, f"target {self.ids[t]!r} is inside target {self.ids[a]!r}: "
                                  "no target may contain another (spec 3.11)")
                seen = via.get(a)
                if seen is None:
                    via[a] = (child, t)
                else:
                    if seen[0] != child and self.kinds[a] != KIND_PARALLEL:
                        self.fail(el, f"targets {self.ids[seen[1]]!r} and {self.ids[t]!r} cannot be active "
                                      f"together: only one child of {self._name(a)} is active at a time "
                                      "(spec 3.11)")
                    break
                child, a = a, self.parents[a]

    def _add_transition(self, source: int, targets: list[int], events: tuple[str, ...], cond: int,
                        internal: bool, content: Any) -> int:
        self.t_source.append(source)
        self.t_targets.append(targets)
        self.t_events.append(events)
        self.t_cond.append(cond)
        self.t_internal.append(internal)
        self.t_content.append(content)
        return len(self.t_source) - 1

    def _transition(self, s: int, el: etree._Element) -> int:
        ttype = el.get("type", "external")
        if ttype not in ("external", "internal"):
            self.fail(el, f"transition 'type' must be 'external' or 'internal', not {ttype!r}")
        events = tuple(event_descriptor(d) for d in (el.get("event") or "").split())
        if el.get("event") is not None and not events:
            self.fail(el, "'event' is empty")
        cond = el.get("cond")
        k = self.compiler.expr("cond", cond, el) if cond is not None else -1
        targets = self._targets(el, el.get("target"))
        return self._add_transition(s, targets, events, k, ttype == "internal", self.compiler.block(el))

    def _initial_of(self, s: int, el: etree._Element) -> None:
        kind = self.kinds[s]
        if kind in (KIND_HISTORY_SHALLOW, KIND_HISTORY_DEEP):
            trans = [c for c in el if isinstance(c.tag, str) and c.tag == _Q + "transition"]
            if len(trans) > 1:
                self.fail(trans[1], "a <history> has at most one <transition>")
            parent = self.parents[s]
            if trans:
                targets = self._targets(trans[0], trans[0].get("target"))
                if not targets:
                    self.fail(trans[0], "the default transition of a <history> needs a 'target'")
                for t in targets:
                    if not self._is_desc(t, parent):
                        self.fail(trans[0], f"history default target {self.ids[t]!r} is not inside "
                                            f"{self.ids[parent]!r}")
                content = self.compiler.block(trans[0])
            else:
                targets = self._default_children(parent)
                content = None
            self.initial[s] = self._add_transition(s, targets, (), -1, False, content)
            return
        if kind not in (KIND_COMPOUND, KIND_ROOT):
            if el.get("initial") is not None and kind != KIND_ATOMIC:
                self.fail(el, "'initial' is only allowed on a compound <state> or <scxml>")
            if el.get("initial") is not None:
                self.fail(el, "'initial' names a child but this state has no child states")
            return
        initial_attr = el.get("initial")
        initial_els = [c for c in el if isinstance(c.tag, str) and c.tag == _Q + "initial"]
        if initial_attr is not None and initial_els:
            self.fail(el, "'initial' attribute and <initial> element may not be used together")
        if len(initial_els) > 1:
            self.fail(initial_els[1], "only one <initial> is allowed")
        if initial_els:
            trans = [c for c in initial_els[0] if isinstance(c.tag, str) and c.tag == _Q + "transition"]
            if len(trans) != 1:
                self.fail(initial_els[0], "<initial> must contain exactly one <transition>")
            initial_t = trans[0]
            if initial_t.get("event") is not None or initial_t.get("cond") is not None:
                self.fail(initial_t, "the <initial> transition may not have 'event' or 'cond'")
            targets = self._targets(initial_t, initial_t.get("target"))
            if not targets:
                self.fail(initial_t, "the <initial> transition needs a 'target'")
            content = self.compiler.block(initial_t)
            where = initial_t
        elif initial_attr is not None:
            targets = self._targets(el, initial_attr)
            if not targets:
                self.fail(el, "'initial' is empty: name one or more child states")
            content = None
            where = el
        else:
            targets = self._default_children(s)
            content = None
            where = el
            if not targets and s == 0:
                self.fail(el, "the document has no states")
        for t_ in targets:
            if not self._is_desc(t_, s):
                self.fail(where, f"initial state {self.ids[t_]!r} is not inside {self._name(s)}")
        self.initial[s] = self._add_transition(s, targets, (), -1, False, content)

    def _name(self, s: int) -> str:
        return "<scxml>" if s == 0 else repr(self.ids[s])

    def _default_children(self, s: int) -> list[int]:
        for i in range(s + 1, len(self.ids)):
            if self.parents[i] == s and self.kinds[i] not in (KIND_HISTORY_SHALLOW, KIND_HISTORY_DEEP):
                return [i]
        return []

    def _is_desc(self, a: int, b: int) -> bool:
        p = self.parents[a]
        while p >= 0:
            if p == b:
                return True
            p = self.parents[p]
        return False

    def _donedata(self, el: etree._Element) -> Callable[[Any], Any]:
        # A timeout in it is the core's to judge (process-event-timeout, not a final).
        return self.compiler.payload(el, allow_namelist=False)

    def _data(self, el: etree._Element, data_id: str) -> Callable[[Any], None]:
        self.compiler.exclusive(el, "expr", "src")
        text = el.get("expr")
        src = el.get("src")
        has_content = len(el) or (el.text or "").strip()
        if (text is not None or src is not None) and has_content:
            self.fail(el, "'expr'/'src' and child content may not be used together")
        if self.datamodel == "null":
            self.fail(el, "the null datamodel has no <data>")
        at = where(el)
        if text is not None:
            k = self.compiler.expr("assign", text, el, location=data_id)

            def init_expr(session: Any) -> None:
                try:
                    session.dm.assign(k)
                except Exception as exc:
                    locate(exc, at)
                    raise

            return init_expr
        if src is not None:
            value = text_value(self.load_src(el, src), parse_json=True)
        elif has_content:
            value = content_value(el, parse_json=True)
        else:
            return _unbound
        k = self.compiler.expr("setter", "", el, location=data_id)

        def init_value(session: Any) -> None:
            try:
                session.dm.set_location(k, value)
            except Exception as exc:
                locate(exc, at)
                raise

        return init_value

    def _invoke(self, s: int, el: etree._Element) -> Invoke:
        c = self.compiler
        c.exclusive(el, "type", "typeexpr")
        c.exclusive(el, "src", "srcexpr")
        c.exclusive(el, "id", "idlocation")
        content_el = c._content(el)
        if content_el is not None and (el.get("src") or el.get("srcexpr")):
            self.fail(el, "'src'/'srcexpr' and <content> may not be used together")
        if el.get("namelist") and c._params(el):
            self.fail(el, "'namelist' and <param> may not be used together")
        inline = None
        content: Callable[[Any], Any] | None = None
        if content_el is not None:
            scxml_children = [x for x in content_el if isinstance(x.tag, str)]
            content_source = content_el.get("expr")
            if content_source is not None:
                ck = c.expr("value", content_source, content_el)

                def content_expr(session: Any, ck: int = ck) -> Any:
                    return session.dm.value(ck)
                content = content_expr
            elif scxml_children:
                if scxml_children[0].tag != _Q + "scxml":
                    self.fail(scxml_children[0], "inline <invoke> content must be an <scxml> document")
                inline = _Loader(self.path, self.check_expressions, self.base_dir,
                                 self.roots).compile(scxml_children[0])
            else:
                text = content_el.text or ""

                def content_text(session: Any, text: str = text) -> Any:
                    return text
                content = content_text
        finalize_el = [x for x in el if isinstance(x.tag, str) and x.tag == _Q + "finalize"]
        if len(finalize_el) > 1:
            self.fail(finalize_el[1], "only one <finalize> is allowed")
        autoforward = el.get("autoforward", "false")
        if autoforward not in ("true", "false"):
            self.fail(el, f"'autoforward' must be 'true' or 'false', not {autoforward!r}")
        params_only = etree.Element("x")
        for p in c._params(el):
            params_only.append(_copy(p))
        namelist = el.get("namelist")
        if namelist:
            params_only.set("namelist", namelist)
        data = c.payload(params_only, allow_namelist=True) if len(params_only) or namelist else None
        idloc = el.get("idlocation")
        return Invoke(
            element_line=sourceline(el),
            type=el.get("type"),
            typeexpr=c._opt_value(el, "typeexpr"),
            src=el.get("src"),
            srcexpr=c._opt_value(el, "srcexpr"),
            id=el.get("id"),
            idlocation=c.expr("setter", "", el, location=idloc) if idloc else -1,
            autoforward=autoforward == "true",
            data=data if data is not None else (lambda session: None),
            content=content,
            inline=inline,
            finalize=c.block(finalize_el[0]) if finalize_el else None,
            state_id=self.ids[s],
            base_dir=self.base_dir,
            roots=self.roots,
        )


def _copy(el: etree._Element) -> etree._Element:
    # A deep copy keeps the source line, so payload errors point at the original
    # <param>; the text after the element belongs to its old parent.
    dup = copy.deepcopy(el)
    dup.tail = None
    return dup


def event_descriptor(d: str) -> str:
    """An event descriptor normalized: ``foo.*`` and ``foo.`` both mean the prefix ``foo``."""
    if d == "*":
        return d
    if d.endswith(".*"):
        d = d[:-2]
    return d.rstrip(".")


def _unbound(session: Any) -> None:
    return None


def _data_block(items: list[tuple[str, Callable[[Any], None]]]) -> Callable[[Any], None]:
    """Initialize data items one by one: a failing one stays undefined and raises error.execution."""
    inits = tuple(f for _, f in items)

    def init(session: Any) -> None:
        for f in inits:
            try:
                f(session)
            except Halt:
                raise
            except Exception as exc:
                session.raise_error("error.execution", exc)

    return init


def _root_init(items: list[tuple[str, Callable[[Any], None]]],
               scripts: list[Callable[[Any], None] | None]) -> Callable[[Any], None]:
    data = _data_block(items)
    global_scripts = tuple(s for s in scripts if s is not None)

    def init(session: Any) -> None:
        data(session)
        session.apply_initial_data()
        for script in global_scripts:
            script(session)

    return init
