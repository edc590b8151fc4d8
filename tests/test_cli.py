"""The command line: `trainlint [check] PATH...`, its options, exit codes and streams.

Most tests drive the click command in-process (CliRunner); a few run the installed ``trainlint``
console script in a subprocess, as an editor or CI job would.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from click.testing import CliRunner

from trainlint.cli import main

BAD = textwrap.dedent(
    """\
    import torch
    for x, y in loader:
        loss = torch.clamp(criterion(model(x), y), max=10.0)
        loss.backward()
    """
)
BAD_LINE = 3
CLEAN = "import torch\n\nx = torch.zeros(3)\n"
SYNTAX_ERROR = "x = 1\nfor x in y\n    pass\n"  # the error is on line 2 (missing colon)

ANSI = "\x1b["

RULE_SET = ("TL001", "TL002", "TL202")  # see _fixed_rule_set


# -- helpers -----------------------------------------------------------------------------------


def _runner() -> CliRunner:
    params = inspect.signature(CliRunner.__init__).parameters
    if "mix_stderr" in params:  # click < 8.2: keep stderr apart
        return CliRunner(mix_stderr=False)
    return CliRunner()  # click >= 8.2: result.stdout / result.stderr are separate


class Run:
    def __init__(self, result) -> None:
        self.result = result
        self.code = result.exit_code
        self.out = result.stdout
        try:
            self.err = result.stderr
        except ValueError:  # pragma: no cover - stderr not captured separately
            self.err = ""

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"<Run code={self.code} out={self.out!r} err={self.err!r}>"


def run(args: List[str], input: Optional[bytes] = None, env: Optional[Dict[str, str]] = None) -> Run:
    result = _runner().invoke(main, args, input=input, env=env, catch_exceptions=False)
    r = Run(result)
    assert "Traceback" not in r.out and "Traceback" not in r.err, r
    return r


def concise(args: List[str], **kw) -> Run:
    return run(["--output-format", "concise", *args], **kw)


def finding_lines(text: str) -> List[str]:
    return [line for line in text.splitlines() if ": TL" in line]


def codes_at(text: str) -> List[tuple]:
    """(path, line, code) of every concise finding line."""
    out = []
    for line in finding_lines(text):
        head, rest = line.split(": ", 1)
        path, ln, _col = head.rsplit(":", 2)
        out.append((path, int(ln), rest.split()[0]))
    return out


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _fixed_rule_set(monkeypatch):
    """Run against the engine diagnostics and TL202 only, so that the rules added to trainlint later do
    not change what these tests of the machinery see."""
    import trainlint.rules as rules

    full = rules.registry()
    monkeypatch.setattr(rules, "_REGISTRY", {c: full[c] for c in RULE_SET})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("TRAINLINT_OUTPUT_FORMAT", "NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A folder holding one flagged file (bad.py) and one clean file; the cwd."""
    write(tmp_path / "bad.py", BAD)
    write(tmp_path / "clean.py", CLEAN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the default command, paths and exit codes --------------------------------------------------


def test_bare_paths_mean_check(proj):
    a = run(["bad.py"])
    b = run(["check", "bad.py"])
    assert a.code == b.code == 1
    assert a.out == b.out
    assert "bad.py:3:" in a.out and "TL202" in a.out


def test_options_before_paths_still_mean_check(proj):
    r = run(["--output-format", "concise", "--select", "TL2", "bad.py"])
    assert r.code == 1
    assert codes_at(r.out) == [("bad.py", BAD_LINE, "TL202")]


def test_no_path_means_current_folder(proj):
    write(proj / "pkg" / "deep" / "train.py", BAD)
    r = concise([])
    assert r.code == 1
    assert sorted(codes_at(r.out)) == [("bad.py", 3, "TL202"), (os.path.join("pkg", "deep", "train.py"), 3, "TL202")]
    assert codes_at(run(["check", "--output-format", "concise"]).out) == codes_at(r.out)


def test_exit_0_when_clean(proj):
    r = run(["clean.py"])
    assert r.code == 0
    assert "All checks passed!" in r.out


def test_exit_1_with_findings(proj):
    r = run(["clean.py", "bad.py"])
    assert r.code == 1
    assert "Found 1 finding" in r.out


def test_exit_zero_flag(proj):
    r = concise(["--exit-zero", "bad.py"])
    assert r.code == 0
    assert codes_at(r.out) == [("bad.py", 3, "TL202")]  # still reported


def test_exit_zero_does_not_hide_errors(proj):
    r = concise(["--exit-zero", "bad.py", "missing.py"])
    assert r.code == 2


def test_missing_path_exit_2_but_others_linted(proj):
    r = concise(["missing.py", "bad.py"])
    assert r.code == 2
    assert codes_at(r.out) == [("bad.py", 3, "TL202")]
    assert "missing.py" in r.out + r.err
    assert "no such file" in (r.out + r.err).lower()


def test_syntax_error_is_a_finding_exit_1(proj):
    write(proj / "broken.py", SYNTAX_ERROR)
    r = concise(["broken.py", "bad.py"])
    assert r.code == 1
    assert sorted(codes_at(r.out)) == [("bad.py", 3, "TL202"), ("broken.py", 2, "TL001")]


# -- rule selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], ["TL202"]),
        (["--select", "TL202"], ["TL202"]),
        (["--select", "TL2"], ["TL202"]),
        (["--select", "TL"], ["TL202"]),
        (["--select", "ALL"], ["TL202"]),
        (["--select", "tl202"], ["TL202"]),
        (["--select", "TL0"], []),
        (["--select", "TL001"], []),
        (["--ignore", "TL202"], []),
        (["--ignore", "TL2"], []),
        (["--ignore", "ALL"], []),
        # the most specific selector wins, whichever list it is in
        (["--select", "TL2", "--ignore", "TL202"], []),
        (["--select", "TL202", "--ignore", "TL2"], ["TL202"]),
        (["--ignore", "TL2", "--extend-select", "TL202"], ["TL202"]),
        (["--select", "TL0", "--extend-select", "TL202"], ["TL202"]),
        # comma-separated and repeated
        (["--select", "TL001,TL202"], ["TL202"]),
        (["--select", "TL001, TL202"], ["TL202"]),
        (["--select", "TL001", "--select", "TL202"], ["TL202"]),
        (["--ignore", "TL001,TL202"], []),
        (["--ignore", "TL001", "--ignore", "TL202"], []),
    ],
)
def test_selection(proj, args, expected):
    r = concise([*args, "bad.py"])
    assert [c for _, _, c in codes_at(r.out)] == expected
    assert r.code == (1 if expected else 0)


