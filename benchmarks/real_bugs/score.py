"""Score trainlint on the real-bug benchmark: per-category recall and fixed versions still flagged.

    python benchmarks/real_bugs/score.py [--cases DIR] [--tree SRC] [--json] [--misses] [--case ID ...]

Run materialize.py first. For each case the program's files (manifest ``files``) are linted together,
once at the parent (the buggy program) and once at the fix, with ``python -m trainlint check --config
trainlint.toml --select ALL --output-format json`` in the version's folder (trainlint.toml, next to this
script, only raises max-file-size; no other configuration is read), so cross-file programs are analysed as
programs. ``--tree SRC`` puts another trainlint source tree first on PYTHONPATH (e.g. ``--tree
/work/baseline`` for the numbers before a change); without it the interpreter's own trainlint runs
(``PYTHONPATH=... python score.py`` works too).

A case is FOUND when the parent has a finding of the case's rule at the buggy location (see
``cases.matches``: same file and within LINE_TOLERANCE lines of the buggy line or of one of the case's
anchors, or a related location of the finding within that distance of the buggy line; for TL301, which
reports once per program, any TL301 finding in the program). A fixed version is STILL FLAGGED when
the fix has a finding of the same rule at the same place (the buggy line mapped through the diff, or
``fix_bug``; for TL301 anywhere in the program).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases as cs  # noqa: E402
from materialize import DEFAULT_OUT  # noqa: E402

#: The benchmark's trainlint settings (only max-file-size: notebooks with outputs can pass 1 MiB).
CONFIG = Path(__file__).resolve().parent / "trainlint.toml"


def lint(folder: Path, files: Sequence[str], tree: Optional[Path], python: str) -> Tuple[List[Dict], str]:
    """trainlint's findings for these files (relative to folder), and an error text ('' when fine)."""
    present = [f for f in files if (folder / f).is_file()]
    if not present:
        return [], ""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [python, "-m", "trainlint", "check", "--config", str(CONFIG), "--select", "ALL", "--output-format", "json",
           "--exit-zero", "--quiet", *present]
    try:
        r = subprocess.run(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return [], "trainlint timed out (300 s)"
    try:
        findings = json.loads(r.stdout or "[]")
    except json.JSONDecodeError:
        return [], f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}"
    return findings, ("" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()[-400:]}")


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def fix_locations(case: cs.Case, root: Path) -> Tuple[Optional[cs.Location], Tuple[cs.Location, ...]]:
    """The buggy location and anchors carried onto the fixed version (None: the file is gone)."""
    def carry(loc: cs.Location) -> Optional[cs.Location]:
        old, new = _read(root / "parent" / loc.path), _read(root / "fix" / loc.path)
        if old is None or new is None:
            return None
        return cs.map_location(old, new, loc)

    bug = case.fix_bug or carry(case.bug)
    anchors = tuple(a for a in (carry(x) for x in case.anchors) if a is not None)
    return bug, anchors


def _where(finding: Dict) -> str:
    """``path:line``, or ``notebook.ipynb:cell:line`` (the manifest's spelling of a location)."""
    cell = finding.get("cell")
    mid = f"{cell}:" if cell is not None else ""
    return f"{finding.get('path')}:{mid}{finding.get('line')}"


def score_case(case: cs.Case, cases_dir: Path, tree: Optional[Path], python: str) -> Dict:
    root = cases_dir / case.id
    out: Dict = {"id": case.id, "repo": case.repo, "rule": case.rule, "bug": str(case.bug)}
    if not (root / "parent").is_dir():
        out["error"] = "not materialized (run materialize.py)"
        return out
    parent, err_p = lint(root / "parent", case.files, tree, python)
    fixed, err_f = lint(root / "fix", case.files, tree, python)
    out["found"] = cs.found(case, parent)
    same_rule = [f for f in parent if f.get("code") == case.rule]
    out["parent_rule_findings"] = [_where(f) for f in same_rule]
    bug, anchors = fix_locations(case, root)
    out["fix_bug"] = str(bug) if bug else None
    out["fix_flagged"] = bool(bug) and cs.found(case, fixed, bug, anchors) if case.scope == "line" else \
        cs.found(case, fixed)
    out["fix_rule_findings"] = [_where(f) for f in fixed if f.get("code") == case.rule]
    errors = [e for e in (err_p, err_f) if e]
    if errors:
        out["error"] = "; ".join(errors)
    return out


