"""The pre-commit hook, end to end, with the real ``pre-commit``.

``pre-commit try-repo`` clones the hook repository, builds a virtualenv and ``pip install``s trainlint
into it, exactly as a user's ``.pre-commit-config.yaml`` would; then the hook runs on a throwaway git
repository holding a training script.

Why the hook repository is a snapshot of this checkout, not the checkout itself: ``try-repo PATH``
uses PATH's HEAD commit plus its *tracked* uncommitted changes (``git add -u`` into a shadow commit);
untracked files — a new ``.pre-commit-hooks.yaml``, a new rule module — are left out, so the test would
check the last commit rather than the tree under test. The snapshot copies every file git would
commit (tracked or untracked, minus what .gitignore ignores) into a fresh repository in tmp_path.

Needs: git, the ``pre-commit`` executable (a declared test dependency: missing means FAIL, not skip),
and a pip that can get setuptools, libcst, click and pathspec (PyPI, a mirror, or a wheelhouse given
with PIP_FIND_LINKS / PIP_NO_INDEX, which the hook's pip inherits). Takes about 15 s: two venv builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK_ID = "trainlint"
TIMEOUT = 900  # seconds per pre-commit call: it builds a virtualenv

BAD_TRAIN = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn

    model = nn.Linear(10, 1)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = [(torch.randn(8, 10), torch.randn(8, 1)) for _ in range(4)]

    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.clamp(criterion(model(x), y), max=10.0)
        loss.backward()
        optimizer.step()
    """
)

CLEAN_TRAIN = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Linear(10, 1)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = [(torch.randn(8, 10), torch.randn(8, 1)) for _ in range(4)]

    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
    """
)

MODEL_RELU_OUTPUT = textwrap.dedent(
    """\
    import torch.nn as nn


    class Regressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 1)

        def forward(self, x):
            return nn.functional.relu(self.fc(x))
    """
)

TRAIN_REG = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn

    from model import Regressor

    torch.manual_seed(0)
    model = Regressor()
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = [(torch.randn(8, 10), torch.randn(8, 1)) for _ in range(4)]
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    """
)

# Not Python: if the manifest's `types_or` let it through, trainlint (which lints files named on the
# command line whatever their suffix) would report a syntax error and the clean run would fail.
NOT_PYTHON = "Notes: loss = torch.clamp(loss, max=10.0) is wrong; clip the gradients!\n"


def _pre_commit() -> str:
    """The pre-commit executable of this interpreter's environment (or on PATH); a missing one fails."""
    try:
        import pre_commit  # noqa: F401
    except ImportError:  # pragma: no cover - a broken test environment
        pytest.fail("the `pre-commit` package is not installed; it is a test dependency: pip install -e '.[test]'")
    candidates = [Path(sys.executable).parent / ("pre-commit.exe" if os.name == "nt" else "pre-commit")]
    found = shutil.which("pre-commit")
    if found:
        candidates.append(Path(found))
    for exe in candidates:
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    pytest.fail("the `pre-commit` executable was not found next to the interpreter or on PATH")  # pragma: no cover


