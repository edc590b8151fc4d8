"""loss-clamp-zero-grad (TL202): is the loss capped (clamp/clip/min/max at the top of its autograd graph),
and how often was the cap active, i.e. the gradient zero?

Read from the captured steps: the shim inspects the loss's graph before backward frees it (the clamp node's
saved input and bounds give the share of saturated elements), and the optimizer pre-step hook measures the
gradient norm the step used.
"""

from __future__ import annotations

from typing import Any

from trainlint.runtime.probes import Probe, ProbeResult, num, pct


class LossClampZeroGrad(Probe):
    name = "loss-clamp-zero-grad"
    codes = ("TL202",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        steps = [s for s in capture.steps if s.loss is not None]
        if not steps:
            return self.skipped("no loss tensor was seen (backward was never called on a scalar)")
        clamped = [s for s in steps if s.loss.clamps]
        if not clamped:
            return self.result("ok", "no clamp/clip/min/max caps the loss", confirms={"TL202": False},
                               metrics={"steps": len(steps), "loss_top": steps[-1].loss.top},
                               evidence=f"loss graph top: {' <- '.join(steps[-1].loss.chain[:4])}")
        per_step, shares, zero_grad = [], [], 0
        for s in clamped:
            c = s.loss.clamps[0]
            share = (c["saturated"] / c["total"]) if c.get("total") else None
            shares.append(share)
            if s.grad_norm is not None and s.grad_norm == 0.0:
                zero_grad += 1
            per_step.append({"step": s.index, "node": c["node"], "min": c["min"], "max": c["max"],
                             "saturated_share": share, "grad_norm": s.grad_norm, "loss": s.loss.value})
        known = [x for x in shares if x is not None]
        saturated_steps = sum(1 for x in known if x > 0)
        first = clamped[0].loss.clamps[0]
        bounds = ", ".join(f"{k} {num(first[k])}" for k in ("min", "max") if first.get(k) is not None)
        metrics = {"steps": len(steps), "clamped_steps": len(clamped), "saturated_steps": saturated_steps,
                   "zero_grad_steps": zero_grad, "mean_saturated_share": (sum(known) / len(known)) if known else None,
                   "node": first["node"], "min": first["min"], "max": first["max"], "per_step": per_step}
        series = {"loss": [s.loss.value for s in steps],
                  "saturated_share": [x if x is not None else float("nan") for x in shares]}
        scalar = first.get("total") == 1
        what = "the loss" if scalar else f"{pct(metrics['mean_saturated_share'] or 0)} of the loss's elements (mean)"
        evidence = (f"{first['node']} ({bounds or 'bounds unknown'}) caps the loss; {what} saturated on "
                    f"{saturated_steps}/{len(clamped)} steps; zero gradient on {zero_grad}/{len(clamped)} steps")
        location = None
        if clamped[0].loss.site:
            location = {"path": clamped[0].loss.site[0], "line": clamped[0].loss.site[1]}
        if saturated_steps or zero_grad:
            return self.result("problem", "the loss is capped and the cap was active: no gradient flows there",
                               metrics=metrics, series=series, confirms={"TL202": True}, evidence=evidence,
                               location=location)
        if not known:
            return self.result("ok", "the loss is capped but saturation could not be measured", metrics=metrics,
                               series=series, evidence=evidence)
        return self.result("ok", "the loss is capped but the cap never saturated in the watched steps",
                           metrics=metrics, series=series, confirms={"TL202": False}, evidence=evidence)
