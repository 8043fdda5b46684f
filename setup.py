"""Build the Cython core and the QuickJS binding. Everything else is declared in pyproject.toml.

The QuickJS engine (quickjs-ng, MIT) is not part of this repository: the build
fetches the pinned source release with pip, checks its sha256 and compiles it
into ``orsguard.datamodels._quickjs``. ``ORSGUARD_QUICKJS_SRC=DIR`` points the
build at an unpacked ``upstream-quickjs`` directory instead (offline builds).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
QUICKJS_PACKAGE = "quickjs-ng"
QUICKJS_VERSION = "0.17.0.2"
QUICKJS_SHA256 = "43d2e48272208721a7aaea8e3f02d4b9318f12ef20cc4f5421b59d9a470706ef"
QUICKJS_C = ("quickjs.c", "libregexp.c", "libunicode.c", "dtoa.c")


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


def _fail(reason: str) -> None:
    pin = f"{QUICKJS_PACKAGE}=={QUICKJS_VERSION}"
    sys.exit(
        f"orsguard: cannot get the QuickJS engine source ({pin}): {reason}\n"
        f"The build downloads it with `pip download --no-deps --no-binary :all: {pin}`.\n"
        "Offline: unpack that sdist elsewhere and set ORSGUARD_QUICKJS_SRC to its\n"
        "upstream-quickjs directory, e.g.\n"
        f"  ORSGUARD_QUICKJS_SRC=/path/quickjs_ng-{QUICKJS_VERSION}/upstream-quickjs pip install ."
    )


def _has_sources(directory: str) -> bool:
    return all(os.path.isfile(os.path.join(directory, name)) for name in (*QUICKJS_C, "quickjs.h"))


def quickjs_source() -> str:
    """The directory holding quickjs.c and friends: given, cached, or fetched and verified now."""
    given = os.environ.get("ORSGUARD_QUICKJS_SRC")
    if given:
        if not _has_sources(given):
            _fail(f"ORSGUARD_QUICKJS_SRC={given!r} does not hold {', '.join(QUICKJS_C)} and quickjs.h")
        return given
    cache = os.path.join(HERE, "build", "quickjs-src")
    unpacked = os.path.join(cache, f"quickjs_ng-{QUICKJS_VERSION}", "upstream-quickjs")
    if _has_sources(unpacked):
        return unpacked
    sdist = os.path.join(cache, f"quickjs_ng-{QUICKJS_VERSION}.tar.gz")
    if not os.path.isfile(sdist):
        os.makedirs(cache, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            cache,
            f"{QUICKJS_PACKAGE}=={QUICKJS_VERSION}",
        ]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            _fail(f"running pip failed: {exc}")
        if result.returncode != 0 or not os.path.isfile(sdist):
            _fail("pip download failed:\n" + (result.stderr or result.stdout).strip())
    with open(sdist, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != QUICKJS_SHA256:
        os.remove(sdist)
        _fail(f"sha256 of the download is {digest}, expected {QUICKJS_SHA256}")
    prefix = f"quickjs_ng-{QUICKJS_VERSION}/upstream-quickjs/"
    with tarfile.open(sdist) as tar:
        members = [
            m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile() and "/" not in m.name[len(prefix) :]
        ]
        for m in members:
            src = tar.extractfile(m)
            assert src is not None
            os.makedirs(unpacked, exist_ok=True)
            with open(os.path.join(unpacked, m.name[len(prefix) :]), "wb") as out:
                out.write(src.read())
    if not _has_sources(unpacked):
        _fail(f"{sdist} does not contain {prefix}")
    return unpacked


class BuildExt(build_ext):
    """Adds the QuickJS C sources to the binding just before compiling, fetching them if needed."""

    def build_extensions(self) -> None:
        for ext in self.extensions:
            if ext.name == "orsguard.datamodels._quickjs":
                src = quickjs_source()
                ext.sources += [os.path.join(src, name) for name in QUICKJS_C]
                ext.include_dirs.append(src)
        super().build_extensions()


def _extensions():
    from Cython.Build import cythonize

    trace = os.environ.get("ORSGUARD_CYTHON_TRACE") == "1"
    macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if trace else []
    directives = {"language_level": "3", "embedsignature": True}
    if trace:
        directives["linetrace"] = True
    core = Extension("orsguard._core", ["orsguard/_core.pyx"], define_macros=macros, extra_compile_args=["-O2"])
    # The engine's own sources are added by BuildExt; they are C99 with GNU extensions.
    quickjs = Extension(
        "orsguard.datamodels._quickjs",
        ["orsguard/datamodels/_quickjs.pyx"],
        define_macros=[*macros, ("_GNU_SOURCE", None)],
        extra_compile_args=[
            "-O2",
            "-std=gnu11",
            "-Wno-sign-compare",
            "-Wno-unused-variable",
            "-Wno-unused-but-set-variable",
            "-Wno-missing-field-initializers",
        ],
        libraries=["m", "pthread"],
    )
    return cythonize([core, quickjs], compiler_directives=directives, quiet=True)


if any(cmd in sys.argv for cmd in ("build_ext", "build", "bdist_wheel", "install", "develop", "editable_wheel")):
    _require_compiler()

setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
