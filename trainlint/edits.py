"""Building fix edits that rules share (the fix engine, trainlint.fixes, applies them).

One helper per kind of mechanical change, so every rule that offers it makes it the same way:

- :func:`move_statement`: move a one-line call statement just after (or before) its neighbour in the
  same block (a scheduler step before the optimizer step, a clip on the wrong side of backward/step);
- :func:`unwrap_call`: replace an activation call by its input (``F.softmax(logits, 1)`` -> ``logits``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, Tuple

import libcst as cst

from trainlint.findings import Edit, Span

if TYPE_CHECKING:  # pragma: no cover
    from trainlint.context import FileContext

_COMMENT_OR_BLANK = re.compile(r"^\s*(#.*)?$")


def _statement_line(ctx: "FileContext", call: cst.CSTNode) -> Optional[Tuple[int, str, str]]:
    """(line, indentation, text) when ``call`` is a whole statement on a line of its own (a trailing
    comment allowed), else None."""
    span = ctx.span(call)
    if span.line != span.end_line:
        return None
    text = ctx.source.line(span.line)
    indent = text[: len(text) - len(text.lstrip())]
    if span.column != len(indent) + 1:
        return None  # `x = call()`, `a; call()`
    rest = text[span.end_column - 1 :]
    if not _COMMENT_OR_BLANK.match(rest):
        return None  # `call(); other()`
    return span.line, indent, text


def move_statement(ctx: "FileContext", moved: cst.CSTNode, anchor: cst.CSTNode, after: bool) -> Optional[Tuple[Edit, ...]]:
    """Edits that move the one-line statement ``moved`` to just after (``after``) or just before the
    one-line statement ``anchor``. Both must be single-line call statements at the same indentation with
    only blank or comment lines between them (the caller checks they are neighbours in one block)."""
    a = _statement_line(ctx, moved)
    b = _statement_line(ctx, anchor)
    if a is None or b is None or a[1] != b[1] or a[0] == b[0]:
        return None
    lo, hi = sorted((a[0], b[0]))
    if any(not _COMMENT_OR_BLANK.match(ctx.source.line(n)) for n in range(lo + 1, hi)):
        return None
    if after and a[0] > b[0] or not after and a[0] < b[0]:
        return None  # already on that side
    line, _, text = a
    delete = Edit(Span(line, 1, line + 1, 1), "")
    target = b[0] + 1 if after else b[0]
    insert = Edit(Span(target, 1, target, 1), text + "\n")
    return (delete, insert)


def unwrap_call(ctx: "FileContext", call: cst.CSTNode, method: bool) -> Optional[Tuple[Edit, ...]]:
    """Replace an activation call by its input: ``F.softmax(x, dim=1)`` / ``torch.sigmoid(x)`` -> ``x``,
    or, for a tensor method (``method``), ``x.softmax(-1)`` / ``x.sigmoid()`` -> ``x``."""
    if not isinstance(call, cst.Call) or any(a.star for a in call.args):
        return None
    inner: Optional[cst.BaseExpression] = None
    if method:
        if isinstance(call.func, cst.Attribute):
            inner = call.func.value
    else:
        named = [a.value for a in call.args if a.keyword is not None and a.keyword.value == "input"]
        positional = [a.value for a in call.args if a.keyword is None]
        inner = named[0] if named else (positional[0] if positional else None)
    if inner is None:
        return None
    text = ctx.code(inner).strip()
    if "\n" in text:
        return None
    if not isinstance(inner, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)):
        text = f"({text})"  # `F.softmax(a + b, 1)` -> `(a + b)`
    return (Edit(ctx.span(call), text),)
