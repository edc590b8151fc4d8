"""``gitlab``: a GitLab Code Quality report (a JSON array of Code Climate issues).

Fingerprints are the same stable hashes SARIF uses (code, path, source line text, counter).
File errors are not in the array (the CLI prints them on stderr). Paths are relative to
``$CI_PROJECT_DIR`` when set (GitLab's checkout), else to the repository root.
"""

from __future__ import annotations

from typing import IO, Any, Dict, List

from trainlint.report.base import Report, cell_view, register, repo_path

# GitLab accepts info, minor, major, critical and blocker.
SEVERITIES = {"error": "critical", "warning": "major", "info": "info"}


def _repo_path(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def build_gitlab(report: Report) -> List[Dict[str, Any]]:
    from trainlint.report.sarif import fingerprints, posix_path

    issues: List[Dict[str, Any]] = []
    paths: Dict[str, str] = {}
    for f, fingerprint in zip(cell_view(report), fingerprints(report)):
        s = f.span
        issue: Dict[str, Any] = {
            "type": "issue",
            "engine_name": "trainlint",
            "description": f"{f.code} {f.message}",
            "check_name": f.code,
            "fingerprint": fingerprint,
            "severity": SEVERITIES[f.severity.label],
            "categories": ["Bug Risk"],
            "location": {
                "path": paths.setdefault(f.path, _repo_path(posix_path(repo_path(report, f.path, "CI_PROJECT_DIR")))),
                "positions": {
                    "begin": {"line": s.line, "column": s.column},
                    "end": {"line": s.end_line, "column": s.end_column},
                },
            },
        }
        if f.hint:
            issue["content"] = {"body": f.hint}
        issues.append(issue)
    return issues


@register("gitlab", for_humans=False, description="GitLab Code Quality report (JSON).")
def render_gitlab(report: Report, stream: IO[str], color: bool) -> None:
    import json

    stream.write(json.dumps(build_gitlab(report), indent=2) + "\n")