def test_select_applies_to_syntax_errors_too(proj):
    write(proj / "broken.py", SYNTAX_ERROR)
    assert codes_at(concise(["broken.py"]).out) == [("broken.py", 2, "TL001")]
    r = concise(["--ignore", "TL001", "broken.py"])
    assert r.code == 0 and codes_at(r.out) == []
    r = concise(["--select", "TL2", "broken.py"])
    assert r.code == 0 and codes_at(r.out) == []


@pytest.mark.parametrize(
    "option, value, named",
    [
        ("--select", "TL999", "TL999"),
        ("--select", "TL202,TL998", "TL998"),
        ("--ignore", "E501", "E501"),
        ("--extend-select", "TL9", "TL9"),
        ("--select", "BOGUS", "BOGUS"),
    ],
)
def test_unknown_code_is_a_usage_error(proj, option, value, named):
    r = run([option, value, "bad.py"])
    assert r.code == 2
    assert named in r.err
    assert option in r.err
    assert "TL202" not in r.out  # nothing was linted


def test_cli_selection_overrides_config(proj):
    write(proj / "pyproject.toml", '[tool.trainlint]\nignore = ["TL202"]\n')
    assert concise(["bad.py"]).code == 0
    assert codes_at(concise(["--extend-select", "TL202", "bad.py"]).out) == [("bad.py", 3, "TL202")]
    assert codes_at(concise(["--select", "TL2", "bad.py"]).out) == [("bad.py", 3, "TL202")]


def test_cli_select_replaces_config_select(proj):
    write(proj / "pyproject.toml", '[tool.trainlint]\nselect = ["TL0"]\n')
    assert concise(["bad.py"]).code == 0
    assert concise(["--select", "TL202", "bad.py"]).code == 1


