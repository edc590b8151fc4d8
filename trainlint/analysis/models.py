"""Models as facts: nn.Module classes, nn.Sequential stacks, and the order of operations a tensor goes
through when a model is called.

Everything here is computed from the facts pass (``FileFacts``) and the files' import tables; no
torch, no libcst metadata providers. The unit of work is a :class:`ModelWorld` — the files of one
program (or one file alone) — which resolves names across files (``from models.mlp import MLP``) and
memoizes what it computed.

What a model *does* is a **chain**: the ordered list of :class:`Op` a tensor passes through, from the
model's input to its output. A chain is computed for

- ``nn.Sequential(a, b, c)`` (inline, ``*layers`` built from a list with ``append``/``extend``/``+=``,
  ``[block] * 3``, ``OrderedDict`` form, nested Sequentials), ``nn.ModuleList`` iterated in ``forward``;
- an ``nn.Module`` subclass (also through local or imported base classes): its ``forward`` from the
  input parameter to the returned expression, through local variables, ``self.x`` layers set in
  ``__init__``, calls of submodules (recursively), functional ops (``F.relu(x)``, ``torch.sigmoid(x)``),
  tensor methods (``x.relu()``), shape ops (``squeeze/view/flatten``, which keep the last op).

A value may have several chains (``if``/``else`` assignments, several returns): functions return a
list of alternatives; an empty list means "unknown". Residual adds and other arithmetic merge the
chains of both operands and end with an opaque ``"op"`` item, so ``x + self.block(x)`` never ends in an
activation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from trainlint.analysis.facts import Assignment, ClassInfo, FileFacts, Scope, Stmt
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.training import FUNCTIONAL_LOSSES
from trainlint.analysis.syntax import kwarg, number, positional

# -- vocabularies ----------------------------------------------------------------------------------

#: Activation modules -> activation name.
ACT_MODULES = {
    "torch.nn.ReLU": "relu", "torch.nn.ReLU6": "relu6", "torch.nn.Softplus": "softplus",
    "torch.nn.Sigmoid": "sigmoid", "torch.nn.Tanh": "tanh", "torch.nn.Hardtanh": "hardtanh",
    "torch.nn.Hardsigmoid": "hardsigmoid", "torch.nn.Softmax": "softmax", "torch.nn.LogSoftmax": "log_softmax",
}
#: Functional activations -> activation name.
ACT_FUNCS = {
    "torch.nn.functional.relu": "relu", "torch.nn.functional.relu_": "relu", "torch.relu": "relu",
    "torch.relu_": "relu", "torch.nn.functional.relu6": "relu6", "torch.nn.functional.softplus": "softplus",
    "torch.nn.functional.sigmoid": "sigmoid", "torch.sigmoid": "sigmoid", "torch.special.expit": "sigmoid",
    "torch.nn.functional.tanh": "tanh", "torch.tanh": "tanh", "torch.nn.functional.hardtanh": "hardtanh",
    "torch.nn.functional.hardtanh_": "hardtanh", "torch.nn.functional.hardsigmoid": "hardsigmoid",
    "torch.nn.functional.softmax": "softmax", "torch.softmax": "softmax",
    "torch.nn.functional.log_softmax": "log_softmax", "torch.log_softmax": "log_softmax",
}
#: Tensor methods that are activations.
ACT_METHODS = {
    "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh",
    "tanh_": "tanh", "softmax": "softmax", "log_softmax": "log_softmax",
}
DROPOUT_MODULES = {
    "torch.nn.Dropout", "torch.nn.Dropout1d", "torch.nn.Dropout2d", "torch.nn.Dropout3d",
    "torch.nn.AlphaDropout", "torch.nn.FeatureAlphaDropout",
}
DROPOUT_FUNCS = {
    "torch.nn.functional.dropout", "torch.nn.functional.dropout1d", "torch.nn.functional.dropout2d",
    "torch.nn.functional.dropout3d", "torch.nn.functional.alpha_dropout",
    "torch.nn.functional.feature_alpha_dropout", "torch.dropout", "torch.alpha_dropout",
}
BN_MODULES = {
    "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d", "torch.nn.SyncBatchNorm",
    "torch.nn.LazyBatchNorm1d", "torch.nn.LazyBatchNorm2d", "torch.nn.LazyBatchNorm3d",
}
#: Modules that do not change which op "produced" a value (for the last op).
SHAPE_MODULES = {"torch.nn.Flatten", "torch.nn.Unflatten", "torch.nn.Identity"}
#: Tensor methods / torch functions that keep the values of their input (shape, dtype, device).
SHAPE_METHODS = {
    "squeeze", "unsqueeze", "view", "reshape", "flatten", "contiguous", "float", "double", "half", "to",
    "cuda", "cpu", "permute", "transpose", "view_as", "reshape_as", "squeeze_", "unsqueeze_", "type",
    "clone", "bfloat16", "detach",
}
SHAPE_FUNCS = {"torch.squeeze", "torch.unsqueeze", "torch.flatten", "torch.reshape", "torch.permute", "torch.transpose"}
#: Wrappers whose result calls the wrapped model.
WRAPPER_FUNCS = {
    "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.DistributedDataParallel",
    "torch.nn.parallel.DistributedDataParallel", "torch.compile", "torch.jit.script",
}
WRAPPER_METHODS = {"to", "cuda", "cpu", "float", "double", "half", "train", "bfloat16", "to_empty", "requires_grad_"}
MODULE_BASES = {"torch.nn.Module", "lightning.pytorch.LightningModule", "lightning.LightningModule", "lightning.pytorch.core.LightningModule"}

RANGE_OF = {
    "relu": "[0, +inf)", "relu6": "[0, 6]", "softplus": "(0, +inf)", "sigmoid": "(0, 1)", "tanh": "(-1, 1)",
    "hardtanh": "[-1, 1]", "hardsigmoid": "[0, 1]", "softmax": "(0, 1)", "log_softmax": "(-inf, 0]",
}

_MAX_ALTS = 6
_MAX_DEPTH = 14


@dataclass(eq=False)
class FileRef:
    ctx: object  # trainlint.context.FileContext
    path: str  # real path ("" when unknown)

    @property
    def facts(self) -> FileFacts:
        return self.ctx.facts


@dataclass(eq=False)
class Op:
    """One step of a chain."""

    kind: str  # "act" | "dropout" | "bn" | "layer" | "op" (opaque computation)
    label: str  # "nn.ReLU", "F.relu", ".sigmoid()", "nn.Dropout(0.3)"...
    node: cst.CSTNode  # where a person would fix it (Sequential element, forward call, __init__ assignment)
    file: FileRef
    act: Optional[str] = None  # activation name for kind "act"
    model: str = ""  # the model (class / variable) the op belongs to, for messages
    #: Which input of which merge (``torch.cat([a, b])``, ``a + b``, a call with several tensor
    #: arguments) this occurrence came through: ((id of the merge node, input index), ...). Two ops on
    #: different inputs of the same merge are on parallel branches: neither feeds the other.
    branches: Tuple[Tuple[int, int], ...] = ()


def feeds(earlier: Op, later: Op) -> bool:
    """Does ``earlier`` (before ``later`` in a chain) feed ``later``, i.e. are they not on two different
    inputs of one merge?"""
    mine = dict(earlier.branches)
    return not any(mid in mine and mine[mid] != k for mid, k in later.branches)


def _branch(chain: "Chain", merge: cst.CSTNode, index: int) -> "Chain":
    tag = (id(merge), index)
    return tuple(replace(op, branches=op.branches + (tag,)) for op in chain)


Chain = Tuple[Op, ...]


@dataclass(eq=False)
class ClassRef:
    file: FileRef
    info: ClassInfo


@dataclass(eq=False)
class ModelRef:
    """What a call like ``model(x)`` runs: a Module class, an nn.Sequential, or a single layer."""

    kind: str  # "class" | "layer"
    name: str  # for messages
    file: FileRef
    cls: Optional[ClassRef] = None
    expr: Optional[cst.BaseExpression] = None  # the layer expression (kind "layer")
    scope: Optional[Scope] = None
    stmt: Optional[Stmt] = None


def last_meaningful(chain: Sequence[Op]) -> Optional[Op]:
    """The op that produces a chain's values: the last one that is not a dropout (dropout keeps the sign
    and the bounds of its input up to the 1/(1-p) scale)."""
    for op in reversed(chain):
        if op.kind in ("dropout", "shape"):
            continue
        return op
    return None


def _short_q(q: str) -> str:
    if q.startswith("torch.nn.functional."):
        return "F." + q[len("torch.nn.functional."):]
    if q.startswith("torch.nn."):
        return "nn." + q[len("torch.nn."):]
    return q


def _is_false(expr: Optional[cst.BaseExpression]) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"


class ModelWorld:
    """The model facts of a set of files (one program, or one file alone)."""

    def __init__(self, files: Sequence[FileRef]) -> None:
        self.files = list(files)
        self._by_path: Dict[str, FileRef] = {f.path: f for f in self.files if f.path}
        self._class_chains: Dict[int, List[Chain]] = {}
        self._in_progress: set = set()
        self._modules: Dict[Tuple[str, str], Optional[FileRef]] = {}

    @classmethod
    def of_program(cls, program) -> "ModelWorld":
        key = "_tl_model_world"
        world = getattr(program, key, None)
        if world is None:
            world = cls([FileRef(f.ctx, f.path) for f in program.files])
            setattr(program, key, world)
        return world

    @classmethod
    def of_file(cls, ctx) -> "ModelWorld":
        world = getattr(ctx, "_tl_model_world", None)
        if world is None:
            world = cls([FileRef(ctx, os.path.realpath(ctx.path))])
            setattr(ctx, "_tl_model_world", world)
        return world

    def file_of_ctx(self, ctx) -> FileRef:
        for f in self.files:
            if f.ctx is ctx:
                return f
        return self.files[0]

    # -- name resolution ---------------------------------------------------------------------------
    def module_file(self, modname: str, importer: FileRef) -> Optional[FileRef]:
        """The file of the world that ``importer`` means by module ``modname`` (None: a library, or a
        file outside the world)."""
        if not importer.path or len(self._by_path) < 2:
            return None
        key = (modname, importer.path)
        if key not in self._modules:
            from trainlint.analysis.program import resolve_module

            target = resolve_module(modname, importer.path, [])
            self._modules[key] = self._by_path.get(os.path.realpath(target)) if target is not None else None
        return self._modules[key]

    def resolve_global(self, name: str, file: FileRef, depth: int = 0):
        """What a module-level name of ``file`` is: ("class", FileRef, ClassInfo), ("function",
        FileRef, Scope), ("assign", FileRef, [Assignment]), ("q", qualified) or None."""
        if depth > 6:
            return None
        facts = file.facts
        head, _, rest = name.partition(".")
        if not rest:
            if head in facts.classes:
                return ("class", file, facts.classes[head])
            fn = facts.function(head)
            if fn is not None:
                return ("function", file, fn)
            assigns = [a for a in facts.module.assigns.get(head, []) if a.kind == "assign" and a.value is not None]
            if assigns:
                return ("assign", file, assigns)
        q = facts.aliases.qualify_dotted(name)
        if q is None:
            return None
        if q.startswith("torch") or q.startswith("lightning") or q.startswith("pytorch_lightning"):
            return ("q", canonical(q))
        # A project module: `from models.mlp import MLP` -> models.mlp : MLP
        mod, _, attr = q.rpartition(".")
        while mod and mod != ".":
            target = self.module_file(mod, file)
            if target is not None and target is not file:
                return self.resolve_global(attr, target, depth + 1)
            mod, _, last = mod.rpartition(".")
            attr = f"{last}.{attr}"
        return ("q", q)

    def class_bases(self, file: FileRef, info: ClassInfo) -> List[ClassRef]:
        out = []
        for b in info.bases:
            # bases are qualified through imports when possible: re-resolve the local spelling
            local = None
            for arg in info.node.bases:
                if (file.facts.qualify(arg.value) or dotted(arg.value)) == b:
                    local = dotted(arg.value)
            r = self.resolve_global(local or b, file)
            if r is not None and r[0] == "class":
                out.append(ClassRef(r[1], r[2]))
        return out

    def is_module_class(self, ref: ClassRef, depth: int = 0) -> bool:
        if depth > 8:
            return False
        for b in ref.info.bases:
            if canonical(b) in MODULE_BASES or canonical(b).endswith("LightningModule"):
                return True
        return any(self.is_module_class(base, depth + 1) for base in self.class_bases(ref.file, ref.info))

    def method(self, ref: ClassRef, name: str, depth: int = 0) -> Optional[Tuple[ClassRef, Scope]]:
        if depth > 8:
            return None
        if name in ref.info.methods:
            return ref, ref.info.methods[name]
        for base in self.class_bases(ref.file, ref.info):
            found = self.method(base, name, depth + 1)
            if found is not None:
                return found
        return None

    def attribute(self, ref: ClassRef, attr: str, depth: int = 0) -> List[Tuple[ClassRef, Assignment]]:
        """Assignments of ``self.attr`` in the class (``__init__`` first) or its bases."""
        if depth > 8:
            return []
        found = ref.file.facts.attributes.get(ref.info.name, {}).get(attr, [])
        found = [a for a in found if a.kind in ("assign", "aug") and a.value is not None]
        if found:
            init = [a for a in found if a.scope is not None and a.scope.name in ("__init__", "build", "setup", "_build")]
            return [(ref, a) for a in (init or found)]
        for base in self.class_bases(ref.file, ref.info):
            out = self.attribute(base, attr, depth + 1)
            if out:
                return out
        return []

    def enclosing_class(self, file: FileRef, scope: Scope) -> Optional[ClassRef]:
        s = scope
        while s is not None and s.class_name is None:
            s = s.parent
        if s is None or s.class_name not in file.facts.classes:
            return None
        return ClassRef(file, file.facts.classes[s.class_name])

    def defs(self, name: str, file: FileRef, scope: Scope, stmt: Stmt) -> List[Tuple[FileRef, Scope, Assignment]]:
        """Assignments of a dotted name visible at ``stmt`` (local, then self attributes, then module)."""
        found = [a for a in scope.reaching(name, stmt) if a.kind in ("assign", "aug", "with", "for", "inplace")]
        if found:
            return [(file, a.scope or scope, a) for a in found]
        if name.startswith("self."):
            cls = self.enclosing_class(file, scope)
            if cls is not None:
                return [(c.file, a.scope or c.file.facts.module, a) for c, a in self.attribute(cls, name)]
            return []
        s = scope.parent
        while s is not None:
            got = s.assigns.get(name, [])
            got = [a for a in got if a.kind in ("assign", "aug") and a.value is not None]
            if got:
                return [(file, s, a) for a in got]
            s = s.parent
        return []

    # -- models a callee stands for ------------------------------------------------------------------
    def models_of_callee(self, func: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0, bind_params: bool = True) -> List[ModelRef]:
        """The models a call ``func(x)`` may run: ``model``, ``self``, ``self.net``, ``net.module``..."""
        if depth > _MAX_DEPTH:
            return []
        name = dotted(func)
        if isinstance(func, cst.Call):
            return self.models_of_value(func, file, scope, stmt, depth + 1)
        if name is None:
            return []
        if name == "self":
            cls = self.enclosing_class(file, scope)
            if cls is not None and self.is_module_class(cls):
                return [ModelRef("class", cls.info.name, cls.file, cls=cls)]
            return []
        if name.endswith(".forward"):
            return self.models_of_callee(func.value, file, scope, stmt, depth + 1, bind_params)  # type: ignore[attr-defined]
        if name.endswith(".module") or name.endswith("._orig_mod"):  # DDP(model).module
            inner = self.models_of_callee(func.value, file, scope, stmt, depth + 1, bind_params)  # type: ignore[attr-defined]
            if inner:
                return inner
        out: List[ModelRef] = []
        defs = self.defs(name, file, scope, stmt)
        if defs:
            for f, s, a in defs[:_MAX_ALTS]:
                value = assigned_value(a, name)
                if a.kind == "for" or value is None:
                    continue
                out.extend(self.models_of_value(value, f, s, a.stmt, depth + 1))
            return out
        if bind_params and "." not in name and name in scope.params():
            for f, s, st, arg in self.call_sites_binding(file, scope, name):
                out.extend(self.models_of_callee(arg, f, s, st, depth + 1, bind_params) if dotted(arg) else self.models_of_value(arg, f, s, st, depth + 1))
            return out
        if "." not in name:
            g = self.resolve_global(name, file)
            if g is not None and g[0] == "assign":
                for a in g[2][:_MAX_ALTS]:
                    out.extend(self.models_of_value(a.value, g[1], g[1].facts.module, a.stmt, depth + 1))
        return out

    def models_of_value(self, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0) -> List[ModelRef]:
        """The models an expression evaluates to (``Net(...)``, ``nn.Sequential(...)``, ``DDP(net)``,
        ``net.to(device)``, ``build_model(cfg)``...)."""
        if depth > _MAX_DEPTH:
            return []
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self.models_of_callee(expr, file, scope, stmt, depth + 1)
        if not isinstance(expr, cst.Call):
            return []
        func = expr.func
        if isinstance(func, cst.Attribute) and func.attr.value in WRAPPER_METHODS:
            q = file.facts.qualify(func)
            if q is None:
                return self.models_of_value(func.value, file, scope, stmt, depth + 1)
        fname = dotted(func)
        if fname is None:
            return []
        shadowed = [a for a in scope.reaching(fname.split(".")[0], stmt) if a.kind != "def"] if scope is not file.facts.module else []
        g = self.resolve_global(fname, file) if not shadowed else None
        if g is None:
            return []
        if g[0] == "q":
            q = g[1]
            if q in WRAPPER_FUNCS or q.endswith("DistributedDataParallel") or q.endswith("DataParallel"):
                args = positional(expr) or [a.value for a in expr.args if a.keyword is not None and a.keyword.value in ("module", "model")]
                return self.models_of_value(args[0], file, scope, stmt, depth + 1) if args else []
            if q.startswith("torch.nn.") and self.layer_chains(expr, file, scope, stmt):
                return [ModelRef("layer", _short_q(q), file, expr=expr, scope=scope, stmt=stmt)]
            return []
        if g[0] == "class":
            ref = ClassRef(g[1], g[2])
            if self.is_module_class(ref):
                return [ModelRef("class", ref.info.name, ref.file, cls=ref)]
            return []
        if g[0] == "function":  # a factory: what it returns
            fn: Scope = g[2]
            out: List[ModelRef] = []
            for value, rstmt in fn.returns[:_MAX_ALTS]:
                if value is not None:
                    out.extend(self.models_of_value(value, g[1], fn, rstmt, depth + 1))
            return out
        return []

    def call_sites_binding(self, file: FileRef, scope: Scope, param: str, limit: int = 8):
        """(file, scope, stmt, argument expression) for each call of function ``scope`` in the world
        that passes parameter ``param`` (positionally or by keyword)."""
        fn = scope.node
        if not isinstance(fn, cst.FunctionDef) or scope.class_name is not None:
            return []
        params = scope.params()
        try:
            index = params.index(param)
        except ValueError:
            return []
        out = []
        fname = scope.name
        for f in self.files:
            if fname not in f.ctx.source.text:
                continue
            for call, s, st in file_calls(f):
                cname = dotted(call.func)
                if cname is None or cname.rsplit(".", 1)[-1] != fname:
                    continue
                arg = _bound_arg(call, index, param)
                if arg is not None:
                    out.append((f, s, st, arg))
                    if len(out) >= limit:
                        return out
        return out

    # -- chains ----------------------------------------------------------------------------------------
    def model_chains(self, model: ModelRef) -> List[Chain]:
        if model.kind == "class" and model.cls is not None:
            return self.class_chains(model.cls)
        if model.expr is not None:
            return self.layer_chains(model.expr, model.file, model.scope, model.stmt)
        return []

    def class_chains(self, ref: ClassRef) -> List[Chain]:
        """Chains from ``forward``'s input to what it returns (alternatives; [] = unknown)."""
        key = id(ref.info)
        if key in self._class_chains:
            return self._class_chains[key]
        if key in self._in_progress:
            return []
        self._in_progress.add(key)
        try:
            found = self.method(ref, "forward")
            out: List[Chain] = []
            if found is not None:
                cref, fwd = found
                for value, rstmt in fwd.returns:
                    if value is None:
                        continue
                    out.extend(self.value_chains(value, cref.file, fwd, rstmt, cref))
                out = out[:_MAX_ALTS * 2]
                if any(v is None for v, _ in fwd.returns) or not fwd.returns:
                    out = []
        finally:
            self._in_progress.discard(key)
        self._class_chains[key] = out
        return out

    def output_chains(self, ref: ClassRef) -> List[Chain]:
        """Like :meth:`class_chains`, but a tuple/list/dict return contributes the chains of each of its
        elements (for questions about every path, not about "the" output)."""
        found = self.method(ref, "forward")
        if found is None:
            return []
        cref, fwd = found
        out: List[Chain] = []
        for value, rstmt in fwd.returns:
            if value is None:
                continue
            parts = [value]
            if isinstance(value, (cst.Tuple, cst.List)):
                parts = [el.value for el in value.elements]
            elif isinstance(value, cst.Dict):
                parts = [el.value for el in value.elements if isinstance(el, cst.DictElement)]
            for part in parts:
                out.extend(self.value_chains(part, cref.file, fwd, rstmt, cref))
        return out

    def layer_chains(self, expr: cst.BaseExpression, file: FileRef, scope: Optional[Scope], stmt: Optional[Stmt], owner: Optional[ClassRef] = None, depth: int = 0, at: Optional[cst.CSTNode] = None) -> List[Chain]:
        """What calling the module object ``expr`` does. ``at`` is the node to report for a single layer
        (the Sequential element, or the forward call)."""
        if depth > _MAX_DEPTH:
            return []
        scope = scope or file.facts.module
        node = at if at is not None else expr
        if isinstance(expr, (cst.Name, cst.Attribute)):
            name = dotted(expr)
            if name is None:
                return []
            if stmt is None:
                defs = [(file, scope, a) for a in scope.assigns.get(name, []) if a.value is not None]
            elif name.startswith("self.") and owner is not None:
                defs = [(c.file, a.scope or c.file.facts.module, a) for c, a in self.attribute(owner, name)]
            else:
                defs = self.defs(name, file, scope, stmt)
            if not defs and "." not in name:
                g = self.resolve_global(name, file)
                if g is not None and g[0] == "assign":
                    defs = [(g[1], g[1].facts.module, a) for a in g[2]]
            out: List[Chain] = []
            for f, s, a in defs[:_MAX_ALTS]:
                if a.value is None or a.kind not in ("assign",):
                    continue
                out.extend(self.layer_chains(a.value, f, s, a.stmt, owner, depth + 1, at=at if at is not None else a.value))
            return out[:_MAX_ALTS]
        if not isinstance(expr, cst.Call):
            return []
        fname = dotted(expr.func)
        if fname is None:
            return []
        g = self.resolve_global(fname, file)
        if g is None:
            return []
        if g[0] == "q":
            q = g[1]
            if q == "torch.nn.Sequential":
                elements = self.sequential_elements(expr, file, scope, stmt)
                if elements is None:
                    return []
                chains: List[Chain] = [()]
                for el, ef, es, est, el_node in elements:
                    sub = self.layer_chains(el, ef, es, est, owner, depth + 1, at=el_node)
                    if not sub:
                        sub = [(Op("layer", "?", el_node, ef),)]
                    chains = [c + s for c in chains for s in sub][:_MAX_ALTS]
                return chains
            op = self.module_op(q, expr, file, node, scope, stmt)
            return [(op,)] if op is not None else []
        if g[0] == "class":
            ref = ClassRef(g[1], g[2])
            if not self.is_module_class(ref):
                return []
            return self.class_chains(ref)
        if g[0] == "function":
            fn: Scope = g[2]
            out = []
            for value, rstmt in fn.returns[:_MAX_ALTS]:
                if value is not None:
                    out.extend(self.layer_chains(value, g[1], fn, rstmt, None, depth + 1))
            return out
        return []

    def module_op(self, q: str, call: cst.Call, file: FileRef, node: cst.CSTNode, scope: Optional[Scope] = None, stmt: Optional[Stmt] = None) -> Optional[Op]:
        if q in ACT_MODULES:
            return Op("act", _short_q(q), node, file, act=ACT_MODULES[q])
        if q in DROPOUT_MODULES:
            p = positional(call)[0] if positional(call) else kwarg(call, "p")
            pval = number(p)
            if pval is None and p is not None and scope is not None:
                pval = self._fold_int(p, file, scope, stmt)
            if pval == 0.0:
                return Op("layer", _short_q(q), node, file)
            if pval is not None:
                ptxt = f"p={pval:g}"
            else:
                ptxt = f"p={file.ctx.code(p).strip()}" if p is not None else "p=0.5"
            return Op("dropout", f"{_short_q(q)}({ptxt})", node, file)
        if q in BN_MODULES:
            if _is_false(kwarg(call, "track_running_stats")):
                return Op("layer", _short_q(q), node, file)
            return Op("bn", _short_q(q), node, file)
        if q in SHAPE_MODULES:
            return Op("shape", _short_q(q), node, file)
        return Op("layer", _short_q(q), node, file)

    def sequential_elements(self, call: cst.Call, file: FileRef, scope: Scope, stmt: Optional[Stmt]):
        """The elements of ``nn.Sequential(...)`` in order, as (expr, file, scope, stmt, node) tuples,
        or None when they cannot be listed."""
        out = []
        for a in call.args:
            if a.keyword is not None:
                continue
            if a.star == "*":
                items = self.list_items(a.value, file, scope, stmt)
                if items is None:
                    return None
                out.extend((e, file, s, st, e) for e, s, st in items)
            elif a.star == "":
                v = a.value
                if isinstance(v, cst.Call) and (dotted(v.func) or "").endswith("OrderedDict"):
                    pairs = positional(v)
                    if not pairs or not isinstance(pairs[0], (cst.List, cst.Tuple)):
                        return None
                    for el in pairs[0].elements:
                        if isinstance(el.value, cst.Tuple) and len(el.value.elements) == 2:
                            e = el.value.elements[1].value
                            out.append((e, file, scope, stmt, e))
                        else:
                            return None
                else:
                    out.append((v, file, scope, stmt, v))
            else:
                return None
        return out

    def list_items(self, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int = 0):
        """Elements of a list of layers, in order, as (expr, scope, stmt); None when unknown."""
        if depth > 6:
            return None
        if isinstance(expr, (cst.List, cst.Tuple)):
            out = []
            for el in expr.elements:
                if isinstance(el, cst.StarredElement):
                    sub = self.list_items(el.value, file, scope, stmt, depth + 1)
                    if sub is None:
                        return None
                    out.extend(sub)
                else:
                    out.append((el.value, scope, stmt))
            return out
        if isinstance(expr, cst.BinaryOperation):
            if isinstance(expr.operator, cst.Add):
                left = self.list_items(expr.left, file, scope, stmt, depth + 1)
                right = self.list_items(expr.right, file, scope, stmt, depth + 1)
                return None if left is None or right is None else left + right
            if isinstance(expr.operator, cst.Multiply):
                lst, n = expr.left, expr.right
                k = self._fold_int(n, file, scope, stmt)
                if k is None:
                    lst, n = n, lst
                    k = self._fold_int(n, file, scope, stmt)
                items = self.list_items(lst, file, scope, stmt, depth + 1) if k is not None else None
                if items is None or k is None:
                    return None
                return items * int(min(max(k, 1), 3))
            return None
        if isinstance(expr, cst.ListComp):
            n = self.loop_count_of(expr.for_in.iter, file, scope, stmt)
            if n is None or expr.for_in.inner_for_in is not None:
                return None
            return [(expr.elt, scope, stmt)] * int(min(n, 3))
        if isinstance(expr, cst.Call):
            fname = dotted(expr.func)
            if fname in ("list", "tuple") and positional(expr):
                return self.list_items(positional(expr)[0], file, scope, stmt, depth + 1)
            g = self.resolve_global(fname, file) if fname else None
            if g is not None and g[0] == "function":
                fn: Scope = g[2]
                if len(fn.returns) == 1 and fn.returns[0][0] is not None:
                    value, rstmt = fn.returns[0]
                    return self.list_items(value, g[1], fn, rstmt, depth + 1)
            return None
        name = dotted(expr)
        if name is None or stmt is None:
            return None
        defs = [a for a in scope.reaching(name, stmt) if a.kind == "assign"]
        if len(defs) != 1 or defs[0].value is None:
            return None
        base = defs[0]
        items = self.list_items(base.value, file, scope, base.stmt, depth + 1)
        if items is None:
            return None
        # appends, extends and += between the assignment and the use, in order
        loop_ids_base = {id(l) for l in base.stmt.loops}
        for st in scope.stmts:
            if st.index <= base.stmt.index or st.index >= stmt.index:
                continue
            added = self._list_growth(st, name, file, scope, depth)
            if added is None:
                continue
            if added == "unknown":
                return None
            extra_loops = [l for l in st.loops if id(l) not in loop_ids_base]
            if extra_loops:
                n = 1
                for l in extra_loops:
                    c = self.loop_count_of(l.iter, file, scope, st) if isinstance(l, cst.For) else None
                    n *= 2 if (c is not None and c >= 2) else 1
                added = added * n
            items.extend(added)
        return items

    def _list_growth(self, st: Stmt, name: str, file: FileRef, scope: Scope, depth: int):
        node = st.node
        if isinstance(node, cst.Expr) and isinstance(node.value, cst.Call):
            call = node.value
            f = call.func
            if isinstance(f, cst.Attribute) and dotted(f.value) == name:
                if f.attr.value == "append" and positional(call):
                    return [(positional(call)[0], scope, st)]
                if f.attr.value == "extend" and positional(call):
                    got = self.list_items(positional(call)[0], file, scope, st, depth + 1)
                    return got if got is not None else "unknown"
                if f.attr.value == "insert":
                    return "unknown"
            return None
        if isinstance(node, cst.AugAssign) and dotted(node.target) == name:
            got = self.list_items(node.value, file, scope, st, depth + 1)
            return got if got is not None else "unknown"
        if isinstance(node, cst.Assign) and any(dotted(t.target) == name for t in node.targets):
            return "unknown"  # rebinding in between: give up
        return None

    def loop_count_of(self, it: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int = 0) -> Optional[int]:
        """How many times a ``for`` over ``it`` iterates, when it can be folded."""
        if depth > 4:
            return None
        if isinstance(it, (cst.List, cst.Tuple)):
            if any(isinstance(e, cst.StarredElement) for e in it.elements):
                return None
            return len(it.elements)
        if isinstance(it, cst.Call):
            fname = dotted(it.func)
            args = positional(it)
            if fname == "range" and args:
                nums = [self._fold_int(a, file, scope, stmt) for a in args[:2]]
                if any(n is None for n in nums):
                    return None
                return max(0, int(nums[0])) if len(nums) == 1 else max(0, int(nums[1] - nums[0]))
            if fname in ("enumerate", "reversed", "list", "tuple") and args:
                return self.loop_count_of(args[0], file, scope, stmt, depth + 1)
            if fname == "zip" and args:
                counts = [self.loop_count_of(a, file, scope, stmt, depth + 1) for a in args]
                return None if any(c is None for c in counts) else min(counts)  # type: ignore[type-var]
            return None
        name = dotted(it)
        if name is None:
            return None
        value = self._fold_value(name, file, scope, stmt)
        if value is not None:
            return self.loop_count_of(value, file, scope, None, depth + 1)
        return None

    def _fold_value(self, name: str, file: FileRef, scope: Scope, stmt: Optional[Stmt]) -> Optional[cst.BaseExpression]:
        if stmt is not None:
            defs = [a for a in scope.reaching(name, stmt) if a.kind == "assign"]
            if len(defs) == 1 and defs[0].value is not None:
                return defs[0].value
            if defs:
                return None
        if "." not in name and isinstance(scope.node, cst.FunctionDef):
            p = scope.node.params
            for param in (*p.params, *p.kwonly_params):
                if param.name.value == name and param.default is not None:
                    return param.default
        if "." not in name:
            g = self.resolve_global(name, file)
            if g is not None and g[0] == "assign" and len(g[2]) == 1:
                return g[2][0].value
        return None

    def _fold_int(self, expr, file, scope, stmt) -> Optional[float]:
        n = number(expr)
        if n is not None:
            return n
        name = dotted(expr)
        if name is None:
            return None
        v = self._fold_value(name, file, scope, stmt)
        return number(v) if v is not None else None

    # -- forward ---------------------------------------------------------------------------------------
    def value_chains(self, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, owner: Optional[ClassRef], depth: int = 0) -> List[Chain]:
        """Chains that produce the tensor ``expr`` inside a forward (from the forward's inputs)."""
        if depth > 30:
            return []
        facts = file.facts
        if isinstance(expr, cst.Call):
            func = expr.func
            q = facts.qualify(func)
            qc = canonical(q) if q else None
            pos = positional(expr)
            if qc in ACT_FUNCS:
                if not pos:
                    return []
                op = Op("act", _short_q(qc), expr, file, act=ACT_FUNCS[qc])
                return [c + (op,) for c in self.value_chains(pos[0], file, scope, stmt, owner, depth + 1)] or [(op,)]
            if qc in DROPOUT_FUNCS:
                if not pos:
                    return []
                inner = self.value_chains(pos[0], file, scope, stmt, owner, depth + 1) or [()]
                p = pos[1] if len(pos) > 1 else kwarg(expr, "p")
                training = pos[2] if len(pos) > 2 else kwarg(expr, "training")
                if number(p) == 0.0 or _is_false(training):
                    return inner
                ptxt = f"p={file.ctx.code(p).strip()}" if p is not None else "p=0.5"
                op = Op("dropout", f"{_short_q(qc)}({ptxt})", expr, file)
                return [c + (op,) for c in inner]
            if qc in SHAPE_FUNCS and pos:
                return self.value_chains(pos[0], file, scope, stmt, owner, depth + 1)
            if isinstance(func, cst.Attribute) and q is None:
                meth = func.attr.value
                recv = func.value
                if meth in ACT_METHODS and dotted(recv) != "self":  # self.softmax(x) calls a module
                    op = Op("act", f".{meth}()", expr, file, act=ACT_METHODS[meth])
                    return [c + (op,) for c in self.value_chains(recv, file, scope, stmt, owner, depth + 1)] or [(op,)]
                if meth in SHAPE_METHODS and not (dotted(recv) or "").startswith("self."):
                    return self.value_chains(recv, file, scope, stmt, owner, depth + 1)
                if meth == "forward":
                    func = recv
            # a submodule or a layer object: self.fc(x), self.head(x), layer(x), nn.ReLU()(x)
            sub = self._callee_chains(func, expr, file, scope, stmt, owner, depth)
            if sub is not None:
                inputs = self._inputs_chains(pos, file, scope, stmt, owner, depth, merge=expr)
                return [c + s for c in inputs for s in sub][:_MAX_ALTS]
            # opaque: torch.cat([a, b]), helper(x), x.mean(1), x * 2...
            return [c + (Op("op", "op", expr, file),) for c in self._inputs_chains(_tensor_args(expr), file, scope, stmt, owner, depth, merge=expr)][:_MAX_ALTS]
        if isinstance(expr, cst.BinaryOperation):
            left = self.value_chains(expr.left, file, scope, stmt, owner, depth + 1) or [()]
            right = self.value_chains(expr.right, file, scope, stmt, owner, depth + 1) or [()]
            return [_branch(a, expr, 0) + _branch(b, expr, 1) + (Op("op", "op", expr, file),) for a in left for b in right][:_MAX_ALTS]
        if isinstance(expr, cst.UnaryOperation):
            return [c + (Op("op", "op", expr, file),) for c in self.value_chains(expr.expression, file, scope, stmt, owner, depth + 1) or [()]]
        if isinstance(expr, cst.Subscript):
            return self.value_chains(expr.value, file, scope, stmt, owner, depth + 1)
        if isinstance(expr, cst.IfExp):
            return (self.value_chains(expr.body, file, scope, stmt, owner, depth + 1) + self.value_chains(expr.orelse, file, scope, stmt, owner, depth + 1))[:_MAX_ALTS]
        if isinstance(expr, (cst.Tuple, cst.List, cst.Dict)):
            return []
        name = dotted(expr)
        if name is None:
            return []
        if "." not in name and name in scope.params():
            reaching = scope.reaching(name, stmt)
            if not reaching:
                return [()]  # the input
        defs = scope.reaching(name, stmt)
        out: List[Chain] = []
        for a in defs[:_MAX_ALTS]:
            if a.kind == "inplace" and isinstance(a.value, cst.Call):
                out.extend(self.value_chains(a.value, file, scope, a.stmt, owner, depth + 1))
            elif a.kind == "assign" and a.value is not None:
                out.extend(self.value_chains(a.value, file, scope, a.stmt, owner, depth + 1))
            elif a.kind == "aug" and a.value is not None:
                old = self.value_chains(expr, file, scope, a.stmt, owner, depth + 1) or [()]
                new = self.value_chains(a.value, file, scope, a.stmt, owner, depth + 1) or [()]
                merge = a.node or a.value
                out.extend(_branch(o, merge, 0) + _branch(n, merge, 1) + (Op("op", "op", merge, file),) for o in old for n in new)
            elif a.kind == "assign" and a.value is None and isinstance(a.node, cst.Assign):
                # unpacking: `out, hidden = self.lstm(x)` -> the call's chains end in an opaque op
                out.extend(c + (Op("op", "op", a.node, file),) for c in self.value_chains(a.node.value, file, scope, a.stmt, owner, depth + 1) or [()])
            else:
                return []
        return out[:_MAX_ALTS]

    def _inputs_chains(self, args, file, scope, stmt, owner, depth, merge: Optional[cst.CSTNode] = None) -> List[Chain]:
        """Chains of the inputs of one operation, concatenated; with several inputs each one is
        marked as a parallel branch of ``merge``."""
        subs = []
        for a in args[:4]:
            sub = self.value_chains(a, file, scope, stmt, owner, depth + 1)
            if sub:
                subs.append(sub)
        chains: List[Chain] = [()]
        for k, sub in enumerate(subs):
            if len(subs) > 1 and merge is not None:
                sub = [_branch(c, merge, k) for c in sub]
            chains = [c + s for c in chains for s in sub][:_MAX_ALTS]
        return chains

    def _callee_chains(self, func, call, file: FileRef, scope: Scope, stmt: Stmt, owner: Optional[ClassRef], depth: int) -> Optional[List[Chain]]:
        """Chains of calling a module object in forward; None when ``func`` is not a module."""
        if isinstance(func, cst.Call):  # nn.ReLU()(x)
            sub = self.layer_chains(func, file, scope, None, owner, 0, at=call)
            return sub or None
        name = dotted(func)
        if name is None:
            if isinstance(func, cst.Subscript):  # self.layers[-1](x)
                return None
            return None
        if name.startswith("self.") and owner is not None:
            attrs = self.attribute(owner, name)
            if not attrs:
                return None
            out: List[Chain] = []
            for c, a in attrs[:_MAX_ALTS]:
                s = a.scope or c.file.facts.module
                sub = self.layer_chains(a.value, c.file, s, a.stmt, c, 0, at=call if not _is_container(a.value, c.file) else None)
                if not sub:
                    return None
                out.extend(sub)
            return out[:_MAX_ALTS]
        if "." not in name:
            defs = scope.reaching(name, stmt)
            if len(defs) == 1 and defs[0].kind == "for" and isinstance(defs[0].node, cst.For):
                it = defs[0].node.iter
                # for layer in self.layers: x = layer(x)  -> every element, in order
                if isinstance(it, cst.Call) and dotted(it.func) == "enumerate":
                    return None
                it_name = dotted(it)
                if it_name and it_name.startswith("self.") and owner is not None:
                    attrs = self.attribute(owner, it_name)
                    if len(attrs) == 1:
                        c, a = attrs[0]
                        items = self._container_items(a.value, c.file, a.scope or c.file.facts.module, a.stmt)
                        if items:
                            chains: List[Chain] = [()]
                            for e, s, st in items:
                                sub = self.layer_chains(e, c.file, s, st, c, 0, at=e)
                                if not sub:
                                    return None
                                chains = [x + y for x in chains for y in sub][:_MAX_ALTS]
                            return chains
                return None
            if defs and all(d.kind == "assign" and d.value is not None for d in defs):
                out = []
                for d in defs:
                    sub = self.layer_chains(d.value, file, scope, d.stmt, owner, 0, at=call)
                    if not sub:
                        return None
                    out.extend(sub)
                return out
            if not defs:
                g = self.resolve_global(name, file)
                if g is not None and g[0] == "assign":
                    sub = self.layer_chains(func, file, file.facts.module, None, owner, 0, at=call)
                    return sub or None
        return None

    def _container_items(self, value, file, scope, stmt):
        """Elements of nn.ModuleList([...]) / nn.Sequential(...) as (expr, scope, stmt)."""
        if not isinstance(value, cst.Call):
            return None
        q = file.facts.qualify(value.func)
        if q is None:
            return None
        q = canonical(q)
        if q == "torch.nn.ModuleList" and positional(value):
            return self.list_items(positional(value)[0], file, scope, stmt)
        if q == "torch.nn.Sequential":
            els = self.sequential_elements(value, file, scope, stmt)
            return None if els is None else [(e, s, st) for e, _, s, st, _ in els]
        return None


