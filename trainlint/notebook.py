"""Jupyter notebooks: the code cells of an ``.ipynb`` as one Python script, and the way back.

The code cells are joined in order, one after the other, so that a model defined in cell 2 and trained
in cell 5 is one program, exactly as the kernel runs it. IPython syntax that is not Python (``%magic``,
``!shell``, ``obj?``, cell magics such as ``%%bash``, and the lines a trailing backslash continues) becomes
``pass`` (or a blank line) at the same indentation, so lines keep their numbers and blocks stay valid. Line
magics that run a statement (``%time train(model)``, ``%timeit -n 3 step()``) are unwrapped to that
statement, and ``%%time`` cells keep their body. A cell whose first line is indented runs with that indent
removed (IPython's ``leading_indent``). A cell that does not compile is left out (its lines blank) and
reported on its own (TL001), so one broken cell does not silence the rest of the notebook. Positions are
reported as ``cell N, line L`` (N counts every cell of the notebook, as editors show them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

#: Cell magics whose body is still Python.
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "python", "python3", "markdown_if", "skip"}
#: Line magics that run the Python statement after them (``%time train(model)``), and the options
#: each takes before the statement (flags, and options that take a value).
STATEMENT_MAGICS = {
    "time": ("", ""),
    "timeit": ("tcqo", "nrp"),
    "prun": ("rq", "lsTD"),
    "memit": ("co", "rit"),
    "debug": ("", "b"),
}
_MAGIC_LINE = re.compile(r"^(\s*)(%|!|\?)")
_HELP_LINE = re.compile(r"^\s*[\w.]+\?{1,2}\s*$")
_ASSIGN_MAGIC = re.compile(r"^(\s*)([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=\s*[!%]")
_STATEMENT_MAGIC = re.compile(r"^(\s*)%(\w+)\b(.*)$")
_LEADING_INDENT = re.compile(r"^[ \t]+")
_PY_ONLY_AST = 0x400


class NotebookError(Exception):
    """The file is not a readable notebook; the message is for the user."""


class NotPythonNotebook(NotebookError):
    """A notebook of another language (R, Julia...): skipped, not an error."""


@dataclass(frozen=True)
class CellError:
    """A code cell the Python compiler rejects, as the kernel would: where (in the joined script) and why.
    The cell is left out of the program (its lines are blank) so that the other cells are still checked."""

    line: int
    column: int
    message: str
    first: int = 0  # the cell's first line in the joined script
    text: Tuple[str, ...] = ()  # the cell's lines as the kernel saw them (the script has blanks there)


@dataclass(frozen=True)
class CellMap:
    """Where each code cell starts in the joined script: (cell number, first line), ascending; the cells
    that do not compile; and the cells whose common leading indent was removed (as IPython does), as
    (first line, last line, width) so that columns map back too."""

    starts: Tuple[Tuple[int, int], ...]
    errors: Tuple[CellError, ...] = ()
    dedents: Tuple[Tuple[int, int, int], ...] = ()

    def position(self, line: int) -> Tuple[int, int]:
        """(cell number, line within the cell) of a line of the joined script."""
        cell, first = self.starts[0] if self.starts else (1, 1)
        for number, start in self.starts:
            if start > line:
                break
            cell, first = number, start
        return cell, line - first + 1

    def column(self, line: int, column: int) -> int:
        """The column in the cell's own text of ``column`` on ``line`` of the joined script."""
        for first, last, width in self.dedents:
            if first <= line <= last:
                return column + width
        return column

    def original_line(self, line: int) -> Optional[str]:
        """The text of a line of a left-out cell (the joined script holds a blank line there)."""
        for err in self.errors:
            if err.first <= line < err.first + len(err.text):
                return err.text[line - err.first]
        return None

    def describe(self, line: int) -> str:
        """``cell 5, line 3``: how a message names a line of the joined script."""
        cell, in_cell = self.position(line)
        return f"cell {cell}, line {in_cell}"


def _cell_source(cell: dict) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(s for s in src if isinstance(s, str))
    if not isinstance(src, str):
        raise NotebookError("a cell's 'source' is neither a string nor a list of strings")
    return src


