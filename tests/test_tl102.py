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
