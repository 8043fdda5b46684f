"""``orsguard replay``: generated traffic with known peaks, limits checked against real runs, bad input."""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

import orsguard
import orsguard.replay
from orsguard.replay import UNITS, percentile, replay, suggest
from tests.conftest import ROOT, cli

METER = ROOT / "tests/data/replay/meter.scxml"
COUNTS = ("max-microstep-count", "max-state-entry-count", "max-pending-events")


@dataclass
class Planned:
    """One generated session and the peaks its traffic was built to produce (meter.scxml's arithmetic)."""

    name: str
    document: str
    start: float
    lines: list[dict[str, Any]] = field(default_factory=list)
    micro: int = 0  # burst n: n + 2 microsteps; flood k: k + 1 (the event's, then k empty ones)
    spin: int = 0  # spin is entered n + 1 times per burst
    idle: int = 1  # idle: once at the start, once after each burst
    pending: int = 1  # each external event is pending on its own; flood k: k internal events at once
    end: float | None = None

    def entries(self) -> int:
        return max(self.spin, self.idle)


def generate(tmp_path: Path, sessions: int = 60, seed: int = 7) -> tuple[Path, Path, list[Planned]]:
    """Traffic for two copies of meter.scxml, sorted by time, and the sessions' expected peaks."""
    rng = random.Random(seed)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("meter", "gauge"):
        shutil.copy(METER, docs / f"{name}.scxml")
    plans = []
    for i in range(sessions):
        p = Planned(f"s{i}", rng.choice(["meter", "gauge"]), round(rng.uniform(0, 100), 3))
        p.lines.append({"t": p.start, "session": p.name, "document": p.document, "start": True})
        t = p.start
        for _ in range(rng.randint(1, 6)):
            t = round(t + rng.uniform(0.1, 20), 3)
            if rng.random() < 0.7 or len(p.lines) == 1:
                n = rng.randint(0, 300)
                p.lines.append({"t": t, "session": p.name, "event": "burst", "data": {"n": n}})
                p.micro = max(p.micro, n + 2)
                p.spin += n + 1
                p.idle += 1
            else:
                k = rng.randint(1, 40)
                p.lines.append({"t": t, "session": p.name, "event": "flood", "data": {"items": list(range(k))}})
                p.micro = max(p.micro, k + 1)
                p.pending = max(p.pending, k)
        if rng.random() < 0.6:
            t = round(t + rng.uniform(0.1, 50), 3)
            p.lines.append({"t": t, "session": p.name, "event": "bye"})
            p.end = t
        plans.append(p)
    lines = sorted((line for p in plans for line in p.lines), key=lambda line: line["t"])
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("".join(json.dumps(line) + "\n" for line in lines))
    last = lines[-1]["t"]
    for p in plans:
        if p.end is None:
            p.end = last
    return traffic, docs, plans


def expected(plans: list[Planned], document: str) -> dict[str, list[float]]:
    mine = [p for p in plans if p.document == document]
    return {
        "max-microstep-count": sorted(p.micro for p in mine),
        "max-state-entry-count": sorted(p.entries() for p in mine),
        "max-pending-events": sorted(p.pending for p in mine),
        "max-session-age": sorted(p.end - p.start for p in mine),
    }


def real_run(plan: Planned, docs: Path, limits: orsguard.Limits, until: float) -> orsguard.Session:
    """One session alone on its own virtual clock, fed only its own lines, its timers running ``until``."""
    clock = orsguard.VirtualClock()
    session = orsguard.Session(orsguard.load(str(docs / f"{plan.document}.scxml")), limits=limits, clock=clock)
    clock.advance_to(plan.start)
    session.start()
    for line in plan.lines[1:]:
        clock.advance_to(line["t"])
        if not session.running:
            break
        session.send(line["event"], line.get("data"))
    clock.advance_to(until)
    return session


# ---------------------------------------------------------------- the "done when" checks


