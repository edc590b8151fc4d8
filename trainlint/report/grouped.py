"""``grouped``: findings grouped by file, as ruff's ``grouped`` format prints them.

```
train.py:
  3:12 TL202 [error] The loss ... is capped ...
  9:5  TL301 [warning] ...

Found 2 findings (1 error, 1 warning) in 1 file.
```
"""

from __future__ import annotations

from typing import IO, Dict, List

from trainlint.report.base import Report, position, register


@register("grouped", for_humans=True, description="Findings grouped by file, one indented line each (ruff's grouped).")
def render_grouped(report: Report, stream: IO[str], color: bool) -> None:
    from trainlint.report.concise import one_line
    from trainlint.report.full import BOLD, SEVERITY_COLOR, paint, write_closing

    by_file: Dict[str, list] = {}
    for f in report.findings:
        by_file.setdefault(f.path, []).append(f)
    out: List[str] = []
    for path, findings in by_file.items():
        out.append(paint(path, BOLD, color=color) + ":")
        where = []
        for f in findings:
            cell, line = position(report, f.path, f.span.line)
            where.append((f"cell {cell}:" if cell is not None else "") + f"{line}:{f.span.column}")
        width = max(len(w) for w in where)
        for w, f in zip(where, findings):
            code = paint(f.code, BOLD, SEVERITY_COLOR[f.severity], color=color)
            fixable = " [*]" if f.fix is not None and (f.fix.applicability.value == "safe" or report.unsafe_fixes and f.fix.applicability.value == "unsafe") else ""
            out.append(f"  {w.ljust(width)} {code}{fixable} [{f.severity.label}] {one_line(f.message)}")
        out.append("")
    write_closing(report, out, stream, color)
