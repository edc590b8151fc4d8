"""The fix engine: ``--fix``, ``--unsafe-fixes``, ``--diff``, ``--fix-only`` and ``--add-noqa``.

A fix is data (:class:`trainlint.findings.Fix`: edits plus an applicability) that a rule attaches to its
finding. This module is the one place that applies them:

- per file, the fixes whose edits overlap no fix taken before are applied together (first by position
  wins; the others wait for the next pass);
- the result must still parse, else the pass's fixes are tried one by one and a fix that breaks the
  file is dropped (and reported as a warning), never written;
- the whole run (program rules see every file) is linted again after each pass, until no fix applies,
  at most :data:`MAX_PASSES` times; a fix that comes back after it was applied is not applied again, so
  a second run changes nothing;
- suppressed findings have no fix to apply (the engine drops them before);
- notebooks are edited cell by cell, in the cell's own source, keeping the JSON's layout, the other
  cells and every output; Python files keep their line endings, encoding and byte-order mark;
- files are written at the end, atomically (a temporary file in the same folder, then ``os.replace``),
  keeping the file's mode: an interrupted run leaves each file either as it was or fully fixed.

Safe fixes keep what the program does (removing an unused suppression); unsafe fixes change what the
training does (they fix a bug, so the numbers change) and are applied only with ``--unsafe-fixes``,
ruff's meaning of the two words.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
import tokenize
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from trainlint.findings import Applicability, Edit, Finding, Fix, Span
from trainlint.source import write_atomic  # noqa: F401  (re-exported: cli and tests import it from here)

#: Lint-and-fix passes at most (ruff uses 100; training-code fixes rarely need more than two).
MAX_PASSES = 10

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def applicable(fix: Optional[Fix], unsafe: bool) -> bool:
    if fix is None or not fix.edits:
        return False
    if fix.applicability == Applicability.SAFE:
        return True
    return unsafe and fix.applicability == Applicability.UNSAFE


def newline_of(text: str) -> str:
    """The file's line ending: that of its first line (``\\n`` when it has none)."""
    m = _LINE_BREAK.search(text)
    return m.group(0) if m else "\n"


def _line_starts(text: str) -> List[int]:
    starts = [0]
    for m in _LINE_BREAK.finditer(text):
        starts.append(m.end())
    return starts


class _Unmappable(Exception):
    pass


def _offset(text: str, starts: List[int], line: int, column: int) -> int:
    """Offset of 1-based (line, column); the line after the last one (column 1) is the end of the text."""
    if line == len(starts) + 1 and column == 1:
        return len(text)
    if not 1 <= line <= len(starts):
        raise _Unmappable(f"line {line} is outside the file")
    start = starts[line - 1]
    end = starts[line] if line < len(starts) else len(text)
    # the line's own text, without its line break
    body = text[start:end]
    body_len = len(body) - (len(body) - len(body.rstrip("\r\n")))
    if column - 1 > body_len + (1 if line < len(starts) else 0):
        raise _Unmappable(f"column {column} is past the end of line {line}")
    return start + min(column - 1, len(body))


