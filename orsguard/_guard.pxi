# Included by _core.pyx: the guard. The five ORS limit checks, the one way a
# violation ends a session, the script deadline and the peaks all live here; the
# step loop (_steploop.pxi) calls these at the points ORS checks them.

cdef class Peaks:
    """A session's high-water marks, one per ORS limit.

    Each is the largest value the matching limit's check saw, so a session
    stopped by a limit shows the violating value.
    """

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
            LIMIT_OPTIONS[MAX_MICROSTEP_COUNT]: self.microsteps,
            LIMIT_OPTIONS[MAX_STATE_ENTRY_COUNT]: self.state_entries,
            LIMIT_OPTIONS[MAX_PENDING_EVENTS]: self.pending,
            LIMIT_OPTIONS[PROCESS_EVENT_TIMEOUT]: self.macrostep_seconds,
            LIMIT_OPTIONS[MAX_SESSION_AGE]: self.age,
            "state": self.state,
        }

    def __repr__(self):
        return f"Peaks({self.as_dict()!r})"


cdef Peaks peaks_of(Interpreter it):
    cdef double age = 0.0
    if it.started:
        age = it.clock.now() - it.born if it.running else it.ended_age
    state = it._machine.ids[it.peak_state] if it.peak_state >= 0 else None
    return Peaks(it.peak_micro, it.peak_entries, state, it.peak_pending, it.peak_seconds, age)


# ---------------------------------------------------------------- the violation

cdef int violate(Interpreter it, int which, double limit, observed, object state) except -1:
    """End the session for exceeding limit ``which``: record the facts, count, stop, unwind (Halt)."""
    labels = it._machine.labels
    transition = labels[it.cur_t] if it.cur_t >= 0 else None
    if state is None and it.cur_s >= 0:
        state = it._machine.ids[it.cur_s]
    it._violation = (LIMIT_OPTIONS[which], limit, observed, state, transition, trail_labels(it))
    it.stats.violations[which] += 1
    it.stop(LIMIT)
    raise Halt()


cdef list trail_labels(Interpreter it):
    """The last transitions taken, oldest first."""
    cdef long k
    cdef long count = min(it.trail_n, TRAIL_SIZE)
    labels = it._machine.labels
    return [labels[it.trail[(it.trail_pos - count + k + TRAIL_SIZE) % TRAIL_SIZE]] for k in range(count)]


# ---------------------------------------------------------------- the limits

cdef int set_limits(Interpreter it, limits) except -1:
    it._limits = limits
    it.lim_micro = limits.max_microstep_count
    it.lim_entry = limits.max_state_entry_count
    it.lim_pending = limits.max_pending_events
    it.lim_timeout = limits.process_event_timeout
    it.lim_age = limits.max_session_age
    if it.running:
        arm_age_timer(it)
    return 0


cdef inline int check_microstep(Interpreter it, list enabled) except -1:
    """max-microstep-count: count one microstep (``enabled``: its transitions; None for an event that selected none)."""
    it.micro += 1
    if it.lim_micro > 0 and it.micro > it.lim_micro:
        it.cur_t = enabled[0] if enabled else -1
        violate(it, MAX_MICROSTEP_COUNT, it.lim_micro, it.micro, None)
    return 0


cdef inline int check_state_entry(Interpreter it, int s) except -1:
    """max-state-entry-count: count one entry of state ``s`` (saturating) and check it."""
    if it.entries[s] != 0xFFFFFFFFU:
        it.entries[s] += 1
    if it.entries[s] > it.peak_entries:
        it.peak_entries = it.entries[s]
        it.peak_state = s
    if it.lim_entry > 0 and it.entries[s] > it.lim_entry:
        violate(it, MAX_STATE_ENTRY_COUNT, it.lim_entry, it.entries[s], it._machine.ids[s])
    return 0


cdef inline bint admit_event(Interpreter it) except -1:
    """max-pending-events: check one more event; False when it stopped the session.

    Inside the step loop the violation unwinds it (Halt); from outside (an
    API call, a timer, another session) the enqueue is simply refused.
    """
    cdef long pending = it.npending + 1
    if pending > it.peak_pending:
        it.peak_pending = pending
    if it.lim_pending > 0 and pending > it.lim_pending:
        try:
            violate(it, MAX_PENDING_EVENTS, it.lim_pending, pending, None)
        except Halt:
            if it.in_macrostep:
                raise
            return False
    return True


