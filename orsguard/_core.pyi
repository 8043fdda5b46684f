"""Type stub for the compiled core (orsguard/_core.pyx)."""

from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

KIND_ATOMIC: int
KIND_COMPOUND: int
KIND_PARALLEL: int
KIND_FINAL: int
KIND_HISTORY_SHALLOW: int
KIND_HISTORY_DEEP: int
KIND_ROOT: int
LIMIT_OPTIONS: tuple[str, str, str, str, str]
END_REASONS: tuple[str, str, str, str]

def monotonic() -> float: ...

class Halt(BaseException): ...
class ScriptInterrupted(Exception): ...

class Event:
    name: str | None
    type: str
    sendid: Any
    origin: Any
    origintype: Any
    invokeid: Any
    data: Any
    raw: Any
    def __init__(self, name: str | None, data: Any = None, *, type: str = "external", sendid: Any = None,
                 origin: Any = None, origintype: Any = None, invokeid: Any = None, raw: Any = None) -> None: ...

class Stats:
    sessions_started: int
    sessions_active: int
    events_internal: int
    events_external: int
    microsteps: int
    def snapshot(self) -> dict[str, Any]: ...

default_stats: Stats

class Peaks:
    microsteps: int
    state_entries: int
    state: str | None
    pending: int
    macrostep_seconds: float
    age: float
    def __init__(self, microsteps: int = 0, state_entries: int = 0, state: str | None = None, pending: int = 0,
                 macrostep_seconds: float = 0.0, age: float = 0.0) -> None: ...
    def as_dict(self) -> dict[str, Any]: ...

class Machine:
    n: int
    ntrans: int
    ids: list[str]
    index_of: dict[str, int]
    children: list[list[int]]
    history_children: list[list[int]]
    targets: list[list[int]]
    events: list[tuple[str, ...]]
    content: list[Any]
    onentry: list[tuple[Any, ...]]
    onexit: list[tuple[Any, ...]]
    donedata: list[Any]
    invokes: list[tuple[Any, ...]]
    data_init: list[Any]
    labels: list[str]
    has_invokes: bool
    def __init__(self, ids: list[str], kinds: list[int], parents: list[int], initial: list[int],
                 trans_source: list[int], trans_targets: list[list[int]], trans_events: list[tuple[str, ...]],
                 trans_cond: list[int], trans_internal: list[bool], trans_content: list[Any],
                 onentry: list[list[Any]], onexit: list[list[Any]], donedata: list[Any],
                 invokes: list[list[Any]], data_init: list[Any]) -> None: ...

class Termination:
    option: str
    limit: float
    observed: float
    state: str | None
    transition: str | None
    trail: list[str]
    def __init__(self, option: str, limit: float, observed: float, state: str | None,
                 transition: str | None, trail: list[str]) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def loop(self) -> tuple[str, float] | None: ...
    def as_dict(self) -> dict[str, Any]: ...

class Interpreter:
    _machine: Machine
    dm: Any
    clock: Any
    stats: Stats
    _internal_queue: deque[Event]
    _external_queue: deque[Event]
    _delayed: dict[Any, Any]
    running: bool
    started: bool
    _final_state: str | None
    final_data: Any
    termination: Termination | None
    end_reason: str | None
    _reached_final: bool
    _tracer: Callable[[int, Event | None], Any] | None
    coverage: bool
    limits: Any
    @property
    def _macro_end(self) -> float: ...
    def _core_init(self, machine: Machine, limits: Any, clock: Any, stats: Stats | None) -> None: ...
    def script_interrupted(self) -> NoReturn: ...
    def _trail_labels(self) -> list[str]: ...
    def _pending_count(self) -> int: ...
    def enqueue_internal(self, event: Event) -> None: ...
    def enqueue_external(self, event: Event) -> bool: ...
    def _schedule(self, key: Any, delay: float, callback: Callable[[], Any]) -> None: ...
    def _unschedule(self, key: Any) -> bool: ...
    def raise_error(self, name: str, exc: BaseException | None = None) -> None: ...
    def is_active(self, state_id: str) -> bool: ...
    @property
    def configuration(self) -> frozenset[str]: ...
    @property
    def atomic_configuration(self) -> frozenset[str]: ...
    def entry_count(self, state_id: str) -> int: ...
    def state_entry_counts(self) -> list[int]: ...
    def transition_counts(self) -> list[int]: ...
    @property
    def peaks(self) -> Peaks: ...
    def _start_core(self) -> None: ...
    def _process_external(self) -> None: ...
    def _halt(self, reason: str = "cancelled") -> None: ...
    def _request_cancel(self) -> bool: ...
    def _on_stopped(self) -> None: ...
    def _invoke_start(self, s: int) -> None: ...
    def _invoke_exit(self, s: int) -> None: ...
    def _external_preprocess(self, event: Event) -> bool: ...
    def _error_data(self, name: str, exc: BaseException | None, t: int, k: int) -> Any: ...