def _unwrap(indent: str, magic: str, rest: str) -> Optional[str]:
    """The statement a line magic such as ``%time`` or ``%timeit -n 3`` runs, at ``indent``; None when
    there is none (``%time`` alone) or it is not one Python statement."""
    flags, valued = STATEMENT_MAGICS[magic]
    words = rest.strip()
    while words.startswith("-"):
        m = re.match(r"-(\w)(\S*)\s*", words)
        if m is None:
            return None
        opt, attached = m.group(1), m.group(2)
        words = words[m.end():]
        if opt in valued and not attached:  # -n 100: the value is the next word
            words = words.split(None, 1)[1] if len(words.split(None, 1)) > 1 else ""
        elif opt not in valued and opt not in flags:
            return None
    if not words:
        return None
    try:
        compile(words, "<magic>", "exec", dont_inherit=True, flags=_PY_ONLY_AST)
    except (SyntaxError, ValueError):
        return None
    return f"{indent}{words}"


def _dedent(lines: List[str]) -> Tuple[List[str], int]:
    """IPython's ``leading_indent``: a cell whose first line is indented runs with that indent removed
    from every line that starts with it."""
    m = _LEADING_INDENT.match(lines[0]) if lines else None
    if m is None:
        return lines, 0
    space = m.group(0)
    return [l[len(space):] if l.startswith(space) else l for l in lines], len(space)


class _LineState:
    """Enough of Python's tokenizer to know whether a line starts a new statement: open brackets,
    an open triple-quoted string, a backslash continuation. IPython syntax (``%magic``, ``!cmd``) is
    only recognised at the start of a statement, as IPython does."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote: Optional[str] = None  # the open triple quote
        self.backslash = False

    def at_start(self) -> bool:
        return self.depth == 0 and self.quote is None and not self.backslash

    def scan(self, line: str) -> None:
        i, n = 0, len(line)
        self.backslash = False
        while i < n:
            if self.quote is not None:
                k = _closing(line, i, self.quote)
                if k < 0:
                    return
                self.quote, i = None, k
                continue
            c = line[i]
            if c == "#":
                return
            if c in "([{":
                self.depth += 1
            elif c in ")]}":
                self.depth = max(0, self.depth - 1)
            elif c in "\"'":
                q = line[i:i + 3] if line[i:i + 3] in ('"""', "'''") else c
                k = _closing(line, i + len(q), q)
                if k < 0:
                    if len(q) == 3:
                        self.quote = q
                    return  # an unterminated one-line string: the compiler reports it
                i = k
                continue
            elif c == "\\" and i == n - 1:
                self.backslash = True
            i += 1


def _closing(line: str, start: int, quote: str) -> int:
    """The index just after the closing ``quote`` from ``start`` (escapes skipped), or -1."""
    i = start
    while True:
        k = line.find(quote, i)
        if k < 0:
            return -1
        b = k - 1
        while b >= start and line[b] == "\\":
            b -= 1
        if (k - 1 - b) % 2 == 0:
            return k + len(quote)
        i = k + 1


def _pythonize(src: str) -> Tuple[List[str], int]:
    """The Python lines of one cell (as many as the cell has), and the indent removed from them."""
    lines = src.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines, width = _dedent(lines)
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split(None, 1)[0] if lines[0].lstrip()[2:].strip() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return ["pass  # cell magic" if i == 0 else "" for i in range(len(lines))], width
        lines[0] = "pass  # cell magic"
    out: List[str] = []
    continued = False  # the previous line was IPython syntax ending with a backslash
    state = _LineState()  # where the Python text stands: inside brackets, a string, a continuation
    for line in lines:
        if continued:  # !pip install a \ ... : the rest of the shell command
            out.append("")
            continued = line.rstrip().endswith("\\")
            continue
        if not state.at_start():
            # inside brackets, a triple-quoted string or after a backslash: Python, whatever it starts
            # with (`% (epoch, loss)` continuing a string formatting is the modulo operator)
            out.append(line)
            state.scan(line)
            continue
        a = _ASSIGN_MAGIC.match(line)
        if a:  # files = !ls, t = %timeit -o f(): the name is still bound
            out.append(f"{a.group(1)}{a.group(2)} = None  # IPython")
            continued = line.rstrip().endswith("\\")
            continue
        s = _STATEMENT_MAGIC.match(line)
        if s and s.group(2) in STATEMENT_MAGICS and not line.rstrip().endswith("\\"):
            stmt = _unwrap(s.group(1), s.group(2), s.group(3))
            if stmt is not None:  # %time train(model): the statement still runs
                out.append(stmt)
                continue
        m = _MAGIC_LINE.match(line)
        if m or _HELP_LINE.match(line):
            indent = m.group(1) if m else line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass  # IPython")
            continued = line.rstrip().endswith("\\")
        else:
            out.append(line)
            state.scan(line)
    return out, width


