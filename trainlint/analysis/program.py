"""Training programs: files linked by their imports.

A model class in ``model.py``, trained in ``train.py``, seeded through ``utils.set_seed()`` is one
program. Entry scripts are the files that run something (``if __name__ == "__main__"``, a loop that calls
``backward()``, ``trainer.fit(...)``) and are not imported by another file of the run. A program is an entry
plus every project file it imports, transitively. Imported files are read from disk even when they are
not part of the run (pre-commit passes only the staged files), but findings are only reported for files
of the run.
"""

from __future__ import annotations

import os
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import FileFacts

#: How many project files one program may pull in (a guard against walking a whole monorepo).
MAX_PROGRAM_FILES = 200


@dataclass(eq=False)
class ProgramFile:
    path: str  # real path on disk
    display: str  # as reported
    ctx: object  # trainlint.context.FileContext (typed loosely to avoid an import cycle)
    in_run: bool  # findings are reported for this file
    imports: List["ProgramFile"] = field(default_factory=list)

    @property
    def facts(self) -> FileFacts:
        return self.ctx.facts


@dataclass(eq=False)
class Program:
    entry: ProgramFile
    files: List[ProgramFile]  # the entry first, then what it imports, breadth-first

    def file_of(self, facts: FileFacts) -> Optional[ProgramFile]:
        """The program file whose facts these are (a dict lookup: rules ask this very often)."""
        index = self.__dict__.get("_by_facts")
        if index is None or len(index) != len(self.files):
            index = self.__dict__["_by_facts"] = {id(f.ctx._facts): f for f in self.files if f.ctx._facts is not None}
        hit = index.get(id(facts))
        if hit is not None and hit.ctx._facts is facts:
            return hit
        for f in self.files:  # facts computed after the index was built
            if f.ctx._facts is facts:
                index[id(facts)] = f
                return f
        return None

    def file_at(self, path: str) -> Optional[ProgramFile]:
        """The program file at a (real) path."""
        index = self.__dict__.get("_by_path")
        if index is None or len(index) != len(self.files):
            index = self.__dict__["_by_path"] = {f.path: f for f in self.files}
        return index.get(path) or index.get(os.path.realpath(path))


def imported_modules(facts: FileFacts) -> List[str]:
    """Module names a file imports (relative ones keep their leading dots), from its alias table and
    its import statements."""
    return list(dict.fromkeys(facts.imports))


def resolve_module(name: str, importer: str, roots: List[Path]) -> Optional[Path]:
    """The project file for module ``name`` imported by file ``importer``, or None (a library)."""
    return _resolve(name, str(Path(importer).parent), tuple(roots))


@lru_cache(maxsize=16384)
def _entries(folder: str) -> frozenset:
    """Names in a folder (cached: imports of every file probe the same folders)."""
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def _find(base: str, parts: List[str]) -> Optional[str]:
    """``base/p1/.../pk.py`` or ``base/p1/.../pk/__init__.py`` for the longest k (``from pkg.mod
    import name`` may name a module or an attribute)."""
    folder = base
    found = None
    for i, part in enumerate(parts):
        names = _entries(folder)
        if part + ".py" in names:
            found = os.path.join(folder, part + ".py")
        if part in names and "__init__.py" in _entries(os.path.join(folder, part)):
            found = os.path.join(folder, part, "__init__.py")
        if part not in names:
            break
        folder = os.path.join(folder, part)
    return found


@lru_cache(maxsize=8192)
def _resolve(name: str, importer_dir: str, roots: Tuple[Path, ...]) -> Optional[Path]:
    if name.startswith("."):
        level = len(name) - len(name.lstrip("."))
        base = importer_dir
        for _ in range(level - 1):
            base = os.path.dirname(base)
        rest = name.lstrip(".")
        parts = rest.split(".") if rest else []
        if not parts:
            init = os.path.join(base, "__init__.py")
            return Path(init) if "__init__.py" in _entries(base) else None
        found = _find(base, parts)
        return Path(found) if found else None
    parts = name.split(".")
    root_texts = {str(r) for r in roots}
    base = importer_dir
    for _ in range(9):
        found = _find(base, parts)
        if found:
            return Path(found)
        if base in root_texts:
            break
        parent = os.path.dirname(base)
        if parent == base:
            break
        base = parent
    return None


def is_entry(facts: FileFacts, text: str) -> bool:
    """Does this file run something when executed?"""
    if "__main__" in text and "__name__" in text:
        return True
    return facts.runs_at_module_level


def build_programs(
    run_files: Dict[str, object],
    load: Callable[[str], Optional[object]],
) -> List[Program]:
    """``run_files``: real path -> FileContext of every parsed file of the run; ``load`` parses another
    file on demand (or returns None). Returns the programs of the run."""
    nodes: Dict[str, ProgramFile] = {}
    for real, ctx in run_files.items():
        nodes[real] = ProgramFile(real, ctx.path, ctx, True)
    roots = sorted({Path(os.path.commonpath([p for p in run_files])) if run_files else Path.cwd()})

    def node_for(real: str) -> Optional[ProgramFile]:
        if real in nodes:
            return nodes[real]
        ctx = load(real)
        if ctx is None:
            return None
        nodes[real] = ProgramFile(real, ctx.path, ctx, False)
        return nodes[real]

    linked: Set[str] = set()

    def link(pf: ProgramFile) -> None:
        if pf.path in linked:
            return
        linked.add(pf.path)
        for mod in imported_modules(pf.facts):
            target = resolve_module(mod, pf.path, roots)
            if target is None:
                continue
            real = os.path.realpath(target)
            if real == pf.path:
                continue
            dep = node_for(real)
            if dep is not None and dep not in pf.imports:
                pf.imports.append(dep)

    for pf in list(nodes.values()):
        link(pf)
    imported_by_run: Set[str] = {d.path for pf in list(nodes.values()) if pf.in_run for d in pf.imports}
    programs = []
    for real, pf in list(nodes.items()):
        if not pf.in_run:
            continue
        if not is_entry(pf.facts, pf.ctx.source.text):
            continue
        if real in imported_by_run and "__main__" not in pf.ctx.source.text:
            continue
        files = [pf]
        seen = {pf.path}
        queue = [pf]
        while queue and len(files) < MAX_PROGRAM_FILES:
            cur = queue.pop(0)
            link(cur)
            for dep in cur.imports:
                if dep.path not in seen:
                    seen.add(dep.path)
                    files.append(dep)
                    queue.append(dep)
        programs.append(Program(pf, files))
    return programs


def iter_program_facts(program: Program) -> Iterator[FileFacts]:
    for f in program.files:
        yield f.facts
