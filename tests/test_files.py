"""Which files a run lints (path discovery), and how it copes with files that are hard to read:
syntax errors, undecodable bytes, encodings, BOMs, CRLF line endings, symlinks."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List, Optional

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.config import Config, load_config
from trainlint.files import discover, display_path, glob_matches
from trainlint.rules import registry
from trainlint.source import SourceError, decode, read_source

BAD = textwrap.dedent(
    """\
    import torch
    for x, y in loader:
        loss = torch.clamp(criterion(model(x), y), max=10.0)
        loss.backward()
    """
)
CLEAN = "x = 1\n"
HAS_SYMLINKS = hasattr(os, "symlink") and sys.platform != "win32"

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

    @property
    def findings(self) -> List[tuple]:
        out = []
        for line in self.out.splitlines():
            if ": TL" in line:
                head, rest = line.split(": ", 1)
                path, ln, col = head.rsplit(":", 2)
                out.append((Path(path).as_posix(), int(ln), rest.split()[0]))
        return sorted(out)

    @property
    def paths(self) -> List[str]:
        return sorted({p for p, _, _ in self.findings})


def run(*args: str, input: Optional[bytes] = None) -> Run:
    r = Run(_runner().invoke(main, ["--output-format", "concise", *args], input=input, catch_exceptions=False))
    assert "Traceback" not in r.out + r.err, r
    return r


def write(path: Path, text: str = BAD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def found(paths: List[str], config: Optional[Config] = None) -> List[str]:
    """The display paths discover() picks, '/'-separated and sorted."""
    d = discover(paths, config or Config())
    return sorted(Path(display).as_posix() for _, display in d.files)


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
def tree(tmp_path, monkeypatch):
    """A project folder (the cwd) that is not a git repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def git_init(folder: Path) -> None:
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(folder)], check=True, capture_output=True)
    else:  # pragma: no cover - what discovery looks for
        (folder / ".git").mkdir()


# -- what a folder walk picks ------------------------------------------------------------------------


def test_recursive_py_files(tree):
    for name in ["a.py", "pkg/__init__.py", "pkg/sub/deep/m.py", "stubs/s.pyi"]:
        write(tree / name, CLEAN)
    for name in ["notes.txt", "setup.cfg", "script", "pkg/data.json", "x.py.bak", "nb.pyc"]:
        write(tree / name, CLEAN)
    assert found(["."]) == ["a.py", "pkg/__init__.py", "pkg/sub/deep/m.py", "stubs/s.pyi"]


def test_skips_hidden_folders(tree):
    write(tree / "ok.py")
    write(tree / ".hidden" / "h.py")
    write(tree / ".tox" / "py311" / "t.py")
    write(tree / "pkg" / ".cache" / "c.py")
    assert found(["."]) == ["ok.py"]
    assert run().paths == ["ok.py"]


def test_skips_virtualenvs_by_pyvenv_cfg(tree):
    write(tree / "ok.py")
    write(tree / "my-env" / "pyvenv.cfg", "home = /usr/bin\n")
    write(tree / "my-env" / "lib" / "python3.11" / "site-packages" / "torch" / "x.py")
    write(tree / "pkg" / "envs" / "e1" / "pyvenv.cfg", "")
    write(tree / "pkg" / "envs" / "e1" / "bin" / "tool.py")
    assert found(["."]) == ["ok.py"]


@pytest.mark.parametrize(
    "folder", ["build", "dist", "node_modules", "__pycache__", "venv", ".venv", "site-packages", "_build", "__pypackages__", "pkg/build"]
)
def test_skips_default_excluded_folders(tree, folder):
    write(tree / "ok.py")
    write(tree / folder / "gen.py")
    assert found(["."]) == ["ok.py"]


def test_gitignore_in_a_git_repo(tree):
    git_init(tree)
    write(tree / ".gitignore", "generated/\n*_pb2.py\n/scratch.py\n")
    write(tree / "ok.py")
    write(tree / "generated" / "g.py")
    write(tree / "pkg" / "model_pb2.py")
    write(tree / "scratch.py")
    write(tree / "pkg" / "scratch.py")  # "/scratch.py" is anchored to the top
    assert found(["."]) == ["ok.py", "pkg/scratch.py"]
    r = run()
    assert r.paths == ["ok.py", "pkg/scratch.py"] and r.code == 1


