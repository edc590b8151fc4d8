"""batch-independence (TL503): does sample i's output depend on input j != i?

TheDeepChecker: with the model in eval mode, sum over j != i of abs(d out_i / d x_j) must be 0 (abs, not the
signed sum). The batch dimension comes from the data: dim 1 of a time-major ``(time, batch, ...)`` input
(``batch_first=False`` layers, or a recurrent state whose batch is the input's second dimension), else dim 0; an
output may hold it flattened with time (``view(-1, vocab)``). Measured: a batch-mixing reshape still overfits (loss 0.003), only this probe catches it. out_i is
projected on a random vector so that output elements cannot cancel.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from trainlint.runtime.probes import Budget, Probe, ProbeResult, num
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
        time_major, full = batch_layout(setup)
        if time_major:  # (time, batch, ...): the whole batch, its samples along dim 1
            n = full
            small = setup
        else:
            n = min(SAMPLES, setup.n)
            small = setup.take(slice(0, n)) if n >= 2 else setup
        if n < 2:
            return self.skipped("a batch of fewer than 2 samples")
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
                if isinstance(out, torch.Tensor) and out.is_floating_point() and _batch_dim(out, n, time_major) \
                        in ("d0", "d1"):
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
        if out is None or out.dim() == 0 or _batch_dim(out, n, time_major) is None:
            return self.skipped(f"no dimension of the output {tuple(out.shape) if out is not None else ()} holds "
                                f"the batch of {n}")
        gen = torch.Generator(device="cpu").manual_seed(0)
        pairs, worst, own_min = [], 0.0, None
        for i in range(min(n, SAMPLES)):
            if budget.expired:
                break
            oi = _sample(out, i, n, time_major)
            r = torch.randn(oi.shape, generator=gen).to(out.device)
            grads = torch.autograd.grad((oi * r).sum(), leaves, retain_graph=True, allow_unused=True)
            per = torch.zeros(n, device=out.device)
            for g in grads:
                # (an input's batch is a dimension of its own: a shared (time, time) mask is no sample's)
                if g is not None and g.dim() > 0 and _batch_dim(g, n, time_major) in ("d0", "d1"):
                    per += _per_sample(g.detach().abs(), n, time_major)
            own = float(per[i])
            own_min = own if own_min is None else min(own_min, own)
            for j in range(n):
                if j != i and float(per[j]) > TOL * max(own, 1e-12):
                    pairs.append([i, j])
                    worst = max(worst, float(per[j]))
        metrics = {"samples": n, "batch_dim": 1 if time_major else 0, "offending_pairs": pairs, "max_cross_gradient": worst, "min_own_gradient": own_min}
        if pairs:
            shown = ", ".join(f"({i},{j})" for i, j in pairs[:8]) + (" ..." if len(pairs) > 8 else "")
            evidence = (f"{len(pairs)} of {n * (n - 1)} sample pairs (i, j) have d out_i/d x_j != 0: {shown}; "
                        f"max sum|grad| {num(worst)}")
            return self.result("problem", "the model mixes samples of the batch (a view/reshape across the batch?)",
                               metrics=metrics, evidence=evidence, found=["TL503"], location=model_location(setup.model) or setup.location)
        return self.result("ok", "each output depends on its own sample only", metrics=metrics,
                           evidence=f"sum over j != i of |d out_i/d x_j| = 0 for {n} samples")


def batch_layout(setup: Any) -> Tuple[bool, int]:
    """(time-major, batch size) of the model's input, found from the data: a ``(time, batch, ...)`` input when
    the model's recurrent / transformer layers are all ``batch_first=False`` or a recurrent state
    ``(layers, batch, hidden)`` among the arguments has the input's second dimension as its batch; else the batch
    is dim 0."""
    import torch

    ts = [t for t in _tensors(setup.args) + _tensors(setup.kwargs) if isinstance(t, torch.Tensor) and t.dim() > 0]
    if not ts:
        return False, 0
    x = ts[0]
    if x.dim() < 2 or x.shape[0] == x.shape[1]:
        return False, int(x.shape[0])
    seq = [m for m in setup.model.modules() if isinstance(getattr(m, "batch_first", None), bool)]
    flagged = bool(seq) and not any(m.batch_first for m in seq)
    state = any(t.dim() == 3 and t.shape[1] == x.shape[1] and t.shape[1] != x.shape[0] for t in ts[1:])
    state_b0 = any(t.dim() == 3 and t.shape[1] == x.shape[0] and t.shape[1] != x.shape[1] for t in ts[1:])
    if (flagged or state) and not state_b0:
        return True, int(x.shape[1])
    return False, int(x.shape[0])


def _tensors(obj: Any) -> List[Any]:
    from trainlint.runtime.capture import tensors_in

    return tensors_in(obj)


def _batch_dim(t: Any, n: int, time_major: bool) -> Optional[str]:
    """Where ``t`` holds the batch of ``n``: "d0", "d1", or "flat" (time and batch flattened into dim 0)."""
    if t.dim() == 0:
        return None
    if time_major:
        if t.dim() >= 2 and t.shape[1] == n:
            return "d1"
        if t.shape[0] == n:
            return "d0"
    elif t.shape[0] == n:
        return "d0"
    if t.shape[0] > n and t.shape[0] % n == 0:
        return "flat"
    return None


def _sample(out: Any, i: int, n: int, time_major: bool) -> Any:
    where = _batch_dim(out, n, time_major)
    if where == "d1":
        return out[:, i]
    if where == "d0":
        return out[i]
    if time_major:  # (time * batch, ...): row t * n + b
        return out[i::n]
    k = out.shape[0] // n  # (batch * time, ...): rows i * k ... (i + 1) * k - 1
    return out[i * k:(i + 1) * k]


def _per_sample(g: Any, n: int, time_major: bool) -> Any:
    """sum |g| per sample of the batch."""
    where = _batch_dim(g, n, time_major)
    if where == "d1":
        return g.transpose(0, 1).reshape(n, -1).sum(1)
    if where == "d0":
        return g.reshape(n, -1).sum(1)
    if time_major:
        return g.reshape(-1, n, *g.shape[1:]).transpose(0, 1).reshape(n, -1).sum(1)
    return g.reshape(n, -1).sum(1)
