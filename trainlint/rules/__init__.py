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
from typing import TYPE_CHECKING, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple

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
    #: Also judges library modules that nothing of the run executes (``Program.library``): only for rules
    #: whose claim stands on one function's own evidence (an evaluation loop with autograd on).
    judges_libraries: ClassVar[bool] = False
    #: Snippets that must raise this rule: the lines to flag end with ``# expect: TLxxx``.
    bad: ClassVar[Sequence[str]] = ()
    #: Near-misses that must not raise this rule.
    good: ClassVar[Sequence[str]] = ()

    def check(self, ctx: "FileContext") -> Iterable[Finding]:
        """Findings of one file. File-level rules override this (and :meth:`may_fire`)."""
        return ()

    @classmethod
    def may_fire(cls, text: str, path: str) -> bool:
        """May :meth:`check` find anything in a file with this text (at this path)? A necessary
        condition read from the text alone, no parse: the words its evidence cannot do without. The
        engine does not parse a file on which no enabled file-level rule may fire and that no program
        needs, and ``check`` asks it first too, so the condition lives here only. Default: any file, for
        a rule that has a ``check``; none for the others."""
        return cls.check is not Rule.check

    def check_program(self, program: "Program") -> Iterable[Finding]:
        """Findings of a whole training program (entry script + the project files it imports).
        Program-level rules (TL301 missing-seed...) override this; findings in files that are not
        part of the run are dropped by the engine."""
        return ()

    @classmethod
    def is_program_rule(cls) -> bool:
        return cls.check_program is not Rule.check_program

    def module_program(self, ctx: "FileContext") -> Optional["Program"]:
        """For a program rule whose ``check`` also judges a module that runs nothing by itself, linted alone
        (a Lightning DataModule file, a dataset or loader builder): that file as a program of its own; None
        when the rule may not fire on it or when it is an entry script (its programs are checked as such).
        When an entry of the run imports the module, both passes find the same lines and the engine keeps
        one finding per rule and place."""
        from trainlint.analysis.program import Program, is_entry

        text = ctx.source.text
        if not self.may_fire(text, ctx.path) or is_entry(ctx.facts, text):
            return None
        return Program.of_file(ctx)

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


_MODULE_CODE_RE = re.compile(r"^tl(\d{3})_")


def codes() -> List[str]:
    """Every rule code, sorted, from the module names alone (``tl202_...`` holds TL202): no rule module,
    libcst or analysis is imported. Equal to ``list(registry())`` (tested)."""
    global _CODES
    if _REGISTRY is not None:
        return list(_REGISTRY)
    if _CODES is None:  # (asked once per file of a run: the package's listing is read once per process)
        found = set()
        for info in pkgutil.iter_modules(__path__):
            m = _MODULE_CODE_RE.match(info.name)
            if m:
                found.add(f"TL{m.group(1)}")
        _CODES = tuple(sorted(found))
    return list(_CODES)


_CODES: Optional[Tuple[str, ...]] = None


def rule_class(code: str) -> type:
    """One rule's class, importing only its module (the engine's TL001/TL002 need no other rule)."""
    if _REGISTRY is not None:
        return _REGISTRY[code]
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith(code.lower() + "_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Rule) and getattr(value, "code", None) == code:
                    return value
    return registry()[code]


def get_rule(code: str) -> type:
    return registry()[code]


def all_codes() -> List[str]:
    return list(registry())


_OPT_IN_RE = re.compile(r"^[ \t]+opt_in(?:[ \t]*:[^=\n]*)?[ \t]*=[ \t]*True\b", re.M)


def opt_in_codes() -> List[str]:
    """Rules off in the default selection (see ``Rule.opt_in``). Read from the rule modules' text unless
    they are imported already (a run that needs no rule imports none); equal to the classes' flags (tested)."""
    if _REGISTRY is not None:
        return [code for code, cls in _REGISTRY.items() if getattr(cls, "opt_in", False)]
    import os

    out = []
    for info in pkgutil.iter_modules(__path__):
        m = _MODULE_CODE_RE.match(info.name)
        if not m:
            continue
        try:
            with open(os.path.join(info.module_finder.path, info.name + ".py"), encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, AttributeError):  # not a plain folder of sources (a zip...): ask the classes
            return [code for code, cls in registry().items() if getattr(cls, "opt_in", False)]
        if _OPT_IN_RE.search(text):
            out.append(f"TL{m.group(1)}")
    return sorted(out)


#: Codes that were used once and retired; never reuse them (pylint's practice).
RETIRED_CODES: Dict[str, str] = {}
