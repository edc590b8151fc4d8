"""Skip early (issue 13): a file of the run on which no enabled file-level rule may fire (``Rule.may_fire``,
read from its text) is not parsed with libcst up front; program linking reads its imports, whether it runs
something and its classes from CPython's ``ast``, and it is parsed only when a program that holds it is
analysed. None of it may change what trainlint reports."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import libcst as cst
import pytest

from trainlint.analysis.facts import link_facts_from_ast
from trainlint.config import Config, Selection
from trainlint.context import FileContext
from trainlint.engine import Options, _facts_record, _Facts, lint_paths
from trainlint.rules import EngineRule, Rule, registry
from trainlint.source import SourceFile

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
RULES = registry()
FILE_RULES = {code: cls for code, cls in RULES.items() if cls.check is not Rule.check}


def _snippets():
    for code, cls in RULES.items():
        if issubclass(cls, EngineRule):
            continue
        for attr in ("bad", "good"):
            for i, snippet in enumerate(getattr(cls, attr)):
                yield f"{code}-{attr}-{i}", textwrap.dedent(snippet)


def _fixture_files():
    return sorted(p for p in FIXTURES.rglob("*.py") if ".trainlint_cache" not in p.parts)


def test_the_file_level_rules_declare_when_they_may_fire():
    assert set(FILE_RULES) == {"TL102", "TL202", "TL206", "TL303", "TL304", "TL305"}
    for code, cls in RULES.items():
        if code not in FILE_RULES:
            assert not cls.may_fire("import torch\nloss.backward()\n", "train.py"), code


EXPECT_RE = re.compile(r"#\s*expect:\s*(TL\d{3}(?:\s*,\s*TL\d{3})*)")


def _expected_findings():
    """(path, text, code, line) for every finding the rules' bad examples and the fixtures expect."""
    for code, cls in RULES.items():
        for i, snippet in enumerate(cls.bad):
            text = textwrap.dedent(snippet)
            for n, line in enumerate(text.splitlines(), 1):
                m = EXPECT_RE.search(line)
                if m:
                    for c in re.split(r"\s*,\s*", m.group(1)):
                        yield f"example_{code}_{i}.py", text, c, n
    for expected in sorted(FIXTURES.glob("*/expected.txt")):
        for raw in expected.read_text(encoding="utf-8").splitlines():
            parts = raw.split()
            if len(parts) != 2 or raw.startswith("#"):
                continue
            rel, line = parts[0].rsplit(":", 1)
            path = expected.parent / rel
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"), parts[1], int(line)


def test_a_trigger_never_hides_a_finding(monkeypatch):
    """Each file-level rule runs with its trigger switched off on every file that a bad example or a
    fixture expects a finding of it in: wherever its check finds an expected finding, the trigger is true
    for that file, so the engine never skips a file that holds one. (A finding its check does not make
    comes from a program: an entry script's, or that of an entry importing the file, which parses it.)"""
    triggers = {code: cls.may_fire for code, cls in FILE_RULES.items()}
    for cls in FILE_RULES.values():
        monkeypatch.setattr(cls, "may_fire", classmethod(lambda c, text, path: True))
    wanted = {}
    for path, text, code, line in _expected_findings():
        if code in FILE_RULES:
            wanted.setdefault((path, text, code), set()).add(line)
    checked = {code: 0 for code in FILE_RULES}
    for (path, text, code), lines in sorted(wanted.items()):
        ctx = FileContext(SourceFile(path, text), cst.parse_module(text))
        found = {f.line for f in FILE_RULES[code]().check(ctx)} & lines
        if found:
            assert triggers[code](text, path), f"{code}'s trigger is false for {path}, which holds its finding at {found}"
            checked[code] += 1
    assert all(n >= 1 for n in checked.values()) and sum(checked.values()) > 30, checked


