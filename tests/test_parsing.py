"""Old code: files that only parse under the grammar of an older Python (``async`` as an identifier) are
read with libcst's Python 3.6 grammar and checked like any other; real syntax errors stay TL001."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths
from trainlint.parsing import parse, parse_legacy
from trainlint.rules import registry


def _lint(tmp_path: Path, files: dict):
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    config = Config(layers=[Selection()])
    report, warnings = lint_paths([str(tmp_path)], Options(config=config, enabled=config.enabled_codes(list(registry()))))
    return sorted((Path(f.path).name, f.line, f.code) for f in report.findings), report, warnings


@pytest.mark.parametrize("src", [
    "x = x.cuda(async=True)\n",
    "def forward(self, x, async=False):\n    return x\n",
    "loader.async = True\nawait = 3\n",
])
def test_async_as_identifier_parses_under_the_old_grammar(src):
    with pytest.raises(cst.ParserSyntaxError):
        cst.parse_module(src)
    module, version = parse(src)
    assert version == "3.6"
    assert module.code == src  # the same lossless tree


def test_current_code_takes_the_native_parser():
    src = "async def f():\n    await g()\nmatch x:\n    case 1:\n        pass\n"
    module, version = parse(src)
    assert version is None and module.code == src


def test_a_real_syntax_error_is_still_one():
    src = "x = x.cuda(async=True\n"  # unclosed: no grammar reads it
    assert parse_legacy(src) is None
    with pytest.raises(cst.ParserSyntaxError):
        parse(src)


def test_old_code_is_checked_and_a_broken_file_still_reports_tl001(tmp_path):
    found, report, _ = _lint(tmp_path, {
        "old.py": """
            import torch
            for epoch in range(3):
                for x, y in loader:
                    x, y = x.cuda(async=True), y.cuda(async=True)
                    loss = criterion(model(x), y)
                    loss.backward()
                    optimizer.step()
        """,
        "broken.py": """
            x = x.cuda(async=True
        """,
    })
    assert ("old.py", 8, "TL204") in found
    assert not any(name == "old.py" and code == "TL001" for name, _, code in found)
    assert any(name == "broken.py" and code == "TL001" for name, _, code in found)


def test_an_old_module_imported_by_an_entry_is_read(tmp_path):
    # the model file only parses under the old grammar; the entry script imports it
    found, _, _ = _lint(tmp_path, {
        "nets.py": """
            import torch.nn as nn
            class Regressor(nn.Module):
                def __init__(self, async=False):
                    super().__init__()
                    self.fc = nn.Linear(8, 1)
                    self.act = nn.ReLU()
                def forward(self, x):
                    return self.act(self.fc(x))
        """,
        "train.py": """
            import torch
            import torch.nn as nn
            from nets import Regressor
            torch.manual_seed(0)
            model = Regressor()
            criterion = nn.MSELoss()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            for epoch in range(5):
                for x, y in loader:
                    opt.zero_grad()
                    criterion(model(x), y).backward()
                    opt.step()
        """,
    })
    assert ("nets.py", 9, "TL101") in found, found


# ---- old Mac line endings and positions of deep trees (a fuzz case: TL302 raised a KeyError) ----------


def _deep_program(newline: str) -> str:
    lines = [
        "import torch",
        "from torchvision import transforms",
        "train_tf = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor()])",
        "x = " + "(" * 150 + "1" + ")" * 150,
        "for epoch in range(10):",
        "    loss.backward()",
    ]
    return newline.join(lines) + newline


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_nesting_is_measured_whatever_the_line_endings(newline):
    from trainlint.parsing import MAX_NESTING, TooDeep, check_nesting

    with pytest.raises(TooDeep) as info:
        check_nesting(_deep_program(newline), MAX_NESTING)
    assert info.value.line == 4  # "\r" ends a line for libcst and the interpreter: the numbers agree
    # a mixed file (a CR-only file with LF lines pasted in) is measured too
    with pytest.raises(TooDeep):
        check_nesting(_deep_program("\r").replace("for epoch", "y = 1\nfor epoch"), MAX_NESTING)


def test_a_deep_file_with_cr_line_endings_is_refused_before_the_rules_see_it(tmp_path):
    (tmp_path / "train.py").write_bytes(_deep_program("\r").encode())
    config = Config(layers=[Selection()])
    report, warnings = lint_paths([str(tmp_path)], Options(config=config, enabled=config.enabled_codes(list(registry()))))
    assert not report.errors, [e.message for e in report.errors]  # no "internal error in rule TL302"
    assert report.findings == []
    assert any("more than 100 levels" in w and "line 4" in w for w in warnings), warnings


def test_positions_of_a_tree_too_deep_to_compute_raise_recursion_error():
    import sys

    from trainlint.context import FileContext
    from trainlint.source import SourceFile

    # in a block: libcst's clean-up of the statement's position looks up what was never recorded
    text = "def f():\n    if x:\n        y = " + "[" * 60 + "]" * 60 + "\n        z = 1\n"
    ctx = FileContext(SourceFile("deep.py", text), parse(text)[0])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # libcst computes positions recursively: 60 levels need more than this
    try:
        with pytest.raises(RecursionError):  # not libcst's KeyError from its clean-up code
            ctx.span(ctx.module.body[0])
    finally:
        sys.setrecursionlimit(limit)
    assert ctx.span(ctx.module.body[0]).line == 1


def _largest_estimate(text: str) -> int:
    """The largest estimate nesting_depth makes over ``text``: the smallest limit it reports nothing at."""
    from trainlint.parsing import nesting_depth

    lo, hi = 0, 3000
    while lo < hi:
        mid = (lo + hi) // 2
        if nesting_depth(text, mid) is None:
            hi = mid
        else:
            lo = mid + 1
    return lo


_BOUND_CASES = [
    _deep_program("\n"),
    "x = a" + ".b" * 90 + "\n",
    "x = (" + " + ".join(["1"] * 300) + ")\n",
    "if a:\n    pass\n" + "elif b:\n    pass\n" * 60,
    # brackets, quotes and operators inside strings and comments are not code
    'x = f("a(((", b.c.d)  # ))) ((( a.b.c\n"""doc ((( [[[\n a.b.c.d """\ny = 1\n',
    "s = '\\'(((' + \"\\\")))\" + r'\\'' + ('a'\n     'b' 'c')\n",
    "t = f'{a.b[c(d.e)]}' f\"{x!r:>{w}}\" + (lambda q: q.r.s)(1)\n",
    "u = x + \\\n    y.z.w + \\\n    (p or q and not r)\n",
    "def f(a: int = 1, *b, **c) -> dict[str, list[int]]:\n    return {k: [v.w for v in vs if v] for k, vs in c.items()}\n",
    "x = [\n" + "    a.b.c(d=e.f, g=[h.i, j.k]),  # (\n" * 50 + "]\n",
    "class A(B.C, metaclass=M.N):\n    @d.e(f=g.h)\n    def m(self): yield from (a for a in b if a.c)\n",
    "v = a or\"s\"\nw = b if\"t\"else c\n",
    "x = ((((((((((a.b.c.d.e.f.g.h.i.j))))))))))\n" * 3,
    # a string's line breaks do not end the logical line: the operators between the strings all chain
    'x = """\n""" + \'\'\'a\n\'\'\' + "\\\n" + """\n""" + a.b.c\n' * 3,
    # a line continued with a backslash: the string after it still follows the string before
    "y = 'a' \\\n 'b' \\\n 'c' + 'd'\n",
    # the tokenizer reads ``1...`` as ``1.`` ``.`` ``.``, and a keyword right after a number as a keyword
    "z = 1... + 2\nw = 1if a else 2or b\nv = (1lambda: 0)\nu = 0x1for\n",
    "if a:\n    pass\nelif b:\n    x = [c.d for c in e if c]\nelse:\n    pass\n",
]


@pytest.mark.parametrize("text", _BOUND_CASES)
def test_the_quick_nesting_bound_is_never_below_the_tokenizer_estimate(text):
    """check_nesting skips the tokenizer when nesting_bound says a file cannot pass the limit: the bound
    must hold for every estimate the tokenizer makes (or give no bound)."""
    from trainlint.parsing import nesting_bound

    bound = nesting_bound(text)
    assert bound is None or bound >= _largest_estimate(text), (bound, _largest_estimate(text))
    # with a limit, only the logical lines longer than the room it leaves run the token loop: the bound
    # still holds, and it is never below the whole loop's
    for limit in (0, 5, 20, 100, 1000):
        quick = nesting_bound(text, None, limit)
        assert (quick is None) == (bound is None)
        assert quick is None or quick >= bound, (limit, quick, bound)


_FRAGMENTS = [
    "a", ".b", "(", ")", "[", "]", "{", "}", " + ", " - ", "*", "**", ", ", ": ", "=", " == ", " and ", " or ",
    " not ", " if ", " else ", "lambda x: ", " in ", " is ", "'s'", '"t"', '"""\n"""', "'''x\n'''", "f'{a.b}'",
    'f"{x[(1)]}"', "rb'q'", "\n", "\n    ", "\\\n", "  # c (\n", "#x\n", "elif", " for ", "yield ", "await ", ":=",
    "->", "...", "1", "x.y.z", ";", "@", "~", "<<", ">=", "1if", "0x1for", "1jif", "1.lambda y: ", "2or", "f'{{'",
    "u'{x}'", "F'''{\n(a+b)}'''", "\t", "if x:\n    ", "\nelif y:\n    ", "\nelse:\n    ", "b\"\\\"\"", "'\\\n'",
]


def test_the_quick_nesting_bound_is_never_below_the_tokenizer_estimate_on_generated_text():
    """Random texts of the tokens the two estimates treat differently (strings over several lines,
    continued lines, comments, f-strings, keywords after numbers, unbalanced brackets): the bound never
    says less than the tokenizer, with or without a limit. (Before, strings over several lines split the
    logical line, and ``x = \"\"\"\\n\"\"\" + \"\"\"\\n\"\"\" + ...`` 3,000 times reached libcst, which
    raised RecursionError in the rules; 20,000 times kept its parser busy for minutes.)"""
    import random

    from trainlint.parsing import nesting_bound

    rng = random.Random(13)
    checked = 0
    for _ in range(300):
        text = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 80)))
        estimate = _largest_estimate(text)
        for limit in (None, 0, 10, 30):
            bound = nesting_bound(text) if limit is None else nesting_bound(text, None, limit)
            assert bound is None or bound >= estimate, (limit, bound, estimate, text)
            checked += bound is not None
    assert checked > 300


@pytest.mark.parametrize("text", [
    "x = " + '"""\n""" + ' * 3000 + "1\n",
    "x = (\n" + "    a.b +\n" * 150 + "    c)\n",
    "x = " + "1 + \\\n" * 200 + "1\n",
    "s = " + "'\\\n' + " * 200 + "1\n",
])
def test_a_deep_file_is_refused_however_its_lines_are_broken(text):
    from trainlint.parsing import MAX_NESTING, TooDeep, check_nesting, parse

    with pytest.raises(TooDeep):
        check_nesting(text, MAX_NESTING)
    with pytest.raises(TooDeep):
        parse(text)


def test_a_deep_file_with_strings_over_many_lines_is_skipped_with_its_warning(tmp_path):
    text = "import torch\nloss.backward()\nopt.step()\nx = " + '"""\n""" + ' * 3000 + "1\n"
    (tmp_path / "train.py").write_text(text, encoding="utf-8")
    config = Config(layers=[Selection()])
    report, warnings = lint_paths([str(tmp_path)], Options(config=config, enabled=config.enabled_codes(list(registry()))))
    assert not report.errors, [e.message for e in report.errors]  # not "too deeply nested ... for rule TL204"
    assert any("more than 100 levels" in w for w in warnings), warnings


def test_a_text_checked_once_is_not_checked_again_only_under_the_same_limits(monkeypatch):
    """The engine checks a stand-in when CPython reads it (``keep``) and parses it later without a second
    check; a text kept under other limits is checked again."""
    import trainlint.parsing as parsing

    deep = "x = (" + " + ".join(["1"] * 300) + ")\n"
    parsing.check_nesting(deep, 10_000, keep=True)  # within that limit
    try:
        with pytest.raises(parsing.TooDeep):
            parse(deep)
        ordinary = "import torch\nx = torch.zeros(3).sum()\n"
        parsing.check_nesting(ordinary, parsing.MAX_NESTING, parsing.max_tokens_for(1 << 20), keep=True)
        calls = []
        real = parsing.nesting_bound
        monkeypatch.setattr(parsing, "nesting_bound", lambda *a, **k: calls.append(a) or real(*a, **k))
        parse(ordinary, 1 << 20)
        assert calls == []  # kept: not checked again
        parse(ordinary, 1 << 20)
        assert len(calls) == 1  # (once read, the text is forgotten)
    finally:
        parsing.clear_caches()


def test_the_quick_nesting_bound_answers_for_ordinary_code_and_still_refuses_deep_files():
    from trainlint.parsing import MAX_NESTING, TooDeep, check_nesting, nesting_bound

    ordinary = Path(__file__).read_text(encoding="utf-8")
    bound = nesting_bound(ordinary)
    assert bound is not None and bound <= MAX_NESTING  # (this file skips the tokenizer)
    for deep in ("x = (" + " + ".join(["1"] * 300) + ")\n", "if a:\n    pass\n" + "elif b:\n    pass\n" * 120):
        with pytest.raises(TooDeep):
            check_nesting(deep, MAX_NESTING)


# -- Python 2: statements rewritten line by line, so the rules read the file and the lines stay the user's

PY2 = '''import sys
def report(score, ns):
    print score, 2
    print >>sys.stderr, "err", score
    print "no newline",
    print
    if score: print score
    try:
        exec "y = 1" in ns
    except ValueError, e:
        raise RuntimeError, "bad %s" % e
    print("already a call")
    print("a"); print score  # a comment
'''


def test_python2_statements_are_rewritten_on_their_own_lines():
    with pytest.raises(cst.ParserSyntaxError):
        cst.parse_module(PY2)
    module, version = parse(PY2)
    assert version == "2"
    lines = module.code.splitlines()
    assert len(lines) == len(PY2.splitlines())
    assert lines[2].split() == ["print(", "score,", "2)"]
    assert lines[3] == '    print(  "err", score, file=sys.stderr)'
    assert lines[4] == '    print( "no newline", end=" ")'
    assert lines[5] == "    print()"
    assert lines[6] == "    if score: print( score)"
    assert lines[8] == '        exec( "y = 1" , ns)'
    assert lines[9] == "    except ValueError as e:"
    assert lines[10] == '        raise RuntimeError( "bad %s" % e)'
    assert lines[11] == '    print("already a call")'
    assert lines[12] == '    print("a"); print( score)  # a comment'


def test_python2_with_a_real_syntax_error_is_still_one():
    src = "print x\nx = (1,\n"
    with pytest.raises(cst.ParserSyntaxError):
        parse(src)
    with pytest.raises(cst.ParserSyntaxError):
        parse("print `x`\n")  # backticks: not rewritten


def test_a_python2_script_is_checked_at_its_own_lines(tmp_path):
    # meetshah1995/pytorch-semseg c3d1fdd: validate.py (Python 2) evaluates a torch.load()ed model with
    # no model.eval()
    found, _, _ = _lint(tmp_path, {
        "validate.py": """
            import torch
            from torch.utils import data

            def train(args):
                valloader = data.DataLoader(make_dataset(args), batch_size=1)
                model = torch.load(args.model_path)
                gts, preds = [], []
                for i, (images, labels) in enumerate(valloader):
                    outputs = model(images)
                    preds.append(outputs.max(1)[1])
                for k, v in score(gts, preds).items():
                    print k, v

            if __name__ == '__main__':
                train(parse_args())
        """,
    })
    assert ("validate.py", 9, "TL401") in found
    assert not any(code == "TL001" for _, _, code in found)


def test_fixes_are_never_applied_to_a_python2_file(tmp_path):
    from click.testing import CliRunner

    from trainlint.cli import main

    src = textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader
        torch.manual_seed(0)
        loader = DataLoader(train_ds, batch_size=32)
        for epoch in range(3):
            for x, y in loader:
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
            print "epoch", epoch, loss.item()
    """)
    p = tmp_path / "train.py"
    p.write_text(src, encoding="utf-8")
    r = CliRunner().invoke(main, ["check", "--isolated", "--no-cache", "--select", "TL304", str(p)])
    assert "TL304" in r.output  # the unshuffled loader is found in the Python 2 file
    r = CliRunner().invoke(main, ["check", "--isolated", "--no-cache", "--fix", "--unsafe-fixes", "--select", "TL304", str(p)])
    assert p.read_text(encoding="utf-8") == src  # its fix would need Python 3 to compile the result


def test_python2_rewrite_keeps_crlf_and_form_feeds_where_they_are():
    # tokenize's rows end at "\n" only: a form feed or a CR LF must not shift the rewrite to another line
    src = "import sys\r\n\x0c\r\ndef f(x):\r\n    print >>sys.stderr, x\r\n    print x,\r\nx = 1\n\x0cprint x\n"
    from trainlint.parsing import rewrite_python2

    assert rewrite_python2(src) == ("import sys\r\n\x0c\r\ndef f(x):\r\n    print(  x, file=sys.stderr)\r\n"
                                    "    print( x, end=\" \")\r\nx = 1\n\x0cprint( x)\n")
    module, version = parse(src)
    assert version == "2" and module.code.count("\n") == src.count("\n")


def test_positions_are_libcst_positions():
    """FileContext.span asks libcst's position provider directly (without MetadataWrapper.resolve's empty
    walk of the whole tree): the same positions as the public way, for every node of real files."""
    from libcst.metadata import MetadataWrapper, PositionProvider

    from trainlint.context import FileContext, _positions
    from trainlint.source import SourceFile

    root = Path(__file__).resolve().parents[1]
    checked = 0
    for path in sorted((root / "fixtures").rglob("*.py"))[:40] + [root / "trainlint" / "context.py"]:
        text = path.read_text(encoding="utf-8")
        module = parse(text)[0]
        public = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
        direct = _positions(module)
        assert dict(direct) == dict(public), path
        ctx = FileContext(SourceFile(str(path), text), module)
        for node, rng in list(public.items())[:50]:
            assert ctx.span(node).line == rng.start.line
        checked += len(public)
    assert checked > 10_000
