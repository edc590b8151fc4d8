"""One pass over a file: its imports, classes, functions, and the statements of each scope in order.

The walk visits statements only (cheap); expressions stay libcst nodes that rules inspect where they
care. Every statement gets its order in the file, the compound statements around it (to tell an
unconditional assignment from one in a branch) and its loop depth, so that the value a name holds at a
statement can be followed back through its assignments (``reaching``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import libcst as cst

from trainlint.analysis.links import Links
from trainlint.analysis.names import AliasTable, dotted
from trainlint.analysis.walk import _children, calls


#: Entries of a statement's ``block`` below this are arm markers, not the ids of compound statements: the
#: entry after an ``if``'s id is k for its k-th else arm (1 after an ``if``/``elif``, as many as the elifs
#: before a final ``else``), after a loop's 1 for its ``else``, after a ``try``'s 2 for its ``else`` and
#: 10 + i for its i-th handler, after a ``match``'s i for its i-th case.
MARKER_LIMIT = 1000


def arm_marker(block: Tuple[int, ...], i: int) -> int:
    """The arm marker after entry ``i`` of ``block`` (0: the statement is in the body of the compound
    statement ``block[i]``, not in one of its else arms, handlers or cases)."""
    nxt = block[i + 1] if i + 1 < len(block) else None
    return nxt if nxt is not None and nxt < MARKER_LIMIT else 0


@dataclass(eq=False)
class Stmt:
    index: int  # order in the file
    node: cst.CSTNode  # a small statement (Assign, Expr, Return, ...)
    block: Tuple[int, ...]  # ids of the compound statements around it, inside its scope, each followed
    # by its arm marker when the statement is in an else arm, a handler or a case (:data:`MARKER_LIMIT`)
    loops: Tuple[cst.CSTNode, ...]  # enclosing for/while statements, innermost last


@dataclass(eq=False)
class Assignment:
    target: str  # dotted: "loss", "self.criterion"
    value: Optional[cst.BaseExpression]  # None for loop targets and unpacking we do not follow
    stmt: Stmt
    kind: str = "assign"  # "assign" | "aug" (value is the right side of x op= value) | "inplace" | "for" | "with"
    node: Optional[cst.CSTNode] = None  # the whole target-bearing node
    scope: Optional["Scope"] = None  # the scope the assignment is in


@dataclass(eq=False)
class Scope:
    kind: str  # "module" | "function"
    name: str
    node: cst.CSTNode
    class_name: Optional[str] = None  # for methods
    parent: Optional["Scope"] = None
    stmts: List[Stmt] = field(default_factory=list)
    assigns: Dict[str, List[Assignment]] = field(default_factory=dict)
    returns: List[Tuple[Optional[cst.BaseExpression], Stmt]] = field(default_factory=list)

    @property
    def qualname(self) -> str:
        return f"{self.class_name}.{self.name}" if self.class_name else self.name

    def reaching(self, name: str, before: Stmt) -> List[Assignment]:
        """Assignments to ``name`` that may hold at statement ``before`` (textual order; an
        assignment in the same or an enclosing block shadows the earlier ones)."""
        out: List[Assignment] = []
        for a in reversed(self.assigns.get(name, ())):
            if a.stmt.index >= before.index:
                continue
            out.append(a)
            if before.block[: len(a.stmt.block)] == a.stmt.block:
                break
        return out

    def params(self) -> List[str]:
        if isinstance(self.node, cst.FunctionDef):
            p = self.node.params
            return [x.name.value for x in (*p.posonly_params, *p.params, *p.kwonly_params)]
        return []


@dataclass(eq=False)
class ClassInfo:
    name: str
    node: cst.ClassDef
    bases: List[str]  # qualified through imports when possible, else the local dotted name
    methods: Dict[str, Scope] = field(default_factory=dict)


@dataclass(eq=False)
class FileFacts:
    aliases: AliasTable
    module: Scope
    functions: List[Scope] = field(default_factory=list)  # every function and method scope
    classes: Dict[str, ClassInfo] = field(default_factory=dict)
    #: ``self.x = ...`` in any method, keyed by class name then "self.x".
    attributes: Dict[str, Dict[str, List[Assignment]]] = field(default_factory=dict)
    #: Modules this file imports (``pkg.mod``; relative ones keep their dots: ``..utils``); for
    #: ``from pkg import name`` both ``pkg`` and ``pkg.name`` (name may be a submodule).
    imports: List[str] = field(default_factory=list)
    #: Does the module body run a loop or a training call when executed (a notebook-style script)?
    runs_at_module_level: bool = False

    def scopes(self) -> Iterator[Scope]:
        yield self.module
        yield from self.functions

    def function(self, name: str) -> Optional[Scope]:
        """A module-level function of this file by name (the first definition)."""
        index = self.__dict__.get("_functions_by_name")
        if index is None:
            index = {}
            for s in self.functions:
                if s.class_name is None and s.parent is self.module:
                    index.setdefault(s.name, s)
            self.__dict__["_functions_by_name"] = index
        return index.get(name)

    def qualify(self, expr: cst.BaseExpression) -> Optional[str]:
        return self.aliases.qualify(expr)

    @property
    def links(self) -> Links:
        """What this file takes from the files it imports (see ``trainlint.analysis.links``): computed
        once, on demand (a walk over the expressions: about 4% of a parse)."""
        hit = self.__dict__.get("_links")
        if hit is None:
            hit = self.__dict__["_links"] = _links(self)
        return hit


_NAME, _ATTRIBUTE, _IMPORT, _IMPORT_FROM = cst.Name, cst.Attribute, cst.Import, cst.ImportFrom
#: How many attributes of a chain read through an imported name count (``opennre.encoder.PCNNEncoder``:
#: a package, a module, a class; what lies further is an attribute of the object).
_CHAIN = 3


def _links(facts: FileFacts) -> Links:
    froms: List[Tuple[str, str, str]] = []
    modules: List[Tuple[str, str, str]] = []
    stars: List[str] = []
    used: set = set()
    chains: Dict[str, set] = {}
    stack: list = [facts.module.node]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is _NAME:
            used.add(n.value)
            chains.setdefault(n.value, set()).add("")
            continue
        if t is _ATTRIBUTE:
            d = dotted(n)
            if d is None:  # ``f(x).y``: what ``f(x)`` reads (``y`` is no name of the file)
                stack.append(n.value)
                continue
            head, _, tail = d.partition(".")
            used.add(head)
            chains.setdefault(head, set()).add(tail)
            continue
        if t is _IMPORT:
            for alias in n.names:
                full = dotted(alias.name) or ""
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    modules.append((alias.asname.name.value, full, ""))
                elif full:
                    head, _, sub = full.partition(".")
                    modules.append((head, full, sub))
            continue
        if t is _IMPORT_FROM:
            base = ("." * len(n.relative)) + ((dotted(n.module) or "") if n.module is not None else "")
            if isinstance(n.names, cst.ImportStar):
                stars.append(base)
                continue
            for alias in n.names:
                if not isinstance(alias.name, cst.Name):
                    continue
                local = alias.asname.name.value if alias.asname is not None and isinstance(alias.asname.name, cst.Name) else alias.name.value
                froms.append((local, base, alias.name.value))
            continue
        kids = _children(n)
        kids.reverse()  # source order
        stack.extend(kids)
    bound = {x[0] for x in froms} | {x[0] for x in modules}
    defined = {k for k in facts.module.assigns if "." not in k} | set(facts.classes)
    return Links(froms, modules, stars, used & bound,
                 {local: {".".join(t.split(".")[:_CHAIN]) for t in chains[local]} for local in bound if local in chains},
                 (used - bound - defined) if stars else (), defined)


def _targets(expr: cst.BaseExpression) -> List[Tuple[str, Optional[cst.BaseExpression], bool]]:
    """(dotted name, sub-node, is_whole) for each name bound by an assignment target."""
    name = dotted(expr)
    if name is not None:
        return [(name, expr, True)]
    if isinstance(expr, (cst.Tuple, cst.List)):
        out = []
        for el in expr.elements:
            inner = el.value
            out.extend((n, node, False) for n, node, _ in _targets(inner))
        return out
    return []


def _runs(func: cst.BaseExpression) -> bool:
    """Does a call of the module level run training (or a script's main)?"""
    # `L.Trainer(...).fit(model)` is a chained call: its name is the attribute's.
    last = func.attr.value if isinstance(func, cst.Attribute) else (dotted(func) or "")
    return last in ("fit", "backward", "main", "run", "train") or last.startswith("train")


#: Calls that only build or fill a table: builtins, methods of dicts, lists and strings, copies.
_TABLE_FUNCTIONS = frozenset(("len", "range", "list", "dict", "tuple", "set", "str", "int", "float", "bool",
                              "sorted", "enumerate", "zip", "isinstance", "getattr", "setattr", "hasattr",
                              "globals", "locals", "vars", "copy.copy", "copy.deepcopy", "deepcopy", "partial",
                              "functools.partial", "replace", "dataclasses.replace"))
_TABLE_METHODS = frozenset(("items", "keys", "values", "get", "setdefault", "update", "append", "extend", "insert",
                            "pop", "copy", "replace", "format", "startswith", "endswith", "split", "rsplit", "join",
                            "strip", "lower", "upper", "add"))


def _fills_table(func: cst.BaseExpression) -> bool:
    name = dotted(func) or ""
    last = name.rsplit(".", 1)[-1]
    if name in _TABLE_FUNCTIONS or last.startswith(("register", "_register")):
        return True
    return isinstance(func, cst.Attribute) and last in _TABLE_METHODS


def _registration(call: cst.BaseExpression) -> Optional[Tuple[str, cst.BaseExpression]]:
    """``self.add_module("act", v)`` / ``self.register_module("act", v)`` / ``setattr(self, "act", v)``
    with a constant name: ("self.act", v)."""
    if not isinstance(call, cst.Call):
        return None
    args = [a for a in call.args if a.star == ""]
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in ("add_module", "register_module") and len(args) == 2:
        owner = dotted(func.value)
        name, value = args[0].value, args[1].value
    elif isinstance(func, cst.Name) and func.value == "setattr" and len(args) == 3:
        owner = dotted(args[0].value)
        name, value = args[1].value, args[2].value
    else:
        return None
    if owner is None or not isinstance(name, cst.SimpleString):
        return None
    text = name.evaluated_value
    if not isinstance(text, str) or not text.isidentifier():
        return None
    return f"{owner}.{text}", value


class _Builder:
    def __init__(self) -> None:
        self.aliases = AliasTable()
        self.counter = 0
        self.facts: Optional[FileFacts] = None

    def build(self, module: cst.Module) -> FileFacts:
        scope = Scope("module", "<module>", module)
        self.facts = FileFacts(self.aliases, scope)
        self._body(module.body, scope, (), ())
        return self.facts

    # -- statements -------------------------------------------------------------------------
    def _body(self, body, scope: Scope, block: Tuple[int, ...], loops: Tuple[cst.CSTNode, ...], cls: Optional[ClassInfo] = None) -> None:
        for stmt in body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    self._small(small, scope, block, loops)
            else:
                self._compound(stmt, scope, block, loops, cls)

    def _suite(self, suite, scope, block, loops, cls=None) -> None:
        if isinstance(suite, cst.IndentedBlock):
            self._body(suite.body, scope, block, loops, cls)
        elif isinstance(suite, cst.SimpleStatementSuite):
            for small in suite.body:
                self._small(small, scope, block, loops)

    def _stmt(self, node, scope, block, loops) -> Stmt:
        self.counter += 1
        s = Stmt(self.counter, node, block, loops)
        scope.stmts.append(s)
        return s

    def _assign(self, scope: Scope, name: str, value, stmt: Stmt, kind: str, node=None) -> None:
        a = Assignment(name, value, stmt, kind, node, scope)
        scope.assigns.setdefault(name, []).append(a)
        if name.startswith("self.") and scope.class_name is not None:
            self.facts.attributes.setdefault(scope.class_name, {}).setdefault(name, []).append(a)

    def _small(self, node, scope: Scope, block, loops) -> None:
        s = self._stmt(node, scope, block, loops)
        if isinstance(node, cst.Assign):
            for t in node.targets:
                for name, _, whole in _targets(t.target):
                    self._assign(scope, name, node.value if whole else None, s, "assign", node)
        elif isinstance(node, cst.AnnAssign):
            for name, _, whole in _targets(node.target):
                self._assign(scope, name, node.value if whole else None, s, "assign", node)
        elif isinstance(node, cst.AugAssign):
            for name, _, _ in _targets(node.target):
                self._assign(scope, name, node.value, s, "aug", node)
        elif isinstance(node, cst.Expr):
            call = node.value
            # self.add_module("act", nn.ReLU()) / register_module / setattr(self, "act", ...) bind self.act
            registered = _registration(call)
            if registered is not None:
                self._assign(scope, registered[0], registered[1], s, "assign", node)
            # `x.clamp_(...)` and friends rebind x in place.
            if isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute):
                meth = call.func.attr.value
                if meth.endswith("_") and not meth.endswith("__"):
                    recv = dotted(call.func.value)
                    if recv is not None:
                        self._assign(scope, recv, call, s, "inplace", node)
        elif isinstance(node, cst.Return):
            scope.returns.append((node.value, s))
        elif isinstance(node, cst.Import):
            self.aliases.add_import(node)
            for alias in node.names:
                self.facts.imports.append(dotted(alias.name) or "")
        elif isinstance(node, cst.ImportFrom):
            self.aliases.add_import_from(node)
            module_name = dotted(node.module) if node.module is not None else None
            base = ("." * len(node.relative)) + (module_name or "")
            self.facts.imports.append(base)
            if not isinstance(node.names, cst.ImportStar):
                sep = "" if base.endswith(".") or not base else "."
                for alias in node.names:
                    if isinstance(alias.name, cst.Name):
                        self.facts.imports.append(f"{base}{sep}{alias.name.value}")
        if scope.kind == "module" and not self.facts.runs_at_module_level:
            if isinstance(node, (cst.Expr, cst.Assign)) and isinstance(node.value, cst.Call):
                # `train(...)` and `model = train_model(...)` both run training at import
                if _runs(node.value.func):
                    self.facts.runs_at_module_level = True
            if loops and not self.facts.runs_at_module_level:
                # in a loop of the module level (a notebook's epoch loop), any call but those that fill a
                # table (`default_cfgs[n] = copy.deepcopy(c)`, `cfg.setdefault(...)`, `register(...)`)
                if any(not _fills_table(call.func) for call in calls(node)):
                    self.facts.runs_at_module_level = True

    def _compound(self, node, scope: Scope, block, loops, cls: Optional[ClassInfo]) -> None:
        inner = block + (id(node),)
        if isinstance(node, cst.FunctionDef):
            fscope = Scope("function", node.name.value, node, cls.name if cls else None, scope)
            self.facts.functions.append(fscope)
            if cls is not None:
                cls.methods.setdefault(node.name.value, fscope)
            self._suite(node.body, fscope, (), ())
            self._assign(scope, node.name.value, None, self._stmt(node, scope, block, loops), "def", node)
        elif isinstance(node, cst.ClassDef):
            bases = []
            for arg in node.bases:
                q = self.aliases.qualify(arg.value) or dotted(arg.value)
                if q:
                    bases.append(q)
            info = ClassInfo(node.name.value, node, bases)
            self.facts.classes.setdefault(node.name.value, info)
            self._suite(node.body, scope, inner, loops, info)
        elif isinstance(node, (cst.For, cst.While)):
            if scope.kind == "module" and loops:
                # a loop in a loop of the module level (epochs around batches) runs something; one loop
                # alone does when it calls anything but table builders (see `_small`): a loop that fills a
                # registry (`for n in cfgs: default_cfgs[n] = ...`, timm's vision_transformer.py) makes
                # no module an entry script
                self.facts.runs_at_module_level = True
            s = self._stmt(node, scope, block, loops)
            if isinstance(node, cst.For):
                for name, _, _ in _targets(node.target):
                    self._assign(scope, name, None, s, "for", node)
            self._suite(node.body, scope, inner, loops + (node,))
            if node.orelse is not None:
                self._suite(node.orelse.body, scope, inner + (1,), loops)
        elif isinstance(node, cst.If):
            self._stmt(node, scope, block, loops)
            self._suite(node.body, scope, inner, loops)
            orelse = node.orelse
            k = 1
            while orelse is not None:
                if isinstance(orelse, cst.If):
                    self._stmt(orelse, scope, block, loops)
                    self._suite(orelse.body, scope, block + (id(orelse),), loops)
                    orelse = orelse.orelse
                else:
                    self._suite(orelse.body, scope, inner + (k,), loops)
                    orelse = None
                k += 1
        elif isinstance(node, cst.With):
            s = self._stmt(node, scope, block, loops)
            for item in node.items:
                if item.asname is not None:
                    for name, _, _ in _targets(item.asname.name):
                        self._assign(scope, name, item.item, s, "with", node)
            # A with-block runs unconditionally: its statements share the enclosing block.
            self._suite(node.body, scope, block, loops)
        elif isinstance(node, cst.Try) or isinstance(node, getattr(cst, "TryStar", ())):
            self._stmt(node, scope, block, loops)
            self._suite(node.body, scope, inner, loops)
            for i, h in enumerate(node.handlers):
                self._suite(h.body, scope, inner + (i + 10,), loops)
            if node.orelse is not None:
                self._suite(node.orelse.body, scope, inner + (2,), loops)
            if node.finalbody is not None:
                self._suite(node.finalbody.body, scope, block, loops)
        elif isinstance(node, getattr(cst, "Match", ())):
            self._stmt(node, scope, block, loops)
            for i, case in enumerate(node.cases):
                self._suite(case.body, scope, inner + (i,), loops)
        else:  # pragma: no cover - future syntax
            for child in node.children:
                if isinstance(child, (cst.IndentedBlock, cst.SimpleStatementSuite)):
                    self._suite(child, scope, inner, loops)


