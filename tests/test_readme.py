"""The README's quickstart is exactly two commands, and .ci/run runs the test one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quickstart_has_two_commands():
    cmds = _quickstart_commands()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    assert "trainlint fixtures/" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = _quickstart_commands()[1]
    assert any(line.strip() == test_cmd for line in ci.splitlines()), f".ci/run must run `{test_cmd}`"


def test_readme_api_example_runs(tmp_path):
    """The README's test-suite example is a real test file: run it with pytest."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("# test_model.py")
    (tmp_path / "test_model.py").write_text(text[start:text.index("```", start)], encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_model.py")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "4 passed" in out.stdout
