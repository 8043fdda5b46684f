"""Reading ORS option files: INI-style exports from Configuration Manager.

An export has ``[section]`` headers, ``option=value`` lines and ``#`` or ``;``
comment lines. The reader keeps every raw line and each entry's line number, so
that messages can point at a line and migration can keep the other lines byte
for byte. It refuses anything that is not a regular file of a sane size.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

from orsguard.options.problem import ERROR, OptionsError, Problem

#: Largest option file read, in bytes. A real export with tens of thousands of
#: options is a few megabytes; anything bigger (``/dev/zero``, a log file given
#: by mistake) is refused before it is read into memory.
MAX_FILE_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``option=value`` line; ``value`` is the text after ``=``, stripped."""

    section: str
    option: str
    value: str
    line: int


@dataclass(slots=True)
class OptionFile:
    """A parsed option file; ``lines`` are its raw lines, line endings kept."""

    path: str
    lines: list[bytes]
    entries: list[Entry] = field(default_factory=list)
    headers: list[tuple[str, int]] = field(default_factory=list)

    def get(self, section: str, option: str) -> Entry | None:
        """The entry that sets ``section/option`` (the last one, if repeated)."""
        for entry in reversed(self.entries):
            if entry.section == section and entry.option == option:
                return entry
        return None

    def last_entries(self) -> dict[tuple[str, str], Entry]:
        """``(section, option)`` to the entry that sets it (the last one), in one pass."""
        return {(entry.section, entry.option): entry for entry in self.entries}

    def sections(self) -> dict[str, dict[str, str]]:
        """The options by section, repeated sections merged, the last value winning."""
        merged: dict[str, dict[str, str]] = {name: {} for name, _ in self.headers}
        for entry in self.entries:
            merged[entry.section][entry.option] = entry.value
        return merged


_HEADER = re.compile(r"\[(?P<name>[^\]]*)\]\s*(?:[#;].*)?")


def _split_lines(data: bytes) -> list[bytes]:
    # Only b"\n" ends a line, so CRLF files keep their "\r" in the raw line and
    # migrate writes them back unchanged.
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise OptionsError(
            path,
            line,
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "convert the export first, e.g. iconv -f latin1 -t utf-8",
        ) from None


def _parse(path: str, data: bytes) -> tuple[OptionFile, list[Problem]]:
    _decode(path, data)
    result = OptionFile(path, _split_lines(data))
    errors: list[Problem] = []
    section: str | None = None
    for number, raw in enumerate(result.lines, 1):
        text = raw.decode("utf-8")
        if number == 1:
            text = text.removeprefix("\ufeff")
        text = text.strip()
        if not text or text[0] in "#;":
            continue
        if text.startswith("["):
            match = _HEADER.fullmatch(text)
            if match is None:
                errors.append(Problem(path, number, None, None, ERROR, "section header has no closing ']'"))
                # Read on as if the ']' were there, so the lines below are not
                # reported again as options outside any section.
                section = text[1:].strip() or None
                continue
            name = match["name"].strip()
            if not name:
                errors.append(Problem(path, number, None, None, ERROR, "empty section name '[]'"))
                section = None
                continue
            section = name
            result.headers.append((name, number))
            continue
        if "=" not in text:
            errors.append(
                Problem(
                    path,
                    number,
                    None,
                    None,
                    ERROR,
                    f"expected option=value, [section] or a comment, got {shorten(text)!r} (no '=')",
                )
            )
            continue
        name, _, value = text.partition("=")
        name = name.strip()
        if not name:
            errors.append(Problem(path, number, section, None, ERROR, "no option name before '='"))
            continue
        if section is None:
            errors.append(Problem(path, number, None, None, ERROR, f"option {name!r} before any [section] header"))
            continue
        result.entries.append(Entry(section, name, value.strip(), number))
    return result, errors


def shorten(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters with ``...``, for quoting a line in a message."""
    return text if len(text) <= width else text[: width - 3] + "..."


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words (``a FIFO``), for refusing it."""
    for test, name in _FILE_KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _check_input(name: str, mode: int, size: int) -> None:
    if stat.S_ISDIR(mode):
        raise OptionsError(name, None, "is a directory, not an option file")
    if not stat.S_ISREG(mode):
        raise OptionsError(name, None, f"is {file_kind(mode)}; option files are read only from regular files")
    if size > MAX_FILE_BYTES:
        raise OptionsError(name, None, f"is {size} bytes; option files over {MAX_FILE_BYTES} bytes are refused")


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    name = os.fspath(path)
    try:
        # stat first, so that a FIFO or a device is refused without opening it
        # (opening can block or have side effects); fstat again after opening,
        # in case the path was swapped in between.
        info = os.stat(name)
        _check_input(name, info.st_mode, info.st_size)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OptionsError(name, None, "no such file") from None
    except (OSError, ValueError) as exc:
        raise OptionsError(name, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        info = os.fstat(fd)
        _check_input(name, info.st_mode, info.st_size)
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        _check_input(name, info.st_mode, size)
        return b"".join(chunks)
    except OSError as exc:
        raise OptionsError(name, None, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_with_problems(path: str | os.PathLike[str]) -> tuple[OptionFile, list[Problem]]:
    """Read and parse an exported option file, returning its malformed lines as errors.

    Raises :class:`OptionsError` only when the file is missing, unreadable,
    refused (not a regular file, too big) or not UTF-8.
    """
    name = os.fspath(path)
    return _parse(name, _read_bytes(name))


def read(path: str | os.PathLike[str]) -> OptionFile:
    """Read and parse an exported option file.

    Raises :class:`OptionsError` when the file is missing or unreadable, is not
    UTF-8, or has a malformed line (the error lists every malformed line in
    ``problems``). Values stay text; :func:`~orsguard.options.check` validates them.
    """
    option_file, errors = read_with_problems(path)
    if errors:
        first = errors[0]
        raise OptionsError(option_file.path, first.line, first.message, section=first.section, problems=errors)
    return option_file
