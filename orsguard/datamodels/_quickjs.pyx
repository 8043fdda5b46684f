# cython: language_level=3, auto_pickle=False, autotestdict=False
"""orsguard's binding of the QuickJS engine (quickjs-ng), compiled from the pinned source release.

One JSRuntime per thread, shared by the thread's sessions; one JSContext per
session (:class:`Context`). The runtime's interrupt handler stops the running
script when the runtime's deadline (a C double, CLOCK_MONOTONIC seconds, 0 =
none, written by the core once per macrostep) has passed or when the running
context was asked to terminate. Nothing is armed per call.

Values cross between Python and JavaScript by explicit conversion (no JSON):
see :func:`validate` for the rules.
"""

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import threading

from orsguard._core import ScriptInterrupted
from orsguard.datamodels.base import XmlContent
from orsguard.errors import ExecutionError

cdef extern from "Python.h":
    ctypedef struct PyThreadState
    PyThreadState* PyEval_SaveThread() nogil
    void PyEval_RestoreThread(PyThreadState*) nogil

cdef extern from "quickjs.h" nogil:
    ctypedef struct JSRuntime
    ctypedef struct JSContext
    ctypedef struct JSValue:
        pass
    ctypedef JSValue JSValueConst
    ctypedef uint32_t JSAtom
    ctypedef struct JSPropertyEnum:
        bint is_enumerable
        JSAtom atom
    ctypedef struct JSPropertyDescriptor:
        int flags
        JSValue value
        JSValue getter
        JSValue setter
    ctypedef struct JSMallocFunctions:
        void* (*js_calloc)(void*, size_t, size_t) noexcept nogil
        void* (*js_malloc)(void*, size_t) noexcept nogil
        void (*js_free)(void*, void*) noexcept nogil
        void* (*js_realloc)(void*, void*, size_t) noexcept nogil
        size_t (*js_malloc_usable_size)(const void*) noexcept nogil
    ctypedef int JSInterruptHandler(JSRuntime*, void*) noexcept nogil

    JSValue JS_UNDEFINED
    JSValue JS_NULL
    JSValue JS_EXCEPTION
    int JS_TAG_INT, JS_TAG_BOOL, JS_TAG_NULL, JS_TAG_UNDEFINED, JS_TAG_FLOAT64
    int JS_TAG_STRING, JS_TAG_STRING_ROPE, JS_TAG_OBJECT, JS_TAG_BIG_INT, JS_TAG_SHORT_BIG_INT
    int JS_EVAL_TYPE_GLOBAL, JS_EVAL_FLAG_STRICT, JS_EVAL_FLAG_COMPILE_ONLY
    int JS_GPN_STRING_MASK, JS_GPN_ENUM_ONLY
    int JS_PROP_C_W_E, JS_PROP_ENUMERABLE, JS_PROP_CONFIGURABLE, JS_PROP_GETSET

    int JS_VALUE_GET_NORM_TAG(JSValue)
    int JS_VALUE_GET_INT(JSValue)
    int JS_VALUE_GET_BOOL(JSValue)
    double JS_VALUE_GET_FLOAT64(JSValue)

    JSRuntime* JS_NewRuntime2(const JSMallocFunctions*, void*)
    void JS_FreeRuntime(JSRuntime*)
    void JS_SetMaxStackSize(JSRuntime*, size_t)
    void JS_UpdateStackTop(JSRuntime*)
    void JS_SetInterruptHandler(JSRuntime*, JSInterruptHandler*, void*)
    void JS_RunGC(JSRuntime*)
    size_t JS_GetGCThreshold(JSRuntime*)
    void JS_SetGCThreshold(JSRuntime*, size_t)
    JSContext* JS_NewContext(JSRuntime*)
    JSContext* JS_NewContextRaw(JSRuntime*)
    int JS_AddIntrinsicBaseObjects(JSContext*)
    int JS_AddIntrinsicDate(JSContext*)
    int JS_AddIntrinsicEval(JSContext*)
    int JS_AddIntrinsicRegExp(JSContext*)
    int JS_AddIntrinsicJSON(JSContext*)
    int JS_AddIntrinsicProxy(JSContext*)
    int JS_AddIntrinsicMapSet(JSContext*)
    int JS_AddIntrinsicPromise(JSContext*)
    int JS_AddIntrinsicAToB(JSContext*)
    void JS_FreeContext(JSContext*)
    void JS_SetContextOpaque(JSContext*, void*)
    void* JS_GetContextOpaque(JSContext*)

    JSValue JS_Eval(JSContext*, const char*, size_t, const char*, int)
    JSValue JS_EvalFunction(JSContext*, JSValue)
    JSValue JS_Call(JSContext*, JSValueConst, JSValueConst, int, JSValueConst*)
    JSValue JS_GetException(JSContext*)
    bint JS_IsUncatchableError(JSValueConst)
    bint JS_HasException(JSContext*)
    bint JS_IsError(JSValueConst)
    bint JS_IsException(JSValueConst)
    bint JS_IsUndefined(JSValueConst)
    bint JS_IsString(JSValueConst)
    bint JS_IsObject(JSValueConst)
    void JS_FreeValue(JSContext*, JSValue)
    JSValue JS_DupValue(JSContext*, JSValueConst)
    int JS_ToBool(JSContext*, JSValueConst)

    JSValue JS_NewStringLen(JSContext*, const char*, size_t)
    JSValue JS_NewStringUTF16(JSContext*, const uint16_t*, size_t)
    const char* JS_ToCStringLen(JSContext*, size_t*, JSValueConst)
    void JS_FreeCString(JSContext*, const char*)
    JSValue JS_ToString(JSContext*, JSValueConst)
    JSValue JS_NewInt64(JSContext*, int64_t)
    JSValue JS_NewFloat64(JSContext*, double)
    JSValue JS_NewBool(JSContext*, bint)
    JSValue JS_NewBigInt64(JSContext*, int64_t)
    int JS_ToBigInt64(JSContext*, int64_t*, JSValueConst)

    JSValue JS_NewArray(JSContext*)
    JSValue JS_NewObject(JSContext*)
    bint JS_IsArray(JSValueConst)
    bint JS_IsFunction(JSContext*, JSValueConst)
    int JS_GetLength(JSContext*, JSValueConst, int64_t*)
    JSValue JS_GetPropertyUint32(JSContext*, JSValueConst, uint32_t)
    int JS_SetPropertyUint32(JSContext*, JSValueConst, uint32_t, JSValue)
    JSValue JS_GetPropertyStr(JSContext*, JSValueConst, const char*)
    int JS_SetPropertyStr(JSContext*, JSValueConst, const char*, JSValue)
    JSValue JS_GetProperty(JSContext*, JSValueConst, JSAtom)
    int JS_DefinePropertyValue(JSContext*, JSValueConst, JSAtom, JSValue, int)
    int JS_DefinePropertyValueStr(JSContext*, JSValueConst, const char*, JSValue, int)
    int JS_PreventExtensions(JSContext*, JSValueConst)
    JSAtom JS_ValueToAtom(JSContext*, JSValueConst)
    JSAtom JS_NewAtom(JSContext*, const char*)
    JSValue JS_AtomToString(JSContext*, JSAtom)
    void JS_FreeAtom(JSContext*, JSAtom)
    int JS_GetOwnPropertyNames(JSContext*, JSPropertyEnum**, uint32_t*, JSValueConst, int)
    int JS_GetOwnProperty(JSContext*, JSPropertyDescriptor*, JSValueConst, JSAtom)
    JSValue JS_GetPrototype(JSContext*, JSValueConst)
    void JS_FreePropertyEnum(JSContext*, JSPropertyEnum*, uint32_t)
    JSValue JS_GetGlobalObject(JSContext*)
    JSValue JS_ThrowTypeError(JSContext*, const char*, ...)
    unsigned char* JS_WriteObject(JSContext*, size_t*, JSValueConst, int)
    JSValue JS_ReadObject(JSContext*, const unsigned char*, size_t, int)
    void js_free(JSContext*, void*)
    int JS_WRITE_OBJ_BYTECODE, JS_READ_OBJ_BYTECODE


