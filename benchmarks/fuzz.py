"""Fuzz trainlint's static path (issue 14): one odd file must never cost the run.

Cases come from three sources:

* ``grammar``: programs generated from Python's grammar by hypothesmith;
* ``mutant``: the fixture programs (``fixtures/``), also as notebooks, mutated: byte flips, truncations,
  deleted/duplicated/swapped lines, inserted deep chains (attributes, ``elif``, parentheses, operators,
  lists, calls, f-strings), huge literals (5,000 digits, ``(1,) * 10**10``), undecodable bytes, BOMs, NULs,
  broken notebook JSON (truncated, 100k-deep, huge integers, wrong types);
* ``odd``: files that are not files or paths that are hard to walk: FIFOs named ``x.py`` / ``.gitignore`` /
  ``trainlint.toml``, ``/dev/zero`` links, symlink loops and diamonds, folders named ``x.py``, invalid
  ``.gitignore`` lines, non-UTF-8 file names, broken configuration files.

Each case is a folder holding the case's files and ``sentinel.py`` (a known TL202 finding); trainlint
checks the folder in-process (``trainlint check``, a rotating output format). A case passes when the
run ends with exit 0/1/2, prints no traceback and no "internal error", and still reports the sentinel's
finding (only a configuration error may stop the run, and its message must name the file). Cases run
in batches in child processes with a watchdog: a case using more than ``--hang`` CPU seconds (default 30),
or not returning within ``--wall-limit`` seconds (default 300; a read blocked on a FIFO uses no CPU, and
CPU time, unlike the wall clock, does not depend on how loaded a shared machine is) is a hang; a child that
dies (a segfault) is an abort; the next batch starts after that case.

    nice -n 10 python benchmarks/fuzz.py --cases 10000            # the acceptance run
    python benchmarks/fuzz.py --cases 300 --seed 1 --batch 300     # quick

Reports programs run, whole-run aborts, tracebacks (internal errors) and hangs; exit 1 if any.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"

SENTINEL = textwrap.dedent(
    """\
    import torch
    for x, y in loader:
        loss = torch.clamp(criterion(model(x), y), max=10.0)
        loss.backward()
    """
)
FORMATS = ("full", "concise", "json", "json-lines", "sarif", "github", "gitlab", "junit")


@dataclass
class Case:
    """One fuzz case: files (relative path -> bytes) plus special entries built on disk."""

    kind: str  # grammar | mutant | odd
    what: str  # a short description
    files: Dict[str, bytes] = field(default_factory=dict)
    fifos: List[str] = field(default_factory=list)
    links: List[Tuple[str, str]] = field(default_factory=list)  # (link path, target)
    dirs: List[str] = field(default_factory=list)
    config_case: bool = False  # the case is a configuration file: a config error may stop the run
    fmt: str = "full"


# -- sources ------------------------------------------------------------------------------------------------


def fixture_programs() -> List[Tuple[str, str]]:
    out = []
    for path in sorted(FIXTURES.rglob("*.py")):
        try:
            out.append((path.relative_to(FIXTURES).as_posix(), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return out


def as_notebook(text: str) -> str:
    cells = [c for c in text.split("\n\n") if c.strip()] or [""]
    return json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": c.splitlines(keepends=True)} for c in cells],
        "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    })


def deep_snippet(rng: random.Random) -> str:
    n = rng.choice([50, 99, 101, 150, 318, 400, 500, 1500, 5000, 20000])
    kind = rng.choice(["attr", "elif", "parens", "binop", "list", "call", "lambda", "not", "fstring", "subscript",
                       "strings", "dict", "ifexp", "indent"])
    if kind == "attr":
        return "x = a" + ".b" * n + "\n"
    if kind == "elif":
        n = min(n, 3000)
        return "if x == 0:\n    pass\n" + "".join(f"elif x == {i}:\n    pass\n" for i in range(1, n))
    if kind == "parens":
        return "x = " + "(" * n + "1" + ")" * n + "\n"
    if kind == "binop":
        return "x = 1" + " + 1" * n + "\n"
    if kind == "list":
        return "x = " + "[" * n + "]" * n + "\n"
    if kind == "call":
        return "x = f" + "()" * n + "\n"
    if kind == "lambda":
        return "x = " + "lambda: " * n + "1\n"
    if kind == "not":
        return "x = " + "not " * n + "1\n"
    if kind == "fstring":
        return 'x = f"{a' + ".b" * n + '}"\n'
    if kind == "subscript":
        return "x = a" + "[0]" * n + "\n"
    if kind == "strings":
        return "x = " + ' "a"' * n + "\n"
    if kind == "dict":
        return "x = " + "{1: " * n + "1" + "}" * n + "\n"
    if kind == "ifexp":
        return "x = 1" + " if a else 1" * n + "\n"
    n = min(n, 150)
    return "".join("    " * i + "if x:\n" for i in range(n)) + "    " * n + "pass\n"


#: Snippets whose cost is in the linting of a big tree (seconds each), left out of the CI-sized run.
_HEAVY = ("x = '", "x = [", "d = {")


def huge_snippet(rng: random.Random, light: bool = False) -> str:
    choices = [
        "x = " + "9" * 5000 + "\n",
        "x = " + "9" * 4300 + "\n",
        "x = 0x" + "f" * 20000 + "\n",
        "x = " + "9" * 300 + ".5e99999\n",
        "epochs = (1,) * 10**10\nfor e in range(len(epochs)):\n    pass\n",
        "milestones = [30] * 10**9\n",
        "n = 10**10**10\nfor i in range(n):\n    pass\n",
        "n = 2 ** 64 ** 64\n",
        "s = 'a' * 10**10\n",
        "x = (10**60) ** 60 * (10**60) ** 60\n",
        "lr = " + "1" * 1000 + "e-" + "9" * 1000 + "\n",
        "x = '" + "a" * 500_000 + "'\n",
        "x = [" + ", ".join(["1"] * 50_000) + "]\n",
        "d = {" + ", ".join(f"'k{i}': {i}" for i in range(20_000)) + "}\n",
        "optimizer = torch.optim.SGD(model.parameters(), lr=" + "9" * 5000 + ")\n",
        "for epoch in range(" + "9" * 4000 + "):\n    loss.backward()\n",
        "for epoch in range(10**400):\n    loss.backward()\n",
    ]
    if light:
        choices = [c for c in choices if not c.startswith(_HEAVY)]
    return rng.choice(choices)


def mutate_text(text: str, rng: random.Random, light: bool = False) -> Tuple[str, bytes]:
    """One or more mutations of a program: (description, bytes)."""
    data = text.encode("utf-8")
    lines = text.splitlines(keepends=True) or ["\n"]
    ops = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.choice(["flip", "truncate", "delete_line", "dup_line", "swap_lines", "deep", "deep", "huge",
                         "insert_bytes", "indent", "bom", "nul", "crlf", "cookie", "splice", "dedent_all",
                         "replace_token", "unclosed"])
        ops.append(op)
        if op == "flip":
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                if b:
                    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            data = bytes(b)
        elif op == "truncate":
            data = data[: rng.randrange(len(data) + 1)]
        elif op in ("delete_line", "dup_line", "swap_lines", "deep", "huge", "indent", "dedent_all", "splice",
                    "replace_token", "unclosed"):
            lines = data.decode("utf-8", errors="replace").splitlines(keepends=True) or ["\n"]
            i = rng.randrange(len(lines))
            if op == "delete_line":
                del lines[i]
            elif op == "dup_line":
                lines[i:i] = [lines[i]] * rng.choice([2, 50] if light else [2, 50, 2000])
            elif op == "swap_lines":
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            elif op == "deep":
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                lines.insert(i, textwrap.indent(deep_snippet(rng), indent))
            elif op == "huge":
                lines.insert(i if rng.random() < 0.5 else len(lines), huge_snippet(rng, light))
            elif op == "indent":
                lines[i] = " " * rng.choice([1, 3, 4, 8]) + lines[i]
            elif op == "dedent_all":
                lines = [ln.lstrip(" ") for ln in lines]
            elif op == "splice":
                j = rng.randrange(len(lines))
                lines = lines[:i] + lines[j:]
            elif op == "replace_token":
                words = ["lambda", "yield", "await", "async", "(", ")", "[", "]", ":", "**", "@", "::", "if",
                         "else", "print", "\\", '"', "'''", "#", "\t", "0x", "1e", "f'{", "}", "nonlocal", "global"]
                ln = lines[i]
                k = rng.randrange(len(ln) + 1)
                lines[i] = ln[:k] + rng.choice(words) + ln[k:]
            elif op == "unclosed":
                lines.insert(i, rng.choice(["x = (\n", "s = '''\n", "def f(:\n", "class\n", "f'{'\n"]))
            data = "".join(lines).encode("utf-8", errors="surrogatepass")
        elif op == "insert_bytes":
            k = rng.randrange(len(data) + 1)
            data = data[:k] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 6))) + data[k:]
        elif op == "bom":
            data = b"\xef\xbb\xbf" + data
        elif op == "nul":
            k = rng.randrange(len(data) + 1)
            data = data[:k] + b"\x00" + data[k:]
        elif op == "crlf":
            data = data.replace(b"\n", rng.choice([b"\r\n", b"\r"]))
        elif op == "cookie":
            data = rng.choice([b"# -*- coding: latin-1 -*-\n", b"# coding: bogus\n", b"# coding: utf-16\n",
                               b"# vim: set fileencoding=cp1252 :\n"]) + data
    return "+".join(ops), data


def mutate_notebook(text: str, rng: random.Random, light: bool = False) -> Tuple[str, bytes]:
    nb = as_notebook(text)
    op = rng.choice(["plain", "truncate", "deep_json", "bigint", "cells_type", "source_type", "flip",
                     "not_python", "mutated_cell", "empty", "magic", "huge_float", "nul"])
    if op == "plain":
        return op, nb.encode()
    if op == "truncate":
        return op, nb.encode()[: rng.randrange(len(nb) + 1)]
    if op == "deep_json":
        n = rng.choice([1000, 100_000])
        return op, ('{"cells": [], "x": ' + "[" * n + "]" * n + "}").encode()
    if op == "bigint":
        return op, nb.replace('"nbformat": 4', '"nbformat": 4, "x": ' + "9" * rng.choice([5000, 50_000])).encode()
    if op == "huge_float":
        return op, nb.replace('"nbformat": 4', '"nbformat": 4, "x": 1e999999, "y": NaN').encode()
    if op == "cells_type":
        return op, nb.replace('"cells": [', '"cells": [1, null, "x", ').encode()
    if op == "source_type":
        return op, nb.replace('"source": [', '"source": [1, {"a": 2}, ', 1).encode()
    if op == "flip":
        b = bytearray(nb.encode())
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return op, bytes(b)
    if op == "not_python":
        return op, nb.replace('"language": "python"', '"language": "R"').encode()
    if op == "mutated_cell":
        what, data = mutate_text(text, rng, light)
        return f"{op}({what})", as_notebook(data.decode("utf-8", errors="replace")).encode()
    if op == "magic":
        return op, as_notebook("%%time\n" + text + "\n!pip install x\n%matplotlib inline\nx?\n").encode()
    if op == "nul":
        return op, nb.encode().replace(b"{", b"\x00{", 1)
    return op, b""


def odd_case(rng: random.Random, programs: List[Tuple[str, str]], light: bool = False) -> Case:
    name, text = rng.choice(programs)
    body = text.encode()
    kind = rng.choice(["fifo_py", "fifo_gitignore", "fifo_config", "devzero_import", "devzero_py", "loop", "diamond",
                       "dir_named_py", "broken_link", "gitignore_bad", "gitignore_random", "name_not_utf8",
                       "config_bytes", "config_not_utf8", "config_bad_values", "empty", "big_file", "nested_dirs",
                       "pyproject_broken", "init_fifo"])
    c = Case("odd", kind)
    if kind == "fifo_py":
        c.fifos.append("pipe.py")
        c.files["train.py"] = b"import pipe\n" + body
    elif kind == "init_fifo":
        c.dirs.append("pkg")
        c.fifos.append("pkg/__init__.py")
        c.files["train.py"] = b"import pkg\nfrom pkg import model\n" + body
    elif kind == "fifo_gitignore":
        c.fifos.append(".gitignore")
        c.dirs.append(".git")
        c.files["train.py"] = body
    elif kind == "fifo_config":
        c.fifos.append(rng.choice(["trainlint.toml", ".trainlint.toml", "pyproject.toml"]))
        c.files["train.py"] = body
        c.config_case = True
    elif kind == "devzero_import":
        c.links.append(("zero.py", "/dev/zero"))
        c.files["train.py"] = b"import zero\n" + body
    elif kind == "devzero_py":
        c.links.append((rng.choice(["zero.py", "zero.ipynb", ".gitignore"]), rng.choice(["/dev/zero", "/dev/urandom"])))
    elif kind == "loop":
        c.links += [("loop", "loop"), ("a", "b"), ("b", "a"), ("sub/up", "..")]
        c.files["sub/train.py"] = body
    elif kind == "diamond":
        c.files["l0/m.py"] = body
        for i in range(1, rng.choice([8, 16, 24]) + 1):
            c.links += [(f"l{i}/x", f"../l{i - 1}"), (f"l{i}/y", f"../l{i - 1}")]
    elif kind == "dir_named_py":
        c.dirs += ["weird.py", "nb.ipynb"]
        c.files["weird.py/inner.py"] = body
    elif kind == "broken_link":
        c.links += [("gone.py", "does/not/exist.py"), ("gone_dir", "nowhere")]
        c.files["train.py"] = body
    elif kind == "gitignore_bad":
        c.dirs.append(".git")
        c.files[".gitignore"] = rng.choice([b"!\n", b"foo\\\n", b"!\nfoo\\\n*.pyc\n", b"[\n", b"**/\n!**\n", b"\\\n",
                                            b"\xff\xfe\n", b"a" * 5000 + b"\n"])
        c.files["train.py"] = body
    elif kind == "gitignore_random":
        c.dirs.append(".git")
        c.files[".gitignore"] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
        c.files["train.py"] = body
    elif kind == "name_not_utf8":
        c.files[os.fsdecode(b"tr\xffain\xfe.py")] = body
        c.files[os.fsdecode(b"\xe9t\xe9.ipynb")] = as_notebook(text).encode()
    elif kind == "config_bytes":
        c.files["trainlint.toml"] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 100)))
        c.files["train.py"] = body
        c.config_case = True
    elif kind == "config_not_utf8":
        c.files["trainlint.toml"] = b'select = ["TL2"]\n# caf\xe9\n'
        c.files["train.py"] = body
        c.config_case = True
    elif kind == "config_bad_values":
        c.files["trainlint.toml"] = rng.choice([
            b'max-file-size = "lots"\n', b"max-file-size = -1\n", b'select = ""\n', b"select = []\n",
            b'exclude = ["!"]\n', b"[per-file-ignores]\n'!' = ['TL2']\n", b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
            b"x = " + b"9" * 5000 + b"\n", b'severity = {TL2 = "fatal"}\n', b"respect-gitignore = 1\n",
            b"max-file-size = 10\n", b'max-file-size = "1.5KiB"\n',
        ])
        c.files["train.py"] = body
        c.config_case = True
    elif kind == "pyproject_broken":
        c.files["pyproject.toml"] = rng.choice([b"[tool.trainlint\n", b"[tool]\ntrainlint = 3\n", b"\xff\xfe[tool.trainlint]\n",
                                                b"[project]\nname = 'x'\n[tool.trainlint]\nselect = 'TL2'\n"])
        c.files["train.py"] = body
        c.config_case = True
    elif kind == "empty":
        c.files["empty.py"] = b""
        c.files["empty.ipynb"] = b""
        c.files["ws.py"] = b"\n\n   \n"
    elif kind == "big_file":
        c.files["big.py"] = body + b"# " + b"x" * (1024 * 1024) + b"\n"
    elif kind == "nested_dirs":
        depth = rng.choice([50] if light else [50, 200])
        c.files["/".join(["d"] * depth) + "/train.py"] = body
    return c


def grammar_programs(n: int, seed: int) -> List[str]:
    """``n`` programs drawn from Python's grammar by hypothesmith (deterministic for a seed)."""
    if n <= 0:
        return []
    import warnings

    import hypothesmith
    from hypothesis import HealthCheck, Phase, given, seed as hseed, settings

    out: List[str] = []

    @hseed(seed)
    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    @given(hypothesmith.from_grammar() | hypothesmith.from_node())
    def collect(source: str) -> None:
        out.append(source)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collect()
    return out[:n]


