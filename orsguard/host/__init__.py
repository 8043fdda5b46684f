"""The MQTT session host: ``orsguard serve --mqtt mqtt://HOST:PORT --documents DIR``.

One host process keeps SCXML sessions in memory and talks to one MQTT 5
broker. Start requests arrive through the shared subscription
``$share/orsguard/<prefix>/start``, so every host on the broker takes a share;
a session's events are subscribed to only by the host that started it. The
topic layout and payloads are in docs/operations.md; in short:

==========================================  =========================================
``<prefix>/start``                           start request (JSON), shared by all hosts
``<prefix>/sessions/<sid>/started``          the host has the session and takes events
``<prefix>/sessions/<sid>/events/<name>``    event ``name`` for the session (JSON data)
``<prefix>/sessions/<sid>/ended``            the session stopped (final, limit, ...)
``<prefix>/errors``                          a request the host could not act on
``<prefix>/hosts/<client id>``               retained host status (online/offline)
==========================================  =========================================

Everything is published and subscribed with QoS 1 on a persistent broker
session (a clean start only on the first connection, and a session expiry
interval), so events published while the host reconnects wait in the broker.
Delivery is at least once: a consumer may see a message twice.

``--workers N`` runs N such hosts as child processes (:func:`supervise`),
each its own MQTT client in the shared subscription, behind one metrics
endpoint.

The parts, each its own module:

* :mod:`~orsguard.host.config` - the command-line options, ``HostConfig``, the documents, logging;
* :mod:`~orsguard.host.connection` - the MQTT client, reconnecting with backoff, publishing with retry;
* :mod:`~orsguard.host.routing` - ``SessionHost``: start requests and events routed to sessions;
* :mod:`~orsguard.host.payload` - JSON in and out, session ids, the error answered on the error topic;
* :mod:`~orsguard.host.workers` - the ``--workers N`` supervisor and its metrics endpoint;
* :mod:`~orsguard.host.command` - ``orsguard serve`` and ``python -m orsguard.host``.
"""

from orsguard.host.command import add_subcommand, main, serve
from orsguard.host.config import HostConfig, JsonLogFormatter, load_documents
from orsguard.host.routing import SessionHost
from orsguard.host.workers import WorkersCollector, supervise

__all__ = [
    "HostConfig",
    "JsonLogFormatter",
    "SessionHost",
    "WorkersCollector",
    "add_subcommand",
    "load_documents",
    "main",
    "serve",
    "supervise",
]
