"""Loss wiring: which torch loss a call computes (criteria built in place, attributes, parameters,
imports), which model output (through shape ops, indexing, helpers) reaches which loss argument, and
what produced a value (the activation a loss input comes out of).

Model structure (how a model is built, what its forward does) lives in :mod:`trainlint.analysis.modules`,
object identity and value flow in :mod:`trainlint.analysis.objects`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import Scope, Stmt
from trainlint.analysis.names import canonical, dotted, names_in
from trainlint.analysis.objects import ClassRef, FileRef, Obj, file_calls, target_path
from trainlint.analysis.modules import (
    ACT_FUNCS, ACT_METHODS, MAX_ALTS, SHAPE_FUNCS, SHAPE_METHODS, WRAPPER_METHODS, Chain, ModelRef, ModelWorld, Op,
    assigned_value, last_meaningful,
)
from trainlint.analysis.syntax import constant_key, kwarg, positional, short_qualname, string_keys
from trainlint.analysis.execution import FUNCTIONAL_LOSSES


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
        return short_qualname(self.loss)

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
    memo = world.__dict__.setdefault("_loss_of_call", {})
    for call, scope, st in file_calls(file):
        if min_args and len(call.args) < min_args:
            continue
        key = id(call)
        if key in memo:
            found = memo[key][1]
        else:
            found = _loss_of_callee(world, call.func, file, scope, st)
            memo[key] = (call, found)  # the node is kept so that its id is not reused
        if found is None:
            continue
        q, ctor, cfile = found
        if wanted is not None and q not in wanted:
            continue
        yield LossCall(call, q, file, scope, st, ctor, ctor)


def _loss_of_callee(world: ModelWorld, func, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0):
    """(canonical torch loss, its constructor call or None, the file of the constructor) when calling
    ``func`` computes one torch loss, whatever spelling holds it: ``nn.MSELoss()(...)``, ``F.l1_loss``,
    a criterion object (local, ``self.`` attribute, parameter bound at every call site, imported,
    chosen from a dict, ``getattr(nn, "MSELoss")()``, ``functools.partial``), ``criterion.forward``,
    a project subclass of a torch loss that does not override ``forward``. None when the alternatives
    disagree or one cannot be followed (see :func:`branch_loss_calls` for disagreeing ones)."""
    facts = file.facts
    if isinstance(func, cst.Attribute) and func.attr.value == "forward":
        func = func.value  # criterion.forward(pred, y)
    q = facts.qualify(func) if isinstance(func, (cst.Name, cst.Attribute)) else None
    if q is not None:
        lq = _loss_q(q)
        if lq is not None and lq.startswith("torch.nn.functional."):
            return (lq, None, file)
        if q.startswith("torch"):
            return None
    if isinstance(func, cst.Attribute):
        # x.view(...), logits.argmax(1): a method of a value is not a criterion; attributes of self,
        # of an imported module and dotted names assigned as such (trainer.criterion = ...) may be
        name = dotted(func)
        if name is None:
            return None
        head = name.split(".", 1)[0]
        if head != "self" and q is None and not world.defs(name, file, scope, stmt):
            return None
    results = []
    for o in world.objects(func, file, scope, stmt):
        got = _loss_of_object(world, o)
        if got is None:
            return None
        results.append(got)
    if results and all(r[0] == results[0][0] for r in results):
        return results[0]
    return None


def _loss_of_object(world: ModelWorld, o: Obj):
    """The torch loss an object computes when called: an instance of a torch loss class (or of a
    project subclass that keeps its ``forward``), or a functional loss."""
    lq = _loss_q(o.qname) if o.qname else None
    if lq is None:
        return None
    if o.kind == "function" and lq.startswith("torch.nn.functional."):
        return (lq, None, o.file)
    if o.kind == "instance" and not lq.startswith("torch.nn.functional."):
        if o.cls is not None and world.method(o.cls, "forward") is not None:
            return None  # the subclass computes something of its own
        return (lq, o.node if isinstance(o.node, cst.Call) else None, o.file)
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
            op = Op("act", short_qualname(qc), expr, file, act=ACT_FUNCS[qc])
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
    for a in scope.reaching(name, stmt)[:MAX_ALTS]:
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


def value_origins(world: ModelWorld, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0, element: object = None) -> List[Origin]:
    """The alternatives of what produced ``expr`` at ``stmt`` (never empty: unknown is an Origin).

    Unlike :func:`prediction_sources`, an activation is found even when the model is not known
    (``logits = timm.create_model(...)(x); probs = logits.softmax(-1)``), and a model's own last op is
    reported when the value comes straight out of a model call. Parameters are followed to the call
    sites of their function (``def compute_loss(out, y): return F.cross_entropy(out, y)``), calls of
    module-level helpers to what they return.

    ``element``: the origins of one element of ``expr`` (an int position or a str key) — a model
    whose ``forward`` returns a tuple or a dict (class logits plus an auxiliary output) is followed
    to the element that reaches the loss (``out, aux = model(x)``, ``model(x)[0]``, ``out["logits"]``)."""
    if depth > 14:
        return [Origin("unknown")]
    facts = file.facts
    if isinstance(expr, cst.Subscript):
        key = constant_key(expr)
        if key is not None and element is None:
            return value_origins(world, expr.value, file, scope, stmt, depth + 1, element=key)
        return value_origins(world, expr.value, file, scope, stmt, depth + 1)
    if isinstance(expr, (cst.Tuple, cst.List)) and isinstance(element, int):
        els = expr.elements
        if -len(els) <= element < len(els) and not any(isinstance(e, cst.StarredElement) for e in els):
            return value_origins(world, els[element].value, file, scope, stmt, depth + 1)
        return [Origin("unknown")]
    if isinstance(expr, cst.Dict) and isinstance(element, str):
        for el in expr.elements:
            if isinstance(el, cst.DictElement) and isinstance(el.key, cst.SimpleString) and el.key.evaluated_value == element:
                return value_origins(world, el.value, file, scope, stmt, depth + 1)
        return [Origin("unknown")]
    if isinstance(expr, cst.Call):
        func = expr.func
        q = facts.qualify(func)
        qc = canonical(q) if q else None
        pos = positional(expr)
        if qc in ACT_FUNCS and (pos or kwarg(expr, "input") is not None):
            return [Origin("act", Op("act", short_qualname(qc), expr, file, act=ACT_FUNCS[qc]))]
        if qc in SHAPE_FUNCS and pos:
            return value_origins(world, pos[0], file, scope, stmt, depth + 1)
        if isinstance(func, cst.Attribute) and q is None:
            meth = func.attr.value
            if meth in ACT_METHODS and dotted(func.value) != "self":  # self.softmax(x): a module
                return [Origin("act", Op("act", f".{meth}()", expr, file, act=ACT_METHODS[meth]))]
            if meth in SHAPE_METHODS:
                return value_origins(world, func.value, file, scope, stmt, depth + 1)
        if qc == "torch.exp" and pos or (isinstance(func, cst.Attribute) and q is None and func.attr.value in ("exp", "exp_")):
            # torch.exp(F.log_softmax(x, 1)) is a softmax
            inner = value_origins(world, pos[0] if qc == "torch.exp" else func.value, file, scope, stmt, depth + 1)
            if inner and all(o.kind == "act" and o.op is not None and o.op.act == "log_softmax" for o in inner):
                return [Origin("act", Op("act", f"exp({inner[0].op.label})", expr, file, act="softmax"))]  # type: ignore[union-attr]
            return [Origin("other")]
        if q is not None and q.startswith("torch"):
            return [Origin("other")]
        models = world.models_of_callee(func, file, scope, stmt)
        if models:
            out: List[Origin] = []
            if _some_def_unresolved(world, func, file, scope, stmt):
                out.append(Origin("unknown"))  # `net = A() if x else B()` where B cannot be followed
            for model in models[:MAX_ALTS]:
                chains = world.model_chains(model) if element is None else world.element_chains(model, element)
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
                    for value, rstmt in rets[:MAX_ALTS]:
                        out.extend(value_origins(world, value, g[1], fn, rstmt, depth + 1, element))
                    return out
        return [Origin("unknown")]
    if isinstance(expr, (cst.Name, cst.Attribute)):
        name = dotted(expr)
        if name is None:
            return [Origin("unknown")]
        defs = scope.reaching(name, stmt)
        if defs:
            out = []
            for a in defs[:MAX_ALTS]:
                if a.kind in ("assign", "inplace") and a.value is not None:
                    out.extend(value_origins(world, a.value, file, a.scope or scope, a.stmt, depth + 1, element))
                elif a.kind == "assign" and isinstance(a.node, cst.Assign) and element is None:
                    # unpacking: `logits, aux = model(x)` -> that element of what the call returns
                    path = [target_path(t.target, name) for t in a.node.targets]
                    path = [p for p in path if p is not None and len(p) == 1]
                    if path:
                        out.extend(value_origins(world, a.node.value, file, a.scope or scope, a.stmt, depth + 1, element=path[0][0]))
                    else:
                        out.append(Origin("unknown"))
                else:
                    out.append(Origin("unknown"))
            return out
        if "." not in name and name in scope.params():
            sites = world.call_sites_binding(file, scope, name, limit=6)
            if not sites:
                return [Origin("unknown")]
            out = []
            for f, s, st, arg in sites:
                out.extend(value_origins(world, arg, f, s, st, depth + 1, element))
            return out
        return [Origin("unknown")]
    if isinstance(expr, cst.IfExp):
        return value_origins(world, expr.body, file, scope, stmt, depth + 1, element) + value_origins(world, expr.orelse, file, scope, stmt, depth + 1, element)
    return [Origin("other")]


@dataclass(eq=False)
class WrapperLoss:
    """A training library's wrapper handed a model and a torch loss (``NeuralNetClassifier(MyModule,
    criterion=nn.CrossEntropyLoss)``): the library calls the loss on the model's output."""

    lc: LossCall  # call = the wrapper call
    models: List[ModelRef]