def test_nested_gitignore(tree):
    git_init(tree)
    write(tree / "pkg" / ".gitignore", "local_*.py\ncache/\n")
    write(tree / "pkg" / "model.py")
    write(tree / "pkg" / "local_experiment.py")
    write(tree / "pkg" / "cache" / "c.py")
    write(tree / "local_top.py")  # not under pkg/: the nested file does not apply
    assert found(["."]) == ["local_top.py", "pkg/model.py"]


def test_nested_gitignore_can_reinclude(tree):
    git_init(tree)
    write(tree / ".gitignore", "secret_*.py\n")
    write(tree / "pkg" / ".gitignore", "!secret_ok.py\n")
    write(tree / "secret_a.py")
    write(tree / "pkg" / "secret_b.py")
    write(tree / "pkg" / "secret_ok.py")
    assert found(["."]) == ["pkg/secret_ok.py"]


def test_gitignore_of_the_repo_applies_when_linting_a_subfolder(tree, monkeypatch):
    git_init(tree)
    write(tree / ".gitignore", "generated/\n")
    write(tree / "src" / "ok.py")
    write(tree / "src" / "generated" / "g.py")
    assert found(["src"]) == ["src/ok.py"]
    monkeypatch.chdir(tree / "src")
    assert found(["."]) == ["ok.py"]
    assert run().paths == ["ok.py"]


