"""Constant folding: the values a training program plans to run with, where they can be known statically.

``fold(expr, facts, scope, stmt, program)`` gives a :class:`Folded` value for

- literals (``90``, ``1e-3``, ``-1``, ``"cos"``, ``True``), simple arithmetic (``2 * 30``, ``EPOCHS // 3``),
  ``int()/float()/round()/min()/max()/len()/math.ceil/floor`` of those (``float("inf")`` too), lists and
  tuples of them; ``math.inf`` / ``np.inf`` / ``torch.inf``;
- names through their assignments (``scope.reaching``), module constants (``EPOCHS = 90``), constants
  imported from another file of the program (``from config import EPOCHS``, ``import config as C``);
- argparse defaults: ``args.epochs`` where ``args = parser.parse_args()`` (also ``opt``, a ``get_args()``
  helper, or an ``args`` parameter) and ``parser.add_argument("--epochs", type=int, default=90)`` anywhere
  in the program (dashes become underscores, ``dest=``, ``set_defaults``). An argparse default is what
  runs when the user passes nothing: ``how == "argparse"`` lets messages say "with the default --epochs 90";
- simple configs: ``config = {"epochs": 20}`` → ``config["epochs"]``, ``cfg.get("epochs", 10)``,
  ``SimpleNamespace(epochs=3)``/``dict(epochs=3)``/``EasyDict({...})`` attributes, class attributes and
  dataclass defaults (``class Config: epochs = 10`` → ``Config.epochs``, ``cfg = Config()`` → ``cfg.epochs``);
- function parameters when trivially resolvable: every call of the function in the program passes the
  same foldable value, or none passes it and the parameter has a default (``def train(epochs=20)``).

Everything else is unknown (None): values from yaml/json, CLI overrides, checkpoints, ``len(loader)``.
Never a guess. Each folded value keeps where it is written (for Related locations) and the names it
was computed from (``deps``), so a rule can tell a value derived from the run length from a constant.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import libcst as cst

from trainlint.analysis.facts import Assignment, FileFacts, Scope, Stmt
from trainlint.analysis.names import dotted
from trainlint.analysis.walk import walk

#: How sure the planned value is, weakest last: a literal in the code, a module constant, a
#: parameter default, a config dict in the code, an argparse default (the user may override it).
_HOW_ORDER = ("literal", "constant", "default", "config", "argparse")

_ARGS_LIKE = re.compile(r"^(args|arguments|opt|opts|options|flags|FLAGS|hparams|hps|hp|a)$")
_MAX_DEPTH = 24
#: Values are never folded into huge objects: at most this many items in a tuple, bits in an integer,
#: characters in a number literal.
_MAX_ITEMS = 10_000
_MAX_BITS = 4096
_MAX_LITERAL = 1000
_BUDGET = 3000
#: Library constants for infinity: ``math.inf``, ``np.inf`` (``np.Inf``, ``np.infty``, ``np.PINF``),
#: ``torch.inf``.
_INF_NAMES = frozenset({"inf", "infty", "pinf"})
_INF_MODULES = frozenset({"math", "numpy", "torch"})


@dataclass(frozen=True)
class Folded:
    value: Any  # int | float | str | bool | None-literal | tuple of those
    node: cst.CSTNode  # where the value is written (the literal, the add_argument default, the expression)
    facts: FileFacts  # the file of ``node``
    how: str = "literal"  # see _HOW_ORDER
    label: str = ""  # "--epochs" for argparse, "EPOCHS", "config['epochs']"...
    deps: FrozenSet[str] = field(default_factory=frozenset)  # names and origins it was computed from

    def describe(self) -> str:
        """"the default --epochs 20" / "EPOCHS = 20" / "20"."""
        v = format_value(self.value)
        if self.how == "argparse" and self.label:
            return f"the default {self.label} {v}"
        if self.label:
            return f"{self.label} = {v}"
        return v


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e+").replace("e+", "e")
        return f"{v:g}"
    if isinstance(v, tuple):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return repr(v) if isinstance(v, str) else str(v)


def _worst(a: str, b: str) -> str:
    return a if _HOW_ORDER.index(a) >= _HOW_ORDER.index(b) else b


def _small_enough(a: Any, b: Any, op: cst.BaseBinaryOp) -> bool:
    """Whether ``a op b`` of two numbers stays a reasonable size (an integer result under _MAX_BITS bits)."""
    if not (isinstance(a, int) and isinstance(b, int)):
        return True  # floats overflow to inf or raise OverflowError, both handled
    bits = max(abs(a).bit_length(), abs(b).bit_length())
    if isinstance(op, cst.Multiply):
        return abs(a).bit_length() + abs(b).bit_length() <= _MAX_BITS
    if isinstance(op, cst.Power):
        return abs(b) <= 64 and abs(a).bit_length() * abs(b) <= _MAX_BITS
    return bits <= _MAX_BITS


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------------------
# per-file tables (memoized on the facts object)


@dataclass
class _ArgDef:
    dest: str
    option: str  # "--epochs"
    default: Optional[cst.BaseExpression]
    call: cst.Call
    scope: Scope
    stmt: Stmt


def _file_tables(facts: FileFacts) -> Dict[str, Any]:
    cached = getattr(facts, "_values_tables", None)
    if cached is not None:
        return cached
    argdefs: Dict[str, List[_ArgDef]] = {}
    set_defaults: Dict[str, List[Tuple[cst.BaseExpression, Scope, Stmt]]] = {}
    calls_by_name: Dict[str, List[Tuple[cst.Call, Scope, Stmt]]] = {}
    class_ids = {id(c.node) for c in facts.classes.values()}
    for scope in facts.scopes():
        for stmt in scope.stmts:
            node = stmt.node
            if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.For, cst.While, cst.If, cst.With, cst.Try)):
                continue
            for n in walk(node):
                if type(n) is not cst.Call:  # (no subclasses; isinstance on libcst ABCs is slow)
                    continue
                fname = dotted(n.func)
                if fname is None:
                    continue
                last = fname.rsplit(".", 1)[-1]
                calls_by_name.setdefault(last, []).append((n, scope, stmt))
                if last == "add_argument" and "." in fname:
                    d = _argdef(n, scope, stmt)
                    if d is not None:
                        argdefs.setdefault(d.dest, []).append(d)
                elif last == "set_defaults" and "." in fname:
                    for a in n.args:
                        if a.keyword is not None:
                            set_defaults.setdefault(a.keyword.value, []).append((a.value, scope, stmt))
    tables = {"argdefs": argdefs, "set_defaults": set_defaults, "calls": calls_by_name, "class_ids": class_ids}
    try:
        setattr(facts, "_values_tables", tables)
    except Exception:  # pragma: no cover - slots
        pass
    return tables


def _argdef(call: cst.Call, scope: Scope, stmt: Stmt) -> Optional[_ArgDef]:
    options: List[str] = []
    dest = None
    default = None
    for a in call.args:
        if a.keyword is None:
            if isinstance(a.value, cst.SimpleString) and isinstance(a.value.evaluated_value, str):
                options.append(a.value.evaluated_value)
        elif a.keyword.value == "dest" and isinstance(a.value, cst.SimpleString):
            dest = a.value.evaluated_value
        elif a.keyword.value == "default":
            default = a.value
    if default is None:
        # action="store_true" / "store_false" without a default: False / True when the flag is not passed
        action = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "action"), None)
        if isinstance(action, cst.SimpleString) and action.evaluated_value in ("store_true", "store_false"):
            default = cst.Name("False" if action.evaluated_value == "store_true" else "True")
    if not options:
        return None
    longs = [o for o in options if o.startswith("--")]
    option = longs[0] if longs else options[0]
    if dest is None:
        dest = option.lstrip("-").replace("-", "_")
    if not isinstance(dest, str) or not dest:
        return None
    return _ArgDef(dest, option, default, call, scope, stmt)


def _program_calls(program: Any) -> Tuple[set, "_ProgramCalls"]:
    """(ids of the program's facts, callee's last name -> (facts, call, scope, stmt) over the program's
    files in order), one per program: folding a parameter asks for the calls of its function. The index
    is filled one name at a time, when asked (a program of 200 files is asked for a few dozen names).
    (Checked against the program's file contexts, not their facts: asked thousands of times per program,
    and a context's facts never change once built.)"""
    ctxs = [pf.ctx for pf in program.files]
    cached = program.__dict__.get("_tl_values_calls")
    if cached is not None and cached[0] == ctxs:
        return cached[1], cached[2]
    files = [c.facts for c in ctxs]
    ids = {id(f) for f in files}
    index = _ProgramCalls(files, [c.source.text for c in ctxs])
    program.__dict__["_tl_values_calls"] = (ctxs, ids, index)
    return ids, index


class _ProgramCalls:
    """Callee's last name -> the calls of that name in the program's files, in file order (lazy: filled
    one name at a time, from the files whose text holds the name: a call's name is written in its file)."""

    def __init__(self, files: List[FileFacts], texts: List[str]) -> None:
        self.files = files
        self.texts = texts
        self.by_name: Dict[str, List[Tuple[FileFacts, cst.Call, Scope, Stmt]]] = {}

    def get(self, name: str, default=()):
        hit = self.by_name.get(name)
        if hit is None:
            hit = self.by_name[name] = [(f, call, scope, stmt) for f, text in zip(self.files, self.texts) if name in text
                                        for call, scope, stmt in _file_tables(f)["calls"].get(name, ())]
        return hit if hit else default


# ------------------------------------------------------------------------------------------------
# the folder


class _Folder:
    def __init__(self, program: Any = None) -> None:
        self.program = program
        self.stack: set = set()
        self.budget = _BUDGET  # folding steps for one question: pathological code gives up, never hangs
        #: Did the answer read the program (its call sites, another file, its argparse definitions)? When
        #: it did not, it is the same in every program that holds the file (see :func:`fold_asked`).
        self.asked = False

    # entry -------------------------------------------------------------------------------------
    def fold(self, expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Optional[Stmt], depth: int = 0) -> Optional[Folded]:
        if depth > _MAX_DEPTH or self.budget <= 0:
            return None
        self.budget -= 1
        key = (id(expr), id(stmt))
        if key in self.stack:
            return None
        self.stack.add(key)
        try:
            return self._fold(expr, facts, scope, stmt, depth)
        finally:
            self.stack.discard(key)

    def _fold(self, expr, facts, scope, stmt, depth) -> Optional[Folded]:
        if isinstance(expr, cst.Integer):
            if len(expr.value) > _MAX_LITERAL:  # (Python 3.11 refuses decimal literals over 4,300 digits)
                return None
            return Folded(int(expr.evaluated_value), expr, facts)
        if isinstance(expr, cst.Float):
            return Folded(float(expr.evaluated_value), expr, facts)
        if isinstance(expr, cst.SimpleString):
            return Folded(expr.evaluated_value, expr, facts)
        if isinstance(expr, cst.Name) and expr.value in ("True", "False", "None"):
            return Folded({"True": True, "False": False, "None": None}[expr.value], expr, facts)
        if isinstance(expr, cst.UnaryOperation):
            inner = self.fold(expr.expression, facts, scope, stmt, depth + 1)
            if inner is None or not _num(inner.value):
                return None
            if isinstance(expr.operator, cst.Minus):
                return _derive(-inner.value, expr, facts, [inner])
            if isinstance(expr.operator, cst.Plus):
                return _derive(inner.value, expr, facts, [inner])
            return None
        if isinstance(expr, cst.BinaryOperation):
            return self._binop(expr, facts, scope, stmt, depth)
        if isinstance(expr, (cst.List, cst.Tuple)):
            parts = []
            for el in expr.elements:
                if isinstance(el, (cst.StarredElement,)):
                    return None
                f = self.fold(el.value, facts, scope, stmt, depth + 1)
                if f is None:
                    return None
                parts.append(f)
            return _derive(tuple(p.value for p in parts), expr, facts, parts)
        if isinstance(expr, cst.Call):
            return self._call(expr, facts, scope, stmt, depth)
        if isinstance(expr, cst.Subscript):
            return self._subscript(expr, facts, scope, stmt, depth)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self._named(expr, facts, scope, stmt, depth)
        return None

    def _binop(self, expr: cst.BinaryOperation, facts, scope, stmt, depth) -> Optional[Folded]:
        left = self.fold(expr.left, facts, scope, stmt, depth + 1)
        if left is None:
            return None
        right = self.fold(expr.right, facts, scope, stmt, depth + 1)
        if right is None:
            return None
        a, b = left.value, right.value
        op = expr.operator
        try:
            if isinstance(a, tuple) or isinstance(b, tuple):
                if isinstance(op, cst.Add) and isinstance(a, tuple) and isinstance(b, tuple):
                    if len(a) + len(b) > _MAX_ITEMS:
                        return None
                    v = a + b
                elif isinstance(op, cst.Multiply) and isinstance(a, tuple) and isinstance(b, int) and not isinstance(b, bool):
                    if len(a) * max(b, 0) > _MAX_ITEMS:  # `(1,) * 10**10`: never built
                        return None
                    v = a * b
                else:
                    return None
            elif not (_num(a) and _num(b)):
                return None
            elif not _small_enough(a, b, op):
                return None
            elif isinstance(op, cst.Add):
                v = a + b
            elif isinstance(op, cst.Subtract):
                v = a - b
            elif isinstance(op, cst.Multiply):
                v = a * b
            elif isinstance(op, cst.Divide):
                v = a / b
            elif isinstance(op, cst.FloorDivide):
                v = a // b
            elif isinstance(op, cst.Modulo):
                v = a % b
            elif isinstance(op, cst.Power):
                if abs(b) > 64:
                    return None
                v = a ** b
            else:
                return None
        except (ZeroDivisionError, OverflowError, TypeError, ValueError):
            return None
        return _derive(v, expr, facts, [left, right])

    def _call(self, expr: cst.Call, facts, scope, stmt, depth) -> Optional[Folded]:
        name = dotted(expr.func)
        q = facts.qualify(expr.func) or name
        pos = [a.value for a in expr.args if a.keyword is None and not a.star]
        if q in ("int", "float", "round", "abs", "math.ceil", "math.floor", "math.sqrt") and len(pos) == 1 and len(expr.args) == 1:
            inner = self.fold(pos[0], facts, scope, stmt, depth + 1)
            if q == "float" and inner is not None and isinstance(inner.value, str) and len(inner.value) < 64:
                try:  # float("inf"), float("1e-3")
                    return _derive(float(inner.value), expr, facts, [inner])
                except ValueError:
                    return None
            if inner is None or not _num(inner.value):
                return None
            fn = {"int": int, "float": float, "round": round, "abs": abs, "math.ceil": math.ceil,
                  "math.floor": math.floor, "math.sqrt": math.sqrt}[q]
            try:
                return _derive(fn(inner.value), expr, facts, [inner])
            except (ValueError, OverflowError):
                return None
        if q in ("min", "max") and pos and len(pos) == len(expr.args):
            parts = [self.fold(p, facts, scope, stmt, depth + 1) for p in pos]
            if any(p is None or not _num(p.value) for p in parts):
                return None
            fn = min if q == "min" else max
            return _derive(fn(p.value for p in parts), expr, facts, parts)
        if q == "len" and len(pos) == 1:
            inner = self.fold(pos[0], facts, scope, stmt, depth + 1)
            if inner is not None and isinstance(inner.value, (tuple, str)):
                return _derive(len(inner.value), expr, facts, [inner])
            return None
        if q in ("list", "tuple") and len(pos) == 1:
            inner = self.fold(pos[0], facts, scope, stmt, depth + 1)
            if inner is not None and isinstance(inner.value, tuple):
                return inner
            return None
        # cfg.get("epochs", 10)
        if isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "get" and pos and isinstance(pos[0], cst.SimpleString):
            key = pos[0].evaluated_value
            base = self.resolve_object(expr.func.value, facts, scope, stmt, depth + 1)
            if base is None:
                return None
            obj, ofacts, oscope, ostmt, how = base
            found = self._member(obj, key, ofacts, oscope, ostmt, depth + 1, by_key=True)
            if found is not None:
                return found
            if isinstance(obj, cst.Dict) and len(pos) > 1:
                return self.fold(pos[1], facts, scope, stmt, depth + 1)
            return None
        return None

    def _subscript(self, expr: cst.Subscript, facts, scope, stmt, depth) -> Optional[Folded]:
        if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
            return None
        idx = expr.slice[0].slice.value
        if isinstance(idx, cst.SimpleString):
            key = idx.evaluated_value
            base = self.resolve_object(expr.value, facts, scope, stmt, depth + 1)
            if base is None:
                return None
            obj, ofacts, oscope, ostmt, how = base
            return self._member(obj, key, ofacts, oscope, ostmt, depth + 1, by_key=True)
        seq = self.fold(expr.value, facts, scope, stmt, depth + 1)
        pos = self.fold(idx, facts, scope, stmt, depth + 1)
        if seq is None or pos is None or not isinstance(seq.value, tuple) or not isinstance(pos.value, int):
            return None
        try:
            return _derive(seq.value[pos.value], expr, facts, [seq, pos])
        except IndexError:
            return None

    # names -------------------------------------------------------------------------------------
    def _named(self, expr, facts: FileFacts, scope: Scope, stmt, depth) -> Optional[Folded]:
        name = dotted(expr)
        if name is None:
            return None
        if name.rsplit(".", 1)[-1].lower() in _INF_NAMES:
            q = facts.qualify(expr)
            if q is not None and q.rsplit(".", 1)[0] in _INF_MODULES:  # math.inf, np.inf, torch.inf
                return Folded(math.inf, expr, facts, deps=frozenset({q}))
        found = self._definition(name, facts, scope, stmt, depth)
        if found is not None:
            value, vfacts, vscope, vstmt, how, label = found
            if value is None:
                return None
            inner = self.fold(value, vfacts, vscope, vstmt, depth + 1)
            if inner is None:
                return None
            return _relabel(inner, how, label or name, name)
        if isinstance(expr, cst.Attribute):
            attr = expr.attr.value
            # Lightning: self.hparams.epochs is the __init__ argument saved by save_hyperparameters()
            if dotted(expr.value) == "self.hparams" and scope.class_name:
                return self._hparam(attr, facts, scope, depth)
            # args.epochs: an argparse namespace
            if self._is_namespace(expr.value, facts, scope, stmt, depth + 1):
                return self._argparse(attr, facts, depth)
            base = self.resolve_object(expr.value, facts, scope, stmt, depth + 1)
            if base is not None:
                obj, ofacts, oscope, ostmt, how = base
                return self._member(obj, attr, ofacts, oscope, ostmt, depth + 1, by_key=False)
        return None

    def _definition(self, name: str, facts: FileFacts, scope: Scope, stmt: Optional[Stmt], depth: int):
        """(value expr, facts, scope, stmt, how, label) of the one definition of ``name`` visible at
        ``stmt``; None when there is none we can use (then other lookups are tried)."""
        tables = _file_tables(facts)
        if name.startswith("self.") and name.count(".") == 1 and scope.class_name and not scope.reaching(name, stmt) if stmt else False:
            # self.epochs set once in another method (usually __init__): that assignment
            attrs = facts.attributes.get(scope.class_name, {}).get(name, [])
            if attrs:
                return self._one(attrs, facts, attrs[0].scope or scope, name, depth)
        cur: Optional[Scope] = scope
        at = stmt
        while cur is not None:
            assigns = cur.reaching(name, at) if at is not None else cur.assigns.get(name, [])
            assigns = [a for a in assigns if not any(b in tables["class_ids"] for b in a.stmt.block)]
            if assigns:
                if at is not None and not any(at.block[: len(a.stmt.block)] == a.stmt.block for a in assigns):
                    # only conditional assignments (`if debug: epochs = 1`): the earlier value may hold too
                    return (None, facts, cur, None, "constant", name)
                return self._one(assigns, facts, cur, name, depth)
            if cur.kind == "function" and "." not in name and name in cur.params():
                return self._param(name, facts, cur, depth)
            if cur.kind == "function" and "." in name and name.split(".")[0] in cur.params():
                return None
            if cur.kind == "module":
                break
            cur = cur.parent
            at = None
        # an imported name: a constant of another file of the program
        q = facts.aliases.qualify_dotted(name)
        if q is not None:
            return self._imported(q, facts, depth)
        return None

    def _one(self, assigns: List[Assignment], facts, scope, name, depth):
        values = []
        for a in assigns:
            if a.kind not in ("assign",) or a.value is None:
                return (None, facts, scope, None, "constant", name)
            values.append(a)
        if len(values) == 1:
            a = values[0]
            how = "constant" if scope.kind == "module" else "literal"
            return (a.value, facts, a.scope or scope, a.stmt, how, name if scope.kind == "module" else "")
        folded = [self.fold(a.value, facts, a.scope or scope, a.stmt, depth + 1) for a in values]
        if all(f is not None for f in folded) and len({repr(f.value) for f in folded}) == 1:
            a = values[-1]
            return (a.value, facts, a.scope or scope, a.stmt, "constant", name)
        return (None, facts, scope, None, "constant", name)

    def _hparam(self, name: str, facts: FileFacts, scope: Scope, depth: int) -> Optional[Folded]:
        cls = facts.classes.get(scope.class_name or "")
        init = cls.methods.get("__init__") if cls is not None else None
        if init is None or name not in init.params():
            return None
        found = self._param(name, facts, init, depth)
        if found is None or found[0] is None:
            return None
        value, vfacts, vscope, vstmt, how, label = found
        inner = self.fold(value, vfacts, vscope, vstmt, depth + 1)
        return _relabel(inner, how, label or name, name) if inner is not None else None

    def _param(self, name: str, facts: FileFacts, fscope: Scope, depth: int):
        node = fscope.node
        if not isinstance(node, cst.FunctionDef):
            return None
        params = [*node.params.posonly_params, *node.params.params]
        kwonly = list(node.params.kwonly_params)
        param = next((p for p in (*params, *kwonly) if p.name.value == name), None)
        if param is None:
            return None
        index = None
        if param in params:
            index = params.index(param)
            if fscope.class_name is not None:
                index -= 1  # self
        passed = []
        unknown = False
        omitted = False
        callee = fscope.name
        if callee == "__init__" and fscope.class_name:
            callee = fscope.class_name  # ChurnMLP(n, epochs=...) calls ChurnMLP.__init__
        for cfacts, call, cscope, cstmt in self._calls_of(callee, facts):
            if any(a.star for a in call.args):
                unknown = True
                continue
            arg = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == name), None)
            if arg is None and index is not None and index >= 0:
                pos = [a.value for a in call.args if a.keyword is None]
                if index < len(pos):
                    arg = pos[index]
            if arg is not None:
                passed.append((arg, cfacts, cscope, cstmt))
            elif param.default is not None:
                omitted = True
        if omitted and passed:
            # some calls leave it out: its default runs there too
            passed.append((param.default, facts, fscope.parent or facts.module, None))
        if unknown:
            return (None, facts, fscope, None, "default", name)
        if len(passed) == 1:  # one call site: its argument is the value (also an object: main(Config()))
            arg, cfacts, cscope, cstmt = passed[0]
            return (arg, cfacts, cscope, cstmt, "literal", "")
        if passed:
            folded = [self.fold(a, f, s, st, depth + 1) for a, f, s, st in passed]
            if all(x is not None for x in folded) and len({repr(x.value) for x in folded}) == 1:
                arg, cfacts, cscope, cstmt = passed[0]
                return (arg, cfacts, cscope, cstmt, "literal", "")
            return (None, facts, fscope, None, "default", name)
        if param.default is not None:
            return (param.default, facts, fscope.parent or facts.module, None, "default", name)
        return (None, facts, fscope, None, "default", name)

    def _calls_of(self, fname: str, facts: FileFacts):
        if self.program is None:
            for call, scope, stmt in _file_tables(facts)["calls"].get(fname, ()):
                yield facts, call, scope, stmt
            return
        self.asked = True
        members, index = _program_calls(self.program)
        if id(facts) not in members:
            for call, scope, stmt in _file_tables(facts)["calls"].get(fname, ()):
                yield facts, call, scope, stmt
        yield from index.get(fname, ())

    def _imported(self, qualified: str, facts: FileFacts, depth: int):
        if self.program is None:
            return None
        self.asked = True
        me = self.program.file_of(facts)
        if me is None:
            return None
        from trainlint.analysis.program import resolve_module

        parts = qualified.split(".")
        lead = len(qualified) - len(qualified.lstrip("."))
        if lead:
            parts = qualified[lead:].split(".")
        for k in range(len(parts) - 1, 0, -1):
            mod = "." * lead + ".".join(parts[:k])
            path = resolve_module(mod, me.path, [])
            if path is None:
                continue
            target = self._file_at(str(path))
            if target is None:
                return None
            rest = parts[k:]
            name = rest[0]
            found = self._definition(name, target, target.module, None, depth + 1)
            if found is None or len(rest) == 1:
                return found
            # config.train.epochs: an attribute of an imported object
            value, vfacts, vscope, vstmt, how, label = found
            if value is None:
                return None
            obj = value
            for i, attr in enumerate(rest[1:]):
                member = self._member_expr(obj, attr, vfacts, vscope, vstmt, depth + 1, by_key=False)
                if member is None:
                    return None
                obj, vfacts, vscope, vstmt = member
            return (obj, vfacts, vscope, vstmt, "config", ".".join(rest))
        return None

    def _file_at(self, path: str) -> Optional[FileFacts]:
        real = os.path.realpath(path)
        self.asked = True
        for f in self.program.files:
            if f.path == real or os.path.realpath(f.path) == real:
                return f.facts
        return None

    # objects: dicts, namespaces, config classes -----------------------------------------------
    def resolve_object(self, expr, facts, scope, stmt, depth):
        """The literal an expression stands for (a Dict, a Call building a namespace/config, a class):
        (node, facts, scope, stmt, how) or None."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, (cst.Dict, cst.Call)):
            return (expr, facts, scope, stmt, "config")
        if isinstance(expr, cst.Subscript) or isinstance(expr, cst.Attribute):
            # nested: cfg["train"]["epochs"], cfg.train.epochs
            if isinstance(expr, cst.Subscript):
                if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
                    return None
                key_node = expr.slice[0].slice.value
                if not isinstance(key_node, cst.SimpleString):
                    return None
                key, inner_expr, by_key = key_node.evaluated_value, expr.value, True
            else:
                found = self._definition(dotted(expr) or "", facts, scope, stmt, depth) if dotted(expr) else None
                if found is not None and found[0] is not None:
                    return self.resolve_object(found[0], found[1], found[2], found[3], depth + 1)
                key, inner_expr, by_key = expr.attr.value, expr.value, False
            base = self.resolve_object(inner_expr, facts, scope, stmt, depth + 1)
            if base is None:
                return None
            member = self._member_expr(base[0], key, base[1], base[2], base[3], depth + 1, by_key=by_key)
            if member is None:
                return None
            return self.resolve_object(member[0], member[1], member[2], member[3], depth + 1)
        name = dotted(expr)
        if name is None:
            return None
        # a local class used as a config: Config.epochs
        if "." not in name and name in facts.classes:
            return (facts.classes[name].node, facts, facts.module, None, "config")
        found = self._definition(name, facts, scope, stmt, depth)
        if found is None or found[0] is None:
            return None
        value, vfacts, vscope, vstmt, how, label = found
        return self.resolve_object(value, vfacts, vscope, vstmt, depth + 1)

    def _member_expr(self, obj, key: str, facts: FileFacts, scope, stmt, depth, by_key: bool):
        """The expression stored under ``key`` in a dict literal / namespace call / config class."""
        if isinstance(obj, cst.Dict):
            for el in obj.elements:
                if not isinstance(el, cst.DictElement):
                    return None  # **other: unknown
                if isinstance(el.key, cst.SimpleString) and el.key.evaluated_value == key:
                    return (el.value, facts, scope, stmt)
            return None
        if isinstance(obj, cst.ClassDef):
            for a in facts.module.assigns.get(key, ()):
                if id(obj) in a.stmt.block and a.value is not None and a.kind == "assign":
                    return (a.value, facts, facts.module, a.stmt)
            return None
        if isinstance(obj, cst.Call):
            fname = dotted(obj.func) or ""
            kw = {a.keyword.value: a.value for a in obj.args if a.keyword is not None}
            if key in kw:
                return (kw[key], facts, scope, stmt)
            if any(a.star == "**" for a in obj.args):
                return None
            # a local config class instance: Config() / TrainConfig(lr=...)
            if "." not in fname and fname in facts.classes:
                return self._member_expr(facts.classes[fname].node, key, facts, scope, stmt, depth, by_key)
            pos = [a.value for a in obj.args if a.keyword is None and not a.star]
            last = fname.rsplit(".", 1)[-1]
            if len(pos) == 1 and isinstance(pos[0], cst.Dict) and last in _DICT_WRAPPERS:
                return self._member_expr(pos[0], key, facts, scope, stmt, depth, by_key)
            return None
        return None

    def _member(self, obj, key, facts, scope, stmt, depth, by_key) -> Optional[Folded]:
        member = self._member_expr(obj, key, facts, scope, stmt, depth, by_key)
        if member is None:
            return None
        inner = self.fold(member[0], member[1], member[2], member[3], depth + 1)
        if inner is None:
            return None
        label = f"config[{key!r}]" if by_key else key
        return _relabel(inner, "config", label, key)

    # argparse ----------------------------------------------------------------------------------
    def _is_namespace(self, expr, facts, scope, stmt, depth) -> bool:
        if depth > _MAX_DEPTH:
            return False
        if isinstance(expr, cst.Call):
            fname = dotted(expr.func) or ""
            last = fname.rsplit(".", 1)[-1]
            if last in ("parse_args", "parse_known_args"):
                return True
            if "." not in fname:
                helper = facts.function(fname)
                if helper is not None:
                    return any(v is not None and self._is_namespace(v, facts, helper, s, depth + 1) for v, s in helper.returns)
            if self.program is not None and fname:
                self.asked = True
                # opt = parse_opts(), imported from opts.py
                q = facts.aliases.qualify_dotted(fname)
                if q is not None:
                    from trainlint.analysis.execution import _imported_function

                    hit = _imported_function(q, facts, self.program)
                    if hit is not None:
                        hfacts, helper = hit
                        return any(v is not None and self._is_namespace(v, hfacts, helper, s, depth + 1) for v, s in helper.returns)
            return False
        if isinstance(expr, cst.Subscript):  # parse_known_args()[0]
            return self._is_namespace(expr.value, facts, scope, stmt, depth + 1)
        name = dotted(expr)
        if name is None:
            return False
        cur, at = scope, stmt
        while cur is not None:
            assigns = cur.reaching(name, at) if at is not None else cur.assigns.get(name, [])
            if assigns:
                for a in assigns:
                    value = a.value
                    if value is None and isinstance(a.node, cst.Assign):
                        value = a.node.value  # args, unknown = parser.parse_known_args()
                    if value is not None and self._is_namespace(value, facts, a.scope or cur, a.stmt, depth + 1):
                        return True
                return False
            if cur.kind == "function" and name in cur.params():
                # def main(args): what the call site passes, else an argparse namespace by its usual name
                # when the program defines arguments
                passed = self._param(name, facts, cur, depth + 1)
                if passed is not None and passed[0] is not None:
                    return self._is_namespace(passed[0], passed[1], passed[2], passed[3], depth + 1)
                return bool(_ARGS_LIKE.match(name)) and self._has_argparse(facts)
            if cur.kind == "module":
                break
            cur, at = cur.parent, None
        return False

    def _has_argparse(self, facts) -> bool:
        self.asked = self.asked or self.program is not None
        files = [f.facts for f in self.program.files] if self.program is not None else [facts]
        return any(_file_tables(f)["argdefs"] for f in [facts, *files])

    def _argparse(self, dest: str, facts: FileFacts, depth: int) -> Optional[Folded]:
        self.asked = self.asked or self.program is not None
        files = [f.facts for f in self.program.files] if self.program is not None else []
        if facts not in files:
            files = [facts, *files]
        defs: List[_ArgDef] = []
        overrides = []
        for f in files:
            t = _file_tables(f)
            defs.extend((f, d) for d in t["argdefs"].get(dest, ()))
            overrides.extend((f, o) for o in t["set_defaults"].get(dest, ()))
        if overrides:
            if len(overrides) != 1:
                return None
            f, (value, scope, stmt) = overrides[0]
            inner = self.fold(value, f, scope, stmt, depth + 1)
            return _relabel(inner, "argparse", "--" + dest.replace("_", "-"), "arg:" + dest) if inner else None
        if not defs:
            return None
        folded = []
        for f, d in defs:
            if d.default is None:
                return None
            inner = self.fold(d.default, f, d.scope, d.stmt, depth + 1)
            if inner is None:
                return None
            folded.append((inner, d))
        if len({repr(x.value) for x, _ in folded}) != 1:
            return None
        inner, d = folded[0]
        return _relabel(inner, "argparse", d.option, "arg:" + dest)


_DICT_WRAPPERS = {"EasyDict", "edict", "create", "DictConfig", "Munch", "munchify", "AttrDict", "Box", "ConfigDict",
                  "dict", "OrderedDict", "SimpleNamespace", "Namespace", "Config"}


def _derive(value: Any, node: cst.CSTNode, facts: FileFacts, parts: List[Folded]) -> Folded:
    how = "literal"
    deps: FrozenSet[str] = frozenset()
    label = ""
    for p in parts:
        how = _worst(how, p.how)
        deps = deps | p.deps
        if p.how == "argparse" and p.label and not label:
            label = p.label
    if len(parts) == 1:
        p = parts[0]
        return Folded(value, p.node, p.facts, p.how, p.label, p.deps)
    return Folded(value, node, facts, how, label, deps)


def _relabel(inner: Folded, how: str, label: str, dep: str) -> Folded:
    new_how = _worst(inner.how, how)
    new_label = inner.label if inner.how == "argparse" else label
    if how == "argparse":
        new_label = label
    return Folded(inner.value, inner.node, inner.facts, new_how, new_label, inner.deps | {dep})


# ------------------------------------------------------------------------------------------------
# public API


def fold(expr: Optional[cst.BaseExpression], facts: FileFacts, scope: Scope, stmt: Optional[Stmt], program: Any = None) -> Optional[Folded]:
    """The planned value of ``expr`` at ``stmt`` (see the module doc), or None when unknowable."""
    return fold_asked(expr, facts, scope, stmt, program)[0]


def fold_asked(expr: Optional[cst.BaseExpression], facts: FileFacts, scope: Scope, stmt: Optional[Stmt],
               program: Any = None) -> Tuple[Optional[Folded], bool]:
    """:func:`fold`, and whether the answer read the program (its call sites, its other files, its
    argparse definitions): when it did not, every program that holds the file gets the same answer."""
    if expr is None:
        return None, False
    # A pure function of its arguments (a fresh folder each time): memoised per program (or per file),
    # since the objects layer asks it for the same conditions and indices again and again.
    holder = program if program is not None else facts
    memo = holder.__dict__.get("_tl_fold_memo")
    if memo is None:
        memo = holder.__dict__["_tl_fold_memo"] = {}
    key = (id(expr), id(facts), id(scope), id(stmt))
    hit = memo.get(key)
    # (the entry keeps the nodes it is keyed by alive, so that an id is never reused while cached)
    if hit is None or hit[0] is not expr or hit[1] is not facts or hit[2] is not scope or hit[3] is not stmt:
        folder = _Folder(program)
        got = folder.fold(expr, facts, scope, stmt)
        hit = memo[key] = (expr, facts, scope, stmt, got, folder.asked)
    return hit[4], hit[5]


def same_fold(a: Optional[Folded], b: Optional[Folded]) -> bool:
    """Are two answers of :func:`fold` the same (the same value, written at the same node)?"""
    if a is None or b is None:
        return a is b
    return (type(a.value) is type(b.value) and a.value == b.value and a.node is b.node and a.facts is b.facts
            and a.how == b.how and a.label == b.label and a.deps == b.deps)


def resolve_object(expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Optional[Stmt], program: Any = None):
    """The dict literal / namespace call / config class ``expr`` stands for, or None."""
    found = _Folder(program).resolve_object(expr, facts, scope, stmt, 0)
    return found[0] if found is not None else None