cdef extern from "quickjs.h":
    # In() calls back into Python, so C functions hold the GIL (the calling thread has it).
    ctypedef JSValue JSCFunction(JSContext*, JSValueConst, int, JSValueConst*) noexcept
    JSValue JS_NewCFunction(JSContext*, JSCFunction*, const char*, int)


# ---------------------------------------------------------------- limits

#: Deepest nesting of arrays/objects converted either way (deeper, or cyclic: an error).
MAX_DEPTH = 1000
#: Most values (containers and scalars) one conversion may produce.
MAX_VALUES = 1_000_000
#: JavaScript stack per runtime: deep recursion becomes a RangeError, not a crash.
STACK_SIZE = 512 * 1024

# Memory: QuickJS carves small objects from arenas shared by every context of a
# runtime, so memory cannot be charged to one context exactly. What is enforced
# instead: one script call may grow its thread's engine heap by at most
# ``call_growth`` bytes, and the heap of one thread's runtime may not exceed
# ``thread_cap`` bytes (0 = no cap). A script that goes over fails with
# error.execution; the host is unaffected.
cdef bint _USE_BYTECODE = True
cdef size_t _call_growth = 64 * 1024 * 1024
cdef size_t _thread_cap = 1024 * 1024 * 1024


def set_memory_limits(call_growth: int, thread_cap: int) -> None:
    """Bytes one script call may add to the engine heap, and the most one thread's heap may hold (0 = none)."""
    global _call_growth, _thread_cap
    if call_growth < 0 or thread_cap < 0:
        raise ValueError("memory limits must be >= 0")
    _call_growth = call_growth
    _thread_cap = thread_cap


def use_bytecode(flag: bool) -> None:
    """Compile expressions once per thread and load the bytecode per session (True), or parse per session."""
    global _USE_BYTECODE
    _USE_BYTECODE = flag


def memory_limits() -> tuple[int, int]:
    """``(call_growth, thread_cap)`` in bytes."""
    return _call_growth, _thread_cap


# ---------------------------------------------------------------- the runtime's C state

cdef struct RtState:
    double deadline         # CLOCK_MONOTONIC seconds; 0 = none (written by the core)
    int* terminate          # the running context's terminate flag, or NULL
    size_t used             # bytes the engine holds from malloc (arenas and large blocks)
    size_t limit            # allocations beyond this fail (0 = none)
    int exceeded            # an allocation failed on ``limit`` during the current call

cdef struct Block:
    size_t size
    size_t pad              # keeps the user pointer 16-byte aligned


cdef void* _js_malloc(void* opaque, size_t size) noexcept nogil:
    cdef RtState* st = <RtState*>opaque
    if st.limit and st.used + size > st.limit:
        st.exceeded = 1
        return NULL
    cdef Block* b = <Block*>malloc(sizeof(Block) + size)
    if b == NULL:
        return NULL
    b.size = size
    st.used += size
    return <void*>(b + 1)


cdef void* _js_calloc(void* opaque, size_t count, size_t size) noexcept nogil:
    if size and count > (<size_t>-1) // size:
        return NULL
    cdef void* p = _js_malloc(opaque, count * size)
    if p != NULL:
        memset(p, 0, count * size)
    return p


cdef void _js_free(void* opaque, void* ptr) noexcept nogil:
    if ptr == NULL:
        return
    cdef Block* b = (<Block*>ptr) - 1
    (<RtState*>opaque).used -= b.size
    free(b)


cdef void* _js_realloc(void* opaque, void* ptr, size_t size) noexcept nogil:
    cdef RtState* st = <RtState*>opaque
    if ptr == NULL:
        return _js_malloc(opaque, size)
    cdef Block* b = (<Block*>ptr) - 1
    cdef size_t old = b.size
    if size > old and st.limit and st.used + (size - old) > st.limit:
        st.exceeded = 1
        return NULL
    b = <Block*>realloc(b, sizeof(Block) + size)
    if b == NULL:
        return NULL
    b.size = size
    st.used = st.used - old + size
    return <void*>(b + 1)


cdef size_t _js_usable_size(const void* ptr) noexcept nogil:
    return ((<Block*>ptr) - 1).size


cdef const char* _EVENT_FIELDS[10]
# The eight fields of _event, then the two properties Context._to_py looks up on every object.
_EVENT_FIELDS[:] = [b"name", b"type", b"sendid", b"origin", b"origintype", b"invokeid", b"data", b"raw",
                    b"toJSON", b"__og_xml"]

cdef JSMallocFunctions _MALLOC
_MALLOC.js_calloc = _js_calloc
_MALLOC.js_malloc = _js_malloc
_MALLOC.js_free = _js_free
_MALLOC.js_realloc = _js_realloc
_MALLOC.js_malloc_usable_size = _js_usable_size


cdef int _interrupt(JSRuntime* rt, void* opaque) noexcept nogil:
    cdef RtState* st = <RtState*>opaque
    cdef timespec ts
    if st.terminate != NULL and st.terminate[0]:
        return 1
    if st.deadline > 0:
        clock_gettime(CLOCK_MONOTONIC, &ts)
        if <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9 >= st.deadline:
            return 1
    # Let other Python threads run now and then (terminate(), the host's own
    # threads): a long script holds the GIL otherwise.
    PyEval_RestoreThread(PyEval_SaveThread())
    return 0


