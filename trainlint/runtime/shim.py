"""``python -m trainlint.runtime.shim [--steps N] --out FILE -- train.py ARGS`` (or ``-- -m pkg.train ARGS``).

Runs the user's unchanged script with the global hooks of :mod:`trainlint.runtime.capture` installed,
stops it after N optimizer steps, runs the probes and writes the result as JSON to ``--out``. The user's
own output goes to this process's stdout/stderr (the CLI decides whether to show it).

Exit codes: 0 probed, 2 usage, 3 the script crashed before N steps, 4 it never trained, 5 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

from trainlint.runtime import (PROBE_NAMES, SHIM_CRASH, SHIM_INTERNAL, SHIM_NO_TRAINING, SHIM_OK, SHIM_USAGE)

HERE = os.path.dirname(os.path.abspath(__file__))
_STARTED = time.time()  # before the script ran: files it wrote are newer
DEFAULT_BUDGET = 20.0


def parse(argv: List[str]):
    if "--" not in argv:
        raise SystemExit("usage: python -m trainlint.runtime.shim [options] --out FILE -- train.py ARGS")
    i = argv.index("--")
    own, target = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m trainlint.runtime.shim")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--probe", action="append", default=[])
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds per probe")
    p.add_argument("--budget-total", type=float, default=None, help="seconds for all the probes together")
    p.add_argument("--losses-only", action="store_true", help="record the losses only (fresh runs of determinism)")
    args = p.parse_args(own)
    if not target:
        p.error("nothing to run after --")
    if target[0] == "-m":
        if len(target) < 2:
            p.error("-m needs a module name")
    elif target[0].startswith("-m") and len(target[0]) > 2:  # -mpkg.train
        target = ["-m", target[0][2:]] + target[1:]
    return args, target


def _user_traceback(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(HERE) and os.path.basename(f.filename) != "runpy.py"
              and "<frozen runpy>" not in f.filename]
    lines = ["Traceback (most recent call last):\n"] + traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _user_files(roots: List[str], script: Optional[str]) -> List[str]:
    files = set()
    if script:
        files.add(os.path.realpath(script))
    trainlint_dir = os.path.dirname(HERE)
    for mod in list(sys.modules.values()):
        fn = getattr(mod, "__file__", None)
        if not fn or not fn.endswith(".py"):
            continue
        real = os.path.realpath(fn)
        if real.startswith(trainlint_dir) or "site-packages" in real or "dist-packages" in real:
            continue
        if any(real.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            files.add(real)
    return sorted(files)


def run_target(target: List[str], cap: Any) -> Dict[str, Any]:
    """Run the user's script; returns {"outcome": stopped|finished|crash, ...}."""
    from trainlint.runtime.capture import StopTraining, harvest_names

    saved_argv, saved_path = list(sys.argv), list(sys.path)
    try:
        if target[0] == "-m":
            sys.argv = [target[1]] + target[2:]
            sys.path.insert(0, os.getcwd())
            runner = lambda: runpy.run_module(target[1], run_name="__main__", alter_sys=True)  # noqa: E731
        else:
            script = os.path.abspath(target[0])
            sys.argv = [target[0]] + target[1:]
            sys.path.insert(0, os.path.dirname(script))
            runner = lambda: runpy.run_path(script, run_name="__main__")  # noqa: E731
        try:
            runner()
            return {"outcome": "finished"}
        except StopTraining as exc:
            harvest_names(exc.__traceback__, cap)
            return {"outcome": "stopped"}
        except SystemExit as exc:
            code = exc.code
            if code in (None, 0):
                return {"outcome": "finished"}
            return {"outcome": "crash", "traceback": _user_traceback(exc),
                    "message": f"the script exited with status {code}"}
        except KeyboardInterrupt as exc:
            if os.environ.get("TRAINLINT_INTERRUPTED"):  # trainlint itself was interrupted: stop here
                raise
            return {"outcome": "crash", "traceback": _user_traceback(exc),
                    "message": "the script raised KeyboardInterrupt (it interrupted itself; no Ctrl-C was sent)"}
        except BaseException as exc:  # noqa: B902 - the user's crash, reported
            return {"outcome": "crash", "traceback": _user_traceback(exc),
                    "message": f"{type(exc).__name__}: {exc}"}
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def describe(cap: Any) -> Dict[str, Any]:
    """What the shim identified (for the summary and the JSON)."""
    out: Dict[str, Any] = {}
    call = cap.model_call()
    if call is not None:
        m = call.module
        params = list(m.parameters())
        from trainlint.runtime.probes import unwrap

        m = unwrap(m)
        out["model"] = {"class": type(m).__name__, "name": cap.name_of(call.module) or cap.name_of(m) or None,
                        "parameters": int(sum(p.numel() for p in params)),
                        "device": str(params[0].device) if params else "cpu"}
    opt = cap.optimizer()
    if opt is not None:
        out["optimizer"] = {"class": type(opt).__name__, "name": cap.name_of(opt) or None,
                            "lr": [float(g.get("lr", 0)) for g in opt.param_groups]}
    sched = cap.scheduler()
    if sched is not None:
        out["scheduler"] = {"class": type(sched).__name__, "name": cap.name_of(sched) or None}
    train = cap.train_loader()
    out["loaders"] = [{"name": cap.name_of(dl) or None, "dataset": type(getattr(dl, "dataset", None)).__name__,
                       "train": dl is train} for dl in cap.loaders]
    last = cap.steps[-1].loss if cap.steps and cap.steps[-1].loss else None
    if last is not None:
        out["loss"] = {"top": last.top, "kind": last.kind, "node": last.loss_node, "chain": last.chain[:6],
                       "module": next((type(c.module).__name__ for c in cap.steps[-1].calls
                                       if type(c.module).__name__.endswith("Loss")), None)}
    out["seed_calls"] = cap.seed_calls[:20]
    out["clip_grad_calls"] = cap.clip_calls
    out["epochs"] = cap.int_vars.get("epochs")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, target = parse(argv)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(exc.code if isinstance(exc.code, str) else "", file=sys.stderr)
        return SHIM_USAGE
    t0 = time.perf_counter()
    rank, world = _rank()
    if rank > 0:  # under torchrun: rank 0 probes and reports; the others stop after N steps
        args.out = f"{args.out}.rank{rank}"
    result: Dict[str, Any] = {"version": 1, "target": target, "steps_requested": args.steps, "cwd": os.getcwd(),
                              "rank": rank, "world_size": world}

    def write(status: str, code: int) -> int:
        result["status"] = status
        result["seconds"] = round(time.perf_counter() - t0, 3)
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(_clean(result), fh, indent=2, default=_jsonable)
        os.replace(tmp, args.out)
        return code

    try:
        import torch
    except ImportError:
        result["message"] = "torch is not installed: pip install 'trainlint[runtime]'"
        return write("internal-error", SHIM_INTERNAL)
    from trainlint.runtime.capture import Capture, Hooks

    # (the script's own thread settings are kept: torch's defaults, or whatever the script sets)
    script = None if target[0] == "-m" else os.path.abspath(target[0])
    if script is not None and not os.path.isfile(script):
        result["message"] = f"no such script: {target[0]}"
        return write("usage-error", SHIM_USAGE)
    roots = sorted({os.path.realpath(os.getcwd())} | ({os.path.dirname(os.path.realpath(script))} if script else set()))
    cap = Capture(max_steps=max(1, args.steps), user_roots=roots)

    def progress(steps: int, phase: str = "script") -> None:
        try:
            with open(args.out + ".progress", "w", encoding="utf-8") as fh:
                json.dump({"steps": steps, "phase": phase}, fh)
        except OSError:
            pass

    cap.on_step = progress
    progress(0)
    hooks = Hooks(cap, losses_only=args.losses_only)
    hooks.install()
    _count_children()
    _watch_exit(result, args, cap, t0)
    try:
        outcome = run_target(target, cap)
        if outcome["outcome"] != "stopped":
            hooks.finish()
    finally:
        hooks.remove()
        _unwatch_exit()
    t_run = time.perf_counter() - t0
    sys.stdout.flush()
    result["outcome"] = outcome["outcome"]
    result["steps_seen"] = len(cap.steps)
    result["losses"] = [s.loss.value if s.loss else None for s in cap.steps]
    # One training step's wall time (median gap between watched optimizer steps; the first step, which
    # includes warm-up, only counts when it is the only one): the unit of benchmarks/probe_cost.py.
    gaps = sorted(b - a for a, b in zip(cap.step_times, cap.step_times[1:]))
    result["step_seconds"] = round(gaps[len(gaps) // 2], 6) if gaps else None
    result["lrs"] = [s.lr for s in cap.steps]
    result["user_files"] = _user_files(roots, script)
    result["run_seconds"] = round(t_run, 3)
    if outcome["outcome"] == "crash":
        result["traceback"] = outcome["traceback"]
        result["message"] = outcome["message"]
        return write("crash", SHIM_CRASH)
    if not cap.steps:
        result["message"] = ("the script ended without a single optimizer step: nothing trains (no optimizer.step() "
                             "was called)")
        if _CHILDREN[0]:
            result["message"] = (f"no training step ran in the script's own process; it started {_CHILDREN[0]} "
                                 f"multiprocessing child process(es), where the training may run (Hogwild): "
                                 f"trainlint run watches the main process only")
        return write("no-training", SHIM_NO_TRAINING)
    if args.losses_only or rank > 0:
        return write("ok", SHIM_OK)
    if outcome["outcome"] == "finished":
        result["message"] = f"the script finished after {len(cap.steps)} of the {args.steps} steps asked for"
    progress(len(cap.steps), "probes")
    try:
        from trainlint.runtime.probes import probe_threads

        result["captured"] = describe(cap)
        with probe_threads():
            result["probes"] = run_probes(cap, args, target, t_run)
    except Exception as exc:  # the shim's own bug: say so
        result["message"] = f"internal error: {type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        return write("internal-error", SHIM_INTERNAL)
    return write("ok", SHIM_OK)


_CHILDREN = [0]


def _count_children() -> None:
    """Count multiprocessing children (a Hogwild script trains in them, out of the hooks' sight)."""
    try:
        import multiprocessing.process as mpp

        orig = mpp.BaseProcess.start

        def start(self, *a, **k):
            _CHILDREN[0] += 1
            return orig(self, *a, **k)

        mpp.BaseProcess.start = start
    except Exception:
        pass


_REAL_EXIT = os._exit


def _watch_exit(result: Dict[str, Any], args: Any, cap: Any, t0: float) -> None:
    """A script that ends the process itself (``os._exit``) leaves a result that says so."""
    pid = os.getpid()

    def _exit(code: int = 0) -> None:
        if os.getpid() == pid:  # (a forked child's own exit is its business)
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                result["status"] = "exited"
                result["steps_seen"] = len(cap.steps)
                result["message"] = (f"the script ended its process itself with os._exit({code}) after "
                                     f"{len(cap.steps)} of the {args.steps} training steps asked for")
                result["seconds"] = round(time.perf_counter() - t0, 3)
                with open(args.out + ".tmp", "w", encoding="utf-8") as fh:
                    json.dump(_clean(result), fh, default=_jsonable)
                os.replace(args.out + ".tmp", args.out)
            except Exception:
                pass
        _REAL_EXIT(code)

    os._exit = _exit


def _unwatch_exit() -> None:
    os._exit = _REAL_EXIT


def _rank():
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def _leave_process_group() -> None:
    """Rank 0 probes alone: without a process group, SyncBatchNorm and friends compute locally."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass


def run_probes(cap: Any, args: Any, target: List[str], run_seconds: float = 0.0) -> List[Dict[str, Any]]:
    from trainlint.runtime.probes import ProbeContext, ProbeResult, registry

    reg = registry()
    wanted = [n for n in PROBE_NAMES if not args.probe or n in args.probe]
    rank, world = _rank()
    if world > 1:
        _leave_process_group()
    ctx = ProbeContext(argv=list(target), cwd=os.getcwd(), device=args.device, env=dict(os.environ),
                       run_seconds=run_seconds, world_size=world, started=_STARTED)
    out = []
    total = max(1.0, args.budget_total) if getattr(args, "budget_total", None) else None
    start = time.perf_counter()
    weights = {n: PROBE_WEIGHTS.get(n, 1.0) for n in wanted}
    # determinism's fresh run (a second process) runs while the other probes work in this one
    pending = None
    if "determinism" in wanted and reg.get("determinism") is not None:
        det = reg["determinism"]()
        t = time.perf_counter()
        try:
            pending = det.start(cap, max(args.budget, 2.0 * run_seconds + 5.0), ctx)
        except Exception as exc:
            pending = ProbeResult("determinism", "skipped", f"the probe failed: {type(exc).__name__}: {exc}")
        start_cost = time.perf_counter() - t
    for k, name in enumerate(wanted):
        if name == "determinism" and pending is not None:
            out.append(None)  # its place in the order; finished after the others
            continue
        t = time.perf_counter()
        budget = args.budget
        if total is not None:  # the probes share one total: each its weighted share of what is left
            left = max(0.5, total - (t - start))
            share = weights[name] / max(1e-9, sum(weights[n] for n in wanted[k:]))
            budget = max(0.5, min(args.budget, left * share))
        cls = reg.get(name)
        if cls is None:
            res = ProbeResult(name, "skipped", "not implemented yet")
        else:
            bound = budget * 2 + 10  # a probe stuck inside one long call is stopped here
            try:
                with _time_bound(bound):
                    res = cls().run(cap, budget, ctx)
            except ProbeTimeout:
                res = ProbeResult(name, "skipped", f"the probe ran past its {bound:.0f} s bound and was stopped")
            except Exception as exc:
                res = ProbeResult(name, "skipped", f"the probe failed: {type(exc).__name__}: {exc}",
                                  metrics={"traceback": traceback.format_exc(limit=-3)})
        res.seconds = time.perf_counter() - t
        out.append(res.to_dict())
    if pending is not None:
        t = time.perf_counter()
        if isinstance(pending, ProbeResult):
            res = pending
        else:
            try:
                with _time_bound(max(5.0, pending["deadline"] - time.monotonic()) + 30):
                    res = det.finish(pending)
            except ProbeTimeout:
                res = ProbeResult("determinism", "skipped", "the fresh run could not be ended in time")
            except Exception as exc:
                res = ProbeResult("determinism", "skipped", f"the probe failed: {type(exc).__name__}: {exc}")
        res.seconds = start_cost + (time.perf_counter() - t)  # (the wait beyond the other probes)
        out[out.index(None)] = res.to_dict()
    return out


#: Shares of the total probe time (the probes that train a copy need more than those that look once).
PROBE_WEIGHTS = {"overfit-one-batch": 4.0, "input-independent-baseline": 3.0, "determinism": 0.0,
                 "batch-independence": 1.5}


class ProbeTimeout(BaseException):
    pass


class _time_bound:
    """SIGALRM-based bound on one probe (main thread, POSIX); a no-op elsewhere."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = False

    def __enter__(self):
        import signal
        import threading

        if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
            def fire(signum, frame):
                raise ProbeTimeout()

            self.prev = signal.signal(signal.SIGALRM, fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self.armed = True
        return self

    def __exit__(self, *exc):
        import signal

        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.prev)
        return False


def _clean(obj: Any) -> Any:
    """NaN and infinities become null: the result is strict JSON."""
    import math

    if isinstance(obj, float):
        return None if (math.isnan(obj) or math.isinf(obj)) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    try:
        import math

        if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
            return None
    except Exception:
        pass
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


if __name__ == "__main__":
    _code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # the result is written: do not wait for threads or DataLoader workers the stopped script left behind
    os._exit(_code)