def make_cases(count: int, seed: int, grammar_share: float = 0.3, odd_share: float = 0.1,
               light: bool = False) -> List[Case]:
    """``count`` cases for a seed; ``light``: the CI-sized variety (small programs, no giant literals)."""
    rng = random.Random(seed)
    programs = fixture_programs()
    if light:
        programs = [p for p in programs if p[1].count("\n") <= 80] or programs
    n_grammar = int(count * grammar_share)
    n_odd = int(count * odd_share)
    cases: List[Case] = []
    for i, src in enumerate(grammar_programs(n_grammar, seed)):
        what, data = ("grammar", src.encode("utf-8", errors="surrogatepass"))
        if rng.random() < 0.3:  # a grammar program mutated too
            what, data = mutate_text(src, rng, light)
            what = "grammar+" + what
        cases.append(Case("grammar", what, {"gen.py": data}))
    for _ in range(n_odd):
        cases.append(odd_case(rng, programs, light))
    while len(cases) < count:
        name, text = rng.choice(programs)
        if rng.random() < 0.2:
            what, data = mutate_notebook(text, rng, light)
            cases.append(Case("mutant", f"{name} notebook {what}", {"nb.ipynb": data}))
        else:
            what, data = mutate_text(text, rng, light)
            cases.append(Case("mutant", f"{name} {what}", {Path(name).name: data}))
    for i, c in enumerate(cases):
        c.fmt = FORMATS[i % len(FORMATS)]
    rng.shuffle(cases)
    return cases


