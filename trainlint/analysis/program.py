"""Training programs: files linked by the names they take from each other.

A model class in ``model.py``, trained in ``train.py``, seeded through ``utils.set_seed()`` is one
program. Entry scripts are the files that run something (``if __name__ == "__main__"``, a loop of the
module level that calls more than table builders, ``trainer.fit(...)``) and are not imported by another
file of the run. A program is an entry plus the project files its names reach (``_closure``): the imports
whose bound names a file reads are followed, a package ``__init__.py`` is passed through for the one name
asked of it (its other re-exports are not), a file that defines a name asked is taken whole; never the
whole package an import could reach. Imported files are read from disk even when they are not part of the
run (pre-commit passes only the staged files), but findings are only reported for files of the run.

The other way round too: when the run holds a file that no program of the run reaches (pre-commit passes
only the staged ``model.py``), the entry scripts that import it — directly or through another project
file — are found in its project and analysed with it when their names reach it, so that the findings that
lie in ``model.py`` are reported. Finding them stays cheap: the project's ``.py`` files are listed once,
only those whose text imports the module's name are parsed, and at most a few levels of importers are
followed."""

from __future__ import annotations

import os
from collections import deque
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from typing import TYPE_CHECKING

from trainlint.analysis.links import EVERYTHING
from trainlint.import_scan import import_statements

if TYPE_CHECKING:  # pragma: no cover
    from trainlint.analysis.facts import FileFacts

#: How many project files one program may pull in (a guard against walking a whole monorepo).
MAX_PROGRAM_FILES = 200
#: Reverse imports: how many .py files of a project are listed, how many levels of importers are
#: followed up from a file of the run, and how many entry scripts are kept for one file.
MAX_SCAN_FILES = 5000
IMPORTER_DEPTH = 3
MAX_IMPORTING_ENTRIES = 4
_PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg", ".pre-commit-config.yaml")
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "env", "build", "dist", "wandb", "outputs"}


@dataclass(eq=False)
class ProgramFile:
    path: str  # real path on disk
    display: str  # as reported
    ctx: object  # trainlint.context.FileContext (typed loosely to avoid an import cycle)
    in_run: bool  # findings are reported for this file

    @property
    def facts(self) -> FileFacts:
        return self.ctx.facts


@dataclass(eq=False)
class Program:
    entry: ProgramFile
    files: List[ProgramFile]  # the entry first, then what it takes from other files, breadth-first
    #: The imports the program follows: real path -> the real paths of the files that one takes names
    #: from, in the order they were found (a package ``__init__.py`` passed through for one name has only
    #: that name's edge). Together with the files' contents they decide the program (the cache key).
    imports: Dict[str, List[str]] = field(default_factory=dict)
    #: A library module that nothing of the run executes or imports (``onmt/trainer.py`` with its
    #: ``Trainer.validate()``, linted without the scripts that drive it): judged as a program of its own,
    #: but only by the rules whose claim stands on one function's evidence (``Rule.judges_libraries``:
    #: an evaluation loop with autograd on), never by whole-program rules (a missing seed, the training
    #: loader). Its loops are looked for in the entry file only; the files it imports still resolve names.
    library: bool = False

    @classmethod
    def of_file(cls, ctx) -> "Program":
        """One file checked as a program of its own (a module that runs nothing by itself, linted alone:
        a Lightning DataModule file, a loader builder): its findings are reported."""
        pf = ProgramFile(os.path.realpath(ctx.path), ctx.path, ctx, True)
        return cls(pf, [pf])

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
    found = resolve_path(name, importer, roots)
    return Path(found) if found is not None else None


def resolve_path(name: str, importer: str, roots: Sequence[Path]) -> Optional[str]:
    """``resolve_module`` as a string (what program linking asks a million times in a big package)."""
    return _resolve(name, os.path.dirname(importer) if os.path.isabs(importer) else str(Path(importer).parent), tuple(roots))


_REAL_DIRS: Dict[str, str] = {}


