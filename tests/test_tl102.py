"""TL102 dropout-before-batchnorm: behaviour the rule's snippets do not cover (containers, repeated
blocks, messages, near-misses in forward)."""

from __future__ import annotations

import textwrap

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_source
from trainlint.source import SourceFile

CODE = "TL102"


def lint(text: str):
    options = Options(config=Config(layers=[Selection()]), enabled=[CODE])
    result = lint_source(SourceFile("model.py", textwrap.dedent(text)), options)
    assert result.error is None, result.error
    return [f for f in result.findings if f.code == CODE]


def test_message_names_the_dropout_rate_and_the_batchnorm_line():
    found = lint("""
        import torch.nn as nn
        P = 0.25
        head = nn.Sequential(nn.Linear(8, 8), nn.AlphaDropout(P), nn.ReLU(), nn.SyncBatchNorm(8))
    """)
    assert [f.line for f in found] == [4]
    f = found[0]
    assert "nn.AlphaDropout(p=0.25)" in f.message and "nn.SyncBatchNorm" in f.message
    assert "through 1 layer" in f.message
    assert f.related[0].span.line == 4 and f.related[0].span.column > f.span.column


def test_ordered_dict_and_nested_sequentials():
    found = lint("""
        from collections import OrderedDict
        import torch.nn as nn
        body = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(10, 10)),
            ("drop", nn.Dropout(0.1)),
        ]))
        net = nn.Sequential(body, nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10)), nn.Linear(10, 1))
    """)
    assert [f.line for f in found] == [6]


def test_module_list_of_repeated_blocks_built_by_a_comprehension():
    found = lint("""
        import torch.nn as nn
        class Block(nn.Module):
            def __init__(self, d):
                super().__init__()
                self.bn = nn.BatchNorm1d(d)
                self.fc = nn.Linear(d, d)
                self.drop = nn.Dropout(0.3)
            def forward(self, x):
                return self.drop(self.fc(self.bn(x).relu()))
        class Net(nn.Module):
            def __init__(self, d=64):
                super().__init__()
                self.blocks = nn.ModuleList([Block(d) for _ in range(4)])
                self.out = nn.Linear(d, 1)
            def forward(self, x):
                for blk in self.blocks:
                    x = blk(x)
                return self.out(x)
    """)
    assert [f.line for f in found] == [10]
    assert "later block" in found[0].message


def test_forward_order_across_statements_and_conditional_dropout():
    found = lint("""
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(4, 16)
                self.drop = nn.Dropout(0.4)
                self.fc2 = nn.Linear(16, 16)
                self.bn = nn.BatchNorm1d(16)
            def forward(self, x, use_dropout=True):
                x = self.fc1(x).relu()
                if use_dropout:
                    x = self.drop(x)
                x = self.fc2(x)
                x = self.bn(x)
                return x
    """)
    assert [f.line for f in found] == [13]


def test_dropout_on_a_branch_that_is_returned_separately_is_not_flagged():
    assert lint("""
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
                self.drop = nn.Dropout2d(0.2)
                self.proj = nn.Conv2d(8, 8, 1)
                self.bn = nn.BatchNorm2d(8)
            def forward(self, x):
                h = self.stem(x)
                side = self.proj(self.drop(h))
                main = self.bn(self.proj(h))
                return {"main": main, "side": side}
    """) == []


def test_loop_with_unknown_iterations_and_single_use_blocks_are_not_flagged():
    assert lint("""
        import torch.nn as nn
        def mlp(dims, p):
            layers = []
            for i in range(len(dims) - 1):
                layers += [nn.Linear(dims[i], dims[i + 1]), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(), nn.Dropout(p)]
            return nn.Sequential(*layers)
    """) == []