# -- running one case -----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    problem: str = ""  # abort | traceback | hang
    detail: str = ""
    seconds: float = 0.0  # wall clock
    cpu: float = 0.0  # CPU seconds of this process (the machine may be shared and loaded)


def build(case: Case, folder: Path) -> None:
    for d in case.dirs:
        (folder / d).mkdir(parents=True, exist_ok=True)
    for rel, data in case.files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel == ".gitignore":  # whatever it ignores, the sentinel stays in
            data += b"\n!sentinel.py\n"
        p.write_bytes(data)
    for rel in case.fifos:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(folder / rel)
    for rel, target in case.links:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, folder / rel)
    (folder / "sentinel.py").write_text(SENTINEL, encoding="utf-8")


def remove(folder: Path) -> None:
    # Bottom-up without recursion (nested-folder cases are deeper than shutil.rmtree likes).
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files + dirs:
            p = os.path.join(root, name)
            try:
                if os.path.islink(p) or not os.path.isdir(p):
                    os.unlink(p)
                else:
                    os.rmdir(p)
            except OSError:
                pass
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def run_case(case: Case, workdir: Path, hang: float = 30.0) -> Outcome:
    """Build the case, run `trainlint check` on it in-process, judge the result (over ``hang`` CPU
    seconds is a hang; a run that never returns is caught by the caller's watchdog)."""
    cpu_start = time.process_time()
    outcome = _run_case(case, workdir)
    outcome.cpu = time.process_time() - cpu_start
    if outcome.ok and outcome.cpu > hang:
        outcome.ok, outcome.problem, outcome.detail = False, "hang", f"{outcome.cpu:.0f} CPU seconds"
    return outcome


