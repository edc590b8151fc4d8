"""``json-lines``: one compact JSON object (``Finding.to_dict()``) per line."""

from __future__ import annotations

from typing import IO

from trainlint.report.base import Report, finding_dict, register


@register("json-lines", for_humans=False, description="One compact JSON object per finding, one per line.")
def render_json_lines(report: Report, stream: IO[str], color: bool) -> None:
    import json

    for f in report.findings:
        stream.write(json.dumps(finding_dict(report, f), separators=(",", ":"), default=str) + "\n")
