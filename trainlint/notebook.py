"""Jupyter notebooks: the code cells of an ``.ipynb`` as one Python script, and the way back.

The code cells are joined in order, one after the other, so that a model defined in cell 2 and trained
in cell 5 is one program, exactly as the kernel runs it. IPython syntax that is not Python (``%magic``,
``!shell``, ``obj?``, cell magics such as ``%%bash``) becomes ``pass`` at the same indentation, so lines
keep their numbers and blocks stay valid. Positions are reported as ``cell N, line L`` (N counts every
cell of the notebook, as editors show them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

#: Cell magics whose body is still Python.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "python", "python3", "markdown_if", "skip"}
_MAGIC_LINE = re.compile(r"^(\s*)(%|!|\?)")
_HELP_LINE = re.compile(r"^\s*[\w.]+\?{1,2}\s*$")
_ASSIGN_MAGIC = re.compile(r"^(\s*)([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*[!%]")


class NotebookError(Exception):
    """The file is not a readable notebook; the message is for the user."""


class NotPythonNotebook(NotebookError):
    """A notebook of another language (R, Julia...): skipped, not an error."""


@dataclass(frozen=True)
class CellMap:
    """Where each code cell starts in the joined script: (cell number, first line), ascending."""

    starts: Tuple[Tuple[int, int], ...]

    def position(self, line: int) -> Tuple[int, int]:
        """(cell number, line within the cell) of a line of the joined script."""
        cell, first = self.starts[0] if self.starts else (1, 1)
        for number, start in self.starts:
            if start > line:
                break
            cell, first = number, start
        return cell, line - first + 1


def _cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    if not isinstance(src, str):
        raise NotebookError("a cell's 'source' is neither a string nor a list of strings")
    return src


def _pythonize(src: str) -> List[str]:
    lines = src.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split(None, 1)[0] if lines[0].lstrip()[2:].strip() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return ["pass  # cell magic" if i == 0 else "" for i in range(len(lines))]
        lines[0] = "pass  # cell magic"
    out = []
    for line in lines:
        a = _ASSIGN_MAGIC.match(line)
        if a:  # files = !ls, t = %timeit -o f(): the name is still bound
            out.append(f"{a.group(1)}{a.group(2)} = None  # IPython")
            continue
        m = _MAGIC_LINE.match(line)
        if m or _HELP_LINE.match(line):
            indent = m.group(1) if m else line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass  # IPython")
        else:
            out.append(line)
    return out


def is_python_notebook(nb: dict) -> bool:
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    lang = (meta.get("language_info") or {}).get("name") if isinstance(meta.get("language_info"), dict) else None
    kernel = (meta.get("kernelspec") or {}).get("language") if isinstance(meta.get("kernelspec"), dict) else None
    found = lang or kernel
    return found is None or str(found).lower() in ("python", "python3", "ipython", "ipython3")


def to_script(data: str) -> Tuple[str, CellMap]:
    """The joined Python text of a notebook's code cells, and the map back to cells."""
    if not data.strip():
        return "", CellMap(())  # an empty file: nothing to lint, like an empty .py
    try:
        nb = json.loads(data)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"invalid notebook JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError("not a Jupyter notebook (nbformat 4): no 'cells' list")
    if not is_python_notebook(nb):
        raise NotPythonNotebook("skipped: not a Python notebook (its kernel language is not Python)")
    lines: List[str] = []
    starts: List[Tuple[int, int]] = []
    for number, cell in enumerate(nb["cells"], 1):
        if not isinstance(cell, dict):
            raise NotebookError(f"cell {number} is not an object")
        if cell.get("cell_type") != "code":
            continue
        cell_lines = _pythonize(_cell_source(cell))
        starts.append((number, len(lines) + 1))
        lines.extend(cell_lines)
        if cell_lines and cell_lines[-1] != "":
            lines.append("")  # a newline between cells, like the kernel's separate executions
    return "\n".join(lines) + ("\n" if lines and lines[-1] != "" else ""), CellMap(tuple(starts))


def cell_of(cells: Optional[CellMap], line: int) -> Tuple[Optional[int], int]:
    if cells is None:
        return None, line
    return cells.position(line)
