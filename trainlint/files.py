"""Path discovery: which files a run lints.

Folders are walked recursively for ``.py`` files (and ``.ipynb`` notebooks); hidden folders, virtual
environments, build folders, what ``.gitignore`` ignores and the configured ``exclude`` are skipped.
Files named explicitly are linted whatever their suffix, unless ``exclude`` matches them (so a
pre-commit hook honours the project's excludes). Symlinks are followed once: a loop is reported, not
walked forever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pathspec

from trainlint.config import Config

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
        if (folder / ".git").exists():
            return folder
    return None


class _Ignores:
    """The .gitignore files that apply to a folder, each relative to its own folder."""

    def __init__(self) -> None:
        self._cache: Dict[Path, Optional[pathspec.PathSpec]] = {}

    def spec_for(self, folder: Path) -> Optional[pathspec.PathSpec]:
        if folder not in self._cache:
            lines: List[str] = []
            for name in (".gitignore",) + ((".git/info/exclude",) if (folder / ".git").is_dir() else ()):
                try:
                    with open(folder / name, encoding="utf-8", errors="replace") as fh:
                        lines.extend(fh.read().splitlines())
                except OSError:
                    pass
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
    return (folder / "pyvenv.cfg").is_file()


def discover(paths: Sequence[str], config: Config) -> Discovery:
    result = Discovery()
    exclude = _spec(tuple(config.exclude) + tuple(config.extend_exclude))
    ignores = _Ignores()
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

    for raw in paths:
        path = Path(raw)
        if not os.path.lexists(path):
            result.errors.append((raw, "no such file or directory"))
            continue
        if path.is_symlink() and not path.exists():
            result.errors.append((raw, "broken symbolic link"))
            continue
        if path.is_file():
            anchor[0] = Path(os.path.normpath(os.path.abspath(path))).parent
            if not excluded(path.absolute(), False):
                add_file(path)
            continue
        if not path.is_dir():
            result.errors.append((raw, "not a regular file or directory"))
            continue
        before = len(result.files)
        root = Path(os.path.normpath(os.path.abspath(path)))
        anchor[0] = root
        git_root = _git_root(root.resolve()) if config.respect_gitignore else None
        # .gitignore files above the starting folder (up to the repository root) apply too.
        chain: List[Path] = []
        if git_root is not None:
            resolved = root.resolve()
            chain = [p for p in reversed(resolved.parents) if p == git_root or git_root in p.parents]
            chain.append(resolved)
        elif config.respect_gitignore:
            # Not in a git repository: the .gitignore files from the project root (the folder of the
            # config file) down apply, so `trainlint src` skips what `trainlint .` skips.
            resolved = root.resolve()
            top = config.root if config.path is not None else resolved
            chain = [p for p in reversed(resolved.parents) if p == top or top in p.parents]
            chain.append(resolved)
        _walk(root, root.resolve(), chain, config, ignores, excluded, add_file, result, {str(root.resolve())})
        if len(result.files) == before:
            result.warnings.append(f"no Python files found under {raw}")
    return result


def _walk(folder, resolved, chain, config, ignores, excluded, add_file, result, visiting) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError:
        result.errors.append((display_path(folder), "permission denied"))
        return
    except OSError as exc:
        result.errors.append((display_path(folder), exc.strerror or str(exc)))
        return
    for entry in entries:
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
            sub_resolved = Path(target) if entry.is_symlink() else real_path
            sub_chain = chain + [real_path] if config.respect_gitignore else chain
            _walk(path, sub_resolved, sub_chain, config, ignores, excluded, add_file, result, visiting | {target})
        else:
            if not entry.name.endswith(SUFFIXES):
                continue
            try:
                if not entry.is_file():
                    if entry.is_symlink():
                        result.warnings.append(f"skipped {display_path(path)}: broken symbolic link")
                    continue
            except OSError:
                continue
            if excluded(path, False):
                continue
            if config.respect_gitignore and ignores.ignored(real_path, False, chain):
                continue
            add_file(path)
