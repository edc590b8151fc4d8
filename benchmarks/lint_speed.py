"""How fast is trainlint? A script, not a test: ``python benchmarks/lint_speed.py [PATH] [--repeat N]
[--big-file REL]``. Prints, in one run over the .py files of PATH (ratios are meant to be read within one
run: the machine's load moves absolute times):

  (a) a bare ``libcst.parse_module`` of each file, in this process (texts read beforehand);
  (b) cold serial: ``trainlint.engine.lint_paths`` in this process, no cache, no workers, every rule on;
  (c) cold parallel: the same with 2 worker processes; with the CPU time of the busiest worker plus this
      process's (what the wall time would be on an idle machine: on a shared one, read this);
  (d) the CLI (``trainlint PATH``, interpreter start-up included) on a copy of PATH: cold with an empty
      cache, warm (nothing changed), and after touching one file (its programs are re-analysed), with
      the peak RSS of each run;
  (e) one file: a ~200-line training script alone, cold (``--no-cache``) and warm, wall time including
      interpreter start-up; ``python -c pass`` and a one-line file for scale;
  (f) one file inside a big package, linted in place (``--big-file``, default
      timm/models/vision_transformer.py when PATH holds it), cold and warm;
  (g) time per line of synthetic multi-file training programs of 1k to 16k lines (must stay flat);
  (h) ruff's time on the same copy, for scale, when ruff is installed.

PATH defaults to the repository's fixtures/ folder (then tests/, then trainlint/). Every time is the best
of N runs (default 3); the machine's load (``os.getloadavg``) is printed with the results. On a shared
machine, read the CPU-time ratio of (b) to (a) and the CPU times of (g): wall-clock time moves with the load.
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


#: CPU seconds of this process for each measurement of best_of, by label (the machine may be shared:
#: wall-clock ratios then move with the load, CPU-time ratios of in-process work much less).
CPU: dict = {}
#: The same from the kernel's resource accounting (user + system time, ``getrusage``). On a virtual machine
#: the two clocks can disagree (measured: ``process_time`` 23.3 s where user + system was 20.5 s, in a
#: single-threaded run): both are printed, and their ratios are what to read.
RUSAGE: dict = {}


def _rusage_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best_of(n: int, fn: Callable[[], object], label: str = "") -> float:
    best, best_cpu, best_rusage = float("inf"), float("inf"), float("inf")
    for _ in range(n):
        r0 = _rusage_cpu()
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_rusage = min(best_rusage, _rusage_cpu() - r0)
    if label:
        CPU[label] = best_cpu
        RUSAGE[label] = best_rusage
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



def copy_tree(files: Sequence[Tuple[str, str]], src: Path, dest: Path) -> None:
    """The .py files of ``src`` (and the project markers linking needs) copied under ``dest``."""
    base = src.resolve()
    for real, _ in files:
        rel = Path(real).resolve().relative_to(base) if Path(real).resolve().is_relative_to(base) else Path(Path(real).name)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real, target)
    for marker in base.rglob(".git"):
        rel = marker.relative_to(base)
        (dest / rel).mkdir(parents=True, exist_ok=True)


def synthetic_program(root: Path, lines: int) -> int:
    """A multi-file training program of about ``lines`` lines: a package of model and helper modules
    (each ~250 lines, each importing the previous one) and a train.py that imports them all."""
    unit = synthesized_script(250)
    head, _, rest = unit.partition("\ndef main():")
    pkg = root / "proj"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    total, k = 0, 0
    imports = []
    while total < lines - 60:
        text = head.replace("class Net(", f"class Net{k}(").replace("class Block(", f"class Block{k}(")
        text = text.replace("Block(3, width), Block(width, width)", f"Block{k}(3, width), Block{k}(width, width)")
        text = text.replace("def evaluate_", f"def evaluate{k}_")
        if k:
            text = text.replace('import argparse\n', f'import argparse\nfrom proj.part{k - 1} import Net{k - 1}\n', 1)
        (pkg / f"part{k}.py").write_text(text, encoding="utf-8")
        imports.append(f"from proj.part{k} import Net{k}, evaluate{k}_0")
        total += len(text.splitlines())
        k += 1
    last = k - 1
    train = synthesized_script(60).replace("model = Net().to(device)", f"model = Net{last}().to(device)")
    train = train.replace("acc = evaluate_0(", f"acc = evaluate{last}_0(")
    train = train.replace("import argparse\n", "import argparse\n" + "\n".join(imports) + "\n", 1)
    (root / "train.py").write_text(train, encoding="utf-8")
    return total + len(train.splitlines())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="file or folder to lint (default: fixtures/, else tests/, else trainlint/)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="best of N runs (default 3)")
    parser.add_argument("--big-file", metavar="REL", help="a file inside a big package of PATH, linted in place "
                        "(default: timm/models/vision_transformer.py when PATH holds it)")
    parser.add_argument("--sizes", default="1000,2000,4000,8000,16000", help="synthetic program sizes in lines")
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
    print(f"python {sys.version.split()[0]}, libcst {_version('libcst')}, trainlint {_version('trainlint')}, "
          f"{os.cpu_count()} CPUs, load average at start {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

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

    t_parse = best_of(n, parse_all, "parse")

    # (b) cold serial, (c) cold parallel: in-process, every rule on (as cli.py builds Options), no cache
    config = default_config()
    enabled = list(registry())
    result: dict = {}
    critical: List[float] = []  # parallel runs: this process's CPU time + the busiest worker's

    def lint_with(jobs: int) -> Callable[[], None]:
        def run() -> None:
            from trainlint import engine

            options = Options(config=config, enabled=enabled, report_unused_suppressions="TL002" in enabled,
                              min_severity=config.min_severity, jobs=jobs)
            engine.WORKER_CPU.clear()
            c0 = time.process_time()
            result[jobs] = lint_paths([str(path)], options)[0]
            if jobs > 1 and engine.WORKER_CPU:
                critical.append(time.process_time() - c0 + max(engine.WORKER_CPU.values()))
        return run

    t_serial = best_of(n, lint_with(1), "serial")
    t_parallel = best_of(n, lint_with(2))
    report = result[1]
    same = [(f.path, f.span, f.code, f.message) for f in result[1].findings] == \
           [(f.path, f.span, f.code, f.message) for f in result[2].findings]
    torch_after = "torch" in sys.modules

    def rate(seconds: float) -> str:
        return f"{nfiles / seconds:8.1f} files/s  {nlines / seconds:9.0f} lines/s  ({seconds * 1000:8.1f} ms)"

    print()
    print(f"(a) libcst.parse_module only      {rate(t_parse)}" + (f"  [{syntax_errors} syntax error(s)]" if syntax_errors else ""))
    print(f"(b) cold serial (in-process)      {rate(t_serial)}  ratio to (a): {t_serial / t_parse:.2f}x  "
          f"[{len(enabled)} rules; {report.files_checked} files checked, {len(report.findings)} findings, {len(report.errors)} errors]")
    print(f"    CPU time of this process: (a) {CPU['parse']:.2f} s, (b) {CPU['serial']:.2f} s, ratio (b)/(a) "
          f"{CPU['serial'] / CPU['parse']:.2f}x (less sensitive to the machine's load than the wall-clock ratio)")
    print(f"    user + system time (getrusage): (a) {RUSAGE['parse']:.2f} s, (b) {RUSAGE['serial']:.2f} s, ratio (b)/(a) "
          f"{RUSAGE['serial'] / RUSAGE['parse']:.2f}x")
    print(f"(c) cold, 2 worker processes      {rate(t_parallel)}  ratio to (a): {t_parallel / t_parse:.2f}x  "
          f"(findings identical to (b): {same})")
    if critical:
        print(f"    CPU time of this process plus the busiest worker's: {min(critical):.2f} s, ratio to (a)'s CPU time "
              f"{min(critical) / CPU['parse']:.2f}x (the wall time on an idle machine with 2 free cores)")
    else:
        print("    (the run was linted serially: too little to analyse, or one group of files that could not be cut)")
    print(f"    torch in sys.modules after the in-process lint: {torch_after}"
          + (" (it was already imported before)" if torch_before else "")
          + ("  <-- the static path must not import torch!" if torch_after and not torch_before else "  (good)"))

    cmd = trainlint_command()
    with tempfile.TemporaryDirectory(prefix="trainlint-bench-") as tmp_s:
        tmp = Path(tmp_s)
        copy = tmp / "copy"
        copy_tree(files, path if path.is_dir() else path.parent, copy)
        cache = tmp / "cache"

        # (d) the CLI on the copy: cold (empty cache), warm, after touching one file
        cli = [*cmd, ".", "--cache-dir", str(cache), "--output-format", "concise"]
        t_cold, code, rss_cold = best_child(1, cli, copy, ok=(0, 1))
        t_warm, _, rss_warm = best_child(n, cli, copy, ok=(0, 1))
        t_nocache, _, rss_nocache = best_child(1, [*cmd, ".", "--no-cache", "--output-format", "concise"], copy, ok=(0, 1))
        touched = _touch_target(files, path, copy)
        touch_times = []
        for i in range(n):
            with open(touched, "a", encoding="utf-8") as fh:
                fh.write(f"\n# touched {i}\n")
            touch_times.append(run_child(cli, copy)[0])
        t_touch = min(touch_times)
        # what "that file's programs" cost: the touched file linted alone in place, without the cache (its
        # programs: the ones it is the entry of, or the entries that import it)
        t_alone, _, _ = best_child(1, [*cmd, str(touched.relative_to(copy)), "--no-cache", "--output-format", "concise"],
                                   copy, ok=(0, 1))
        print()
        print(f"(d) CLI `trainlint .` on a copy (exit {code}; interpreter start-up included):")
        print(f"    no cache (default jobs)       {t_nocache * 1000:9.1f} ms  peak RSS {rss_nocache / 1024:.0f} MiB (main process)")
        print(f"    cold, empty cache             {t_cold * 1000:9.1f} ms  peak RSS {rss_cold / 1024:.0f} MiB")
        print(f"    warm, nothing changed         {t_warm * 1000:9.1f} ms  peak RSS {rss_warm / 1024:.0f} MiB")
        print(f"    warm, one file touched        {t_touch * 1000:9.1f} ms  ({touched.relative_to(copy)}; its programs re-analysed)")
        print(f"    that file alone, no cache     {t_alone * 1000:9.1f} ms  (its programs' cost: the touched run should be "
              f"about warm + this; here warm + {max(0.0, t_touch - t_warm) * 1000:.1f} ms)")

        # (e) one file
        script = tmp / "one" / "train.py"
        script.parent.mkdir()
        script.write_text(synthesized_script(), encoding="utf-8")
        one = [*cmd, "train.py", "--cache-dir", str(tmp / "one-cache")]
        t_one_cold, code_one, rss_one = best_child(n, [*cmd, "train.py", "--no-cache"], script.parent, ok=(0, 1))
        run_child(one, script.parent)
        t_one_warm, _, rss_one_warm = best_child(n, one, script.parent, ok=(0, 1))
        tiny = script.parent / "tiny.py"
        tiny.write_text("x = 1\n", encoding="utf-8")
        t_tiny, _, _ = best_child(n, [*cmd, "tiny.py", "--no-cache"], script.parent)
        t_pass, _, _ = best_child(n, [sys.executable, "-c", "pass"], ROOT)
        print()
        print(f"(e) one file, `trainlint train.py` ({len(script.read_text().splitlines())}-line training script, exit {code_one}):"
              f" cold {t_one_cold * 1000:.1f} ms (peak RSS {rss_one / 1024:.0f} MiB), warm {t_one_warm * 1000:.1f} ms "
              f"(peak RSS {rss_one_warm / 1024:.0f} MiB); a one-line file {t_tiny * 1000:.1f} ms; `python -c pass` {t_pass * 1000:.1f} ms")

        # (f) one file inside a big package
        big = args.big_file or ("timm/models/vision_transformer.py" if path.is_dir() else None)
        big_hits = [c for c in ([copy / big] + list(copy.glob(f"*/{big}")) if big else []) if c.is_file()]
        if big_hits:
            target = big_hits[0]
            where = target.parent
            while where != copy and not (where / "setup.py").exists() and not (where / "pyproject.toml").exists() \
                    and not (where / ".git").exists():
                where = where.parent
            rel = target.relative_to(where)
            bcache = tmp / "big-cache"
            t_big_cold, code_big, rss_big = best_child(1, [*cmd, str(rel), "--no-cache"], where, ok=(0, 1))
            run_child([*cmd, str(rel), "--cache-dir", str(bcache)], where)
            t_big_warm, _, _ = best_child(n, [*cmd, str(rel), "--cache-dir", str(bcache)], where, ok=(0, 1))
            print(f"(f) one file inside a big package, in place: `trainlint {rel}` (exit {code_big}): "
                  f"cold {t_big_cold * 1000:.1f} ms (peak RSS {rss_big / 1024:.0f} MiB), warm {t_big_warm * 1000:.1f} ms")
        else:
            print(f"(f) one file inside a big package: skipped ({big or 'no --big-file'} not under {_rel(path)})")

        # (h) ruff for scale
        ruff = shutil.which("ruff") or (str(Path(sys.executable).parent / "ruff") if (Path(sys.executable).parent / "ruff").exists() else None)
        if ruff:
            t_ruff, _, _ = best_child(n, [ruff, "check", ".", "--no-cache", "--exit-zero", "--quiet", "--isolated"], copy, ok=(0, 1))
            print(f"(h) ruff check (default rules, --no-cache) on the copy: {t_ruff * 1000:.1f} ms  "
                  f"(trainlint cold/no cache: {t_nocache / t_ruff:.1f}x, warm: {t_warm / t_ruff:.1f}x)")
        else:
            print("(h) ruff: not installed")

    # (g) synthetic programs: time per line
    print()
    print("(g) synthetic multi-file programs (in-process, serial, no cache):")
    per_line = []
    for size in [int(x) for x in args.sizes.split(",") if x.strip()]:
        with tempfile.TemporaryDirectory(prefix="trainlint-synth-") as tmp_s:
            root = Path(tmp_s)
            lines = synthetic_program(root, size)
            texts_s = [p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))]
            best_of(n, lambda: [libcst.parse_module(t) for t in texts_s], "synth-parse")
            best_of(n, lambda: lint_paths([str(root)], Options(config=config, enabled=enabled, jobs=1)), "synth-lint")
            t_p, t_l = CPU["synth-parse"], CPU["synth-lint"]  # CPU time: the load of a shared machine moves wall time
            per_line.append(t_l / lines)
            print(f"    {lines:6d} lines in {len(texts_s):3d} files: {t_l * 1000:8.1f} ms CPU, {t_l / lines * 1e6:6.1f} us/line "
                  f"(bare parse {t_p / lines * 1e6:5.1f} us/line, ratio {t_l / t_p:.2f}x)")
    if per_line:
        print(f"    largest/smallest time per line: {max(per_line) / min(per_line):.2f}x (flat is 1.0)")
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def _touch_target(files: Sequence[Tuple[str, str]], path: Path, copy: Path) -> Path:
    """The file to touch: a training entry script (the first ``train*.py``), else the largest file."""
    base = (path if path.is_dir() else path.parent).resolve()
    rels = [Path(real).resolve().relative_to(base) for real, _ in files if Path(real).resolve().is_relative_to(base)]
    for rel in sorted(rels, key=lambda r: (len(r.parts), str(r))):
        if rel.name.startswith("train") and rel.suffix == ".py":
            return copy / rel
    return copy / max(rels, key=lambda r: (copy / r).stat().st_size)


if __name__ == "__main__":
    sys.exit(main())
