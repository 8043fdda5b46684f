# cython: language_level=3, cdivision=True
"""The step loop of the SCXML algorithm (W3C SCXML 1.0, Appendix D) over flat tables.

A :class:`Machine` holds one document compiled into integer tables, linear in
its size: states are numbered in document order (0 is the ``<scxml>``
element), so entry order is ascending index, exit order descending, and a
state's descendants are one index range. An :class:`Interpreter`
runs one session over a Machine: configuration, queues, history, and the five
guard counters are C fields. Executable content and conditions arrive as
Python callables and indices; this module knows nothing of XML, JavaScript,
clocks beyond the ``now``/``call_at`` protocol, or any transport.
"""

import weakref
from collections import deque

cimport cython
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.pythread cimport PyThread_get_thread_ident
from libc.stdint cimport uint64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC


cdef extern from "Python.h":
    ctypedef struct PyThreadState
    PyThreadState* PyEval_SaveThread() nogil
    void PyEval_RestoreThread(PyThreadState*) nogil

cdef extern from *:
    int ctz64 "__builtin_ctzll"(unsigned long long) noexcept nogil
    int clz64 "__builtin_clzll"(unsigned long long) noexcept nogil

# State kinds.
cdef enum:
    K_ATOMIC = 0
    K_COMPOUND = 1
    K_PARALLEL = 2
    K_FINAL = 3
    K_HISTORY_SHALLOW = 4
    K_HISTORY_DEEP = 5
    K_ROOT = 6

KIND_ATOMIC = K_ATOMIC
KIND_COMPOUND = K_COMPOUND
KIND_PARALLEL = K_PARALLEL
KIND_FINAL = K_FINAL
KIND_HISTORY_SHALLOW = K_HISTORY_SHALLOW
KIND_HISTORY_DEEP = K_HISTORY_DEEP
KIND_ROOT = K_ROOT

# What a state has, so the step loop skips empty Python lists without touching them.
cdef enum:
    F_ONENTRY = 1
    F_ONEXIT = 2
    F_HISTORY = 4
    F_INVOKES = 8
    F_DATA = 16

cdef enum:
    TRAIL_SIZE = 32
    EVENT_CACHE_MAX = 4096

# Limit codes, in the order of ORS's option table.
cdef enum:
    L_MICROSTEPS = 0
    L_ENTRIES = 1
    L_PENDING = 2
    L_TIMEOUT = 3
    L_AGE = 4

LIMIT_OPTIONS = (
    "max-microstep-count",
    "max-state-entry-count",
    "max-pending-events",
    "process-event-timeout",
    "max-session-age",
)

# Session end reasons, as the metrics label them.
cdef enum:
    R_FINAL = 0
    R_LIMIT = 1
    R_ERROR = 2
    R_CANCELLED = 3
END_REASONS = ("final", "limit", "error", "cancelled")


cdef inline double _mono() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def monotonic():
    """The monotonic clock the core measures ``process-event-timeout`` on."""
    return _mono()


class Halt(BaseException):
    """Unwinds the step loop when a session stops inside executable content.

    A BaseException so that no ``except Exception`` in executable content or a
    datamodel can swallow a limit violation or a cancellation.
    """


class ScriptInterrupted(Exception):
    """Raised by a datamodel when its engine interrupted a script at the time limit."""


cdef class Event:
    """An SCXML event as ``_event`` exposes it (spec 5.10.1)."""

    cdef public object name
    cdef public str type
    cdef public object sendid
    cdef public object origin
    cdef public object origintype
    cdef public object invokeid
    cdef public object data
    cdef public object raw                # the message as received (BasicHTTP), else None
    cdef bint chained                     # queued by the session's own macrostep (see enqueue_external)

    def __init__(self, name, data=None, *, str type="external", sendid=None,
                 origin=None, origintype=None, invokeid=None, raw=None):
        self.name = name
        self.raw = raw
        self.data = data
        self.type = type
        self.sendid = sendid
        self.origin = origin
        self.origintype = origintype
        self.invokeid = invokeid

    def __repr__(self):
        return f"Event({self.name!r}, data={self.data!r}, type={self.type!r})"


# ---------------------------------------------------------------- statistics

cdef enum:
    NB_MICRO = 14
    NB_SECONDS = 13
    NB_PENDING = 12
cdef double[NB_MICRO] MICRO_BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 1e308]
cdef double[NB_SECONDS] SECONDS_BOUNDS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 1e308]
cdef double[NB_PENDING] PENDING_BOUNDS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1e308]
cdef enum:
    NB_AGE = 13
cdef double[NB_AGE] AGE_BOUNDS = [1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 604800, 1e308]


cdef inline uint64_t _word_mask(int w, int lo, int hi) noexcept:
    """The bits of word ``w`` whose indices lie in lo..hi (inclusive)."""
    cdef uint64_t mask = ~(<uint64_t>0)
    if w == (lo >> 6):
        mask <<= (lo & 63)
    if w == (hi >> 6):
        mask &= (~(<uint64_t>0)) >> (63 - (hi & 63))
    return mask


cdef inline int _bucket(const double* bounds, int n, double v) noexcept:
    cdef int i
    for i in range(n):
        if v <= bounds[i]:
            return i
    return n - 1


cdef class Stats:
    """Process-wide counters, read by a metrics collector at scrape time.

    Every field is a plain C number so that counting costs an increment; the
    histograms have fixed buckets (see :meth:`snapshot`).
    """

    cdef public unsigned long long sessions_started
    cdef unsigned long long[4] ended
    cdef public long long sessions_active
    cdef unsigned long long[5] violations
    cdef public unsigned long long events_internal
    cdef public unsigned long long events_external
    cdef public unsigned long long microsteps
    cdef unsigned long long[NB_MICRO] h_micro
    cdef double h_micro_sum
    cdef unsigned long long h_micro_n
    cdef unsigned long long[NB_SECONDS] h_sec
    cdef double h_sec_sum
    cdef unsigned long long h_sec_n
    cdef unsigned long long[NB_PENDING] h_pend
    cdef double h_pend_sum
    cdef unsigned long long h_pend_n
    # per-session peaks, observed once when a session ends
    cdef unsigned long long[NB_MICRO] h_pk_micro
    cdef double h_pk_micro_sum
    cdef unsigned long long[NB_MICRO] h_pk_entry
    cdef double h_pk_entry_sum
    cdef unsigned long long[NB_PENDING] h_pk_pend
    cdef double h_pk_pend_sum
    cdef unsigned long long[NB_AGE] h_age
    cdef double h_age_sum
    cdef unsigned long long h_end_n

    cdef inline void observe_macrostep(self, long micro, double seconds, long pending) noexcept:
        self.h_micro[_bucket(MICRO_BOUNDS, NB_MICRO, micro)] += 1
        self.h_micro_sum += micro
        self.h_micro_n += 1
        self.h_sec[_bucket(SECONDS_BOUNDS, NB_SECONDS, seconds)] += 1
        self.h_sec_sum += seconds
        self.h_sec_n += 1
        self.h_pend[_bucket(PENDING_BOUNDS, NB_PENDING, pending)] += 1
        self.h_pend_sum += pending
        self.h_pend_n += 1

    cdef inline void observe_end(self, long micro, long entries, long pending, double age) noexcept:
        self.h_pk_micro[_bucket(MICRO_BOUNDS, NB_MICRO, micro)] += 1
        self.h_pk_micro_sum += micro
        self.h_pk_entry[_bucket(MICRO_BOUNDS, NB_MICRO, entries)] += 1
        self.h_pk_entry_sum += entries
        self.h_pk_pend[_bucket(PENDING_BOUNDS, NB_PENDING, pending)] += 1
        self.h_pk_pend_sum += pending
        self.h_age[_bucket(AGE_BOUNDS, NB_AGE, age)] += 1
        self.h_age_sum += age
        self.h_end_n += 1

    def snapshot(self):
        """All counters as plain Python values (histogram counts per bucket, not cumulative)."""
        return {
            "sessions_started": self.sessions_started,
            "sessions_ended": {END_REASONS[i]: self.ended[i] for i in range(4)},
            "sessions_active": self.sessions_active,
            "limit_violations": {LIMIT_OPTIONS[i]: self.violations[i] for i in range(5)},
            "events": {"internal": self.events_internal, "external": self.events_external},
            "microsteps": self.microsteps,
            "microsteps_per_macrostep": _hist(MICRO_BOUNDS, NB_MICRO, self.h_micro, self.h_micro_sum,
                                              self.h_micro_n),
            "macrostep_seconds": _hist(SECONDS_BOUNDS, NB_SECONDS, self.h_sec, self.h_sec_sum, self.h_sec_n),
            "pending_events": _hist(PENDING_BOUNDS, NB_PENDING, self.h_pend, self.h_pend_sum, self.h_pend_n),
            "peak_microsteps": _hist(MICRO_BOUNDS, NB_MICRO, self.h_pk_micro, self.h_pk_micro_sum, self.h_end_n),
            "peak_state_entries": _hist(MICRO_BOUNDS, NB_MICRO, self.h_pk_entry, self.h_pk_entry_sum,
                                        self.h_end_n),
            "peak_pending": _hist(PENDING_BOUNDS, NB_PENDING, self.h_pk_pend, self.h_pk_pend_sum, self.h_end_n),
            "age_at_end_seconds": _hist(AGE_BOUNDS, NB_AGE, self.h_age, self.h_age_sum, self.h_end_n),
        }


