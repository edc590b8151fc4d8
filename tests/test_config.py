"""Configuration: `[tool.trainlint]` in pyproject.toml (or trainlint.toml), found by walking up from the
linted path; every key, and every way a configuration can be wrong (exit 2, a message naming the key)."""

from __future__ import annotations

import inspect
import json
import os
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.config import (
    DEFAULT_EXCLUDE,
    Config,
    ConfigError,
    Selection,
    find_config,
    load_config,
    resolve_config,
    validate_selectors,
)
from trainlint.findings import Severity
from trainlint.rules import registry

BAD = textwrap.dedent(
    """\
    import torch
    for x, y in loader:
        loss = torch.clamp(criterion(model(x), y), max=10.0)
        loss.backward()
    """
)
CODES = ["TL001", "TL002", "TL202"]  # (RULE_SET)

RULE_SET = ("TL001", "TL002", "TL202")  # see _fixed_rule_set


def _runner() -> CliRunner:
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


class Run:
    def __init__(self, result) -> None:
        self.code = result.exit_code
        self.out = result.stdout
        self.err = result.stderr

    def __repr__(self) -> str:
        return f"<Run code={self.code} out={self.out!r} err={self.err!r}>"


def run(args: List[str], env: Optional[Dict[str, str]] = None) -> Run:
    r = Run(_runner().invoke(main, ["--output-format", "concise", *args], env=env, catch_exceptions=False))
    assert "Traceback" not in r.out + r.err, r
    return r


def found(r: Run) -> List[tuple]:
    out = []
    for line in r.out.splitlines():
        if ": TL" in line:
            head, rest = line.split(": ", 1)
            path, ln, _ = head.rsplit(":", 2)
            out.append((Path(path).as_posix(), int(ln), rest.split()[0]))
    return sorted(out)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def pyproject(folder: Path, body: str) -> Path:
    return write(folder / "pyproject.toml", "[tool.trainlint]\n" + textwrap.dedent(body))


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
    write(tmp_path / "src" / "train.py", BAD)
    write(tmp_path / "tests" / "test_train.py", BAD)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- discovery ---------------------------------------------------------------------------------------


def test_pyproject_is_found_walking_up_from_the_linted_path(proj, tmp_path_factory, monkeypatch):
    pyproject(proj, 'ignore = ["TL202"]\n')
    assert run(["src"]).code == 0
    # From another folder entirely: the config next to the linted files still applies.
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert run([str(proj / "src")]).code == 0
    assert run([str(proj / "src" / "train.py")]).code == 0


def test_config_found_from_a_subfolder_cwd(proj, monkeypatch):
    pyproject(proj, 'ignore = ["TL202"]\n')
    monkeypatch.chdir(proj / "src")
    assert run([]).code == 0
    assert run(["train.py"]).code == 0


def test_pyproject_without_our_table_is_skipped(proj):
    pyproject(proj, 'ignore = ["TL202"]\n')
    write(proj / "src" / "pyproject.toml", '[project]\nname = "x"\n[tool.black]\nline-length = 100\n')
    assert run(["src"]).code == 0  # the outer file, with [tool.trainlint], applies


def test_nearest_config_wins(proj):
    pyproject(proj, 'ignore = ["TL202"]\n')
    pyproject(proj / "src", "")  # an empty [tool.trainlint]: nothing ignored
    assert found(run(["src"])) == [("src/train.py", 3, "TL202")]
    assert run(["tests"]).code == 0


def test_trainlint_toml(proj):
    write(proj / "trainlint.toml", 'ignore = ["TL202"]\n')
    assert run(["src"]).code == 0


def test_dot_trainlint_toml(proj):
    write(proj / ".trainlint.toml", 'ignore = ["TL202"]\n')
    assert run(["src"]).code == 0


def test_trainlint_toml_with_tool_table(proj):
    write(proj / "trainlint.toml", '[tool.trainlint]\nignore = ["TL202"]\n')
    assert run(["src"]).code == 0