@cython.no_gc_clear
@cython.final
cdef class Runtime:
    """One QuickJS runtime; each thread has its own (see :func:`runtime`)."""

    cdef JSRuntime* rt
    cdef RtState st
    cdef JSContext* checker        # for compile-only syntax checks
    cdef int depth                 # nested calls in progress
    cdef unsigned long thread      # the thread running a call while depth > 0
    cdef list deferred             # contexts to free once no call is running
    cdef dict bytecode             # source -> bytecode compiled by this runtime (trusted: our own)
    cdef Py_ssize_t live           # contexts alive
    cdef Py_ssize_t freed          # contexts freed since the last cycle collection
    cdef int* saved[64]            # terminate flags of the calls this one nests in
    cdef JSAtom event_atoms[10]    # _EVENT_FIELDS, looked up once (atoms belong to the runtime)

    def __cinit__(self):
        memset(&self.st, 0, sizeof(RtState))
        self.st.limit = _thread_cap
        self.deferred = []
        self.bytecode = {}
        self.rt = JS_NewRuntime2(&_MALLOC, &self.st)
        if self.rt == NULL:
            raise MemoryError("cannot create a QuickJS runtime")
        JS_SetMaxStackSize(self.rt, STACK_SIZE)
        JS_SetInterruptHandler(self.rt, _interrupt, &self.st)
        self.checker = JS_NewContext(self.rt)
        if self.checker == NULL:
            raise MemoryError("cannot create a QuickJS context")
        cdef int i
        for i in range(10):
            self.event_atoms[i] = JS_NewAtom(self.checker, _EVENT_FIELDS[i])

    def __dealloc__(self):
        cdef int i
        self._free_deferred()
        if self.checker != NULL:
            for i in range(10):
                JS_FreeAtom(self.checker, self.event_atoms[i])
            JS_FreeContext(self.checker)
        if self.rt != NULL:
            JS_FreeRuntime(self.rt)

    cdef void _free_deferred(self) noexcept:
        cdef size_t p
        while self.deferred:
            p = self.deferred.pop()
            self._free_context(<JSContext*>p)

    cdef void _free_context(self, JSContext* ctx) noexcept:
        # A freed context leaves cycles (its global object and functions) that
        # only the collector reclaims; context creation does not drive the
        # collector (see Context.__cinit__), so the frees do.
        JS_FreeContext(ctx)
        self.live -= 1
        self.freed += 1
        if self.freed >= 64 and self.freed * 2 >= self.live:
            self.freed = 0
            JS_RunGC(self.rt)

    cdef int _enter(self, Context c) except -1:
        """Before any engine call: one thread at a time, stack top, memory limit, terminate flag."""
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef size_t lim
        if self.depth == 0:
            self.thread = me
            JS_UpdateStackTop(self.rt)
            lim = self.st.used + _call_growth if _call_growth else 0
            if _thread_cap and (lim == 0 or lim > _thread_cap):
                lim = _thread_cap
            self.st.limit = lim
            self.st.exceeded = 0
        elif self.thread != me:
            raise ExecutionError("this thread's ECMAScript engine is running a script in another thread")
        elif self.depth >= 64:
            raise ExecutionError("ECMAScript calls nest too deeply")
        if c is not None and c.terminate_flag:
            c.terminate_flag = 0
            raise ScriptInterrupted("script terminated")
        self.saved[self.depth] = self.st.terminate
        self.st.terminate = &c.terminate_flag if c is not None else NULL
        self.depth += 1
        return 0

    cdef void _leave(self) noexcept:
        self.depth -= 1
        self.st.terminate = self.saved[self.depth]
        if self.depth == 0:
            self.st.limit = _thread_cap
            if self.deferred:
                self._free_deferred()

    def deadline_address(self) -> int:
        """Address of the C double holding this runtime's deadline."""
        return <size_t>&self.st.deadline

    @property
    def deadline(self) -> float:
        return self.st.deadline

    @deadline.setter
    def deadline(self, double value):
        self.st.deadline = value

    @property
    def live_contexts(self) -> int:
        """Contexts of this runtime not yet freed (a context is freed with its session)."""
        return self.live

    @property
    def heap_bytes(self) -> int:
        """Bytes the engine currently holds from malloc on this runtime."""
        return self.st.used

    def collect(self) -> None:
        """Run QuickJS's cycle collector now."""
        if self.depth == 0:
            JS_RunGC(self.rt)

    cdef str _compile_error(self, str src, int flags):
        """None when ``src`` compiles (nothing runs), else the first line of the SyntaxError."""
        cdef Py_ssize_t n
        cdef const char* text = PyUnicode_AsUTF8AndSize(src, &n)
        cdef JSValue r = JS_Eval(self.checker, text, n, "<check>",
                                 JS_EVAL_TYPE_GLOBAL | JS_EVAL_FLAG_COMPILE_ONLY | flags)
        if not JS_IsException(r):
            JS_FreeValue(self.checker, r)
            return None
        return _error_text(self.checker, JS_GetException(self.checker))

    cdef bytes _bytecode_of(self, str src):
        """``src`` compiled once per runtime (global code), as bytecode; None when it does not compile."""
        cdef bytes code = self.bytecode.get(src)
        cdef Py_ssize_t n
        cdef const char* text
        cdef JSValue fn
        cdef size_t size
        cdef unsigned char* buf
        if code is not None:
            return code
        text = PyUnicode_AsUTF8AndSize(src, &n)
        fn = JS_Eval(self.checker, text, n, "<expr>", JS_EVAL_TYPE_GLOBAL | JS_EVAL_FLAG_COMPILE_ONLY)
        if JS_IsException(fn):
            JS_FreeValue(self.checker, JS_GetException(self.checker))
            return None
        buf = JS_WriteObject(self.checker, &size, fn, JS_WRITE_OBJ_BYTECODE)
        JS_FreeValue(self.checker, fn)
        if buf == NULL:
            JS_FreeValue(self.checker, JS_GetException(self.checker))
            return None
        try:
            code = buf[:size]
        finally:
            js_free(self.checker, buf)
        if len(self.bytecode) < 65536:
            self.bytecode[src] = code
        return code


cdef object _local = threading.local()


def runtime() -> Runtime:
    """The calling thread's runtime (created on first use)."""
    try:
        return _local.rt
    except AttributeError:
        rt = _local.rt = Runtime()
        return rt


# ---------------------------------------------------------------- syntax checks

cdef str _text_of(JSContext* ctx, JSValue v):
    """A JS string value as Python str (lone surrogates kept); frees ``v``."""
    cdef size_t n
    cdef const char* s = JS_ToCStringLen(ctx, &n, v)
    JS_FreeValue(ctx, v)
    if s == NULL:
        JS_FreeValue(ctx, JS_GetException(ctx))
        return "?"
    try:
        return PyUnicode_DecodeUTF8(s, n, "surrogatepass")
    finally:
        JS_FreeCString(ctx, s)


cdef str _error_text(JSContext* ctx, JSValue exc):
    """``Name: message`` of a thrown value without running its toString; frees ``exc``."""
    cdef JSValue name, message
    cdef str out
    try:
        if JS_IsError(exc):
            name = JS_GetPropertyStr(ctx, exc, "name")
            message = JS_GetPropertyStr(ctx, exc, "message")
            out = (_text_of(ctx, name) if JS_IsString(name) else "Error") + ": " + (
                _text_of(ctx, message) if JS_IsString(message) else "")
            if not JS_IsString(name):
                JS_FreeValue(ctx, name)
            if not JS_IsString(message):
                JS_FreeValue(ctx, message)
            if JS_HasException(ctx):
                JS_FreeValue(ctx, JS_GetException(ctx))
            return out.split("\n", 1)[0]
        if JS_IsObject(exc):
            return "uncaught exception (an object)"
        return "uncaught exception: " + _text_of(ctx, JS_ToString(ctx, exc))
    finally:
        JS_FreeValue(ctx, exc)


_RESERVED_GLOBALS = frozenset({"undefined", "NaN", "Infinity"})


cdef str _balanced(Runtime rt, str text):
    # T is one expression that cannot close its wrapper only if it compiles
    # inside both (...) and [...]: a token that closed the wrapper would have
    # to be ")" in one and "]" in the other. The newline ends a // comment.
    err = rt._compile_error("(" + text + "\n)", 0)
    if err is None:
        err = rt._compile_error("[" + text + "\n]", 0)
    return err


cdef str _location_error(Runtime rt, str text, bint strict):
    err = _balanced(rt, text)
    if err is None:
        err = rt._compile_error("(" + text + "\n) = 0", JS_EVAL_FLAG_STRICT if strict else 0)
    return err


def check(kind: str, text: str, location: str | None = None, extra: tuple[str, ...] = ()) -> str | None:
    """Why ``text`` is not a valid expression of ``kind`` (None when it is). Compiles, never runs.

    Kinds as in :class:`~orsguard.datamodels.base.Expression`, plus ``data``
    (``text`` is a ``<data>`` id: a name that can be declared and assigned).
    """
    cdef Runtime rt = runtime()
    if kind == "data":
        if not text.replace("$", "_").isidentifier() or text in _RESERVED_GLOBALS:
            return "is not a valid ECMAScript variable name"
        err = rt._compile_error("var " + text + "; " + text + " = 0;", JS_EVAL_FLAG_STRICT)
        return None if err is None else "is not a valid ECMAScript variable name (a reserved word: " + err + ")"
    if kind == "script":
        return rt._compile_error(text, 0)
    if kind in ("assign", "setter"):
        err = _location_error(rt, location or "", True)
        if err is not None:
            return "location " + repr(location) + " is not assignable: " + err
        if kind == "setter":
            return None
    if kind == "value" and location is not None:
        err = _location_error(rt, location, False)
        return None if err is None else "location " + repr(location) + " is not assignable: " + err
    if kind == "foreach":
        for role, name in zip(("item", "index"), extra):
            if name:
                err = _location_error(rt, name, False)
                if err is not None:
                    return "foreach " + role + " " + repr(name) + " is not assignable: " + err
    return _balanced(rt, text)