def apply_edits(text: str, fixes: Sequence[Fix]) -> Tuple[str, List[Fix]]:
    """Apply the fixes whose edits do not overlap an earlier one's; return the text and the fixes applied.

    Inserted text is written with the file's own line ending; an insertion after the last line of a
    file without a final newline starts a new line."""
    starts = _line_starts(text)
    nl = newline_of(text)
    taken: List[Tuple[int, int]] = []
    chosen: List[Tuple[int, int, str]] = []
    applied: List[Fix] = []
    seen = set()
    ordered = []
    for fx in fixes:
        try:
            ranges = [(_offset(text, starts, e.span.line, e.span.column), _offset(text, starts, e.span.end_line, e.span.end_column), e)
                      for e in fx.edits]
        except _Unmappable:
            continue
        if any(a > b for a, b, _ in ranges):
            continue
        ordered.append((min(a for a, _, _ in ranges), ranges, fx))
    ordered.sort(key=lambda t: t[0])
    for _, ranges, fx in ordered:
        key = tuple((a, b, e.content) for a, b, e in ranges)
        if key in seen:  # the same fix reported twice (a file shared by two programs)
            continue

        def overlaps(a: int, b: int) -> bool:
            # ranges that share characters, or two insertions at one point (their order would be a guess)
            return any((a < tb and ta < b) or (a == b == ta == tb) for ta, tb in taken)

        if any(overlaps(a, b) for a, b, _ in ranges):
            continue
        # the edits of one fix must not overlap each other either
        mine = sorted((a, b) for a, b, _ in ranges)
        if any(mine[i][1] > mine[i + 1][0] for i in range(len(mine) - 1)):
            continue
        seen.add(key)
        applied.append(fx)
        for a, b, e in ranges:
            taken.append((a, b))
            content = e.content.replace("\r\n", "\n").replace("\n", nl) if nl != "\n" else e.content
            if a == len(text) and text and not text.endswith(("\n", "\r")) and content.endswith(nl):
                content = nl + content[: -len(nl)]  # after a last line without a newline: keep that style
            chosen.append((a, b, content))
    out = text
    for a, b, content in sorted(chosen, key=lambda t: (t[0], t[1]), reverse=True):
        out = out[:a] + content + out[b:]
    return out, applied


def parses(text: str) -> bool:
    try:
        compile(text, "<trainlint-fix>", "exec", dont_inherit=True, flags=0x400)  # PyCF_ONLY_AST
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    try:
        import libcst as cst

        cst.parse_module(text)
    except Exception:
        return False
    return True


# -- notebooks ------------------------------------------------------------------------------------
def _cell_text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _set_cell_text(cell: dict, text: str) -> None:
    if isinstance(cell.get("source"), list):
        cell["source"] = text.splitlines(keepends=True)
    else:
        cell["source"] = text


def dump_like(nb: dict, raw: str) -> str:
    """``nb`` as JSON in the layout of ``raw`` (its indent, its escaping, its final newline)."""
    m = re.match(r"\{\r?\n([ \t]+)\S", raw)
    indent: Optional[object] = None
    if m:
        ws = m.group(1)
        indent = ws if "\t" in ws else len(ws)
    elif raw.lstrip().startswith("{\n"):
        indent = 0
    ensure_ascii = raw.isascii()
    seps = (",", ": ") if indent is not None else ((", ", ": ") if re.search(r'",\s"', raw[:2000]) else (",", ":"))
    out = json.dumps(nb, indent=indent, ensure_ascii=ensure_ascii, separators=seps)
    if "\r\n" in raw:
        out = out.replace("\n", "\r\n")
    trail = raw[len(raw.rstrip()):]
    return out + trail


def _notebook_apply(raw: str, fixes: Sequence[Fix]) -> Tuple[str, List[Fix]]:
    """Apply fixes (positions in the joined script of the code cells) to the cells' own sources."""
    from trainlint.notebook import to_script

    script, cells = to_script(raw)
    nb = json.loads(raw)
    new_script, applied = apply_edits(script, fixes)
    if not applied:
        return raw, []
    # Lines of the joined script -> (cell index in nb["cells"], line within the cell)
    by_number = {n: nb["cells"][n - 1] for n, _ in cells.starts}
    usable: List[Fix] = []
    per_cell: Dict[int, List[Edit]] = {}
    script_lines = _LINE_BREAK.split(script)
    for fx in applied:
        local: List[Tuple[int, Edit]] = []
        ok = True
        for e in fx.edits:
            c1, l1 = cells.position(e.span.line)
            c2, l2 = cells.position(e.span.end_line)
            cell = by_number.get(c1)
            if c1 != c2 or cell is None:
                ok = False
                break
            original = _cell_text(cell).replace("\r\n", "\n").replace("\r", "\n").split("\n")
            pure_insert = e.span.line == e.span.end_line and e.span.column == e.span.end_column == 1
            for ln in range(e.span.line, e.span.end_line + 1):
                k = cells.position(ln)[1]
                if k <= len(original) and not pure_insert:
                    joined = script_lines[ln - 1] if ln - 1 < len(script_lines) else ""
                    if original[k - 1] != joined:  # an IPython line shown to the linter as `pass`
                        ok = False
            if not ok:
                break
            local.append((c1, Edit(Span(l1, e.span.column, l2, e.span.end_column), e.content)))
        if ok:
            usable.append(fx)
            for c, ed in local:
                per_cell.setdefault(c, []).append(ed)
    if not usable:
        return raw, []
    for number, edits in per_cell.items():
        cell = by_number[number]
        text = _cell_text(cell)
        new_text, done = apply_edits(text, [Fix("", (ed,)) for ed in edits])
        if len(done) != len(edits):
            return raw, []
        _set_cell_text(cell, new_text)
    out = dump_like(nb, raw)
    return out, usable


