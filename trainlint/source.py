"""One source file: how its bytes become text, and where its lines are."""

from __future__ import annotations

import codecs
import io
import tokenize
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from trainlint.notebook import CellMap


class SourceError(Exception):
    """A file that cannot be read or decoded; the message is for the user."""


class SourceSkipped(SourceError):
    """A file that is not for trainlint after all (a notebook in another language): a warning."""


@dataclass
class SourceFile:
    path: str  # as displayed (relative to the cwd when possible)
    text: str  # Python text (for a notebook: its code cells joined, see trainlint.notebook)
    cells: Optional["CellMap"] = None  # set for notebooks
    _lines: Optional[List[str]] = field(default=None, repr=False)

    @property
    def lines(self) -> List[str]:
        if self._lines is None:
            self._lines = self.text.splitlines()
        return self._lines

    def line(self, number: int) -> str:
        """The text of 1-based line ``number`` ('' past the end)."""
        lines = self.lines
        return lines[number - 1] if 0 < number <= len(lines) else ""


def decode(data: bytes, path: str) -> str:
    """Decode Python source as the interpreter would (BOM, PEP 263 cookie, else UTF-8)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:
        if "unknown encoding" in str(exc) or "encoding problem" in str(exc):  # a bad coding cookie
            raise SourceError(f"cannot read the encoding declaration: {exc}") from None
        # detect_encoding reports bytes that are not UTF-8 in the first two lines (where a cookie
        # could be) as "invalid or missing encoding declaration": say what is actually wrong.
        encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1]
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            f"cannot decode as {encoding}: byte {bad!r} at line {line} (offset {exc.start}); "
            "save the file as UTF-8 or declare its encoding (PEP 263)"
        ) from None
    except LookupError:
        raise SourceError(f"unknown encoding {encoding!r}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if encoding.lower().replace("_", "-") in ("utf-8-sig",) and text.startswith(codecs.BOM_UTF8.decode()):
        text = text[1:]
    return text


def read_source(path: str, display: str) -> SourceFile:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise SourceError("is a directory") from None
    except FileNotFoundError:
        raise SourceError("no such file") from None
    except PermissionError:
        raise SourceError("permission denied") from None
    except OSError as exc:
        raise SourceError(exc.strerror or str(exc)) from None
    if path.endswith(".ipynb"):
        return notebook_source(data, display)
    return SourceFile(display, decode(data, display))


def notebook_source(data: bytes, display: str) -> SourceFile:
    """A notebook's code cells as one Python text (see trainlint.notebook)."""
    from trainlint.notebook import NotebookError, NotPythonNotebook, to_script

    try:
        raw = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"cannot decode the notebook as UTF-8: byte {data[exc.start:exc.start + 1]!r} at offset {exc.start}") from None
    try:
        text, cells = to_script(raw)
    except NotPythonNotebook as exc:
        raise SourceSkipped(str(exc)) from None
    except NotebookError as exc:
        raise SourceError(str(exc)) from None
    return SourceFile(display, text, cells)
