"""Command line: ``trainlint [check] PATHS``, ``trainlint rule``. Exit codes: 0 clean, 1 findings,
2 usage error, unreadable input or internal error (ruff's convention)."""

from __future__ import annotations

import difflib
import io
import json
import os
import sys
from pathlib import Path
from typing import List, NoReturn, Optional, Tuple

import click

from trainlint import __version__

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class DefaultGroup(click.Group):
    """A group whose first argument may be a path: ``trainlint src/`` means ``trainlint check src/``."""

    default_command = "check"

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h", "--version")):
            first = args[0] if args else ""
            if first and _looks_like_command(first) and not os.path.exists(first):
                close = difflib.get_close_matches(first, list(self.commands), n=1, cutoff=0.6)
                hint = f" (did you mean `trainlint {close[0]}`?)" if close else ""
                click.echo(f"trainlint: error: unknown command '{first}'{hint}; the commands are "
                           f"{', '.join(sorted(self.commands))}. To lint a path of that name, write ./{first}", err=True)
                sys.exit(EXIT_ERROR)
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def _looks_like_command(word: str) -> bool:
    """A bare word (`serve`, `chek`): not an option, not a path-like argument (`src/`, `train.py`, `-`)."""
    import re

    return bool(re.fullmatch(r"[a-z][a-z-]*", word))


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trainlint", message="%(prog)s %(version)s")
def main() -> None:
    """trainlint: find the pitfalls of neural-network training code before a GPU-hour is spent.

    `trainlint PATH...` is short for `trainlint check PATH...`. Its options (`trainlint check --help`):

    \b
      --select / --extend-select / --ignore, --output-format, -o FILE
      --fix, --unsafe-fixes, --diff, --fix-only, --exit-non-zero-on-fix, --add-noqa
      --fail-level, --severity, --per-file-ignores, --exclude, --extend-exclude
      --statistics, --show-settings, --show-files, -v/--verbose, -q/--quiet
    """


def _split(values: Tuple[str, ...]) -> Optional[List[str]]:
    if not values:
        return None
    out: List[str] = []
    for v in values:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _fail(message: str) -> NoReturn:
    click.echo(f"trainlint: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _format_choices() -> List[str]:
    from trainlint.report import FORMATS

    return list(FORMATS)


@main.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--select", multiple=True, metavar="CODES", help="Enable only these codes or prefixes (TL2 = TL2xx); replaces the config's select.")
@click.option("--extend-select", multiple=True, metavar="CODES", help="Enable these codes or prefixes on top of the selection.")
@click.option("--ignore", multiple=True, metavar="CODES", help="Disable these codes or prefixes.")
@click.option("--severity", "min_severity", type=click.Choice(["info", "warning", "error"], case_sensitive=False), help="Report only findings at or above this severity.")
@click.option("--output-format", envvar="TRAINLINT_OUTPUT_FORMAT", show_envvar=True, metavar="FORMAT",
              help="full (default), concise, grouped, json, json-lines, sarif, github, gitlab, junit, pylint, rdjson, azure.")
@click.option("-o", "--output-file", type=click.Path(dir_okay=False, writable=True), help="Write the report to this file instead of stdout.")
@click.option("--statistics", is_flag=True, help="Print a count per rule instead of each finding.")
@click.option("-q", "--quiet", is_flag=True, help="Print findings only: no summary, no warnings.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Use this pyproject.toml / trainlint.toml instead of searching for one.")
@click.option("--isolated", is_flag=True, help="Ignore every configuration file.")
@click.option("--stdin-filename", metavar="NAME", help="The name of the file read from stdin ('-'), for messages and per-file ignores.")
@click.option("--report-unused-suppressions", is_flag=True, default=None, help="Report suppression comments that silence nothing (TL002).")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when findings are reported.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True, help="Color the human-readable output.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the results cache.")
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="TRAINLINT_CACHE_DIR", show_envvar=True,
              help="Folder of the results cache (default: cache-dir in the config, else .trainlint_cache at the project root).")
@click.option("--fix/--no-fix", default=None, help="Apply fixes (safe ones; unsafe ones too with --unsafe-fixes), then report what is left. Config: fix.")
@click.option("--unsafe-fixes/--no-unsafe-fixes", default=None,
              help="Include fixes that change what the training does (apply them with --fix, count them as fixable). Config: unsafe-fixes.")