def assigned_value(a: Assignment, name: str) -> Optional[cst.BaseExpression]:
    """The value bound to ``name`` by ``a``, also for parallel assignment ``G, D = Gen(), Disc()``."""
    if a.value is not None:
        return a.value
    node = a.node
    if isinstance(node, cst.Assign) and isinstance(node.value, (cst.Tuple, cst.List)):
        for t in node.targets:
            tgt = t.target
            if isinstance(tgt, (cst.Tuple, cst.List)) and len(tgt.elements) == len(node.value.elements):
                for el, val in zip(tgt.elements, node.value.elements):
                    if dotted(el.value) == name and not isinstance(el, cst.StarredElement) and not isinstance(val, cst.StarredElement):
                        return val.value
    return None


def _is_container(value, file: FileRef) -> bool:
    if not isinstance(value, cst.Call):
        return False
    q = file.facts.qualify(value.func)
    return q is not None and canonical(q) in ("torch.nn.Sequential", "torch.nn.ModuleList")


def _tensor_args(call: cst.Call) -> List[cst.BaseExpression]:
    out = []
    if isinstance(call.func, cst.Attribute) and dotted(call.func.value) is not None and not (dotted(call.func.value) or "").startswith("self"):
        out.append(call.func.value)
    for a in call.args:
        if a.keyword is None and a.star == "":
            v = a.value
            if isinstance(v, (cst.List, cst.Tuple)):
                out.extend(el.value for el in v.elements)
            elif isinstance(v, (cst.Name, cst.Attribute, cst.Call, cst.BinaryOperation, cst.Subscript)):
                out.append(v)
    return out