# -- severity -------------------------------------------------------------------------------------


def test_severity_threshold_drops_info(proj):
    write(proj / "pyproject.toml", '[tool.trainlint]\nseverity = { TL202 = "info" }\n')
    r = run(["bad.py"])
    assert r.code == 1
    assert "TL202 [info]" in r.out
    r = run(["--severity", "warning", "bad.py"])
    assert r.code == 0
    assert "TL202" not in r.out
    r = run(["--severity", "info", "bad.py"])
    assert r.code == 1


def test_severity_threshold_keeps_errors(proj):
    r = concise(["--severity", "error", "bad.py"])
    assert r.code == 1
    assert codes_at(r.out) == [("bad.py", 3, "TL202")]
    assert concise(["--severity", "ERROR", "bad.py"]).code == 1  # case-insensitive


def test_severity_rejects_unknown_level(proj):
    r = run(["--severity", "loud", "bad.py"])
    assert r.code == 2
    assert "loud" in r.err


def test_cli_severity_overrides_config_min_severity(proj):
    write(proj / "pyproject.toml", '[tool.trainlint]\nseverity = { TL202 = "info" }\nmin-severity = "warning"\n')
    assert concise(["bad.py"]).code == 0
    assert concise(["--severity", "info", "bad.py"]).code == 1


# -- output shape: statistics, quiet, formats -----------------------------------------------------


def test_statistics(proj):
    write(proj / "sub" / "more.py", BAD)
    r = run(["--statistics", "bad.py", "sub"])
    assert r.code == 1
    lines = r.out.splitlines()
    assert lines[0].split() == ["2", "TL202", "loss-clipped-not-gradients"]
    assert "torch.clamp" not in r.out  # no source excerpts
    assert "Found 2 findings" in r.out


def test_statistics_quiet_prints_only_the_table(proj):
    r = run(["--statistics", "-q", "bad.py"])
    assert r.code == 1
    assert [line.split() for line in r.out.splitlines()] == [["1", "TL202", "loss-clipped-not-gradients"]]


def test_statistics_when_clean(proj):
    r = run(["--statistics", "clean.py"])
    assert r.code == 0
    assert "TL202" not in r.out


def test_quiet_prints_findings_only(proj):
    (proj / "empty_dir").mkdir()
    r = run(["-q", "bad.py", "clean.py", "empty_dir"])
    assert r.code == 1
    assert r.out.splitlines()[0].startswith("bad.py:3:")  # -q keeps the format (ruff): the full block
    assert sum(1 for line in r.out.splitlines() if line.startswith(("bad.py:", "clean.py:"))) == 1
    assert "Found" not in r.out and "All checks passed" not in r.out
    assert "warning" not in r.err  # the empty folder warning is silenced


def test_quiet_clean_prints_nothing(proj):
    r = run(["--quiet", "clean.py"])
    assert r.code == 0
    assert r.out == ""


def test_quiet_still_reports_errors_once(proj):
    r = run(["-q", "missing.py"])
    assert r.code == 2
    assert (r.out + r.err).count("missing.py") == 1


def test_full_format_shows_source_and_summary(proj):
    r = run(["bad.py"])
    assert "loss = torch.clamp(criterion(model(x), y), max=10.0)" in r.out
    assert "^^^" in r.out
    assert r.out.rstrip().endswith("Found 1 finding (1 error) in 1 file.\n"
                                   "No fixes available (1 hidden fix can be enabled with the `--unsafe-fixes` option).")


def test_output_format_json(proj):
    r = run(["--output-format", "json", "bad.py", "clean.py"])
    assert r.code == 1
    data = json.loads(r.out)
    assert [(d["code"], d["path"], d["line"]) for d in data] == [("TL202", "bad.py", 3)]


def test_unknown_output_format(proj):
    r = run(["--output-format", "jsonn", "bad.py"])
    assert r.code == 2
    assert "jsonn" in r.err and "json" in r.err


