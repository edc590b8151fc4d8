"""Rule documentation: the text `trainlint rule` prints and the generated ``rules/`` catalogue.

Regenerate the catalogue with ``python -m trainlint.docs`` (a test fails when it is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

from trainlint.rules import registry


def rule_page(code: str) -> str:
    cls = registry()[code]
    head = f"# {cls.name} ({cls.code})\n\n"
    meta = f"Severity: **{cls.severity.label}**"
    if getattr(cls, "opt_in", False):
        meta += (f" · **Opt-in**: not in the default selection; enable it with `--extend-select {cls.code}` "
                 f"or `extend-select = [\"{cls.code}\"]` in the configuration")
    if getattr(cls, "runtime_only", False):
        meta += f" · Found only at runtime, by the `{cls.probe}` probe of `trainlint run`"
    elif cls.probe:
        meta += f" · Confirmed at runtime by the `{cls.probe}` probe"
    meta += f" · Suppress with `# noqa: {cls.code}` or `# trainlint: ignore[{cls.code}]`\n\n"
    summary = f"{cls.summary}.\n\n" if not cls.summary.endswith(".") else f"{cls.summary}\n\n"
    return head + meta + summary + cls.doc() + "\n"


def rule_record(code: str) -> Dict[str, object]:
    cls = registry()[code]
    return {
        "code": cls.code,
        "name": cls.name,
        "severity": cls.severity.label,
        "summary": cls.summary,
        "probe": cls.probe,
        "opt_in": bool(getattr(cls, "opt_in", False)),
        "url": cls.url(),
        "explanation": cls.doc(),
    }


def index_page() -> str:
    lines = [
        "# The trainlint rule catalogue",
        "",
        "Generated from the rules' docstrings by `python -m trainlint.docs`; do not edit by hand.",
        "Severity: `error` = almost surely a bug; `warning` = very likely hurts training; `info` = recipe advice.",
        "Rules marked *opt-in* are not in the default selection: enable them with `--extend-select CODE` or",
        "`extend-select` in the configuration (selecting a prefix such as `TL2`, or `ALL`, enables them too).",
        "",
        "| code | name | severity | what it flags | runtime probe |",
        "| --- | --- | --- | --- | --- |",
    ]
    for code, cls in registry().items():
        probe = f"`{cls.probe}`" if cls.probe else "—"
        opt = " *(opt-in)*" if getattr(cls, "opt_in", False) else ""
        lines.append(f"| [{code}]({code}.md){opt} | {cls.name} | {cls.severity.label} | {cls.summary} | {probe} |")
    return "\n".join(lines) + "\n"


def expected_files() -> Dict[str, str]:
    files = {"README.md": index_page()}
    for code in registry():
        files[f"{code}.md"] = rule_page(code)
    return files


def write_catalogue(folder: Path) -> List[str]:
    folder.mkdir(parents=True, exist_ok=True)
    changed = []
    wanted = expected_files()
    for name, text in wanted.items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for stale in folder.glob("TL*.md"):
        if stale.name not in wanted:
            stale.unlink()
            changed.append(stale.name)
    return changed


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "rules"
    changed = write_catalogue(target)
    print(f"{len(changed)} page(s) written to {target}" if changed else f"{target} is up to date")
