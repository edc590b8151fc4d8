"""``azure``: Azure Pipelines logging commands, shown as errors and warnings of the pipeline run.

``##vso[task.logissue type=error;sourcepath=PATH;linenumber=L;columnnumber=C;code=CODE;]message``
(Azure has no "info": findings of severity info are warnings there). Paths are relative to the
repository root.
"""

from __future__ import annotations

from typing import IO, List

from trainlint.report.base import Report, cell_view, register, repo_path


def _escape(text: str) -> str:
    """Azure's escaping of logging-command data and properties (``%``, ``;``, ``]``, CR, LF)."""
    return (text.replace("%", "%AZP25").replace(";", "%3B").replace("\r", "%0D").replace("\n", "%0A")
            .replace("]", "%5D"))


@register("azure", for_humans=False, description="Azure Pipelines logging commands (##vso[task.logissue ...]).")
def render_azure(report: Report, stream: IO[str], color: bool) -> None:
    out: List[str] = []
    for f in cell_view(report):
        kind = "error" if f.severity.label == "error" else "warning"
        props = (f"type={kind};sourcepath={_escape(repo_path(report, f.path))};linenumber={f.span.line};"
                 f"columnnumber={f.span.column};code={f.code};")
        out.append(f"##vso[task.logissue {props}]{_escape(f.message)}")
    for e in report.errors:
        out.append(f"##vso[task.logissue type=error;sourcepath={_escape(repo_path(report, e.path))};]{_escape(e.message)}")
    if out:
        stream.write("\n".join(out) + "\n")
