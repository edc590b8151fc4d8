"""lr-trajectory (TL201): the learning rate the schedule really gives over the planned run.

From the captured steps: which scheduler steps the trained optimizer, and whether ``scheduler.step()`` ran
between every two optimizer steps (stepped per batch) or less often (per epoch). The planned run is
epochs (from the script's variables or ``--epochs`` in argv) × batches per epoch (``len`` of the train
loader); a deep copy of the scheduler (on a copy of the optimizer, the model's parameters shared but never
touched) is stepped forward over it.
"""

from __future__ import annotations

import copy
import re
import warnings
from typing import Any, List, Optional

from trainlint.runtime.probes import Budget, Probe, ProbeResult, num, pct

DECAYING = {"StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "PolynomialLR", "OneCycleLR",
            "CosineAnnealingWarmRestarts", "LinearLR"}
EARLY = 0.5  # decayed below 1% of the initial LR before this share of the run: a problem
FLOOR = 0.01
MAX_SIM = 200_000
_EPOCH_ARG = re.compile(r"^--?(epochs|num[_-]epochs|n[_-]epochs|max[_-]epochs|nb[_-]epochs)(=(\d+))?$")


def epochs_from_argv(argv: List[str]) -> Optional[int]:
    for i, a in enumerate(argv):
        m = _EPOCH_ARG.match(a)
        if not m:
            continue
        val = m.group(3) or (argv[i + 1] if i + 1 < len(argv) else "")
        if str(val).isdigit():
            return int(val)
    return None


