"""``json``: a JSON array (indent 2) of ``Finding.to_dict()`` objects; file errors are not in it."""

from __future__ import annotations

from typing import IO

from trainlint.report.base import Report, finding_dict, register


@register("json", for_humans=False, description="A JSON array of findings (code, name, severity, location, fix...).")
def render_json(report: Report, stream: IO[str], color: bool) -> None:
    import json

    data = [finding_dict(report, f) for f in report.findings]
    stream.write(json.dumps(data, indent=2, default=str) + "\n")