def extract(module: cst.Module) -> FileFacts:
    return _Builder().build(module)


# -- the same facts from Python's own syntax tree ----------------------------------------------------
#
# The engine compiles a file with CPython (``ast``, ~15x cheaper than libcst) before it decides to parse
# it: what program linking reads of a file (its imports, whether its module level runs something, its
# classes, its links) is read from that tree for a file no file-level rule needs, and the file is parsed
# with libcst only when a program that holds it is analysed. Each answer equals the libcst walk's above
# (tested on every fixture, rule example and test snippet, trainlint's sources and the speed corpus).


@dataclass(eq=False)
class LinkFacts:
    """The part of :class:`FileFacts` that program linking reads, from CPython's ``ast``."""

    imports: List[str]
    runs_at_module_level: bool
    classes: Dict[str, None]
    links: Links


def _ast_dotted(node) -> Optional[str]:
    """``a.b.c`` for an ``ast`` Name/Attribute chain, else None (``dotted`` for ``ast``)."""
    import ast

    parts: List[str] = []
    while type(node) is ast.Attribute:
        parts.append(node.attr)
        node = node.value
    if type(node) is not ast.Name:
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _ast_runs(func) -> bool:
    """``_runs`` for ``ast``."""
    import ast

    last = func.attr if type(func) is ast.Attribute else (_ast_dotted(func) or "")
    return last in ("fit", "backward", "main", "run", "train") or last.startswith("train")


