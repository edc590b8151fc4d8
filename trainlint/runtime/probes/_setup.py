"""What the TL5xx probes share: a :class:`Setup` (model, inputs, target, a loss function, an optimizer recipe)
built either from the shim's capture or from in-memory objects (:mod:`trainlint.runtime.api`).

The loss is rebuilt from the captured step: the loss module the script called on the model's output (its
outermost module call after the model's), else the loss node of the autograd graph (MSE/L1/SmoothL1/Huber
with its saved target; NLL after a log-softmax -> cross-entropy; BCE with logits).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from trainlint.runtime.probes import call_model, model_copy, model_device, to_device, unwrap

#: Samples the training probes (overfit-one-batch, input-independent-baseline) use (TheDeepChecker: 16).
SMALL_BATCH = 16


@dataclass
class Setup:
    model: Any
    device: Any
    args: tuple
    kwargs: Dict[str, Any]
    target: Any
    loss_fn: Callable[[Any, Any], Any]  # (output, target) -> scalar loss
    kind: Optional[str] = None  # "classification" | "regression" | None
    opt_class: Any = None
    opt_kwargs: Dict[str, Any] = field(default_factory=dict)
    loss_name: str = ""
    first_loss: Optional[float] = None  # the loss of the first watched step (the loss at init)
    location: Optional[Dict[str, Any]] = None
    out_index: int = 0  # which tensor of the model's output (a tuple, dict, ModelOutput) the loss consumes
    ops: List[Any] = field(default_factory=list)  # replayed between that tensor and the loss function
    classes: Optional[int] = None  # the class dimension a cross-entropy reduced over
    own_loss: bool = False  # the model computes its loss itself (output[out_index] is the loss)
    loss_kind: str = ""  # nll | bce | bce_logits | mse | l1 | smooth_l1 | huber | own | "" (a loss module)
    batch0: int = 0  # the batch size the ops were recorded at
    ignore_index: int = -100  # the NLL's ignored target value
    reduction: str = "mean"  # the loss function's reduction (mean | sum | none)
    clip_norm: Optional[float] = None  # the script's gradient clipping (max_norm), copied by the training probes
    #: The optimizer copy is the script's own (class, LR); False for a manual update's estimated SGD
    opt_exact: bool = True
    #: Training runs of the probes, by name (see overfit_one_batch.train): shared by the copies take() makes
    runs: Dict[Any, Any] = field(default_factory=dict)

    def raw_output(self, out: Any) -> Any:
        """The output tensor the loss came from (for a model computing its own loss: its largest tensor)."""
        import torch

        ts = _tensors(out)
        if self.own_loss:
            big = [t for t in ts if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.numel() > 1]
            return max(big, key=lambda t: t.numel()) if big else None
        if self.out_index < len(ts):
            return ts[self.out_index]
        return ts[0] if ts else None

    def pick(self, out: Any) -> Any:
        """What the loss function consumed: the output tensor after the recorded ops (view, log_softmax...)."""
        from trainlint.runtime.capture import replay_ops

        t = self.raw_output(out)
        if t is None or self.own_loss or not self.ops:
            return t
        try:
            return replay_ops(self.ops, t, self.batch0)
        except Exception:
            return t

    # -- batch handling ------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        import torch

        for t in _tensors(self.args):
            if isinstance(t, torch.Tensor) and t.dim() > 0:
                return int(t.shape[0])
        return 0

    def take(self, idx: Any) -> "Setup":
        """The same setup on the samples ``idx`` (a LongTensor or a slice) of the batch."""
        n = self.n

        def sl(t: Any) -> Any:
            if t.dim() > 0 and t.shape[0] == n:
                return t[idx]
            if t.dim() == 3 and t.shape[1] == n:  # a recurrent state (layers, batch, hidden)
                return t[:, idx]
            return t

        from trainlint.runtime.capture import _tree_map

        def sl_target(t: Any) -> Any:
            if t.dim() > 0 and t.shape[0] != n and n and t.shape[0] % n == 0:  # (batch*time,) flattened targets
                return t.reshape(n, -1, *t.shape[1:])[idx].reshape(-1, *t.shape[1:])
            return sl(t)

        new = copy.copy(self)
        new.args = _tree_map(self.args, sl)
        new.kwargs = _tree_map(self.kwargs, sl)
        new.target = _tree_map(self.target, sl_target) if self.target is not None else None
        return new

    def map_inputs(self, fn: Callable[[Any], Any]) -> "Setup":
        """The same setup with ``fn`` applied to every floating-point input tensor."""
        from trainlint.runtime.capture import _tree_map

        new = copy.copy(self)
        new.args = _tree_map(self.args, lambda t: fn(t) if t.is_floating_point() else t)
        new.kwargs = _tree_map(self.kwargs, lambda t: fn(t) if t.is_floating_point() else t)
        return new

    def duplicated(self) -> "Setup":
        import torch

        n = self.n
        from trainlint.runtime.capture import _tree_map

        def dup(t: Any) -> Any:
            if t.dim() > 0 and t.shape[0] == n:
                return torch.cat([t, t])
            if t.dim() == 3 and t.shape[1] == n:  # a recurrent state (layers, batch, hidden)
                return torch.cat([t, t], 1)
            return t

        def dup_target(t: Any) -> Any:
            if t.dim() > 0 and t.shape[0] != n and n and t.shape[0] % n == 0:
                r = t.reshape(n, -1, *t.shape[1:])
                return torch.cat([r, r]).reshape(-1, *t.shape[1:])
            return dup(t)

        new = copy.copy(self)
        new.args = _tree_map(self.args, dup)
        new.kwargs = _tree_map(self.kwargs, dup)
        new.target = _tree_map(self.target, dup_target) if self.target is not None else None
        return new

    def zero_inputs(self) -> "Setup":
        """The inputs zeroed: every floating-point tensor of the model's arguments, and token ids given as its
        first argument (all token 0). A target passed as a later integer argument (a model computing its own
        loss) is kept. ``self`` when there is nothing to zero."""
        import torch

        new = self.map_inputs(torch.zeros_like)
        changed = bool(float_inputs(self))
        first = self.args[0] if self.args else None
        if isinstance(first, torch.Tensor) and not first.is_floating_point() and first.dim() > 0:
            new.args = (torch.zeros_like(first),) + tuple(new.args[1:])
            changed = True
        return new if changed else self

    # -- running -------------------------------------------------------------------------------------
    def copy_model(self) -> Any:
        return model_copy(self.model, self.device)

    def forward(self, model: Any) -> Any:
        from trainlint.runtime.capture import Call

        return call_model(model, Call(model, self.args, self.kwargs, None), self.device)

    def loss(self, model: Any) -> Any:
        out = self.forward(model)
        tgt = to_device(self.target, self.device) if self.target is not None else None
        return self.loss_fn(out, tgt)

    def optimizer(self, params: List[Any], fallback: bool = False) -> Tuple[Any, str]:
        import torch

        if self.opt_class is not None and not fallback and self.opt_class.__name__ == "LBFGS":
            try:  # one LBFGS step runs up to 20 evaluations: a few inner iterations per probe step
                opt = self.opt_class(params, lr=self.opt_kwargs.get("lr", 1.0), max_iter=4)
                return opt, f"LBFGS(lr={self.opt_kwargs.get('lr', 'default')})"
            except Exception:
                pass
        if self.opt_class is not None and not fallback:
            try:
                opt = self.opt_class(params, **self.opt_kwargs)
                return opt, f"{self.opt_class.__name__}(lr={self.opt_kwargs.get('lr', 'default')})"
            except Exception:
                pass
        return torch.optim.Adam(params, lr=1e-3), "Adam(lr=0.001)"


def _tensors(obj: Any) -> List[Any]:
    from trainlint.runtime.capture import tensors_in

    return tensors_in(obj)


def loss_kind(loss: Any) -> Tuple[Optional[str], str]:
    """("classification" | "regression" | None, autograd node) of a scalar loss tensor."""
    from trainlint.runtime.capture import _inspect_loss

    try:
        info = _inspect_loss(loss)
        return info.kind, info.loss_node or info.top
    except Exception:
        return None, ""


def optimizer_recipe(opt: Any, capture: Any = None) -> Tuple[Any, Dict[str, Any]]:
    """(class, {"lr": ...}) of a user's optimizer: a copy of its class and LR (other defaults kept); a manual
    update (no torch.optim) is SGD at the LR it was measured to use."""
    if opt is None:
        lr = getattr(capture, "manual_lr", None)
        if lr:
            import torch

            return torch.optim.SGD, {"lr": float(lr)}
        return None, {}
    try:
        lr = opt.param_groups[0].get("lr")
        lr = float(lr.item()) if hasattr(lr, "item") else float(lr)
        return type(opt), {"lr": lr}
    except Exception:
        return type(opt), {}


REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}


def recipe_loss(spec: Dict[str, Any], ops: List[Any], out_index: int, batch0: int,
                reduction: Optional[str] = None) -> Callable[[Any, Any], Any]:
    """(output, target) -> loss, rebuilt from the loss node the capture recorded (its reduction, weight,
    ignore_index), the output tensor it consumed and the ops in between."""
    import torch.nn.functional as F

    from trainlint.runtime.capture import replay_ops

    kind = spec["kind"]
    red = reduction or REDUCTIONS.get(int(spec.get("reduction", 1)), "mean")

    def fn(out: Any, target: Any) -> Any:
        ts = _tensors(out)
        if kind == "own":
            loss = ts[out_index]
            return loss.mean() if loss.numel() > 1 else loss.reshape(())
        x = replay_ops(ops, ts[out_index], batch0)
        t = target.to(x.device)
        w = spec.get("weight")
        if w is not None and w.shape != x.shape and w.dim() > 1:
            w = None  # a per-sample weight of the captured batch: not for a new batch
        w = w.to(x.device) if w is not None else None
        if kind == "nll":
            loss = F.nll_loss(x, t, weight=w, ignore_index=int(spec.get("ignore_index", -100)), reduction=red)
        elif kind == "bce":
            loss = F.binary_cross_entropy(x, t.to(x.dtype).reshape(x.shape), weight=w, reduction=red)
        elif kind == "bce_logits":
            pw = spec.get("pos_weight")
            loss = F.binary_cross_entropy_with_logits(x, t.to(x.dtype).reshape(x.shape), weight=w,
                                                      pos_weight=pw.to(x.device) if pw is not None else None,
                                                      reduction=red)
        elif kind == "mse":
            loss = F.mse_loss(x, t.to(x.dtype).reshape(x.shape), reduction=red)
        elif kind == "l1":
            loss = F.l1_loss(x, t.to(x.dtype).reshape(x.shape), reduction=red)
        elif kind == "smooth_l1":
            loss = F.smooth_l1_loss(x, t.to(x.dtype).reshape(x.shape), reduction=red, beta=float(spec.get("beta", 1.0)))
        elif kind == "huber":
            loss = F.huber_loss(x, t.to(x.dtype).reshape(x.shape), reduction=red, delta=float(spec.get("delta", 1.0)))
        else:
            raise ValueError(f"unknown loss kind {kind}")
        return loss.mean() if red == "none" else loss

    return fn


KIND_OF = {"nll": "classification", "bce": "classification", "bce_logits": "classification", "mse": "regression",
           "l1": "regression", "smooth_l1": "regression", "huber": "regression"}
NAME_OF = {"nll": "nll_loss (cross-entropy)", "bce": "binary_cross_entropy",
           "bce_logits": "binary_cross_entropy_with_logits", "mse": "mse_loss", "l1": "l1_loss",
           "smooth_l1": "smooth_l1_loss", "huber": "huber_loss"}


def _from_recipe(capture: Any, step: Any, call: Any, ctx: Any) -> Any:
    """A Setup from the loss recipe the capture traced (None when the step has none for this call)."""
    info = step.loss
    rec = info.recipe
    if rec is None or rec["call"] >= len(step.calls):
        return None
    rcall = step.calls[rec["call"]]
    if unwrap(rcall.module) is not unwrap(call.module):
        return None
    spec, ops, oi, b0 = rec["loss"], rec["ops"], rec["out"], rec.get("batch", 0)
    kind = spec["kind"]
    own = kind == "own"
    loss_fn = recipe_loss(spec, ops, oi, b0)
    # the loss at init: the first watched step's loss, recomputed from what was captured, averaged (a summed or
    # accumulated loss compares with ln C like any other)
    first = None
    for s in capture.steps:
        r = s.loss.recipe if s.loss is not None else None
        if r is None or r["call"] >= len(s.calls) or r["loss"]["kind"] != kind:
            continue
        try:
            f = recipe_loss(r["loss"], r["ops"], r["out"], r.get("batch", 0), reduction="mean")
            first = float(f(s.calls[r["call"]].output, r["loss"].get("target")).detach().float().item())
        except Exception:
            first = None
        break
    model = unwrap(call.module)
    device = model_device(model, getattr(ctx, "device", "auto"))
    args = rcall.args if isinstance(rcall.args, tuple) else (rcall.args,)
    opt_class, opt_kwargs = optimizer_recipe(capture.optimizer(), capture)
    location = {"path": info.site[0], "line": info.site[1]} if info.site else None
    return Setup(model=model, device=device, args=args, kwargs=dict(rcall.kwargs or {}),
                 target=None if own else spec.get("target"), loss_fn=loss_fn,
                 kind=("classification" if info.classes else None) if own else KIND_OF.get(kind),
                 opt_class=opt_class, opt_kwargs=opt_kwargs,
                 loss_name="the model's own loss" if own else NAME_OF.get(kind, kind),
                 first_loss=first if first is not None else next(
                     (s.loss.value for s in capture.steps if s.loss is not None), None),
                 location=location, out_index=oi, ops=list(ops), classes=info.classes, own_loss=own,
                 loss_kind=kind, batch0=b0, ignore_index=int(spec.get("ignore_index", -100)),
                 reduction=REDUCTIONS.get(int(spec.get("reduction", 1)), "mean"),
                 clip_norm=getattr(capture, "clip_norm", None), opt_exact=capture.optimizer() is not None)


def from_capture(capture: Any, ctx: Any) -> Any:
    """A :class:`Setup` from the shim's capture, or a string: why none could be built."""
    import torch
    import torch.nn.functional as F

    steps = [s for s in capture.steps if s.loss is not None]
    if not steps:
        return "no loss tensor was seen (backward was never called on a scalar)"
    step = steps[-1]
    call = capture.model_call(step)
    if call is None:
        return "no call of the trained model was seen"
    try:
        rebuilt = _from_recipe(capture, step, call, ctx)
    except Exception:
        rebuilt = None
    if rebuilt is not None:
        return rebuilt
    info = step.loss
    outs = [t for t in _tensors(call.output)]
    out_index = 0
    out = outs[0] if outs else None
    loss_fn, target, name = None, None, ""
    trained = capture.trained_params()
    for c in step.calls:
        if c is call:
            continue
        try:
            if any(id(p) in trained for p in c.module.parameters()):
                continue
        except Exception:
            continue
        a = c.args if isinstance(c.args, tuple) else (c.args,)
        match = next((k for k, o in enumerate(outs) if len(a) >= 1 and isinstance(a[0], torch.Tensor)
                      and o.shape == a[0].shape), None)
        if len(a) >= 2 and match is not None and isinstance(c.output, torch.Tensor) and c.output.numel() == 1:
            out_index, out = match, outs[match]
            mod, rest, kw = c.module, tuple(a[2:]), dict(c.kwargs or {})
            target = a[1]
            loss_fn = (lambda m, r, k: (lambda o, t: m(o, t, *r, **k)))(mod, rest, kw)
            name = type(mod).__name__
            break
    if loss_fn is None and info.kind == "regression":
        if info.target is not None and isinstance(out, torch.Tensor) and info.target.numel() == out.numel():
            target = info.target.reshape(out.shape)
            fn = {"L1LossBackward0": F.l1_loss, "SmoothL1LossBackward0": F.smooth_l1_loss,
                  "HuberLossBackward0": F.huber_loss}.get(info.loss_node or "", F.mse_loss)
            loss_fn, name = fn, fn.__name__
        else:
            from trainlint.runtime.probes.output_range import _output_and_target

            pair = _output_and_target(capture, step)
            if pair is not None:
                target = pair[1].reshape(pair[0].shape)
                loss_fn, name = F.mse_loss, "mse_loss (a hand-written error)"
    if loss_fn is None and info.kind == "classification" and info.target is not None:
        target = info.target
        if info.loss_node == "BinaryCrossEntropyWithLogitsBackward0":
            loss_fn, name = F.binary_cross_entropy_with_logits, "binary_cross_entropy_with_logits"
        elif info.loss_node and info.loss_node.startswith("NllLoss"):
            loss_fn, name = F.cross_entropy, "cross_entropy"
    if loss_fn is None:
        return f"could not rebuild the loss from the captured step (loss graph top: {' <- '.join(info.chain[:4])})"
    if not isinstance(call.output, torch.Tensor):  # a tuple / dict output: the loss takes one of its tensors
        loss_fn = (lambda f, k: (lambda o, t: f(_tensors(o)[k], t)))(loss_fn, out_index)
    model = unwrap(call.module)
    device = model_device(model, getattr(ctx, "device", "auto"))
    args = call.args if isinstance(call.args, tuple) else (call.args,)
    opt_class, opt_kwargs = optimizer_recipe(capture.optimizer(), capture)
    first = next((s.loss.value for s in capture.steps if s.loss is not None), None)
    location = None
    if info.site:
        location = {"path": info.site[0], "line": info.site[1]}
    return Setup(model=model, device=device, args=args, kwargs=dict(call.kwargs or {}), target=target,
                 loss_fn=loss_fn, kind=info.kind, opt_class=opt_class, opt_kwargs=opt_kwargs, loss_name=name,
                 first_loss=first, location=location, classes=info.classes, out_index=out_index,
                 clip_norm=getattr(capture, "clip_norm", None), opt_exact=capture.optimizer() is not None)