def test_git_info_exclude(tree):
    git_init(tree)
    (tree / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (tree / ".git" / "info" / "exclude").write_text("mine.py\n")
    write(tree / "ok.py")
    write(tree / "mine.py")
    assert found(["."]) == ["ok.py"]


def test_gitignore_outside_a_git_repo(tree):
    write(tree / ".gitignore", "generated/\n")
    write(tree / "pkg" / ".gitignore", "*_tmp.py\n")
    write(tree / "ok.py")
    write(tree / "generated" / "g.py")
    write(tree / "pkg" / "x_tmp.py")
    write(tree / "pkg" / "y.py")
    assert found(["."]) == ["ok.py", "pkg/y.py"]


def test_gitignore_outside_git_repo_from_the_config_root(tree):
    # Not a git repository, but a project: `trainlint src` skips what `trainlint .` skips.
    write(tree / "pyproject.toml", "[tool.trainlint]\n")
    write(tree / ".gitignore", "generated/\n")
    write(tree / "src" / "ok.py")
    write(tree / "src" / "generated" / "g.py")
    cfg = load_config(tree / "pyproject.toml", list(registry()))
    assert found(["."], cfg) == ["src/ok.py"]
    assert found(["src"], cfg) == ["src/ok.py"]
    assert run("src").paths == ["src/ok.py"]


def test_respect_gitignore_false(tree):
    git_init(tree)
    write(tree / ".gitignore", "generated/\n")
    write(tree / "generated" / "g.py")
    write(tree / "ok.py")
    assert found(["."], Config(respect_gitignore=False)) == ["generated/g.py", "ok.py"]


def test_config_exclude(tree):
    write(tree / "pyproject.toml", '[tool.trainlint]\nextend-exclude = ["legacy/", "*_old.py"]\n')
    write(tree / "ok.py")
    write(tree / "legacy" / "l.py")
    write(tree / "pkg" / "model_old.py")
    assert run().paths == ["ok.py"]


def test_config_exclude_anchored_pattern_from_a_subfolder(tree, monkeypatch):
    write(tree / "pyproject.toml", '[tool.trainlint]\nextend-exclude = ["src/legacy/"]\n')
    write(tree / "src" / "ok.py")
    write(tree / "src" / "legacy" / "old.py")
    write(tree / "tests" / "t.py", CLEAN)
    assert run("src").paths == ["src/ok.py"]
    monkeypatch.chdir(tree / "tests")
    # the pattern is relative to the config file, however the path is spelled
    r = run(os.path.join("..", "src"))
    assert [Path(p).name for p in r.paths] == ["ok.py"]
    assert run(os.path.join("..", "src", "legacy", "old.py")).findings == []


def test_folder_above_the_project_named_like_a_default_exclude(tmp_path, monkeypatch):
    # /…/build/project/train.py linted from elsewhere: the "build" default must not swallow it.
    project = tmp_path / "build" / "project"
    write(project / "train.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = run(str(project))
    assert r.code == 1 and [Path(p).name for p in r.paths] == ["train.py"]
    assert run(str(project / "train.py")).code == 1


# -- explicitly named paths --------------------------------------------------------------------------


def test_explicit_files_are_linted_even_when_a_walk_would_skip_them(tree):
    git_init(tree)
    write(tree / ".gitignore", "ignored.py\n")
    write(tree / "ignored.py")
    write(tree / ".hidden" / "h.py")
    write(tree / "script", BAD)  # no suffix
    assert found(["."]) == []
    r = run("ignored.py", ".hidden/h.py", "script")
    assert r.paths == [".hidden/h.py", "ignored.py", "script"]
    assert r.code == 1


def test_explicit_hidden_folder_is_walked(tree):
    write(tree / ".config" / "train.py")
    assert run(".config").paths == [".config/train.py"]


def test_explicit_file_excluded_by_config(tree):
    write(tree / "pyproject.toml", '[tool.trainlint]\nextend-exclude = ["legacy/"]\n')
    write(tree / "legacy" / "old.py")
    write(tree / "new.py")
    r = run("legacy/old.py", "new.py")
    assert r.paths == ["new.py"]


def test_same_file_twice_is_linted_once(tree):
    write(tree / "a.py")
    r = run("a.py", "a.py", ".", "./a.py")
    assert r.findings == [("a.py", 3, "TL202")]


def test_missing_path_is_exit_2_and_others_still_linted(tree):
    write(tree / "a.py")
    r = run("nope.py", "a.py", "nodir/")
    assert r.code == 2
    assert r.findings == [("a.py", 3, "TL202")]
    text = r.out + r.err
    assert "nope.py" in text and "nodir" in text


def test_folder_without_python_files_warns(tree):
    write(tree / "docs" / "readme.md", "# hi\n")
    r = run("docs")
    assert r.code == 0
    assert "warning" in r.err and "docs" in r.err
    d = discover(["docs"], Config())
    assert d.files == [] and d.errors == [] and any("docs" in w for w in d.warnings)


def test_empty_folder_and_a_file(tree):
    (tree / "empty").mkdir()
    write(tree / "a.py")
    r = run("empty", "a.py")
    assert r.code == 1 and r.paths == ["a.py"]
    assert "empty" in r.err


def test_display_paths_are_relative_to_the_cwd(tree, monkeypatch):
    write(tree / "pkg" / "a.py")
    assert found([str(tree / "pkg")]) == ["pkg/a.py"]
    assert display_path(tree / "pkg" / "a.py") == os.path.join("pkg", "a.py")


def test_glob_matches():
    assert glob_matches("tests/*", "tests/test_a.py")
    assert glob_matches("*.py", "a/b/c.py")
    assert glob_matches("**/conftest.py", "a/b/conftest.py")
    assert not glob_matches("/top.py", "a/top.py")


# -- symlinks --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_SYMLINKS, reason="needs symlinks")
def test_symlink_loop_warns_and_terminates(tree):
    write(tree / "a" / "x.py")
    os.symlink("..", tree / "a" / "up")  # a/up -> . : a loop
    os.symlink(".", tree / "a" / "self")
    r = run(".")
    assert r.findings == [("a/x.py", 3, "TL202")]
    assert "loop" in r.err
    d = discover(["."], Config())
    assert len(d.files) == 1 and any("loop" in w for w in d.warnings)


@pytest.mark.skipif(not HAS_SYMLINKS, reason="needs symlinks")
def test_mutual_symlink_loop(tree):
    write(tree / "x" / "a.py")
    write(tree / "y" / "b.py")
    os.symlink(os.path.join("..", "y"), tree / "x" / "to_y")
    os.symlink(os.path.join("..", "x"), tree / "y" / "to_x")
    r = run(".")
    assert [Path(p).name for p in r.paths] == ["a.py", "b.py"]
    assert len(r.findings) == 2  # each file once, whatever the route to it


@pytest.mark.skipif(not HAS_SYMLINKS, reason="needs symlinks")
def test_symlinked_folder_is_followed(tree, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "lib.py")
    os.symlink(outside, tree / "linked")
    assert run(".").paths == ["linked/lib.py"]


@pytest.mark.skipif(not HAS_SYMLINKS, reason="needs symlinks")
def test_broken_symlink_in_a_folder_warns(tree):
    write(tree / "ok.py")
    os.symlink("does_not_exist.py", tree / "dangling.py")
    r = run(".")
    assert r.code == 1 and r.paths == ["ok.py"]
    assert "dangling.py" in r.err and "broken" in r.err


@pytest.mark.skipif(not HAS_SYMLINKS, reason="needs symlinks")
def test_broken_symlink_named_explicitly_is_an_error(tree):
    write(tree / "ok.py")
    os.symlink("does_not_exist.py", tree / "dangling.py")
    r = run("dangling.py", "ok.py")
    assert r.code == 2
    assert r.paths == ["ok.py"]
    assert "dangling.py" in r.out + r.err and "broken" in r.out + r.err


# -- bad input ---------------------------------------------------------------------------------------------


def test_syntax_error_is_one_tl001_at_its_line_and_others_still_linted(tree):
    write(tree / "broken.py", "import torch\n\ndef f(:\n    pass\n")
    write(tree / "ok.py")
    r = run(".")
    assert r.code == 1
    assert r.findings == [("broken.py", 3, "TL001"), ("ok.py", 3, "TL202")]
    assert "Syntax error" in r.out


@pytest.mark.parametrize(
    "text, line",
    [
        ("x = 1\nfor x in y\n    pass\n", 2),  # missing colon
        ("x = 1\ny = )\n", 2),  # unmatched bracket (a tokenizer error in libcst)
        ("x = 1\nz = (1,\n", 2),  # never closed
        ("x = 1\ns = 'abc\n", 2),  # unterminated string
        ("def f():\n\tif x:\n        pass\n\tpass\n", 3),  # inconsistent tabs
        ("x = 1\n  y = 2\n", 2),  # unexpected indent
        ("print `x`\n", 1),  # Python 2 backticks (print statements alone are read: tests/test_parsing.py)
        ("a = 1\nb = 2\nc = 3\nreturn = 4\n", 4),
        ("x = 1\r\ny = )\r\n", 2),  # CRLF
    ],
)
def test_syntax_error_line(tree, text, line):
    (tree / "broken.py").write_bytes(text.encode())
    r = run("broken.py")
    assert r.code == 1
    assert r.findings == [("broken.py", line, "TL001")]


def test_syntax_error_column_is_on_the_line(tree):
    write(tree / "broken.py", "x = 1\nfor x in y\n    pass\n")
    r = run("broken.py")
    (line,) = r.out.splitlines()
    col = int(line.split(":")[2])
    assert 1 <= col <= len("for x in y") + 1


def test_syntax_error_in_full_format_shows_the_line(tree):
    write(tree / "broken.py", "x = 1\nfor x in y\n    pass\n")
    r = Run(_runner().invoke(main, ["broken.py"], catch_exceptions=False))
    assert "for x in y" in r.out
    assert "TL001" in r.out


def test_null_bytes(tree):
    (tree / "nul.py").write_bytes(b"x = 1\x00\n")
    write(tree / "ok.py")
    r = run(".")
    assert ("ok.py", 3, "TL202") in r.findings
    assert r.code in (1, 2)  # a finding or a file error, but never a crash


def test_deeply_nested_expression(tree):
    write(tree / "deep.py", "x = " + "(" * 500 + "1" + ")" * 500 + "\n")
    write(tree / "ok.py")
    r = run(".")
    assert ("ok.py", 3, "TL202") in r.findings


def test_undecodable_file_is_exit_2_and_named(tree):
    (tree / "garbage.py").write_bytes(b"\xff\xfe garbage\n")
    write(tree / "ok.py")
    r = run(".")
    assert r.code == 2
    assert r.findings == [("ok.py", 3, "TL202")]
    text = r.out + r.err
    assert "garbage.py" in text
    assert "decode" in text and "utf-8" in text.lower()


def test_undecodable_byte_later_in_the_file(tree):
    (tree / "garbage.py").write_bytes(b"x = 1\ny = 2\ns = '\xff'\n")
    r = run("garbage.py")
    assert r.code == 2
    assert "garbage.py" in r.out + r.err and "line 3" in r.out + r.err


def test_undecodable_file_in_full_format(tree):
    (tree / "garbage.py").write_bytes(b"\xff\xfe garbage\n")
    r = Run(_runner().invoke(main, ["garbage.py"], catch_exceptions=False))
    assert r.code == 2
    assert "garbage.py" in r.out + r.err
    assert "could not be checked" in r.out


def test_unknown_coding_cookie(tree):
    (tree / "odd.py").write_bytes(b"# -*- coding: klingon -*-\nx = 1\n")
    r = run("odd.py")
    assert r.code == 2
    assert "odd.py" in r.out + r.err and "klingon" in r.out + r.err


def test_latin1_with_coding_cookie(tree):
    (tree / "lat.py").write_bytes(b"# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n" + BAD.encode("latin-1"))
    r = run("lat.py")
    assert r.findings == [("lat.py", 5, "TL202")]
    assert decode(b"# coding: latin-1\ns = '\xe9'\n", "x.py").endswith("s = '\u00e9'\n")


def test_empty_file_is_clean(tree):
    (tree / "empty.py").write_bytes(b"")
    r = run("empty.py")
    assert r.code == 0 and r.out == ""


def test_whitespace_and_comment_only_files_are_clean(tree):
    write(tree / "blank.py", "\n\n   \n")
    write(tree / "comment.py", "# just a comment")  # no final newline
    assert run("blank.py", "comment.py").code == 0


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_utf8_bom(tree, newline):
    (tree / "bom.py").write_bytes(b"\xef\xbb\xbf" + BAD.replace("\n", newline).encode())
    r = run("bom.py")
    assert r.out.splitlines() == [line for line in r.out.splitlines() if line.startswith("bom.py:3:12: TL202 ")]
    assert len(r.out.splitlines()) == 1
    assert read_source(str(tree / "bom.py"), "bom.py").text.startswith("import torch")


def test_crlf_positions(tree):
    (tree / "crlf.py").write_bytes(BAD.replace("\n", "\r\n").encode())
    (tree / "lf.py").write_bytes(BAD.encode())
    r = run("crlf.py", "lf.py")
    lines = sorted(r.out.splitlines())
    assert lines[0].startswith("crlf.py:3:12: TL202 ")
    assert lines[1].startswith("lf.py:3:12: TL202 ")
    assert lines[0].split(" ", 1)[1] == lines[1].split(" ", 1)[1]


def test_crlf_in_full_format_has_no_stray_carriage_returns(tree):
    (tree / "crlf.py").write_bytes(BAD.replace("\n", "\r\n").encode())
    r = Run(_runner().invoke(main, ["crlf.py"], catch_exceptions=False))
    assert "\r" not in r.out
    assert "loss = torch.clamp(criterion(model(x), y), max=10.0)" in r.out


def test_non_ascii_before_the_finding_keeps_columns(tree):
    text = BAD.replace("    loss = torch.clamp", "    é = 1; loss = torch.clamp")
    write(tree / "u.py", text)
    r = run("u.py")
    (line,) = r.out.splitlines()
    assert line.startswith("u.py:3:")
    assert int(line.split(":")[2]) == text.splitlines()[2].index("torch.clamp") + 1


def test_decode_unit():
    assert decode(b"x = 1\n", "a.py") == "x = 1\n"
    assert decode(b"\xef\xbb\xbfx = 1\n", "a.py") == "x = 1\n"
    with pytest.raises(SourceError, match="utf-8"):
        decode(b"\xff\xfe garbage\n", "a.py")
    with pytest.raises(SourceError, match="klingon"):
        decode(b"# coding: klingon\n", "a.py")


def test_read_source_errors(tree):
    with pytest.raises(SourceError, match="no such file"):
        read_source(str(tree / "nope.py"), "nope.py")
    (tree / "d").mkdir()
    with pytest.raises(SourceError):
        read_source(str(tree / "d"), "d")


def test_unreadable_file(tree, monkeypatch):
    """A file the user cannot read: its own error (exit 2), the others still linted. Permissions
    cannot stop root (CI runs as root), so the denial is simulated where the source is opened."""
    import os

    p = write(tree / "secret.py")
    write(tree / "ok.py")
    real_open = os.open
    denied = []

    def guarded_open(path, *args, **kwargs):
        if str(path).endswith("secret.py"):
            denied.append(path)
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    r = run(".")
    assert r.code == 2
    assert "secret.py" in r.out + r.err and "permission" in (r.out + r.err).lower()
    assert r.paths == ["ok.py"]
    assert p.exists()
    assert denied  # the denial was really met (the test cannot pass by not reaching it)


def test_stdin_with_bom_and_crlf(tree):
    r = run("-", input=b"\xef\xbb\xbf" + BAD.replace("\n", "\r\n").encode())
    assert r.findings == [("-", 3, "TL202")]
    assert r.out.startswith("-:3:12:")