def _ast_fills_table(func) -> bool:
    """``_fills_table`` for ``ast``."""
    import ast

    name = _ast_dotted(func) or ""
    last = name.rsplit(".", 1)[-1]
    if name in _TABLE_FUNCTIONS or last.startswith(("register", "_register")):
        return True
    return type(func) is ast.Attribute and last in _TABLE_METHODS


#: ``ast`` node type -> its fields that may hold nodes with something under them.
_AST_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _ast_children(n) -> list:
    """``ast.iter_child_nodes(n)`` as a list, in the same order, less the expression contexts and operators
    (``Load``, ``Add``, ``Eq``: nodes with nothing under them, a fifth of the nodes popped)."""
    import ast

    t = type(n)
    fields = _AST_FIELDS.get(t)
    if fields is None:
        fields = _AST_FIELDS[t] = tuple(f for f in t._fields if f not in ("ctx", "op", "ops"))
    node = ast.AST
    out = []
    for f in fields:
        v = getattr(n, f, None)
        if isinstance(v, node):
            out.append(v)
        elif type(v) is list:
            for x in v:
                if isinstance(x, node):
                    out.append(x)
    return out


def _ast_calls(stmt) -> list:
    """``calls`` for ``ast``: the calls of a statement, not inside lambdas."""
    import ast

    out = []
    stack = [stmt]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is ast.Call:
            out.append(n)
        elif t is ast.Lambda:
            continue
        stack.extend(_ast_children(n))
    return out


