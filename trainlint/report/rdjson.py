"""``rdjson``: reviewdog's Diagnostic Format (JSON), for ``reviewdog -f=rdjson`` code review comments.

One object with a ``source`` and a list of ``diagnostics``; each has the message, the location (path
relative to the repository root, 1-based line and column range), the severity, the code with its URL,
and the fix (if any) as ``suggestions``.
"""

from __future__ import annotations

from typing import IO, Any, Dict, List

from trainlint.report.base import Report, cell_view, register, repo_path

SEVERITIES = {"error": "ERROR", "warning": "WARNING", "info": "INFO"}


def _range(span) -> Dict[str, Any]:
    return {"start": {"line": span.line, "column": span.column}, "end": {"line": span.end_line, "column": span.end_column}}


def build_rdjson(report: Report) -> Dict[str, Any]:
    from trainlint import docs_url
    from trainlint.report.sarif import INFORMATION_URI

    diagnostics: List[Dict[str, Any]] = []
    cells = bool(report.notebooks)
    for f in cell_view(report):
        d: Dict[str, Any] = {
            "message": f.message + (f"\nhelp: {f.hint}" if f.hint else ""),
            "location": {"path": repo_path(report, f.path), "range": _range(f.span)},
            "severity": SEVERITIES[f.severity.label],
            "code": {"value": f.code, "url": docs_url(f.code)},
        }
        if f.fix is not None and not (cells and f.path in report.notebooks):
            d["suggestions"] = [{"range": _range(e.span), "text": e.content} for e in f.fix.edits]
        diagnostics.append(d)
    return {"source": {"name": "trainlint", "url": INFORMATION_URI}, "diagnostics": diagnostics}


@register("rdjson", for_humans=False, description="reviewdog's Diagnostic Format (JSON).")
def render_rdjson(report: Report, stream: IO[str], color: bool) -> None:
    import json

    stream.write(json.dumps(build_rdjson(report), indent=2) + "\n")
