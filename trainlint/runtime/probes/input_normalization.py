"""input-normalization (TL507): are the inputs and regression targets roughly zero-mean and unit-scale?

Flags a floating-point input whose mean is beyond +-MAX_MEAN or whose std is above MAX_STD (0..255 pixels:
mean ~127, std ~74), and regression targets whose mean or std is beyond TARGET_MAX (targets in the thousands). Holden's
list: unnormalized data; the fix is standardizing (or a last-layer bias/scale set to the targets').
"""

from __future__ import annotations

from typing import Any, Dict, List

from trainlint.runtime.probes import Probe, ProbeResult, num
from trainlint.runtime.probes._setup import float_inputs, get_setup

MAX_MEAN = 10.0  # inputs
MAX_STD = 20.0
TARGET_MAX = 100.0  # regression targets: |mean| or std beyond it (a last-layer bias copes with a mean of 50)


def _stats(t: Any) -> Dict[str, float]:
    t = t.detach().float()
    return {"mean": float(t.mean()), "std": float(t.std()) if t.numel() > 1 else 0.0, "min": float(t.min()),
            "max": float(t.max())}


class InputNormalization(Probe):
    name = "input-normalization"
    codes = ("TL507",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch

        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        checked: List[Dict[str, Any]] = []
        for k, t in enumerate(float_inputs(setup)):
            checked.append({"tensor": f"input {k}", **_stats(t)})
        if setup.kind == "regression" and isinstance(setup.target, torch.Tensor) and setup.target.is_floating_point():
            checked.append({"tensor": "target", **_stats(setup.target)})
        if not checked:
            return self.skipped("no floating-point input or regression target")
        bad = [c for c in checked if (c["tensor"] != "target" and (abs(c["mean"]) > MAX_MEAN or c["std"] > MAX_STD))
               or (c["tensor"] == "target" and max(abs(c["mean"]), c["std"]) > TARGET_MAX)]
        metrics = {"tensors": checked, "max_abs_mean": MAX_MEAN, "max_std": MAX_STD, "target_max": TARGET_MAX}
        evidence = "; ".join(f"{c['tensor']}: mean {num(c['mean'])}, std {num(c['std'])}, range [{num(c['min'])}, "
                             f"{num(c['max'])}]" for c in (bad or checked)[:4])
        if bad:
            return self.result("problem", "inputs or targets are far from zero-mean, unit-scale (not normalized)",
                               metrics=metrics, evidence=evidence, found=["TL507"], location=setup.location)
        return self.result("ok", "inputs and targets are roughly normalized", metrics=metrics, evidence=evidence)
