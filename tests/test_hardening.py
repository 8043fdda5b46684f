"""Hostile input at every entry point: a documented error or success, never a stray exception or a lost event."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import orsguard
from orsguard import DocumentError, Limits, Session, Stats, VirtualClock, load
from orsguard.document import MAX_FILE_BYTES, load_file, load_string
from orsguard.ioprocessors import check_external_event, check_portable, is_platform_event
from tests.conftest import XMLNS as NS
from tests.conftest import doc, load_error

# ---------------------------------------------------------------- load(): only DocumentError, with a line


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # text after an <invoke><param> used to escape as lxml's XMLSyntaxError
        (doc('<state id="a"><invoke>', '<param name="x" expr="1"/>hello</invoke></state>'), None),
        (doc("<state id='a'>\0</state>"), 2),
        ("junk" + doc('<state id="a"/>'), 1),
        ("\n\n  <<" + doc('<state id="a"/>'), 3),
        (doc('<state id="a" label="\ud800"/>'), 2),
    ],
)
def test_hostile_text_is_a_document_error(text: str, line: int | None) -> None:
    try:
        document = load(text)
    except DocumentError as err:
        # Loading may succeed or fail here; pytest.raises could only say the second.
        assert type(err) is DocumentError  # noqa: PT017
        if line is not None:
            assert err.line == line, err  # noqa: PT017
    else:
        assert document.state_ids == ["a"]


def test_param_with_a_non_ascii_attribute_and_trailing_text_loads() -> None:
    document = load(
        doc(
            '<state id="a"><invoke>',
            '<param name="x" expr="1" \u00e9t\u00e9="1"/>trailing text',
            f'<content><scxml {NS} version="1.0"><state id="c"/></scxml></content>',
            "</invoke></state>",
        )
    )
    session = Session(document, clock=VirtualClock()).start()
    assert session.running and session.configuration == {"a"}


def test_text_with_a_bom_is_text_and_parses() -> None:
    document = load("\ufeff" + doc('<state id="a"/>'))
    assert document.state_ids == ["a"]
    assert document.path is None


def test_text_with_leading_junk_is_text_with_a_line() -> None:
    err = load_error("junk" + doc('<state id="a"/>'))
    assert err.file is None and err.line == 1
    assert "malformed XML" in err.message


def test_text_with_nul_is_text_not_a_path() -> None:
    err = load_error("a\0b")
    assert err.file is None and err.line == 1


def test_a_string_without_markup_is_a_path(tmp_path: Path) -> None:
    err = load_error(str(tmp_path / "missing.scxml"))
    assert err.file == str(tmp_path / "missing.scxml")
    assert "No such file" in err.message


def test_load_string_never_opens_a_file(tmp_path: Path) -> None:
    path = tmp_path / "doc.scxml"
    path.write_text(doc('<state id="a"/>'))
    with pytest.raises(DocumentError) as info:
        load_string(str(path))
    assert "malformed XML" in info.value.message
    assert load_file(str(path)).state_ids == ["a"]


def test_decoded_text_ignores_the_encoding_its_declaration_names() -> None:
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>' + doc('<state id="\u00e9t\u00e9"/>')
    assert load(text).state_ids == ["\u00e9t\u00e9"]
    assert load(text.encode("iso-8859-1")).state_ids == ["\u00e9t\u00e9"]


def test_bytes_are_text() -> None:
    assert load(doc('<state id="a"/>').encode()).state_ids == ["a"]


def test_load_refuses_other_types() -> None:
    err = load_error(42)  # type: ignore[arg-type]
    assert "path or SCXML text" in err.message


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/proc/self", "/"])
def test_a_document_that_is_not_a_regular_file_is_refused(path: str) -> None:
    err = load_error(Path(path))
    assert err.file == path
    assert "cannot read the document" in err.message


def test_a_fifo_document_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "doc.scxml"
    os.mkfifo(fifo)
    err = load_error(fifo)
    assert "not a regular file" in err.message


def test_an_oversized_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.scxml"
    with open(path, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    err = load_error(path)
    assert f"larger than {MAX_FILE_BYTES} bytes" in err.message


# ---------------------------------------------------------------- illegal target sets (spec 3.11)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ('<transition event="e" target="s1 s2"/>', "cannot be active together"),
        ('<transition event="e" target="p s1"/>', "no target may contain another"),
        ('<transition event="e" target="s1 p"/>', "no target may contain another"),
    ],
)
def test_a_transition_to_exclusive_states_is_refused(where: str, message: str) -> None:
    err = load_error(doc(f'<state id="p">{where}', '<state id="s1"/><state id="s2"/></state>'))
    assert err.line == 2 and err.element == "transition"
    assert message in err.message


def test_exclusive_states_in_deeper_branches_are_refused() -> None:
    err = load_error(
        doc(
            '<state id="top"><transition event="e" target="x y"/>',
            '<state id="a"><state id="x"/></state><state id="b"><state id="y"/></state></state>',
        )
    )
    assert "'x' and 'y'" in err.message and "'top'" in err.message


def test_initial_attribute_with_exclusive_states_is_refused() -> None:
    err = load_error(doc('<state id="p" initial="s1 s2"><state id="s1"/><state id="s2"/></state>'))
    assert err.element == "state" and "cannot be active together" in err.message


def test_targets_in_different_parallel_regions_are_legal() -> None:
    document = load(
        doc(
            '<state id="idle"><transition event="go" target="x2 y2"/></state>',
            '<parallel id="p"><state id="x"><state id="x1"/><state id="x2"/></state>',
            '<state id="y"><state id="y1"/><state id="y2"/></state></parallel>',
        )
    )
    session = Session(document, clock=VirtualClock()).start()
    session.send("go")
    assert session.atomic_configuration == {"x2", "y2"}


def test_repeated_target_is_legal() -> None:
    assert load(doc('<state id="a"><transition event="e" target="b b"/></state><state id="b"/>'))


# ---------------------------------------------------------------- file access


def test_data_src_under_the_document_directory_loads(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "v.json").write_text('{"n": 1}')
    path = tmp_path / "doc.scxml"
    path.write_text(
        doc(
            '<datamodel><data id="v" src="lib/v.json"/></datamodel>',
            '<state id="a"><transition cond="v.n === 1" target="b"/></state><state id="b"/>',
        )
    )
    assert Session(load(path), clock=VirtualClock()).start().configuration == {"b"}


@pytest.mark.parametrize(
    "src",
    [
        "/proc/self/environ",
        "/etc/passwd",
        "../outside.json",
        "file:///etc/passwd",
        "file:../outside.json",
        "http://example.invalid/x.json",
    ],
)
def test_data_src_outside_the_document_directory_is_refused(tmp_path: Path, src: str) -> None:
    (tmp_path / "outside.json").write_text("1")
    (tmp_path / "docs").mkdir()
    path = tmp_path / "docs" / "doc.scxml"
    path.write_text(doc(f'<datamodel><data id="v" src="{src}"/></datamodel>', '<state id="a"/>'))
    err = load_error(path)
    assert (err.line, err.element) == (2, "data")


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text("1")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "link.json").symlink_to(tmp_path / "secret.json")
    path = tmp_path / "docs" / "doc.scxml"
    path.write_text(doc('<datamodel><data id="v" src="link.json"/></datamodel>', '<state id="a"/>'))
    assert "outside the directories" in load_error(path).message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_src_is_refused_even_under_a_root(device: str, tmp_path: Path) -> None:
    err = load_error(doc(f'<datamodel><data id="v" src="{device}"/></datamodel>', '<state id="a"/>'), roots=["/dev"])
    assert "not a regular file" in err.message


def test_a_fifo_src_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    path = tmp_path / "doc.scxml"
    path.write_text(doc('<script src="pipe"/>', '<state id="a"/>'))
    assert "not a regular file" in load_error(path).message


def test_an_oversized_src_is_refused(tmp_path: Path) -> None:
    with open(tmp_path / "big.json", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    path = tmp_path / "doc.scxml"
    path.write_text(doc('<datamodel><data id="v" src="big.json"/></datamodel>', '<state id="a"/>'))
    assert "larger than" in load_error(path).message


def test_text_reads_no_file_unless_given_roots(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text("7")
    text = doc(
        '<datamodel><data id="v" src="v.json"/></datamodel>',
        '<state id="a"><transition cond="v === 7" target="b"/></state><state id="b"/>',
    )
    assert "may not read files" in load_error(text).message
    document = load_string(text, base=tmp_path)
    assert document.roots == (os.path.realpath(tmp_path),)
    assert Session(document, clock=VirtualClock()).start().configuration == {"b"}


def test_configured_roots_replace_the_document_directory(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "v.json").write_text("7")
    (tmp_path / "docs").mkdir()
    path = tmp_path / "docs" / "doc.scxml"
    path.write_text(doc('<datamodel><data id="v" src="../shared/v.json"/></datamodel>', '<state id="a"/>'))
    load_error(path)
    assert load(path, roots=[tmp_path]).roots == (os.path.realpath(tmp_path),)
    (tmp_path / "docs" / "w.json").write_text("1")
    path.write_text(doc('<datamodel><data id="v" src="w.json"/></datamodel>', '<state id="a"/>'))
    assert "outside" in load_error(path, roots=[tmp_path / "shared"]).message


def test_roots_must_be_a_list() -> None:
    assert "list of directories" in load_error(doc('<state id="a"/>'), roots="/tmp").message


CHILD = f'<scxml {NS} version="1.0"><final id="c"/></scxml>'


def invoker(attrs: str) -> str:
    return doc(
        '<datamodel><data id="where" expr="null"/></datamodel>',
        f'<state id="a"><invoke {attrs}/>',
        '<transition event="done.invoke" target="ok"/>',
        '<transition event="error.execution" target="refused"><assign location="where" expr="_event.data"/>'
        "</transition></state>",
        '<final id="ok"/><final id="refused"/>',
    )


def run(document: orsguard.Document) -> Session:
    return Session(document, clock=VirtualClock()).start()


def test_invoke_src_under_the_root_runs(tmp_path: Path) -> None:
    (tmp_path / "child.scxml").write_text(CHILD)
    path = tmp_path / "doc.scxml"
    path.write_text(invoker("srcexpr=\"'child.scxml'\""))
    assert run(load(path)).final == "ok"


@pytest.mark.parametrize(
    "expr", ["'/etc/passwd'", "'../secret.scxml'", "'/proc/self/environ'", "'/dev/zero'", "5", "null", "'a\\u0000b'"]
)
def test_invoke_srcexpr_outside_the_root_is_an_execution_error(tmp_path: Path, expr: str) -> None:
    (tmp_path / "secret.scxml").write_text(CHILD)
    (tmp_path / "docs").mkdir()
    path = tmp_path / "docs" / "doc.scxml"
    path.write_text(invoker(f'srcexpr="{expr}"'))
    assert run(load(path)).final == "refused"


def test_invoke_content_string_is_never_taken_as_a_path(tmp_path: Path) -> None:
    (tmp_path / "child.scxml").write_text(CHILD)
    path = tmp_path / "doc.scxml"
    path.write_text(
        doc(
            '<state id="a"><invoke><content expr="\'child.scxml\'"/></invoke>',
            '<transition event="done.invoke" target="ok"/>',
            '<transition event="error.execution" target="refused"/></state>',
            '<final id="ok"/><final id="refused"/>',
        )
    )
    assert run(load(path)).final == "refused"


def test_an_invoked_document_keeps_its_parents_roots(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text("1")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "child.scxml").write_text(
        f'<scxml {NS} version="1.0"><datamodel><data id="s" src="../secret.json"/></datamodel><final id="c"/></scxml>'
    )
    path = tmp_path / "docs" / "doc.scxml"
    path.write_text(invoker('src="child.scxml"'))
    assert run(load(path)).final == "refused"
    assert run(load(path, roots=[tmp_path])).final == "ok"


# ---------------------------------------------------------------- invoke evaluation errors


def outcome(text: str, limits: Limits | None = None) -> tuple[Session, list[Any]]:
    logs: list[Any] = []
    session = Session(
        load(text, check_expressions=False),
        clock=VirtualClock(),
        limits=limits,
        on_log=lambda label, value: logs.append(value),
    )
    session.start()
    return session, logs


def child_doc(body: str) -> str:
    return f'<content><scxml {NS} version="1.0">{body}</scxml></content>'


IDLE_CHILD = child_doc('<state id="c"/>')
ERRORS = (
    '<transition event="error.execution" target="f"><log expr="_event.name"/></transition>'
    '<transition event="error.communication" target="f"><log expr="_event.name"/></transition>'
)


@pytest.mark.parametrize(
    "invoke",
    [
        '<invoke srcexpr="5"/>',
        '<invoke srcexpr="({})"/>',
        '<invoke typeexpr="Symbol()"/>',
        f'<invoke><param name="x" expr="undefinedName"/>{IDLE_CHILD}</invoke>',
        f'<invoke idlocation="1 + "><param name="x" expr="1"/>{IDLE_CHILD}</invoke>',
    ],
)
def test_invoke_evaluation_errors_are_error_execution(invoke: str) -> None:
    session, logs = outcome(doc(f'<state id="a">{invoke}{ERRORS}</state><final id="f"/>'))
    assert session.final == "f"
    assert logs == ["error.execution"]


VALUE_CHILD = child_doc(
    '<datamodel><data id="x"/></datamodel><state id="c"><onentry>'
    '<send event="got" target="#_parent"><param name="x" expr="typeof x"/></send>'
    "</onentry></state>"
)


@pytest.mark.parametrize("expr", ["10n", "2n ** 80n", "Symbol()", "function () {}", "[Symbol(), 1]"])
def test_invoke_params_the_datamodel_cannot_pass_are_an_error_or_plain_data(expr: str) -> None:
    # Which JavaScript values become plain data is the datamodel's conversion; what may
    # not happen is an exception out of start() or a child given an engine object.
    session, logs = outcome(
        doc(
            f'<state id="a"><invoke><param name="x" expr="{expr}"/>{VALUE_CHILD}</invoke>',
            f'{ERRORS}<transition event="got" target="f"><log expr="_event.data.x"/>'
            '</transition></state><final id="f"/>',
        )
    )
    assert session.final == "f"
    assert logs in (["error.execution"], ["number"], ["bigint"], ["object"])


def test_data_that_cannot_cross_is_error_communication_for_the_sender() -> None:
    parent = Session(
        load(
            doc(
                f'<state id="a"><invoke id="kid">{IDLE_CHILD}</invoke>'
                '<transition event="x" target="wrong"/></state><final id="wrong"/>'
            )
        ),
        clock=VirtualClock(),
    ).start()
    child = parent.child("kid")
    assert child is not None
    for data in (object(), {"f": print}, [b"bytes"]):
        child.send_event("x", "#_parent", None, child.new_send_id(), 0.0, data)
        error = child._internal_queue.pop()
        assert error.name == "error.communication"
        assert "cannot be sent to another session" in error.data["message"]
    parent.run(1)
    assert parent.configuration == {"a"}


def test_invoke_param_timeout_ends_the_session_by_the_limit() -> None:
    session, _ = outcome(
        doc(
            '<state id="a"><invoke><param name="x" expr="(function () { while (true) {} })()"/>',
            IDLE_CHILD,
            f"</invoke>{ERRORS}</state><final id='f'/>",
        ),
        Limits(process_event_timeout=0.2),
    )
    assert not session.running and session.end_reason == "limit"
    assert session.termination.option == "process-event-timeout"
    assert session.final is None


def test_finalize_timeout_ends_the_session_by_the_limit() -> None:
    child = child_doc('<state id="c"><onentry><send event="x" target="#_parent"/></onentry></state>')
    session, _ = outcome(
        doc(
            f'<state id="a"><invoke>{child}<finalize><script>while (true) {{}}</script>'
            f'</finalize></invoke><transition event="x" target="f"/></state><final id="f"/>'
        ),
        Limits(process_event_timeout=0.2),
    )
    assert session.end_reason == "limit"
    assert session.termination.option == "process-event-timeout"


def test_finalize_error_is_error_execution() -> None:
    child = child_doc('<state id="c"><onentry><send event="x" target="#_parent"/></onentry></state>')
    session, logs = outcome(
        doc(
            f'<state id="a"><invoke>{child}<finalize><script>throw 10n</script></finalize>'
            f'</invoke><transition event="x" target="b"/></state>'
            f'<state id="b">{ERRORS}</state><final id="f"/>'
        )
    )
    assert session.final == "f" and logs == ["error.execution"]


def test_donedata_timeout_of_a_top_level_final_is_a_limit_not_a_final() -> None:
    session, _ = outcome(
        doc('<final id="a"><donedata><param name="x" expr="(function () { while (true) {} })()"/></donedata></final>'),
        Limits(process_event_timeout=0.2),
    )
    assert session.end_reason == "limit"
    assert session.termination.option == "process-event-timeout"
    assert session.final is None


LOOP = "(function () { while (true) {} })()"
FINALIZE_CHILD = child_doc('<state id="c"><onentry><send event="x" target="#_parent"/></onentry></state>')
TIMED_OUT_SCRIPTS = {
    "top-level donedata": f'<final id="a"><donedata><param name="x" expr="{LOOP}"/></donedata></final>',
    "inner donedata": f'<state id="p"><final id="pf"><donedata><param name="x" expr="{LOOP}"/></donedata></final>'
    '<transition event="done.state.p" target="f"/></state><final id="f"/>',
    "invoke param": f'<state id="a"><invoke><param name="x" expr="{LOOP}"/>{IDLE_CHILD}</invoke>{ERRORS}</state>'
    '<final id="f"/>',
    "finalize": f'<state id="a"><invoke>{FINALIZE_CHILD}<finalize><script>{LOOP}</script></finalize></invoke>'
    '<transition event="x" target="f"/></state><final id="f"/>',
    "data": f'<datamodel><data id="d" expr="{LOOP}"/><data id="e" expr="1"/></datamodel>'
    f'<state id="a">{ERRORS}</state><final id="f"/>',
    "if cond": f'<state id="a"><onentry><if cond="{LOOP}"><log expr="1"/></if></onentry>{ERRORS}</state>'
    '<final id="f"/>',
}


@pytest.mark.parametrize("body", TIMED_OUT_SCRIPTS.values(), ids=TIMED_OUT_SCRIPTS.keys())
def test_each_script_stopped_at_the_timeout_counts_as_one_violation(body: str) -> None:
    stats = Stats()
    session = Session(load(doc(body)), clock=VirtualClock(), stats=stats, limits=Limits(process_event_timeout=0.2))
    session.start()
    assert session.end_reason == "limit" and session.final is None and session.final_data is None
    assert session.termination.option == "process-event-timeout"
    assert session.termination.observed >= 0.2
    snapshot = stats.snapshot()
    assert snapshot["limit_violations"]["process-event-timeout"] == 1
    assert snapshot["sessions_ended"]["limit"] == 1 and snapshot["sessions_ended"]["final"] == 0


def test_a_top_level_donedata_stopped_by_terminate_is_a_cancellation() -> None:
    stats = Stats()
    session = Session(
        load(doc(TIMED_OUT_SCRIPTS["top-level donedata"])), clock=VirtualClock(), stats=stats, limits=Limits.unlimited()
    )
    timer = threading.Timer(0.2, session.dm.terminate)
    timer.start()
    try:
        session.start()
    finally:
        timer.cancel()
    assert session.end_reason == "cancelled" and session.final is None and session.termination is None
    assert stats.snapshot()["limit_violations"]["process-event-timeout"] == 0


@pytest.mark.parametrize("expr", ["function () {}", "Symbol()"])
def test_engine_values_sent_to_another_session_are_an_error_or_plain_data(expr: str) -> None:
    # The sender gets error.communication, or the datamodel made plain data of the value.
    child = child_doc(
        '<state id="c">'
        f'<onentry><send event="x" target="#_parent"><content expr="{expr}"/></send></onentry>'
        '<transition event="error.communication" target="cf">'
        '<send event="sender.saw.error" target="#_parent"/></transition></state><final id="cf"/>'
    )
    session, logs = outcome(
        doc(
            f'<state id="a"><invoke>{child}</invoke>'
            '<transition event="x" target="f"><log expr="String(_event.data)"/></transition>'
            '<transition event="sender.saw.error" target="f"><log expr="_event.name"/>'
            '</transition></state><final id="f"/>'
        )
    )
    assert session.final == "f"
    assert logs in (["sender.saw.error"], ["null"], ["undefined"])


def test_a_processor_failing_with_any_exception_is_error_communication() -> None:
    class Broken:
        type_uri = "urn:broken"
        aliases = ("broken",)

        def location(self, session: Any) -> str:
            return "broken:"

        def send(self, session: Any, event: Any, target: str) -> None:
            raise TypeError("not serializable")

    session = Session(
        load(
            doc(
                '<state id="s"><onentry><send event="x" type="broken" target="t"/></onentry>'
                '<transition event="error.communication" target="f"/></state><final id="f"/>'
            )
        ),
        clock=VirtualClock(),
        ioprocessors=[Broken()],
    ).start()
    assert session.final == "f"


# ---------------------------------------------------------------- data and names from outside


@pytest.mark.parametrize("name", ["error", "error.execution", "error.limit", "done", "done.invoke.x", "done.state.s"])
def test_platform_names_are_reserved(name: str) -> None:
    assert is_platform_event(name)
    with pytest.raises(ValueError, match="platform"):
        check_external_event(name, None)
    check_external_event(name, None, allow_platform=True)


@pytest.mark.parametrize("name", ["errors", "done_x", "call.error", "x.done"])
def test_other_names_are_not_reserved(name: str) -> None:
    assert not is_platform_event(name)
    check_external_event(name, {"a": [1, 2.5, "x", None, True]})


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("data", [{1: "x"}, nested(65), object(), {b"x"}, b"x", [lambda: 1]])
def test_data_that_is_not_plain_data_cannot_cross(data: Any) -> None:
    refused = "must be a string|nested more than 64 deep|cannot leave its session"
    with pytest.raises(ValueError, match=refused):
        check_portable(data)
    with pytest.raises(ValueError, match=refused):
        check_external_event("e", data)


@pytest.mark.parametrize("data", [float("nan"), {"a": float("inf")}, 10**400, [2**53], "\ud800", {"\udc00": 1}])
def test_data_from_outside_must_be_exact_for_ecmascript(data: Any) -> None:
    check_portable(data)  # between sessions of the process, the receiving datamodel converts it
    with pytest.raises(ValueError, match="not a finite number|no exact ECMAScript number|lone surrogate"):
        check_external_event("e", data)


def test_data_at_the_bounds_is_portable() -> None:
    data = [2**53 - 1, -(2**53 - 1), 1e308, nested(63), {"k": "\u00e9\U0001f600"}]
    check_portable(data, exact=True)
    check_external_event("e", data)


@pytest.mark.parametrize("expr", ["NaN", "Infinity", "-1", "1e400"])
def test_a_delay_that_is_not_a_finite_time_is_error_execution(expr: str) -> None:
    session, logs = outcome(
        doc(
            f'<state id="a"><onentry><send event="later" delayexpr="{expr}"/></onentry>',
            f'{ERRORS}<transition event="later" target="wrong"/></state>',
            '<final id="f"/><final id="wrong"/>',
        )
    )
    assert session.final == "f" and logs == ["error.execution"]
    assert session.clock.next_due() is None
