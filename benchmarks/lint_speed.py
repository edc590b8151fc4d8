"""How fast is trainlint? A script, not a test: ``python benchmarks/lint_speed.py [PATH] [--repeat N]``.

Over one set of .py files (found by ``trainlint.files.discover`` with a default ``Config``) it measures

  (a) a bare ``libcst.parse_module`` of each file (texts read beforehand; only the parse is timed),
  (b) trainlint's full in-process lint, ``trainlint.engine.lint_paths``, with every rule enabled
      (discovery, reading, parsing, facts, rules, suppressions),
  (c) one ``trainlint PATH`` subprocess, wall time including interpreter start-up, and its peak RSS,
  (d) ``python -c "import trainlint.cli"`` alone (start-up cost), next to ``python -c pass``,

plus ``trainlint`` on one ~200-line script (the largest file, or a synthesized training script).
Every time is the best of N runs (default 3). PATH defaults to the repository's fixtures/ folder; when
that holds fewer than 3 .py files the script falls back to tests/, then trainlint/, and says so.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import libcst  # noqa: E402

from trainlint.config import Config, Selection  # noqa: E402
from trainlint.engine import Options, lint_paths  # noqa: E402
from trainlint.files import discover  # noqa: E402
from trainlint.rules import registry  # noqa: E402
from trainlint.source import SourceError, read_source  # noqa: E402

MIN_FILES = 3
SCRIPT_LINES = 200


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # not installed as a distribution
        return "?"


def best_of(n: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def default_config() -> Config:
    return Config(layers=[Selection()])


def py_files(path: Path) -> List[Tuple[str, str]]:
    found = discover([str(path)], default_config())
    return [(real, shown) for real, shown in found.files if real.endswith(".py")]


def choose_path(arg: Optional[str]) -> Tuple[Path, List[str]]:
    notes: List[str] = []
    if arg is not None:
        return Path(arg), notes
    for candidate in (ROOT / "fixtures", ROOT / "tests", ROOT / "trainlint"):
        count = len(py_files(candidate)) if candidate.is_dir() else 0
        if count >= MIN_FILES:
            return candidate, notes
        notes.append(f"{_rel(candidate)}/ holds {count} .py file(s), fewer than {MIN_FILES}: falling back")
    return ROOT / "trainlint", notes


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT)) or "."
    except ValueError:
        return str(path)


def trainlint_command() -> List[str]:
    exe = Path(sys.executable).parent / "trainlint"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("trainlint")
    return [found] if found else [sys.executable, "-m", "trainlint"]


# Measures one command from a small, fresh interpreter. Linux carries a parent's RSS high-water mark
# into a forked child (ru_maxrss survives fork and exec), so a child forked straight from this process
# would report at least this process's own RSS (libcst and all). The helper forks the command from a
# ~10 MiB interpreter instead, times fork-to-exit and reports the command's own rusage.
_MEASURE = """\
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
print(wall, os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_child(cmd: Sequence[str], cwd: Path) -> Tuple[float, int, int, str]:
    """Run one command: (wall seconds, exit code, its peak RSS in KiB, its stderr)."""
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", _MEASURE, *cmd], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wall, code, rss = proc.stdout.split()
    except ValueError:
        raise SystemExit(f"could not measure `{' '.join(cmd)}`:\n{proc.stdout}{proc.stderr}") from None
    return float(wall), int(code), _kib(int(rss)), proc.stderr


def _kib(maxrss: int) -> int:
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB on Linux


def best_child(n: int, cmd: Sequence[str], cwd: Path, ok: Sequence[int] = (0,)) -> Tuple[float, int, int]:
    best, peak, code = float("inf"), 0, 0
    for _ in range(n):
        wall, code, rss, stderr = run_child(cmd, cwd)
        if code not in ok:
            raise SystemExit(f"`{' '.join(cmd)}` exited {code}:\n{stderr}")
        best, peak = min(best, wall), max(peak, rss)
    return best, code, peak


def synthesized_script(lines: int = SCRIPT_LINES) -> str:
    """A plausible PyTorch training script of about ``lines`` lines (with one TL202 bug)."""
    head = textwrap.dedent(
        '''\
        """Train a small CNN on CIFAR-10-like data (synthesized for trainlint's benchmark)."""
        import argparse
        import math

        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        from torch.utils.data import DataLoader, TensorDataset


        class Block(nn.Module):
            def __init__(self, c_in, c_out):
                super().__init__()
                self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
                self.bn = nn.BatchNorm2d(c_out)

            def forward(self, x):
                return F.relu(self.bn(self.conv(x)))


        class Net(nn.Module):
            def __init__(self, width=32, classes=10):
                super().__init__()
                self.blocks = nn.Sequential(Block(3, width), Block(width, width), nn.MaxPool2d(2))
                self.head = nn.Linear(width * 16 * 16, classes)

            def forward(self, x):
                return self.head(self.blocks(x).flatten(1))

        '''
    )
    helper = textwrap.dedent(
        '''\

        def evaluate_{i}(model, loader, device):
            model.eval()
            total, correct = 0, 0
            with torch.no_grad():
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    pred = model(x).argmax(1)
                    correct += (pred == y).sum().item()
                    total += y.numel()
            model.train()
            return correct / max(total, 1)

        '''
    )
    tail = textwrap.dedent(
        '''\

        def main():
            parser = argparse.ArgumentParser()
            parser.add_argument("--epochs", type=int, default=2)
            parser.add_argument("--lr", type=float, default=0.1)
            args = parser.parse_args()
            device = "cuda" if torch.cuda.is_available() else "cpu"
            data = TensorDataset(torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))
            loader = DataLoader(data, batch_size=32, shuffle=True)
            model = Net().to(device)
            optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
            criterion = nn.CrossEntropyLoss()
            for epoch in range(args.epochs):
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    optimizer.zero_grad()
                    loss = criterion(model(x), y)
                    loss = torch.clamp(loss, max=10.0)
                    loss.backward()
                    optimizer.step()
                acc = evaluate_0(model, loader, device)
                print(f"epoch {epoch}: loss {loss.item():.3f} acc {acc:.3f} ppl {math.exp(loss.item()):.1f}")


        if __name__ == "__main__":
            main()
        '''
    )
    body, i = "", 0
    while len((head + body + tail).splitlines()) + len(helper.splitlines()) <= lines:
        body += helper.format(i=i)
        i += 1
    return head + body + tail


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="file or folder to lint (default: fixtures/, else tests/, else trainlint/)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="best of N runs (default 3)")
    args = parser.parse_args(argv)
    n = max(1, args.repeat)
    torch_before = "torch" in sys.modules

    path, notes = choose_path(args.path)
    for note in notes:
        print(f"note: {note}")
    files = py_files(path)
    if not files:
        print(f"error: no .py files under {path}", file=sys.stderr)
        return 2
    texts: List[str] = []
    for real, shown in files:
        try:
            texts.append(read_source(real, shown).text)
        except SourceError as exc:
            print(f"note: skipped {shown}: {exc}")
    nfiles = len(texts)
    nlines = sum(len(t.splitlines()) for t in texts)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"path: {_rel(path)}  files: {nfiles}  lines: {nlines}  size: {nbytes / 1024:.0f} KiB  best of {n}")
    print(f"python {sys.version.split()[0]}, libcst {_version('libcst')}, trainlint {_version('trainlint')}")

    # (a) bare parse
    syntax_errors = 0

    def parse_all() -> None:
        nonlocal syntax_errors
        syntax_errors = 0
        for text in texts:
            try:
                libcst.parse_module(text)
            except libcst.ParserSyntaxError:
                syntax_errors += 1

    t_parse = best_of(n, parse_all)

    # (b) full in-process lint, every rule on (as cli.py builds Options)
    config = default_config()
    enabled = list(registry())
    options = Options(config=config, enabled=enabled, report_unused_suppressions="TL002" in enabled,
                      min_severity=config.min_severity)
    result: dict = {}

    def lint_all() -> None:
        result["report"], result["warnings"] = lint_paths([str(path)], options)

    t_lint = best_of(n, lint_all)
    report = result["report"]
    torch_after = "torch" in sys.modules

    def rate(seconds: float) -> str:
        return f"{nfiles / seconds:8.1f} files/s  {nlines / seconds:9.0f} lines/s  ({seconds * 1000:8.1f} ms)"

    print()
    print(f"(a) libcst.parse_module only     {rate(t_parse)}" + (f"  [{syntax_errors} syntax error(s)]" if syntax_errors else ""))
    print(f"(b) in-process lint_paths        {rate(t_lint)}  [{len(enabled)} rules: {', '.join(enabled)}; "
          f"{report.files_checked} files checked, {len(report.findings)} findings, {len(report.errors)} errors]")
    if "TL002" in enabled:
        print("    (TL002, unused suppressions, is on here; the CLI leaves it off by default, so (c) may find fewer)")
    print(f"    ratio (b)/(a): {t_lint / t_parse:.2f}x   (the rest of (b) over a bare parse: "
          f"{(t_lint - t_parse) * 1000:.1f} ms, {(t_lint - t_parse) / nfiles * 1000:.2f} ms/file)")
    print(f"    torch in sys.modules after the in-process lint: {torch_after}"
          + (" (it was already imported before)" if torch_before else "")
          + ("  <-- the static path must not import torch!" if torch_after and not torch_before else "  (good)"))

    # (c) one subprocess over the same path, (d) start-up alone
    cmd = trainlint_command()
    t_sub, code, rss = best_child(n, [*cmd, str(path.resolve())], ROOT, ok=(0, 1))
    t_import, _, rss_import = best_child(n, [sys.executable, "-c", "import trainlint.cli"], ROOT)
    t_pass, _, _ = best_child(n, [sys.executable, "-c", "pass"], ROOT)
    children_peak = _kib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print()
    print(f"(c) `trainlint {_rel(path)}` subprocess: {t_sub * 1000:8.1f} ms wall (exit {code}), "
          f"peak RSS {rss / 1024:.1f} MiB")
    print(f"(d) `python -c 'import trainlint.cli'`: {t_import * 1000:8.1f} ms wall, peak RSS {rss_import / 1024:.1f} MiB "
          f"(`python -c pass`: {t_pass * 1000:.1f} ms)")
    print(f"    so of (c): interpreter {t_pass * 1000:.0f} ms + importing the CLI {max(0.0, t_import - t_pass) * 1000:.0f} ms "
          f"+ the rest {max(0.0, t_sub - t_import) * 1000:.0f} ms (importing libcst, the engine and the rules: see "
          f"'fixed cost' below; then the lint, which in-process (b) did warm in {t_lint * 1000:.0f} ms)")
    print(f"    (peak RSS: each command's own ru_maxrss, from os.wait4 in a small launcher; this process's "
          f"getrusage(RUSAGE_CHILDREN).ru_maxrss reads {children_peak / 1024:.1f} MiB because a child forked from it "
          f"inherits its {_kib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024:.1f} MiB high-water mark)")

    # one ~200-line script
    sizes = sorted(((len(t.splitlines()), real) for t, (real, _) in zip(texts, files)), reverse=True)
    with tempfile.TemporaryDirectory(prefix="trainlint-bench-") as tmp:
        if sizes and sizes[0][0] >= SCRIPT_LINES * 3 // 4:
            script, script_lines, origin = Path(sizes[0][1]), sizes[0][0], "the largest file"
        else:
            script = Path(tmp) / "train.py"
            script.write_text(synthesized_script(), encoding="utf-8")
            script_lines = len(script.read_text(encoding="utf-8").splitlines())
            biggest = f"{sizes[0][0]} lines" if sizes else "none"
            origin = f"synthesized (largest file here: {biggest})"
        t_one, code_one, rss_one = best_child(n, [*cmd, str(script)], Path(tmp), ok=(0, 1))
        shown = _rel(script) if tmp not in str(script) else script.name
        tiny = Path(tmp) / "tiny.py"
        tiny.write_text("x = 1\n", encoding="utf-8")
        t_tiny, _, rss_tiny = best_child(n, [*cmd, str(tiny)], Path(tmp))
        t_engine, _, _ = best_child(n, [sys.executable, "-c", "import trainlint.engine, trainlint.rules; trainlint.rules.registry()"], ROOT)
        print()
        print(f"one ~{SCRIPT_LINES}-line script: `trainlint {shown}` ({script_lines} lines, {origin}): "
              f"{t_one * 1000:.1f} ms wall (exit {code_one}), peak RSS {rss_one / 1024:.1f} MiB")
        print(f"fixed cost: `trainlint tiny.py` (1 line): {t_tiny * 1000:.1f} ms wall, peak RSS {rss_tiny / 1024:.1f} MiB; "
              f"of it `python -c 'import trainlint.engine, trainlint.rules; registry()'` (libcst and the rules): "
              f"{t_engine * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
