"""``full``: the default human format (like ruff's): header, source excerpt with carets, notes."""

from __future__ import annotations

from typing import IO, Dict, List, Optional, Tuple

from trainlint.findings import Finding, Severity
from trainlint.report.base import Report, location, position, register, source_line

TAB_WIDTH = 4

# ANSI SGR codes; the only place trainlint produces escape sequences.
BOLD = "1"
RED = "31"
YELLOW = "33"
BLUE = "34"
CYAN = "36"
GREEN = "32"

SEVERITY_COLOR = {Severity.ERROR: RED, Severity.WARNING: YELLOW, Severity.INFO: BLUE}


def paint(text: str, *codes: str, color: bool) -> str:
    """Wrap ``text`` in ANSI SGR ``codes`` when ``color`` is true; otherwise return it unchanged."""
    if not color or not codes or not text:
        return text
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _char_width(ch: str) -> int:
    if ch < "\u0300":  # ASCII and Latin: one cell (fast path)
        return 1
    import unicodedata

    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str, start: int = 0) -> int:
    """Terminal cells ``text`` takes when printed starting at cell ``start`` (tabs expanded)."""
    col = start
    for ch in text:
        if ch == "\t":
            col += TAB_WIDTH - (col % TAB_WIDTH)
        else:
            col += _char_width(ch)
    return col - start


def _clean(line: str) -> str:
    """The line as displayed: tabs expanded, other control characters made visible."""
    out: List[str] = []
    col = 0
    for ch in line:
        if ch == "\t":
            n = TAB_WIDTH - (col % TAB_WIDTH)
            out.append(" " * n)
            col += n
        elif ch < " " or ch == "\x7f":
            out.append("\ufffd")
            col += 1
        else:
            out.append(ch)
            col += _char_width(ch)
    return "".join(out)


def caret_range(line: str, column: int, end_column: Optional[int]) -> Tuple[int, int]:
    """Display offset and width (cells, >= 1) of the carets for 1-based ``column``..``end_column``.

    ``end_column`` is exclusive; None underlines to the end of the line (multi-line spans).
    """
    column = max(column, 1)
    before = line[: column - 1]
    start = display_width(before)
    if len(before) < column - 1:  # the span starts past the end of the line
        start += column - 1 - len(before)
    if end_column is None:
        marked = line[column - 1 :]
    else:
        marked = line[column - 1 : max(end_column, column) - 1]
    width = display_width(marked, start)
    return start, max(width, 1)


def _excerpt(report: Report, f: Finding, color: bool) -> List[str]:
    first = source_line(report, f.path, f.span.line)
    if first is None:
        return []
    line_no = f.span.line
    rows: List[Tuple[int, str]] = []
    before = source_line(report, f.path, line_no - 1)
    if before is not None:
        rows.append((line_no - 1, before))
    rows.append((line_no, first))
    after = source_line(report, f.path, line_no + 1)
    if after is not None and not (after == "" and source_line(report, f.path, line_no + 2) is None):
        rows.append((line_no + 1, after))  # (the empty string after a final newline is no line)

    width = len(str(position(report, f.path, rows[-1][0])[1]))
    sev = SEVERITY_COLOR[f.severity]
    bar = paint("|", BOLD, BLUE, color=color)
    blank = paint(" " * width + " |", BOLD, BLUE, color=color)
    out = [blank]
    for n, text in rows:
        shown = _clean(text)
        gutter = paint(f"{position(report, f.path, n)[1]:>{width}} |", BOLD, BLUE, color=color)
        out.append(f"{gutter} {shown}".rstrip())
        if n == line_no:
            end = f.span.end_column if f.span.end_line == f.span.line else None
            start, w = caret_range(text, f.span.column, end)
            carets = paint("^" * w, BOLD, sev, color=color)
            out.append(f"{' ' * width} {bar} {' ' * start}{carets}")
    out.append(blank)
    return out


def _block(report: Report, f: Finding, color: bool) -> List[str]:
    sev = SEVERITY_COLOR[f.severity]
    header = (
        f"{paint(location(report, f.path, f.span.line, f.span.column), BOLD, color=color)}: "
        f"{paint(f.code, BOLD, sev, color=color)} "
        f"{paint('[' + f.severity.label + ']', sev, color=color)} {f.message}"
    )
    lines = [header]
    excerpt = _excerpt(report, f, color) if report.show_source else []
    lines.extend(excerpt)
    pad = "  " if excerpt else ""
    if f.hint:
        lines.append(f"{pad}= {paint('help', BOLD, CYAN, color=color)}: {f.hint}")
    for r in f.related:
        lines.append(
            f"{pad}= {paint('note', BOLD, color=color)}: "
            f"{paint(location(report, r.path, r.span.line, r.span.column), BOLD, color=color)}: {r.message}"
        )
    if f.fix:
        lines.append(f"{pad}= {paint('fix available', BOLD, GREEN, color=color)}: {f.fix.message}")
    return lines