def from_objects(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], optimizer: Any = None,
                 device: Any = None) -> Setup:
    """A :class:`Setup` from in-memory objects: ``batch`` is ``(inputs, target)``, ``inputs`` alone, or a dict
    with ``"inputs"``/``"target"``; ``loss_fn(output, target)`` returns the scalar loss; ``optimizer`` an
    optimizer instance, an optimizer class, or None (Adam 1e-3)."""
    import torch

    model = unwrap(model)
    dev = torch.device(device) if device is not None else model_device(model)
    if isinstance(batch, dict):
        inputs, target = batch.get("inputs"), batch.get("target")
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, target = batch
    else:
        inputs, target = batch, None
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    if isinstance(optimizer, type):
        opt_class, opt_kwargs = optimizer, {}
    else:
        opt_class, opt_kwargs = optimizer_recipe(optimizer)
    setup = Setup(model=model, device=dev, args=args, kwargs={}, target=target, loss_fn=loss_fn,
                  opt_class=opt_class, opt_kwargs=opt_kwargs, loss_name=getattr(loss_fn, "__name__", type(loss_fn).__name__))
    m = setup.copy_model()
    m.train()
    loss = setup.loss(m)
    setup.first_loss = float(loss.detach().float().item())
    setup.kind, node = loss_kind(loss)
    from trainlint.runtime.capture import LOSS_NODES

    setup.loss_kind = LOSS_NODES.get(node, "")
    return setup


def get_setup(capture: Any, ctx: Any) -> Any:
    """The capture may already be a Setup (the API passes one)."""
    if isinstance(capture, Setup):
        return capture
    cached = getattr(capture, "_tl_setup", None)
    if cached is not None:
        return cached
    s = from_capture(capture, ctx)
    try:
        capture._tl_setup = s
    except Exception:
        pass
    return s


def scalar(loss: Any) -> float:
    return float(loss.detach().float().item())


def float_inputs(setup: Setup) -> List[Any]:
    return [t for t in _tensors(setup.args) + _tensors(setup.kwargs) if t.is_floating_point()]


def output_tensor(out: Any) -> Any:
    import torch

    if isinstance(out, torch.Tensor):
        return out
    ts = _tensors(out)
    return ts[0] if ts else None


def model_location(model: Any) -> Optional[Dict[str, Any]]:
    """Where the model's own ``forward`` is defined (None for library classes such as nn.Sequential)."""
    try:
        code = type(unwrap(model)).forward.__code__
    except Exception:
        return None
    path = code.co_filename
    if not path or path.startswith("<") or any(x in path for x in ("site-packages", "dist-packages", "/lib/python")):
        return None
    return {"path": path, "line": code.co_firstlineno}
