"""Global PyTorch hooks that watch the user's training loop, and what they capture.

Installed by the shim before the user's script runs; nothing here changes what the script computes (the
hooks only look, except the optimizer post-step hook, which stops the script after N steps by raising
:class:`StopTraining`, a BaseException the script's ``except Exception`` cannot swallow).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

#: Autograd nodes that cap the loss: their gradient is zero where the cap is active.
CLAMP_NODES = ("ClampBackward0", "ClampBackward1", "ClampMinBackward0", "ClampMaxBackward0", "ClipBackward0",
               "MinimumBackward0", "MaximumBackward0", "MinBackward0", "MaxBackward0", "FminBackward0",
               "FmaxBackward0", "HardtanhBackward0")
#: Regression loss nodes and their saved (prediction, target) attributes.
REGRESSION_NODES = ("MseLossBackward0", "SmoothL1LossBackward0", "HuberLossBackward0", "L1LossBackward0")
CLASSIFICATION_NODES = ("NllLossBackward0", "NllLoss2DBackward0", "BinaryCrossEntropyBackward0",
                        "BinaryCrossEntropyWithLogitsBackward0", "KlDivBackward0", "MultiMarginLossBackward0",
                        "MultilabelMarginLossBackward0", "SoftMarginLossBackward0")
#: Nodes a loss passes through unchanged in kind (reductions, scaling, sums of terms).
PASS_NODES = ("MeanBackward0", "MeanBackward1", "SumBackward0", "SumBackward1", "MulBackward0", "DivBackward0",
              "AddBackward0", "SubBackward0", "NegBackward0", "ViewBackward0", "ReshapeAliasBackward0",
              "SqueezeBackward0", "SqueezeBackward1", "UnsqueezeBackward0", "ToCopyBackward0",
              "UnbindBackward0", "SelectBackward0", "ExpandBackward0", "CloneBackward0", "AliasBackward0")
MAX_DEPTH = 8
MAX_CALLS_PER_STEP = 16
#: Autograd nodes walked from the loss to find the model's output (a transformer's graph has a few thousand).
MAX_GRAPH_NODES = 50_000
#: Tensors up to this many elements are copied when captured (a script may change its target in place later).
CLONE_NUMEL = 8_000_000
#: The loss functions whose autograd node the loss can be rebuilt from: node name -> recipe kind.
LOSS_NODES = {"NllLossBackward0": "nll", "NllLoss2DBackward0": "nll", "BinaryCrossEntropyBackward0": "bce",
              "BinaryCrossEntropyWithLogitsBackward0": "bce_logits", "MseLossBackward0": "mse",
              "L1LossBackward0": "l1", "SmoothL1LossBackward0": "smooth_l1", "HuberLossBackward0": "huber"}


class StopTraining(BaseException):
    """Raised from the optimizer step hook after N steps; caught by the shim around runpy."""


def _tree_map(obj: Any, fn: Callable[[Any], Any], depth: int = 0) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if depth > 4:
        return obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_tree_map(v, fn, depth + 1) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tree_map(v, fn, depth + 1) for v in obj)
    if isinstance(obj, dict):
        return {k: _tree_map(v, fn, depth + 1) for k, v in obj.items()}
    return obj


def detach(obj: Any) -> Any:
    return _tree_map(obj, lambda t: t.detach())


def snapshot(obj: Any) -> Any:
    """Detached copies (small tensors cloned: the script may change them in place after the call)."""
    return _tree_map(obj, lambda t: t.detach().clone() if t.numel() <= CLONE_NUMEL else t.detach())


def tensors_in(obj: Any, depth: int = 0) -> List[torch.Tensor]:
    out: List[torch.Tensor] = []
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif depth <= 4 and isinstance(obj, (list, tuple)):
        for v in obj:
            out.extend(tensors_in(v, depth + 1))
    elif depth <= 4 and isinstance(obj, dict):
        for v in obj.values():
            out.extend(tensors_in(v, depth + 1))
    return out


@dataclass
class Call:
    """One outermost module call (the model, a loss module...)."""

    module: Any
    args: Any
    kwargs: Any
    output: Any
    #: grad_fn of each tensor of the output (tensors_in order), while the step lasts: how the loss is found
    nodes: List[Any] = field(default_factory=list)


@dataclass
class LossInfo:
    value: float
    top: str  # the name of the loss tensor's grad_fn
    chain: List[str]  # node names from the top through loss-preserving nodes
    kind: Optional[str] = None  # "regression" | "classification" | None
    loss_node: Optional[str] = None
    prediction: Any = None  # the regression loss's saved input and target (detached)
    target: Any = None
    clamps: List[Dict[str, Any]] = field(default_factory=list)  # {"node", "min", "max", "saturated", "total"}
    site: Optional[Tuple[str, int]] = None
    #: How the loss was computed from a module call's output (see :func:`trace_loss`): {"call": index in the
    #: step's calls, "out": index of the output tensor, "ops": replayable ops from that tensor to the loss
    #: function's input, "loss": {"kind": nll|bce|...|own, ...}}; None when no call's output reaches the loss
    #: through ops trainlint can replay.
    recipe: Optional[Dict[str, Any]] = None
    classes: Optional[int] = None  # the class dimension a cross-entropy / NLL reduced over


@dataclass
class Step:
    index: int
    calls: List[Call]
    loss: Optional[LossInfo]
    lr: List[float]
    grad_norm: Optional[float]
    loader: Optional[int]  # id of the DataLoader that gave the last batch
    batch: Any
    optimizer: Any
    scheduler_calls_before: int  # scheduler.step calls seen before this step
    params: Optional[set] = None  # ids of the parameters a manual update (no torch.optim) changed


@dataclass
class SchedulerCall:
    scheduler: Any
    after_step: int  # optimizer steps done when it was called
    lr: List[float]
    site: Optional[Tuple[str, int]]


@dataclass
class Capture:
    """Everything the hooks saw."""

    max_steps: int
    user_roots: List[str]
    steps: List[Step] = field(default_factory=list)
    optimizers: List[Any] = field(default_factory=list)
    schedulers: List[Any] = field(default_factory=list)
    scheduler_sites: Dict[int, Tuple[str, int]] = field(default_factory=dict)
    scheduler_calls: List[SchedulerCall] = field(default_factory=list)
    loaders: List[Any] = field(default_factory=list)  # every DataLoader constructed
    loader_sites: Dict[int, Tuple[str, int]] = field(default_factory=dict)
    loaders_iterated: List[int] = field(default_factory=list)
    seed_calls: List[Dict[str, Any]] = field(default_factory=list)
    clip_calls: int = 0
    clip_norm: Optional[float] = None  # the max_norm of the script's clip_grad_norm_ (the probes clip alike)
    names: Dict[int, str] = field(default_factory=dict)  # id(object) -> the script's variable name
    int_vars: Dict[str, int] = field(default_factory=dict)  # epochs etc. seen in the script's frames
    # working state
    _calls: List[Call] = field(default_factory=list)
    _depth: int = 0
    _loss: Optional[LossInfo] = None
    _batch: Any = None
    _batch_loader: Optional[int] = None
    _grad_norm: Optional[float] = None
    _pending: Any = None  # a manual update's (loss, calls, parameter fingerprints) until the next backward
    on_step: Any = None  # called with the number of steps seen after each step (the shim's progress file)
    #: Set when another process of the run watches the training (Hogwild: the first process that steps is
    #: watched): the hooks of this one then only pass through.
    off: bool = False
    _manual_before: Any = None  # parameter copies at the pending backward (manual updates: the LR estimate)
    _manual_grads: Any = None
    manual_lr: Optional[float] = None  # |update| / |gradient| of a manual SGD update
    started: float = field(default_factory=time.perf_counter)
    step_times: List[float] = field(default_factory=list)
    step_cpu: List[float] = field(default_factory=list)  # this process's CPU seconds at each step (all threads)

    def reset(self) -> None:
        """Forget the steps seen (a forked child starts counting its own; a process that is not watched keeps
        nothing)."""
        self.steps = []
        self.step_times = []
        self.step_cpu = []
        self._calls = []
        self._loss = None
        self._pending = None
        self._depth = 0
        self._manual_before = self._manual_grads = None

    # -- what the probes ask -----------------------------------------------------------------
    def optimizer(self) -> Any:
        return self.steps[-1].optimizer if self.steps else None

    def trained_params(self) -> set:
        opt = self.optimizer()
        if opt is None:  # manual updates (p.data.add_(p.grad, alpha=-lr)): the parameters that changed
            out: set = set()
            for s in self.steps:
                out |= s.params or set()
            return out
        return {id(p) for g in opt.param_groups for p in g["params"]}

    def model_call(self, step: Optional[Step] = None) -> Optional[Call]:
        """The call of the top-level model in a step: the outermost module call whose parameters the
        optimizer trains (most trained parameters wins)."""
        trained = self.trained_params()
        best, best_n = None, 0
        for s in ([step] if step else reversed(self.steps)):
            rec = s.loss.recipe if s.loss is not None else None
            if rec is not None and rec["call"] < len(s.calls):  # the call whose output the loss came from
                c = s.calls[rec["call"]]
                try:
                    if any(id(p) in trained for p in c.module.parameters()):
                        return c
                except Exception:
                    pass
            for c in s.calls:
                try:
                    n = sum(1 for p in c.module.parameters() if id(p) in trained)
                except Exception:
                    n = 0
                if n > best_n:
                    best, best_n = c, n
            if best is not None:
                return best
        return best

    def model(self) -> Any:
        c = self.model_call()
        return c.module if c else None

    def scheduler(self) -> Any:
        opt = self.optimizer()
        for s in reversed(self.schedulers):
            if getattr(s, "optimizer", None) is opt:
                return s
        return self.schedulers[-1] if self.schedulers else None

    def train_loader(self) -> Any:
        ids = [s.loader for s in self.steps if s.loader is not None]
        if not ids:
            return None
        for dl in self.loaders:
            if id(dl) == ids[-1]:
                return dl
        return None

    def other_loaders(self) -> List[Any]:
        train = self.train_loader()
        return [dl for dl in self.loaders if dl is not train]

    def name_of(self, obj: Any, default: str = "") -> str:
        return self.names.get(id(obj), default)


def user_site(roots: List[str]) -> Optional[Tuple[str, int]]:
    """(file, line) of the innermost frame in the user's code (not torch, not trainlint)."""
    f = sys._getframe(1)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith("<") and not fn.startswith(here) and "site-packages" not in fn and \
                "dist-packages" not in fn and "/lib/python" not in fn:
            return (fn, f.f_lineno)
        f = f.f_back
    return None


