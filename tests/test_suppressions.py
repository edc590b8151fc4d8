"""Suppression comments: `# noqa`, `# trainlint: ignore[...]`, `skip-file`, `ignore-file[...]`, and TL002
(malformed and unused suppressions, with --report-unused-suppressions)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import List, Optional

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.rules import registry
from trainlint.suppressions import parse

KNOWN = list(registry())
CLAMP = "loss = torch.clamp(criterion(model(x), y), max=10.0)"

RULE_SET = ("TL001", "TL002", "TL202")  # see _fixed_rule_set


def train(line3_suffix: str = "", before: str = "", own_line: Optional[str] = None, after: str = "") -> str:
    """A training loop whose clamp line (line 3 + the lines in ``before``/``own_line``) is TL202."""
    lines = [before.rstrip("\n")] if before else []
    lines += ["import torch", "for x, y in loader:"]
    if own_line is not None:
        lines.append("    " + own_line)
    lines += [f"    {CLAMP}{line3_suffix}", "    loss.backward()"]
    if after:
        lines.append(after.rstrip("\n"))
    return "\n".join(lines) + "\n"


def _runner() -> CliRunner:
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


def lint(tmp_path: Path, text: str, *args: str, name: str = "t.py") -> tuple:
    """(exit code, [(line, code, message)]) of linting one file."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = _runner().invoke(main, ["--output-format", "concise", *args, str(path)], catch_exceptions=False)
    assert "Traceback" not in result.stdout + result.stderr
    out = []
    for line in result.stdout.splitlines():
        if ": TL" not in line:
            continue
        head, rest = line.split(": ", 1)
        _, ln, _col = head.rsplit(":", 2)
        code, message = rest.split(" ", 1)
        out.append((int(ln), code, message))
    return result.exit_code, out


def codes(findings) -> List[tuple]:
    return [(ln, code) for ln, code, _ in findings]


@pytest.fixture(autouse=True)
def _fixed_rule_set(monkeypatch):
    """Run against the engine diagnostics and TL202 only, so that the rules added to trainlint later do
    not change what these tests of the machinery see."""
    import trainlint.rules as rules

    full = rules.registry()
    monkeypatch.setattr(rules, "_REGISTRY", {c: full[c] for c in RULE_SET})


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("TRAINLINT_OUTPUT_FORMAT", "NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)


UNUSED = "--report-unused-suppressions"


# -- the baseline -----------------------------------------------------------------------------------


def test_unsuppressed(tmp_path):
    assert lint(tmp_path, train()) == (1, [(3, "TL202", lint(tmp_path, train())[1][0][2])])
    assert codes(lint(tmp_path, train())[1]) == [(3, "TL202")]


# -- forms that silence ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    [
        "  # noqa",
        "  # NOQA",
        "  #noqa",
        "  # noqa: TL202",
        "  # noqa:TL202",
        "  # noqa: tl202",
        "  # NOQA:TL202,E501",
        "  # noqa: E501, TL202",
        "  # noqa: E501 TL202",
        "  # trainlint: ignore[TL202]",
        "  # trainlint: ignore[tl202]",
        "  # trainlint:ignore[TL202]",
        "  # trainlint: ignore[TL202, TL202]",
        "  # noqa: TL202 the cap is intended",
        "  # trainlint: ignore",
        "  # trainlint: ignore[TL202]  # outliers are handled upstream",
        "  # type: ignore  # trainlint: ignore[TL202]",
        "  # noqa: E501  # trainlint: ignore[TL202]",
    ],
)
def test_suppressed_on_the_line(tmp_path, suffix):
    code, found = lint(tmp_path, train(suffix))
    assert found == [] and code == 0
    # and none of them is reported as unused or malformed
    code, found = lint(tmp_path, train(suffix), UNUSED)
    assert found == [] and code == 0


@pytest.mark.parametrize(
    "suffix",
    [
        "  # noqa: E501",  # another tool's code only
        "  # noqa: TL001",  # another of our codes
        "  # trainlint: ignore[TL001]",
        "  # noqa: TL2",  # not a prefix match: codes only
    ],
)
def test_other_codes_do_not_silence(tmp_path, suffix):
    assert codes(lint(tmp_path, train(suffix))[1]) == [(3, "TL202")]


def test_own_line_ignore_silences_the_next_line(tmp_path):
    text = train(own_line="# trainlint: ignore[TL202]")
    assert lint(tmp_path, text) == (0, [])
    assert lint(tmp_path, text, UNUSED) == (0, [])