def _compile_error(lines: List[str], first: int) -> Optional[CellError]:
    """The error the kernel would raise compiling this cell, at its line in the joined script."""
    try:
        compile("\n".join(lines) + "\n", "<cell>", "exec", dont_inherit=True, flags=_PY_ONLY_AST)
        return None
    except (SyntaxError, ValueError) as exc:
        from trainlint.parsing import _OLD_KEYWORDS, parse_legacy

        text = "\n".join(lines) + "\n"
        if _OLD_KEYWORDS.search(text) and parse_legacy(text) is not None:
            return None  # old code (`x.cuda(async=True)`): read under the old grammar, like a .py file
        lineno = getattr(exc, "lineno", None) or 1
        lineno = max(1, min(lineno, max(1, len(lines))))
        offset = getattr(exc, "offset", None) or 1
        message = getattr(exc, "msg", None) or str(exc)
        return CellError(first + lineno - 1, max(1, offset), message, first, tuple(lines))
    except (RecursionError, MemoryError):
        return CellError(first, 1, "too deeply nested to parse", first, tuple(lines))


def is_python_notebook(nb: dict) -> bool:
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    lang = (meta.get("language_info") or {}).get("name") if isinstance(meta.get("language_info"), dict) else None
    kernel = (meta.get("kernelspec") or {}).get("language") if isinstance(meta.get("kernelspec"), dict) else None
    found = lang or kernel
    return found is None or str(found).lower() in ("python", "python3", "ipython", "ipython3")


def _json_int(text: str):
    """A JSON integer; one too long for ``int()`` (Python 3.11 refuses more than 4,300 digits) is kept
    as its text: no notebook field trainlint reads is such a number."""
    return int(text) if len(text) <= 4000 else text


def to_script(data: str) -> Tuple[str, CellMap]:
    """The joined Python text of a notebook's code cells, and the map back to cells."""
    if not data.strip():
        return "", CellMap(())  # an empty file: nothing to lint, like an empty .py
    try:
        nb = json.loads(data, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"invalid notebook JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise NotebookError("invalid notebook: its JSON is nested too deeply to read") from None
    except (ValueError, MemoryError) as exc:
        raise NotebookError(f"invalid notebook JSON: {str(exc)[:200]}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookError("not a Jupyter notebook (nbformat 4): no 'cells' list")
    if not is_python_notebook(nb):
        raise NotPythonNotebook("skipped: not a Python notebook (its kernel language is not Python)")
    lines: List[str] = []
    starts: List[Tuple[int, int]] = []
    errors: List[CellError] = []
    dedents: List[Tuple[int, int, int]] = []
    for number, cell in enumerate(nb["cells"], 1):
        if not isinstance(cell, dict):
            raise NotebookError(f"cell {number} is not an object")
        if cell.get("cell_type") != "code":
            continue
        cell_lines, width = _pythonize(_cell_source(cell))
        first = len(lines) + 1
        starts.append((number, first))
        error = _compile_error(cell_lines, first)
        if error is not None:  # the kernel would not run this cell: leave it out, check the others
            errors.append(error)
            cell_lines = [""] * len(cell_lines)
        elif width:
            dedents.append((first, first + len(cell_lines) - 1, width))
        lines.extend(cell_lines)
        if cell_lines and cell_lines[-1] != "":
            lines.append("")  # a newline between cells, like the kernel's separate executions
    text = "\n".join(lines) + ("\n" if lines and lines[-1] != "" else "")
    return text, CellMap(tuple(starts), tuple(errors), tuple(dedents))


def cell_of(cells: Optional[CellMap], line: int) -> Tuple[Optional[int], int]:
    if cells is None:
        return None, line
    return cells.position(line)