cdef dict _hist(const double* bounds, int n, const unsigned long long* counts, double total,
                unsigned long long count):
    return {
        "buckets": tuple(float("inf") if bounds[i] >= 1e308 else bounds[i] for i in range(n)),
        "counts": tuple(counts[i] for i in range(n)),
        "sum": total,
        "count": count,
    }


default_stats = Stats()


# ---------------------------------------------------------------- the machine

cdef class Machine:
    """A document compiled into flat tables, shared by all its sessions.

    Built from plain Python lists by the document compiler; see ``document.py``
    for how each list is derived from the XML.
    """

    cdef readonly int n              # states, index 0 = <scxml>
    cdef readonly int ntrans
    cdef int W                       # 64-bit words per bitset
    cdef int* kind
    cdef int* parent
    cdef int* initial                # initial transition per compound state / root, or -1
    # States are in document order (pre-order), so the proper descendants of s
    # are the indices s+1 .. s+size[s]: ranges, not per-state bitsets, keep the
    # tables linear in the document.
    cdef int* size
    cdef uint64_t* atomic            # W: states that can be atomic members of a configuration
    cdef unsigned char* s_flags      # F_* per state
    cdef char* t_content             # 1 where the transition has executable content
    cdef int* s_tstart
    cdef int* s_tcount
    cdef int* s_trans
    cdef int* t_source
    cdef int* t_cond                 # condition index, -1 = none
    cdef char* t_internal
    cdef char* t_eventless
    cdef char* t_has_history
    cdef int* t_domain               # static domain, -1 = targetless, -2 = computed at run time
    cdef readonly list ids
    cdef readonly dict index_of      # id -> state index
    cdef readonly list children        # per state: child state indices (no history)
    cdef readonly list history_children
    cdef readonly list targets         # per transition: target state indices
    cdef readonly list events          # per transition: tuple of descriptors, () = eventless
    cdef readonly list content         # per transition: callable or None
    cdef readonly list onentry         # per state: tuple of callables
    cdef readonly list onexit
    cdef readonly list donedata        # per state: callable or None
    cdef readonly list invokes         # per state: tuple of invoke objects
    cdef readonly list data_init       # per state: callable or None (late binding)
    cdef public list labels          # per transition: "a -> b" for trails
    cdef dict _event_cache
    cdef readonly bint has_invokes

    def __init__(self, list ids, list kinds, list parents, list initial, list trans_source,
                 list trans_targets, list trans_events, list trans_cond, list trans_internal,
                 list trans_content, list onentry, list onexit, list donedata, list invokes,
                 list data_init):
        cdef int i, j, s, t, p
        self.n = len(ids)
        self.ntrans = len(trans_source)
        self.W = (self.n + 63) >> 6
        n = self.n
        W = self.W
        T = self.ntrans
        self.kind = <int*>PyMem_Calloc(n, sizeof(int))
        self.parent = <int*>PyMem_Calloc(n, sizeof(int))
        self.initial = <int*>PyMem_Calloc(n, sizeof(int))
        self.size = <int*>PyMem_Calloc(n, sizeof(int))
        self.s_flags = <unsigned char*>PyMem_Calloc(n, sizeof(unsigned char))
        self.t_content = <char*>PyMem_Calloc(T + 1, sizeof(char))
        self.atomic = <uint64_t*>PyMem_Calloc(W, sizeof(uint64_t))
        self.s_tstart = <int*>PyMem_Calloc(n, sizeof(int))
        self.s_tcount = <int*>PyMem_Calloc(n, sizeof(int))
        self.s_trans = <int*>PyMem_Calloc(T + 1, sizeof(int))
        self.t_source = <int*>PyMem_Calloc(T + 1, sizeof(int))
        self.t_cond = <int*>PyMem_Calloc(T + 1, sizeof(int))
        self.t_internal = <char*>PyMem_Calloc(T + 1, sizeof(char))
        self.t_eventless = <char*>PyMem_Calloc(T + 1, sizeof(char))
        self.t_has_history = <char*>PyMem_Calloc(T + 1, sizeof(char))
        self.t_domain = <int*>PyMem_Calloc(T + 1, sizeof(int))
        if (not self.kind or not self.parent or not self.initial or not self.size or not self.s_flags
                or not self.t_content
                or not self.atomic or not self.s_tstart or not self.s_tcount
                or not self.s_trans or not self.t_source or not self.t_cond or not self.t_internal
                or not self.t_eventless or not self.t_has_history or not self.t_domain):
            raise MemoryError()
        self.ids = list(ids)
        self.index_of = {sid: i for i, sid in enumerate(ids)}
        self.children = [[] for _ in range(n)]
        self.history_children = [[] for _ in range(n)]
        for i in range(n):
            self.kind[i] = kinds[i]
            self.parent[i] = parents[i]
            self.initial[i] = initial[i]
        self._check_preorder()
        for i in range(n - 1, 0, -1):
            self.size[self.parent[i]] += self.size[i] + 1
        for i in range(1, n):
            p = self.parent[i]
            if self.kind[i] == K_HISTORY_SHALLOW or self.kind[i] == K_HISTORY_DEEP:
                self.history_children[p].append(i)
            else:
                self.children[p].append(i)
        for i in range(1, n):
            if self.kind[i] == K_ATOMIC or self.kind[i] == K_FINAL:
                self.atomic[i >> 6] |= (<uint64_t>1) << (i & 63)
        # transitions, grouped per source state in document order
        self.targets = [list(x) for x in trans_targets]
        self.events = [tuple(x) for x in trans_events]
        self.content = list(trans_content)
        per_state = [[] for _ in range(n)]
        for t in range(T):
            s = trans_source[t]
            self.t_source[t] = s
            self.t_cond[t] = trans_cond[t]
            self.t_internal[t] = 1 if trans_internal[t] else 0
            self.t_eventless[t] = 1 if not self.events[t] else 0
            for j in self.targets[t]:
                if self.kind[j] == K_HISTORY_SHALLOW or self.kind[j] == K_HISTORY_DEEP:
                    self.t_has_history[t] = 1
            # initial and history default transitions are never selected by events
            if s >= 0 and not self._is_pseudo(t, initial, kinds):
                per_state[s].append(t)
        j = 0
        for s in range(n):
            self.s_tstart[s] = j
            self.s_tcount[s] = len(per_state[s])
            for t in per_state[s]:
                self.s_trans[j] = t
                j += 1
        for t in range(T):
            self.t_domain[t] = self._static_domain(t)
        self.onentry = [tuple(x) for x in onentry]
        self.onexit = [tuple(x) for x in onexit]
        self.donedata = list(donedata)
        self.invokes = [tuple(x) for x in invokes]
        self.has_invokes = any(self.invokes)
        self.data_init = list(data_init)
        for s in range(n):
            self.s_flags[s] = ((F_ONENTRY if self.onentry[s] else 0) | (F_ONEXIT if self.onexit[s] else 0)
                               | (F_HISTORY if self.history_children[s] else 0)
                               | (F_INVOKES if self.invokes[s] else 0)
                               | (F_DATA if self.data_init[s] is not None else 0))
        for t in range(T):
            self.t_content[t] = 1 if self.content[t] is not None else 0
        self.labels = []
        for t in range(T):
            src = self.ids[self.t_source[t]]
            tgt = " ".join(self.ids[j] for j in self.targets[t]) if self.targets[t] else "(targetless)"
            self.labels.append(f"{src} -> {tgt}")
        self._event_cache = {}

    cdef _check_preorder(self):
        # The descendant ranges are only right for document order: each state's
        # parent is the state before it or one of that state's ancestors.
        cdef list stack = [0]
        cdef int i
        if self.n and self.parent[0] != -1:
            raise ValueError("state 0 must be the root (parent -1)")
        for i in range(1, self.n):
            while stack and stack[-1] != self.parent[i]:
                stack.pop()
            if not stack:
                raise ValueError(f"states are not in document order at index {i}")
            stack.append(i)

    cdef bint _is_pseudo(self, int t, list initial, list kinds):
        cdef int s = self.t_source[t]
        if initial[s] == t:
            return True
        return kinds[s] == K_HISTORY_SHALLOW or kinds[s] == K_HISTORY_DEEP

    def __dealloc__(self):
        PyMem_Free(self.kind)
        PyMem_Free(self.parent)
        PyMem_Free(self.initial)
        PyMem_Free(self.size)
        PyMem_Free(self.s_flags)
        PyMem_Free(self.t_content)
        PyMem_Free(self.atomic)
        PyMem_Free(self.s_tstart)
        PyMem_Free(self.s_tcount)
        PyMem_Free(self.s_trans)
        PyMem_Free(self.t_source)
        PyMem_Free(self.t_cond)
        PyMem_Free(self.t_internal)
        PyMem_Free(self.t_eventless)
        PyMem_Free(self.t_has_history)
        PyMem_Free(self.t_domain)

    cdef inline bint is_desc(self, int a, int b) noexcept:
        """True when a is a proper descendant of b."""
        return b < a <= b + self.size[b]

    cdef inline bint is_compound_like(self, int s) noexcept:
        return self.kind[s] == K_COMPOUND or self.kind[s] == K_ROOT

    cdef int _lcca(self, int first, list rest):
        cdef int a = self.parent[first]
        cdef int r
        cdef bint ok
        while a >= 0:
            if self.is_compound_like(a):
                ok = True
                for r in rest:
                    if not self.is_desc(r, a):
                        ok = False
                        break
                if ok:
                    return a
            a = self.parent[a]
        return 0

    cdef int _static_domain(self, int t):
        cdef int s = self.t_source[t]
        cdef int j
        cdef bint all_desc
        if not self.targets[t]:
            return -1
        if self.t_has_history[t]:
            return -2
        if self.t_internal[t] and self.kind[s] == K_COMPOUND:
            all_desc = True
            for j in self.targets[t]:
                if not self.is_desc(j, s):
                    all_desc = False
                    break
            if all_desc:
                return s
        return self._lcca(s, self.targets[t])

    cdef bytes match_table(self, str name):
        """Per transition, 1 where one of its descriptors matches event ``name``."""
        cdef bytes cached = self._event_cache.get(name)
        if cached is not None:
            return cached
        cdef bytearray table = bytearray(self.ntrans)
        cdef int t
        for t in range(self.ntrans):
            for d in self.events[t]:
                if d == "*" or d == name or (name.startswith(d) and name[len(d)] == "."):
                    table[t] = 1
                    break
        cached = bytes(table)
        if len(self._event_cache) >= EVENT_CACHE_MAX:
            self._event_cache.clear()
        self._event_cache[name] = cached
        return cached


