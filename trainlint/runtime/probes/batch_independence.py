"""batch-independence (TL503): does sample i's output depend on input j != i?

TheDeepChecker: with the model in eval mode, sum over j != i of abs(d out_i / d x_j) must be 0 (abs, not the
signed sum). Measured: a batch-mixing reshape still overfits (loss 0.003), only this probe catches it. out_i is
projected on a random vector so that output elements cannot cancel.
"""

from __future__ import annotations

from typing import Any, List

from trainlint.runtime.probes import Budget, Probe, ProbeResult, num, to_device
from trainlint.runtime.probes._setup import get_setup, model_location

SAMPLES = 8
TOL = 1e-7  # relative to the own-sample gradient


class BatchIndependence(Probe):
    name = "batch-independence"
    codes = ("TL503",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        import torch

        budget = Budget(budget_s)
        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        seq = [m for m in setup.model.modules() if hasattr(m, "batch_first") and isinstance(
            getattr(m, "batch_first", None), bool)]
        if seq and not any(m.batch_first for m in seq):
            return self.skipped("the model is time-major (batch_first=False): its batch is dim 1, which this probe "
                                "does not follow yet")
        n = min(SAMPLES, setup.n)
        if n < 2:
            return self.skipped("a batch of fewer than 2 samples")
        small = setup.take(slice(0, n))
        leaves: List[Any] = []

        def leaf(t: Any) -> Any:
            x = t.detach().to(small.device).clone().requires_grad_(True)
            leaves.append(x)
            return x

        small = small.map_inputs(leaf)
        model = small.copy_model()
        model.eval()
        handles = []
        if not leaves:  # token ids: differentiate with respect to what the embeddings look up
            def emb_leaf(mod, inp, out):
                if isinstance(out, torch.Tensor) and out.dim() > 0 and out.shape[0] == n and out.is_floating_point():
                    x = out.detach().clone().requires_grad_(True)
                    leaves.append(x)
                    return x
                return None

            handles = [m.register_forward_hook(emb_leaf) for m in model.modules()
                       if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))]
            if not handles:
                return self.skipped("no floating-point input to differentiate and no embedding layer")
        try:
            out = small.raw_output(small.forward(model))
        finally:
            for h in handles:
                h.remove()
        if not leaves:
            return self.skipped("no floating-point input to differentiate (token ids?)")
        if out is None or out.dim() == 0 or out.shape[0] != n:
            return self.skipped("the output's first dimension is not the batch")
        gen = torch.Generator(device="cpu").manual_seed(0)
        pairs, worst, own_min = [], 0.0, None
        for i in range(n):
            if budget.expired:
                break
            r = torch.randn(out[i].shape, generator=gen).to(out.device)
            grads = torch.autograd.grad((out[i] * r).sum(), leaves, retain_graph=True, allow_unused=True)
            per = torch.zeros(n, device=out.device)
            for g in grads:
                if g is not None and g.dim() > 0 and g.shape[0] == n:
                    per += g.detach().abs().reshape(n, -1).sum(1)
            own = float(per[i])
            own_min = own if own_min is None else min(own_min, own)
            for j in range(n):
                if j != i and float(per[j]) > TOL * max(own, 1e-12):
                    pairs.append([i, j])
                    worst = max(worst, float(per[j]))
        metrics = {"samples": n, "offending_pairs": pairs, "max_cross_gradient": worst, "min_own_gradient": own_min}
        if pairs:
            shown = ", ".join(f"({i},{j})" for i, j in pairs[:8]) + (" ..." if len(pairs) > 8 else "")
            evidence = (f"{len(pairs)} of {n * (n - 1)} sample pairs (i, j) have d out_i/d x_j != 0: {shown}; "
                        f"max sum|grad| {num(worst)}")
            return self.result("problem", "the model mixes samples of the batch (a view/reshape across the batch?)",
                               metrics=metrics, evidence=evidence, found=["TL503"], location=model_location(setup.model) or setup.location)
        return self.result("ok", "each output depends on its own sample only", metrics=metrics,
                           evidence=f"sum over j != i of |d out_i/d x_j| = 0 for {n} samples")
