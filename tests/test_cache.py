"""The results cache and worker processes change how fast trainlint is, never what it reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


def _trainlint(args, cwd, env=None):
    full_env = dict(os.environ, NO_COLOR="1", **(env or {}))
    full_env.pop("TRAINLINT_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-m", "trainlint", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=full_env)


def _copy_fixtures(tmp_path: Path) -> Path:
    dest = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, dest, ignore=shutil.ignore_patterns("__pycache__", "expected.txt", ".trainlint_cache"))
    return dest


def test_findings_are_identical_without_cache_cold_warm_and_with_any_jobs(tmp_path):
    project = _copy_fixtures(tmp_path)
    args = [".", "--output-format", "json", "--extend-select", "ALL", "--report-unused-suppressions"]
    reference = _trainlint([*args, "--no-cache", "-j1"], project)
    assert reference.returncode == 1, reference.stderr
    assert len(json.loads(reference.stdout)) > 30
    assert not (project / ".trainlint_cache").exists()
    runs = {
        "cold cache, -j2": [*args, "-j2"],
        "warm cache, -j1": [*args, "-j1"],
        "warm cache, -j2": [*args, "-j2"],
        "no cache, -j2": [*args, "--no-cache", "-j2"],
    }
    for label, run_args in runs.items():
        out = _trainlint(run_args, project)
        assert (out.returncode, out.stdout) == (reference.returncode, reference.stdout), label
    assert (project / ".trainlint_cache" / ".gitignore").read_text().strip().endswith("*")
    # touch one file: only its programs are recomputed (their other files come from the cache and are
    # parsed again), and the result is what a fresh run says
    for target in (next(project.glob("tl202_*/train*.py")), project / "tl102_multifile_repeated_blocks" / "train.py"):
        target.write_text(target.read_text() + "\n# touched\n")
    fresh = _trainlint([*args, "--no-cache"], project)
    again = _trainlint(args, project)
    assert again.stdout == fresh.stdout


TRAIN = """\
import torch
from model import Net

model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in [(torch.randn(4, 2), torch.randn(4, 1))]:
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss = torch.clamp(loss, max=1.0)
    loss.backward()
    opt.step()
"""
MODEL = """\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, x):
        return self.fc(x)
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def test_a_corrupt_or_foreign_cache_entry_is_ignored(tmp_path):
    project = _project(tmp_path)
    first = _trainlint(["train.py", "--output-format", "concise"], project)
    assert "TL202" in first.stdout
    entries = list((project / ".trainlint_cache").rglob("*.json"))
    assert entries
    for i, entry in enumerate(entries):
        if i % 2:
            entry.write_text("{not json")
        else:  # valid JSON claiming another key: never trusted
            data = json.loads(entry.read_text())
            data["key"] = "0" * 64
            data["value"] = {"raw": [], "facts": None, "status": "done", "error": None, "warning": None}
            entry.write_text(json.dumps(data))
    again = _trainlint(["train.py", "--output-format", "concise"], project)
    assert again.stdout == first.stdout
    assert again.returncode == first.returncode


