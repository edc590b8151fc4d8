"""A program holds what its names reach, not every file its imports could reach: an entry that takes one
class from a package whose ``__init__.py`` re-exports twenty modules holds that class's module (and what
that module uses), not the other nineteen. Every way of reaching a name keeps its file, and the findings
that need it: a star import, a module read by attribute, a submodule imported with ``from . import m``,
a base class in another file, a helper called from the loop, a module imported for what it does when it
runs."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import libcst as cst
import pytest

from trainlint.analysis.program import build_programs
from trainlint.config import Config, Selection
from trainlint.context import FileContext
from trainlint.engine import Options, lint_paths
from trainlint.rules import registry
from trainlint.source import read_source


def _write(root: Path, files: dict) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")


def _programs(root: Path, run: list):
    """The programs of a run of these files (relative names), and the files parsed to build them."""
    parsed = []

    def load(real):
        parsed.append(Path(real).relative_to(root.resolve()).as_posix())
        source = read_source(real, real)
        return FileContext(source, cst.parse_module(source.text))

    files = {os.path.realpath(root / r): None for r in run}
    for real in files:
        source = read_source(real, real)
        files[real] = FileContext(source, cst.parse_module(source.text))
    programs = build_programs(files, load, [root.resolve()])
    rel = {p.entry.display and Path(p.entry.path).relative_to(root.resolve()).as_posix():
           [Path(f.path).relative_to(root.resolve()).as_posix() for f in p.files] for p in programs}
    return rel, parsed, programs


def _lint(root: Path, jobs: int = 1):
    config = Config(layers=[Selection()])
    options = Options(config=config, enabled=config.enabled_codes(list(registry())), jobs=jobs)
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return sorted((Path(f.path).resolve().relative_to(root.resolve()).as_posix(), f.line, f.code) for f in report.findings)


MODULE = """
    import torch.nn as nn
    from .blocks import Block{i}


    class Net{i}(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = Block{i}()

        def forward(self, x):
            return self.body(x)
"""
BLOCKS = "import torch.nn as nn\n" + "".join(f"\n\nclass Block{i}(nn.Linear):\n    pass\n" for i in range(20))
TRAIN = """
    import torch
    from nets import Net3

    torch.manual_seed(0)
    model = Net3()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in [(torch.randn(2, 4), torch.randn(2, 1))]:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
"""


def _package(root: Path) -> None:
    files = {f"nets/m{i}.py": MODULE.format(i=i) for i in range(20)}
    files["nets/__init__.py"] = "".join(f"from .m{i} import Net{i}\n" for i in range(20)) + \
        "__all__ = [" + ", ".join(f"'Net{i}'" for i in range(20)) + "]\n"
    files["nets/blocks.py"] = BLOCKS
    files["train.py"] = TRAIN
    _write(root, files)


def test_an_entry_that_takes_one_name_of_a_package_holds_only_what_that_name_reaches(tmp_path):
    _package(tmp_path)
    programs, parsed, found = _programs(tmp_path, ["train.py"])
    assert programs == {"train.py": ["train.py", "nets/__init__.py", "nets/m3.py", "nets/blocks.py"]}
    assert sorted(parsed) == ["nets/__init__.py", "nets/blocks.py", "nets/m3.py"]  # the other 19 are never parsed
    # the edges followed: the __init__.py passed through for Net3 only
    imports = found[0].imports
    init = os.path.realpath(tmp_path / "nets" / "__init__.py")
    assert imports[init] == [os.path.realpath(tmp_path / "nets" / "m3.py")]


def test_the_package_linted_whole_keeps_every_program_file_and_the_same_findings_with_workers(tmp_path):
    _package(tmp_path)
    assert _lint(tmp_path, jobs=1) == _lint(tmp_path, jobs=2) == []


SOLVER = """
    import torch


    def run_epoch(net, loader, criterion, solver):
        net.train()
        for images, labels in loader:
            loss = criterion(net(images), labels)
            loss.backward()
            solver.step()
"""
ENTRY = """
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader, TensorDataset
    {imports}

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    solver = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,))), batch_size=2, shuffle=True)
    for epoch in range(10):
        {call}(net, loader, criterion, solver)
