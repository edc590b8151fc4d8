"""One source file: how its bytes become text, and where its lines are."""

from __future__ import annotations

import codecs
import io
import os
import stat
import tempfile
import tokenize
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from trainlint.notebook import CellMap


class SourceError(Exception):
    """A file that cannot be read or decoded; the message is for the user."""


class SourceSkipped(SourceError):
    """A file that is not for trainlint after all (a notebook in another language): a warning."""


class FileTooLarge(SourceSkipped):
    """A file over the ``max-file-size`` limit: skipped with a warning."""


#: The default ``max-file-size``: bytes of one file trainlint reads and parses. A parse costs ~50 times
#: the file's size in memory and ~1 s per 100 kB: a 50 MB generated file would take GBs and minutes.
DEFAULT_MAX_FILE_SIZE = 1024 * 1024
#: Files trainlint reads for itself (config, .gitignore): never more than this.
MAX_AUX_FILE_SIZE = 1024 * 1024


def format_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def read_regular(path: str, limit: Optional[int]) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks followed), at most ``limit`` of them.

    A FIFO, a device (``/dev/zero``), a socket or a folder raises SourceError without being read: opening
    is non-blocking, so a FIFO with no writer cannot hang the run, and nothing is read from an endless
    device. A file over ``limit`` raises FileTooLarge; the size is checked again while reading (a file
    that grows, /proc files that report size 0)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise SourceError("is a directory") from None
    except FileNotFoundError:
        raise SourceError("no such file") from None
    except PermissionError:
        raise SourceError("permission denied") from None
    except OSError as exc:
        raise SourceError(exc.strerror or str(exc)) from None
    try:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise SourceError(exc.strerror or str(exc)) from None
        if stat.S_ISDIR(st.st_mode):
            raise SourceError("is a directory")
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
            raise SourceError(f"not a regular file ({kind}); not read")
        if limit is not None and st.st_size > limit:
            raise FileTooLarge(_too_large(st.st_size, limit))
        chunks = []
        total = 0
        want = (limit + 1) if limit is not None else None
        while True:
            try:
                chunk = os.read(fd, 1 << 20 if want is None else max(1, min(1 << 20, want - total)))
            except BlockingIOError:  # pragma: no cover - only for non-regular files, refused above
                break
            except OSError as exc:
                raise SourceError(exc.strerror or str(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if want is not None and total >= want:
                raise FileTooLarge(_too_large(total, limit, more=True))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(size: int, limit: int, more: bool = False) -> str:
    what = f"over {format_size(limit)}" if more else format_size(size)
    return (f"skipped: the file is {what}, over max-file-size ({format_size(limit)}); "
            "raise max-file-size in [tool.trainlint] to lint it")


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


def read_source(path: str, display: str, max_size: Optional[int] = DEFAULT_MAX_FILE_SIZE) -> SourceFile:
    """One file's text, read and decoded (a notebook: its code cells). Only regular files are read, and
    only up to ``max_size`` bytes (None: no limit)."""
    data = read_regular(path, max_size)
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


def write_atomic(path: str, data: bytes, durable: bool = True) -> None:
    """Replace ``path``'s bytes: a temporary file next to it, then ``os.replace`` (atomic on POSIX and
    Windows); the file keeps its permission bits. On any error the original is untouched. ``durable``
    fsyncs the data first (a user's file); a cache entry that can be recomputed skips it."""
    real = os.path.realpath(path)
    folder = os.path.dirname(real) or "."
    try:
        mode = os.stat(real).st_mode & 0o7777
    except OSError:
        mode = None
    fd, tmp = tempfile.mkstemp(prefix=".trainlint-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
