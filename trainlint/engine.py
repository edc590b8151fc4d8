"""The lint engine: files in, findings out. Parses each file once, runs the enabled rules on its facts,
then applies suppressions, per-file ignores, severity overrides and the severity threshold."""

from __future__ import annotations

import gc
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Dict, List, Optional, Sequence, Tuple

from trainlint import __version__, docs_url
from trainlint.config import Config
from trainlint.files import discover
from trainlint.findings import Finding, Severity, Span
from trainlint.import_scan import scan_imports
from trainlint.report.base import FileError, Report, RuleInfo
from trainlint.rules import Rule, codes as rule_codes, registry, rule_class
from trainlint.source import SourceError, SourceFile, SourceSkipped, read_source
from trainlint import suppressions as supp

if TYPE_CHECKING:  # pragma: no cover
    import libcst as cst

    from trainlint.context import FileContext

# libcst, the analysis and the rules are imported on first use: a run whose files all come from the
# cache, or that holds no training code, never pays for them (pre-commit runs one file at a time).

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
    #: Parse every file, even those without training code (tests compare both ways).
    parse_all: bool = False
    #: The results cache (trainlint.cache.Cache), or None to compute everything.
    cache: Optional[object] = None
    #: Worker processes: 1 (the default of the Python API) none; None one per CPU core when there is
    #: enough to analyse (the command line's default).
    jobs: Optional[int] = 1


@dataclass
class FileResult:
    findings: List[Finding] = field(default_factory=list)
    source: Optional[SourceFile] = None
    error: Optional[FileError] = None
    warning: Optional[str] = None
    checked: bool = True  # False: the engine failed on it (an error, not counted as checked)


class _LazyRuleInfos(dict):
    """``Report.rules``, filled on first use: only some formats (SARIF) read the rules' documentation,
    and reading it imports every rule module."""

    def __init__(self, options: Options) -> None:
        super().__init__()
        self._options: Optional[Options] = options

    def _fill(self) -> None:
        if self._options is not None:
            options, self._options = self._options, None
            dict.update(self, _rule_infos(options))

    def _filled(name):  # noqa: N805 - a decorator factory used in the class body
        def method(self, *args, **kwargs):
            self._fill()
            return getattr(dict, name)(self, *args, **kwargs)

        method.__name__ = name
        return method

    for _name in ("__getitem__", "__iter__", "__len__", "__contains__", "__eq__", "__repr__", "__setitem__",
                  "__delitem__", "keys", "values", "items", "get", "copy", "pop", "setdefault", "update"):
        locals()[_name] = _filled(_name)
    del _name, _filled


def rule_infos(options: Options) -> Dict[str, RuleInfo]:
    return _LazyRuleInfos(options)


def _rule_infos(options: Options) -> Dict[str, RuleInfo]:
    infos = {}
    for code in options.enabled:
        cls = registry()[code]
        sev = options.config.severity_of(code, cls.severity)
        infos[code] = RuleInfo(code, cls.name, sev.label, cls.summary, cls.doc(), docs_url(code))
    return infos


class _LazyRules:
    """The enabled rules, instantiated (their modules, libcst and the analysis imported) on first use."""

    def __init__(self, codes: Sequence[str]) -> None:
        self.codes = list(codes)
        self._rules: Optional[List[Rule]] = None

    def __iter__(self):
        if self._rules is None:
            reg = registry()
            self._rules = [reg[c]() for c in self.codes]
        return iter(self._rules)


def _instances(codes: Sequence[str]) -> _LazyRules:
    return _LazyRules(codes)


def clear_caches() -> None:
    """Forget what one run learnt: syntax-walk memos, the texts found safe to parse, and what the file
    system looked like (folder listings, resolved imports, real paths of folders). An editor's server lints again and again in one
    process; a module created or deleted between two checks must be seen by the next one."""
    import sys

    walk = sys.modules.get("trainlint.analysis.walk")
    if walk is not None:  # nothing to clear when no file was analysed
        walk.clear_caches()
    program = sys.modules.get("trainlint.analysis.program")
    if program is not None:
        program.clear_caches()
    parsing = sys.modules.get("trainlint.parsing")
    if parsing is not None:
        parsing.clear_caches()