def test_trainlint_toml_beats_pyproject_in_the_same_folder(proj):
    pyproject(proj, 'ignore = ["TL202"]\n')
    write(proj / "trainlint.toml", "select = [\"ALL\"]\n")
    assert run(["src"]).code == 1


def test_find_config_unit(tmp_path):
    cfg = pyproject(tmp_path, "")
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_config(tmp_path / "a" / "b") == cfg.resolve()
    assert find_config(tmp_path / "a" / "b" / "not_there.py") == cfg.resolve()


def test_resolve_config_uses_common_folder_of_paths(tmp_path):
    pyproject(tmp_path, 'ignore = ["TL202"]\n')
    write(tmp_path / "a" / "x.py", "")
    write(tmp_path / "b" / "y.py", "")
    cfg = resolve_config(None, [str(tmp_path / "a" / "x.py"), str(tmp_path / "b")], CODES)
    assert cfg.path == (tmp_path / "pyproject.toml").resolve()
    assert "TL202" not in cfg.enabled_codes(CODES)


def test_resolve_config_isolated(tmp_path):
    pyproject(tmp_path, 'ignore = ["TL202"]\n')
    cfg = resolve_config(None, [str(tmp_path)], CODES, isolated=True)
    assert cfg.path is None
    assert "TL202" in cfg.enabled_codes(CODES)


# -- the keys --------------------------------------------------------------------------------------------


def test_select(proj):
    pyproject(proj, 'select = ["TL0"]\n')
    assert run(["src"]).code == 0
    pyproject(proj, 'select = ["TL2"]\n')
    assert run(["src"]).code == 1


def test_select_as_comma_string(proj):
    pyproject(proj, 'select = "TL001, TL202"\n')
    assert run(["src"]).code == 1


def test_extend_select(proj):
    pyproject(proj, 'select = ["TL0"]\nextend-select = ["TL202"]\n')
    assert found(run(["src"])) == [("src/train.py", 3, "TL202")]


def test_ignore_most_specific_wins(proj):
    pyproject(proj, 'ignore = ["TL2"]\nextend-select = ["TL202"]\n')
    assert run(["src"]).code == 1
    pyproject(proj, 'select = ["TL2"]\nignore = ["TL202"]\n')
    assert run(["src"]).code == 0


def test_per_file_ignores(proj):
    pyproject(proj, '[tool.trainlint.per-file-ignores]\n"tests/*" = ["TL202"]\n')
    assert found(run([])) == [("src/train.py", 3, "TL202")]


def test_per_file_ignores_prefix_and_globstar(proj):
    write(proj / "src" / "deep" / "test_more.py", BAD)
    pyproject(proj, '[tool.trainlint.per-file-ignores]\n"**/test_*.py" = ["TL2"]\n')
    assert found(run([])) == [("src/train.py", 3, "TL202")]


def test_per_file_ignores_relative_to_the_config_not_the_cwd(proj, monkeypatch):
    pyproject(proj, '[tool.trainlint.per-file-ignores]\n"tests/*" = ["TL202"]\n')
    monkeypatch.chdir(proj / "src")
    assert run([str(Path("..") / "tests")]).code == 0
    assert run([str(Path("..") / "tests" / "test_train.py")]).code == 0
    assert run(["."]).code == 1


def test_per_file_ignores_all(proj):
    pyproject(proj, '[tool.trainlint.per-file-ignores]\n"src/train.py" = ["ALL"]\n')
    assert found(run([])) == [("tests/test_train.py", 3, "TL202")]


def test_exclude_replaces_the_defaults(proj):
    write(proj / "build" / "gen.py", BAD)
    assert ("build/gen.py", 3, "TL202") not in found(run([]))
    pyproject(proj, 'exclude = ["tests/"]\n')
    assert found(run([])) == [("build/gen.py", 3, "TL202"), ("src/train.py", 3, "TL202")]


