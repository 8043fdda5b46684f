"""The package's shape: imports flow one way, and every exception a user can get is an OrsguardError.

Inside: the core, the document compiler, the datamodels, the session and what they share;
outside: the host, the command line, the tools and the test harness built on them. What is
inside never imports what is outside, the core imports nothing of orsguard's, and the
plug-ins (datamodels, executable content, I/O processors) see a session only through
``orsguard.runtime``. Every import counts, also those made only for type checking or inside
a function.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from orsguard.errors import OrsguardError
from tests.conftest import ROOT

PACKAGE = ROOT / "orsguard"

#: Top-level modules and packages below orsguard, by layer. A new module must be placed in one.
INSIDE = (
    "_core",
    "_version",
    "document",
    "executable",
    "datamodels",
    "runtime",
    "limits",
    "errors",
    "clock",
    "session",
    "records",
    "termination",
    "ioprocessors",
)
OUTSIDE = (
    "host",
    "cli",
    "cli_options",
    "options",
    "metrics",
    "replay",
    "lint",
    "chart",
    "diagram",
    "scenario",
    "pytest_plugin",
    "testing",
    "coverage",
)

#: Exception classes of the package that are not OrsguardErrors, and why.
NOT_ORSGUARD_ERRORS = {
    # Control flow of the step loop: a BaseException so that no `except Exception` in
    # executable content swallows it; it never leaves the session.
    "orsguard._core.Halt",
    # The core imports nothing of orsguard's, errors included; a datamodel raises it to the
    # core, which turns it into a timeout or a cancellation.
    "orsguard._core.ScriptInterrupted",
    # The host answers a bad request on its error topic; it never leaves the host.
    "orsguard.host.payload.RequestError",
    # `options migrate` reports an output it will not write to and exits 1; it never leaves the command.
    "orsguard.cli_options._Refused",
}

_CYTHON_IMPORT = re.compile(r"\s*(?:from\s+(\.*[\w.]*)\s+c?import\s|c?import\s+([\w.]+))")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".pyx", ".pxd", ".pxi"))


def _name(path: Path) -> str:
    """``orsguard.a.b`` for ``orsguard/a/b.py`` (and for ``orsguard/a/b/__init__.py``).

    A Cython ``.pxi`` file is part of the module whose ``.pyx`` includes it.
    """
    if path.suffix == ".pxi":
        including = [p for p in path.parent.glob("*.pyx") if f'include "{path.name}"' in p.read_text(encoding="utf-8")]
        assert len(including) == 1, f"{path} is included by {including}, not by exactly one .pyx"
        path = including[0]
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(("orsguard", *parts))


def _layer(module: str) -> str:
    """The top-level module or package below orsguard that ``module`` belongs to ("" for the face)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of ``path``."""
    return _imports_in(path.read_text(encoding="utf-8"), cython=path.suffix != ".py")


def _imports_in(text: str, *, cython: bool) -> list[tuple[int, str]]:
    """(line, module) of every import in ``text``; Cython source is read by pattern, line by line."""
    out: list[tuple[int, str]] = []
    if cython:
        for i, line in enumerate(text.splitlines(), 1):
            m = _CYTHON_IMPORT.match(line)
            if m:
                out.append((i, m.group(1) or m.group(2)))
        return out
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            out.append((node.lineno, "." * node.level + (node.module or "")))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
    return sorted(out)


def _orsguard_imports(path: Path) -> list[tuple[int, str]]:
    return [i for i in _imports(path) if i[1] == "orsguard" or i[1].startswith(("orsguard.", "."))]


MODULES = _modules()
IDS = [str(p.relative_to(ROOT)) for p in MODULES]


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_every_module_has_a_layer(path: Path) -> None:
    layer = _layer(_name(path))
    assert layer == "" or layer in INSIDE + OUTSIDE, (
        f"{path.relative_to(ROOT)}: add {layer!r} to INSIDE or OUTSIDE in this test"
    )


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_no_relative_imports(path: Path) -> None:
    # The rules below read absolute module paths; a relative import would slip past them.
    relative = [(line, module) for line, module in _imports(path) if module.startswith(".")]
    assert relative == [], f"{path.relative_to(ROOT)}: import by the full orsguard.… path"


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if p != PACKAGE / "__init__.py"],
    ids=[i for p, i in zip(MODULES, IDS, strict=True) if p != PACKAGE / "__init__.py"],
)
def test_no_module_imports_the_package_face(path: Path) -> None:
    face = [line for line, module in _orsguard_imports(path) if module == "orsguard"]
    assert face == [], (
        f"{path.relative_to(ROOT)} imports the package face (`import orsguard` or "
        f"`from orsguard import ...`) on line(s) {face}: import from the defining module"
    )


@pytest.mark.parametrize("path", MODULES, ids=IDS)
def test_imports_flow_one_way(path: Path) -> None:
    me = _layer(_name(path))
    imported = sorted({(line, module) for line, module in _orsguard_imports(path) if _layer(module) != me})
    where = path.relative_to(ROOT)
    if me == "_core":
        assert imported == [], f"{where}: the core imports nothing of orsguard's, found {imported}"
    if me in INSIDE:
        outside = [(line, module) for line, module in imported if _layer(module) in OUTSIDE]
        assert outside == [], f"{where} imports what sits outside it: {outside}"
    if me in INSIDE and me != "session":
        session = [(line, module) for line, module in imported if _layer(module) == "session"]
        assert session == [], f"{where} imports the session: type against orsguard.runtime instead ({session})"


def _session_private_names() -> set[str]:
    """The ``_`` names of Session and Interpreter: methods, and attributes session.py sets on ``self``."""
    from orsguard.session import Session

    names = {n for klass in (Session, *Session.__bases__) for n in vars(klass) if n.startswith("_")}
    for node in ast.walk(ast.parse((PACKAGE / "session.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_only_the_session_reads_its_private_names() -> None:
    """Plug-ins and tools use what orsguard.runtime and the documented API name, not a session's ``_`` names."""
    private = _session_private_names()
    assert {"_machine", "_process_external", "_coverage_sink"} <= private
    found = []
    for path in MODULES:
        if path.suffix != ".py" or path == PACKAGE / "session.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_the_face_pattern_finds_what_it_must() -> None:
    """The checks above read imports; this makes sure they see each form they must refuse."""
    source = (
        "import orsguard\nfrom orsguard import Session\nfrom orsguard.session import Session\n"
        "def f():\n    from orsguard.cli import main\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from orsguard.host import x\n"
    )
    found = [module for _, module in _imports_in(source, cython=False)]
    assert found == ["orsguard", "orsguard", "orsguard.session", "orsguard.cli", "typing", "orsguard.host"]
    cython = _imports_in(
        "from orsguard.errors import X\ncimport orsguard._core\n    from orsguard cimport a\n"
        "x = 1\nfrom .tables cimport Machine\n",
        cython=True,
    )
    assert cython == [(1, "orsguard.errors"), (2, "orsguard._core"), (3, "orsguard"), (5, ".tables")]


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class the package's modules define, by its full name."""
    found: dict[str, type[BaseException]] = {}
    for path in MODULES:
        if path.suffix not in (".py", ".pyx") or path.name == "__main__.py":  # __main__ runs a command
            continue
        module = importlib.import_module(_name(path))
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("orsguard"):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def test_every_exception_is_an_orsguard_error() -> None:
    classes = _exception_classes()
    names = set(classes)
    # The search must reach the compiled core and the errors defined outside errors.py.
    assert {
        "orsguard._core.Halt",
        "orsguard.replay.ReplayError",
        "orsguard.ioprocessors.mqtt_protocol.QueueFull",
    } <= names
    stray = sorted(n for n, c in classes.items() if not issubclass(c, OrsguardError) and n not in NOT_ORSGUARD_ERRORS)
    assert stray == [], f"derive these from orsguard.errors.OrsguardError (or list them here with why): {stray}"
    assert NOT_ORSGUARD_ERRORS <= names, "an exception listed as an exception is gone: update the list"


def test_strict_error_is_an_assertion_too() -> None:
    from orsguard.records import StrictError

    assert issubclass(StrictError, AssertionError)
    assert issubclass(StrictError, OrsguardError)


def _modules_and_packages() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*")
        if p.suffix in (".py", ".pyx", ".pxd", ".pxi", ".pyi") and "__pycache__" not in p.parts
    )


def test_the_readme_map_names_every_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tree = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = []
    for path in _modules_and_packages():
        rel = path.relative_to(PACKAGE)
        if path.name in ("__init__.py", "__main__.py") and rel.parent != Path("."):
            name = rel.parent.name + "/"  # a subpackage is named by its folder
        else:
            name = path.stem
        if not re.search(rf"(?<![\w/]){re.escape(name)}", tree):
            missing.append(str(rel))
    assert missing == [], f"README's Layout section does not name {missing}"
