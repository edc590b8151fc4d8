"""``python -m trainlint.runtime.shim [--steps N] --out FILE -- train.py ARGS`` (or ``-- -m pkg.train ARGS``).

Runs the user's unchanged script with the global hooks of :mod:`trainlint.runtime.capture` installed,
stops it after N optimizer steps, runs the probes and writes the result as JSON to ``--out``. The user's
own output goes to this process's stdout/stderr (the CLI decides whether to show it).

Exit codes: 0 probed, 2 usage, 3 the script crashed before N steps, 4 it never trained, 5 internal error.
"""

from __future__ import annotations

import argparse
import json
import math
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
    p.add_argument("--deadline", type=float, default=None,
                   help="time.time() by which the result must be written (trainlint run's --timeout): the probes "
                        "shrink their budgets to end before it")
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
        import torch  # noqa: F401  (is it installed?)
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
        progress_file(args.out, steps, phase)

    def on_step(steps: int) -> None:
        if not _claim(args.out):  # another process of the run (Hogwild: a child) is watched
            cap.off = True
            return
        progress(steps)

    cap.on_step = on_step
    progress(0)
    if args.losses_only:  # a fresh run of the determinism probe: every file it changes is put back afterwards
        from trainlint.runtime import journal

        journal.install(skip=[os.path.dirname(os.path.abspath(args.out))])
    hooks = Hooks(cap, losses_only=args.losses_only)
    hooks.install()
    _count_children(args.out)
    _watch_children(cap, hooks, args, target, roots)
    _watch_exit(result, args, cap, t0)
    try:
        outcome = run_target(target, cap)
        if outcome["outcome"] != "stopped" and not cap.off:
            hooks.finish()
    finally:
        hooks.remove()
        _unwatch_exit()
    t_run = time.perf_counter() - t0
    sys.stdout.flush()
    result["outcome"] = outcome["outcome"]
    result["user_files"] = _user_files(roots, script)
    if outcome["outcome"] == "crash":
        _observed(result, cap, t_run)
        result["traceback"] = outcome["traceback"]
        result["message"] = outcome["message"]
        return write("crash", SHIM_CRASH)
    if not cap.steps:
        child = _child_result(args.out)
        if child is not None:  # the training ran (and was watched) in a multiprocessing child
            for k in ("steps_seen", "losses", "step_seconds", "lrs", "run_seconds", "captured", "probes", "child"):
                if k in child:
                    result[k] = child[k]
            result["message"] = child.get("message", "")
            return write(child.get("status", "ok"), SHIM_OK if child.get("status", "ok") == "ok" else SHIM_INTERNAL)
        _observed(result, cap, t_run)
        result["message"] = ("the script ended without a single optimizer step: nothing trains (no optimizer.step() "
                             "was called)")
        if _CHILDREN[0]:
            result["message"] = (f"no training step ran in the script's own process nor in the "
                                 f"{_CHILDREN[0]} multiprocessing child process(es) it started")
        return write("no-training", SHIM_NO_TRAINING)
    _observed(result, cap, t_run)
    if args.losses_only or rank > 0:
        return write("ok", SHIM_OK)
    if outcome["outcome"] == "finished":
        result["message"] = f"the script finished after {len(cap.steps)} of the {args.steps} steps asked for"
    progress(len(cap.steps), "probes")
    try:
        _probe_into(result, cap, args, target, t_run)
    except Exception as exc:  # the shim's own bug: say so
        result["message"] = f"internal error: {type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        return write("internal-error", SHIM_INTERNAL)
    return write("ok", SHIM_OK)


