"""The lint engine: files in, findings out. Parses each file once, runs the enabled rules on its facts,
then applies suppressions, per-file ignores, severity overrides and the severity threshold."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from trainlint import __version__, docs_url
from trainlint.config import Config
from trainlint.analysis.walk import clear_caches
from trainlint.context import FileContext
from trainlint.files import discover
from trainlint.parsing import ParseRefused, TooDeep, TooManyTokens, parse
from trainlint.findings import Finding, Severity, Span
from trainlint.report.base import FileError, Report, RuleInfo
from trainlint.rules import Rule, registry
from trainlint.source import SourceError, SourceFile, SourceSkipped, read_source
from trainlint import suppressions as supp

SYNTAX_ERROR = "TL001"
SUPPRESSION = "TL002"


@dataclass
class Options:
    config: Config
    enabled: List[str]  # codes
    report_unused_suppressions: bool = False
    min_severity: Severity = Severity.INFO
    #: Texts that take precedence over the files on disk, by real path (the fix engine's edited files,
    #: an editor's open buffers). A notebook's entry is its JSON text.
    overlay: Dict[str, str] = field(default_factory=dict)


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


def _syntax_finding(source: SourceFile, exc: Optional[cst.ParserSyntaxError], py_error: Optional[SyntaxError] = None) -> Finding:
    """TL001 at the parse error. Python's own SyntaxError, when there is one, has the better position
    (libcst reports tokenizer errors at 1:1 and parser errors at the next token) and message."""
    line = max(1, exc.raw_line) if exc is not None else 1
    col = max(1, exc.raw_column + 1) if exc is not None else 1
    message = exc.message.strip().splitlines()[0] if exc is not None and exc.message else "invalid syntax"
    if py_error is not None and py_error.lineno:
        line = max(1, min(py_error.lineno, max(1, len(source.lines))))
        col = max(1, py_error.offset or 1) if py_error.lineno == line else 1
        message = py_error.msg or message
    text = source.line(line)
    col = min(col, len(text) + 1)
    end = col + 1
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


def _cell_syntax_findings(source: SourceFile) -> List[Finding]:
    """TL001 for each notebook cell the kernel could not compile (left out of the program; the other
    cells were checked)."""
    rule = registry()[SYNTAX_ERROR]
    out = []
    for err in source.cells.errors:
        text = source.cells.original_line(err.line) or ""
        col = min(err.column, len(text) + 1)
        out.append(Finding(
            code=SYNTAX_ERROR,
            name=rule.name,
            severity=rule.severity,
            message=f"Syntax error: {err.message}",
            path=source.path,
            span=Span(err.line, col, err.line, col + 1),
            hint="Fix the syntax; this cell was left out, the other cells were checked",
        ))
    return out


@dataclass
class _FileState:
    """One file between the two phases: parsed and its file rules run; program rules still to come."""

    source: SourceFile
    result: FileResult
    sup: supp.Suppressions
    enabled: List[str]  # the run's codes minus this file's per-file-ignores
    file_ignores: List[str]
    ctx: Optional[FileContext] = None  # None: not parsed (syntax error, skip-file...)
    raw: List[Finding] = field(default_factory=list)
    done: bool = False  # nothing more to report for this file (skip-file, unsupported syntax...)
    seen: set = field(default_factory=set)  # program findings already kept (code, span, message)


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception, safe to build whatever it holds: a KeyError's key may be a
    libcst node, whose repr walks the whole subtree (RecursionError on a deep one, megabytes on a big one)."""
    name = type(exc).__name__
    if isinstance(exc, RecursionError):
        return f"{name}: maximum recursion depth exceeded"
    try:
        args = exc.args
        if isinstance(exc, LookupError) and args and not isinstance(args[0], (str, int)):
            text = f"a {type(args[0]).__name__} object"
        else:
            text = str(exc)
    except Exception:  # (RecursionError, MemoryError, a broken __str__)
        text = "(message unavailable)"
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{name}: {text}" if text else name


def _internal_error(path: str, code: str, exc: BaseException) -> FileError:
    where = f"rule {code}" if code.startswith("TL") else code
    if isinstance(exc, (RecursionError, MemoryError)):
        return FileError(path, f"too deeply nested or too large for {where} ({type(exc).__name__}); the file was not fully checked")
    return FileError(path, f"internal error in {where} ({describe_exception(exc)}); please report it")


def _too_deep_warning(source: SourceFile, exc: BaseException) -> str:
    if isinstance(exc, TooDeep):
        why = f"too deeply nested to analyse ({exc}; a file like this is usually generated)"
    elif isinstance(exc, TooManyTokens):
        why = f"too large to analyse ({exc}; raise max-file-size in [tool.trainlint] to lint it)"
    elif isinstance(exc, ParseRefused):
        why = f"{exc} is too long to analyse"
    elif isinstance(exc, MemoryError):
        why = "too large to parse (out of memory)"
    else:
        why = "too deeply nested to parse"
    return f"{source.path}: skipped: {why}"