@click.option("--diff", is_flag=True, help="Print the fixes as a unified diff instead of writing them; exit 1 if there is one. Implies --fix-only.")
@click.option("--fix-only/--no-fix-only", default=False, help="Apply fixes and report nothing else (exit 0 unless --exit-non-zero-on-fix).")
@click.option("--exit-non-zero-on-fix", is_flag=True, help="Exit 1 when any file was fixed, even if no finding is left.")
@click.option("--add-noqa", is_flag=True, help="Add `# noqa: TLxxx` comments to every line with a finding (nothing else is changed).")
@click.option("--per-file-ignores", "per_file_ignores", multiple=True, metavar="GLOB:CODES",
              help="Disable codes in matching files, e.g. 'tests/*:TL301,TL304' (added to the config's).")
@click.option("--exclude", multiple=True, metavar="PATTERNS", help="Gitignore-style patterns to skip; replaces the config's exclude (and the defaults).")
@click.option("--extend-exclude", multiple=True, metavar="PATTERNS", help="Patterns to skip on top of the excludes.")
@click.option("--fail-level", type=click.Choice(["info", "warning", "error"], case_sensitive=False),
              help="Exit 1 only for findings at or above this severity; lower ones are shown but do not fail (config: fail-level).")
@click.option("--show-settings", is_flag=True, help="Print the settings the run would use (config file, rules, excludes...) and exit.")
@click.option("--show-files", is_flag=True, help="Print the files the run would lint and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Say which configuration is used, which files are linted, and how long it takes (on stderr).")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None, metavar="N",
              help="Worker processes (default: one per CPU core, when there is enough to analyse; 1: none).")
def check(**kwargs) -> None:
    """Lint training programs: files and folders (default: the current folder); '-' reads stdin."""
    try:
        _check(**kwargs)
    except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
        raise
    except Exception as exc:  # exit code 2 and one line, never a traceback (ruff's convention)
        from trainlint.engine import describe_exception  # (never str() of a libcst node: it recurses)

        _fail(f"internal error ({describe_exception(exc)}); please report it")


