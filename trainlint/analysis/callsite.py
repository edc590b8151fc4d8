"""The data model's view of a place in the program: which helper a call reaches, what the helper's
parameters hold for that call, and which of its branches run.

:class:`Where` is a file, a scope, a statement and the **bindings**: the parameters of the function the
statement is in, bound to the literal arguments of the call being followed (``get_transform(train=False)``
binds ``train`` to False; :func:`bind`). With them a condition folds (:func:`eval_cond`: ``if train:``,
``if mode == "val":``, ``is_train and random.random() < p``), and :func:`status` says whether a statement
under some if-tests (:func:`conditions`) runs always ("on"), never ("off") or behind a switch the call does
not decide ("gated": ``if args.augment:``, a parameter left at its default). :func:`reaching` is
``Scope.reaching`` that knows an ``if`` body does not reach its own ``else`` arm; :func:`early_exit` whether
a ``return`` above a statement skips it. :class:`Lookups` finds the project function or class a call
reaches, also through imports from other files of the program.

This is the call-site-sensitive folding that transforms (:mod:`trainlint.analysis.transforms`) and roles
(:mod:`trainlint.analysis.roles`) need: the same helper builds a random pipeline for ``train=True`` and a
plain one for ``train=False``. Questions about the default path of the whole program (argparse defaults,
configs) are answered by :mod:`trainlint.analysis.values` and :meth:`objects.World.decided`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import FileFacts, Scope, Stmt, arm_marker
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.syntax import is_none

#: A condition on such a name is a switch for augmentation (``if args.augment:``, ``use_flip``).
_SWITCH_NAME = re.compile(r"aug|random|rand_|jitter|flip|crop|no_?aug|use_|enable|disable|rotate|erasing|mix", re.I)

#: What :func:`literal` and :func:`eval_cond` answer when the value depends on something not bound.
UNKNOWN = object()


@dataclass(eq=False)
class Where:
    """A place in the program: a file, a scope, a statement (None: the scope's start) and the bindings of
    the scope's parameters (name -> folded literal, or :class:`ExprBinding`; :data:`DEFAULTS` -> the
    names left at their default)."""

    pf: Any  # ProgramFile
    scope: Scope
    stmt: Optional[Stmt]
    bindings: Dict[str, Any] = field(default_factory=dict)

    @property
    def facts(self) -> FileFacts:
        return self.pf.facts

    def at(self, scope: Scope, stmt: Optional[Stmt], bindings: Optional[Dict[str, Any]] = None) -> "Where":
        return Where(self.pf, scope, stmt, self.bindings if bindings is None else bindings)


@dataclass
class ExprBinding:
    """A parameter bound to an expression of the caller (followed when the helper uses it)."""

    expr: cst.BaseExpression
    where: Where


def literal(expr: Optional[cst.BaseExpression], bindings: Dict[str, Any]) -> Any:
    """A folded literal (bool, None, number, string) or UNKNOWN."""
    if expr is None:
        return UNKNOWN
    if isinstance(expr, cst.Name):
        if expr.value in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[expr.value]
        v = bindings.get(expr.value, UNKNOWN)
        return UNKNOWN if isinstance(v, ExprBinding) else v
    if isinstance(expr, cst.Attribute):
        name = dotted(expr)
        if name is not None and name in bindings and not isinstance(bindings[name], ExprBinding):
            return bindings[name]
        return UNKNOWN
    if isinstance(expr, cst.SimpleString):
        try:
            return expr.evaluated_value
        except Exception:  # pragma: no cover - odd prefixes
            return UNKNOWN
    if isinstance(expr, (cst.Integer, cst.Float)):
        try:
            return float(expr.value.replace("_", ""))
        except ValueError:
            return UNKNOWN
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        v = literal(expr.expression, bindings)
        return -v if isinstance(v, float) else UNKNOWN
    return UNKNOWN


#: Attributes a library base class sets from a constructor argument that defaults to None, so that
#: ``self.val_transforms is None`` holds unless the user passes one: pytorch_lightning (< 2.0)
#: ``LightningDataModule.__init__(self, train_transforms=None, val_transforms=None, test_transforms=None,
#: dims=None)`` (pytorch_lightning/core/datamodule.py). Read only when no file of the class assigns them.
_LIBRARY_NONE_ATTRS = {
    ("pytorch_lightning", "LightningDataModule"): frozenset({"train_transforms", "val_transforms", "test_transforms", "dims"}),
    ("lightning", "LightningDataModule"): frozenset({"train_transforms", "val_transforms", "test_transforms", "dims"}),
}


def library_default_test(test: cst.BaseExpression, where: "Where") -> Any:
    """``self.val_transforms is None`` (``is not None``) in a method of a subclass of a library class
    whose constructor leaves that attribute None by default (:data:`_LIBRARY_NONE_ATTRS`), when the
    class never assigns it: True (False), the arm the defaults take; UNKNOWN otherwise."""
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return UNKNOWN
    comp = test.comparisons[0]
    if not isinstance(comp.operator, (cst.Is, cst.IsNot)) or not is_none(comp.comparator):
        return UNKNOWN
    name = dotted(test.left) or ""
    cls_name = where.scope.class_name
    if not name.startswith("self.") or name.count(".") != 1 or not cls_name:
        return UNKNOWN
    info = where.facts.classes.get(cls_name)
    if info is None or where.facts.attributes.get(cls_name, {}).get(name):
        return UNKNOWN
    attr = name.split(".", 1)[1]
    for base in info.bases:
        q = canonical(base or "")
        key = (q.split(".", 1)[0], q.rsplit(".", 1)[-1])
        if attr in _LIBRARY_NONE_ATTRS.get(key, ()):
            return isinstance(comp.operator, cst.Is)
    return UNKNOWN


def eval_cond(test: cst.BaseExpression, bindings: Dict[str, Any], facts: FileFacts) -> Any:
    """True/False when the condition folds with the bound parameters; UNKNOWN otherwise (a switch)."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        v = eval_cond(test.expression, bindings, facts)
        return UNKNOWN if v is UNKNOWN else (not v)
    if isinstance(test, cst.BooleanOperation):
        left = eval_cond(test.left, bindings, facts)
        right = eval_cond(test.right, bindings, facts)
        if isinstance(test.operator, cst.And):
            if left is False or right is False:
                return False
            if left is True and right is True:
                return True
            return UNKNOWN
        if left is True or right is True:
            return True
        if left is False and right is False:
            return False
        return UNKNOWN
    if isinstance(test, (cst.Name, cst.Attribute)):
        name = dotted(test) or ""
        if _SWITCH_NAME.search(name.rsplit(".", 1)[-1]):
            return UNKNOWN  # a switch stays a switch even when its default is known
        if name in bindings.get(DEFAULTS, ()):
            return UNKNOWN  # `train=True` left at its default: the caller can turn it off
        v = literal(test, bindings)
        return UNKNOWN if v is UNKNOWN else bool(v)
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        comp = test.comparisons[0]
        left = literal(test.left, bindings)
        op = comp.operator
        if isinstance(op, (cst.Equal, cst.NotEqual, cst.Is, cst.IsNot)):
            right = literal(comp.comparator, bindings)
            if left is UNKNOWN or right is UNKNOWN:
                return UNKNOWN
            same = left == right
            return same if isinstance(op, (cst.Equal, cst.Is)) else not same
        if isinstance(op, (cst.In, cst.NotIn)) and isinstance(comp.comparator, (cst.Tuple, cst.List, cst.Set)):
            if left is UNKNOWN:
                return UNKNOWN
            vals = [literal(e.value, bindings) for e in comp.comparator.elements]
            if any(v is UNKNOWN for v in vals):
                return UNKNOWN
            return (left in vals) if isinstance(op, cst.In) else (left not in vals)
    return UNKNOWN


