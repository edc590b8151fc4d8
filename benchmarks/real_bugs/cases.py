"""The real-bug benchmark's shared pieces: reading and checking the manifest, finding a fetched
repository's git directory, and deciding whether a finding is the case's bug (the matching criterion).

Standard library only (plus ``tomllib``/``tomli``), so the test suite can check the manifest and the
matching logic without any fetched code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - older interpreters
    import tomli as _toml  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.toml"
MIRROR = Path(os.environ.get("TRAINLINT_MIRROR", "/work/.mirror"))

#: A finding matches the buggy location when its line is at most this many lines away from it.
LINE_TOLERANCE = 3

#: Rules that report one finding per training program (at the loop where training starts, or at the
#: top of the entry script): any finding of the rule in the case's files is the case's bug.
PROGRAM_SCOPE = frozenset({"TL301"})

RULES = (
    "TL101", "TL102", "TL103", "TL201", "TL202", "TL203", "TL204", "TL205", "TL206",
    "TL301", "TL302", "TL303", "TL304", "TL305", "TL401", "TL402",
)

_SHA = re.compile(r"^[0-9a-f]{40}$")
_LOC = re.compile(r"^(?P<path>[^:]+\.(?:py|ipynb)):(?:(?P<cell>[1-9][0-9]*):)?(?P<line>[1-9][0-9]*)$")
_CELL_PREFIX = re.compile(r"^cell (?P<cell>[0-9]+): ")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Location:
    """``path:line``, or ``notebook.ipynb:cell:line`` in a notebook (the cell counts every cell of the
    notebook from 1, the line counts within the cell: how trainlint reports notebook positions)."""

    path: str
    line: int
    cell: Optional[int] = None

    @classmethod
    def parse(cls, text: str) -> "Location":
        m = _LOC.match(text)
        if not m:
            raise ValueError(f"not a path:line (or notebook.ipynb:cell:line) location: {text!r}")
        cell = int(m.group("cell")) if m.group("cell") else None
        if (cell is None) != (not m.group("path").endswith(".ipynb")):
            raise ValueError(f"a notebook location is notebook.ipynb:cell:line, a script's path:line: {text!r}")
        return cls(m.group("path"), int(m.group("line")), cell)

    def __str__(self) -> str:
        return f"{self.path}:{self.cell}:{self.line}" if self.cell is not None else f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Case:
    id: str
    repo: str
    fix: str
    parent: str
    rule: str
    files: Tuple[str, ...]
    bug: Location
    anchors: Tuple[Location, ...] = ()
    fix_bug: Optional[Location] = None  # where the repaired code lies at the fix (default: bug's path)
    description: str = ""
    idiom: str = ""
    message: Optional[str] = None  # a regular expression the finding's message must match


    @property
    def scope(self) -> str:
        return "program" if self.rule in PROGRAM_SCOPE else "line"


class ManifestError(ValueError):
    pass


def load(path: Path = MANIFEST) -> List[Case]:
    with open(path, "rb") as fh:
        data = _toml.load(fh)
    cases = []
    for i, raw in enumerate(data.get("case", [])):
        cases.append(_case(raw, i))
    problems = check(cases)
    if problems:
        raise ManifestError("; ".join(problems))
    return cases


def _case(raw: Dict, index: int) -> Case:
    required = ("id", "repo", "fix", "parent", "rule", "files", "bug", "description", "idiom")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ManifestError(f"case #{index + 1} ({raw.get('id', '?')}): missing {', '.join(missing)}")
    known = set(required) | {"anchors", "fix_bug", "message"}
    extra = set(raw) - known
    if extra:
        raise ManifestError(f"case {raw['id']}: unknown keys {', '.join(sorted(extra))}")
    return Case(
        id=raw["id"], repo=raw["repo"], fix=raw["fix"], parent=raw["parent"], rule=raw["rule"],
        files=tuple(raw["files"]), bug=Location.parse(raw["bug"]),
        anchors=tuple(Location.parse(a) for a in raw.get("anchors", ())),
        fix_bug=Location.parse(raw["fix_bug"]) if raw.get("fix_bug") else None,
        description=raw["description"], idiom=raw["idiom"], message=raw.get("message"),
    )


def check(cases: Sequence[Case]) -> List[str]:
    """Every problem of the manifest's shape, as sentences (empty when it is sound)."""
    problems = []
    seen = set()
    for c in cases:
        where = f"case {c.id}"
        if c.id in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(c.id)
        if not _REPO.match(c.repo):
            problems.append(f"{where}: repo {c.repo!r} is not owner/name")
        for name in ("fix", "parent"):
            if not _SHA.match(getattr(c, name)):
                problems.append(f"{where}: {name} is not a 40-hex commit id")
        if c.fix == c.parent:
            problems.append(f"{where}: fix and parent are the same commit")
        if c.rule not in RULES:
            problems.append(f"{where}: unknown rule {c.rule}")
        if not c.files or len(set(c.files)) != len(c.files):
            problems.append(f"{where}: files must be a non-empty list without repeats")
        for f in c.files:
            if f.startswith("/") or ".." in Path(f).parts or not f.endswith((".py", ".ipynb")):
                problems.append(f"{where}: file {f!r} is not a relative .py or .ipynb path inside the repository")
        for loc in (c.bug,) + c.anchors:
            if loc.path not in c.files:
                problems.append(f"{where}: {loc} is not in the case's files")
        if c.message is not None:
            try:
                re.compile(c.message)
            except re.error as exc:
                problems.append(f"{where}: message is not a regular expression ({exc})")
        if not c.description.strip() or not c.idiom.strip():
            problems.append(f"{where}: description and idiom must say something")
    return problems