def _records(text: str):
    """What the cache (and program linking) holds of a file: from libcst's walk, and from CPython's ast."""
    ctx = FileContext(SourceFile("x.py", text), cst.parse_module(text))
    tree = compile(text, "<test>", "exec", dont_inherit=True, flags=ast.PyCF_ONLY_AST)
    return _facts_record(ctx), _facts_record(_Facts(link_facts_from_ast(tree)))


def test_the_facts_from_ast_are_the_facts_from_libcst():
    """What program linking reads of a file that was not parsed (its imports in order, whether its module
    level runs something: ``program.is_entry``, its classes, its links) equals what the libcst walk gives,
    on every fixture file, rule example and test snippet, and trainlint's own sources. (Also checked on
    the 1,098 files of the speed corpus when this was written.)"""
    texts = [text for _, text in _snippets()]
    texts += [p.read_text(encoding="utf-8") for p in _fixture_files()]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "trainlint").rglob("*.py"))]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests").glob("*.py"))]
    texts += [
        # every spelling the two walks must agree on
        "for x in y:\n    pass\n",
        "class A:\n    for i in range(3):\n        pass\n",
        "def f():\n    for i in x:\n        pass\n    trainer.fit(m)\n",
        "if True:\n    model = train_model()\nelse:\n    L.Trainer().fit(m)\n",
        "try:\n    main()\nexcept Exception:\n    run()\nfinally:\n    x = 1\n",
        "with a:\n    while True:\n        break\n",
        "match x:\n    case 1:\n        backward()\n",
        "async def f():\n    async for x in y:\n        pass\n",
        "x: int = train()\ny += fit()\nprint(fit)\nf()()\ngetattr(m, 'fit')()\n(lambda: 0)()\n",
        "import a.b as c, d\nfrom . import x\nfrom ..p import (q as r, s)\nfrom .m import *\nimport e; import f\n",
        "def g():\n    import inner\n    class Local:\n        pass\n",
        "from ... import up\nfrom .... x import y\n",
        "from m import *\nimport k as j\nfrom p import q as r\nx = None if True else False\nf(a=1, **kw)\n"
        "def g(p, *a, k=None, **kw):\n    global G\n    return lambda z: z\nclass C(B, metaclass=M):\n    v: int\n"
        "try:\n    pass\nexcept E as e:\n    pass\nwith o as (s, *t):\n    pass\nfor (i, *js) in r:\n    w.add_(i)\n"
        "match v:\n    case C(a=1, b=[*rest]) | {'k': 1, **others} as whole:\n        pass\n    case _:\n        pass\n"
        "r.x.y.z.w = j.a.b.c.d()\nf(x).attr.more\n(q + 1).real\nd[k].v = 1\nu += 1\n",
        "for n in cfgs:\n    default_cfgs[n] = copy.deepcopy(cfgs[n])\n    register_model(n)\n    t.setdefault(n, []).append(1)\n",
        "for n in cfgs:\n    print(n)\n",
        "for n in cfgs:\n    f = lambda: run()\n    ', '.join(x)\n",
        "while x:\n    if y:\n        for z in w:\n            pass\n",
        "for a in b:\n    class K:\n        z = train_step()\n    def h():\n        run()\n",
    ]
    checked = 0
    for text in texts:
        try:
            from_libcst, from_ast = _records(text)
        except (SyntaxError, cst.ParserSyntaxError):
            continue
        assert from_ast == from_libcst, text[:300]
        checked += 1
    assert checked > 300


# -- the engine ---------------------------------------------------------------------------------

PROJECT = {
    "train.py": """\
        import torch
        from model import Net

        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    """,
    # imported by the entry: not parsed up front (no file-level rule may fire), parsed for the program
    "model.py": """\
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 1)
                self.act = nn.ReLU()

            def forward(self, x):
                return self.act(self.fc(x))
    """,
    # a module whose module level runs a loop (an entry, by itself), imported only by a test that is
    # never parsed: it is no program's entry, as when every file was parsed
    "registry.py": """\
        import torch
        MODELS = {}
        for name in ("a", "b"):
            MODELS[name] = torch.nn.Linear(2, 2)
        for x, y in loader:
            MODELS["a"](x).sum().backward()
    """,
    # a test: nothing imports it, no file-level rule may fire on it (a test's loaders are not judged)
    "tests/test_model.py": """\
        import torch
        from torch.utils.data import DataLoader
        from model import Net
        import registry

        def test_net():  # noqa: TL301
            loader = DataLoader(range(4), batch_size=2)
            for batch in loader:
                Net()(torch.zeros(1, 2))
    """,
    "tests/conftest.py": "import pytest\n",
}