def conditions(stmt: Stmt, scope: Scope, since: Tuple[int, ...] = ()) -> Optional[List[Tuple[cst.BaseExpression, bool]]]:
    """The if-tests (and their polarity) under which ``stmt`` runs, below the block ``since``."""
    ifs = if_map(scope)
    out: List[Tuple[cst.BaseExpression, bool]] = []
    block = stmt.block[len(since):] if stmt.block[: len(since)] == since else stmt.block
    for i, b in enumerate(block):
        if isinstance(b, int) and b in ifs:
            chain = ifs[b]
            if arm_marker(block, i):
                # else-branch of the k-th element of the chain: every test of the chain is false
                out.extend((t, False) for t in chain[1] if t is not None)
            else:
                tests, pos = chain[1], chain[2]
                out.extend((t, False) for t in tests[:pos] if t is not None)
                out.append((tests[pos], True))
    return out


def if_map(scope: Scope) -> Dict[int, Tuple[cst.If, List[cst.BaseExpression], int]]:
    cached = getattr(scope, "_tl_if_map", None)
    if cached is not None:
        return cached
    m: Dict[int, Tuple[cst.If, List[cst.BaseExpression], int]] = {}
    for s in scope.stmts:
        if isinstance(s.node, cst.If) and id(s.node) not in m:
            chain: List[cst.If] = []
            node: Any = s.node
            while isinstance(node, cst.If):
                chain.append(node)
                node = node.orelse
            tests = [c.test for c in chain]
            for pos, c in enumerate(chain):
                m.setdefault(id(c), (c, tests, pos))
    scope._tl_if_map = m  # type: ignore[attr-defined]
    return m


