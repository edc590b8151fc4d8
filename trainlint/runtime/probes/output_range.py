"""output-range (TL101): can the model's output cover the targets' range?

Targets and predictions come from the regression loss node of the captured steps' graphs (MSE, L1,
SmoothL1, Huber: what the loss really compared); the last activation from re-running a copy of the model
on the captured batch with hooks on its leaf modules.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

from trainlint.runtime.probes import (Budget, Probe, ProbeResult, call_model, model_copy, model_device, num, pct,
                                     unwrap)

INF = math.inf
#: The output range of a final activation module (closed bounds; None when not bounded).
ACTIVATION_RANGES: Dict[str, Tuple[float, float]] = {
    "ReLU": (0.0, INF), "ReLU6": (0.0, 6.0), "Sigmoid": (0.0, 1.0), "Hardsigmoid": (0.0, 1.0),
    "Tanh": (-1.0, 1.0), "Hardtanh": (-1.0, 1.0), "Softplus": (0.0, INF), "Softmax": (0.0, 1.0),
    "LogSigmoid": (-INF, 0.0), "LogSoftmax": (-INF, 0.0), "ELU": (-1.0, INF), "CELU": (-1.0, INF),
    "SELU": (-1.7581, INF), "GELU": (-0.1700, INF), "SiLU": (-0.2785, INF), "Mish": (-0.3089, INF),
    "Softsign": (-1.0, 1.0), "Tanhshrink": (-INF, INF),
}
MIN_SHARE = 0.01  # targets outside the range before it is a problem


def _activation_range(module: Any) -> Optional[Tuple[float, float]]:
    name = type(module).__name__
    if name not in ACTIVATION_RANGES:
        return None
    lo, hi = ACTIVATION_RANGES[name]
    if name in ("ELU", "CELU"):
        lo = -float(getattr(module, "alpha", 1.0))
    if name == "Hardtanh":
        lo, hi = float(module.min_val), float(module.max_val)
    return lo, hi


def _hist(values: Any, lo: float, hi: float, bins: int = 20):
    import torch

    if hi <= lo:
        hi = lo + 1.0
    return [float(x) for x in torch.histc(values.float().cpu(), bins=bins, min=lo, max=hi)]


class OutputRange(Probe):
    name = "output-range"
    codes = ("TL101",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch

        budget = Budget(budget_s)
        steps = [s for s in capture.steps if s.loss is not None]
        if not steps:
            return self.skipped("no loss tensor was seen (backward was never called on a scalar)")
        kinds = {s.loss.kind for s in steps}
        if "regression" not in kinds:
            if "classification" in kinds:
                node = next(s.loss.loss_node for s in steps if s.loss.kind == "classification")
                return self.skipped(f"the loss is a classification loss ({node}); output-range checks regression targets")
            return self.skipped("no regression loss (MSE, L1, SmoothL1, Huber) in the loss's autograd graph")
        preds = [s.loss.prediction.flatten() for s in steps if s.loss.prediction is not None]
        targs = [s.loss.target.flatten() for s in steps if s.loss.target is not None]
        if not preds:  # a hand-written error: the model's output and the batch tensor shaped like it
            for s in steps:
                pair = _output_and_target(capture, s)
                if pair is not None:
                    preds.append(pair[0].flatten())
                    targs.append(pair[1].flatten())
        if not preds or not targs:
            return self.skipped("the regression loss kept no inputs to compare")
        out = torch.cat([p.float().cpu() for p in preds])
        tgt = torch.cat([t.float().cpu() for t in targs])

        act_name, act_range = None, None
        call = capture.model_call()
        if call is not None and not budget.expired:
            act_name, act_range, fresh = self._last_activation(call, ctx)
            if fresh is not None and fresh.numel():
                out = torch.cat([out, fresh.flatten().float().cpu()])

        o_min, o_max = float(out.min()), float(out.max())
        t_min, t_max = float(tgt.min()), float(tgt.max())
        metrics: Dict[str, Any] = {
            "targets": int(tgt.numel()), "target_min": t_min, "target_max": t_max,
            "target_mean": float(tgt.mean()), "output_min": o_min, "output_max": o_max,
            "last_activation": act_name, "activation_range": list(act_range) if act_range else None,
            "steps": len(steps),
        }
        if act_range is not None:
            lo, hi = act_range
            bound_from = f"last layer {act_name}: range [{num(lo)}, {num(hi)}]"
        else:  # no bounded activation module: the bound the outputs show (a functional relu/sigmoid)
            lo, hi = -INF, INF
            pinned_lo = float((out == o_min).float().mean())
            if o_min >= 0.0 and pinned_lo >= 0.05:
                lo = o_min
            pinned_hi = float((out == o_max).float().mean())
            if o_max <= 1.0 and pinned_hi >= 0.05:
                hi = o_max
            bound_from = "bound seen in the outputs" if (lo, hi) != (-INF, INF) else "no bounded output"
        below = float((tgt < lo).float().mean()) if lo > -INF else 0.0
        above = float((tgt > hi).float().mean()) if hi < INF else 0.0
        at_bound = 0.0
        if lo > -INF:
            at_bound += float((out <= lo + 1e-7).float().mean())
        if hi < INF:
            at_bound += float((out >= hi - 1e-7).float().mean())
        metrics.update({"share_targets_below_range": below, "share_targets_above_range": above,
                        "share_outputs_at_bound": at_bound, "range_low": lo if lo > -INF else None,
                        "range_high": hi if hi < INF else None})
        h_lo, h_hi = min(o_min, t_min), max(o_max, t_max)
        series = {"targets_hist": _hist(tgt, h_lo, h_hi), "outputs_hist": _hist(out, h_lo, h_hi),
                  "hist_range": [h_lo, h_hi]}
        parts = []
        if below:
            parts.append(f"{pct(below)} of targets < {num(lo)} (min {num(t_min)})")
        if above:
            parts.append(f"{pct(above)} of targets > {num(hi)} (max {num(t_max)})")
        parts.append(f"model output min {num(o_min)}, max {num(o_max)} ({bound_from})")
        if at_bound >= 0.01:
            parts.append(f"{pct(at_bound)} of outputs pinned at the bound")
        evidence = "; ".join(parts)
        problem = below + above >= MIN_SHARE
        location = _class_location(unwrap(call.module)) if call is not None else None
        if location is None and steps[-1].loss.site:  # a library class (nn.Sequential): where the loss is used
            location = {"path": steps[-1].loss.site[0], "line": steps[-1].loss.site[1]}
        if problem:
            return self.result("problem", "targets lie outside the range the model's output can reach",
                               metrics=metrics, series=series, confirms={"TL101": True}, evidence=evidence,
                               location=location)
        return self.result("ok", "the model's output range covers the targets", metrics=metrics, series=series,
                           confirms={"TL101": False}, evidence=evidence)

    def _last_activation(self, call: Any, ctx: Any):
        """(name, range, output) of the last leaf module the model's forward runs, on a copy."""
        import torch

        device = model_device(call.module, getattr(ctx, "device", "auto"))
        model = model_copy(call.module, device)
        order = []
        handles = []
        for m in model.modules():
            if not list(m.children()):
                handles.append(m.register_forward_hook(lambda mod, i, o: order.append(mod)))
        try:
            with torch.no_grad():
                out = call_model(model, call, device)
        except Exception:
            return None, None, None
        finally:
            for h in handles:
                h.remove()
        if not isinstance(out, torch.Tensor) or not order:
            return None, None, out if isinstance(out, torch.Tensor) else None
        last = order[-1]
        rng = _activation_range(last)
        return (type(last).__name__ if rng else None), rng, out


def _output_and_target(capture: Any, step: Any):
    import torch

    from trainlint.runtime.capture import tensors_in

    call = capture.model_call(step)
    if call is None or not isinstance(call.output, torch.Tensor):
        return None
    out = call.output
    inputs = {id(t) for t in tensors_in(call.args)}
    for t in tensors_in(step.batch):
        if id(t) in inputs or not t.is_floating_point():
            continue
        if t.numel() == out.numel():
            return out, t
    return None


def _class_location(module: Any) -> Optional[Dict[str, Any]]:
    import inspect

    try:
        path = inspect.getsourcefile(type(module))
        if not path or "site-packages" in path or "dist-packages" in path or "/lib/python" in path:
            return None
        _, line = inspect.getsourcelines(type(module))
        return {"path": path, "line": line}
    except Exception:
        return None
