"""Training-loop knowledge shared by rules: what is a loss, where is it backpropagated, and how a value
flows back from ``backward()`` through assignments, arithmetic and small helper functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.walk import calls
from trainlint.analysis.syntax import is_none, kwarg

#: torch.nn.functional losses.
FUNCTIONAL_LOSSES = {
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "cosine_embedding_loss", "cross_entropy",
    "ctc_loss", "gaussian_nll_loss", "hinge_embedding_loss", "huber_loss", "kl_div", "l1_loss", "margin_ranking_loss",
    "mse_loss", "multi_margin_loss", "multilabel_margin_loss", "multilabel_soft_margin_loss", "nll_loss",
    "poisson_nll_loss", "smooth_l1_loss", "soft_margin_loss", "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
}

#: Methods and torch functions that keep "this is the loss" (reductions, casts, scaling).
PASS_THROUGH_METHODS = {
    "mean", "sum", "float", "double", "half", "to", "squeeze", "unsqueeze", "view", "reshape", "contiguous",
    "cuda", "cpu", "type", "nanmean", "nansum", "flatten", "div", "mul", "add", "sub", "div_", "mul_", "add_",
    "sub_", "__truediv__", "__mul__",
}
PASS_THROUGH_FUNCS = {"torch.mean", "torch.sum", "torch.nanmean", "torch.nansum", "torch.stack", "torch.cat"}

#: Callers whose first argument is what gets backpropagated.
_BACKWARD_ARG_RECEIVERS = re.compile(r"(accelerator|fabric|engine|deepspeed|model_engine|trainer)$", re.I)
_LOSSY_NAME = re.compile(r"(^|_)(loss|losses|criterion|objective|nll|cost)(_|$|\d)|loss", re.I)
_NOT_LOSS_NAME = re.compile(r"(weight|scale|coef|lambda|factor|ratio|log|hist|meter|avg|ema|running|best|prev)", re.I)


def is_loss_callee(func: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int = 0, world=None) -> bool:
    """Does calling ``func`` compute a loss? (torch losses, criterion objects, loss helpers). With a
    ``world`` (:class:`trainlint.analysis.objects.World`), the object model is asked what ``func``
    holds: a criterion passed as a parameter, kept in a dict, built by ``getattr(nn, name)()``."""
    q = facts.qualify(func)
    if q is not None:
        q = canonical(q)
        if q.startswith("torch.nn.functional."):
            return q.rsplit(".", 1)[1] in FUNCTIONAL_LOSSES
        if q.startswith("torch.nn.") and q.endswith("Loss"):
            return True  # nn.MSELoss()(pred, y)
    name = dotted(func)
    if name is None:
        if isinstance(func, cst.Call):  # nn.MSELoss()(out, y)
            return is_loss_class(func.func, facts)
        return False
    # A criterion object: criterion = nn.MSELoss(); self.loss_fn = nn.L1Loss()
    for a in _defs(name, facts, scope, stmt):
        if isinstance(a.value, cst.Call) and is_loss_class(a.value.func, facts):
            return True
    last = name.rsplit(".", 1)[-1]
    if re.search(r"(loss|criterion)", last, re.I):
        return True
    if world is not None:
        file = world.file_of(facts)
        if file is not None:
            return any(_is_torch_loss(o.qname) and o.kind in ("instance", "function") for o in world.objects(func, file, scope, stmt))
    return False


def _is_torch_loss(q: str) -> bool:
    q = canonical(q) if q else ""
    if q.startswith("torch.nn.functional."):
        return q.rsplit(".", 1)[1] in FUNCTIONAL_LOSSES
    return q.startswith("torch.nn.") and q.endswith("Loss")


def is_loss_class(func: cst.BaseExpression, facts: FileFacts) -> bool:
    q = facts.qualify(func)
    if q is None:
        return False
    q = canonical(q)
    return q.startswith("torch.nn.") and q.endswith("Loss")


def _defs(name: str, facts: FileFacts, scope: Scope, stmt: Stmt):
    """Assignments of ``name`` visible at ``stmt``: this scope, then self attributes, then the module."""
    found = scope.reaching(name, stmt)
    if found:
        return found
    if name.startswith("self.") and scope.class_name:
        return facts.attributes.get(scope.class_name, {}).get(name, [])
    if scope is not facts.module:
        return facts.module.assigns.get(name, [])
    return []


@dataclass
class BackwardRoot:
    expr: cst.BaseExpression  # what is backpropagated
    call: cst.CSTNode  # the node to point at (the backward() call, or the return)
    scope: Scope
    stmt: Stmt
    how: str  # "backward()" | "accelerator.backward()" | "return from training_step" ...


def _calls(node: cst.CSTNode) -> Iterator[cst.Call]:
    return calls(node)


def backward_roots(facts: FileFacts) -> Iterator[BackwardRoot]:
    for scope in facts.scopes():
        for stmt in scope.stmts:
            node = stmt.node
            if not isinstance(node, (cst.Expr, cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Return)):
                continue
            value = node.value
            if value is None:
                continue
            for call in _calls(value):
                root = _root_of_call(call, facts)
                if root is not None:
                    yield BackwardRoot(root[0], call, scope, stmt, root[1])
        if scope.kind == "function" and _is_loss_function(scope, facts):
            # A loss function or a loss module's forward: what it returns is what gets
            # backpropagated wherever it is used.
            for value, stmt in scope.returns:
                expr = _loss_of_return(value)
                if expr is not None and is_lossy(expr, facts, scope, stmt):
                    yield BackwardRoot(expr, stmt.node, scope, stmt, f"returned by the loss function {scope.qualname}()")
            continue
        if scope.kind == "function" and scope.class_name and scope.name in ("training_step", "compute_loss"):
            # Lightning backpropagates what training_step returns (a loss, or a dict with "loss");
            # HF Trainer backpropagates what compute_loss returns.
            for value, stmt in scope.returns:
                expr = _loss_of_return(value)
                if expr is not None:
                    yield BackwardRoot(expr, stmt.node, scope, stmt, f"return from {scope.name}()")


_LOSS_FUNC_NAME = re.compile(r"(^|_)(loss|criterion|nll)(_|$)|loss$|^loss", re.I)


def _is_loss_function(scope: Scope, facts: FileFacts) -> bool:
    """A function named like a loss (``fourier_loss``, ``compute_loss``), or the ``forward`` of a loss
    module (``class PhysicsLoss(nn.Module)``, a subclass of a torch loss)."""
    if scope.class_name is None:
        return bool(_LOSS_FUNC_NAME.search(scope.name)) and not scope.name.startswith(("log_", "print_", "plot_"))
    if scope.name in ("compute_loss", "training_step"):
        return False  # handled as framework hooks
    if scope.name == "forward" or scope.name == "__call__":
        cls = facts.classes.get(scope.class_name)
        if cls is None:
            return False
        if re.search(r"(Loss|Criterion)$", cls.name):
            return True
        return any(canonical(b).startswith("torch.nn.") and b.endswith("Loss") for b in cls.bases)
    return bool(re.search(r"(^|_)loss(_|$)|^loss", scope.name, re.I)) and not scope.name.startswith(("log_", "print_", "plot_"))


def _loss_of_return(value: Optional[cst.BaseExpression]) -> Optional[cst.BaseExpression]:
    if value is None:
        return None
    if isinstance(value, cst.Dict):
        for el in value.elements:
            if isinstance(el, cst.DictElement) and isinstance(el.key, cst.SimpleString) and el.key.evaluated_value == "loss":
                return el.value
        return None
    if isinstance(value, cst.Tuple) and value.elements:  # compute_loss(return_outputs=True) -> (loss, outputs)
        return value.elements[0].value
    return value


def _root_of_call(call: cst.Call, facts: FileFacts) -> Optional[Tuple[cst.BaseExpression, str]]:
    func = call.func
    q = facts.qualify(func)
    if q in ("torch.autograd.backward", "torch.autograd.grad"):
        arg = _first_arg(call)
        return (arg, q) if arg is not None else None
    if not isinstance(func, cst.Attribute):
        return None
    meth = func.attr.value
    if meth == "manual_backward":
        arg = _first_arg(call)
        return (arg, "manual_backward()") if arg is not None else None
    if meth != "backward":
        return None
    recv = func.value
    recv_name = dotted(recv) or ""
    arg = _first_arg(call)
    if arg is not None and _BACKWARD_ARG_RECEIVERS.search(recv_name.rsplit(".", 1)[-1]):
        return arg, f"{recv_name}.backward()"
    if isinstance(recv, cst.Call) and isinstance(recv.func, cst.Attribute) and recv.func.attr.value == "scale":
        inner = _first_arg(recv)  # scaler.scale(loss).backward()
        if inner is not None:
            return inner, "scaler.scale(...).backward()"
    return recv, "backward()"


def _first_arg(call: cst.Call) -> Optional[cst.BaseExpression]:
    for a in call.args:
        if a.keyword is None and a.star == "":
            return a.value
    for a in call.args:
        if a.keyword is not None and a.keyword.value in ("loss", "tensors", "outputs"):
            return a.value
    return None


def is_lossy(expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int = 0, seen: Optional[Set[int]] = None, world=None) -> bool:
    """Is ``expr`` (at ``stmt``) a loss value: a loss call, a variable holding one, ``outputs.loss``...?
    (``world``: ask the object model what a callee holds, see :func:`is_loss_callee`.)"""
    if depth > 12:
        return False
    seen = seen if seen is not None else set()
    if isinstance(expr, cst.Call):
        func = expr.func
        if is_loss_callee(func, facts, scope, stmt, world=world):
            return True
        if isinstance(func, cst.Attribute):
            if func.attr.value == "item":
                return False
            if func.attr.value in PASS_THROUGH_METHODS:
                return is_lossy(func.value, facts, scope, stmt, depth + 1, seen, world)
        q = facts.qualify(func)
        if q in PASS_THROUGH_FUNCS and expr.args:
            return is_lossy(expr.args[0].value, facts, scope, stmt, depth + 1, seen, world)
        return False
    if isinstance(expr, cst.BinaryOperation):
        return is_lossy(expr.left, facts, scope, stmt, depth + 1, seen, world) or is_lossy(expr.right, facts, scope, stmt, depth + 1, seen, world)
    if isinstance(expr, cst.UnaryOperation):
        return is_lossy(expr.expression, facts, scope, stmt, depth + 1, seen, world)
    if isinstance(expr, cst.Subscript):
        for el in expr.slice:
            idx = el.slice
            if isinstance(idx, cst.Index) and isinstance(idx.value, cst.SimpleString):
                key = idx.value.evaluated_value
                if isinstance(key, str) and "loss" in key.lower():
                    return True
        return is_lossy(expr.value, facts, scope, stmt, depth + 1, seen, world)
    name = dotted(expr)
    if name is None:
        return False
    last = name.rsplit(".", 1)[-1]
    if last in ("data", "grad"):
        return False
    if last == "loss" and "." in name:
        return True  # outputs.loss (Hugging Face), self.loss
    if _LOSSY_NAME.search(last) and not _NOT_LOSS_NAME.search(last):
        return True
    for a in _defs(name, facts, scope, stmt):
        if id(a) in seen or a.value is None:
            continue
        seen.add(id(a))
        if is_lossy(a.value, facts, a.scope or scope, a.stmt, depth + 1, seen, world):
            return True
    return False


def flow_back(
    expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int = 0, seen: Optional[Set[int]] = None
) -> Iterator[Tuple[cst.BaseExpression, Scope, Stmt]]:
    """Every expression whose value flows into ``expr`` without passing through a loss call's
    arguments (predictions and targets are not the loss) or an opaque call: the loss domain."""
    if depth > 25:
        return
    seen = seen if seen is not None else set()
    yield expr, scope, stmt
    if isinstance(expr, cst.Call):
        func = expr.func
        name = dotted(func)
        if name is not None and "." not in name:
            helper = facts.function(name)
            if helper is not None:  # a helper of this file: what it returns flows here
                if id(helper) not in seen:
                    seen.add(id(helper))
                    for value, rstmt in helper.returns:
                        if value is not None:
                            yield from flow_back(value, facts, helper, rstmt, depth + 1, seen)
                return
        if is_loss_callee(func, facts, scope, stmt):
            return
        if isinstance(func, cst.Attribute):
            # x.clamp(...), x.mean(), scaler.scale(x)...
            if func.attr.value == "scale" and expr.args:
                yield from flow_back(expr.args[0].value, facts, scope, stmt, depth + 1, seen)
                return
            meth = func.attr.value
            # Only through what keeps the value a loss (reductions, casts, scaling, caps): after
            # log/exp/pow the clamped value is an intermediate (a probability), not the loss.
            if meth in PASS_THROUGH_METHODS or meth in CAP_FUNCS_METHODS:
                yield from flow_back(func.value, facts, scope, stmt, depth + 1, seen)
            if meth in CAP_FUNCS_METHODS:
                for a in expr.args:
                    yield from flow_back(a.value, facts, scope, stmt, depth + 1, seen)
            return
        q = facts.qualify(func)
        if q is not None:
            if q in PASS_THROUGH_FUNCS or q in CAP_FUNCS:
                for a in expr.args:
                    if a.keyword is None:
                        yield from flow_back(a.value, facts, scope, stmt, depth + 1, seen)
            return
        if name in ("min", "max", "sum"):
            for a in expr.args:
                yield from flow_back(a.value, facts, scope, stmt, depth + 1, seen)
        return
    if isinstance(expr, cst.BinaryOperation):
        yield from flow_back(expr.left, facts, scope, stmt, depth + 1, seen)
        yield from flow_back(expr.right, facts, scope, stmt, depth + 1, seen)
        return
    if isinstance(expr, cst.UnaryOperation):
        yield from flow_back(expr.expression, facts, scope, stmt, depth + 1, seen)
        return
    if isinstance(expr, cst.IfExp):
        yield from flow_back(expr.body, facts, scope, stmt, depth + 1, seen)
        yield from flow_back(expr.orelse, facts, scope, stmt, depth + 1, seen)
        return
    name = dotted(expr)
    if name is None:
        return
    for a in scope.reaching(name, stmt):
        if id(a) in seen or a.value is None:
            continue
        seen.add(id(a))
        yield from flow_back(a.value, facts, scope, a.stmt, depth + 1, seen)
        if a.kind == "aug":  # x += v: the old x flows too
            yield from flow_back(expr, facts, scope, a.stmt, depth + 1, seen)


CAP_FUNCS_METHODS = {"clamp", "clip", "clamp_", "clip_", "clamp_max", "clamp_max_", "minimum", "fmin"}
CAP_FUNCS = {"torch.clamp", "torch.clip", "torch.clamp_max", "torch.min", "torch.minimum", "torch.fmin",
             "torch.max", "torch.maximum"}


@dataclass
class Cap:
    call: cst.Call
    operand: cst.BaseExpression
    bound: Optional[cst.BaseExpression]  # the cap, when it is one expression
    spelling: str  # "torch.clamp", ".clamp_()", "min()"
    is_min: bool = False  # min(a, b) / torch.minimum(a, b): either side may be the capped one


def as_cap(call: cst.Call, facts: FileFacts) -> Optional[Cap]:
    """If ``call`` caps a value from above (clamp/clip with a max, min(x, c)...), what and how."""
    func = call.func
    pos = [a.value for a in call.args if a.keyword is None and a.star == ""]
    q = facts.qualify(func)
    if q in ("torch.clamp", "torch.clip", "torch.clamp_max"):
        if not pos:
            return None
        if q == "torch.clamp_max":
            bound = pos[1] if len(pos) > 1 else kwarg(call, "max")
        else:
            bound = pos[2] if len(pos) > 2 else kwarg(call, "max")
        return None if is_none(bound) else Cap(call, pos[0], bound, q)
    if q in ("torch.min", "torch.minimum", "torch.fmin") or (q is None and dotted(func) == "min"):
        if len(pos) == 2:
            return Cap(call, pos[0], pos[1], q or "min", is_min=True)
        return None
    if isinstance(func, cst.Attribute) and q is None:
        meth = func.attr.value
        if meth in ("clamp", "clip", "clamp_", "clip_"):
            bound = pos[1] if len(pos) > 1 else kwarg(call, "max")
            return None if is_none(bound) else Cap(call, func.value, bound, f".{meth}()")
        if meth in ("clamp_max", "clamp_max_"):
            bound = pos[0] if pos else kwarg(call, "max")
            return None if is_none(bound) else Cap(call, func.value, bound, f".{meth}()")
        if meth in ("minimum", "fmin") and pos:
            return Cap(call, func.value, pos[0], f".{meth}()", is_min=True)
    return None


#: Reductions: a cap applied before one of these caps each element (sample), not the batch loss.
_REDUCTIONS = {"mean", "sum", "nanmean", "nansum"}
_REDUCTION_FUNCS = {"torch.mean", "torch.sum", "torch.nanmean", "torch.nansum"}


def direct_caps(
    expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, reduced: bool = False, depth: int = 0, seen: Optional[Set[int]] = None
) -> Iterator[Tuple[Cap, bool]]:
    """Caps whose result IS the backpropagated value ``expr`` (through names, reductions and casts
    only, never through arithmetic or another term): ``loss = torch.clamp(crit(out, y), max=1.0);
    loss.backward()``. Whatever the capped operand is — a criterion that cannot be resolved, a model
    that returns its loss — what is backpropagated is a loss, so the cap caps the loss. Yields
    (cap, reduced): ``reduced`` when a mean/sum comes after the cap (each sample is capped; else the
    reduced batch loss is)."""
    if depth > 12:
        return
    seen = seen if seen is not None else set()
    if isinstance(expr, cst.Call):
        cap = as_cap(expr, facts)
        if cap is not None:
            if not cap.is_min:
                yield cap, reduced
            return
        func = expr.func
        if isinstance(func, cst.Attribute) and facts.qualify(func) is None:
            meth = func.attr.value
            if meth in _REDUCTIONS or meth in ("float", "double", "half", "to", "squeeze", "view", "reshape", "cuda", "cpu", "contiguous"):
                yield from direct_caps(func.value, facts, scope, stmt, reduced or meth in _REDUCTIONS, depth + 1, seen)
            elif meth == "scale" and expr.args:  # scaler.scale(loss)
                yield from direct_caps(expr.args[0].value, facts, scope, stmt, reduced, depth + 1, seen)
            return
        q = facts.qualify(func)
        if q in _REDUCTION_FUNCS and expr.args and expr.args[0].keyword is None:
            yield from direct_caps(expr.args[0].value, facts, scope, stmt, True, depth + 1, seen)
        return
    name = dotted(expr)
    if name is None:
        return
    for a in scope.reaching(name, stmt):
        if id(a) in seen or a.value is None or a.kind not in ("assign", "inplace"):
            continue
        seen.add(id(a))
        if a.kind == "inplace":  # loss.clamp_(max=1.0)
            cap = as_cap(a.value, facts) if isinstance(a.value, cst.Call) else None
            if cap is not None and not cap.is_min:
                yield cap, reduced
            continue
        yield from direct_caps(a.value, facts, a.scope or scope, a.stmt, reduced, depth + 1, seen)