def _inspect_loss(loss: torch.Tensor) -> LossInfo:
    """Walk the top of the loss's autograd graph (before backward frees the saved tensors)."""
    value = float(loss.detach().float().mean().item())
    node = loss.grad_fn
    info = LossInfo(value=value, top=node.name() if node is not None else "", chain=[])
    frontier = [(node, 0)]
    seen = set()
    while frontier:
        n, depth = frontier.pop(0)
        if n is None or id(n) in seen or depth > MAX_DEPTH:
            continue
        seen.add(id(n))
        name = n.name()
        info.chain.append(name)
        if name in CLAMP_NODES:
            info.clamps.append(_clamp_info(n, name, depth))
        if name in REGRESSION_NODES and info.loss_node is None:
            info.kind, info.loss_node = "regression", name
            try:
                info.prediction = n._saved_self.detach()
                info.target = n._saved_target.detach()
            except Exception:
                pass
            continue
        if name in ("PowBackward0", "AbsBackward0") and info.loss_node is None:
            nxt = [f for f, _ in getattr(n, "next_functions", ()) if f is not None]
            if nxt and nxt[0].name() == "SubBackward0":  # a hand-written squared / absolute error
                info.kind, info.loss_node = "regression", f"{name} of SubBackward0"
                continue
        if name in CLASSIFICATION_NODES and info.loss_node is None:
            info.kind, info.loss_node = "classification", name
            try:
                info.target = n._saved_target.detach()
            except Exception:
                pass
            continue
        if name in PASS_NODES or name in CLAMP_NODES or depth == 0:
            for nxt, _ in getattr(n, "next_functions", ()):
                frontier.append((nxt, depth + 1))
    return info


