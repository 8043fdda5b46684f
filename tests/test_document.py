"""Loading documents: every bad input is a DocumentError that says where, never a bare traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

import orsguard
from orsguard import DocumentError, Session, VirtualClock, load
from tests.conftest import HEAD, doc, load_error
from tests.conftest import XMLNS as NS

# ---------------------------------------------------------------- malformed XML


@pytest.mark.parametrize(
    ("lines", "line", "column"),
    [
        (('<state id="a">', "</stat>"), 3, 8),
        (('<state id="a">', '  <onentry><log expr="1 & 2"/></onentry>', "</state>"), 3, 26),
        (('<state id="a" label="<"/>',), 2, 22),
    ],
)
def test_malformed_xml_reports_line_and_column(lines: tuple[str, ...], line: int, column: int) -> None:
    err = load_error(doc(*lines))
    assert err.message.startswith("malformed XML")
    assert (err.line, err.column) == (line, column)
    assert err.file is None


def test_truncated_document_is_malformed() -> None:
    err = load_error(HEAD + '\n<state id="a">\n')
    assert err.message.startswith("malformed XML")
    assert err.line == 3


# ---------------------------------------------------------------- root and namespace


def test_root_without_the_scxml_namespace_is_rejected() -> None:
    err = load_error('<scxml version="1.0">\n<state id="a"/>\n</scxml>')
    assert err.line == 1
    assert "http://www.w3.org/2005/07/scxml" in err.message


def test_root_in_another_namespace_is_rejected() -> None:
    err = load_error('<scxml xmlns="http://example.com/not-scxml" version="1.0"><state id="a"/></scxml>')
    assert err.line == 1
    assert "http://example.com/not-scxml" in err.message


def test_wrong_root_element_is_rejected() -> None:
    err = load_error(f'<?xml version="1.0"?>\n<machine {NS}><state id="a"/></machine>')
    assert err.line == 2
    assert err.element == "machine"


def test_unsupported_version_is_rejected() -> None:
    err = load_error(f'<scxml {NS} version="2.0">\n<state id="a"/>\n</scxml>')
    assert err.line == 1
    assert "2.0" in err.message


def test_document_without_states_is_rejected() -> None:
    err = load_error(doc())
    assert err.line == 1


# ---------------------------------------------------------------- ids and targets


def test_unknown_target_names_the_transition_line() -> None:
    err = load_error(doc('<state id="a">', '  <transition event="e" target="nowhere"/>', "</state>"))
    assert err.line == 3
    assert err.element == "transition"
    assert "nowhere" in err.message


def test_one_unknown_id_among_several_targets() -> None:
    err = load_error(
        doc(
            '<parallel id="p"><state id="a"/><state id="b"/></parallel>',
            '<state id="s"><transition event="e" target="a zz b"/></state>',
        )
    )
    assert err.line == 3
    assert "zz" in err.message


def test_duplicate_id_names_the_first_line() -> None:
    err = load_error(doc('<state id="a"/>', '<state id="b">', '  <final id="a"/>', "</state>"))
    assert err.line == 4
    assert "line 2" in err.message
    assert "'a'" in err.message


@pytest.mark.parametrize(
    "lines",
    [
        ('<state id="outer" initial="elsewhere">', '  <state id="inner"/>', "</state>", '<state id="elsewhere"/>'),
        (
            '<state id="outer">',
            '  <initial><transition target="elsewhere"/></initial>',
            '  <state id="inner"/>',
            "</state>",
            '<state id="elsewhere"/>',
        ),
    ],
)
def test_initial_naming_a_non_descendant_is_rejected(lines: tuple[str, ...]) -> None:
    err = load_error(doc(*lines))
    assert err.line == (2 if "initial=" in lines[0] else 3)
    assert "elsewhere" in err.message


@pytest.mark.parametrize(
    ("head", "lines"),
    [
        (f'<scxml {NS} version="1.0" initial="">', ('<state id="a"/>',)),
        (HEAD, ('<state id="p" initial=" ">', '  <state id="a"/>', "</state>")),
    ],
    ids=["scxml", "state"],
)
def test_empty_initial_is_rejected(head: str, lines: tuple[str, ...]) -> None:
    err = load_error(doc(*lines, head=head))
    assert err.line == (1 if "initial" in head else 2)


def test_initial_naming_a_missing_state_is_rejected() -> None:
    err = load_error(doc('<state id="a" initial="ghost">', '  <state id="a1"/>', "</state>"))
    assert err.line == 2
    assert "ghost" in err.message


# ---------------------------------------------------------------- required attributes and placement


@pytest.mark.parametrize(
    ("lines", "element", "attribute"),
    [
        (('<state id="a"><onentry>', "<raise/>", "</onentry></state>"), "raise", "event"),
        (("<datamodel>", '<data expr="1"/>', '</datamodel><state id="a"/>'), "data", "id"),
        (
            ('<state id="a"><onentry><send event="e">', '<param expr="1"/>', "</send></onentry></state>"),
            "param",
            "name",
        ),
        (('<state id="a"><onentry>', '<assign expr="1"/>', "</onentry></state>"), "assign", "location"),
        (('<state id="a"><onentry>', '<if><log expr="1"/></if>', "</onentry></state>"), "if", "cond"),
        (('<state id="a"><onentry>', '<foreach item="x"/>', "</onentry></state>"), "foreach", "array"),
    ],
)
def test_missing_required_attribute(lines: tuple[str, ...], element: str, attribute: str) -> None:
    err = load_error(doc(*lines))
    assert (err.line, err.element) == (3, element)
    assert f"'{attribute}'" in err.message


@pytest.mark.parametrize(
    ("lines", "element"),
    [
        (('<state id="a"><onentry>', '<transition target="a"/>', "</onentry></state>"), "transition"),
        (('<state id="a">', '<data id="x" expr="1"/>', "</state>"), "data"),
        (('<state id="a"><onentry>', '<data id="x" expr="1"/>', "</onentry></state>"), "data"),
        (('<state id="a">', '<log expr="1"/>', "</state>"), "log"),
        (('<final id="f">', '<state id="inner"/>', "</final>"), "state"),
        (('<state id="a"><onentry>', "<frobnicate/>", "</onentry></state>"), "frobnicate"),
    ],
)
def test_misplaced_element(lines: tuple[str, ...], element: str) -> None:
    err = load_error(doc(*lines))
    assert (err.line, err.element) == (3, element)


def test_elements_of_other_namespaces_are_ignored() -> None:
    document = load(doc('<state id="a" xmlns:x="urn:example"><onentry>', "<x:frobnicate/>", "</onentry></state>"))
    assert document.state_ids == ["a"]


def test_unknown_datamodel_is_rejected() -> None:
    err = load_error(doc('<state id="a"/>', head=f'<scxml {NS} version="1.0" datamodel="xpath">'))
    assert err.line == 1
    assert "xpath" in err.message


def test_invalid_delay_is_rejected_at_load() -> None:
    err = load_error(doc('<state id="a"><onentry>', '<send event="e" delay="soon"/>', "</onentry></state>"))
    assert (err.line, err.element) == (3, "send")


def test_errors_inside_inline_invoke_content_point_into_the_outer_document() -> None:
    err = load_error(
        doc(
            '<state id="a"><invoke><content>',
            '<scxml version="1.0">',
            '<state id="c">',
            '<transition target="zz"/>',
            "</state></scxml></content></invoke></state>",
        )
    )
    assert (err.line, err.element) == (5, "transition")


# ---------------------------------------------------------------- expressions


BAD_EXPRESSION = doc(
    '<state id="a"><onentry>',
    '<log expr="1 +"/>',
    "</onentry>",
    '<transition event="error.execution" target="caught"/></state>',
    '<final id="caught"/>',
)


def test_invalid_expression_is_rejected_at_load_by_default() -> None:
    err = load_error(BAD_EXPRESSION)
    assert (err.line, err.element) == (3, "log")
    assert "1 +" in err.message


@pytest.mark.parametrize(
    ("line", "element"),
    [
        ('<transition cond="a ==== b" target="a"/>', "transition"),
        ('<onentry><assign location="1+" expr="1"/></onentry>', "assign"),
        ("<onentry><script>var = ;</script></onentry>", "script"),
        ("<onentry><send eventexpr=\"'e' +\"/></onentry>", "send"),
    ],
)
def test_invalid_expressions_of_every_kind_are_rejected(line: str, element: str) -> None:
    err = load_error(doc('<state id="a">', line, "</state>"))
    assert (err.line, err.element) == (3, element)


def test_invalid_foreach_item_is_named_in_the_error() -> None:
    err = load_error(doc('<state id="a"><onentry>', '<foreach array="[1, 2]" item="1x"/>', "</onentry></state>"))
    assert err.line == 3
    assert "'1x'" in err.message


def test_invalid_expression_with_checks_off_loads_and_raises_error_execution() -> None:
    document = load(BAD_EXPRESSION, check_expressions=False)
    session = Session(document, clock=VirtualClock())
    session.start()
    assert session.final == "caught"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '<state id="a"><transition cond="1 + 1 == 2" target="a"/></state>',
            "the null datamodel only allows In('state') conditions, not '1 + 1 == 2'",
        ),
        (
            '<state id="a"><onentry><log expr="1 + 2"/></onentry></state>',
            "the null datamodel only allows quoted string values, not '1 + 2'",
        ),
        (
            '<state id="a"><onentry><script>var x;</script></onentry></state>',
            "the null datamodel has no script expressions",
        ),
        ('<datamodel><data id="x"/></datamodel><state id="a"/>', "the null datamodel has no <data>"),
    ],
)
@pytest.mark.parametrize("check_expressions", [True, False])
def test_the_null_datamodel_refuses_what_it_cannot_run_even_with_checks_off(
    line: str, message: str, check_expressions: bool
) -> None:
    # Deferring only helps a datamodel that could run the text: the null one never can.
    err = load_error(
        doc(line, head=f'<scxml {NS} version="1.0" datamodel="null">'), check_expressions=check_expressions
    )
    assert (err.line, err.message) == (2, message)


def test_a_bad_data_id_is_refused_even_with_checks_off() -> None:
    # Data ids are declared when the session starts, before any expression could fail instead.
    err = load_error(doc('<datamodel><data id="a-b"/></datamodel><state id="s"/>'), check_expressions=False)
    assert err.message.startswith("data id 'a-b' is not a valid ECMAScript variable name")


# ---------------------------------------------------------------- src resources


def test_missing_script_src_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "doc.scxml"
    path.write_text(doc('<script src="missing.js"/>', '<state id="a"/>'))
    err = load_error(path)
    assert (err.file, err.line, err.element) == (str(path), 2, "script")
    assert "missing.js" in err.message


def test_missing_data_src_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "doc.scxml"
    path.write_text(doc("<datamodel>", '<data id="d" src="missing.json"/>', '</datamodel><state id="a"/>'))
    err = load_error(path)
    assert (err.file, err.line, err.element) == (str(path), 3, "data")


def test_script_src_with_invalid_code_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "bad.js").write_text("function (")
    path = tmp_path / "doc.scxml"
    path.write_text(doc('<script src="bad.js"/>', '<state id="a"/>'))
    err = load_error(path)
    assert (err.line, err.element) == (2, "script")


# ---------------------------------------------------------------- hardened parsing


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE scxml [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">
  <datamodel><data id="d">&lol9;</data></datamodel>
  <state id="a"/>
</scxml>
"""