def test_extend_exclude_keeps_the_defaults(proj):
    write(proj / "build" / "gen.py", BAD)
    pyproject(proj, 'extend-exclude = ["tests/"]\n')
    assert found(run([])) == [("src/train.py", 3, "TL202")]


def test_exclude_glob_patterns(proj):
    write(proj / "src" / "legacy" / "old.py", BAD)
    write(proj / "src" / "old_gen.py", BAD)
    pyproject(proj, 'extend-exclude = ["src/legacy/", "*_gen.py", "tests"]\n')
    assert found(run([])) == [("src/train.py", 3, "TL202")]


def test_severity_overrides(proj):
    pyproject(proj, 'severity = { TL202 = "warning" }\n')
    r = run(["--output-format", "json", "src"])
    assert [d["severity"] for d in json.loads(r.out)] == ["warning"]


def test_severity_prefix_and_most_specific(proj):
    pyproject(proj, 'severity = { TL2 = "info", TL202 = "warning" }\n')
    r = run(["--output-format", "json", "src"])
    assert [d["severity"] for d in json.loads(r.out)] == ["warning"]
    pyproject(proj, 'severity = { TL2 = "info" }\n')
    r = run(["--output-format", "json", "src"])
    assert [d["severity"] for d in json.loads(r.out)] == ["info"]


def test_severity_override_shows_in_sarif_rules(proj):
    pyproject(proj, 'severity = { TL202 = "info" }\n')
    run_ = json.loads(run(["--output-format", "sarif", "src"]).out)["runs"][0]
    levels = {r["id"]: r["defaultConfiguration"]["level"] for r in run_["tool"]["driver"]["rules"]}
    assert levels["TL202"] == "note"
    assert [r["level"] for r in run_["results"]] == ["note"]


def test_min_severity(proj):
    pyproject(proj, 'severity = { TL202 = "info" }\nmin-severity = "warning"\n')
    assert run(["src"]).code == 0
    pyproject(proj, 'min-severity = "error"\n')
    assert run(["src"]).code == 1


def test_output_format(proj):
    pyproject(proj, 'output-format = "json"\n')
    r = Run(_runner().invoke(main, ["src"], catch_exceptions=False))
    assert json.loads(r.out)[0]["code"] == "TL202"


def test_respect_gitignore(proj):
    (proj / ".git").mkdir()
    write(proj / ".gitignore", "tests/\n")
    assert found(run([])) == [("src/train.py", 3, "TL202")]
    pyproject(proj, "respect-gitignore = false\n")
    assert found(run([])) == [("src/train.py", 3, "TL202"), ("tests/test_train.py", 3, "TL202")]


def test_report_unused_suppressions(proj):
    write(proj / "src" / "ok.py", "x = 1  # noqa: TL202\n")
    assert found(run(["src/ok.py"])) == []
    pyproject(proj, "report-unused-suppressions = true\n")
    assert found(run(["src/ok.py"])) == [("src/ok.py", 1, "TL002")]


def test_all_known_keys_together(proj):
    pyproject(
        proj,
        """\
        select = ["ALL"]
        extend-select = ["TL202"]
        ignore = ["TL002"]
        exclude = ["build"]
        extend-exclude = ["dist"]
        min-severity = "info"
        output-format = "concise"
        respect-gitignore = true
        report-unused-suppressions = false
        [tool.trainlint.per-file-ignores]
        "tests/*" = ["TL202"]
        [tool.trainlint.severity]
        TL2 = "warning"
        """,
    )
    assert found(run([])) == [("src/train.py", 3, "TL202")]


# -- errors: exit 2 and a message naming the problem -------------------------------------------------