def test_own_line_ignore_does_not_reach_two_lines_down(tmp_path):
    text = "import torch\nfor x, y in loader:\n    # trainlint: ignore[TL202]\n\n    " + CLAMP + "\n    loss.backward()\n"
    assert codes(lint(tmp_path, text)[1]) == [(5, "TL202")]
    assert codes(lint(tmp_path, text, UNUSED)[1]) == [(3, "TL002"), (5, "TL202")]


def test_own_line_noqa_applies_to_its_own_line_only(tmp_path):
    text = train(own_line="# noqa: TL202")
    assert codes(lint(tmp_path, text)[1]) == [(4, "TL202")]


def test_trailing_ignore_applies_to_its_own_line_only(tmp_path):
    text = "import torch\nfor x, y in loader:\n    y = 1  # trainlint: ignore[TL202]\n    " + CLAMP + "\n    loss.backward()\n"
    assert codes(lint(tmp_path, text)[1]) == [(4, "TL202")]


def test_multiline_finding_suppressed_on_its_last_line(tmp_path):
    text = textwrap.dedent(
        """\
        import torch
        for x, y in loader:
            loss = torch.clamp(
                criterion(model(x), y), max=10.0
            )  # noqa: TL202
            loss.backward()
        """
    )
    assert lint(tmp_path, text) == (0, [])
    assert codes(lint(tmp_path, text.replace("  # noqa: TL202", ""))[1]) == [(3, "TL202")]


def test_noqa_in_a_string_is_not_a_suppression(tmp_path):
    text = train('; s = "# noqa"')
    assert codes(lint(tmp_path, text)[1]) == [(3, "TL202")]
    text = train("; s = '# trainlint: ignore[TL202]'")
    assert codes(lint(tmp_path, text)[1]) == [(3, "TL202")]


def test_directives_in_a_docstring_are_not_suppressions(tmp_path):
    text = train(before='"""Module.\n\n# trainlint: skip-file\n# trainlint: ignore-file[TL202]\n"""')
    assert codes(lint(tmp_path, text)[1]) == [(8, "TL202")]


def test_noqa_with_crlf_line_endings(tmp_path):
    text = train("  # noqa: TL202").replace("\n", "\r\n")
    path = tmp_path / "crlf.py"
    path.write_bytes(text.encode())
    result = _runner().invoke(main, ["--output-format", "concise", str(path)])
    assert result.exit_code == 0
    text = train(own_line="# trainlint: ignore[TL202]").replace("\n", "\r\n")
    path.write_bytes(text.encode())
    assert _runner().invoke(main, ["-q", str(path)]).exit_code == 0
    path.write_bytes(train().replace("\n", "\r\n").encode())
    assert _runner().invoke(main, ["-q", str(path)]).exit_code == 1


# -- whole-file directives ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "bottom"])
def test_skip_file(tmp_path, where):
    text = train(before="# trainlint: skip-file") if where == "top" else train(after="# trainlint: skip-file")
    assert lint(tmp_path, text) == (0, [])
    assert lint(tmp_path, text, UNUSED) == (0, [])


def test_skip_file_skips_syntax_errors_too(tmp_path):
    assert lint(tmp_path, "# trainlint: skip-file\nx = (\n") == (0, [])


def test_ignore_file(tmp_path):
    text = train(before="# trainlint: ignore-file[TL202]")
    assert lint(tmp_path, text) == (0, [])
    assert lint(tmp_path, text, UNUSED) == (0, [])


def test_ignore_file_other_code(tmp_path):
    text = train(before="# trainlint: ignore-file[TL001]")
    assert codes(lint(tmp_path, text)[1]) == [(4, "TL202")]


def test_ignore_file_unused(tmp_path):
    assert codes(lint(tmp_path, "# trainlint: ignore-file[TL202]\nx = 1\n", UNUSED)[1]) == [(1, "TL002")]


def test_ignore_file_without_codes_is_malformed(tmp_path):
    code, found = lint(tmp_path, train(before="# trainlint: ignore-file"), UNUSED)
    assert codes(found) == [(1, "TL002"), (4, "TL202")]
    assert "skip-file" in found[0][2]