def summary_lines(report: Report, color: bool) -> List[str]:
    """File errors, then the closing ``Found ...`` / ``All checks passed!`` lines."""
    out: List[str] = []
    for e in report.errors:
        out.append(f"{paint(e.path, BOLD, color=color)}: {paint('error', BOLD, RED, color=color)}: {e.message}")
    if report.fixed:
        out.append(f"Fixed {plural(report.fixed, 'finding')}.")
    findings = report.findings
    if findings:
        counts: Dict[Severity, int] = {}
        for f in findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        parts = [plural(counts[s], s.label) for s in sorted(counts, reverse=True)]
        files = len({f.path for f in findings})
        text = f"Found {plural(len(findings), 'finding')} ({', '.join(parts)}) in {plural(files, 'file')}."
        worst = max(counts)
        out.append(paint(text, BOLD, SEVERITY_COLOR[worst], color=color))
        line = fixable_line(report)
        if line:
            out.append(line)
    if report.errors:
        out.append(paint(f"{plural(len(report.errors), 'file')} could not be checked.", BOLD, RED, color=color))
    elif not findings:
        out.append(paint("All checks passed!", BOLD, GREEN, color=color))
    return out


def _error_lines(report: Report, color: bool) -> List[str]:
    return [f"{paint(e.path, BOLD, color=color)}: {paint('error', BOLD, RED, color=color)}: {e.message}" for e in report.errors]


def _by_code(report: Report) -> List[List[Finding]]:
    """The findings of each code, most frequent code first (ties: by code): the rows of ``--statistics``."""
    groups: Dict[str, List[Finding]] = {}
    for f in report.findings:
        groups.setdefault(f.code, []).append(f)
    return [groups[c] for c in sorted(groups, key=lambda c: (-len(groups[c]), c))]


def statistics_records(report: Report) -> List[dict]:
    """``--statistics --output-format json``: ruff's records, most frequent first."""
    def fixable(f: Finding) -> bool:
        kind = f.fix.applicability.value if f.fix is not None else None
        return kind == "safe" or bool(report.unsafe_fixes and kind == "unsafe")

    return [{"code": fs[0].code, "name": fs[0].name, "count": len(fs), "fixable": any(fixable(f) for f in fs)}
            for fs in _by_code(report)]


def fixable_line(report: Report) -> str:
    """ruff's closing hint: ``[*] N fixable with the `--fix` option (M hidden fixes can be enabled with the
    `--unsafe-fixes` option).`` Unsafe fixes count as fixable only when --unsafe-fixes is on."""
    if not report.fixes_shown:
        return ""
    safe = sum(1 for f in report.findings if f.fix is not None and f.fix.applicability.value == "safe")
    unsafe = sum(1 for f in report.findings if f.fix is not None and f.fix.applicability.value == "unsafe")
    fixable = safe + (unsafe if report.unsafe_fixes else 0)
    hidden = 0 if report.unsafe_fixes else unsafe
    note = ""
    if hidden:
        note = f"{plural(hidden, 'hidden fix').replace('fixs', 'fixes')} can be enabled with the `--unsafe-fixes` option"
    if fixable:
        return f"[*] {fixable} fixable with the `--fix` option" + (f" ({note})." if note else ".")
    if hidden:
        return f"No fixes available ({note})."
    return ""


def statistics_lines(report: Report, color: bool) -> List[str]:
    """``count  CODE  name`` rows, most frequent first (like ``ruff --statistics``)."""
    rows = _by_code(report)
    if not rows:
        return []
    cw = max(len(str(len(fs))) for fs in rows)
    kw = max(len(fs[0].code) for fs in rows)
    return [
        f"{len(fs):>{cw}}  {paint(fs[0].code.ljust(kw), BOLD, SEVERITY_COLOR[max(f.severity for f in fs)], color=color)}"
        f"  {fs[0].name}"
        for fs in rows
    ]


@register("full", for_humans=True, description="Each finding with its source excerpt, help and notes (default).")
def render_full(report: Report, stream: IO[str], color: bool) -> None:
    out: List[str] = []
    if report.statistics:
        out.extend(statistics_lines(report, color))
        if out:
            out.append("")
    else:
        for f in report.findings:
            out.extend(_block(report, f, color))
            out.append("")
    write_closing(report, out, stream, color)


def write_closing(report: Report, out: List[str], stream: IO[str], color: bool) -> None:
    """Write ``out`` and the closing lines a human format ends with: the summary, or without one
    (``--quiet``) the files that could not be checked."""
    out.extend(summary_lines(report, color) if report.summary else _error_lines(report, color))
    while out and out[-1] == "":
        out.pop()
    if out:
        stream.write("\n".join(out) + "\n")
