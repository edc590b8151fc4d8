"""Small syntactic helpers shared by every analysis layer and rule: arguments of a call, literal
checks and short display texts. One place each; analysis modules import them from here."""

from __future__ import annotations

from typing import List, Optional

import libcst as cst


def keyword_arg(call: cst.Call, name: str) -> Optional[cst.Arg]:
    """The ``name=...`` argument of ``call`` (the whole Arg), or None."""
    for a in call.args:
        if a.keyword is not None and a.keyword.value == name:
            return a
    return None


def kwarg(call: cst.Call, name: str) -> Optional[cst.BaseExpression]:
    """The value of the ``name=...`` argument of ``call``, or None."""
    a = keyword_arg(call, name)
    return a.value if a is not None else None


def positional(call: cst.Call) -> List[cst.BaseExpression]:
    """The positional (non-starred, non-keyword) argument values of ``call``, in order."""
    return [a.value for a in call.args if a.keyword is None and a.star == ""]


def bound_arg(call: cst.Call, index: int, param: str) -> Optional[cst.BaseExpression]:
    """The argument a call passes for parameter ``param`` at position ``index`` (None: not passed, or
    hidden behind ``*args``/``**kwargs``)."""
    for a in call.args:
        if a.keyword is not None and a.keyword.value == param:
            return a.value
    pos = [a for a in call.args if a.keyword is None]
    if any(a.star for a in pos[: index + 1]):
        return None
    if 0 <= index < len(pos):
        return pos[index].value
    return None


def constant_key(expr: cst.Subscript) -> object:
    """The constant index of ``x[0]`` / ``x[-1]`` / ``x["logits"]`` (None for slices and variables)."""
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return None
    v = expr.slice[0].slice.value
    if isinstance(v, cst.Integer):
        return int(v.evaluated_value)
    if isinstance(v, cst.UnaryOperation) and isinstance(v.operator, cst.Minus) and isinstance(v.expression, cst.Integer):
        return -int(v.expression.evaluated_value)
    if isinstance(v, cst.SimpleString) and isinstance(v.evaluated_value, str):
        return v.evaluated_value
    return None


def string_keys(expr: cst.Subscript) -> List[str]:
    """The string constants a subscript indexes with: ``"loss"`` of ``out["loss"]``, ``"price"`` of
    ``df.loc[:, "price"]``."""
    out = []
    for el in expr.slice:
        idx = el.slice
        if isinstance(idx, cst.Index) and isinstance(idx.value, cst.SimpleString):
            key = idx.value.evaluated_value
            if isinstance(key, str):
                out.append(key)
    return out


def is_none(expr: Optional[cst.BaseExpression]) -> bool:
    """An absent expression or the literal ``None``."""
    return expr is None or (isinstance(expr, cst.Name) and expr.value == "None")


def number(expr: Optional[cst.BaseExpression]) -> Optional[float]:
    """The value of an int or float literal, else None."""
    if isinstance(expr, (cst.Integer, cst.Float)):
        try:
            return float(expr.evaluated_value)
        except (ValueError, OverflowError):  # a 5,000-digit literal
            return None
    return None


def short(text: str, limit: int = 40) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_qualname(q: str) -> str:
    """A torch name as training code writes it, for messages: ``torch.nn.ReLU`` -> ``nn.ReLU``,
    ``torch.nn.functional.relu`` -> ``F.relu``; any other name as it is."""
    if q.startswith("torch.nn.functional."):
        return "F." + q[len("torch.nn.functional."):]
    if q.startswith("torch.nn."):
        return "nn." + q[len("torch.nn."):]
    return q


def constructed_class(func: cst.BaseExpression) -> cst.BaseExpression:
    """The class a call builds: ``Trainer(...)`` -> ``Trainer``; an alternative constructor spelled as a
    classmethod, ``Trainer.from_argparse_args(args)`` / ``Model.from_pretrained(p)`` /
    ``Cfg.from_dict(d)`` -> ``Trainer`` / ``Model`` / ``Cfg`` (a capitalised receiver, a ``from_*``
    method). Anything else is returned unchanged."""
    if not isinstance(func, cst.Attribute) or not func.attr.value.startswith("from_"):
        return func
    recv = func.value
    last = recv.attr.value if isinstance(recv, cst.Attribute) else recv.value if isinstance(recv, cst.Name) else ""
    return recv if last[:1].isupper() else func