def real_path(path: str) -> str:
    """``os.path.realpath`` of a file, resolving each folder once per run (a folder's realpath costs an
    lstat per component of it, for every file of the folder)."""
    if os.path.islink(path):
        return os.path.realpath(path)
    folder, name = os.path.split(path)
    real = _REAL_DIRS.get(folder)
    if real is None:
        real = _REAL_DIRS[folder] = os.path.realpath(folder)
    return os.path.join(real, name)


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
def _resolve(name: str, importer_dir: str, roots: Tuple[Path, ...]) -> Optional[str]:
    if name.startswith("."):
        level = len(name) - len(name.lstrip("."))
        base = importer_dir
        for _ in range(level - 1):
            base = os.path.dirname(base)
        rest = name.lstrip(".")
        parts = rest.split(".") if rest else []
        if not parts:
            init = os.path.join(base, "__init__.py")
            return init if "__init__.py" in _entries(base) else None
        return _find(base, parts)
    parts = name.split(".")
    root_texts = {str(r) for r in roots}
    base = importer_dir
    for _ in range(9):
        found = _find(base, parts)
        if found:
            return found
        if base in root_texts:
            # a package linted on its own (`trainlint check onmt/`): its root is the package folder,
            # and `import onmt.inputters` names the package itself
            parent = os.path.dirname(base)
            if len(parts) > 1 and parts[0] == os.path.basename(base) and parent != base:
                found = _find(parent, parts)
                if found:
                    return found
            break
        parent = os.path.dirname(base)
        if parent == base:
            break
        base = parent
    # a package importing itself by its absolute name (``allennlp/run.py``: ``from allennlp.commands
    # import main``) when the run's root is inside the package: the folder above the ancestor that bears
    # the package's name is where Python would find it
    cur = importer_dir
    for _ in range(9):
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        if os.path.basename(cur) == parts[0]:
            found = _find(parent, parts)
            if found:
                return found
        cur = parent
    return None



def clear_caches() -> None:
    """Forget the folder listings and resolved imports (the engine calls this at the end of a run)."""
    _entries.cache_clear()
    _resolve.cache_clear()
    _REAL_DIRS.clear()


def is_entry(facts: FileFacts, text: str) -> bool:
    """Does this file run something when executed?"""
    if "__main__" in text and "__name__" in text:
        return True
    return facts.runs_at_module_level