def test_replay_reproduces_the_peaks_the_traffic_was_built_to_produce(tmp_path: Path) -> None:
    traffic, docs, plans = generate(tmp_path)
    result = cli(
        "replay",
        traffic,
        "--documents",
        docs,
        "--json",
        "--limit",
        "max-microstep-count=0",
        "--limit",
        "max-state-entry-count=0",
        "--limit",
        "max-pending-events=0",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["documents"]) == {"meter", "gauge"}
    for name, doc in report["documents"].items():
        want = expected(plans, name)
        assert doc["sessions"] == len(want["max-microstep-count"])
        assert doc["events"] == sum(len(p.lines) - 1 for p in plans if p.document == name)
        for option, values in want.items():
            row = doc["limits"][option]
            assert row["max"] == pytest.approx(values[-1]), (name, option)
            assert row["p50"] == pytest.approx(percentile(values, 0.5)), (name, option)
            assert row["p99"] == pytest.approx(percentile(values, 0.99)), (name, option)
            assert row["stopped"] == 0
            assert row["suggested"] >= row["max"]
            assert row["suggested"] == suggest(row["max"], 2, option in COUNTS, UNITS.get(option, 1.0))
        assert set(doc["limits"]) == set(orsguard.OPTION_NAMES.values())
        assert doc["limits"]["max-microstep-count"]["limit"] == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max-microstep-count", 150),
        ("max-state-entry-count", 400),
        ("max-pending-events", 20),
        ("max-session-age", 60),
    ],
)
def test_limit_predicts_exactly_the_sessions_a_real_run_stops(tmp_path: Path, option: str, value: float) -> None:
    traffic, docs, plans = generate(tmp_path)
    limits = orsguard.Limits().replace(**{option.replace("-", "_"): value})
    result = replay(str(traffic), str(docs), limits)
    predicted = {r.name for r in result.sessions if r.termination is not None}
    assert all(r.termination["option"] == option for r in result.sessions if r.termination is not None)
    # The replay lets timers run for 60 s (--drain) after the last line: so does each real run.
    until = max(p.end for p in plans) + 60
    real = {
        p.name
        for p in plans
        if (s := real_run(p, docs, limits, until)).termination is not None and s.termination.option == option
    }
    assert predicted == real
    assert 0 < len(real) < len(plans)  # the limit splits the traffic, so the check means something
    report = result.report()
    assert sum(doc["limits"][option]["stopped"] for doc in report["documents"].values()) == len(real)
    for doc in report["documents"].values():
        for s in doc["stopped_sessions"]:
            assert s["termination"]["option"] == option
            # counts stop at limit + 1; the age timer fires at the limit on the virtual clock
            assert s["termination"]["observed"] >= value + (1 if option in COUNTS else -1e-9)


def test_suggested_limits_are_readable_and_never_below_the_maximum() -> None:
    assert suggest(1001, 2, True) == 2500
    assert suggest(37, 2, True) == 80
    assert suggest(7, 1, True) == 8
    assert suggest(0, 2, True) == 1  # 0 would switch the limit off
    assert suggest(0.0132, 2, False, 0.001) == 0.03
    assert suggest(0.0002637, 2, False, 0.001) == 0.001  # process-event-timeout: whole milliseconds
    assert suggest(0, 2, False, 0.001) == 0.001
    assert suggest(12.9, 2, False) == 30
    assert suggest(86400, 1.5, False) == 150000
    assert suggest(3, 1000, True) == 3000
    for observed in (1, 3, 9, 11, 99, 101, 999, 12345):
        for margin in (1, 1.1, 2, 3.7):
            assert suggest(observed, margin, True) >= observed * margin


# ---------------------------------------------------------------- output forms