#: Ops between a model's output and its loss function that can be replayed on a new output.
def _op(node: Any, shape_after: Optional[Tuple[int, ...]]) -> Optional[Tuple]:
    name = node.name()
    g = lambda a, d=None: getattr(node, a, d)  # noqa: E731
    if name in ("ViewBackward0", "ReshapeAliasBackward0", "UnsafeViewBackward0", "_UnsafeViewBackward0",
                "ExpandBackward0", "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2",
                "UnsqueezeBackward0", "FlattenBackward0"):
        if name == "UnsqueezeBackward0":
            return ("unsqueeze", int(g("_saved_dim")))
        if name == "SqueezeBackward1":
            return ("squeeze", int(g("_saved_dim")))
        if shape_after is None:
            return None
        return ("expand" if name == "ExpandBackward0" else "reshape", tuple(shape_after))
    if name == "TransposeBackward0":
        return ("transpose", int(g("_saved_dim0")), int(g("_saved_dim1")))
    if name == "TBackward0":
        return ("transpose", 0, 1)
    if name == "PermuteBackward0":
        return ("permute", tuple(int(d) for d in g("_saved_dims")))
    if name == "SelectBackward0":
        return ("select", int(g("_saved_dim")), int(g("_saved_index")))
    if name == "SliceBackward0":
        end = g("_saved_end")
        return ("slice", int(g("_saved_dim")), int(g("_saved_start") or 0), None if end is None else int(end),
                int(g("_saved_step") or 1))
    if name in ("LogSoftmaxBackward0", "SoftmaxBackward0"):
        return ("log_softmax" if name.startswith("Log") else "softmax", int(g("_saved_dim")))
    if name == "SigmoidBackward0":
        return ("sigmoid",)
    if name in ("CloneBackward0", "AliasBackward0", "ToCopyBackward0"):
        return ("id",)
    return None