@pytest.mark.parametrize(
    "body, words",
    [
        ('selct = ["TL2"]\n', ["selct", "unknown key"]),
        ('select_ = ["TL2"]\n', ["select_"]),
        ('per_file_ignores = {}\n', ["per_file_ignores", "per-file-ignores"]),  # did you mean
        ('[tool.trainlint.lint]\nselect = ["TL2"]\n', ["lint"]),
        ('select = ["TL999"]\n', ["TL999", "select"]),
        ('select = ["E501"]\n', ["E501"]),
        ('ignore = ["TL9"]\n', ["TL9", "ignore"]),
        ('extend-select = ["XX1"]\n', ["XX1", "extend-select"]),
        ('[tool.trainlint.per-file-ignores]\n"tests/*" = ["TL998"]\n', ["TL998", "per-file-ignores"]),
        ('[tool.trainlint.per-file-ignores]\n"tests/*" = 5\n', ["per-file-ignores"]),
        ('per-file-ignores = ["tests/*"]\n', ["per-file-ignores"]),
        ('[tool.trainlint.severity]\nTL202 = "fatal"\n', ["fatal", "severity"]),
        ('[tool.trainlint.severity]\nTL777 = "info"\n', ["TL777", "severity"]),
        ('severity = "info"\n', ["severity"]),
        ('min-severity = "loud"\n', ["loud", "min-severity"]),
        ('output-format = "jsn"\n', ["jsn", "output-format"]),
        ('output-format = ["json"]\n', ["output-format"]),
        ('output-format = 3\n', ["output-format"]),
        ('select = 5\n', ["select"]),
        ('select = [5]\n', ["select"]),
        ('exclude = "build"\n', ["exclude"]),
        ('exclude = ["!"]\n', ["exclude", "'!'"]),
        ('extend-exclude = [1]\n', ["extend-exclude"]),
        ('[tool.trainlint.per-file-ignores]\n"!" = ["TL202"]\n', ["per-file-ignores", "'!'"]),
        ('respect-gitignore = "yes"\n', ["respect-gitignore"]),
        ('report-unused-suppressions = 1\n', ["report-unused-suppressions"]),
    ],
)
def test_bad_config_is_a_usage_error(proj, body, words):
    pyproject(proj, body)
    r = run(["src"])
    assert r.code == 2, r
    assert "pyproject.toml" in r.err
    for w in words:
        assert w in r.err, (w, r.err)
    assert "TL202" not in r.out  # nothing linted


def test_unknown_key_message_lists_the_known_keys(proj):
    pyproject(proj, "colour = true\n")
    r = run(["src"])
    assert r.code == 2
    assert "colour" in r.err and "per-file-ignores" in r.err


@pytest.mark.parametrize(
    "text",
    [
        "[tool.trainlint]\nselect = [\n",
        "[tool.trainlint]\nselect = TL202\n",
        "[tool.trainlint\n",
        "[tool.trainlint]\nselect = ['TL202']\nselect = ['TL001']\n",  # duplicate key
    ],
)
def test_invalid_toml(proj, text):
    write(proj / "pyproject.toml", text)
    r = run(["src"])
    assert r.code == 2
    assert "invalid TOML" in r.err
    assert "pyproject.toml" in r.err


def test_invalid_trainlint_toml(proj):
    write(proj / "trainlint.toml", "select = [\n")
    r = run(["src"])
    assert r.code == 2
    assert "trainlint.toml" in r.err and "invalid TOML" in r.err


def test_broken_pyproject_that_is_not_ours_is_skipped(proj):
    # Someone else's broken pyproject.toml without [tool.trainlint]: not our problem.
    write(proj / "src" / "pyproject.toml", "[project\nname = \n")
    r = run(["src"])
    assert r.code == 1
    assert found(r) == [("src/train.py", 3, "TL202")]


def test_explicit_config_with_non_table_tool(proj):
    cfg = write(proj / "cfg" / "pyproject.toml", 'tool = "x"\n')
    r = run(["--config", str(cfg), "src"])
    assert r.code == 1  # no [tool.trainlint]: defaults
    other = write(proj / "cfg" / "custom.toml", 'tool = "x"\n')
    r = run(["--config", str(other), "src"])
    assert r.code == 2 and "tool" in r.err