def summarize(results: Sequence[Dict]) -> Dict:
    per: Dict[str, Dict[str, int]] = {}
    for r in results:
        if "found" not in r:
            continue
        d = per.setdefault(r["rule"], {"cases": 0, "found": 0, "fix_flagged": 0})
        d["cases"] += 1
        d["found"] += int(r["found"])
        d["fix_flagged"] += int(r["fix_flagged"])
    n = sum(d["cases"] for d in per.values())
    found = sum(d["found"] for d in per.values())
    flagged = sum(d["fix_flagged"] for d in per.values())
    for d in per.values():
        d["recall"] = round(d["found"] / d["cases"], 3)
    return {"cases": n, "found": found, "recall": round(found / n, 3) if n else None,
            "fix_flagged": flagged, "fix_flagged_rate": round(flagged / n, 3) if n else None,
            "repositories": len({r["repo"] for r in results if "found" in r}),
            "per_rule": dict(sorted(per.items()))}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, default=DEFAULT_OUT, help=f"materialized cases (default {DEFAULT_OUT})")
    ap.add_argument("--tree", type=Path, help="a trainlint source tree to run instead of the installed one")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that runs trainlint")
    ap.add_argument("--manifest", type=Path, default=cs.MANIFEST)
    ap.add_argument("--case", action="append", default=[], help="score only this case id (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the per-case results and summary as JSON")
    ap.add_argument("--misses", action="store_true", help="list missed cases and fixed versions still flagged")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if args.tree is not None and not (args.tree / "trainlint" / "__init__.py").is_file():
        print(f"score: {args.tree} is not a trainlint source tree (no trainlint/__init__.py)", file=sys.stderr)
        return 2
    try:
        cases = cs.load(args.manifest)
    except (OSError, cs.ManifestError) as exc:
        print(f"score: cannot read the manifest: {exc}", file=sys.stderr)
        return 2
    if args.case:
        cases = [c for c in cases if c.id in set(args.case)]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda c: score_case(c, args.cases, args.tree, args.python), cases))
    summary = summarize(results)
    unscored = [r for r in results if "found" not in r]
    if args.json:
        print(json.dumps({"tree": str(args.tree) if args.tree else "installed", "summary": summary,
                          "cases": results}, indent=2))
        return 0 if not unscored else 1
    print(f"trainlint: {args.tree or 'installed'}")
    print(f"{'rule':6} {'cases':>5} {'found':>5} {'recall':>6} {'fix still flagged':>18}")
    for rule, d in summary["per_rule"].items():
        print(f"{rule:6} {d['cases']:5d} {d['found']:5d} {d['recall']:6.2f} {d['fix_flagged']:18d}")
    if summary["cases"]:
        print(f"{'all':6} {summary['cases']:5d} {summary['found']:5d} {summary['recall']:6.2f} "
              f"{summary['fix_flagged']:18d}  ({summary['fix_flagged_rate']:.1%} of fixed versions; "
              f"{summary['repositories']} repositories)")
    if args.misses:
        for r in results:
            if r.get("found") is False:
                print(f"MISSED  {r['id']} {r['rule']} at {r['bug']}; the rule said: "
                      f"{', '.join(r['parent_rule_findings']) or 'nothing'}")
            if r.get("fix_flagged"):
                print(f"FLAGGED {r['id']} {r['rule']} still at {r['fix_bug']} after the fix")
    for r in results:
        if r.get("error"):
            print(f"error   {r['id']}: {r['error']}", file=sys.stderr)
    return 0 if not unscored else 1


if __name__ == "__main__":
    sys.exit(main())
