"""Shared helpers for the rules' focused test modules: lint a snippet, or a small project tree,
with one rule enabled. (pytest puts this folder on sys.path: test modules import it as `_lint`.)"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths, lint_source
from trainlint.source import SourceFile


def linters(code: str) -> Tuple[Callable[[str], list], Callable[[Path, Dict[str, str]], List[tuple]]]:
    """(lint(text) -> findings of `code`, lint_tree(root, {path: text}) -> [(relpath, line, finding)])."""

    def options() -> Options:
        return Options(config=Config(layers=[Selection()]), enabled=[code])

    def lint(text: str) -> list:
        result = lint_source(SourceFile("train.py", textwrap.dedent(text)), options())
        assert result.error is None, result.error
        return [f for f in result.findings if f.code == code]

    def lint_tree(root: Path, files: Dict[str, str]) -> List[tuple]:
        for rel, text in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(text), encoding="utf-8")
        report, _ = lint_paths([str(root)], options())
        assert not report.errors, report.errors
        return [(Path(f.path).resolve().relative_to(root).as_posix(), f.line, f) for f in report.findings]

    return lint, lint_tree