def _write(root: Path, files) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _options(**kw) -> Options:
    config = Config(layers=[Selection()])
    codes = sorted(set(config.enabled_codes(list(registry()))) | {"TL002"})
    return Options(config=config, enabled=codes, report_unused_suppressions=True, **kw)


def _lines(report):
    return [(Path(f.path).name, f.span, f.code, f.message) for f in report.findings]


@pytest.fixture
def parsed(monkeypatch):
    """The names of the files libcst parses (in this process)."""
    import trainlint.parsing as parsing

    seen = []
    real = parsing.parse

    def parse(text, *args, **kw):
        seen.append(text)
        return real(text, *args, **kw)

    monkeypatch.setattr(parsing, "parse", parse)

    def names(root: Path):
        by_text = {p.read_text(encoding="utf-8"): p.relative_to(root).as_posix() for p in root.rglob("*.py")}
        return [by_text.get(t, "?") for t in seen]

    names.clear = seen.clear
    return names


def test_a_file_nothing_needs_is_not_parsed_and_nothing_changes(tmp_path, parsed):
    root = _write(tmp_path, PROJECT)
    full, full_warnings = lint_paths([str(root)], _options(parse_all=True))
    assert "tests/test_model.py" in parsed(root)
    parsed.clear()
    skipped, warnings = lint_paths([str(root)], _options())
    names = parsed(root)
    assert "tests/test_model.py" not in names and "tests/conftest.py" not in names
    assert names.count("model.py") == 1  # parsed once, for train.py's program
    assert names.count("registry.py") == 1  # once, for its program as a library module nobody runs
    assert _lines(skipped) == _lines(full)
    assert warnings == full_warnings
    assert skipped.files_checked == full.files_checked
    codes = {(Path(f.path).name, f.code) for f in skipped.findings}
    assert ("test_model.py", "TL002") in codes  # its unused suppression, as when it was parsed
    assert ("registry.py", "TL301") not in codes  # no entry of its own: a file of the run imports it


def test_the_same_with_the_cache_and_with_workers(tmp_path, parsed):
    from trainlint.cache import Cache, fingerprint

    root = _write(tmp_path / "p", PROJECT)
    full, _ = lint_paths([str(root)], _options(parse_all=True))
    options = _options()

    def cached():
        return _options(cache=Cache(tmp_path / "cache", fingerprint(options.enabled, False, options.config.max_file_size)))

    cold, _ = lint_paths([str(root)], cached())
    parsed.clear()
    warm, _ = lint_paths([str(root)], cached())
    assert parsed(root) == []
    two, _ = lint_paths([str(root)], _options(jobs=2))
    assert _lines(cold) == _lines(warm) == _lines(two) == _lines(full)


def test_each_file_is_measured_once_for_the_nesting_guard(tmp_path, monkeypatch, parsed):
    """model.py is read with CPython's ast (after the nesting guard) and parsed with libcst later, for
    train.py's program: the guard measures it once, not again before the parse; and the run forgets it."""
    import trainlint.parsing as parsing

    root = _write(tmp_path, PROJECT)
    measured = []
    real = parsing.nesting_bound
    monkeypatch.setattr(parsing, "nesting_bound", lambda text, *a, **k: measured.append(text) or real(text, *a, **k))
    skipped, _ = lint_paths([str(root)], _options())
    assert "model.py" in parsed(root)
    model = (root / "model.py").read_text(encoding="utf-8")
    assert measured.count(model) == 1
    assert len(measured) == len(set(measured)) >= 3  # (every file measured at most once)
    assert parsing._PASSED == {}
    full, _ = lint_paths([str(root)], _options(parse_all=True))
    assert _lines(skipped) == _lines(full)


