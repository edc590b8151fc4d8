"""Speed features that must not change what trainlint finds: skipping files without training code,
lazy imports (a one-file run imports only what it needs)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths, scan_imports
from trainlint.rules import registry

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


def _options(**kw) -> Options:
    config = Config(layers=[Selection()])
    codes = sorted(set(config.enabled_codes(list(registry()))) | {"TL002"})
    return Options(config=config, enabled=codes, report_unused_suppressions=True, **kw)


def _lines(report):
    return [(f.path, f.span, f.code, f.message, f.severity) for f in report.findings]


def _write(root: Path, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")


def test_skipping_files_without_training_code_changes_no_finding_on_fixtures():
    skipped, _ = lint_paths([str(FIXTURES)], _options())
    parsed, _ = lint_paths([str(FIXTURES)], _options(parse_all=True))
    assert _lines(skipped) == _lines(parsed)
    assert len(skipped.findings) > 20
    assert skipped.files_checked == parsed.files_checked


SEEDLESS = {
    "train.py": """\
        import torch
        from helpers import make_loader

        model = torch.nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in make_loader():
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
    """,
    # no framework named, but the training script imports it: it is parsed and judged
    "helpers.py": """\
        import random

        def make_loader():
            data = list(range(10))
            random.shuffle(data)  # noqa: TL999
            return data
    """,
    # neither: not parsed, yet a syntax error is still reported
    "broken.py": "def f(:\n    pass\n",
    "plain.py": "x = 1  # noqa: TL301\n",
}


def test_a_file_without_training_code_is_judged_when_a_training_file_imports_it(tmp_path):
    _write(tmp_path, SEEDLESS)
    skipped, _ = lint_paths([str(tmp_path)], _options())
    parsed, _ = lint_paths([str(tmp_path)], _options(parse_all=True))
    assert _lines(skipped) == _lines(parsed)
    codes = {(Path(f.path).name, f.code) for f in skipped.findings}
    assert ("broken.py", "TL001") in codes
    assert ("plain.py", "TL002") in codes  # the unused suppression: as if every rule ran on it
    assert ("helpers.py", "TL002") in codes  # malformed code in a parsed helper


def test_scan_imports_finds_every_import_form():
    text = "import a.b as c, d\nfrom .x import y\nfrom .. import z\nfrom p.q import (r,\n s)\nimport e;import f\n"
    assert set(scan_imports(text)) >= {"a.b", "d", ".x", "..", "p.q", "e", "f"}


def _imported_modules(args, cwd) -> set:
    code = ("import sys, runpy; sys.argv = ['trainlint'] + %r\n"
            "try:\n    runpy.run_module('trainlint', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMODULES=' + __import__('json').dumps(sorted(sys.modules)))\n") % (list(args),)
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    tail = proc.stderr.rsplit("MODULES=", 1)
    assert len(tail) == 2, proc.stderr
    return set(json.loads(tail[1]))


def test_a_file_without_training_code_never_imports_libcst_or_the_rules(tmp_path):
    (tmp_path / "setup_utils.py").write_text("import os\n\nprint(os.getcwd())\n", encoding="utf-8")
    mods = _imported_modules(["setup_utils.py", "--no-cache"], tmp_path)
    assert "trainlint.cli" in mods
    assert "libcst" not in mods
    assert not any(m.startswith("trainlint.rules.tl") for m in mods)
    assert "torch" not in mods


def test_rule_codes_from_module_names_are_the_registry():
    from trainlint.rules import codes

    assert codes() == list(registry())


def test_report_rules_are_read_on_first_use():
    from trainlint.engine import rule_infos

    options = _options()
    infos = rule_infos(options)
    assert set(infos) == set(options.enabled)
    assert dict(infos)["TL202"].name == registry()["TL202"].name


def test_opt_in_codes_read_from_the_modules_are_the_classes_flags():
    code = ("import trainlint.rules as r; a = r.opt_in_codes(); import sys; assert 'libcst' not in sys.modules; "
            "b = [c for c, k in r.registry().items() if getattr(k, 'opt_in', False)]; assert a == b and a, (a, b)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_file_without_training_code_run_alone_is_still_judged_by_its_importers(tmp_path):
    """pre-commit passes only the staged helpers.py: the scripts that import it are found as before."""
    _write(tmp_path, SEEDLESS)
    (tmp_path / ".git").mkdir()
    alone, _ = lint_paths([str(tmp_path / "helpers.py")], _options())
    parsed, _ = lint_paths([str(tmp_path / "helpers.py")], _options(parse_all=True))
    assert _lines(alone) == _lines(parsed)


def test_a_script_driving_a_torch_framework_without_writing_torch_is_parsed(tmp_path):
    # allennlp's scripts/write_srl_predictions_to_conll_format.py imports only allennlp (installed, or
    # not resolvable from scripts/): it is an inference program all the same
    from trainlint.engine import _may_train
    from trainlint.source import SourceFile

    script = tmp_path / "scripts" / "predict.py"
    script.parent.mkdir()
    for text in ("from allennlp.models import Model\nmodel = Model.load(cfg)\nfor b in batches:\n    model(**b)\n",
                 "import ignite.engine\n", "from skorch import NeuralNet\n", "from fastai.vision.all import *\n"):
        script.write_text(text, encoding="utf-8")
        assert _may_train(SourceFile(str(script), text), str(script), [tmp_path]), text
    text = "import os\nimport json\nprint(json.dumps(dict(os.environ)))\n"
    assert not _may_train(SourceFile(str(script), text), str(script), [tmp_path])
