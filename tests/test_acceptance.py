"""The static core's acceptance checks, run the way a user runs them: the installed console script on
the bundled fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SCHEMA = ROOT / "tests" / "data" / "sarif-schema-2.1.0.json"


def _trainlint(*args, cwd=ROOT):
    exe = shutil.which("trainlint")
    cmd = [exe] if exe else [sys.executable, "-m", "trainlint"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True)


def test_fixtures_have_findings_and_exit_1():
    out = _trainlint("fixtures/")
    assert out.returncode == 1, out.stderr
    assert "TL202" in out.stdout and "Traceback" not in out.stderr


def test_sarif_of_the_fixtures_validates_against_the_official_schema(tmp_path):
    out = _trainlint("--output-format", "sarif", "fixtures/")
    assert out.returncode == 1, out.stderr
    sarif = json.loads(out.stdout)
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert results and all(r["ruleId"].startswith("TL") for r in results)
    rules = sarif["runs"][0]["tool"]["driver"]["rules"]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert rules[r["ruleIndex"]]["helpUri"].endswith(f"{r['ruleId']}.md")


def test_linting_never_imports_torch_or_numpy():
    code = (
        "import sys\n"
        "from trainlint.cli import main\n"
        "try:\n"
        "    main(['fixtures/', '-q'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import trainlint\n"
        "heavy = [m for m in ('torch', 'numpy', 'lightning', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("fmt", ["full", "concise", "json", "json-lines", "sarif", "github", "gitlab", "junit"])
def test_every_format_on_the_fixtures(fmt):
    out = _trainlint("--output-format", fmt, "fixtures/")
    assert out.returncode == 1, out.stderr
    assert out.stdout.strip()
    assert "Traceback" not in out.stderr