# -- one file -------------------------------------------------------------------------------------
def fix_text(text: str, fixes: Sequence[Fix], notebook: bool = False) -> Tuple[str, List[Fix], List[Fix]]:
    """Apply what can be applied of ``fixes``: (new text, applied, refused because the result did not parse)."""
    apply: Callable[[str, Sequence[Fix]], Tuple[str, List[Fix]]] = _notebook_apply if notebook else apply_edits

    def valid(t: str) -> bool:
        if not notebook:
            return parses(t)
        from trainlint.notebook import to_script

        try:
            return parses(to_script(t)[0])
        except Exception:
            return False

    new, applied = apply(text, fixes)
    if not applied or valid(new):
        return new, applied, []
    # One by one: keep each fix that leaves the file parsing.
    refused: List[Fix] = []
    kept: List[Fix] = []
    current = text
    for fx in applied:
        candidate, done = apply(current, [fx])
        if done and valid(candidate):
            current = candidate
            kept.append(fx)
        else:
            refused.append(fx)
    return current, kept, refused


# -- the whole run --------------------------------------------------------------------------------
@dataclass
class FixRun:
    report: object  # trainlint.report.Report: the findings left after the fixes
    warnings: List[str]
    original: Dict[str, str] = field(default_factory=dict)  # real path -> text before
    fixed_text: Dict[str, str] = field(default_factory=dict)  # real path -> text after (changed files only)
    display: Dict[str, str] = field(default_factory=dict)  # real path -> displayed path
    fixed: int = 0  # fixes applied
    unapplied_unsafe: int = 0  # fixes left because they are unsafe and --unsafe-fixes was not given


def _read_text(real: str) -> str:
    with open(real, "rb") as fh:
        data = fh.read()
    if real.endswith(".ipynb"):
        return data.decode("utf-8-sig")
    from trainlint.source import decode

    return decode(data, real)


def fix_run(lint: Callable[[Dict[str, str]], Tuple[object, List[str]]], unsafe: bool,
            read: Callable[[str], str] = _read_text) -> FixRun:
    """Lint (``lint(overlay)`` -> (report, warnings)), fix, lint again, until nothing changes."""
    overlay: Dict[str, str] = {}
    run = FixRun(report=None, warnings=[])
    applied_keys: Dict[str, set] = {}
    warned = set()
    report, warnings = lint(overlay)
    for _ in range(MAX_PASSES):
        todo: Dict[str, List[Finding]] = {}
        for f in report.findings:  # type: ignore[attr-defined]
            if applicable(f.fix, unsafe):
                real = report.real_paths.get(f.path)  # type: ignore[attr-defined]
                if real is not None:
                    todo.setdefault(real, []).append(f)
        progress = False
        for real, findings in todo.items():
            keys = applied_keys.setdefault(real, set())
            fresh = []
            for f in findings:
                key = (f.code, f.fix.message)
                if key in keys:  # applied once and back again: applying it twice would not converge
                    if (real, key) not in warned:
                        warned.add((real, key))
                        run.warnings.append(f"{f.path}: the fix for {f.code} ({f.fix.message}) did not remove the finding; not applied again")
                    continue
                fresh.append(f)
            if not fresh:
                continue
            if real not in overlay:
                try:
                    run.original[real] = read(real)
                except (OSError, ValueError) as exc:
                    run.warnings.append(f"{fresh[0].path}: cannot read it for fixing: {exc}")
                    continue
                current = run.original[real]
            else:
                current = overlay[real]
            new, done, refused = fix_text(current, [f.fix for f in fresh], notebook=real.endswith(".ipynb"))
            for fx in refused:
                code = next(f.code for f in fresh if f.fix is fx)
                run.warnings.append(f"{fresh[0].path}: the fix for {code} ({fx.message}) would leave a file that does not parse; not applied")
                keys.add((code, fx.message))
            if done and new != current:
                overlay[real] = new
                run.display[real] = fresh[0].path
                run.fixed += len(done)
                for fx in done:
                    keys.add((next(f.code for f in fresh if f.fix is fx), fx.message))
                progress = True
        if not progress:
            break
        report, warnings = lint(overlay)
    run.report = report
    run.warnings = list(warnings) + run.warnings
    run.fixed_text = {r: t for r, t in overlay.items() if t != run.original.get(r)}
    run.unapplied_unsafe = sum(1 for f in report.findings  # type: ignore[attr-defined]
                               if f.fix is not None and f.fix.applicability == Applicability.UNSAFE and not unsafe)
    return run


