"""augmentation-active (TL302/TL303): does fetching the same sample twice give different tensors?

For each DataLoader the script built: ``dataset[0]`` fetched twice (under two different torch/random/numpy
seeds, the RNG state restored after). Different tensors in a loader that is not the one training iterates
(validation/test) confirm TL303; in the train loader, random augmentation is active (TL302: before a
baseline).
"""

from __future__ import annotations

import random
from typing import Any, List

from trainlint.runtime.probes import Budget, Probe, ProbeResult


def _tensors(sample: Any, depth: int = 0) -> List[Any]:
    import numpy as np
    import torch

    out: List[Any] = []
    if isinstance(sample, torch.Tensor):
        out.append(sample.detach().cpu())
    elif isinstance(sample, np.ndarray):
        out.append(torch.from_numpy(np.ascontiguousarray(sample)))
    elif hasattr(sample, "tobytes") and hasattr(sample, "size") and hasattr(sample, "mode"):  # PIL image
        out.append(torch.frombuffer(bytearray(sample.tobytes()), dtype=torch.uint8))
    elif depth < 4 and isinstance(sample, (list, tuple)):
        for v in sample:
            out.extend(_tensors(v, depth + 1))
    elif depth < 4 and isinstance(sample, dict):
        for v in sample.values():
            out.extend(_tensors(v, depth + 1))
    return out


def _fetch_twice(dataset: Any):
    import numpy as np
    import torch

    states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    try:
        samples = []
        for seed in (1234, 98765):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)
            samples.append(_tensors(dataset[0]))
        return samples
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])


def _same(a: List[Any], b: List[Any]) -> bool:
    import torch

    if len(a) != len(b):
        return False
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


class AugmentationActive(Probe):
    name = "augmentation-active"
    codes = ("TL302", "TL303")

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        budget = Budget(budget_s)
        if not capture.loaders:
            return self.skipped("the script built no DataLoader")
        train = capture.train_loader()
        per_loader = []
        for dl in capture.loaders:
            if budget.expired:
                break
            ds = getattr(dl, "dataset", None)
            name = capture.name_of(dl) or f"loader#{capture.loaders.index(dl)}"
            role = "train" if dl is train else "eval"
            try:
                if ds is None or not hasattr(ds, "__getitem__") or len(ds) == 0:
                    continue
                a, b = _fetch_twice(ds)
            except Exception as exc:
                per_loader.append({"loader": name, "role": role, "random": None, "error": f"{type(exc).__name__}: {exc}"})
                continue
            if not a:
                per_loader.append({"loader": name, "role": role, "random": None, "error": "no tensor in the sample"})
                continue
            site = capture.loader_sites.get(id(dl))
            per_loader.append({"loader": name, "role": role, "random": not _same(a, b), "dataset": type(ds).__name__,
                               "site": {"path": site[0], "line": site[1]} if site else None})
        metrics = {"loaders": per_loader}
        if not any(p.get("random") is not None for p in per_loader):
            return self.skipped("no loader's dataset[0] could be fetched and compared", metrics=metrics)
        eval_random = [p for p in per_loader if p["role"] == "eval" and p.get("random")]
        train_random = [p for p in per_loader if p["role"] == "train" and p.get("random")]
        confirms = {}
        if any(p["role"] == "eval" and p.get("random") is not None for p in per_loader):
            confirms["TL303"] = bool(eval_random)
        if any(p["role"] == "train" and p.get("random") is not None for p in per_loader):
            confirms["TL302"] = bool(train_random)
        desc = "; ".join(f"{p['loader']} ({p['role']}): " + ("dataset[0] differs between fetches" if p.get("random")
                                                           else "same tensors" if p.get("random") is False
                                                           else p.get("error", "?")) for p in per_loader)
        if eval_random:
            return self.result("problem", "random augmentation is active in an evaluation loader", metrics=metrics,
                               confirms=confirms, evidence=desc, found=["TL303"], location=eval_random[0].get("site"))
        if train_random:  # wanted or not depends on whether a baseline exists: confirms TL302's finding only
            return self.result("ok", "random augmentation is active in the training loader only", metrics=metrics,
                               confirms=confirms, evidence=desc)
        return self.result("ok", "fetching a sample twice gives the same tensors", metrics=metrics,
                           confirms=confirms, evidence=desc)
