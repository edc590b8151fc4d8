"""Suppression comments: ``# noqa``, ``# trainlint: ignore[...]`` and ``# trainlint: skip-file``.

Forms understood:

- ``# noqa`` silences every trainlint finding on its line; ``# noqa: TL202, TL101`` only those codes
  (flake8's syntax; codes of other tools in the same comment are left to those tools).
- ``# trainlint: ignore[TL202]`` (or ``ignore[TL202, TL101]``) at the end of a line silences those codes on
  that line; on a line of its own it silences them on the next line (Fixit's style, for long lines).
  A bare ``# trainlint: ignore`` silences every code there.
- ``# trainlint: skip-file`` anywhere in the file skips the whole file;
  ``# trainlint: ignore-file[TL301]`` silences those codes in the whole file.

Malformed directives (a trainlint directive that does not parse, a ``TL`` code that does not exist) are
collected as problems; unused ones are found after the rules ran.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from trainlint.findings import Span

# flake8's pattern: "noqa" optionally followed by ":" and a code list.
_NOQA_RE = re.compile(
    r"#\s*noqa(?::[\s]?(?P<codes>[A-Z][A-Z0-9]*(?:[,\s]+[A-Z][A-Z0-9]*)*))?(?P<rest>.*)",
    re.IGNORECASE,
)
_DIRECTIVE_RE = re.compile(r"#\s*trainlint\s*:\s*(?P<body>.*)$", re.IGNORECASE)
_IGNORE_RE = re.compile(r"^(?P<kind>ignore-file|ignore)\s*(?:\[(?P<codes>[^\]]*)\])?\s*(?P<rest>.*)$")
_CODE_SPLIT_RE = re.compile(r"[,\s]+")
_TL_CODE_RE = re.compile(r"^TL\d{3}$")


@dataclass
class Directive:
    kind: str  # "noqa" | "ignore" | "ignore-file"
    line: int  # the line of the comment
    column: int  # 1-based column of the '#'
    end_column: int
    codes: Optional[Tuple[str, ...]]  # None = every code
    applies_to: Tuple[int, ...]  # lines it silences (empty for file-level)
    text: str
    used: Set[str] = field(default_factory=set)

    @property
    def span(self) -> Span:
        return Span(self.line, self.column, self.line, self.end_column)

    def matches(self, code: str) -> bool:
        return self.codes is None or code in self.codes


@dataclass
class Problem:
    span: Span
    message: str


@dataclass
class Suppressions:
    skip_file: bool = False
    directives: List[Directive] = field(default_factory=list)
    problems: List[Problem] = field(default_factory=list)
    _by_line: Optional[Dict[int, List[Directive]]] = None

    def _index(self) -> Dict[int, List[Directive]]:
        if self._by_line is None:
            self._by_line = {}
            for d in self.directives:
                for ln in d.applies_to:
                    self._by_line.setdefault(ln, []).append(d)
        return self._by_line

    def suppresses(self, code: str, line: int, end_line: Optional[int] = None) -> bool:
        """True (and the directive is marked used) when a directive silences ``code`` at ``line``.

        A directive on the first or the last line of a multi-line finding counts.
        """
        index = self._index()
        candidates = list(index.get(line, ()))
        if end_line is not None and end_line != line:
            candidates += index.get(end_line, ())
        candidates += [d for d in self.directives if d.kind == "ignore-file"]
        hit = False
        for d in candidates:
            if d.matches(code):
                d.used.add(code)
                hit = True
        return hit

    def unused(self, enabled: Iterable[str]) -> List[Tuple[Directive, str]]:
        """Directives that silenced nothing, with a description; codes not enabled in this run are
        not reported (a rule turned off makes its suppressions look unused)."""
        enabled = set(enabled)
        out = []
        for d in self.directives:
            if d.codes is None:
                if not d.used:
                    out.append((d, "silences nothing"))
                continue
            dead = [c for c in d.codes if c not in d.used and c in enabled]
            if dead:
                out.append((d, "unused code" + ("s " if len(dead) > 1 else " ") + ", ".join(dead)))
        return out


def _comments(text: str) -> Iterable[Tuple[int, int, str, bool]]:
    """(line, 0-based col, comment text, own_line) for every comment token."""
    yielded: Set[int] = set()
    last_line = 1
    try:
        toks = tokenize.generate_tokens(io.StringIO(text).readline)
        prev_line = 0
        code_on_line = False
        for tok in toks:
            last_line = tok.end[0]
            if tok.start[0] != prev_line:
                prev_line = tok.start[0]
                code_on_line = False
            if tok.type == tokenize.COMMENT:
                yielded.add(tok.start[0])
                yield tok.start[0], tok.start[1], tok.string, not code_on_line
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                code_on_line = True
                if tok.end[0] != tok.start[0]:  # a multi-line string ends on another line
                    prev_line = tok.end[0]
                    code_on_line = True
    except (tokenize.TokenError, SyntaxError, IndentationError):
        # The tokenizer gave up (it fails lazily, after yielding the comments before the error):
        # scan the rest of the file line by line, without repeating what it already found.
        for i, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
            if i < last_line or i in yielded:
                continue
            pos = line.find("#")
            if pos >= 0:
                yield i, pos, line[pos:], not line[:pos].strip()


def parse(text: str, known_codes: Iterable[str]) -> Suppressions:
    """Find the suppression comments of a file."""
    result = Suppressions()
    lowered = text.lower()
    if "noqa" not in lowered and "trainlint" not in lowered:
        return result
    known = set(known_codes)
    for line, col, comment, own_line in _comments(text):
        low = comment.lower()
        start_col = col + 1
        end_col = col + len(comment) + 1
        if "trainlint" in low:
            m = _DIRECTIVE_RE.search(comment)
            if m:
                _parse_directive(result, m.group("body").strip(), line, start_col, end_col, own_line, known)
                continue
        if "noqa" in low:
            m = _NOQA_RE.search(comment)
            if not m:
                continue
            codes_text = m.group("codes")
            if codes_text is None:
                rest = m.group("rest").strip()
                if rest.startswith(":") or re.match(r"^[A-Z]+\d+", rest):
                    # "# noqa TL202" or "# noqa:" with nothing usable: flake8 treats it as a bare noqa.
                    result.problems.append(
                        Problem(
                            Span(line, start_col, line, end_col),
                            f"malformed noqa directive {comment.strip()!r} (write '# noqa: CODE'); "
                            "it silences every code on the line",
                        )
                    )
                result.directives.append(Directive("noqa", line, start_col, end_col, None, (line,), comment))
                continue
            codes = [c.upper() for c in _CODE_SPLIT_RE.split(codes_text.strip()) if c]
            ours = tuple(c for c in codes if c.startswith("TL"))
            for c in ours:
                if c not in known:
                    result.problems.append(
                        Problem(Span(line, start_col, line, end_col), f"unknown rule code {c!r} in noqa directive")
                    )
            if ours:
                result.directives.append(Directive("noqa", line, start_col, end_col, ours, (line,), comment))
    return result


def _parse_directive(
    result: Suppressions, body: str, line: int, col: int, end_col: int, own_line: bool, known: Set[str]
) -> None:
    span = Span(line, col, line, end_col)
    # A second comment after the directive (`# trainlint: ignore[TL202]  # why`) is not part of it.
    body = body.split("#", 1)[0].strip()
    if body.lower() in ("skip-file", "skip_file"):
        result.skip_file = True
        return
    m = _IGNORE_RE.match(body)
    if not m or m.group("rest"):
        result.problems.append(
            Problem(
                span,
                f"malformed trainlint directive '# trainlint: {body}' "
                "(expected 'ignore[TL101, ...]', 'ignore-file[TL101, ...]' or 'skip-file')",
            )
        )
        return
    kind = m.group("kind")
    codes_text = m.group("codes")
    codes: Optional[Tuple[str, ...]] = None
    if codes_text is not None:
        raw = [c for c in _CODE_SPLIT_RE.split(codes_text.strip()) if c]
        if not raw:
            result.problems.append(Problem(span, f"empty code list in '# trainlint: {body}'"))
            return
        good = []
        for c in raw:
            cu = c.upper()
            if not _TL_CODE_RE.match(cu):
                result.problems.append(Problem(span, f"malformed rule code {c!r} in '# trainlint: {body}'"))
            elif cu not in known:
                result.problems.append(Problem(span, f"unknown rule code {cu!r} in '# trainlint: {body}'"))
            else:
                good.append(cu)
        if not good:
            return
        codes = tuple(good)
    elif kind == "ignore-file":
        result.problems.append(Problem(span, "'# trainlint: ignore-file' needs codes; use 'skip-file' to skip the file"))
        return
    if kind == "ignore-file":
        result.directives.append(Directive("ignore-file", line, col, end_col, codes, (), body))
    else:
        applies = (line + 1,) if own_line else (line,)
        result.directives.append(Directive("ignore", line, col, end_col, codes, applies, body))
