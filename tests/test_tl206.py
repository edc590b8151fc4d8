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