class LrTrajectory(Probe):
    name = "lr-trajectory"
    codes = ("TL201", "TL205")

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        res = self._trajectory(capture, budget_s, ctx)
        sched = capture.scheduler()
        if sched is None or not capture.steps:
            return res
        # TL205: scheduler.step() before the first optimizer.step() skips the schedule's first value
        early = [c for c in capture.scheduler_calls if c.scheduler is sched and c.after_step == 0]
        res.confirms["TL205"] = bool(early)
        res.metrics["scheduler_steps_before_first_optimizer_step"] = len(early)
        if early:
            site = early[0].site
            text = (f"scheduler.step() ran {len(early)}× before the first optimizer.step()"
                    + (f" (line {site[1]})" if site else "") + ": the schedule's first LR is skipped")
            if res.verdict == "problem":
                res.found = [c for c, v in res.confirms.items() if v]
                res.evidence = f"{text}; {res.evidence}"
            else:
                res.verdict, res.reason, res.found = "problem", "the scheduler steps before the optimizer", ["TL205"]
                res.evidence = text + (f"; {res.evidence}" if res.evidence else "")
                if site:
                    res.location = {"path": site[0], "line": site[1]}
        return res

    def _trajectory(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        budget = Budget(budget_s)
        sched = capture.scheduler()
        if sched is None:
            return self.skipped("the script builds no LR scheduler (the LR stays constant)")
        cls = type(sched).__name__
        location = None
        site = capture.scheduler_sites.get(id(sched))
        if site:
            location = {"path": site[0], "line": site[1]}
        if cls == "ReduceLROnPlateau":
            return self.skipped("ReduceLROnPlateau follows a metric; its trajectory cannot be planned")
        n = len(capture.steps)
        if n < 2:
            return self.skipped("one watched step cannot tell per-batch from per-epoch stepping (use --steps 2 or more)")
        calls = [c for c in capture.scheduler_calls if c.scheduler is sched]
        gaps = [sum(1 for c in calls if c.after_step == k) for k in range(1, n)]
        per_batch = n >= 2 and all(g >= 1 for g in gaps)
        loader = capture.train_loader()
        try:
            per_epoch = len(loader) if loader is not None else None
        except TypeError:
            per_epoch = None
        epochs = capture.int_vars.get("epochs") or epochs_from_argv(ctx.argv if ctx else [])
        base = [float(x) for x in getattr(sched, "base_lrs", [])] or [float(g["lr"]) for g in sched.optimizer.param_groups]
        base0 = base[0] if base else None
        metrics = {"scheduler": cls, "stepped_per_batch": per_batch, "scheduler_calls_in_watched_steps": len(calls),
                   "watched_steps": n, "batches_per_epoch": per_epoch, "epochs": epochs, "initial_lr": base0,
                   "scheduler_name": capture.name_of(sched)}
        if per_batch:
            horizon = epochs * per_epoch if (epochs and per_epoch) else per_epoch
            unit = "batch"
        else:
            horizon = epochs
            unit = "epoch"
        if not horizon:
            why = "batches per epoch" if per_batch else "number of epochs"
            return self.skipped(f"stepped per {unit}, but the {why} is unknown: the planned run cannot be extrapolated",
                                metrics=metrics)
        horizon = min(int(horizon), MAX_SIM)
        metrics["planned_scheduler_steps"] = horizon
        metrics["horizon_is_whole_run"] = bool(epochs)
        series = self._simulate(sched, horizon, budget)
        if series is None:
            return self.skipped("the scheduler could not be copied and stepped forward", metrics=metrics)
        lrs = series
        metrics["final_lr"] = lrs[-1]
        metrics["min_lr"] = min(lrs)
        # a warmup rises first: "decayed" is measured from the peak, after it
        peak_i = max(range(len(lrs)), key=lambda i: lrs[i]) if lrs else 0
        peak = lrs[peak_i] if lrs else base0
        metrics["peak_lr"], metrics["peak_at"] = peak, peak_i
        first_low = next((i for i, v in enumerate(lrs) if i > peak_i and peak and v < FLOOR * peak), None)
        metrics["below_1pct_at"] = first_low
        sampled = lrs if len(lrs) <= 2000 else [lrs[int(i * (len(lrs) - 1) / 1999)] for i in range(2000)]
        if peak:
            metrics["plot"] = {"thresholds": [{"value": FLOOR * peak, "label": "1% of the peak LR"}]}
        out_series = {"lr": sampled}
        what = f"stepped per {unit}" + (" (scheduler.step() between every two optimizer steps)" if per_batch else "")
        span = f"{horizon} scheduler steps" + (f" ({epochs} epochs × {per_epoch} batches)" if per_batch and epochs else
                                                (f" ({epochs} epochs)" if not per_batch else " (one epoch; epochs unknown)"))
        if first_low is not None and first_low < EARLY * horizon:
            evidence = (f"{cls} {what}: LR {num(peak)} → {num(lrs[first_low])} (< 1% of its peak) after {first_low} of "
                        f"{span} = {pct(first_low / horizon)} of the run; final LR {num(lrs[-1])}")
            return self.result("problem", "the LR decays to ~0 early in the planned run", metrics=metrics,
                               series=out_series, confirms={"TL201": True}, evidence=evidence, location=location)
        if cls in DECAYING and base0 and max(abs(v - base0) for v in lrs) <= 1e-3 * base0 and epochs:
            evidence = f"{cls} {what}: LR stays {num(base0)} over all {span}: its decay never happens in this run"
            return self.result("problem", "the schedule never decays in the planned run", metrics=metrics,
                               series=out_series, confirms={"TL201": True}, evidence=evidence, location=location)
        rise = (f", rising to {num(peak)} at step {peak_i} (warmup)" if peak_i > 0 and lrs
                and peak > lrs[0] * 1.0001 else "")
        evidence = (f"{cls} {what}: LR {num(lrs[0])}{rise} → {num(lrs[-1])} over {span}"
                    + (f"; below 1% after {pct(first_low / horizon)} of it" if first_low is not None else ""))
        return self.result("ok", "the schedule spans the planned run", metrics=metrics, series=out_series,
                           confirms={"TL201": False}, evidence=evidence)

    def _simulate(self, sched: Any, horizon: int, budget: Budget) -> Optional[List[float]]:
        """LR after 0..horizon scheduler steps, from a fresh copy when possible."""
        opt = sched.optimizer
        memo = {}
        for g in opt.param_groups:
            for p in g["params"]:
                memo[id(p)] = p  # share the parameters (never stepped), copy everything else
        for st in opt.state.values():
            for v in st.values():
                memo[id(v)] = v
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s2 = copy.deepcopy(sched, memo)
                # rewind to the start: the state the scheduler had at construction
                s2.last_epoch = 0
                if hasattr(s2, "_step_count"):
                    s2._step_count = 1
                for g, lr in zip(s2.optimizer.param_groups, getattr(s2, "base_lrs", [])):
                    g["lr"] = lr
                if type(s2).__name__ == "OneCycleLR":
                    for g in s2.optimizer.param_groups:
                        g["lr"] = g.get("initial_lr", g["lr"])
                if hasattr(s2, "_last_lr"):
                    s2._last_lr = [g["lr"] for g in s2.optimizer.param_groups]
                if type(s2).__name__ not in ("OneCycleLR", "SequentialLR", "ChainedScheduler"):
                    try:  # as at construction: step to epoch 0 (a warmup's LambdaLR starts below its base LR)
                        s2.last_epoch = -1
                        if hasattr(s2, "_step_count"):
                            s2._step_count = 0
                        s2.step()
                    except Exception:
                        s2.last_epoch = 0
                lrs = [float(s2.optimizer.param_groups[0]["lr"])]
                for i in range(horizon):
                    if i % 1000 == 0 and budget.expired:
                        break
                    try:
                        s2.step()
                    except (ValueError, ZeroDivisionError):  # OneCycleLR past its total steps
                        break
                    lrs.append(float(s2.optimizer.param_groups[0]["lr"]))
                return lrs
        except Exception:
            return None