def git_dir(repo: str, mirror: Path = MIRROR) -> Optional[Path]:
    """The git directory `fetch` left for owner/name under the mirror (``repo`` or ``repo/.git``)."""
    base = mirror / repo.replace("/", "+") / "repo"
    for candidate in (base / ".git", base):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    return None


# -- matching --------------------------------------------------------------------------------------


def _norm(path: str) -> str:
    p = path.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def _near(path: str, line: int, targets: Iterable[Location], tol: int, cell: Optional[int] = None) -> bool:
    path = _norm(path)
    return any(path == t.path and abs(line - t.line) <= tol and (t.cell is None or t.cell == cell) for t in targets)


def _cell_of(value: object) -> Optional[int]:
    try:
        return int(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def matches(case: Case, finding: Dict, bug: Optional[Location] = None,
            anchors: Optional[Sequence[Location]] = None, tol: int = LINE_TOLERANCE) -> bool:
    """Is this finding (trainlint's JSON object: code, path, line, related[]) the case's bug?

    - the same rule code (and, when the case has ``message``, a message that matches that regular
      expression: one code can cover several sub-kinds, e.g. TL301's "never seeds torch" and "torch is
      seeded but numpy is not");
    - program-scope rules (TL301): any finding of the rule in one of the case's files;
    - otherwise the finding's line, or one of its related locations, lies in the buggy file within
      ``tol`` lines of the buggy line, or the finding's own line is within ``tol`` of one of the case's
      anchors (the definition line of the object the bug is about: the loader, the sampler, the model's
      last layer, the evaluation loop's head).

    ``bug`` and ``anchors`` default to the case's (parent) locations; the scorer passes them mapped
    onto the fixed version to ask whether the fix is still flagged at the same place.
    """
    if finding.get("code") != case.rule:
        return False
    if case.message is not None and not re.search(case.message, str(finding.get("message", ""))):
        return False
    bug = bug or case.bug
    anchors = case.anchors if anchors is None else tuple(anchors)
    path = _norm(str(finding.get("path", "")))
    if case.scope == "program":
        return path in case.files
    line = int(finding.get("line") or 0)
    if _near(path, line, (bug,) + tuple(anchors), tol, _cell_of(finding.get("cell"))):
        return True
    for rel in finding.get("related") or ():
        m = _CELL_PREFIX.match(str(rel.get("message", "")))  # notebook related locations: "cell N: ..."
        if _near(str(rel.get("path", "")), int(rel.get("line") or 0), (bug,), tol, int(m.group("cell")) if m else None):
            return True
    return False


def found(case: Case, findings: Sequence[Dict], bug: Optional[Location] = None,
          anchors: Optional[Sequence[Location]] = None) -> bool:
    return any(matches(case, f, bug, anchors) for f in findings)


def notebook_cells(text: str) -> List[str]:
    """The source of every cell of a notebook (markdown too: trainlint counts every cell), in order."""
    import json

    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError):
        return []
    out = []
    for c in cells:
        src = c.get("source", "") if isinstance(c, dict) else ""
        out.append("".join(src) if isinstance(src, list) else str(src))
    return out


def map_location(old_text: str, new_text: str, loc: "Location") -> "Location":
    """``loc`` (in the file whose text was ``old_text``) carried onto ``new_text``: through the diff of
    the lines, or for a notebook location through the diff of the cells and then of the cell's lines."""
    if loc.cell is None:
        return Location(loc.path, map_line(old_text, new_text, loc.line))
    import difflib

    a, b = notebook_cells(old_text), notebook_cells(new_text)
    i = loc.cell - 1
    j = min(i, max(len(b) - 1, 0))
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i1 <= i < i2:
            j = j1 + (i - i1) if tag == "equal" else min(j1 + (i - i1), max(j2 - 1, j1))
            if tag == "replace":  # a cell split or edited: the new cell that still holds the line, if any
                lines = a[i].splitlines() if 0 <= i < len(a) else []
                text = lines[loc.line - 1].strip() if 0 < loc.line <= len(lines) else ""
                holders = [k for k in range(j1, j2) if text and text in (ln.strip() for ln in b[k].splitlines())]
                if holders:
                    j = holders[0]
            break
    old_cell = a[i] if 0 <= i < len(a) else ""
    new_cell = b[j] if 0 <= j < len(b) else ""
    return Location(loc.path, map_line(old_cell, new_cell, loc.line), j + 1)


def map_line(old_text: str, new_text: str, line: int) -> int:
    """The line of ``new_text`` that corresponds to ``line`` of ``old_text`` (1-based): unchanged lines
    follow the diff; a line inside a changed block maps to the start of its replacement."""
    import difflib

    a, b = old_text.splitlines(), new_text.splitlines()
    i = line - 1
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i1 <= i < i2 or (tag == "insert" and i == i1 and False):
            if tag == "equal":
                return j1 + (i - i1) + 1
            return min(j1 + (i - i1), max(j2 - 1, j1)) + 1
    return min(line, max(1, len(b)))