# ---------------------------------------------------------------- conversion rules (no engine)

cdef enum:
    # Ancestors kept in a C array: a container is compared with at most this
    # many; deeper ones go to a set, made only for data that nests this deep.
    _NEAR = 32


cdef struct _Walk:
    Py_ssize_t budget
    PyObject* near[_NEAR]          # the containers on the path at depths 0 .. _NEAR-1 (borrowed)
    PyObject* far                  # a set of id()s of those deeper, or NULL


cdef int _validate(object v, int depth, _Walk* walk) except -1:
    # Allocates nothing for the usual event data: Session.send runs it on every event.
    cdef type t = type(v)
    cdef int i, overflow
    cdef long long n
    walk.budget -= 1
    if walk.budget < 0:
        raise ValueError(f"value has more than {MAX_VALUES} parts")
    if v is None or t is bool or t is float:
        return 0
    if t is int:
        n = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow or not (-(1 << 53) <= n <= (1 << 53)):
            _bigint_text(v)
        return 0
    if isinstance(v, str):
        return 0
    if t is list or t is tuple or t is dict or isinstance(v, (list, tuple, dict)):
        if depth >= MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} levels")
        for i in range(depth if depth < _NEAR else _NEAR):
            if walk.near[i] == <PyObject*>v:
                raise ValueError("value contains itself (a cycle)")
        if depth < _NEAR:
            walk.near[depth] = <PyObject*>v
        else:
            if walk.far == NULL:
                far = set()
                Py_INCREF(far)
                walk.far = <PyObject*>far
            if id(v) in <set>walk.far:
                raise ValueError("value contains itself (a cycle)")
            (<set>walk.far).add(id(v))
        if isinstance(v, dict):
            for key, item in v.items():
                if not isinstance(key, str):
                    raise ValueError(f"object keys must be strings, not {type(key).__name__}")
                _validate(item, depth + 1, walk)
        else:
            for item in v:
                _validate(item, depth + 1, walk)
        if depth >= _NEAR:
            (<set>walk.far).discard(id(v))
        return 0
    if isinstance(v, int):
        return _validate(int(v), depth, walk)
    if isinstance(v, float):
        return 0
    raise ValueError(f"a {t.__name__} cannot be an ECMAScript value")


cdef str _bigint_text(object v):
    try:
        return str(v)
    except ValueError:
        raise ValueError("integer has too many digits") from None


def validate(value: object) -> None:
    """Raise ValueError unless ``value`` converts to an ECMAScript value.

    None -> null, bool, int (beyond +-2**53: BigInt), float (NaN and the
    infinities as themselves), str (lone surrogates kept: JS strings are
    UTF-16), list/tuple -> Array, dict with str keys -> Object, XmlContent ->
    a small DOM. Anything else, keys that are not strings, nesting deeper than
    ``MAX_DEPTH``, cycles and more than ``MAX_VALUES`` parts are errors.
    """
    cdef _Walk walk
    walk.budget = MAX_VALUES
    walk.far = NULL
    try:
        _validate(value, 0, &walk)
    finally:
        Py_XDECREF(walk.far)


# ---------------------------------------------------------------- contexts

# Expression kinds, as the datamodel passes them to Context.compile().
KIND_COND = 0
KIND_VALUE = 1
KIND_CALL = 2          # assign, foreach: call, result ignored or a length
KIND_SCRIPT = 3        # global code, run with JS_EvalFunction


cdef JSContext* _new_context(JSRuntime* rt) noexcept:
    # JS_NewContext without typed arrays (14 KiB of every context; documents
    # have no binary data), WeakRef/FinalizationRegistry (they make a run
    # depend on when the collector runs) and `performance` (a clock).
    cdef JSContext* ctx = JS_NewContextRaw(rt)
    if ctx == NULL:
        return NULL
    if (JS_AddIntrinsicBaseObjects(ctx) or JS_AddIntrinsicDate(ctx) or JS_AddIntrinsicEval(ctx)
            or JS_AddIntrinsicRegExp(ctx) or JS_AddIntrinsicJSON(ctx) or JS_AddIntrinsicProxy(ctx)
            or JS_AddIntrinsicMapSet(ctx) or JS_AddIntrinsicPromise(ctx) or JS_AddIntrinsicAToB(ctx)):
        JS_FreeContext(ctx)
        return NULL
    return ctx


cdef JSValue _js_in(JSContext* ctx, JSValueConst this_val, int argc, JSValueConst* argv) noexcept:
    cdef Context self = <Context>JS_GetContextOpaque(ctx)
    cdef str state
    if argc < 1:
        return JS_NewBool(ctx, False)
    try:
        state = _text_of(ctx, JS_ToString(ctx, argv[0]))
        return JS_NewBool(ctx, bool(self.in_state(state)))
    except BaseException as exc:
        return JS_ThrowTypeError(ctx, "In() failed: %s", str(exc).encode("utf-8", "replace"))


cdef JSValue _js_event(JSContext* ctx, JSValueConst this_val, int argc, JSValueConst* argv) noexcept:
    # The getter of _event: the object bind_event stored, with no script call per event;
    # built here on first use when Context.bind left it for later.
    cdef Context self = <Context>JS_GetContextOpaque(ctx)
    try:
        self._build_event()
    except BaseException as exc:
        return JS_ThrowTypeError(ctx, "cannot build _event: %s", str(exc).encode("utf-8", "replace"))
    return JS_DupValue(ctx, self.event)


# Context.bind leaves _event to be built on first use when the event's data is
# made of values whose trip into the engine and back is known: None, bool, str
# (with a UTF-8 form), float, an int up to 2**53, and dicts of them with string
# keys that cannot be array indexes (the engine orders those first) and are not
# the DOM marker ``__og_xml``. _plain gives what that trip returns (a new dict
# for each dict, an int beyond 32 bits as a float), or _NOT_PLAIN. Lists are
# left to the engine: filling an array runs Array.prototype's setters.
cdef object _NOT_PLAIN = object()
cdef int _PLAIN_VALUES = 1000
cdef int _PLAIN_DEPTH = 32


cdef object _plain(object v, int depth, int* budget):
    cdef type t = type(v)
    cdef dict out
    budget[0] -= 1
    if budget[0] < 0:
        return _NOT_PLAIN
    if v is None or t is bool or t is float:
        return v
    if t is str:
        return v if _utf8_ok(v) else _NOT_PLAIN
    if t is int:
        if -2147483648 <= v <= 2147483647:
            return v
        if -(1 << 53) <= v <= (1 << 53):
            return float(v)
        return _NOT_PLAIN
    if t is not dict or depth >= _PLAIN_DEPTH:
        return _NOT_PLAIN
    out = {}
    for key, item in (<dict>v).items():
        if type(key) is not str or not _plain_key(key):
            return _NOT_PLAIN
        item = _plain(item, depth + 1, budget)
        if item is _NOT_PLAIN:
            return _NOT_PLAIN
        out[key] = item
    return out


