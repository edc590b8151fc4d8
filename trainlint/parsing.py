"""Parsing one file's text into a libcst tree: the current grammar first, then the grammar of older Pythons.

Training code outlives its Python. ``x.cuda(async=True)`` (PyTorch 0.3), ``def forward(self, x, async=False)``
or ``loader.async`` only parse under the grammar of Python 3.6, where ``async`` and ``await`` were still
identifiers; such a file is not a syntax error to its authors, and the bugs in it are still bugs.

libcst's default (native) parser reads only the current grammar. libcst still ships its pure-Python
parser, which is configured by ``PartialParserConfig(python_version="3.6")``; the public entry points no
longer route to it, so :func:`parse_legacy` drives it directly. It is slower than the native parser, so it
runs only after the native parse failed and only when the text uses ``async``/``await`` at all; a file it
cannot read either is a syntax error (TL001) as before. The tree it builds is the same libcst tree (the same
node classes, ``module.code`` round-trips the text), so every layer and rule reads it unchanged.

Python 2 is older than any grammar libcst has (its oldest is 3.0, and ``print x`` or ``except E, e:`` is
a syntax error under all of them). A file that fails every grammar and has Python 2 statements is read
through :func:`rewrite_python2`: ``print x, y`` -> ``print(x, y)`` (``>>f`` -> ``file=f``, a trailing comma
-> ``end=" "``), ``exec code in ns`` -> ``exec(code, ns)``, ``except E, e:`` -> ``except E as e:``,
``raise E, msg`` -> ``raise E(msg)``, each within its own lines, so every line keeps its number and the
findings point at the user's lines. The tree is of the rewritten text (``module.code`` differs from the
file): fixes are never applied to such a file (they must leave a file that Python 3 compiles, which it
never is). Anything else of Python 2 (backticks, ``0777``, ``ur""``) still makes the file TL001.
"""

from __future__ import annotations

import io
import re
import tokenize
from typing import Dict, List, Optional, Tuple

import libcst as cst

#: The newest grammar in which ``async`` and ``await`` are identifiers.
LEGACY_VERSION = "3.6"
_OLD_KEYWORDS = re.compile(r"\b(async|await)\b")
#: The version :func:`parse` reports for a file read through :func:`rewrite_python2`.
PYTHON2 = "2"
#: A Python 2 statement at the start of a line (a cheap test before tokenizing).
_PY2_STATEMENT = re.compile(r"^[ \t]*(?:print|exec)\b(?![ \t]*[(=.\[,;)]|[ \t]*$)|^[ \t]*(?:print)[ \t]*$|^[ \t]*(?:except|raise)\b[^\n#]*,", re.M)
_LINES = re.compile(r"[^\n]*\n|[^\n]+$")
_COMPOUND = frozenset({"if", "elif", "else", "for", "while", "try", "except", "finally", "with", "def", "class"})


#: The deepest nesting (as measured by :func:`nesting_depth`) trainlint parses. libcst's tree code and the
#: analysis recurse once or more per level: under Python's default recursion limit a 137-deep list or a
#: 318-link attribute chain raises RecursionError, and libcst's native parser overflows the C stack (the
#: interpreter dies) on ~1,300 nested parentheses or a 20,000-link chain. The interpreter itself refuses
#: more than 200 nested brackets. Hand-written code stays far below: a file deeper than this is generated.
MAX_NESTING = 100


#: The longest number literal: Python 3.11 refuses a decimal integer of more than 4,300 digits (and
#: converting one costs quadratic time).
MAX_NUMBER_LENGTH = 4300


