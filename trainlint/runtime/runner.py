"""``trainlint run``: launch the shim in a subprocess, merge its probes with the static findings, report.

Standard library only (and trainlint's static modules): torch is imported by the shim's process alone.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from trainlint.runtime import PROBE_CODES, PROBE_NAMES, SYMPTOM_PROBES, SHIM_CRASH, SHIM_NO_TRAINING, SHIM_USAGE

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2
#: Probes whose problem follows from dead units (a dead ReLU passes no gradient, so the layers before it do not
#: learn): reported inside the dead-units finding when that probe found a problem.
DEAD_UNIT_CONSEQUENCES = ("gradient-health", "overfit-one-batch", "input-independent-baseline")


class RunError(Exception):
    """A usage error, a crash or a hang: exit code 2 with this message (and the script's traceback)."""

    def __init__(self, message: str, traceback: str = "", output: str = ""):
        super().__init__(message)
        self.message = message
        self.traceback = traceback
        self.output = output
        self.json_text = ""  # the JSON document --output-format json prints for it


@dataclass
class RunOptions:
    command: List[str]
    steps: int = 3
    timeout: float = 300.0
    device: str = "auto"
    probes: List[str] = field(default_factory=list)
    budget: float = 20.0
    show_output: bool = False
    budget_total: Optional[float] = 20.0  # seconds for all the probes together (None: budget each)
    #: Become the child subreaper of the script's orphans (Linux) and reap them: for the CLI process, not for a
    #: host process (a test runner) that has children of its own.
    subreaper: bool = False


#: torchrun options that take no value (every other option takes one, as --opt=V or --opt V).
TORCHRUN_FLAGS = {"--standalone", "--run-path", "--run_path", "--virtual-local-rank", "--virtual_local_rank"}


def split_torchrun(args: List[str]) -> Tuple[List[str], List[str]]:
    """``--nproc-per-node=2 train.py ARGS`` -> (launcher options, shim target)."""
    launcher: List[str] = []
    module = False
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a in ("-m", "--module"):
            module = True
            i += 1
            continue
        if a in ("--no-python", "--no_python"):
            raise RunError("torchrun --no-python is not supported: the shim needs a Python script")
        launcher.append(a)
        if "=" not in a and a not in TORCHRUN_FLAGS:
            if i + 1 >= len(args):
                raise RunError(f"torchrun option {a} needs a value")
            launcher.append(args[i + 1])
            i += 2
        else:
            i += 1
    rest = args[i:]
    if not rest:
        raise RunError("no script after torchrun's options")
    if module:
        return launcher, ["-m"] + rest
    if not os.path.isfile(rest[0]):
        raise RunError(f"no such script: {rest[0]}")
    return launcher, rest


def torchrun_parts(command: List[str]) -> Optional[Tuple[List[str], List[str]]]:
    """(launcher options, target) when ``command`` is a torchrun launch, else None."""
    if not command:
        return None
    exe = os.path.basename(command[0])
    if exe == "torchrun":
        return split_torchrun(command[1:])
    if (exe.startswith("python") or command[0] == sys.executable) and command[1:3] == ["-m", "torch.distributed.run"]:
        return split_torchrun(command[3:])
    return None


def shim_target(command: List[str]) -> List[str]:
    """``python train.py ARGS`` -> ``["train.py", ARGS...]``; ``python -m pkg.train`` -> ``["-m", "pkg.train", ...]``."""
    if not command:
        raise RunError("give the command to run after --, e.g. trainlint run -- python train.py")
    exe = os.path.basename(command[0])
    parts = torchrun_parts(command)
    if parts is not None:
        return parts[1]
    if exe.startswith("python") or command[0] == sys.executable:
        rest = command[1:]
    elif exe.endswith(".py"):
        rest = command
    else:
        raise RunError(f"cannot run {command[0]!r}: give `-- python train.py ARGS` or `-- python -m pkg.train ARGS`")
    while rest and rest[0] in ("-u", "-B", "-O", "-OO"):  # interpreter flags that change nothing we watch
        rest = rest[1:]
    if not rest:
        raise RunError("no script after python")
    if rest[0] == "-m":
        if len(rest) < 2:
            raise RunError("-m needs a module name")
        return rest
    if rest[0].startswith("-"):
        raise RunError(f"unsupported python option {rest[0]!r}")
    if not os.path.isfile(rest[0]):
        raise RunError(f"no such script: {rest[0]}")
    return rest


def launch(opts: RunOptions) -> Tuple[Dict[str, Any], str]:
    """Run the shim; returns (its result, the script's captured output)."""
    import shutil

    target = shim_target(opts.command)
    parts = torchrun_parts(opts.command)
    tmp = tempfile.mkdtemp(prefix="trainlint-run-")
    try:
        return _launch(opts, target, parts, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _Forward:
    """While the shim runs: SIGTERM, SIGHUP and SIGINT (Ctrl-C) to trainlint raise Interrupted in the waiting
    main thread, which ends the script's processes and cleans up."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))

    def __enter__(self):
        import threading

        self.prev = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                try:
                    self.prev[sig] = signal.signal(sig, self._raise)
                except (OSError, ValueError):
                    pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise Interrupted(signum)

    @classmethod
    def hold(cls) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in cls.SIGNALS:
                try:
                    signal.signal(sig, signal.SIG_IGN)
                except (OSError, ValueError):
                    pass

    def __exit__(self, *exc):
        for sig, h in self.prev.items():
            try:
                signal.signal(sig, h)
            except (OSError, ValueError):
                pass
        return False


def _marked(var: str, value: str) -> List[int]:
    """Processes whose environment carries var=value (Linux /proc; elsewhere none)."""
    if not os.path.isdir("/proc"):
        return []
    needle = f"{var}={value}".encode()
    me = os.getpid()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    with open(f"/proc/{pid}/stat", "rb") as st:
                        if st.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                            continue  # a zombie: already ended
                    out.append(int(pid))
        except (OSError, IndexError):
            continue
    return out


def end_processes(proc: subprocess.Popen, run_id: str, sig: int = signal.SIGKILL, grace: float = 0.0,
                  reap: bool = False, var: str = "TRAINLINT_RUN_ID") -> None:
    """End the shim, its process group and every process that inherited the run's marker (``var=run_id`` in
    its environment): DataLoader workers, multiprocessing children, children in sessions of their own
    (``start_new_session=True``), torchrun ranks. (The determinism probe ends its fresh run so too.)"""
    if grace and proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
    proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the rest of its process group
    except OSError:
        pass
    deadline = time.monotonic() + 5.0
    while True:
        pids = _marked(var, run_id) + (_orphans() if reap else [])
        if not pids or time.monotonic() > deadline:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if reap:
            _reap()
        time.sleep(0.05)
    if reap:
        _reap()


def _orphans() -> List[int]:
    """Processes reparented to this (subreaper) process: the script's orphans, whatever their environment."""
    if not os.path.isdir("/proc"):
        return []
    me = str(os.getpid()).encode()
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[-1].split()
            if fields[1] == me and fields[0] != b"Z":
                out.append(int(pid))
        except (OSError, IndexError):
            continue
    return out


def _reap() -> None:
    """Collect children reparented to this process (it is their subreaper) so that none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except (ChildProcessError, OSError):
            return
        if pid == 0:
            return


def _subreaper() -> None:
    """Linux: orphans of the script's processes are reparented to trainlint, not to init (so none escapes)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def _progress(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _launch(opts: RunOptions, target: List[str], parts: Any, tmp: str) -> Tuple[Dict[str, Any], str]:
    import uuid

    out = os.path.join(tmp, "result.json")
    log = os.path.join(tmp, "output.txt")
    shim = ["-m", "trainlint.runtime.shim", "--steps", str(opts.steps), "--out", out,
            "--device", opts.device, "--budget", str(opts.budget)]
    if opts.budget_total:
        shim += ["--budget-total", str(opts.budget_total)]
    # the probes end before --timeout (what the watched steps left of it), with time to write the result
    shim += ["--deadline", f"{time.time() + opts.timeout - 3.0:.3f}"]
    for p in opts.probes:
        shim += ["--probe", p]
    shim += ["--"] + target
    if parts is not None:  # every rank runs under the shim; rank 0 probes, the others stop after N steps
        cmd = [sys.executable, "-m", "torch.distributed.run", *parts[0], *shim]
    else:
        cmd = [sys.executable, *shim]
    run_id = uuid.uuid4().hex
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["TRAINLINT_RUN"] = "1"
    env["TRAINLINT_RUN_ID"] = run_id
    env["TRAINLINT_TMP"] = tmp
    if opts.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if opts.subreaper:
        _subreaper()
    with open(log, "wb") as fh, _Forward():
        stdout = None if opts.show_output else fh
        proc = None
        try:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT if not opts.show_output else None,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            try:
                code = proc.wait(timeout=opts.timeout)
            except subprocess.TimeoutExpired:
                end_processes(proc, run_id, reap=opts.subreaper)
                prog = _progress(out + ".progress")
                seen = prog.get("steps", 0)
                head = f"the script did not reach {opts.steps} training steps and its probes within {opts.timeout:g} s"
                if prog.get("phase") == "probes":
                    what = f"{head}: the {seen} steps were watched, the probes did not finish (raise --timeout)"
                elif seen:
                    what = (f"{head}: it took {seen} of them; its steps are slow, or it hangs (raise --timeout, or "
                            f"lower --steps)")
                else:
                    what = (f"{head}: no training step was seen; the script hangs, waits for input, is still loading, "
                            f"or trains in child processes the shim does not watch (a hang, or raise --timeout)")
                raise RunError(what, output=_read(log))
            end_processes(proc, run_id, grace=0.0, reap=opts.subreaper)
        except Interrupted as exc:
            _Forward.hold()  # a second Ctrl-C during the clean-up does not cut it short
            if proc is not None:
                end_processes(proc, run_id, sig=exc.signum, grace=2.0, reap=opts.subreaper)
            raise RunError(f"interrupted by {_signal_name(exc.signum)}: the script and its processes were ended",
                           output=_read(log))
        except KeyboardInterrupt:
            _Forward.hold()
            if proc is not None:
                end_processes(proc, run_id, sig=signal.SIGINT, grace=2.0, reap=opts.subreaper)
            raise RunError("interrupted by SIGINT: the script and its processes were ended", output=_read(log))
    output = _read(log)
    result: Dict[str, Any] = {}
    if os.path.exists(out):
        try:
            with open(out, encoding="utf-8") as fh:
                result = json.load(fh)
        except ValueError:
            result = {}
    status = result.get("status")  # (under torchrun the exit code is the launcher's: trust the result file)
    if code == SHIM_CRASH or status == "crash":
        raise RunError(f"the script crashed before {opts.steps} training steps: {result.get('message', '')}",
                       traceback=result.get("traceback", ""), output=output)
    if code == SHIM_NO_TRAINING or status == "no-training":
        raise RunError(result.get("message", "the script never trained"), output=output)
    if code == SHIM_USAGE or status == "usage-error":
        raise RunError(result.get("message") or output.strip() or "usage error", output=output)
    if status == "exited":
        raise RunError(result.get("message") or "the script ended its process itself", output=output)
    if not result:
        if code is not None and code < 0:
            why = f"the script's process was killed by {_signal_name(-code)}"
        else:
            why = f"the script's process ended with status {code} without a result"
        raise RunError(f"{why} before {opts.steps} training steps (it may call os._exit or be killed by the "
                       f"system, e.g. out of memory)", output=output)
    if status != "ok" or (code != 0 and parts is None):
        raise RunError(f"the shim failed (exit {code}): {result.get('message', '')}",
                       traceback=result.get("traceback", ""), output=output)
    return result, output


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


# -- static findings and the merge -------------------------------------------------------------------------

def _display(path: str) -> str:
    try:
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel
    except ValueError:
        return path


def static_report(files: List[str]):
    from trainlint.config import Selection, resolve_config
    from trainlint.engine import Options, lint_paths
    from trainlint.rules import registry

    all_codes = list(registry())
    paths = [_display(f) for f in files if os.path.isfile(f)]
    if not paths:
        return None
    config = resolve_config(None, paths, all_codes, False)
    config.layers.append(Selection())
    options = Options(config=config, enabled=config.enabled_codes(all_codes))
    report, _ = lint_paths(paths, options)
    return report


def merge(report: Any, probes: List[Dict[str, Any]], script: Optional[str]) -> None:
    """Mark each static finding with its probe's verdict; add findings that only a probe found."""
    from trainlint.findings import Finding, Span
    from trainlint.rules import registry

    reg = registry()
    by_name = {p["name"]: p for p in probes}
    seen_codes = set()
    for f in report.findings:
        cls = reg.get(f.code)
        name = getattr(cls, "probe", None) if cls else None
        p = by_name.get(name) if name else None
        if p is None or p["verdict"] == "skipped" or f.code not in p.get("confirms", {}):
            status = "not-probed"
        elif p["confirms"][f.code]:
            status = "confirmed"
        else:
            status = "not-confirmed"
        ev = _evidence(p) if p is not None else {}
        if p is not None and status == "not-probed":
            ev = {"reason": p["reason"]}
        f.extra["runtime"] = {"status": status, "probe": name, "evidence": ev}
        seen_codes.add(f.code)
    # one dead ReLU layer also blocks gradients, overfitting and learning from the input: one finding (TL505)
    # that names those consequences, not four alarms
    consequences: Dict[str, str] = {}
    if any(p["name"] == "dead-units" and p["verdict"] == "problem" for p in probes):
        for p in probes:
            if p["verdict"] == "problem" and p["name"] in DEAD_UNIT_CONSEQUENCES:
                consequences[p["name"]] = p.get("evidence") or p["reason"]
    for p in probes:
        if p["verdict"] != "problem":
            continue
        if p["name"] in consequences:
            continue  # said in the dead-units finding
        if any(v and c in seen_codes for c, v in p.get("confirms", {}).items()):
            continue  # a static finding it confirms already says it
        if p["name"] in SYMPTOM_PROBES and any(f.extra.get("runtime", {}).get("status") == "confirmed"
                                               for f in report.findings):
            continue  # a confirmed static finding names the cause
        for code in p.get("found", []):
            if code in seen_codes or (code not in reg and code not in PROBE_CODES):
                continue
            if code in reg:
                name, severity = reg[code].name, reg[code].severity
            else:
                from trainlint.findings import Severity

                name, severity = PROBE_CODES[code][0], Severity.parse(PROBE_CODES[code][2])
            loc = p.get("location") or {}
            path = loc.get("path") or script or "?"
            line = int(loc.get("line") or 1)
            also = ""
            if p["name"] == "dead-units" and consequences:
                also = "; consequences: " + "; ".join(f"{k}: {v}" for k, v in consequences.items())
            finding = Finding(code=code, name=name, severity=severity,
                              message=f"{p['reason'][0].upper()}{p['reason'][1:]} (found at runtime by {p['name']}: "
                                      f"{p['evidence']}{also})",
                              path=_display(path), span=Span.point(line), hint=None)
            finding.extra["runtime"] = {"status": "confirmed", "probe": p["name"], "evidence": _evidence(p),
                                        "found_at_runtime": True}
            report.findings.append(finding)
            seen_codes.add(code)
    report.findings.sort(key=lambda f: f.sort_key())


def _evidence(p: Dict[str, Any]) -> Dict[str, Any]:
    return {"summary": p.get("evidence", ""), "verdict": p["verdict"], "reason": p["reason"],
            "metrics": p.get("metrics", {})}


def exit_code(report: Any, probes: List[Dict[str, Any]]) -> int:
    if any(p["verdict"] == "problem" for p in probes):
        return EXIT_PROBLEMS
    if report is not None and any(f.extra.get("runtime", {}).get("status") != "not-confirmed" for f in report.findings):
        return EXIT_PROBLEMS
    return EXIT_CLEAN


# -- output ------------------------------------------------------------------------------------------------

def probe_records(probes: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    from trainlint.runtime import probe_code_url

    keys = ("name", "verdict", "reason", "evidence", "metrics", "series", "confirms", "found", "seconds")
    out = []
    for p in probes:
        rec = {k: p.get(k) for k in keys}
        code = next((c for c, meta in PROBE_CODES.items() if meta[1] == p.get("name")), None)
        if code is not None:
            rec["code"] = code
            rec["code_name"] = PROBE_CODES[code][0]
            rec["summary"] = PROBE_CODES[code][3]
            rec["doc_url"] = probe_code_url(code)
        out.append(rec)
    return out


def render_json(report: Any, result: Dict[str, Any]) -> str:
    from trainlint.report.base import finding_dict

    findings = [finding_dict(report, f) for f in report.findings] if report is not None else []
    data = {"findings": findings, "probes": probe_records(result.get("probes", [])),
            "run": {"command": result.get("target"), "steps": result.get("steps_seen"),
                    "outcome": result.get("outcome"), "captured": result.get("captured", {}),
                    "losses": result.get("losses"), "seconds": result.get("seconds"),
                    "step_seconds": result.get("step_seconds"), "message": result.get("message")}}
    return json.dumps(data, indent=2, default=str) + "\n"


def render_sarif(report: Any, result: Dict[str, Any]) -> str:
    from trainlint.report.sarif import build_sarif

    log = build_sarif(report)
    run = log["runs"][0]
    for res, f in zip(run["results"], report.findings):
        res.setdefault("properties", {})["runtime"] = f.extra.get("runtime")
    run.setdefault("properties", {})["probes"] = probe_records(result.get("probes", []))
    return json.dumps(log, indent=2, default=str) + "\n"


VERDICT_MARK = {"ok": "ok", "problem": "PROBLEM", "skipped": "skipped"}


def render_full(report: Any, result: Dict[str, Any], command: List[str], elapsed: float, color: bool = False) -> str:
    def c(text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    cap = result.get("captured", {})
    lines = [c("trainlint run", "1") + f": {' '.join(shlex.quote(x) for x in command)}"]
    model = cap.get("model") or {}
    what = []
    if model:
        named = f"`{model['name']}` " if model.get("name") else ""
        what.append(f"model {named}({model['class']}, {model['parameters']} parameters, on {model['device']})")
    if cap.get("optimizer"):
        what.append(f"optimizer {cap['optimizer']['class']}")
    if cap.get("scheduler"):
        what.append(f"scheduler {cap['scheduler']['class']}")
    if cap.get("loss"):
        loss = cap["loss"]
        what.append(f"loss {loss.get('module') or loss['top']}" + (f" ({loss['kind']})" if loss.get("kind") else ""))
    lines.append(f"watched {result.get('steps_seen')} training steps: " + ", ".join(what))
    if result.get("message"):
        lines.append(f"note: {result['message']}")
    lines.append("")
    lines.append(c("Probes", "1"))
    probes = result.get("probes", [])
    width = max((len(p["name"]) for p in probes), default=10)
    for p in probes:
        mark = VERDICT_MARK.get(p["verdict"], p["verdict"])
        mark = c(mark, "31;1") if p["verdict"] == "problem" else c(mark, "32") if p["verdict"] == "ok" else c(mark, "33")
        detail = p.get("evidence") or p.get("reason", "")
        if p["verdict"] == "skipped":
            detail = p.get("reason", "")
        elif p["verdict"] == "problem":
            detail = f"{p['reason']}: {detail}"
        lines.append(f"  {p['name']:<{width}}  {mark:<8}  {detail}  ({p.get('seconds', 0):.1f} s)")
    lines.append("")
    findings = report.findings if report is not None else []
    lines.append(c("Findings", "1") + (" (static ones with their runtime verdicts)" if findings else ": none"))
    status_text = {"confirmed": c("confirmed", "31;1"), "not-confirmed": c("not confirmed", "32"),
                   "not-probed": c("not probed", "33")}
    for f in findings:
        rt = f.extra.get("runtime", {})
        tag = " [found at runtime]" if rt.get("found_at_runtime") else ""
        lines.append(f"  {f.path}:{f.line}:{f.column}: {c(f.code, '31;1')} {f.message}{tag}")
        ev = rt.get("evidence", {})
        summary = ev.get("summary") or ev.get("reason") or ""
        probe = rt.get("probe") or "no probe"
        lines.append(f"      runtime: {status_text.get(rt.get('status'), rt.get('status'))} by {probe}"
                     + (f": {summary}" if summary else ""))
    confirmed = sum(1 for f in findings if f.extra.get("runtime", {}).get("status") == "confirmed")
    problems = sum(1 for p in probes if p["verdict"] == "problem")
    lines.append("")
    lines.append(f"{len(findings)} finding(s), {confirmed} confirmed at runtime; {problems} probe problem(s); "
                 f"run {result.get('run_seconds', 0):.1f} s, total {elapsed:.1f} s")
    return "\n".join(lines) + "\n"


def _excerpts(report: Any) -> List[List[Tuple[int, str]]]:
    """For each finding (in report order): its line and the lines around it, as (shown number, text)."""
    from trainlint.report.base import position, source_line

    out = []
    for f in report.findings:
        rows = []
        for n in range(f.span.line - 1, f.span.line + 2):
            text = source_line(report, f.path, n)
            if text is not None and n >= 1:
                rows.append((position(report, f.path, n)[1], text))
        out.append(rows)
    return out


def run(opts: RunOptions, output_format: str = "full", report_dir: Optional[str] = None,
        color: bool = False) -> Tuple[int, str]:
    """The whole ``trainlint run``: returns (exit code, text to print). Raises RunError."""
    t0 = time.perf_counter()
    unknown = [p for p in opts.probes if p not in PROBE_NAMES]
    if unknown:
        raise RunError(f"unknown probe {unknown[0]!r}; choose from {', '.join(PROBE_NAMES)}")
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # (find_spec does not import it)
        raise RunError("trainlint run needs PyTorch: pip install 'trainlint[runtime]'")
    try:
        result, _output = launch(opts)
    except RunError as exc:
        exc.json_text = json.dumps({"findings": [], "probes": [],
                                    "run": {"command": opts.command, "outcome": "error", "message": exc.message},
                                    "error": {"message": exc.message, "traceback": exc.traceback,
                                              "output": exc.output[-20000:]}}, indent=2) + "\n"
        if report_dir:
            _write_report(report_dir, None, {"target": opts.command, "message": exc.message, "outcome": "error"},
                          opts.command, time.perf_counter() - t0, error=exc)
        raise
    target = result.get("target") or []
    script = None if (target and target[0] == "-m") else os.path.abspath(target[0]) if target else None
    report = static_report(result.get("user_files") or ([script] if script else []))
    if report is None:
        from trainlint.report.base import Report

        report = Report(findings=[], files_checked=0, rules={})
    probes = result.get("probes", [])
    merge(report, probes, script)
    # rule infos for runtime-only findings (SARIF's rule table)
    from trainlint import docs_url
    from trainlint.report.base import RuleInfo
    from trainlint.rules import registry

    for f in report.findings:
        if f.code not in report.rules and f.code in registry():
            cls = registry()[f.code]
            report.rules[f.code] = RuleInfo(f.code, cls.name, cls.severity.label, cls.summary, cls.doc(), docs_url(f.code))
        elif f.code not in report.rules and f.code in PROBE_CODES:
            from trainlint.runtime import probe_code_url

            name, probe, sev, summary = PROBE_CODES[f.code]
            report.rules[f.code] = RuleInfo(f.code, name, sev, summary,
                                            f"{summary}\n\nFound at runtime by the `{probe}` probe of `trainlint run`.",
                                            probe_code_url(f.code))
    elapsed = time.perf_counter() - t0
    if output_format == "json":
        text = render_json(report, result)
    elif output_format == "sarif":
        text = render_sarif(report, result)
    else:
        text = render_full(report, result, opts.command, elapsed, color)
    if report_dir:
        _write_report(report_dir, report, result, opts.command, elapsed)
    return exit_code(report, probes), text


def _write_report(report_dir: str, report: Any, result: Dict[str, Any], command: List[str], elapsed: float,
                  error: Optional[RunError] = None) -> None:
    """The JSON and the HTML page; after a failure, with what is known (the error, the script's output)."""
    from trainlint.runtime.html import render as render_html

    try:
        os.makedirs(report_dir, exist_ok=True)
        if report is None:
            from trainlint.report.base import Report

            report = Report(findings=[], files_checked=0, rules={})
        data = json.loads(render_json(report, result))
        if error is not None:
            data["error"] = {"message": error.message, "traceback": error.traceback, "output": error.output[-20000:]}
        with open(os.path.join(report_dir, "trainlint-run.json"), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, default=str) + "\n")
        with open(os.path.join(report_dir, "report.html"), "w", encoding="utf-8") as fh:
            fh.write(render_html(data, command, elapsed, excerpts=_excerpts(report) if report.findings else None))
    except OSError as exc:
        raise RunError(f"cannot write the report into {report_dir}: {exc}")
