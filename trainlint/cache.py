"""The results cache (ruff's design): ``.trainlint_cache/`` at the project root, ``--no-cache`` to bypass it,
``cache-dir`` in the configuration to move it, ``trainlint clean`` to delete it.

Two kinds of entries, both plain JSON (never pickle: the folder is writable by whatever runs in the
project, and a cache entry is data, not code):

- **per file**, keyed by the file's content, its path as read and as shown, the rules enabled for it and
  the run's fingerprint: the findings of the file-level rules, and the facts that link programs (the
  modules it imports, whether it runs something, whether it defines classes);
- **per program** (each program on its own, also when programs share files), keyed by every file of the
  program (path, content hash, whether it is part of the run, the rules enabled for it, the files it
  imports) and the fingerprint: the findings of the program-level rules.

So a warm run reads files, hashes them and links programs from cached facts without parsing anything
(libcst is not even imported); a changed file is re-parsed, and only the programs that hold it are
re-analysed. The fingerprint covers trainlint's version and its own source files (an edited checkout
never reads stale results), the Python and libcst versions and the enabled rules; suppressions, severity
overrides and the severity threshold are applied after the cache, on every run.

Safe to share between concurrent runs: an entry is written to a temporary file and renamed into place
(atomic on POSIX and Windows), and an entry that does not parse, or whose recorded key is not the key it
was looked up by (a foreign or truncated file), is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from trainlint import __version__
from trainlint.findings import Applicability, Edit, Finding, Fix, Related, Severity, Span
from trainlint.source import write_atomic

CACHE_DIR_NAME = ".trainlint_cache"
#: Bumped when the layout of an entry changes.
FORMAT = 1
_GITIGNORE = "# Automatically created by trainlint.\n*\n"
_CACHEDIR_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by trainlint.\n"


def _package_stamp() -> str:
    """Name, size and mtime of each of trainlint's own source files: an edited checkout (same version
    string) must not read results computed by older code."""
    base = Path(__file__).resolve().parent
    parts: List[str] = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                try:
                    st = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                parts.append(f"{os.path.relpath(os.path.join(folder, name), base)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _libcst_version() -> str:
    """libcst's installed version, without importing libcst or importlib.metadata (a warm one-file run
    imports neither: importlib.metadata alone cost ~25 ms of a ~250 ms run): the name of its
    ``.dist-info`` folder next to the package, else the size and mtime of its ``__init__.py``."""
    try:
        from importlib.util import find_spec

        spec = find_spec("libcst")
        origin = spec.origin if spec is not None else None
        if not origin:
            return "?"
        package = os.path.dirname(origin)
        site = os.path.dirname(package)
        for name in sorted(os.listdir(site)):
            low = name.lower()
            if low.startswith("libcst-") and low.endswith(".dist-info"):
                return name[len("libcst-"):-len(".dist-info")]
        st = os.stat(origin)
        return f"{origin}:{st.st_size}:{st.st_mtime_ns}"
    except Exception:  # pragma: no cover - an unusual installation
        return "?"


def fingerprint(enabled: Sequence[str], parse_all: bool, max_file_size: Optional[int] = None) -> str:
    """What every entry depends on besides its files: trainlint (version and sources), Python, libcst, the
    enabled rules and the settings that decide what is parsed (max-file-size caps the parser too)."""
    data = json.dumps([FORMAT, __version__, _package_stamp(), sys.version, _libcst_version(), sorted(enabled), parse_all,
                       max_file_size])
    return hashlib.sha256(data.encode()).hexdigest()


def content_hash(text: str, extra: bytes = b"") -> str:
    h = hashlib.sha256(text.encode("utf-8", "surrogatepass"))
    if extra:
        h.update(b"\0")
        h.update(extra)
    return h.hexdigest()


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def default_dir(root: Path) -> Path:
    return root / CACHE_DIR_NAME


class Cache:
    """One run's view of the cache folder."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.hits = 0
        self.misses = 0
        #: Entries written by this run, by kind ("file", "dep", "program"): what it had to compute.
        self.written: Dict[str, int] = {}
        self._ready = False
        self._broken = False

    def _path(self, kind: str, key: str) -> Path:
        return self.folder / f"v{FORMAT}" / kind / key[:2] / f"{key}.json"

    def get(self, kind: str, key: str) -> Optional[Dict[str, Any]]:
        try:
            with open(self._path(kind, key), "rb") as fh:
                data = json.loads(fh.read())
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            self.misses += 1
            return None
        if not isinstance(data, dict) or data.get("key") != key or data.get("kind") != kind or "value" not in data:
            self.misses += 1  # foreign, truncated or tampered with: never trusted
            return None
        self.hits += 1
        return data["value"]

    def exists(self, kind: str, key: str) -> bool:
        return self._path(kind, key).is_file()

    def put(self, kind: str, key: str, value: Any) -> None:
        if self._broken:
            return
        path = self._path(kind, key)
        try:
            self._prepare()
            path.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps({"kind": kind, "key": key, "value": value}, separators=(",", ":")).encode("utf-8")
            write_atomic(str(path), data, durable=False)
            self.written[kind] = self.written.get(kind, 0) + 1
        except (OSError, TypeError, ValueError):
            # A read-only checkout, a full disk, a value JSON cannot hold: lint without caching.
            self._broken = True

    def _prepare(self) -> None:
        if self._ready:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, text in ((".gitignore", _GITIGNORE), ("CACHEDIR.TAG", _CACHEDIR_TAG)):
            target = self.folder / name
            if not target.exists():
                try:
                    target.write_text(text, encoding="utf-8")
                except OSError:
                    pass
        self._ready = True


