"""One odd file never costs the run (issue 14, static path): deep nesting, huge inputs, files that are
not files, inputs that used to abort the whole run. Each class: the odd file gets its own message, the
other files are still linted, the exit code follows ruff (0 clean, 1 findings, 2 an error), nothing hangs.

Cases that could hang or kill the interpreter run in a subprocess with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import libcst as cst
import pytest

from trainlint.config import ConfigError, load_config, parse_size
from trainlint.parsing import MAX_NESTING, LiteralTooLong, TooDeep, check_nesting, nesting_depth

REPO = Path(__file__).resolve().parents[1]
#: A realistic program with a TL101 finding: rules that ask for positions and fold values run on it.
PROGRAM = (REPO / "fixtures" / "tl101_house_price_relu_output" / "train.py").read_text(encoding="utf-8")
BAD = textwrap.dedent(
    """\
    import torch
    for x, y in loader:
        loss = torch.clamp(criterion(model(x), y), max=10.0)
        loss.backward()
    """
)  # TL202 at line 3: the proof that the other files were linted
POSIX = sys.platform != "win32"


def cli(*args: str, cwd: Path, timeout: float = 60, module: bool = True) -> subprocess.CompletedProcess:
    """`python -m trainlint check ARGS` in ``cwd``; a hang fails the test (TimeoutExpired)."""
    cmd = [sys.executable, "-m", "trainlint", "check", *args]
    env = dict(os.environ, NO_COLOR="1", PYTHONIOENCODING="utf-8")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout, env=env, text=True, errors="replace")


def codes(proc: subprocess.CompletedProcess) -> list:
    return [line.split(": ", 1)[1].split()[0] for line in proc.stdout.splitlines() if ": TL" in line]


def write(path: Path, text: str = BAD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- deep nesting ------------------------------------------------------------------------------------

DEEP = {
    "attribute_chain_400": "x = a" + ".b" * 400 + "\n",
    "elif_chain_500": "if x == 0:\n    pass\n" + "".join(f"elif x == {i}:\n    pass\n" for i in range(1, 500)),
    "parentheses_1500": "x = " + "(" * 1500 + "1" + ")" * 1500 + "\n",
    "binop_chain_400": "x = 1" + " + 1" * 400 + "\n",
    "call_chain_400": "x = f" + "()" * 400 + "\n",
    "lambda_chain_400": "x = " + "lambda: " * 400 + "1\n",
    "nested_list_300": "x = " + "[" * 150 + "]" * 150 + "\n",
    "fstring_chain_400": 'x = f"{a' + ".b" * 400 + '}"\n',
    "chain_20000": "x = a" + ".b" * 20000 + "\n",  # crashed libcst's native parser (C stack)
}


@pytest.mark.parametrize("name", sorted(DEEP))
def test_deep_file_is_refused_alone_and_the_others_are_linted(tmp_path, name):
    write(tmp_path / "deep.py", PROGRAM + DEEP[name])
    write(tmp_path / "other.py")
    proc = cli("--isolated", ".", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc  # never 2 (an error), never -11 (the interpreter died)
    assert "other.py:3:" in proc.stdout and "TL202" in codes(proc), proc.stdout
    assert "internal error" not in proc.stdout + proc.stderr
    if name == "parentheses_1500":  # Python itself refuses more than 200 nested parentheses
        assert "deep.py" in proc.stdout and "TL001" in codes(proc)
    else:
        assert "deep.py: skipped: too deeply nested to analyse" in proc.stderr, proc.stderr


def test_nesting_estimate_is_cheap_and_bounded():
    # Real code stays well under the limit; each class of chain is caught just past it.
    assert nesting_depth(PROGRAM) is None
    assert nesting_depth("x = a" + ".b" * (MAX_NESTING - 10) + "\n") is None
    assert nesting_depth("x = [" + ", ".join(["a.b.c"] * 5000) + "]\n") is None  # long, not deep
    assert nesting_depth("x = (" + " + ".join(["1"] * 5000) + ")\n") is not None
    with pytest.raises(TooDeep) as info:
        check_nesting("if a:\n    pass\n" + "elif b:\n    pass\n" * (MAX_NESTING + 1))
    assert info.value.line > 1 and "levels" in str(info.value)
    # A file Python's tokenizer cannot read is left to the parser (it reports a syntax error).
    assert nesting_depth("x = (\n") is None
    with pytest.raises(LiteralTooLong):
        check_nesting("x = " + "9" * 5000 + "\n")


def test_token_cap_follows_max_file_size():
    from trainlint.engine import Options, lint_source
    from trainlint.config import Config, Selection
    from trainlint.parsing import TooManyTokens, max_tokens_for
    from trainlint.source import SourceFile

    text = "x = [" + ", ".join(["1"] * 3000) + "]\n"  # ~6,000 tokens
    with pytest.raises(TooManyTokens):
        check_nesting(text, MAX_NESTING, 5000)
    check_nesting(text, MAX_NESTING, 10_000)
    assert max_tokens_for(1024 * 1024) > 100_000  # the default: a 10,000-line file of real code fits
    config = Config(layers=[Selection()], max_file_size=40_000)  # 4,000 tokens
    result = lint_source(SourceFile("data.py", text), Options(config=config, enabled=["TL001"]))
    assert result.error is None and "data.py: skipped: too large to analyse (more than 4,000 tokens" in result.warning


def test_error_handler_does_not_recurse_on_a_libcst_node():
    from trainlint.engine import describe_exception

    deep = cst.parse_expression("a" + ".b" * 300)  # its repr recurses 300 levels
    text = describe_exception(KeyError(deep))
    assert text == "KeyError: a Attribute object"
    assert describe_exception(RecursionError("x" * 10_000)) == "RecursionError: maximum recursion depth exceeded"

    class Broken(Exception):
        def __str__(self):
            raise RecursionError

    assert describe_exception(Broken()) == "Broken: (message unavailable)"
    assert len(describe_exception(ValueError("y" * 100_000))) < 400


def test_span_of_a_foreign_node_is_a_short_error():
    from trainlint.context import FileContext
    from trainlint.source import SourceFile

    ctx = FileContext(SourceFile("a.py", "x = 1\n"), cst.parse_module("x = 1\n"))
    foreign = cst.parse_expression("a" + ".b" * 300)
    with pytest.raises(LookupError) as info:
        ctx.span(foreign)
    assert len(str(info.value)) < 200 and "Attribute" in str(info.value)


def test_a_folder_nested_deeper_than_the_stack_is_walked(tmp_path):
    from trainlint.config import Config, Selection
    from trainlint.files import discover

    folders = [tmp_path / "d"]
    for _ in range(300):  # (os.makedirs itself recurses)
        folders.append(folders[-1] / "d")
    frames = 0
    frame = sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    limit = sys.getrecursionlimit()
    try:
        for folder in folders:
            folder.mkdir()
        write(folders[-1] / "deep.py")
        # 300 folders deep, 150 frames to spare: a walk that recursed per folder would fail.
        sys.setrecursionlimit(frames + 150)
        try:
            found = discover([str(tmp_path)], Config(layers=[Selection()], root=tmp_path))
        finally:
            sys.setrecursionlimit(limit)
        assert [Path(real).name for real, _ in found.files] == ["deep.py"] and not found.errors
    finally:  # bottom-up: shutil.rmtree (pytest's clean-up) recurses too
        (folders[-1] / "deep.py").unlink(missing_ok=True)
        for folder in reversed(folders):
            if folder.exists():
                folder.rmdir()


# -- huge inputs ---------------------------------------------------------------------------------------


def test_max_file_size_skips_a_big_file_with_a_warning(tmp_path):
    write(tmp_path / "big.py", BAD + "# " + "x" * (1024 * 1024) + "\n")  # over the 1 MiB default
    write(tmp_path / "other.py")
    proc = cli("--isolated", ".", cwd=tmp_path)
    assert proc.returncode == 1 and codes(proc) == ["TL202"] and "other.py:3:" in proc.stdout
    assert "big.py: skipped: the file is 1 MiB, over max-file-size (1 MiB)" in proc.stderr
    # Configurable: raised, the big file is linted too; lowered, the small one is skipped.
    (tmp_path / "trainlint.toml").write_text('max-file-size = "2MB"\n', encoding="utf-8")
    proc = cli(".", cwd=tmp_path)
    assert proc.returncode == 1 and codes(proc) == ["TL202", "TL202"], proc
    assert "skipped" not in proc.stderr
    (tmp_path / "trainlint.toml").write_text("max-file-size = 100\n", encoding="utf-8")
    proc = cli(".", cwd=tmp_path)
    assert proc.returncode == 0 and "other.py: skipped: the file is 110 bytes, over max-file-size (100 bytes)" in proc.stderr


def test_max_file_size_values(tmp_path):
    assert parse_size(1000, "k") == 1000
    assert parse_size("2MB", "k") == 2_000_000
    assert parse_size("512 KiB", "k") == 524_288
    assert parse_size("1.5mib", "k") == int(1.5 * 1024 * 1024)
    for bad in ("huge", "-1", 0, True, [1], "1 parsec"):
        with pytest.raises(ConfigError) as info:
            parse_size(bad, "trainlint.toml max-file-size")
        assert "max-file-size" in str(info.value)
    path = tmp_path / "trainlint.toml"
    path.write_text('max-file-size = "lots"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="max-file-size"):
        load_config(path, ["TL001"])


def test_values_are_never_folded_into_huge_objects():
    from trainlint.analysis.facts import extract
    from trainlint.analysis.values import fold

    code = "a = (1,) * 10**10\nb = 10**64 * 10**64 * 10**64\nc = (10**60) ** 60\nd = len((0,) * 10**12)\ne = 7 * 6\n"
    module = cst.parse_module(code)
    facts = extract(module)
    values = {}
    for stmt in module.body:
        assign = stmt.body[0]
        folded = fold(assign.value, facts, facts.module, None)
        values[assign.targets[0].target.value] = None if folded is None else folded.value
    assert values["a"] is None and values["d"] is None and values["c"] is None
    assert values["e"] == 42


def test_huge_number_literal_is_a_message_not_a_crash(tmp_path):
    write(tmp_path / "digits.py", PROGRAM + "x = " + "9" * 5000 + "\nprint(x)\n")
    write(tmp_path / "other.py")
    proc = cli("--isolated", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "other.py:3:" in proc.stdout
    assert "internal error" not in proc.stdout + proc.stderr
    if sys.version_info >= (3, 11):  # Python refuses the literal: a syntax error
        assert any(line.startswith("digits.py:") and "TL001" in line for line in proc.stdout.splitlines())
    else:
        assert "digits.py: skipped" in proc.stderr


# -- files that are not files ---------------------------------------------------------------------------


@pytest.mark.skipif(not POSIX, reason="FIFOs and /dev/zero are POSIX")
def test_fifos_and_devices_are_never_read(tmp_path):
    write(tmp_path / "train.py", "import mod\nimport zero\n" + BAD)
    os.mkfifo(tmp_path / "mod.py")  # imported: opening it to read would wait for a writer forever
    os.symlink("/dev/zero", tmp_path / "zero.py")  # imported: an endless file
    os.mkfifo(tmp_path / ".gitignore")
    proc = cli("--isolated", ".", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and codes(proc) == ["TL202"], proc
    assert ".gitignore: ignored: not a regular file (a FIFO)" in proc.stderr
    assert "skipped mod.py: not a regular file" in proc.stderr
    assert "skipped zero.py: not a regular file" in proc.stderr
    # Named on the command line: an error each (exit 2), the other file still linted.
    proc = cli("--isolated", "mod.py", "zero.py", "train.py", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and codes(proc) == ["TL202"]
    assert "mod.py: error: not a regular file" in proc.stdout and "zero.py: error: not a regular file" in proc.stdout
    # The file named .gitignore in a git repository too.
    (tmp_path / ".git").mkdir()
    proc = cli(".", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and codes(proc) == ["TL202"]


@pytest.mark.skipif(not POSIX, reason="FIFOs are POSIX")
def test_config_that_is_a_fifo(tmp_path):
    write(tmp_path / "train.py")
    os.mkfifo(tmp_path / "cfg.toml")
    proc = cli("--config", "cfg.toml", "train.py", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "cfg.toml: not a regular file (a FIFO)" in proc.stderr
    os.remove(tmp_path / "cfg.toml")
    os.mkfifo(tmp_path / "trainlint.toml")  # found by the search, not named
    proc = cli("train.py", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "trainlint.toml: not a regular file (a FIFO)" in proc.stderr


def test_read_regular_refuses_what_is_not_a_file(tmp_path):
    from trainlint.source import FileTooLarge, SourceError, read_regular

    write(tmp_path / "a.py", "x = 1\n")
    assert read_regular(str(tmp_path / "a.py"), 100) == b"x = 1\n"
    with pytest.raises(FileTooLarge):
        read_regular(str(tmp_path / "a.py"), 3)
    with pytest.raises(SourceError, match="is a directory"):
        read_regular(str(tmp_path), 100)
    if POSIX:
        with pytest.raises(SourceError, match="a device"):
            read_regular("/dev/zero", 100)


@pytest.mark.skipif(not POSIX, reason="symlinks")
def test_symlink_diamond_is_walked_once_per_folder(tmp_path):
    # l0 holds a file; each level l<i> has two links to l<i-1>: 2^20 paths to the same file.
    write(tmp_path / "l0" / "m.py")
    for i in range(1, 21):
        (tmp_path / f"l{i}").mkdir()
        for name in ("x", "y"):
            os.symlink(f"../l{i - 1}", tmp_path / f"l{i}" / name)
    proc = cli("--isolated", "l20", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and codes(proc) == ["TL202"], proc


# -- whole-run aborts that are per-file messages ---------------------------------------------------------


def test_unreadable_sub_folder(tmp_path, monkeypatch):
    """Permissions cannot stop root (CI runs as root): the denial is simulated at the system calls that
    meet it (listing the folder, examining what is in it)."""
    from click.testing import CliRunner

    from trainlint.cli import main

    write(tmp_path / "ok.py")
    write(tmp_path / "locked" / "inner" / "secret.py")
    locked = str(tmp_path / "locked")
    met = []
    real_scandir, real_stat = os.scandir, os.stat

    def denied(path) -> bool:
        p = os.path.abspath(os.fspath(path))
        if p == locked or p.startswith(locked + os.sep):
            met.append(p)
            return True
        return False

    def scandir(path="."):
        if denied(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def stat(path, *args, **kwargs):
        if isinstance(path, (str, bytes, os.PathLike)) and os.fspath(path) != locked and denied(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "--isolated", "."])
    assert met  # the denial was really met
    assert result.exit_code == 2, result.output
    assert "locked: error: permission denied" in result.output
    assert "ok.py:3:" in result.output and "TL202" in result.output
    assert "internal error" not in result.output


def test_invalid_gitignore_lines_are_skipped_with_a_warning(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("!\nfoo\\\nignored.py\n", encoding="utf-8")
    write(tmp_path / "ignored.py")
    write(tmp_path / "kept.py")
    proc = cli(".", cwd=tmp_path)
    assert proc.returncode == 1 and codes(proc) == ["TL202"] and "kept.py:3:" in proc.stdout, proc
    assert ".gitignore:1: ignored the invalid pattern '!'" in proc.stderr
    assert ".gitignore:2: ignored the invalid pattern 'foo\\\\'" in proc.stderr


FORMATS = ["full", "concise", "json", "json-lines", "sarif", "github", "gitlab", "junit"]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system that takes any bytes in a name")
@pytest.mark.parametrize("fmt", FORMATS)
def test_file_name_that_is_not_utf8(tmp_path, fmt):
    name = os.fsdecode(b"tr\xffain.py")
    write(tmp_path / name)
    write(tmp_path / "ok.py")
    for extra in ([], ["-o", "report.out"]) if fmt in ("full", "sarif", "junit") else ([],):
        proc = cli("--isolated", "--output-format", fmt, *extra, ".", cwd=tmp_path)
        assert proc.returncode == 1, proc
        assert "internal error" not in proc.stderr
        out = (tmp_path / "report.out").read_text(encoding="utf-8") if extra else proc.stdout
        assert "ok.py" in out and "tr" in out
        if fmt == "sarif":
            data = json.loads(out)
            uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in data["runs"][0]["results"]}
            assert uris == {"ok.py", "tr%FFain.py"}
        elif fmt in ("json", "gitlab"):
            assert len(json.loads(out)) == 2
        elif fmt == "junit":
            import xml.dom.minidom

            xml.dom.minidom.parseString(out.encode("utf-8"))


def test_notebooks_with_odd_json(tmp_path):
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "source": BAD, "execution_count": None}
    big_int = json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    big_int = big_int.replace('"nbformat": 4', '"nbformat": 4, "x": ' + "9" * 5000)
    (tmp_path / "bigint.ipynb").write_text(big_int, encoding="utf-8")
    (tmp_path / "deep.ipynb").write_text('{"cells": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    write(tmp_path / "other.py")
    proc = cli("--isolated", ".", cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert "deep.ipynb: error: invalid notebook: its JSON is nested too deeply to read" in proc.stdout
    assert "other.py:3:" in proc.stdout
    assert any(line.startswith("bigint.ipynb:") and "TL202" in line for line in proc.stdout.splitlines()), proc.stdout
    assert "internal error" not in proc.stdout + proc.stderr


@pytest.mark.skipif(not POSIX, reason="symlinks")
def test_symlink_loop_named_on_the_command_line(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    write(tmp_path / "ok.py")
    proc = cli("--isolated", "loop", "a", "loop/x.py", "ok.py", cwd=tmp_path)
    assert proc.returncode == 2 and codes(proc) == ["TL202"], proc
    for name in ("loop", "a", "loop/x.py"):
        assert f"{name}: error: symbolic link loop" in proc.stdout
    proc = cli("--isolated", ".", cwd=tmp_path)  # met while walking: a warning, the rest linted
    assert proc.returncode == 1 and codes(proc) == ["TL202"], proc


def test_config_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "trainlint.toml").write_bytes(b'select = ["TL2"]\n# caf\xe9\n')
    write(tmp_path / "ok.py")
    proc = cli("ok.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "trainlint.toml: not UTF-8 (byte b'\\xe9'" in proc.stderr and "internal error" not in proc.stderr


def test_unreadable_file_named_explicitly(tmp_path, monkeypatch):
    """Named on the command line and unreadable: its own error, the other files linted (not a usage
    error that skips every file). Denied at the open call, as root would not be."""
    from click.testing import CliRunner

    from trainlint.cli import main

    write(tmp_path / "secret.py")
    write(tmp_path / "ok.py")
    real_open = os.open
    met = []

    def guarded(path, *args, **kwargs):
        if os.fspath(path).endswith("secret.py"):
            met.append(path)
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "--isolated", "secret.py", "ok.py"])
    assert met
    assert result.exit_code == 2, result.output
    assert "secret.py: error: permission denied" in result.output
    assert "ok.py:3:" in result.output


# -- the command line --------------------------------------------------------------------------------------


def test_empty_select_is_a_usage_error(tmp_path):
    write(tmp_path / "ok.py")
    for value in ("", " , "):
        proc = cli("--isolated", "--select", value, "ok.py", cwd=tmp_path)
        assert proc.returncode == 2
        assert "--select needs at least one rule code" in proc.stderr and "All checks passed" not in proc.stdout


def test_empty_select_in_the_config_is_an_error(tmp_path):
    write(tmp_path / "ok.py")
    for value in ("[]", '""'):
        (tmp_path / "trainlint.toml").write_text(f"select = {value}\n", encoding="utf-8")
        proc = cli("ok.py", cwd=tmp_path)
        assert proc.returncode == 2 and "trainlint.toml select: an empty selection checks nothing" in proc.stderr


def test_python_m_trainlint_ignores_modules_in_the_current_folder(tmp_path):
    for shadow in ("click", "libcst", "pathspec"):
        (tmp_path / f"{shadow}.py").write_text(f'raise SystemExit("the local {shadow}.py was imported")\n', encoding="utf-8")
    write(tmp_path / "ok.py")
    proc = cli("--isolated", "ok.py", cwd=tmp_path)
    assert proc.returncode == 1 and codes(proc) == ["TL202"], proc
    assert "was imported" not in proc.stderr
    # The user's own modules of that name are still linted as their files.
    proc = cli("--isolated", ".", cwd=tmp_path)
    assert proc.returncode == 1 and "click.py" not in proc.stderr


def test_stdin_is_capped_at_max_file_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainlint", "check", "--isolated", "-"], cwd=tmp_path,
                          input=b"x = 1\n" * 200_000, capture_output=True, timeout=60)
    assert proc.returncode == 2 and b"-: stdin is over max-file-size (1 MiB)" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "trainlint", "check", "--isolated", "-"], cwd=tmp_path,
                          input=BAD.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"TL202" in proc.stdout


def test_importer_search_walks_deep_trees_without_recursion(tmp_path):
    from trainlint.analysis.program import _walk_tree

    folders = [tmp_path / "d"]
    for _ in range(200):
        folders.append(folders[-1] / "d")
    frames, frame = 0, sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    limit = sys.getrecursionlimit()
    try:
        for folder in folders:
            folder.mkdir()
        write(folders[-1] / "x.py")
        (tmp_path / ".hidden").mkdir()
        sys.setrecursionlimit(frames + 100)  # os.walk of Python 3.11 would need 200 more
        try:
            seen = list(_walk_tree(str(tmp_path)))
        finally:
            sys.setrecursionlimit(limit)
        assert len(seen) == 203 and seen[0][0] == str(tmp_path) and sorted(seen[0][1]) == [".hidden", "d"]
        assert seen[-1][2] == ["x.py"] or any(files == ["x.py"] for _, _, files in seen)
    finally:
        (folders[-1] / "x.py").unlink(missing_ok=True)
        for folder in reversed(folders):
            if folder.exists():
                folder.rmdir()


def test_the_last_resort_handler_does_not_recurse(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import trainlint.engine as engine
    from trainlint.cli import main

    deep = cst.parse_expression("a" + ".b" * 900)  # repr() of it recurses past the limit

    def broken(paths, options):
        raise KeyError(deep)

    monkeypatch.setattr(engine, "lint_paths", broken)
    write(tmp_path / "ok.py")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["check", "--isolated", "ok.py"])
    assert result.exit_code == 2 and not isinstance(result.exception, RecursionError)
    assert "internal error (KeyError: a Attribute object); please report it" in result.output