def build_programs(
    run_files: Dict[str, object],
    load: Callable[[str], Optional[object]],
    roots: Optional[List[Path]] = None,
    deferred: Sequence[str] = (),
    elsewhere: AbstractSet[str] = frozenset(),
) -> List[Program]:
    """``run_files``: real path -> FileContext of every parsed file of the run; ``load`` parses another
    file on demand (or returns None; a context it returns with ``in_run`` set is a file of the run that
    was not parsed up front). ``roots``: the run's project roots (default: the common folder of
    ``run_files``). ``deferred``: real paths of files of the run that were not parsed (no training code in
    them): ``load`` parses one when a program takes a name from it. ``elsewhere``: real paths of files of
    the run that another worker process lints (see ``_ImporterFinder``). Returns the programs of the run."""
    nodes: Dict[str, ProgramFile] = {}
    for real, ctx in run_files.items():
        nodes[real] = ProgramFile(real, ctx.path, ctx, True)
    if roots is None:
        roots = sorted({Path(os.path.commonpath([p for p in run_files])) if run_files else Path.cwd()})
    failed: Set[str] = set()
    memo: Dict[Tuple[str, str], Optional[str]] = {}
    root_list = list(roots)

    def where(module: str, importer: str) -> Optional[str]:
        """The real path of the project file ``importer`` means by ``module`` (None: a library). Asked
        again and again by the programs of a big package: resolved once per build."""
        key = (module, importer)
        try:
            return memo[key]
        except KeyError:
            pass
        found = resolve_path(module, importer, root_list) if module else None
        hit = memo[key] = real_path(found) if found is not None else None
        return hit

    def node_for(real: str) -> Optional[ProgramFile]:
        hit = nodes.get(real)
        if hit is not None or real in failed:
            return hit
        ctx = load(real)
        if ctx is None:
            failed.add(real)
            return None
        nodes[real] = ProgramFile(real, ctx.path, ctx, bool(getattr(ctx, "in_run", False)))
        return nodes[real]

    def deps(pf: ProgramFile) -> List[str]:
        """The real paths of the project files ``pf`` imports (resolved on disk: none is parsed)."""
        hit = pf.__dict__.get("_deps")
        if hit is None:
            hit = []
            for mod in imported_modules(pf.facts):
                real = where(mod, pf.path)
                if real is None:
                    continue
                if real != pf.path and real not in hit:
                    hit.append(real)
            pf.__dict__["_deps"] = hit
        return hit

    steps: Dict[Tuple[str, Optional[str]], list] = {}  # (see _closure)

    def program(entry: ProgramFile, library: bool = False) -> Program:
        files, edges = _closure(entry, node_for, where, steps)
        return Program(entry, files, edges, library=library)

    imported_by_run: Set[str] = {d for pf in list(nodes.values()) if pf.in_run for d in deps(pf)}
    programs = []
    for real, pf in list(nodes.items()):
        if not pf.in_run:
            continue
        if not is_entry(pf.facts, pf.ctx.source.text):
            continue
        if real in imported_by_run and "__main__" not in pf.ctx.source.text:
            continue
        programs.append(program(pf))
    # files some entry of the run takes names from (a lone model.py that is its own entry because of a
    # `__main__` smoke test still wants the scripts that train it)
    covered = {f.path for p in programs for f in p.files if f is not p.entry}
    orphans = [pf for real, pf in list(nodes.items()) if pf.in_run and real not in covered and not _runs_by_itself(pf)]
    # a file of the run left unparsed (no training code) that no program of the run reached: the scripts
    # that import it still judge it (only its path is needed to look for them)
    orphans += [ProgramFile(real, real, None, True) for real in deferred if real not in nodes and real not in covered]
    if orphans:
        finder = _ImporterFinder(nodes, node_for, deps, where, elsewhere)
        entries: List[ProgramFile] = []
        done = {p.entry.path for p in programs}
        for pf in orphans:
            for entry in finder.entries_importing(pf):
                if entry not in entries and entry.path not in done:
                    entries.append(entry)
        # an entry that imports the file but takes nothing from it (its program does not hold it) has
        # nothing to say about it
        wanted = {pf.path for pf in orphans}
        for entry in entries:
            found = program(entry)
            if any(f.path in wanted for f in found.files[1:]):
                programs.append(found)
    # what is left: library modules of the run that no entry runs (a Trainer class in a package)
    covered = {f.path for p in programs for f in p.files}
    for real, pf in list(nodes.items()):
        if pf.in_run and real not in covered and pf.ctx is not None and not _is_test(real):
            programs.append(program(pf, library=True))
    return programs


