"""``concise``: one ``path:line:col: CODE message`` line per finding (vim errorformat, VS Code).

Nothing else goes to the stream except file errors as ``path: error: message`` lines, which do
not match the finding pattern, so problem matchers skip them. No summary line.
"""

from __future__ import annotations

from typing import IO, List

from trainlint.report.base import Report, location, register


def one_line(text: str) -> str:
    """Newlines folded to spaces so every finding stays on one line."""
    return " ".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


@register("concise", for_humans=True, description="One line per finding: path:line:col: CODE message.")
def render_concise(report: Report, stream: IO[str], color: bool) -> None:
    from trainlint.report.full import BOLD, RED, SEVERITY_COLOR, paint

    out: List[str] = []
    for f in report.findings:
        where = paint(location(report, f.path, f.span.line, f.span.column), BOLD, color=color)
        code = paint(f.code, BOLD, SEVERITY_COLOR[f.severity], color=color)
        out.append(f"{where}: {code} {one_line(f.message)}")
    for e in report.errors:
        out.append(f"{paint(e.path, BOLD, color=color)}: {paint('error', BOLD, RED, color=color)}: {one_line(e.message)}")
    if out:
        stream.write("\n".join(out) + "\n")
