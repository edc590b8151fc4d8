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
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

import libcst as cst

#: The newest grammar in which ``async`` and ``await`` are identifiers.
LEGACY_VERSION = "3.6"
_OLD_KEYWORDS = re.compile(r"\b(async|await)\b")


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


def parse(text: str) -> Tuple[cst.Module, Optional[str]]:
    """The tree of ``text`` and the old grammar's version when only that one reads it (else None).
    Raises the native parser's ``ParserSyntaxError`` when no grammar reads it."""
    try:
        return cst.parse_module(text), None
    except cst.ParserSyntaxError:
        if not _OLD_KEYWORDS.search(text):
            raise
        module = parse_legacy(text)
        if module is None:
            raise
        return module, LEGACY_VERSION
