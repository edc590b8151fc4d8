"""Rebuild the real-bug cases from fetched git histories into a folder (never committed).

    python benchmarks/real_bugs/materialize.py [--out DIR] [--mirror DIR] [--case ID ...]

For every case of manifest.toml it writes ``DIR/<id>/parent/<files>`` (the buggy program, at the fix's
parent commit) and ``DIR/<id>/fix/<files>`` (the same files at the fix commit; a file the fix deleted is
left out), read with ``git --git-dir <mirror> show <commit>:<path>``. Repositories come from the
`fetch` mirror (default /work/.mirror, or $TRAINLINT_MIRROR): ``<mirror>/<owner>+<name>/repo``. A
missing repository or commit is reported with the way to get it, and the other cases are still built.
Exit status: 0 when every selected case was built, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases as cs  # noqa: E402

DEFAULT_OUT = Path(tempfile.gettempdir()) / "trainlint-real-bugs"


def _show(gd: Path, commit: str, path: str) -> Optional[bytes]:
    r = subprocess.run(["git", "--git-dir", str(gd), "show", f"{commit}:{path}"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return r.stdout if r.returncode == 0 else None


def _has(gd: Path, commit: str) -> bool:
    r = subprocess.run(["git", "--git-dir", str(gd), "cat-file", "-e", f"{commit}^{{commit}}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def build(case: cs.Case, out: Path, mirror: Path) -> List[str]:
    """Write one case; return the problems (empty when it was built whole)."""
    gd = cs.git_dir(case.repo, mirror)
    if gd is None:
        return [f"{case.repo} is not fetched under {mirror}"]
    problems = []
    for commit in (case.parent, case.fix):
        if not _has(gd, commit):
            problems.append(f"{case.repo} lacks commit {commit[:12]} (fetch a newer snapshot)")
    if problems:
        return problems
    root = out / case.id
    meta: Dict[str, Dict[str, bool]] = {"parent": {}, "fix": {}}
    for version, commit in (("parent", case.parent), ("fix", case.fix)):
        for rel in case.files:
            data = _show(gd, commit, rel)
            meta[version][rel] = data is not None
            if data is None:
                if version == "parent":
                    problems.append(f"{rel} does not exist at {commit[:12]}")
                continue
            dest = root / version / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    (root / "case.json").write_text(json.dumps({"id": case.id, "repo": case.repo, "fix": case.fix,
                                                "parent": case.parent, "rule": case.rule,
                                                "files": meta}, indent=2) + "\n")
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to build (default {DEFAULT_OUT})")
    ap.add_argument("--mirror", type=Path, default=cs.MIRROR, help="where fetched repositories live")
    ap.add_argument("--manifest", type=Path, default=cs.MANIFEST)
    ap.add_argument("--case", action="append", default=[], help="build only this case id (repeatable)")
    args = ap.parse_args(argv)
    try:
        cases = cs.load(args.manifest)
    except (OSError, cs.ManifestError) as exc:
        print(f"materialize: cannot read the manifest: {exc}", file=sys.stderr)
        return 2
    if args.case:
        unknown = set(args.case) - {c.id for c in cases}
        if unknown:
            print(f"materialize: unknown case id(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        cases = [c for c in cases if c.id in args.case]
    built, missing_repos, failed = 0, set(), 0
    for case in cases:
        problems = build(case, args.out, args.mirror)
        if problems:
            failed += 1
            if any("is not fetched" in p for p in problems):
                missing_repos.add(case.repo)
            for p in problems:
                print(f"  {case.id}: {p}", file=sys.stderr)
        else:
            built += 1
    print(f"built {built} of {len(cases)} cases under {args.out}")
    if missing_repos:
        print("\nSome repositories are not fetched. With the `fetch` tool, fetch each of:", file=sys.stderr)
        for r in sorted(missing_repos):
            print(f"  github:{r}", file=sys.stderr)
        print(f"(it leaves them under {args.mirror}/<owner>+<name>/repo), or clone them yourself:\n"
              f"  git clone --mirror https://github.com/<owner>/<name> {args.mirror}/<owner>+<name>/repo",
              file=sys.stderr)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