def _run_case(case: Case, workdir: Path) -> Outcome:
    from click.testing import CliRunner

    from trainlint.cli import main

    folder = Path(tempfile.mkdtemp(prefix="case", dir=workdir))
    try:
        build(case, folder)
        args = ["check", "--output-format", case.fmt, "--color", "never"]
        if not case.config_case:
            args.append("--isolated")
        cwd = os.getcwd()
        os.chdir(folder)
        start = time.perf_counter()
        try:
            runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
            result = runner.invoke(main, args + ["."], catch_exceptions=True)
        finally:
            os.chdir(cwd)
        seconds = time.perf_counter() - start
        out = result.stdout_bytes.decode("utf-8", errors="replace")
        err = result.stderr_bytes.decode("utf-8", errors="replace") if result.stderr_bytes is not None else ""
        code = result.exit_code
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            tb = "".join(traceback.format_exception(*result.exc_info))[-1500:]
            return Outcome(False, "traceback", tb, seconds)
        if "Traceback (most recent call last)" in out + err or "internal error" in out + err:
            line = next((ln for ln in (out + err).splitlines() if "internal error" in ln or "Traceback" in ln), "")
            return Outcome(False, "traceback", line[:500], seconds)
        if code not in (0, 1, 2):
            return Outcome(False, "abort", f"exit {code}", seconds)
        if "sentinel.py" in out:
            return Outcome(True, seconds=seconds)
        if case.config_case and "sentinel.py: skipped: the file is" in err:
            return Outcome(True, seconds=seconds)  # a max-file-size below the sentinel's size: told, not lost
        if case.config_case and code == 2 and "trainlint: error:" in err and (
                "toml" in err or "select" in err or "max-file-size" in err):
            return Outcome(True, seconds=seconds)  # a bad configuration stops the run, naming the file
        return Outcome(False, "abort", f"exit {code}, the other files were not reported: {(err or out)[-400:]}", seconds)
    finally:
        remove(folder)


