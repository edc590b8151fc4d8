"""The fix engine (trainlint/fixes.py) and its flags: --fix, --unsafe-fixes, --diff, --fix-only,
--exit-non-zero-on-fix, --add-noqa, and the config keys fix / unsafe-fixes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths
from trainlint.findings import Applicability, Edit, Fix, Span
from trainlint.fixes import apply_edits, dump_like, fix_run, fix_text, parses, write_atomic
from trainlint.rules import registry

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"

UNSHUFFLED = textwrap.dedent(
    """\
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    loader = DataLoader(train_ds, batch_size=32)
    for epoch in range(3):
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    """
)


def _cli(*args, cwd=None):
    runner = CliRunner()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        return runner.invoke(main, ["check", "--isolated", *args], catch_exceptions=False)
    finally:
        os.chdir(old)


def _options():
    config = Config(layers=[Selection()])
    return Options(config=config, enabled=config.enabled_codes(list(registry())))


def _fix_tree(folder: Path, unsafe: bool = True):
    options = _options()

    def lint(overlay):
        options.overlay = overlay
        return lint_paths([str(folder)], options)

    return fix_run(lint, unsafe)


# -- every fixture with a fix --------------------------------------------------------------------
def _programs_with_fixes():
    out = []
    for exp in sorted(FIXTURES.glob("*/expected.txt")):
        program = exp.parent
        report, _ = lint_paths([str(program)], _options())
        if any(f.fix is not None for f in report.findings):
            out.append(program)
    return out


PROGRAMS_WITH_FIXES = _programs_with_fixes()


def test_fixes_exist_for_the_rules_with_fix_data():
    codes = set()
    for program in PROGRAMS_WITH_FIXES:
        report, _ = lint_paths([str(program)], _options())
        codes |= {f.code for f in report.findings if f.fix is not None}
    assert {"TL202", "TL301", "TL304", "TL305", "TL103", "TL205", "TL203"} <= codes, codes


@pytest.mark.parametrize("program", PROGRAMS_WITH_FIXES, ids=[p.name for p in PROGRAMS_WITH_FIXES])
def test_fix_on_fixture_parses_lints_clean_of_the_code_and_is_idempotent(program, tmp_path):
    work = tmp_path / program.name
    shutil.copytree(program, work)
    before, _ = lint_paths([str(work)], _options())
    fixed_codes = {f.code for f in before.findings if f.fix is not None}
    unfixable = {(f.code) for f in before.findings if f.fix is None}
    run = _fix_tree(work)
    assert run.fixed >= 1
    from trainlint.fixes import write_fixes

    assert write_fixes(run) == []
    for real in run.fixed_text:
        text = Path(real).read_text(encoding="utf-8")
        if real.endswith(".ipynb"):
            from trainlint.notebook import to_script

            text = to_script(text)[0]
        assert parses(text), real
    after, _ = lint_paths([str(work)], _options())
    left = {f.code for f in after.findings}
    for code in fixed_codes - unfixable:
        assert code not in left, (code, [f.message for f in after.findings if f.code == code])
    assert not any(f.fix is not None for f in after.findings if f.code in fixed_codes - unfixable)
    snapshot = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    second = _fix_tree(work)
    assert second.fixed == 0 and second.fixed_text == {}
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == snapshot


# -- the engine ----------------------------------------------------------------------------------
def test_overlapping_edits_first_wins_and_rest_waits():
    text = "abcdef\n"
    f1 = Fix("one", (Edit(Span(1, 1, 1, 4), "X"),))
    f2 = Fix("two", (Edit(Span(1, 3, 1, 6), "Y"),))
    f3 = Fix("three", (Edit(Span(1, 6, 1, 7), "Z"),))
    new, applied = apply_edits(text, [f2, f3, f1])
    assert new == "XdeZ\n"
    assert applied == [f1, f3]


def test_two_insertions_at_one_point_do_not_both_apply():
    f1 = Fix("a", (Edit(Span(1, 1, 1, 1), "A\n"),))
    f2 = Fix("b", (Edit(Span(1, 1, 1, 1), "B\n"),))
    new, applied = apply_edits("x = 1\n", [f1, f2])
    assert new == "A\nx = 1\n" and applied == [f1]


def test_crlf_and_insertion_after_last_line_without_newline():
    fx = Fix("seed", (Edit(Span(2, 1, 2, 1), "torch.manual_seed(0)\n"),))
    assert apply_edits("import torch\r\n", [fx])[0] == "import torch\r\ntorch.manual_seed(0)\r\n"
    assert apply_edits("import torch", [fx])[0] == "import torch\ntorch.manual_seed(0)"


def test_a_fix_whose_result_does_not_parse_is_refused():
    good = Fix("good", (Edit(Span(1, 5, 1, 6), "2"),))
    bad = Fix("bad", (Edit(Span(2, 1, 2, 1), "def (\n"),))
    new, applied, refused = fix_text("x = 1\ny = 2\n", [good, bad])
    assert new == "x = 2\ny = 2\n" and applied == [good] and refused == [bad]


def test_fix_keeps_crlf_encoding_bom_and_mode(tmp_path):
    src = "# -*- coding: latin-1 -*-\r\nimport torch\r\nfrom torch.utils.data import DataLoader\r\n# caf\xe9\r\n" \
          "torch.manual_seed(0)\r\nloader = DataLoader(train_ds, batch_size=32)\r\nfor epoch in range(3):\r\n" \
          "    for x, y in loader:\r\n        loss = criterion(model(x), y)\r\n        loss.backward()\r\n        optimizer.step()\r\n"
    p = tmp_path / "train.py"
    p.write_bytes(src.encode("latin-1"))
    os.chmod(p, 0o750)
    r = _cli("--fix", "--unsafe-fixes", "--select", "TL304", str(p))
    assert r.exit_code == 0, r.output
    data = p.read_bytes()
    assert data == src.replace("batch_size=32)", "batch_size=32, shuffle=True)").encode("latin-1")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o750
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbf" + UNSHUFFLED.encode())
    assert _cli("--fix", "--unsafe-fixes", "--select", "TL304", str(bom)).exit_code == 0
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf") and b"shuffle=True" in bom.read_bytes()


def test_unsafe_fixes_need_the_flag_and_the_summary_says_so(tmp_path):
    p = tmp_path / "train.py"
    p.write_text(UNSHUFFLED)
    r = _cli("--select", "TL304", str(p))
    assert "No fixes available (1 hidden fix can be enabled with the `--unsafe-fixes` option)." in r.output
    r = _cli("--select", "TL304", "--unsafe-fixes", str(p))
    assert "[*] 1 fixable with the `--fix` option." in r.output
    r = _cli("--fix", "--select", "TL304", str(p))
    assert r.exit_code == 1 and p.read_text() == UNSHUFFLED
    r = _cli("--fix", "--unsafe-fixes", "--select", "TL304", str(p))
    assert r.exit_code == 0 and "Fixed 1 finding." in r.output and "shuffle=True" in p.read_text()


def test_config_keys_fix_and_unsafe_fixes(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.trainlint]\nselect = ["TL304"]\nfix = true\nunsafe-fixes = true\n')
    p = tmp_path / "train.py"
    p.write_text(UNSHUFFLED)
    r = CliRunner().invoke(main, ["check", str(p)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "shuffle=True" in p.read_text()
    p.write_text(UNSHUFFLED)
    r = CliRunner().invoke(main, ["check", "--no-fix", str(p)], catch_exceptions=False)
    assert r.exit_code == 1 and p.read_text() == UNSHUFFLED


def test_diff_writes_nothing_and_exits_1(tmp_path):
    p = tmp_path / "train.py"
    p.write_text(UNSHUFFLED)
    r = _cli("--diff", "--unsafe-fixes", "--select", "TL304", "train.py", cwd=tmp_path)
    assert r.exit_code == 1
    assert "--- a/train.py" in r.stdout and "+loader = DataLoader(train_ds, batch_size=32, shuffle=True)" in r.stdout
    assert "Would fix 1 finding." in r.stderr
    assert p.read_text() == UNSHUFFLED
    r = _cli("--diff", "--select", "TL304", "train.py", cwd=tmp_path)
    assert r.exit_code == 0 and r.stdout.strip() == ""
    assert "Would fix 0 findings (1 additional fix available with `--unsafe-fixes`)." in r.stderr


def test_fix_only_and_exit_non_zero_on_fix(tmp_path):
    p = tmp_path / "train.py"
    p.write_text(UNSHUFFLED + "x = torch.clamp(criterion(model(x), y), max=1.0)\n")
    r = _cli("--fix-only", "--unsafe-fixes", "--select", "TL304", str(p))
    assert r.exit_code == 0 and "Fixed 1 finding." in r.stderr and "TL304" not in r.stdout
    p.write_text(UNSHUFFLED)
    r = _cli("--fix-only", "--unsafe-fixes", "--exit-non-zero-on-fix", "--select", "TL304", str(p))
    assert r.exit_code == 1
    r = _cli("--fix", "--unsafe-fixes", "--exit-non-zero-on-fix", "--select", "TL304", str(p))
    assert r.exit_code == 0  # nothing left to fix
    p.write_text(UNSHUFFLED)
    r = _cli("--fix", "--unsafe-fixes", "--exit-non-zero-on-fix", "--select", "TL304", str(p))
    assert r.exit_code == 1 and "All checks passed!" in r.stdout


def test_suppressed_findings_are_not_fixed(tmp_path):
    p = tmp_path / "train.py"
    text = UNSHUFFLED.replace("batch_size=32)", "batch_size=32)  # noqa: TL304")
    p.write_text(text)
    r = _cli("--fix", "--unsafe-fixes", "--select", "TL304", str(p))
    assert r.exit_code == 0 and p.read_text() == text


def test_unused_suppression_has_a_safe_fix(tmp_path):
    p = tmp_path / "train.py"
    p.write_text("import torch\nx = torch.zeros(3)  # noqa: TL304, E501  # why\n# trainlint: ignore[TL202]\ny = 1\n")
    r = _cli("--fix", "--select", "TL002,TL304,TL202", str(p))
    assert r.exit_code == 0, r.output
    assert p.read_text() == "import torch\nx = torch.zeros(3)  # noqa: E501  # why\ny = 1\n"


def test_stdin_fix_prints_the_fixed_source():
    r = CliRunner().invoke(main, ["check", "--isolated", "--select", "TL304", "--fix", "--unsafe-fixes", "-"],
                           input=UNSHUFFLED, catch_exceptions=False)
    assert r.exit_code == 0
    assert r.stdout == UNSHUFFLED.replace("batch_size=32)", "batch_size=32, shuffle=True)")


def test_add_noqa_silences_every_finding(tmp_path):
    p = tmp_path / "train.py"
    p.write_text(UNSHUFFLED.replace("torch.manual_seed(0)\n", "") + "z = 1  # noqa: E501\n")
    r = _cli("--add-noqa", "--select", "TL304,TL301", str(p))
    assert r.exit_code == 0 and "Added 2 noqa directives." in r.stderr
    text = p.read_text()
    assert "batch_size=32)  # noqa: TL304" in text
    assert _cli("--select", "TL304,TL301", str(p)).exit_code == 0
    assert _cli("--add-noqa", "--select", "TL304,TL301", str(p)).stderr.strip() == "Added 0 noqa directives."


def test_tl301_seed_goes_after_the_torch_import_not_above_it(tmp_path):
    p = tmp_path / "train.py"
    p.write_text("import os\nimport sys\nsys.path.insert(0, '.')\nimport torch\nimport numpy as np\n\n"
                 "model = torch.nn.Linear(2, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
                 "for x, y in loader:\n    loss = model(x).sum()\n    loss.backward()\n    opt.step()\n")
    r = _cli("--fix", "--unsafe-fixes", "--select", "TL301", str(p))
    assert r.exit_code == 0, r.output
    lines = p.read_text().splitlines()
    assert lines[3:6] == ["import torch", "import numpy as np", "torch.manual_seed(0)"], lines


def test_notebook_fix_edits_the_cell_and_keeps_layout_and_outputs(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Title é"]},
            {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [{"name": "stdout", "output_type": "stream", "text": ["hi\n"]}],
             "source": ["%matplotlib inline\n", "import torch\n", "from torch.utils.data import DataLoader"]},
            {"cell_type": "code", "execution_count": 2, "metadata": {}, "outputs": [],
             "source": ["torch.manual_seed(0)\n", "loader = DataLoader(train_ds, batch_size=32)\n", "for epoch in range(3):\n",
                        "    for x, y in loader:\n", "        loss = criterion(model(x), y)\n", "        loss.backward()\n",
                        "        optimizer.step()"]},
        ],
        "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    raw = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    assert dump_like(json.loads(raw), raw) == raw  # the layout round-trips
    p = tmp_path / "train.ipynb"
    p.write_text(raw, encoding="utf-8")
    r = _cli("--fix", "--unsafe-fixes", "--select", "TL304", str(p))
    assert r.exit_code == 0, r.output
    out = p.read_text(encoding="utf-8")
    expected = json.loads(raw)
    expected["cells"][2]["source"][1] = "loader = DataLoader(train_ds, batch_size=32, shuffle=True)\n"
    assert out == json.dumps(expected, indent=1, ensure_ascii=False) + "\n"


def test_write_is_atomic_an_error_leaves_the_file(tmp_path, monkeypatch):
    p = tmp_path / "a.py"
    p.write_bytes(b"old\n")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(str(p), b"new\n")
    assert p.read_bytes() == b"old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["a.py"]  # no temporary file left behind


def test_rule_docs_say_which_fix_and_why():
    for code, cls in registry().items():
        doc = cls.doc()
        section = doc.split("## Fix safety", 1)[1].split("##", 1)[0]
        assert section.strip(), code
    for code in ("TL103", "TL202", "TL203", "TL205", "TL301", "TL304", "TL305"):
        section = registry()[code].doc().split("## Fix safety", 1)[1].split("##", 1)[0]
        assert "unsafe" in section.lower() and "--unsafe-fixes" in section, code
    assert "safe fix" in registry()["TL002"].doc().split("## Fix safety", 1)[1].split("##", 1)[0]


@pytest.mark.slow
def test_fixed_runtime_fixtures_still_run(tmp_path):
    pytest.importorskip("torch")
    for name, code in (("clamped_loss.py", "TL202"), ("unseeded.py", "TL301")):
        p = tmp_path / name
        shutil.copy(FIXTURES / "runtime" / name, p)
        r = _cli("--fix", "--unsafe-fixes", "--select", code, str(p))
        assert r.exit_code == 0, r.output
        assert p.read_text() != (FIXTURES / "runtime" / name).read_text()
        proc = subprocess.run([sys.executable, str(p)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