# -- TL002: malformed directives ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, words",
    [
        ("  # trainlint: ignore TL202", ["ignore TL202", "malformed"]),
        ("  # trainlint: ignore[TL99]", ["TL99"]),
        ("  # trainlint: ignore[TL999]", ["TL999", "unknown"]),
        ("  # noqa: TL999", ["TL999", "unknown"]),
        ("  # trainlint: ignore[]", ["empty"]),
        ("  # trainlint: disable[TL202]", ["disable"]),
        ("  # trainlint: ignore[TL202", ["malformed"]),
    ],
)
def test_malformed_directives_are_reported(tmp_path, suffix, words):
    code, found = lint(tmp_path, train(suffix), UNUSED)
    assert (3, "TL002") in codes(found)
    assert (3, "TL202") in codes(found)  # and they silence nothing
    message = [m for ln, c, m in found if c == "TL002"][0]
    for w in words:
        assert w.lower() in message.lower(), (w, message)
    assert code == 1


def test_malformed_directives_are_silent_without_the_flag(tmp_path):
    code, found = lint(tmp_path, train("  # trainlint: ignore TL202"))
    assert codes(found) == [(3, "TL202")]


def test_mixed_known_and_unknown_codes(tmp_path):
    # The good code still works; the unknown one is reported.
    code, found = lint(tmp_path, train("  # trainlint: ignore[TL202, TL999]"), UNUSED)
    assert codes(found) == [(3, "TL002")]
    assert "TL999" in found[0][2]


def test_noqa_with_space_instead_of_colon_is_reported_but_silences(tmp_path):
    # flake8 reads "# noqa TL202" as a bare noqa: it silences everything, which is worth a warning.
    assert lint(tmp_path, train("  # noqa TL202"))[1] == []
    code, found = lint(tmp_path, train("  # noqa TL202"), UNUSED)
    assert codes(found) == [(3, "TL002")]
    assert "malformed" in found[0][2].lower()


# -- TL002: unused suppressions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, word",
    [
        ("x = 1  # noqa: TL202", "TL202"),
        ("x = 1  # noqa", "nothing"),
        ("x = 1  # trainlint: ignore[TL202]", "TL202"),
        ("x = 1  # trainlint: ignore", "nothing"),
        ("x = 1  # NOQA:TL202,E501", "TL202"),
    ],
)
def test_unused_suppressions(tmp_path, line, word):
    code, found = lint(tmp_path, f"import torch\n{line}\n", UNUSED)
    assert codes(found) == [(2, "TL002")]
    assert "unused" in found[0][2].lower() and word in found[0][2]
    assert code == 1


def test_unused_only_with_the_flag(tmp_path):
    assert lint(tmp_path, "x = 1  # noqa: TL202\n") == (0, [])


def test_other_tools_codes_are_not_reported(tmp_path):
    assert lint(tmp_path, "import os  # noqa: F401\nx = 1  # noqa: E501, W291\n", UNUSED) == (0, [])


def test_partly_used_noqa_reports_the_unused_code(tmp_path):
    code, found = lint(tmp_path, train("  # noqa: TL202, TL001"), UNUSED)
    assert codes(found) == [(3, "TL002")]
    assert "TL001" in found[0][2] and "TL202" not in found[0][2]


@pytest.mark.parametrize(
    "args",
    [["--ignore", "TL202"], ["--select", "TL0"], ["--ignore", "TL2"]],
)
def test_suppression_of_a_disabled_code_is_not_unused(tmp_path, args):
    text = train("  # noqa: TL202")
    assert lint(tmp_path, text, UNUSED, *args) == (0, [])
    text = train(own_line="# trainlint: ignore[TL202]")
    assert lint(tmp_path, text, UNUSED, *args) == (0, [])


def test_suppression_of_a_code_disabled_for_the_file_is_not_unused(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.trainlint.per-file-ignores]\n"t.py" = ["TL202"]\n')
    assert lint(tmp_path, train("  # noqa: TL202"), UNUSED) == (0, [])


def test_tl002_enabled_by_select(tmp_path):
    assert codes(lint(tmp_path, "x = 1  # noqa: TL202\n", "--extend-select", "TL002")[1]) == [(1, "TL002")]
    # --select TL0 enables TL002 but disables TL202, whose suppressions then are not "unused"
    assert codes(lint(tmp_path, "x = 1  # noqa: TL202\ny = 1  # noqa\n", "--select", "TL0")[1]) == [(2, "TL002")]


def test_tl002_can_be_ignored_per_file_by_prefix(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.trainlint]\nreport-unused-suppressions = true\n[tool.trainlint.per-file-ignores]\n"t.py" = ["TL0"]\n'
    )
    assert lint(tmp_path, "x = 1  # noqa: TL202\n") == (0, [])
    assert codes(lint(tmp_path, "x = 1  # noqa: TL202\n", name="u.py")[1]) == [(1, "TL002")]


