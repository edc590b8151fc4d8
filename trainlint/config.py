"""Configuration: ``[tool.trainlint]`` in pyproject.toml (or a ``trainlint.toml``) plus CLI overrides.

Rule selection follows ruff: a selector is a code (``TL202``), a prefix (``TL2``) or ``ALL``; within
one layer (the file, then the command line) the most specific selector wins and ``ignore`` wins a tie;
a layer that has ``select`` starts over from it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from trainlint.findings import Severity
from trainlint.source import DEFAULT_MAX_FILE_SIZE, MAX_AUX_FILE_SIZE, FileTooLarge, SourceError, format_size, read_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib


class ConfigError(Exception):
    """A configuration problem; the message names the file and the key."""


CONFIG_FILES = (".trainlint.toml", "trainlint.toml", "pyproject.toml")

KNOWN_KEYS = {
    "select": "list of codes or prefixes to enable (default: every rule that is not opt-in)",
    "extend-select": "codes or prefixes to enable on top of select",
    "ignore": "codes or prefixes to disable",
    "per-file-ignores": "table of glob -> codes disabled in matching files",
    "exclude": "gitignore-style patterns of files and folders never linted (replaces the defaults)",
    "extend-exclude": "patterns excluded on top of the defaults",
    "severity": "table of code or prefix -> error | warning | info",
    "min-severity": "report only findings at or above this severity",
    "output-format": "default output format",
    "respect-gitignore": "skip files ignored by .gitignore (default true)",
    "report-unused-suppressions": "report suppressions that silence nothing (TL002)",
    "fix": "apply safe fixes, like --fix (default false)",
    "fail-level": "exit 1 only for findings at or above this severity (default info: every finding fails)",
    "extend": "path of a configuration file to inherit (relative to this one), e.g. \"../pyproject.toml\"",
    "unsafe-fixes": "also apply (and count as fixable) unsafe fixes, like --unsafe-fixes (default false)",
    "max-file-size": "largest file linted, in bytes or with a unit (\"2MB\", \"512KiB\"); bigger files are skipped with a warning (default 1MiB)",
    "cache-dir": "folder of the results cache (default: .trainlint_cache at the project root)",
}

DEFAULT_EXCLUDE = (
    ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints", ".mypy_cache",
    ".nox", ".pants.d", ".pytest_cache", ".pytype", ".ruff_cache", ".svn", ".tox", ".venv", ".vscode",
    "__pypackages__", "_build", "buck-out", "build", "dist", "node_modules", "site-packages", "venv",
    "__pycache__",
)


@dataclass
class Selection:
    select: Optional[List[str]] = None
    extend_select: List[str] = field(default_factory=list)
    ignore: List[str] = field(default_factory=list)


@dataclass
class Config:
    path: Optional[Path] = None  # the file it came from
    root: Path = field(default_factory=Path.cwd)  # folder that globs are relative to
    layers: List[Selection] = field(default_factory=list)
    per_file_ignores: List[Tuple[str, List[str]]] = field(default_factory=list)
    exclude: List[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    extend_exclude: List[str] = field(default_factory=list)
    severity: Dict[str, Severity] = field(default_factory=dict)
    min_severity: Severity = Severity.INFO
    output_format: Optional[str] = None
    respect_gitignore: bool = True
    report_unused_suppressions: bool = False
    fix: bool = False
    unsafe_fixes: bool = False
    fail_level: Severity = Severity.INFO
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    cache_dir: Optional[Path] = None  # None: <root>/.trainlint_cache

    # -- selection -------------------------------------------------------------------------
    def enabled_codes(self, all_codes: Sequence[str]) -> List[str]:
        """The codes a run enables. The default is every rule except the engine-only diagnostics and
        the opt-in rules; a selection that names one of those (its code, a prefix, ``ALL``) enables it."""
        from trainlint.rules import opt_in_codes

        off_by_default = ENGINE_ONLY | set(opt_in_codes())
        enabled = {c for c in all_codes if c not in off_by_default}
        for layer in self.layers:
            if layer.select is not None:
                on = list(layer.select) + list(layer.extend_select)
                enabled = {c for c in all_codes if _best(c, on, layer.ignore) == "on"}
                continue
            for c in all_codes:
                verdict = _best(c, layer.extend_select, layer.ignore)
                if verdict == "on":
                    enabled.add(c)
                elif verdict == "off":
                    enabled.discard(c)
        return sorted(enabled)

    def severity_of(self, code: str, default: Severity) -> Severity:
        best_len, best = -1, default
        for sel, sev in self.severity.items():
            if _matches(code, sel) and _specificity(sel) > best_len:
                best_len, best = _specificity(sel), sev
        return best

    def ignored_for_file(self, rel_path: str) -> List[str]:
        """Selectors disabled for one file by per-file-ignores (``rel_path`` uses '/')."""
        if not self.per_file_ignores:
            return []
        from trainlint.files import glob_matches

        out: List[str] = []
        for pattern, codes in self.per_file_ignores:
            if glob_matches(pattern, rel_path):
                out.extend(codes)
        return out


#: Codes that are off unless asked for (engine diagnostics with their own flag).
ENGINE_ONLY = {"TL002"}


def _specificity(selector: str) -> int:
    return 0 if selector == "ALL" else len(selector)


def _matches(code: str, selector: str) -> bool:
    return selector == "ALL" or code.startswith(selector)


def _best(code: str, on: Sequence[str], off: Sequence[str]) -> Optional[str]:
    best_on = max((_specificity(s) for s in on if _matches(code, s)), default=-1)
    best_off = max((_specificity(s) for s in off if _matches(code, s)), default=-1)
    if best_on < 0 and best_off < 0:
        return None
    return "on" if best_on > best_off else "off"


def validate_selectors(values: Any, where: str, all_codes: Sequence[str]) -> List[str]:
    if isinstance(values, str):
        values = [v for v in values.replace(" ", ",").split(",") if v]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: expected a list of rule codes, got {values!r}")
    out = []
    for raw in values:
        v = raw.strip().upper()
        if v == "ALL":
            out.append(v)
            continue
        if not any(c.startswith(v) for c in all_codes) or not v.startswith("TL"):
            raise ConfigError(f"{where}: unknown rule code or prefix {raw!r} (see `trainlint rule --all`)")
        out.append(v)
    return out


def find_config(start: Path) -> Optional[Path]:
    """The nearest config file at or above ``start``: trainlint.toml, or a pyproject.toml with
    a [tool.trainlint] table."""
    start = start.resolve()
    if start.is_file() or not start.exists():
        start = start.parent
    for folder in (start, *start.parents):
        for name in CONFIG_FILES:
            candidate = folder / name
            try:
                if not os.path.lexists(candidate):
                    continue
            except (OSError, ValueError):
                continue
            if name != "pyproject.toml":
                return candidate  # (load_config says what is wrong with it, if anything)
            try:
                raw = read_regular(str(candidate), MAX_AUX_FILE_SIZE)
            except SourceError:
                continue  # a pyproject.toml that is not a readable regular file is not ours to judge
            try:
                data = tomllib.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, ValueError):
                # A broken pyproject.toml that may not even be ours: only an error if it mentions us.
                if b"[tool.trainlint" in raw:
                    return candidate
                continue
            if isinstance(data.get("tool"), dict) and "trainlint" in data["tool"]:
                return candidate
    return None


def load_config(path: Path, all_codes: Sequence[str], _chain: Tuple[Path, ...] = ()) -> Config:
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: `extend` makes a cycle: {' -> '.join(str(p) for p in (*_chain, path.resolve()))}")
    try:
        raw = read_regular(str(path), MAX_AUX_FILE_SIZE)
    except FileTooLarge:
        raise ConfigError(f"{path}: over {format_size(MAX_AUX_FILE_SIZE)}; not read as a configuration file") from None
    except SourceError as exc:  # (a FIFO or a device is refused, never read: it could hang or be endless)
        raise ConfigError(f"{path}: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {raw[exc.start:exc.start + 1]!r} at offset {exc.start}); "
                          "TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except (RecursionError, ValueError) as exc:  # (nesting too deep for the parser...)
        raise ConfigError(f"{path}: invalid TOML: {type(exc).__name__}") from None
    tool = data.get("tool", {})
    if path.name == "pyproject.toml":
        table = tool.get("trainlint", {}) if isinstance(tool, dict) else {}
        prefix = f"{path} [tool.trainlint]"
    elif isinstance(tool, dict) and "trainlint" in tool:
        table = tool["trainlint"]
        prefix = f"{path} [tool.trainlint]"
    else:
        table = data
        prefix = f"{path}"
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix}: expected a table")
    base = None
    if "extend" in table:
        ext = table["extend"]
        if not isinstance(ext, str) or not ext:
            raise ConfigError(f"{prefix} extend: expected the path of a configuration file, got {ext!r}")
        target = Path(os.path.expanduser(ext))
        if not target.is_absolute():
            target = path.parent / target
        if not target.is_file():
            raise ConfigError(f"{prefix} extend: no such file {str(target)!r}")
        base = load_config(target, all_codes, (*_chain, path.resolve()))
    return config_from_table(table, prefix, path, all_codes, base)


def config_from_table(table: Mapping[str, Any], prefix: str, path: Optional[Path], all_codes: Sequence[str],
                      base: Optional[Config] = None) -> Config:
    """The settings of one table; with ``base`` (an ``extend``-ed file), its settings are inherited and this
    table's keys win (its selection is applied after the base's, as ruff does)."""
    cfg = Config(path=path, root=path.parent.resolve() if path else Path.cwd())
    if base is not None:
        import copy

        inherited = copy.deepcopy(base)
        inherited.path, inherited.root = cfg.path, cfg.root
        cfg = inherited
        # patterns of the base file are relative to its folder: make them absolute-anchored where they
        # name a subfolder, so they keep meaning the same files
        if base.root != cfg.root:
            cfg.per_file_ignores = [(_rebase(p, base.root, cfg.root), c) for p, c in cfg.per_file_ignores]
    for key in table:
        if key not in KNOWN_KEYS:
            close = [k for k in KNOWN_KEYS if k.replace("-", "_") == key or k.replace("-", "") == key.replace("_", "")]
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(sorted(KNOWN_KEYS))})"
            raise ConfigError(f"{prefix}: unknown key '{key}'{hint}")
    layer = Selection()
    if "select" in table:
        layer.select = validate_selectors(table["select"], f"{prefix} select", all_codes)
        if not layer.select:  # like `--select ""`: it would check nothing and say "All checks passed!"
            raise ConfigError(f"{prefix} select: an empty selection checks nothing; name at least one rule "
                              "code or prefix (to turn rules off, use ignore)")
    if "extend-select" in table:
        layer.extend_select = validate_selectors(table["extend-select"], f"{prefix} extend-select", all_codes)
    if "ignore" in table:
        layer.ignore = validate_selectors(table["ignore"], f"{prefix} ignore", all_codes)
    cfg.layers.append(layer)
    pfi = table.get("per-file-ignores", {})
    if not isinstance(pfi, dict):
        raise ConfigError(f"{prefix} per-file-ignores: expected a table of glob = [codes]")
    if pfi and base is not None:
        cfg.per_file_ignores = []  # this file's table replaces the inherited one (ruff)
    for pattern, codes in pfi.items():
        _check_patterns([pattern], f"{prefix} per-file-ignores")
        cfg.per_file_ignores.append(
            (pattern, validate_selectors(codes, f"{prefix} per-file-ignores.{pattern!r}", all_codes))
        )
    for key, attr in (("exclude", "exclude"), ("extend-exclude", "extend_exclude")):
        if key in table:
            val = table[key]
            if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                raise ConfigError(f"{prefix} {key}: expected a list of glob patterns, got {val!r}")
            _check_patterns(val, f"{prefix} {key}")
            setattr(cfg, attr, list(val))
    sev = table.get("severity", {})
    if not isinstance(sev, dict):
        raise ConfigError(f"{prefix} severity: expected a table of code = \"error\" | \"warning\" | \"info\"")
    for sel, level in sev.items():
        (code,) = validate_selectors([sel], f"{prefix} severity", all_codes)
        try:
            cfg.severity[code] = Severity.parse(str(level))
        except ValueError as exc:
            raise ConfigError(f"{prefix} severity.{sel}: {exc}") from None
    if "fail-level" in table:
        try:
            cfg.fail_level = Severity.parse(str(table["fail-level"]))
        except ValueError as exc:
            raise ConfigError(f"{prefix} fail-level: {exc}") from None
    if "min-severity" in table:
        try:
            cfg.min_severity = Severity.parse(str(table["min-severity"]))
        except ValueError as exc:
            raise ConfigError(f"{prefix} min-severity: {exc}") from None
    if "output-format" in table:
        from trainlint.report import FORMATS

        fmt = table["output-format"]
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise ConfigError(f"{prefix} output-format: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        cfg.output_format = fmt
    if "max-file-size" in table:
        cfg.max_file_size = parse_size(table["max-file-size"], f"{prefix} max-file-size")
    if "cache-dir" in table:
        val = table["cache-dir"]
        if not isinstance(val, str) or not val.strip():
            raise ConfigError(f"{prefix} cache-dir: expected a folder path, got {val!r}")
        cfg.cache_dir = (cfg.root / os.path.expanduser(val)).resolve()
    for key, attr in (("respect-gitignore", "respect_gitignore"), ("report-unused-suppressions", "report_unused_suppressions"),
                      ("fix", "fix"), ("unsafe-fixes", "unsafe_fixes")):
        if key in table:
            if not isinstance(table[key], bool):
                raise ConfigError(f"{prefix} {key}: expected true or false, got {table[key]!r}")
            setattr(cfg, attr, table[key])
    return cfg


def _rebase(pattern: str, old_root: Path, new_root: Path) -> str:
    """A glob relative to ``old_root`` as seen from ``new_root`` (``../`` patterns are kept as they are)."""
    try:
        rel = old_root.relative_to(new_root).as_posix()
    except ValueError:
        return pattern
    if pattern.startswith("**") or rel in ("", "."):
        return pattern
    return f"{rel}/{pattern}"


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000 ** 2, "mb": 1000 ** 2, "mib": 1024 ** 2,
          "g": 1000 ** 3, "gb": 1000 ** 3, "gib": 1024 ** 3}


def parse_size(value: Any, where: str) -> int:
    """A byte count: an integer, or a string with a unit (``"2MB"``, ``"512 KiB"``)."""
    import re

    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{where}: expected a size in bytes or a string such as \"2MB\", got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _UNITS:
            raise ConfigError(f"{where}: cannot read {value!r} as a size (examples: 1048576, \"2MB\", \"512KiB\")")
        size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return size


def _check_patterns(patterns: Sequence[str], where: str) -> None:
    """Reject gitignore-style patterns pathspec cannot compile (``!`` alone...) with a clear message."""
    import pathspec

    for pattern in patterns:
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except Exception as exc:  # pathspec raises ValueError subclasses (GitIgnorePatternError...)
            raise ConfigError(f"{where}: invalid pattern {pattern!r}: {exc}") from None


def resolve_config(
    explicit: Optional[str], paths: Sequence[str], all_codes: Sequence[str], isolated: bool = False
) -> Config:
    if isolated:
        return Config(layers=[Selection()])
    if explicit:
        return load_config(Path(explicit), all_codes)
    starts = [Path(p) for p in paths if p != "-"] or [Path.cwd()]
    try:
        common = Path(os.path.commonpath([str(p.resolve()) for p in starts]))
    except ValueError:  # different drives
        common = Path.cwd()
    found = find_config(common)
    if found is None:
        return Config(layers=[Selection()])
    return load_config(found, all_codes)
