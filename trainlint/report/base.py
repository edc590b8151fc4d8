"""What every renderer receives, and the registry of output formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, IO, Callable, Dict, List, Optional, Tuple

from trainlint.findings import Edit, Finding, Span


@dataclass(frozen=True)
class RuleInfo:
    """Rule metadata a renderer may need (SARIF's rule table, help links)."""

    code: str
    name: str
    severity: str  # "error" | "warning" | "info" (after config overrides)
    summary: str  # one line
    doc: str  # the full markdown doc
    url: str


@dataclass(frozen=True)
class FileError:
    """A file that could not be linted at all (unreadable, undecodable...)."""

    path: str
    message: str


@dataclass
class Report:
    findings: List[Finding]  # sorted by path, line, column, code
    files_checked: int
    rules: Dict[str, RuleInfo]  # every rule that was enabled for this run, by code
    errors: List[FileError] = field(default_factory=list)
    fixed: int = 0  # findings fixed by --fix
    statistics: bool = False  # --statistics was asked for (the `full` format prints the table)
    show_source: bool = True
    root: Optional[str] = None  # directory paths are relative to (for SARIF's originalUriBaseIds)
    sources: Dict[str, str] = field(default_factory=dict)  # path -> text, for files with findings
    version: str = ""  # trainlint's version, for tool metadata
    notebooks: Dict[str, Any] = field(default_factory=dict)  # path -> trainlint.notebook.CellMap
    real_paths: Dict[str, str] = field(default_factory=dict)  # displayed path -> real path (files read)
    unsafe_fixes: bool = False  # --unsafe-fixes: unsafe fixes count as fixable in the summary
    summary: bool = True  # the closing summary lines (not with -q)
    fixes_shown: bool = True  # the "[*] N fixable" line (not after --fix, which applied them)


def position(report: "Report", path: str, line: int) -> Tuple[Optional[int], int]:
    """(cell, line) to show for a line of ``path``: cell is None except in notebooks, where the line
    is counted within the cell."""
    cells = report.notebooks.get(path)
    if cells is None:
        return None, line
    return cells.position(line)


def location(report: "Report", path: str, line: int, column: int) -> str:
    """``path:line:col``, or ``path:cell N:line:col`` in a notebook (ruff's spelling)."""
    cells = report.notebooks.get(path)
    if cells is None:
        return f"{path}:{line}:{column}"
    cell, in_cell = cells.position(line)
    return f"{path}:cell {cell}:{in_cell}:{cells.column(line, column)}"


def _cell_span(cells: Any, span: Span) -> Tuple[int, Span]:
    """(cell, span counted within that cell) of a span of a notebook's joined script. A span that runs
    past its cell (it cannot in valid code) is cut to its first line."""
    cell, line = cells.position(span.line)
    end_cell, end_line = cells.position(span.end_line)
    column = cells.column(span.line, span.column)
    end_column = cells.column(span.end_line, span.end_column)
    if end_cell != cell:
        end_line, end_column = line, column + 1
    return cell, Span(line, column, end_line, end_column)


def _cell_edit(cells: Any, edit: Edit) -> Tuple[int, Edit]:
    cell, span = _cell_span(cells, edit.span)
    return cell, Edit(span, edit.content)


def finding_dict(report: "Report", f: Finding) -> Dict[str, Any]:
    """``f.to_dict()`` with notebook positions counted within the cell, and a ``cell`` key (also on each
    related location and each edit of the fix)."""
    data = f.to_dict()
    cells = report.notebooks.get(f.path)
    data["cell"] = None
    if cells is not None:
        data["cell"], span = _cell_span(cells, f.span)
        data.update(line=span.line, column=span.column, end_line=span.end_line, end_column=span.end_column)
        if f.fix is not None and data.get("fix"):
            edits = []
            for edit in f.fix.edits:
                cell, mapped = _cell_edit(cells, edit)
                edits.append(dict(mapped.to_dict(), cell=cell))
            data["fix"]["edits"] = edits
    for r, rd in zip(f.related, data.get("related", [])):
        rd["cell"] = None
        if r.path in report.notebooks:
            rd["cell"], span = _cell_span(report.notebooks[r.path], r.span)
            rd.update(line=span.line, column=span.column, end_line=span.end_line, end_column=span.end_column)
    return data


def cell_view(report: "Report") -> List[Finding]:
    """The findings as tools that know no cells should see them: in notebooks, lines counted within
    the cell and the message prefixed with ``cell N:`` (related locations and fix edits alike)."""
    if not report.notebooks:
        return report.findings
    import dataclasses

    out = []
    for f in report.findings:
        cells = report.notebooks.get(f.path)
        related = []
        for r in f.related:
            rcells = report.notebooks.get(r.path)
            if rcells is None:
                related.append(r)
                continue
            rcell, rspan = _cell_span(rcells, r.span)
            related.append(dataclasses.replace(r, span=rspan, message=f"cell {rcell}: {r.message}"))
        if cells is None:
            out.append(dataclasses.replace(f, related=related) if f.related else f)
            continue
        cell, span = _cell_span(cells, f.span)
        fix = f.fix
        if fix is not None:
            fix = dataclasses.replace(fix, edits=tuple(_cell_edit(cells, e)[1] for e in fix.edits))
        out.append(dataclasses.replace(f, span=span, message=f"cell {cell}: {f.message}", related=related, fix=fix))
    return out


def repo_root(report: "Report", env: Optional[str] = None) -> str:
    """The folder CI tools want paths relative to: ``$env`` when set (GitLab's ``CI_PROJECT_DIR``), else
    the git top-level above the project root (or the current folder), else the project root."""
    import os

    if env and os.environ.get(env):
        return os.path.abspath(os.environ[env])
    start = os.path.abspath(report.root or os.getcwd())
    folder = start
    while True:
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return start
        folder = parent


def repo_path(report: "Report", path: str, env: Optional[str] = None) -> str:
    """``path`` relative to :func:`repo_root` with ``/`` separators; unchanged when it lies outside."""
    import os

    root = repo_root(report, env)
    full = os.path.abspath(path)
    try:
        rel = os.path.relpath(full, root)
    except ValueError:  # another drive
        return path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return path
    return rel.replace(os.sep, "/")


Renderer = Callable[[Report, IO[str], bool], None]  # (report, stream, color)


@dataclass(frozen=True)
class OutputFormat:
    name: str
    render: Renderer
    for_humans: bool
    description: str


FORMATS: Dict[str, OutputFormat] = {}


def register(name: str, *, for_humans: bool, description: str) -> Callable[[Renderer], Renderer]:
    def deco(fn: Renderer) -> Renderer:
        FORMATS[name] = OutputFormat(name, fn, for_humans, description)
        return fn

    return deco


def source_line(report: Report, path: str, line: int) -> Optional[str]:
    """The text of 1-based ``line`` of ``path`` from ``report.sources`` (no line ending), or None.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` like Python's tokenizer (not ``str.splitlines``,
    which also splits on form feeds and Unicode separators and would shift line numbers).
    """
    text = report.sources.get(path)
    if text is None or line < 1:
        return None
    cells = report.notebooks.get(path)
    if cells is not None and cells.errors:  # a notebook cell left out of the program (TL001)
        original = cells.original_line(line)
        if original is not None:
            return original
    lines = _split_lines(text)
    return lines[line - 1] if line <= len(lines) else None


_SPLIT_CACHE: Dict[int, Tuple[str, List[str]]] = {}


def _split_lines(text: str) -> List[str]:
    cached = _SPLIT_CACHE.get(id(text))
    if cached is not None and cached[0] is text:
        return cached[1]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if len(_SPLIT_CACHE) > 64:
        _SPLIT_CACHE.clear()
    _SPLIT_CACHE[id(text)] = (text, lines)
    return lines