_CRITERION_KEYWORDS = ("criterion", "loss_fn", "loss_func", "loss_function")
_MODEL_KEYWORDS = ("module", "model", "net", "network")


def wrapper_losses(world: ModelWorld, file: FileRef, wanted: Optional[set] = None):
    """Calls of a library class (not the project's own functions: their loss calls are followed
    inside) given a model and a criterion (a torch loss class or instance) by keyword."""
    text = file.ctx.source.text
    if not any(k + "=" in text for k in _CRITERION_KEYWORDS):
        return
    for call, scope, st in file_calls(file):
        crit = next((kwarg(call, k) for k in _CRITERION_KEYWORDS if kwarg(call, k) is not None), None)
        if crit is None:
            continue
        callee = world.objects(call.func, file, scope, st)
        if not callee or not all(c.kind == "class" and c.cls is None and c.qname and not c.qname.startswith("torch") for c in callee):
            continue
        losses = set()
        ctor = None
        for o in world.objects(crit, file, scope, st):
            lq = _loss_q(o.qname) if o.qname and o.kind in ("class", "instance") and o.cls is None else None
            if lq is None or lq.startswith("torch.nn.functional."):
                losses = set()
                break
            losses.add(lq)
            ctor = o.node if isinstance(o.node, cst.Call) else None
        if len(losses) != 1:
            continue
        lq = losses.pop()
        if wanted is not None and lq not in wanted:
            continue
        model_expr = next((kwarg(call, k) for k in _MODEL_KEYWORDS if kwarg(call, k) is not None), None)
        if model_expr is None and positional(call):
            model_expr = positional(call)[0]
        if model_expr is None:
            continue
        models: List[ModelRef] = []
        for o in world.objects(model_expr, file, scope, st):
            if o.kind == "class" and o.cls is not None and world.is_module_class(o.cls):
                models.append(ModelRef("class", o.cls.info.name, o.cls.file, cls=o.cls))
            else:
                models.extend(world.models_of_objects([o]))
        if models:
            yield WrapperLoss(LossCall(call, lq, file, scope, st, ctor, ctor), models)


