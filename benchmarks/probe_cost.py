"""What the runtime probes cost, as a multiple of one training step of the user's script.

    python benchmarks/probe_cost.py [FIXTURE.py ...] [--steps 3]

For each runnable fixture (default: every script in fixtures/runtime/ except the distributed one), runs
`trainlint run --output-format json` once and prints, per probe, its wall time divided by the script's
own median training-step time (measured by the shim between watched optimizer steps), plus the total.
Not a test: the figures depend on the machine; read them as ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script: Path, steps: int):
    cmd = [sys.executable, "-m", "trainlint", "run", "--output-format", "json", "--steps", str(steps),
           "--", "python", str(script)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        return None, wall, proc.stderr.strip().splitlines()[-1:] or ["failed"]
    return json.loads(proc.stdout), wall, []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scripts", nargs="*", type=Path)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    scripts = args.scripts or sorted(p for p in (ROOT / "fixtures" / "runtime").glob("*.py") if not p.name.startswith("ddp_"))
    print(f"{'fixture':34} {'step':>9} {'probes':>8} {'x step':>9}  most expensive probes (x step)")
    for script in scripts:
        data, wall, err = run(script, args.steps)
        if data is None:
            print(f"{script.name:34} failed: {err[0]}")
            continue
        step = (data.get("run") or {}).get("step_seconds")
        probes = [(p["name"], float(p.get("seconds") or 0.0)) for p in data["probes"]]
        total = sum(s for _, s in probes)
        if not step:
            print(f"{script.name:34} {'?':>9} {total:8.2f}s {'?':>9}  (fewer than 2 steps watched)")
            continue
        top = sorted(probes, key=lambda x: -x[1])[:3]
        tops = ", ".join(f"{n} {s / step:,.0f}" for n, s in top)
        print(f"{script.name:34} {step * 1000:7.1f}ms {total:7.2f}s {total / step:9,.0f}  {tops}   (wall {wall:.1f}s)")


if __name__ == "__main__":
    main()
