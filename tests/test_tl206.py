"""TL206 unsafe-learning-rate: what counts as a learning rate written in the code."""

from __future__ import annotations

import textwrap

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_source
from trainlint.source import SourceFile


def _lint(text: str, path: str = "train.py"):
    options = Options(config=Config(layers=[Selection()]), enabled=["TL206"])
    result = lint_source(SourceFile(path, textwrap.dedent(text).lstrip("\n")), options)
    return [f for f in result.findings if f.code == "TL206"]


def test_message_names_the_optimizer_the_value_and_the_constant():
    found = _lint("""
        import torch
        LR = 0.05
        opt = torch.optim.Adam(model.parameters(), lr=LR)
    """)
    assert [f.line for f in found] == [3]
    assert "Adam" in found[0].message and "LR (0.05)" in found[0].message and "3e-4" in found[0].message
    assert found[0].related and found[0].related[0].span.line == 2


def test_value_passed_by_the_only_call_of_a_helper():
    found = _lint("""
        import torch
        def make_opt(model, lr):
            return torch.optim.AdamW(model.parameters(), lr=lr)
        opt = make_opt(model, 0.5)
    """)
    assert [f.line for f in found] == [3]


def test_thresholds_per_optimizer():
    found = _lint("""
        import torch
        a = torch.optim.SGD(p, lr=0.9)
        b = torch.optim.SGD(p, lr=1.0)
        c = torch.optim.Adam(p, lr=9e-3)
        d = torch.optim.Adam(p, lr=1e-2)
        e = torch.optim.Adamax(p, lr=1e-2)
        f = torch.optim.RAdam(p, lr=2e-2)
    """)
    assert [f.line for f in found] == [3, 5, 7]


def test_test_modules_and_lr_written_by_a_scheduler_are_quiet():
    assert _lint("import torch\nopt = torch.optim.Adam(p, lr=0.1)\n", path="tests/test_opt.py") == []
    assert _lint("""
        import torch
        opt = torch.optim.Adam(p, lr=0.1)
        for g in opt.param_groups:
            g["lr"] = 3e-4
    """) == []


# -- TL206 is opt-in (issue 10): off by default, on when a selection names it --------------------------

import subprocess
import sys

from trainlint.rules import opt_in_codes, registry

HOT = "import torch\nmodel = torch.nn.Linear(2, 1)\nopt = torch.optim.Adam(model.parameters(), lr=0.1)\n"


def _enabled(*layers):
    return Config(layers=list(layers)).enabled_codes(list(registry()))


def test_tl206_is_opt_in_and_the_only_static_rule_that_is():
    assert opt_in_codes() == ["TL206"]
    assert "TL206" not in _enabled(Selection())
    assert "TL202" in _enabled(Selection())


def test_a_selection_that_names_it_enables_it():
    assert "TL206" in _enabled(Selection(extend_select=["TL206"]))
    assert "TL206" in _enabled(Selection(select=["TL2"]))
    assert "TL206" in _enabled(Selection(select=["ALL"]))
    assert "TL206" in _enabled(Selection(select=["TL206"]))
    assert "TL206" not in _enabled(Selection(extend_select=["TL206"]), Selection(ignore=["TL206"]))


def _cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "trainlint", *args], cwd=tmp_path, capture_output=True, text=True)


def test_cli_default_run_skips_it_and_extend_select_or_config_enables_it(tmp_path):
    (tmp_path / "train.py").write_text(HOT, encoding="utf-8")
    assert "TL206" not in _cli(tmp_path, "--isolated", "--output-format", "concise", "train.py").stdout
    out = _cli(tmp_path, "--isolated", "--extend-select", "TL206", "--output-format", "concise", "train.py")
    assert "train.py:3:" in out.stdout and "TL206" in out.stdout
    (tmp_path / "pyproject.toml").write_text('[tool.trainlint]\nextend-select = ["TL206"]\n', encoding="utf-8")
    assert "TL206" in _cli(tmp_path, "--output-format", "concise", "train.py").stdout


def test_rule_listing_and_docs_say_it_is_opt_in(tmp_path):
    listing = _cli(tmp_path, "rule", "--all").stdout
    line = next(l for l in listing.splitlines() if l.startswith("TL206"))
    assert "opt-in" in line
    assert all("opt-in" not in l for l in listing.splitlines() if not l.startswith("TL206"))
    page = _cli(tmp_path, "rule", "TL206").stdout
    assert "Opt-in" in page and "--extend-select TL206" in page
    import json

    records = json.loads(_cli(tmp_path, "rule", "--all", "--format", "json").stdout)
    assert {r["code"]: r["opt_in"] for r in records}["TL206"] is True


def test_parameter_group_lrs_through_a_list_variable_appends_and_dict_calls():
    found = _lint("""
        import torch
        groups = [{"params": model.backbone.parameters(), "lr": 1e-4}]
        groups.append(dict(params=model.head.parameters(), lr=0.5))
        opt = torch.optim.Adam(groups, lr=1e-4)
    """)
    assert [f.line for f in found] == [3]
    assert "a parameter group's lr=0.5" in found[0].message
    # near-miss: every group within Adam's range
    assert _lint("""
        import torch
        groups = [{"params": model.backbone.parameters(), "lr": 1e-4}]
        groups.append(dict(params=model.head.parameters(), lr=1e-3))
        opt = torch.optim.Adam(params=groups)
    """) == []
    # the literal spelling keeps working, also as params=
    found = _lint("""
        import torch
        opt = torch.optim.AdamW(params=[{"params": model.parameters(), "lr": 0.2}], lr=3e-4)
    """)
    assert [f.line for f in found] == [2]