def wrapper_origins(world: ModelWorld, wl: WrapperLoss) -> List[Origin]:
    """What produces the input the wrapper's loss receives: each model's output (its last op)."""
    out: List[Origin] = []
    for model in wl.models[:MAX_ALTS]:
        chains = world.model_chains(model)
        if not chains:
            out.append(Origin("unknown", model=model.name, model_call=wl.lc.call))
            continue
        out.extend(_chain_origin(c, model.name, wl.lc.call) for c in chains)
    return out


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
    for f, s, a in defs[:MAX_ALTS]:
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


# -- what a loss target holds: the model's own input, a standardized value (TL101) --------------------

_TARGET_NAME = re.compile(r"^(y|ys|y_\w+|\w+_y|targets?|\w+_targets?|targets?_\w+|labels?|\w+_labels?|labels?_\w+)$", re.I)


def is_reconstruction(src, target: cst.BaseExpression) -> bool:
    """loss(model(x), x) or loss(model(x_noisy), x) with x_noisy = x + noise: the target is the
    model's own input (a reconstruction, whose range follows the input pipeline)."""
    tname = _base_name(target)
    if tname is None:
        return False
    names: Set[str] = set()
    todo = [(a.value, src.stmt, 0) for a in src.call.args]
    while todo:
        expr, stmt, depth = todo.pop()
        for node in names_in(expr):
            if node in names:
                continue
            names.add(node)
            if depth < 2:
                for a in src.scope.reaching(node, stmt)[:3]:
                    if a.value is not None:
                        todo.append((a.value, a.stmt, depth + 1))
    return tname in names


def _base_name(expr) -> Optional[str]:
    while True:
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in ("view", "reshape", "flatten", "squeeze", "unsqueeze", "float", "to", "detach", "view_as"):
            expr = expr.func.value
        elif isinstance(expr, cst.Subscript):
            expr = expr.value
        else:
            break
    return dotted(expr)


