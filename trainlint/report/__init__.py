"""Output formats. Importing this package registers every renderer in ``FORMATS``.

A renderer is ``fn(report, stream, color) -> None``; use :func:`render` to call one by name.
Renderers import only the standard library, and heavy modules (json, xml, hashlib) lazily.
"""

from __future__ import annotations

from typing import IO, List

from trainlint.report.base import FORMATS, FileError, OutputFormat, Report, RuleInfo, register

# Importing the modules registers the formats (order = order of `format_names()`).
from trainlint.report import full  # noqa: F401,E402  (first: the default)
from trainlint.report import concise  # noqa: F401,E402
from trainlint.report import json_array  # noqa: F401,E402
from trainlint.report import json_lines  # noqa: F401,E402
from trainlint.report import sarif  # noqa: F401,E402
from trainlint.report import github  # noqa: F401,E402
from trainlint.report import gitlab  # noqa: F401,E402
from trainlint.report import junit  # noqa: F401,E402
from trainlint.report import grouped  # noqa: F401,E402
from trainlint.report import pylint  # noqa: F401,E402
from trainlint.report import rdjson  # noqa: F401,E402
from trainlint.report import azure  # noqa: F401,E402

DEFAULT_FORMAT = "full"

__all__ = [
    "DEFAULT_FORMAT",
    "FORMATS",
    "FileError",
    "OutputFormat",
    "Report",
    "RuleInfo",
    "format_names",
    "register",
    "render",
]


def format_names() -> List[str]:
    """The registered format names, in registration order (``full`` first)."""
    return list(FORMATS)


def render(report: Report, fmt_name: str, stream: IO[str], color: bool = False) -> None:
    """Write ``report`` to ``stream`` in format ``fmt_name``; ``color`` adds ANSI codes (humans only).

    Raises ValueError for an unknown format name.
    """
    try:
        fmt = FORMATS[fmt_name]
    except KeyError:
        choices = ", ".join(FORMATS)
        raise ValueError(f"unknown output format {fmt_name!r} (choose from {choices})") from None
    fmt.render(report, stream, color)