cdef inline int check_timeout(Interpreter it) except -1:
    """process-event-timeout: the work since the macrostep (or its chain) began, now."""
    cdef double elapsed
    if it.lim_timeout > 0:
        elapsed = _mono() - it.tbase
        if elapsed > it.lim_timeout:
            violate(it, PROCESS_EVENT_TIMEOUT, it.lim_timeout, elapsed, None)
    return 0


cdef inline int check_macrostep_time(Interpreter it) except -1:
    """process-event-timeout at the end of a macrostep, on the end time already read."""
    cdef double elapsed
    if it.lim_timeout > 0:
        elapsed = it._macro_end - it.tbase
        if elapsed > it.lim_timeout:
            violate(it, PROCESS_EVENT_TIMEOUT, it.lim_timeout, elapsed, None)
    return 0


cdef int judge_interrupted(Interpreter it) except -1:
    """A script its engine stopped: past the session's own deadline a timeout, else a cancellation.

    Only this session's own deadline makes a timeout; terminate() or an
    invoking parent's earlier deadline stopped it from outside (the parent
    then meets its own timeout). Always raises Halt.
    """
    cdef double elapsed = _mono() - it.tbase
    if not it.running:
        raise Halt()
    if not it.cancel_requested and it.lim_timeout > 0 and elapsed >= it.lim_timeout:
        violate(it, PROCESS_EVENT_TIMEOUT, it.lim_timeout, elapsed, None)
    it.stop(CANCELLED)
    raise Halt()


cdef inline int check_age(Interpreter it) except -1:
    """max-session-age at the start of a macrostep.

    The age timer fires on clocks that run timers by themselves (virtual,
    asyncio). A monotonic clock may go unserviced between calls (RealClock
    used synchronously), so each macrostep also compares its start time,
    already read, with the session's birth.
    """
    cdef double age
    if it.lim_age > 0 and it.clock_is_monotonic:
        age = it.macro_start - it.born
        if age > it.lim_age:
            violate(it, MAX_SESSION_AGE, it.lim_age, age, None)
    return 0


@cython.final
cdef class _AgeAlarm:
    """The ``max-session-age`` timer's callback. It holds its session weakly: a
    clock that outlives a dropped session must not keep it (and its engine
    context) alive for a day."""

    def __init__(self, Interpreter session):
        self.ref = weakref.ref(session)

    def __call__(self):
        cdef Interpreter it = self.ref()
        if it is None:
            return
        it.age_handle = None
        if not it.running or it.lim_age <= 0:
            return
        try:
            violate(it, MAX_SESSION_AGE, it.lim_age, it.clock.now() - it.born, None)
        except Halt:
            pass


cdef int arm_age_timer(Interpreter it) except -1:
    if it.age_handle is not None:
        it.age_handle.cancel()
        it.age_handle = None
    if it.lim_age > 0 and it.running:
        it.age_handle = it.clock.call_at(it.born + it.lim_age, _AgeAlarm(it))
    return 0


# ---------------------------------------------------------------- the script deadline and the peaks

cdef inline void arm_deadline(Interpreter it) noexcept:
    # A nested macrostep (a child booting inside its parent's) shares the
    # thread's engine: it may shorten the deadline, never extend it.
    cdef double saved = it.deadline_slot[0]
    cdef double new = it.tbase + it.lim_timeout if it.lim_timeout > 0 else 0.0
    if saved > 0 and (new == 0 or saved < new):
        new = saved
    it.saved_deadline = saved
    it.deadline_slot[0] = new


cdef inline void record_macrostep(Interpreter it, double elapsed) noexcept:
    if it.micro > it.peak_micro:
        it.peak_micro = it.micro
    if elapsed > it.peak_seconds:
        it.peak_seconds = elapsed
    it.stats.observe_macrostep(it.micro, elapsed, it.stats_pending)