def _in_shape(node: Any) -> Optional[Tuple[int, ...]]:
    """The shape of a node's (first) input, where the node saved it."""
    for a in ("_saved_self_sym_sizes", "_saved_self_sizes", "_saved_sizes"):
        v = getattr(node, a, None)
        if v is not None:
            try:
                return tuple(int(x) for x in v)
            except Exception:
                pass
    for a in ("_saved_self", "_saved_result"):
        try:
            v = getattr(node, a, None)
        except Exception:
            v = None
        if isinstance(v, torch.Tensor):
            return tuple(v.shape)
    return None


def _loss_spec(node: Any, kind: str) -> Dict[str, Any]:
    spec: Dict[str, Any] = {"kind": kind, "node": node.name()}
    for a in ("target", "weight", "pos_weight"):
        try:
            v = getattr(node, f"_saved_{a}", None)
        except Exception:
            v = None
        if isinstance(v, torch.Tensor):
            spec[a] = v.detach().clone() if v.numel() <= CLONE_NUMEL else v.detach()
    for a in ("reduction", "ignore_index", "beta", "delta"):
        v = getattr(node, f"_saved_{a}", None)
        if isinstance(v, int) and v >= 2 ** 63:  # (an int64 read back unsigned: ignore_index=-100)
            v -= 2 ** 64
        if isinstance(v, (int, float)):
            spec[a] = v
    return spec


def trace_loss(loss: torch.Tensor, calls: List["Call"], info: LossInfo) -> None:
    """Find the module call whose output the loss came from and how: fills ``info.recipe`` and ``info.classes``.

    Walks the loss's autograd graph (before backward frees it) down to the output nodes of the step's calls. The
    ops on the way from that output to the loss function (view, squeeze, transpose, indexing by constants,
    log_softmax...) are recorded for replay; a model that computes its own loss (``logits, loss = model(x, y)``)
    is a path that reaches a scalar output directly.
    """
    outputs: Dict[int, Tuple[int, int]] = {}
    for ci, c in enumerate(calls):
        if isinstance(c.module, torch.nn.modules.loss._Loss):
            continue  # the loss module's own output is the loss, not where it came from
        for oi, n in enumerate(c.nodes):
            if n is not None:
                outputs.setdefault(id(n), (ci, oi))
    root = loss.grad_fn
    if root is None:
        return
    parent: Dict[int, Any] = {id(root): None}
    nodes: Dict[int, Any] = {id(root): root}
    queue, head, found = [root], 0, []
    while head < len(queue) and head < MAX_GRAPH_NODES:
        n = queue[head]
        head += 1
        name = n.name()
        if info.classes is None and name.startswith("NllLoss"):
            shp = _in_shape(n)
            if shp:
                info.classes = int(shp[1] if len(shp) >= 2 else shp[0])
        if id(n) in outputs:
            found.append(n)
            if info.classes is not None:
                break
            continue  # do not walk into the model (its own loss's NLL is looked for below)
        for nxt, _ in getattr(n, "next_functions", ()):
            if nxt is not None and id(nxt) not in parent:
                parent[id(nxt)] = n
                nodes[id(nxt)] = nxt
                queue.append(nxt)
    best = None
    for out_node in found:
        path = [out_node]
        while parent[id(path[-1])] is not None:
            path.append(parent[id(path[-1])])
        path.reverse()  # loss root ... output node
        ci, oi = outputs[id(out_node)]
        rec = _recipe(path, calls[ci], oi)
        if rec is None:
            continue
        rec.update(call=ci, out=oi)
        if best is None or (best["loss"]["kind"] == "own" and rec["loss"]["kind"] != "own"):
            best = rec
        if rec["loss"]["kind"] != "own":
            break
    info.recipe = best
    if best is not None and best["loss"]["kind"] == "own" and info.classes is None:
        # the model's own cross-entropy: its NLL node is below the output node
        n0 = calls[best["call"]].nodes[best["out"]]
        seen, frontier = set(), [n0]
        while frontier and len(seen) < 2000:
            n = frontier.pop(0)
            if n is None or id(n) in seen:
                continue
            seen.add(id(n))
            if n.name().startswith("NllLoss"):
                shp = _in_shape(n)
                if shp:
                    info.classes = int(shp[1] if len(shp) >= 2 else shp[0])
                break
            frontier.extend(f for f, _ in getattr(n, "next_functions", ()))


