"""What the test modules share: the repository's paths, document builders and started sessions.

Test modules import the builders from here (``from tests.conftest import doc``): many of
them are needed at import time, in module constants and ``parametrize`` lists, where a
fixture cannot reach.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orsguard import Document, DocumentError, Limits, Session, Stats, VirtualClock, load

#: The repository's root directory.
ROOT = Path(__file__).resolve().parents[1]

#: The SCXML namespace declaration alone.
XMLNS = 'xmlns="http://www.w3.org/2005/07/scxml"'
#: The namespace and version attributes every test document's ``<scxml>`` carries.
NS = f'{XMLNS} version="1.0"'
#: A bare ``<scxml>`` start tag.
HEAD = f"<scxml {NS}>"


def doc(*lines: str, head: str = HEAD) -> str:
    """A document whose first line is the ``<scxml>`` tag, so line numbers are easy to count."""
    return "\n".join((head, *lines, "</scxml>"))


def load_error(source: Any, **kwargs: Any) -> DocumentError:
    """The error ``load(source, **kwargs)`` raises; it must be a ``DocumentError`` itself, not a subclass."""
    with pytest.raises(DocumentError) as info:
        load(source, **kwargs)
    assert type(info.value) is DocumentError
    return info.value


def null_doc(body: str, initial: str = "a") -> Document:
    """A loaded document of the ``null`` datamodel around ``body``."""
    return load(f'<scxml {NS} datamodel="null" initial="{initial}">{body}</scxml>')


def countdown(*transitions: str) -> Document:
    """An event ``go`` takes a -> b; then ``_event.data`` eventless b -> b steps run while ``n`` counts down.

    ``back`` returns to a; ``transitions`` are more transitions of state a.
    """
    extra = "".join(f"\n    {t}" for t in transitions)
    return load(f"""<scxml {NS} initial="a">
  <datamodel><data id="n" expr="0"/></datamodel>
  <state id="a">
    <transition event="go" target="b"><assign location="n" expr="_event.data"/></transition>{extra}
  </state>
  <state id="b">
    <transition cond="n &gt; 0" target="b"><assign location="n" expr="n - 1"/></transition>
    <transition event="back" target="a"/>
  </state>
</scxml>""")


def delayed(delay: str, target: str = "b", *, final: bool = False) -> Document:
    """State a sends itself ``wake`` after ``delay`` and moves to ``target`` (a ``<final>`` if ``final``) on it."""
    element = "final" if final else "state"
    return load(f"""<scxml {NS} initial="a">
  <state id="a">
    <onentry><send event="wake" delay="{delay}"/></onentry>
    <transition event="wake" target="{target}"/>
  </state>
  <{element} id="{target}"/>
</scxml>""")


def run(
    document: Document, limits: Limits | None = None, stats: Stats | None = None, clock: VirtualClock | None = None
) -> Session:
    """A started session on a virtual clock with its own ``Stats``, without limits unless ``limits`` gives some."""
    session = Session(
        document, limits=limits or Limits.unlimited(), clock=clock or VirtualClock(), stats=stats or Stats()
    )
    session.start()
    return session


def start(document: Document, **limits: Any) -> Session:
    """A started session (see :func:`run`) under only the limits given as keywords."""
    return run(document, Limits.unlimited().replace(**limits))


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m orsguard.cli ARGS`` from the repository root.

    Limits come only from the arguments unless ``env`` adds some.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORSGUARD_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orsguard.cli", *map(str, args)],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
