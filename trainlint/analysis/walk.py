"""Fast traversal of libcst nodes.

``CSTNode.children`` rebuilds every child through a visitor (and re-validates it): on real code it
costs more than the parse itself. These helpers read the dataclass fields directly instead.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterator, Tuple, Type

import libcst as cst

_FIELDS: Dict[Type[cst.CSTNode], Tuple[str, ...]] = {}
# Whitespace, comments and parentheses never hold code.
_SKIP = {"whitespace", "lpar", "rpar", "comma", "header", "footer", "leading_lines", "lines_after_decorators",
         "whitespace_before", "whitespace_after", "whitespace_before_colon", "whitespace_after_colon",
         "whitespace_before_args", "whitespace_after_func", "whitespace_after_star", "whitespace_after_arg",
         "whitespace_before_indicator", "whitespace_after_indicator", "whitespace_after_cls",
         "whitespace_before_params", "whitespace_after_def", "whitespace_after_name", "trailing_whitespace",
         "semicolon", "dot", "equal", "colon", "operator", "star", "indent", "newline"}


def _fields(cls: Type[cst.CSTNode]) -> Tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _SKIP)
        _FIELDS[cls] = names
    return names


def child_nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The direct children of ``node`` that may contain code, in source order."""
    for name in _fields(type(node)):
        value = getattr(node, name, None)
        if isinstance(value, cst.CSTNode):
            yield value
        elif isinstance(value, (tuple, list)):
            for item in value:
                if isinstance(item, cst.CSTNode):
                    yield item


def walk(node: cst.CSTNode, into_functions: bool = False) -> Iterator[cst.CSTNode]:
    """Every node under ``node`` (pre-order, source order); by default not into nested
    lambdas, functions and classes."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if not into_functions and n is not node and isinstance(n, (cst.Lambda, cst.FunctionDef, cst.ClassDef)):
            continue
        kids = list(child_nodes(n))
        kids.reverse()
        stack.extend(kids)


#: id(node) -> (node, its calls). Syntax trees are immutable, and many rules ask for the calls of the
#: same statements: each is walked once per run. The engine clears it after a run (`clear_caches`);
#: the node is kept with its entry so that its id cannot be reused while cached.
_CALLS: Dict[int, Tuple[cst.CSTNode, Tuple[cst.Call, ...]]] = {}


def calls(node: cst.CSTNode) -> Tuple[cst.Call, ...]:
    """Calls inside an expression or statement, outermost first, in source order (not inside nested
    lambdas/functions/classes). Cached per node for the run."""
    hit = _CALLS.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    found = tuple(n for n in walk(node) if isinstance(n, cst.Call))
    _CALLS[id(node)] = (node, found)
    return found


def clear_caches() -> None:
    _CALLS.clear()
