"""``orsguard diagram``: DOT and Mermaid text, Graphviz rendering, loops drawn in red."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from orsguard.chart import load_chart
from orsguard.diagram import RED, highlight_labels, to_dot, to_mermaid, trail_loop
from tests.conftest import ROOT, cli
from tests.w3c_runner import w3c_dir

RUNAWAY = ROOT / "examples/runaway.scxml"

NESTED = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="outer">
  <state id="outer">
    <history id="hist" type="deep"/>
    <state id="a"><transition event="go" cond='x == "a;b" &amp;&amp; y &lt; 2' target="par"/></state>
    <parallel id="par">
      <state id="r1"><transition target="outer"/></state>
      <state id="r2"><transition event="e.*"/></state>
    </parallel>
  </state>
  <final id="done"/>
</scxml>
"""


def red_edges(dot: str) -> set[str]:
    """'sA -> sB' for every red edge of a DOT text."""
    return {m.group(1) for m in re.finditer(r"^\s*(\S+ -> \S+) \[[^\n]*" + RED, dot, re.M)}


def node_of(dot: str, state_id: str) -> str:
    return re.search(r"^\s*(s\d+) \[[^\n]*label=\"" + re.escape(state_id) + '"', dot, re.M).group(1)


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    path = tmp_path / "nested.scxml"
    path.write_text(NESTED)
    return path


def test_dot_draws_compound_and_parallel_states_as_clusters(nested: Path) -> None:
    dot = to_dot(load_chart(nested))
    assert re.search(r'subgraph cluster_\d+ \{\n\s*label="outer"; style="rounded"', dot)
    assert re.search(r'subgraph cluster_\d+ \{\n\s*label="par \(parallel\)"; style="dashed,rounded"', dot)
    assert 'label="H*"' in dot
    # the eventless transition is dashed; it starts inside outer, so it is not clipped at outer's border
    r1 = node_of(dot, "r1")
    assert re.search(rf"{r1} -> s\d+_init \[style=dashed\];", dot)
    # an edge from outside into the parallel state is clipped at the cluster's border
    assert re.search(r"s\d+ -> s\d+_init \[label=\"go .*, lhead=cluster_\d+\];", dot)
    # the cond keeps its quotes and semicolon inside one DOT string
    assert r'label="go [x == \"a;b\" && y < 2]"' in dot
    assert red_edges(dot) == set()


def test_runaway_loop_from_lint_is_red_and_nothing_else(tmp_path: Path) -> None:
    lint = cli("lint", "--json", RUNAWAY)
    report = tmp_path / "lint.json"
    report.write_text(lint.stdout)
    labels = highlight_labels(json.loads(lint.stdout), str(RUNAWAY))
    dot = to_dot(load_chart(RUNAWAY), labels)
    route, retry = node_of(dot, "route"), node_of(dot, "retry")
    assert red_edges(dot) == {f"{route} -> {retry}", f"{retry} -> {route}"}
    result = cli("diagram", RUNAWAY, "--format", "dot", "--highlight", report)
    assert result.returncode == 0, result.stderr
    assert result.stdout == dot


def test_loop_from_a_termination_trail() -> None:
    trail = ["idle -> route", "route -> retry", "retry -> route", "route -> retry", "retry -> route"]
    assert trail_loop(trail) == ["route -> retry", "retry -> route"]
    assert trail_loop(["a -> a"] * 4) == ["a -> a"]
    assert trail_loop(["a -> b"]) == ["a -> b"]
    data = {"final": None, "termination": {"option": "max-microstep-count", "trail": trail}}
    assert highlight_labels(data) == ["route -> retry", "retry -> route"]
    assert highlight_labels({"final": "done", "termination": None}) == []


def test_mermaid_has_regions_initials_and_the_loop_class(nested: Path) -> None:
    text = to_mermaid(load_chart(nested), ["r1 -> outer"])
    assert text.startswith("stateDiagram-v2\n")
    assert "\n      --\n" in text  # the separator between the two regions of the parallel state
    assert "[*] --> " in text
    assert re.search(r"s\d+ --> s\d+ : LOOP \(eventless\)", text)
    assert re.search(r"class s\d+,s\d+ loop", text)
    # Mermaid would end the label at a plain ';': it is written as an entity code
    assert re.search(r'\n  s\d+ --> s\d+ : go \[x == "a#59;b" && y < 2\]\n', text)


def test_mermaid_needs_no_graphviz() -> None:
    result = cli("diagram", RUNAWAY, env={"PATH": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stateDiagram-v2")


def test_svg_and_png_without_graphviz_say_what_to_install(tmp_path: Path) -> None:
    result = cli("diagram", RUNAWAY, "-o", tmp_path / "x.svg", env={"PATH": "/nonexistent"})
    assert result.returncode == 1
    assert "graphviz" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is installed by scripts/install-services.sh")
def test_svg_is_rendered_with_the_loop_in_red(tmp_path: Path) -> None:
    report = tmp_path / "lint.json"
    report.write_text(cli("lint", "--json", RUNAWAY).stdout)
    out = tmp_path / "runaway.svg"
    result = cli("diagram", RUNAWAY, "-o", out, "--highlight", report)
    assert result.returncode == 0, result.stderr
    svg = etree.parse(str(out)).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    red = [
        g
        for g in svg.iter("{http://www.w3.org/2000/svg}g")
        if g.get("class") == "edge" and any(p.get("stroke") == RED for p in g.iter())
    ]
    assert len(red) == 2


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is installed by scripts/install-services.sh")
def test_png_of_a_nested_chart(tmp_path: Path, nested: Path) -> None:
    out = tmp_path / "nested.png"
    result = cli("diagram", nested, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is installed by scripts/install-services.sh")
@pytest.mark.parametrize("test", ["403b", "422", "504", "505", "506", "533", "570", "576", "579", "580", "387"])
def test_graphviz_takes_nested_w3c_charts_without_a_warning(test: str) -> None:
    """W3C charts with transitions into, out of and within compound and parallel states."""
    chart = load_chart(w3c_dir() / "ecma" / f"test{test}.scxml", check_expressions=False)
    done = subprocess.run(["dot", "-Tsvg"], input=to_dot(chart).encode(), capture_output=True, check=False)
    assert done.returncode == 0 and done.stderr == b"", done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"something": "else"}', "neither"),
        ("[1, 2]", "neither"),
    ],
)
def test_bad_highlight_file_exits_1_naming_it(tmp_path: Path, content: str, message: str) -> None:
    report = tmp_path / "h.json"
    report.write_text(content)
    result = cli("diagram", RUNAWAY, "--highlight", report)
    assert result.returncode == 1
    assert str(report) in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_arguments_and_documents(tmp_path: Path) -> None:
    assert cli("diagram", RUNAWAY, "-o", tmp_path / "x.gif").returncode == 2
    assert cli("diagram", RUNAWAY, "--format", "gif").returncode == 2
    broken = tmp_path / "broken.scxml"
    broken.write_text('<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n<state id="a">\n</stat>\n')
    result = cli("diagram", broken)
    assert result.returncode == 1 and f"{broken}:3:" in result.stderr
    missing = cli("diagram", RUNAWAY, "--highlight", tmp_path / "absent.json")
    assert missing.returncode == 1 and "absent.json" in missing.stderr
    unwritable = cli("diagram", RUNAWAY, "-o", tmp_path / "no-such-dir" / "x.dot")
    assert unwritable.returncode == 1 and "cannot write" in unwritable.stderr
