"""The options orsguard knows: every option the ORS 8.1.3 migration chapter names.

Each :class:`Option` says what values it takes, what it defaults to, when a
change takes effect and which of these facts Genesys publishes; the ``[scxml]``
limits take their defaults from :class:`~orsguard.limits.Limits`.
"""

from __future__ import annotations

from dataclasses import dataclass

from orsguard.limits import OPTION_NAMES, Limits

#: Largest value an integer option accepts: Configuration Server stores option
#: values as text, and ORS reads numeric ones into 32-bit signed integers.
INT_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Option:
    """What orsguard knows of one ORS option.

    ``default`` is the value as it would be written in the file (None: no
    default, the option is simply unset). ``published`` names the facts that
    Genesys publishes (``default``, ``valid``, ``effect``); every other fact is
    orsguard's choice and ``why`` says why it was chosen. For a millisecond
    option, ``implausible_below`` is the value below which (0 excepted)
    :func:`check` warns that seconds were probably meant.
    """

    section: str
    name: str
    kind: str
    change: str
    summary: str
    default: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    zero: str = ""
    effect: str = ""
    published: frozenset[str] = frozenset()
    why: str = ""
    limit: str | None = None
    implausible_below: int | None = None

    @property
    def key(self) -> str:
        """``section/name``, the spelling used in messages and in docs."""
        return f"{self.section}/{self.name}"

    @property
    def removed(self) -> bool:
        """True for the options ORS 8.1.3 no longer uses."""
        return self.change == "removed"

    def valid_text(self) -> str:
        """The valid values in words, for messages and the docs table."""
        if self.kind == "integer":
            text = f"{self.minimum} to {self.maximum}"
            return f"{text} (0 = {self.zero})" if self.zero else text
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "choice":
            return " or ".join(self.choices)
        return KIND_TEXT.get(self.kind, "")


#: The valid values of each non-numeric kind, in words.
KIND_TEXT = {
    "url": "an absolute http or https URL",
    "keyspace": "a letter, then up to 47 letters, digits or underscores",
    "version": "numbers separated by dots, e.g. 8.1.3",
    "replication": "a factor (SimpleStrategy) or datacenter:factor pairs (NetworkTopologyStrategy)",
    "removed": "(removed in 8.1.3)",
}

_LIMIT_DEFAULTS = Limits()

_LIMIT_WHY = (
    "Genesys publishes no value that orsguard could confirm; the default is "
    "orsguard's Limits default, high enough for real strategies and low enough "
    "to stop a runaway session; 0 switches the limit off as everywhere in orsguard."
)

_REMOVED_WHY = "No longer needed with the 8.1.3 cluster design; 8.1.3 ignores it and migrate deletes it."


def _limit_option(name: str, summary: str, unit: str, scale: int = 1, implausible_below: int | None = None) -> Option:
    limit = {v: k for k, v in OPTION_NAMES.items()}[name]
    default = getattr(_LIMIT_DEFAULTS, limit)
    return Option(
        "scxml",
        name,
        "integer",
        "added",
        summary,
        default=str(round(default * scale)),
        minimum=0,
        maximum=INT_MAX,
        unit=unit,
        zero="no limit",
        effect="immediately",
        why=_LIMIT_WHY,
        limit=limit,
        implausible_below=implausible_below,
    )


