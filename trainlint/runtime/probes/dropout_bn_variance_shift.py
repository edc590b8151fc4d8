"""dropout-bn-variance-shift (TL102): how far apart are a BatchNorm's input statistics with dropout active
(training) and with dropout off (evaluation)?

On a copy of the model and the captured batch: two forward passes with every BatchNorm in training mode
(batch statistics, so earlier BatchNorms behave the same in both), one with the dropouts in training mode
and one with them in eval mode. The per-channel variance ratio of each BatchNorm's input is what its
running variance learns in training vs what it sees at evaluation.
"""

from __future__ import annotations

from typing import Any, Dict, List

from trainlint.runtime.probes import Budget, Probe, ProbeResult, call_model, model_copy, model_device, num

THRESHOLD = 1.1  # median per-channel variance ratio train/eval above this: a shift


def _channel_var(x: Any) -> Any:
    x = x.detach().float()
    if x.dim() == 1:
        return x.var(unbiased=False).reshape(1)
    dims = [d for d in range(x.dim()) if d != 1]
    return x.var(dim=dims, unbiased=False)


class DropoutBnVarianceShift(Probe):
    name = "dropout-bn-variance-shift"
    codes = ("TL102",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch
        import torch.nn as nn

        Budget(budget_s)
        call = capture.model_call()
        if call is None:
            return self.skipped("no call of the trained model was seen")
        bn_types = (nn.modules.batchnorm._BatchNorm,)
        drop_types = (nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)
        device = model_device(call.module, getattr(ctx, "device", "auto"))
        model = model_copy(call.module, device)
        bns = [(n, m) for n, m in model.named_modules() if isinstance(m, bn_types)]
        drops = [m for m in model.modules() if isinstance(m, drop_types)]
        if not bns:
            return self.result("ok", "the model has no BatchNorm layer", confirms={"TL102": False},
                               metrics={"batchnorms": 0, "dropouts": len(drops)})
        if not drops:
            return self.result("ok", "the model has no dropout layer", confirms={"TL102": False},
                               metrics={"batchnorms": len(bns), "dropouts": 0})
        stats: Dict[str, List[Any]] = {n: [] for n, _ in bns}
        handles = [m.register_forward_pre_hook(lambda mod, inp, n=n: stats[n].append(_channel_var(inp[0])))
                   for n, m in bns]
        try:
            model.train()
            with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the caller's RNG stays as it was
                torch.manual_seed(0)
                call_model(model, call, device)
                for m in drops:
                    m.eval()
                call_model(model, call, device)
        except Exception as exc:
            return self.skipped(f"re-running the model on the captured batch failed: {type(exc).__name__}: {exc}")
        finally:
            for h in handles:
                h.remove()
        ratios = {}
        for n, vs in stats.items():
            if len(vs) < 2:
                continue
            v_train, v_eval = vs[0], vs[1]
            r = (v_train / v_eval.clamp_min(1e-12))
            ratios[n] = float(r.median())
        if not ratios:
            return self.skipped("no BatchNorm ran on the captured batch")
        worst = max(ratios, key=lambda n: abs(ratios[n] - 1.0))
        metrics = {"batchnorms": len(bns), "dropouts": len(drops), "variance_ratio": ratios,
                   "worst_layer": worst, "worst_ratio": ratios[worst]}
        series = {"variance_ratio": list(ratios.values())}
        metrics["plot"] = {"bars": {"variance_ratio": list(ratios)},
                           "thresholds": [{"value": THRESHOLD, "label": f"{THRESHOLD}x: a shift"}]}
        shifted = [n for n, r in ratios.items() if r > THRESHOLD or r < 1.0 / THRESHOLD]
        if shifted:
            ev = (f"BatchNorm '{worst}' input variance is {num(ratios[worst])}× larger with dropout active than at "
                  f"eval ({len(shifted)}/{len(ratios)} BatchNorms shifted > {THRESHOLD}×)")
            return self.result("problem", "a dropout shifts the variance a BatchNorm normalizes with", metrics=metrics,
                               series=series, confirms={"TL102": True}, evidence=ev)
        return self.result("ok", "no BatchNorm input variance changes between dropout on and off", metrics=metrics,
                           series=series, confirms={"TL102": False},
                           evidence=f"largest train/eval variance ratio {num(ratios[worst])} ('{worst}')")
