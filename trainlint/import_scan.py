"""Import statements read from a file's text, no parse: the one reading of import lines that the engine's
skip-early check and file grouping (``scan_imports``) and the program model's importer search
(``trainlint.analysis.program``) share, so that each reads a statement spread over several lines the same way:
a backslash continuation (``from nets import vit, \\`` + ``deit``) and a parenthesised name list
(``from nets import (`` + ``vit,`` + ``deit)``).

It runs over every file of a big package (timm, Lightning) before anything is parsed: only ``re``, one pass
over the lines, and only the lines that say ``import`` are looked at."""

from __future__ import annotations

import re
from typing import Iterator, List, Optional, Tuple

#: ``from .x import (y, z)``, matched at a line that holds ``import``: the base and what follows ``import``.
_FROM_RE = re.compile(r"\bfrom[ \t]+(\.*[\w.]*)[ \t]+import[ \t]*(\([^)]*\)?|[^\n;#]*)")
#: ``import a.b, c as d``.
_IMPORT_RE = re.compile(r"\bimport[ \t]+([\w.]+(?:[ \t]+as[ \t]+\w+)?(?:[ \t]*,[ \t]*[\w.]+(?:[ \t]+as[ \t]+\w+)?)*)")
_NAME_RE = re.compile(r"[A-Za-z_]\w*")
#: How many lines a parenthesised name list is followed for (an unclosed one in a broken file stops there).
_LIST_LINES = 200


def import_statements(text: str) -> Iterator[Tuple[Optional[str], List[str]]]:
    """The imports ``text`` may hold, in order: ``(base, names)`` for ``from base import names`` (each name as
    written, ``*`` included; ``base`` is ``""`` for nothing legible) and ``(None, modules)`` for ``import a.b,
    c as d`` (``["a.b", "c"]``). A statement continued with backslashes or in a parenthesised list is read
    whole. A text scan: it also reads import lines in strings and comments, so it may say more than a parse,
    never less (what no import line says, such as ``__import__("m")``, is not read)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if "import" not in line and not line.endswith(("\\", "\\\r")):  # (`from a.b \` + `import c`: joined first)
            continue
        j = i
        while line.rstrip().endswith("\\") and j + 1 < len(lines):  # continued with a backslash
            j += 1
            line = line.rstrip()[:-1] + " " + lines[j]
        if "import" not in line:
            continue
        for m in _FROM_RE.finditer(line):
            base, listed = m.group(1), m.group(2)
            if listed.startswith("("):  # a parenthesised list: its lines' comments may hold commas
                listed = _uncommented(listed)
            if listed.startswith("(") and ")" not in listed:  # continued on the next lines
                for k in range(j + 1, min(len(lines), j + _LIST_LINES)):
                    listed += " " + _uncommented(lines[k])
                    if ")" in lines[k]:
                        break
                listed = listed.split(")", 1)[0]
            yield base, [part.split()[0] for part in listed.strip().strip("()").split(",") if part.split()]
        for m in _IMPORT_RE.finditer(line):
            if "from" in line[:m.start()] and _FROM_RE.search(line[:m.end()]):  # the `import` of a from-import
                continue
            yield None, [part.split()[0] for part in m.group(1).split(",") if part.split()]


def _uncommented(line: str) -> str:
    """A line of a name list without its comment (``a,  # b, c`` names ``a`` only; no string can hold the
    ``#`` in an import's name list)."""
    return line.split("#", 1)[0]


def scan_imports(text: str) -> List[str]:
    """Module names ``text`` may import, as the facts list them (``from pkg import name`` gives ``pkg``
    and ``pkg.name``), and then some: ``import_statements``, no parse."""
    out: List[str] = []
    for base, names in import_statements(text):
        if base is None:
            out.extend(names)
            continue
        if base:
            out.append(base)
        sep = "" if base.endswith(".") or not base else "."
        out.extend(f"{base}{sep}{name}" for name in names if _NAME_RE.fullmatch(name))
    return out
