"""The lint engine: files in, findings out. Parses each file once, runs the enabled rules on its facts,
then applies suppressions, per-file ignores, severity overrides and the severity threshold."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from trainlint import __version__, docs_url
from trainlint.config import Config
from trainlint.context import FileContext
from trainlint.files import discover
from trainlint.findings import Finding, Severity, Span
from trainlint.report.base import FileError, Report, RuleInfo
from trainlint.rules import Rule, registry
from trainlint.source import SourceError, SourceFile, read_source
from trainlint import suppressions as supp

SYNTAX_ERROR = "TL001"
SUPPRESSION = "TL002"


@dataclass
class Options:
    config: Config
    enabled: List[str]  # codes
    report_unused_suppressions: bool = False
    min_severity: Severity = Severity.INFO


@dataclass
class FileResult:
    findings: List[Finding] = field(default_factory=list)
    source: Optional[SourceFile] = None
    error: Optional[FileError] = None
    warning: Optional[str] = None


def rule_infos(options: Options) -> Dict[str, RuleInfo]:
    infos = {}
    for code in options.enabled:
        cls = registry()[code]
        sev = options.config.severity_of(code, cls.severity)
        infos[code] = RuleInfo(code, cls.name, sev.label, cls.summary, cls.doc(), docs_url(code))
    return infos


def _instances(codes: Sequence[str]) -> List[Rule]:
    reg = registry()
    return [reg[c]() for c in codes]


def _syntax_finding(source: SourceFile, exc: cst.ParserSyntaxError) -> Finding:
    line = max(1, exc.raw_line)
    col = max(1, exc.raw_column + 1)
    text = source.line(line)
    end = max(col + 1, len(text) + 1) if col > len(text) else col + 1
    message = exc.message.strip().splitlines()[0] if exc.message else "invalid syntax"
    rule = registry()[SYNTAX_ERROR]
    return Finding(
        code=SYNTAX_ERROR,
        name=rule.name,
        severity=rule.severity,
        message=f"Syntax error: {message}",
        path=source.path,
        span=Span(line, col, line, end),
        hint="Fix the syntax; no other rule could check this file",
    )


def lint_source(source: SourceFile, options: Options, rules: Optional[List[Rule]] = None) -> FileResult:
    """Lint one file's text (already read and decoded)."""
    result = FileResult(source=source)
    known = list(registry())
    sup = supp.parse(source.text, known)
    if sup.skip_file:
        return result
    rel = _relative_to(source.path, options.config.root)
    file_ignores = options.config.ignored_for_file(rel)
    enabled = [c for c in options.enabled if not any(c.startswith(s) or s == "ALL" for s in file_ignores)]
    raw: List[Finding] = []
    try:
        module = cst.parse_module(source.text)
    except cst.ParserSyntaxError as exc:
        if _python_accepts(source.text):
            result.warning = f"{source.path}: skipped: the parser does not support this file's syntax ({exc.message.strip().splitlines()[0] if exc.message else 'unknown'})"
            return result
        if SYNTAX_ERROR in enabled:
            raw.append(_syntax_finding(source, exc))
        module = None
    except RecursionError:
        result.error = FileError(source.path, "too deeply nested to parse")
        return result
    if module is not None:
        ctx = FileContext(source, module)
        for rule in rules if rules is not None else _instances(enabled):
            if rule.code not in enabled:
                continue
            try:
                raw.extend(rule.check(ctx))
            except Exception as exc:  # a rule bug must not take the run down
                result.error = FileError(
                    source.path, f"internal error in rule {rule.code} ({type(exc).__name__}: {exc}); please report it"
                )
    kept: List[Finding] = []
    for f in raw:
        if f.code != SYNTAX_ERROR and sup.suppresses(f.code, f.span.line, f.span.end_line):
            continue
        f.severity = options.config.severity_of(f.code, f.severity)
        if f.severity < options.min_severity:
            continue
        kept.append(f)
    if options.report_unused_suppressions and SUPPRESSION not in file_ignores:
        kept.extend(_suppression_findings(source, sup, enabled))
    result.findings = kept
    return result


def _suppression_findings(source: SourceFile, sup: supp.Suppressions, enabled: Sequence[str]) -> List[Finding]:
    rule = registry()[SUPPRESSION]
    out = []
    for problem in sup.problems:
        out.append(Finding(SUPPRESSION, rule.name, rule.severity, problem.message[0].upper() + problem.message[1:],
                           source.path, problem.span, hint="Fix the directive, or remove it"))
    for directive, what in sup.unused(enabled):
        label = "noqa" if directive.kind == "noqa" else f"trainlint: {directive.kind}"
        out.append(Finding(SUPPRESSION, rule.name, rule.severity, f"Unused suppression `# {label}`: {what}",
                           source.path, directive.span, hint="Remove the suppression (or the unused codes)"))
    return out


def _python_accepts(text: str) -> bool:
    try:
        compile(text, "<trainlint>", "exec", dont_inherit=True, flags=0x400)  # PyCF_ONLY_AST
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def _relative_to(path: str, root: Path) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def lint_paths(paths: Sequence[str], options: Options) -> Tuple[Report, List[str]]:
    """Lint files and folders. Returns the report and warnings for the user."""
    found = discover(paths, options.config)
    report = Report(findings=[], files_checked=0, rules=rule_infos(options), version=__version__,
                    root=str(options.config.root))
    warnings = list(found.warnings)
    report.errors.extend(FileError(p, m) for p, m in found.errors)
    rules = _instances(options.enabled)
    for real, display in found.files:
        try:
            source = read_source(real, display)
        except SourceError as exc:
            report.errors.append(FileError(display, str(exc)))
            continue
        _collect(report, lint_source(source, options, rules), warnings)
    report.findings.sort(key=Finding.sort_key)
    return report, warnings


def lint_text(text: str, display: str, options: Options) -> Tuple[Report, List[str]]:
    report = Report(findings=[], files_checked=0, rules=rule_infos(options), version=__version__,
                    root=str(options.config.root))
    warnings: List[str] = []
    _collect(report, lint_source(SourceFile(display, text), options), warnings)
    report.findings.sort(key=Finding.sort_key)
    return report, warnings


def _collect(report: Report, result: FileResult, warnings: List[str]) -> None:
    report.files_checked += 1
    if result.error is not None:
        report.errors.append(result.error)
    if result.warning:
        warnings.append(result.warning)
    if result.findings and result.source is not None:
        report.sources[result.source.path] = result.source.text
    report.findings.extend(result.findings)
