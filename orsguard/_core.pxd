# cython: language_level=3
# The declarations of the core: its enums and every C field and C method of its
# classes. The definitions are in _core.pyx and the files it includes.
#
# Every C method is final: a Python subclass (Session) cannot override one
# anyway, and a final method is called directly instead of through the vtable.

cimport cython
from libc.stdint cimport uint64_t

# State kinds, as the document compiler numbers them (exported as KIND_* ints).
cpdef enum:
    KIND_ATOMIC = 0
    KIND_COMPOUND = 1
    KIND_PARALLEL = 2
    KIND_FINAL = 3
    KIND_HISTORY_SHALLOW = 4
    KIND_HISTORY_DEEP = 5
    KIND_ROOT = 6

# The five ORS limits, in the order of ORS's option table. Each member's name,
# lower-cased with "-" for "_", is the option's name: LIMIT_OPTIONS is derived
# from this enum and nothing else spells the names out.
cpdef enum Limit:
    MAX_MICROSTEP_COUNT = 0
    MAX_STATE_ENTRY_COUNT = 1
    MAX_PENDING_EVENTS = 2
    PROCESS_EVENT_TIMEOUT = 3
    MAX_SESSION_AGE = 4

# Why a session ended, as the metrics label it (END_REASONS: the names, lower-cased).
cpdef enum EndReason:
    FINAL = 0
    LIMIT = 1
    ERROR = 2
    CANCELLED = 3

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
    NB_MICRO = 14
    NB_SECONDS = 13
    NB_PENDING = 12
    NB_AGE = 13


cdef class Event:
    cdef public object name
    cdef public str type
    cdef public object sendid
    cdef public object origin
    cdef public object origintype
    cdef public object invokeid
    cdef public object data
    cdef public object raw                # the message as received (BasicHTTP), else None
    cdef bint chained                     # queued by the session's own macrostep (see enqueue_external)


cdef class Stats:
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

    @cython.final
    cdef inline void observe_macrostep(self, long micro, double seconds, long pending) noexcept

    @cython.final
    cdef inline void observe_end(self, long micro, long entries, long pending, double age) noexcept


cdef class Machine:
    cdef readonly int n                   # states, index 0 = <scxml>
    cdef readonly int ntrans
    cdef int W                            # 64-bit words per bitset
    cdef void* block                      # every C table below lives in this one allocation
    cdef uint64_t* atomic                 # W: states that can be atomic members of a configuration
    cdef int* kind
    cdef int* parent
    cdef int* initial                     # initial transition per compound state / root, or -1
    # States are in document order (pre-order), so the proper descendants of s
    # are the indices s+1 .. s+size[s]: ranges, not per-state bitsets, keep the
    # tables linear in the document.
    cdef int* size
    cdef int* s_tstart
    cdef int* s_tcount
    cdef int* s_trans
    cdef int* t_source
    cdef int* t_cond                      # condition index, -1 = none
    cdef int* t_domain                    # static domain, -1 = targetless, -2 = computed at run time
    cdef unsigned char* s_flags           # F_* per state
    cdef char* t_content                  # 1 where the transition has executable content
    cdef char* t_internal
    cdef char* t_eventless
    cdef char* t_has_history
    cdef readonly list ids
    cdef readonly dict index_of           # id -> state index
    cdef readonly list children           # per state: child state indices (no history)
    cdef readonly list history_children
    cdef readonly list targets            # per transition: target state indices
    cdef readonly list events             # per transition: tuple of descriptors, () = eventless
    cdef readonly list content            # per transition: callable or None
    cdef readonly list onentry            # per state: tuple of callables
    cdef readonly list onexit
    cdef readonly list donedata           # per state: callable or None
    cdef readonly list invokes            # per state: tuple of invoke objects
    cdef readonly list data_init          # per state: callable or None (late binding)
    cdef readonly list labels             # per transition: "a -> b" for trails
    cdef readonly bint has_invokes
    cdef dict event_cache

    @cython.final
    cdef check_preorder(self)

    @cython.final
    cdef bint is_pseudo(self, int t, list initial, list kinds)

    @cython.final
    cdef inline bint is_descendant(self, int a, int b) noexcept

    @cython.final
    cdef inline bint is_compound_like(self, int s) noexcept

    @cython.final
    cdef int find_lcca(self, int first, list rest)

    @cython.final
    cdef int static_transition_domain(self, int t)

    @cython.final
    cdef bytes match_table(self, str name)


cdef class Peaks:
    cdef readonly long microsteps
    cdef readonly long state_entries
    cdef readonly object state
    cdef readonly long pending
    cdef readonly double macrostep_seconds
    cdef readonly double age


@cython.final
cdef class _AgeAlarm:
    cdef object ref