def _prepare(source: SourceFile, options: Options, rules: Sequence[Rule]) -> _FileState:
    """Phase one for one file: suppressions, per-file ignores, parse, file-level rules."""
    result = FileResult(source=source)
    sup = supp.parse(source.text, list(registry()))
    file_ignores = options.config.ignored_for_file(_relative_to(source.path, options.config.root))
    enabled = [c for c in options.enabled if not any(c.startswith(s) or s == "ALL" for s in file_ignores)]
    state = _FileState(source, result, sup, enabled, file_ignores)
    if sup.skip_file:
        state.done = True
        return state
    try:
        module, _ = parse(source.text, options.config.max_file_size)  # the current grammar, else Python 3.6's (`x.cuda(async=True)`)
    except cst.ParserSyntaxError as exc:
        py_error = _python_error(source.text)
        if py_error is None:
            first = exc.message.strip().splitlines()[0] if exc.message else "unknown"
            result.warning = f"{source.path}: skipped: the parser does not support this file's syntax ({first})"
            state.done = True
            return state
        if SYNTAX_ERROR in enabled:
            state.raw.append(_syntax_finding(source, exc, py_error if isinstance(py_error, SyntaxError) else None))
        return state
    except (ParseRefused, RecursionError, MemoryError) as exc:
        py_error = _python_error(source.text)
        if isinstance(py_error, SyntaxError) and not isinstance(py_error, RecursionError):
            # Python itself refuses it (more than 200 nested brackets, "too complex"...): a syntax error.
            if SYNTAX_ERROR in enabled:
                state.raw.append(_syntax_finding(source, None, py_error))
            return state
        result.warning = _too_deep_warning(source, exc)
        state.done = True
        return state
    ctx = FileContext(source, module)
    try:
        ctx.facts  # what every rule reads: built here, so that a failure costs this file only
    except Exception as exc:
        result.error = _internal_error(source.path, "the analysis", exc)
        state.done = True
        return state
    state.ctx = ctx
    if source.cells is not None and SYNTAX_ERROR in enabled:
        state.raw.extend(_cell_syntax_findings(source))
    for rule in rules:
        if rule.code not in enabled:
            continue
        try:
            state.raw.extend(rule.check(state.ctx))
        except Exception as exc:  # a rule bug must not take the run down
            result.error = _internal_error(source.path, rule.code, exc)
    return state


def _finish(state: _FileState, options: Options) -> FileResult:
    """Phase two for one file: suppressions, severity overrides and the threshold, TL002."""
    result = state.result
    if state.done:
        return result
    config = options.config
    kept: List[Finding] = []
    for f in state.raw:
        if f.code not in state.enabled:  # a program rule's finding in a file that ignores it
            continue
        if f.code != SYNTAX_ERROR and state.sup.suppresses(f.code, f.span.line, f.span.end_line):
            continue
        f.severity = config.severity_of(f.code, f.severity)
        if f.severity < options.min_severity:
            continue
        kept.append(f)
    ignores_tl002 = any(SUPPRESSION.startswith(s) or s == "ALL" for s in state.file_ignores)
    if options.report_unused_suppressions and not ignores_tl002:
        # Without a parse no rule ran, so every suppression would look unused: report only malformed ones.
        unused_enabled = state.enabled if state.ctx is not None else None
        for f in _suppression_findings(state.source, state.sup, unused_enabled):
            f.severity = config.severity_of(f.code, f.severity)
            if f.severity >= options.min_severity:
                kept.append(f)
    result.findings = kept
    return result


def lint_source(source: SourceFile, options: Options, rules: Optional[List[Rule]] = None) -> FileResult:
    """Lint one file's text (already read and decoded) on its own: the file is its own program."""
    rules = rules if rules is not None else _instances(options.enabled)
    try:
        state = _prepare(source, options, rules)
        _run_program_rules({os.path.abspath(source.path): state}, options, rules)
        return _finish(state, options)
    finally:
        clear_caches()


