"""ORS option files: reader, schema check, migration, show, limits and SIGHUP reload."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import orsguard.options as options
from orsguard.cli import main
from orsguard.errors import OrsguardError
from orsguard.limits import Limits
from orsguard.options import OptionsError, Problem
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "options"
OLD = DATA / "ors-8.1.2.cfg"
NEW = DATA / "ors-8.1.3.cfg"


def write(tmp_path: Path, text: str | bytes, name: str = "ors.cfg") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def problems_of(path: Path) -> list[str]:
    return [str(p) for p in options.check(options.read(path))]


def cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORSGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "orsguard.options", *map(str, args)],
        check=False,
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli_bytes(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "orsguard.options", *map(str, args)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )


# --------------------------------------------------------------------------- reader


def test_read_keeps_line_numbers_and_text_values() -> None:
    f = options.read(OLD)
    assert [(e.section, e.option, e.value, e.line) for e in f.entries] == [
        ("orchestration", "call-watching-timeout", "5000", 3),
        ("orchestration", "mcr-pull-by-msn-only", "true", 4),
        ("cluster", "name", "Paris", 8),
        ("cluster", "super_node", "false", 10),
        ("persistence", "cassandra-listenerURI", "http://cassandra.example.com:9160", 14),
        ("scxml", "max-microstep-count", "500", 17),
        ("scxml", "some-vendor-option", "kept as is", 18),
    ]
    assert f.headers == [("orchestration", 2), ("cluster", 7), ("persistence", 13), ("scxml", 16)]


def test_repeated_sections_merge_and_the_last_value_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\nmax-pending-events=10\n[log]\nall=stdout\n[scxml]\nmax-pending-events=20\nx=1\n")
    f = options.read(path)
    assert f.sections() == {"scxml": {"max-pending-events": "20", "x": "1"}, "log": {"all": "stdout"}}
    assert f.get("scxml", "max-pending-events").line == 6
    assert f"{path}:6: scxml/max-pending-events: warning: set again (first at line 2); this later value is used" in (
        problems_of(path)
    )


def test_comments_blanks_and_values_with_separators(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeff# comment\n\n   ; indented comment\n[orchestration]\n  webservice = http://h:1/a?b=c;d  \n",
    )
    f = options.read(path)
    assert [(e.option, e.value, e.line) for e in f.entries] == [("webservice", "http://h:1/a?b=c;d", 5)]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OptionsError) as info:
        options.read(tmp_path / "nope.cfg")
    assert str(info.value) == f"{tmp_path / 'nope.cfg'}: no such file"
    assert info.value.line is None


def test_options_errors_are_orsguard_errors(tmp_path: Path) -> None:
    # One tree: a caller that catches OrsguardError also catches a bad option file.
    with pytest.raises(OrsguardError) as info:
        options.limits_from_options(write(tmp_path, "[scxml]\nmax-pending-events=-1\n"), environ={})
    assert type(info.value) is OptionsError is options.OptionsError
    assert (info.value.line, info.value.section, info.value.option) == (2, "scxml", "max-pending-events")


def test_non_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, b"[scxml]\nmax-microstep-count=caf\xe9\n")
    with pytest.raises(OptionsError) as info:
        options.read(path)
    assert str(info.value) == (
        f"{path}:2: not UTF-8 (byte 0xe9 at column 24); convert the export first, e.g. iconv -f latin1 -t utf-8"
    )


def test_malformed_lines_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "stray=1\n[scxml\n[scxml]\nmax-microstep-count 10\n=5\n[]\n")
    with pytest.raises(OptionsError) as info:
        options.read(path)
    assert info.value.line == 1
    assert [str(p) for p in info.value.problems] == [
        f"{path}:1: error: option 'stray' before any [section] header",
        f"{path}:2: error: section header has no closing ']'",
        f"{path}:4: error: expected option=value, [section] or a comment, got 'max-microstep-count 10' (no '=')",
        f"{path}:5: [scxml]: error: no option name before '='",
        f"{path}:6: error: empty section name '[]'",
    ]


# --------------------------------------------------------------------------- check


def test_the_8_1_3_sample_is_clean() -> None:
    assert problems_of(NEW) == []


def test_the_8_1_2_sample_warns_about_removed_options_and_notes_unknown_ones() -> None:
    removed = "warning: removed in ORS 8.1.3 (no longer needed with the 8.1.3 cluster design); migrate deletes it"
    unknown = "note: not in orsguard's schema; kept as is"
    assert problems_of(OLD) == [
        f"{OLD}:3: orchestration/call-watching-timeout: {unknown}",
        f"{OLD}:4: orchestration/mcr-pull-by-msn-only: {removed}",
        f"{OLD}:7: [cluster]: warning: section removed in ORS 8.1.3; migrate deletes it",
        f"{OLD}:8: cluster/name: {removed}",
        f"{OLD}:10: cluster/super_node: {removed}",
        f"{OLD}:14: persistence/cassandra-listenerURI: {unknown}",
        f"{OLD}:18: scxml/some-vendor-option: {unknown}",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max-microstep-count=-5", "must not be negative, got '-5'; 0 means no limit"),
        ("max-pending-events=many", "must be a whole number from 0 to 2147483647 (0 = no limit), got 'many'"),
        ("process-event-timeout=1.5", "must be a whole number ms, got '1.5'"),
        ("max-session-age=", "empty value; expected a whole number from 0 to 2147483647 (0 = no limit)"),
        ("max-state-entry-count=2147483648", "must be at most 2147483647, got '2147483648'"),
        ("max-state-entry-count=+5", "write the number without a sign, got '+5'"),
    ],
)
def test_bad_limits_are_errors_with_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, f"# limits\n[scxml]\n{line}\n")
    name = line.partition("=")[0]
    assert problems_of(path) == [f"{path}:3: scxml/{name}: error: {message}"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "cassandra-strategy-class=SimpleStrategie",
            (
                "2: persistence/cassandra-strategy-class: error: must be SimpleStrategy or NetworkTopologyStrategy, "
                "got 'SimpleStrategie'; did you mean SimpleStrategy?"
            ),
        ),
        (
            "cassandra-strategy-class=LocalStrategy",
            (
                "2: persistence/cassandra-strategy-class: error: must be SimpleStrategy or NetworkTopologyStrategy, "
                "got 'LocalStrategy'"
            ),
        ),
        (
            "cassandra-strategy-class=SimpleStrategy\ncassandra-strategy-options=London:3,Paris:2",
            (
                "3: persistence/cassandra-strategy-options: error: datacenter:factor pairs need "
                "NetworkTopologyStrategy, but the class is SimpleStrategy (cassandra-strategy-class at line 2); "
                "give one factor, e.g. replication_factor:3"
            ),
        ),
        (
            "cassandra-strategy-options=London:3",
            (
                "2: persistence/cassandra-strategy-options: error: datacenter:factor pairs need "
                "NetworkTopologyStrategy, but the class is SimpleStrategy (the default class); "
                "give one factor, e.g. replication_factor:3"
            ),
        ),
        (
            (
                "cassandra-strategy-class=org.apache.cassandra.locator.NetworkTopologyStrategy\n"
                "cassandra-strategy-options=replication_factor:3"
            ),
            (
                "3: persistence/cassandra-strategy-options: error: NetworkTopologyStrategy needs datacenter:factor "
                "pairs (cassandra-strategy-class at line 2), got a single factor; e.g. London:3,Paris:3"
            ),
        ),
        (
            "cassandra-strategy-class=NetworkTopologyStrategy",
            (
                "2: persistence/cassandra-strategy-class: error: NetworkTopologyStrategy needs "
                "cassandra-strategy-options with datacenter:factor pairs"
            ),
        ),
        (
            "cassandra-strategy-class=NetworkTopologyStrategy\ncassandra-strategy-options=London:3,London:2",
            "3: persistence/cassandra-strategy-options: error: datacenter 'London' is given twice",
        ),
        (
            "cassandra-strategy-options=0",
            "2: persistence/cassandra-strategy-options: error: replication factor must be at least 1",
        ),
        (
            "cassandra-keyspace-name=1st-keyspace",
            (
                "2: persistence/cassandra-keyspace-name: error: not a Cassandra keyspace name (a letter, then up "
                "to 47 letters, digits or underscores), got '1st-keyspace'"
            ),
        ),
        (
            "cassandra-schema-version=v8",
            ("2: persistence/cassandra-schema-version: error: must be numbers separated by dots, e.g. 8.1.3, got 'v8'"),
        ),
        (
            "cassandra-connect-attempt-timeout=0",
            "2: persistence/cassandra-connect-attempt-timeout: error: must be at least 1 ms, got '0'",
        ),
    ],
)
def test_persistence_values(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, f"[persistence]\n{text}\n")
    assert problems_of(path) == [f"{path}:{problem}"]


@pytest.mark.parametrize(
    "text",
    [
        "cassandra-strategy-options=3",
        "cassandra-strategy-options=replication_factor:2",
        "cassandra-strategy-class=NetworkTopologyStrategy\ncassandra-strategy-options=London:3, Paris:2",
    ],
)
def test_strategy_options_that_agree(tmp_path: Path, text: str) -> None:
    assert problems_of(write(tmp_path, f"[persistence]\n{text}\n")) == []


def test_orchestration_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[orchestration]\nexternal-url=ors-lb:7210\nmcr-pull-by-this-node=yes\nsend-retries=-1\nexternal-url=\n",
    )
    assert problems_of(path) == [
        f"{path}:2: orchestration/external-url: error: must be an absolute http or https URL, got 'ors-lb:7210'",
        f"{path}:3: orchestration/mcr-pull-by-this-node: error: must be true or false, got 'yes'",
        f"{path}:4: orchestration/send-retries: error: must not be negative, got '-1'; 0 means no retry",
        f"{path}:5: orchestration/external-url: warning: set again (first at line 2); this later value is used",
    ]


def test_near_misses_are_warnings_naming_the_likely_option(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[scxml]\nmax-microstep-counts=10\nMax-Session-Age=5\n"
        "[orchestration]\nmax-pending-events=3\ncall-watching-timeout=5000\n[scxm]\nanything=1\n",
    )
    assert problems_of(path) == [
        f"{path}:2: scxml/max-microstep-counts: warning: unknown option; did you mean scxml/max-microstep-count?",
        (
            f"{path}:3: scxml/Max-Session-Age: warning: option names are case-sensitive: this line does not set "
            "scxml/max-session-age; write max-session-age"
        ),
        (
            f"{path}:5: orchestration/max-pending-events: warning: ORS reads this option from [scxml], "
            "not [orchestration]"
        ),
        f"{path}:6: orchestration/call-watching-timeout: note: not in orsguard's schema; kept as is",
        f"{path}:7: [scxm]: warning: unknown section; did you mean [scxml]?",
        f"{path}:8: scxm/anything: note: not in orsguard's schema; kept as is",
    ]


def test_problem_fields_and_text() -> None:
    problem = Problem("a.cfg", 7, "scxml", "max-pending-events", "error", "must not be negative")
    assert str(problem) == "a.cfg:7: scxml/max-pending-events: error: must not be negative"


# --------------------------------------------------------------------------- migrate


MIGRATED = (
    b"# ORS 8.1.2 export used by the tests: do not reformat, line numbers matter.\n"
    b"[orchestration]\n"
    b"call-watching-timeout=5000\n"
    b"; a comment that stays\n"
    b"\n"
    b"\n"
    b"# introduces persistence: stays after migration\n"
    b"[persistence]\n"
    b"cassandra-listenerURI=http://cassandra.example.com:9160\n"
    b"\n"
    b"[scxml]\n"
    b"max-microstep-count=500\n"
    b"some-vendor-option = kept as is\n"
)


def test_migrate_removes_exactly_the_8_1_2_options() -> None:
    result = options.migrate(options.read(OLD))
    assert result.data == MIGRATED
    assert result.removed == [
        (4, "orchestration/mcr-pull-by-msn-only"),
        (7, "[cluster]"),
        (8, "cluster/name"),
        (10, "cluster/super_node"),
    ]
    assert "scxml/max-microstep-count" not in [o.key for o in result.defaults]
    assert "scxml/max-session-age" in [o.key for o in result.defaults]


def test_migrate_keeps_crlf_and_odd_spacing_byte_for_byte(tmp_path: Path) -> None:
    original = b"[cluster]\r\nname=x\r\n[scxml]\r\n  max-pending-events =  7 \r\n; end"
    result = options.migrate(options.read(write(tmp_path, original)))
    assert result.data == b"[scxml]\r\n  max-pending-events =  7 \r\n; end"


def test_cli_migrate_writes_out_and_never_touches_the_input(tmp_path: Path) -> None:
    source = write(tmp_path, OLD.read_bytes(), "old.cfg")
    before = source.stat()
    out = tmp_path / "new.cfg"
    run = cli("migrate", source, "-o", out)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes() == MIGRATED
    assert source.read_bytes() == OLD.read_bytes()
    assert source.stat().st_mtime_ns == before.st_mtime_ns
    lines = run.stdout.splitlines()
    assert lines[:4] == [
        f"{source}:4: removed orchestration/mcr-pull-by-msn-only",
        f"{source}:7: removed [cluster]",
        f"{source}:8: removed cluster/name",
        f"{source}:10: removed cluster/super_node",
    ]
    assert lines[4] == "added in 8.1.3 and not set in the file:"
    assert "  scxml/process-event-timeout = 5000 ms (default)" in lines
    assert "  persistence/cassandra-schema-version unset (no default)" in lines
    assert lines[-1] == f"wrote {out}"
    assert not [p for p in options.check(options.read(out)) if p.severity != "note"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.cfg", "old.cfg"]


def test_cli_migrate_in_place_keeps_a_backup_for_rollback(tmp_path: Path) -> None:
    source = write(tmp_path, OLD.read_bytes(), "ors.cfg")
    source.chmod(0o640)
    run = cli("migrate", "--in-place", source)
    assert run.returncode == 0, run.stderr
    assert source.read_bytes() == MIGRATED
    assert (tmp_path / "ors.cfg.bak").read_bytes() == OLD.read_bytes()
    assert source.stat().st_mode & 0o777 == 0o640
    assert run.stdout.splitlines()[-1] == f"wrote {source}; original kept as {source}.bak"

    again = cli("migrate", "--in-place", source)
    assert (again.returncode, again.stdout) == (0, f"{source}: nothing to migrate; left unchanged\n")
    assert (tmp_path / "ors.cfg.bak").read_bytes() == OLD.read_bytes()


def test_cli_migrate_in_place_refuses_to_overwrite_a_backup(tmp_path: Path) -> None:
    source = write(tmp_path, OLD.read_bytes(), "ors.cfg")
    write(tmp_path, b"the real rollback copy\n", "ors.cfg.bak")
    run = cli("migrate", "--in-place", source)
    assert run.returncode == 1
    assert run.stderr == (
        f"orsguard: {source}.bak exists (it may be your rollback copy); move it away first. Nothing written.\n"
    )
    assert source.read_bytes() == OLD.read_bytes()
    assert (tmp_path / "ors.cfg.bak").read_bytes() == b"the real rollback copy\n"


def test_cli_migrate_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    source = write(tmp_path, "[cluster]\nname=x\n[scxml]\nmax-pending-events=-3\n", "bad.cfg")
    out = tmp_path / "out.cfg"
    run = cli("migrate", source, "-o", out)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"orsguard: {source}:4: scxml/max-pending-events: error: must not be negative, got '-3'; 0 means no limit",
        f"orsguard: nothing written; fix the errors first (orsguard options check {source})",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.cfg"]


@pytest.mark.parametrize(
    ("content", "stderr"),
    [
        (b"[scxml]\nmax-pending-events=\xff\n", "{f}:2: not UTF-8 (byte 0xff at column 20); "),
        (b"[scxml\nmax-pending-events=3\n", "{f}:1: error: section header has no closing ']'\norsguard: nothing"),
    ],
)
def test_cli_migrate_unreadable_input(tmp_path: Path, content: bytes, stderr: str) -> None:
    source = write(tmp_path, content, "bad.cfg")
    run = cli("migrate", source, "-o", tmp_path / "out.cfg")
    assert run.returncode == 1
    assert run.stderr.startswith("orsguard: " + stderr.format(f=source))
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.cfg"]


def test_cli_migrate_refuses_to_write_over_its_input(tmp_path: Path) -> None:
    source = write(tmp_path, OLD.read_bytes())
    run = cli("migrate", source, "-o", source)
    assert run.returncode == 1
    assert "is the input file; use --in-place" in run.stderr
    assert source.read_bytes() == OLD.read_bytes()


def test_cli_migrate_to_a_missing_directory_or_onto_a_directory(tmp_path: Path) -> None:
    run = cli("migrate", OLD, "-o", tmp_path / "no" / "out.cfg")
    assert run.returncode == 1
    assert run.stderr == (
        f"orsguard: cannot write {tmp_path / 'no' / 'out.cfg'}: No such file or directory. {OLD} is unchanged.\n"
    )
    (tmp_path / "dir").mkdir()
    run = cli("migrate", OLD, "-o", tmp_path / "dir")
    assert run.returncode == 1
    assert run.stderr == f"orsguard: cannot write {tmp_path / 'dir'}: Is a directory. {OLD} is unchanged.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]
    assert list((tmp_path / "dir").iterdir()) == []


def test_cli_migrate_to_stdout_reports_on_stderr() -> None:
    run = cli_bytes("migrate", OLD, "-o", "-")
    assert run.returncode == 0
    assert run.stdout == MIGRATED
    assert f"{OLD}:7: removed [cluster]".encode() in run.stderr


def test_cli_migrate_needs_a_target() -> None:
    run = cli("migrate", OLD)
    assert run.returncode == 2
    assert "one of the arguments -o/--output --in-place is required" in run.stderr


# --------------------------------------------------------------------------- what migrate writes to


def fifo(tmp_path: Path, name: str = "pipe") -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


def read_fifo_in_thread(path: Path) -> Callable[[], bytes]:
    """Open ``path`` for reading now, read it in a thread; the returned function gives the bytes."""
    # Opened here without blocking, so the FIFO has its reader before the writer starts.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    got: list[bytes] = []

    def reader() -> None:
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        poll.poll(30_000)
        os.set_blocking(fd, True)
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        got.append(data)
        os.close(fd)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()

    def join() -> bytes:
        thread.join(timeout=30)
        assert not thread.is_alive()
        return got[0]

    return join


def test_cli_migrate_writes_through_a_fifo_and_leaves_it_a_fifo(tmp_path: Path) -> None:
    out = fifo(tmp_path)
    reader = read_fifo_in_thread(out)
    run = cli("migrate", OLD, "-o", out)
    assert run.returncode == 0, run.stderr
    assert reader() == MIGRATED
    assert stat.S_ISFIFO(out.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_cli_migrate_refuses_a_fifo_nobody_reads_instead_of_hanging(tmp_path: Path) -> None:
    out = fifo(tmp_path)
    run = cli("migrate", OLD, "-o", out)
    assert run.returncode == 1
    assert run.stderr == f"orsguard: {out} is a FIFO that nobody reads; start its reader first. Nothing written.\n"
    assert stat.S_ISFIFO(out.lstat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_cli_migrate_writes_through_a_character_device_and_keeps_it(tmp_path: Path) -> None:
    # A private null device (major 1, minor 3), never the system's /dev/null.
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    run = cli("migrate", OLD, "-o", null)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == f"wrote {null}"
    info = null.lstat()
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_cli_migrate_writes_through_a_terminal(tmp_path: Path) -> None:
    # A pseudo-terminal is a character device any user can open; what is
    # written to it comes out of the master side unchanged in raw mode.
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        name = os.ttyname(slave)
        run = cli("migrate", OLD, "-o", name)
        assert run.returncode == 0, run.stderr
        got = b""
        while len(got) < len(MIGRATED):
            got += os.read(master, 65536)
        assert got == MIGRATED
        assert stat.S_ISCHR(os.stat(name).st_mode)
    finally:
        os.close(slave)
        os.close(master)


def test_cli_migrate_to_dev_stdout_writes_the_stream() -> None:
    run = cli_bytes("migrate", OLD, "-o", "/dev/stdout")
    assert run.returncode == 0, run.stderr
    assert run.stdout == MIGRATED
    assert f"{OLD}:7: removed [cluster]".encode() in run.stderr
    assert b"wrote" not in run.stderr


def test_cli_migrate_through_a_symlink_replaces_the_file_it_points_to(tmp_path: Path) -> None:
    real = write(tmp_path, "old content\n", "real.cfg")
    real.chmod(0o640)
    link = tmp_path / "link.cfg"
    link.symlink_to("real.cfg")
    run = cli("migrate", OLD, "-o", link)
    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and os.readlink(link) == "real.cfg"
    assert real.read_bytes() == MIGRATED
    assert real.stat().st_mode & 0o777 == 0o640
    assert run.stdout.splitlines()[-1] == f"wrote {real}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.cfg", "real.cfg"]


def test_cli_migrate_through_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "link.cfg"
    link.symlink_to("new.cfg")
    run = cli("migrate", OLD, "-o", link)
    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and (tmp_path / "new.cfg").read_bytes() == MIGRATED


def test_cli_migrate_refuses_a_symlink_to_its_input(tmp_path: Path) -> None:
    source = write(tmp_path, OLD.read_bytes())
    link = tmp_path / "link.cfg"
    link.symlink_to(source)
    run = cli("migrate", source, "-o", link)
    assert run.returncode == 1
    assert "is the input file; use --in-place" in run.stderr
    assert source.read_bytes() == OLD.read_bytes() and link.is_symlink()


def test_cli_migrate_refuses_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        run = cli("migrate", OLD, "-o", path)
    assert run.returncode == 1
    assert run.stderr == (
        f"orsguard: {path} is a socket; migrate writes to regular files, FIFOs and character devices. "
        "Nothing written.\n"
    )


def test_cli_migrate_new_output_gets_the_usual_mode(tmp_path: Path) -> None:
    out = tmp_path / "new.cfg"
    old_mask = os.umask(0o022)
    try:
        run = cli("migrate", OLD, "-o", out)
    finally:
        os.umask(old_mask)
    assert run.returncode == 0, run.stderr
    assert out.stat().st_mode & 0o777 == 0o644


def test_cli_migrate_in_place_through_a_symlink_migrates_its_target(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    real = write(tmp_path / "conf", OLD.read_bytes(), "ors.cfg")
    link = tmp_path / "ors.cfg"
    link.symlink_to(real)
    run = cli("migrate", "--in-place", link)
    assert run.returncode == 0, run.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == MIGRATED
    assert (tmp_path / "conf" / "ors.cfg.bak").read_bytes() == OLD.read_bytes()
    assert not (tmp_path / "ors.cfg.bak").exists()
    assert run.stdout.splitlines()[-1] == f"wrote {real}; original kept as {real}.bak"


def test_cli_migrate_reports_the_warnings_it_leaves(tmp_path: Path) -> None:
    source = write(
        tmp_path,
        "[cluster]\nname=x\n[scxml]\nMax-Session-Age=3600\nprocess-event-timeout=5\n[orchestration]\n"
        "mcr-pull-by-msn-only=true\n",
    )
    run = cli("migrate", source, "-o", tmp_path / "new.cfg")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    # The report shows the default because the mis-cased line sets nothing, and says so.
    assert "  scxml/max-session-age = 86400 s (default)" in lines
    start = lines.index("warnings migration leaves for you to fix (lines of the original file):")
    assert lines[start + 1 : -1] == [
        f"  {source}:4: scxml/Max-Session-Age: warning: option names are case-sensitive: this line does not "
        "set scxml/max-session-age; write max-session-age",
        f"  {source}:5: scxml/process-event-timeout: warning: 5 ms: did you mean seconds? The value is in "
        "milliseconds (5 s is 5000); values from 1 to 99 are implausible here",
    ]
    after = [str(p).split(": ", 1)[1] for p in options.check(options.read(tmp_path / "new.cfg"))]
    assert after == [line.split(": ", 1)[1] for line in lines[start + 1 : -1]]


# --------------------------------------------------------------------------- what check reads


def test_cli_check_refuses_a_fifo_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = fifo(tmp_path)
    run = cli("check", path)
    assert run.returncode == 1
    assert run.stderr == f"orsguard: {path}: is a FIFO; option files are read only from regular files\n"


def test_read_refuses_devices_and_directories(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match=r"^/dev/zero: is a character device; option files are read only"):
        options.read("/dev/zero")
    with pytest.raises(OptionsError, match="is a directory, not an option file"):
        options.read(tmp_path)
    with pytest.raises(OptionsError, match="cannot read: embedded null byte"):
        options.read("a\0b")


def test_cli_check_refuses_a_file_over_the_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "huge.cfg"
    with open(path, "wb") as stream:
        stream.truncate(options.MAX_FILE_BYTES + 1)  # sparse: costs no disk
    run = cli("check", path)
    assert run.returncode == 1
    assert run.stderr == (
        f"orsguard: {path}: is {options.MAX_FILE_BYTES + 1} bytes; option files over "
        f"{options.MAX_FILE_BYTES} bytes are refused\n"
    )
    assert "Traceback" not in run.stderr


def test_cli_usage_errors_exit_2_without_a_traceback() -> None:
    for args in (("check",), ("migrate", OLD, "-o", "x", "--in-place"), ("frobnicate",), ("show", "a", "b")):
        run = cli(*args)
        assert run.returncode == 2, args
        assert "Traceback" not in run.stderr and run.stderr.startswith("usage: ")


def test_cli_check_with_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/bad\xff.cfg"
    with open(name, "wb") as stream:
        stream.write(b"[scxml]\nmax-pending-events=-1\n")
    run = subprocess.run(
        [sys.executable, "-m", "orsguard.options", "check", name],
        check=False,
        capture_output=True,
        timeout=60,
        # Strict stdout, as under most UTF-8 locales: the name must still print, as its own bytes.
        env={**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"},
    )
    assert run.returncode == 1
    assert b"Traceback" not in run.stderr
    assert run.stdout.startswith(name + b":2: scxml/max-pending-events: error: must not be negative")


# --------------------------------------------------------------------------- linear in the file


def lines_run(func: Callable[[], object]) -> int:
    """Python lines executed in orsguard/options/ while ``func`` runs: a count, not a time."""
    count = 0
    package = os.path.dirname(options.__file__) + os.sep

    def tracer(frame: Any, event: str, arg: object) -> Any:
        nonlocal count
        if not frame.f_code.co_filename.startswith(package):
            return None
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()  # a coverage tracer, if any, gets its place back
    sys.settrace(tracer)
    try:
        func()
    finally:
        sys.settrace(previous)
    return count


SHAPES = {
    "unknown options in [scxml]": lambda n: "[scxml]\n" + "".join(f"opt{i}=v{i}\n" for i in range(n)),
    "an unknown section": lambda n: "[vendor]\n" + "".join(f"opt{i}=v\n" for i in range(n)),
    "many sections": lambda n: "".join(f"[s{i}]\na=1\n" for i in range(n)),
    "many cluster sections": lambda n: "".join("[cluster]\nname=x\n# c\n" for _ in range(n)),
    "one option set again and again": lambda n: "[scxml]\n" + "max-pending-events=5\n" * n,
    "long names": lambda n: "[scxml]\n" + "m" * (50 * n) + "=1\n" + "max-session-age" + "x" * n + "=1\n",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_check_migrate_and_show_do_work_linear_in_the_file(tmp_path: Path, shape: str) -> None:
    # Twice the file must cost at most about twice the work; the quadratic
    # versions of these paths cost 4x (a 40,000-option check took 10.7 s).
    work = []
    for n in (1000, 2000):
        path = write(tmp_path, SHAPES[shape](n), f"{n}.cfg")

        def everything(path: Path = path) -> None:
            option_file = options.read(path)
            options.check(option_file)
            options.migrate(option_file)
            options.effective(option_file, environ={})

        work.append(lines_run(everything))
    assert work[1] <= 2.2 * work[0], work


def test_a_long_number_with_junk_is_an_error_without_backtracking(tmp_path: Path) -> None:
    # "1" * 50,000 + "x" took about 1e9 regex steps with the old number pattern.
    path = write(tmp_path, "[scxml]\nmax-pending-events=" + "1" * 50_000 + "x\n")
    [problem] = options.check(options.read(path))
    assert problem.severity == "error" and "must be a whole number from 0 to 2147483647" in problem.message


# --------------------------------------------------------------------------- check and show on the command line


def test_cli_check_exit_status_and_format(tmp_path: Path) -> None:
    run = cli("check", OLD)
    assert run.returncode == 0
    assert run.stdout.splitlines() == problems_of(OLD)
    assert run.stderr == f"{OLD}: 0 errors, 4 warnings, 3 notes\n"

    quiet = cli("check", "-q", OLD)
    assert [line for line in quiet.stdout.splitlines() if ": note: " in line] == []

    bad = write(tmp_path, "[scxml]\nmax-microstep-count=ten\n[persistence]\ncassandra-strategy-class=Simple\n")
    run = cli("check", bad)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        (
            f"{bad}:2: scxml/max-microstep-count: error: must be a whole number from 0 to 2147483647 "
            "(0 = no limit), got 'ten'"
        ),
        (
            f"{bad}:4: persistence/cassandra-strategy-class: error: must be SimpleStrategy or "
            "NetworkTopologyStrategy, got 'Simple'"
        ),
    ]


def test_cli_check_reports_syntax_and_value_errors_together(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\nmax-microstep-count\nmax-pending-events=-1\n")
    run = cli("check", path)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{path}:2: error: expected option=value, [section] or a comment, got 'max-microstep-count' (no '=')",
        f"{path}:3: scxml/max-pending-events: error: must not be negative, got '-1'; 0 means no limit",
    ]


def test_cli_check_missing_file(tmp_path: Path) -> None:
    run = cli("check", tmp_path / "missing.cfg")
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr == f"orsguard: {tmp_path / 'missing.cfg'}: no such file\n"


def test_cli_show_table(tmp_path: Path) -> None:
    run = cli("show", NEW, env={"ORSGUARD_SCXML_MAX_PENDING_EVENTS": "77"})
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines()]
    assert rows[0] == ["OPTION", "VALUE", "UNIT", "FROM"]
    assert ["scxml/max-microstep-count", "500", "microsteps", "line", "17"] in rows
    assert ["scxml/max-pending-events", "77", "events", "ORSGUARD_SCXML_MAX_PENDING_EVENTS"] in rows
    assert ["scxml/process-event-timeout", "1500", "ms", "line", "20"] in rows

    run = cli("show", OLD)
    rows = [line.split() for line in run.stdout.splitlines()]
    assert ["scxml/max-session-age", "86400", "s", "default"] in rows
    assert ["orchestration/external-url", "-", "unset"] in rows
    assert ["cluster/name", "Paris", "line", "8", "(removed", "in", "8.1.3)"] in rows
    assert ["scxml/some-vendor-option", "kept", "as", "is", "line", "18", "(not", "in", "schema)"] in rows


def test_cli_show_refuses_bad_values(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\nmax-session-age=forever\n")
    run = cli("show", path)
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith(f"orsguard: {path}:2: scxml/max-session-age: error: must be a whole number")

    run = cli("show", NEW, env={"ORSGUARD_SCXML_MAX_SESSION_AGE": "-1"})
    assert run.returncode == 1
    assert run.stderr == (
        "orsguard: environment variable ORSGUARD_SCXML_MAX_SESSION_AGE: scxml/max-session-age: "
        "must not be negative, got '-1'; 0 means no limit\n"
    )


# --------------------------------------------------------------------------- limits


def test_limits_from_the_scxml_section_with_units_converted() -> None:
    assert options.limits_from_options(NEW, environ={}) == Limits(
        max_microstep_count=500,
        max_state_entry_count=2000,
        max_pending_events=250,
        process_event_timeout=1.5,
        max_session_age=3600.0,
    )


def test_limits_default_where_the_file_is_silent() -> None:
    assert options.limits_from_options(OLD, environ={}) == Limits(max_microstep_count=500)
    assert options.limits_from_options(None, environ={}) == Limits()


def test_schema_defaults_follow_limits_defaults() -> None:
    defaults = Limits()
    assert options.SCHEMA["scxml/max-microstep-count"].default == str(defaults.max_microstep_count)
    assert options.SCHEMA["scxml/process-event-timeout"].default == str(round(defaults.process_event_timeout * 1000))
    assert options.SCHEMA["scxml/max-session-age"].default == str(round(defaults.max_session_age))


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"ORSGUARD_SCXML_PROCESS_EVENT_TIMEOUT": "250", "ORSGUARD_SCXML_MAX_MICROSTEP_COUNT": " 0 "}
    limits = options.limits_from_options(NEW, environ=env)
    assert (limits.process_event_timeout, limits.max_microstep_count, limits.max_pending_events) == (0.25, 0, 250)

    monkeypatch.setenv("ORSGUARD_SCXML_MAX_STATE_ENTRY_COUNT", "9")
    assert options.limits_from_options(NEW).max_state_entry_count == 9
    assert options.limits_from_options(NEW, environ={}).max_state_entry_count == 2000


def test_bad_limit_values_raise_with_location(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\n\nmax-state-entry-count=lots\n")
    with pytest.raises(OptionsError) as info:
        options.limits_from_options(path, environ={})
    assert str(info.value) == (
        f"{path}:3: scxml/max-state-entry-count: must be a whole number from 0 to 2147483647 (0 = no limit), got 'lots'"
    )
    with pytest.raises(OptionsError, match="environment variable ORSGUARD_SCXML_MAX_PENDING_EVENTS"):
        options.limits_from_options(NEW, environ={"ORSGUARD_SCXML_MAX_PENDING_EVENTS": "1e3"})


@pytest.mark.parametrize(
    ("option", "value", "warned"),
    [
        ("scxml/process-event-timeout", "5", True),
        ("scxml/process-event-timeout", "99", True),
        ("scxml/process-event-timeout", "100", False),
        ("scxml/process-event-timeout", "0", False),
        ("persistence/cassandra-connect-attempt-timeout", "30", True),
        ("persistence/cassandra-max-latency", "9", True),
        ("persistence/cassandra-max-latency", "10", False),
        ("scxml/max-session-age", "5", False),
    ],
)
def test_a_tiny_millisecond_value_is_a_warning(tmp_path: Path, option: str, value: str, warned: bool) -> None:
    section, name = option.split("/")
    path = write(tmp_path, f"[{section}]\n{name}={value}\n")
    problems = options.check(options.read(path))
    expected = (
        []
        if not warned
        else [
            f"{path}:2: {option}: warning: {value} ms: did you mean seconds? The value is in milliseconds "
            f"({value} s is {int(value) * 1000}); values from 1 to {SCHEMA_BELOW[option] - 1} are implausible here"
        ]
    )
    assert [str(p) for p in problems] == expected


SCHEMA_BELOW = {key: o.implausible_below for key, o in options.SCHEMA.items()}


def test_a_tiny_timeout_still_applies_and_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "[scxml]\nprocess-event-timeout=5\n")
    with caplog.at_level(logging.WARNING, logger="orsguard.options"):
        limits = options.limits_from_options(path, environ={})
    assert limits.process_event_timeout == 0.005
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}:2: scxml/process-event-timeout: warning: 5 ms: did you mean seconds? The value is in "
        "milliseconds (5 s is 5000); values from 1 to 99 are implausible here"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="orsguard.options"):
        options.limits_from_options(None, environ={"ORSGUARD_SCXML_PROCESS_EVENT_TIMEOUT": "2"})
    assert (
        caplog.records[0]
        .getMessage()
        .startswith(
            "environment variable ORSGUARD_SCXML_PROCESS_EVENT_TIMEOUT: scxml/process-event-timeout: warning: 2 ms:"
        )
    )


def test_option_names_are_matched_exactly_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One rule for check, limits, show and migrate: a name that differs only in
    # case sets nothing, and every command says or shows so.
    path = write(tmp_path, "[scxml]\nMax-Session-Age=3600\n[SCXML]\nmax-pending-events=7\n")
    assert problems_of(path) == [
        f"{path}:2: scxml/Max-Session-Age: warning: option names are case-sensitive: this line does not set "
        "scxml/max-session-age; write max-session-age",
        f"{path}:3: [SCXML]: warning: section names are case-sensitive: this is not [scxml], and its options "
        "are not used as [scxml] options",
        f"{path}:4: SCXML/max-pending-events: warning: ORS reads this option from [scxml], not [SCXML]",
    ]
    assert options.limits_from_options(path, environ={}) == Limits()
    shown = cli("show", path).stdout.splitlines()
    assert [line.split() for line in shown if "ax-session-age" in line] == [
        ["scxml/max-session-age", "86400", "s", "default"],
        "scxml/Max-Session-Age 3600 line 2 (not used: names are case-sensitive; see scxml/max-session-age)".split(),
    ]
    option_file = options.read(path)
    settings = {(s.section, s.option): s for s in options.effective(option_file, environ={})}
    assert settings["scxml", "max-session-age"].origin == "default"
    assert settings["scxml", "Max-Session-Age"].known is False
    assert settings["scxml", "max-pending-events"].origin == "default"
    assert "scxml/max-session-age" in [o.key for o in options.migrate(option_file).defaults]


def test_errors_outside_scxml_do_not_block_limits(tmp_path: Path) -> None:
    path = write(tmp_path, "[persistence]\ncassandra-strategy-class=Nope\n[scxml]\nmax-pending-events=5\n")
    assert options.limits_from_options(path, environ={}) == Limits(max_pending_events=5)


# --------------------------------------------------------------------------- live reload


def test_reload_keeps_old_limits_when_the_file_breaks(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\nmax-pending-events=5\n")
    source = options.LimitsSource(path, environ={})
    assert source.limits.max_pending_events == 5

    write(tmp_path, "[scxml]\nmax-pending-events=6\n")
    assert source.reload() == Limits(max_pending_events=6)
    assert source.limits == Limits(max_pending_events=6)

    write(tmp_path, "[scxml]\nmax-pending-events=-6\n")
    with pytest.raises(OptionsError, match=r":2: scxml/max-pending-events: must not be negative"):
        source.reload()
    assert source.limits == Limits(max_pending_events=6)


def test_reload_refuses_a_file_replaced_by_a_fifo_without_blocking(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\nmax-pending-events=10\n")
    source = options.LimitsSource(path, environ={})
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(OptionsError, match="is a FIFO; option files are read only from regular files"):
        source.reload()
    assert source.limits.max_pending_events == 10


def test_source_also_carries_send_retries(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\nmax-pending-events=5\n")
    source = options.LimitsSource(path, environ={})
    assert source.send_retries == int(options.SCHEMA["orchestration/send-retries"].default) == 3

    write(tmp_path, "[orchestration]\nsend-retries=0\n")
    assert source.reload() == Limits()
    assert source.send_retries == 0

    write(tmp_path, "[orchestration]\nsend-retries=twice\n[scxml]\nmax-pending-events=9\n")
    with pytest.raises(OptionsError, match=r":2: orchestration/send-retries: must be a whole number"):
        source.reload()
    assert (source.limits, source.send_retries) == (Limits(), 0)


def test_module_install_sighup_calls_a_plain_callback() -> None:
    calls: list[str] = []
    before = signal.getsignal(signal.SIGHUP)
    remove = options.install_sighup(lambda: calls.append("hup"))
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        _wait_for(lambda: calls)
    finally:
        remove()
    assert calls == ["hup"]
    assert signal.getsignal(signal.SIGHUP) is before


def _wait_for(condition: Callable[[], object], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "SIGHUP was not handled"
        time.sleep(0.01)


def test_sighup_without_a_loop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "[scxml]\nmax-microstep-count=10\n")
    source = options.LimitsSource(path, environ={})
    seen: list[Limits] = []
    before = signal.getsignal(signal.SIGHUP)
    remove = source.install_sighup(seen.append)
    try:
        write(tmp_path, "[scxml]\nmax-microstep-count=20\n")
        os.kill(os.getpid(), signal.SIGHUP)
        _wait_for(lambda: seen)
        assert seen == [Limits(max_microstep_count=20)]

        write(tmp_path, "[scxml\n")
        with caplog.at_level(logging.ERROR, logger="orsguard.options"):
            os.kill(os.getpid(), signal.SIGHUP)
            _wait_for(lambda: caplog.records)
        assert caplog.records[0].getMessage() == (
            f"options not reloaded, limits unchanged: {path}:1: section header has no closing ']'"
        )
        assert source.limits == Limits(max_microstep_count=20)
        assert len(seen) == 1
    finally:
        remove()
    assert signal.getsignal(signal.SIGHUP) is before


def test_sighup_with_an_asyncio_loop(tmp_path: Path) -> None:
    path = write(tmp_path, "[scxml]\nmax-session-age=60\n")
    source = options.LimitsSource(path, environ={})

    async def scenario() -> tuple[Limits, OptionsError]:
        loop = asyncio.get_running_loop()
        applied: asyncio.Future[Limits] = loop.create_future()
        failed: asyncio.Future[OptionsError] = loop.create_future()
        remove = source.install_sighup(applied.set_result, loop=loop, on_error=failed.set_result)
        try:
            write(tmp_path, "[scxml]\nmax-session-age=120\n")
            os.kill(os.getpid(), signal.SIGHUP)
            new = await asyncio.wait_for(applied, 5)
            write(tmp_path, b"[scxml]\nmax-session-age=\xe9\n")
            os.kill(os.getpid(), signal.SIGHUP)
            error = await asyncio.wait_for(failed, 5)
        finally:
            remove()
        return new, error

    new, error = asyncio.run(scenario())
    assert new == Limits(max_session_age=120)
    assert error.line == 2 and "not UTF-8" in error.message
    assert source.limits == Limits(max_session_age=120)


# --------------------------------------------------------------------------- docs


def test_committed_doc_matches_the_schema() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_options_doc.py"), "--check"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    for key in options.SCHEMA:
        assert f"`{key}`" in doc


# --------------------------------------------------------------------------- mutated files


def mutations(seed: int, count: int) -> list[bytes]:
    """Option files made by mutating the two samples: flipped bytes, cut, doubled and shuffled lines."""
    rng = random.Random(seed)
    pieces = [
        b"[scxml]\n",
        b"[cluster]\n",
        b"[SCXML]\n",
        b"[\n",
        b"=\n",
        b"max-pending-events=-1\n",
        b"process-event-timeout=5\n",
        b"Max-Session-Age=1\n",
        b"\xff\xfe\n",
        b"\xef\xbb\xbf",
        b"\r\n",
        b"\0",
        b"cassandra-strategy-options=London:3,London:2\n",
        b"x=" + b"9" * 400 + b"\n",
        b"; c\n",
    ]
    out = []
    for _ in range(count):
        lines = (OLD if rng.random() < 0.5 else NEW).read_bytes().splitlines(keepends=True)
        for _ in range(rng.randint(1, 6)):
            kind = rng.randrange(5)
            at = rng.randrange(len(lines) + 1)
            if kind == 0:
                lines.insert(at, rng.choice(pieces))
            elif kind == 1 and lines:
                del lines[min(at, len(lines) - 1)]
            elif kind == 2 and lines:
                lines.insert(at, lines[rng.randrange(len(lines))])
            elif kind == 3 and lines:
                i = rng.randrange(len(lines))
                line = bytearray(lines[i])
                if line:
                    line[rng.randrange(len(line))] = rng.randrange(256)
                lines[i] = bytes(line)
            else:
                rng.shuffle(lines)
        out.append(b"".join(lines))
    return out


def test_mutated_files_give_a_result_or_a_message_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for number, data in enumerate(mutations(seed=13, count=150)):
        source = write(tmp_path, data, f"m{number}.cfg")
        out = tmp_path / f"m{number}.out"
        for args in (["check", source], ["show", source], ["migrate", source, "-o", out]):
            status = main(["options", *map(str, args)])
            assert status in (0, 1), (args, data)
            captured = capsys.readouterr()
            assert "Traceback" not in captured.err
            if status == 1:
                # check reports on stdout and sums up on stderr; the others explain on stderr.
                assert captured.err.strip(), (args, data)
        assert source.read_bytes() == data
        if out.exists():
            migrated = options.read(out)
            assert not [p for p in options.check(migrated) if p.severity == "error"]
            assert not [e for e in migrated.entries if e.section == "cluster"]
