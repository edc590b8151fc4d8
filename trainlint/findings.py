"""The data every part of trainlint exchanges: severities, locations, edits and findings.

Positions are 1-based lines and 1-based columns (as ruff, flake8 and SARIF print them);
``end_column`` is exclusive, i.e. the column just after the last character.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


class Severity(enum.IntEnum):
    """How sure trainlint is that a finding hurts training (see the catalogue)."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, text: str) -> "Severity":
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {choices})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Span:
    """A range in one file. Lines and columns are 1-based; end_column is exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @classmethod
    def point(cls, line: int, column: int = 1) -> "Span":
        return cls(line, column, line, column + 1)


@dataclass(frozen=True)
class Edit:
    """Replace the text in ``span`` with ``content``."""

    span: Span
    content: str

    def to_dict(self) -> Dict[str, Any]:
        return {
            "content": self.content,
            "location": {"row": self.span.line, "column": self.span.column},
            "end_location": {"row": self.span.end_line, "column": self.span.end_column},
        }


class Applicability(str, enum.Enum):
    SAFE = "safe"  # keeps the program's meaning; applied by --fix
    UNSAFE = "unsafe"  # changes behaviour on purpose; needs --unsafe-fixes
    DISPLAY = "display-only"  # only shown


@dataclass(frozen=True)
class Fix:
    message: str
    edits: Tuple[Edit, ...]
    applicability: Applicability = Applicability.UNSAFE

    def to_dict(self) -> Dict[str, Any]:
        return {
            "message": self.message,
            "applicability": self.applicability.value,
            "edits": [e.to_dict() for e in self.edits],
        }


@dataclass(frozen=True)
class Related:
    """Another location that explains a finding (the loss that makes a model a regression...)."""

    path: str
    span: Span
    message: str

    def to_dict(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "message": self.message,
        }


@dataclass
class Finding:
    code: str
    name: str
    severity: Severity
    message: str
    path: str
    span: Span
    hint: Optional[str] = None
    fix: Optional[Fix] = None
    related: List[Related] = field(default_factory=list)
    # Optional extra data a rule or the runtime shim attaches (stable keys only).
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def sort_key(self) -> Tuple[str, int, int, str]:
        return (self.path, self.span.line, self.span.column, self.code)

    def to_dict(self) -> Dict[str, Any]:
        """The stable JSON shape of a finding (``--output-format json``)."""
        from trainlint import docs_url

        data: Dict[str, Any] = {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.label,
            "message": self.message,
            "path": self.path,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "hint": self.hint,
            "fix": self.fix.to_dict() if self.fix else None,
            "related": [r.to_dict() for r in self.related],
            "url": docs_url(self.code),
        }
        data.update(self.extra)
        return data
