"""The judged precision corpus: public training repositories, linted, sampled and scored.

A script, not a test. The corpus is ``manifest.csv`` (repository, commit, group: ``before`` = the
repositories of earlier audits, ``new`` = repositories trainlint had not been measured on). The fetched
code is never stored here; it is materialised from local clones (the ``fetch`` tool's mirror,
``/work/.mirror/<owner>+<name>/repo`` by default, ``--mirror`` to change it).

    python benchmarks/precision/corpus.py materialize /tmp/corpus
    python benchmarks/precision/corpus.py lint /tmp/corpus findings.json [--trainlint-path DIR]
    python benchmarks/precision/corpus.py sample findings.json --seed 10 --per-rule 15
    python benchmarks/precision/corpus.py score findings.json [--judged judged.csv]

``lint`` runs ``python -m trainlint`` once per repository (so each repository is its own set of
programs) with the default selection plus every opt-in rule (so opt-in rules are measured too), and
counts the lines of code (non-blank lines of .py files and of notebooks' code cells).
``--trainlint-path`` puts another checkout first on PYTHONPATH (the baseline, main).

``sample`` picks, per rule, every finding when the rule has at most ``--per-rule`` of them, else a
random sample of ``--per-rule`` drawn with ``random.Random(seed)`` over the findings sorted by
(repo, path, line, column); it prints each with its code excerpt, for judging by hand.

``score`` joins the findings with ``judged.csv`` (repo, path, line, code, verdict, reason; verdict one
of true/false/debatable) and prints, per rule: findings, judged, true/false/debatable, precision
(true / (true + false)), and false findings per 10k lines extrapolated from the judged sample
(false share of the judged findings x all findings of the rule).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MANIFEST = HERE / "manifest.csv"
JUDGED = HERE / "judged.csv"


def manifest() -> List[dict]:
    with open(MANIFEST, newline="") as fh:
        return list(csv.DictReader(fh))


def slug(repo: str) -> str:
    return repo.replace("/", "+")


def _git_dir(mirror: Path, repo: str) -> Path:
    base = mirror / slug(repo) / "repo"
    return base / ".git" if (base / ".git").is_dir() else base


def materialize(dest: Path, mirror: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for row in manifest():
        out = dest / slug(row["repo"])
        if out.exists():
            continue
        git = ["git", "--git-dir", str(_git_dir(mirror, row["repo"]))]
        names = subprocess.run(git + ["ls-tree", "-r", "-z", "--name-only", row["commit"]], check=True,
                               capture_output=True, text=True).stdout.split("\0")
        members = [n for n in names if n.endswith((".py", ".ipynb"))]
        for name in members:  # one by one: a mirror may lack large blobs (data files) that archive needs
            blob = subprocess.run(git + ["cat-file", "blob", f"{row['commit']}:{name}"], capture_output=True)
            if blob.returncode == 0:
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob.stdout)
        print(f"{row['repo']}: {len(members)} files", file=sys.stderr)


def count_lines(path: Path) -> int:
    total = 0
    for f in path.rglob("*"):
        if f.suffix == ".py":
            try:
                total += sum(1 for line in f.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
            except OSError:
                pass
        elif f.suffix == ".ipynb":
            try:
                nb = json.loads(f.read_text(encoding="utf-8", errors="replace"))
                for cell in nb.get("cells", []):
                    if cell.get("cell_type") == "code":
                        src = cell.get("source", "")
                        src = "".join(src) if isinstance(src, list) else src
                        total += sum(1 for line in src.splitlines() if line.strip())
            except (OSError, ValueError, AttributeError):
                pass
    return total


def opt_in_codes(python: str, env: dict) -> List[str]:
    code = "from trainlint.rules import registry\nprint(','.join(c for c, r in registry().items() if getattr(r, 'opt_in', False)))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env).stdout.strip()
    return [c for c in out.split(",") if c]


def lint(corpus: Path, out: Path, trainlint_path: str, python: str, group: str = "") -> None:
    env = dict(os.environ)
    if trainlint_path:
        env["PYTHONPATH"] = trainlint_path
    extra = opt_in_codes(python, env) or ["TL206"]
    result: Dict[str, dict] = {}
    if group and out.exists():  # lint one group of repositories into an existing result
        result = json.loads(out.read_text())
    for row in manifest():
        if group and row["group"] != group:
            continue
        repo_dir = corpus / slug(row["repo"])
        cmd = [python, "-m", "trainlint", "check", "--isolated", "--output-format", "json", "--exit-zero",
               "--extend-select", ",".join(extra), "."]
        proc = subprocess.run(cmd, cwd=repo_dir, capture_output=True, text=True, env=env)
        try:
            findings = json.loads(proc.stdout or "[]")
        except ValueError:
            print(f"{row['repo']}: unreadable output: {proc.stderr[-500:]}", file=sys.stderr)
            findings = []
        keep = [{k: f.get(k) for k in ("code", "path", "line", "column", "cell", "message")} for f in findings]
        result[row["repo"]] = {"lines": count_lines(repo_dir), "group": row["group"], "findings": keep}
        print(f"{row['repo']}: {len(keep)} findings, {result[row['repo']]['lines']} lines", file=sys.stderr)
    out.write_text(json.dumps(result, indent=1))


def _flat(data: dict) -> List[dict]:
    rows = []
    for repo, entry in data.items():
        for f in entry["findings"]:
            rows.append(dict(f, repo=repo))
    rows.sort(key=lambda f: (f["repo"], f["path"], f["cell"] or 0, f["line"], f["column"], f["code"]))
    return rows


def sample(findings: Path, corpus: Path, seed: int, per_rule: int, codes: List[str]) -> None:
    data = json.loads(findings.read_text())
    by_rule: Dict[str, List[dict]] = defaultdict(list)
    for f in _flat(data):
        by_rule[f["code"]].append(f)
    picks = _picked(_flat(data), seed, per_rule)
    for code in sorted(by_rule):
        if codes and code not in codes:
            continue
        items = by_rule[code]
        picked = picks[code]
        print(f"===== {code}: {len(picked)} of {len(items)} =====")
        for f in picked:
            where = f"cell {f['cell']}, line {f['line']}" if f["cell"] else f"line {f['line']}"
            print(f"--- {f['repo']} {f['path']} {where}\n    {f['message']}")
            if corpus and not f["cell"]:
                try:
                    lines = (corpus / slug(f["repo"]) / f["path"]).read_text(errors="replace").splitlines()
                    for n in range(max(1, f["line"] - 2), min(len(lines), f["line"] + 2) + 1):
                        print(f"    {n:5d}{'>' if n == f['line'] else ' '} {lines[n - 1][:140]}")
                except OSError:
                    pass


def _key(repo: str, path: str, line, code: str) -> tuple:
    return (repo, path, str(line), code)


def judged(path: Path) -> Dict[tuple, dict]:
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {_key(r["repo"], r["path"], r["line"], r["code"]): r for r in csv.DictReader(fh)}


def _line_key(f: dict) -> str:
    return f"cell {f['cell']}:{f['line']}" if f.get("cell") else str(f["line"])


def _picked(rows: List[dict], seed: int, per_rule: int) -> Dict[str, List[dict]]:
    """The findings ``sample`` prints, per rule: all of them up to ``per_rule``, else a seeded sample."""
    by_rule: Dict[str, List[dict]] = defaultdict(list)
    for f in rows:
        by_rule[f["code"]].append(f)
    return {code: items if len(items) <= per_rule else random.Random(seed).sample(items, per_rule)
            for code, items in by_rule.items()}


def score(findings: Path, judged_path: Path, opt_in: List[str], seed=None, per_rule: int = 15) -> None:
    data = json.loads(findings.read_text())
    verdicts = judged(judged_path)
    lines = sum(e["lines"] for e in data.values())
    rows = _flat(data)
    counted = rows
    if seed is not None:  # judge the seeded sample only (what `sample --seed N --per-rule K` prints)
        sampled = {id(f) for items in _picked(rows, seed, per_rule).values() for f in items}
        counted = [f for f in rows if id(f) in sampled]
        print(f"verdicts counted on the seeded sample (seed {seed}, {per_rule} per rule)")
    per: Dict[str, Counter] = defaultdict(Counter)
    for f in rows:
        per[f["code"]]["findings"] += 1
    for f in counted:
        c = per[f["code"]]
        v = verdicts.get(_key(f["repo"], f["path"], _line_key(f), f["code"]))
        if v:
            c[v["verdict"]] += 1
            c["judged"] += 1
    print(f"{len(data)} repositories, {lines} lines of code, {len(rows)} findings")
    print(f"{'rule':7} {'found':>6} {'judged':>6} {'true':>5} {'false':>5} {'debat':>5} {'prec':>5} {'false/10k':>9}")
    total_false = 0.0
    for code in sorted(per):
        c = per[code]
        j = c["judged"]
        est_false = c["false"] / j * c["findings"] if j else float("nan")
        if code not in opt_in:
            total_false += est_false if j else 0
        prec = c["true"] / (c["true"] + c["false"]) if c["true"] + c["false"] else float("nan")
        print(f"{code:7} {c['findings']:6d} {j:6d} {c['true']:5d} {c['false']:5d} {c['debatable']:5d} {prec:5.2f} "
              f"{est_false / lines * 1e4 if j else float('nan'):9.2f}{'  (opt-in)' if code in opt_in else ''}")
    scope = f" (default selection: without {', '.join(opt_in)})" if opt_in else ""
    print(f"overall estimated false findings per 10k lines{scope}: {total_false / lines * 1e4:.2f}")
    missing = [f for f in counted if _key(f["repo"], f["path"], _line_key(f), f["code"]) not in verdicts]
    print(f"unjudged findings{' in the sample' if seed is not None else ''}: {len(missing)}")
    for f in missing:
        print(f"  {f['repo']},{f['path']},{_line_key(f)},{f['code']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("materialize")
    m.add_argument("dest", type=Path)
    m.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    li = sub.add_parser("lint")
    li.add_argument("corpus", type=Path)
    li.add_argument("out", type=Path)
    li.add_argument("--trainlint-path", default=str(ROOT))
    li.add_argument("--python", default=sys.executable)
    li.add_argument("--group", default="", help="lint only this group, added to OUT when it exists")
    s = sub.add_parser("sample")
    s.add_argument("findings", type=Path)
    s.add_argument("--corpus", type=Path)
    s.add_argument("--seed", type=int, default=10)
    s.add_argument("--per-rule", type=int, default=15)
    s.add_argument("--code", action="append", default=[])
    sc = sub.add_parser("score")
    sc.add_argument("findings", type=Path)
    sc.add_argument("--judged", type=Path, default=JUDGED)
    sc.add_argument("--opt-in", default="", help="comma-separated opt-in codes: measured, left out of the total")
    sc.add_argument("--seed", type=int, default=None, help="count the verdicts of this seeded sample only")
    sc.add_argument("--per-rule", type=int, default=15)
    a = ap.parse_args()
    if a.cmd == "materialize":
        materialize(a.dest, a.mirror)
    elif a.cmd == "lint":
        lint(a.corpus, a.out, a.trainlint_path, a.python, a.group)
    elif a.cmd == "sample":
        sample(a.findings, a.corpus, a.seed, a.per_rule, a.code)
    else:
        score(a.findings, a.judged, [c for c in a.opt_in.split(",") if c], a.seed, a.per_rule)


if __name__ == "__main__":
    main()