def _standardization(expr: cst.BaseExpression) -> Optional[cst.CSTNode]:
    """Is ``expr`` a z-scoring of something: ``(y - mean) / std``, ``y.sub(m).div(s)``,
    ``scaler.fit_transform(y)`` with a StandardScaler, ``zscore(y)``?"""
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, cst.BinaryOperation):
            if isinstance(e.operator, cst.Divide):
                left = e.left
                if isinstance(left, cst.BinaryOperation) and isinstance(left.operator, cst.Subtract) and _is_zscore(left, e.right):
                    return e
            stack.extend([e.left, e.right])
        elif isinstance(e, cst.Call):
            func = e.func
            name = dotted(func) or ""
            last = name.rsplit(".", 1)[-1]
            if isinstance(func, cst.Attribute) and last in ("div", "div_", "true_divide") and isinstance(func.value, cst.Call) and isinstance(func.value.func, cst.Attribute) and func.value.func.attr.value in ("sub", "sub_"):
                return e
            if last in ("fit_transform", "transform") and isinstance(func, cst.Attribute):
                recv = dotted(func.value) or ""
                if isinstance(func.value, cst.Call):
                    recv = dotted(func.value.func) or ""
                if ("scaler" in recv.lower() and "minmax" not in recv.lower()) or recv.rsplit(".", 1)[-1] in ("StandardScaler", "RobustScaler"):
                    return e
            if last in ("zscore", "standardize", "standardise"):
                return e
            if isinstance(func, cst.Attribute):
                stack.append(func.value)
            stack.extend(a.value for a in e.args)
        elif isinstance(e, (cst.Tuple, cst.List)):
            stack.extend(el.value for el in e.elements)
    return None


_RANGE_WORDS = re.compile(r"min|max|ptp|range|span|peak", re.I)


def _is_zscore(centered: cst.BinaryOperation, scale: cst.BaseExpression) -> bool:
    """``(y - mean) / std`` is a z-score; ``(y - y.min()) / (y.max() - y.min())`` (min-max scaling to
    [0, 1]) and ``(y - 0.5) / 0.5`` (a fixed map to [-1, 1]) are not: they keep targets bounded."""
    if _is_number(centered.right) and _is_number(scale):
        return False
    words = " ".join(names_in(scale) + names_in(centered.right))
    return not _RANGE_WORDS.search(words)


def _is_number(expr) -> bool:
    if isinstance(expr, cst.UnaryOperation):
        expr = expr.expression
    return isinstance(expr, (cst.Integer, cst.Float))


def target_standardization(target: cst.BaseExpression, lc: LossCall) -> Optional[Tuple[FileRef, cst.CSTNode]]:
    """Standardization on the target's own path (the loss argument and the variables it comes from)."""
    seen = set()
    todo = [(target, lc.stmt)]
    while todo and len(seen) < 20:
        expr, stmt = todo.pop()
        hit = _standardization(expr)
        if hit is not None:
            return (lc.file, hit)
        name = _base_name(expr)
        if name is None:
            continue
        for a in lc.scope.reaching(name, stmt)[:4]:
            if id(a) in seen or a.value is None or a.kind != "assign":
                continue
            seen.add(id(a))
            todo.append((a.value, a.stmt))
    return None


def program_target_standardization(world: ModelWorld) -> Optional[Tuple[FileRef, cst.CSTNode]]:
    """Somewhere in the program, a target-like variable (``y``, ``y_train``, ``targets``, ``self.labels``,
    ``df["target"]``) is assigned a standardization of something."""
    for file in world.files:
        text = file.ctx.source.text
        if "std" not in text and "scaler" not in text.lower() and "zscore" not in text and "standardi" not in text:
            continue
        for scope in file.facts.scopes():
            for st in scope.stmts:
                node = st.node
                if not isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)) or node.value is None:
                    continue
                targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
                if not any(_target_like(t) for t in targets):
                    continue
                hit = _standardization(node.value) if not isinstance(node, cst.AugAssign) else None
                if isinstance(node, cst.AugAssign) and isinstance(node.operator, cst.DivideAssign):
                    hit = None
                if hit is not None:
                    return (file, node)
    return None


def _target_like(t: cst.BaseExpression) -> bool:
    if isinstance(t, (cst.Tuple, cst.List)):
        return any(_target_like(el.value) for el in t.elements)
    if isinstance(t, cst.Subscript):
        if any(re.search(r"target|label|price|^y$", key, re.I) for key in string_keys(t)):
            return True
        return _target_like(t.value)
    name = dotted(t)
    if name is None:
        return False
    last = name.rsplit(".", 1)[-1]
    return bool(_TARGET_NAME.match(last))