# -- writing --------------------------------------------------------------------------------------
def encode_like(text: str, original: bytes, notebook: bool = False) -> bytes:
    """``text`` encoded as ``original`` was: its encoding (PEP 263 cookie) and byte-order mark."""
    bom = original.startswith(codecs.BOM_UTF8)
    if notebook:
        encoding = "utf-8"
    else:
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(original).readline)
        except SyntaxError:
            encoding = "utf-8"
        if encoding == "utf-8-sig":
            encoding = "utf-8"
    data = text.encode(encoding)
    return (codecs.BOM_UTF8 + data) if bom and not data.startswith(codecs.BOM_UTF8) else data


def write_fixes(run: FixRun) -> List[str]:
    """Write every changed file; returns error messages (the files that could not be written)."""
    errors = []
    for real, text in run.fixed_text.items():
        try:
            with open(real, "rb") as fh:
                original = fh.read()
            write_atomic(real, encode_like(text, original, notebook=real.endswith(".ipynb")))
        except (OSError, UnicodeError) as exc:
            msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            errors.append(f"{run.display.get(real, real)}: cannot write the fixes: {msg}")
    return errors


def unified_diff(run: FixRun) -> str:
    import difflib

    out = []
    for real in sorted(run.fixed_text, key=lambda r: run.display.get(r, r)):
        name = run.display.get(real, real)
        before = run.original[real]
        after = run.fixed_text[real]
        if real.endswith(".ipynb"):
            before, after = _cells_for_diff(before), _cells_for_diff(after)
        a = before.splitlines(keepends=True)
        b = after.splitlines(keepends=True)
        old, new = (name, name) if os.path.isabs(name) else (f"a/{name}", f"b/{name}")
        for line in difflib.unified_diff(a, b, fromfile=old, tofile=new):
            out.append(line if line.endswith(("\n", "\r")) else line + "\n\\ No newline at end of file\n")
        out.append("\n")
    return "".join(out)


