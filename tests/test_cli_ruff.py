"""The everyday ruff options and conventions (issue 12): --show-settings, --show-files, -v, version,
subcommand hints, extend, --per-file-ignores, --exclude, --extend-exclude, selection precedence,
--statistics with json, -q keeps the format, no colour in -o files, rule --output-format, --fail-level."""

from __future__ import annotations

import json
import sys
import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint import __version__
from trainlint.cli import main

BAD = textwrap.dedent(
    """\
    import torch
    for x, y in loader:
        loss = torch.clamp(criterion(model(x), y), max=10.0)
        loss.backward()
    """
)


@pytest.fixture()
def proj(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(BAD)
    return tmp_path


def run(args, **kw):
    r = CliRunner().invoke(main, args, catch_exceptions=False, **kw)
    return r


def test_version_flag_and_subcommand():
    assert run(["--version"]).output.strip() == f"trainlint {__version__}"
    assert run(["version"]).output.strip() == f"trainlint {__version__}"
    assert json.loads(run(["version", "--output-format", "json"]).output) == {"version": __version__}


def test_unknown_subcommand_gets_a_hint_not_a_path_error(proj):
    r = run(["chek", "."])
    assert r.exit_code == 2 and "did you mean `trainlint check`" in r.stderr and "./chek" in r.stderr
    (proj / "data").mkdir()
    (proj / "data" / "x.py").write_text(BAD)
    assert run(["data"]).exit_code == 1  # an existing folder of that name is still a path


def test_show_files_and_show_settings(proj):
    r = run(["--show-files", "--extend-exclude", "tests", "."])
    assert r.exit_code == 0 and r.output.split() == ["bad.py"]
    (proj / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL301"]\n')
    r = run(["--show-settings", "."])
    assert r.exit_code == 0
    assert f'config-file = "{proj / "pyproject.toml"}"' in r.output
    enabled = json.loads(next(l for l in r.output.splitlines() if l.startswith("enabled = ")).split(" = ", 1)[1])
    assert "TL202" in enabled and "TL301" not in enabled


def test_verbose_says_config_files_and_time(proj):
    r = run(["-v", "--isolated", "bad.py"])
    assert "configuration: none (--isolated)" in r.stderr
    assert "linted bad.py" in r.stderr and "checked 1 file(s)" in r.stderr
    assert "TL202" in r.stdout


def test_extend_inherits_a_parent_config(proj):
    (proj / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL202"]\n')
    sub = proj / "sub"
    sub.mkdir()
    (sub / "bad.py").write_text(BAD)
    (sub / "pyproject.toml").write_text('[tool.trainlint]\nextend = "../pyproject.toml"\nextend-select = ["TL206"]\n')
    r = run(["--show-settings", "sub"])
    enabled = json.loads(next(l for l in r.output.splitlines() if l.startswith("enabled = ")).split(" = ", 1)[1])
    assert "TL202" not in enabled and "TL206" in enabled
    assert run(["sub"]).exit_code == 0
    (sub / "pyproject.toml").write_text('[tool.trainlint]\nextend = "../pyproject.toml"\nselect = ["TL202"]\n')
    assert run(["sub"]).exit_code == 1  # the child's select comes after the parent's ignore
    (proj / "pyproject.toml").write_text('[tool.trainlint]\nextend = "sub/pyproject.toml"\n')
    r = run(["sub"])
    assert r.exit_code == 2 and "cycle" in r.stderr
    (sub / "pyproject.toml").write_text('[tool.trainlint]\nextend = "../missing.toml"\n')
    r = run(["sub"])
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_cli_per_file_ignores_exclude_extend_exclude(proj):
    assert run(["--isolated", "--output-format", "concise", "."]).output.count("TL202") == 2
    r = run(["--isolated", "--output-format", "concise", "--per-file-ignores", "tests/*:TL202", "."])
    assert r.output.count("TL202") == 1 and "bad.py" in r.output
    r = run(["--isolated", "--output-format", "concise", "--extend-exclude", "tests", "."])
    assert r.output.count("TL202") == 1
    r = run(["--isolated", "--output-format", "concise", "--exclude", "bad.py", "."])
    assert r.output.count("TL202") == 1 and "tests/test_x.py" in r.output
    r = run(["--isolated", "--per-file-ignores", "nocolon", "."])
    assert r.exit_code == 2 and "GLOB:CODES" in r.stderr


def test_cli_select_and_config_ignore_follow_ruff(proj):
    """ruff: the command line is a later layer than the config. An explicit --select starts over (ruff's
    docs: `--select F401` enforces F401 even if the config ignores it), --extend-select of an ignored code
    enables it, --extend-select of something else keeps the config's ignore; per-file-ignores always apply."""
    (proj / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL202"]\n'
                                         '[tool.trainlint.per-file-ignores]\n"tests/*" = ["TL202"]\n')
    assert run(["."]).exit_code == 0
    assert run(["--extend-select", "TL3", "."]).exit_code == 0  # the config's ignore stays
    r = run(["--extend-select", "TL202", "--output-format", "concise", "."])
    assert r.exit_code == 1 and r.output.count("TL202") == 1
    r = run(["--select", "TL202", "--output-format", "concise", "."])
    assert r.exit_code == 1 and r.output.count("TL202") == 1 and "tests" not in r.output


def test_statistics_with_json(proj):
    r = run(["--isolated", "--statistics", "--output-format", "json", "."])
    assert r.exit_code == 1
    assert json.loads(r.output) == [{"code": "TL202", "name": "loss-clipped-not-gradients", "count": 2, "fixable": False}]
    r = run(["--isolated", "--statistics", "--unsafe-fixes", "--output-format", "json-lines", "bad.py"])
    assert [json.loads(l) for l in r.output.splitlines()] == [
        {"code": "TL202", "name": "loss-clipped-not-gradients", "count": 1, "fixable": True}]


def test_quiet_keeps_the_format(proj):
    full = run(["--isolated", "-q", "bad.py"]).output
    assert full.startswith("bad.py:3:12: TL202 [error]") and "^^^" in full and "Found" not in full
    concise = run(["--isolated", "-q", "--output-format", "concise", "bad.py"]).output
    assert concise.strip().count("\n") == 0
    j = run(["--isolated", "-q", "--output-format", "json", "bad.py"]).output
    assert json.loads(j)[0]["code"] == "TL202"


def test_no_colour_codes_in_an_output_file(proj):
    run(["--isolated", "--color", "always", "-o", "out.txt", "bad.py"])
    text = (proj / "out.txt").read_text()
    assert "TL202" in text and "\x1b[" not in text
    assert "\x1b[" in run(["--isolated", "--color", "always", "bad.py"]).output


def test_rule_output_format():
    data = json.loads(run(["rule", "TL202", "--output-format", "json"]).output)
    assert data["code"] == "TL202"
    assert json.loads(run(["rule", "TL202", "--format", "json"]).output)["code"] == "TL202"


def test_fail_level_shows_advice_without_failing(proj):
    (proj / "info.py").write_text(BAD)
    r = run(["--isolated", "--fail-level", "error", "--severity", "info", "bad.py"])
    assert r.exit_code == 1  # TL202 is an error
    (proj / "pyproject.toml").write_text('[tool.trainlint]\nfail-level = "error"\n[tool.trainlint.severity]\nTL202 = "info"\n')
    r = run(["bad.py"])
    assert r.exit_code == 0 and "TL202 [info]" in r.output  # shown, not failing
    r = run(["--fail-level", "info", "bad.py"])
    assert r.exit_code == 1
    r = run(["--fail-level", "bogus", "bad.py"])
    assert r.exit_code == 2


def test_help_lists_the_new_options():
    out = run(["check", "--help"]).output
    for opt in ("--show-settings", "--show-files", "--verbose", "--per-file-ignores", "--exclude", "--extend-exclude",
                "--fail-level", "--fix", "--unsafe-fixes", "--diff", "--fix-only", "--exit-non-zero-on-fix", "--add-noqa"):
        assert opt in out, opt
    top = run(["--help"]).output
    assert "version" in top and "server" in top
    for opt in ("--fix", "--unsafe-fixes", "--diff", "--fix-only", "--add-noqa", "--fail-level", "--show-settings"):
        assert opt in top, opt


def test_pre_commit_manifest_declares_a_minimum_version():
    import subprocess

    import yaml

    root = Path(__file__).resolve().parents[1]
    (hook,) = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())
    minimum = tuple(int(x) for x in hook["minimum_pre_commit_version"].split("."))
    assert minimum >= (2, 9, 0)  # types_or
    out = subprocess.run([sys.executable, "-m", "pre_commit", "--version"], capture_output=True, text=True).stdout
    installed = tuple(int(x) for x in out.split()[-1].split(".")[:3])
    assert installed >= minimum


def test_readme_install_lines_work_from_the_repository():
    """No index release exists: every `pip install` line of the README installs from the repository
    (a path, or a git URL), never a bare `trainlint` from an index."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = [l for l in readme.splitlines() if "pip install" in l]
    assert lines
    for line in lines:
        for target in re.findall(r"pip install (?:-e )?(\S+(?: @ \S+)?)", line):
            target = target.strip("'\"`")
            assert target.startswith((".", "-e")) or "git+" in target or target.startswith("'.") or "@ git+" in line, line
