"""What every renderer receives, and the registry of output formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, IO, Callable, Dict, List, Optional, Tuple

from trainlint.findings import Finding


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


def position(report: "Report", path: str, line: int) -> Tuple[Optional[int], int]:
    """(cell, line) to show for a line of ``path``: cell is None except in notebooks, where the line
    is counted within the cell."""
    cells = report.notebooks.get(path)
    if cells is None:
        return None, line
    return cells.position(line)


def location(report: "Report", path: str, line: int, column: int) -> str:
    """``path:line:col``, or ``path:cell N:line:col`` in a notebook (ruff's spelling)."""
    cell, line = position(report, path, line)
    if cell is None:
        return f"{path}:{line}:{column}"
    return f"{path}:cell {cell}:{line}:{column}"


def finding_dict(report: "Report", f: Finding) -> Dict[str, Any]:
    """``f.to_dict()`` with notebook positions counted within the cell, and a ``cell`` key."""
    data = f.to_dict()
    cells = report.notebooks.get(f.path)
    data["cell"] = None
    if cells is not None:
        data["cell"], data["line"] = cells.position(f.span.line)
        _, data["end_line"] = cells.position(f.span.end_line)
        for r, rd in zip(f.related, data.get("related", [])):
            if r.path in report.notebooks:
                rd["cell"], rd["line"] = report.notebooks[r.path].position(r.span.line)
                _, rd["end_line"] = report.notebooks[r.path].position(r.span.end_line)
    return data


def cell_view(report: "Report") -> List[Finding]:
    """The findings as tools that know no cells should see them: in notebooks, lines counted within
    the cell and the message prefixed with ``cell N:``."""
    if not report.notebooks:
        return report.findings
    import dataclasses

    out = []
    for f in report.findings:
        cells = report.notebooks.get(f.path)
        if cells is None:
            out.append(f)
            continue
        cell, line = cells.position(f.span.line)
        end_cell, end_line = cells.position(f.span.end_line)
        if end_cell != cell:
            end_line = line
        span = dataclasses.replace(f.span, line=line, end_line=end_line)
        out.append(dataclasses.replace(f, span=span, message=f"cell {cell}: {f.message}"))
    return out


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