def test_tl002_respects_the_severity_threshold(tmp_path):
    # TL002 is a warning: --severity error drops it like any other warning.
    assert lint(tmp_path, "x = 1  # noqa: TL202\n", UNUSED, "--severity", "error") == (0, [])
    assert codes(lint(tmp_path, "x = 1  # noqa: TL202\n", UNUSED, "--severity", "warning")[1]) == [(1, "TL002")]


def test_tl002_severity_override(tmp_path):
    import json

    (tmp_path / "pyproject.toml").write_text('[tool.trainlint]\nseverity = { TL002 = "error" }\n')
    (tmp_path / "t.py").write_text("x = 1  # noqa: TL202\n")
    result = _runner().invoke(main, ["--output-format", "json", UNUSED, "t.py"])
    assert [(d["code"], d["severity"]) for d in json.loads(result.stdout)] == [("TL002", "error")]


def test_syntax_error_file_reports_no_unused_suppressions(tmp_path):
    # No rule ran on a file that does not parse: its suppressions are not "unused".
    text = "x = 1  # noqa: TL202\ny = 2  # trainlint: ignore TL202\nz = (\n"
    code, found = lint(tmp_path, text, UNUSED)
    assert codes(found) == [(2, "TL002"), (3, "TL001")]
    assert "malformed" in found[0][2].lower()


def test_noqa_does_not_silence_syntax_errors(tmp_path):
    assert codes(lint(tmp_path, "x = (  # noqa\n")[1]) == [(1, "TL001")]


# -- the parser, unit-level -------------------------------------------------------------------------------


def test_parse_forms():
    text = textwrap.dedent(
        """\
        a = 1  # noqa
        b = 2  # noqa: TL202, E501
        # trainlint: ignore[TL202]
        c = 3
        d = 4  # trainlint: ignore[TL001]
        # trainlint: ignore-file[TL202]
        s = "# noqa: TL001"
        """
    )
    sup = parse(text, KNOWN)
    assert not sup.skip_file
    assert sup.problems == []
    by_kind = [(d.kind, d.line, d.codes, d.applies_to) for d in sup.directives]
    assert by_kind == [
        ("noqa", 1, None, (1,)),
        ("noqa", 2, ("TL202",), (2,)),
        ("ignore", 3, ("TL202",), (4,)),
        ("ignore", 5, ("TL001",), (5,)),
        ("ignore-file", 6, ("TL202",), ()),
    ]
    assert sup.suppresses("TL202", 1)
    assert sup.suppresses("TL202", 2)
    assert not sup.suppresses("TL001", 2)
    assert sup.suppresses("TL202", 4)
    assert not sup.suppresses("TL001", 3)
    assert sup.suppresses("TL202", 99)  # the ignore-file
    assert not sup.suppresses("TL001", 7)  # the string


def test_parse_skip_file():
    assert parse("x = 1\n# trainlint: skip-file\n", KNOWN).skip_file
    assert parse("# TRAINLINT: SKIP-FILE\n", KNOWN).skip_file
    assert not parse("s = '# trainlint: skip-file'\n", KNOWN).skip_file


def test_parse_fast_path_without_comments():
    sup = parse("x = 1\n", KNOWN)
    assert sup.directives == [] and sup.problems == [] and not sup.skip_file


def test_parse_column_and_span():
    sup = parse("x = 1  # noqa: TL202\n", KNOWN)
    (d,) = sup.directives
    assert d.span.line == 1 and d.span.column == 8


def test_parse_survives_untokenizable_text():
    sup = parse("x = (  # noqa: TL202\ns = '''\n", KNOWN)
    assert [d.line for d in sup.directives] == [1]


def test_unused_ignores_disabled_codes():
    sup = parse("x = 1  # noqa: TL202, TL001\n", KNOWN)
    assert [what for _, what in sup.unused(["TL001", "TL202"])] == ["unused codes TL202, TL001"]
    assert [what for _, what in sup.unused(["TL001"])] == ["unused code TL001"]
    assert sup.unused([]) == []


def test_suppresses_end_line_of_a_multiline_finding():
    sup = parse("a = f(\n    1,\n)  # noqa: TL202\n", KNOWN)
    assert not sup.suppresses("TL202", 1)
    assert sup.suppresses("TL202", 1, 3)