def _recipe(path: List[Any], call: "Call", out_index: int) -> Optional[Dict[str, Any]]:
    """path: [loss root, ..., the call's output node]."""
    k = len(path) - 1
    outs = tensors_in(call.output)
    if out_index >= len(outs):
        return None
    j = None
    for i in range(k - 1, -1, -1):
        if path[i].name() in LOSS_NODES:
            j = i
            break
    if j is None:  # no loss function between: the output itself is the loss (scaled or averaged above)
        if outs[out_index].numel() == 1:
            return {"ops": [], "loss": {"kind": "own"}}
        return None
    ops = []
    for i in range(k - 1, j, -1):  # from the model side toward the loss function
        after = _in_shape(path[i - 1]) if i - 1 >= j else None
        op = _op(path[i], after)
        if op is None:
            return None
        ops.append(op)
    spec = _loss_spec(path[j], LOSS_NODES[path[j].name()])
    if "target" not in spec:
        return None
    return {"ops": ops, "loss": spec, "batch": int(outs[out_index].shape[0]) if outs[out_index].dim() else 0}


def replay_ops(ops: List[Tuple], t: torch.Tensor, batch: int = 0) -> torch.Tensor:
    """Apply recorded ops to a (new) model output; a reshape follows a changed batch size in its first dim."""
    import torch.nn.functional as F

    n = int(t.shape[0]) if t.dim() else 0
    for op in ops:
        kind = op[0]
        if kind in ("reshape", "expand"):
            shape = list(op[1])
            total = 1
            for d in shape:
                total *= d
            if total != t.numel() and shape:
                if batch and n and shape[0] % batch == 0 and kind == "reshape":
                    shape[0] = shape[0] // batch * n
                else:
                    shape[0] = -1
            t = t.reshape(shape) if kind == "reshape" else t.expand(shape)
        elif kind == "unsqueeze":
            t = t.unsqueeze(op[1])
        elif kind == "squeeze":
            t = t.squeeze(op[1])
        elif kind == "transpose":
            t = t.transpose(op[1], op[2])
        elif kind == "permute":
            t = t.permute(*op[1])
        elif kind == "select":
            t = t.select(op[1], op[2])
        elif kind == "slice":
            _, dim, start, end, step = op
            size = t.shape[dim]
            t = t[(slice(None),) * (dim % t.dim()) + (slice(start, min(end, size) if end is not None else None, step),)]
        elif kind == "log_softmax":
            t = F.log_softmax(t, op[1])
        elif kind == "softmax":
            t = F.softmax(t, op[1])
        elif kind == "sigmoid":
            t = torch.sigmoid(t)
    return t


