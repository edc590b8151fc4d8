"""loss-reduction (TL508): does the loss double when the batch is duplicated (a sum, not a mean)?

TheDeepChecker's check: with the model in eval mode, loss(batch ++ batch) / loss(batch) is 1 for a mean and
2 for a sum; a summed loss scales the gradient (and the effective LR) with the batch size.
"""

from __future__ import annotations

from typing import Any

from trainlint.runtime.probes import Probe, ProbeResult, num
from trainlint.runtime.probes._setup import get_setup, scalar

TOL = 0.05


class LossReduction(Probe):
    name = "loss-reduction"
    codes = ("TL508",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch

        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        model = setup.copy_model()
        model.eval()
        with torch.no_grad():
            one = scalar(setup.loss(model))
            two = scalar(setup.duplicated().loss(model))
        if one == 0 or one != one:
            return self.skipped(f"the loss is {num(one)}: no ratio")
        ratio = two / one
        lr = setup.opt_kwargs.get("lr")
        metrics = {"loss": one, "loss_duplicated": two, "ratio": ratio, "batch": setup.n, "lr": lr}
        evidence = f"loss {num(one)} on {setup.n} samples, {num(two)} on the batch twice: x{num(ratio)}"
        if abs(ratio - 2.0) <= TOL * 2:
            return self.result("problem", "the loss is summed over the batch, not averaged: the gradient scales "
                               "with the batch size", metrics=metrics, evidence=evidence + (f"; lr {num(lr)}" if lr else ""),
                               found=["TL508"], location=setup.location)
        return self.result("ok", "the loss is averaged over the batch", metrics=metrics, evidence=evidence)
