# Included by _core.pyx: the process-wide counters a metrics collector reads.

cdef double[NB_MICRO] MICRO_BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 1e308]
cdef double[NB_SECONDS] SECONDS_BOUNDS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 1e308]
cdef double[NB_PENDING] PENDING_BOUNDS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 1e308]
cdef double[NB_AGE] AGE_BOUNDS = [1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 604800, 1e308]


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

    @cython.final
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

    @cython.final
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
            "sessions_ended": {END_REASONS[i]: self.ended[i] for i in range(len(END_REASONS))},
            "sessions_active": self.sessions_active,
            "limit_violations": {LIMIT_OPTIONS[i]: self.violations[i] for i in range(len(LIMIT_OPTIONS))},
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