def _closure(entry: ProgramFile, node_for: Callable[[str], Optional[ProgramFile]],
             where: Callable[[str, str], Optional[str]], steps: Optional[Dict[Tuple[str, Optional[str]], list]] = None,
             ) -> Tuple[List[ProgramFile], Dict[str, List[str]]]:
    """The files of ``entry``'s program, breadth-first, and the imports followed (see ``Program``).

    Only what a name reaches: from a file, the imports whose bound names the file reads (its ``Links``).
    ``from pkg import a`` asks ``pkg`` (its ``__init__.py``) for ``a``: a file that defines ``a`` is taken
    whole (its own used imports are followed in turn); a re-export (``from .mod import a``) passes the
    question on, and the ``__init__.py`` is kept (rules resolve the name through it) without its other
    imports; a submodule named ``a`` is taken whole; a star import passes it on to the star's module; a
    name found nowhere takes the file whole. ``import utils`` read as ``utils.set_seed`` asks ``utils``
    for ``set_seed``; a module used as a value (``getattr(models, arch)``) is asked for everything it
    defines and re-exports; an import that nothing of a file reads (outside a package ``__init__.py``)
    takes its module whole, for what it does when it runs (a seed, a registration). The answer depends on
    the files' contents only (not on which rule asks, on the cache or on --jobs); at most
    MAX_PROGRAM_FILES files.

    ``steps``: what answering a question of a file asks of other files, kept across the programs of one
    build (the programs of a package share most of their files: timm's 162 model modules each ask its
    layers the same questions). A kept answer is replayed only where the program is too far from
    MAX_PROGRAM_FILES for the limit to cut it; nearer, the question is answered afresh.
    """
    files = [entry]
    index = {entry.path: entry}
    edges: Dict[str, List[str]] = {}
    asked: Set[Tuple[str, Optional[str]]] = {(entry.path, None)}
    queue: deque = deque([(entry, None)])  # (file, name asked of it; None: the whole file)

    def room(real: str) -> bool:
        return real in index or len(files) < MAX_PROGRAM_FILES

    def target(src: ProgramFile, module: str) -> Optional[ProgramFile]:
        return _target(src, module, where, node_for, room)

    def ask(src: Optional[ProgramFile], pf: Optional[ProgramFile], name: Optional[str]) -> None:
        if pf is None:
            return
        if pf.path not in index:
            if len(files) >= MAX_PROGRAM_FILES:
                return
            index[pf.path] = pf
            files.append(pf)
        if src is not None and pf is not src:
            out = edges.setdefault(src.path, [])
            if pf.path not in out:
                out.append(pf.path)
        if (pf.path, name) not in asked:
            asked.add((pf.path, name))
            queue.append((pf, name))

    step = _stepper(target, ask)
    recording: list = []
    record = _stepper(lambda src, module: _target(src, module, where, node_for),
                      lambda src, pf, name: recording.append((src, pf, name)))
    while queue:
        pf, name = queue.popleft()
        if steps is None:
            step(pf, name)
            continue
        key = (pf.path, name)
        kept = steps.get(key)
        if kept is None:
            if len(files) + _most_asked(pf) >= MAX_PROGRAM_FILES:
                step(pf, name)  # near the limit: it may cut what this question asks
                continue
            recording.clear()
            record(pf, name)
            kept = steps[key] = list(recording)
        if len(files) + sum(1 for _, got, _ in kept if got is not None and got.path not in index) >= MAX_PROGRAM_FILES:
            step(pf, name)
            continue
        for src, got, asked_name in kept:
            ask(src, got, asked_name)
    return files, edges


def _target(src: ProgramFile, module: str, where, node_for, room=None) -> Optional[ProgramFile]:
    """The program file ``src`` means by ``module`` (None: a library, or, with ``room``, a new file the
    program has no room for: ``room(real)`` says whether it may take it)."""
    real = where(module, src.path)
    if real is None:
        return None
    if real == src.path:
        return src
    if room is not None and not room(real):
        return None
    return node_for(real)


def _most_asked(pf: ProgramFile) -> int:
    """At most how many files answering one question of ``pf`` asks (two per import: a module, or its
    package and the submodule), so a question answered below MAX_PROGRAM_FILES minus this is never cut."""
    links = pf.facts.links
    return 2 * (len(links.froms) + len(links.modules) + len(links.stars)) + 2