def _observed(result: Dict[str, Any], cap: Any, t_run: float) -> None:
    """What the watched steps were: their losses, LRs and wall time."""
    result["steps_seen"] = len(cap.steps)
    result["losses"] = [s.loss.value if s.loss else None for s in cap.steps]
    # One training step's wall time (median gap between watched optimizer steps; the first step, which
    # includes warm-up, only counts when it is the only one): the unit of benchmarks/probe_cost.py.
    gaps = sorted(b - a for a, b in zip(cap.step_times, cap.step_times[1:]))
    result["step_seconds"] = round(gaps[len(gaps) // 2], 6) if gaps else None
    result["lrs"] = [s.lr for s in cap.steps]
    result["run_seconds"] = round(t_run, 3)


def _probe_into(result: Dict[str, Any], cap: Any, args: Any, target: List[str], t_run: float) -> None:
    from trainlint.runtime.probes import probe_threads

    result["captured"] = describe(cap)
    with probe_threads():
        result["probes"] = run_probes(cap, args, target, t_run)


# -- training in multiprocessing children (Hogwild) --------------------------------------------------------
#
# The first process of the run that takes a training step is the watched one (it claims ``OUT.claim``): the
# script's own process, or a child it started with multiprocessing (fork: the child inherits the hooks; spawn /
# torch.multiprocessing: the child's command line installs them, see trainlint.runtime.child). A watched child
# stops its own training after N steps, runs the probes there (on copies; its siblings go on training) and
# writes ``OUT.child``, which the script's process reports as its result when it saw no step itself.

_CLAIMED = [0]  # the pid that holds the claim in this process (0: none)
_OWNER = [os.getpid()]


def _claim(out: str) -> bool:
    """Whether this process is the watched one (the first call of each process decides). A fresh run of the
    determinism probe (``TRAINLINT_WATCH_NAME``) watches the process of the same multiprocessing name as the
    watched run did, not whichever steps first."""
    me = os.getpid()
    if _CLAIMED[0] == me:
        return True
    if _CLAIMED[0] == -me:
        return False
    want = os.environ.get("TRAINLINT_WATCH_NAME")
    if want:
        import multiprocessing

        if multiprocessing.current_process().name != want:
            _CLAIMED[0] = -me
            return False
    try:
        fd = os.open(out + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        _CLAIMED[0] = -me
        try:  # another process of the run trains too (Hogwild): the watched one's probes want to know
            with open(out + ".others", "a", encoding="utf-8") as fh:
                fh.write(f"{me}\n")
        except OSError:
            pass
        return False
    except OSError:
        return me == _OWNER[0]  # no claim file possible: the script's own process watches
    with os.fdopen(fd, "w") as fh:
        fh.write(str(me))
    _CLAIMED[0] = me
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:  # a zombie (ended, not yet collected) is not alive
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _child_result(out: str) -> Optional[Dict[str, Any]]:
    """The watched child's result; waits while the child that claimed the watch still runs its probes."""
    try:
        with open(out + ".claim", encoding="utf-8") as fh:
            pid = int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    while True:
        try:
            with open(out + ".child", encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            pass
        if not pid or not _pid_alive(pid):
            try:  # (written just before it ended)
                with open(out + ".child", encoding="utf-8") as fh:
                    return json.load(fh)
            except (OSError, ValueError):
                return None
        time.sleep(0.1)


def child_config(args: Any, target: List[str], roots: List[str]) -> Dict[str, Any]:
    return {"steps": args.steps, "out": args.out, "device": args.device, "probe": list(args.probe),
            "budget": args.budget, "budget_total": args.budget_total, "losses_only": args.losses_only,
            "deadline": args.deadline,
            "target": list(target), "roots": roots, "cwd": os.getcwd(), "started": _STARTED,
            "owner": _OWNER[0]}


def _watch_children(cap: Any, hooks: Any, args: Any, target: List[str], roots: List[str]) -> None:
    """Spawned children get the hooks through their command line; forked ones inherit them. Both report."""
    cfg = child_config(args, target, roots)
    os.environ["TRAINLINT_SHIM_CONFIG"] = json.dumps(cfg)
    try:
        import multiprocessing.spawn as sp

        orig = sp.get_command_line

        def get_command_line(**kwds):
            cmd = orig(**kwds)
            try:
                i = cmd.index("-c")
                cmd[i + 1] = "import trainlint.runtime.child as _tl; _tl.install(); " + cmd[i + 1]
            except (ValueError, IndexError):
                pass
            return cmd

        sp.get_command_line = get_command_line
    except Exception:
        pass
    patch_process_run(cap, hooks, cfg)


def patch_process_run(cap: Any, hooks: Any, cfg: Dict[str, Any]) -> None:
    """``multiprocessing.Process.run`` of a child: when the child is the watched one and reaches N steps, it
    runs the probes and writes its result instead of dying of StopTraining."""
    import multiprocessing.process as mpp

    from trainlint.runtime.capture import StopTraining

    orig = mpp.BaseProcess.run
    if getattr(orig, "_trainlint", False):
        return

    def run(self):
        if os.getpid() == cfg["owner"]:  # (called directly in the script's process)
            return orig(self)
        if _CLAIMED[0] != os.getpid():
            cap.reset()  # a forked child counts its own steps
        t0 = time.perf_counter()
        try:
            return orig(self)
        except StopTraining as exc:
            child_report(cap, hooks, cfg, exc, time.perf_counter() - t0)
            return None

    run._trainlint = True
    mpp.BaseProcess.run = run


def _trainers(out: str) -> int:
    """Non-daemon multiprocessing children the run started (see _count_children)."""
    try:
        with open(out + ".trainers", encoding="utf-8") as fh:
            return len(fh.read().split())
    except OSError:
        return 0


def child_report(cap: Any, hooks: Any, cfg: Dict[str, Any], exc: BaseException, t_run: float) -> None:
    """In the watched child, after its N steps: the probes, into OUT.child."""
    from trainlint.runtime.capture import harvest_names

    harvest_names(exc.__traceback__, cap)
    hooks.remove()
    sys.stdout.flush()
    import multiprocessing

    me = multiprocessing.current_process()
    result: Dict[str, Any] = {"child": {"pid": os.getpid(), "name": me.name}}
    _observed(result, cap, t_run)
    status = "ok"
    result["message"] = (f"the training ran in the multiprocessing child process {me.name} (pid {os.getpid()}): "
                         f"trainlint watched its first {len(cap.steps)} steps and probed there")
    if not cfg.get("losses_only"):
        args = argparse.Namespace(steps=cfg["steps"], out=cfg["out"], device=cfg["device"], probe=cfg["probe"],
                                  budget=cfg["budget"], budget_total=cfg["budget_total"], losses_only=False,
                                  deadline=cfg.get("deadline"),
                                  child=True, process_name=me.name,
                                  concurrent=os.path.exists(cfg["out"] + ".others") or _trainers(cfg["out"]) > 1)
        global _STARTED
        _STARTED = cfg.get("started", _STARTED)
        try:
            here = os.getcwd()
            os.chdir(cfg["cwd"])
            try:
                _probe_into(result, cap, args, cfg["target"], max(t_run, time.time() - _STARTED))
            finally:
                os.chdir(here)
        except Exception as e:
            status = "internal-error"
            result["message"] = f"internal error in the watched child: {type(e).__name__}: {e}"
            result["traceback"] = traceback.format_exc()
    result["status"] = status
    tmp = cfg["out"] + f".child.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_clean(result), fh, indent=2, default=_jsonable)
    os.replace(tmp, cfg["out"] + ".child")


def progress_file(out: str, steps: int, phase: str = "script") -> None:
    """How far the watched process got (read by trainlint run when the run times out)."""
    try:
        with open(out + ".progress", "w", encoding="utf-8") as fh:
            json.dump({"steps": steps, "phase": phase}, fh)
    except OSError:
        pass


_CHILDREN = [0]


def _count_children(out: Optional[str] = None) -> None:
    """Count multiprocessing children (a Hogwild script trains in them); the non-daemon ones (trainers, not
    DataLoader workers) are listed in OUT.trainers: a watched child with a sibling may share its parameters."""
    try:
        import multiprocessing.process as mpp

        orig = mpp.BaseProcess.start

        def start(self, *a, **k):
            _CHILDREN[0] += 1
            if out and not getattr(self, "daemon", False):
                try:
                    with open(out + ".trainers", "a", encoding="utf-8") as fh:
                        fh.write(f"{os.getpid()}\n")
                except OSError:
                    pass
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
    from trainlint.runtime.probes import Budget, ProbeContext, ProbeResult, registry

    reg = registry()
    wanted = [n for n in PROBE_NAMES if not args.probe or n in args.probe]
    rank, world = _rank()
    if world > 1:
        _leave_process_group()
    ctx = ProbeContext(argv=list(target), cwd=os.getcwd(), device=args.device, env=dict(os.environ),
                       run_seconds=run_seconds, world_size=world, started=_STARTED,
                       in_child=bool(getattr(args, "child", False)),
                       process_name=getattr(args, "process_name", None),
                       concurrent=bool(getattr(args, "concurrent", False)))
    out = []
    total = max(1.0, args.budget_total) if getattr(args, "budget_total", None) else None
    start = time.perf_counter()
    weights = {n: PROBE_WEIGHTS.get(n, 1.0) for n in wanted}
    # determinism's fresh run (a second process) runs while the other probes work in this one
    pending = None
    deadline = getattr(args, "deadline", None)

    def wall_left() -> float:
        return (deadline - time.time() - DEADLINE_RESERVE) if deadline else math.inf

    if "determinism" in wanted and reg.get("determinism") is not None:
        det = reg["determinism"]()
        t = time.perf_counter()
        try:
            # the fresh run stops at its last loss: about as long as the watched run's steps, twice that on a
            # machine it shares with the other probes; never past trainlint run's --timeout
            pending = det.start(cap, max(1.0, min(max(args.budget, 2.0 * run_seconds + 5.0), wall_left())), ctx)
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
        if deadline:  # what is left before --timeout, shared by the probes still to run (in wall time)
            share = weights[name] / max(1e-9, sum(weights[n] for n in wanted[k:]))
            budget = max(0.2, min(budget, wall_left() * share / Budget.WALL_FACTOR))
        cls = reg.get(name)
        if cls is None:
            res = ProbeResult(name, "skipped", "not implemented yet")
        else:
            bound = budget * 2 + 10  # a probe stuck inside one long call is stopped here
            if deadline:
                bound = max(1.0, min(bound, wall_left() * max(0.25, weights[name] / max(
                    1e-9, sum(weights[n] for n in wanted[k:])))))
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
                with _time_bound(max(5.0, min(pending["deadline"] - time.monotonic() + 30, wall_left() + 2))):
                    res = det.finish(pending)
            except ProbeTimeout:
                res = ProbeResult("determinism", "skipped", "the fresh run could not be ended in time")
            except Exception as exc:
                res = ProbeResult("determinism", "skipped", f"the probe failed: {type(exc).__name__}: {exc}")
        res.seconds = start_cost + (time.perf_counter() - t)  # (the wait beyond the other probes)
        out[out.index(None)] = res.to_dict()
    return out


#: Seconds kept before --deadline for the determinism probe's clean-up and the result.
DEADLINE_RESERVE = 4.0
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
