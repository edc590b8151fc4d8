"""loss-at-init (TL501): is the first loss what a well-initialized last layer gives?

Expected: ln C for C-class cross-entropy, ln 2 for binary cross-entropy, Var(y) for MSE. Flagged outside
[1/3, 3] times the expectation (docs/pitfalls.md); for cross-entropy TheDeepChecker's abs(L0 - ln C) >= ln C
is the same upper bound less strictly (2x). A double softmax is NOT visible here (2.293 vs 2.303 measured).
"""

from __future__ import annotations

import math
from typing import Any

from trainlint.runtime.probes import Probe, ProbeResult, num, to_device
from trainlint.runtime.probes._setup import get_setup

FACTOR = 3.0


class LossAtInit(Probe):
    name = "loss-at-init"
    codes = ("TL501",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch

        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        if setup.first_loss is None:
            return self.skipped("no loss value at the first step")
        l0 = setup.first_loss
        tgt = to_device(setup.target, setup.device) if isinstance(setup.target, torch.Tensor) else None
        name = setup.loss_name.lower()
        kind = setup.loss_kind
        expected, what = None, ""
        if setup.classes and (kind in ("nll", "own") or (not kind and tgt is not None and not tgt.is_floating_point())):
            # the dimension the cross-entropy reduced over (the vocabulary of a (batch, time, vocab) output)
            c = int(setup.classes)
            expected, what = math.log(c), f"ln {c} classes"
        elif kind in ("bce", "bce_logits") or (not kind and ("bce" in name or "binary" in name)):
            expected, what = math.log(2), "ln 2 (binary)"
        elif kind == "mse" or (not kind and setup.kind == "regression" and "mse" in name):
            if tgt is not None and tgt.is_floating_point() and tgt.numel() > 1:
                expected, what = float(tgt.float().var()), "Var(y)"
        elif kind in ("", "nll") and tgt is not None and not tgt.is_floating_point():
            model = setup.copy_model()
            model.eval()
            with torch.no_grad():
                out = setup.pick(setup.forward(model))
            if out is not None and out.dim() == 2:  # (batch, classes) only: a longer output's class dim is unknown
                c = int(out.shape[1])
                expected, what = math.log(c), f"ln {c} classes"
        if expected is not None and expected > 0 and what.startswith("ln") and expected < math.log(2) + 1e-9 \
                and what != "ln 2 (binary)":
            expected = None  # one class: nothing to expect
        if expected is None or expected <= 0:
            return self.skipped(f"no known expectation for this loss ({setup.loss_name or 'unknown'})")
        ratio = l0 / expected
        metrics = {"initial_loss": l0, "expected": expected, "expected_from": what, "ratio": ratio, "factor": FACTOR}
        evidence = f"first loss {num(l0)} vs expected {num(expected)} ({what}): {num(ratio)}x"
        if ratio > FACTOR or ratio < 1 / FACTOR:
            return self.result("problem", "the loss at init is far from what a well-initialized last layer gives",
                               metrics=metrics, evidence=evidence, found=["TL501"], location=setup.location)
        return self.result("ok", "the loss at init is as expected", metrics=metrics, evidence=evidence)