# -- batches with a watchdog ------------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> int:
    """Run cases [start, stop) of the seeded list; one JSON line per case on stdout."""
    import faulthandler

    import pickle

    with open(args.case_file, "rb") as fh:
        cases = pickle.load(fh)
    workdir = Path(tempfile.mkdtemp(prefix="trainlint-fuzz-"))
    progress = open(args.progress, "w", encoding="utf-8")
    try:
        for i in range(args.start, min(args.stop, len(cases))):
            progress.write(f"{i}\n")
            progress.flush()
            # A case that never returns (blocked on a FIFO...) uses no CPU: the wall-clock watchdog kills
            # the child and the parent records the hang.
            faulthandler.dump_traceback_later(args.wall_limit, exit=True)
            out = run_case(cases[i], workdir, args.hang)
            faulthandler.cancel_dump_traceback_later()
            sys.stdout.write(json.dumps({"i": i, "ok": out.ok, "problem": out.problem, "detail": out.detail,
                                         "seconds": round(out.seconds, 3), "cpu": round(out.cpu, 3)}) + "\n")
            sys.stdout.flush()
    finally:
        remove(workdir)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--batch", type=int, default=500, help="cases per child process")
    parser.add_argument("--hang", type=float, default=30.0, help="CPU seconds after which a case is a hang")
    parser.add_argument("--wall-limit", type=float, default=300.0,
                        help="wall-clock seconds after which a case that has not returned is killed (a hang)")
    parser.add_argument("--grammar-share", type=float, default=0.3)
    parser.add_argument("--odd-share", type=float, default=0.1)
    parser.add_argument("--light", action="store_true",
                        help="the CI variety: fixture programs up to 80 lines, no giant collection literals (cheaper)")
    parser.add_argument("--report", help="write every failing case (JSON) here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    parser.add_argument("--case-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    import pickle

    started = time.perf_counter()
    cases = make_cases(args.cases, args.seed, args.grammar_share, args.odd_share, light=args.light)
    print(f"{len(cases)} cases made in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    case_file = Path(tempfile.mkstemp(prefix="trainlint-fuzz-cases-")[1])
    case_file.write_bytes(pickle.dumps(cases))
    results: Dict[int, dict] = {}
    i = 0
    progress = Path(tempfile.mkstemp(prefix="trainlint-fuzz-progress-")[1])
    try:
        while i < len(cases):
            stop = min(i + args.batch, len(cases))
            cmd = [sys.executable, __file__, "--child", "--case-file", str(case_file), "--start", str(i),
                   "--stop", str(stop), "--hang", str(args.hang), "--wall-limit", str(args.wall_limit),
                   "--progress", str(progress)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            for line in proc.stdout.splitlines():
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    results[rec["i"]] = rec
            done = max((k for k in results if i <= k < stop), default=i - 1)
            if proc.returncode != 0 or done < stop - 1:
                try:
                    current = int(progress.read_text().split()[-1])
                except (OSError, ValueError, IndexError):
                    current = done + 1
                if current not in results:
                    hang = "Timeout" in proc.stderr
                    results[current] = {"i": current, "ok": False, "problem": "hang" if hang else "abort",
                                        "detail": f"child exit {proc.returncode}: {proc.stderr[:1500]}",
                                        "seconds": args.wall_limit if hang else 0.0, "cpu": 0.0}
                i = current + 1
            else:
                i = stop
            bad = [r for r in results.values() if not r["ok"]]
            for r in bad:
                if not r.get("told"):
                    r["told"] = True
                    c = cases[r["i"]]
                    print(f"  FAIL #{r['i']} {r['problem']} [{c.kind}: {c.what[:100]}] {r['detail'][:300]}", file=sys.stderr)
            print(f"{len(results)}/{len(cases)} cases, {len(bad)} failing, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    finally:
        progress.unlink(missing_ok=True)
        case_file.unlink(missing_ok=True)

    failing = [dict(r, kind=cases[r["i"]].kind, what=cases[r["i"]].what) for r in results.values() if not r["ok"]]
    counts = {p: sum(1 for r in failing if r["problem"] == p) for p in ("abort", "traceback", "hang")}
    by_kind = {k: sum(1 for c in cases if c.kind == k) for k in ("grammar", "mutant", "odd")}
    slowest = max(results.values(), key=lambda r: r["cpu"], default={"i": 0, "seconds": 0.0, "cpu": 0.0})
    print(f"programs: {len(results)} ({', '.join(f'{k} {v}' for k, v in by_kind.items())}){' light' if args.light else ''}, seed {args.seed}")
    print(f"whole-run aborts: {counts['abort']}  tracebacks: {counts['traceback']}  "
          f"hangs (over {args.hang:g} CPU s, or no return in {args.wall_limit:g} s): {counts['hang']}")
    print(f"slowest case: {slowest['cpu']:.1f} CPU s, {slowest['seconds']:.1f} s wall "
          f"({cases[slowest['i']].kind}: {cases[slowest['i']].what[:80]}); total {time.perf_counter() - started:.0f}s")
    for r in sorted(results.values(), key=lambda r: -r["cpu"])[:5]:
        print(f"  {r['cpu']:.1f} CPU s / {r['seconds']:.1f} s #{r['i']} [{cases[r['i']].kind}: {cases[r['i']].what[:80]}]")
    for r in failing[:20]:
        print(f"  #{r['i']} {r['problem']} [{r['kind']}: {r['what'][:80]}] {r['detail'][:300]}")
    if args.report:
        Path(args.report).write_text(json.dumps(failing, indent=1), encoding="utf-8")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