#: Words without which a file cannot be part of a training program by itself: the frameworks trainlint
#: understands (and libraries built on torch whose names do not say so: DGL, AllenNLP, flair, fairseq,
#: fastai, ignite, skorch, detectron2, the OpenMMLab packages, catalyst, composer, poutyne, MONAI, Pyro —
#: a script that drives one of them never needs to write `torch`, as allennlp's
#: scripts/write_srl_predictions_to_conll_format.py shows), and the words of a training
#: loop itself (a snippet or notebook export that uses `loss.backward()` / `optimizer.step()` on objects
#: made elsewhere). A file without any of them is parsed only when a training file imports it (or it
#: imports a project module, which may be one), or when Python rejects its syntax (TL001 stays the same).
_FRAMEWORK_RE = re.compile(
    r"torch|lightning|accelerate|transformers|timm|deepspeed|apex|kornia|albumentations|keras|jax|flax|optax"
    r"|dgl|allennlp|flair|fairseq|fastai|ignite|skorch|detectron2|mmcv|mmdet|mmseg|mmengine|catalyst|composer"
    r"|poutyne|monai|pyro|backward\(|zero_grad|optim|DataLoader|no_grad|clip_grad|set_epoch|manual_seed|\.eval\(|\.train\("
)


def _may_train(source: SourceFile, path: str, roots: Optional[Sequence[Path]]) -> bool:
    """Can this file be part of a training program on its own evidence? (A cheap text check: a
    framework is named, or a project module is imported.) Files that fail it are parsed only when a
    training file imports them."""
    text = source.text
    if _FRAMEWORK_RE.search(text):
        return True
    if roots is None:
        return True
    from trainlint.analysis.program import real_path, resolve_path

    real = os.path.realpath(path)
    for name in scan_imports(text):
        target = resolve_path(name, real, roots)
        if target is not None and real_path(target) != real:
            return True
    return False


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
    rule = rule_class(SYNTAX_ERROR)
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
    rule = rule_class(SYNTAX_ERROR)
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
    #: Not parsed: no training code in it (see ``_may_train``); parsed later if a training file imports it.
    deferred: bool = False
    #: What program linking sees of the file: its FileContext, or its facts from the cache.
    node: Optional[object] = None
    real: str = ""
    digest: str = ""  # content hash, for the cache
    seen: set = field(default_factory=set)  # (code, span) of the findings already kept
    #: False: parsed only for the programs it belongs to; another worker runs its file-level rules (and
    #: reports it), so they are not run here and nothing of it is cached from here.
    check: bool = True


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
    from trainlint.parsing import ParseRefused, TooDeep, TooManyTokens

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


def _prepare(source: SourceFile, options: Options, rules: Sequence[Rule], skip_roots: Optional[Sequence[Path]] = None,
             real: Optional[str] = None, check: bool = True) -> _FileState:
    """Phase one for one file: suppressions, per-file ignores, parse, file-level rules (not with
    ``check`` false). With ``skip_roots`` (the run's project roots), a file without training code is
    deferred, not parsed."""
    result = FileResult(source=source)
    sup = supp.parse(source.text, rule_codes())
    file_ignores = options.config.ignored_for_file(_relative_to(source.path, options.config.root))
    enabled = [c for c in options.enabled if not any(c.startswith(s) or s == "ALL" for s in file_ignores)]
    state = _FileState(source, result, sup, enabled, file_ignores, check=check)
    if sup.skip_file:
        state.done = True
        return state
    state.real = os.path.realpath(real or source.path)
    if (skip_roots is not None and not (source.cells is not None and source.cells.errors)
            and not _may_train(source, real or source.path, skip_roots) and _python_accepts(source.text)):
        state.deferred = True
        return state
    return _parse_and_check(state, options, rules, defer=skip_roots is not None)


class _CachedFacts:
    """The facts program linking reads (see trainlint.analysis.program), from the cache."""

    __slots__ = ("imports", "runs_at_module_level", "classes", "links")

    def __init__(self, data: Dict[str, object]) -> None:
        from trainlint.analysis.links import Links

        self.imports = list(data["i"])
        self.runs_at_module_level = bool(data["r"])
        self.classes = dict.fromkeys(data["c"])
        self.links = Links.from_record(data["l"])


class _CachedFile:
    """Stands in for a FileContext in program linking when the file's facts came from the cache; the
    engine swaps in the parsed FileContext before a program rule sees the file."""

    def __init__(self, source: SourceFile, facts: _CachedFacts) -> None:
        self.source = source
        self.facts = facts
        self.in_run = False

    @property
    def path(self) -> str:
        return self.source.path


def _facts_record(node) -> Dict[str, object]:
    """What program linking reads of a file (a FileContext, a _CachedFile), as the cache stores it."""
    facts = node.facts
    return {"i": list(facts.imports), "r": bool(facts.runs_at_module_level), "c": sorted(facts.classes),
            "l": facts.links.record()}


def _digest(source: SourceFile, real: str) -> str:
    from trainlint.cache import content_hash

    extra = b""
    if source.cells is not None:  # the cells' layout is not in the joined text
        try:
            with open(real, "rb") as fh:
                extra = fh.read()
        except OSError:
            extra = b"?"
    return content_hash(source.text, extra)


def _file_key(state: _FileState, fingerprint: str) -> str:
    from trainlint.cache import key_of

    return key_of("file", fingerprint, state.real, state.source.path, state.enabled, state.digest)