def _check(paths, select, extend_select, ignore, min_severity, output_format, output_file, statistics, quiet,
           config_file, isolated, stdin_filename, report_unused_suppressions, exit_zero, color, no_cache,
           fix, unsafe_fixes, diff, fix_only, exit_non_zero_on_fix, add_noqa, per_file_ignores=(), exclude=(),
           extend_exclude=(), fail_level=None, show_settings=False, show_files=False, verbose=False,
           cache_dir=None, jobs=None) -> None:
    import gc

    # A short-lived process: syntax trees live until exit, and collecting them after the lint (the
    # engine restores the thresholds) costs seconds on big trees. Let the process end instead.
    gc.disable()
    from trainlint.config import ConfigError, Selection, resolve_config, validate_selectors
    from trainlint.engine import Options, lint_paths, lint_text
    from trainlint.findings import Severity
    from trainlint.report import FORMATS, render
    from trainlint.rules import codes

    paths = list(paths) or (["-"] if stdin_filename else ["."])
    all_codes = codes()  # (the rule modules themselves are imported only if a file needs them)
    try:
        config = resolve_config(config_file, [stdin_filename] if paths == ["-"] and stdin_filename else paths, all_codes, isolated)
        cli_layer = Selection()
        if select:
            chosen = _split(select)
            if not chosen:  # `--select ""` would turn every rule off and report "All checks passed!"
                _fail("--select needs at least one rule code or prefix (an empty selection checks nothing; "
                      "to turn rules off use --ignore)")
            cli_layer.select = validate_selectors(chosen, "--select", all_codes)
        if extend_select:
            cli_layer.extend_select = validate_selectors(_split(extend_select), "--extend-select", all_codes)
        if ignore:
            cli_layer.ignore = validate_selectors(_split(ignore), "--ignore", all_codes)
        if per_file_ignores:
            for item in per_file_ignores:
                pattern, sep, codes = item.rpartition(":")
                if not sep or not pattern:
                    raise ConfigError(f"--per-file-ignores: expected GLOB:CODES (e.g. 'tests/*:TL301'), got {item!r}")
                config.per_file_ignores.append((pattern, validate_selectors(codes, f"--per-file-ignores {pattern!r}", all_codes)))
        from trainlint.config import _check_patterns

        if exclude:
            config.exclude = _split(exclude)
            _check_patterns(config.exclude, "--exclude")
        if extend_exclude:
            config.extend_exclude = list(config.extend_exclude) + _split(extend_exclude)
            _check_patterns(config.extend_exclude, "--extend-exclude")
    except ConfigError as exc:
        _fail(str(exc))
    config.layers.append(cli_layer)
    if fail_level:
        config.fail_level = Severity.parse(fail_level)
    if verbose:
        where = str(config.path) if config.path else ("none (--isolated)" if isolated else "none found; defaults")
        click.echo(f"trainlint {__version__}: configuration: {where}; project root: {config.root}", err=True)
    fmt = output_format or config.output_format or "full"
    if fmt not in FORMATS:
        close = difflib.get_close_matches(fmt, list(FORMATS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        _fail(f"unknown output format '{fmt}'{hint}; choose from {', '.join(FORMATS)}")
    report_unused = config.report_unused_suppressions if report_unused_suppressions is None else report_unused_suppressions
    enabled = config.enabled_codes(all_codes)
    if report_unused and "TL002" not in enabled:
        enabled = sorted(set(enabled) | {"TL002"})
    options = Options(
        config=config,
        enabled=enabled,
        report_unused_suppressions=report_unused or "TL002" in enabled,
        min_severity=Severity.parse(min_severity) if min_severity else config.min_severity,
        jobs=jobs,
    )
    if not no_cache and "-" not in paths:
        from trainlint.cache import Cache, default_dir, fingerprint

        folder = Path(cache_dir) if cache_dir else (config.cache_dir or default_dir(config.root))
        options.cache = Cache(folder, fingerprint(enabled, options.parse_all, config.max_file_size))
    unsafe = config.unsafe_fixes if unsafe_fixes is None else unsafe_fixes
    if show_settings:
        _show_settings(config, options, fmt, unsafe, fix)
    if show_files:
        from trainlint.files import discover

        found = discover([p for p in paths if p != "-"], config)
        for _, display in sorted(found.files, key=lambda t: t[1]):
            click.echo(display)
        for p, m in found.errors:
            click.echo(f"trainlint: error: {p}: {m}", err=True)
        sys.exit(EXIT_ERROR if found.errors else EXIT_CLEAN)
    import time

    started = time.perf_counter()
    fix_only = fix_only or diff
    fixing = fix_only or (config.fix if fix is None else fix)
    stdin_text = None
    if "-" in paths:
        if len(paths) > 1:
            _fail("'-' (stdin) cannot be combined with other paths")
        from trainlint.source import SourceError, decode, format_size

        display = stdin_filename or "-"
        limit = config.max_file_size
        stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
        data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode()
        if len(data) > limit:  # (`trainlint - < /dev/zero` must not fill the memory)
            _fail(f"{display}: stdin is over max-file-size ({format_size(limit)}); not linted")
        try:
            stdin_text = decode(data, display)
        except SourceError as exc:
            _fail(f"{display}: {exc}")

        def lint(overlay):
            rep, warns = lint_text(overlay.get("<stdin>", stdin_text), display, options)
            rep.real_paths[display] = "<stdin>"
            return rep, warns
    else:
        def lint(overlay):
            options.overlay = overlay
            return lint_paths(paths, options)

    if add_noqa:
        _add_noqa(lint, stdin_text, quiet)
    run = None
    if fixing:
        from trainlint.fixes import fix_run, unified_diff, write_fixes

        run = fix_run(lint, unsafe, read=(lambda real: stdin_text) if stdin_text is not None else _read_fixable)
        report, warnings = run.report, run.warnings
        if diff:
            if stdin_text is None:
                _write_stdout(unified_diff(run))
            else:
                _write_stdout(unified_diff(run).replace("a/<stdin>", "a/" + display).replace("b/<stdin>", "b/" + display))
            if not quiet:
                click.echo(_would_fix(run), err=True)
            for w in warnings if not quiet else ():
                click.echo(f"trainlint: warning: {w}", err=True)
            sys.exit(EXIT_FINDINGS if run.fixed_text else EXIT_CLEAN)
        if stdin_text is not None:  # ruff's convention: the fixed source on stdout, the report on stderr
            _write_stdout(run.fixed_text.get("<stdin>", stdin_text))
        else:
            for err in write_fixes(run):
                report.errors.append(_file_error(err))
        report.fixed = run.fixed
        if fix_only:
            if not quiet:
                for w in warnings:
                    click.echo(f"trainlint: warning: {w}", err=True)
                click.echo(f"Fixed {run.fixed} finding{'' if run.fixed == 1 else 's'}.", err=True)
            for e in report.errors:
                click.echo(f"trainlint: error: {e.path}: {e.message}", err=True)
            if report.errors:
                sys.exit(EXIT_ERROR)
            sys.exit(EXIT_FINDINGS if exit_non_zero_on_fix and run.fixed else EXIT_CLEAN)
    else:
        report, warnings = lint({})
    report.unsafe_fixes = unsafe
    report.statistics = statistics
    report.summary = not quiet
    if verbose:
        for d in sorted(report.real_paths):
            click.echo(f"trainlint: linted {d}", err=True)
        click.echo(f"trainlint: checked {report.files_checked} file(s) with {len(enabled)} rule(s) in "
                   f"{time.perf_counter() - started:.2f}s", err=True)

    human = FORMATS[fmt].for_humans
    if not quiet:
        for w in warnings:
            click.echo(f"trainlint: warning: {w}", err=True)
    if not human:  # (the human formats print file errors themselves)
        for e in report.errors:
            click.echo(f"trainlint: error: {e.path}: {e.message}", err=True)
    use_color = _use_color(color, output_file)
    buf = io.StringIO()
    if statistics and fmt in ("json", "json-lines"):  # ruff's shape: [{code, name, count, fixable}]
        from trainlint.report.full import statistics_records

        records = statistics_records(report)
        if fmt == "json":
            buf.write(json.dumps(records, indent=2) + "\n")
        else:
            buf.write("".join(json.dumps(r) + "\n" for r in records))
    elif quiet and human and statistics:  # the table only: no summary
        from trainlint.report.full import statistics_lines

        rows = statistics_lines(report, use_color)
        buf.write("".join(row + "\n" for row in rows))
        for e in report.errors:
            click.echo(f"trainlint: error: {e.path}: {e.message}", err=True)
    else:
        render(report, fmt, buf, color=use_color and FORMATS[fmt].for_humans)
    text = buf.getvalue()
    if output_file:
        try:
            # errors="replace": a file name that is not UTF-8 (surrogate escapes) must not lose the report
            with open(output_file, "w", encoding="utf-8", errors="replace") as fh:
                fh.write(text)
        except OSError as exc:
            _fail(f"cannot write {output_file}: {exc.strerror}")
    elif stdin_text is not None and fixing:
        sys.stderr.write(text)
    else:
        _write_stdout(text)
    if report.errors:
        sys.exit(EXIT_ERROR)
    failing = [f for f in report.findings if f.severity >= config.fail_level]
    if failing and not exit_zero:
        sys.exit(EXIT_FINDINGS)
    if exit_non_zero_on_fix and run is not None and run.fixed:
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_CLEAN)


def _show_settings(config, options, fmt: str, unsafe: bool, fix) -> NoReturn:
    """``--show-settings``: the resolved settings, as TOML-like lines (ruff prints its resolved settings)."""
    def q(v):
        return json.dumps(v)

    lines = [
        f"# trainlint {__version__}",
        f"config-file = {q(str(config.path) if config.path else None) if config.path else 'none'}",
        f"root = {q(str(config.root))}",
        f"enabled = {q(list(options.enabled))}",
        f"exclude = {q(list(config.exclude))}",
        f"extend-exclude = {q(list(config.extend_exclude))}",
        f"per-file-ignores = {q({p: c for p, c in config.per_file_ignores})}",
        f"severity = {q({k: v.label for k, v in config.severity.items()})}",
        f"min-severity = {q(options.min_severity.label)}",
        f"fail-level = {q(config.fail_level.label)}",
        f"output-format = {q(fmt)}",
        f"respect-gitignore = {q(config.respect_gitignore)}",
        f"report-unused-suppressions = {q(options.report_unused_suppressions)}",
        f"fix = {q(bool(config.fix if fix is None else fix))}",
        f"unsafe-fixes = {q(bool(unsafe))}",
    ]
    click.echo("\n".join(lines))
    sys.exit(EXIT_CLEAN)


def _read_fixable(real: str) -> str:
    from trainlint.fixes import _read_text

    return _read_text(real)


def _file_error(message: str):
    from trainlint.report.base import FileError

    path, _, rest = message.partition(": ")
    return FileError(path, rest)


def _would_fix(run) -> str:
    n = run.fixed
    text = f"Would fix {n} finding{'' if n == 1 else 's'}"
    if run.unapplied_unsafe:
        k = run.unapplied_unsafe
        text += f" ({k} additional fix{'' if k == 1 else 'es'} available with `--unsafe-fixes`)"
    return text + "."


def _add_noqa(lint, stdin_text, quiet: bool) -> NoReturn:
    """``--add-noqa``: one ``# noqa: CODES`` per line with findings; nothing else changes."""
    from trainlint.fixes import _read_text, encode_like, fix_text, noqa_fixes, write_atomic

    report, warnings = lint({})
    by_file = {}
    for f in report.findings:
        by_file.setdefault(f.path, []).append(f)
    added = 0
    for path, findings in sorted(by_file.items()):
        real = report.real_paths.get(path)
        if real is None:
            continue
        notebook = real.endswith(".ipynb")
        try:
            original = stdin_text if real == "<stdin>" else _read_text(real)
        except (OSError, ValueError) as exc:
            click.echo(f"trainlint: error: {path}: {exc}", err=True)
            continue
        script = original
        if notebook:
            from trainlint.notebook import to_script

            script = to_script(original)[0]
        fixes = noqa_fixes(findings, script)
        new, done, refused = fix_text(original, fixes, notebook=notebook)
        for fx in refused:
            click.echo(f"trainlint: warning: {path}: cannot add a noqa comment there ({fx.message}): the line is inside a string", err=True)
        if not done:
            continue
        added += len(done)
        if real == "<stdin>":
            _write_stdout(new)
            continue
        with open(real, "rb") as fh:
            raw = fh.read()
        write_atomic(real, encode_like(new, raw, notebook=notebook))
    if not quiet:
        click.echo(f"Added {added} noqa directive{'' if added == 1 else 's'}.", err=True)
    sys.exit(EXIT_CLEAN)


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `trainlint . | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except UnicodeEncodeError:
        sys.stdout.buffer.write(text.encode("utf-8", errors="replace"))
        sys.stdout.flush()


def _use_color(choice: str, output_file: Optional[str]) -> bool:
    if output_file:  # a file is never a terminal: no escape codes in it, even with --color always
        return False
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return sys.stdout.isatty()


@main.command("version")
@click.option("--output-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def version_cmd(output_format: str) -> None:
    """Print trainlint's version (like `trainlint --version`)."""
    if output_format == "json":
        click.echo(json.dumps({"version": __version__}))
    else:
        click.echo(f"trainlint {__version__}")

@main.command("clean")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Use this pyproject.toml / trainlint.toml instead of searching for one.")
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="TRAINLINT_CACHE_DIR", show_envvar=True,
              help="The cache folder to delete (default: as `check` finds it).")
def clean_cmd(config_file: Optional[str], cache_dir: Optional[str]) -> None:
    """Delete the results cache (.trainlint_cache at the project root, or the configured cache-dir)."""
    from trainlint.cache import clean, default_dir
    from trainlint.config import ConfigError, resolve_config
    from trainlint.rules import codes

    if cache_dir:
        folder = Path(cache_dir)
    else:
        try:
            config = resolve_config(config_file, ["."], codes())
        except ConfigError as exc:
            _fail(str(exc))
        folder = config.cache_dir or default_dir(config.root)
    try:
        removed = clean(folder)
    except OSError as exc:
        _fail(str(exc))
    click.echo(f"Removed {folder}" if removed else f"No cache at {folder}", err=True)


@main.command("rule")
@click.argument("code", required=False)
@click.option("--all", "show_all", is_flag=True, help="List every rule.")
@click.option("--output-format", "--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
              help="text, json or markdown (`--format` is an alias).")
def rule_cmd(code: Optional[str], show_all: bool, fmt: str) -> None:
    """Explain a rule (`trainlint rule TL202`) or list them all (`--all`)."""
    from trainlint.docs import index_page, rule_page, rule_record
    from trainlint.rules import registry

    reg = registry()
    if show_all == bool(code):
        _fail("give a rule code (trainlint rule TL202) or --all")
    if show_all:
        if fmt == "json":
            click.echo(json.dumps([rule_record(c) for c in reg], indent=2))
        elif fmt == "markdown":
            click.echo(index_page(), nl=False)
        else:
            width = max(len(cls.name) for cls in reg.values())
            for c, cls in reg.items():
                opt = "  (opt-in: enable with --extend-select)" if getattr(cls, "opt_in", False) else ""
                click.echo(f"{c}  {cls.name:<{width}}  {cls.severity.label:<7}  {cls.summary}{opt}")
        return
    key = code.strip().upper()
    if key not in reg:
        by_name = {cls.name: c for c, cls in reg.items()}
        if code in by_name:
            key = by_name[code]
        else:
            close = difflib.get_close_matches(key, list(reg), n=1) or difflib.get_close_matches(code, list(by_name), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            _fail(f"unknown rule '{code}'{hint}; see `trainlint rule --all`")
    if fmt == "json":
        click.echo(json.dumps(rule_record(key), indent=2))
    else:
        click.echo(rule_page(key), nl=False)


@main.command("server")
@click.option("--stdio", is_flag=True, default=True, hidden=True, help="Talk LSP over stdin/stdout (the only transport).")
def server_cmd(stdio: bool) -> None:
    """Run the language server (LSP over stdio) for editors: diagnostics as you type, fixes and
    `# noqa` as code actions, rule docs on hover. Needs pygls (`pip install 'trainlint[lsp]'`)."""
    try:
        import pygls  # noqa: F401
    except ImportError:
        _fail("the language server needs pygls: pip install 'trainlint[lsp]'")
    from trainlint.server import serve

    serve()


def _seconds(ctx, param, value):
    import math

    if value is not None and (not math.isfinite(value) or value <= 0):
        raise click.BadParameter(f"{value!r} is not a positive, finite number of seconds")
    return value


@main.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--steps", type=click.IntRange(1, 1000), default=3, show_default=True, help="Training steps to watch before the probes run.")
@click.option("--timeout", type=float, default=300.0, show_default=True, callback=_seconds, help="Seconds for the script's steps and the probes; then it counts as a hang (exit 2).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True,
              help="Device of the probes: auto = the device the script's model is on; cpu also hides GPUs from the script.")
@click.option("--probe", "probes", multiple=True, metavar="NAME", help="Run only these probes (repeatable; default: all).")
@click.option("--budget", type=float, default=20.0, show_default=True, callback=_seconds, help="Seconds each probe may take (all of them together: 20 s, or this when it is larger).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), help="Also write the run's JSON report into this folder.")
@click.option("--output-format", type=click.Choice(["full", "json", "sarif"]), default="full", show_default=True)
@click.option("--show-output", is_flag=True, help="Show the script's own stdout/stderr.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_cmd(steps, timeout, device, probes, budget, report_dir, output_format, show_output, color, command) -> None:
    """Run a training script under the runtime shim and confirm the static findings:
    `trainlint run -- python train.py ARGS` (or `-- python -m pkg.train ARGS`). Needs torch
    (`pip install 'trainlint[runtime]'`). Exit 0: no problem (every static finding refuted by its probe);
    1: a probe found a problem, or a static finding was confirmed or could not be probed; 2: crash, hang or
    usage error.
    """
    from trainlint.runtime.runner import RunError, RunOptions, run

    opts = RunOptions(command=list(command), steps=steps, timeout=timeout, device=device,
                      probes=_split(probes) or [], budget=budget, show_output=show_output,
                      budget_total=max(20.0, budget), subreaper=True)
    try:
        code, text = run(opts, output_format, report_dir, color=_use_color(color, None) and output_format == "full")
    except RunError as exc:
        if output_format == "json" and exc.json_text:  # stdout stays one valid JSON document
            _write_stdout(exc.json_text)
        if exc.output and not show_output:
            click.echo("--- the script's output (last 40 lines) ---", err=True)
            click.echo("\n".join(exc.output.rstrip().splitlines()[-40:]), err=True)
        if exc.traceback:
            click.echo(exc.traceback.rstrip(), err=True)
        _fail(exc.message)
    _write_stdout(text)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
