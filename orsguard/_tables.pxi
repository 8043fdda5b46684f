# Included by _core.pyx: Machine, a document compiled into flat tables.

cdef class Machine:
    """A document compiled into flat tables, shared by all its sessions.

    Built from plain Python lists by the document compiler; see ``document.py``
    for how each list is derived from the XML.
    """

    def __cinit__(self, list ids, list kinds, list parents, list initial, list trans_source, *args):
        cdef int n = len(ids)
        cdef int T = len(trans_source)
        cdef int W = (n + 63) >> 6
        cdef char* p
        self.n = n
        self.ntrans = T
        self.W = W
        # One block: the 64-bit words, then the int tables, then the char tables, so
        # each table is aligned for its type. Transition tables get one spare entry.
        self.block = PyMem_Calloc(W * sizeof(uint64_t) + (6 * n + 4 * (T + 1)) * sizeof(int)
                                  + n + 4 * (T + 1), 1)
        if self.block == NULL:
            raise MemoryError()
        self.atomic = <uint64_t*>self.block
        p = <char*>(self.atomic + W)
        self.kind = <int*>p
        self.parent = self.kind + n
        self.initial = self.parent + n
        self.size = self.initial + n
        self.s_tstart = self.size + n
        self.s_tcount = self.s_tstart + n
        self.s_trans = self.s_tcount + n
        self.t_source = self.s_trans + T + 1
        self.t_cond = self.t_source + T + 1
        self.t_domain = self.t_cond + T + 1
        p = <char*>(self.t_domain + T + 1)
        self.s_flags = <unsigned char*>p
        self.t_content = p + n
        self.t_internal = self.t_content + T + 1
        self.t_eventless = self.t_internal + T + 1
        self.t_has_history = self.t_eventless + T + 1

    def __dealloc__(self):
        PyMem_Free(self.block)

    def __init__(self, list ids, list kinds, list parents, list initial, list trans_source,
                 list trans_targets, list trans_events, list trans_cond, list trans_internal,
                 list trans_content, list onentry, list onexit, list donedata, list invokes,
                 list data_init):
        cdef int i, j, s, t, p
        cdef int n = self.n
        cdef int T = self.ntrans
        self.ids = list(ids)
        self.index_of = {sid: i for i, sid in enumerate(ids)}
        self.children = [[] for _ in range(n)]
        self.history_children = [[] for _ in range(n)]
        for i in range(n):
            self.kind[i] = kinds[i]
            self.parent[i] = parents[i]
            self.initial[i] = initial[i]
        self.check_preorder()
        for i in range(n - 1, 0, -1):
            self.size[self.parent[i]] += self.size[i] + 1
        for i in range(1, n):
            p = self.parent[i]
            if self.kind[i] == KIND_HISTORY_SHALLOW or self.kind[i] == KIND_HISTORY_DEEP:
                self.history_children[p].append(i)
            else:
                self.children[p].append(i)
        for i in range(1, n):
            if self.kind[i] == KIND_ATOMIC or self.kind[i] == KIND_FINAL:
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
                if self.kind[j] == KIND_HISTORY_SHALLOW or self.kind[j] == KIND_HISTORY_DEEP:
                    self.t_has_history[t] = 1
            # initial and history default transitions are never selected by events
            if s >= 0 and not self.is_pseudo(t, initial, kinds):
                per_state[s].append(t)
        j = 0
        for s in range(n):
            self.s_tstart[s] = j
            self.s_tcount[s] = len(per_state[s])
            for t in per_state[s]:
                self.s_trans[j] = t
                j += 1
        for t in range(T):
            self.t_domain[t] = self.static_transition_domain(t)
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
        self.event_cache = {}

    @cython.final
    cdef check_preorder(self):
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

    @cython.final
    cdef bint is_pseudo(self, int t, list initial, list kinds):
        cdef int s = self.t_source[t]
        if initial[s] == t:
            return True
        return kinds[s] == KIND_HISTORY_SHALLOW or kinds[s] == KIND_HISTORY_DEEP

    @cython.final
    cdef inline bint is_descendant(self, int a, int b) noexcept:
        """isDescendant(a, b): a is a proper descendant of b."""
        return b < a <= b + self.size[b]

    @cython.final
    cdef inline bint is_compound_like(self, int s) noexcept:
        return self.kind[s] == KIND_COMPOUND or self.kind[s] == KIND_ROOT

    @cython.final
    cdef int find_lcca(self, int first, list rest):
        """findLCCA: the nearest compound ancestor (or the root) of ``first`` that contains all of ``rest``."""
        cdef int a = self.parent[first]
        cdef int r
        cdef bint ok
        while a >= 0:
            if self.is_compound_like(a):
                ok = True
                for r in rest:
                    if not self.is_descendant(r, a):
                        ok = False
                        break
                if ok:
                    return a
            a = self.parent[a]
        return 0

    @cython.final
    cdef int static_transition_domain(self, int t):
        """getTransitionDomain where it does not depend on history: -1 targetless, -2 run time."""
        cdef int s = self.t_source[t]
        cdef int j
        cdef bint all_desc
        if not self.targets[t]:
            return -1
        if self.t_has_history[t]:
            return -2
        if self.t_internal[t] and self.kind[s] == KIND_COMPOUND:
            all_desc = True
            for j in self.targets[t]:
                if not self.is_descendant(j, s):
                    all_desc = False
                    break
            if all_desc:
                return s
        return self.find_lcca(s, self.targets[t])

    @cython.final
    cdef bytes match_table(self, str name):
        """Per transition, 1 where one of its descriptors matches event ``name``."""
        cdef bytes cached = self.event_cache.get(name)
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
        if len(self.event_cache) >= EVENT_CACHE_MAX:
            self.event_cache.clear()
        self.event_cache[name] = cached
        return cached