def _stepper(target, ask):
    """One question of a file answered (see ``_closure``): ``step(pf, name)`` calls ``ask(src, file,
    name)`` for each file (and name) the answer leads to, resolving modules with ``target``."""

    def from_import(src: ProgramFile, module: str, name: str) -> None:
        """``from module import name`` (``name`` may go on: ``encoder.PCNNEncoder``, read through it)."""
        base = target(src, module)
        if base is None or base is src:
            # a namespace package (no __init__.py), or `from . import losses` in the package's own
            # __init__.py: the name is a module
            head, _, rest = name.partition(".")
            sep = "" if module.endswith(".") or not module else "."
            full = target(src, f"{module}{sep}{head}")
            if full is not src:
                ask(src, full, rest or None)
            return
        ask(src, base, name)

    def module_import(src: ProgramFile, local: str, module: str, sub: str, tails: Sequence[str]) -> None:
        """``import module`` (bound to ``local``; ``sub``: the path from ``local`` to ``module``), read
        through the chains ``tails``."""
        for tail in tails:
            if not sub:
                rest = tail
            elif tail == sub or tail.startswith(sub + "."):
                rest = tail[len(sub) + 1:]
            else:  # `import a.b` read as `a.x`: the package `a`'s x
                ask(src, target(src, local), tail or EVERYTHING)
                continue
            ask(src, target(src, module), rest or EVERYTHING)

    def through(tails: Sequence[str], name: str) -> List[str]:
        """The names asked of a module for a local bound to its ``name``, read through ``tails``."""
        return [f"{name}.{t}" if t else name for t in tails] or [name]

    def step(pf: ProgramFile, name: Optional[str]) -> None:
        links = pf.facts.links
        if name is None or name == EVERYTHING:
            if name is not None:
                ask(None, pf, None)
            every = name is not None
            # an import that nothing of the file reads may be there for what the module does when it runs
            # (a seed, a registration): its module is taken too, but not the names a package __init__.py
            # re-exports (asked for one by one)
            side = os.path.basename(pf.path) != "__init__.py"
            for local, module, imported in links.froms:
                if every or local in links.used:
                    for asked_name in through(() if every else links.attrs.get(local, ()), imported):
                        from_import(pf, module, asked_name)
                elif side:
                    ask(pf, target(pf, module), None)
            for local, module, sub in links.modules:
                if every or (side and local not in links.used):
                    ask(pf, target(pf, module), None)
                elif local in links.used:
                    module_import(pf, local, module, sub, links.attrs.get(local, ()) or ("",))
            for module in links.stars:
                star = target(pf, module)
                for free in ([EVERYTHING] if every else links.free):
                    ask(pf, star, free)
            return
        head, _, rest = name.partition(".")
        found = False
        if head in links.defined:  # (``rest``: an attribute of a class or of an object)
            ask(None, pf, None)
            found = True
        for local, module, imported in links.froms:
            if local == head:
                from_import(pf, module, f"{imported}.{rest}" if rest else imported)
                found = True
        for local, module, sub in links.modules:
            if local == head:
                if sub:  # `import a.b` in a package that re-exports `a`
                    module_import(pf, local, module, sub, [rest])
                else:
                    ask(pf, target(pf, module), rest or EVERYTHING)
                found = True
        if not found and os.path.basename(pf.path) == "__init__.py":
            sub_module = target(pf, "." + head)
            if sub_module is not None and sub_module is not pf:
                ask(pf, sub_module, rest or None)
                found = True
        if not found and links.stars:
            for module in links.stars:
                ask(pf, target(pf, module), name)
            found = True
        if not found:  # defined some other way (globals(), a loop over names...): the whole file
            ask(None, pf, None)

    return step


def _runs_by_itself(pf: ProgramFile) -> bool:
    """A file of the run that is an entry script in its own right (``train.py``): nobody needs to import
    it. A module with a ``__main__`` smoke test that defines classes (``model.py``) still gets its importers."""
    text = pf.ctx.source.text
    if not is_entry(pf.facts, text):
        return False
    return pf.facts.runs_at_module_level or not pf.facts.classes


def project_root(path: str) -> str:
    """The nearest folder above ``path`` that holds a project marker (``.git``, ``pyproject.toml``,
    ``setup.py``...), at most six levels up; else the file's own folder."""
    folder = os.path.dirname(path)
    cur = folder
    for _ in range(7):
        names = _entries(cur)
        if any(m in names for m in _PROJECT_MARKERS):
            return cur
        parent = os.path.dirname(cur)
        if parent == cur:
            break
        cur = parent
    return folder


