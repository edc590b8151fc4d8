"""trainlint.analysis.walk reads only the fields of a libcst node that may hold code: every node of code
that libcst's own (slow) ``children`` reaches, and nothing else of interest is missed."""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from trainlint.analysis.walk import _fields, walk

ROOT = Path(__file__).resolve().parents[1]
#: Nodes that are never code: whitespace, comments, brackets, commas, operators' tokens...
NOT_CODE = (cst.BaseParenthesizableWhitespace, cst.TrailingWhitespace, cst.EmptyLine, cst.Comment, cst.Newline,
            cst.LeftParen, cst.RightParen, cst.LeftSquareBracket, cst.RightSquareBracket, cst.LeftCurlyBrace,
            cst.RightCurlyBrace, cst.Comma, cst.Semicolon, cst.Colon, cst.Dot, cst.AssignEqual, cst.Asynchronous,
            cst.ImportStar, cst.ParamStar, cst.ParamSlash)


def _all_nodes(node: cst.CSTNode, into):
    """Every node under ``node`` by libcst's ``children`` (the reference)."""
    stack = [node]
    while stack:
        n = stack.pop()
        into.append(n)
        stack.extend(n.children)


def test_walk_reaches_every_node_of_code_and_no_whitespace():
    checked = walked_total = 0
    files = sorted((ROOT / "fixtures").rglob("*.py"))[:60] + sorted((ROOT / "trainlint" / "analysis").glob("*.py"))[:6]
    for path in files:
        module = cst.parse_module(path.read_text(encoding="utf-8"))
        reference: list = []
        _all_nodes(module, reference)
        walked = {id(n) for n in walk(module, into_functions=True)}
        for n in reference:
            if id(n) in walked:
                assert not isinstance(n, (cst.BaseParenthesizableWhitespace, cst.EmptyLine, cst.Comment)), type(n)
                continue
            # not walked: no code (or an operator token, or under one of those)
            assert isinstance(n, NOT_CODE) or isinstance(n, (cst.BaseBinaryOp, cst.BaseBooleanOp, cst.BaseCompOp,
                                                             cst.BaseUnaryOp, cst.BaseAugOp)) \
                or not any(isinstance(x, (cst.Name, cst.Call, cst.BaseExpression, cst.BaseStatement))
                           for x in _under(n)), (path.name, type(n).__name__)
            checked += 1
        walked_total += len(walked)
    assert walked_total > 10_000 and checked > 1000


def _under(node):
    out: list = []
    _all_nodes(node, out)
    return out


def test_leaves_and_whitespace_have_no_field_to_read():
    assert _fields(cst.Name) == _fields(cst.Integer) == _fields(cst.SimpleString) == ()
    assert _fields(cst.Param) == ("name", "annotation", "default")
    assert "whitespace_after_for" not in _fields(cst.For) and "iter" in _fields(cst.For)
    assert _fields(cst.Arg) == ("value", "keyword")


def test_type_test_is_isinstance():
    from trainlint.analysis.walk import type_test

    is_loop = type_test(cst.For, cst.While)
    nodes = list(walk(cst.parse_module("for x in y:\n    while z:\n        f(x)\nif a:\n    b = 1\n"), True))
    for _ in range(2):  # (the second time from what it learnt)
        assert [is_loop(n) for n in nodes] == [isinstance(n, (cst.For, cst.While)) for n in nodes]
    assert sum(map(is_loop, nodes)) == 2
    is_expr = type_test(cst.BaseExpression)  # (abstract classes too)
    assert [is_expr(n) for n in nodes] == [isinstance(n, cst.BaseExpression) for n in nodes]