def _cells_for_diff(raw: str) -> str:
    """A notebook as its code cells (the diff shows code, not JSON)."""
    nb = json.loads(raw)
    parts = []
    for n, cell in enumerate(nb.get("cells", []), 1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            text = _cell_text(cell)
            parts.append(f"# cell {n}\n" + text + ("" if text.endswith("\n") else "\n"))
    return "".join(parts)


# -- # noqa ---------------------------------------------------------------------------------------
_NOQA_TAIL = re.compile(r"#\s*noqa\s*:\s*(?P<codes>[A-Za-z][A-Za-z0-9]*(?:[,\s]+[A-Za-z][A-Za-z0-9]*)*)\s*$", re.IGNORECASE)


def noqa_fix(text: str, line: int, codes: Sequence[str]) -> Optional[Fix]:
    """A fix that adds ``# noqa: CODES`` at the end of ``line`` (merged into an existing ``# noqa: ...``).

    Lines inside a multi-line string cannot take a comment: the caller checks the result parses."""
    lines = _LINE_BREAK.split(text)
    if not 1 <= line <= len(lines):
        return None
    body = lines[line - 1]
    m = _NOQA_TAIL.search(body)
    if m:
        have = [c for c in re.split(r"[,\s]+", m.group("codes")) if c]
        add = [c for c in codes if c not in have]
        if not add:
            return None
        start = m.start("codes")
        new = ", ".join(have + add)
        return Fix(f"Add `# noqa: {', '.join(add)}`", (Edit(Span(line, start + 1, line, m.end("codes") + 1), new),),
                   Applicability.SAFE)
    stripped = body.rstrip()
    col = len(stripped) + 1
    return Fix(f"Add `# noqa: {', '.join(codes)}`",
               (Edit(Span(line, col, line, len(body) + 1), f"  # noqa: {', '.join(codes)}"),), Applicability.SAFE)


def noqa_fixes(findings: Sequence[Finding], text: str, notebook_lines: Optional[Dict[int, str]] = None) -> List[Fix]:
    """One ``# noqa`` fix per line that has findings (TL001 and TL002 cannot be silenced this way)."""
    by_line: Dict[int, List[str]] = {}
    for f in findings:
        if f.code in ("TL001", "TL002"):
            continue
        codes = by_line.setdefault(f.span.line, [])
        if f.code not in codes:
            codes.append(f.code)
    out = []
    for line, codes in sorted(by_line.items()):
        fx = noqa_fix(text, line, sorted(codes))
        if fx is not None:
            out.append(fx)
    return out


def unused_suppression_fix(text: str, line: int, column: int, end_column: int, dead: Optional[Sequence[str]]) -> Optional[Fix]:
    """The safe fix of TL002: remove an unused suppression comment, or its unused codes (``dead``; None:
    the whole directive is unused). Codes of other tools in a ``# noqa`` are kept."""
    lines = _LINE_BREAK.split(text)
    if not 1 <= line <= len(lines):
        return None
    body = lines[line - 1]
    comment = body[column - 1 : end_column - 1]
    if not comment.startswith("#"):
        return None
    # the directive itself (a second comment after it, `# noqa: TL101  # why`, is the user's: keep it)
    m = re.match(r"#\s*(?:noqa\s*(?::\s*[A-Za-z][A-Za-z0-9]*(?:[,\s]+[A-Za-z][A-Za-z0-9]*)*)?|trainlint\s*:\s*ignore(?:-file)?\s*(?:\[[^\]]*\])?)", comment, re.IGNORECASE)
    if not m:
        return None
    directive = m.group(0).rstrip()
    rest = comment[len(directive):]
    codes = re.findall(r"\b[A-Za-z]+[0-9]+\b", directive.split(":", 1)[1] if ":" in directive and "noqa" in directive.lower()
                       else (directive[directive.find("[") + 1 : directive.rfind("]")] if "[" in directive else ""))
    keep = [c for c in codes if dead is not None and c.upper() not in dead]
    if keep:  # rewrite the code list
        if "[" in directive:
            new = directive[: directive.find("[") + 1] + ", ".join(keep) + "]"
        else:
            new = directive.split(":", 1)[0].rstrip() + ": " + ", ".join(keep)
        return Fix("Remove the unused codes", (Edit(Span(line, column, line, column + len(directive)), new),), Applicability.SAFE)
    if rest.strip():  # a reason comment follows: keep it
        return Fix("Remove the unused suppression", (Edit(Span(line, column, line, column + len(directive) + (len(rest) - len(rest.lstrip()))), ""),),
                   Applicability.SAFE)
    before = body[: column - 1]
    if not before.strip():  # a comment on a line of its own: delete the line
        return Fix("Remove the unused suppression", (Edit(Span(line, 1, line + 1, 1), ""),), Applicability.SAFE)
    start = len(before.rstrip()) + 1
    return Fix("Remove the unused suppression", (Edit(Span(line, start, line, end_column), ""),), Applicability.SAFE)