def _from_cache(state: _FileState, cache) -> bool:
    record = cache.get("file", _file_key(state, cache.fingerprint))
    if record is None:
        return False
    from trainlint.cache import findings_from_json

    try:
        raw = findings_from_json(record["raw"])
        facts = _CachedFacts(record["facts"]) if record["facts"] is not None else None
        status = record["status"]
        error = FileError(*record["error"]) if record["error"] else None
        warning = record["warning"]
    except (KeyError, TypeError, ValueError):  # an entry of another shape: recompute
        return False
    state.raw = raw
    state.result.error = error
    state.result.warning = warning
    state.done = status == "done"
    if facts is not None:
        state.node = _CachedFile(state.source, facts)
    return True


def _to_cache(state: _FileState, cache) -> None:
    from trainlint.cache import findings_to_json

    err = state.result.error
    cache.put("file", _file_key(state, cache.fingerprint), {
        "status": "done" if state.done else ("parsed" if state.node is not None else "unparsed"),
        "raw": findings_to_json(state.raw),
        "facts": _facts_record(state.node) if state.node is not None else None,
        "error": [err.path, err.message] if err is not None else None,
        "warning": state.result.warning,
    })


def _parse_and_check(state: _FileState, options: Options, rules: Sequence[Rule], defer: bool = False) -> _FileState:
    """Parse the file and run the file-level rules, or read their outcome from the cache. With ``defer``,
    a file on which no file-level rule may fire is not parsed (see ``_stand_in``)."""
    cache = options.cache
    state.deferred = False
    if cache is not None:
        state.digest = _digest(state.source, state.real)
        if _from_cache(state, cache):
            return state
    if not (defer and _stand_in(state, options, rules if state.check else ())):
        _parse_and_check_uncached(state, options, rules if state.check else ())
        state.node = state.ctx
    if cache is not None and state.check:
        _to_cache(state, cache)
    return state