#: Every option the ORS 8.1.3 migration chapter names, keyed by ``section/name``.
SCHEMA: dict[str, Option] = {
    o.key: o
    for o in (
        _limit_option(
            "max-microstep-count",
            "Microsteps a session may take while processing one event.",
            "microsteps",
        ),
        _limit_option(
            "max-state-entry-count",
            "Times one state may be entered during a session's life.",
            "entries",
        ),
        _limit_option(
            "max-pending-events",
            "Events queued to a session: internal, external, delayed and undelivered.",
            "events",
        ),
        _limit_option(
            "process-event-timeout",
            "Time allowed for processing the event queue.",
            "ms",
            scale=1000,
            implausible_below=100,
        ),
        _limit_option(
            "max-session-age",
            "Age at which a session is ended, so that none lives forever.",
            "s",
        ),
        Option(
            "orchestration",
            "external-url",
            "url",
            "added",
            "URL (the load balancer's) put in the Location of a 307 redirect "
            "for an HTTP request that reached a node not running the session.",
            effect="for the next interaction",
            published=frozenset({"default", "valid", "effect"}),
        ),
        Option(
            "orchestration",
            "mcr-pull-by-this-node",
            "boolean",
            "added",
            "Whether this node pulls multimedia (eServices) interactions.",
            default="false",
            effect="at startup",
            why="False is how a node behaves without the option; the migration "
            "procedure asks to set true only for multimedia. Taking effect at startup "
            "is the cautious reading: it changes which interactions the node owns.",
        ),
        Option(
            "orchestration",
            "scxml-log-filter-level",
            "integer",
            "added",
            "Level that filters the log events of SCXML `<log>` output.",
            default="0",
            minimum=0,
            maximum=INT_MAX,
            zero="no filtering",
            effect="immediately",
            why="Zero keeps every `<log>` event, as before the option existed; no upper "
            "bound is enforced because none is published.",
        ),
        Option(
            "orchestration",
            "send-retries",
            "integer",
            "added",
            "Times an event is sent again after a failed `<send>`.",
            default="3",
            minimum=0,
            maximum=INT_MAX,
            unit="retries",
            zero="no retry",
            effect="immediately",
            why="A few retries ride out a short outage of the target or the broker, "
            "while an event that cannot be delivered is still reported within seconds.",
        ),
        Option(
            "persistence",
            "cassandra-connect-attempt-timeout",
            "integer",
            "added",
            "Time allowed for one attempt to connect to Cassandra.",
            default="5000",
            minimum=1,
            maximum=INT_MAX,
            unit="ms",
            implausible_below=100,
            effect="at the next connection attempt",
            why="Milliseconds like ORS's other connection timeouts (call-watching-timeout "
            "defaults to 5000 ms); a node that takes longer to answer is treated as down.",
        ),
        Option(
            "persistence",
            "cassandra-keyspace-name",
            "keyspace",
            "added",
            "Cassandra keyspace that holds this cluster's sessions.",
            default="Orchestration",
            effect="at startup",
            why="The keyspace name ORS used before it was configurable; the syntax "
            "is Cassandra's rule for keyspace names.",
        ),
        Option(
            "persistence",
            "cassandra-max-latency",
            "integer",
            "added",
            "Cassandra latency above which a request is treated as failed.",
            default="0",
            minimum=0,
            maximum=INT_MAX,
            unit="ms",
            implausible_below=10,
            zero="not watched",
            effect="immediately",
            why="Zero leaves latency unwatched, as before the option existed.",
        ),
        Option(
            "persistence",
            "cassandra-schema-version",
            "version",
            "added",
            "Version of the Cassandra schema ORS expects.",
            effect="at startup",
            why="No default: the schema version must match what was installed in Cassandra.",
        ),
        Option(
            "persistence",
            "cassandra-strategy-class",
            "choice",
            "added",
            "Cassandra replication strategy: SimpleStrategy for a single cluster, "
            "NetworkTopologyStrategy for data centers.",
            default="SimpleStrategy",
            choices=("SimpleStrategy", "NetworkTopologyStrategy"),
            effect="at startup (when the keyspace is created)",
            why="SimpleStrategy matches the single-cluster deployment that 8.1.2 had; "
            "the `org.apache.cassandra.locator.` prefix is also accepted, as Cassandra does.",
        ),
        Option(
            "persistence",
            "cassandra-strategy-options",
            "replication",
            "added",
            "Replication: one factor for SimpleStrategy (3 or replication_factor:3), "
            "datacenter:factor pairs for NetworkTopologyStrategy (London:3,Paris:2).",
            default="replication_factor:1",
            effect="at startup (when the keyspace is created)",
            why="A factor of 1 is the smallest that works on one node; production "
            "clusters should raise it. The two forms are Cassandra's own.",
        ),
        Option("cluster", "name", "removed", "removed", "Cluster name (8.1.2).", why=_REMOVED_WHY),
        Option("cluster", "super_node", "removed", "removed", "Super node (8.1.2).", why=_REMOVED_WHY),
        Option(
            "orchestration",
            "mcr-pull-by-msn-only",
            "removed",
            "removed",
            "Multimedia pulled by the master node only (8.1.2).",
            why=_REMOVED_WHY,
        ),
    )
}

#: The section 8.1.3 drops whole, and the one option it drops from a kept section.
REMOVED_SECTION = "cluster"
REMOVED_OPTION = ("orchestration", "mcr-pull-by-msn-only")

_FOLDED: dict[str, Option] = {key.lower(): o for key, o in SCHEMA.items()}


def known_ignoring_case(section: str, name: str) -> Option | None:
    """The schema's option whose ``section/name`` matches this one when case is ignored."""
    return _FOLDED.get(f"{section}/{name}".lower())