def exclusive_arms(a: Tuple[int, ...], b: Tuple[int, ...], ifs: Dict[int, Any]) -> bool:
    """Are blocks ``a`` and ``b`` the body and the else-branch of the same ``if`` (either way round)?"""
    for x, y in ((a, b), (b, a)):
        if x and len(y) > len(x) and y[: len(x)] == x and x[-1] in ifs:
            if arm_marker(y, len(x) - 1):
                return True
    return False


def reaching(scope: Scope, name: str, before: Stmt) -> List[Any]:
    """``Scope.reaching`` that knows an ``if`` body does not reach its own ``else`` branch (the facts
    pass gives the else-block the body's block as a prefix)."""
    ifs = if_map(scope)
    out: List[Any] = []
    for a in reversed(scope.assigns.get(name, ())):
        if a.stmt.index >= before.index:
            continue
        if exclusive_arms(a.stmt.block, before.block, ifs):
            continue
        out.append(a)
        if before.block[: len(a.stmt.block)] == a.stmt.block:
            break
    return out


def status(conds: Optional[List[Tuple[cst.BaseExpression, bool]]], bindings: Dict[str, Any], facts: FileFacts) -> str:
    """"on" (always runs), "off" (never, given the bindings) or "gated" (depends on a switch)."""
    if not conds:
        return "on"
    gated = False
    for test, polarity in conds:
        v = eval_cond(test, bindings, facts)
        if v is UNKNOWN:
            gated = True
        elif bool(v) != polarity:
            return "off"
    return "gated" if gated else "on"


def common_prefix(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[int, ...]:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def subscript_key(expr: cst.Subscript, bindings: Dict[str, Any]) -> Any:
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return UNKNOWN
    return literal(expr.slice[0].slice.value, bindings)


def bind(call: cst.Call, fscope: Scope, where: Where) -> Dict[str, Any]:
    """Parameters of ``fscope`` bound to the call's literal arguments (defaults otherwise)."""
    node = fscope.node
    out: Dict[str, Any] = {}
    if not isinstance(node, cst.FunctionDef):
        return out
    params = [*node.params.posonly_params, *node.params.params]
    names = [p.name.value for p in params]
    if fscope.class_name and names and names[0] in ("self", "cls"):
        params = params[1:]
    defaults: Set[str] = set()
    out[DEFAULTS] = defaults  # parameters left at their default: a switch the caller did not touch
    for p in [*params, *node.params.kwonly_params]:
        if p.default is not None:
            v = literal(p.default, {})
            if v is not UNKNOWN:
                out[p.name.value] = v
                defaults.add(p.name.value)
    pos = [a for a in call.args if a.keyword is None and a.star == ""]
    for p, a in zip(params, pos):
        _bind_one(out, p.name.value, a.value, where)
    for a in call.args:
        if a.keyword is not None:
            _bind_one(out, a.keyword.value, a.value, where)
    return out


DEFAULTS = "<defaults>"


def _bind_one(out: Dict[str, Any], name: str, value: cst.BaseExpression, where: Where) -> None:
    out.get(DEFAULTS, set()).discard(name)
    v = literal(value, where.bindings)
    if v is not UNKNOWN:
        out[name] = v
    else:
        out.pop(name, None)
        if isinstance(value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)):
            out[name] = ExprBinding(value, where)


