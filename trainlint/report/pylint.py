"""``pylint``: ``path:line: [CODE] message`` (pylint's parseable format, as ruff writes it), for tools
that read pylint output."""

from __future__ import annotations

from typing import IO, List

from trainlint.report.base import Report, cell_view, register


@register("pylint", for_humans=False, description="pylint's parseable format: path:line: [CODE] message.")
def render_pylint(report: Report, stream: IO[str], color: bool) -> None:
    from trainlint.report.concise import one_line

    out: List[str] = [f"{f.path}:{f.span.line}: [{f.code}] {one_line(f.message)}" for f in cell_view(report)]
    if out:
        stream.write("\n".join(out) + "\n")
