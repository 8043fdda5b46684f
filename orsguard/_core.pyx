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

The declarations are in ``_core.pxd``; the definitions are split by concern:

- ``_stats.pxi``: the process-wide counters a metrics collector reads;
- ``_tables.pxi``: :class:`Machine`, the compiled document;
- ``_guard.pxi``: the five ORS limit checks, the violation, the peaks;
- ``_steploop.pxi``: :class:`Interpreter`, the Appendix D algorithm.
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

#: The ORS option name of each :class:`Limit`, in its order.
LIMIT_OPTIONS = tuple(limit.name.lower().replace("_", "-") for limit in Limit)
#: The name of each :class:`EndReason`, in its order.
END_REASONS = tuple(reason.name.lower() for reason in EndReason)


class Halt(BaseException):
    """Unwinds the step loop when a session stops inside executable content.

    A BaseException so that no ``except Exception`` in executable content or a
    datamodel can swallow a limit violation or a cancellation.
    """


class ScriptInterrupted(Exception):
    """Raised by a datamodel when its engine interrupted a script at the time limit."""


cdef class Event:
    """An SCXML event as ``_event`` exposes it (spec 5.10.1)."""

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


cdef inline double _mono() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline uint64_t _word_mask(int w, int lo, int hi) noexcept:
    """The bits of word ``w`` whose indices lie in lo..hi (inclusive)."""
    cdef uint64_t mask = ~(<uint64_t>0)
    if w == (lo >> 6):
        mask <<= (lo & 63)
    if w == (hi >> 6):
        mask &= (~(<uint64_t>0)) >> (63 - (hi & 63))
    return mask


include "_stats.pxi"
include "_tables.pxi"
include "_guard.pxi"
include "_steploop.pxi"
