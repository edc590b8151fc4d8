"""One reading of import lines from the text (no parse), shared by the engine (``scan_imports``: skip early,
file groups) and the program model's importer search: a statement continued with backslashes or in a
parenthesised name list is read whole by both."""

from __future__ import annotations

from trainlint.engine import _may_train, scan_imports
from trainlint.import_scan import import_statements
from trainlint.source import SourceFile

TEXT = (
    "import a.b as c, d\n"
    "from .x import y\n"
    "from .. import z\n"
    "from p.q import (r,\n    s as t,\n)\n"
    "import e;import f\n"
    "from g import h, \\\n    i as j, \\\n    k\n"
    "import l, \\\n    m.n\n"
    "from . import *\n"
    "if ok: from u import v\n"
)


def test_import_statements_reads_every_form_and_both_continuations():
    assert list(import_statements(TEXT)) == [
        (None, ["a.b", "d"]),
        (".x", ["y"]),
        ("..", ["z"]),
        ("p.q", ["r", "s"]),
        (None, ["e"]),
        (None, ["f"]),
        ("g", ["h", "i", "k"]),
        (None, ["l", "m.n"]),
        (".", ["*"]),
        ("u", ["v"]),
    ]


def test_an_unclosed_name_list_is_followed_only_so_far():
    text = "from p import (a,\n" + "    b,\n" * 500
    ((base, names),) = list(import_statements(text))
    assert base == "p" and names[:2] == ["a", "b"] and len(names) < 250


def test_scan_imports_reads_backslash_continuations_like_parenthesised_lists():
    names = set(scan_imports(TEXT))
    assert {"a.b", "d", ".x", ".x.y", "..", "..z", "p.q", "p.q.r", "p.q.s", "e", "f", "u", "u.v"} <= names
    assert {"g", "g.h", "g.i", "g.k", "l", "m.n"} <= names  # the backslash-continued lines
    assert not any(n.endswith("*") or "j" in n.split(".") for n in names)


def test_a_project_module_imported_on_a_continued_line_makes_the_file_a_candidate(tmp_path):
    # no framework word in the file: it is parsed up front only because it imports a project module, here
    # on the second line of a backslash-continued import
    (tmp_path / "helpers.py").write_text("X = 1\n", encoding="utf-8")
    script = tmp_path / "run.py"
    for text in ("import os, \\\n    helpers\n", "from os import path, \\\n    sep\nfrom . import \\\n    helpers\n"):
        script.write_text(text, encoding="utf-8")
        assert _may_train(SourceFile(str(script), text), str(script), [tmp_path]), text
    text = "import os, \\\n    json\n"
    assert not _may_train(SourceFile(str(script), text), str(script), [tmp_path])


def test_comments_in_a_name_list_and_a_from_continued_before_import_are_read():
    """pytorch/examples' FSDP checkpoint_handler.py comments its name list with commas (``FullStateDictConfig,
    # general model non-sharded, non-flattened params``): the names after such a comment are still read; and
    a ``from`` whose ``import`` is on the next, backslash-continued line is one statement."""
    text = (
        "from torch.distributed.fsdp import (\n"
        "    FullyShardedDataParallel as FSDP,\n"
        "    FullStateDictConfig,  # general model non-sharded, non-flattened params\n"
        "    LocalStateDictConfig,  # flattened params, usable only by FSDP\n"
        ")\n"
        "from a.b \\\n    import c\n"
        "from d import (e,  # f, g\n    h)\r\n"
        "from i \\\r\n    import j\r\n"
    )
    found = list(import_statements(text))
    assert ("torch.distributed.fsdp", ["FullyShardedDataParallel", "FullStateDictConfig", "LocalStateDictConfig"]) in found
    assert ("a.b", ["c"]) in found and ("d", ["e", "h"]) in found and ("i", ["j"]) in found
    assert {"a.b.c", "torch.distributed.fsdp.LocalStateDictConfig", "i.j"} <= set(scan_imports(text))


def test_the_text_scan_names_every_module_the_facts_list():
    """Files are cut into groups that no import crosses from ``scan_imports`` (no parse), and a worker does
    not read the files of another group to find a module's importers: so the scan must name at least every
    module a file's facts import. Checked on every fixture and every source file of trainlint."""
    from pathlib import Path

    import libcst as cst

    from trainlint.context import FileContext

    root = Path(__file__).resolve().parents[1]
    paths = sorted((root / "fixtures").rglob("*.py")) + sorted((root / "trainlint").rglob("*.py"))
    assert len(paths) > 100
    checked = 0
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            ctx = FileContext(SourceFile(str(path), text), cst.parse_module(text))
        except cst.ParserSyntaxError:
            continue
        missing = set(ctx.facts.imports) - set(scan_imports(text))
        assert not missing, (str(path), sorted(missing))
        checked += 1
    assert checked > 100