def test_pyproject_with_non_table_trainlint(proj):
    write(proj / "pyproject.toml", "[tool]\ntrainlint = 5\n")
    r = run(["src"])
    assert r.code == 2
    assert "table" in r.err


def test_config_error_on_stdin_too(proj):
    pyproject(proj, 'selct = ["TL2"]\n')
    r = Run(_runner().invoke(main, ["--stdin-filename", "src/x.py", "-"], input=BAD.encode(), catch_exceptions=False))
    assert r.code == 2 and "selct" in r.err


# -- the selection model, unit-level ----------------------------------------------------------------


def _config(*layers: Selection) -> Config:
    return Config(layers=list(layers))


def test_enabled_defaults_exclude_tl002():
    enabled = _config(Selection()).enabled_codes(CODES)
    assert "TL202" in enabled and "TL001" in enabled
    assert "TL002" not in enabled


def test_enabled_select_all_includes_tl002():
    assert "TL002" in _config(Selection(select=["ALL"])).enabled_codes(CODES)


def test_enabled_layers():
    file_layer = Selection(ignore=["TL202"])
    cli_layer = Selection(extend_select=["TL2"])
    assert "TL202" not in _config(file_layer).enabled_codes(CODES)
    assert "TL202" in _config(file_layer, cli_layer).enabled_codes(CODES)
    # a later select starts over
    assert _config(Selection(select=["TL202"]), Selection(select=["TL001"])).enabled_codes(CODES) == ["TL001"]


def test_ignore_wins_a_tie():
    assert "TL202" not in _config(Selection(select=["TL202"], ignore=["TL202"])).enabled_codes(CODES)


def test_validate_selectors():
    assert validate_selectors(["tl2", " TL202 ", "ALL", "all"], "x", CODES) == ["TL2", "TL202", "ALL", "ALL"]
    assert validate_selectors("TL001,TL202", "x", CODES) == ["TL001", "TL202"]
    with pytest.raises(ConfigError, match="TL999"):
        validate_selectors(["TL999"], "--select", CODES)
    with pytest.raises(ConfigError, match="F401"):
        validate_selectors(["F401"], "--select", CODES)
    with pytest.raises(ConfigError):
        validate_selectors(7, "x", CODES)


def test_severity_of():
    cfg = Config(severity={"TL2": Severity.INFO, "TL202": Severity.WARNING, "ALL": Severity.ERROR})
    assert cfg.severity_of("TL202", Severity.ERROR) == Severity.WARNING
    assert cfg.severity_of("TL201", Severity.ERROR) == Severity.INFO
    assert cfg.severity_of("TL001", Severity.WARNING) == Severity.ERROR
    assert Config().severity_of("TL202", Severity.ERROR) == Severity.ERROR


def test_load_config_root_is_the_config_folder(tmp_path):
    cfg = load_config(pyproject(tmp_path / "p", 'exclude = ["x"]\n'), CODES)
    assert cfg.root == (tmp_path / "p").resolve()
    assert cfg.exclude == ["x"]
    assert cfg.extend_exclude == []


def test_default_config():
    cfg = Config()
    assert "build" in cfg.exclude and "node_modules" in cfg.exclude and ".venv" in cfg.exclude
    assert tuple(cfg.exclude) == DEFAULT_EXCLUDE
    assert cfg.respect_gitignore is True
    assert cfg.report_unused_suppressions is False
    assert cfg.min_severity == Severity.INFO


def test_ignored_for_file():
    cfg = Config(per_file_ignores=[("tests/*", ["TL202"]), ("**/conftest.py", ["ALL"])])
    assert cfg.ignored_for_file("tests/test_x.py") == ["TL202"]
    assert cfg.ignored_for_file("a/b/conftest.py") == ["ALL"]
    assert cfg.ignored_for_file("src/train.py") == []
