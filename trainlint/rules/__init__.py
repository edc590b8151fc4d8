"""Rules: one module per rule, one class per module, found automatically.

A rule is a subclass of :class:`Rule` with a ``code`` (``TL202``), a kebab-case ``name``, a
default ``severity``, a one-line ``summary`` and a docstring in ruff's sections. Its ``bad`` and
``good`` examples (and the code blocks of its docstring) are run as tests.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import textwrap
from typing import TYPE_CHECKING, ClassVar, Dict, Iterable, List, Optional, Sequence

from trainlint import docs_url
from trainlint.findings import Finding, Fix, Related, Severity, Span

if TYPE_CHECKING:  # pragma: no cover
    from trainlint.analysis.program import Program
    from trainlint.context import FileContext

CODE_RE = re.compile(r"^TL\d{3}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

#: Sections every rule docstring has, in this order (ruff's layout).
REQUIRED_SECTIONS = ("What it does", "Why is this bad?", "Example", "Use instead", "Fix safety", "References")


class Rule:
    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    summary: ClassVar[str]
    #: Opt-in advice: off in the default selection, on when a selection names it (its code, a prefix
    #: such as ``TL2``, or ``ALL``: ``--select``, ``--extend-select``, the config's ``extend-select``).
    #: For rules whose static evidence is too weak to be right on most real code (ruff keeps such rules
    #: out of its defaults too).
    opt_in: ClassVar[bool] = False
    #: The runtime probe that can confirm a finding of this rule (catalogue name), if any.
    probe: ClassVar[Optional[str]] = None
    #: Snippets that must raise this rule: the lines to flag end with ``# expect: TLxxx``.
    bad: ClassVar[Sequence[str]] = ()
    #: Near-misses that must not raise this rule.
    good: ClassVar[Sequence[str]] = ()

    def check(self, ctx: "FileContext") -> Iterable[Finding]:
        """Findings of one file. File-level rules override this."""
        return ()

    def check_program(self, program: "Program") -> Iterable[Finding]:
        """Findings of a whole training program (entry script + the project files it imports).
        Program-level rules (TL301 missing-seed...) override this; findings in files that are not
        part of the run are dropped by the engine."""
        return ()

    @classmethod
    def is_program_rule(cls) -> bool:
        return cls.check_program is not Rule.check_program

    # -- helpers for rules -------------------------------------------------------------
    def finding(
        self,
        ctx: "FileContext",
        span: Span,
        message: str,
        *,
        hint: Optional[str] = None,
        fix: Optional[Fix] = None,
        related: Sequence[Related] = (),
    ) -> Finding:
        return Finding(
            code=self.code,
            name=self.name,
            severity=self.severity,
            message=message,
            path=ctx.path,
            span=span,
            hint=hint,
            fix=fix,
            related=list(related),
        )

    @classmethod
    def doc(cls) -> str:
        return textwrap.dedent(cls.__doc__ or "").strip()

    @classmethod
    def url(cls) -> str:
        return docs_url(cls.code)


class EngineRule(Rule):
    """Diagnostics the engine itself emits (TL0xx); they have docs but no ``check``."""


_REGISTRY: Optional[Dict[str, type]] = None


def _all_subclasses(cls: type) -> List[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def registry() -> Dict[str, type]:
    """Every rule class by code, importing each module of this package once."""
    global _REGISTRY
    if _REGISTRY is None:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        found: Dict[str, type] = {}
        for cls in _all_subclasses(Rule):
            code = getattr(cls, "code", None)
            if code is None:
                continue
            if code in found and found[code] is not cls:
                raise RuntimeError(f"two rules claim {code}: {found[code].__name__} and {cls.__name__}")
            found[code] = cls
        _REGISTRY = dict(sorted(found.items()))
    return _REGISTRY


def get_rule(code: str) -> type:
    return registry()[code]


def all_codes() -> List[str]:
    return list(registry())


def opt_in_codes() -> List[str]:
    """Rules off in the default selection (see ``Rule.opt_in``)."""
    return [code for code, cls in registry().items() if getattr(cls, "opt_in", False)]


#: Codes that were used once and retired; never reuse them (pylint's practice).
RETIRED_CODES: Dict[str, str] = {}
