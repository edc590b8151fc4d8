"""``sarif``: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

Relative paths become relative URIs (forward slashes, percent-encoded) against the
``%SRCROOT%`` base id, which ``originalUriBaseIds`` maps to ``report.root`` when it is known;
absolute paths become ``file://`` URIs.
"""

from __future__ import annotations

import os
from typing import IO, Any, Dict, List, Optional, Tuple

from trainlint.findings import Finding, Span
from trainlint.report.base import Report, RuleInfo, register, source_line, cell_view

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
INFORMATION_URI = "https://github.com/trainlint/trainlint"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "trainlint/v1"

LEVELS = {"error": "error", "warning": "warning", "info": "note"}


def posix_path(path: str) -> str:
    """``path`` with the OS separator(s) replaced by ``/``."""
    if os.sep != "/":
        path = path.replace(os.sep, "/")
    if os.altsep and os.altsep != "/":
        path = path.replace(os.altsep, "/")
    return path


def file_uri(path: str) -> str:
    """A ``file://`` URI for an absolute or relative (made absolute) filesystem path."""
    from pathlib import Path

    return Path(os.path.abspath(path)).as_uri()


def artifact_location(path: str) -> Dict[str, str]:
    """SARIF artifactLocation: relative URI + ``%SRCROOT%``, or a ``file://`` URI when absolute."""
    if os.path.isabs(path):
        return {"uri": file_uri(path)}
    from urllib.parse import quote

    rel = posix_path(path)
    while rel.startswith("./"):
        rel = rel[2:]
    # The file name's own bytes, percent-encoded: a name that is not UTF-8 (its bytes are surrogate
    # escapes in Python) is still a valid URI of the real file.
    return {"uri": quote(os.fsencode(rel), safe="/"), "uriBaseId": SRCROOT}


def fingerprints(report: Report) -> List[str]:
    """One stable md5 hex digest per finding (in order) that survives line shifts.

    It hashes the code, the path (with forward slashes) and the stripped text of the finding's
    first line (the message when the source is unknown), then a counter that tells identical
    triples apart by order of appearance.
    """
    import hashlib

    seen: Dict[Tuple[str, str, str], int] = {}
    out: List[str] = []
    for f in cell_view(report):
        text = source_line(report, f.path, f.span.line)
        text = " ".join(text.split()) if text is not None else "\x00" + f.message
        key = (f.code, posix_path(f.path), text)
        n = seen.get(key, 0)
        seen[key] = n + 1
        data = "\x1f".join((*key, str(n))).encode("utf-8", "surrogatepass")
        out.append(hashlib.md5(data, usedforsecurity=False).hexdigest())
    return out


def _region(span: Span) -> Dict[str, int]:
    line = max(span.line, 1)
    column = max(span.column, 1)
    end_line = max(span.end_line, line)
    end_column = max(span.end_column, 1)
    if end_line == line:
        end_column = max(end_column, column)
    return {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column}


def _first_paragraph(doc: str) -> str:
    for para in doc.replace("\r\n", "\n").split("\n\n"):
        para = para.strip()
        if para and not para.startswith("#"):
            return " ".join(para.split())
    return ""


def _descriptor(rule: RuleInfo) -> Dict[str, Any]:
    summary = rule.summary.strip() or rule.name or rule.code
    doc = rule.doc.strip()
    desc: Dict[str, Any] = {
        "id": rule.code,
        "name": rule.name or rule.code,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": _first_paragraph(doc) or summary},
        "help": {"text": doc or summary, "markdown": doc or summary},
        "defaultConfiguration": {"level": LEVELS.get(rule.severity, "warning")},
        "properties": {"tags": ["trainlint", "pytorch"]},
    }
    if rule.url:
        desc["helpUri"] = rule.url
    return desc


