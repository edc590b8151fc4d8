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
            return t[idx] if t.dim() > 0 and t.shape[0] == n else t

        from trainlint.runtime.capture import _tree_map

        new = copy.copy(self)
        new.args = _tree_map(self.args, sl)
        new.kwargs = _tree_map(self.kwargs, sl)
        new.target = _tree_map(self.target, sl) if self.target is not None else None
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
            return torch.cat([t, t]) if t.dim() > 0 and t.shape[0] == n else t

        new = copy.copy(self)
        new.args = _tree_map(self.args, dup)
        new.kwargs = _tree_map(self.kwargs, dup)
        new.target = _tree_map(self.target, dup) if self.target is not None else None
        return new

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


def optimizer_recipe(opt: Any) -> Tuple[Any, Dict[str, Any]]:
    """(class, {"lr": ...}) of a user's optimizer: a copy of its class and LR (other defaults kept)."""
    if opt is None:
        return None, {}
    try:
        lr = opt.param_groups[0].get("lr")
        lr = float(lr.item()) if hasattr(lr, "item") else float(lr)
        return type(opt), {"lr": lr}
    except Exception:
        return type(opt), {}


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
    info = step.loss
    out = call.output
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
        if len(a) >= 2 and isinstance(a[0], torch.Tensor) and isinstance(out, torch.Tensor) \
                and a[0].shape == out.shape and isinstance(c.output, torch.Tensor) and c.output.numel() == 1:
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
    model = unwrap(call.module)
    device = model_device(model, getattr(ctx, "device", "auto"))
    args = call.args if isinstance(call.args, tuple) else (call.args,)
    opt_class, opt_kwargs = optimizer_recipe(capture.optimizer())
    first = next((s.loss.value for s in capture.steps if s.loss is not None), None)
    location = None
    if info.site:
        location = {"path": info.site[0], "line": info.site[1]}
    return Setup(model=model, device=device, args=args, kwargs=dict(call.kwargs or {}), target=target,
                 loss_fn=loss_fn, kind=info.kind, opt_class=opt_class, opt_kwargs=opt_kwargs, loss_name=name,
                 first_loss=first, location=location)


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
