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


# -- issue 10: notebooks linted as Jupyter runs them -------------------------------------------------

TRAIN_CELL = ("code", "for x, y in loader:\n    loss = criterion(model(x), y)\n    loss = loss.clamp(max=5.0)\n    loss.backward()\n    opt.step()\n")


def test_one_broken_cell_is_reported_and_the_rest_still_checked(tmp_path):
    cells = list(CLAMPED[:3]) + [("code", "def f(:\n    pass\n")] + [CLAMPED[4]]
    text, cmap = to_script(_nb(*cells))
    compile(text, "nb", "exec")  # the broken cell is left out, the program still parses
    assert [(cmap.position(e.line), e.message) for e in cmap.errors] == [((4, 1), "invalid syntax")]
    (tmp_path / "nb.ipynb").write_text(_nb(*cells), encoding="utf-8")
    out = _run("--select", "TL001,TL202", "--output-format", "concise", "nb.ipynb", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert any(l.startswith("nb.ipynb:cell 4:1:") and "TL001" in l for l in lines), out.stdout
    assert any(l.startswith("nb.ipynb:cell 5:3:") and "TL202" in l for l in lines), out.stdout
    full = _run("--select", "TL001", "nb.ipynb", cwd=tmp_path)
    assert "def f(:" in full.stdout  # the cell's own text is shown, not the blank left in its place


def test_old_grammar_cell_is_kept_not_left_out():
    text, cmap = to_script(_nb(("code", "import torch\nx = torch.zeros(2).cuda(async=True)\n"), ("code", "y = 1\n")))
    assert not cmap.errors and "async=True" in text


def test_shell_command_continued_with_backslash():
    src = "!pip install torch \\\n    torchvision \\\n    timm\nimport torch\n%pip install a \\\n  b\nx = 1\n"
    text, cmap = to_script(_nb(("code", src)))
    compile(text, "nb", "exec")
    assert not cmap.errors
    assert "torchvision" not in text and "timm" not in text
    assert text.split("\n")[3] == "import torch" and text.split("\n")[6] == "x = 1"  # lines keep their numbers


def test_statement_magics_are_unwrapped_not_dropped():
    src = ("%time train(model)\n"
           "%timeit -n 3 -r 1 step()\n"
           "for i in range(2):\n    %time loss = run(i)\n"
           "%prun -s cumulative fit()\n"
           "%time\n"
           "%timeit -o\n")
    text, cmap = to_script(_nb(("code", src)))
    compile(text, "nb", "exec")
    lines = text.split("\n")
    assert lines[:6] == ["train(model)", "step()", "for i in range(2):", "    loss = run(i)", "fit()", "pass  # IPython"]
    assert lines[6] == "pass  # IPython"


def test_statement_magic_and_time_cell_are_linted(tmp_path):
    cells = list(CLAMPED[:3]) + [("code", "%%time\n" + TRAIN_CELL[1]),
                                 ("code", "%time for x, y in loader: opt.step(criterion(model(x), y).clamp(max=1.0).backward())\n")]
    (tmp_path / "nb.ipynb").write_text(_nb(*cells), encoding="utf-8")
    out = _run("--select", "TL202", "--output-format", "concise", "nb.ipynb", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "nb.ipynb:cell 4:4:" in out.stdout  # line 3 of the loop, after the %%time line


def test_cell_indented_by_one_space_runs_as_jupyter_runs_it(tmp_path):
    indented = ("code", "".join(" " + l + "\n" for l in TRAIN_CELL[1].splitlines()))
    text, cmap = to_script(_nb(CLAMPED[1], CLAMPED[2], indented))
    compile(text, "nb", "exec")
    assert not cmap.errors
    (tmp_path / "nb.ipynb").write_text(_nb(CLAMPED[1], CLAMPED[2], indented), encoding="utf-8")
    out = _run("--select", "TL202", "--output-format", "json", "nb.ipynb", cwd=tmp_path)
    (finding,) = json.loads(out.stdout)
    # columns count in the cell's own text (one space more than the script's line)
    column = indented[1].splitlines()[2].index("loss.clamp") + 1
    assert (finding["cell"], finding["line"], finding["column"]) == (3, 3, column)


SCHEDULED = [
    ("code", "import torch\nimport torch.nn as nn\nmodel = nn.Linear(4, 1)\n"),
    ("code", "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nsched = torch.optim.lr_scheduler.StepLR(opt, 10)\n"),
    ("code", "for epoch in range(10):\n    for x, y in loader:\n        loss = nn.functional.mse_loss(model(x), y)\n"
             "        opt.zero_grad()\n        loss.backward()\n        sched.step()\n        opt.step()\n"),
]


def test_messages_related_locations_and_fixes_are_in_cell_coordinates(tmp_path):
    (tmp_path / "nb.ipynb").write_text(_nb(*SCHEDULED), encoding="utf-8")
    out = _run("--output-format", "json", "nb.ipynb", cwd=tmp_path)
    findings = json.loads(out.stdout)
    assert findings, out.stderr
    text, cmap = to_script(_nb(*SCHEDULED))
    script_lines = len(text.splitlines())
    cell_of_line = {c: n for c, n in cmap.starts}
    for f in findings:
        assert f["cell"] is not None
        # a message never names a line of the joined script: every "line N" is "cell C, line N"
        import re

        for m in re.finditer(r"(cell \d+, )?line (\d+)", f["message"]):
            assert m.group(1), f["message"]
        for r in f["related"]:
            assert r["cell"] is not None
        for e in (f["fix"] or {}).get("edits", []):
            assert e["cell"] in cell_of_line
            assert e["location"]["row"] <= script_lines
    tl205 = [f for f in findings if f["code"] == "TL205"]
    assert tl205 and "cell 3, line 7" in tl205[0]["message"], tl205


def test_inserted_seed_lands_after_the_import_cell_in_cell_coordinates(tmp_path):
    cells = [("code", "%matplotlib inline\nimport numpy as np\n"), ("code", "import torch\nimport torch.nn as nn\n"),
             ("code", "model = nn.Linear(4, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"),
             ("code", "for x, y in loader:\n    opt.zero_grad()\n    nn.functional.mse_loss(model(x), y).backward()\n    opt.step()\n")]
    (tmp_path / "nb.ipynb").write_text(_nb(*cells), encoding="utf-8")
    out = _run("--select", "TL301", "--output-format", "json", "nb.ipynb", cwd=tmp_path)
    (finding,) = json.loads(out.stdout)
    assert finding["cell"] == 4
    (edit,) = finding["fix"]["edits"]
    assert edit["cell"] == 2 and edit["location"]["row"] == 3 and edit["content"] == "torch.manual_seed(0)\n"


def test_a_line_starting_with_percent_inside_brackets_is_python_not_a_magic():
    src = ("for epoch in range(3):\n"
           "    epoch_str = (\n        \"Epoch %d. Loss: %f\"\n        % (epoch, loss))\n"
           "    print('epoch %d, loss %.4f'\n          % (epoch + 1, loss))\n"
           "    doc = \"\"\"\n!not a shell command\n%not a magic\n\"\"\"\n"
           "    x = 1 + \\\n        2\n"
           "    %time y = f(x)\n")
    text, cmap = to_script(_nb(("code", src)))
    assert not cmap.errors
    lines = text.split("\n")
    assert lines[3] == "        % (epoch, loss))" and lines[5] == "          % (epoch + 1, loss))"
    assert lines[7] == "!not a shell command" and lines[8] == "%not a magic"
    assert lines[12] == "    y = f(x)"