def test_env_var_selects_format(proj):
    r = run(["bad.py"], env={"TRAINLINT_OUTPUT_FORMAT": "json"})
    assert json.loads(r.out)[0]["code"] == "TL202"
    r = run(["bad.py"], env={"TRAINLINT_OUTPUT_FORMAT": "json-lines"})
    assert json.loads(r.out.splitlines()[0])["line"] == 3


def test_cli_format_flag_beats_env_var(proj):
    r = run(["--output-format", "concise", "bad.py"], env={"TRAINLINT_OUTPUT_FORMAT": "json"})
    assert codes_at(r.out) == [("bad.py", 3, "TL202")]
    with pytest.raises(ValueError):
        json.loads(r.out)


def test_bad_env_var_format_is_a_usage_error(proj):
    r = run(["bad.py"], env={"TRAINLINT_OUTPUT_FORMAT": "xml"})
    assert r.code == 2
    assert "xml" in r.err


def test_config_output_format_and_env_var_beats_it(proj):
    write(proj / "pyproject.toml", '[tool.trainlint]\noutput-format = "json"\n')
    assert json.loads(run(["bad.py"]).out)[0]["code"] == "TL202"
    r = run(["bad.py"], env={"TRAINLINT_OUTPUT_FORMAT": "concise"})
    assert codes_at(r.out) == [("bad.py", 3, "TL202")]


# -- output file and color -----------------------------------------------------------------------


def test_output_file(proj):
    r = run(["-o", "report.txt", "bad.py"])
    assert r.code == 1
    assert r.out == ""
    text = (proj / "report.txt").read_text(encoding="utf-8")
    assert "bad.py:3:" in text and "TL202" in text
    assert ANSI not in text


def test_output_file_json(proj):
    r = run(["--output-file", "out.json", "--output-format", "json", "bad.py"])
    assert r.code == 1
    assert json.loads((proj / "out.json").read_text(encoding="utf-8"))[0]["line"] == 3


def test_output_file_in_missing_folder_is_an_error(proj):
    r = run(["-o", str(proj / "no" / "such" / "dir" / "out.txt"), "bad.py"])
    assert r.code == 2
    assert "out.txt" in r.err or "no" in r.err


@pytest.mark.parametrize("fmt", ["full", "concise"])
def test_color_never_and_auto_when_piped(proj, fmt):
    for args in (["--color", "never"], ["--color", "auto"], []):
        r = run([*args, "--output-format", fmt, "bad.py"])
        assert ANSI not in r.out, args
        assert ANSI not in r.err, args


@pytest.mark.parametrize("fmt", ["full", "concise"])
def test_color_always(proj, fmt):
    r = run(["--color", "always", "--output-format", fmt, "bad.py"])
    assert ANSI in r.out
    assert "TL202" in r.out


def test_color_never_beats_force_color(proj):
    r = run(["--color", "never", "bad.py"], env={"FORCE_COLOR": "1"})
    assert ANSI not in r.out