def _env(tmp_path: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    # Running inside a git hook sets GIT_DIR / GIT_INDEX_FILE, which would point git at the wrong repo.
    home = tmp_path / "pre-commit-home"  # pre-commit's store and log: not the user's ~/.cache/pre-commit
    tmp = tmp_path / "tmp"  # try-repo keeps its clone and virtualenv in a temporary folder: keep it here too
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env.update(
        PRE_COMMIT_HOME=str(home),
        TMPDIR=str(tmp),
        PRE_COMMIT_COLOR="never",
        NO_COLOR="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def _git(cwd: Path, env: Dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"git {' '.join(args)} failed in {cwd}:\n{proc.stdout}"
    return proc.stdout


def _new_repo(path: Path, env: Dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _git(path, env, "init", "-q")
    _git(path, env, "config", "user.name", "trainlint tests")
    _git(path, env, "config", "user.email", "tests@trainlint.invalid")


def _commit_all(path: Path, env: Dict[str, str], message: str) -> None:
    _git(path, env, "add", "-A")
    _git(path, env, "commit", "-q", "--no-verify", "-m", message)


def _checkout_files(env: Dict[str, str]) -> List[str]:
    """The files of this checkout as a commit of the working tree would hold them."""
    if (ROOT / ".git").exists():
        out = _git(ROOT, env, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        return [p for p in out.split("\0") if p and (ROOT / p).is_file()]
    # Not a git checkout (an unpacked sdist, say): what the hook needs to build.
    names = [p.name for p in ROOT.iterdir() if p.is_file() and p.name.split(".")[0] in ("pyproject", "README", "LICENSE", "setup")]
    names.append(".pre-commit-hooks.yaml")
    names += [p.relative_to(ROOT).as_posix() for p in (ROOT / "trainlint").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return names


def _snapshot(dest: Path, env: Dict[str, str]) -> Path:
    """A one-commit git repository holding this checkout's working tree."""
    files = _checkout_files(env)
    assert ".pre-commit-hooks.yaml" in files, f"no .pre-commit-hooks.yaml in {ROOT}"
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    _new_repo(dest, env)
    _commit_all(dest, env, "snapshot of the trainlint checkout under test")
    return dest


def _try_repo(pre_commit: str, hook_repo: Path, project: Path, env: Dict[str, str], *selection: str):
    proc = subprocess.run(
        [pre_commit, "try-repo", str(hook_repo), HOOK_ID, "--color", "never", *selection],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT,
    )
    log = Path(env["PRE_COMMIT_HOME"]) / "pre-commit.log"  # written when pre-commit itself fails (e.g. pip)
    if log.is_file():
        proc.stdout += f"\n--- {log} ---\n" + log.read_text(encoding="utf-8", errors="replace")
    return proc


@pytest.mark.slow
def test_pre_commit_hook_fails_on_a_clamped_loss_and_passes_once_fixed(tmp_path: Path) -> None:
    pre_commit = _pre_commit()
    if shutil.which("git") is None:  # pragma: no cover
        pytest.fail("git is required by pre-commit and this test")
    env = _env(tmp_path)
    hook_repo = _snapshot(tmp_path / "trainlint-hook-repo", env)

    project = tmp_path / "project"
    _new_repo(project, env)
    (project / "train.py").write_text(BAD_TRAIN, encoding="utf-8")
    _commit_all(project, env, "a training loop that clamps the loss")

    bad = _try_repo(pre_commit, hook_repo, project, env, "--files", "train.py")
    out = bad.stdout
    assert bad.returncode != 0, f"the hook passed on a clamped loss:\n{out}"
    assert "Failed" in out and f"- hook id: {HOOK_ID}" in out, out
    assert "- exit code: 1" in out, f"trainlint should exit 1 (findings), not crash:\n{out}"
    assert "TL202" in out, out
    assert "train.py:11:" in out, out  # the clamp's line, named with the file

    (project / "train.py").write_text(CLEAN_TRAIN, encoding="utf-8")
    (project / "NOTES.txt").write_text(NOT_PYTHON, encoding="utf-8")
    _commit_all(project, env, "clip the gradients, not the loss")

    good = _try_repo(pre_commit, hook_repo, project, env, "--all-files")
    assert good.returncode == 0, f"the hook failed on a clean training loop:\n{good.stdout}"
    assert "Passed" in good.stdout, good.stdout
    assert "TL202" not in good.stdout, good.stdout

    # Only the model is staged: the hook gets model.py alone, and still judges it with the script that
    # trains it (train_reg.py imports it: a regression with MSELoss, so the ReLU output is a bug).
    (project / "model.py").write_text(MODEL_RELU_OUTPUT, encoding="utf-8")
    (project / "train_reg.py").write_text(TRAIN_REG, encoding="utf-8")
    _commit_all(project, env, "a regressor and the script that trains it")
    only_model = _try_repo(pre_commit, hook_repo, project, env, "--files", "model.py")
    assert only_model.returncode != 0, f"the hook passed model.py alone:\n{only_model.stdout}"
    assert "model.py:10:" in only_model.stdout and "TL101" in only_model.stdout, only_model.stdout
    # findings of train_reg.py itself (not staged) are not reported
    assert not any(line.startswith("train_reg.py:") for line in only_model.stdout.splitlines()), only_model.stdout