def _ast_targets(expr) -> List[str]:
    """The names ``_targets`` binds for an ``ast`` assignment target."""
    import ast

    name = _ast_dotted(expr)
    if name is not None:
        return [name]
    if type(expr) in (ast.Tuple, ast.List):
        out: List[str] = []
        for el in expr.elts:
            out.extend(_ast_targets(el.value if type(el) is ast.Starred else el))
        return out
    return []


def _ast_module_level(body) -> Tuple[bool, set]:
    """(``runs_at_module_level``, the names the module scope assigns) from the module's ``ast`` statements,
    as ``_Builder`` walks them: the module body and the blocks and class bodies in it, not functions."""
    import ast

    runs = False
    assigned: set = set()
    compound = (ast.If, ast.With, ast.AsyncWith, ast.Try, ast.ClassDef, ast.Match) + ((ast.TryStar,) if hasattr(ast, "TryStar") else ())
    stack = [(s, 0) for s in reversed(body)]
    while stack:
        node, loops = stack.pop()
        t = type(node)
        if t in (ast.FunctionDef, ast.AsyncFunctionDef):
            assigned.add(node.name)
            continue
        if t in (ast.For, ast.AsyncFor, ast.While):
            if loops:
                runs = True
            if t is not ast.While:
                assigned.update(_ast_targets(node.target))
            stack.extend((s, loops + 1) for s in reversed(node.body))
            stack.extend((s, loops) for s in reversed(node.orelse))
            continue
        if t in compound:
            if t in (ast.With, ast.AsyncWith):
                for item in node.items:
                    if item.optional_vars is not None:
                        assigned.update(_ast_targets(item.optional_vars))
            inner = []
            if t is ast.Match:
                for case in node.cases:
                    inner.extend(case.body)
            else:
                inner.extend(node.body)
                for handler in getattr(node, "handlers", ()):
                    inner.extend(handler.body)
                inner.extend(getattr(node, "orelse", ()))
                inner.extend(getattr(node, "finalbody", ()))
            stack.extend((s, loops) for s in reversed(inner))
            continue
        # a small statement
        if t is ast.Assign:
            for target in node.targets:
                assigned.update(_ast_targets(target))
        elif t in (ast.AnnAssign, ast.AugAssign):
            assigned.update(_ast_targets(node.target))
        elif t is ast.Expr:
            call = node.value
            if type(call) is ast.Call and type(call.func) is ast.Attribute:
                meth = call.func.attr
                if meth.endswith("_") and not meth.endswith("__"):
                    recv = _ast_dotted(call.func.value)
                    if recv is not None:
                        assigned.add(recv)
        if not runs:
            if t in (ast.Expr, ast.Assign) and type(node.value) is ast.Call and _ast_runs(node.value.func):
                runs = True
            elif loops and any(not _ast_fills_table(c.func) for c in _ast_calls(node)):
                runs = True
    return runs, assigned


