"""gradient-health (TL506; confirms TL203): are the gradients of one backward pass on a copy healthy?

- a trainable parameter with a None or all-zero gradient (not in the graph / blocked);
- NaN/Inf in the loss or a gradient, with the first module whose output was not finite;
- vanishing / exploding gradients between the first and last layers (AUTOTRAINER: ||g_first||/||g_last|| <
  1e-3 with ||g_first|| < 1e-4 is vanishing, a ratio > 70 exploding), or a layer norm > 1e3;
- the update/weight ratio of one optimizer step, log10(||dw||/||w||) below -4 (TheDeepChecker) or above 0 (at init;
  TheDeepChecker's -1 is for trained weights), on the
  weight matrices (dim >= 2); not judged for LBFGS, whose step length comes from line search, not from an LR.
TL203 (a misplaced clip_grad_norm_) is confirmed when the gradients explode or are not finite.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

from trainlint.runtime.probes import Probe, ProbeResult, num
from trainlint.runtime.probes._setup import get_setup, output_tensor

VANISH_RATIO, VANISH_NORM, EXPLODE_RATIO = 1e-3, 1e-4, 70.0  # AUTOTRAINER
UPDATE_RANGE = (-4.0, -1.0)  # TheDeepChecker, log10(||dw|| / ||w||)
UPDATE_MAX_AT_INIT = 0.0  # the upper bound used on the first step (see below)
#: Optimizers whose update size is not set by a learning rate: their update/weight ratio is recorded, not judged.
QUASI_NEWTON = ("LBFGS",)
#: A layer's gradient norm beyond which it explodes on its own (a recurrent layer explodes through time, inside
#: one "layer", where AUTOTRAINER's first/last ratio cannot see it).
EXPLODE_NORM = 1e3


class GradientHealth(Probe):
    name = "gradient-health"
    codes = ("TL506", "TL203")

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch

        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        model = setup.copy_model()
        model.train()
        first_bad: List[str] = []
        handles = []
        for name, m in model.named_modules():
            if not list(m.children()):
                def hook(mod, inp, out, name=name):
                    t = output_tensor(out)
                    if t is not None and t.is_floating_point() and not first_bad and not bool(torch.isfinite(t).all()):
                        first_bad.append(f"{name} ({type(mod).__name__})")
                handles.append(m.register_forward_hook(hook))
        try:
            loss = setup.loss(model)
            loss.backward()
        finally:
            for h in handles:
                h.remove()
        problems: List[str] = []
        metrics: Dict[str, Any] = {"loss": float(loss.detach().float().item())}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        none = [n for n, p in named if p.grad is None]
        zero = [n for n, p in named if p.grad is not None and not bool(p.grad.any())]
        nonfinite = [n for n, p in named if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        metrics.update({"none_grad": none, "zero_grad": zero, "nonfinite_grad": nonfinite,
                        "first_nonfinite_module": first_bad[0] if first_bad else None})
        if none:
            problems.append(f"{len(none)} trainable parameter(s) get no gradient: {', '.join(none[:4])}")
        if zero:
            problems.append(f"{len(zero)} trainable parameter(s) get an all-zero gradient: {', '.join(zero[:4])}")
        if nonfinite or not math.isfinite(metrics["loss"]):
            where = f" (first non-finite output: {first_bad[0]})" if first_bad else ""
            problems.append(f"NaN/Inf in the loss or gradients{where}")
        # per-layer gradient norms, input side first (parameter registration order)
        layers: Dict[str, float] = {}
        for n, p in named:
            if p.grad is None:
                continue
            layer = n.rsplit(".", 1)[0] if "." in n else "(model)"  # a bare Linear's weight and bias: one layer
            layers[layer] = layers.get(layer, 0.0) + float(p.grad.detach().float().pow(2).sum())
        norms = [(k, math.sqrt(v)) for k, v in layers.items()]
        metrics["layer_grad_norms"] = {k: v for k, v in norms}
        exploding = False
        if len(norms) >= 2 and not nonfinite:
            g_first, g_last = norms[0][1], norms[-1][1]
            # 0/0 (both layers without gradient, already reported above) is no ratio at all
            ratio = g_first / g_last if g_last > 0 else (math.inf if g_first > 0 else None)
            metrics.update({"first_layer": norms[0][0], "last_layer": norms[-1][0], "first_last_ratio": ratio})
            if ratio is None:
                pass
            elif ratio < VANISH_RATIO and g_first < VANISH_NORM:
                problems.append(f"vanishing gradients: ||g|| {num(g_first)} at {norms[0][0]} vs {num(g_last)} at "
                                f"{norms[-1][0]} (ratio {num(ratio)} < {VANISH_RATIO:g})")
            big = [(k, v) for k, v in norms if v > EXPLODE_NORM]
            if ratio is None:
                pass
            elif big and not ratio > EXPLODE_RATIO:
                exploding = True
                problems.append(f"exploding gradients: ||g|| {num(big[0][1])} at {big[0][0]} (> {EXPLODE_NORM:g})")
            elif ratio > EXPLODE_RATIO:
                exploding = True
                problems.append(f"exploding gradients: ||g|| {num(g_first)} at {norms[0][0]} vs {num(g_last)} at "
                                f"{norms[-1][0]} (ratio {num(ratio)} > {EXPLODE_RATIO:g})")
        # update / weight ratio of one step
        if not nonfinite:
            before = {n: p.detach().clone() for n, p in named if p.dim() >= 2}
            opt, label = setup.optimizer([p for _, p in named])

            def closure():  # (LBFGS needs one; the gradients are those computed above)
                opt.zero_grad()
                again = setup.loss(model)
                again.backward()
                return again

            try:
                if getattr(setup, "clip_norm", None):  # the script clips before its step: so does the copy
                    torch.nn.utils.clip_grad_norm_([p for _, p in named], setup.clip_norm)
                if type(opt).__name__ == "LBFGS":
                    opt.step(closure)
                else:
                    opt.step()
                ratios = {}
                for n, p in named:
                    if n in before and float(before[n].norm()) > 0:
                        d = float((p.detach() - before[n]).norm())
                        if d > 0:  # (no update at all: a zero gradient, reported above)
                            ratios[n] = math.log10(d / float(before[n].norm()))
                metrics["update_ratio_log10"] = ratios
                metrics["optimizer"] = label
                # at init the weights are small and the gradients large: a step of 10^-0.5 of the weights is
                # common (SGD at LR 20 for an LSTM); above the weight itself (10^0) the step rewrites the layer
                out_of = {n: r for n, r in ratios.items() if r > UPDATE_MAX_AT_INIT or (r < UPDATE_RANGE[0] and n not in zero)}
                if type(opt).__name__ in QUASI_NEWTON:
                    # its step length comes from its curvature estimate and line search, not from an LR: a small
                    # step is a small gradient near a minimum (time_sequence_prediction after 3 LBFGS steps)
                    out_of = {}
                    metrics["update_ratio_judged"] = False
                if out_of:
                    n, r = max(out_of.items(), key=lambda kv: abs(kv[1] + 2.5))
                    problems.append(f"update/weight ratio 10^{num(r)} at {n} with {label} (outside "
                                    f"10^{UPDATE_RANGE[0]:g}..10^{UPDATE_MAX_AT_INIT:g} on the first step)")
            except Exception as exc:  # an optimizer that needs a closure...
                metrics["update_ratio_error"] = f"{type(exc).__name__}: {exc}"
        series = {"layer_grad_norm": [v for _, v in norms]}
        metrics["plot"] = {"bars": {"layer_grad_norm": [k for k, _ in norms]}}
        bad_grads = bool(nonfinite) or exploding or not math.isfinite(metrics["loss"])
        if problems:
            return self.result("problem", "unhealthy gradients", metrics=metrics, series=series,
                               evidence="; ".join(problems), confirms={"TL203": bad_grads}, found=["TL506"],
                               location=setup.location)
        ev = f"{len(named)} trainable tensors with finite, non-zero gradients"
        if metrics.get("first_last_ratio") is not None:
            ev += f"; first/last layer gradient norm ratio {num(metrics['first_last_ratio'])}"
        return self.result("ok", "the gradients are healthy", metrics=metrics, series=series, evidence=ev,
                           confirms={"TL203": False})
