"""The probes on in-memory objects, for test suites.

    import torch
    from trainlint.runtime.api import check, assert_trains

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    batch = (torch.randn(32, 16), torch.randint(0, 4, (32,)))
    results = check(model, batch, torch.nn.functional.cross_entropy)   # list[ProbeResult]
    assert_trains(model, batch, torch.nn.CrossEntropyLoss())            # AssertionError with the evidence

``batch`` is ``(inputs, target)`` (``inputs`` a tensor or a tuple of the model's positional arguments), the
inputs alone, or ``{"inputs": ..., "target": ...}``; ``loss_fn(output, target)`` returns the scalar loss;
``optimizer`` is an optimizer instance or class whose class and LR the training probes copy (None: Adam 1e-3).
The model is never changed: every probe works on a deep copy.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

#: The probes that work on (model, batch, loss) alone, in the order they run.
API_PROBES = ("loss-at-init", "overfit-one-batch", "batch-independence", "input-independent-baseline", "dead-units",
              "gradient-health", "input-normalization", "loss-reduction")


def check(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], optimizer: Any = None,
          probes: Optional[Iterable[str]] = None, device: Any = None, budget: float = 20.0) -> List[Any]:
    """Run ``probes`` (default: all of :data:`API_PROBES`) and return their ``ProbeResult`` list."""
    from trainlint.runtime.probes import ProbeContext, ProbeResult, registry
    from trainlint.runtime.probes._setup import from_objects

    names = list(API_PROBES if probes is None else probes)
    unknown = [n for n in names if n not in API_PROBES]
    if unknown:
        raise ValueError(f"unknown probe {unknown[0]!r} for the API; choose from {', '.join(API_PROBES)}")
    from trainlint.runtime.probes import probe_threads

    with probe_threads():
        setup = from_objects(model, batch, loss_fn, optimizer=optimizer, device=device)
    ctx = ProbeContext(argv=[], cwd=".", device=str(setup.device))
    reg = registry()
    import time

    from trainlint.runtime.probes import probe_threads

    out = []
    with probe_threads():
        for name in names:
            t = time.perf_counter()
            try:
                res = reg[name]().run(setup, budget, ctx)
            except Exception as exc:
                res = ProbeResult(name, "skipped", f"the probe failed: {type(exc).__name__}: {exc}")
            res.seconds = time.perf_counter() - t
            out.append(res)
    return out


def problems(results: Iterable[Any]) -> List[Any]:
    return [r for r in results if r.verdict == "problem"]


def format_results(results: Iterable[Any]) -> str:
    from trainlint.runtime import PROBE_CODES

    codes = {meta[1]: code for code, meta in PROBE_CODES.items()}
    lines = []
    for r in results:
        code = codes.get(r.name, "")
        lines.append(f"{code} {r.name}: {r.verdict.upper()}: {r.reason}" + (f": {r.evidence}" if r.evidence else ""))
    return "\n".join(lines)


def assert_healthy(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], optimizer: Any = None,
                   probes: Optional[Iterable[str]] = None, device: Any = None, budget: float = 20.0) -> List[Any]:
    """Raise AssertionError listing every probe that found a problem (with its evidence); else the results."""
    results = check(model, batch, loss_fn, optimizer=optimizer, probes=probes, device=device, budget=budget)
    bad = problems(results)
    if bad:
        raise AssertionError(f"trainlint: {len(bad)} probe(s) found a problem:\n" + format_results(bad))
    return results


def assert_trains(model: Any, batch: Any, loss_fn: Callable[[Any, Any], Any], optimizer: Any = None,
                  device: Any = None, budget: float = 20.0) -> List[Any]:
    """The model can learn from this batch: it overfits it, uses its input, and its gradients are healthy."""
    return assert_healthy(model, batch, loss_fn, optimizer=optimizer, device=device, budget=budget,
                          probes=("overfit-one-batch", "input-independent-baseline", "gradient-health"))


def assert_batch_independent(model: Any, inputs: Any, device: Any = None) -> List[Any]:
    """Each sample's output depends on its own input only (model in eval mode)."""

    def no_loss(out: Any, target: Any) -> Any:
        return out.float().mean()

    return assert_healthy(model, (inputs, None), no_loss, device=device, probes=("batch-independence",))
