"""determinism (TL301): does a second run from scratch give the same losses?

Runs the user's script once more under the shim in ``--losses-only`` mode (a fresh process, after the watched
run; the shim runs the other probes meanwhile) and compares its first 2 losses with the watched run's (the fresh
run stops at its second loss, before that step's backward), or its first loss only when a watched step costs
over SLOW_STEP_CPU CPU seconds.

The user's files end as one run of the script left them, wherever the fresh run writes (its working folder,
``--save-dir /tmp/x``, ``--log-dir ../runs``...): every process of the fresh run journals each path before it
first changes it (:mod:`trainlint.runtime.journal`: an audit hook, and torch.save), and the journal is undone
once the fresh run has ended; a change it cannot undo is refused, and the probe is skipped. Writes Python does
not see (C code other than torch.save, programs the script starts) are covered in the working folder and the
script's folder: before the fresh run the probe records them (every path, size and modification time) and keeps
a copy of each file the watched run wrote; afterwards every path the fresh run created there is removed and
every file it changed or removed is put back. A folder too large to record (over MAX_ENTRIES paths), or written
files too large to keep (over MAX_BACKUP bytes), skips the probe instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, List, Optional, Tuple

from trainlint.runtime import journal
from trainlint.runtime.probes import Probe, ProbeResult, num

RTOL = 1e-5
FRESH_STEPS = 2
#: CPU seconds of one watched step above which the fresh run compares the first loss only.
SLOW_STEP_CPU = 3.0
MAX_ENTRIES = 50_000
MAX_BACKUP = 512 * 1024 * 1024


def _differ(a: float, b: float) -> bool:
    return abs(a - b) > RTOL * max(1.0, abs(a), abs(b))


def tree_state(roots: List[str]) -> Optional[Dict[str, Tuple[bool, int, int]]]:
    """{path: (is_dir, size, mtime_ns)} under ``roots`` (links not followed); None past MAX_ENTRIES."""
    out: Dict[str, Tuple[bool, int, int]] = {}
    for root in roots:
        for d, dirs, files in os.walk(root):
            for name in dirs + files:
                p = os.path.join(d, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                is_dir = os.path.isdir(p) and not os.path.islink(p)
                out[p] = (is_dir, 0 if is_dir else st.st_size, 0 if is_dir else st.st_mtime_ns)
                if len(out) > MAX_ENTRIES:
                    return None
    return out


class Guard:
    """Keeps the folders as they are now across a fresh run (see the module doc)."""

    def __init__(self, roots: List[str], since: float, tmp: str):
        self.roots = roots
        self.before = tree_state(roots)
        self.backup: Dict[str, str] = {}
        self.error = ""
        if self.before is None:
            self.error = f"the working folder has over {MAX_ENTRIES} paths: too many to restore after a fresh run"
            return
        since_ns = int(since * 1e9)
        total = 0
        for k, (p, (is_dir, size, mtime)) in enumerate(sorted(self.before.items())):
            if is_dir or mtime < since_ns or os.path.islink(p):
                continue
            total += size
            if total > MAX_BACKUP:
                self.error = "the files the script wrote are too large to keep aside during a fresh run"
                return
            dest = os.path.join(tmp, f"{k}")
            shutil.copy2(p, dest)
            self.backup[p] = dest

    def restore(self) -> List[str]:
        """Undo what happened since; returns the paths that could not be put back."""
        after = tree_state(self.roots) or {}
        failed: List[str] = []
        for p in sorted((q for q in after if q not in self.before), key=len, reverse=True):
            try:
                if after[p][0]:
                    shutil.rmtree(p)
                else:
                    os.remove(p)
            except FileNotFoundError:
                pass
            except OSError:
                failed.append(p)
        for p, (is_dir, size, mtime) in self.before.items():
            if is_dir:
                if not os.path.isdir(p):
                    os.makedirs(p, exist_ok=True)
                continue
            now = after.get(p)
            if now == (is_dir, size, mtime):
                continue
            src = self.backup.get(p)
            if src is None:
                failed.append(p)
                continue
            try:
                os.makedirs(os.path.dirname(p), exist_ok=True)
                shutil.copy2(src, p)
            except OSError:
                failed.append(p)
        return failed


class Determinism(Probe):
    name = "determinism"
    codes = ("TL301",)

    def run(self, capture: Any, budget_s: float, ctx: Any) -> ProbeResult:
        started = self.start(capture, budget_s, ctx)
        if isinstance(started, ProbeResult):
            return started
        return self.finish(started)

    def start(self, capture: Any, budget_s: float, ctx: Any) -> Any:
        """Start the fresh run (the shim runs the other probes meanwhile); a ProbeResult when it cannot."""
        main = [s.loss.value for s in capture.steps if s.loss is not None]
        if not main:
            return self.skipped("no loss was seen in the watched run")
        if ctx is not None and getattr(ctx, "world_size", 1) > 1:
            return self.skipped("not under torchrun yet: fresh runs would need the whole process group")
        if ctx is None or not ctx.argv:
            return self.skipped("the script's command line is unknown: no fresh runs")
        if getattr(ctx, "concurrent", False):
            return self.skipped("the training runs in several processes that update the same shared parameters "
                                "concurrently (Hogwild): its losses depend on their timing by design, so two runs "
                                "cannot be compared")
        steps = min(FRESH_STEPS, len(main))
        cpu = getattr(capture, "step_cpu", [])
        gaps = sorted(b - a for a, b in zip(cpu, cpu[1:]))
        if gaps and gaps[len(gaps) // 2] > SLOW_STEP_CPU:
            # a slow step (an LBFGS step of 20 evaluations over a long sequence): the first losses only, so that
            # the fresh run stops at its first forward instead of redoing a whole step
            steps = 1
        roots = [os.path.realpath(ctx.cwd)]
        if ctx.argv[0] != "-m":
            sd = os.path.dirname(os.path.realpath(os.path.join(ctx.cwd, ctx.argv[0])))
            if not any(sd == r or sd.startswith(r + os.sep) for r in roots):
                roots.append(sd)
        tmp = tempfile.mkdtemp(prefix="trainlint-det-", dir=os.environ.get("TRAINLINT_TMP") or None)
        keep = os.path.join(tmp, "keep")
        os.makedirs(keep)
        try:
            guard = Guard(roots, getattr(ctx, "started", 0.0) or time.time(), keep)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            return self.skipped(f"the working folder could not be recorded: {exc}")
        if guard.error:
            shutil.rmtree(tmp, ignore_errors=True)
            return self.skipped(guard.error)
        env = dict(ctx.env or os.environ)
        env["TRAINLINT_SHIM_CHILD"] = "1"
        mark = uuid.uuid4().hex
        env["TRAINLINT_FRESH_ID"] = mark
        if getattr(ctx, "process_name", None):  # watch the same multiprocessing child as the watched run
            env["TRAINLINT_WATCH_NAME"] = ctx.process_name
        else:
            env.pop("TRAINLINT_WATCH_NAME", None)
        out = os.path.join(tmp, "fresh.json")
        env[journal.ENV] = os.path.join(tmp, "journal")
        cmd = [sys.executable, "-m", "trainlint.runtime.shim", "--steps", str(steps), "--losses-only",
               "--out", out, "--"] + list(ctx.argv)
        proc = subprocess.Popen(cmd, cwd=ctx.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        return {"proc": proc, "guard": guard, "tmp": tmp, "out": out, "mark": mark, "main": main, "steps": steps,
                "deadline": time.monotonic() + max(1.0, budget_s), "budget": budget_s, "capture": capture}

    def finish(self, h: Dict[str, Any]) -> ProbeResult:
        p = h["proc"]
        try:
            run, error = None, f"it exceeded the probe's {h['budget']:.0f} s budget"
            while True:
                try:  # (a child that trained writes OUT.child: the fresh run need not go on after it)
                    p.wait(timeout=max(0.01, min(0.2, h["deadline"] - time.monotonic())))
                    run, error = self._read(h["out"])
                    break
                except subprocess.TimeoutExpired:
                    if os.path.exists(h["out"] + ".child"):
                        run, error = self._read(h["out"] + ".child")
                        if run is not None:
                            break
                    if time.monotonic() >= h["deadline"]:
                        break
        finally:
            self._end(p, h["mark"])
            try:
                failed = journal.undo(os.path.join(h["tmp"], "journal"))  # every path Python wrote
                failed += h["guard"].restore()  # the working and the script's folders, for writes from C code
            finally:
                shutil.rmtree(h["tmp"], ignore_errors=True)
        capture, main, steps = h["capture"], h["main"], h["steps"]
        if run is None:
            return self.skipped("the fresh run did not finish: " + error)
        seqs = [main[:steps], run[:steps]]
        k = min(len(x) for x in seqs)
        if k == 0:
            return self.skipped("the fresh run saw no loss")
        seqs = [x[:k] for x in seqs]
        first = [x[0] for x in seqs]
        differs = any(_differ(x, y) for x, y in zip(seqs[0], seqs[1]))
        metrics = {"runs": 2, "steps_compared": k, "first_losses": first,
                   "max_abs_difference": max(abs(x - y) for x, y in zip(seqs[0], seqs[1])),
                   "seed_calls": capture.seed_calls[:10], "not_restored": failed[:20]}
        series = {f"run{i}": x for i, x in enumerate(seqs)}
        shown = ", ".join(num(x) for x in first)
        if differs:
            seeds = ", ".join(sorted({c["fn"] for c in capture.seed_calls})) or "no seed call seen"
            return self.result("problem", "two runs from scratch give different losses", metrics=metrics,
                               series=series, confirms={"TL301": True},
                               evidence=f"first loss of 2 runs from scratch: {shown} ({seeds})")
        return self.result("ok", "runs from scratch give the same losses", metrics=metrics, series=series,
                           confirms={"TL301": False},
                           evidence=(f"first {k} losses identical in 2 runs" if k > 1 else "first loss identical in 2 runs")
                           + f" (first loss {num(first[0])})")

    @staticmethod
    def _end(p: Any, mark: str) -> None:
        """The fresh run ends as the watched run does: its process group and every process it marked."""
        from trainlint.runtime.runner import end_processes

        end_processes(p, mark, var="TRAINLINT_FRESH_ID")

    @staticmethod
    def _read(out: str):
        try:
            with open(out, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            return None, f"it wrote no result ({type(exc).__name__})"
        if data.get("status") != "ok":
            return None, f"it ended with status {data.get('status')}: {data.get('message', '')}"
        return data.get("losses", []), ""