def test_parallel_inputs_of_a_merge_do_not_feed_each_other():
    # GoogLeNet-style: the main output (after dropout) and an aux output (through BN blocks) are
    # packed together; the dropout never reaches the aux head's BatchNorm.
    assert lint("""
        import torch.nn as nn
        import torch.nn.functional as F
        from collections import namedtuple
        Outputs = namedtuple("Outputs", ["logits", "aux"])
        class ConvBN(nn.Module):
            def __init__(self, i, o):
                super().__init__()
                self.conv = nn.Conv2d(i, o, 3)
                self.bn = nn.BatchNorm2d(o)
            def forward(self, x):
                return F.relu(self.bn(self.conv(x)))
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = ConvBN(3, 8)
                self.b = ConvBN(8, 8)
                self.aux = ConvBN(8, 8)
                self.drop = nn.Dropout(0.4)
                self.fc = nn.Linear(8, 10)
            def forward(self, x):
                x = self.a(x)
                aux = self.aux(x)
                x = self.b(x).mean((2, 3))
                x = self.fc(self.drop(x))
                return Outputs(x, aux)
    """) == []
    # ...but a dropout on one input of a concatenation does feed a BatchNorm after it
    found = lint("""
        import torch
        import torch.nn as nn
        class Fuse(nn.Module):
            def __init__(self):
                super().__init__()
                self.drop = nn.Dropout(0.3)
                self.bn = nn.BatchNorm1d(32)
            def forward(self, a, b):
                return self.bn(torch.cat([self.drop(a), b], dim=1))
    """)
    assert [f.line for f in found] == [10]


def test_a_file_shared_by_programs_is_judged_in_each_and_its_answer_reused_where_it_holds(tmp_path, monkeypatch):
    """The program pass asks each file's pairs on their own and keeps the answer with what it asked of
    the program (here: what the call sites of build_mlp pass for batch_norm and sizes). A program that
    answers those questions the same way reuses it; one whose call site turns BatchNorm off computes
    its own, in whatever order the programs come."""
    import os

    import libcst as cst

    from trainlint.analysis.program import build_programs
    from trainlint.context import FileContext
    from trainlint.rules.tl102_dropout_before_batchnorm import DropoutBeforeBatchnorm
    from trainlint.source import SourceFile

    blocks = '''
import torch.nn as nn

SIZES = [42, 256, 256, 128]


def dense_block(n_in, n_out, dropout, batch_norm):
    layers = [nn.Linear(n_in, n_out)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(n_out))
    layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return layers


def build_mlp(sizes, n_classes, dropout=0.25, batch_norm=True):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers.extend(dense_block(n_in, n_out, dropout, batch_norm))
    layers.append(nn.Linear(sizes[-1], n_classes))
    return nn.Sequential(*layers)
'''
    entry = '''
import torch
from blocks import SIZES, build_mlp

if __name__ == "__main__":
    model = build_mlp(SIZES, n_classes=2{extra})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in torch.load("train.pt"):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
'''
    (tmp_path / "blocks.py").write_text(blocks, encoding="utf-8")
    (tmp_path / "a_train.py").write_text(entry.format(extra=""), encoding="utf-8")
    (tmp_path / "b_train.py").write_text(entry.format(extra=", batch_norm=False"), encoding="utf-8")
    (tmp_path / "c_train.py").write_text(entry.format(extra=""), encoding="utf-8")

    computed = []
    pairs = DropoutBeforeBatchnorm._pairs

    def counting(self, world, file):
        computed.append(os.path.basename(file.path))
        return pairs(self, world, file)

    monkeypatch.setattr(DropoutBeforeBatchnorm, "_pairs", counting)

    def ctx(path):
        text = open(path, encoding="utf-8").read()
        return FileContext(SourceFile(str(path), text), cst.parse_module(text))

    for order in (["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]):
        computed.clear()
        run = {os.path.realpath(p): ctx(p) for p in sorted(tmp_path.glob("*.py"))}
        programs = {os.path.basename(p.entry.path)[0]: p for p in build_programs(run, lambda real: None)}
        found = {}
        for name in order:
            found[name] = [(os.path.basename(f.path), f.span.line) for f in DropoutBeforeBatchnorm().check_program(programs[name])]
        assert found["a"] == found["c"] == [("blocks.py", 11)], found
        assert found["b"] == [], found
        assert computed == ["blocks.py", "blocks.py"], (order, computed)  # the third program reused one