cdef inline bint _plain_key(str key):
    if key and "0" <= key[0] <= "9":
        return False
    return key != "__og_xml" and _utf8_ok(key)


cdef object _plain_copy(object v):
    cdef int budget = _PLAIN_VALUES
    return _plain(v, 0, &budget)


# One engine operation, run by Context._engine under the runtime's guard: a
# call, a compiled script run, or source (or this runtime's bytecode) loaded.
cdef struct Op:
    JSValue fn               # the function to call, or the compiled script to run
    JSValue this_val
    int argc
    JSValue* argv
    const char* text         # source text, or bytecode when ``bytecode``
    Py_ssize_t n
    const char* filename
    int flags                # JS_Eval flags for source
    bint bytecode
    bint run                 # run what was loaded: its completion value is the result

ctypedef JSValue (*OpFn)(JSContext*, Op*) noexcept nogil


cdef JSValue _op_call(JSContext* ctx, Op* op) noexcept nogil:
    return JS_Call(ctx, op.fn, op.this_val, op.argc, op.argv)


cdef JSValue _op_run(JSContext* ctx, Op* op) noexcept nogil:
    return JS_EvalFunction(ctx, JS_DupValue(ctx, op.fn))


cdef JSValue _op_load(JSContext* ctx, Op* op) noexcept nogil:
    cdef JSValue r
    if op.bytecode:
        r = JS_ReadObject(ctx, <const unsigned char*>op.text, op.n, JS_READ_OBJ_BYTECODE)
    else:
        r = JS_Eval(ctx, op.text, op.n, op.filename, op.flags)
    if op.run and not JS_IsException(r):
        r = JS_EvalFunction(ctx, r)
    return r


