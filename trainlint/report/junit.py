"""``junit``: JUnit XML for CI test viewers (GitLab, Jenkins, Azure...).

One ``<testsuite>`` per file with findings, one failing ``<testcase>`` per finding; files that
could not be checked get an ``<error>`` testcase. A clean run is one suite with one passing
testcase so viewers show a green run.
"""

from __future__ import annotations

import re
from typing import IO, TYPE_CHECKING, Dict, List

from trainlint.report.base import Report, register, cell_view

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

# Characters XML 1.0 forbids even as character references.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` with characters XML 1.0 cannot hold replaced by U+FFFD."""
    return _INVALID_XML.sub("\ufffd", text)


def build_junit(report: Report) -> "Element":
    """The ``<testsuites>`` element (an xml.etree.ElementTree.Element)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="trainlint")
    suites: Dict[str, ET.Element] = {}
    counts: Dict[str, List[int]] = {}  # path -> [tests, failures, errors]

    def suite_for(path: str) -> ET.Element:
        if path not in suites:
            suites[path] = ET.SubElement(root, "testsuite", name=xml_text(path))
            counts[path] = [0, 0, 0]
        return suites[path]

    for f in cell_view(report):
        suite = suite_for(f.path)
        case = ET.SubElement(
            suite,
            "testcase",
            name=xml_text(f"{f.code} at line {f.span.line}"),
            classname=xml_text(f.path),
            file=xml_text(f.path),
            line=str(f.span.line),
        )
        failure = ET.SubElement(case, "failure", message=xml_text(f.message), type=f.code)
        body = f"{f.path}:{f.span.line}:{f.span.column}: {f.code} {f.message}"
        if f.hint:
            body += f"\n{f.hint}"
        failure.text = xml_text(body)
        counts[f.path][0] += 1
        counts[f.path][1] += 1

    for e in report.errors:
        suite = suite_for(e.path)
        case = ET.SubElement(suite, "testcase", name="trainlint", classname=xml_text(e.path), file=xml_text(e.path))
        error = ET.SubElement(case, "error", message=xml_text(e.message), type="FileError")
        error.text = xml_text(f"{e.path}: error: {e.message}")
        counts[e.path][0] += 1
        counts[e.path][2] += 1

    if not suites:
        suite = ET.SubElement(root, "testsuite", name="trainlint")
        ET.SubElement(suite, "testcase", name="trainlint", classname="trainlint")
        counts["trainlint"] = [1, 0, 0]
        suites["trainlint"] = suite

    for path, suite in suites.items():
        tests, failures, errors = counts[path]
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        suite.set("skipped", "0")
    root.set("tests", str(sum(c[0] for c in counts.values())))
    root.set("failures", str(sum(c[1] for c in counts.values())))
    root.set("errors", str(sum(c[2] for c in counts.values())))
    return root


@register("junit", for_humans=False, description="JUnit XML (one testcase per finding) for CI test reports.")
def render_junit(report: Report, stream: IO[str], color: bool) -> None:
    import xml.etree.ElementTree as ET

    root = build_junit(report)
    ET.indent(root)
    # ASCII with character references for everything else, so any stream encoding works.
    body = ET.tostring(root, encoding="us-ascii", xml_declaration=False).decode("ascii")
    stream.write('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n")