def link_facts_from_ast(tree) -> LinkFacts:
    """:class:`LinkFacts` of a file from the ``ast.Module`` CPython compiled it into: ``FileFacts.imports``
    in the order of the file, ``runs_at_module_level`` (``program.is_entry``), the class names and
    ``FileFacts.links``, each equal to what the libcst walk gives."""
    import ast

    imports: List[str] = []
    classes: Dict[str, None] = {}
    froms: List[Tuple[str, str, str]] = []
    modules: List[Tuple[str, str, str]] = []
    stars: List[str] = []
    used: set = set()
    chains: Dict[str, set] = {}
    found_imports = []

    def name(n: str) -> None:
        used.add(n)
        chains.setdefault(n, set()).add("")

    stack: list = [tree]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is ast.Name:
            name(n.id)
            continue
        if t is ast.Attribute:
            d = _ast_dotted(n)
            if d is None:  # ``f(x).y``: what ``f(x)`` reads
                stack.append(n.value)
                continue
            head, _, tail = d.partition(".")
            used.add(head)
            chains.setdefault(head, set()).add(tail)
            continue
        if t is ast.Import or t is ast.ImportFrom:
            found_imports.append(n)
            continue
        if t is ast.Constant:
            if n.value is None or n.value is True or n.value is False:
                name(str(n.value))  # (names in libcst's tree)
            continue
        # the other places libcst's tree holds a Name
        if t in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef):
            name(n.name)
            if t is ast.ClassDef:
                classes.setdefault(n.name)
        elif t is ast.arg:
            name(n.arg)
        elif t is ast.keyword:
            if n.arg is not None:
                name(n.arg)
        elif t in (ast.Global, ast.Nonlocal):
            for x in n.names:
                name(x)
        elif t is ast.ExceptHandler:
            if n.name is not None:
                name(n.name)
        elif t in (ast.MatchAs, ast.MatchStar):
            if n.name is not None:
                name(n.name)
        elif t is ast.MatchMapping:
            if n.rest is not None:
                name(n.rest)
        elif t is ast.MatchClass:
            for x in n.kwd_attrs:
                name(x)
        stack.extend(_ast_children(n))
    found_imports.sort(key=lambda n: (n.lineno, n.col_offset))
    for node in found_imports:
        if type(node) is ast.Import:
            for alias in node.names:
                imports.append(alias.name)
                if alias.asname is not None:
                    modules.append((alias.asname, alias.name, ""))
                else:
                    head, _, sub = alias.name.partition(".")
                    modules.append((head, alias.name, sub))
            continue
        base = "." * (node.level or 0) + (node.module or "")
        imports.append(base)
        if len(node.names) == 1 and node.names[0].name == "*":
            stars.append(base)
            continue
        sep = "" if base.endswith(".") or not base else "."
        for alias in node.names:
            imports.append(f"{base}{sep}{alias.name}")
            froms.append((alias.asname or alias.name, base, alias.name))
    runs, assigned = _ast_module_level(tree.body)
    classes = dict.fromkeys(sorted(classes))
    bound = {x[0] for x in froms} | {x[0] for x in modules}
    defined = {k for k in assigned if "." not in k} | set(classes)
    links = Links(froms, modules, stars, used & bound,
                  {local: {".".join(t.split(".")[:_CHAIN]) for t in chains[local]} for local in bound if local in chains},
                  (used - bound - defined) if stars else (), defined)
    return LinkFacts(imports, runs, classes, links)