def _refusing_parser(monkeypatch):
    """libcst refuses every text that holds LIBCST_REFUSES (syntax CPython reads and libcst does not)."""
    import trainlint.parsing as parsing

    real = parsing.parse

    def parse(text, *args, **kw):
        if "LIBCST_REFUSES" in text:
            raise cst.ParserSyntaxError("unsupported", lines=text.splitlines(), raw_line=1, raw_column=0)
        return real(text, *args, **kw)

    monkeypatch.setattr(parsing, "parse", parse)


@pytest.mark.parametrize("marker", ["# LIBCST_REFUSES", "# LIBCST_REFUSES (clamp, backward: TL202 may fire)"])
def test_a_file_libcst_refuses_keeps_its_warning_when_a_program_holds_it(tmp_path, monkeypatch, marker):
    """model.py is a stand-in (or, with a trigger word, parsed up front) that libcst cannot parse: the
    run reports what the run that parses every file up front reports, also with workers (a worker whose
    share owns the file, or meets it in a program, leaves the run to the serial path)."""
    files = dict(PROJECT)
    files["model.py"] = textwrap.dedent(PROJECT["model.py"]) + marker + "\n"
    root = _write(tmp_path, files)
    _refusing_parser(monkeypatch)
    full, full_warnings = lint_paths([str(root)], _options(parse_all=True))
    skipped, warnings = lint_paths([str(root)], _options())
    two, two_warnings = lint_paths([str(root)], _options(jobs=2))
    assert any("model.py: skipped: the parser does not support" in w for w in full_warnings)
    assert warnings == two_warnings == full_warnings
    assert _lines(skipped) == _lines(two) == _lines(full)


def test_a_file_libcst_refuses_that_nothing_needs_is_not_parsed_so_gives_no_warning(tmp_path, monkeypatch):
    """The one difference skipping makes, on purpose: a file that CPython compiles but libcst cannot parse
    (syntax newer than libcst's grammar) and that no program holds is never handed to libcst, so it gets
    no "parser does not support" warning; it is judged as any file no rule may fire on (its unused
    suppressions are reported), and nothing else changes."""
    files = dict(PROJECT)
    files["tests/test_model.py"] = textwrap.dedent(PROJECT["tests/test_model.py"]) + "# LIBCST_REFUSES\n"
    root = _write(tmp_path, files)
    _refusing_parser(monkeypatch)
    full, full_warnings = lint_paths([str(root)], _options(parse_all=True))
    skipped, warnings = lint_paths([str(root)], _options())
    assert [w for w in full_warnings if "test_model.py" in w]
    assert not [w for w in warnings if "test_model.py" in w]
    assert [f for f in _lines(skipped) if f[0] != "test_model.py"] == _lines(full)
    # and it is judged as every file nothing needs: no rule may fire on it, its unused suppression is one
    assert [f[2] for f in _lines(skipped) if f[0] == "test_model.py"] == ["TL002"]



def test_a_one_file_run_does_not_parse_the_importers_it_only_looks_at(tmp_path, parsed):
    """pre-commit passes model.py alone: the scripts that import it are found in its project (train.py is
    parsed for its program), and a file whose import line merely names `model` is read from CPython's
    ast, not parsed, when it turns out not to import model.py."""
    files = dict(PROJECT)
    files["other.py"] = """\
        import torch
        from registry import model

        for x in range(3):
            model(x)
    """
    root = _write(tmp_path, files)
    (root / ".git").mkdir()
    full, _ = lint_paths([str(root / "model.py")], _options(parse_all=True))
    parsed.clear()
    alone, _ = lint_paths([str(root / "model.py")], _options())
    names = parsed(root)
    assert "train.py" in names and "other.py" not in names
    assert _lines(alone) == _lines(full)
