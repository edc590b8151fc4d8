"""Fast traversal of libcst nodes.

``CSTNode.children`` rebuilds every child through a visitor (and re-validates it): on real code it
costs more than the parse itself. These helpers read the dataclass fields directly instead.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterator, Literal, Tuple, Type

import libcst as cst

_FIELDS: Dict[Type[cst.CSTNode], Tuple[str, ...]] = {}
# Whitespace, comments and parentheses never hold code (nor any field declared as text or whitespace:
# ``_never_node``).
_SKIP = {"whitespace", "lpar", "rpar", "comma", "header", "footer", "leading_lines", "lines_after_decorators",
         "whitespace_before", "whitespace_after", "whitespace_before_colon", "whitespace_after_colon",
         "whitespace_before_args", "whitespace_after_func", "whitespace_after_star", "whitespace_after_arg",
         "whitespace_before_indicator", "whitespace_after_indicator", "whitespace_after_cls",
         "whitespace_before_params", "whitespace_after_def", "whitespace_after_name", "trailing_whitespace",
         "semicolon", "dot", "equal", "colon", "operator", "star", "indent", "newline", "lbracket", "rbracket",
         "lbrace", "rbrace", "asynchronous"}


def _fields(cls: Type[cst.CSTNode]) -> Tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _SKIP and not _never_node(f.type))
        _FIELDS[cls] = names
    return names


#: What a field may hold that is never code: text, whitespace and comments, nothing.
_NOT_CODE = (str, type(None), cst.MaybeSentinel, cst.BaseParenthesizableWhitespace, cst.TrailingWhitespace,
             cst.EmptyLine, cst.Comment, cst.Newline)


def _never_node(annotation: object) -> bool:
    """Is a field declared to hold no code: text (``Name.value: str``, ``Arg.star: Literal["", "*", "**"]``),
    whitespace (``For.whitespace_after_for``, ``Param.whitespace_after_param``), or a union or sequence of
    those? Then it is not read: a leaf (a name, a number, a string: two nodes in five) has no field to
    read, and no whitespace node is walked. (An annotation not understood is read.)"""
    if getattr(annotation, "__origin__", None) is Literal:
        return True
    args = getattr(annotation, "__args__", None)
    if args:
        return all(_never_node(a) for a in args)
    return isinstance(annotation, type) and issubclass(annotation, _NOT_CODE)


#: type -> is it a CSTNode? ``isinstance`` against libcst's abstract base classes goes through
#: ABCMeta.__instancecheck__: a dict lookup by exact type is several times cheaper on the hot path.
_IS_NODE: Dict[type, bool] = {}
_SEQUENCES = (tuple, list)
_NO_ENTER = frozenset((cst.Lambda, cst.FunctionDef, cst.ClassDef))  # (libcst has no subclasses of them)


def _is_node_type(t: type) -> bool:
    hit = _IS_NODE.get(t)
    if hit is None:
        hit = _IS_NODE[t] = issubclass(t, cst.CSTNode)
    return hit


def child_nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The direct children of ``node`` that may contain code, in source order."""
    return iter(_children(node))


def _children(node: cst.CSTNode) -> list:
    names = _FIELDS.get(type(node))
    if names is None:
        names = _fields(type(node))
    out: list = []
    if not names:
        return out
    is_node = _IS_NODE
    for name in names:
        value = getattr(node, name, None)
        t = type(value)
        hit = is_node.get(t)
        if hit is None:
            hit = _is_node_type(t)
        if hit:
            out.append(value)
        elif t in _SEQUENCES:
            for item in value:
                ht = is_node.get(type(item))
                if ht is None:
                    ht = _is_node_type(type(item))
                if ht:
                    out.append(item)
    return out


def walk(node: cst.CSTNode, into_functions: bool = False) -> Iterator[cst.CSTNode]:
    """Every node under ``node`` (pre-order, source order); by default not into nested
    lambdas, functions and classes."""
    stack = [node]
    pop, extend = stack.pop, stack.extend
    while stack:
        n = pop()
        yield n
        if not into_functions and n is not node and type(n) in _NO_ENTER:
            continue
        kids = _children(n)
        kids.reverse()
        extend(kids)


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
    found = tuple(n for n in walk(node) if type(n) is cst.Call)
    _CALLS[id(node)] = (node, found)
    return found


def clear_caches() -> None:
    _CALLS.clear()


def type_test(*classes: type) -> Callable[[object], bool]:
    """A test equal to ``isinstance(x, classes)``, answered once per type of ``x``. libcst's node classes
    are ABCs: an isinstance that says no goes through ``ABCMeta.__instancecheck__``, several times the
    cost of a dict lookup, and the analyses ask "is this statement a loop / a block?" of every statement
    of every scope, again and again."""
    known: Dict[type, bool] = {}

    def test(x: object) -> bool:
        t = type(x)
        hit = known.get(t)
        if hit is None:
            hit = known[t] = isinstance(x, classes)
        return hit

    return test

