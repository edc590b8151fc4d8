"""dead-units (TL505): what share of each ReLU-family layer's units never fire on the batch?

A unit is a channel (dim 1) of a ReLU/ReLU6/LeakyReLU/ELU/... module's output; it is dead when its output is
<= 0 for every sample (and position). Thresholds: AUTOTRAINER flags >= 70% of gradient entries exactly 0,
DeepDiagnosis >= 70% of ReLU outputs <= 0; trainlint flags a layer with >= 70% dead units.
"""

from __future__ import annotations

from typing import Any, Dict, List

from trainlint.runtime.probes import Probe, ProbeResult, pct
from trainlint.runtime.probes._setup import get_setup, model_location

RELU_FAMILY = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "CELU", "SELU", "GELU", "SiLU", "Mish",
               "Hardswish")
MAX_DEAD = 0.7


class DeadUnits(Probe):
    name = "dead-units"
    codes = ("TL505",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch

        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        model = setup.copy_model()
        model.train()  # dropout off would change nothing here; BatchNorm uses the batch like in training
        seen: Dict[str, Any] = {}
        handles = []
        prev: List[str] = [""]  # the leaf module that ran last: what produced the activation's input

        def track(mod, inp, out):
            if type(mod).__name__ not in RELU_FAMILY:
                prev[0] = type(mod).__name__

        for name, m in model.named_modules():
            if not list(m.children()) and type(m).__name__ not in RELU_FAMILY:
                handles.append(m.register_forward_hook(track))
        n_relu = 0
        for name, m in model.named_modules():
            if type(m).__name__ in RELU_FAMILY:
                def hook(mod, inp, out, name=name):
                    if not isinstance(out, torch.Tensor) or out.dim() < 2:
                        return
                    # a unit is a channel: dim 1 after a convolution (N, C, ...), the last dim after a Linear
                    # ((batch, time, features) in a transformer's MLP), not a position
                    conv = prev[0].startswith(("Conv", "BatchNorm", "InstanceNorm", "GroupNorm", "MaxPool", "AvgPool"))
                    dim = 1 if (out.dim() == 2 or conv) else out.dim() - 1
                    alive = (out.detach() > 0).movedim(dim, 0).reshape(out.shape[dim], -1).any(1)
                    if name in seen and seen[name].shape != alive.shape:
                        return
                    seen[name] = alive if name not in seen else (seen[name] | alive)
                handles.append(m.register_forward_hook(hook))
                n_relu += 1
        if not n_relu:
            for h in handles:
                h.remove()
            return self.skipped("no ReLU-family module in the model (a functional relu cannot be watched)")
        try:
            with torch.no_grad():
                setup.forward(model)
        finally:
            for h in handles:
                h.remove()
        layers: List[Dict[str, Any]] = []
        for name, alive in seen.items():
            layers.append({"layer": name, "units": int(alive.numel()), "dead": int((~alive).sum()),
                           "dead_share": float((~alive).float().mean())})
        bad = [l for l in layers if l["dead_share"] >= MAX_DEAD]
        metrics = {"layers": layers, "max_dead_share": MAX_DEAD, "samples": setup.n,
                   "plot": {"bars": {"dead_share": [l["layer"] for l in layers]},
                            "thresholds": [{"value": MAX_DEAD, "label": f"{pct(MAX_DEAD)} dead: a problem"}]}}
        series = {"dead_share": [l["dead_share"] for l in layers]}
        evidence = "; ".join(f"{l['layer']}: {l['dead']}/{l['units']} units dead ({pct(l['dead_share'])})"
                             for l in (bad or layers)[:6])
        if bad:
            return self.result("problem", "most units of a ReLU layer never fire on the batch (dead units)",
                               metrics=metrics, series=series, evidence=evidence, found=["TL505"],
                               location=model_location(setup.model) or setup.location)
        return self.result("ok", "no ReLU layer is mostly dead", metrics=metrics, series=series, evidence=evidence)