# ---------------------------------------------------------------- termination

class Termination:
    """Why a guard stopped a session: the ORS option, its value, what was seen, and where.

    ``trail`` lists the last transitions taken, oldest first, each as
    ``"source -> target"``; ``path`` strings their states together so a loop
    reads as ``a -> b -> a -> b``.
    """

    __slots__ = ("option", "limit", "observed", "state", "transition", "trail")

    def __init__(self, option, limit, observed, state, transition, trail):
        self.option = option
        self.limit = limit
        self.observed = observed
        self.state = state
        self.transition = transition
        self.trail = list(trail)

    @property
    def path(self):
        parts = []
        for label in self.trail:
            src, _, tgt = label.partition(" -> ")
            if not parts or parts[-1] != src:
                parts.append(src)
            parts.append(tgt)
        return " -> ".join(parts)

    @property
    def loop(self):
        """The shortest cycle the trail repeats, as ``(path, times)``, or None."""
        trail = self.trail
        n = len(trail)
        for period in range(1, n // 2 + 1):
            if all(trail[i] == trail[i + period] for i in range(n - period)):
                cycle = Termination(self.option, self.limit, self.observed, None, None, trail[:period])
                return cycle.path, n / period
        return None

    def as_dict(self):
        """A JSON-ready dict of all fields."""
        return {
            "option": self.option,
            "limit": self.limit,
            "observed": self.observed,
            "state": self.state,
            "transition": self.transition,
            "trail": list(self.trail),
        }

    def __str__(self):
        observed = self.observed
        if isinstance(observed, float):
            observed = f"{observed:.3f}s"
        where = []
        if self.transition:
            where.append(f"taking {self.transition}")
        if self.state:
            where.append(f"entering {self.state}")
        text = f"{self.option}={self.limit:g} exceeded (observed {observed})"
        if where:
            text += " while " + ", ".join(where)
        loop = self.loop
        if loop is not None:
            path, times = loop
            text += f"; loop: {path} (repeated {times:g} times in the last {len(self.trail)} transitions)"
        elif self.trail:
            text += f"; trail: {self.path}"
        return text

    def __repr__(self):
        return f"<Termination {self}>"


cdef class Peaks:
    """A session's high-water marks, one per ORS limit.

    Each is the largest value the matching limit's check saw, so a session
    stopped by a limit shows the violating value.
    """

    cdef readonly long microsteps
    cdef readonly long state_entries
    cdef readonly object state
    cdef readonly long pending
    cdef readonly double macrostep_seconds
    cdef readonly double age

    def __init__(self, long microsteps=0, long state_entries=0, state=None, long pending=0,
                 double macrostep_seconds=0.0, double age=0.0):
        self.microsteps = microsteps
        self.state_entries = state_entries
        self.state = state
        self.pending = pending
        self.macrostep_seconds = macrostep_seconds
        self.age = age

    def as_dict(self):
        """The peaks keyed by ORS option name, plus ``state`` (the most entered state)."""
        return {
            "max-microstep-count": self.microsteps,
            "max-state-entry-count": self.state_entries,
            "max-pending-events": self.pending,
            "process-event-timeout": self.macrostep_seconds,
            "max-session-age": self.age,
            "state": self.state,
        }

    def __repr__(self):
        return f"Peaks({self.as_dict()!r})"


# ---------------------------------------------------------------- the interpreter

@cython.final
cdef class _AgeAlarm:
    """The ``max-session-age`` timer's callback. It holds its session weakly: a
    clock that outlives a dropped session must not keep it (and its engine
    context) alive for a day."""

    cdef object ref

    def __init__(self, session):
        self.ref = weakref.ref(session)

    def __call__(self):
        session = self.ref()
        if session is not None:
            session._age_expired()


cdef class Interpreter:
    """One session's run-time state and the Appendix D step loop.

    Subclassed by :class:`orsguard.Session`, which supplies the datamodel, the
    clock and event routing; the attributes it sets are declared here so the
    loop reaches them as C fields.
    """

    cdef readonly Machine _machine
    cdef public object dm                 # datamodel: cond(k), bind_event(ev), init_state_data(s)
    cdef public object clock              # now(), call_at(when, callback) -> handle.cancel()
    cdef public Stats stats
    # One allocation holds the bitsets (W words each) and the entry counters.
    # tmp_enter, tmp_default, tmp_exit and tmp_b are all zero between uses:
    # a step clears only the words it touched.
    cdef void* block
    cdef uint64_t* config
    cdef uint64_t* first_entry_done
    cdef unsigned int* entries            # saturating
    cdef uint64_t* tmp_enter
    cdef uint64_t* tmp_default
    cdef uint64_t* tmp_exit
    cdef uint64_t* tmp_a
    cdef uint64_t* tmp_b
    cdef uint64_t* tmp_c
    cdef int enter_lo                     # index range of the states in tmp_enter
    # Words of config outside cw_lo..cw_hi are zero, so scans skip them: a flat
    # document's step does not read the whole configuration. Entering widens
    # the range; _select narrows it to the words it found non-zero.
    cdef int cw_lo
    cdef int cw_hi
    cdef int enter_hi
    cdef dict hist                        # history state -> tuple of the states it recorded
    cdef int[TRAIL_SIZE] trail
    cdef int trail_pos
    cdef long trail_n
    cdef readonly object _internal_queue
    cdef readonly object _external_queue
    cdef public dict _delayed              # key -> clock handle, sends waiting for their delay
    cdef list states_to_invoke
    cdef readonly bint running
    cdef readonly bint started
    cdef public object _final_state
    cdef public object termination
    cdef public str end_reason
    cdef long micro
    cdef double macro_start
    cdef double tbase                     # when the work the timeout bounds began (see _begin_macrostep)
    cdef double born
    cdef bint clock_is_monotonic          # clock.now() is the C monotonic clock
    cdef object age_handle
    cdef bint in_macrostep
    # limits as C numbers; 0 = off
    cdef long lim_micro
    cdef long lim_entry
    cdef long lim_pending
    cdef double lim_timeout
    cdef double lim_age
    cdef object _limits
    cdef int cur_t                        # transition being taken, for a termination (-1 none)
    cdef int cur_s                        # state being entered (-1 none)
    cdef public bint _reached_final
    cdef long stats_pending
    cdef long npending                    # internal + external + delayed, kept in step with the queues
    cdef readonly double _macro_end        # monotonic time the last macrostep ended
    cdef public object final_data         # donedata of the top-level final state
    cdef public object _tracer             # tracer(t, event) for each transition taken, when set
    cdef public bint coverage             # count transitions taken (set before start)
    cdef unsigned int* tcount
    cdef object __weakref__               # timers hold the session weakly (_AgeAlarm)
    # The script deadline: a C double the datamodel's engine compares with the
    # monotonic clock (0 = none), or own_deadline when there is no engine.
    cdef double* deadline_slot
    cdef bint bind_events                 # the datamodel's reads_event, read at start
    cdef double own_deadline
    cdef double saved_deadline
    # peaks (see Peaks)
    cdef long peak_micro
    cdef long peak_entries
    cdef int peak_state
    cdef long peak_pending
    cdef double peak_seconds
    cdef double ended_age
    # cancel() from another thread while a macrostep runs (see _request_cancel)
    cdef unsigned long macro_thread       # the thread running the current macrostep
    cdef bint cancel_requested
    cdef bint halting                     # _halt's exit: not a macrostep of the peaks

    def __cinit__(self, *args, **kwargs):
        self.block = NULL
        self.config = NULL
        self.tcount = NULL
        self.cur_t = -1
        self.cur_s = -1
        self.deadline_slot = &self.own_deadline
        self.peak_state = -1

    def _core_init(self, Machine machine, limits, clock, Stats stats):
        cdef int W = machine.W
        cdef int n = machine.n
        self._machine = machine
        self.clock = clock
        self.clock_is_monotonic = bool(getattr(clock, "is_monotonic", False))
        self.stats = stats if stats is not None else default_stats
        if self.block != NULL:
            raise RuntimeError("session already initialised")
        self.block = PyMem_Calloc(8 * W * sizeof(uint64_t) + n * sizeof(unsigned int), 1)
        if self.block == NULL:
            raise MemoryError()
        cdef uint64_t* words = <uint64_t*>self.block
        self.config = words
        self.first_entry_done = words + W
        self.tmp_enter = words + 2 * W
        self.tmp_default = words + 3 * W
        self.tmp_exit = words + 4 * W
        self.tmp_a = words + 5 * W
        self.tmp_b = words + 6 * W
        self.tmp_c = words + 7 * W
        self.entries = <unsigned int*>(words + 8 * W)
        self.enter_lo = n
        self.enter_hi = -1
        self.cw_lo = W
        self.cw_hi = -1
        self.hist = {}
        self._internal_queue = deque()
        self._external_queue = deque()
        self._delayed = {}
        self.npending = 0
        self.states_to_invoke = []
        self.running = False
        self.started = False
        self._final_state = None
        self.termination = None
        self.end_reason = None
        self.age_handle = None
        self.in_macrostep = False
        self._set_limits(limits)

    def __dealloc__(self):
        PyMem_Free(self.block)
        PyMem_Free(self.tcount)

    # ------------------------------------------------------------ limits

    cdef _set_limits(self, limits):
        self._limits = limits
        self.lim_micro = limits.max_microstep_count
        self.lim_entry = limits.max_state_entry_count
        self.lim_pending = limits.max_pending_events
        self.lim_timeout = limits.process_event_timeout
        self.lim_age = limits.max_session_age
        if self.running:
            self._arm_age_timer()

    @property
    def limits(self):
        """The session's :class:`~orsguard.Limits`; assign new ones to apply them at the next check."""
        return self._limits

    @limits.setter
    def limits(self, limits):
        self._set_limits(limits)

    cdef _arm_age_timer(self):
        if self.age_handle is not None:
            self.age_handle.cancel()
            self.age_handle = None
        if self.lim_age > 0 and self.running:
            self.age_handle = self.clock.call_at(self.born + self.lim_age, _AgeAlarm(self))

    def _age_expired(self):
        self.age_handle = None
        if not self.running or self.lim_age <= 0:
            return
        try:
            self._violate(L_AGE, self.lim_age, self.clock.now() - self.born, None)
        except Halt:
            pass

    cdef inline _check_age(self):
        # The age timer fires on clocks that run timers by themselves (virtual,
        # asyncio). A monotonic clock may go unserviced between calls (RealClock
        # used synchronously), so each macrostep also compares its start time,
        # already read, with the session's birth.
        cdef double age
        if self.lim_age > 0 and self.clock_is_monotonic:
            age = self.macro_start - self.born
            if age > self.lim_age:
                self._violate(L_AGE, self.lim_age, age, None)

    cdef inline _check_timeout(self):
        cdef double elapsed
        if self.lim_timeout > 0:
            elapsed = _mono() - self.tbase
            if elapsed > self.lim_timeout:
                self._violate(L_TIMEOUT, self.lim_timeout, elapsed, None)

    def script_interrupted(self):
        """End the session for a script its engine stopped (``ScriptInterrupted``); raises ``Halt``.

        For scripts run outside the core's own blocks (invoke evaluation,
        ``<finalize>``); only inside a macrostep. Past ``process-event-timeout``
        this is that limit's violation; otherwise the script was stopped from
        outside (the datamodel's ``terminate()``) and the session is cancelled.
        """
        self._interrupted()

    cdef _interrupted(self):
        # Only this session's own deadline makes a timeout; terminate() or an
        # invoking parent's earlier deadline stopped it from outside (the parent
        # then meets its own timeout).
        cdef double elapsed = _mono() - self.tbase
        if not self.running:
            raise Halt()
        if not self.cancel_requested and self.lim_timeout > 0 and elapsed >= self.lim_timeout:
            self._violate(L_TIMEOUT, self.lim_timeout, elapsed, None)
        self._stop(R_CANCELLED)
        raise Halt()

    cdef _violate(self, int which, double limit, observed, object state):
        trail = self._trail_labels()
        transition = self._machine.labels[self.cur_t] if self.cur_t >= 0 else None
        if state is None and self.cur_s >= 0:
            state = self._machine.ids[self.cur_s]
        self.termination = Termination(LIMIT_OPTIONS[which], limit, observed, state, transition, trail)
        self.stats.violations[which] += 1
        self._stop(R_LIMIT)
        raise Halt()

    def _trail_labels(self):
        """The last transitions taken, oldest first."""
        cdef long k
        cdef long count = min(self.trail_n, TRAIL_SIZE)
        labels = self._machine.labels
        out = []
        for k in range(count):
            out.append(labels[self.trail[(self.trail_pos - count + k + TRAIL_SIZE) % TRAIL_SIZE]])
        return out

    # ------------------------------------------------------------ ending

    cdef _stop(self, int reason):
        """Leave the running state for good: timers off, counters settled, hooks told."""
        if not self.running:
            return
        self.running = False
        self.end_reason = END_REASONS[reason]
        if self.age_handle is not None:
            self.age_handle.cancel()
            self.age_handle = None
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._internal_queue.clear()
        self._external_queue.clear()
        self.npending = 0
        if self.in_macrostep and not self.halting:
            # The stopping macrostep counts now, so that on_end sees final peaks;
            # _end_macrostep then leaves it alone.
            self._macro_end = _mono()
            self._record_macrostep(self._macro_end - self.macro_start)
        self.ended_age = self.clock.now() - self.born
        self.stats.observe_end(self.peak_micro, self.peak_entries, self.peak_pending, self.ended_age)
        self.stats.ended[reason] += 1
        self.stats.sessions_active -= 1
        self._on_stopped()

    def _on_stopped(self):
        """Hook for the session layer (cancel invocations, notify the parent, call on_end)."""

    def _halt(self, reason="cancelled"):
        """Stop the session from outside (reason ``cancelled`` or ``error``).

        Like the spec's cancellation, the active states are exited first, their
        ``onexit`` content run; a session halted from inside its own step loop
        (a hook calling ``cancel()``) stops at once.
        """
        cdef int code = END_REASONS.index(reason)
        if not self.running:
            return
        if self.in_macrostep:
            self._stop(code)
            raise Halt()
        self.in_macrostep = True
        self.halting = True
        self.macro_thread = PyThread_get_thread_ident()
        self.micro = 0
        self.macro_start = _mono()
        self.tbase = self.macro_start
        self._arm_deadline()
        try:
            self._exit_all(code)
        except Halt:
            pass
        finally:
            self.deadline_slot[0] = self.saved_deadline
            self.in_macrostep = False
            self.halting = False

    def _request_cancel(self):
        """Ask a macrostep running in another thread to stop the session as ``cancelled``.

        True when one runs: the request is a C flag the step loop reads at its
        next event or microstep (and at the macrostep's end), and the
        datamodel's ``terminate()`` stops the script running now. False when the
        session is idle or the macrostep is the caller's own: then halt it
        directly. The test and the flag are one step under the GIL, so the
        other thread cannot end its macrostep between them.
        """
        if not (self.running and self.in_macrostep) or self.macro_thread == PyThread_get_thread_ident():
            return False
        self.cancel_requested = True
        self.dm.terminate()
        return True

    # ------------------------------------------------------------ queues

    cdef inline bint _admit(self) except -1:
        """Check ``max-pending-events`` for one more event; False when it stopped the session.

        Inside the step loop the violation unwinds it (Halt); from outside (an
        API call, a timer, another session) the enqueue is simply refused.
        """
        cdef long pending = self.npending + 1
        if pending > self.peak_pending:
            self.peak_pending = pending
        if self.lim_pending > 0:
            if pending > self.lim_pending:
                try:
                    self._violate(L_PENDING, self.lim_pending, pending, None)
                except Halt:
                    if self.in_macrostep:
                        raise
                    return False
        return True

    def _pending_count(self):
        """Events queued to the session now: internal + external + delayed."""
        return self.npending

    def enqueue_internal(self, Event event):
        """Place an event on the internal queue (raise, done events, errors)."""
        if self.running and self._admit():
            self._internal_queue.append(event)
            self.npending += 1

    def enqueue_external(self, Event event):
        """Place an event on the external queue (processed by :meth:`_process_external`); False if refused.

        An event queued during one of this session's macrosteps (a ``<send>`` to
        itself without delay) continues that macrostep's work: its macrostep
        runs under the same ``process-event-timeout`` deadline, so a session
        that keeps sending itself events cannot hold its caller for ever.
        """
        if self.running and self._admit():
            event.chained = self.in_macrostep
            self._external_queue.append(event)
            self.npending += 1
            return True
        return False

    def _schedule(self, key, double delay, callback):
        """Run ``callback()`` after ``delay`` seconds on the session clock; cancellable by ``key``.

        Counts toward ``max-pending-events`` until it fires or is cancelled.
        """
        if not self.running:
            return
        old = self._delayed.pop(key, None)
        if old is None:
            if not self._admit():
                return
            self.npending += 1
        else:
            old.cancel()

        def fire():
            if not self.running or self._delayed.pop(key, None) is None:
                return
            self.npending -= 1
            callback()

        self._delayed[key] = self.clock.call_at(self.clock.now() + delay, fire)

    def _unschedule(self, key):
        """Cancel a delayed send; True when one was waiting."""
        handle = self._delayed.pop(key, None)
        if handle is None:
            return False
        self.npending -= 1
        handle.cancel()
        return True

    cdef _error_event(self, str name, exc, int t=-1, int k=-1):
        ev = Event(name, self._error_data(name, exc, t, k), type="platform",
                   sendid=getattr(exc, "sendid", None))
        self.enqueue_internal(ev)

    def _error_data(self, str name, exc, int t, int k):
        """Hook: the data of an error event; ``t``/``k`` name the transition and condition that failed, or -1."""
        return {"message": str(exc)} if exc is not None else None

    def raise_error(self, str name, exc=None):
        """Enqueue ``error.execution`` / ``error.communication`` (or another platform error)."""
        self._error_event(name, exc)

    # ------------------------------------------------------------ configuration

    cdef inline bint in_config(self, int s) noexcept:
        return (self.config[s >> 6] >> (s & 63)) & 1

    def is_active(self, str state_id):
        """``In(state_id)``: whether the state is in the configuration."""
        cdef object idx = self._machine.index_of.get(state_id)
        if idx is None:
            return False
        return self.in_config(<int>idx)

    cdef list _active(self, bint descending):
        """Indices of the active states (the root excluded), ascending or descending."""
        cdef Machine m = self._machine
        cdef int w, i
        cdef uint64_t word
        cdef list out = []
        for w in range(self.cw_lo, self.cw_hi + 1):
            word = self.config[w]
            if w == 0:
                word &= ~(<uint64_t>1)
            while word:
                i = ctz64(word)
                word &= word - 1
                out.append((w << 6) + i)
        if descending:
            out.reverse()
        return out

    @property
    def configuration(self):
        """All active state ids."""
        ids = self._machine.ids
        return frozenset([ids[s] for s in self._active(False)])

    @property
    def atomic_configuration(self):
        """The active atomic states' ids."""
        cdef Machine m = self._machine
        cdef int s
        return frozenset([m.ids[s] for s in self._active(False) if (m.atomic[s >> 6] >> (s & 63)) & 1])

    def entry_count(self, str state_id):
        """How many times the state has been entered in this session."""
        return self.entries[self._machine.index_of[state_id]]

    def state_entry_counts(self):
        """Entries per state index (index 0 is the ``<scxml>`` root), as :meth:`entry_count` counts them."""
        cdef int s
        return [self.entries[s] for s in range(self._machine.n)]

    def transition_counts(self):
        """Times each transition index was taken; all zeros unless :attr:`coverage` was set before start."""
        cdef int t
        if self.tcount == NULL:
            return [0] * self._machine.ntrans
        return [self.tcount[t] for t in range(self._machine.ntrans)]

    @property
    def peaks(self):
        """The session's :class:`Peaks` so far (at its end, once it has ended)."""
        cdef double age = 0.0
        if self.started:
            age = self.clock.now() - self.born if self.running else self.ended_age
        state = self._machine.ids[self.peak_state] if self.peak_state >= 0 else None
        return Peaks(self.peak_micro, self.peak_entries, state, self.peak_pending, self.peak_seconds, age)

    # ------------------------------------------------------------ executable content

    cdef _run_block(self, block):
        """Execute one block of executable content; an error ends the block (spec 4.10)."""
        if block is None:
            return
        try:
            block(self)
        except Halt:
            raise
        except ScriptInterrupted:
            self._interrupted()
        except Exception as exc:
            self._error_event("error.execution", exc)

    cdef bint _cond(self, int t):
        cdef int k = self._machine.t_cond[t]
        if k < 0:
            return True
        try:
            return bool(self.dm.cond(k))
        except Halt:
            raise
        except ScriptInterrupted:
            self._interrupted()
        except Exception as exc:
            self._error_event("error.execution", exc, t, k)
            return False

    # ------------------------------------------------------------ selection

    cdef list _select(self, bytes table):
        """selectTransitions / selectEventlessTransitions (table None = eventless)."""
        cdef Machine m = self._machine
        cdef list enabled = []
        cdef int a, i, t, w
        cdef int s = -1
        cdef int prev                     # the atomic state before s
        cdef uint64_t word
        cdef bint found
        cdef int new_lo = m.W, new_hi = -1
        cdef const unsigned char* tab = NULL
        if table is not None:
            tab = <const unsigned char*>table
        for w in range(self.cw_lo, self.cw_hi + 1):
            if self.config[w]:
                if new_lo > w:
                    new_lo = w
                new_hi = w
            word = self.config[w] & m.atomic[w]
            while word:
                i = ctz64(word)
                word &= word - 1
                prev = s
                s = (w << 6) + i
                found = False
                a = s
                while a >= 0 and not found:
                    for i in range(m.s_tstart[a], m.s_tstart[a] + m.s_tcount[a]):
                        t = m.s_trans[i]
                        if tab == NULL:
                            if not m.t_eventless[t]:
                                continue
                        elif not tab[t]:
                            continue
                        if self._cond(t):
                            # Only an ancestor shared with an earlier atomic
                            # state (a < prev) can have been selected before.
                            if a >= prev or t not in enabled:
                                enabled.append(t)
                            found = True
                            break
                    a = m.parent[a]
        self.cw_lo = new_lo
        self.cw_hi = new_hi
        if len(enabled) > 1:
            return self._remove_conflicts(enabled)
        return enabled

    cdef bint _exit_set_of(self, int t, uint64_t* out, int* wlo, int* whi) except -1:
        """computeExitSet([t]): active states in the domain's range, into words wlo..whi of ``out``.

        False (nothing written) for an empty range. Words outside wlo..whi are left as they are.
        """
        cdef Machine m = self._machine
        cdef int d = self._domain(t)
        cdef int lo, hi, w
        if d < 0 or m.size[d] == 0:
            return False
        lo = d + 1
        hi = d + m.size[d]
        wlo[0] = max(lo >> 6, self.cw_lo)
        whi[0] = min(hi >> 6, self.cw_hi)
        if wlo[0] > whi[0]:
            return False
        for w in range(wlo[0], whi[0] + 1):
            out[w] = self.config[w] & _word_mask(w, lo, hi)
        return True

    cdef list _remove_conflicts(self, list enabled):
        """removeConflictingTransitions, linear in the exit sets when none intersect.

        The exit sets accepted so far are kept as one union (tmp_b); a transition
        whose exit set misses it cannot conflict with any of them. Only on an
        actual intersection is the spec's pairwise preemption rule applied.
        """
        cdef Machine m = self._machine
        cdef uint64_t* union = self.tmp_b
        cdef uint64_t* e1 = self.tmp_a
        cdef uint64_t* e2 = self.tmp_c
        cdef int ulo = m.W, uhi = -1, lo1, hi1, lo2, hi2, w, t1, t2
        cdef list filtered = []
        cdef list to_remove
        cdef bint overlap, preempted
        try:
            for t1 in enabled:
                if not self._exit_set_of(t1, e1, &lo1, &hi1):
                    filtered.append(t1)
                    continue
                overlap = False
                for w in range(max(lo1, ulo), min(hi1, uhi) + 1):
                    if e1[w] & union[w]:
                        overlap = True
                        break
                if not overlap:
                    filtered.append(t1)
                    for w in range(lo1, hi1 + 1):
                        union[w] |= e1[w]
                    ulo = min(ulo, lo1)
                    uhi = max(uhi, hi1)
                    continue
                preempted = False
                to_remove = []
                for t2 in filtered:
                    if not self._exit_set_of(t2, e2, &lo2, &hi2):
                        continue
                    for w in range(max(lo1, lo2), min(hi1, hi2) + 1):
                        if e1[w] & e2[w]:
                            break
                    else:
                        continue
                    if m.is_desc(m.t_source[t1], m.t_source[t2]):
                        to_remove.append(t2)
                    else:
                        preempted = True
                        break
                if preempted:
                    continue
                for t2 in to_remove:
                    filtered.remove(t2)
                filtered.append(t1)
                for w in range(ulo, uhi + 1):
                    union[w] = 0
                ulo, uhi = m.W, -1
                for t2 in filtered:
                    if self._exit_set_of(t2, e2, &lo2, &hi2):
                        for w in range(lo2, hi2 + 1):
                            union[w] |= e2[w]
                        ulo = min(ulo, lo2)
                        uhi = max(uhi, hi2)
        finally:
            for w in range(ulo, uhi + 1):
                union[w] = 0
        return filtered

    # ------------------------------------------------------------ domains and targets

    cdef list _effective_targets(self, int t):
        cdef Machine m = self._machine
        cdef list out = []
        cdef int s
        for s in m.targets[t]:
            self._add_effective(s, out)
        return out

    cdef _add_effective(self, int s, list out):
        cdef Machine m = self._machine
        cdef int j
        cdef tuple recorded
        if m.kind[s] == K_HISTORY_SHALLOW or m.kind[s] == K_HISTORY_DEEP:
            recorded = self.hist.get(s)
            if recorded is not None:
                for j in recorded:
                    if j not in out:
                        out.append(j)
            else:
                for j in m.targets[m.initial[s]]:
                    self._add_effective(j, out)
        elif s not in out:
            out.append(s)

    cdef int _domain(self, int t):
        cdef Machine m = self._machine
        cdef int d = m.t_domain[t]
        cdef int s, j
        cdef list targets
        cdef bint all_desc
        if d != -2:
            return d
        targets = self._effective_targets(t)
        if not targets:
            return -1
        s = m.t_source[t]
        if m.t_internal[t] and m.kind[s] == K_COMPOUND:
            all_desc = True
            for j in targets:
                if not m.is_desc(j, s):
                    all_desc = False
                    break
            if all_desc:
                return s
        return m._lcca(s, targets)

    # ------------------------------------------------------------ microstep

    cdef inline _took(self, int t, ev):
        """Count and trace transition ``t``, taken for event ``ev`` (None: eventless or initial)."""
        if self.coverage and self.tcount != NULL:
            self.tcount[t] += 1
        if self._tracer is not None:
            self._tracer(t, ev)

    cdef _microstep(self, list enabled, ev):
        cdef int t
        cdef Machine m = self._machine
        self.micro += 1
        if self.lim_micro > 0 and self.micro > self.lim_micro:
            self.cur_t = enabled[0]
            self._violate(L_MICROSTEPS, self.lim_micro, self.micro, None)
        self.stats.microsteps += 1
        # Every 16th microstep: the JS engine interrupts long scripts and the
        # macrostep's end checks the total, so a clock read per microstep is not needed.
        if self.lim_timeout > 0 and (self.micro & 15) == 0:
            self._check_timeout()
        for t in enabled:
            self.trail[self.trail_pos] = t
            self.trail_pos = (self.trail_pos + 1) % TRAIL_SIZE
            self.trail_n += 1
            if self.coverage or self._tracer is not None:
                self._took(t, ev)
        self.cur_t = enabled[0] if len(enabled) == 1 else -1
        self._exit_states(enabled)
        for t in enabled:
            if m.t_content[t]:
                self.cur_t = t
                self._run_block(m.content[t])
        self._enter_states(enabled)
        self.cur_t = -1

    cdef _exit_states(self, list enabled):
        cdef Machine m = self._machine
        cdef int w, i, s, h, t, lo, hi
        cdef unsigned char f
        cdef int xlo = m.W, xhi = -1
        cdef uint64_t word
        cdef uint64_t* ex = self.tmp_exit
        try:
            for t in enabled:
                if self._exit_set_of(t, self.tmp_a, &lo, &hi):
                    for w in range(lo, hi + 1):
                        ex[w] |= self.tmp_a[w]
                    xlo = min(xlo, lo)
                    xhi = max(xhi, hi)
        finally:
            # descending document order = exit order; the buffer is left clear
            order = []
            for w in range(xhi, xlo - 1, -1):
                word = ex[w]
                ex[w] = 0
                while word:
                    i = 63 - clz64(word)
                    word &= ~((<uint64_t>1) << i)
                    order.append((w << 6) + i)
        if not order:
            return
        if self.states_to_invoke:
            exiting = set(order)
            self.states_to_invoke = [s for s in self.states_to_invoke if s not in exiting]
        for s in order:
            if m.s_flags[s] & F_HISTORY:
                for h in m.history_children[s]:
                    self.hist[h] = self._recorded(s, m.kind[h] == K_HISTORY_DEEP)
        for s in order:
            f = m.s_flags[s]
            if f & F_ONEXIT:
                for block in m.onexit[s]:
                    self._run_block(block)
            if f & F_INVOKES:
                self._cancel_invokes(s)
            self.config[s >> 6] &= ~((<uint64_t>1) << (s & 63))

    cdef tuple _recorded(self, int s, bint deep):
        """What a history state of ``s`` records: its active atomic descendants (deep) or children."""
        cdef Machine m = self._machine
        cdef int lo = s + 1, hi = s + m.size[s], w, i, j
        cdef uint64_t word
        cdef list out = []
        if hi < lo:
            return ()
        for w in range(max(lo >> 6, self.cw_lo), min(hi >> 6, self.cw_hi) + 1):
            word = self.config[w] & _word_mask(w, lo, hi)
            if deep:
                word &= m.atomic[w]
            while word:
                i = ctz64(word)
                word &= word - 1
                j = (w << 6) + i
                if deep or m.parent[j] == s:
                    out.append(j)
        return tuple(out)

    cdef _enter_states(self, list enabled):
        cdef Machine m = self._machine
        cdef int w, i, s, t, a, p, gp
        cdef unsigned char f
        cdef uint64_t word
        cdef uint64_t* enter = self.tmp_enter
        cdef uint64_t* default_entry = self.tmp_default
        cdef dict history_content = {}
        cdef list order = []
        cdef set defaults = set()
        self.enter_lo = m.n
        self.enter_hi = -1
        try:
            for t in enabled:
                for s in m.targets[t]:
                    self._add_descendants(s, enter, default_entry, history_content)
                a = self._domain(t)
                for s in (self._effective_targets(t) if m.t_has_history[t] else m.targets[t]):
                    self._add_ancestors(s, a, enter, default_entry, history_content)
        finally:
            # Read the sets out (ascending = entry order) and leave the buffers clear
            # before any content runs.
            if self.enter_hi >= 0:
                for w in range(self.enter_lo >> 6, (self.enter_hi >> 6) + 1):
                    word = enter[w]
                    enter[w] = 0
                    while word:
                        i = ctz64(word)
                        word &= word - 1
                        order.append((w << 6) + i)
                    word = default_entry[w]
                    default_entry[w] = 0
                    while word:
                        i = ctz64(word)
                        word &= word - 1
                        defaults.add((w << 6) + i)
        for s in order:
            self.cur_s = s
            if self.entries[s] != 0xFFFFFFFFU:
                self.entries[s] += 1
            if self.entries[s] > self.peak_entries:
                self.peak_entries = self.entries[s]
                self.peak_state = s
            if self.lim_entry > 0 and self.entries[s] > self.lim_entry:
                self._violate(L_ENTRIES, self.lim_entry, self.entries[s], m.ids[s])
            w = s >> 6
            self.config[w] |= (<uint64_t>1) << (s & 63)
            if w < self.cw_lo:
                self.cw_lo = w
            if w > self.cw_hi:
                self.cw_hi = w
            f = m.s_flags[s]
            if f:
                if f & F_INVOKES:
                    self.states_to_invoke.append(s)
                if f & F_DATA and not (self.first_entry_done[s >> 6] >> (s & 63)) & 1:
                    self.first_entry_done[s >> 6] |= (<uint64_t>1) << (s & 63)
                    self._run_block(m.data_init[s])
                if f & F_ONENTRY:
                    for block in m.onentry[s]:
                        self._run_block(block)
            if defaults and s in defaults and m.initial[s] >= 0:
                self._took(m.initial[s], None)
                self._run_block(m.content[m.initial[s]])
            if history_content and s in history_content:
                t = history_content[s]
                self._took(t, None)
                self._run_block(m.content[t])
            if m.kind[s] == K_FINAL:
                p = m.parent[s]
                if p == 0:
                    self._final_state = m.ids[s]
                    self.final_data = self._done_data(s)
                    self.running_final()
                else:
                    gp = m.parent[p]
                    self.enqueue_internal(Event("done.state." + m.ids[p], self._done_data(s),
                                                type="internal"))
                    if gp >= 0 and m.kind[gp] == K_PARALLEL:
                        if all(self._in_final(c) for c in m.children[gp]):
                            self.enqueue_internal(Event("done.state." + m.ids[gp], None, type="internal"))
        self.cur_s = -1

    cdef running_final(self):
        # The step loop sees this flag and finishes with exitInterpreter.
        self._reached_final = True

    cdef _done_data(self, int s):
        f = self._machine.donedata[s]
        if f is None:
            return None
        try:
            return f(self)
        except Halt:
            raise
        except ScriptInterrupted:
            # Not an error: the session ends by the limit or cancelled, not in its final state.
            self._final_state = None
            self._interrupted()
        except Exception as exc:
            self._error_event("error.execution", exc)
            return None

    cdef bint _in_final(self, int s):
        cdef Machine m = self._machine
        cdef int c
        if m.kind[s] == K_COMPOUND:
            for c in m.children[s]:
                if m.kind[c] == K_FINAL and self.in_config(c):
                    return True
            return False
        if m.kind[s] == K_PARALLEL:
            for c in m.children[s]:
                if not self._in_final(c):
                    return False
            return True
        return False

    cdef inline void _set(self, uint64_t* bits, int s) noexcept:
        # only used on tmp_enter and its subset tmp_default: track their range
        bits[s >> 6] |= (<uint64_t>1) << (s & 63)
        if s < self.enter_lo:
            self.enter_lo = s
        if s > self.enter_hi:
            self.enter_hi = s

    cdef inline bint _has_desc_in(self, uint64_t* bits, int s) noexcept:
        cdef Machine m = self._machine
        cdef int lo = s + 1, hi = s + m.size[s], w
        if hi < lo:
            return False
        for w in range(lo >> 6, (hi >> 6) + 1):
            if bits[w] & _word_mask(w, lo, hi):
                return True
        return False

    cdef _add_descendants(self, int s, uint64_t* enter, uint64_t* default_entry, dict history_content):
        cdef Machine m = self._machine
        cdef int j, c, it
        cdef tuple hv
        if m.kind[s] == K_HISTORY_SHALLOW or m.kind[s] == K_HISTORY_DEEP:
            hv = self.hist.get(s)
            if hv is not None:
                for j in hv:
                    self._add_descendants(j, enter, default_entry, history_content)
                for j in hv:
                    self._add_ancestors(j, m.parent[s], enter, default_entry, history_content)
            else:
                it = m.initial[s]
                history_content[m.parent[s]] = it
                for j in m.targets[it]:
                    self._add_descendants(j, enter, default_entry, history_content)
                for j in m.targets[it]:
                    self._add_ancestors(j, m.parent[s], enter, default_entry, history_content)
            return
        self._set(enter, s)
        if m.kind[s] == K_COMPOUND:
            self._set(default_entry, s)
            it = m.initial[s]
            for j in m.targets[it]:
                self._add_descendants(j, enter, default_entry, history_content)
            for j in m.targets[it]:
                self._add_ancestors(j, s, enter, default_entry, history_content)
        elif m.kind[s] == K_PARALLEL:
            for c in m.children[s]:
                if not ((enter[c >> 6] >> (c & 63)) & 1) and not self._has_desc_in(enter, c):
                    self._add_descendants(c, enter, default_entry, history_content)

    cdef _add_ancestors(self, int s, int ancestor, uint64_t* enter, uint64_t* default_entry,
                        dict history_content):
        cdef Machine m = self._machine
        cdef int a = m.parent[s], c
        while a >= 0 and a != ancestor:
            self._set(enter, a)
            if m.kind[a] == K_PARALLEL:
                for c in m.children[a]:
                    if not ((enter[c >> 6] >> (c & 63)) & 1) and not self._has_desc_in(enter, c):
                        self._add_descendants(c, enter, default_entry, history_content)
            a = m.parent[a]

    # ------------------------------------------------------------ invocations (session layer)

    cdef _cancel_invokes(self, int s):
        self._invoke_exit(s)

    def _invoke_exit(self, int s):
        """Hook: the state with invokes is being exited; cancel its invocations."""

    def _invoke_start(self, int s):
        """Hook: start the invocations of state ``s`` (called at the end of a macrostep)."""

    def _external_preprocess(self, Event event):
        """Hook: finalize and autoforward for an external event before selection; False drops it."""
        return True

    # ------------------------------------------------------------ macrosteps

    cdef _begin_macrostep(self, bint chained):
        """Start a macrostep; ``chained`` for an event the session sent itself (see :meth:`enqueue_external`)."""
        self.micro = 0
        self.in_macrostep = True
        self.macro_thread = PyThread_get_thread_ident()
        self.macro_start = _mono()
        if not chained:
            self.tbase = self.macro_start
        self.stats_pending = self.npending
        self._arm_deadline()

    cdef inline void _arm_deadline(self) noexcept:
        # A nested macrostep (a child booting inside its parent's) shares the
        # thread's engine: it may shorten the deadline, never extend it.
        cdef double saved = self.deadline_slot[0]
        cdef double new = self.tbase + self.lim_timeout if self.lim_timeout > 0 else 0.0
        if saved > 0 and (new == 0 or saved < new):
            new = saved
        self.saved_deadline = saved
        self.deadline_slot[0] = new

    cdef _end_macrostep(self, bint check):
        """Record the macrostep; with ``check``, a macrostep that ran too long is a violation."""
        self.deadline_slot[0] = self.saved_deadline
        self.in_macrostep = False
        if not self.running:
            return  # _stop recorded it
        self._macro_end = _mono()
        cdef double elapsed = self._macro_end - self.macro_start
        self._record_macrostep(elapsed)
        if self.cancel_requested:
            # Asked for after the loop's last look.
            self._stop(R_CANCELLED)
            return
        if check and self.lim_timeout > 0:
            elapsed = self._macro_end - self.tbase
            if elapsed > self.lim_timeout:
                self._violate(L_TIMEOUT, self.lim_timeout, elapsed, None)

    cdef inline void _record_macrostep(self, double elapsed) noexcept:
        if self.micro > self.peak_micro:
            self.peak_micro = self.micro
        if elapsed > self.peak_seconds:
            self.peak_seconds = elapsed
        self.stats.observe_macrostep(self.micro, elapsed, self.stats_pending)

    cdef inline _poll(self):
        """Once per event or microstep: a cancel() from another thread."""
        if (self.micro & 63) == 63:
            # A loop without Python code in it never gives up the GIL by
            # itself: let a cancelling thread (or any other) in.
            PyEval_RestoreThread(PyEval_SaveThread())
        if self.cancel_requested:
            self._stop(R_CANCELLED)
            raise Halt()

    cdef _empty_microstep(self):
        """An internal event that selected nothing: one microstep towards the limit."""
        self.micro += 1
        if self.lim_micro > 0 and self.micro > self.lim_micro:
            self.cur_t = -1
            self._violate(L_MICROSTEPS, self.lim_micro, self.micro, None)

    cdef _settle(self):
        """Take eventless and internal transitions until stable, then start invocations."""
        cdef list enabled
        cdef int s
        while self.running:
            while self.running and not self._reached_final:
                self._poll()
                enabled = self._select(None)
                ev = None
                if not enabled:
                    if not self._internal_queue:
                        break
                    ev = self._internal_queue.popleft()
                    self.npending -= 1
                    self.stats.events_internal += 1
                    # An event loop may take no microstep at all (a throwing
                    # cond raises error.execution for ever): every event taken
                    # is checked against the timeout and counted.
                    self._check_timeout()
                    if self.bind_events:
                        self.dm.bind_event(ev)
                    enabled = self._select(self._machine.match_table(ev.name))
                    if not enabled:
                        self._empty_microstep()
                        continue
                self._microstep(enabled, ev)
            if self._reached_final:
                self._exit_interpreter()
                return
            if not self.running:
                return
            if self.states_to_invoke:
                todo = self.states_to_invoke
                self.states_to_invoke = []
                for s in todo:
                    if self.in_config(s):
                        self._invoke_start(s)
            if not self._internal_queue:
                return

    cdef _exit_interpreter(self):
        self._exit_all(R_FINAL)

    cdef _exit_all(self, int reason):
        """exitInterpreter: exit every active state in exit order, then stop."""
        cdef Machine m = self._machine
        cdef int s
        cdef list order = self._active(True)
        for s in order:
            for block in m.onexit[s]:
                self._run_block(block)
            if m.has_invokes and m.invokes[s]:
                self._cancel_invokes(s)
            self.config[s >> 6] &= ~((<uint64_t>1) << (s & 63))
        self._stop(reason)

    def _start_core(self):
        """The initial macrostep: data model, global script, initial transition, settle."""
        if self.started:
            raise RuntimeError("session already started")
        # What can fail comes before the session counts as started.
        address_of = getattr(self.dm, "deadline_address", None)
        cdef size_t address = address_of() if address_of is not None else 0
        if self.coverage and self.tcount == NULL:
            self.tcount = <unsigned int*>PyMem_Calloc(self._machine.ntrans + 1, sizeof(unsigned int))
            if self.tcount == NULL:
                raise MemoryError()
        self.deadline_slot = <double*>address if address else &self.own_deadline
        self.bind_events = bool(getattr(self.dm, "reads_event", True))
        self.started = True
        self.running = True
        self._reached_final = False
        self.stats.sessions_started += 1
        self.stats.sessions_active += 1
        self.born = self.clock.now()
        self._arm_age_timer()
        self._begin_macrostep(False)
        try:
            self._initial_entry()
            self._settle()
        except BaseException as exc:
            self._end_macrostep(False)
            if isinstance(exc, Halt):
                return
            raise
        try:
            self._end_macrostep(True)
        except Halt:
            pass

    cdef _initial_entry(self):
        cdef Machine m = self._machine
        self.first_entry_done[0] |= 1
        if m.data_init[0] is not None:
            self._run_block(m.data_init[0])
        for block in m.onentry[0]:
            self._run_block(block)
        if self.coverage or self._tracer is not None:
            self._took(m.initial[0], None)
        self._enter_states([m.initial[0]])

    def _process_external(self):
        """Run one macrostep per queued external event until the queue is empty."""
        cdef list enabled
        cdef bint chained
        # A chain belongs to this call: an event left queued by a call that an
        # exception ended starts afresh rather than under a deadline long past.
        cdef bint first = True
        if not self.running or self.in_macrostep:
            return
        try:
            while self.running and self._external_queue:
                ev = self._external_queue.popleft()
                self.npending -= 1
                chained = (<Event>ev).chained and not first
                first = False
                self._begin_macrostep(chained)
                try:
                    self._check_age()
                    if chained:
                        self._check_timeout()
                    self.stats.events_external += 1
                    if self.bind_events:
                        self.dm.bind_event(ev)
                    if not self._machine.has_invokes or self._external_preprocess(ev) is not False:
                        enabled = self._select(self._machine.match_table(ev.name))
                        if enabled:
                            self._microstep(enabled, ev)
                        self._settle()
                except BaseException:
                    self._end_macrostep(False)
                    raise
                self._end_macrostep(True)
        except Halt:
            pass
