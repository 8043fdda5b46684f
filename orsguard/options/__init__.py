"""ORS option files: read, check, migrate (8.1.2 to 8.1.3), and session limits from them.

An ORS Application's options are exported from Configuration Manager as an
INI-style text file. :func:`read` parses one keeping every line's number,
:func:`check` checks it against :data:`SCHEMA` (the options the ORS 8.1.3
migration names), :func:`migrate` turns an 8.1.2 export into an 8.1.3 one by
deleting the options 8.1.3 no longer uses, :func:`effective` lists the values
in force, and :func:`limits_from_options` builds :class:`~orsguard.limits.Limits`
from the ``[scxml]`` section, again on SIGHUP with :class:`LimitsSource`.

Units in the file: ``scxml/process-event-timeout`` is in milliseconds and
``scxml/max-session-age`` in seconds; :class:`Limits` holds both in seconds.
The command line (``orsguard options check|migrate|show``) is
:mod:`orsguard.cli_options`.
"""

from orsguard.options.check import check
from orsguard.options.effective import ENV_PREFIX, Setting, effective, limits_from_options
from orsguard.options.migrate import Migration, migrate
from orsguard.options.problem import ERROR, NOTE, WARNING, OptionsError, Problem
from orsguard.options.reader import MAX_FILE_BYTES, Entry, OptionFile, read, read_with_problems
from orsguard.options.reload import LimitsSource, install_sighup
from orsguard.options.schema import INT_MAX, SCHEMA, Option

__all__ = [
    "ENV_PREFIX",
    "ERROR",
    "INT_MAX",
    "MAX_FILE_BYTES",
    "NOTE",
    "SCHEMA",
    "WARNING",
    "Entry",
    "LimitsSource",
    "Migration",
    "Option",
    "OptionFile",
    "OptionsError",
    "Problem",
    "Setting",
    "check",
    "effective",
    "install_sighup",
    "limits_from_options",
    "migrate",
    "read",
    "read_with_problems",
]