@cython.no_gc_clear
@cython.final
cdef class Context:
    """One session's JavaScript context on the calling thread's runtime.

    ``in_state(id) -> bool`` backs ``In()``; ``xml_tree(xml) -> [tag, attrs,
    children]`` parses XmlContent for the DOM prelude. Functions compiled with
    :meth:`compile` are kept in slots ``0..n-1`` and called by index.
    """

    cdef JSContext* ctx
    cdef readonly Runtime runtime
    cdef int terminate_flag
    cdef Py_ssize_t nslots
    cdef JSValue* slots
    cdef JSValue dom
    cdef JSValue event             # the value of _event
    cdef tuple pending             # fields of the bound event whose object is not built yet
    cdef object pdata              # its data (_plain_copy), never handed out itself
    cdef unsigned char* direct     # per slot: 1 when the expression is exactly _event.data
    cdef JSValue objproto          # Object.prototype of this context
    cdef JSValue glob              # the global object
    cdef JSAtom* names             # per slot: the name a value expression consists of, or 0
    cdef JSValue bigint
    cdef public object in_state
    cdef public object xml_tree
    cdef public object compiler
    cdef public object bind_failed

    def __cinit__(self, Py_ssize_t nslots, str prelude, object in_state, object xml_tree, object compiler):
        cdef Py_ssize_t i
        cdef JSValue r
        self.runtime = runtime()
        self.compiler = compiler
        self.bind_failed = None
        self.in_state = in_state
        self.xml_tree = xml_tree
        self.dom = JS_UNDEFINED
        self.event = JS_UNDEFINED
        self.objproto = JS_UNDEFINED
        self.glob = JS_UNDEFINED
        self.bigint = JS_UNDEFINED
        self.slots = <JSValue*>malloc(sizeof(JSValue) * (nslots if nslots > 0 else 1))
        self.direct = <unsigned char*>calloc(nslots if nslots > 0 else 1, 1)
        self.names = <JSAtom*>calloc(nslots if nslots > 0 else 1, sizeof(JSAtom))
        if self.slots == NULL or self.direct == NULL or self.names == NULL:
            raise MemoryError()
        self.nslots = nslots
        for i in range(nslots):
            self.slots[i] = JS_UNDEFINED
        # A new context is live data, not garbage: its allocations must not
        # trigger the collector (which scans every context of the runtime), or
        # creating N sessions would cost O(N) scans of everything alive.
        cdef JSRuntime* jrt = self.runtime.rt
        cdef size_t threshold = JS_GetGCThreshold(jrt)
        cdef size_t used = self.runtime.st.used
        JS_SetGCThreshold(jrt, <size_t>-1)
        self.runtime._enter(None)
        try:
            self.ctx = _new_context(jrt)
            if self.ctx == NULL:
                raise MemoryError("cannot create a QuickJS context")
            self.runtime.live += 1
            JS_SetContextOpaque(self.ctx, <void*>self)
            glob = JS_GetGlobalObject(self.ctx)
            JS_SetPropertyStr(self.ctx, glob, "In", JS_NewCFunction(self.ctx, _js_in, "In", 1))
            JS_SetPropertyStr(self.ctx, glob, "__og_event", JS_NewCFunction(self.ctx, _js_event, "get _event", 0))
            self.bigint = JS_GetPropertyStr(self.ctx, glob, "BigInt")
            self.objproto = JS_GetPrototype(self.ctx, glob)
            self.glob = glob
            self._load(prelude, True, &r)
            JS_FreeValue(self.ctx, r)
            glob = JS_GetGlobalObject(self.ctx)
            self.dom = JS_GetPropertyStr(self.ctx, glob, "__og_dom")
            JS_FreeValue(self.ctx, glob)
        finally:
            self.runtime._leave()
            JS_SetGCThreshold(jrt, threshold + (self.runtime.st.used - used
                                                if self.runtime.st.used > used else 0))

    def __dealloc__(self):
        self._free()
        if self.slots != NULL:
            free(self.slots)
            self.slots = NULL
        if self.direct != NULL:
            free(self.direct)
            self.direct = NULL
        if self.names != NULL:
            free(self.names)
            self.names = NULL

    cdef _free(self):
        cdef Py_ssize_t i
        cdef JSContext* ctx = self.ctx
        if ctx == NULL:
            return
        self.ctx = NULL
        for i in range(self.nslots):
            JS_FreeValue(ctx, self.slots[i])
            self.slots[i] = JS_UNDEFINED
            if self.names[i]:
                JS_FreeAtom(ctx, self.names[i])
                self.names[i] = 0
        JS_FreeValue(ctx, self.glob)
        self.glob = JS_UNDEFINED
        JS_FreeValue(ctx, self.dom)
        JS_FreeValue(ctx, self.event)
        self.event = JS_UNDEFINED
        self.pending = None
        self.pdata = None
        JS_FreeValue(ctx, self.objproto)
        self.objproto = JS_UNDEFINED
        JS_FreeValue(ctx, self.bigint)
        JS_SetContextOpaque(ctx, NULL)
        if self.runtime.depth > 0:
            # A call is running on this runtime (maybe paused in another thread):
            # free later, when none is.
            self.runtime.deferred.append(<size_t>ctx)
        else:
            self.runtime._free_context(ctx)

    def close(self) -> None:
        """Free the context now; idempotent. Later calls raise ExecutionError."""
        self._free()

    @property
    def closed(self) -> bool:
        return self.ctx == NULL

    def terminate(self) -> None:
        """Stop the script this context runs now, or its next one (any thread)."""
        self.terminate_flag = 1

    # ------------------------------------------------------------ calling

    cdef int _check_open(self) except -1:
        if self.ctx == NULL:
            raise ExecutionError("the ECMAScript datamodel is closed")
        return 0

    cdef inline int _ready(self, Py_ssize_t k) except -1:
        """Open, and slot ``k`` compiled (by the ``compiler(k)`` hook on first use)."""
        if self.ctx == NULL:
            raise ExecutionError("the ECMAScript datamodel is closed")
        if not 0 <= k < self.nslots:
            raise IndexError(k)
        if JS_IsUndefined(self.slots[k]):
            self.compiler(k)
        return 0

    cdef object _raise(self):
        """Raise what the pending exception of this context means (ScriptInterrupted or ExecutionError)."""
        cdef JSValue exc = JS_GetException(self.ctx)
        cdef Runtime rt = self.runtime
        if rt.st.exceeded:
            rt.st.exceeded = 0
            JS_FreeValue(self.ctx, exc)
            raise ExecutionError("the script exceeded the engine's memory limit")
        if JS_IsUncatchableError(exc):
            JS_FreeValue(self.ctx, exc)
            self.terminate_flag = 0
            raise ScriptInterrupted("script interrupted (time limit or terminate)")
        raise ExecutionError(_error_text(self.ctx, exc))

    cdef inline int _engine(self, OpFn fn, Op* op, JSValue* out) except -1:
        """Every entry into the engine: ``fn(op)`` under the runtime's guard (see ``Runtime._enter``).

        The result goes to ``out``, owned by the caller; a failure is raised
        (ScriptInterrupted or ExecutionError) and leaves nothing to free.
        """
        cdef Runtime rt = self.runtime
        rt._enter(self)
        out[0] = fn(self.ctx, op)
        rt._leave()
        return self._after(out[0])

    cdef inline int _call(self, JSValue fn, int argc, JSValue* argv, JSValue* out) except -1:
        cdef Op op
        op.fn = fn
        op.this_val = JS_UNDEFINED
        op.argc = argc
        op.argv = argv
        return self._engine(_op_call, &op, out)

    cdef int _after(self, JSValue r) except -1:
        if JS_IsException(r):
            self._raise()
        if self.runtime.st.exceeded:
            # The script caught the failed allocation: it still failed.
            self.runtime.st.exceeded = 0
            JS_FreeValue(self.ctx, r)
            raise ExecutionError("the script exceeded the engine's memory limit")
        return 0

    cdef int _load(self, str src, bint run, JSValue* out) except -1:
        """``src`` from the runtime's bytecode cache into ``out``: run (its value), or the compiled script."""
        cdef bytes code = self.runtime._bytecode_of(src)
        cdef Op op
        op.run = run
        op.bytecode = code is not None
        if code is None:
            # Does not compile: compile here for the error message.
            return self._source(src, "<expr>", JS_EVAL_TYPE_GLOBAL | JS_EVAL_FLAG_COMPILE_ONLY, run, out)
        op.text = code
        op.n = len(code)
        return self._engine(_op_load, &op, out)

    cdef inline int _source(self, str src, const char* filename, int flags, bint run, JSValue* out) except -1:
        """``JS_Eval`` of ``src`` with ``flags`` into ``out`` (then run it, with ``run``)."""
        cdef Op op
        op.text = PyUnicode_AsUTF8AndSize(src, &op.n)
        op.filename = filename
        op.flags = flags
        op.bytecode = False
        op.run = run
        return self._engine(_op_load, &op, out)

    def compile(self, Py_ssize_t k, int kind, str src) -> None:
        """Compile ``src`` into slot ``k``: a function expression, or global code for KIND_SCRIPT.

        The caller has checked the text the source was built from (:func:`check`).
        """
        cdef JSValue r
        self._check_open()
        if not 0 <= k < self.nslots:
            raise IndexError(k)
        if _USE_BYTECODE:
            self._load(src, kind != KIND_SCRIPT, &r)
        elif kind == KIND_SCRIPT:
            self._source(src, "<script>", JS_EVAL_TYPE_GLOBAL | JS_EVAL_FLAG_COMPILE_ONLY, False, &r)
        else:
            self._source(src, "<expr>", JS_EVAL_TYPE_GLOBAL, False, &r)
        JS_FreeValue(self.ctx, self.slots[k])
        self.slots[k] = r

    def compiled(self, Py_ssize_t k) -> bool:
        return 0 <= k < self.nslots and not JS_IsUndefined(self.slots[k])

    def cond(self, Py_ssize_t k) -> bool:
        """Call the function in slot ``k``: its truth."""
        cdef JSValue r
        self._ready(k)
        self._call(self.slots[k], 0, NULL, &r)
        cdef int b = JS_ToBool(self.ctx, r)
        JS_FreeValue(self.ctx, r)
        return b > 0

    def value(self, Py_ssize_t k) -> object:
        """Call the function in slot ``k``: its result as a Python value."""
        cdef JSValue r
        self._ready(k)
        if self.direct[k] and self._event_data_ready():
            return self._event_data()
        if self.names[k] and self._global(self.names[k], &r):
            return self._result(r)
        self._call(self.slots[k], 0, NULL, &r)
        return self._result(r)

    def mark_global_name(self, Py_ssize_t k, str name) -> None:
        """Note that slot ``k`` holds a value expression that is exactly the identifier ``name``.

        Such a slot reads a declared global variable without calling the engine.
        """
        self._check_open()
        if not 0 <= k < self.nslots:
            raise IndexError(k)
        if self.names[k]:
            JS_FreeAtom(self.ctx, self.names[k])
        self.names[k] = JS_NewAtom(self.ctx, name.encode("utf-8"))

    cdef bint _global(self, JSAtom name, JSValue* out) except -1:
        # A declared variable (var, <data>) is a non-configurable data property of the
        # global object, and then no let, const or class can shadow it (a redeclaration
        # is a SyntaxError): the identifier means that property. Anything else
        # (a getter, a configurable property, none) is left to the engine.
        cdef JSPropertyDescriptor desc
        cdef int found
        self.runtime._enter(self)
        found = JS_GetOwnProperty(self.ctx, &desc, self.glob, name)
        self.runtime._leave()
        if found < 0:
            self._raise()
        if found == 0:
            return False
        JS_FreeValue(self.ctx, desc.getter)
        JS_FreeValue(self.ctx, desc.setter)
        if desc.flags & (JS_PROP_CONFIGURABLE | JS_PROP_GETSET):
            JS_FreeValue(self.ctx, desc.value)
            return False
        out[0] = desc.value
        return True

    def mark_event_data(self, Py_ssize_t k) -> None:
        """Note that slot ``k`` holds a value expression that is exactly ``_event.data``.

        While the bound event's object is not built (see :meth:`bind`), such a
        slot gives the event's data from Python, as the engine would convert it.
        """
        if not 0 <= k < self.nslots:
            raise IndexError(k)
        self.direct[k] = 1

    cdef bint _event_data_ready(self) except -1:
        # No script has seen this event's object (it does not exist yet), so its
        # data is as bound; _to_py would look up toJSON and __og_xml on a dict,
        # through Object.prototype, which a document may have given either.
        cdef JSAtom* atoms = self.runtime.event_atoms
        cdef int found
        if self.pending is None:
            return False
        if type(self.pdata) is dict:
            found = JS_GetOwnProperty(self.ctx, NULL, self.objproto, atoms[8])
            if found == 0:
                found = JS_GetOwnProperty(self.ctx, NULL, self.objproto, atoms[9])
            if found < 0:
                self._raise()
            if found:
                return False
        return True

    cdef object _event_data(self):
        # Under the runtime's guard like a call: same thread rule, same terminate request.
        self.runtime._enter(self)
        self.runtime._leave()
        return _plain_copy(self.pdata)

    def values(self, tuple ks) -> list:
        """:meth:`value` of each slot in ``ks``, in order, in one call from Python.

        An exception carries ``index``, the position in ``ks`` that raised it.
        """
        cdef JSValue r
        cdef Py_ssize_t i, n = len(ks)
        cdef list out = []
        cdef Py_ssize_t k
        for i in range(n):
            try:
                k = ks[i]
                self._ready(k)
                if self.direct[k] and self._event_data_ready():
                    out.append(self._event_data())
                    continue
                if self.names[k] and self._global(self.names[k], &r):
                    out.append(self._result(r))
                    continue
                self._call(self.slots[k], 0, NULL, &r)
                out.append(self._result(r))
            except BaseException as exc:
                try:
                    exc.index = i
                except AttributeError:
                    pass
                raise
        return out

    def call(self, Py_ssize_t k) -> None:
        """Call the function in slot ``k`` for its effect."""
        cdef JSValue r
        self._ready(k)
        self._call(self.slots[k], 0, NULL, &r)
        JS_FreeValue(self.ctx, r)

    def call_with(self, Py_ssize_t k, object value) -> None:
        """Call the function in slot ``k`` with ``value`` (converted) as its argument."""
        cdef JSValue r, arg
        self._ready(k)
        arg = self._js_arg(value)
        try:
            self._call(self.slots[k], 1, &arg, &r)
        finally:
            JS_FreeValue(self.ctx, arg)
        JS_FreeValue(self.ctx, r)

    def call_int(self, Py_ssize_t k, int64_t i) -> object:
        """Call the function in slot ``k`` with an integer; its result as a Python value."""
        cdef JSValue r
        cdef JSValue arg = JS_NewInt64(self.ctx, i)
        self._ready(k)
        self._call(self.slots[k], 1, &arg, &r)
        return self._result(r)

    def run(self, Py_ssize_t k) -> None:
        """Run the global code compiled in slot ``k``."""
        cdef JSValue r
        cdef Op op
        self._ready(k)
        op.fn = self.slots[k]
        self._engine(_op_run, &op, &r)
        JS_FreeValue(self.ctx, r)

    def eval(self, str src) -> object:
        """Run global code and return its completion value (for tests and benchmarks)."""
        cdef JSValue r
        self._check_open()
        self._source(src, "<eval>", JS_EVAL_TYPE_GLOBAL, False, &r)
        return self._result(r)

    def declare(self, str name) -> None:
        """``var name;`` at global scope (``name`` was checked with check("data", ...))."""
        cdef JSValue r
        self._check_open()
        self._load("var " + name + ";", True, &r)
        JS_FreeValue(self.ctx, r)

    def call_global(self, str name, tuple args) -> object:
        """Call the global function ``name`` with converted ``args``; its result as a Python value."""
        cdef JSValue fn, r
        cdef JSValue argv[8]
        cdef int i, argc = len(args)
        if argc > 8:
            raise ValueError("at most 8 arguments")
        self._check_open()
        glob = JS_GetGlobalObject(self.ctx)
        fn = JS_GetPropertyStr(self.ctx, glob, name.encode("utf-8"))
        JS_FreeValue(self.ctx, glob)
        for i in range(argc):
            argv[i] = JS_UNDEFINED
        try:
            for i in range(argc):
                argv[i] = self._js_arg(args[i])
            self._call(fn, argc, argv, &r)
        finally:
            for i in range(argc):
                JS_FreeValue(self.ctx, argv[i])
            JS_FreeValue(self.ctx, fn)
        return self._result(r)

    def bind_event(self, name, type, sendid, origin, origintype, invokeid, data, raw) -> None:
        """Bind ``_event`` to a new frozen object of these fields (None is ``undefined`` but in name and type).

        Built here rather than by a script: each field is defined once with its
        final attributes, where an object literal and ``Object.freeze`` give every
        event a shape of its own. The object is kept in the context and
        returned by ``_event``'s getter, a C function: binding runs no script.
        """
        cdef JSValue ev
        cdef int i
        cdef tuple values = (name, type, sendid, origin, origintype, invokeid, data, raw)
        cdef JSAtom* atoms = self.runtime.event_atoms
        self._check_open()
        ev = JS_NewObject(self.ctx)
        if JS_IsException(ev):
            self._raise()
        try:
            for i in range(8):
                v = values[i]
                if JS_DefinePropertyValue(self.ctx, ev, atoms[i],
                                          JS_UNDEFINED if v is None and i >= 2 else self._js_arg(v),
                                          JS_PROP_ENUMERABLE) < 0:
                    self._raise()
            JS_PreventExtensions(self.ctx, ev)
        except BaseException:
            JS_FreeValue(self.ctx, ev)
            raise
        JS_FreeValue(self.ctx, self.event)
        self.event = ev
        self.pending = None
        self.pdata = None

    cdef int _build_event(self) except -1:
        """Build the object of the event :meth:`bind` left for later, if any."""
        cdef tuple f = self.pending
        if f is None:
            return 0
        self.bind_event(f[0], f[1], f[2], f[3], f[4], f[5], _plain_copy(self.pdata), f[6])
        return 0

    def bind(self, event) -> None:
        """:meth:`bind_event` with the fields of ``event`` (an ``orsguard._core.Event``).

        When the fields are strings or None and the data is plain (see
        ``_plain``), the object is built when a script first reads ``_event``:
        an event that no script reads costs no engine work, and a ``<param>``
        of exactly ``_event.data`` takes the data from here. Otherwise the
        object is built now; a failure (the data has no ECMAScript form, or the
        conversion was interrupted) goes to the ``bind_failed(event, exc)``
        hook when one is set.
        """
        cdef tuple fields
        if self.ctx != NULL:
            fields = (event.name, event.type, event.sendid, event.origin, event.origintype,
                      event.invokeid, event.raw)
            for v in fields:
                if v is not None and (type(v) is not str or not _utf8_ok(v)):
                    break
            else:
                data = _plain_copy(event.data)
                if data is not _NOT_PLAIN:
                    JS_FreeValue(self.ctx, self.event)
                    self.event = JS_UNDEFINED
                    self.pending = fields
                    self.pdata = data
                    return
        try:
            self.bind_event(event.name, event.type, event.sendid, event.origin, event.origintype,
                            event.invokeid, event.data, event.raw)
        except (ExecutionError, ScriptInterrupted) as exc:
            if self.bind_failed is None:
                raise
            self.bind_failed(event, exc)

    # ------------------------------------------------------------ conversion

    cdef JSValue _js_arg(self, object value) except *:
        """``value`` as a new JS value; ExecutionError when it has no ECMAScript form."""
        if value is None:
            return JS_NULL  # most of an event's fields: no bookkeeping to allocate
        cdef list budget = [MAX_VALUES]
        try:
            return self._to_js(value, 0, budget, set())
        except ValueError as exc:
            raise ExecutionError(str(exc)) from None

    cdef JSValue _str_to_js(self, str s) except *:
        cdef Py_ssize_t n
        cdef const char* text = PyUnicode_AsUTF8AndSize(s, &n) if _utf8_ok(s) else NULL
        cdef bytes utf16
        cdef JSValue v
        if text != NULL:
            v = JS_NewStringLen(self.ctx, text, n)
        else:
            utf16 = s.encode("utf-16-le", "surrogatepass")
            v = JS_NewStringUTF16(self.ctx, <const uint16_t*><const char*>utf16, len(utf16) // 2)
        if JS_IsException(v):
            self._raise()
        return v

    cdef JSValue _to_js(self, object v, int depth, list budget, set path) except *:
        cdef type t = type(v)
        cdef JSValue out, item, key_js
        cdef JSAtom atom
        cdef uint32_t i
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"value has more than {MAX_VALUES} parts")
        if v is None:
            return JS_NULL
        if t is bool:
            return JS_NewBool(self.ctx, v is True)
        if t is float:
            return JS_NewFloat64(self.ctx, v)
        if t is int:
            if -(1 << 53) <= v <= (1 << 53):
                return JS_NewInt64(self.ctx, v)
            return self._bigint(v)
        if t is str:
            return self._str_to_js(v)
        if t is XmlContent:
            return self._xml(v)
        if t is list or t is tuple or t is dict or isinstance(v, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"value nests deeper than {MAX_DEPTH} levels")
            if id(v) in path:
                raise ValueError("value contains itself (a cycle)")
            path.add(id(v))
            if isinstance(v, dict):
                out = JS_NewObject(self.ctx)
                if JS_IsException(out):
                    self._raise()
                try:
                    for key, value in v.items():
                        if not isinstance(key, str):
                            raise ValueError(f"object keys must be strings, not {type(key).__name__}")
                        key_js = self._str_to_js(key)
                        atom = JS_ValueToAtom(self.ctx, key_js)
                        JS_FreeValue(self.ctx, key_js)
                        item = self._to_js(value, depth + 1, budget, path)
                        # Define, not set: a key such as "__proto__" stays a plain property.
                        if JS_DefinePropertyValue(self.ctx, out, atom, item, JS_PROP_C_W_E) < 0:
                            JS_FreeAtom(self.ctx, atom)
                            self._raise()
                        JS_FreeAtom(self.ctx, atom)
                except BaseException:
                    JS_FreeValue(self.ctx, out)
                    raise
            else:
                out = JS_NewArray(self.ctx)
                if JS_IsException(out):
                    self._raise()
                try:
                    i = 0
                    for value in v:
                        item = self._to_js(value, depth + 1, budget, path)
                        if JS_SetPropertyUint32(self.ctx, out, i, item) < 0:
                            self._raise()
                        i += 1
                except BaseException:
                    JS_FreeValue(self.ctx, out)
                    raise
            path.discard(id(v))
            return out
        if isinstance(v, XmlContent):
            return self._xml(v)
        if isinstance(v, str):
            return self._str_to_js(str(v))
        if isinstance(v, bool):
            return JS_NewBool(self.ctx, bool(v))
        if isinstance(v, int):
            return self._to_js(int(v), depth, budget, path)
        if isinstance(v, float):
            return JS_NewFloat64(self.ctx, float(v))
        raise ValueError(f"a {t.__name__} cannot be an ECMAScript value")

    cdef JSValue _bigint(self, object v) except *:
        cdef JSValue s, r
        if -(1 << 63) <= v < (1 << 63):
            return JS_NewBigInt64(self.ctx, v)
        s = self._str_to_js(_bigint_text(v))
        self._call(self.bigint, 1, &s, &r)
        JS_FreeValue(self.ctx, s)
        return r

    cdef JSValue _xml(self, object xml) except *:
        cdef JSValue argv[2]
        cdef JSValue r
        tree = self.xml_tree(str(xml))
        argv[0] = self._js_arg(tree)
        argv[1] = JS_UNDEFINED
        try:
            argv[1] = self._str_to_js(str(xml))
            self._call(self.dom, 2, argv, &r)
        finally:
            JS_FreeValue(self.ctx, argv[0])
            JS_FreeValue(self.ctx, argv[1])
        return r

    cdef object _result(self, JSValue r):
        """A call's result ``r`` as a Python value; ``r`` is freed."""
        try:
            return self._py(r)
        finally:
            JS_FreeValue(self.ctx, r)

    cdef object _py(self, JSValue v):
        """``v`` as a Python value; getters and toJSON it runs are calls like any other."""
        self.runtime._enter(self)
        try:
            return self._to_py(v, 0, [MAX_VALUES])
        finally:
            self.runtime._leave()

    cdef object _to_py(self, JSValue v, int depth, list budget):
        """A JS value as a Python value (JSON-like: functions and symbols become None)."""
        cdef int tag = JS_VALUE_GET_NORM_TAG(v)
        cdef JSValue item, tojson, xml
        cdef Op op
        cdef JSPropertyEnum* tab
        cdef uint32_t n, i
        cdef int64_t length, j
        budget[0] -= 1
        if budget[0] < 0:
            raise ExecutionError(f"value has more than {MAX_VALUES} parts")
        if tag == JS_TAG_INT:
            return JS_VALUE_GET_INT(v)
        if tag == JS_TAG_FLOAT64:
            return JS_VALUE_GET_FLOAT64(v)
        if tag == JS_TAG_BOOL:
            return JS_VALUE_GET_BOOL(v) != 0
        if tag == JS_TAG_NULL or tag == JS_TAG_UNDEFINED:
            return None
        if tag == JS_TAG_STRING or tag == JS_TAG_STRING_ROPE:
            return _text_of(self.ctx, JS_DupValue(self.ctx, v))
        if tag == JS_TAG_BIG_INT or tag == JS_TAG_SHORT_BIG_INT:
            try:
                return int(_text_of(self.ctx, JS_ToString(self.ctx, v)))
            except ValueError:
                raise ExecutionError("BigInt has too many digits for Python") from None
        if tag != JS_TAG_OBJECT or JS_IsFunction(self.ctx, v):
            return None
        if depth >= MAX_DEPTH:
            raise ExecutionError(f"value nests deeper than {MAX_DEPTH} levels (or is cyclic)")
        if JS_IsArray(v):
            if JS_GetLength(self.ctx, v, &length) < 0:
                self._raise()
            out = []
            for j in range(length):
                item = JS_GetPropertyUint32(self.ctx, v, <uint32_t>j)
                if JS_IsException(item):
                    self._raise()
                try:
                    out.append(self._to_py(item, depth + 1, budget))
                finally:
                    JS_FreeValue(self.ctx, item)
            return out
        xml = JS_GetPropertyStr(self.ctx, v, "__og_xml")
        if JS_IsException(xml):
            self._raise()
        if JS_IsString(xml):
            return XmlContent(_text_of(self.ctx, xml))
        JS_FreeValue(self.ctx, xml)
        tojson = JS_GetPropertyStr(self.ctx, v, "toJSON")
        if JS_IsException(tojson):
            self._raise()
        if JS_IsFunction(self.ctx, tojson):
            op.fn = tojson
            op.this_val = v
            op.argc = 0
            op.argv = NULL
            try:
                self._engine(_op_call, &op, &item)
            finally:
                JS_FreeValue(self.ctx, tojson)
            try:
                return self._to_py(item, depth + 1, budget)
            finally:
                JS_FreeValue(self.ctx, item)
        JS_FreeValue(self.ctx, tojson)
        if JS_GetOwnPropertyNames(self.ctx, &tab, &n, v, JS_GPN_STRING_MASK | JS_GPN_ENUM_ONLY) < 0:
            self._raise()
        out = {}
        try:
            for i in range(n):
                item = JS_GetProperty(self.ctx, v, tab[i].atom)
                if JS_IsException(item):
                    self._raise()
                try:
                    tag = JS_VALUE_GET_NORM_TAG(item)
                    if tag == JS_TAG_UNDEFINED or (tag == JS_TAG_OBJECT and JS_IsFunction(self.ctx, item)):
                        continue
                    out[_text_of(self.ctx, JS_AtomToString(self.ctx, tab[i].atom))] = \
                        self._to_py(item, depth + 1, budget)
                finally:
                    JS_FreeValue(self.ctx, item)
        finally:
            JS_FreePropertyEnum(self.ctx, tab, n)
        return out


cdef inline bint _utf8_ok(str s):
    # Strings with lone surrogates have no UTF-8 form; they go through UTF-16.
    try:
        PyUnicode_AsUTF8AndSize(s, NULL)
        return True
    except UnicodeEncodeError:
        return False