def _rules(report: Report) -> Tuple[List[Dict[str, Any]], Dict[str, int]]:
    """The rule table sorted by code, including codes that only appear in findings."""
    from trainlint import docs_url

    infos: Dict[str, RuleInfo] = dict(report.rules)
    for f in cell_view(report):
        if f.code not in infos:
            infos[f.code] = RuleInfo(f.code, f.name, f.severity.label, f.name, "", docs_url(f.code))
    codes = sorted(infos)
    return [_descriptor(infos[c]) for c in codes], {c: i for i, c in enumerate(codes)}


def _result(f: Finding, index: int, fingerprint: str) -> Dict[str, Any]:
    text = f.message if not f.hint else f"{f.message}\nHelp: {f.hint}"
    location = artifact_location(f.path)
    result: Dict[str, Any] = {
        "ruleId": f.code,
        "ruleIndex": index,
        "level": LEVELS[f.severity.label],
        "message": {"text": text},
        "locations": [{"physicalLocation": {"artifactLocation": location, "region": _region(f.span)}}],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint},
    }
    if f.related:
        result["relatedLocations"] = [
            {
                "id": i,
                "physicalLocation": {"artifactLocation": artifact_location(r.path), "region": _region(r.span)},
                "message": {"text": r.message or f.code},
            }
            for i, r in enumerate(f.related, start=1)
        ]
    if f.fix is not None and f.fix.edits:  # (a fix without edits has nothing to apply)
        result["fixes"] = [
            {
                "description": {"text": f.fix.message or f.message},
                "artifactChanges": [
                    {
                        "artifactLocation": dict(location),
                        "replacements": [
                            {"deletedRegion": _region(e.span), "insertedContent": {"text": e.content}}
                            for e in f.fix.edits
                        ],
                    }
                ],
                "properties": {"applicability": f.fix.applicability.value},
            }
        ]
    props: Dict[str, Any] = {"name": f.name, "severity": f.severity.label}
    if f.hint:
        props["hint"] = f.hint
    result["properties"] = props
    return result


def build_sarif(report: Report) -> Dict[str, Any]:
    """The SARIF log as a JSON-ready dict."""
    import trainlint

    rules, index = _rules(report)
    prints = fingerprints(report)
    from trainlint.report.base import repo_path, repo_root

    base = repo_root(report) if report.root else None
    view = cell_view(report)
    if base is not None:  # paths relative to the repository root, which %SRCROOT% names
        import dataclasses

        view = [dataclasses.replace(f, path=repo_path(report, f.path),
                                    related=[dataclasses.replace(r, path=repo_path(report, r.path)) for r in f.related])
                for f in view]
    results = [_result(f, index[f.code], fp) for f, fp in zip(view, prints)]
    version = report.version or trainlint.__version__
    driver: Dict[str, Any] = {
        "name": "trainlint",
        "version": version,
        "informationUri": INFORMATION_URI,
        "rules": rules,
    }
    if version and version[0].isdigit():
        driver["semanticVersion"] = version
    notifications = [
        {
            "level": "error",
            "message": {"text": e.message or "could not be checked"},
            "locations": [{"physicalLocation": {"artifactLocation": artifact_location(repo_path(report, e.path) if base else e.path)}}],
        }
        for e in report.errors
    ]
    run: Dict[str, Any] = {
        "tool": {"driver": driver},
        # a file that could not be checked makes the run unsuccessful (its notification says which)
        "invocations": [{"executionSuccessful": not report.errors, "toolExecutionNotifications": notifications}],
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    root: Optional[str] = base
    if root:
        uri = file_uri(root)
        run["originalUriBaseIds"] = {SRCROOT: {"uri": uri if uri.endswith("/") else uri + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


@register("sarif", for_humans=False, description="SARIF 2.1.0 (GitHub code scanning, IDE SARIF viewers).")
def render_sarif(report: Report, stream: IO[str], color: bool) -> None:
    import json

    stream.write(json.dumps(build_sarif(report), indent=2) + "\n")