def test_no_color_env_var(proj):
    r = run(["bad.py"], env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert ANSI not in r.out


def test_machine_formats_never_colored(proj):
    r = run(["--color", "always", "--output-format", "json", "bad.py"])
    assert ANSI not in r.out
    json.loads(r.out)


def test_color_rejects_unknown_choice(proj):
    assert run(["--color", "sometimes", "bad.py"]).code == 2


# -- config flags ------------------------------------------------------------------------------------


def test_config_flag_uses_that_file(proj, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("cfg")
    cfg = write(elsewhere / "custom.toml", 'ignore = ["TL202"]\n')
    assert concise(["bad.py"]).code == 1
    assert concise(["--config", str(cfg), "bad.py"]).code == 0


def test_config_flag_beats_discovered_config(proj, tmp_path_factory):
    write(proj / "pyproject.toml", '[tool.trainlint]\nignore = ["TL202"]\n')
    cfg = write(tmp_path_factory.mktemp("cfg") / "pyproject.toml", "[tool.trainlint]\n")
    assert concise(["bad.py"]).code == 0
    assert concise(["--config", str(cfg), "bad.py"]).code == 1


def test_config_flag_missing_file(proj):
    r = run(["--config", "nope.toml", "bad.py"])
    assert r.code == 2
    assert "nope.toml" in r.err


def test_isolated_ignores_config(proj):
    write(proj / "pyproject.toml", '[tool.trainlint]\nignore = ["TL202"]\n')
    assert concise(["bad.py"]).code == 0
    assert codes_at(concise(["--isolated", "bad.py"]).out) == [("bad.py", 3, "TL202")]


def test_isolated_ignores_even_a_broken_config(proj):
    write(proj / "pyproject.toml", "[tool.trainlint]\nselect = [\n")
    assert run(["bad.py"]).code == 2
    assert concise(["--isolated", "bad.py"]).code == 1


# -- stdin -------------------------------------------------------------------------------------------


def test_stdin_dash(proj):
    r = concise(["-"], input=BAD.encode())
    assert r.code == 1
    assert codes_at(r.out) == [("-", 3, "TL202")]


def test_stdin_clean(proj):
    r = concise(["-"], input=CLEAN.encode())
    assert r.code == 0
    assert r.out == ""


def test_stdin_filename_names_the_findings(proj):
    r = concise(["--stdin-filename", "src/train.py", "-"], input=BAD.encode())
    assert r.code == 1
    assert codes_at(r.out) == [("src/train.py", 3, "TL202")]


def test_stdin_filename_alone_reads_stdin(proj):
    r = concise(["--stdin-filename", "train.py"], input=BAD.encode())
    assert codes_at(r.out) == [("train.py", 3, "TL202")]


def test_stdin_filename_does_not_read_the_file(proj):
    # The editor's buffer is what counts, not the file on disk.
    r = concise(["--stdin-filename", "bad.py", "-"], input=CLEAN.encode())
    assert r.code == 0


def test_stdin_per_file_ignores_apply_to_the_name(proj):
    write(proj / "pyproject.toml", '[tool.trainlint]\nper-file-ignores = { "tests/*" = ["TL202"] }\n')
    r = concise(["--stdin-filename", "tests/test_train.py", "-"], input=BAD.encode())
    assert r.code == 0, r
    r = concise(["--stdin-filename", "src/train.py", "-"], input=BAD.encode())
    assert r.code == 1


def test_stdin_config_found_from_the_name(proj, tmp_path_factory):
    # The editor runs from anywhere; the config is found next to the named file.
    project = tmp_path_factory.mktemp("project")
    write(project / "pyproject.toml", '[tool.trainlint]\nignore = ["TL202"]\n')
    name = str(project / "pkg" / "train.py")
    assert concise(["--stdin-filename", name, "-"], input=BAD.encode()).code == 0


def test_stdin_syntax_error(proj):
    r = concise(["--stdin-filename", "x.py", "-"], input=SYNTAX_ERROR.encode())
    assert r.code == 1
    assert codes_at(r.out) == [("x.py", 2, "TL001")]


def test_stdin_undecodable(proj):
    r = run(["--stdin-filename", "x.py", "-"], input=b"\xff\xfe garbage\n")
    assert r.code == 2
    assert "x.py" in r.err
    assert "decode" in r.err


def test_stdin_latin1_with_cookie(proj):
    data = b"# -*- coding: latin-1 -*-\ns = 'caf\xe9'\n" + BAD.encode()
    r = concise(["-"], input=data)
    assert codes_at(r.out) == [("-", 5, "TL202")]


def test_stdin_crlf(proj):
    r = concise(["-"], input=BAD.replace("\n", "\r\n").encode())
    assert r.out.startswith("-:3:12: TL202")


def test_stdin_cannot_be_combined_with_paths(proj):
    r = run(["-", "bad.py"], input=BAD.encode())
    assert r.code == 2
    assert "stdin" in r.err


# -- no tracebacks ---------------------------------------------------------------------------------


def test_internal_error_is_exit_2_without_traceback(proj, monkeypatch):
    import trainlint.engine

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(trainlint.engine, "lint_paths", boom)
    r = run(["bad.py"])
    assert r.code == 2
    assert "internal error" in r.err and "kaboom" in r.err


def test_a_crashing_rule_is_reported_not_raised(proj, monkeypatch):
    from trainlint.rules import registry

    cls = registry()["TL202"]

    def boom(self, ctx):
        raise ValueError("rule exploded")

    monkeypatch.setattr(cls, "check", boom)
    r = concise(["bad.py"])
    assert r.code == 2
    assert "TL202" in r.out + r.err and "rule exploded" in r.out + r.err


# -- other commands ----------------------------------------------------------------------------------


def test_version():
    r = run(["--version"])
    assert r.code == 0
    assert "trainlint" in r.out


def test_help():
    r = run(["--help"])
    assert r.code == 0
    assert "check" in r.out


def test_rule_command(proj):
    r = run(["rule", "TL202"])
    assert r.code == 0
    assert "loss-clipped-not-gradients" in r.out or "TL202" in r.out
    r = run(["rule", "TL999"])
    assert r.code == 2
    assert "TL999" in r.err


# -- the real console script ---------------------------------------------------------------------------


def _script() -> List[str]:
    exe = Path(sys.executable).with_name("trainlint")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("trainlint")
    if found:
        return [found]
    return [sys.executable, "-m", "trainlint"]


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRAINLINT_OUTPUT_FORMAT", "NO_COLOR", "FORCE_COLOR")}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def sh(args: List[str], cwd: Path, input: Optional[bytes] = None, env: Optional[Dict[str, str]] = None):
    # The real registry here: pin the rules so that rules added later do not change the counts.
    pinned = ["--select", ",".join(c for c in RULE_SET if c != "TL002")]
    proc = subprocess.run(
        [*_script(), *pinned, *args], cwd=cwd, input=input, capture_output=True, timeout=120, env=env or _env()
    )
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out and "Traceback" not in err, (out, err)
    return proc.returncode, out, err


def test_script_exit_codes(proj):
    assert sh(["clean.py"], proj)[0] == 0
    code, out, _ = sh(["bad.py"], proj)
    assert code == 1 and "bad.py:3:" in out
    code, _, err = sh(["--select", "TL999", "bad.py"], proj)
    assert code == 2 and "TL999" in err
    code, out, err = sh(["missing.py", "bad.py"], proj)
    assert code == 2 and "bad.py:3:" in out and "missing.py" in out + err
    assert sh(["--exit-zero", "bad.py"], proj)[0] == 0


def test_script_stdin_for_editors(proj):
    code, out, err = sh(["--output-format", "concise", "--stdin-filename", "pkg/train.py", "-"], proj, input=BAD.encode())
    assert code == 1
    assert out.splitlines() == [line for line in out.splitlines() if line.startswith("pkg/train.py:3:12: TL202 ")]
    assert len(out.splitlines()) == 1


def test_script_piped_output_has_no_color(proj):
    code, out, err = sh(["bad.py"], proj)
    assert ANSI not in out and ANSI not in err
    code, out, _ = sh(["--color", "always", "bad.py"], proj)
    assert ANSI in out


def test_script_env_var_format(proj):
    env = _env()
    env["TRAINLINT_OUTPUT_FORMAT"] = "json"
    code, out, _ = sh(["bad.py"], proj, env=env)
    assert code == 1
    assert json.loads(out)[0]["line"] == 3


def test_script_never_prints_a_traceback(proj):
    write(proj / "broken.py", "def f(:\n")
    (proj / "undecodable.py").write_bytes(b"\xff\xfe garbage\n")
    (proj / "nul.py").write_bytes(b"x = 1\x00\n")
    write(proj / "deep.py", "x = " + "(" * 300 + ")" * 300 + "\n")
    code, out, err = sh(["."], proj)
    assert code == 2  # the undecodable file
    assert "undecodable.py" in out + err
    assert "bad.py:3:" in out and "broken.py:1:" in out
    write(proj / "pyproject.toml", "[tool.trainlint]\nselect = [\n")
    code, out, err = sh(["."], proj)
    assert code == 2 and "invalid TOML" in err and "pyproject.toml" in err


def test_python_dash_m(proj):
    proc = subprocess.run(
        [sys.executable, "-m", "trainlint", "--select", "TL001,TL202", "--output-format", "concise", "bad.py"],
        cwd=proj, capture_output=True, text=True, timeout=120, env=_env(),
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith("bad.py:3:12: TL202")