def _assigned_elsewhere(name: str, where: Where) -> bool:
    return bool(where.scope.assigns.get(name)) and where.scope is not where.facts.module and any(
        a.kind != "def" for a in where.scope.assigns.get(name, [])
    )


def early_exit(fscope: Scope, stmt: Stmt, bindings: Dict[str, Any], facts: FileFacts) -> str:
    """Can a ``return`` earlier in the function skip ``stmt``? "off" when one always does (given the
    bindings), "gated" when one may, "on" otherwise."""
    result = "on"
    for value, rstmt in fscope.returns:
        if rstmt.index >= stmt.index or exclusive_arms(rstmt.block, stmt.block, if_map(fscope)):
            continue
        if stmt.block[: len(rstmt.block)] == rstmt.block:
            return "off"  # an unconditional return in an enclosing block: dead code
        common = common_prefix(rstmt.block, stmt.block)
        st = status(conditions(rstmt, fscope, common), bindings, facts)
        if st == "on":
            return "off"
        if st == "gated":
            result = "gated"
    return result

# -- what a call reaches ------------------------------------------------------------------------------


class Lookups:
    """The project function or class a call reaches, and the file an imported name comes from: asked of
    the program's object world (:meth:`objects.World.resolve_global`: imports across files, re-exports
    through a package ``__init__``, ``import cfg; cfg.x``), answered in program files."""

    def __init__(self, program: Any) -> None:
        self.program = program
        self._world: Any = None

    def _global(self, pf: Any, name: str) -> Optional[Tuple[Any, ...]]:
        """What an imported (dotted) name of ``pf`` is in another file of the program: ("class", program
        file, ClassInfo), ("function", program file, Scope) or ("assign", program file, [Assignment])."""
        if pf.facts.aliases.qualify_dotted(name) is None:
            return None  # not imported: a local name is the caller's to read
        if self._world is None:
            from trainlint.analysis.objects import World

            self._world = World.of_program(self.program)
        file = self._world.file_of(pf.facts)
        got = self._world.resolve_global(name, file) if file is not None else None
        if got is None or got[0] == "q":
            return None
        target = self.program.file_of(got[1].facts)
        if target is None or target is pf:
            return None
        return (got[0], target, got[2])

    def imported(self, pf: Any, name: str) -> Optional[Tuple[Any, List[Any]]]:
        """(program file, its module-level assignments) of an imported constant (``train_tf`` or
        ``T.train_tf``), or None."""
        got = self._global(pf, name)
        return (got[1], got[2]) if got is not None and got[0] == "assign" else None

    def function_of_call(self, func: cst.BaseExpression, where: Where) -> Optional[Tuple[Any, Scope]]:
        name = dotted(func)
        if name is None:
            return None
        if "." not in name:
            s = where.facts.function(name)
            if s is not None and not _assigned_elsewhere(name, where):
                return where.pf, s
        elif name.startswith("self.") and name.count(".") == 1 and where.scope.class_name:
            cls = where.facts.classes.get(where.scope.class_name)
            if cls is not None and name[5:] in cls.methods:
                return where.pf, cls.methods[name[5:]]
            return None
        got = self._global(where.pf, name)
        return (got[1], got[2]) if got is not None and got[0] == "function" else None

    def class_of_call(self, func: cst.BaseExpression, where: Where) -> Optional[Tuple[Any, Any]]:
        name = dotted(func)
        if name is None:
            return None
        if "." not in name and name in where.facts.classes:
            return where.pf, where.facts.classes[name]
        got = self._global(where.pf, name)
        return (got[1], got[2]) if got is not None and got[0] == "class" else None