_SKIP_FIELDS = {"lpar", "rpar", "comma", "semicolon", "dot", "equal", "colon", "whitespace_before", "whitespace_after",
                "whitespace_after_func", "whitespace_before_args", "whitespace_after_star", "whitespace_after_arg",
                "leading_lines", "trailing_whitespace", "header", "footer", "lbracket", "rbracket", "lbrace", "rbrace",
                "operator", "whitespace_before_equal", "whitespace_after_equal", "whitespace_after_param"}
_STOP = (cst.Lambda, cst.FunctionDef, cst.ClassDef, cst.IndentedBlock, cst.BaseString, cst.Integer, cst.Float, cst.Name)


def _calls_in(node: cst.CSTNode):
    """Calls inside a statement, outermost first, without entering nested defs or lambdas. Walks the
    dataclass fields directly: libcst's ``children`` rebuilds nodes and costs ~10x more."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.Call):
            yield n
        if n is not node and isinstance(n, _STOP):
            continue
        kids = []
        for name in _code_fields(type(n)):
            v = getattr(n, name)
            if isinstance(v, cst.CSTNode):
                kids.append(v)
            elif isinstance(v, (list, tuple)):
                kids.extend(x for x in v if isinstance(x, cst.CSTNode))
        stack.extend(reversed(kids))


_CODE_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _code_fields(cls: type) -> Tuple[str, ...]:
    """The fields of a node class that may hold code (computed once per class)."""
    names = _CODE_FIELDS.get(cls)
    if names is None:
        names = tuple(n for n in cls.__dataclass_fields__ if n not in _SKIP_FIELDS and not n.startswith("whitespace"))  # type: ignore[attr-defined]
        _CODE_FIELDS[cls] = names
    return names


def file_calls(file: FileRef) -> List[Tuple[cst.Call, Scope, Stmt]]:
    """Every call of a file with its scope and statement (memoized on the file's facts)."""
    facts = file.facts
    cached = getattr(facts, "_tl_calls", None)
    if cached is None:
        cached = []
        for scope in facts.scopes():
            for st in scope.stmts:
                if isinstance(st.node, (cst.FunctionDef, cst.ClassDef, cst.For, cst.While, cst.If, cst.Try, cst.With)):
                    if isinstance(st.node, (cst.For, cst.While, cst.If, cst.With)):
                        head = st.node.iter if isinstance(st.node, cst.For) else getattr(st.node, "test", None)
                        if head is not None:
                            cached.extend((c, scope, st) for c in _calls_in(head))
                    continue
                cached.extend((c, scope, st) for c in _calls_in(st.node))
        facts._tl_calls = cached  # type: ignore[attr-defined]
    return cached


def _bound_arg(call: cst.Call, index: int, param: str) -> Optional[cst.BaseExpression]:
    for a in call.args:
        if a.keyword is not None and a.keyword.value == param:
            return a.value
    pos = [a for a in call.args if a.keyword is None]
    if any(a.star for a in pos[: index + 1]):
        return None
    if index < len(pos):
        return pos[index].value
    return None


def iter_calls(node: cst.CSTNode):
    """Calls inside a statement (not into nested defs)."""
    return _calls_in(node)


def sequential_calls(file: FileRef):
    """Every ``nn.Sequential(...)`` call of a file with its scope and statement."""
    if "Sequential" not in file.ctx.source.text:
        return
    facts = file.facts
    for call, scope, st in file_calls(file):
        q = facts.qualify(call.func)
        if q is not None and canonical(q) == "torch.nn.Sequential":
            yield call, scope, st


def module_classes(world: ModelWorld, file: FileRef):
    for info in file.facts.classes.values():
        ref = ClassRef(file, info)
        if world.is_module_class(ref):
            yield ref



# -- linking model outputs to losses ------------------------------------------------------------------

@dataclass(eq=False)
class LossCall:
    call: cst.Call
    loss: str  # canonical qualified name: "torch.nn.MSELoss", "torch.nn.functional.mse_loss"
    file: FileRef
    scope: Scope
    stmt: Stmt
    defined_at: Optional[cst.CSTNode] = None  # the criterion construction (nn.MSELoss()), if any
    ctor: Optional[cst.Call] = None

    @property
    def label(self) -> str:
        return _short_q(self.loss)

    def argument(self, index: int, *names: str) -> Optional[cst.BaseExpression]:
        for a in self.call.args:
            if a.keyword is not None and a.keyword.value in names:
                return a.value
        pos = [a for a in self.call.args if a.keyword is None]
        if any(a.star for a in pos[: index + 1]):
            return None
        return pos[index].value if index < len(pos) else None


def _loss_q(q: Optional[str]) -> Optional[str]:
    if q is None:
        return None
    q = canonical(q)
    if q.startswith("torch.nn.functional.") and q.rsplit(".", 1)[1] in FUNCTIONAL_LOSSES:
        return q
    if q.startswith("torch.nn.") and q.endswith("Loss"):
        return q
    return None


def loss_calls(world: ModelWorld, file: FileRef, wanted: Optional[set] = None, min_args: int = 0):
    """Every call of a torch loss in ``file``: functional (``F.mse_loss(...)``), inline
    (``nn.MSELoss()(...)``) or through a criterion object (``criterion = nn.MSELoss()`` local, module-level,
    ``self.criterion``, a parameter bound at the call sites, or imported from another file).
    ``min_args`` skips calls with fewer arguments cheaply (a loss call has an input and a target)."""
    for call, scope, st in file_calls(file):
        if min_args and len(call.args) < min_args:
            continue
        found = _loss_of_callee(world, call.func, file, scope, st)
        if found is None:
            continue
        q, ctor, cfile = found
        if wanted is not None and q not in wanted:
            continue
        yield LossCall(call, q, file, scope, st, ctor, ctor)


def _loss_of_callee(world: ModelWorld, func, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0):
    if depth > 6:
        return None
    facts = file.facts
    if isinstance(func, cst.Call):  # nn.MSELoss()(pred, y)
        q = _loss_q(facts.qualify(func.func))
        return (q, func, file) if q and not q.startswith("torch.nn.functional.") else None
    name = dotted(func)
    if name is None:
        return None
    q = facts.qualify(func)
    if q is not None:
        lq = _loss_q(q)
        if lq is not None and lq.startswith("torch.nn.functional."):
            return (lq, None, file)
        if q.startswith("torch"):
            return None
    defs = world.defs(name, file, scope, stmt)
    if defs:
        results = []
        for f, s, a in defs[:4]:
            v = a.value
            if isinstance(v, cst.Call):
                lq = _loss_q(f.facts.qualify(v.func))
                if lq and not lq.startswith("torch.nn.functional."):
                    results.append((lq, v, f))
                    continue
            elif v is not None and dotted(v) is not None:  # loss_fn = F.mse_loss / criterion = other
                lq = _loss_q(f.facts.qualify(v))
                if lq and lq.startswith("torch.nn.functional."):
                    results.append((lq, None, f))
                    continue
                got = _loss_of_callee(world, v, f, s, a.stmt, depth + 1)
                if got is not None:
                    results.append(got)
                    continue
            return None
        if results and all(r[0] == results[0][0] for r in results):
            return results[0]
        return None
    if "." not in name and name in scope.params():
        sites = world.call_sites_binding(file, scope, name)
        results = []
        for f, s, st, arg in sites:
            got = _loss_of_callee(world, arg, f, s, st, depth + 1)
            if got is None:
                return None
            results.append(got)
        if results and all(r[0] == results[0][0] for r in results):
            return results[0]
        return None
    if "." not in name:
        g = world.resolve_global(name, file)
        if g is not None and g[0] == "assign" and len(g[2]) == 1:
            a = g[2][0]
            if isinstance(a.value, cst.Call):
                lq = _loss_q(g[1].facts.qualify(a.value.func))
                if lq and not lq.startswith("torch.nn.functional."):
                    return (lq, a.value, g[1])
    return None


@dataclass(eq=False)
class PredSource:
    """A model call whose output reaches a loss argument, and the ops applied to it on the way."""

    call: cst.Call  # model(x)
    models: List[ModelRef]
    after: Tuple[Op, ...]  # activations applied between the model call and the loss (sigmoid(model(x)))
    file: FileRef
    scope: Scope
    stmt: Stmt


def prediction_sources(world: ModelWorld, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0, after: Tuple[Op, ...] = ()) -> List[PredSource]:
    """The model calls a loss argument flows from, through local variables, shape ops
    (``.squeeze()``, ``.view(-1)``, ``[:, 0]``) and activations. Arithmetic stops the trace
    (``pred * std + mean`` is not the model's raw output)."""
    if depth > 12:
        return []
    facts = file.facts
    if isinstance(expr, cst.Subscript):
        return prediction_sources(world, expr.value, file, scope, stmt, depth + 1, after)
    if isinstance(expr, cst.Call):
        func = expr.func
        q = facts.qualify(func)
        qc = canonical(q) if q else None
        pos = positional(expr)
        if qc in ACT_FUNCS and pos:
            op = Op("act", _short_q(qc), expr, file, act=ACT_FUNCS[qc])
            return prediction_sources(world, pos[0], file, scope, stmt, depth + 1, (op,) + after)
        if qc in SHAPE_FUNCS and pos:
            return prediction_sources(world, pos[0], file, scope, stmt, depth + 1, after)
        if isinstance(func, cst.Attribute) and q is None:
            meth = func.attr.value
            if meth in ACT_METHODS:
                op = Op("act", f".{meth}()", expr, file, act=ACT_METHODS[meth])
                return prediction_sources(world, func.value, file, scope, stmt, depth + 1, (op,) + after)
            if meth in SHAPE_METHODS:
                return prediction_sources(world, func.value, file, scope, stmt, depth + 1, after)
        if q is not None and q.startswith("torch"):
            return []
        models = world.models_of_callee(func, file, scope, stmt)
        if models:
            return [PredSource(expr, models, after, file, scope, stmt)]
        return []
    name = dotted(expr)
    if name is None:
        return []
    out: List[PredSource] = []
    for a in scope.reaching(name, stmt)[:_MAX_ALTS]:
        if a.kind in ("assign", "inplace") and a.value is not None:
            out.extend(prediction_sources(world, a.value, file, a.scope or scope, a.stmt, depth + 1, after))
    return out


# -- what produced a value: the activation a loss argument comes out of (TL103) ------------------------

@dataclass(eq=False)
class Origin:
    """One way the value of an expression may have been produced, seen through local variables, shape
    ops (``.view``, ``.squeeze``, ``[:, -1]``), model calls (down to the model's last op) and helper
    functions.

    ``kind`` is ``"act"`` (an activation produced it: ``op``), ``"other"`` (a layer, arithmetic, a torch
    function such as ``torch.log``) or ``"unknown"`` (a loop variable, an attribute of an unknown object,
    a library model). ``model`` names the model whose last op ``op`` is ("" when the activation is
    applied in the calling code: ``F.softmax(model(x), 1)``)."""

    kind: str
    op: Optional[Op] = None
    model: str = ""
    model_call: Optional[cst.Call] = None  # the model call the value comes out of, if any
    #: the model's chain up to ``op`` (kind "act" through a model), or the whole chain (kind "other")
    chain: Tuple[Op, ...] = ()


def value_origins(world: ModelWorld, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0) -> List[Origin]:
    """The alternatives of what produced ``expr`` at ``stmt`` (never empty: unknown is an Origin).

    Unlike :func:`prediction_sources`, an activation is found even when the model is not known
    (``logits = timm.create_model(...)(x); probs = logits.softmax(-1)``), and a model's own last op is
    reported when the value comes straight out of a model call. Parameters are followed to the call
    sites of their function (``def compute_loss(out, y): return F.cross_entropy(out, y)``), calls of
    module-level helpers to what they return."""
    if depth > 14:
        return [Origin("unknown")]
    facts = file.facts
    if isinstance(expr, cst.Subscript):
        return value_origins(world, expr.value, file, scope, stmt, depth + 1)
    if isinstance(expr, cst.Call):
        func = expr.func
        q = facts.qualify(func)
        qc = canonical(q) if q else None
        pos = positional(expr)
        if qc in ACT_FUNCS and (pos or kwarg(expr, "input") is not None):
            return [Origin("act", Op("act", _short_q(qc), expr, file, act=ACT_FUNCS[qc]))]
        if qc in SHAPE_FUNCS and pos:
            return value_origins(world, pos[0], file, scope, stmt, depth + 1)
        if isinstance(func, cst.Attribute) and q is None:
            meth = func.attr.value
            if meth in ACT_METHODS and dotted(func.value) != "self":  # self.softmax(x): a module
                return [Origin("act", Op("act", f".{meth}()", expr, file, act=ACT_METHODS[meth]))]
            if meth in SHAPE_METHODS:
                return value_origins(world, func.value, file, scope, stmt, depth + 1)
        if q is not None and q.startswith("torch"):
            return [Origin("other")]
        models = world.models_of_callee(func, file, scope, stmt)
        if models:
            out: List[Origin] = []
            if _some_def_unresolved(world, func, file, scope, stmt):
                out.append(Origin("unknown"))  # `net = A() if x else B()` where B cannot be followed
            for model in models[:_MAX_ALTS]:
                chains = world.model_chains(model)
                if not chains:
                    out.append(Origin("unknown", model=model.name, model_call=expr))
                    continue
                name = model.name if model.kind == "class" else (dotted(func) or model.name)
                for chain in chains:
                    last = last_meaningful(chain)
                    if last is not None and last.kind == "layer" and model.cls is not None:
                        # self.backbone = models.resnet18(); self.backbone.fc = nn.Sequential(..., nn.Softmax(1))
                        head = _library_head_chains(world, model.cls, last)
                        if head:
                            out.extend(_chain_origin(c, name, expr) for c in head)
                            continue
                    if last is None or last.kind != "act":
                        out.append(Origin("other", model=name, model_call=expr, chain=tuple(chain)))
                        continue
                    if model.kind == "layer" and len([o for o in chain if o.kind not in ("dropout", "shape")]) == 1:
                        # a lone activation module applied here (self.softmax(logits)): report the call
                        out.append(Origin("act", replace(last, node=expr, label=f"{dotted(func) or last.label} ({last.label})")))
                        continue
                    out.append(Origin("act", last, model=name, model_call=expr, chain=tuple(chain[: chain.index(last)])))
            return out
        fname = dotted(func)
        head = _replaced_head_origins(world, func, file, scope, stmt, expr)
        if head:
            return head
        if fname is not None and "." not in fname and not scope.reaching(fname, stmt):
            g = world.resolve_global(fname, file)
            if g is not None and g[0] == "function":
                fn: Scope = g[2]
                rets = [(v, s) for v, s in fn.returns if v is not None]
                if rets and len(rets) == len(fn.returns):
                    out = []
                    for value, rstmt in rets[:_MAX_ALTS]:
                        out.extend(value_origins(world, value, g[1], fn, rstmt, depth + 1))
                    return out
        return [Origin("unknown")]
    if isinstance(expr, (cst.Name, cst.Attribute)):
        name = dotted(expr)
        if name is None:
            return [Origin("unknown")]
        defs = scope.reaching(name, stmt)
        if defs:
            out = []
            for a in defs[:_MAX_ALTS]:
                if a.kind in ("assign", "inplace") and a.value is not None:
                    out.extend(value_origins(world, a.value, file, a.scope or scope, a.stmt, depth + 1))
                else:
                    out.append(Origin("unknown"))
            return out
        if "." not in name and name in scope.params():
            sites = world.call_sites_binding(file, scope, name, limit=6)
            if not sites:
                return [Origin("unknown")]
            out = []
            for f, s, st, arg in sites:
                out.extend(value_origins(world, arg, f, s, st, depth + 1))
            return out
        return [Origin("unknown")]
    if isinstance(expr, cst.IfExp):
        return value_origins(world, expr.body, file, scope, stmt, depth + 1) + value_origins(world, expr.orelse, file, scope, stmt, depth + 1)
    return [Origin("other")]


# -- evaluation-only code -------------------------------------------------------------------------------

_EVAL_FUNC = re.compile(
    r"^(validation_step|test_step|predict_step|on_validation\w*|on_test\w*|_?eval\w*|_?valid\w*|_?val(_\w+)?|_?test\w*|"
    r"_?predict\w*|_?infer\w*|_?inference\w*|_?score\w*)$",
    re.I,
)
_NO_GRAD = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.grad_mode.no_grad"}


def in_eval_only_code(file: FileRef, scope: Scope, stmt: Stmt) -> Optional[str]:
    """Why the statement runs only for evaluation, or None: inside ``with torch.no_grad()`` /
    ``torch.inference_mode()`` / ``torch.set_grad_enabled(False)``, or in a function named like an
    evaluation (``evaluate``, ``validate``, ``test``, ``predict``, Lightning's ``validation_step``...)."""
    s: Optional[Scope] = scope
    while s is not None and s.kind == "function":
        if _EVAL_FUNC.match(s.name) and "train" not in s.name.lower():
            return f"in {s.qualname}()"
        if isinstance(s.node, cst.FunctionDef):
            for dec in s.node.decorators:
                d = dec.decorator.func if isinstance(dec.decorator, cst.Call) else dec.decorator
                q = file.facts.qualify(d)
                if q is not None and canonical(q) in _NO_GRAD:
                    return f"in {s.qualname}(), decorated with @{canonical(q)}"
        s = s.parent
    facts = file.facts
    for st in scope.stmts:
        if st.index >= stmt.index:
            break
        node = st.node
        if not isinstance(node, cst.With) or not _disables_grad(node, facts):
            continue
        if _contains_stmt(node.body, stmt.node):
            return "under torch.no_grad()"
    return None


def _disables_grad(node: cst.With, facts: FileFacts) -> bool:
    for item in node.items:
        call = item.item
        if not isinstance(call, cst.Call):
            continue
        q = facts.qualify(call.func)
        qc = canonical(q) if q else ""
        if qc in _NO_GRAD:
            return True
        if qc in ("torch.set_grad_enabled", "torch.autograd.set_grad_enabled"):
            pos = positional(call)
            if pos and _is_false(pos[0]):
                return True
    return False


def _contains_stmt(body: cst.CSTNode, target: cst.CSTNode) -> bool:
    from trainlint.analysis.walk import walk

    for n in walk(body):
        if n is target:
            return True
    return False


def branch_loss_calls(world: ModelWorld, file: FileRef, wanted: Optional[set] = None):
    """Calls of a criterion that is a different torch loss on different branches
    (``criterion = nn.CrossEntropyLoss() if n_classes > 1 else nn.BCEWithLogitsLoss()``, or the same in an
    ``if``/``else``), which :func:`loss_calls` leaves out: one :class:`LossCall` per alternative (in
    ``wanted``). Only local, module-level and ``self.`` criteria built in place are followed."""
    text = file.ctx.source.text
    if "Loss" not in text:
        return
    for call, scope, st in file_calls(file):
        name = dotted(call.func)
        if name is None or isinstance(call.func, cst.Call):
            continue
        q = file.facts.qualify(call.func)
        if q is not None and q.startswith("torch"):
            continue
        defs = world.defs(name, file, scope, st)
        if not defs or len(defs) > 4:
            continue
        alts: List[Tuple[str, cst.Call, FileRef]] = []
        ok = True
        for f, _s, a in defs:
            values = [a.value.body, a.value.orelse] if isinstance(a.value, cst.IfExp) else [a.value]
            for v in values:
                lq = _loss_q(f.facts.qualify(v.func)) if isinstance(v, cst.Call) else None
                if lq is None or lq.startswith("torch.nn.functional."):
                    ok = False
                    break
                alts.append((lq, v, f))
            if not ok:
                break
        if not ok or len({q for q, _, _ in alts}) < 2:
            continue
        done = set()
        for lq, ctor, _f in alts:
            if lq in done or (wanted is not None and lq not in wanted):
                continue
            done.add(lq)
            yield LossCall(call, lq, file, scope, st, ctor, ctor)


def _some_def_unresolved(world: ModelWorld, func: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt) -> bool:
    """Does the callee name have an assignment (of several) that :meth:`ModelWorld.models_of_value`
    cannot follow? ``models_of_callee`` merges the ones it can, which is right for "is any of them X"
    but not for "are all of them X"."""
    name = dotted(func)
    if name is None or name == "self" or name.endswith((".forward", ".module", "._orig_mod")):
        return False
    defs = world.defs(name, file, scope, stmt)
    if len(defs) < 2:
        return False
    for f, s, a in defs[:_MAX_ALTS]:
        value = assigned_value(a, name)
        if a.kind == "for" or value is None or not world.models_of_value(value, f, s, a.stmt):
            return True
    return False


#: Library model constructors whose last module is a replaceable classification head.
_HEAD_ATTRS = ("fc", "classifier", "head", "heads")


def _is_library_model(value: cst.BaseExpression, file: FileRef) -> bool:
    for _ in range(4):  # models.resnet18(weights=...).to(device)
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value in WRAPPER_METHODS and file.facts.qualify(value.func) is None:
            value = value.func.value
        else:
            break
    if not isinstance(value, cst.Call):
        return False
    q = file.facts.qualify(value.func)
    if q is None:
        return False
    return q.startswith("torchvision.models.") or q in ("timm.create_model", "timm.models.create_model")


def _replaced_head_origins(world: ModelWorld, func: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, call: cst.Call, depth: int = 0) -> List[Origin]:
    """A torchvision/timm model whose classification head was replaced (``model = models.resnet18();
    model.fc = nn.Sequential(nn.Linear(512, 10), nn.Softmax(dim=1))``): the head's last op is the
    model's (these models end with their ``fc`` / ``classifier`` / ``head``). Followed through
    parameters to the call sites. [] when not that case."""
    name = dotted(func)
    if name is None or "." in name or depth > 3:
        return []
    defs = [a for a in scope.reaching(name, stmt) if a.kind == "assign"]
    if not defs and name in scope.params():
        out: List[Origin] = []
        for f, s, st, arg in world.call_sites_binding(file, scope, name, limit=4):
            sub = _replaced_head_origins(world, arg, f, s, st, call, depth + 1) if isinstance(arg, cst.Name) else []
            if not sub:
                return []
            out.extend(sub)
        return out
    base = [a for a in defs if a.value is not None and _is_library_model(a.value, file)]
    if not base or len(base) != len(defs):
        return []
    heads = []
    for attr in _HEAD_ATTRS:
        got = [a for a in scope.assigns.get(f"{name}.{attr}", []) if a.stmt.index < stmt.index]
        if got:
            heads.append((attr, got))
    if len(heads) != 1 or len(heads[0][1]) != 1 or heads[0][1][0].value is None:
        return []
    attr, (a,) = heads[0]
    chains = world.layer_chains(a.value, file, scope, a.stmt)
    if not chains:
        return []
    out = []
    for chain in chains:
        last = last_meaningful(chain)
        if last is None or last.kind != "act":
            out.append(Origin("other", model=f"{name}.{attr}", model_call=call, chain=tuple(chain)))
        else:
            out.append(Origin("act", last, model=f"{name}.{attr}", model_call=call, chain=tuple(chain[: chain.index(last)])))
    return out


def _chain_origin(chain: Chain, model: str, call: cst.Call) -> Origin:
    last = last_meaningful(chain)
    if last is None or last.kind != "act":
        return Origin("other", model=model, model_call=call, chain=tuple(chain))
    return Origin("act", last, model=model, model_call=call, chain=tuple(chain[: chain.index(last)]))


def _library_head_chains(world: ModelWorld, cls: ClassRef, last: Op) -> List[Chain]:
    """The chains of the replaced head when a class's output comes from a library model attribute
    whose head was replaced in ``__init__`` (``self.model = resnet18(); self.model.fc = ...``)."""
    node = last.node
    if not isinstance(node, cst.Call):
        return []
    attr = dotted(node.func)
    if attr is None or not attr.startswith("self.") or attr.count(".") != 1:
        return []
    defs = world.attribute(cls, attr)
    if len(defs) != 1 or defs[0][1].value is None or not _is_library_model(defs[0][1].value, defs[0][0].file):
        return []
    owner = defs[0][0]
    heads = []
    for h in _HEAD_ATTRS:
        got = [a for a in owner.file.facts.attributes.get(owner.info.name, {}).get(f"{attr}.{h}", []) if a.value is not None]
        if got:
            heads.append(got)
    if len(heads) != 1 or len(heads[0]) != 1:
        return []
    a = heads[0][0]
    return world.layer_chains(a.value, owner.file, a.scope or owner.file.facts.module, a.stmt)