def _walk_tree(root: str) -> Iterator[Tuple[str, List[str], List[str]]]:
    """``os.walk(root)`` (top-down, symlinked folders not entered, ``dirs`` may be pruned) with a stack:
    Python 3.11's os.walk recurses once per level, and a project may be nested deeper than that."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        dirs: List[str] = []
        files: List[str] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield folder, dirs, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs))


class _ImporterFinder:
    """Which project files import a given file: a text search first (no parse), then the parsed imports."""

    def __init__(self, nodes: Dict[str, ProgramFile], node_for, deps, where,
                 elsewhere: AbstractSet[str] = frozenset()) -> None:
        self.nodes, self.node_for, self.deps, self.where = nodes, node_for, deps, where
        self.elsewhere = elsewhere
        self._importers: Dict[Tuple[str, str, Optional[frozenset]], List[ProgramFile]] = {}
        self._leads: Dict[Tuple[str, str, Optional[frozenset]], Tuple[bool, Optional[frozenset]]] = {}
        self._listing: Dict[str, List[str]] = {}
        self._texts: Dict[str, str] = {}
        self._import_words: Dict[str, frozenset] = {}

    def _py_files(self, root: str) -> List[str]:
        hit = self._listing.get(root)
        if hit is None:
            hit = []
            for folder, dirs, files in _walk_tree(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS and not d.endswith(".egg-info"))
                for name in sorted(files):
                    if name.endswith(".py"):
                        hit.append(real_path(os.path.join(folder, name)))
                if len(hit) >= MAX_SCAN_FILES:
                    break
            self._listing[root] = hit
        return hit

    def _text(self, real: str) -> str:
        text = self._texts.get(real)
        if text is None:
            node = self.nodes.get(real)
            if node is not None:
                text = node.ctx.source.text
            else:
                from trainlint.source import DEFAULT_MAX_FILE_SIZE, SourceError, read_regular

                try:  # (only a regular file: a FIFO or a /dev/zero link named *.py must not hang the run)
                    text = read_regular(real, DEFAULT_MAX_FILE_SIZE).decode("utf-8", errors="replace")
                except SourceError:
                    text = ""
            self._texts[real] = text
        return text

    def _words_of_imports(self, real: str) -> frozenset:
        """The names a file's imports name (each part of a module's dotted name, each name of a from-import,
        as ``import_statements`` reads them), computed once per file: asking it for every target is a set
        lookup, where a regular expression per target over every file of a big package was quadratic
        (timm: 5 s of 7)."""
        hit = self._import_words.get(real)
        if hit is None:
            words: set = set()
            for base, names in import_statements(self._text(real)):
                if base is not None:
                    words.update(base.split("."))
                    words.update(names)
                else:
                    for name in names:
                        words.update(name.split("."))
            hit = self._import_words[real] = frozenset(words)
        return hit

    def _may_ask(self, real: str, target: ProgramFile, names: frozenset) -> bool:
        """From the text alone (no parse): may this file ask ``target`` for one of ``names``? False only
        when each import of ``target`` in it is a ``from target import a, b`` of other names (``train.py``'s
        ``from timm.models import create_model``, where ``vision_transformer.py`` is looked for)."""
        for base, words in import_statements(self._text(real)):
            if base is None:
                if any(self._resolves_at(module, real) == target.path for module in words):
                    return True
                continue
            if self._resolves_at(base, real) == target.path:
                if "*" in words or any(w in names for w in words):
                    return True
                continue
            sep = "" if base.endswith(".") or not base else "."
            if any(self._resolves_at(f"{base}{sep}{w}", real) == target.path for w in words if w.isidentifier()):
                return True  # the module itself, by its name
        return False

    def _resolves_at(self, module: str, real: str) -> Optional[str]:
        return self.where(module, real)

    def importers(self, target: ProgramFile, root: str, names: Optional[frozenset] = None) -> List[ProgramFile]:
        """Project files under ``root`` whose imports resolve to ``target`` (with ``names``: only those that
        may ask it for one of them; see ``_may_ask``). Memoised: the orphans of a package share importers."""
        key = (target.path, root, names)
        hit = self._importers.get(key)
        if hit is None:
            hit = self._importers[key] = self._find_importers(target, root, names)
        return hit

    def _find_importers(self, target: ProgramFile, root: str, names: Optional[frozenset]) -> List[ProgramFile]:
        base = os.path.basename(target.path)
        stem = os.path.basename(os.path.dirname(target.path)) if base == "__init__.py" else base[:-3]
        if not stem.isidentifier():
            return []
        out = []
        for real in self._py_files(root):
            if real == target.path:
                continue
            if real in self.elsewhere and target.in_run:
                # a file of the run that another worker lints imports no file of this worker's: the run is
                # cut where no import crosses (engine._groups). Reading it only to learn that was most of
                # the cost of a chunk of Lightning's test files (367 of its source files read again).
                continue
            if stem not in self._words_of_imports(real):
                continue
            if names is not None and real not in self.nodes and not self._may_ask(real, target, names):
                continue
            node = self.node_for(real)
            if node is None:
                continue
            if target.path in self.deps(node):
                out.append(node)
        return out

    def _resolves(self, module: str, importer: ProgramFile) -> Optional[str]:
        return self.where(module, importer.path)

    def leads(self, imp: ProgramFile, target: ProgramFile, names: Optional[frozenset]) -> Tuple[bool, Optional[frozenset]]:
        """Can a program that takes names from ``imp`` reach ``target`` through them, when ``names`` are the
        names of ``target`` that lead on to the file looked for (None: any)? And which names of ``imp``
        lead there (None: any)? A cheap, safe filter (never "no" where ``_closure`` would say yes): an
        entry that asks ``timm/models/__init__.py`` for ``create_model`` does not reach
        ``vision_transformer.py``, which that ``__init__.py`` star-imports, and is not analysed for it."""
        key = (imp.path, target.path, names)
        hit = self._leads.get(key)
        if hit is None:
            hit = self._leads[key] = self._lead(imp, target, names)
        return hit

    def _lead(self, imp: ProgramFile, target: ProgramFile, names: Optional[frozenset]) -> Tuple[bool, Optional[frozenset]]:
        links = imp.facts.links
        asks = False
        exported: set = set()
        for local, module, name in links.froms:
            sep = "" if module.endswith(".") or not module else "."
            if self._resolves(module, imp) == target.path:
                if names is None or name in names:
                    asks = True
                    exported.add(local)
            elif self._resolves(f"{module}{sep}{name}", imp) == target.path:  # the module itself
                asks = True
                exported.add(local)
        for local, module, _ in links.modules:
            if self._resolves(module, imp) == target.path:
                asks = True
                exported.add(local)
        for module in links.stars:
            if self._resolves(module, imp) != target.path:
                continue
            asks = True
            if names is not None:
                exported |= names
                continue
            theirs = target.facts.links if target.ctx is not None else None
            if theirs is None or theirs.stars:
                return True, None
            exported |= theirs.defined | {x[0] for x in theirs.froms} | {x[0] for x in theirs.modules}
        if not asks:
            return False, frozenset()
        if os.path.basename(imp.path) != "__init__.py" or exported & links.used:
            return True, None  # taken whole when reached (its own code reads what leads on)
        if os.path.dirname(target.path) == os.path.dirname(imp.path) or \
                os.path.dirname(os.path.dirname(target.path)) == os.path.dirname(imp.path):
            stem = os.path.basename(os.path.dirname(target.path)) if target.path.endswith("__init__.py") else \
                os.path.basename(target.path)[:-3]
            exported.add(stem)  # `pkg.module.name`: the submodule is an attribute of its package
        return True, frozenset(exported)

    def entries_importing(self, pf: ProgramFile) -> List[ProgramFile]:
        """Entry scripts whose names may reach ``pf``, directly or through up to IMPORTER_DEPTH project
        files (``leads``: a package ``__init__.py`` that re-exports ``pf`` leads on only for its names)."""
        root = project_root(pf.path)
        found: List[ProgramFile] = []
        frontier: List[Tuple[ProgramFile, Optional[frozenset]]] = [(pf, None)]
        seen = {pf.path}
        for _ in range(IMPORTER_DEPTH):
            nxt: Dict[str, Tuple[ProgramFile, Optional[frozenset]]] = {}
            for target, names in frontier:
                for imp in self.importers(target, root, names):
                    if imp.path in seen:
                        continue
                    reaches, leading = self.leads(imp, target, names)
                    if not reaches:
                        continue
                    if is_entry(imp.facts, imp.ctx.source.text) and not _is_test(imp.path):
                        seen.add(imp.path)
                        found.append(imp)
                        continue
                    known = nxt.get(imp.path)
                    if known is not None:  # reached from two targets: what leads on through either
                        leading = None if known[1] is None or leading is None else known[1] | leading
                    nxt[imp.path] = (imp, leading)
            seen.update(nxt)
            if found or not nxt:
                break
            frontier = list(nxt.values())
        return found[:MAX_IMPORTING_ENTRIES]


def _is_test(path: str) -> bool:
    base = os.path.basename(path)
    return base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py"


def iter_program_facts(program: Program) -> Iterator[FileFacts]:
    for f in program.files:
        yield f.facts
