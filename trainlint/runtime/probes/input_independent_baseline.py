"""input-independent-baseline (TL504): does training on zeroed inputs reach the same loss as on real ones?

Two copies train on the same 16 samples (the script's optimizer, else Adam 1e-3), one with every
floating-point input zeroed. TheDeepChecker compares the two loss series with Mann-Whitney (p <= .05);
trainlint uses the ratio of the final losses: the same loss (within 5% either way) is a problem; real inputs
ending far higher is another pathology (e.g. exploding activations), left to the other probes.
"""

from __future__ import annotations

from typing import Any

from trainlint.runtime.probes import Budget, Probe, ProbeResult, num
from trainlint.runtime.probes._setup import SMALL_BATCH, get_setup
from trainlint.runtime.probes.overfit_one_batch import train

STEPS = 150
MAX_RATIO = 0.95


class InputIndependentBaseline(Probe):
    name = "input-independent-baseline"
    codes = ("TL504",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        budget = Budget(budget_s)
        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        small = setup.take(slice(0, SMALL_BATCH))
        zeroed = small.zero_inputs()
        if zeroed is small:
            return self.skipped("no input to zero (no floating-point or integer input tensor)")
        # (overfit-one-batch trained the same copy on the same samples: its run is reused when there is one)
        real, _, label = train(small, Budget(budget.left / 2), fallback=False, steps=STEPS,
                               reuse=f"first {SMALL_BATCH}")
        zero, _, _ = train(zeroed, Budget(budget.left), fallback=False, steps=len(real))
        if not real or not zero:
            return self.skipped("out of time")
        tail = max(1, len(real) // 10)
        r = sum(real[-tail:]) / tail
        z = sum(zero[-tail:]) / tail
        ratio = r / z if z > 0 else (1.0 if r == 0 else float("inf"))
        metrics = {"samples": small.n, "steps": len(real), "optimizer": label, "final_loss_real": r,
                   "final_loss_zeroed": z, "ratio": ratio, "max_ratio": MAX_RATIO}
        series = {"loss (real inputs)": real, "loss (zeroed inputs)": zero}
        evidence = (f"after {len(real)} steps on {small.n} samples: loss {num(r)} with real inputs vs {num(z)} "
                    f"with zeroed inputs (ratio {num(ratio)})")
        if z > 1e-6 and MAX_RATIO <= ratio <= 1 / MAX_RATIO:
            return self.result("problem", "the model learns as well from zeroed inputs: it ignores its input",
                               metrics=metrics, series=series, evidence=evidence, found=["TL504"],
                               location=setup.location)
        return self.result("ok", "real inputs beat zeroed inputs", metrics=metrics, series=series, evidence=evidence)
