"""Path discovery: which files a run lints.

Folders are walked recursively for ``.py`` files (and ``.ipynb`` notebooks); hidden folders, virtual
environments, build folders, what ``.gitignore`` ignores and the configured ``exclude`` are skipped.
Files named explicitly are linted whatever their suffix, unless ``exclude`` matches them (so a
pre-commit hook honours the project's excludes). Symlinks are followed once: a loop is reported, not
walked forever.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pathspec

from trainlint.config import Config
from trainlint.source import MAX_AUX_FILE_SIZE, SourceError, read_regular

SUFFIXES = (".py", ".pyi", ".ipynb")


@dataclass
class Discovery:
    files: List[Tuple[str, str]] = field(default_factory=list)  # (real path to read, path to display)
    errors: List[Tuple[str, str]] = field(default_factory=list)  # (path, message): exit code 2
    warnings: List[str] = field(default_factory=list)  # told, not fatal


@lru_cache(maxsize=512)
def _spec(patterns: Tuple[str, ...]) -> pathspec.PathSpec:
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def glob_matches(pattern: str, rel_path: str) -> bool:
    """gitignore-style match of one pattern against a '/'-separated relative path."""
    return _spec((pattern,)).match_file(rel_path)


def display_path(path: Path) -> str:
    """Relative to the cwd when below it, else as given."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _git_root(start: Path) -> Optional[Path]:
    for folder in (start, *start.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return None


def _valid_patterns(lines: Sequence[str], where: str, warnings: List[str]) -> List[str]:
    """The lines of an ignore file that pathspec can compile. Git skips a line it cannot read (``!``
    alone, a trailing ``\\``); pathspec raises on the whole file: drop the line, say so once."""
    out = []
    for number, line in enumerate(lines, 1):
        try:
            _spec((line,))
        except Exception as exc:  # (pathspec raises ValueError subclasses: GitWildMatchPatternError...)
            warnings.append(f"{where}:{number}: ignored the invalid pattern {line!r} ({type(exc).__name__})")
            continue
        out.append(line)
    return out


def _is_dir(path: Path) -> bool:
    """Path.is_dir() that says False, not raise, when the path cannot be examined (no permission...)."""
    try:
        return os.path.isdir(path)
    except (OSError, ValueError):
        return False


def _is_file(path: Path) -> bool:
    try:
        return os.path.isfile(path)
    except (OSError, ValueError):
        return False


class _Ignores:
    """The .gitignore files that apply to a folder, each relative to its own folder."""

    def __init__(self, warnings: Optional[List[str]] = None) -> None:
        self._cache: Dict[Path, Optional[pathspec.PathSpec]] = {}
        self._warnings = warnings if warnings is not None else []

    def spec_for(self, folder: Path) -> Optional[pathspec.PathSpec]:
        if folder not in self._cache:
            lines: List[str] = []
            for name in (".gitignore",) + ((".git/info/exclude",) if _is_dir(folder / ".git") else ()):
                if not os.path.lexists(folder / name):
                    continue
                try:
                    # Only a regular file, and not a huge one: a FIFO named .gitignore would block the run.
                    data = read_regular(str(folder / name), MAX_AUX_FILE_SIZE)
                except SourceError as exc:
                    self._warnings.append(f"{display_path(folder / name)}: ignored: {exc}")
                    continue
                lines.extend(_valid_patterns(data.decode("utf-8", errors="replace").splitlines(),
                                             display_path(folder / name), self._warnings))
            self._cache[folder] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._cache[folder]

    def ignored(self, path: Path, is_dir: bool, chain: Sequence[Path]) -> bool:
        # As git: the deepest .gitignore with a verdict wins, so a nested `!keep.py` re-includes a file
        # a parent .gitignore ignores.
        for folder in reversed(chain):
            spec = self.spec_for(folder)
            if spec is None:
                continue
            try:
                rel = path.relative_to(folder).as_posix()
            except ValueError:
                continue
            rel += "/" if is_dir else ""
            if hasattr(spec, "check_file"):  # pathspec >= 0.12
                verdict = spec.check_file(rel).include
                if verdict is not None:
                    return bool(verdict)
            elif spec.match_file(rel):
                return True
        return False


def _is_venv(folder: Path) -> bool:
    return _is_file(folder / "pyvenv.cfg")


def discover(paths: Sequence[str], config: Config) -> Discovery:
    result = Discovery()
    exclude = _spec(tuple(config.exclude) + tuple(config.extend_exclude))
    ignores = _Ignores(result.warnings)
    seen_files: set = set()

    anchor: List[Path] = [config.root]  # what patterns are relative to for paths outside the root

    def excluded(path: Path, is_dir: bool) -> bool:
        # normpath, not resolve(): `../src/x.py` is under the root, a symlink into it counts as inside.
        abs_path = Path(os.path.normpath(os.path.abspath(path)))
        rel = None
        for candidate in (abs_path, Path(os.path.realpath(abs_path))):
            try:
                rel = candidate.relative_to(config.root).as_posix()
                break
            except ValueError:
                continue
        if rel is None:
            # Outside the project: match below the linted argument, never on the folders above it
            # (a checkout under /tmp/build/ must not be excluded by the default "build" pattern).
            try:
                rel = abs_path.relative_to(anchor[0]).as_posix()
            except ValueError:
                rel = abs_path.name
        if rel in ("", "."):
            return False
        return exclude.match_file(rel + ("/" if is_dir else ""))

    def add_file(path: Path) -> None:
        real = os.path.realpath(path)
        if real in seen_files:
            return
        seen_files.add(real)
        result.files.append((str(path), display_path(path)))

    walked: set = set()  # real folders already walked: a symlink "diamond" is walked once, not 2^n times
    for raw in paths:
        path = Path(raw)
        kind, problem = _examine(path)
        if problem is not None:
            result.errors.append((raw, problem))
            continue
        if kind == "file":
            anchor[0] = Path(os.path.normpath(os.path.abspath(path))).parent
            if not excluded(path.absolute(), False):
                add_file(path)
            continue
        before = len(result.files)
        root = Path(os.path.normpath(os.path.abspath(path)))
        anchor[0] = root
        resolved = Path(os.path.realpath(root))  # (never Path.resolve(): it raises on a symlink loop)
        git_root = _git_root(resolved) if config.respect_gitignore else None
        # .gitignore files above the starting folder (up to the repository root) apply too.
        chain: List[Path] = []
        if git_root is not None:
            chain = [p for p in reversed(resolved.parents) if p == git_root or git_root in p.parents]
            chain.append(resolved)
        elif config.respect_gitignore:
            # Not in a git repository: the .gitignore files from the project root (the folder of the
            # config file) down apply, so `trainlint src` skips what `trainlint .` skips.
            top = config.root if config.path is not None else resolved
            chain = [p for p in reversed(resolved.parents) if p == top or top in p.parents]
            chain.append(resolved)
        if str(resolved) not in walked:
            walked.add(str(resolved))
            _walk(root, resolved, chain, config, ignores, excluded, add_file, result, {str(resolved)}, walked)
        if len(result.files) == before:
            result.warnings.append(f"no Python files found under {raw}")
    return result


def _examine(path: Path) -> Tuple[Optional[str], Optional[str]]:
    """("file" | "dir", None) for a path to lint, else (None, what is wrong with it): never raises."""
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        return None, ("broken symbolic link" if os.path.islink(path) else "no such file or directory")
    except PermissionError:
        return None, "permission denied"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "symbolic link loop"
        return None, exc.strerror or str(exc)
    except ValueError as exc:  # (a NUL byte in the name)
        return None, str(exc)
    if stat.S_ISREG(st.st_mode):
        return "file", None
    if stat.S_ISDIR(st.st_mode):
        return "dir", None
    return None, "not a regular file or directory"


def _walk(folder, resolved, chain, config, ignores, excluded, add_file, result, visiting, walked) -> None:
    """Depth-first, in name order, with an explicit stack (a folder nested thousands deep is no
    RecursionError)."""
    stack = [(folder, resolved, chain, visiting, _entries(folder, result))]
    while stack:
        folder, resolved, chain, visiting, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        path = folder / entry.name
        real_path = resolved / entry.name
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            if entry.name.startswith(".") or entry.name in ("__pycache__",):
                continue
            if excluded(path, True) or _is_venv(path):
                continue
            if config.respect_gitignore and ignores.ignored(real_path, True, chain):
                continue
            target = os.path.realpath(path)
            if target in visiting:
                result.warnings.append(f"skipped {display_path(path)}: symbolic link loop")
                continue
            if target in walked:  # the same folder reached by another link: its files are listed once
                continue
            walked.add(target)
            try:
                link = entry.is_symlink()
            except OSError:
                link = False
            sub_resolved = Path(target) if link else real_path
            sub_chain = chain + [real_path] if config.respect_gitignore else chain
            stack.append((path, sub_resolved, sub_chain, visiting | {target}, _entries(path, result)))
        else:
            if not entry.name.endswith(SUFFIXES):
                continue
            try:
                if not entry.is_file():
                    if entry.is_symlink() and not os.path.exists(path):
                        result.warnings.append(f"skipped {display_path(path)}: broken symbolic link")
                    else:  # a FIFO, a device, a socket: never read (it could block or never end)
                        result.warnings.append(f"skipped {display_path(path)}: not a regular file")
                    continue
            except OSError:
                continue
            if excluded(path, False):
                continue
            if config.respect_gitignore and ignores.ignored(real_path, False, chain):
                continue
            add_file(path)


def _entries(folder: Path, result: Discovery):
    """The entries of a folder in name order; an unreadable folder is reported and has none."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        result.errors.append((display_path(folder), "permission denied"))
        return iter(())
    except OSError as exc:
        result.errors.append((display_path(folder), exc.strerror or str(exc)))
        return iter(())
    return iter(entries)
