# Included by _core.pyx: Interpreter, one session's state and the Appendix D
# algorithm over a Machine's tables. The limit checks it calls are in _guard.pxi.

cdef class Interpreter:
    """One session's run-time state and the Appendix D step loop.

    Subclassed by :class:`orsguard.Session`, which supplies the datamodel, the
    clock, the limits and event routing; the attributes it sets are declared
    here so the loop reaches them as C fields. Constructed with the document
    first: its ``machine`` sizes the session's tables, allocated here and
    freed only in ``__dealloc__``.
    """

    def __cinit__(self, document, *args, **kwargs):
        cdef Machine machine
        cdef int W, n
        cdef uint64_t* words
        # Duck-typed: the core imports nothing of orsguard's, Document included.
        found = getattr(document, "machine", None)
        if not isinstance(found, Machine):
            raise TypeError(f"{type(self).__name__} needs a Document from orsguard.load(), "
                            f"not {type(document).__name__}")
        machine = found
        W = machine.W
        n = machine.n
        self.block = PyMem_Calloc(8 * W * sizeof(uint64_t) + n * sizeof(unsigned int), 1)
        if self.block == NULL:
            raise MemoryError()
        self.cur_t = -1
        self.cur_s = -1
        self.deadline_slot = &self.own_deadline
        self.peak_state = -1
        self._machine = machine
        self.stats = default_stats
        words = <uint64_t*>self.block
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
        self.states_to_invoke = []

    def __dealloc__(self):
        PyMem_Free(self.block)
        PyMem_Free(self.tcount)

    # ------------------------------------------------------------ limits (the checks: _guard.pxi)

    @property
    def limits(self):
        """The session's :class:`~orsguard.Limits`; assign new ones to apply them at the next check."""
        return self._limits

    @limits.setter
    def limits(self, limits):
        set_limits(self, limits)

    @property
    def peaks(self):
        """The session's :class:`Peaks` so far (at its end, once it has ended)."""
        return peaks_of(self)

    def script_interrupted(self):
        """End the session for a script its engine stopped (``ScriptInterrupted``); raises ``Halt``.

        For scripts run outside the core's own blocks (invoke evaluation,
        ``<finalize>``); only inside a macrostep. Past ``process-event-timeout``
        this is that limit's violation; otherwise the script was stopped from
        outside (the datamodel's ``terminate()``) and the session is cancelled.
        """
        judge_interrupted(self)

    # ------------------------------------------------------------ ending

    @cython.final
    cdef stop(self, int reason):
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
            # end_macrostep then leaves it alone.
            self._macro_end = _mono()
            record_macrostep(self, self._macro_end - self.macro_start)
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
            self.stop(code)
            raise Halt()
        self.in_macrostep = True
        self.halting = True
        self.macro_thread = PyThread_get_thread_ident()
        self.micro = 0
        self.macro_start = _mono()
        self.tbase = self.macro_start
        arm_deadline(self)
        try:
            self.exit_interpreter(code)
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

    @cython.final
    cdef exit_interpreter(self, int reason):
        """exitInterpreter: exit every active state in exit order, then stop."""
        cdef Machine m = self._machine
        cdef int s
        for s in self.active_states(True):
            for block in m.onexit[s]:
                self.execute_content(block)
            if m.has_invokes and m.invokes[s]:
                self._invoke_exit(s)
            self.config[s >> 6] &= ~((<uint64_t>1) << (s & 63))
        self.stop(reason)

    # ------------------------------------------------------------ queues

    def _pending_count(self):
        """Events queued to the session now: internal + external + delayed."""
        return self.npending

    def enqueue_internal(self, Event event):
        """Place an event on the internal queue (raise, done events, errors)."""
        if self.running and admit_event(self):
            self._internal_queue.append(event)
            self.npending += 1

    def enqueue_external(self, Event event):
        """Place an event on the external queue (processed by :meth:`_process_external`); False if refused.

        An event queued during one of this session's macrosteps (a ``<send>`` to
        itself without delay) continues that macrostep's work: its macrostep
        runs under the same ``process-event-timeout`` deadline, so a session
        that keeps sending itself events cannot hold its caller for ever.
        """
        if self.running and admit_event(self):
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
            if not admit_event(self):
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

    @cython.final
    cdef raise_platform_error(self, str name, exc, int t=-1, int k=-1):
        ev = Event(name, self._error_data(name, exc, t, k), type="platform",
                   sendid=getattr(exc, "sendid", None))
        self.enqueue_internal(ev)

    def _error_data(self, str name, exc, int t, int k):
        """Hook: the data of an error event; ``t``/``k`` name the transition and condition that failed, or -1."""
        return {"message": str(exc)} if exc is not None else None

    def raise_error(self, str name, exc=None):
        """Enqueue ``error.execution`` / ``error.communication`` (or another platform error)."""
        self.raise_platform_error(name, exc)

    # ------------------------------------------------------------ configuration

    @cython.final
    cdef inline bint in_config(self, int s) noexcept:
        return (self.config[s >> 6] >> (s & 63)) & 1

    def is_active(self, str state_id):
        """``In(state_id)``: whether the state is in the configuration."""
        cdef object idx = self._machine.index_of.get(state_id)
        if idx is None:
            return False
        return self.in_config(<int>idx)

    @cython.final
    cdef list active_states(self, bint descending):
        """Indices of the active states (the root excluded), ascending or descending."""
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
        return frozenset([ids[s] for s in self.active_states(False)])

    @property
    def atomic_configuration(self):
        """The active atomic states' ids."""
        cdef Machine m = self._machine
        cdef int s
        return frozenset([m.ids[s] for s in self.active_states(False) if (m.atomic[s >> 6] >> (s & 63)) & 1])

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

    # ------------------------------------------------------------ executable content

    @cython.final
    cdef execute_content(self, block):
        """executeContent: one block of executable content; an error ends the block (spec 4.10)."""
        if block is None:
            return
        try:
            block(self)
        except Halt:
            raise
        except ScriptInterrupted:
            judge_interrupted(self)
        except Exception as exc:
            self.raise_platform_error("error.execution", exc)

    @cython.final
    cdef bint condition_match(self, int t):
        """conditionMatch: transition ``t``'s condition; an error counts as false (spec 5.9)."""
        cdef int k = self._machine.t_cond[t]
        if k < 0:
            return True
        try:
            return bool(self.dm.cond(k))
        except Halt:
            raise
        except ScriptInterrupted:
            judge_interrupted(self)
        except Exception as exc:
            self.raise_platform_error("error.execution", exc, t, k)
            return False

    @cython.final
    cdef done_data(self, int s):
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
            judge_interrupted(self)
        except Exception as exc:
            self.raise_platform_error("error.execution", exc)
            return None

    # ------------------------------------------------------------ selection

    @cython.final
    cdef list select_transitions(self, bytes matches):
        """selectTransitions for an event (``matches``: its match table), selectEventlessTransitions for None."""
        cdef Machine m = self._machine
        cdef list enabled = []
        cdef int a, i, t, w
        cdef int s = -1
        cdef int prev                     # the atomic state before s
        cdef uint64_t word
        cdef bint found
        cdef int new_lo = m.W, new_hi = -1
        cdef const unsigned char* tab = NULL
        if matches is not None:
            tab = <const unsigned char*>matches
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
                        if self.condition_match(t):
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
            return self.remove_conflicting_transitions(enabled)
        return enabled

    @cython.final
    cdef bint compute_exit_set(self, int t, uint64_t* out, int* wlo, int* whi) except -1:
        """computeExitSet([t]): active states in the domain's range, into words wlo..whi of ``out``.

        False (nothing written) for an empty range. Words outside wlo..whi are left as they are.
        """
        cdef Machine m = self._machine
        cdef int d = self.get_transition_domain(t)
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

    @cython.final
    cdef list remove_conflicting_transitions(self, list enabled):
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
                if not self.compute_exit_set(t1, e1, &lo1, &hi1):
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
                    if not self.compute_exit_set(t2, e2, &lo2, &hi2):
                        continue
                    for w in range(max(lo1, lo2), min(hi1, hi2) + 1):
                        if e1[w] & e2[w]:
                            break
                    else:
                        continue
                    if m.is_descendant(m.t_source[t1], m.t_source[t2]):
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
                    if self.compute_exit_set(t2, e2, &lo2, &hi2):
                        for w in range(lo2, hi2 + 1):
                            union[w] |= e2[w]
                        ulo = min(ulo, lo2)
                        uhi = max(uhi, hi2)
        finally:
            for w in range(ulo, uhi + 1):
                union[w] = 0
        return filtered

    # ------------------------------------------------------------ domains and targets

    @cython.final
    cdef list get_effective_target_states(self, int t):
        """getEffectiveTargetStates: the targets with history states replaced by what they stand for."""
        cdef list out = []
        cdef int s
        for s in self._machine.targets[t]:
            self.add_effective_target_state(s, out)
        return out

    @cython.final
    cdef add_effective_target_state(self, int s, list out):
        cdef Machine m = self._machine
        cdef int j
        cdef tuple recorded
        if m.kind[s] == KIND_HISTORY_SHALLOW or m.kind[s] == KIND_HISTORY_DEEP:
            recorded = self.hist.get(s)
            if recorded is not None:
                for j in recorded:
                    if j not in out:
                        out.append(j)
            else:
                for j in m.targets[m.initial[s]]:
                    self.add_effective_target_state(j, out)
        elif s not in out:
            out.append(s)

    @cython.final
    cdef int get_transition_domain(self, int t):
        """getTransitionDomain: the Machine's static domain, or computed through history here."""
        cdef Machine m = self._machine
        cdef int d = m.t_domain[t]
        cdef int s, j
        cdef list targets
        cdef bint all_desc
        if d != -2:
            return d
        targets = self.get_effective_target_states(t)
        if not targets:
            return -1
        s = m.t_source[t]
        if m.t_internal[t] and m.kind[s] == KIND_COMPOUND:
            all_desc = True
            for j in targets:
                if not m.is_descendant(j, s):
                    all_desc = False
                    break
            if all_desc:
                return s
        return m.find_lcca(s, targets)

    # ------------------------------------------------------------ microstep

    @cython.final
    cdef inline note_taken(self, int t, ev):
        """Count and trace transition ``t``, taken for event ``ev`` (None: eventless or initial)."""
        if self.coverage and self.tcount != NULL:
            self.tcount[t] += 1
        if self._tracer is not None:
            self._tracer(t, ev)

    @cython.final
    cdef microstep(self, list enabled, ev):
        cdef int t
        cdef Machine m = self._machine
        check_microstep(self, enabled)
        self.stats.microsteps += 1
        # Every 16th microstep: the JS engine interrupts long scripts and the
        # macrostep's end checks the total, so a clock read per microstep is not needed.
        if self.lim_timeout > 0 and (self.micro & 15) == 0:
            check_timeout(self)
        for t in enabled:
            self.trail[self.trail_pos] = t
            self.trail_pos = (self.trail_pos + 1) % TRAIL_SIZE
            self.trail_n += 1
            if self.coverage or self._tracer is not None:
                self.note_taken(t, ev)
        self.cur_t = enabled[0] if len(enabled) == 1 else -1
        self.exit_states(enabled)
        for t in enabled:
            if m.t_content[t]:
                self.cur_t = t
                self.execute_content(m.content[t])
        self.enter_states(enabled)
        self.cur_t = -1

    @cython.final
    cdef exit_states(self, list enabled):
        cdef Machine m = self._machine
        cdef int w, i, s, h, t, lo, hi
        cdef unsigned char f
        cdef int xlo = m.W, xhi = -1
        cdef uint64_t word
        cdef uint64_t* ex = self.tmp_exit
        try:
            for t in enabled:
                if self.compute_exit_set(t, self.tmp_a, &lo, &hi):
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
                    self.hist[h] = self.recorded_history(s, m.kind[h] == KIND_HISTORY_DEEP)
        for s in order:
            f = m.s_flags[s]
            if f & F_ONEXIT:
                for block in m.onexit[s]:
                    self.execute_content(block)
            if f & F_INVOKES:
                self._invoke_exit(s)
            self.config[s >> 6] &= ~((<uint64_t>1) << (s & 63))

    @cython.final
    cdef tuple recorded_history(self, int s, bint deep):
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

    @cython.final
    cdef compute_entry_set(self, list enabled, dict history_content):
        """computeEntrySet into tmp_enter (statesToEnter) and tmp_default (statesForDefaultEntry)."""
        cdef Machine m = self._machine
        cdef int s, t, a
        self.enter_lo = m.n
        self.enter_hi = -1
        for t in enabled:
            for s in m.targets[t]:
                self.add_descendant_states_to_enter(s, self.tmp_enter, self.tmp_default, history_content)
            a = self.get_transition_domain(t)
            for s in (self.get_effective_target_states(t) if m.t_has_history[t] else m.targets[t]):
                self.add_ancestor_states_to_enter(s, a, self.tmp_enter, self.tmp_default, history_content)

    @cython.final
    cdef enter_states(self, list enabled):
        cdef Machine m = self._machine
        cdef int w, i, s, t, p, gp
        cdef unsigned char f
        cdef uint64_t word
        cdef uint64_t* enter = self.tmp_enter
        cdef uint64_t* default_entry = self.tmp_default
        cdef dict history_content = {}
        cdef list order = []
        cdef set defaults = set()
        try:
            self.compute_entry_set(enabled, history_content)
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
            check_state_entry(self, s)
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
                    self.execute_content(m.data_init[s])
                if f & F_ONENTRY:
                    for block in m.onentry[s]:
                        self.execute_content(block)
            if defaults and s in defaults and m.initial[s] >= 0:
                self.note_taken(m.initial[s], None)
                self.execute_content(m.content[m.initial[s]])
            if history_content and s in history_content:
                t = history_content[s]
                self.note_taken(t, None)
                self.execute_content(m.content[t])
            if m.kind[s] == KIND_FINAL:
                p = m.parent[s]
                if p == 0:
                    self._final_state = m.ids[s]
                    self.final_data = self.done_data(s)
                    # The step loop sees this flag and finishes with exitInterpreter.
                    self._reached_final = True
                else:
                    gp = m.parent[p]
                    self.enqueue_internal(Event("done.state." + m.ids[p], self.done_data(s),
                                                type="internal"))
                    if gp >= 0 and m.kind[gp] == KIND_PARALLEL:
                        if all(self.is_in_final_state(c) for c in m.children[gp]):
                            self.enqueue_internal(Event("done.state." + m.ids[gp], None, type="internal"))
        self.cur_s = -1

    @cython.final
    cdef bint is_in_final_state(self, int s):
        cdef Machine m = self._machine
        cdef int c
        if m.kind[s] == KIND_COMPOUND:
            for c in m.children[s]:
                if m.kind[c] == KIND_FINAL and self.in_config(c):
                    return True
            return False
        if m.kind[s] == KIND_PARALLEL:
            for c in m.children[s]:
                if not self.is_in_final_state(c):
                    return False
            return True
        return False

    @cython.final
    cdef inline void mark_to_enter(self, uint64_t* bits, int s) noexcept:
        # only used on tmp_enter and its subset tmp_default: track their range
        bits[s >> 6] |= (<uint64_t>1) << (s & 63)
        if s < self.enter_lo:
            self.enter_lo = s
        if s > self.enter_hi:
            self.enter_hi = s

    @cython.final
    cdef inline bint has_descendant_in(self, uint64_t* bits, int s) noexcept:
        cdef int lo = s + 1, hi = s + self._machine.size[s], w
        if hi < lo:
            return False
        for w in range(lo >> 6, (hi >> 6) + 1):
            if bits[w] & _word_mask(w, lo, hi):
                return True
        return False

    @cython.final
    cdef add_descendant_states_to_enter(self, int s, uint64_t* enter, uint64_t* default_entry,
                                        dict history_content):
        cdef Machine m = self._machine
        cdef int j, c, it
        cdef tuple hv
        if m.kind[s] == KIND_HISTORY_SHALLOW or m.kind[s] == KIND_HISTORY_DEEP:
            hv = self.hist.get(s)
            if hv is not None:
                for j in hv:
                    self.add_descendant_states_to_enter(j, enter, default_entry, history_content)
                for j in hv:
                    self.add_ancestor_states_to_enter(j, m.parent[s], enter, default_entry, history_content)
            else:
                it = m.initial[s]
                history_content[m.parent[s]] = it
                for j in m.targets[it]:
                    self.add_descendant_states_to_enter(j, enter, default_entry, history_content)
                for j in m.targets[it]:
                    self.add_ancestor_states_to_enter(j, m.parent[s], enter, default_entry, history_content)
            return
        self.mark_to_enter(enter, s)
        if m.kind[s] == KIND_COMPOUND:
            self.mark_to_enter(default_entry, s)
            it = m.initial[s]
            for j in m.targets[it]:
                self.add_descendant_states_to_enter(j, enter, default_entry, history_content)
            for j in m.targets[it]:
                self.add_ancestor_states_to_enter(j, s, enter, default_entry, history_content)
        elif m.kind[s] == KIND_PARALLEL:
            for c in m.children[s]:
                if not ((enter[c >> 6] >> (c & 63)) & 1) and not self.has_descendant_in(enter, c):
                    self.add_descendant_states_to_enter(c, enter, default_entry, history_content)

    @cython.final
    cdef add_ancestor_states_to_enter(self, int s, int ancestor, uint64_t* enter, uint64_t* default_entry,
                                      dict history_content):
        cdef Machine m = self._machine
        cdef int a = m.parent[s], c
        while a >= 0 and a != ancestor:
            self.mark_to_enter(enter, a)
            if m.kind[a] == KIND_PARALLEL:
                for c in m.children[a]:
                    if not ((enter[c >> 6] >> (c & 63)) & 1) and not self.has_descendant_in(enter, c):
                        self.add_descendant_states_to_enter(c, enter, default_entry, history_content)
            a = m.parent[a]

    # ------------------------------------------------------------ hooks of the session layer

    def _invoke_exit(self, int s):
        """Hook: the state with invokes is being exited; cancel its invocations."""

    def _invoke_start(self, int s):
        """Hook: start the invocations of state ``s`` (called at the end of a macrostep)."""

    def _external_preprocess(self, Event event):
        """Hook: finalize and autoforward for an external event before selection; False drops it."""
        return True

    # ------------------------------------------------------------ macrosteps

    @cython.final
    cdef begin_macrostep(self, bint chained):
        """Start a macrostep; ``chained`` for an event the session sent itself (see :meth:`enqueue_external`)."""
        self.micro = 0
        self.in_macrostep = True
        self.macro_thread = PyThread_get_thread_ident()
        self.macro_start = _mono()
        if not chained:
            self.tbase = self.macro_start
        self.stats_pending = self.npending
        arm_deadline(self)

    @cython.final
    cdef end_macrostep(self, bint check):
        """Record the macrostep; with ``check``, a macrostep that ran too long is a violation."""
        self.deadline_slot[0] = self.saved_deadline
        self.in_macrostep = False
        if not self.running:
            return  # stop recorded it
        self._macro_end = _mono()
        record_macrostep(self, self._macro_end - self.macro_start)
        if self.cancel_requested:
            # Asked for after the loop's last look.
            self.stop(CANCELLED)
            return
        if check:
            check_macrostep_time(self)

    @cython.final
    cdef inline poll_cancel(self):
        """Once per event or microstep: a cancel() from another thread."""
        if (self.micro & 63) == 63:
            # A loop without Python code in it never gives up the GIL by
            # itself: let a cancelling thread (or any other) in.
            PyEval_RestoreThread(PyEval_SaveThread())
        if self.cancel_requested:
            self.stop(CANCELLED)
            raise Halt()

    @cython.final
    cdef settle(self):
        """mainEventLoop's inner loop: eventless and internal transitions until stable, then invocations."""
        cdef list enabled
        cdef int s
        while self.running:
            while self.running and not self._reached_final:
                self.poll_cancel()
                enabled = self.select_transitions(None)
                ev = None
                if not enabled:
                    if not self._internal_queue:
                        break
                    ev = self._internal_queue.popleft()
                    self.npending -= 1
                    self.stats.events_internal += 1
                    # An event loop may take no microstep at all (a throwing
                    # cond raises error.execution for ever): every event taken
                    # is checked against the timeout and counts as a microstep.
                    check_timeout(self)
                    if self.bind_events:
                        self.dm.bind_event(ev)
                    enabled = self.select_transitions(self._machine.match_table(ev.name))
                    if not enabled:
                        check_microstep(self, None)
                        continue
                self.microstep(enabled, ev)
            if self._reached_final:
                self.exit_interpreter(FINAL)
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

    def _start_core(self):
        """The initial macrostep (interpret): data model, global script, initial transition, settle."""
        if self.started:
            raise RuntimeError("session already started")
        # What can fail comes before the session counts as started.
        address_of = getattr(self.dm, "deadline_address", None)
        cdef size_t address = address_of() if address_of is not None else 0
        if self.coverage and self.tcount == NULL:
            # Only sessions that count pay for the counters.
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
        self.clock_is_monotonic = bool(getattr(self.clock, "is_monotonic", False))
        self.born = self.clock.now()
        arm_age_timer(self)
        self.begin_macrostep(False)
        try:
            self.enter_initial_states()
            self.settle()
        except BaseException as exc:
            self.end_macrostep(False)
            if isinstance(exc, Halt):
                return
            raise
        try:
            self.end_macrostep(True)
        except Halt:
            pass

    @cython.final
    cdef enter_initial_states(self):
        cdef Machine m = self._machine
        self.first_entry_done[0] |= 1
        if m.data_init[0] is not None:
            self.execute_content(m.data_init[0])
        for block in m.onentry[0]:
            self.execute_content(block)
        if self.coverage or self._tracer is not None:
            self.note_taken(m.initial[0], None)
        self.enter_states([m.initial[0]])

    def _process_external(self):
        """mainEventLoop's outer loop: one macrostep per queued external event until the queue is empty."""
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
                self.begin_macrostep(chained)
                try:
                    check_age(self)
                    if chained:
                        check_timeout(self)
                    self.stats.events_external += 1
                    if self.bind_events:
                        self.dm.bind_event(ev)
                    if not self._machine.has_invokes or self._external_preprocess(ev) is not False:
                        enabled = self.select_transitions(self._machine.match_table(ev.name))
                        if enabled:
                            self.microstep(enabled, ev)
                        self.settle()
                except BaseException:
                    self.end_macrostep(False)
                    raise
                self.end_macrostep(True)
        except Halt:
            pass