def runaway_traffic(tmp_path: Path) -> Path:
    lines = [
        {"t": 0, "session": "a", "document": "runaway", "start": True},
        {"t": 1, "session": "b", "document": "retry-with-delay", "start": True},
        {"t": 2, "session": "a", "event": "call.arrived", "data": {"ani": "555"}},
        {"t": 3, "session": "b", "event": "call.arrived"},
    ]
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_table_and_html_report(tmp_path: Path) -> None:
    traffic = runaway_traffic(tmp_path)
    html_path = tmp_path / "report.html"
    result = cli(
        "replay", traffic, "--documents", "examples", "--report", html_path, "--limit", "max-microstep-count=100"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("retry-with-delay: 1 sessions, 1 events\n")
    assert re.search(r"\n  max-microstep-count +101 +101 +101 +100 +1 +250\n", out)
    assert "stopped a (line 1): max-microstep-count=100 exceeded (observed 101)" in out
    assert "loop: retry -> route -> retry" in out
    page = html_path.read_text()
    tree = etree.fromstring(page.encode(), etree.HTMLParser())
    assert len(tree.findall(".//svg")) == 10  # a chart per limit and document
    assert "src=" not in page and "href=" not in page  # self-contained
    limit_lines = [line for line in tree.iter("line") if line.get("stroke") == "#d62728"]
    assert len(limit_lines) == 10  # every limit is on here
    assert "loop: retry -&gt; route -&gt; retry" in page


def test_json_has_exactly_the_documented_shape(tmp_path: Path) -> None:
    result = cli("replay", runaway_traffic(tmp_path), "--documents", "examples", "--json")
    report = json.loads(result.stdout)
    doc = report["documents"]["runaway"]
    assert {k: doc[k] for k in ("sessions", "events")} == {"sessions": 1, "events": 1}
    for row in doc["limits"].values():
        assert set(row) == {"max", "p50", "p99", "limit", "stopped", "suggested"}
    assert doc["limits"]["max-microstep-count"]["stopped"] == 1
    assert doc["stopped_sessions"][0]["termination"]["option"] == "max-microstep-count"


# ---------------------------------------------------------------- bad input: reported, replay goes on


def test_bad_lines_and_documents_are_reported_with_file_and_line(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(METER, docs / "meter.scxml")
    (docs / "broken.scxml").write_text(
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n'
        '<state id="a">\n<transition target="nowhere"/></state>\n</scxml>\n'
    )
    good = {"t": 1, "session": "ok", "document": "meter", "start": True}
    lines = [
        json.dumps(good),  # 1
        "{not json",  # 2
        json.dumps([1, 2]),  # 3
        json.dumps({"t": "soon", "session": "x", "event": "e"}),  # 4
        json.dumps({"t": 2, "session": "x", "document": "broken", "start": True}),  # 5
        json.dumps({"t": 2, "session": "y", "document": "../../etc/passwd", "start": True}),  # 6
        json.dumps({"t": 2, "session": "z", "document": "absent", "start": True}),  # 7
        json.dumps({"t": 0.5, "session": "ok", "event": "burst", "data": {"n": 1}}),  # 8: not sorted
        json.dumps({"t": 3, "session": "ghost", "event": "burst"}),  # 9
        json.dumps({"t": 3, "session": "ok", "document": "meter", "start": True}),  # 10: already running
        json.dumps({"t": 4, "session": "ok", "event": "burst", "data": {"n": 9}}),  # 11
        json.dumps({"t": 5, "session": "ok", "event": "has space"}),  # 12
        json.dumps({"t": 1e400, "session": "ok", "event": "e"}),  # 13: Infinity
        "",  # 14: blank lines are fine
        json.dumps({"t": 6, "session": "ok", "event": "bye"}),  # 15
    ]
    traffic = tmp_path / "t.jsonl"
    traffic.write_text("\n".join(lines) + "\n")
    result = cli("replay", traffic, "--documents", docs, "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reported = {
        int(m.group(1)) for m in re.finditer(rf"^orsguard: {re.escape(str(traffic))}:(\d+): ", result.stderr, re.M)
    }
    assert reported == {2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13}
    assert f"{docs / 'broken.scxml'}:3: unknown target state 'nowhere'" in result.stderr
    report = json.loads(result.stdout)
    meter = report["documents"]["meter"]
    assert meter["sessions"] == 1 and meter["events"] == 2
    assert meter["limits"]["max-microstep-count"]["max"] == 11
    assert meter["limits"]["max-session-age"]["max"] == 5
    assert len(report["problems"]) == 13


@pytest.mark.slow
def test_unusable_arguments(tmp_path: Path) -> None:
    traffic = runaway_traffic(tmp_path)
    assert cli("replay", traffic).returncode == 2  # no --documents
    assert cli("replay", traffic, "--documents", "examples", "--margin", "0.5").returncode == 2
    assert cli("replay", traffic, "--documents", "examples", "--limit", "max-pending-events=inf").returncode == 2
    missing = cli("replay", tmp_path / "absent.jsonl", "--documents", "examples")
    assert missing.returncode == 1 and "absent.jsonl" in missing.stderr
    nodir = cli("replay", traffic, "--documents", tmp_path / "nodir")
    assert nodir.returncode == 1 and "not a directory" in nodir.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "traffic.jsonl"
    os.mkfifo(fifo)
    result = cli("replay", fifo, "--documents", "examples")
    assert result.returncode == 1 and "not a regular file" in result.stderr


def test_progress_goes_to_the_given_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orsguard.replay, "PROGRESS_EVERY", 0.0)
    stream = io.StringIO()
    traffic, docs, plans = generate(tmp_path, sessions=5)
    replay(str(traffic), str(docs), orsguard.Limits(), progress=stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == sum(len(p.lines) for p in plans)
    assert re.fullmatch(r"replay: line \d+, t=[\d.]+ s, \d+ sessions running, \d+ ended", lines[-1])


def test_json_nested_too_deep_is_a_bad_line(tmp_path: Path) -> None:
    traffic = tmp_path / "deep.jsonl"
    deep = "[" * 50000 + "]" * 50000
    traffic.write_text(
        '{"t": 0, "session": "a", "document": "runaway", "start": true}\n'
        f'{{"t": 1, "session": "a", "event": "call.arrived", "data": {deep}}}\n'
    )
    result = cli("replay", traffic, "--documents", "examples", "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{traffic}:2: not JSON" in result.stderr
    assert json.loads(result.stdout)["documents"]["runaway"]["sessions"] == 1


def test_a_time_beyond_double_range_is_a_bad_line(tmp_path: Path) -> None:
    """JSON integers have no size limit: 10**400 as "t" once ended the replay with an OverflowError."""
    traffic = tmp_path / "huge-t.jsonl"
    traffic.write_text(
        '{"t": 0, "session": "a", "document": "runaway", "start": true}\n'
        f'{{"t": {10**400}, "session": "a", "event": "call.arrived"}}\n'
        f'{{"t": {2**1030}, "session": "b", "document": "runaway", "start": true}}\n'
    )
    result = cli("replay", traffic, "--documents", "examples", "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{traffic}:2: 't' must be a number of seconds >= 0" in result.stderr
    assert f"{traffic}:3: 't' must be a number of seconds >= 0" in result.stderr
    assert json.loads(result.stdout)["documents"]["runaway"]["sessions"] == 1


def test_ended_sessions_give_their_script_engine_back(tmp_path: Path) -> None:
    """400 sessions one after the other fit in a 4 MB engine heap: an ended session's context is freed."""
    from orsguard.datamodels import _quickjs

    lines = []
    for i in range(400):
        lines.append({"t": i, "session": f"s{i}", "document": "meter", "start": True})
        lines.append({"t": i + 0.5, "session": f"s{i}", "event": "bye"})
    traffic = tmp_path / "one-after-another.jsonl"
    traffic.write_text("".join(json.dumps(line) + "\n" for line in lines))
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(METER, docs / "meter.scxml")
    saved = _quickjs.memory_limits()
    _quickjs.set_memory_limits(saved[0], 4 * 1024 * 1024)
    try:
        result = replay(str(traffic), str(docs), orsguard.Limits())
    finally:
        _quickjs.set_memory_limits(*saved)
    assert result.problems == []
    assert len(result.sessions) == 400 and all(r.final == "done" for r in result.sessions)


def test_the_macrostep_a_limit_stopped_counts_in_its_session_peaks(tmp_path: Path) -> None:
    """Each lap waits 30 ms of wall time: the stopped macrostep ran at least 4 laps, over 0.1 s."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "slow.scxml").write_text(
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="idle">\n'
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><onentry><script>var t0 = Date.now(); while (Date.now() - t0 &lt; 30) {}</script>'
        '</onentry><transition target="a"/></state>\n</scxml>\n'
    )
    traffic = tmp_path / "t.jsonl"
    traffic.write_text(
        '{"t": 0, "session": "s", "document": "slow", "start": true}\n{"t": 1, "session": "s", "event": "go"}\n'
    )
    result = replay(str(traffic), str(docs), orsguard.Limits(max_microstep_count=4))
    (r,) = result.sessions
    assert r.termination["option"] == "max-microstep-count"
    assert r.peaks["max-microstep-count"] == 5
    assert r.peaks["process-event-timeout"] >= 0.1
