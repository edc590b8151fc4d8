"""Every rule's examples are tests (Fixit's VALID/INVALID, pylint's bad.py/good.py):

- each ``bad`` snippet raises the rule exactly on the lines marked ``# expect: TLxxx``;
- each ``good`` snippet (the catalogue's near-misses) raises nothing of that rule;
- the docstring's "Example" block raises the rule and its "Use instead" block does not, so the docs
  cannot drift from the behaviour;
- every docstring has ruff's sections, and every rule has a code, a kebab-case name and a summary.
"""

from __future__ import annotations

import re
import textwrap

import pytest

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_source
from trainlint.rules import CODE_RE, NAME_RE, REQUIRED_SECTIONS, EngineRule, registry
from trainlint.source import SourceFile

RULES = registry()
CHECKED = {code: cls for code, cls in RULES.items() if not issubclass(cls, EngineRule)}
EXPECT_RE = re.compile(r"#\s*expect:\s*(TL\d{3}(?:\s*,\s*TL\d{3})*)")


def _lint(code: str, text: str):
    options = Options(config=Config(layers=[Selection()]), enabled=[code])
    result = lint_source(SourceFile("example.py", text), options)
    assert result.error is None, result.error
    return [f for f in result.findings if f.code == code]


def _expected_lines(text: str, code: str):
    lines = set()
    for i, line in enumerate(text.splitlines(), 1):
        m = EXPECT_RE.search(line)
        if m and code in re.split(r"\s*,\s*", m.group(1)):
            lines.add(i)
    return lines


def _cases(attr):
    for code, cls in CHECKED.items():
        for i, snippet in enumerate(getattr(cls, attr)):
            yield pytest.param(code, textwrap.dedent(snippet), id=f"{code}-{attr}-{i}")


@pytest.mark.parametrize("code,text", list(_cases("bad")))
def test_bad_example_flags_marked_lines(code, text):
    expected = _expected_lines(text, code)
    assert expected, "a bad example must mark the lines it expects with '# expect: CODE'"
    found = _lint(code, text)
    assert sorted(f.line for f in found) == sorted(expected), [f"{f.line}: {f.message}" for f in found]


@pytest.mark.parametrize("code,text", list(_cases("good")))
def test_good_example_is_clean(code, text):
    found = _lint(code, text)
    assert found == [], [f"{f.line}: {f.message}" for f in found]


def _doc_block(doc: str, section: str) -> str:
    part = doc.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```", part, re.S)
    assert m, f"section {section!r} needs a python code block"
    return m.group(1)


@pytest.mark.parametrize("code", list(CHECKED))
def test_doc_example_is_flagged_and_fix_is_clean(code):
    doc = CHECKED[code].doc()
    assert _lint(code, _doc_block(doc, "Example")), "the docs' Example must raise the rule"
    assert not _lint(code, _doc_block(doc, "Use instead")), "the docs' 'Use instead' must be clean"


@pytest.mark.parametrize("code", list(RULES))
def test_rule_metadata_and_doc_sections(code):
    cls = RULES[code]
    assert CODE_RE.match(cls.code)
    assert NAME_RE.match(cls.name), cls.name
    assert cls.summary and "\n" not in cls.summary
    doc = cls.doc()
    positions = []
    for section in REQUIRED_SECTIONS:
        assert f"## {section}\n" in doc, f"{code} doc lacks the section '## {section}'"
        positions.append(doc.index(f"## {section}\n"))
    assert positions == sorted(positions), "sections must come in ruff's order"


@pytest.mark.parametrize("code", list(CHECKED))
def test_rule_docs_cite_a_source_text(code):
    """Rule docs cite the public originals with links (Karpathy's recipe, Holden's article, the PyTorch
    docs), never file names of texts users do not have."""
    doc = CHECKED[code].doc()
    refs = doc.split("## References", 1)[1]
    assert re.search(r"\]\(https://(karpathy\.github\.io/2019/04/25/recipe/|theorangeduck\.com/page/neural-network-not-working"
                     r"|pytorch\.org/docs/)", refs), f"{code}: cite the original work with a link"
    assert "seeds/" not in doc and not re.search(r"\d{3}_[0-9a-f]{16}\.txt", doc), f"{code}: cites a file users do not have"
    assert not re.search(r"[\u4e00-\u9fff]", doc), f"{code}: quote the original (English) text"


@pytest.mark.parametrize("code", list(CHECKED))
def test_rule_has_bad_and_good_examples(code):
    cls = CHECKED[code]
    assert len(cls.bad) >= 1 and len(cls.good) >= 1


def test_names_and_classes_are_unique():
    names = [cls.name for cls in RULES.values()]
    assert len(names) == len(set(names))