def test_a_warm_one_file_run_does_not_import_libcst(tmp_path):
    project = _project(tmp_path)
    _trainlint(["train.py"], project)
    code = ("import sys, runpy; sys.argv = ['trainlint', 'train.py', '--output-format', 'concise']\n"
            "try:\n    runpy.run_module('trainlint', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "sys.stderr.write('LIBCST=%s' % ('libcst' in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=120)
    assert "TL202" in proc.stdout
    assert "LIBCST=False" in proc.stderr


def test_editing_an_imported_file_recomputes_the_program(tmp_path):
    project = _project(tmp_path)
    first = _trainlint(["train.py", "--output-format", "concise"], project)
    assert "TL101" not in first.stdout
    # the model changes (train.py does not): its program is analysed again, as a fresh run would
    (project / "model.py").write_text(MODEL.replace("return self.fc(x)", "return nn.functional.relu(self.fc(x))"))
    fresh = _trainlint(["train.py", "--output-format", "concise", "--no-cache"], project)
    warm = _trainlint(["train.py", "--output-format", "concise"], project)
    assert warm.stdout == fresh.stdout


def test_cache_dir_from_config_and_trainlint_clean(tmp_path):
    project = _project(tmp_path)
    (project / "pyproject.toml").write_text('[tool.trainlint]\ncache-dir = "build/lint-cache"\n')
    out = _trainlint(["train.py"], project)
    assert out.returncode == 1, out.stderr
    folder = project / "build" / "lint-cache"
    assert (folder / "CACHEDIR.TAG").is_file()
    assert not (project / ".trainlint_cache").exists()
    cleaned = _trainlint(["clean"], project)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not folder.exists()
    assert (project / "train.py").read_text() == TRAIN  # nothing of the user's touched


def test_clean_refuses_a_folder_that_is_not_a_trainlint_cache(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "data.txt").write_text("keep me")
    out = _trainlint(["clean", "--cache-dir", "precious"], tmp_path)
    assert out.returncode == 2
    assert "not deleted" in out.stderr
    assert (tmp_path / "precious" / "data.txt").read_text() == "keep me"


def test_an_unwritable_cache_folder_only_costs_the_cache(tmp_path):
    project = _project(tmp_path)
    (project / "blocked").write_text("a file where the cache folder would go")
    out = _trainlint(["train.py", "--cache-dir", "blocked/cache", "--output-format", "concise"], project)
    assert out.returncode == 1, out.stderr
    assert "TL202" in out.stdout


def test_two_runs_sharing_a_cache_at_once_agree(tmp_path):
    project = _copy_fixtures(tmp_path)
    args = [sys.executable, "-m", "trainlint", ".", "--output-format", "json"]
    env = dict(os.environ, NO_COLOR="1")
    procs = [subprocess.Popen(args, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert outs[0][0] == outs[1][0]
    assert not list((project / ".trainlint_cache").rglob(".tmp-*"))
    warm = _trainlint([".", "--output-format", "json"], project)
    assert warm.stdout == outs[0][0]


def test_workers_lint_each_group_of_files_as_the_serial_run_does():
    """Groups are cut where no import crosses; a group that reached into another one (through a file
    outside the run) makes the whole run serial, so the output never depends on the cut."""
    from trainlint.config import Config, Selection
    from trainlint.engine import Options, _groups, _lint_parallel, _roots, lint_paths
    from trainlint.files import discover
    from trainlint.rules import registry
    from trainlint.source import read_source

    config = Config(layers=[Selection()])
    options = Options(config=config, enabled=list(registry()), jobs=2)
    found = discover([str(FIXTURES)], config)
    items = {os.path.realpath(r): (r, read_source(r, d)) for r, d in found.files}
    roots = _roots(list(items))
    groups = _groups(items, roots)
    assert len(groups) > 20
    parallel = _lint_parallel(items, options, roots, 2)
    assert parallel is not None  # the fixtures' programs do not cross groups
    report, _ = lint_paths([str(FIXTURES)], Options(config=config, enabled=list(registry()), jobs=1))
    merged = sorted((f for r in parallel.values() for f in r.findings), key=lambda f: f.sort_key())
    assert [(f.path, f.span, f.code, f.message) for f in merged] == [(f.path, f.span, f.code, f.message) for f in report.findings]


def test_the_fingerprint_follows_what_decides_the_parse():
    from trainlint.cache import fingerprint

    assert fingerprint(["TL101"], False, 1 << 20) == fingerprint(["TL101"], False, 1 << 20)
    assert fingerprint(["TL101"], False, 1 << 20) != fingerprint(["TL101"], False, 1 << 10)
    assert fingerprint(["TL101"], False) != fingerprint(["TL101", "TL202"], False)


def test_touching_one_file_recomputes_only_the_programs_that_hold_it(tmp_path):
    """Each program is cached on its own: train_a.py and train_b.py share model.py, train_c.py shares
    nothing. Touching train_a.py re-analyses train_a's program only (not train_b's, which shares a file
    with it); touching model.py re-analyses both of its programs and not train_c's; and every run says
    what a run without the cache says."""
    from trainlint.cache import Cache, fingerprint
    from trainlint.config import Config, Selection
    from trainlint.engine import Options, lint_paths
    from trainlint.rules import registry

    project = tmp_path / "proj"
    project.mkdir()
    (project / "model.py").write_text(MODEL)
    for name in ("train_a.py", "train_b.py"):
        (project / name).write_text(TRAIN)
    (project / "train_c.py").write_text(TRAIN.replace("from model import Net\n", "").replace("Net()", "torch.nn.Linear(2, 1)"))
    config = Config(layers=[Selection()])
    enabled = list(registry())

    def run(cached: bool = True):
        cache = Cache(tmp_path / "cache", fingerprint(enabled, False, config.max_file_size)) if cached else None
        report, _ = lint_paths([str(project)], Options(config=config, enabled=enabled, cache=cache, jobs=1))
        listed = [(f.path, f.span, f.code, f.message) for f in report.findings]
        assert any(code == "TL202" for _, _, code, _ in listed)
        return listed, (cache.written if cache is not None else None)

    def touch(name: str, text: str = "\n# touched\n") -> None:
        path = project / name
        path.write_text(path.read_text() + text)

    cold, written = run()
    assert written.get("program") == 3
    warm, written = run()
    assert warm == cold and written == {}
    touch("train_a.py", "\nrandom_seed = 0\n")
    again, written = run()
    assert written == {"file": 1, "program": 1}
    assert again == run(cached=False)[0]
    touch("model.py", "\n\nclass Head(nn.Module):\n    pass\n")
    again, written = run()
    assert written == {"file": 1, "program": 2}
    assert again == run(cached=False)[0]


SOFTMAX_MODEL = """\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=1)
"""
CE_TRAIN = """\
import torch
from model import Net
from helpers import batches

model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
criterion = torch.nn.CrossEntropyLoss()
for i in batches(3):
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    opt.zero_grad()
    loss = criterion(model(x), y)
    loss = torch.clamp(loss, max=1.0)
    loss.backward()
    opt.step()
"""


def test_one_package_is_cut_into_shares_of_programs_for_the_workers(tmp_path):
    """A project whose files all import one another (one group) is not left to one worker: each worker
    lints a share of its programs and files, and the shares' findings merge into the serial output
    (model.py's TL103 is found by all five programs and reported once, naming train_a.py as the serial
    run does, whichever worker analysed train_a's program)."""
    from trainlint.cache import Cache, fingerprint
    from trainlint.config import Config, Selection
    from trainlint.engine import Options, _groups, _lint_parallel, _roots, lint_paths
    from trainlint.files import discover
    from trainlint.rules import registry
    from trainlint.source import read_source

    project = tmp_path / "pkg"
    project.mkdir()
    (project / "model.py").write_text(SOFTMAX_MODEL)
    (project / "helpers.py").write_text("def batches(n):\n    return [i for i in range(n)]\n")
    for name in "abcde":
        (project / f"train_{name}.py").write_text(CE_TRAIN)
    config = Config(layers=[Selection()])
    enabled = list(registry())

    def listed(findings):
        return [(f.path, f.span, f.code, f.message) for f in findings]

    serial = listed(lint_paths([str(project)], Options(config=config, enabled=enabled, jobs=1))[0].findings)
    assert [c for _, _, c, _ in serial].count("TL103") == 1 and "train_a.py:11" in serial[0][3]
    assert [c for _, _, c, _ in serial].count("TL202") == 5
    found = discover([str(project)], config)
    items = {os.path.realpath(r): (r, read_source(r, d)) for r, d in found.files}
    roots = _roots(list(items))
    assert len(_groups(items, roots)) == 1
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # no cache, cold, warm
        options = Options(config=config, enabled=enabled, jobs=2,
                          cache=Cache(cache, fingerprint(enabled, False, config.max_file_size)) if cache else None)
        parallel = _lint_parallel(items, options, roots, 2)
        assert parallel is not None  # cut into two shares, not linted serially
        merged = sorted((f for r in parallel.values() for f in r.findings), key=lambda f: f.sort_key())
        assert listed(merged) == serial
        assert listed(lint_paths([str(project)], options)[0].findings) == serial


def test_small_groups_are_linted_a_chunk_at_a_time():
    """A task has fixed costs (the rules' set-up, a scan of the project for a module's importers), so the
    small groups of a run (one script, a test file and its helper) go to the workers in a few chunks, each
    linted as the serial run lints all of them together: every file in exactly one task, groups whole,
    the groups of one project side by side, and big groups on their own."""
    from trainlint.engine import CHUNKS_PER_JOB, _chunks

    small = [(10, [f"/p{i % 3}/pkg/f{i}.py"]) for i in range(30)] + [(25, ["/p0/pkg/a.py", "/p0/pkg/b.py"])]
    tasks = _chunks(small, 50)
    files = [f for _, fs, part, owned in tasks for f in fs]
    assert sorted(files) == sorted(f for _, g in small for f in g)  # each file once
    assert all(part is None and owned is None for _, _, part, owned in tasks)
    assert 4 <= len(tasks) <= 9  # a few chunks, not 31 tasks
    assert all(w >= 50 for w, _, _, _ in tasks[:-1])
    for _, fs, _, _ in tasks:  # a group is never split between two chunks
        assert ("/p0/pkg/a.py" in fs) == ("/p0/pkg/b.py" in fs)
    assert CHUNKS_PER_JOB >= 2


def test_a_worker_does_not_read_the_files_of_other_workers_to_find_importers(tmp_path):
    """Looking for the entry scripts that import a file (an orphan helper of the run), a worker skips the
    files another worker lints: the run is cut where no import crosses, so none of them imports it. The
    programs are those of a search that reads them."""
    import libcst as cst

    from trainlint.analysis.program import build_programs
    from trainlint.context import FileContext
    from trainlint.source import read_source

    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "other").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'proj'\n")
    (root / "pkg" / "util.py").write_text("def batches(n):\n    return list(range(n))\n")
    (root / "pkg" / "train.py").write_text(
        "import torch\nfrom util import batches\nmodel = torch.nn.Linear(2, 2)\nfor b in batches(3):\n    model(b)\n"
        "if __name__ == '__main__':\n    pass\n")
    (root / "other" / "util.py").write_text("X = 1\n")
    (root / "other" / "script.py").write_text(  # names `util` on an import line: a candidate importer
        "import torch\nfrom other import util\nprint(util.X)\nif __name__ == '__main__':\n    pass\n")

    def ctx(real):
        source = read_source(real, real)
        return FileContext(source, cst.parse_module(source.text))

    util = os.path.realpath(root / "pkg" / "util.py")
    script = os.path.realpath(root / "other" / "script.py")
    results = {}
    for elsewhere in (frozenset(), frozenset({script})):
        asked = []

        def load(real):
            asked.append(real)
            return ctx(real) if real.endswith(".py") and os.path.exists(real) else None

        programs = build_programs({util: ctx(util)}, load, [root.resolve()], elsewhere=elsewhere)
        results[elsewhere] = sorted((p.entry.path, tuple(f.path for f in p.files)) for p in programs)
        assert (script in asked) == (not elsewhere)
    assert results[frozenset()] == results[frozenset({script})]
    assert any(entry.endswith("train.py") for entry, _ in results[frozenset()])