class ParseRefused(Exception):
    """A file trainlint will not hand to the parser; the message says why, ``line`` where."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class TooDeep(ParseRefused):
    """A file nested too deeply to parse safely; ``depth`` is the estimate, ``line`` where it was reached."""

    def __init__(self, depth: int, line: int, limit: int = MAX_NESTING) -> None:
        super().__init__(f"more than {limit} levels of nested expressions or blocks at line {line}", line)
        self.depth = depth


class LiteralTooLong(ParseRefused):
    """A number literal too long to convert."""


class TooManyTokens(ParseRefused):
    """A file with more tokens than trainlint parses: libcst's tree costs ~2.5 nodes a token, and positions
    for a finding are computed over the whole tree (a 50,000-item list literal: 100k tokens, ~15-30 s)."""


#: Tokens per byte of ``max-file-size``: the default 1 MiB allows ~105k tokens (a 10,000-line file of
#: ordinary code has ~90k). Raising max-file-size raises this too.
TOKENS_PER_BYTE = 0.1


#: Tokens that nest the expression they continue one level deeper in the tree (an operator chain
#: ``a + b + c`` is a left-leaning tree, ``a.b.c`` an attribute chain...).
_CHAIN_OPS = frozenset(
    ". + - * / // % ** @ << >> & | ^ ~ < > <= >= == != -> :=".split()
)
_CHAIN_WORDS = frozenset(("and", "or", "not", "if", "lambda", "in", "is", "await", "for", "async", "yield"))
#: Tokens that end one element of a bracket (a list item, a call argument, a dict value...).
_SEPARATORS = frozenset((",", ":", "=", ";"))
_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")


def nesting_depth(text: str, limit: int = MAX_NESTING, max_tokens: Optional[int] = None) -> Optional[Tuple[int, int]]:
    """A cheap upper estimate of the depth of ``text``'s syntax tree, from Python's tokenizer (no tree is
    built). Returns (depth, line) where the estimate first passes ``limit``, else None. A file the
    tokenizer cannot read returns None too (the parser reports it).

    The estimate adds, at each token: the block depth (indentation, plus one per ``elif`` of a chain:
    libcst nests each ``elif`` in the previous one's ``orelse``), the bracket depth, and for each open
    bracket the chain of operators, dots and keywords since its last separator (a 400-link ``a.b.b...``
    is 400 levels deep; a 400-item list is one level).
    """
    indent = 0
    elifs = [0]  # elif-chain length per block level
    chains = [0]  # operator chain per bracket level
    lambdas = [0]  # lambdas waiting for their ':' per bracket level
    nested = 0  # sum(elifs) + sum(chains) + bracket depth, kept incrementally
    first = True  # the next token starts a logical line
    prev_string = False
    NAME, OP, STRING, NUMBER, NEWLINE, INDENT, DEDENT = (
        tokenize.NAME, tokenize.OP, tokenize.STRING, tokenize.NUMBER, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    count = 0
    try:
        # libcst (like the interpreter) ends a line at "\r\n", "\r" or "\n"; a StringIO's readline only at
        # "\n", and the tokenizer then fails on a file with old Mac line endings ("\r"), mixed ones
        # included: the estimate gave up (None) and a too-deep file reached the analysis. One "\n" per
        # line break keeps the line numbers.
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            kind, string = tok.type, tok.string
            count += 1
            if max_tokens is not None and count > max_tokens:
                raise TooManyTokens(f"more than {max_tokens:,} tokens (line {tok.start[0]})", tok.start[0])
            if kind == OP:
                if string in _OPEN:
                    chains.append(0)
                    lambdas.append(0)
                    nested += 1
                elif string in _CLOSE:
                    if len(chains) > 1:
                        nested -= chains.pop() + 1
                        lambdas.pop()
                        chains[-1] += 1  # f(x)(y), a[0][1]: each trailer nests the expression before it
                        nested += 1
                elif string == ":" and lambdas[-1]:
                    lambdas[-1] -= 1  # a lambda's colon continues the chain
                elif string in _SEPARATORS:
                    nested -= chains[-1]
                    chains[-1] = 0
                elif string in _CHAIN_OPS:
                    chains[-1] += 1
                    nested += 1
                first = False
            elif kind == NAME:
                if first:
                    if string == "elif":
                        elifs[-1] += 1
                        nested += 1
                    elif string != "else" and elifs[-1]:
                        nested -= elifs[-1]
                        elifs[-1] = 0
                    first = False
                elif string in _CHAIN_WORDS:
                    chains[-1] += 1
                    nested += 1
                    if string == "lambda":
                        lambdas[-1] += 1
            elif kind == STRING:
                if prev_string:  # "a" "b": implicit concatenation nests
                    chains[-1] += 1
                    nested += 1
                if "{" in string and "f" in string[:3].lower():  # the expressions of an f-string
                    inner = _fstring_depth(string)
                    if indent + nested + inner > limit:
                        return indent + nested + inner, tok.start[0]
                first = False
            elif kind == NUMBER:
                if len(string) > MAX_NUMBER_LENGTH:
                    raise LiteralTooLong(f"a number literal of {len(string):,} characters at line {tok.start[0]}", tok.start[0])
                first = False
            elif kind == NEWLINE:
                nested -= sum(chains) + len(chains) - 1
                chains, lambdas = [0], [0]
                first = True
            elif kind == INDENT:
                indent += 1
                elifs.append(0)
            elif kind == DEDENT:
                indent -= 1
                if len(elifs) > 1:
                    nested -= elifs.pop()
                if elifs[-1]:
                    first = True  # (the statement after the block may end the chain; handled at its NAME)
            elif kind not in (tokenize.COMMENT, tokenize.NL):
                first = False
            prev_string = kind == STRING
            if indent + nested > limit:
                return indent + nested, tok.start[0]
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


_FIELD_CHAIN = frozenset(".+-*/%@<>&|^~([{!=:")


def _fstring_depth(string: str) -> int:
    """An upper estimate of the depth of the expressions inside one f-string token (the tokenizer of
    Python < 3.12 reads an f-string as one string): per replacement field, its brackets and operators."""
    worst = depth = 0
    i, n = 0, len(string)
    while i < n:
        c = string[i]
        if c == "{":
            if depth == 0 and string.startswith("{{", i):
                i += 2
                continue
            depth += 1
        elif c == "}" and depth:
            depth -= 1
        elif depth and c in _FIELD_CHAIN:
            depth += 1  # (an over-estimate: every operator counts as a level)
        worst = max(worst, depth)
        i += 1
    return worst


# -- a quick upper bound, so that ordinary files skip the tokenizer ------------------------------------
#
# Python's tokenize module costs about a sixth of libcst's own parse. Ordinary files are nowhere near
# the limits, and a bound computed with a few regular-expression passes says so: when the bound stays
# within the limits, the tokenizer's estimate cannot pass them either, and it is not run. The bound
# follows nesting_depth's rules on the same operator tokens (strings and comments taken out first),
# and over-counts where it is unsure: every ``elif`` of the file, every distinct indentation, every
# string or comment after a string, the deepest f-string field added to the whole file. Anything unusual
# (a quote left over, a bracket closed that was never opened, ``\r`` line ends, a form feed) gives no
# bound.
#
# A string's line breaks are not line breaks of the code: ``x = """\n""" + """\n""" + ...`` is one
# logical line, as deep as its operators are many (the tokenizer counts them all). A string or comment
# becomes one ``\x01`` of the bare text, its line breaks included.

_TRIPLE_1 = r"'''(?:[^'\\]|\\[\s\S]|'(?!''))*'''"
_TRIPLE_2 = r'"""(?:[^"\\]|\\[\s\S]|"(?!""))*"""'
_SINGLE_1 = r"'(?:[^'\\\n]|\\[\s\S])*'"
_SINGLE_2 = r'"(?:[^"\\\n]|\\[\s\S])*"'
_ANY_STRING = "(?:" + "|".join((_TRIPLE_1, _TRIPLE_2, _SINGLE_1, _SINGLE_2)) + ")"
#: A string (captured; its prefix stays in the code before it) or a comment. (Matching a prefix too would
#: try every letter of the file: three times the cost.)
_STRING_OR_COMMENT = re.compile("(" + _ANY_STRING + r")|#[^\n]*")
_OPS = sorted(_CHAIN_OPS | _SEPARATORS | _OPEN | _CLOSE | {"**=", "//=", "<<=", ">>=", "%=", "&=", "*=", "+=", "-=",
                                                          "/=", "@=", "^=", "|="}, key=len, reverse=True)
# (no "...": every dot chains, as after a number, where the tokenizer reads ``1...`` as ``1.`` ``.`` ``.``)
_WORDS = "(?:and|or|not|if|lambda|in|is|await|for|async|yield)"
#: A chaining keyword right after a number (``1if x else 2``, ``0x1for``: the tokenizer ends the number
#: where a name begins), as one token: the number and the word (or a name that ends like one).
_GLUED = r"(?<!\w)\d\w*?" + _WORDS + r"\b"
_BOUND_TOKENS = re.compile(
    r"\\\n|\n|\x01|\b" + _WORDS + r"\b|" + _GLUED + "|" + "|".join(re.escape(o) for o in _OPS)
)
_LONG_WORD = re.compile(r"(?<![\w.])[\w.]{%d,}" % (MAX_NUMBER_LENGTH + 1))  # (from a run's start: linear)
_ANY_TOKEN = re.compile(r"[^\W\d]\w*|\d+|[^\w\s]")  # (no fewer than the tokenizer's: ``1if`` is two)
_LEADING = re.compile(r"^[ \t]+(?=\S)", re.M)


def _bare(text: str) -> Optional[Tuple[str, int]]:
    """``text`` with each string and comment replaced by ``\x01``, and the deepest f-string field
    (:func:`_fstring_depth`); None when a quote is left over."""
    parts = _STRING_OR_COMMENT.split(text)  # code, a string (None for a comment), code, ...
    bare = "\x01".join(parts[0::2])
    if "'" in bare or '"' in bare:
        return None
    f_deepest = 0
    for k in range(1, len(parts), 2):
        lit = parts[k]
        # nesting_depth's own test of an f-string, on the token with its prefix (the end of the code
        # before it: a letter more than the prefix only adds a candidate)
        if lit and "{" in lit and "f" in (parts[k - 1][-2:] + lit[:3]).lower():
            f_deepest = max(f_deepest, _fstring_depth(lit))
    return bare, f_deepest


_BRACKET_OR_NEWLINE = re.compile(r"[()\[\]{}]|(?<!\\)\n")
_NOT_BRACKET = re.compile(r"[^()\[\]{}\n]+")
_ONE_KIND = str.maketrans("[{]}", "(())")
_MULTILINE_PAIR = re.compile(r"\([\nc]*\)")


def _logical_lines(bare: str) -> Optional[List[str]]:
    """The logical lines of ``bare`` (a line break inside brackets or after ``\\`` continues one; it is
    a space in the line returned), by whole-string operations: the brackets alone, empty pairs taken out
    until none is left, then each pair around line breaks only turned into as many continuations. None
    when the brackets do not balance (:func:`_segments_bound` reads such a text bracket by bracket)."""
    bare = bare.replace("\\\n", "\\ ")
    shape = _NOT_BRACKET.sub("", bare).translate(_ONE_KIND)
    while "()" in shape:
        shape = shape.replace("()", "")
    while "(" in shape or ")" in shape:
        joined = _MULTILINE_PAIR.sub(lambda m: "c" * (len(m.group()) - 2), shape)
        if joined == shape:
            return None  # unbalanced
        shape = joined
    # shape: one character per line break of bare, "c" where it continues a logical line
    if "c" not in shape:
        return bare.split("\n")
    pieces: List[str] = [""] * (2 * len(shape) + 1)
    pieces[0::2] = bare.split("\n")
    pieces[1::2] = shape.replace("c", " ")
    return "".join(pieces).split("\n")


def _lines_bound(bare: str, room: int) -> Optional[int]:
    """:func:`_token_worst` of the whole text, or more, by logical lines: the token loop starts each logical
    line from 0 and adds at most 1 per token, so no logical line goes deeper than its length in
    characters; only the lines longer than ``room`` run the token loop. None when a bracket is closed that
    was never opened, or a word is long enough to be a number literal too long to convert."""
    lines = _logical_lines(bare)
    if lines is None:
        if _LONG_WORD.search(bare):
            return None
        return _segments_bound(bare, room)
    lengths = list(map(len, lines))
    worst = max(lengths)
    if worst <= room and worst <= MAX_NUMBER_LENGTH:
        return worst
    worst = 0
    for line, n in zip(lines, lengths):
        if n > MAX_NUMBER_LENGTH and _LONG_WORD.search(line):
            return None  # (a word that long is only ever in a line that long)
        if n > room:
            n = _increments(line)
            if n > room:
                n = _token_worst(line, 0, len(line))
                if n is None:
                    return None
        if n > worst:
            worst = n
    return worst


_CHAIN_WORD = re.compile(r"\b" + _WORDS + r"\b|" + _GLUED)


def _increments(line: str) -> int:
    """How many tokens of ``line`` may add a level in :func:`_token_worst` (an opening bracket, an operator
    that chains, a chaining keyword, a string), or more: by counting characters (an operator of two
    characters may count twice; ``+=``, ``...`` add nothing), not tokens. A closing bracket, a separator
    or another token never adds one."""
    count = line.count
    return (count("(") + count("[") + count("{") + count(".") + count("+") + count("-") + count("*") + count("/")
            + count("%") + count("@") + count("<") + count(">") + count("&") + count("|") + count("^") + count("~")
            + count("==") + count("!=") + count(":=") + count("\x01") + len(_CHAIN_WORD.findall(line)))


def _segments_bound(bare: str, room: int) -> Optional[int]:
    """As :func:`_lines_bound`, bracket by bracket (for a text whose brackets do not balance): None when
    a bracket is closed that was never opened."""
    worst = 0
    depth = 0
    start = 0
    for m in _BRACKET_OR_NEWLINE.finditer(bare):
        c = m.group()
        if c == "\n":
            if depth == 0:
                end = m.start()
                n = end - start
                if n > room:
                    n = _token_worst(bare, start, end)
                    if n is None:
                        return None
                if n > worst:
                    worst = n
                start = end + 1
        elif c in "([{":
            depth += 1
        else:
            depth -= 1
            if depth < 0:
                return None
    n = len(bare) - start
    if n > room:
        n = _token_worst(bare, start, len(bare))
        if n is None:
            return None
    return max(worst, n)


def _token_worst(bare: str, start: int, end: int) -> Optional[int]:
    """The deepest nesting the tokens of ``bare[start:end]`` reach, counted as nesting_depth counts them
    (a line break outside brackets starts again from 0); None when a bracket is closed never opened."""
    worst = 0
    chains, lambdas = [0], [0]
    nested = 0
    prev_string = False
    for m in _BOUND_TOKENS.finditer(bare, start, end):
        tok = m.group()
        if tok == "\n":
            if len(chains) == 1:  # (inside brackets a line break continues the logical line)
                nested = 0
                chains, lambdas = [0], [0]
            prev_string = False
            continue
        if tok == "\\\n":
            continue  # (a continued line has no token: a string after it still follows the one before)
        if tok == "\x01":
            if prev_string:
                chains[-1] += 1
                nested += 1
            prev_string = True
        else:
            prev_string = False
            if tok in _OPEN:
                chains.append(0)
                lambdas.append(0)
                nested += 1
            elif tok in _CLOSE:
                if len(chains) == 1:
                    return None
                nested -= chains.pop() + 1
                lambdas.pop()
                chains[-1] += 1
                nested += 1
            elif tok == ":" and lambdas[-1]:
                lambdas[-1] -= 1
            elif tok in _SEPARATORS:
                nested -= chains[-1]
                chains[-1] = 0
            elif tok in _CHAIN_OPS or tok in _CHAIN_WORDS or tok[0].isdigit():  # (a word after a number)
                chains[-1] += 1
                nested += 1
                if tok.endswith("lambda"):
                    lambdas[-1] += 1
            # (other operators: no nesting)
        if nested > worst:
            worst = nested
    return worst


def nesting_bound(text: str, max_tokens: Optional[int] = None, limit: Optional[int] = None) -> Optional[int]:
    """An upper bound of every estimate :func:`nesting_depth` makes for ``text`` (None: no bound, when the
    text is unusual, has a word long enough to be a refused number literal, or may pass ``max_tokens``).
    With a ``limit``, the token loop runs only over the logical lines longer than the room the limit
    leaves (:func:`_lines_bound`), and the bound is returned when it is within the limit."""
    if "\x01" in text or "\r" in text or "\f" in text:
        return None
    got = _bare(text)
    if got is None:
        return None
    bare, f_deepest = got
    if max_tokens is not None:
        lines = text.count("\n") + 1  # (a comment is one character of bare: its token is counted there)
        # (a token is at least one character: the tokens are only counted in a file long enough to pass)
        if len(bare) + 3 * lines + 2 > max_tokens and len(_ANY_TOKEN.findall(bare)) + 3 * lines + 2 > max_tokens:
            return None
    base = len(set(_LEADING.findall(text))) + bare.count("elif") + f_deepest  # (each elif, or more)
    if limit is not None:
        coarse = _lines_bound(bare, limit - base)
        return None if coarse is None else base + coarse
    if _LONG_WORD.search(bare):
        return None
    worst = _token_worst(bare, 0, len(bare))
    if worst is None:
        return None  # closed before it was opened: not what the tokenizer sees
    return base + worst


#: Texts :func:`check_nesting` passed with ``keep`` (and the limits it checked), until :func:`parse` reads
#: them: the engine reads a file that may stand in unparsed with CPython's ``ast`` first, after this check,
#: and parses it with libcst later, when a program needs it; the check runs once per file. Cleared at the
#: end of every run (``engine.clear_caches``).
_PASSED: Dict[str, Tuple[int, Optional[int]]] = {}


def check_nesting(text: str, limit: int = MAX_NESTING, max_tokens: Optional[int] = None, keep: bool = False) -> None:
    """Raise :class:`TooDeep` when ``text`` is nested past ``limit`` (see :func:`nesting_depth`),
    :class:`LiteralTooLong` for a number literal too long to convert, :class:`TooManyTokens` past
    ``max_tokens``. With ``keep``, a text that passes is not checked again by :func:`parse`."""
    bound = nesting_bound(text, max_tokens, limit)
    if bound is None or bound > limit:  # (else the tokenizer's estimate cannot pass the limit: see nesting_bound)
        found = nesting_depth(text, limit, max_tokens)
        if found is not None:
            raise TooDeep(found[0], found[1], limit)
    if keep:
        _PASSED[text] = (limit, max_tokens)


def clear_caches() -> None:
    _PASSED.clear()


def parse_legacy(text: str, version: str = LEGACY_VERSION) -> Optional[cst.Module]:
    """``text`` parsed under the grammar of Python ``version`` by libcst's pure-Python parser, or None when
    it does not parse there either (or this libcst has no such parser)."""
    try:
        from libcst._parser.detect_config import detect_config
        from libcst._parser.grammar import get_grammar, validate_grammar
        from libcst._parser.python_parser import PythonCSTParser
    except ImportError:  # pragma: no cover - a libcst without the pure-Python parser
        return None
    try:
        partial = cst.PartialParserConfig(python_version=version)
        detected = detect_config(text, partial=partial, detect_trailing_newline=True, detect_default_newline=True)
        validate_grammar()
        grammar = get_grammar(partial.parsed_python_version, detected.config.future_imports)
        module = PythonCSTParser(tokens=detected.tokens, config=detected.config, pgen_grammar=grammar).parse()
    except (cst.ParserSyntaxError, RecursionError, ValueError, TypeError, AttributeError, IndexError, KeyError):
        return None
    return module if isinstance(module, cst.Module) else None


def max_tokens_for(max_file_size: Optional[int]) -> Optional[int]:
    return None if max_file_size is None else max(1000, int(max_file_size * TOKENS_PER_BYTE))


def parse(text: str, max_file_size: Optional[int] = None) -> Tuple[cst.Module, Optional[str]]:
    """The tree of ``text`` and the old grammar's version when only that one reads it (else None).
    Raises the native parser's ``ParserSyntaxError`` when no grammar reads it, and :class:`TooDeep`
    (before any parser sees the text) when it is nested too deeply to parse safely."""
    from trainlint.source import DEFAULT_MAX_FILE_SIZE

    max_tokens = max_tokens_for(max_file_size or DEFAULT_MAX_FILE_SIZE)
    if not _PASSED or _PASSED.pop(text, None) != (MAX_NESTING, max_tokens):
        check_nesting(text, MAX_NESTING, max_tokens)
    try:
        return cst.parse_module(text), None
    except cst.ParserSyntaxError:
        if _OLD_KEYWORDS.search(text):
            module = parse_legacy(text)
            if module is not None:
                return module, LEGACY_VERSION
        if _PY2_STATEMENT.search(text):
            try:
                rewritten = rewrite_python2(text)
            except Exception:  # pragma: no cover - defensive: an unreadable file stays a syntax error
                rewritten = None
            if rewritten is not None:
                try:
                    return cst.parse_module(rewritten), PYTHON2
                except cst.ParserSyntaxError:
                    pass
        raise


# -- Python 2 -------------------------------------------------------------------------------------


def rewrite_python2(text: str) -> Optional[str]:
    """``text`` with its Python 2 statements written the Python 3 way, every line where it was (see the
    module doc); None when nothing was rewritten or the text does not tokenize."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    edits: list = []  # ((row, col), (row, col), replacement)
    stmt: list = []  # (token, bracket depth) of the simple statement being read
    depth = 0
    for t in tokens:
        if t.type in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING):
            continue
        if t.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            _py2_statement(stmt, edits, text)
            stmt, depth = [], 0
            continue
        if t.type == tokenize.OP and t.string in ")]}":
            depth = max(0, depth - 1)
        if depth == 0 and t.type == tokenize.OP and t.string == ";":
            _py2_statement(stmt, edits, text)
            stmt = []
            continue
        if depth == 0 and t.type == tokenize.OP and t.string == ":" and stmt and stmt[0][0].string in _COMPOUND:
            if stmt[0][0].string == "except":
                _py2_except(stmt, edits)
            stmt = []  # `if x: print y`: a statement starts after the header
            continue
        stmt.append((t, depth))
        if t.type == tokenize.OP and t.string in "([{":
            depth += 1
    if not edits:
        return None
    lines = _LINES.findall(text)  # the rows of tokenize: only "\n" ends a line (not "\f" or "\x1c")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(pos) -> int:
        return starts[pos[0] - 1] + pos[1]

    out = text
    for a, b, new in sorted(edits, key=lambda e: (offset(e[0]), offset(e[1])), reverse=True):
        out = out[: offset(a)] + new + out[offset(b):]
    return out if out.count("\n") == text.count("\n") else None


def _py2_statement(stmt: list, edits: list, text: str) -> None:
    """Rewrite one simple statement: ``print ...``, ``exec ...``, ``raise E, msg``."""
    if not stmt:
        return
    head = stmt[0][0]
    if head.type != tokenize.NAME:
        return
    if head.string in ("print", "exec"):
        if len(stmt) == 1:
            if head.string == "print":
                edits.append((head.end, head.end, "()"))
            return
        nxt = stmt[1][0]
        if nxt.type == tokenize.OP and nxt.string in ("(", "=", ".", "[", ",", ")", ";", "+=", "-=", "*=", "/="):
            return  # already a call (or a tuple in parentheses), or not the statement
        last = stmt[-1][0]
        extra = ""
        body = stmt[1:]
        if head.string == "print" and nxt.type == tokenize.OP and nxt.string == ">>":
            comma = next((k for k, (t, d) in enumerate(body) if d == 0 and t.string == ","), None)
            target = body[1:comma] if comma is not None else body[1:]
            if not target or target[0][0].start[0] != target[-1][0].end[0]:
                return
            row = target[0][0].start[0]
            line = _LINES.findall(text)[row - 1]
            extra = f"file={line[target[0][0].start[1]:target[-1][0].end[1]]}"
            cut_end = body[comma][0].end if comma is not None else target[-1][0].end
            edits.append((nxt.start, cut_end, ""))
            body = body[comma + 1:] if comma is not None else []
        if head.string == "print" and body and last.type == tokenize.OP and last.string == "," and stmt[-1][1] == 0:
            extra = ", ".join(x for x in ('end=" "', extra) if x)
            edits.append((last.start, last.end, ""))
            body = body[:-1]
        if head.string == "exec":
            for t, d in body:
                if d == 0 and t.type == tokenize.NAME and t.string == "in":
                    edits.append((t.start, t.end, ","))
                    break
        if extra and body:
            extra = ", " + extra
        edits.append((head.end, head.end, "("))
        edits.append((last.end, last.end, extra + ")"))
        return
    if head.string == "raise":
        commas = [t for t, d in stmt if d == 0 and t.type == tokenize.OP and t.string == ","]
        if len(commas) == 1:
            edits.append((commas[0].start, commas[0].end, "("))
            edits.append((stmt[-1][0].end, stmt[-1][0].end, ")"))


def _py2_except(header: list, edits: list) -> None:
    """``except E, e:`` (the header's tokens, before the colon) -> ``except E as e:``."""
    commas = [k for k, (t, d) in enumerate(header) if d == 0 and t.type == tokenize.OP and t.string == ","]
    if len(commas) == 1 and commas[0] == len(header) - 2 and header[-1][0].type == tokenize.NAME:
        t = header[commas[0]][0]
        edits.append((t.start, t.end, " as"))
