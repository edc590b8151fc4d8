"""nn.Module structure: models as chains of ops, from the model's input to its output.
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

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from trainlint.analysis.facts import Assignment, Scope, Stmt, arm_marker
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.syntax import kwarg, number, positional, short_qualname
from trainlint.analysis.objects import ClassRef, FileRef, Obj, World, calls_in, file_calls

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

#: How many alternatives the model world (and the loss linking built on it) follows at one step: the values
#: a name may hold, the models a call may build, the returns of a helper; the rest are not followed (a
#: bound on the work of one question).
MAX_ALTS = 6
_MAX_DEPTH = 14


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
    # (the constructor, not dataclasses.replace: this runs over a million times on a big package)
    return tuple(Op(op.kind, op.label, op.node, op.file, op.act, op.model, op.branches + (tag,)) for op in chain)


Chain = Tuple[Op, ...]



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


def _is_false(expr: Optional[cst.BaseExpression]) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "False"


class ModelWorld(World):
    """The model facts of a set of files (one program, or one file alone): the object world of
    :mod:`trainlint.analysis.objects` plus what calling a model does. Get one with
    ``World.of_program(program)`` / ``World.of_file(ctx)`` (one per program, shared by every rule)."""

    def __init__(self, files: Sequence[FileRef], program: object = None) -> None:
        super().__init__(files, program)
        self._class_chains: Dict[int, List[Chain]] = {}
        self._in_progress: set = set()

    def is_module_class(self, ref: ClassRef, depth: int = 0) -> bool:
        base = self.library_base(ref)
        return base in MODULE_BASES or base.endswith("LightningModule")

    # -- models a callee stands for ------------------------------------------------------------------
    def models_of_callee(self, func: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0, bind_params: bool = True) -> List[ModelRef]:
        """The models a call ``func(x)`` may run: ``model``, ``self``, ``self.net``, ``net.module``,
        ``model.forward``... (the objects ``func`` holds that are models)."""
        if isinstance(func, cst.Attribute) and func.attr.value == "forward":
            func = func.value  # model.forward(x), self.fc.forward(x)
        name = dotted(func)
        if not bind_params and name is not None and "." not in name and name in scope.params() and not scope.reaching(name, stmt):
            return []
        return self.models_of_objects(self.objects(func, file, scope, stmt))

    def models_of_value(self, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0) -> List[ModelRef]:
        """The models an expression evaluates to (``Net(...)``, ``nn.Sequential(...)``, ``DDP(net)``,
        ``net.to(device)``, ``build_model(cfg)``...)."""
        return self.models_of_objects(self.objects(expr, file, scope, stmt))

    def models_of_objects(self, objs: List[Obj]) -> List[ModelRef]:
        """The objects that are models: instances of a project ``nn.Module`` subclass, and ``torch.nn``
        layers and containers whose chain is known."""
        out: List[ModelRef] = []
        for o in objs:
            if o.kind != "instance" or o.file is None:
                continue
            if o.cls is not None:
                if self.is_module_class(o.cls):
                    out.append(ModelRef("class", o.cls.info.name, o.cls.file, cls=o.cls))
                continue
            if o.qname.startswith("torch.nn.") and isinstance(o.node, cst.Call) and o.scope is not None:
                if self.layer_chains(o.node, o.file, o.scope, o.stmt):
                    out.append(ModelRef("layer", short_qualname(o.qname), o.file, expr=o.node, scope=o.scope, stmt=o.stmt))
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
                out = out[:MAX_ALTS * 2]
                if any(v is None for v, _ in fwd.returns) or not fwd.returns:
                    out = []
        finally:
            self._in_progress.discard(key)
        self._class_chains[key] = out
        return out

    def element_chains(self, model: ModelRef, element: object) -> List[Chain]:
        """Chains of one element of what a model returns (``forward`` returning ``(logits, aux)`` or
        ``{"logits": ...}``): the element at an int position / str key of each returned tuple, list or
        dict; a returned tensor is indexed (its whole chain). [] = unknown."""
        if model.kind != "class" or model.cls is None:
            return self.model_chains(model)
        found = self.method(model.cls, "forward")
        if found is None:
            return []
        cref, fwd = found
        if not fwd.returns or any(v is None for v, _ in fwd.returns):
            return []
        out: List[Chain] = []
        for value, rstmt in fwd.returns:
            part = _element_of(value, element)
            if part is None:
                return []
            out.extend(self.value_chains(part, cref.file, fwd, rstmt, cref))
        return out[:MAX_ALTS * 2]

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
            for f, s, a in defs[:MAX_ALTS]:
                if a.value is None or a.kind not in ("assign",):
                    continue
                out.extend(self.layer_chains(a.value, f, s, a.stmt, owner, depth + 1, at=at if at is not None else a.value))
            if not defs and not out:
                return self._object_layer_chains(expr, file, scope, stmt, owner, depth, at)
            return out[:MAX_ALTS]
        if not isinstance(expr, cst.Call):
            return self._object_layer_chains(expr, file, scope, stmt, owner, depth, at)
        fname = dotted(expr.func)
        if fname is None:
            return self._object_layer_chains(expr, file, scope, stmt, owner, depth, at)
        g = self.resolve_global(fname, file)
        if g is None or g[0] == "assign" or (scope is not file.facts.module and stmt is not None and scope.reaching(fname.split(".")[0], stmt)):
            # a local alias, a partial, getattr(nn, "ReLU"), {"relu": nn.ReLU}[name]: ask the objects
            return self._object_layer_chains(expr, file, scope, stmt, owner, depth, at)
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
                    chains = [c + s for c in chains for s in sub][:MAX_ALTS]
                return chains
            op = self.module_op(q, expr, file, node, scope, stmt)
            return [(op,)] if op is not None else []
        if g[0] == "class":
            ref = ClassRef(g[1], g[2])
            if not self.is_module_class(ref):
                return []
            return self.class_chains(ref)
        if g[0] == "function":
            # a factory: what this call of it returns (its parameters bound to this call's arguments)
            got = self._object_layer_chains(expr, file, scope, stmt, owner, depth + 1, at)
            if got:
                return got
            fn: Scope = g[2]
            out = []
            for value, rstmt in fn.returns[:MAX_ALTS]:
                if value is not None:
                    out.extend(self.layer_chains(value, g[1], fn, rstmt, None, depth + 1))
            return out
        return []

    def output_width(self, chain: Sequence[Op]) -> Optional[int]:
        """The width of the Linear layer that produces a chain's last values (``nn.Linear(128, 10)`` ->
        10: the number of classes a softmax is over), when the objects tell it: a Sequential element,
        or ``self.fc(x)`` with ``self.fc = nn.Linear(...)`` in the model's class (or a base class)."""
        for op in reversed(chain):
            if op.kind in ("dropout", "shape"):
                continue
            if op.kind != "layer" or "Linear" not in op.label:
                return None
            node, file = op.node, op.file
            if not isinstance(node, cst.Call):
                return None
            ctor, scope, stmt = None, file.facts.module, None
            q = file.facts.qualify(node.func)
            if q is not None and canonical(q) == "torch.nn.Linear":
                ctor = node
            elif (dotted(node.func) or "").startswith("self."):
                found = []
                for info in file.facts.classes.values():
                    for c, a in self.attribute(ClassRef(file, info), dotted(node.func) or ""):
                        for o in self.objects(a.value, c.file, a.scope or c.file.facts.module, a.stmt):
                            if o.kind == "instance" and o.qname == "torch.nn.Linear" and isinstance(o.node, cst.Call):
                                found.append(o)
                if len({id(o.node) for o in found}) == 1:
                    ctor, scope, stmt = found[0].node, found[0].scope or scope, found[0].stmt
                    file = found[0].file or file
            if ctor is None:
                return None
            pos = positional(ctor)
            arg = kwarg(ctor, "out_features") or (pos[1] if len(pos) > 1 else None)
            if arg is None:
                return None
            v = self.constant(arg, file, scope, stmt)
            return v if isinstance(v, int) and not isinstance(v, bool) else None
        return None

    def _object_layer_chains(self, expr, file: FileRef, scope: Scope, stmt: Optional[Stmt], owner: Optional[ClassRef], depth: int, at: Optional[cst.CSTNode]) -> List[Chain]:
        """What calling the module ``expr`` does, from the objects it holds (conditional expressions,
        containers with constant keys, local class aliases, ``functools.partial``, ``getattr(nn, ...)``,
        activations chosen by a string). [] when one of them cannot be followed."""
        if depth > _MAX_DEPTH:
            return []
        objs = self.objects(expr, file, scope, stmt)
        name = dotted(expr)
        if name is not None and "." not in name and name in scope.params() and len({id(o.node) for o in objs}) > 1:
            # a parameter bound differently at several call sites (subclasses handing their own
            # `head` to a base __init__): the alternatives belong to different models, never one chain
            return []
        out: List[Chain] = []
        for o in objs[:MAX_ALTS]:
            if o.kind != "instance" or o.file is None or not isinstance(o.node, cst.Call):
                return []
            if o.cls is not None:
                if not self.is_module_class(o.cls):
                    return []
                out.extend(self.class_chains(o.cls))
            elif o.qname == "torch.nn.Sequential":
                if o.node is expr:
                    return []
                out.extend(self.layer_chains(o.node, o.file, o.scope, o.stmt, owner, depth + 1, at=at))
            elif o.qname.startswith("torch.nn."):
                op = self.module_op(o.qname, o.node, o.file, at if at is not None else o.node, o.scope, o.stmt)
                if op is None:
                    return []
                out.append((op,))
            else:
                return []
        return out[:MAX_ALTS]

    def module_op(self, q: str, call: cst.Call, file: FileRef, node: cst.CSTNode, scope: Optional[Scope] = None, stmt: Optional[Stmt] = None) -> Optional[Op]:
        if q in ACT_MODULES:
            return Op("act", short_qualname(q), node, file, act=ACT_MODULES[q])
        if q in DROPOUT_MODULES:
            p = positional(call)[0] if positional(call) else kwarg(call, "p")
            pval = number(p)
            if pval is None and p is not None and scope is not None:
                pval = self._fold_int(p, file, scope, stmt)
            if pval == 0.0:
                return Op("layer", short_qualname(q), node, file)
            if pval is not None:
                ptxt = f"p={pval:g}"
            else:
                ptxt = f"p={file.ctx.code(p).strip()}" if p is not None else "p=0.5"
            return Op("dropout", f"{short_qualname(q)}({ptxt})", node, file)
        if q in BN_MODULES:
            if _is_false(kwarg(call, "track_running_stats")):
                return Op("layer", short_qualname(q), node, file)
            return Op("bn", short_qualname(q), node, file)
        if q in SHAPE_MODULES:
            return Op("shape", short_qualname(q), node, file)
        return Op("layer", short_qualname(q), node, file)

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
        # the last plain assignment before the use (later `+=` / append / extend are the growth below)
        defs = [a for a in scope.assigns.get(name, []) if a.kind == "assign" and a.stmt.index < stmt.index]
        if not defs or defs[-1].value is None:
            return None
        base = defs[-1]
        if base.stmt.block != stmt.block[: len(base.stmt.block)]:
            return None  # assigned on a branch
        items = self.list_items(base.value, file, scope, base.stmt, depth + 1)
        if items is None:
            return None
        # appends, extends and += between the assignment and the use, in order; what a loop adds is
        # repeated as whole turns (the dropout of one turn is followed by the layers of the next);
        # additions under an `if` whose test folds to a constant count only on the arm it takes
        loop_ids_base = {id(l) for l in base.stmt.loops}
        group: List = []
        group_loop = None

        def flush():
            nonlocal group, group_loop
            if group_loop is not None:
                c = self.loop_count_of(group_loop.iter, file, scope, stmt) if isinstance(group_loop, cst.For) else None
                n = 2 if (c is not None and c >= 2) else 1
                items.extend(group * n)
            group, group_loop = [], None

        for st in scope.stmts:
            if st.index <= base.stmt.index or st.index >= stmt.index:
                continue
            added = self._list_growth(st, name, file, scope, depth)
            if added is None:
                continue
            if added == "unknown":
                return None
            if self._branch_not_taken(st, file, scope):
                continue
            extra_loops = [l for l in st.loops if id(l) not in loop_ids_base]
            outer = extra_loops[0] if extra_loops else None
            if outer is not group_loop:
                flush()
                group_loop = outer
            if outer is None:
                items.extend(added)
            else:
                group.extend(added)
        flush()
        return items

    def _branch_not_taken(self, st: Stmt, file: FileRef, scope: Scope) -> bool:
        """Is ``st`` on an arm of an ``if`` that the defaults do not take (``if batch_norm:`` with
        ``batch_norm=False`` at every call, ``if USE_BN:`` with ``USE_BN = False``)?"""
        ifs = self.__dict__.setdefault("_if_nodes", {})
        index = ifs.get(id(scope))
        if index is None:
            index = ifs[id(scope)] = {id(x.node): x for x in scope.stmts if isinstance(x.node, cst.If)}
        block = st.block
        for i, part in enumerate(block):
            ist = index.get(part)
            if ist is None:
                continue
            in_else = bool(arm_marker(block, i))
            got = self.decided(ist.node.test, file, scope, ist)
            if got is None:
                continue
            if got == in_else:
                return True
        return False

    def entries_of_listed_dicts(self, expr: cst.BaseExpression, key: str, file: FileRef, scope: Scope,
                                stmt: Optional[Stmt]) -> List[Tuple[cst.BaseExpression, Scope, Optional[Stmt]]]:
        """The values under ``key`` of the dicts a list holds, each with where it is evaluated: an
        optimizer's parameter groups (``Adam([{"params": ..., "lr": 0.1}])``, a ``groups`` list built
        with appends, ``dict(params=..., lr=0.1)``). Elements that are no dict, or lack the key, give nothing."""
        items = self.list_items(expr, file, scope, stmt) or []
        out: List[Tuple[cst.BaseExpression, Scope, Optional[Stmt]]] = []
        seen: set = set()
        for el, sc, st in items:
            value = None
            if isinstance(el, cst.Dict):
                value = next((d.value for d in el.elements if isinstance(d, cst.DictElement)
                              and isinstance(d.key, cst.SimpleString) and d.key.evaluated_value == key), None)
            elif isinstance(el, cst.Call) and dotted(el.func) == "dict":
                value = kwarg(el, key)
            if value is not None and id(value) not in seen:
                seen.add(id(value))
                out.append((value, sc, st))
        return out

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
        if isinstance(it, cst.Subscript) and len(it.slice) == 1 and isinstance(it.slice[0].slice, cst.Slice):
            # sizes[:-1], sizes[1:]: the length of a slice of a folded list
            seq = self.fold(it.value, file.facts, scope, stmt)
            sl = it.slice[0].slice
            bounds = []
            for b in (sl.lower, sl.upper, sl.step):
                if b is None:
                    bounds.append(None)
                    continue
                got = self.fold(b, file.facts, scope, stmt)
                if got is None or not isinstance(got.value, int):
                    return None
                bounds.append(got.value)
            if seq is None or not isinstance(seq.value, (tuple, str)):
                return None
            return len(seq.value[slice(*bounds)])
        if isinstance(it, cst.Call):
            fname = dotted(it.func)
            args = positional(it)
            if fname == "range" and args:
                nums = [self._fold_int(a, file, scope, stmt) for a in args[:2]]
                nums = [n if n is not None else self._folded_count(a, file, scope, stmt) for n, a in zip(nums, args[:2])]
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

    def _folded_count(self, expr, file: FileRef, scope: Scope, stmt: Optional[Stmt]) -> Optional[float]:
        got = self.fold(expr, file.facts, scope, stmt)
        if got is not None and isinstance(got.value, (int, float)) and not isinstance(got.value, bool):
            return got.value
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
                op = Op("act", short_qualname(qc), expr, file, act=ACT_FUNCS[qc])
                return [c + (op,) for c in self.value_chains(pos[0], file, scope, stmt, owner, depth + 1)] or [(op,)]
            if qc in DROPOUT_FUNCS:
                if not pos:
                    return []
                inner = self.value_chains(pos[0], file, scope, stmt, owner, depth + 1) or [()]
                p = pos[1] if len(pos) > 1 else kwarg(expr, "p")
                training = pos[2] if len(pos) > 2 else kwarg(expr, "training")
                if number(p) == 0.0 or _is_false(training):
                    return inner
                if p is not None and number(p) is None and self.constant(p, file, scope, stmt) == 0:
                    return inner  # p=self.drop_rate with a default of 0
                ptxt = f"p={file.ctx.code(p).strip()}" if p is not None else "p=0.5"
                op = Op("dropout", f"{short_qualname(qc)}({ptxt})", expr, file)
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
            if qc in ("torch.exp",) and pos or (isinstance(func, cst.Attribute) and q is None and func.attr.value in ("exp", "exp_")):
                # torch.exp(F.log_softmax(x)) is a softmax
                inner = self.value_chains(pos[0] if qc == "torch.exp" else func.value, file, scope, stmt, owner, depth + 1)
                lasts = [last_meaningful(c) for c in inner]
                if inner and all(o is not None and o.act == "log_softmax" for o in lasts):
                    op = Op("act", f"exp({lasts[0].label})", expr, file, act="softmax")  # type: ignore[union-attr]
                    return [c + (op,) for c in inner][:MAX_ALTS]
            # a submodule or a layer object: self.fc(x), self.head(x), layer(x), nn.ReLU()(x)
            sub = self._callee_chains(func, expr, file, scope, stmt, owner, depth)
            if sub is not None:
                inputs = self._inputs_chains(pos, file, scope, stmt, owner, depth, merge=expr)
                return [c + s for c in inputs for s in sub][:MAX_ALTS]
            # a helper method of the model: self._head(h) -> what it returns from its input
            sub = self._method_chains(func, file, owner, depth)
            if sub is not None:
                inputs = self._inputs_chains(pos[:1], file, scope, stmt, owner, depth, merge=expr)
                return [c + s for c in inputs for s in sub][:MAX_ALTS]
            # opaque: torch.cat([a, b]), helper(x), x.mean(1), x * 2...
            return [c + (Op("op", "op", expr, file),) for c in self._inputs_chains(_tensor_args(expr), file, scope, stmt, owner, depth, merge=expr)][:MAX_ALTS]
        if isinstance(expr, cst.BinaryOperation):
            left = self.value_chains(expr.left, file, scope, stmt, owner, depth + 1) or [()]
            right = self.value_chains(expr.right, file, scope, stmt, owner, depth + 1) or [()]
            return [_branch(a, expr, 0) + _branch(b, expr, 1) + (Op("op", "op", expr, file),) for a in left for b in right][:MAX_ALTS]
        if isinstance(expr, cst.UnaryOperation):
            return [c + (Op("op", "op", expr, file),) for c in self.value_chains(expr.expression, file, scope, stmt, owner, depth + 1) or [()]]
        if isinstance(expr, cst.Subscript):
            return self.value_chains(expr.value, file, scope, stmt, owner, depth + 1)
        if isinstance(expr, cst.IfExp):
            return (self.value_chains(expr.body, file, scope, stmt, owner, depth + 1) + self.value_chains(expr.orelse, file, scope, stmt, owner, depth + 1))[:MAX_ALTS]
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
        if len(defs) > 1:  # `if self.drop_rate > 0: x = F.dropout(x, ...)` with drop_rate=0 by default
            defs = [a for a in defs if not self._branch_not_taken(a.stmt, file, scope)] or defs
        out: List[Chain] = []
        for a in defs[:MAX_ALTS]:
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
        return out[:MAX_ALTS]

    def _method_chains(self, func, file: FileRef, owner: Optional[ClassRef], depth: int) -> Optional[List[Chain]]:
        """Chains of a helper method of the model called in ``forward`` (``self._head(h)``): from its
        first parameter to what it returns; None when ``func`` is not such a method."""
        name = dotted(func)
        if owner is None or name is None or not name.startswith("self.") or name.count(".") != 1:
            return None
        attr = name.split(".", 1)[1]
        if attr in ("forward", "__call__") or self.attribute(owner, name):
            return None
        found = self.method(owner, attr)
        if found is None:
            return None
        cref, m = found
        if not m.returns or any(v is None for v, _ in m.returns) or len(m.params()) < 2:
            return None
        out: List[Chain] = []
        for value, rstmt in m.returns[:MAX_ALTS]:
            sub = self.value_chains(value, cref.file, m, rstmt, cref, depth + 1)
            if not sub:
                return None
            out.extend(sub)
        return out[:MAX_ALTS]

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
            chains = [c + s for c in chains for s in sub][:MAX_ALTS]
        return chains

    def _callee_chains(self, func, call, file: FileRef, scope: Scope, stmt: Stmt, owner: Optional[ClassRef], depth: int) -> Optional[List[Chain]]:
        """Chains of calling a module object in forward; None when ``func`` is not a module."""
        if isinstance(func, cst.Call):  # nn.ReLU()(x)
            sub = self.layer_chains(func, file, scope, None, owner, 0, at=call)
            return sub or None
        name = dotted(func)
        if name is None:
            if isinstance(func, cst.Subscript):  # self.heads["cls"](x), self.layers[-1](x): a constant key
                sub = self._object_layer_chains(func, file, scope, stmt, owner, 0, at=call)
                return sub or None
            return None
        if name.startswith("self.") and owner is not None:
            attrs = self.attribute(owner, name)
            if not attrs:
                return None
            out: List[Chain] = []
            for c, a in attrs[:MAX_ALTS]:
                s = a.scope or c.file.facts.module
                sub = self.layer_chains(a.value, c.file, s, a.stmt, c, 0, at=call if not _is_container(a.value, c.file) else None)
                if not sub:
                    return None
                out.extend(sub)
            return out[:MAX_ALTS]
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
                                chains = [x + y for x in chains for y in sub][:MAX_ALTS]
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


def _element_of(value: cst.BaseExpression, element: object) -> Optional[cst.BaseExpression]:
    """The expression of element ``element`` of a returned value (the value itself when it is not a
    literal tuple/list/dict: a tensor indexed); None when it cannot be told."""
    if isinstance(value, (cst.Tuple, cst.List)):
        els = value.elements
        if not isinstance(element, int) or any(isinstance(e, cst.StarredElement) for e in els):
            return None
        return els[element].value if -len(els) <= element < len(els) else None
    if isinstance(value, cst.Dict):
        if not isinstance(element, str):
            return None
        for el in value.elements:
            if isinstance(el, cst.DictElement) and isinstance(el.key, cst.SimpleString) and el.key.evaluated_value == element:
                return el.value
        return None
    return value


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




def iter_calls(node: cst.CSTNode):
    """Calls inside a statement (not into nested defs)."""
    return calls_in(node)


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