def clean(folder: Path) -> bool:
    """Delete a cache folder (only one that trainlint made: it holds our .gitignore or CACHEDIR.TAG)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    tag = folder / "CACHEDIR.TAG"
    try:
        ours = tag.is_file() and "trainlint" in tag.read_text(encoding="utf-8", errors="replace")
    except OSError:
        ours = False
    if not ours:
        raise OSError(f"{folder} does not look like a trainlint cache (no CACHEDIR.TAG of ours); not deleted")
    shutil.rmtree(folder)
    return True


# -- findings <-> JSON -----------------------------------------------------------------------------

def _span(s: Span) -> List[int]:
    return [s.line, s.column, s.end_line, s.end_column]


def finding_to_json(f: Finding) -> Dict[str, Any]:
    out: Dict[str, Any] = {"c": f.code, "n": f.name, "s": int(f.severity), "m": f.message, "p": f.path, "sp": _span(f.span)}
    if f.hint is not None:
        out["h"] = f.hint
    if f.fix is not None:
        out["fx"] = [f.fix.message, f.fix.applicability.value, [[_span(e.span), e.content] for e in f.fix.edits]]
    if f.related:
        out["r"] = [[r.path, _span(r.span), r.message] for r in f.related]
    if f.extra:
        out["x"] = f.extra
    return out


def finding_from_json(d: Dict[str, Any]) -> Finding:
    fix = None
    if "fx" in d:
        message, applicability, edits = d["fx"]
        fix = Fix(message, tuple(Edit(Span(*sp), content) for sp, content in edits), Applicability(applicability))
    return Finding(
        code=d["c"], name=d["n"], severity=Severity(d["s"]), message=d["m"], path=d["p"], span=Span(*d["sp"]),
        hint=d.get("h"), fix=fix, related=[Related(p, Span(*sp), m) for p, sp, m in d.get("r", ())],
        extra=dict(d.get("x", {})),
    )


def findings_to_json(findings: Iterable[Finding]) -> List[Dict[str, Any]]:
    return [finding_to_json(f) for f in findings]


def findings_from_json(items: Iterable[Dict[str, Any]]) -> List[Finding]:
    return [finding_from_json(d) for d in items]