"""
# (the package's other modules: re-exported, never used by the entry)
OTHERS = {f"trainer/other{i}.py": f"import torch\n\n\ndef helper{i}(x):\n    return x\n" for i in range(5)}


@pytest.mark.parametrize("layout,imports,call", [
    ("flat", "from solver import run_epoch", "run_epoch"),
    ("flat", "import solver as S", "S.run_epoch"),
    ("flat", "from solver import *", "run_epoch"),
    ("package", "from trainer import solver", "solver.run_epoch"),
    ("package", "import trainer.solver", "trainer.solver.run_epoch"),
    ("package", "from trainer import run_epoch", "run_epoch"),
    ("package", "import trainer", "trainer.run_epoch"),
])
def test_a_helper_called_from_the_loop_keeps_its_file_and_its_finding(tmp_path, layout, imports, call):
    # the SGD optimizer reaches run_epoch() as `solver`, which never clears the gradients (TL204): the
    # finding needs the entry's program to hold solver.py, however the entry names the helper
    files = {"train.py": ENTRY.format(imports=imports, call=call)}
    if layout == "flat":
        files["solver.py"] = SOLVER
        where = "solver.py"
    else:
        files["trainer/solver.py"] = SOLVER
        files.update(OTHERS)
        files["trainer/__init__.py"] = "from .solver import run_epoch\n" + "".join(
            f"from .other{i} import helper{i}\n" for i in range(5))
        where = "trainer/solver.py"
    _write(tmp_path, files)
    programs, _, _ = _programs(tmp_path, ["train.py"])
    assert where in programs["train.py"]
    assert not any("other" in f for f in programs["train.py"])  # re-exported, never used
    if imports.endswith("*"):
        return  # (the analysis does not yet resolve a function a star import brings: the file is there for it)
    assert (where, 10, "TL204") in _lint(tmp_path)  # solver.step()


def test_a_seed_helper_read_through_a_module_alias_or_a_side_effect_import_is_seen(tmp_path):
    base = """
        import torch
        import torch.nn as nn
        {imports}
        {seed}
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in [(torch.randn(2, 4), torch.randn(2, 1))]:
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    """
    utils = "import torch\n\n\ndef set_seed(s):\n    torch.manual_seed(s)\n"
    seeding = "import torch\n\ntorch.manual_seed(0)\n"  # seeds when imported
    cases = {
        "alias": ("import utils", "utils.set_seed(0)"),
        "side_effect": ("import seeding  # noqa: F401", ""),
        "unseeded": ("import utils", ""),
    }
    found = {}
    for name, (imports, seed) in cases.items():
        root = tmp_path / name
        _write(root, {"utils.py": utils, "seeding.py": seeding, "train.py": base.format(imports=imports, seed=seed)})
        found[name] = {code for path, _, code in _lint(root) if path == "train.py"}
    assert "TL301" not in found["alias"]
    assert "TL301" not in found["side_effect"]
    assert "TL301" in found["unseeded"]  # the near miss: utils is imported, its seed helper never called


def test_a_base_class_in_another_file_keeps_its_file(tmp_path):
    _write(tmp_path, {
        "nets/__init__.py": "from .base import Base\nfrom .head import Head\nfrom .unused import Unused\n",
        "nets/base.py": "import torch.nn as nn\n\n\nclass Base(nn.Module):\n    pass\n",
        "nets/head.py": "import torch.nn as nn\nfrom .base import Base\n\n\nclass Head(Base):\n    pass\n",
        "nets/unused.py": "import torch.nn as nn\n\n\nclass Unused(nn.Module):\n    pass\n",
        "train.py": "from nets import Head\n\nif __name__ == '__main__':\n    Head()\n",
    })
    programs, _, _ = _programs(tmp_path, ["train.py"])
    assert programs["train.py"] == ["train.py", "nets/__init__.py", "nets/head.py", "nets/base.py"]


def test_a_module_used_as_a_value_brings_everything_it_exports(tmp_path):
    # getattr(models, args.arch): any model of the package may be the one trained
    _write(tmp_path, {
        "models/__init__.py": "from .a import A\nfrom .b import B\n",
        "models/a.py": "class A:\n    pass\n",
        "models/b.py": "class B:\n    pass\n",
        "train.py": "import sys\nimport models\n\nif __name__ == '__main__':\n    getattr(models, sys.argv[1])()\n",
    })
    programs, _, _ = _programs(tmp_path, ["train.py"])
    assert programs["train.py"] == ["train.py", "models/__init__.py", "models/a.py", "models/b.py"]


def test_a_module_level_loop_that_fills_a_registry_does_not_make_an_entry_script(tmp_path):
    # timm's vision_transformer.py ends with `for n in _quick_gelu_cfgs: default_cfgs[n] = ...`: a library
    # module, judged as one whether the package is linted whole (its __init__.py imports it) or the file
    # alone; a notebook-style script's epoch loop still makes one
    _write(tmp_path, {
        "registry.py": """
            import copy
            import torch.nn as nn
            default_cfgs = {"a": {"lr": 1.0}}
            for n in list(default_cfgs):
                c = copy.deepcopy(default_cfgs[n])
                default_cfgs[n + "_b"] = c


            class Net(nn.Module):
                pass
        """,
        "notebook.py": """
            import torch
            model = torch.nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(3):
                opt.zero_grad()
                print(torch.nn.functional.mse_loss(model(torch.randn(2, 4)), torch.randn(2, 1)))
                opt.step()
        """,
    })
    programs, _, found = _programs(tmp_path, ["registry.py", "notebook.py"])
    kinds = {Path(p.entry.path).name: p.library for p in found}
    assert kinds == {"registry.py": True, "notebook.py": False}


def test_editing_a_module_the_entry_takes_nothing_from_keeps_its_cached_program(tmp_path):
    """The program's cache key holds its files and the imports it follows: editing nets/m7.py (re-exported
    by nets/__init__.py, never used by train.py) leaves train.py's cached program as it is; editing
    nets/m3.py recomputes it; every run says what a run without the cache says."""
    from trainlint.cache import Cache, fingerprint

    project = tmp_path / "proj"
    _package(project)
    (project / "train.py").write_text(textwrap.dedent(TRAIN).replace("    opt.zero_grad()\n", ""))  # TL204
    config = Config(layers=[Selection()])
    enabled = list(registry())

    def run(cached: bool = True):
        cache = Cache(tmp_path / "cache", fingerprint(enabled, False, config.max_file_size)) if cached else None
        report, _ = lint_paths([str(project / "train.py")], Options(config=config, enabled=enabled, cache=cache, jobs=1))
        assert not report.errors, report.errors
        return [(f.path, f.span, f.code) for f in report.findings], (cache.written if cache is not None else None)

    cold, written = run()
    assert written.get("program") == 1 and [code for _, _, code in cold] == ["TL204"]
    warm, written = run()
    assert warm == cold and written == {}
    (project / "nets" / "m7.py").write_text((project / "nets" / "m7.py").read_text() + "\n# touched\n")
    again, written = run()
    assert written == {} and again == cold  # m7.py is no file of train.py's program: nothing recomputed
    (project / "nets" / "m3.py").write_text((project / "nets" / "m3.py").read_text() + "\n# touched\n")
    again, written = run()
    assert written.get("program") == 1  # m3.py is
    assert again == run(cached=False)[0] == cold


def test_a_staged_module_is_analysed_with_the_entries_whose_names_reach_it_and_the_others_are_not_parsed(tmp_path):
    # pre-commit passes nets/vit.py alone: nets/__init__.py star-imports it; train_vit.py asks the package
    # for ViT (which leads to vit.py), train_cnn.py for create_cnn (which does not: it is not even parsed,
    # its `from nets import create_cnn` says so), eval_cnn.py for create_cnn with a backslash continuation
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    _write(tmp_path, {
        "nets/__init__.py": "from .vit import *\nfrom .cnn import create_cnn\n",
        "nets/vit.py": "import torch.nn as nn\n\n\nclass ViT(nn.Module):\n    pass\n",
        "nets/cnn.py": "import torch.nn as nn\n\n\ndef create_cnn():\n    return nn.Conv2d(3, 8, 3)\n",
        "train_vit.py": "from nets import ViT\n\nif __name__ == '__main__':\n    ViT()\n",
        "train_cnn.py": "import torch\nfrom nets import create_cnn\n\nif __name__ == '__main__':\n    create_cnn()\n",
        "eval_cnn.py": "import torch\nfrom nets import torch as _t, \\\n    create_cnn\n\nif __name__ == '__main__':\n    create_cnn()\n",
    })
    programs, parsed, found = _programs(tmp_path, ["nets/vit.py"])
    assert programs == {"train_vit.py": ["train_vit.py", "nets/__init__.py", "nets/vit.py"]}
    assert not found[0].library
    assert "train_cnn.py" not in parsed and "eval_cnn.py" not in parsed
    # the same question, when no entry's names reach the file: a library module of its own
    (tmp_path / "train_vit.py").unlink()
    programs, parsed, found = _programs(tmp_path, ["nets/vit.py"])
    assert programs == {"nets/vit.py": ["nets/vit.py"]} and found[0].library


def test_the_importer_search_finds_an_entry_that_names_the_module_on_a_continued_import_line(tmp_path):
    # pre-commit passes nets/vit.py alone; each entry names it only on the second line of a backslash-
    # continued import (timm's vovnet.py writes its layer imports so): the importer search reads import
    # lines as the engine does (trainlint.import_scan) and finds both
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    _write(tmp_path, {
        "nets/__init__.py": "",
        "nets/vit.py": "import torch.nn as nn\n\n\nclass ViT(nn.Module):\n    pass\n",
        "train.py": "import torch\nfrom nets import \\\n    vit\n\nif __name__ == '__main__':\n    vit.ViT()\n",
        "train2.py": "import torch, \\\n    nets.vit\n\nif __name__ == '__main__':\n    nets.vit.ViT()\n",
        "train3.py": "import torch\nfrom nets import (\n    vit,\n)\n\nif __name__ == '__main__':\n    vit.ViT()\n",
    })
    programs, _, found = _programs(tmp_path, ["nets/vit.py"])
    assert sorted(programs) == ["train.py", "train2.py", "train3.py"]
    assert all("nets/vit.py" in files for files in programs.values())
    assert not any(p.library for p in found)


def test_files_the_importer_search_reads_are_parsed_with_libcst_only_when_a_program_holds_them(tmp_path, monkeypatch):
    # nets/vit.py staged alone: nets/deit.py and nets/__init__.py import it and are read (CPython's ast) to
    # look for entry scripts; none is found, vit.py is a library module of its own; only what its program
    # holds (vit.py, nets/layers.py) is parsed with libcst
    import trainlint.engine as engine

    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    _write(tmp_path, {
        "nets/__init__.py": "from .vit import *\nfrom .deit import *\n",
        "nets/layers.py": "import torch.nn as nn\n\n\nclass Mlp(nn.Module):\n    pass\n",
        "nets/vit.py": "import torch.nn as nn\nfrom .layers import Mlp\n\n\nclass ViT(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.mlp = Mlp()\n",
        "nets/deit.py": "from .vit import ViT\n\n\nclass DeiT(ViT):\n    pass\n",
    })
    parsed = []
    real_parse = engine._parse_context

    def spy(source, options):
        parsed.append(Path(source.path).name)
        return real_parse(source, options)

    monkeypatch.setattr(engine, "_parse_context", spy)
    config = Config(layers=[Selection()])
    report, _ = lint_paths([str(tmp_path / "nets" / "vit.py")], Options(config=config, enabled=config.enabled_codes(list(registry()))))
    assert not report.errors, report.errors
    assert "deit.py" not in parsed and "__init__.py" not in parsed
    assert "layers.py" in parsed


@pytest.mark.parametrize("limit", [200, 12, 4, 2])
def test_answers_kept_across_the_programs_of_a_build_give_the_programs_of_answers_made_afresh(tmp_path, monkeypatch, limit):
    """The programs of a package ask the same files the same questions (every model module asks its
    blocks); answering each question once per build and replaying the answer gives, program for program,
    the files and imports of answering it afresh, also where MAX_PROGRAM_FILES cuts a program (limit 2, 4:
    then the questions near the limit are answered afresh)."""
    import trainlint.analysis.program as program_mod

    _package(tmp_path)
    monkeypatch.setattr(program_mod, "MAX_PROGRAM_FILES", limit)
    run = ["train.py", "nets/__init__.py", "nets/blocks.py"] + [f"nets/m{i}.py" for i in range(20)]
    kept_runs = []
    closure = program_mod._closure
    for keep in (True, False):
        kept: list = []

        def spy(entry, node_for, where, steps=None, keep=keep, kept=kept):
            if steps is not None:
                kept.append(steps)
            return closure(entry, node_for, where, steps if keep else None)

        monkeypatch.setattr(program_mod, "_closure", spy)
        _, _, found = _programs(tmp_path, run)
        kept_runs.append([(p.entry.path, p.library, [f.path for f in p.files], dict(p.imports)) for p in found])
        if keep and limit == 200:
            assert kept and len(kept[0]) > 0  # answers were kept (and replayed by the later programs)
    assert kept_runs[0] == kept_runs[1]
    assert len(kept_runs[0]) >= 20
    if limit < 200:
        assert all(len(files) <= limit for _, _, files, _ in kept_runs[0])