def test_billion_laughs_is_rejected() -> None:
    err = load_error(BILLION_LAUGHS)
    assert "lollol" not in str(err)


def secret_file(tmp_path: Path) -> tuple[Path, str]:
    secret = "TOP-SECRET-7f3a9c"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    return path, secret


@pytest.mark.parametrize(
    "use",
    [
        '<datamodel><data id="d">&x;</data></datamodel><state id="a"/>',
        '<state id="a"><onentry><log expr="\'&x;\'"/></onentry></state>',
    ],
)
def test_external_entity_is_rejected_without_reading_the_file(tmp_path: Path, use: str) -> None:
    path, secret = secret_file(tmp_path)
    text = (
        f'<?xml version="1.0"?>\n<!DOCTYPE scxml [<!ENTITY x SYSTEM "file://{path}">]>\n'
        f'<scxml {NS} version="1.0">{use}</scxml>'
    )
    err = load_error(text)
    assert secret not in str(err)


def test_system_file_entity_is_rejected() -> None:
    text = (
        '<?xml version="1.0"?>\n<!DOCTYPE scxml [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        f'<scxml {NS} version="1.0"><datamodel><data id="d">&x;</data></datamodel><state id="a"/></scxml>'
    )
    err = load_error(text)
    assert "root:" not in str(err)


