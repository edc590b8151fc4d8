"""Run the runtime benchmark: each case plain, plain for the same N steps, and under ``trainlint run``.

    python benchmarks/runtime/setup.py                       # once: lay out the cases
    nice -n 10 python benchmarks/runtime/run.py [--trainlint-path /work/baseline] [--out results.json] [CASE ...]

Prints, per case: whether it ran plain (exit code, or cut at its plain timeout), the wall time of N plain steps
and of ``trainlint run --steps N``, the probes run / skipped (and why), the problems reported, the processes of
the run still alive 1 s after it returned, and the files that differ from the plain N-step run's working folder.
A skip is "inherent" when the script has nothing for the probe to check (no scheduler, a classification loss
for output-range, no ReLU module, token-id inputs...); every other skip is counted against trainlint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from manifest import CASES, DEFAULT_PLAIN_TIMEOUT, HEAVY, STEPS  # noqa: E402

#: Skip reasons that say the script has nothing for the probe to look at.
INHERENT = [
    r"builds no LR scheduler", r"ReduceLROnPlateau", r"is a classification loss", r"no regression loss",
    r"no ReLU-family module", r"built no DataLoader", r"no floating-point input", r"has no BatchNorm",
    r"has no dropout", r"no loader's dataset\[0\] could be fetched", r"not under torchrun",
    r"the model takes no floating-point input", r"token ids",
    # several Hogwild processes update the shared parameters at once: two runs differ by design (the script
    # seeds; the race between its processes is the nondeterminism), so no second run can be compared
    r"concurrently \(Hogwild\)",
]


def inherent(reason: str) -> bool:
    return any(re.search(p, reason or "") for p in INHERENT)


def snapshot(root: str) -> dict:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            if "__pycache__" in rel:
                continue
            key = re.sub(r"\d+", "#", rel)  # event files, timestamps: compare the shape of the name
            try:
                with open(p, "rb") as fh:
                    h = hashlib.sha1(fh.read()).hexdigest()[:12]
            except OSError:
                h = "?"
            out.setdefault(key, []).append(h)
    return out


def compare(plain: dict, tl: dict) -> dict:
    added = sorted(k for k in tl if k not in plain or len(tl[k]) > len(plain[k]))
    missing = sorted(k for k in plain if k not in tl or len(plain[k]) > len(tl[k]))
    differ = sorted(k for k in plain if k in tl and sorted(plain[k]) != sorted(tl[k]))
    return {"added": added, "missing": missing, "content_differs": differ}


def alive_with(tag: str) -> list:
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if f"TRAINLINT_BENCH_TAG={tag}".encode() in fh.read():
                    with open(f"/proc/{pid}/cmdline", "rb") as fh2:
                        pids.append((int(pid), fh2.read().replace(b"\0", b" ").decode(errors="replace")[:80]))
        except OSError:
            continue
    return pids


def kill_all(pids: list) -> None:
    for pid, _ in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def fresh(case: dict, scratch: str, label: str) -> str:
    src = os.path.join(scratch, "cases", case["id"])
    dst = os.path.join(scratch, "runs", case["id"], label)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def env_for(case: dict, root: str, trainlint_path: str, tag: str) -> dict:
    env = dict(os.environ)
    paths = [os.path.join(HERE, "compat")] + [os.path.join(root, p) for p in case.get("pythonpath", [])]
    if trainlint_path:
        paths.insert(0, trainlint_path)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MPLBACKEND"] = "Agg"
    env["PATH"] = os.pathsep.join([os.path.join(HERE, d) for d in case.get("path", [])] + [env.get("PATH", "")])
    env["TRAINLINT_BENCH_TAG"] = tag
    env.update(case.get("env", {}))
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TRAINLINT_RUN", None)
    return env


def timed(cmd: list, cwd: str, env: dict, timeout: float, log: str) -> dict:
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
            cut = False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                p.kill()
            rc, cut = p.wait(), True
    return {"rc": rc, "timed_out": cut, "seconds": round(time.perf_counter() - t0, 2)}


def run_case(case: dict, args) -> dict:
    py = sys.executable
    res = {"id": case["id"], "repo": case["repo"][0]}
    logs = os.path.join(args.scratch, "logs", case["id"])
    os.makedirs(logs, exist_ok=True)
    label = args.label
    # 1. plain, whole run (skipped with --no-plain when a previous results file has it)
    if not args.no_plain:
        root = fresh(case, args.scratch, "plain")
        tag = uuid.uuid4().hex
        r = timed([py] + case["argv"], os.path.join(root, case["cwd"]), env_for(case, root, "", tag),
                  case.get("plain_timeout", DEFAULT_PLAIN_TIMEOUT), os.path.join(logs, "plain.txt"))
        time.sleep(1)
        left = alive_with(tag)
        kill_all(left)
        res["plain"] = dict(r, leftover=len(left))
        # 2. plain, N steps
        root = fresh(case, args.scratch, "plainN")
        tag = uuid.uuid4().hex
        r = timed([py, os.path.join(HERE, "plain_n.py"), str(STEPS)] + case["argv"], os.path.join(root, case["cwd"]),
                  env_for(case, root, "", tag), 300, os.path.join(logs, "plainN.txt"))
        time.sleep(1)
        kill_all(alive_with(tag))
        res["plainN"] = r
        res["plainN_files"] = snapshot(root)
    # 3. trainlint run
    root = fresh(case, args.scratch, "tl-" + label)
    tag = uuid.uuid4().hex
    out = os.path.join(logs, f"trainlint-{label}.json")
    cmd = [py, "-m", "trainlint", "run", "--output-format", "json", "--steps", str(STEPS), "--timeout",
           str(args.timeout), "--", "python"] + case["argv"]
    env = env_for(case, root, args.trainlint_path, tag)
    t0 = time.perf_counter()
    with open(out, "wb") as fh, open(os.path.join(logs, f"trainlint-{label}.err"), "wb") as eh:
        p = subprocess.Popen(cmd, cwd=os.path.join(root, case["cwd"]), env=env, stdout=fh, stderr=eh,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=args.timeout + 120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait()
    wall = time.perf_counter() - t0
    time.sleep(1)
    left = alive_with(tag)
    kill_all(left)
    tl = {"rc": rc, "seconds": round(wall, 2), "leftover": len(left), "leftover_cmds": [c for _, c in left][:4]}
    try:
        with open(out, encoding="utf-8") as fh:
            data = json.load(fh)
        tl["json"] = "ok"
    except (OSError, ValueError):
        data = {}
        tl["json"] = "invalid"
        with open(os.path.join(logs, f"trainlint-{label}.err"), encoding="utf-8", errors="replace") as fh:
            tl["error"] = fh.read()[-600:]
    probes = data.get("probes", [])
    run = data.get("run", {})
    tl["message"] = run.get("message") or data.get("error")
    tl["model"] = (run.get("captured") or {}).get("model")
    tl["losses"] = run.get("losses")
    tl["probes"] = [{"name": p["name"], "verdict": p["verdict"], "reason": p.get("reason"),
                     "evidence": p.get("evidence"), "inherent": p["verdict"] == "skipped" and inherent(p.get("reason")),
                     "crash": "the probe failed" in (p.get("reason") or "")} for p in probes]
    tl["files"] = snapshot(root)
    res["trainlint"] = tl
    return res


def summarize(results: list) -> str:
    rows = ["| case | plain | plain N steps s | trainlint rc | trainlint s | run/skip(inherent)/problem | "
            "leftover | files vs plain-N |", "|---|---|---|---|---|---|---|---|"]
    tot = {"slots": 0, "skip_in": 0, "skip_inh": 0, "crash": 0, "problems": 0, "leftover": 0, "files": 0, "ran": 0,
           "ran_tl": 0}
    details = []
    for r in results:
        tl = r["trainlint"]
        pl = r.get("plain", {})
        plain = "cut" if pl.get("timed_out") else f"rc {pl.get('rc')}" if pl else "?"
        ps = tl["probes"]
        n_run = sum(1 for p in ps if p["verdict"] != "skipped")
        n_inh = sum(1 for p in ps if p["inherent"])
        n_skip = sum(1 for p in ps if p["verdict"] == "skipped")
        probs = [p for p in ps if p["verdict"] == "problem"]
        files = compare(r.get("plainN_files", {}), tl["files"]) if "plainN_files" in r else None
        fdiff = "n/a" if files is None else (
            "same" if not files["added"] and not files["missing"] else
            f"+{len(files['added'])} -{len(files['missing'])}")
        if files and files["content_differs"]:
            fdiff += f" ({len(files['content_differs'])} differ in content)"
        slots = len(ps) if ps else 14
        tot["slots"] += slots
        tot["skip_in"] += (n_skip - n_inh) if ps else 14
        tot["skip_inh"] += n_inh
        tot["crash"] += sum(1 for p in ps if p["crash"])
        tot["problems"] += len(probs)
        tot["leftover"] += tl["leftover"]
        tot["files"] += 0 if files is None or (not files["added"] and not files["missing"]) else 1
        ran_plain = pl.get("rc") == 0 or pl.get("timed_out")
        tot["ran"] += 1 if ran_plain else 0
        tot["ran_tl"] += 1 if (ran_plain and tl["rc"] in (0, 1) and ps) else 0
        rows.append(f"| {r['id']} | {plain} | {r.get('plainN', {}).get('seconds', '?')} | {tl['rc']} | {tl['seconds']} "
                    f"| {n_run}/{n_skip}({n_inh})/{len(probs)} | {tl['leftover']} | {fdiff} |")
        det = [f"### {r['id']}", f"trainlint rc {tl['rc']} json {tl['json']}: {tl.get('message') or ''}"]
        if tl.get("error"):
            det.append("error: " + tl["error"].strip().replace("\n", " | ")[-400:])
        for p in ps:
            if p["verdict"] != "ok":
                tagged = " [inherent]" if p["inherent"] else ""
                det.append(f"- {p['name']}: {p['verdict']}{tagged}: {p['reason']}"
                           + (f" -- {p['evidence']}" if p["verdict"] == "problem" else ""))
        if files and (files["added"] or files["missing"]):
            det.append(f"- files added {files['added'][:6]} missing {files['missing'][:6]}")
        if tl["leftover"]:
            det.append(f"- leftover: {tl['leftover_cmds']}")
        details.append("\n".join(det))
    skip_pct = 100.0 * tot["skip_in"] / max(1, tot["slots"])
    head = (f"cases {len(results)}; ran plain {tot['ran']}; of those ran under trainlint {tot['ran_tl']}; probe slots "
            f"{tot['slots']}; skipped for reasons inside trainlint {tot['skip_in']} ({skip_pct:.0f}%), inherent "
            f"{tot['skip_inh']}; probe crashes {tot['crash']}; problems reported {tot['problems']}; leftover "
            f"processes {tot['leftover']}; cases whose files differ from plain-N {tot['files']}")
    return head + "\n\n" + "\n".join(rows) + "\n\n" + "\n\n".join(details) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratch", default="/tmp/trainlint-rtbench")
    ap.add_argument("--trainlint-path", default="", help="PYTHONPATH for trainlint (e.g. /work/baseline)")
    ap.add_argument("--label", default="current")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", default="")
    ap.add_argument("--plain-from", default="", help="reuse the plain runs of an earlier results file")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    prev = {}
    if args.plain_from:
        with open(args.plain_from) as fh:
            prev = {r["id"]: r for r in json.load(fh)}
    results = []
    for case in CASES + HEAVY:  # (a HEAVY case only when named)
        if (args.cases and case["id"] not in args.cases) or (case in HEAVY and case["id"] not in args.cases):
            continue
        args.no_plain = case["id"] in prev
        r = run_case(case, args)
        if case["id"] in prev:
            for k in ("plain", "plainN", "plainN_files"):
                if k in prev[case["id"]]:
                    r[k] = prev[case["id"]][k]
        results.append(r)
        tl = r["trainlint"]
        print(f"{case['id']}: plain {r.get('plain')} N-steps {r.get('plainN', {}).get('seconds')} s; trainlint rc "
              f"{tl['rc']} {tl['seconds']} s, leftover {tl['leftover']}", flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(results, fh, indent=1)
    text = summarize(results)
    print(text)
    if args.out:
        with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
