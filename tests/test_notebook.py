"""Notebooks: code cells joined as the kernel runs them, IPython syntax neutralised, positions
reported per cell, broken notebooks reported without stopping the run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trainlint.notebook import CellMap, NotebookError, NotPythonNotebook, to_script


def _nb(*cells, language="python"):
    out = []
    for kind, src in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": src}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    meta = {"kernelspec": {"language": language, "name": language}, "language_info": {"name": language}}
    return json.dumps({"cells": out, "metadata": meta, "nbformat": 4, "nbformat_minor": 5})


CLAMPED = [
    ("markdown", "# A regression notebook\n"),
    ("code", ["%matplotlib inline\n", "import torch\n", "import torch.nn as nn\n", "!nvidia-smi\n"]),
    ("code", "model = nn.Linear(4, 1)\ncriterion = nn.MSELoss()\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"),
    ("markdown", "Train it:"),
    ("code", "for x, y in loader:\n    loss = criterion(model(x), y)\n    loss = loss.clamp(max=5.0)\n    loss.backward()\n    opt.step()"),
]


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "trainlint", *args], cwd=cwd, capture_output=True, text=True)


def test_cells_are_joined_and_magics_neutralised():
    text, cells = to_script(_nb(*CLAMPED))
    compile(text, "nb", "exec")  # valid Python
    assert "nvidia-smi" not in text.replace("# IPython", "") or "pass" in text
    lines = text.split("\n")
    assert lines[0].strip().startswith("pass")  # %matplotlib inline
    # The clamp line is cell 5, line 3.
    clamp_line = next(i for i, l in enumerate(lines, 1) if "clamp" in l)
    assert cells.position(clamp_line) == (5, 3)


def test_magic_inside_a_block_keeps_the_block_valid():
    text, _ = to_script(_nb(("code", "for i in range(3):\n    !echo hi\n    %time x = i\n")))
    compile(text, "nb", "exec")


def test_non_python_cell_magic_is_skipped_whole():
    text, _ = to_script(_nb(("code", "%%bash\nfor f in *; do echo $f; done\n"), ("code", "x = 1\n")))
    compile(text, "nb", "exec")
    assert "done" not in text


def test_help_syntax_is_neutralised():
    text, _ = to_script(_nb(("code", "import torch\ntorch.clamp?\n")))
    compile(text, "nb", "exec")


def test_broken_json_and_non_notebooks_raise_clear_errors():
    with pytest.raises(NotebookError, match="invalid notebook JSON"):
        to_script('{"cells": [')
    with pytest.raises(NotebookError, match="no 'cells' list"):
        to_script('{"foo": 1}')
    with pytest.raises(NotPythonNotebook):
        to_script(_nb(("code", "x <- 1"), language="R"))


def test_cell_map_positions():
    cm = CellMap(((2, 1), (4, 6), (7, 10)))
    assert cm.position(1) == (2, 1)
    assert cm.position(5) == (2, 5)
    assert cm.position(6) == (4, 1)
    assert cm.position(12) == (7, 3)


def test_cli_reports_cell_positions_in_every_human_format(tmp_path):
    (tmp_path / "reg.ipynb").write_text(_nb(*CLAMPED), encoding="utf-8")
    concise = _run("--select", "TL202", "--output-format", "concise", "reg.ipynb", cwd=tmp_path)
    assert concise.returncode == 1, concise.stderr
    assert concise.stdout.startswith("reg.ipynb:cell 5:3:")
    full = _run("--select", "TL202", "reg.ipynb", cwd=tmp_path)
    assert "reg.ipynb:cell 5:3:" in full.stdout and "loss.clamp(max=5.0)" in full.stdout
    assert "cell 5:4:" in full.stdout  # the related backward() location


def test_json_has_cell_and_in_cell_lines(tmp_path):
    (tmp_path / "reg.ipynb").write_text(_nb(*CLAMPED), encoding="utf-8")
    out = _run("--select", "TL202", "--output-format", "json", "reg.ipynb", cwd=tmp_path)
    (finding,) = json.loads(out.stdout)
    assert finding["cell"] == 5 and finding["line"] == 3 and finding["end_line"] == 3
    assert finding["related"][0]["cell"] == 5 and finding["related"][0]["line"] == 4


def test_folder_run_checks_notebooks_and_survives_a_broken_one(tmp_path):
    (tmp_path / "reg.ipynb").write_text(_nb(*CLAMPED), encoding="utf-8")
    (tmp_path / "broken.ipynb").write_text('{"cells": [', encoding="utf-8")
    (tmp_path / "r.ipynb").write_text(_nb(("code", "x <- 1"), language="R"), encoding="utf-8")
    out = _run("--select", "TL202", "--output-format", "concise", ".", cwd=tmp_path)
    assert out.returncode == 2  # the broken notebook is an unreadable input
    assert "reg.ipynb:cell 5:3:" in out.stdout
    assert "broken.ipynb" in out.stdout + out.stderr and "invalid notebook JSON" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert "r.ipynb" in out.stderr and "not a Python notebook" in out.stderr


def test_suppression_comment_in_a_cell(tmp_path):
    cells = list(CLAMPED)
    cells[-1] = ("code", cells[-1][1].replace("loss.clamp(max=5.0)", "loss.clamp(max=5.0)  # noqa: TL202"))
    (tmp_path / "reg.ipynb").write_text(_nb(*cells), encoding="utf-8")
    out = _run("--select", "TL202", "reg.ipynb", cwd=tmp_path)
    assert out.returncode == 0, out.stdout


def test_syntax_error_in_a_cell_is_located_in_that_cell(tmp_path):
    (tmp_path / "bad.ipynb").write_text(_nb(("code", "import torch\n"), ("code", "x = 1\nfor i in range(3)\n    pass\n")), encoding="utf-8")
    out = _run("--output-format", "concise", "bad.ipynb", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.startswith("bad.ipynb:cell 2:2:") and "TL001" in out.stdout


def test_assignment_magics_keep_the_name_bound():
    text, _ = to_script(_nb(("code", "import os\nif True:\n    VERSION = !curl -s https://x | grep -Po 'v\\K.*?'\n    files, n = %sx ls\nprint(VERSION)\n")))
    compile(text, "nb", "exec")
    assert "VERSION = None" in text


def test_empty_notebook_file_is_clean(tmp_path):
    (tmp_path / "empty.ipynb").write_text("", encoding="utf-8")
    out = _run("empty.ipynb", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