def test_parameter_entity_is_rejected(tmp_path: Path) -> None:
    path, secret = secret_file(tmp_path)
    text = (
        f'<?xml version="1.0"?>\n<!DOCTYPE scxml [<!ENTITY % p SYSTEM "file://{path}"> %p;]>\n'
        f'<scxml {NS} version="1.0"><state id="a"/></scxml>'
    )
    err = load_error(text)
    assert secret not in str(err)


def test_any_doctype_is_rejected() -> None:
    err = load_error(f'<?xml version="1.0"?>\n<!DOCTYPE scxml>\n<scxml {NS} version="1.0"><state id="a"/></scxml>')
    assert "DOCTYPE" in err.message


def test_doctype_error_names_the_doctype_line() -> None:
    err = load_error(f'<?xml version="1.0"?>\n<!DOCTYPE scxml>\n<scxml {NS} version="1.0"><state id="a"/></scxml>')
    assert err.line == 2


def test_undefined_entity_is_malformed() -> None:
    err = load_error(doc('<state id="a"><onentry><log expr="\'&x;\'"/></onentry></state>'))
    assert err.message.startswith("malformed XML")
    assert err.line == 2


# ---------------------------------------------------------------- strings and paths


GOOD = doc('<state id="a"/>')


def test_text_argument_is_parsed_as_a_document() -> None:
    document = load(GOOD)
    assert document.path is None
    assert document.state_ids == ["a"]


