"""Which files make a program: entry scripts and the project files they import, and — when the run holds
only a module (pre-commit passes the staged ``model.py``) — the entry scripts that import it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import libcst as cst
import pytest

from trainlint.analysis import program as program_mod
from trainlint.analysis.program import build_programs, project_root
from trainlint.config import Config, Selection
from trainlint.context import FileContext
from trainlint.engine import Options, lint_paths
from trainlint.rules import registry
from trainlint.source import read_source

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _options():
    config = Config(layers=[Selection()])
    return Options(config=config, enabled=config.enabled_codes(list(registry())))


def _write(root: Path, files: dict) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")


def _lint(paths, root: Path):
    report, _ = lint_paths([str(p) for p in paths], _options())
    assert not report.errors, report.errors
    return sorted((Path(f.path).resolve().relative_to(root.resolve()).as_posix(), f.line, f.code) for f in report.findings)


def _expected(folder: Path, only: str):
    out = []
    for raw in (folder / "expected.txt").read_text(encoding="utf-8").splitlines():
        raw = raw.strip()
        if raw and not raw.startswith("#"):
            where, code = raw.split()
            path, line = where.rsplit(":", 1)
            if path == only:
                out.append((path, int(line), code))
    return sorted(out)


@pytest.mark.parametrize("folder,module", [
    ("tl101_model_only_staged_regressor", "nets/price_net.py"),
    ("tl101_clean_model_only_encoder_with_head", "encoder.py"),
])
def test_a_module_linted_alone_is_analysed_with_the_entries_that_import_it(folder, module):
    root = FIXTURES / folder
    assert _lint([root / module], root) == _expected(root, module)


def test_the_importing_entry_is_found_through_a_helper_and_its_own_findings_stay_unreported(tmp_path):
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/model.py": """
            import torch.nn as nn
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(4, 1)
                def forward(self, x):
                    return self.fc(x).relu()
        """,
        "pkg/builder.py": """
            from .model import Net
            def build():
                return Net()
        """,
        "scripts/train.py": """
            import torch
            from pkg.builder import build
            model = build()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for x, y in loader:          # no seed, no zero_grad: findings of train.py, not of this run
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
        """,
    })
    found = _lint([tmp_path / "pkg" / "model.py"], tmp_path)
    assert found == [("pkg/model.py", 8, "TL101")], found


def test_only_files_that_import_the_module_are_parsed(tmp_path):
    (tmp_path / "setup.py").write_text("", encoding="utf-8")
    _write(tmp_path, {
        "model.py": "import torch.nn as nn\nclass Net(nn.Module):\n    pass\n",
        "train.py": "from model import Net\nif __name__ == '__main__':\n    Net()\n",
        "notes.py": "# the model is trained elsewhere\nx = 1\n",
        "data.py": "import numpy as np\n",
        ".venv/lib/model_user.py": "import model\n",
    })
    parsed = []

    def load(real):
        parsed.append(os.path.basename(real))
        source = read_source(real, real)
        return FileContext(source, cst.parse_module(source.text))

    real = os.path.realpath(tmp_path / "model.py")
    programs = build_programs({real: load(real)}, load)
    assert [os.path.basename(p.entry.path) for p in programs] == ["train.py"]
    assert sorted(parsed) == ["model.py", "train.py"]  # notes.py, data.py and .venv/ are never parsed
    assert [f.in_run for f in programs[0].files] == [False, True]


def test_no_importer_no_program_and_no_error(tmp_path):
    (tmp_path / ".git").mkdir()
    _write(tmp_path, {"model.py": "import torch.nn as nn\nclass Net(nn.Module):\n    pass\n",
                      "test_model.py": "from model import Net\ndef test_net():\n    Net()\n"})
    assert _lint([tmp_path / "model.py"], tmp_path) == []
    assert project_root(str(tmp_path / "model.py")) == str(tmp_path)


def test_an_entry_script_linted_alone_scans_nothing(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    _write(tmp_path, {"train.py": "import torch\nfor epoch in range(2):\n    train()\n", "other.py": "import train\n"})
    monkeypatch.setattr(program_mod._ImporterFinder, "importers", lambda *a: pytest.fail("scanned for importers"))
    _lint([tmp_path / "train.py"], tmp_path)


def test_a_package_importing_itself_by_absolute_name_is_followed_when_the_run_is_inside_it(tmp_path):
    # allennlp/run.py does `from allennlp.commands import main`; linting the package's files (the run's
    # common folder is the package itself) must still link the entry to allennlp/commands/...
    _write(tmp_path, {
        "proj/allennlp/__init__.py": "",
        "proj/allennlp/run.py": """
            from allennlp.commands import main
            if __name__ == "__main__":
                main()
        """,
        "proj/allennlp/commands/__init__.py": "from allennlp.commands.train import main\n",
        "proj/allennlp/commands/train.py": """
            import torch
            from torch import nn
            def main():
                model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1), nn.ReLU())
                opt = torch.optim.SGD(model.parameters(), lr=0.1)
                for x, y in [(torch.randn(2, 4), torch.randn(2, 1))]:
                    loss = nn.MSELoss()(model(x), y)
                    opt.zero_grad(); loss.backward(); opt.step()
        """,
    })
    pkg = tmp_path / "proj" / "allennlp"
    found = program_mod.resolve_module("allennlp.commands", str(pkg / "run.py"), [pkg])
    assert found is not None and Path(found) == pkg / "commands" / "__init__.py"
    codes = {code for _, _, code in _lint([pkg / "run.py", pkg / "commands" / "__init__.py", pkg / "commands" / "train.py"], tmp_path)}
    assert "TL101" in codes


def test_an_absolute_import_of_a_library_is_not_resolved_through_a_folder_of_the_same_name(tmp_path):
    # vendor/torch/patch.py does `import torch.nn`: the ancestor folder is named `torch` but holds no
    # `nn`, so the import stays the library's
    _write(tmp_path, {"vendor/torch/patch.py": "import torch.nn\n", "vendor/torch/notes.py": "X = 1\n"})
    importer = tmp_path / "vendor" / "torch" / "patch.py"
    assert program_mod.resolve_module("torch.nn", str(importer), [importer.parent]) is None


_SEEDED_BY_HELPER = """\
    import torch
    from torch import nn
    from helpers import prepare

    def main():
        prepare(0)
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(10):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    if __name__ == "__main__":
        main()
"""
_HELPERS = """\
    import random
    import torch

    def prepare(seed):
        random.seed(seed)
        torch.manual_seed(seed)
"""


def test_a_module_created_between_two_runs_of_one_process_is_found(tmp_path):
    # An editor's server lints again and again in one process: the folder listings and resolved imports of
    # one run must not answer the next. train.py seeds through helpers.prepare(); while helpers.py does not
    # exist, nothing seeds and TL301 reports it; once it is written, the same process must see it.
    _write(tmp_path, {"train.py": _SEEDED_BY_HELPER})
    assert ("train.py", 9, "TL301") in _lint([tmp_path / "train.py"], tmp_path)
    _write(tmp_path, {"helpers.py": _HELPERS})
    assert _lint([tmp_path / "train.py"], tmp_path) == []
    (tmp_path / "helpers.py").unlink()  # and deleted again: no stale resolution to a missing file
    assert ("train.py", 9, "TL301") in _lint([tmp_path / "train.py"], tmp_path)
