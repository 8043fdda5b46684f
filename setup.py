"""Build the Cython core. Everything else is declared in pyproject.toml."""

import os
import shutil
import sys
import sysconfig

from setuptools import Extension, setup


def _require_compiler() -> None:
    # The compiler distutils will call: $CC, else the one Python was built with.
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        sys.exit(
            f"orsguard: no C compiler found (looked for {cc!r}).\n"
            "The core (orsguard/_core.pyx) must be compiled. Install one, e.g.\n"
            "  Debian/Ubuntu: apt-get install build-essential python3-dev\n"
            "  Fedora/RHEL:   dnf install gcc python3-devel\n"
            "  macOS:         xcode-select --install"
        )


def _extensions():
    from Cython.Build import cythonize

    trace = os.environ.get("ORSGUARD_CYTHON_TRACE") == "1"
    macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if trace else []
    directives = {"language_level": "3", "embedsignature": True}
    if trace:
        directives["linetrace"] = True
    ext = Extension("orsguard._core", ["orsguard/_core.pyx"], define_macros=macros,
                    extra_compile_args=["-O2"])
    return cythonize([ext], compiler_directives=directives, quiet=True)


if any(cmd in sys.argv for cmd in ("build_ext", "build", "bdist_wheel", "install", "develop", "editable_wheel")):
    _require_compiler()

setup(ext_modules=_extensions())
