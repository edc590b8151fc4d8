"""`trainlint fixtures/` finds every expected finding and nothing else.

Each program under fixtures/ has an ``expected.txt`` listing ``path:line CODE`` (paths relative to the
program's folder); clean near-miss programs list nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths
from trainlint.rules import opt_in_codes, registry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROGRAMS = sorted(p.parent for p in FIXTURES.glob("*/expected.txt"))
LINE_RE = re.compile(r"^(?P<path>[^:\s]+):(?P<line>\d+)\s+(?P<code>TL\d{3})$")


def _expected(program: Path):
    out = set()
    for raw in (program / "expected.txt").read_text(encoding="utf-8").splitlines():
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        m = LINE_RE.match(raw)
        assert m, f"{program.name}/expected.txt: cannot read {raw!r}"
        out.add((m["path"], int(m["line"]), m["code"]))
    return out


def _options():
    # Opt-in rules (TL206) have fixtures too: enable them on top of the default selection.
    config = Config(layers=[Selection(extend_select=opt_in_codes())])
    return Options(config=config, enabled=config.enabled_codes(list(registry())))


def _found(program: Path):
    report, _ = lint_paths([str(program)], _options())
    assert not report.errors, report.errors
    return {(Path(f.path).resolve().relative_to(program).as_posix(), f.line, f.code) for f in report.findings}


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_fixture_program_findings_are_exactly_the_expected_ones(program):
    assert _found(program) == _expected(program)


def test_every_fixture_program_has_an_expected_file():
    for folder in FIXTURES.iterdir():
        if folder.is_dir() and not folder.name.startswith((".", "_")):
            assert (folder / "expected.txt").exists(), f"{folder.name} lacks expected.txt"


def test_each_checked_rule_has_buggy_and_clean_fixtures():
    from trainlint.rules import EngineRule

    flagged = {}
    for program in PROGRAMS:
        for _, _, code in _expected(program):
            flagged.setdefault(code, set()).add(program.name)
    for code, cls in registry().items():
        if issubclass(cls, EngineRule):
            continue
        assert len(flagged.get(code, ())) >= 3, f"{code} needs at least 3 buggy fixture programs"
        clean = [p for p in PROGRAMS if p.name.startswith(code.lower() + "_clean")]
        assert len(clean) >= 2, f"{code} needs at least 2 clean near-miss fixture programs"


def test_whole_fixtures_folder_matches_the_union():
    report, _ = lint_paths([str(FIXTURES)], _options())
    found = {(Path(f.path).resolve().relative_to(FIXTURES).as_posix(), f.line, f.code) for f in report.findings}
    wanted = {(f"{p.name}/{path}", line, code) for p in PROGRAMS for path, line, code in _expected(p)}
    assert found == wanted
