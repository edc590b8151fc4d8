"""Every output format, checked for the properties its consumers rely on."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

import pytest

from trainlint.findings import Applicability, Edit, Finding, Fix, Related, Severity, Span
from trainlint.report import FORMATS, FileError, Report, RuleInfo, render
from trainlint.report.full import caret_range

TRAIN = "train.py"
EVAL = os.path.join("pkg", "eval.py")

TRAIN_SRC = (
    "import torch\n"  # 1
    "model = Net()\n"  # 2
    "for batch in loader:\n"  # 3
    "\tloss = crit(model(batch), y)\n"  # 4  (tab-indented)
    "    opt.step()\n"  # 5
    "x = foo(\n"  # 6
    "    1,\n"  # 7
    ")\n"  # 8
)
EVAL_SRC = "model.eval()\nout = model(x)\nprint(out)\n"

TAB_LINE = "\tloss = crit(model(batch), y)"
CRIT_COL = TAB_LINE.index("crit") + 1  # 1-based
CRIT_END = TAB_LINE.index(", y)") + 5  # 1-based, exclusive: just after ")"
WEIRD_MESSAGE = "100% sure: a, b\nsecond line"


def _rules() -> Dict[str, RuleInfo]:
    def info(code: str, name: str, sev: str) -> RuleInfo:
        return RuleInfo(
            code=code,
            name=name,
            severity=sev,
            summary=f"{name} summary",
            doc=f"# {code} {name}\n\nWhy {name} hurts training.\n\n## Example\n\n```python\nx = 1\n```\n",
            url=f"https://example.invalid/rules/{code}.md",
        )

    # Insertion order differs from code order on purpose (SARIF sorts by code).
    return {
        "TL101": info("TL101", "eval-without-no-grad", "info"),
        "TL010": info("TL010", "loss-on-wrong-device", "error"),
        "TL002": info("TL002", "multi-line-thing", "warning"),
        "TL050": info("TL050", "unused-rule", "warning"),
    }


def _findings() -> List[Finding]:
    f_tab = Finding(
        code="TL010",
        name="loss-on-wrong-device",
        severity=Severity.ERROR,
        message="loss computed on the wrong device",
        path=TRAIN,
        span=Span(4, CRIT_COL, 4, CRIT_END),
        hint="move `y` to the model's device",
        fix=Fix(
            message="call .to(device)",
            edits=(Edit(Span(4, CRIT_END - 2, 4, CRIT_END - 1), "y.to(device)"),),
            applicability=Applicability.SAFE,
        ),
    )
    f_multi = Finding(
        code="TL002",
        name="multi-line-thing",
        severity=Severity.WARNING,
        message=WEIRD_MESSAGE,
        path=TRAIN,
        span=Span(6, 5, 8, 2),
        related=[
            Related(TRAIN, Span(2, 1, 2, 6), "model defined here"),
            Related(EVAL, Span(1, 1, 1, 13), "evaluated here"),
        ],
    )
    f_eval = Finding(
        code="TL101",
        name="eval-without-no-grad",
        severity=Severity.INFO,
        message="inference outside torch.no_grad()",
        path=EVAL,
        span=Span(2, 7, 2, 15),
        hint="wrap in `with torch.no_grad():`",
    )
    return sorted([f_tab, f_multi, f_eval], key=Finding.sort_key)


def make_report(**kw) -> Report:
    base = dict(
        findings=_findings(),
        files_checked=3,
        rules=_rules(),
        sources={TRAIN: TRAIN_SRC, EVAL: EVAL_SRC},
        version="0.1.0",
        root="/tmp/project",
    )
    base.update(kw)
    return Report(**base)


def empty_report() -> Report:
    return Report(findings=[], files_checked=4, rules=_rules(), version="0.1.0")


def error_report() -> Report:
    return Report(
        findings=[],
        files_checked=2,
        rules=_rules(),
        errors=[FileError(os.path.join("pkg", "broken.py"), "cannot decode: invalid utf-8 at byte 3")],
        version="0.1.0",
    )


def run(report: Report, fmt: str, color: bool = False) -> str:
    buf = io.StringIO()
    render(report, fmt, buf, color=color)
    return buf.getvalue()


ALL_FORMATS = ["full", "concise", "json", "json-lines", "sarif", "github", "gitlab", "junit", "grouped", "pylint", "rdjson", "azure"]


# --- registry ---------------------------------------------------------------------------


def test_all_formats_registered():
    assert set(ALL_FORMATS) <= set(FORMATS)
    assert list(FORMATS)[0] == "full"
    assert FORMATS["full"].for_humans and FORMATS["concise"].for_humans
    for name in ["json", "json-lines", "sarif", "github", "gitlab", "junit"]:
        assert not FORMATS[name].for_humans
    for fmt in FORMATS.values():
        assert fmt.description


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown output format"):
        run(make_report(), "nope")


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("factory", [empty_report, error_report, make_report])
def test_every_format_renders_without_color_codes(fmt, factory):
    out = run(factory(), fmt)
    assert "\x1b" not in out
    assert out == "" or out.endswith("\n")


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_statistics_and_no_source_do_not_break(fmt):
    run(make_report(statistics=True, show_source=False, sources={}, root=None), fmt)


# --- full -------------------------------------------------------------------------------


def _block_lines(out: str, header_prefix: str) -> List[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_prefix))
    block = []
    for line in lines[start:]:
        if line == "":
            break
        block.append(line)
    return block


def _caret_under(block: List[str], source_row_prefix: str):
    i = next(i for i, line in enumerate(block) if line.lstrip().startswith(source_row_prefix))
    row, carets = block[i], block[i + 1]
    m = re.search(r"\^+", carets)
    assert m, carets
    return row, m.start(), m.end()


def test_full_header_and_tab_caret_alignment():
    out = run(make_report(), "full")
    block = _block_lines(out, f"{TRAIN}:4:{CRIT_COL}: TL010 [error] loss computed on the wrong device")
    row, start, end = _caret_under(block, "4 |")
    assert "\t" not in row
    assert row[start:end] == "crit(model(batch), y)"
    # one line of context before and after
    assert any(line.lstrip().startswith("3 | for batch in loader:") for line in block)
    assert any(line.lstrip().startswith("5 |     opt.step()") for line in block)
    assert any(line.strip() == "= help: move `y` to the model's device" for line in block)
    assert any(line.strip() == "= fix available: call .to(device)" for line in block)


def test_full_multiline_span_underlines_to_end_of_first_line():
    out = run(make_report(), "full")
    block = _block_lines(out, f"{TRAIN}:6:5: TL002 [warning] 100% sure")
    row, start, end = _caret_under(block, "6 |")
    assert row[start:end] == "foo("
    notes = [line.strip() for line in block if "= note:" in line]
    assert notes == [
        f"= note: {TRAIN}:2:1: model defined here",
        f"= note: {EVAL}:1:1: evaluated here",
    ]


def test_full_summary_and_no_source():
    out = run(make_report(), "full")
    assert out.rstrip().splitlines()[-2] == "Found 3 findings (1 error, 1 warning, 1 info) in 2 files."
    assert out.rstrip().endswith("[*] 1 fixable with the `--fix` option.")
    no_src = run(make_report(show_source=False), "full")
    assert "^" not in no_src and " | " not in no_src
    assert f"{EVAL}:2:7: TL101 [info] inference outside torch.no_grad()" in no_src
    assert "= help: wrap in `with torch.no_grad():`" in no_src


def test_full_empty_and_errors():
    assert run(empty_report(), "full").strip() == "All checks passed!"
    out = run(error_report(), "full")
    assert f"{os.path.join('pkg', 'broken.py')}: error: cannot decode: invalid utf-8 at byte 3" in out
    assert "All checks passed!" not in out
    assert "1 file could not be checked." in out


def test_full_statistics_table():
    findings = _findings()
    info = next(f for f in findings if f.code == "TL101")
    extra = dataclasses.replace(info, span=Span(3, 1, 3, 4))
    report = make_report(findings=sorted(findings + [extra], key=Finding.sort_key), statistics=True)
    out = run(report, "full")
    table = [line for line in out.splitlines() if re.match(r"^\s*\d+\s{2}TL\d{3}\s{2}\S", line)]
    assert [line.split() for line in table] == [
        ["2", "TL101", "eval-without-no-grad"],
        ["1", "TL002", "multi-line-thing"],
        ["1", "TL010", "loss-on-wrong-device"],
    ]
    assert "^" not in out  # no per-finding blocks
    assert "Found 4 findings" in out


def test_full_color():
    out = run(make_report(), "full", color=True)
    assert re.search(r"\x1b\[1m" + re.escape(TRAIN) + r":\d+:\d+\x1b\[0m", out)  # bold location
    assert "\x1b[31m[error]\x1b[0m" in out
    assert "\x1b[33m[warning]\x1b[0m" in out
    assert "\x1b[34m[info]\x1b[0m" in out
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert plain == run(make_report(), "full")


def test_caret_range_tabs_and_wide_chars():
    assert caret_range("\tab", 2, 4) == (4, 2)
    assert caret_range("a\tb", 3, 4) == (4, 1)
    assert caret_range("x = '数据' + y", 5, 9) == (4, 6)  # quotes + two wide characters
    assert caret_range("abc", 10, 11) == (9, 1)  # past the end of the line: still one caret
    assert caret_range("abc", 2, None) == (1, 2)


# --- concise ------------------------------------------------------------------------------

CONCISE_RE = re.compile(r"^[^:]+:\d+:\d+: TL\d{3} .+$")


def test_concise_lines():
    out = run(make_report(), "concise")
    lines = out.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert CONCISE_RE.match(line), line
    assert lines[0] == f"{EVAL}:2:7: TL101 inference outside torch.no_grad()"
    assert lines[2] == f"{TRAIN}:6:5: TL002 100% sure: a, b second line"


def test_concise_empty_and_errors():
    assert run(empty_report(), "concise") == ""
    out = run(error_report(), "concise")
    assert out == f"{os.path.join('pkg', 'broken.py')}: error: cannot decode: invalid utf-8 at byte 3\n"
    assert not CONCISE_RE.match(out.strip())


# --- json / json-lines --------------------------------------------------------------------

JSON_KEYS = {
    "code", "name", "severity", "message", "path", "line", "column",
    "end_line", "end_column", "hint", "fix", "related", "url",
}  # fmt: skip


def test_json():
    out = run(make_report(), "json")
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 3
    for item in data:
        assert JSON_KEYS <= set(item)
    by_code = {d["code"]: d for d in data}
    assert by_code["TL010"]["fix"]["edits"][0]["content"] == "y.to(device)"
    assert by_code["TL002"]["message"] == WEIRD_MESSAGE
    assert len(by_code["TL002"]["related"]) == 2
    assert by_code["TL101"]["severity"] == "info"
    assert out.startswith("[\n  {")  # indent=2


def test_json_empty_and_errors():
    assert json.loads(run(empty_report(), "json")) == []
    assert json.loads(run(error_report(), "json")) == []


def test_json_lines():
    out = run(make_report(), "json-lines")
    lines = out.splitlines()
    assert len(lines) == 3
    objs = [json.loads(line) for line in lines]
    assert [o["code"] for o in objs] == [f.code for f in make_report().findings]
    for o in objs:
        assert JSON_KEYS <= set(o)
    assert run(empty_report(), "json-lines") == ""


# --- sarif --------------------------------------------------------------------------------


def _sarif_schema():
    local = Path(__file__).resolve().parent / "data" / "sarif-schema-2.1.0.json"
    shared = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "sarif-schema-2.1.0.json"
    path = local if local.exists() else shared
    if not path.exists():
        pytest.skip("SARIF schema not available")
    return json.loads(path.read_text(encoding="utf-8"))


def _validate_sarif(log):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(_sarif_schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("factory", [make_report, empty_report, error_report])
def test_sarif_validates(factory):
    log = json.loads(run(factory(), "sarif"))
    _validate_sarif(log)
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    assert len(log["runs"]) == 1


def test_sarif_rules_and_results():
    log = json.loads(run(make_report(), "sarif"))
    run_ = log["runs"][0]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "trainlint" and driver["version"] == "0.1.0" and driver["informationUri"]
    rules = driver["rules"]
    assert [r["id"] for r in rules] == ["TL002", "TL010", "TL050", "TL101"]
    r010 = rules[1]
    assert r010["name"] == "loss-on-wrong-device"
    assert r010["shortDescription"]["text"] == "loss-on-wrong-device summary"
    assert r010["fullDescription"]["text"] == "Why loss-on-wrong-device hurts training."
    assert r010["help"]["markdown"].startswith("# TL010")
    assert r010["helpUri"] == "https://example.invalid/rules/TL010.md"
    assert r010["defaultConfiguration"]["level"] == "error"
    assert rules[3]["defaultConfiguration"]["level"] == "note"
    assert "trainlint" in r010["properties"]["tags"]

    results = run_["results"]
    assert len(results) == 3
    for res in results:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    by_id = {r["ruleId"]: r for r in results}
    assert by_id["TL010"]["level"] == "error"
    assert by_id["TL002"]["level"] == "warning"
    assert by_id["TL101"]["level"] == "note"
    assert by_id["TL002"]["message"]["text"] == WEIRD_MESSAGE
    assert "move `y`" in by_id["TL010"]["message"]["text"]

    loc = by_id["TL101"]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "pkg/eval.py", "uriBaseId": "%SRCROOT%"}
    assert loc["region"] == {"startLine": 2, "startColumn": 7, "endLine": 2, "endColumn": 15}
    assert run_["originalUriBaseIds"]["%SRCROOT%"]["uri"] == "file:///tmp/project/"

    related = by_id["TL002"]["relatedLocations"]
    assert [r["message"]["text"] for r in related] == ["model defined here", "evaluated here"]
    assert len({r["id"] for r in related}) == 2
    assert related[1]["physicalLocation"]["artifactLocation"]["uri"] == "pkg/eval.py"

    (fix,) = by_id["TL010"]["fixes"]
    assert fix["description"]["text"] == "call .to(device)"
    (change,) = fix["artifactChanges"]
    assert change["artifactLocation"]["uri"] == "train.py"
    (rep,) = change["replacements"]
    assert rep["insertedContent"]["text"] == "y.to(device)"
    assert rep["deletedRegion"]["startLine"] == 4
    assert "fixes" not in by_id["TL101"]


def test_sarif_uris_and_unknown_rule():
    f = dataclasses.replace(_findings()[0], path=os.path.join("my dir", "a b#1.py"), code="TL999", name="runtime-only")
    g = dataclasses.replace(_findings()[0], path=os.path.abspath(os.path.join("abs dir", "x.py")))
    report = make_report(findings=[f, g], root=None)
    log = json.loads(run(report, "sarif"))
    _validate_sarif(log)
    run_ = log["runs"][0]
    assert "originalUriBaseIds" not in run_
    res0, res1 = run_["results"]
    assert res0["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "my%20dir/a%20b%231.py",
        "uriBaseId": "%SRCROOT%",
    }
    uri1 = res1["locations"][0]["physicalLocation"]["artifactLocation"]
    assert "uriBaseId" not in uri1 and uri1["uri"].startswith("file:///") and uri1["uri"].endswith("/abs%20dir/x.py")
    rules = run_["tool"]["driver"]["rules"]
    assert rules[res0["ruleIndex"]]["id"] == "TL999"


def _shifted(report: Report, by: int) -> Report:
    sources = {p: "\n" * by + s for p, s in report.sources.items()}

    def move(span: Span) -> Span:
        return Span(span.line + by, span.column, span.end_line + by, span.end_column)

    findings = [dataclasses.replace(f, span=move(f.span)) for f in report.findings]
    return dataclasses.replace(report, findings=findings, sources=sources)


def _sarif_prints(report: Report) -> List[Dict[str, str]]:
    return [r["partialFingerprints"] for r in json.loads(run(report, "sarif"))["runs"][0]["results"]]


def test_sarif_fingerprints_survive_line_shifts():
    report = make_report()
    prints = _sarif_prints(report)
    assert len({json.dumps(p, sort_keys=True) for p in prints}) == 3
    assert _sarif_prints(_shifted(report, 5)) == prints
    changed = dataclasses.replace(report, sources={**report.sources, TRAIN: TRAIN_SRC.replace("crit(", "crit2(")})
    assert _sarif_prints(changed)[1] != prints[1]


def test_sarif_file_errors_are_notifications():
    log = json.loads(run(error_report(), "sarif"))
    (inv,) = log["runs"][0]["invocations"]
    assert inv["executionSuccessful"] is False  # a file could not be checked
    (note,) = inv["toolExecutionNotifications"]
    assert note["level"] == "error"
    assert note["message"]["text"] == "cannot decode: invalid utf-8 at byte 3"
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "pkg/broken.py"
    assert log["runs"][0]["results"] == []


# --- github -------------------------------------------------------------------------------

PROP_VALUE = r"[^,:\r\n]*"
GITHUB_RE = re.compile(
    r"^::(error|warning|notice) "
    rf"file=({PROP_VALUE}),line=(\d+)(?:,col=(\d+))?,endLine=(\d+)(?:,endColumn=(\d+))?,title=({PROP_VALUE})"
    r"::([^\r\n]*)$"
)


def unescape(text: str) -> str:
    for enc, raw in [("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")]:
        text = text.replace(enc, raw)
    return text


def test_github_lines_and_escaping():
    report = make_report()
    out = run(report, "github")
    lines = out.splitlines()
    assert len(lines) == 3
    expected = {"error": "error", "warning": "warning", "info": "notice"}
    for line, f in zip(lines, report.findings):
        m = GITHUB_RE.match(line)
        assert m, line
        cmd, path, ln, col, end_ln, end_col, title, msg = m.groups()
        assert cmd == expected[f.severity.label]
        assert unescape(path) == f.path
        if f.span.end_line == f.span.line:
            assert (int(ln), int(col), int(end_ln), int(end_col)) == (
                f.span.line, f.span.column, f.span.end_line, f.span.end_column,
            )  # fmt: skip
        else:  # a multi-line span: lines only (GitHub drops columns there)
            assert (int(ln), col, int(end_ln), end_col) == (f.span.line, None, f.span.end_line, None)
        assert unescape(title) == f"{f.code} ({f.name})"
        assert unescape(msg).split("\nhelp: ")[0] == f.message
    weird = lines[2]
    assert "100%25 sure: a, b%0Asecond line" in weird  # data: % and newline escaped, : and , kept


def test_github_property_escaping_round_trips():
    from trainlint.report.github import escape_data, escape_property

    raw = "we,ird:pa%th\r\nx"
    assert escape_property(raw) == "we%2Cird%3Apa%25th%0D%0Ax"
    assert unescape(escape_property(raw)) == raw
    assert escape_data(raw) == "we,ird:pa%25th%0D%0Ax"
    assert unescape(escape_data("a%3A")) == "a%3A"  # '%' escaped first, so literal '%3A' survives

    f = dataclasses.replace(_findings()[0], path="we,ird:name.py")
    line = run(make_report(findings=[f]), "github").strip()
    m = GITHUB_RE.match(line)
    assert m and unescape(m.group(2)) == "we,ird:name.py"


def test_github_file_errors():
    out = run(error_report(), "github")
    assert out == f"::error file={os.path.join('pkg', 'broken.py')}::cannot decode: invalid utf-8 at byte 3\n"
    assert run(empty_report(), "github") == ""


# --- gitlab -------------------------------------------------------------------------------

GITLAB_SEVERITIES = {"info", "minor", "major", "critical", "blocker"}


def test_gitlab_report():
    report = make_report()
    # a duplicate of the first finding (same code, path and line text) needs its own fingerprint
    dup = dataclasses.replace(report.findings[0])
    report = dataclasses.replace(report, findings=report.findings + [dup])
    data = json.loads(run(report, "gitlab"))
    assert len(data) == 4
    assert len({d["fingerprint"] for d in data}) == 4
    for d in data:
        assert re.fullmatch(r"[0-9a-f]{32}", d["fingerprint"])
        assert d["severity"] in GITLAB_SEVERITIES
        assert d["categories"] == ["Bug Risk"]
        assert d["description"].startswith(d["check_name"] + " ")
        assert d["location"]["path"] and "\\" not in d["location"]["path"]
        assert d["location"]["positions"]["begin"]["line"] >= 1
    by_code = {d["check_name"]: d for d in data}
    assert by_code["TL010"]["severity"] == "critical"
    assert by_code["TL002"]["severity"] == "major"
    assert by_code["TL101"]["severity"] == "info"
    assert by_code["TL101"]["location"]["path"] == "pkg/eval.py"
    assert by_code["TL101"]["content"]["body"] == "wrap in `with torch.no_grad():`"
    assert by_code["TL002"]["location"]["positions"] == {
        "begin": {"line": 6, "column": 5},
        "end": {"line": 8, "column": 2},
    }


def test_gitlab_fingerprints_stable():
    report = make_report()
    first = [d["fingerprint"] for d in json.loads(run(report, "gitlab"))]
    assert [d["fingerprint"] for d in json.loads(run(_shifted(report, 3), "gitlab"))] == first
    assert json.loads(run(empty_report(), "gitlab")) == []
    assert json.loads(run(error_report(), "gitlab")) == []


# --- junit --------------------------------------------------------------------------------


def _junit(report: Report) -> ET.Element:
    out = run(report, "junit")
    assert out.startswith("<?xml")
    return ET.fromstring(out.encode("utf-8"))


def test_junit_counts():
    root = _junit(make_report())
    assert root.tag == "testsuites" and root.get("name") == "trainlint"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "3", "0")
    suites = root.findall("testsuite")
    assert sorted(s.get("name") for s in suites) == sorted([TRAIN, EVAL])
    for suite in suites:
        cases = suite.findall("testcase")
        assert suite.get("tests") == str(len(cases))
        assert suite.get("failures") == str(sum(1 for c in cases if c.find("failure") is not None))
        for case in cases:
            assert case.get("classname") == suite.get("name")
    train = next(s for s in suites if s.get("name") == TRAIN)
    case = next(c for c in train.findall("testcase") if c.get("name") == "TL010 at line 4")
    failure = case.find("failure")
    assert failure.get("type") == "TL010"
    assert failure.get("message") == "loss computed on the wrong device"
    assert failure.text == (
        f"{TRAIN}:4:{CRIT_COL}: TL010 loss computed on the wrong device\nmove `y` to the model's device"
    )
    weird = next(c for c in train.findall("testcase") if c.get("name") == "TL002 at line 6")
    assert weird.find("failure").get("message") == WEIRD_MESSAGE  # newline survives in the attribute


def test_junit_empty_is_green():
    root = _junit(empty_report())
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")
    (suite,) = root.findall("testsuite")
    (case,) = suite.findall("testcase")
    assert case.get("name") == "trainlint" and list(case) == []


def test_junit_file_errors():
    root = _junit(error_report())
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    error = root.find("testsuite/testcase/error")
    assert error is not None and error.get("message") == "cannot decode: invalid utf-8 at byte 3"


def test_junit_survives_control_and_non_ascii_characters():
    f = dataclasses.replace(_findings()[0], message="bad \x00\x1b char & <tag> \u00e9\u6570")
    root = _junit(make_report(findings=[f]))
    msg = root.find("testsuite/testcase/failure").get("message")
    assert msg == "bad \ufffd\ufffd char & <tag> \u00e9\u6570"


# --- grouped, pylint, rdjson, azure (ruff's other formats) ---------------------------------------


def test_grouped_groups_by_file():
    out = run(make_report(), "grouped")
    lines = out.splitlines()
    assert lines[0] == f"{EVAL}:" and lines[1].split()[:2] == ["2:7", "TL101"]
    i = lines.index(f"{TRAIN}:")
    assert lines[i + 1].split()[:3] == ["4:" + str(CRIT_COL), "TL010", "[*]"]  # a safe fix
    assert lines[i + 2].lstrip().startswith("6:5") and "second line" in lines[i + 2]  # one line per finding
    assert lines[-1].startswith("[*] 1 fixable") or "Found 3 findings" in out
    assert FORMATS["grouped"].for_humans


def test_pylint_lines():
    lines = run(make_report(), "pylint").splitlines()
    assert lines[0] == f"{EVAL}:2: [TL101] inference outside torch.no_grad()"
    assert all(re.match(r"^[^:]+:\d+: \[TL\d{3}\] [^\n]+$", l) for l in lines) and len(lines) == 3


RDJSON_SCHEMA = {  # reviewdog's rdjson (proto/rdf/reviewdog.proto), the fields trainlint writes
    "type": "object",
    "required": ["source", "diagnostics"],
    "properties": {
        "source": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "url": {"type": "string"}}},
        "diagnostics": {"type": "array", "items": {
            "type": "object", "required": ["message", "location", "severity"], "additionalProperties": False,
            "properties": {
                "message": {"type": "string"},
                "location": {"type": "object", "required": ["path"], "additionalProperties": False, "properties": {
                    "path": {"type": "string"}, "range": {"$ref": "#/$defs/range"}}},
                "severity": {"enum": ["UNKNOWN_SEVERITY", "ERROR", "WARNING", "INFO"]},
                "code": {"type": "object", "properties": {"value": {"type": "string"}, "url": {"type": "string"}}},
                "suggestions": {"type": "array", "items": {"type": "object", "required": ["range", "text"],
                                                           "properties": {"range": {"$ref": "#/$defs/range"}, "text": {"type": "string"}}}},
            }}},
    },
    "$defs": {
        "pos": {"type": "object", "properties": {"line": {"type": "integer", "minimum": 1}, "column": {"type": "integer", "minimum": 1}}},
        "range": {"type": "object", "properties": {"start": {"$ref": "#/$defs/pos"}, "end": {"$ref": "#/$defs/pos"}}},
    },
}


def test_rdjson_validates_and_carries_fixes():
    import jsonschema

    data = json.loads(run(make_report(), "rdjson"))
    jsonschema.validate(data, RDJSON_SCHEMA)
    by_code = {d["code"]["value"]: d for d in data["diagnostics"]}
    assert by_code["TL010"]["severity"] == "ERROR" and by_code["TL101"]["severity"] == "INFO"
    assert by_code["TL010"]["suggestions"] == [{"range": {"start": {"line": 4, "column": CRIT_END - 2},
                                                          "end": {"line": 4, "column": CRIT_END - 1}}, "text": "y.to(device)"}]
    assert by_code["TL101"]["location"]["path"] == "pkg/eval.py"
    assert json.loads(run(empty_report(), "rdjson"))["diagnostics"] == []


def test_azure_logging_commands():
    lines = run(make_report(), "azure").splitlines()
    pat = re.compile(r"^##vso\[task\.logissue type=(error|warning);sourcepath=([^;]+);linenumber=(\d+);columnnumber=(\d+);code=(TL\d{3});\](.*)$")
    got = [pat.match(l) for l in lines]
    assert all(got) and len(got) == 3
    assert [m.group(5) for m in got] == [f.code for f in make_report().findings]
    assert {m.group(1) for m in got} == {"error", "warning"}  # info is a warning in Azure
    assert "%0A" in lines[2] and "\n" not in lines[2]
    assert run(error_report(), "azure").startswith("##vso[task.logissue type=error;sourcepath=pkg/broken.py;]cannot decode")


def test_ci_paths_are_relative_to_the_repository_root(tmp_path, monkeypatch):
    """github, sarif, gitlab, rdjson and azure name files from the git top-level, not the current folder;
    gitlab honours $CI_PROJECT_DIR."""
    from click.testing import CliRunner

    from trainlint.cli import main

    (tmp_path / ".git").mkdir()
    sub = tmp_path / "proj" / "src"
    sub.mkdir(parents=True)
    (sub / "train.py").write_text("import torch\nfor x, y in loader:\n    loss = torch.clamp(criterion(model(x), y), max=1.0)\n    loss.backward()\n")
    monkeypatch.chdir(sub)
    monkeypatch.delenv("CI_PROJECT_DIR", raising=False)

    def out(fmt):
        return CliRunner().invoke(main, ["check", "--isolated", "--select", "TL202", "--output-format", fmt, "train.py"]).output

    assert "file=proj/src/train.py," in out("github")
    sarif = json.loads(out("sarif"))["runs"][0]
    assert sarif["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "proj/src/train.py"
    assert sarif["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.as_uri() + "/"
    assert json.loads(out("gitlab"))[0]["location"]["path"] == "proj/src/train.py"
    assert json.loads(out("rdjson"))["diagnostics"][0]["location"]["path"] == "proj/src/train.py"
    assert "sourcepath=proj/src/train.py;" in out("azure")
    monkeypatch.setenv("CI_PROJECT_DIR", str(tmp_path / "proj"))
    assert json.loads(out("gitlab"))[0]["location"]["path"] == "src/train.py"


def test_sarif_unreadable_file_makes_the_run_unsuccessful(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from trainlint.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_bytes(b"x = '\xff\xfe'\n")
    (tmp_path / "ok.py").write_text("x = 1\n")
    r = CliRunner().invoke(main, ["check", "--isolated", "--output-format", "sarif", "."])
    assert r.exit_code == 2
    (inv,) = json.loads(r.stdout)["runs"][0]["invocations"]
    assert inv["executionSuccessful"] is False
    (note,) = inv["toolExecutionNotifications"]
    assert "bad.py" in json.dumps(note["locations"]) and note["level"] == "error"


def test_statistics_rows_and_records_share_one_order_and_one_count():
    # --statistics (full rows) and --statistics with json (records) tally the findings by code once
    # (report.full._by_code): most frequent first, ties by code, the worst severity of a code colours it,
    # a code is fixable when one of its findings has a fix --fix would apply
    from trainlint.report.full import statistics_lines, statistics_records

    base = _findings()  # TL002 (warning), TL010 (error, safe fix), TL101 (info)
    tl101 = [f for f in base if f.code == "TL101"][0]
    unsafe = dataclasses.replace(tl101, severity=Severity.ERROR, span=Span(3, 1, 3, 2), fix=Fix(
        message="m", edits=(Edit(Span(3, 1, 3, 2), "x"),), applicability=Applicability.UNSAFE))
    report = make_report(findings=base + [unsafe, dataclasses.replace(tl101, span=Span(1, 1, 1, 2))])
    assert [r["code"] for r in statistics_records(report)] == ["TL101", "TL002", "TL010"]
    assert [(r["count"], r["fixable"]) for r in statistics_records(report)] == [(3, False), (1, False), (1, True)]
    assert [r["fixable"] for r in statistics_records(dataclasses.replace(report, unsafe_fixes=True))] == [True, False, True]
    rows = statistics_lines(report, color=False)
    assert [r.split() for r in rows] == [["3", "TL101", "eval-without-no-grad"], ["1", "TL002", "multi-line-thing"],
                                         ["1", "TL010", "loss-on-wrong-device"]]
    assert "\x1b[1;31m" in statistics_lines(report, color=True)[0]  # TL101's worst finding is an error
    assert statistics_lines(empty_report(), color=False) == [] == statistics_records(empty_report())