def _python_tree(source: SourceFile, options: Options):
    """CPython's ``ast`` of a file that may stand in unparsed (``_stand_in``), else None: a notebook (its
    cells are compiled one by one), a file CPython rejects, or one ``parse`` refuses up front."""
    if source.cells is not None:
        return None
    from trainlint.parsing import MAX_NESTING, ParseRefused, check_nesting, max_tokens_for
    from trainlint.source import DEFAULT_MAX_FILE_SIZE

    try:  # (as trainlint.parsing.parse checks it)
        # (keep: when a program needs the file, libcst parses it without checking it again)
        check_nesting(source.text, MAX_NESTING, max_tokens_for(options.config.max_file_size or DEFAULT_MAX_FILE_SIZE),
                      keep=True)
        return compile(source.text, "<trainlint>", "exec", dont_inherit=True, flags=0x400)  # PyCF_ONLY_AST
    except (ParseRefused, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _stand_in(state: _FileState, options: Options, rules: Sequence[Rule]) -> bool:
    """Skip early: a file on which no enabled file-level rule may fire (``Rule.may_fire``, read from its
    text) has nothing to report of its own; programs need only what linking reads of it (its imports,
    whether it runs something, its classes, its links), which CPython's ``ast`` gives at a fifteenth of libcst's
    cost. Its node is then a stand-in (as for a file whose facts come from the cache), parsed with libcst
    only when a program that holds it is analysed (``_materialize``): a test module nothing imports is
    never parsed. True when the state got such a node. Not for a notebook (its cells are compiled one by
    one), a file CPython rejects (TL001 comes from the parse), or one too deep or too long to parse (its
    warning comes from the parse, as before)."""
    source = state.source
    text, path = source.text, source.path
    for rule in rules:
        if rule.code in state.enabled and type(rule).may_fire(text, path):
            return False
    node = _linked_only(source, options)
    if node is None:
        return False
    state.node = node
    return True


def _linked_only(source: SourceFile, options: Options) -> Optional["_CachedFile"]:
    """A file from outside the run, as program linking reads it (``_stand_in``: CPython's ``ast``, a
    fifteenth of libcst's cost), parsed with libcst only when a program that holds it is analysed
    (``_materialize``): the importer search reads many files that no program ends up holding. None when
    CPython does not compile it (libcst may: old code with ``async`` as a name) or it is too deep."""
    tree = _python_tree(source, options)
    if tree is None:
        return None
    from trainlint.analysis.facts import link_facts_from_ast

    try:
        facts = link_facts_from_ast(tree)
    except RecursionError:
        return None
    return _CachedFile(source, _CachedFacts(_facts_record(_Facts(facts))))


class _Facts:
    __slots__ = ("facts",)

    def __init__(self, facts) -> None:
        self.facts = facts


def _parse_and_check_uncached(state: _FileState, options: Options, rules: Sequence[Rule]) -> _FileState:
    import libcst as cst

    from trainlint.context import FileContext
    from trainlint.parsing import ParseRefused, parse

    source, result, enabled = state.source, state.result, state.enabled
    state.deferred = False
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
        # (A deferred file was judged free of training code: every rule ran on it, in effect.)
        unused_enabled = state.enabled if state.node is not None or state.deferred else None
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


def _run_program_rules(states: Dict[str, _FileState], options: Options, rules: Sequence[Rule],
                       roots: Optional[List[Path]] = None, loaded: Optional[set] = None,
                       part: Optional[Tuple[int, int]] = None, elsewhere: AbstractSet[str] = frozenset()) -> list:
    """Build the programs of ``states``, run the program rules on each and merge their findings into
    the states. With ``part`` (k, n): only the k-th of n shares of the programs, and nothing merged: the
    outcomes are returned, for the caller to merge those of all n shares (``_merge_outcomes``).
    ``elsewhere``: the files of the run that other worker processes lint."""
    if not any(st.node is not None for st in states.values()):  # nothing parsed: no program to build
        return []
    if isinstance(rules, _LazyRules) and rules._rules is not None or not isinstance(rules, _LazyRules):
        if not any(r.is_program_rule() for r in rules):
            return []
    from trainlint.analysis.program import build_programs

    cache = options.cache
    run_files = {real: st.node for real, st in states.items() if st.node is not None}
    digests: Dict[str, str] = {}  # real path -> content hash, of the files loaded from outside the run
    outside: set = set()  # the files loaded from outside ``states``

    def load(real: str):
        st = states.get(real)
        if st is not None and st.deferred:  # a file of the run without training code, imported by one
            _parse_and_check(st, options, rules, defer=True)
            if st.node is not None:
                st.node.in_run = True
            return st.node
        outside.add(real)
        try:
            source = _read(real, _display(real), options)
        except Exception:  # unreadable...: not part of the program
            return None
        if cache is not None:
            from trainlint.cache import key_of

            digest = digests[real] = _digest(source, real)
            key = key_of("dep", cache.fingerprint, real, source.path, digest)
            record = cache.get("dep", key)
            if record is not None:
                try:
                    return _CachedFile(source, _CachedFacts(record)) if record.get("ok") else None
                except (KeyError, TypeError, ValueError):
                    pass
        ctx = _linked_only(source, options) or _parse_context(source, options)
        if cache is not None:
            cache.put("dep", key, dict(_facts_record(ctx), ok=True) if ctx is not None else {"ok": False})
        return ctx

    program_rules: Optional[List[Rule]] = None
    deferred = [real for real, st in states.items() if st.deferred and "__main__" not in st.source.text]
    try:
        programs = build_programs(run_files, load, roots, deferred, elsewhere)
    except Exception as exc:  # the files were checked on their own: say the program rules were not
        for st in states.values():
            if st.node is not None and st.result.error is None:
                st.result.error = _internal_error(st.source.path, "the program analysis (imports between files)", exc)
        return []
    if loaded is not None:  # files from outside these states that a program holds
        loaded.update(pf.path for program in programs for pf in program.files if pf.path in outside)
    # Each program is cached, and recomputed, on its own: its key holds every file of it (content, name,
    # part of the run or not, what it imports), so a change recomputes only the programs that hold the
    # changed file. Rules keep no memory between programs: a file shared by train.py and finetune.py is
    # judged in both, and the merge below keeps one finding per rule and place.
    outcomes: Dict[int, list] = {}
    chosen = programs if part is None else _share(programs, *part)
    for program in chosen:
        key = None
        if cache is not None:
            key = _program_key(program, states, digests, cache.fingerprint)
            stored = cache.get("program", key)
            got = _program_from_cache(stored) if stored is not None else None
            if got is not None:
                outcomes[id(program)] = got
                continue
        if program_rules is None:
            program_rules = [r for r in rules if r.is_program_rule()]
        whole = _materialize(program, states, options, rules, shared=part is not None)
        outcomes[id(program)] = _check_program(program, program_rules) if program.files else []
        if cache is not None and whole:
            from trainlint.cache import findings_to_json

            cache.put("program", key, [[code, findings_to_json(found), err] for code, found, err in outcomes[id(program)]])
    ranked = [((p.entry.path, p.entry.display, i), p.entry.display, outcomes[id(p)])
              for i, p in enumerate(programs) if id(p) in outcomes]
    if part is None:
        _merge_outcomes(states, ranked)
    return ranked


def _merge_outcomes(states: Dict[str, _FileState], ranked: list) -> None:
    """Program findings into the files' findings. A file shared by two programs (a model used by
    train.py and finetune.py) is judged in each, and a file checked on its own (file-level rules) may be
    judged again in a program: one finding per rule and place, the file's own first, then the programs'
    in the order of their entry scripts' paths (so the output does not depend on the order programs are
    built or processed in, nor on --jobs). ``ranked``: (order, entry's name shown, outcome) per program."""
    by_display = {st.source.path: st for st in states.values()}
    for st in states.values():
        st.seen.update((f.code, f.span) for f in st.raw)
    for _, entry_display, outcome in sorted(ranked, key=lambda r: r[0]):
        for code, found, err in outcome:
            if err is not None:
                st = by_display.get(entry_display)
                if st is not None and st.result.error is None:
                    st.result.error = FileError(entry_display, err)
                continue
            for f in found:
                st = by_display.get(f.path)
                if st is None:  # findings in files outside the run are not reported
                    continue
                key_f = (f.code, f.span)
                if key_f not in st.seen:
                    st.seen.add(key_f)
                    st.raw.append(f)


def _share(programs: list, k: int, n: int) -> list:
    """The k-th of n shares of the programs, balanced by size (the same cut in every worker: the
    programs are built the same way from the same files), in their order."""
    loads = [0] * n
    owner: Dict[int, int] = {}
    weights = [(-_program_weight(p), i) for i, p in enumerate(programs)]
    for w, i in sorted(weights):
        j = min(range(n), key=lambda x: (loads[x], x))
        loads[j] -= w
        owner[i] = j
    return [p for i, p in enumerate(programs) if owner[i] == k]


def _program_weight(program) -> int:
    """About how much analysing a program costs: the size of its files (a library module is judged by
    two rules only)."""
    size = sum(len(pf.ctx.source.text) for pf in program.files if pf.ctx is not None)
    return size // 4 if program.library else size


def _check_program(program, program_rules: Sequence[Rule]) -> list:
    """The program rules' outcome on one program: (code, findings, error message or None) per rule."""
    found_all = []
    for rule in program_rules:
        if program.library and not rule.judges_libraries:
            continue
        try:
            found_all.append((rule.code, list(rule.check_program(program)), None))
        except Exception as exc:
            found_all.append((rule.code, [], _internal_error(program.entry.display, rule.code, exc).message))
    return found_all


def _parse_context(source: SourceFile, options: Options):
    """A FileContext for a file outside the run (None when it does not parse, is too deep...)."""
    from trainlint.context import FileContext
    from trainlint.parsing import parse

    try:
        ctx = FileContext(source, parse(source.text, options.config.max_file_size)[0])
        ctx.facts
        return ctx
    except Exception:  # unreadable, a syntax error, too deep...: not part of the program
        return None


class _StandInFailed(Exception):
    """A worker met a stand-in that libcst does not parse (see ``_materialize``): the run is linted
    serially instead, so that every share sees the same programs."""


def _materialize(program, states: Dict[str, _FileState], options: Options, rules: Sequence[Rule],
                 shared: bool = False) -> bool:
    """Parse the program's files that came from the cache or were not parsed up front (``_stand_in``):
    program rules read syntax trees. The file-level findings of a file of the run came from the cache
    (or there are none: no file-level rule may fire on a stand-in); rules keep no state on a file's
    context, so the file-level rules need not run again.

    A stand-in that CPython compiles but libcst does not parse (syntax libcst does not support yet) is
    reported as when it was parsed up front (the parse's warning, nothing else) and leaves the program;
    when nothing needs it, it is never parsed and gives no warning. With ``shared`` (one share of the
    programs in a worker) that stops the worker instead: the run is then linted serially. False when a
    file left the program (its outcome is then not cached)."""
    whole = True
    for pf in list(program.files):
        if isinstance(pf.ctx, _CachedFile):
            st = states.get(pf.path)
            if st is not None and st.ctx is not None:
                ctx = st.ctx
            elif st is not None and st.done:  # a stand-in that did not parse, met before
                _leave_program(program, pf)
                whole = False
                continue
            else:
                ctx = _parse_context(pf.ctx.source, options)
                if ctx is None:
                    if shared:
                        raise _StandInFailed(pf.display)
                    if st is None:  # a file from outside the run that libcst does not parse: not part of it
                        _leave_program(program, pf)
                        whole = False
                        continue
                    _parse_and_check_uncached(st, options, ())  # the parse's warning (or error), as up front
                    st.ctx, st.node, st.done = None, None, True
                    if options.cache is not None and st.check:
                        _to_cache(st, options.cache)
                    _leave_program(program, pf)
                    whole = False
                    continue
                if st is not None:
                    st.ctx = ctx
            ctx.in_run = pf.ctx.in_run
            if st is not None:
                st.node = ctx
            pf.ctx = ctx
    return whole


def _leave_program(program, pf) -> None:
    """A file that does not parse leaves the program (the program of which it is the entry is empty)."""
    if pf is program.entry:
        program.files.clear()
        return
    if pf not in program.files:
        return
    program.files.remove(pf)
    program.imports.pop(pf.path, None)
    for deps in program.imports.values():
        if pf.path in deps:
            deps.remove(pf.path)


def _program_key(program, states: Dict[str, _FileState], digests: Dict[str, str], fingerprint: str) -> str:
    """Every file of the program, in order: path, name shown, content, part of the run or not, the rules
    enabled for it, and the imports the program follows from it; whether it is judged as a library."""
    from trainlint.cache import key_of

    files = []
    for pf in program.files:
        st = states.get(pf.path)
        digest = st.digest if st is not None else digests.get(pf.path, "")
        files.append([pf.path, pf.display, digest, pf.in_run, st.enabled if st is not None else None,
                      program.imports.get(pf.path, [])])
    return key_of("program", fingerprint, bool(program.library), files)


def _program_from_cache(stored) -> Optional[list]:
    from trainlint.cache import findings_from_json

    if not isinstance(stored, list):
        return None
    try:
        return [(code, findings_from_json(found), err) for code, found, err in stored]
    except (KeyError, TypeError, ValueError):
        return None


def _roots(reals: Sequence[str]) -> List[Path]:
    """The run's project roots, as program linking computes them."""
    return sorted({Path(os.path.commonpath(list(reals)))}) if reals else [Path.cwd()]


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
    rule = rule_class(SUPPRESSION)
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
    # Syntax trees are many small objects that live until the run ends: the cyclic GC would rescan them
    # over and over (measured: 40% of a run on 753 real files with the default thresholds, still ~12% of
    # one on 1,099 files with raised ones) and frees nothing, since they are in use until the end. So it
    # is off during the run, as in the CLI, and back as it was afterwards (an editor's long-lived server
    # calls this once per check).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _lint_paths(paths, options)
    finally:
        clear_caches()
        if enabled:
            gc.enable()


def _lint_paths(paths: Sequence[str], options: Options) -> Tuple[Report, List[str]]:
    found = discover(paths, options.config)
    report = Report(findings=[], files_checked=0, rules=rule_infos(options), version=__version__,
                    root=str(options.config.root))
    warnings = list(found.warnings)
    report.errors.extend(FileError(p, m) for p, m in found.errors)
    items: Dict[str, Tuple[str, SourceFile]] = {}  # real path -> (path to read, source), in discovery order
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
        items[os.path.realpath(real)] = (real, source)
        report.real_paths[source.path] = os.path.realpath(real)
    # The run's project roots (where absolute imports stop climbing): the common folder of its files.
    roots = _roots(list(items))
    results = None
    jobs = _jobs(options, items)
    if jobs > 1:
        results = _lint_parallel(items, options, roots, jobs)
    if results is None:
        results, _ = _lint_group(items, options, roots)
    for real in items:
        _collect(report, results[real], warnings)
    report.findings.sort(key=Finding.sort_key)
    return report, warnings


def _lint_group(items: Dict[str, Tuple[str, SourceFile]], options: Options, roots: List[Path],
                elsewhere: AbstractSet[str] = frozenset()) -> Tuple[Dict[str, FileResult], set]:
    """Lint some files of the run together: every program they hold (``elsewhere``: the run's files
    that other worker processes lint). Returns each file's result and the files that were loaded from
    outside these ones (linking)."""
    rules = _instances(options.enabled)
    states, failed = _prepare_all(items, options, rules, roots)
    loaded: set = set()
    _run_program_rules(states, options, rules, roots, loaded, elsewhere=elsewhere)
    results = {real: _finish(st, options) for real, st in states.items()}
    results.update(failed)
    return results, loaded


def _prepare_all(items: Dict[str, Tuple[str, SourceFile]], options: Options, rules: Sequence[Rule], roots: List[Path],
                 owned: Optional[set] = None) -> Tuple[Dict[str, _FileState], Dict[str, FileResult]]:
    """Phase one for each file (file-level rules only for ``owned`` ones, when given)."""
    skip_roots = None if options.parse_all else roots
    states: Dict[str, _FileState] = {}
    failed: Dict[str, FileResult] = {}
    for real, (path, source) in items.items():
        try:
            states[real] = _prepare(source, options, rules, skip_roots, path, check=owned is None or real in owned)
        except Exception as exc:  # one file never costs the run
            failed[real] = FileResult(error=_internal_error(source.path, "the engine", exc), checked=False)
    return states, failed


# -- worker processes ---------------------------------------------------------------------------

#: Below this much source to analyse (bytes not answered by the cache), workers cost more than they save.
PARALLEL_MIN_BYTES = 200_000
#: The last parallel run's worker processes: pid -> CPU seconds spent on lint work (benchmarks read it:
#: on a shared machine the busiest worker's CPU time says what the wall time would be on an idle one).
WORKER_CPU: Dict[int, float] = {}


def _jobs(options: Options, items: Dict[str, Tuple[str, SourceFile]]) -> int:
    jobs = options.jobs
    if jobs is None:
        jobs = os.cpu_count() or 1
        try:
            jobs = min(jobs, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            pass
    if jobs <= 1 or len(items) < 2:
        return 1
    if options.jobs is None:  # by default only when there is enough to do
        todo = 0
        for real, (_, source) in items.items():
            if options.cache is None or not _cached(real, source, options):
                todo += len(source.text)
                if todo >= PARALLEL_MIN_BYTES:
                    break
        if todo < PARALLEL_MIN_BYTES:
            return 1
    return jobs


def _cached(real: str, source: SourceFile, options: Options) -> bool:
    """Is this file's per-file entry in the cache? (a quick look; the lint reads and checks it)"""
    cache = options.cache
    state = _FileState(source, FileResult(source=source), supp.Suppressions(), [], [])
    file_ignores = options.config.ignored_for_file(_relative_to(source.path, options.config.root))
    state.enabled = [c for c in options.enabled if not any(c.startswith(s) or s == "ALL" for s in file_ignores)]
    state.real = real
    state.digest = _digest(source, real)
    return cache.exists("file", _file_key(state, cache.fingerprint))


def _groups(items: Dict[str, Tuple[str, SourceFile]], roots: List[Path]) -> List[List[str]]:
    """The run's files in groups that no import crosses (a text scan, no parse): each program lies in one."""
    from trainlint.analysis.program import real_path, resolve_path

    parent = {real: real for real in items}
    memo: Dict[Tuple[str, str], Optional[str]] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for real, (_, source) in items.items():
        folder = os.path.dirname(real)
        for name in set(scan_imports(source.text)):
            if (name, folder) in memo:
                dep = memo[name, folder]
            else:
                target = resolve_path(name, real, roots)
                dep = memo[name, folder] = real_path(target) if target is not None else None
            if dep is not None and dep in parent and dep != real:
                a, b = find(real), find(dep)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: Dict[str, List[str]] = {}
    for real in items:
        groups.setdefault(find(real), []).append(real)
    return list(groups.values())


def _lint_parallel(items: Dict[str, Tuple[str, SourceFile]], options: Options, roots: List[Path],
                   jobs: int) -> Optional[Dict[str, FileResult]]:
    """The run linted in worker processes. Work is cut along the groups of files that no import crosses
    (each program lies within one), biggest first; a group bigger than a worker's share of the run (a
    whole package: timm, Lightning) is cut further, into shares of its programs: each share's worker
    parses the group's files (programs are built from all of them), runs the file-level rules on its
    share of the files and the program rules on its share of the programs, and this process merges the
    shares' findings as the serial run does. None when it cannot be done that way (a single group of
    one file; a program that reached into another group through a file outside the run: the caller then
    lints serially, so the output is always the serial one)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    groups = _groups(items, roots)
    size = {real: len(source.text) for real, (_, source) in items.items()}
    total = sum(size.values()) or 1
    tasks = []  # (weight, files, part (k, n) or None, files owned)
    small = []  # groups of less than a chunk's weight: linted together, a chunk of them per task
    for g in groups:
        weight = sum(size[r] for r in g)
        n = min(jobs, len(g), -(-weight * jobs // total))
        if n <= 1:
            if weight * CHUNKS_PER_JOB * jobs < total:
                small.append((weight, g))
            else:
                tasks.append((weight, g, None, None))
            continue
        for k, owned in enumerate(_split_files(g, size, n)):
            tasks.append((weight / n, g, (k, n), owned))
    tasks.extend(_chunks(small, total / (CHUNKS_PER_JOB * jobs)))
    if len(tasks) < 2:
        return None
    tasks.sort(key=lambda t: -t[0])
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    results: Dict[str, FileResult] = {}
    loaded: set = set()
    shares: Dict[int, list] = {}  # id of a cut group -> what its shares returned
    WORKER_CPU.clear()
    try:
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context(method)) as ex:
            everything = frozenset(items)
            futures = [(g, part, ex.submit(_group_worker, [(real, items[real][0], items[real][1].path) for real in g],
                                           options, roots, part, owned, everything.difference(g)))
                       for _, g, part, owned in tasks]
            for g, part, fut in futures:
                *done, pid, cpu = fut.result()
                WORKER_CPU[pid] = WORKER_CPU.get(pid, 0.0) + cpu
                if part is None:
                    part_results, outside = done
                    results.update(part_results)
                else:
                    states, failed, ranked, outside = done
                    shares.setdefault(id(g), [g, {}, {}, []])
                    entry = shares[id(g)]
                    entry[1].update(states)
                    entry[2].update(failed)
                    entry[3].extend(ranked)
                loaded |= outside
    except Exception:  # a worker that died (memory...), an unpicklable value: lint serially instead
        return None
    for g, states, failed, ranked in shares.values():
        for real, st in states.items():
            st.source = st.result.source = items[real][1]
        _merge_outcomes(states, ranked)
        results.update((real, _finish(st, options)) for real, st in states.items())
        results.update(failed)
    if loaded & set(items) or set(results) != set(items):
        return None
    for real, result in results.items():
        result.source = items[real][1]
    return results


#: Small groups of files (a script, a test file and its helpers) are linted a chunk at a time: a task has
#: fixed costs (the rules' set-up, a scan of the project for the files that import a module, which its
#: caches then answer for the rest of the task), paid once per chunk instead of once per group. About
#: this many chunks per worker keep the workers' loads even at the end of the run.
CHUNKS_PER_JOB = 4


def _chunks(small: List[Tuple[int, List[str]]], target: float) -> list:
    """Small groups packed into tasks of about ``target`` weight, each a group of the groups it holds
    (linted together, as the serial run lints every group together: no import crosses them). Groups of
    one project stay together, in path order: they share the project's importer scan."""
    from trainlint.analysis.program import project_root

    tasks, files, weight = [], [], 0
    for w, g in sorted(small, key=lambda x: (project_root(min(x[1])), min(x[1]))):
        files.extend(g)
        weight += w
        if weight >= target:
            tasks.append((weight, files, None, None))
            files, weight = [], 0
    if files:
        tasks.append((weight, files, None, None))
    return tasks


def _split_files(group: List[str], size: Dict[str, int], n: int) -> List[set]:
    """A group's files in n shares of about the same size."""
    owned: List[set] = [set() for _ in range(n)]
    loads = [0] * n
    for real in sorted(group, key=lambda r: (-size[r], r)):
        j = min(range(n), key=lambda x: (loads[x], x))
        owned[j].add(real)
        loads[j] += size[real]
    return owned


def _group_worker(group: List[Tuple[str, str, str]], options: Options, roots: List[Path],
                  part: Optional[Tuple[int, int]] = None, owned: Optional[set] = None,
                  elsewhere: AbstractSet[str] = frozenset()):
    import time

    start = time.process_time()
    items: Dict[str, Tuple[str, SourceFile]] = {}
    errors: Dict[str, FileResult] = {}
    for real, path, display in group:
        try:
            items[real] = (path, _read(path, display, options))
        except SourceError as exc:  # changed since the main process read it
            errors[real] = FileResult(error=FileError(display, str(exc)))
    try:
        if part is None:
            results, loaded = _lint_group(items, options, roots, elsewhere)
        else:
            rules = _instances(options.enabled)
            states, failed = _prepare_all(items, options, rules, roots, owned)
            for real in owned:
                st = states.get(real)
                if (st is not None and st.done and st.node is None and not st.sup.skip_file
                        and _python_tree(st.source, options) is not None):
                    # libcst refused a file CPython reads: the other shares have it as a stand-in, so
                    # their programs would not be this share's (see _materialize)
                    raise _StandInFailed(st.source.path)
            loaded = set()
            ranked = _run_program_rules(states, options, rules, roots, loaded, part, elsewhere)
    finally:
        clear_caches()
    if part is not None:
        # this share's files, without what the main process has (the text) or cannot take (trees)
        mine = {}
        for real, st in states.items():
            if real in owned:
                st.ctx = None
                st.node = True if st.node is not None else None
                st.source = st.result.source = None
                mine[real] = st
        failed.update(errors)
        return mine, {r: f for r, f in failed.items() if r in owned}, ranked, loaded, os.getpid(), time.process_time() - start
    results.update(errors)
    for result in results.values():
        result.source = None  # the main process has the text
    return results, loaded, os.getpid(), time.process_time() - start


def lint_text(text: str, display: str, options: Options) -> Tuple[Report, List[str]]:
    report = Report(findings=[], files_checked=0, rules=rule_infos(options), version=__version__,
                    root=str(options.config.root))
    warnings: List[str] = []
    _collect(report, lint_source(SourceFile(display, text), options), warnings)
    report.findings.sort(key=Finding.sort_key)
    return report, warnings


def _collect(report: Report, result: FileResult, warnings: List[str]) -> None:
    report.files_checked += 1 if result.checked else 0
    if result.error is not None:
        report.errors.append(result.error)
    if result.warning:
        warnings.append(result.warning)
    if result.findings and result.source is not None:
        report.sources[result.source.path] = result.source.text
        if result.source.cells is not None:
            report.notebooks[result.source.path] = result.source.cells
    report.findings.extend(result.findings)
