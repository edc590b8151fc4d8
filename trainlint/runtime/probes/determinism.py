"""determinism (TL301): do two short runs from scratch give the same losses?

Runs the user's script twice more under the shim in ``--losses-only`` mode (fresh processes, in parallel,
N=2 steps by default) and compares their first losses with each other and with the watched run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, List

from trainlint.runtime.probes import Probe, ProbeResult, num

RTOL = 1e-5
FRESH_RUNS = 2
FRESH_STEPS = 2


def _differ(a: float, b: float) -> bool:
    return abs(a - b) > RTOL * max(1.0, abs(a), abs(b))


class Determinism(Probe):
    name = "determinism"
    codes = ("TL301",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        main = [s.loss.value for s in capture.steps if s.loss is not None]
        if not main:
            return self.skipped("no loss was seen in the watched run")
        if ctx is not None and getattr(ctx, "world_size", 1) > 1:
            return self.skipped("not under torchrun yet: fresh runs would need the whole process group")
        if ctx is None or not ctx.argv:
            return self.skipped("the script's command line is unknown: no fresh runs")
        steps = min(FRESH_STEPS, len(main))
        # a fresh run repeats the watched one (imports, data, model): give it at least twice that long
        budget_s = max(budget_s, 2.0 * getattr(ctx, "run_seconds", 0.0) + 5.0)
        import shutil

        tmp = tempfile.mkdtemp(prefix="trainlint-det-")
        try:
            runs, errors = self._fresh_runs(ctx, steps, budget_s, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if len(runs) < 1:
            return self.skipped("the fresh runs did not finish: " + ("; ".join(errors) or "no result"))
        seqs = [main[:steps]] + [r[:steps] for r in runs]
        k = min(len(s) for s in seqs)
        seqs = [s[:k] for s in seqs]
        first = [s[0] for s in seqs]
        differs = any(_differ(x, y) for s in seqs[1:] for x, y in zip(seqs[0], s))
        metrics = {"runs": len(seqs), "steps_compared": k, "first_losses": first,
                   "max_abs_difference": max(abs(x - y) for s in seqs[1:] for x, y in zip(seqs[0], s)),
                   "seed_calls": capture.seed_calls[:10], "fresh_run_errors": errors}
        series = {f"run{i}": s for i, s in enumerate(seqs)}
        shown = ", ".join(num(x) for x in first)
        if differs:
            seeds = ", ".join(sorted({c["fn"] for c in capture.seed_calls})) or "no seed call seen"
            return self.result("problem", "two runs from scratch give different losses", metrics=metrics,
                               series=series, confirms={"TL301": True},
                               evidence=f"first loss of {len(seqs)} runs from scratch: {shown} ({seeds})")
        return self.result("ok", "runs from scratch give the same losses", metrics=metrics, series=series,
                           confirms={"TL301": False},
                           evidence=f"first {k} losses identical in {len(seqs)} runs (first loss {num(first[0])})")

    def _fresh_runs(self, ctx: Any, steps: int, budget_s: float, tmp: str):
        env = dict(ctx.env or os.environ)
        env["TRAINLINT_SHIM_CHILD"] = "1"
        procs = []
        for i in range(FRESH_RUNS):
            out = os.path.join(tmp, f"run{i}.json")
            cmd = [sys.executable, "-m", "trainlint.runtime.shim", "--steps", str(steps), "--losses-only",
                   "--out", out, "--"] + list(ctx.argv)
            procs.append((subprocess.Popen(cmd, cwd=ctx.cwd, env=env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True), out))
        runs: List[List[float]] = []
        errors: List[str] = []
        import time

        deadline = time.monotonic() + budget_s
        for p, out in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, 9)
                except OSError:
                    p.kill()
                p.wait()
                errors.append(f"a fresh run exceeded the probe's {budget_s:.0f} s budget")
                continue
            try:
                with open(out, encoding="utf-8") as fh:
                    data = json.load(fh)
                if data.get("status") != "ok":
                    errors.append(f"a fresh run ended with status {data.get('status')}")
                    continue
                runs.append(data.get("losses", []))
            except (OSError, ValueError) as exc:
                errors.append(f"a fresh run wrote no result ({exc})")
        return runs, errors
