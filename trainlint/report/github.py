"""``github``: GitHub Actions workflow commands, shown as annotations on the pull request.

``::error file=PATH,line=L,col=C,endLine=EL,endColumn=EC,title=CODE (name)::message``
(``::warning`` / ``::notice`` for warnings and infos), escaped like the Actions toolkit does. PATH is
relative to the repository root (the git top-level), as GitHub matches it against the checkout; a span
over several lines gets ``line``/``endLine`` only (GitHub ignores columns on multi-line annotations).
"""

from __future__ import annotations

from typing import IO, List, Tuple

from trainlint.report.base import Report, cell_view, register, repo_path

COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    """Escape a command's message (``escapeData`` in @actions/core)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command property value (``escapeProperty`` in @actions/core)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, properties: List[Tuple[str, object]], message: str) -> str:
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties)
    return f"::{name} {props}::{escape_data(message)}" if props else f"::{name}::{escape_data(message)}"


@register("github", for_humans=False, description="GitHub Actions annotations (::error file=...::message).")
def render_github(report: Report, stream: IO[str], color: bool) -> None:
    out: List[str] = []
    for f in cell_view(report):
        s = f.span
        props: List[Tuple[str, object]] = [("file", repo_path(report, f.path)), ("line", s.line)]
        if s.end_line == s.line:
            props += [("col", s.column), ("endLine", s.end_line), ("endColumn", s.end_column)]
        else:  # GitHub drops the columns of a multi-line annotation: give the lines only
            props += [("endLine", s.end_line)]
        props.append(("title", f"{f.code} ({f.name})"))
        message = f.message if not f.hint else f"{f.message}\nhelp: {f.hint}"
        out.append(command(COMMANDS[f.severity.label], props, message))
    for e in report.errors:
        out.append(command("error", [("file", repo_path(report, e.path))], e.message))
    if out:
        stream.write("\n".join(out) + "\n")