cdef class Interpreter:
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
    cdef unsigned int* tcount             # per transition, allocated at start when coverage is set
    cdef uint64_t* tmp_enter
    cdef uint64_t* tmp_default
    cdef uint64_t* tmp_exit
    cdef uint64_t* tmp_a
    cdef uint64_t* tmp_b
    cdef uint64_t* tmp_c
    cdef int enter_lo                     # index range of the states in tmp_enter
    cdef int enter_hi
    # Words of config outside cw_lo..cw_hi are zero, so scans skip them: a flat
    # document's step does not read the whole configuration. Entering widens
    # the range; select_transitions narrows it to the words it found non-zero.
    cdef int cw_lo
    cdef int cw_hi
    cdef dict hist                        # history state -> tuple of the states it recorded
    cdef int[TRAIL_SIZE] trail
    cdef int trail_pos
    cdef long trail_n
    cdef readonly object _internal_queue
    cdef readonly object _external_queue
    cdef public dict _delayed             # key -> clock handle, sends waiting for their delay
    cdef list states_to_invoke
    cdef readonly bint running
    cdef readonly bint started
    cdef public object _final_state
    cdef public object final_data         # donedata of the top-level final state
    cdef public str end_reason
    cdef public bint _reached_final
    cdef public object _tracer            # tracer(t, event) for each transition taken, when set
    cdef public bint coverage             # count transitions taken (set before start)
    cdef object __weakref__               # timers hold the session weakly (_AgeAlarm)
    # Macrostep bookkeeping.
    cdef long micro
    cdef double macro_start
    cdef double tbase                     # when the work the timeout bounds began (see begin_macrostep)
    cdef readonly double _macro_end       # monotonic time the last macrostep ended
    cdef bint in_macrostep
    cdef bint halting                     # _halt's exit: not a macrostep of the peaks
    cdef long stats_pending
    cdef long npending                    # internal + external + delayed, kept in step with the queues
    # cancel() from another thread while a macrostep runs (see _request_cancel)
    cdef unsigned long macro_thread       # the thread running the current macrostep
    cdef bint cancel_requested
    cdef bint bind_events                 # the datamodel's reads_event, read at start
    # The guard (_guard.pxi): limits as C numbers (0 = off), the age timer,
    # where a violation happened and what it was, and the peaks.
    cdef object _limits
    cdef long lim_micro
    cdef long lim_entry
    cdef long lim_pending
    cdef double lim_timeout
    cdef double lim_age
    cdef double born
    cdef bint clock_is_monotonic          # clock.now() is the C monotonic clock
    cdef object age_handle
    cdef int cur_t                        # transition being taken, for a violation (-1 none)
    cdef int cur_s                        # state being entered (-1 none)
    # option, limit, observed, state, transition, trail: a Termination's fields
    cdef readonly tuple _violation
    # The script deadline: a C double the datamodel's engine compares with the
    # monotonic clock (0 = none), or own_deadline when there is no engine.
    cdef double* deadline_slot
    cdef double own_deadline
    cdef double saved_deadline
    cdef long peak_micro
    cdef long peak_entries
    cdef int peak_state
    cdef long peak_pending
    cdef double peak_seconds
    cdef double ended_age

    # ending
    @cython.final
    cdef stop(self, int reason)

    @cython.final
    cdef exit_interpreter(self, int reason)

    # queues
    @cython.final
    cdef raise_platform_error(self, str name, exc, int t=*, int k=*)

    # configuration
    @cython.final
    cdef inline bint in_config(self, int s) noexcept

    @cython.final
    cdef list active_states(self, bint descending)

    # executable content
    @cython.final
    cdef execute_content(self, block)

    @cython.final
    cdef bint condition_match(self, int t)

    @cython.final
    cdef done_data(self, int s)

    # Appendix D
    @cython.final
    cdef list select_transitions(self, bytes matches)

    @cython.final
    cdef bint compute_exit_set(self, int t, uint64_t* out, int* wlo, int* whi) except -1

    @cython.final
    cdef list remove_conflicting_transitions(self, list enabled)

    @cython.final
    cdef list get_effective_target_states(self, int t)

    @cython.final
    cdef add_effective_target_state(self, int s, list out)

    @cython.final
    cdef int get_transition_domain(self, int t)

    @cython.final
    cdef inline note_taken(self, int t, ev)

    @cython.final
    cdef microstep(self, list enabled, ev)

    @cython.final
    cdef exit_states(self, list enabled)

    @cython.final
    cdef tuple recorded_history(self, int s, bint deep)

    @cython.final
    cdef enter_states(self, list enabled)

    @cython.final
    cdef compute_entry_set(self, list enabled, dict history_content)

    @cython.final
    cdef bint is_in_final_state(self, int s)

    @cython.final
    cdef inline void mark_to_enter(self, uint64_t* bits, int s) noexcept

    @cython.final
    cdef inline bint has_descendant_in(self, uint64_t* bits, int s) noexcept

    @cython.final
    cdef add_descendant_states_to_enter(self, int s, uint64_t* enter, uint64_t* default_entry,
                                        dict history_content)

    @cython.final
    cdef add_ancestor_states_to_enter(self, int s, int ancestor, uint64_t* enter, uint64_t* default_entry,
                                      dict history_content)

    # macrosteps
    @cython.final
    cdef begin_macrostep(self, bint chained)

    @cython.final
    cdef end_macrostep(self, bint check)

    @cython.final
    cdef inline poll_cancel(self)

    @cython.final
    cdef settle(self)

    @cython.final
    cdef enter_initial_states(self)