def test_text_with_leading_whitespace_is_still_text() -> None:
    document = load("\n  " + GOOD)
    assert document.path is None
    assert document.state_ids == ["a"]


def test_text_with_xml_declaration() -> None:
    document = load('<?xml version="1.0" encoding="UTF-8"?>\n' + GOOD)
    assert document.state_ids == ["a"]


def test_xml_declaration_must_come_first() -> None:
    err = load_error('\n<?xml version="1.0" encoding="UTF-8"?>' + GOOD)
    assert err.message.startswith("malformed XML")
    assert err.line == 2


def test_non_ascii_text_loads() -> None:
    document = load(doc('<state id="café"/>'))
    assert document.state_ids == ["café"]


@pytest.mark.parametrize("kind", [str, Path])
def test_path_argument_reads_the_file(tmp_path: Path, kind: type) -> None:
    path = tmp_path / "doc.scxml"
    path.write_text(GOOD)
    document = load(kind(path))
    assert document.path == str(path)
    assert document.state_ids == ["a"]


def test_missing_file_is_a_document_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.scxml"
    err = load_error(str(path))
    assert err.file == str(path)
    assert err.line is None


def test_error_in_a_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "strategy.scxml"
    path.write_text(doc('<state id="a">', '  <transition event="e" target="nowhere"/>', "</state>"))
    err = load_error(path)
    assert (err.file, err.line) == (str(path), 3)
    assert str(err).startswith(f"{path}:3:")
    assert "nowhere" in str(err)


def test_malformed_file_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.scxml"
    path.write_text(doc('<state id="a">', "</stat>"))
    err = load_error(path)
    assert str(err).startswith(f"{path}:3:8:")


def test_error_from_text_is_labelled_string() -> None:
    err = load_error(doc('<state id="a"><transition target="nowhere"/></state>'))
    assert str(err).startswith("<string>:2:")


def test_document_error_is_an_orsguard_error() -> None:
    err = load_error(doc('<state id="a"><transition target="nowhere"/></state>'))
    assert isinstance(err, orsguard.OrsguardError)


def test_a_data_id_that_is_no_ecmascript_name_is_rejected_at_load() -> None:
    with pytest.raises(DocumentError, match="'a-b' is not a valid ECMAScript variable name") as info:
        load(
            '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n'
            '<datamodel><data id="a-b"/></datamodel><state id="s"/></scxml>'
        )
    assert info.value.line == 2
