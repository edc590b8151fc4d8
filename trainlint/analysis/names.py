"""Resolving names through the file's own imports (no libcst metadata providers: they cost ~10x the parse).

``import torch.nn as nn``, ``from torch import nn``, ``from torch.nn import ReLU``,
``import torch.nn.functional as F`` and ``import torch as th`` all resolve ``nn.ReLU`` / ``ReLU`` /
``th.nn.ReLU`` to the one qualified name ``torch.nn.ReLU``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Union

import libcst as cst

from trainlint.analysis.walk import _children


def dotted(expr: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    # (exact type checks: libcst's node classes are ABCs, isinstance is slow, and these two have no
    # subclasses; this runs millions of times on a big package)
    t = type(expr)
    if t is _NAME:
        return expr.value
    parts: List[str] = []
    while t is _ATTRIBUTE:
        parts.append(expr.attr.value)
        expr = expr.value
        t = type(expr)
    if t is _NAME:
        parts.append(expr.value)
        return ".".join(reversed(parts))
    return None


_NAME, _ATTRIBUTE = cst.Name, cst.Attribute


def names_in(expr: cst.CSTNode) -> List[str]:
    """The names an expression reads, for "is it derived from / does it use X?" tests: every Name/Attribute
    chain whole, in source order (``self.loader`` of ``enumerate(self.loader)``: not ``self`` or ``loader``
    apart; compare ``n == x or n.startswith(x + ".")`` to also accept ``x.attr``). The attribute name of a
    chain on a call or subscript (``.y`` of ``f(x).y``) is no name the expression reads; lambdas are
    entered (their bodies read the enclosing names too)."""
    out: List[str] = []
    stack = [expr]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is _NAME or t is _ATTRIBUTE:
            d = dotted(n)
            if d is not None:
                out.append(d)
                continue
            stack.append(n.value)  # ``f(x).y``: what ``f(x)`` reads
            continue
        kids = _children(n)  # a fresh list
        kids.reverse()
        stack.extend(kids)
    return out


def module_dotted(node: Union[cst.Attribute, cst.Name]) -> str:
    return dotted(node) or ""


#: Conventional names a star import brings along when the file uses them without importing them.
STAR_CONVENTIONS = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional", "optim": "torch.optim",
                    "np": "numpy", "numpy": "numpy"}


class AliasTable:
    """Local name -> qualified name, from every import statement of a file."""

    def __init__(self) -> None:
        self.aliases: Dict[str, str] = {}
        self.star = False  # the file has a `from module import *`

    def add_import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = module_dotted(alias.name)
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.aliases[alias.asname.name.value] = full
            else:
                # `import torch.nn` binds `torch`; `torch.nn.X` then resolves through it.
                head = full.split(".")[0]
                self.aliases.setdefault(head, head)

    def add_import_from(self, node: cst.ImportFrom, package: Optional[str] = None) -> None:
        if isinstance(node.names, cst.ImportStar):
            self.star = True
            return
        base = module_dotted(node.module) if node.module is not None else ""
        if node.relative:
            dots = len(node.relative)
            base = "." * dots + base
        for alias in node.names:
            name = alias.name.value if isinstance(alias.name, cst.Name) else module_dotted(alias.name)
            local = alias.asname.name.value if alias.asname is not None and isinstance(alias.asname.name, cst.Name) else name
            self.aliases[local] = f"{base}.{name}" if base and not base.endswith(".") else f"{base}{name}"

    def qualify(self, expr: cst.BaseExpression) -> Optional[str]:
        """The qualified name of a Name/Attribute chain whose head is imported; None otherwise."""
        name = dotted(expr)
        if name is None:
            return None
        return self.qualify_dotted(name)

    def qualify_dotted(self, name: str) -> Optional[str]:
        head, _, rest = name.partition(".")
        target = self.aliases.get(head)
        if target is None and self.star:
            # `from modeling.deeplab import *` hands over the names that module imported: a name the file
            # uses without binding it (torch.manual_seed, torch.no_grad) comes from there
            target = STAR_CONVENTIONS.get(head)
        if target is None:
            return None
        return f"{target}.{rest}" if rest else target


def canonical(qualname: str) -> str:
    """Fold public aliases of the same torch object into one spelling."""
    for old, new in _CANONICAL_PREFIXES:
        if qualname == old or qualname.startswith(old + "."):
            return new + qualname[len(old):]
    return qualname


_CANONICAL_PREFIXES = (
    ("torch.nn.modules.loss", "torch.nn"),
    ("torch.nn.modules.activation", "torch.nn"),
    ("torch.nn.modules.dropout", "torch.nn"),
    ("torch.nn.modules.batchnorm", "torch.nn"),
    ("torch.nn.modules.linear", "torch.nn"),
    ("torch.nn.modules.container", "torch.nn"),
    ("torch.nn.modules.module", "torch.nn"),
    ("torch.nn.modules", "torch.nn"),
    ("torch.optim.lr_scheduler", "torch.optim.lr_scheduler"),
    ("pytorch_lightning", "lightning.pytorch"),
    ("lightning.pytorch", "lightning.pytorch"),
)