def _run_program_rules(states: Dict[str, _FileState], options: Options, rules: Sequence[Rule]) -> None:
    program_rules = [r for r in rules if r.is_program_rule()]
    if not program_rules:
        return
    from trainlint.analysis.program import build_programs

    run_files = {real: st.ctx for real, st in states.items() if st.ctx is not None}
    by_display = {st.source.path: st for st in states.values()}

    def load(real: str):
        try:
            source = _read(real, _display(real), options)
            ctx = FileContext(source, parse(source.text, options.config.max_file_size)[0])
            ctx.facts
            return ctx
        except Exception:  # unreadable, a syntax error, too deep...: not part of the program
            return None

    try:
        programs = build_programs(run_files, load)
    except Exception as exc:  # the files were checked on their own: say the program rules were not
        for st in states.values():
            if st.ctx is not None and st.result.error is None:
                st.result.error = _internal_error(st.source.path, "the program analysis (imports between files)", exc)
        return
    for program in programs:
        for rule in program_rules:
            try:
                found = list(rule.check_program(program))
            except Exception as exc:
                st = by_display.get(program.entry.display)
                if st is not None:
                    st.result.error = _internal_error(program.entry.display, rule.code, exc)
                continue
            for f in found:
                st = by_display.get(f.path)
                if st is None:  # findings in files outside the run are not reported
                    continue
                # A file shared by two programs (a model used by train.py and finetune.py) is judged
                # in each: report each finding once.
                key = (f.code, f.span, f.message)
                if key not in st.seen:
                    st.seen.add(key)
                    st.raw.append(f)


def _read(real: str, display: str, options: Options) -> SourceFile:
    """A file's source: its overlay text when it has one, else the file on disk."""
    if options.overlay:
        text = options.overlay.get(os.path.realpath(real))
        if text is not None:
            if real.endswith(".ipynb"):
                from trainlint.source import notebook_source

                return notebook_source(text.encode("utf-8"), display)
            return SourceFile(display, text)
    return read_source(real, display, options.config.max_file_size)


def _display(real: str) -> str:
    from trainlint.files import display_path

    return display_path(Path(real))


def _suppression_findings(source: SourceFile, sup: supp.Suppressions, enabled: Optional[Sequence[str]]) -> List[Finding]:
    """TL002 findings: malformed directives, then (unless ``enabled`` is None) unused suppressions."""
    rule = registry()[SUPPRESSION]
    out = []
    for problem in sup.problems:
        out.append(Finding(SUPPRESSION, rule.name, rule.severity, problem.message[0].upper() + problem.message[1:],
                           source.path, problem.span, hint="Fix the directive, or remove it"))
    for directive, what in (sup.unused(enabled) if enabled is not None else ()):
        label = "noqa" if directive.kind == "noqa" else f"trainlint: {directive.kind}"
        from trainlint.fixes import unused_suppression_fix

        dead = None if directive.codes is None else [c for c in directive.codes if c not in directive.used and c in enabled]
        fix = unused_suppression_fix(source.text, directive.line, directive.column, directive.end_column, dead)
        out.append(Finding(SUPPRESSION, rule.name, rule.severity, f"Unused suppression `# {label}`: {what}",
                           source.path, directive.span, hint="Remove the suppression (or the unused codes)", fix=fix))
    return out


def _python_accepts(text: str) -> bool:
    return _python_error(text) is None


def _python_error(text: str) -> Optional[Exception]:
    """The error the interpreter raises compiling ``text`` (None when it accepts it)."""
    try:
        compile(text, "<trainlint>", "exec", dont_inherit=True, flags=0x400)  # PyCF_ONLY_AST
        return None
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return exc


def _relative_to(path: str, root: Path) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def lint_paths(paths: Sequence[str], options: Options) -> Tuple[Report, List[str]]:
    """Lint files and folders. Returns the report and warnings for the user."""
    # Syntax trees are many small objects that live until the run ends: with the default thresholds
    # the cyclic GC rescans them over and over (measured: 40% of a run on 753 real files).
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 1000)
    try:
        return _lint_paths(paths, options)
    finally:
        clear_caches()
        gc.set_threshold(*thresholds)


def _lint_paths(paths: Sequence[str], options: Options) -> Tuple[Report, List[str]]:
    found = discover(paths, options.config)
    report = Report(findings=[], files_checked=0, rules=rule_infos(options), version=__version__,
                    root=str(options.config.root))
    warnings = list(found.warnings)
    report.errors.extend(FileError(p, m) for p, m in found.errors)
    rules = _instances(options.enabled)
    states: Dict[str, _FileState] = {}
    for real, display in found.files:
        try:
            source = _read(real, display, options)
        except SourceSkipped as exc:
            warnings.append(f"{display}: {exc}")
            continue
        except SourceError as exc:
            report.errors.append(FileError(display, str(exc)))
            continue
        except Exception as exc:  # one file never costs the run
            report.errors.append(_internal_error(display, "reading the file", exc))
            continue
        try:
            state = _prepare(source, options, rules)
        except Exception as exc:
            report.errors.append(_internal_error(display, "the engine", exc))
            continue
        if state is not None:
            states[os.path.realpath(real)] = state
            report.real_paths[source.path] = os.path.realpath(real)
    _run_program_rules(states, options, rules)
    for state in states.values():
        _collect(report, _finish(state, options), warnings)
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
        if result.source.cells is not None:
            report.notebooks[result.source.path] = result.source.cells
    report.findings.extend(result.findings)