def _clamp_info(node: Any, name: str, depth: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {"node": name, "depth": depth, "min": None, "max": None, "saturated": None, "total": None}
    try:
        x = node._saved_self.detach()
    except Exception:
        return out
    lo = hi = None
    try:
        if name.startswith(("Clamp", "Clip", "Hardtanh")):
            for attr, key in (("_saved_min", "min"), ("_saved_max", "max"), ("_saved_min_val", "min"),
                              ("_saved_max_val", "max")):
                v = getattr(node, attr, None)
                if v is None:
                    continue
                v = float(v.item()) if isinstance(v, torch.Tensor) else float(v)
                out[key] = v
            lo, hi = out["min"], out["max"]
        elif name.startswith(("Minimum", "Min", "Fmin")):
            other = node._saved_other.detach()
            sat = x > other
            out["max"] = float(other.float().min().item())
            out["saturated"], out["total"] = int(sat.sum().item()), int(sat.numel())
            return out
        elif name.startswith(("Maximum", "Max", "Fmax")):
            other = node._saved_other.detach()
            sat = x < other
            out["min"] = float(other.float().max().item())
            out["saturated"], out["total"] = int(sat.sum().item()), int(sat.numel())
            return out
    except Exception:
        return out
    sat = torch.zeros_like(x, dtype=torch.bool)
    if lo is not None:
        sat |= x < lo
    if hi is not None:
        sat |= x > hi
    out["saturated"], out["total"] = int(sat.sum().item()), int(sat.numel())
    return out


class Hooks:
    """Installs and removes the global hooks."""

    def __init__(self, capture: Capture, losses_only: bool = False):
        self.cap = capture
        self.losses_only = losses_only
        self._undo: List[Callable[[], None]] = []

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        orig = getattr(owner, name)
        setattr(owner, name, make(orig))
        self._undo.append(lambda: setattr(owner, name, orig))

    def install(self) -> None:
        import random

        import torch.nn.modules.module as mm
        import torch.optim.optimizer as oo

        cap = self.cap
        roots = cap.user_roots

        # optimizer steps
        def pre_step(opt, args, kwargs):
            if cap.off:
                return
            if opt not in cap.optimizers:
                cap.optimizers.append(opt)
            cap._grad_norm = None
            if not self.losses_only:
                try:
                    sq = 0.0
                    for g in opt.param_groups:
                        for p in g["params"]:
                            if p.grad is not None:
                                sq += float(p.grad.detach().float().pow(2).sum().item())
                    cap._grad_norm = sq ** 0.5
                except Exception:
                    pass

        def post_step(opt, args, kwargs):
            if cap.off:
                return
            self._end_step(Step(
                index=len(cap.steps) + 1, calls=list(cap._calls), loss=cap._loss,
                lr=[float(g.get("lr", 0.0)) for g in opt.param_groups],
                grad_norm=cap._grad_norm, loader=cap._batch_loader, batch=cap._batch,
                optimizer=opt, scheduler_calls_before=len(cap.scheduler_calls)), [])

        h1 = oo.register_optimizer_step_pre_hook(pre_step)
        h2 = oo.register_optimizer_step_post_hook(post_step)
        self._undo += [h1.remove, h2.remove]

        # backward: the loss tensor and the top of its graph (the first backward of a step: an LBFGS closure
        # runs several, the first is the loss at the step's start)
        def on_backward(t):
            if cap.off:
                return
            if not isinstance(t, torch.Tensor) or t.numel() != 1 or t.grad_fn is None:
                return
            if not cap.optimizers:
                self._manual_step()
            if cap._loss is not None:
                return
            if self.losses_only:
                info = LossInfo(float(t.detach().float().item()), "", [])
            else:
                info = _inspect_loss(t)
                try:
                    trace_loss(t, cap._calls, info)
                except Exception:
                    pass
            info.site = user_site(roots)
            cap._loss = info
            if self.losses_only and len(cap.steps) + 1 >= cap.max_steps:
                # a fresh run (determinism) needs the losses only: it stops at the last one, before that
                # step's backward and update (an LBFGS step is 20 of them)
                idx = len(cap.steps) + 1
                cap.steps.append(Step(index=idx, calls=[], loss=info, lr=[], grad_norm=None, loader=None, batch=None,
                                      optimizer=None, scheduler_calls_before=len(cap.scheduler_calls)))
                cap.step_times.append(time.perf_counter())
                cap.step_cpu.append(time.process_time())
                if cap.on_step is not None:
                    cap.on_step(idx)
                if cap.off:
                    cap.reset()
                    return
                raise StopTraining()
            if not cap.optimizers:
                cap._pending = (list(cap._calls), _fingerprints(cap._calls))
                cap._manual_before = _clones(cap._pending[1])

        def after_backward():
            if cap._pending is not None and not cap.optimizers and cap._manual_grads is None:
                try:
                    cap._manual_grads = {pid: p.grad.detach().clone() for pid, (p, _) in cap._pending[1].items()
                                         if p.grad is not None and pid in (cap._manual_before or {})}
                except Exception:
                    cap._manual_grads = {}

        def make_backward(orig):
            def backward(self_t, *a, **k):
                try:
                    on_backward(self_t)
                except StopTraining:
                    raise
                except Exception:
                    pass
                out = orig(self_t, *a, **k)
                after_backward()
                return out
            return backward

        self._patch(torch.Tensor, "backward", make_backward)

        def make_autograd_backward(orig):
            def autograd_backward(tensors, *a, **k):
                try:
                    on_backward(tensors[0] if isinstance(tensors, (list, tuple)) and tensors else tensors)
                except StopTraining:
                    raise
                except Exception:
                    pass
                return orig(tensors, *a, **k)
            return autograd_backward

        self._patch(torch.autograd, "backward", make_autograd_backward)

        # seeds and clipping
        def make_seed(orig, label):
            def seed(*a, **k):
                cap.seed_calls.append({"fn": label, "value": repr(a[0]) if a else None, "after_step": len(cap.steps)})
                return orig(*a, **k)
            return seed

        self._patch(torch, "manual_seed", lambda o: make_seed(o, "torch.manual_seed"))
        self._patch(random, "seed", lambda o: make_seed(o, "random.seed"))
        try:
            import numpy

            self._patch(numpy.random, "seed", lambda o: make_seed(o, "numpy.random.seed"))
        except Exception:
            pass

        def make_clip(orig):
            def clip(*a, **k):
                cap.clip_calls += 1
                try:
                    mn = a[1] if len(a) > 1 else k.get("max_norm")
                    if mn is not None and cap.clip_norm is None:
                        cap.clip_norm = float(mn)
                except Exception:
                    pass
                return orig(*a, **k)
            return clip

        import torch.nn.utils as nu
        import torch.nn.utils.clip_grad as cg

        self._patch(nu, "clip_grad_norm_", make_clip)
        self._patch(cg, "clip_grad_norm_", make_clip)


        # outermost module calls
        def fpre(module, args):
            if cap.off:
                return
            cap._depth += 1

        loss_base = torch.nn.modules.loss._Loss

        def fpost(module, args, kwargs, output):
            if cap.off:
                return
            cap._depth = max(0, cap._depth - 1)
            if cap._depth == 0 and len(cap._calls) < MAX_CALLS_PER_STEP and torch.is_grad_enabled():
                # only modules that can be the model (they have parameters) or the loss: a transforms.Normalize
                # in the data pipeline is an nn.Module too
                try:
                    if not isinstance(module, loss_base) and next(module.parameters(), None) is None:
                        return
                    nodes = [t.grad_fn for t in tensors_in(output)]
                    cap._calls.append(Call(module, snapshot(args), snapshot(dict(kwargs or {})), snapshot(output),
                                           nodes))
                except Exception:
                    pass

        h3 = mm.register_module_forward_pre_hook(fpre)
        try:  # always_call: a forward that raises still closes its depth
            h4 = mm.register_module_forward_hook(fpost, with_kwargs=True, always_call=True)
        except TypeError:  # torch < 2.0
            h4 = mm.register_module_forward_hook(lambda m, a, o: fpost(m, a, {}, o))
        self._undo += [h3.remove, h4.remove]

        if self.losses_only:
            return

        # schedulers
        from torch.optim import lr_scheduler as ls

        base = getattr(ls, "LRScheduler", None) or getattr(ls, "_LRScheduler")

        def make_sched_step(orig):
            def step(sched, *a, **k):
                initial = getattr(sched, "_step_count", 0) == 0
                out = orig(sched, *a, **k)
                try:
                    if sched not in cap.schedulers:
                        cap.schedulers.append(sched)
                        cap.scheduler_sites[id(sched)] = user_site(roots)
                    if not initial:
                        cap.scheduler_calls.append(SchedulerCall(sched, len(cap.steps),
                                                                 [float(x) for x in sched.get_last_lr()],
                                                                 user_site(roots)))
                except Exception:
                    pass
                return out
            return step

        self._patch(base, "step", make_sched_step)
        # ReduceLROnPlateau does not derive from LRScheduler in every version
        plateau = getattr(ls, "ReduceLROnPlateau", None)
        if plateau is not None and not issubclass(plateau, base):
            self._patch(plateau, "step", make_sched_step)

        # DataLoaders
        from torch.utils.data import DataLoader

        def make_init(orig):
            def init(dl, *a, **k):
                orig(dl, *a, **k)
                if len(cap.loaders) < 64:
                    cap.loaders.append(dl)
                cap.loader_sites[id(dl)] = user_site(roots)
            return init

        def make_iter(orig):
            def it(dl):
                inner = orig(dl)
                if id(dl) not in cap.loaders_iterated:
                    cap.loaders_iterated.append(id(dl))
                return _WatchedIter(inner, dl, cap)
            return it

        self._patch(DataLoader, "__init__", make_init)
        self._patch(DataLoader, "__iter__", make_iter)

    def _manual_step(self) -> None:
        """Without torch.optim: a step happened when the parameters of the last backward's modules changed."""
        cap = self.cap
        if cap._pending is None:
            return
        calls, fps = cap._pending
        changed = {pid for pid, (p, fp) in fps.items() if _fingerprint(p) != fp}
        if not changed:
            return
        cap._pending = None
        if cap.manual_lr is None and cap._manual_before and cap._manual_grads:
            try:  # p -= lr * grad: the script's LR, for the probes' copy of its optimizer
                ratios = []
                for pid, before in cap._manual_before.items():
                    g = cap._manual_grads.get(pid)
                    p = fps[pid][0]
                    if g is None or float(g.norm()) == 0:
                        continue
                    ratios.append(float((p.detach() - before).norm()) / float(g.norm()))
                if ratios:
                    lr = sorted(ratios)[len(ratios) // 2]
                    if cap.clip_norm:  # the update used the clipped gradient: undo the clip's factor
                        total = sum(float(g.float().pow(2).sum()) for g in cap._manual_grads.values()) ** 0.5
                        factor = min(1.0, cap.clip_norm / (total + 1e-6))
                        lr = lr / factor if factor > 0 else lr
                    cap.manual_lr = lr
            except Exception:
                pass
        cap._manual_before = cap._manual_grads = None
        self._end_step(Step(index=len(cap.steps) + 1, calls=calls, loss=cap._loss, lr=[], grad_norm=None,
                            loader=cap._batch_loader, batch=cap._batch, optimizer=None,
                            scheduler_calls_before=len(cap.scheduler_calls), params=changed),
                       cap._calls[len(calls):])  # the calls since that backward belong to the next step

    def _end_step(self, step: Step, calls_left: List[Any]) -> None:
        """A step ended (an optimizer's step, or a manual update seen after it): record it and when, the
        calls that follow belong to the next one; then ``on_step``, and the end of watching (``off``) or of
        training (``max_steps``)."""
        cap = self.cap
        cap.steps.append(step)
        cap.step_times.append(time.perf_counter())
        cap.step_cpu.append(time.process_time())
        cap._calls = calls_left
        cap._loss = None
        cap._pending = None
        if cap.on_step is not None:
            cap.on_step(step.index)
        if cap.off:
            cap.reset()
            return
        if step.index >= cap.max_steps:
            raise StopTraining()

    def finish(self) -> None:
        """The script ended: a manual update after its last backward is a step too."""
        try:
            if not self.cap.optimizers:
                self.cap.max_steps = 10 ** 9
                self._manual_step()
        except Exception:
            pass

    def remove(self) -> None:
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:
                pass


def _fingerprint(p: Any) -> Tuple:
    with torch.no_grad():
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 16)
        return (p._version, float(flat.double().sum()), tuple(float(x) for x in flat[::step][:16]))


def _clones(fps: Dict[int, Tuple[Any, Tuple]]) -> Optional[Dict[int, Any]]:
    if sum(p.numel() for p, _ in fps.values()) > 20_000_000:
        return None
    with torch.no_grad():
        return {pid: p.detach().clone() for pid, (p, _) in fps.items()}


def _fingerprints(calls: List[Call]) -> Dict[int, Tuple[Any, Tuple]]:
    out: Dict[int, Tuple[Any, Tuple]] = {}
    for c in calls:
        try:
            for p in c.module.parameters():
                if p.requires_grad and id(p) not in out:
                    out[id(p)] = (p, _fingerprint(p))
        except Exception:
            continue
    return out


class _WatchedIter:
    """Wraps a DataLoader iterator: remembers the last batch and which loader gave it."""

    def __init__(self, inner: Any, loader: Any, cap: Capture):
        self._inner = inner
        self._loader_id = id(loader)
        self._cap = cap

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._inner)
        self._cap._batch = batch
        self._cap._batch_loader = self._loader_id
        return batch

    def __len__(self):
        return len(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


EPOCH_NAMES = ("epochs", "num_epochs", "n_epochs", "max_epochs", "epoch_count", "total_epochs", "nb_epochs")


def harvest_names(tb: Any, cap: Capture) -> None:
    """Variable names of the captured objects and epoch counts, from the frames of the stopped script."""
    wanted = {id(o) for o in cap.loaders + cap.optimizers + cap.schedulers}
    for s in cap.steps[-1:]:
        for c in s.calls:
            wanted.add(id(c.module))
    for dl in cap.loaders:
        wanted.add(id(getattr(dl, "dataset", None)))
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for f in frames:
        fn = f.f_code.co_filename
        if fn.startswith(here) or "site-packages" in fn or "/lib/python" in fn:
            continue
        for name, val in list(f.f_locals.items()) + ([] if f.f_globals is f.f_locals else list(f.f_globals.items())):
            if name.startswith("__"):
                continue
            if id(val) in wanted and id(val) not in cap.names:
                cap.names[id(val)] = name
            elif isinstance(val, int) and not isinstance(val, bool) and name.lower() in EPOCH_NAMES:
                cap.int_vars.setdefault("epochs", val)
            elif name.lower() in ("args", "cfg", "config", "opt", "hparams", "opts"):
                for en in EPOCH_NAMES:
                    v = getattr(val, en, None) if not isinstance(val, dict) else val.get(en)
                    if isinstance(v, int) and not isinstance(v, bool):
                        cap.int_vars.setdefault("epochs", v)
