"""Loading SCXML: hardened lxml parsing, validation, and compilation into core tables.

Three steps: the reader checks the elements and reads them into a plain model
(:class:`DocumentModel`: states, transitions, compiled executable content,
invokes, data), and the builder lays that model out as the core's
:class:`~orsguard._core.Machine` tables. Expressions are the datamodel's to
check (:meth:`~orsguard.datamodels.Datamodel.check`).

States are numbered in document order with the ``<scxml>`` element as 0, so the
core's entry and exit orders are plain index orders. Every error names the
file, line and element and says what is wrong.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Iterable
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
    Machine,
)
from orsguard.datamodels import DATAMODELS, Datamodel, Expressions, datamodel_class
from orsguard.errors import DocumentError
from orsguard.executable import (
    _Q,
    SCXML_NS,
    Compiler,
    Item,
    Payload,
    assignment,
    content_value,
    local,
    sourceline,
    text_value,
    where,
)
from orsguard.runtime import ExecutionContext, execution_failed

_XML_ENCODING = re.compile(r"""^(\ufeff?\s*<\?xml\s[^>]*?\bencoding\s*=\s*)(["'])[^"']*\2""")
_STATE_TAGS = {"state", "parallel", "final", "history", "initial"}
_CHILDREN = {
    "scxml": {"state", "parallel", "final", "datamodel", "script"},
    "state": {
        "onentry",
        "onexit",
        "transition",
        "initial",
        "state",
        "parallel",
        "final",
        "history",
        "datamodel",
        "invoke",
    },
    "parallel": {"onentry", "onexit", "transition", "state", "parallel", "history", "datamodel", "invoke"},
    "final": {"onentry", "onexit", "donedata"},
    "history": {"transition"},
    "initial": {"transition"},
}


def _parser() -> etree.XMLParser:
    # No DTD loading, no entity expansion, no network: a document cannot read
    # local files through entities or blow up through nested entity definitions.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


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
    data: Payload
    content: Payload | None
    inline: Document | None
    finalize: Item | None
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


@dataclass(slots=True)
class TransitionModel:
    """A transition as read: ``targets`` are state indices, ``cond`` an expression index (-1: none)."""

    source: int
    targets: list[int]
    events: tuple[str, ...] = ()
    cond: int = -1
    internal: bool = False
    content: Item | None = None


@dataclass(slots=True)
class DataItem:
    """A ``<data>`` element: its id and what initializes it."""

    id: str
    init: Item


@dataclass(slots=True)
class StateModel:
    """A state as read, numbered in document order (0 = ``<scxml>``), with everything it holds."""

    index: int
    id: str
    kind: int
    parent: int
    element: etree._Element = field(repr=False)
    transitions: list[TransitionModel] = field(default_factory=list)
    #: A compound state's initial transition, a history's default (None for other states).
    initial: TransitionModel | None = None
    onentry: list[Item] = field(default_factory=list)
    onexit: list[Item] = field(default_factory=list)
    donedata: Payload | None = None
    invokes: list[Invoke] = field(default_factory=list)
    data: list[DataItem] = field(default_factory=list)


@dataclass(slots=True)
class DocumentModel:
    """What the reader makes of a document, before it becomes core tables."""

    name: str | None
    datamodel: str
    binding: str
    states: list[StateModel]
    #: The top-level ``<script>`` elements, run once the data is initialized.
    scripts: list[Item]
    expressions: Expressions


#: Largest file load() reads, for a document and for every ``src`` it names.
MAX_FILE_BYTES = 8 << 20


def load(
    source: str | bytes | os.PathLike[str],
    *,
    check_expressions: bool = True,
    roots: Iterable[str | os.PathLike[str]] | None = None,
) -> Document:
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


def load_file(
    path: str | os.PathLike[str],
    *,
    check_expressions: bool = True,
    roots: Iterable[str | os.PathLike[str]] | None = None,
) -> Document:
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


def load_string(
    text: str | bytes,
    *,
    base: str | os.PathLike[str] | None = None,
    check_expressions: bool = True,
    roots: Iterable[str | os.PathLike[str]] | None = None,
) -> Document:
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
    """Reads a document into the plain model (:class:`DocumentModel`), then builds the core tables from it."""

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
            raise DocumentError(f"cannot load the document: {type(exc).__name__}: {exc}", file=self.path) from None

    def _load_bytes(self, data: bytes) -> Document:
        try:
            tree = etree.fromstring(data, _parser()).getroottree()
        except etree.XMLSyntaxError as exc:
            line, column = exc.position if exc.position else (None, None)
            message = re.sub(r", line \d+, column \d+$", "", exc.msg or "")
            raise DocumentError(
                f"malformed XML: {message}", file=self.path, line=line or None, column=column or None
            ) from None
        if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
            at = data.find(b"<!DOCTYPE")
            doctype_line = data.count(b"\n", 0, at) + 1 if at >= 0 else None
            raise DocumentError(
                "DOCTYPE declarations are not allowed in SCXML documents", file=self.path, line=doctype_line
            )
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

    def check(
        self, kind: str, text: str, el: etree._Element, *, location: str | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        """Refuse ``el`` when its datamodel refuses the expression (see :meth:`Datamodel.check`)."""
        problem = self.dm_class.check(kind, text, location, extra, defer=not self.check_expressions)
        if problem is not None:
            self.fail(el, problem)

    def compile(self, root: etree._Element) -> Document:
        """The document whose root element is ``root``: read into the model, then built."""
        model = self._read(root)
        # The compiler holds this loader's methods: without the cycle, the
        # model is freed as soon as it is built, not by the cycle collector.
        del self.compiler
        return self._build(model)

    # ------------------------------------------------------------ reading: elements -> model

    def _read(self, root: etree._Element) -> DocumentModel:
        datamodel, binding = self._read_root(root)
        self.exprs = Expressions()
        self.compiler = Compiler(self.exprs, self.fail, self.check, self.load_src, self.dm_class.json_content)
        self.states = self._number(root)
        self.index = {state.id: state.index for state in self.states}
        for state in self.states:
            self._read_children(state)
            state.initial = self._initial_of(state)
        scripts = [item for c in _children(root, "script") if (item := self.compiler.item(c)) is not None]
        return DocumentModel(root.get("name"), datamodel, binding, self.states, scripts, self.exprs)

    def _read_root(self, root: etree._Element) -> tuple[str, str]:
        if root.tag != _Q + "scxml":
            self.fail(root, f"the root element must be <scxml> in namespace {SCXML_NS}, not {root.tag!r}")
        version = root.get("version")
        if version is not None and version != "1.0":
            self.fail(root, f"unsupported SCXML version {version!r} (expected 1.0)")
        datamodel = root.get("datamodel", "ecmascript")
        if datamodel not in DATAMODELS:
            self.fail(root, f"unknown datamodel {datamodel!r} (orsguard supports: {', '.join(sorted(DATAMODELS))})")
        self.dm_class = datamodel_class(datamodel)
        binding = root.get("binding", "early")
        if binding not in ("early", "late"):
            self.fail(root, f"'binding' must be 'early' or 'late', not {binding!r}")
        return datamodel, binding

    def _number(self, root: etree._Element) -> list[StateModel]:
        """Every state in document order (``<scxml>`` first), its structure checked."""
        states = [StateModel(0, "__scxml__", KIND_ROOT, -1, root)]
        self._number_children(root, 0, states, {})
        return states

    def _number_children(
        self, el: etree._Element, index: int, states: list[StateModel], seen: dict[str, etree._Element]
    ) -> None:
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
                sid = f"_{name}{len(states)}"
                while sid in seen:
                    sid = "_" + sid
            elif sid in seen:
                self.fail(c, f"duplicate id {sid!r} (first defined on line {seen[sid].sourceline})")
            seen[sid] = c
            i = len(states)
            states.append(StateModel(i, sid, self._kind_of(c, name), index, c))
            if name != "history":
                self._number_children(c, i, states, seen)

    def _kind_of(self, el: etree._Element, name: str) -> int:
        if name == "history":
            htype = el.get("type", "shallow")
            if htype not in ("shallow", "deep"):
                self.fail(el, f"history 'type' must be 'shallow' or 'deep', not {htype!r}")
            return KIND_HISTORY_DEEP if htype == "deep" else KIND_HISTORY_SHALLOW
        if name == "final":
            return KIND_FINAL
        if name == "parallel":
            return KIND_PARALLEL
        has_children = any(
            isinstance(g.tag, str) and local(g) in ("state", "parallel", "final") and g.tag.startswith(_Q) for g in el
        )
        return KIND_COMPOUND if has_children else KIND_ATOMIC

    def _read_children(self, state: StateModel) -> None:
        """Transitions, executable content, invokes and data of one state, in document order."""
        history = state.kind in (KIND_HISTORY_SHALLOW, KIND_HISTORY_DEEP)
        for c in state.element:
            if not isinstance(c.tag, str) or not c.tag.startswith(_Q):
                continue
            name = local(c)
            if name == "transition" and not history:  # a history's is its default: see _initial_of
                state.transitions.append(self._transition(state.index, c))
            elif name == "onentry" or name == "onexit":
                block = self.compiler.block(c)
                if block is not None:
                    (state.onentry if name == "onentry" else state.onexit).append(block)
            elif name == "donedata":
                # A timeout in it is the core's to judge (process-event-timeout, not a final).
                state.donedata = self.compiler.payload(c, allow_namelist=False)
            elif name == "invoke":
                state.invokes.append(self._invoke(state, c))
            elif name == "datamodel":
                state.data.extend(self._datamodel(c))

    def _transition(self, s: int, el: etree._Element) -> TransitionModel:
        ttype = el.get("type", "external")
        if ttype not in ("external", "internal"):
            self.fail(el, f"transition 'type' must be 'external' or 'internal', not {ttype!r}")
        events = tuple(event_descriptor(d) for d in (el.get("event") or "").split())
        if el.get("event") is not None and not events:
            self.fail(el, "'event' is empty")
        cond = el.get("cond")
        k = self.compiler.expr("cond", cond, el) if cond is not None else -1
        targets = self._targets(el, el.get("target"))
        return TransitionModel(s, targets, events, k, ttype == "internal", self.compiler.block(el))

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
        states = self.states
        wanted = set(targets)
        via: dict[int, tuple[int, int]] = {}
        for t in dict.fromkeys(targets):
            child, a = t, states[t].parent
            while a >= 0:
                if a in wanted:
                    self.fail(
                        el,
                        f"target {states[t].id!r} is inside target {states[a].id!r}: "
                        "no target may contain another (spec 3.11)",
                    )
                seen = via.get(a)
                if seen is None:
                    via[a] = (child, t)
                else:
                    if seen[0] != child and states[a].kind != KIND_PARALLEL:
                        self.fail(
                            el,
                            f"targets {states[seen[1]].id!r} and {states[t].id!r} cannot be active "
                            f"together: only one child of {self._name(a)} is active at a time "
                            "(spec 3.11)",
                        )
                    break
                child, a = a, states[a].parent

    # ------------------------------------------------------------ initial and history default transitions

    def _initial_of(self, state: StateModel) -> TransitionModel | None:
        """The transition a state is entered through: a history's default, a compound state's initial."""
        if state.kind in (KIND_HISTORY_SHALLOW, KIND_HISTORY_DEEP):
            return self._history_default(state)
        if state.kind in (KIND_COMPOUND, KIND_ROOT):
            return self._initial_transition(state)
        if state.element.get("initial") is not None:
            self.fail(
                state.element,
                "'initial' is only allowed on a compound <state> or <scxml>"
                if state.kind != KIND_ATOMIC
                else "'initial' names a child but this state has no child states",
            )
        return None

    def _history_default(self, state: StateModel) -> TransitionModel:
        trans = _children(state.element, "transition")
        if len(trans) > 1:
            self.fail(trans[1], "a <history> has at most one <transition>")
        parent = state.parent
        if not trans:
            return TransitionModel(state.index, self._default_children(parent))
        el = trans[0]
        targets = self._targets(el, el.get("target"))
        if not targets:
            self.fail(el, "the default transition of a <history> needs a 'target'")
        outside = self._outside(targets, parent)
        if outside is not None:
            self.fail(
                el, f"history default target {self.states[outside].id!r} is not inside {self.states[parent].id!r}"
            )
        return TransitionModel(state.index, targets, content=self.compiler.block(el))

    def _initial_transition(self, state: StateModel) -> TransitionModel:
        el, s = state.element, state.index
        attr = el.get("initial")
        initial_els = _children(el, "initial")
        if attr is not None and initial_els:
            self.fail(el, "'initial' attribute and <initial> element may not be used together")
        if len(initial_els) > 1:
            self.fail(initial_els[1], "only one <initial> is allowed")
        content = None
        where = el
        if initial_els:
            trans = _children(initial_els[0], "transition")
            if len(trans) != 1:
                self.fail(initial_els[0], "<initial> must contain exactly one <transition>")
            where = trans[0]
            if where.get("event") is not None or where.get("cond") is not None:
                self.fail(where, "the <initial> transition may not have 'event' or 'cond'")
            targets = self._targets(where, where.get("target"))
            if not targets:
                self.fail(where, "the <initial> transition needs a 'target'")
            content = self.compiler.block(where)
        elif attr is not None:
            targets = self._targets(el, attr)
            if not targets:
                self.fail(el, "'initial' is empty: name one or more child states")
        else:
            targets = self._default_children(s)
            if not targets and s == 0:
                self.fail(el, "the document has no states")
        outside = self._outside(targets, s)
        if outside is not None:
            self.fail(where, f"initial state {self.states[outside].id!r} is not inside {self._name(s)}")
        return TransitionModel(s, targets, content=content)

    def _name(self, s: int) -> str:
        return "<scxml>" if s == 0 else repr(self.states[s].id)

    def _default_children(self, s: int) -> list[int]:
        states = self.states
        for i in range(s + 1, len(states)):
            if states[i].parent == s and states[i].kind not in (KIND_HISTORY_SHALLOW, KIND_HISTORY_DEEP):
                return [i]
        return []

    def _outside(self, targets: list[int], s: int) -> int | None:
        """The first of ``targets`` that is not a descendant of state ``s``, or None."""
        states = self.states
        for t in targets:
            p = states[t].parent
            while p >= 0 and p != s:
                p = states[p].parent
            if p < 0:
                return t
        return None

    # ------------------------------------------------------------ data and invoke

    def _datamodel(self, el: etree._Element) -> list[DataItem]:
        items = []
        for d in el:
            if not isinstance(d.tag, str) or not d.tag.startswith(_Q):
                continue
            if local(d) != "data":
                self.fail(d, "<datamodel> may only contain <data>")
            data_id = self.compiler.attr(d, "id", required=True)
            self.check("data", data_id, d)
            items.append(DataItem(data_id, self._data(d, data_id)))
        return items

    def _data(self, el: etree._Element, data_id: str) -> Item:
        self.compiler.exclusive(el, "expr", "src")
        text = el.get("expr")
        src = el.get("src")
        has_content = len(el) or (el.text or "").strip()
        if (text is not None or src is not None) and has_content:
            self.fail(el, "'expr'/'src' and child content may not be used together")
        if text is not None:
            return assignment(self.compiler.expr("assign", text, el, location=data_id), where(el))
        if src is not None:
            value = text_value(self.load_src(el, src), parse_json=True)
        elif has_content:
            value = content_value(el, parse_json=True)
        else:
            return _unbound
        return assignment(self.compiler.expr("setter", "", el, location=data_id), where(el), value)

    def _invoke(self, state: StateModel, el: etree._Element) -> Invoke:
        c = self.compiler
        c.exclusive(el, "type", "typeexpr")
        c.exclusive(el, "src", "srcexpr")
        c.exclusive(el, "id", "idlocation")
        content_el = c.content_of(el)
        if content_el is not None and (el.get("src") or el.get("srcexpr")):
            self.fail(el, "'src'/'srcexpr' and <content> may not be used together")
        if el.get("namelist") and c.params_of(el):
            self.fail(el, "'namelist' and <param> may not be used together")
        inline = None
        content: Payload | None = None
        if content_el is not None:
            scxml_children = [x for x in content_el if isinstance(x.tag, str)]
            content_source = content_el.get("expr")
            if content_source is not None:
                ck = c.expr("value", content_source, content_el)

                def content_expr(session: ExecutionContext, ck: int = ck) -> Any:
                    return session.dm.value(ck)

                content = content_expr
            elif scxml_children:
                if scxml_children[0].tag != _Q + "scxml":
                    self.fail(scxml_children[0], "inline <invoke> content must be an <scxml> document")
                inline = _Loader(self.path, self.check_expressions, self.base_dir, self.roots).compile(
                    scxml_children[0]
                )
            else:
                text = content_el.text or ""

                def content_text(session: ExecutionContext, text: str = text) -> Any:
                    return text

                content = content_text
        finalize_el = _children(el, "finalize")
        if len(finalize_el) > 1:
            self.fail(finalize_el[1], "only one <finalize> is allowed")
        autoforward = el.get("autoforward", "false")
        if autoforward not in ("true", "false"):
            self.fail(el, f"'autoforward' must be 'true' or 'false', not {autoforward!r}")
        params_only = etree.Element("x")
        for p in c.params_of(el):
            params_only.append(_copy(p))
        namelist = el.get("namelist")
        if namelist:
            params_only.set("namelist", namelist)
        idloc = el.get("idlocation")
        return Invoke(
            element_line=sourceline(el),
            type=el.get("type"),
            typeexpr=c.optional_value(el, "typeexpr"),
            src=el.get("src"),
            srcexpr=c.optional_value(el, "srcexpr"),
            id=el.get("id"),
            idlocation=c.expr("setter", "", el, location=idloc) if idloc else -1,
            autoforward=autoforward == "true",
            data=c.payload(params_only, allow_namelist=True),
            content=content,
            inline=inline,
            finalize=c.block(finalize_el[0]) if finalize_el else None,
            state_id=state.id,
            base_dir=self.base_dir,
            roots=self.roots,
        )

    # ------------------------------------------------------------ building: model -> core tables

    def _build(self, model: DocumentModel) -> Document:
        states = model.states
        initial = [-1] * len(states)
        transitions: list[TransitionModel] = []
        for state in states:
            transitions.extend(state.transitions)
            if state.initial is not None:
                initial[state.index] = len(transitions)
                transitions.append(state.initial)
        machine = Machine(
            [s.id for s in states],
            [s.kind for s in states],
            [s.parent for s in states],
            initial,
            [t.source for t in transitions],
            [t.targets for t in transitions],
            [t.events for t in transitions],
            [t.cond for t in transitions],
            [t.internal for t in transitions],
            [t.content for t in transitions],
            [s.onentry for s in states],
            [s.onexit for s in states],
            [s.donedata for s in states],
            [s.invokes for s in states],
            _data_init(model),
        )
        # Setters for every top-level data id, so that invoke parameters and a
        # host's start data can override them without touching the table later.
        setters = {d.id: model.expressions.add("setter", "", location=d.id) for d in states[0].data}
        data_ids = [d.id for s in states for d in s.data]
        return Document(
            model.name,
            model.datamodel,
            model.binding,
            machine,
            model.expressions,
            data_ids,
            self.path,
            data_setters=setters,
            roots=self.roots,
        )


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    """The SCXML children of ``el`` named ``name``."""
    tag = _Q + name
    return [c for c in el if c.tag == tag]


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


def _unbound(session: ExecutionContext) -> None:
    return None


def _data_init(model: DocumentModel) -> list[Item | None]:
    """Per state, what initializes its data: early binding, all of it at the start, in document order;
    late binding, each state's own on its first entry."""
    states = model.states
    data_init: list[Item | None] = [None] * len(states)
    if model.binding == "early":
        data_init[0] = _root_init([d for s in states for d in s.data], model.scripts)
    else:
        data_init[0] = _root_init(states[0].data, model.scripts)
        for s in states[1:]:
            if s.data:
                data_init[s.index] = _data_block(s.data)
    return data_init


def _data_block(items: list[DataItem]) -> Item:
    """Initialize data items one by one: a failing one stays undefined and raises error.execution."""
    inits = tuple(d.init for d in items)

    def init(session: ExecutionContext) -> None:
        for f in inits:
            try:
                f(session)
            except Exception as exc:
                execution_failed(session, exc)

    return init


def _root_init(items: list[DataItem], scripts: list[Item]) -> Item:
    data = _data_block(items)
    global_scripts = tuple(scripts)

    def init(session: ExecutionContext) -> None:
        data(session)
        session.apply_initial_data()
        for script in global_scripts:
            script(session)

    return init
