"""overfit-one-batch (TL502; confirms TL103, TL206): can a copy of the model drive the loss on one small batch
close to zero?

TheDeepChecker's recipe: 16 samples, up to 500 steps; classification fails below 95% accuracy.
trainlint also asks the loss to fall below 10% of its start (a double softmax keeps 100% accuracy but its
cross-entropy floors at ln(e+9)-1 = 1.46 for 10 classes: measured 1.46-1.64, see docs/prior-art.md). The
script's optimizer class and LR are tried first, then Adam 1e-3: when only Adam gets there, the LR is the
suspect (TL206).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from trainlint.runtime.probes import Budget, Probe, ProbeResult, num, pct
from trainlint.runtime.probes._setup import SMALL_BATCH, get_setup, scalar

STEPS = 500
MIN_ACCURACY = 0.95  # TheDeepChecker
MAX_LOSS_RATIO = 0.1  # final / initial loss


def _accuracy(out: Any, target: Any, probabilities: bool = False, ignore_index: int = -100) -> Any:
    """Share of samples classified right; ``probabilities``: the outputs are sigmoid probabilities (BCE), so
    the decision threshold is 0.5, not 0 (logits)."""
    import torch

    if out is None or target is None or not isinstance(target, torch.Tensor):
        return None
    try:
        target = target.to(out.device)
        if not target.is_floating_point() and out.dim() >= 2 and out.shape[0] == target.shape[0]:
            keep = target != ignore_index
            if not bool(keep.any()):
                return None
            return float((out.argmax(1) == target)[keep].float().mean())
        if target.is_floating_point() and out.numel() == target.numel() and float(target.min()) >= 0 \
                and float(target.max()) <= 1:  # binary targets
            if bool(((target > 0) & (target < 1)).any()):
                return None  # soft targets (label smoothing, a GAN's 0.9): no accuracy
            thr = 0.5 if probabilities else 0.0
            return float(((out.reshape(target.shape) > thr).float() == target).float().mean())
    except Exception:
        return None
    return None


def _probability_like(out: Any) -> bool:
    """Rows that are non-negative and sum to 1: a softmax already applied."""
    import torch

    if out is None or out.dim() < 2 or out.shape[1] < 2:
        return False
    with torch.no_grad():
        return bool(float(out.min()) >= 0 and torch.allclose(out.sum(1), torch.ones_like(out.sum(1)), atol=1e-3))


def _loss_floor(setup: Any) -> float:
    """The least loss a perfect model reaches: 0, except for a binary cross-entropy against soft targets (a VAE's
    pixel intensities), whose minimum is the targets' own entropy (with the loss's reduction)."""
    import torch
    import torch.nn.functional as F

    t = setup.target
    if setup.loss_kind in ("nll", "own"):
        return _sequence_floor(setup)
    if setup.loss_kind not in ("bce", "bce_logits") or not isinstance(t, torch.Tensor) or not t.is_floating_point():
        return 0.0
    if not bool(((t > 0) & (t < 1)).any()):
        return 0.0
    y = t.float().clamp(1e-6, 1 - 1e-6)
    perfect = y if setup.loss_kind == "bce" else torch.log(y / (1 - y))
    with torch.no_grad():
        if not setup.ops and not setup.own_loss:  # the loss function takes the output as it is: ask it
            try:
                return float(setup.loss_fn(perfect.to(setup.device), t.to(setup.device)))
            except Exception:
                pass
        try:
            val = F.binary_cross_entropy(y, t.float(), reduction="none")
            return float(val.sum()) if setup.reduction == "sum" else float(val.mean())
        except Exception:
            return 0.0


def _sequence_floor(setup: Any) -> float:
    """A next-token model's least loss on the batch: where two samples share the whole prefix up to a position
    (a start token, a common first syllable) but their next tokens differ, no model can tell them apart; the
    floor is the mean entropy of the next token given its prefix (0 when every prefix is unique)."""
    import math

    import torch

    try:
        x = setup.args[0] if setup.args else None
        y = setup.target
        if y is None and setup.own_loss and len(setup.args) > 1:
            y = setup.args[1]
        y = y if y is not None else setup.kwargs.get("targets")
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or x.is_floating_point() \
                or x.dim() != 2 or y.numel() != x.numel() or y.is_floating_point():
            return 0.0
        y = y.reshape(x.shape)
        ignore = int(getattr(setup, "ignore_index", -100))
        xs, ys = x.tolist(), y.tolist()
        groups: dict = {}
        for i, row in enumerate(xs):
            for t in range(len(row)):
                if ys[i][t] == ignore or ys[i][t] < 0:
                    continue
                groups.setdefault(tuple(row[:t + 1]), []).append(ys[i][t])
        total = sum(len(v) for v in groups.values())
        if not total:
            return 0.0
        nll = 0.0
        for v in groups.values():
            for tok in set(v):
                c = v.count(tok)
                nll += -c * math.log(c / len(v))
        return nll / total if setup.reduction != "sum" else nll
    except Exception:
        return 0.0


def _still_falling(losses: List[float]) -> bool:
    """The last tenth of the curve is at least 3% below the tenth before it."""
    k = max(5, len(losses) // 10)
    if len(losses) < 2 * k:
        return False
    last, prev = sum(losses[-k:]) / k, sum(losses[-2 * k:-k]) / k
    return prev > 0 and last < 0.97 * prev


def train(setup: Any, budget: Budget, fallback: bool, steps: int = STEPS, reuse: str = "") -> Tuple[List[float], Any, str]:
    """Train a copy of the model on ``setup``'s batch; returns (losses, (picked output, raw output), optimizer).

    ``reuse`` names the run in the setup's cache (shared by the probes through the captured Setup): a later
    probe asking for the same run (input-independent-baseline's real-input run is overfit-one-batch's first
    attempt) gets its first ``steps`` losses instead of training again."""
    cache = getattr(setup, "runs", None) if reuse else None
    # (the script's own Adam at 1e-3 and the fallback Adam 1e-3 are one optimizer: one run)
    opt = "fallback" if fallback or setup.opt_class is None else (setup.opt_class, tuple(sorted(setup.opt_kwargs.items())))
    if opt != "fallback" and setup.opt_class.__name__ == "Adam" and setup.opt_kwargs in ({}, {"lr": 1e-3}):
        opt = "fallback"
    key = (reuse, repr(opt))
    if cache is not None and key in cache:
        losses, out, label = cache[key]
        return losses[:steps], out, label
    result = _train(setup, budget, fallback, steps)
    if cache is not None:
        cache[key] = result
    return result


def _train(setup: Any, budget: Budget, fallback: bool, steps: int) -> Tuple[List[float], Any, str]:
    from trainlint.runtime.probes import to_device

    model = setup.copy_model()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt, label = setup.optimizer(params, fallback=fallback)
    losses: List[float] = []
    out = None
    target = to_device(setup.target, setup.device) if setup.target is not None else None

    last: List[Any] = [None]

    def closure():  # (LBFGS evaluates it several times a step; other optimizers once)
        opt.zero_grad()
        full = setup.forward(model)
        loss = setup.loss_fn(full, target)
        loss.backward()
        last[0] = full
        return loss

    for _ in range(steps):
        if budget.expired:
            break
        loss = opt.step(closure)
        if loss is None:
            break
        losses.append(scalar(loss))
        if losses[-1] != losses[-1]:  # NaN
            break
        if losses[0] > 0 and losses[-1] < 0.01 * losses[0]:
            break
    model.eval()
    import torch

    with torch.no_grad():
        full = setup.forward(model)
        # (what the loss consumed, the model's output; and what the loss consumed in the last training forward:
        # in train mode, as the losses were measured: a BatchNorm's running statistics lag its batch statistics
        # for many steps, so an eval-mode output can miss what the training loss says was learned)
        trained = last[0]
        out = (setup.pick(full), setup.raw_output(full),
               setup.pick(_detach(trained)) if trained is not None else None)
    return losses, out, label


def _detach(obj: Any) -> Any:
    from trainlint.runtime.capture import detach

    return detach(obj)


class OverfitOneBatch(Probe):
    name = "overfit-one-batch"
    codes = ("TL502", "TL103", "TL206")

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        budget = Budget(budget_s)
        setup = get_setup(capture, ctx)
        if isinstance(setup, str):
            return self.skipped(setup)
        small = setup.take(slice(0, SMALL_BATCH))
        attempts: List[Dict[str, Any]] = []
        series: Dict[str, List[float]] = {}
        default = setup.opt_class is not None and setup.opt_class.__name__ == "Adam" and \
            setup.opt_kwargs.get("lr") == 1e-3
        tries = (False, True) if setup.opt_class is not None and not default else (default,)
        out_of_time = []
        for k, fallback in enumerate(tries):
            share = budget.left / (len(tries) - k)
            losses, out, label = train(small, Budget(share), fallback, reuse=f"first {SMALL_BATCH}")
            if len(losses) < STEPS and losses and losses[-1] == losses[-1] and budget.expired is not None:
                ran_out = not (losses[0] > 0 and losses[-1] < 0.01 * losses[0])
                if ran_out:
                    out_of_time.append(k)
            probs = small.loss_kind == "bce" or small.loss_name.lower() in ("bceloss",)
            acc = _accuracy(out[0], small.target, probabilities=probs, ignore_index=int(small.ignore_index))
            if acc is not None and out[2] is not None:  # the model fits in the mode it trained in, or in eval mode
                acc_train = _accuracy(out[2], small.target, probabilities=probs, ignore_index=int(small.ignore_index))
                acc = max(acc, acc_train) if acc_train is not None else acc
            floor = _loss_floor(small)
            if losses and floor and losses[0] > floor:  # the part of the loss that can be removed
                ratio = (losses[-1] - floor) / (losses[0] - floor)
            else:
                ratio = (losses[-1] / losses[0]) if losses and losses[0] > 0 else None
            ok = bool(losses) and losses[-1] == losses[-1] and (
                (ratio is not None and ratio <= MAX_LOSS_RATIO) or losses[-1] < 1e-3) and (
                acc is None or acc >= MIN_ACCURACY)
            # a classifier at full accuracy whose loss is still falling steadily (a small LR, e.g. a GAN's 2e-4,
            # or clipped gradients) does overfit, only slowly; a double softmax's loss has flattened at its floor
            # (a regression, no accuracy to ask: a loss already below half its start and still falling steadily)
            slow = bool(not ok and losses and losses[-1] == losses[-1] and _still_falling(losses)
                        and not _probability_like(out[1])
                        and ((acc is not None and acc >= MIN_ACCURACY)
                             or (acc is None and ratio is not None and ratio < 0.5)))
            ok = ok or slow
            attempts.append({"optimizer": label, "steps": len(losses), "initial_loss": losses[0] if losses else None,
                             "final_loss": losses[-1] if losses else None, "loss_ratio": ratio, "accuracy": acc,
                             "reached": ok, "probability_output": _probability_like(out[1]), "loss_floor": floor,
                             "still_falling": slow})
            series[f"loss ({label})"] = losses
            if ok:
                break
        metrics = {"samples": small.n, "kind": setup.kind, "loss": setup.loss_name, "attempts": attempts,
                   "min_accuracy": MIN_ACCURACY, "max_loss_ratio": MAX_LOSS_RATIO,
                   # the line each attempt's loss had to end below (the verdict also asks accuracy >= 95%)
                   "plot": {"thresholds": [
                       {"value": (a.get("loss_floor") or 0.0) + MAX_LOSS_RATIO * (a["initial_loss"] - (a.get("loss_floor") or 0.0)),
                        "series": f"loss ({a['optimizer']})",
                        "label": f"10% of the first loss ({a['optimizer']})"
                                 + (f"; accuracy {pct(a['accuracy'])}, needs {pct(MIN_ACCURACY)}"
                                    if a["accuracy"] is not None else "")}
                       for a in attempts if a["initial_loss"]]}}

        def say(a: Dict[str, Any]) -> str:
            acc = f", accuracy {pct(a['accuracy'])}" if a["accuracy"] is not None else ""
            return (f"{a['optimizer']}: loss {num(a['initial_loss'])} -> {num(a['final_loss'])} in {a['steps']} "
                    f"steps on {small.n} samples{acc}" + ("; still falling" if a.get("still_falling") else "")
                    + (f" (least possible {num(a['loss_floor'])}: the targets' own entropy)" if a.get("loss_floor") else ""))

        evidence = "; ".join(say(a) for a in attempts)
        last = attempts[-1]
        if last["reached"] and len(attempts) == 1:
            return self.result("ok", "the model overfits one small batch", metrics=metrics, series=series,
                               evidence=evidence, confirms={"TL103": False, "TL206": False})
        if last["reached"] and 0 in out_of_time:  # the script's optimizer ran out of time, not out of progress
            return self.result("ok", "the model overfits one small batch (with Adam 1e-3; the script's optimizer "
                               "ran out of time)", metrics=metrics, series=series, evidence=evidence,
                               confirms={"TL103": False})
        if last["reached"] and not getattr(setup, "opt_exact", True):
            return self.result("ok", "the model overfits one small batch (with Adam 1e-3; the script's manual update "
                               "was copied only approximately)", metrics=metrics, series=series, evidence=evidence,
                               confirms={"TL103": False})
        if last["reached"]:  # only the fallback got there: the script's optimizer/LR is the suspect
            return self.result("problem", "the script's optimizer and LR cannot overfit one small batch; Adam 1e-3 can",
                               metrics=metrics, series=series, evidence=evidence,
                               confirms={"TL206": True, "TL103": False}, found=["TL502"], location=setup.location)
        if len(out_of_time) == len(attempts) and not any(a["probability_output"] for a in attempts):
            # every attempt stopped at the time budget, not after its 500 steps: no verdict
            return self.skipped(f"out of time: {evidence} (of {STEPS} steps); raise --budget", metrics=metrics,
                                series=series)
        confirms = {}
        if any(a["probability_output"] for a in attempts):
            confirms["TL103"] = True
            evidence += "; the model's output rows are probabilities (a softmax before the loss)"
        else:
            confirms["TL103"] = False
        return self.result("problem", "the model cannot overfit one small batch (the loss stays far from 0)",
                           metrics=metrics, series=series, evidence=evidence, confirms=confirms, found=["TL502"],
                           location=setup.location)
