from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

from trainlint.analysis.modules import Chain, ModelWorld, Op, feeds, module_classes, sequential_calls
from trainlint.analysis.objects import per_file
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule


def dropout_bn_pairs(chain: Chain) -> List[Tuple[Op, Op, int]]:
    """(dropout, the first batchnorm after it, how many layers between) for every active dropout of a
    chain that a BatchNorm follows on the same path."""
    out = []
    for i, op in enumerate(chain):
        if op.kind != "dropout":
            continue
        for j in range(i + 1, len(chain)):
            if chain[j].kind == "bn" and feeds(op, chain[j]):
                between = sum(1 for k in range(i + 1, j) if chain[k].kind in ("layer", "act", "op"))
                # the same BatchNorm object before the dropout: a repeated block feeds the next one
                repeated = any(chain[k].node is chain[j].node for k in range(i))
                out.append((op, chain[j], -1 if repeated else between))
                break
    return out


class DropoutBeforeBatchnorm(Rule):
    """
    ## What it does
    Flags a dropout (`nn.Dropout`, `Dropout1d/2d/3d`, `AlphaDropout`, `FeatureAlphaDropout`,
    `F.dropout`, `F.dropout2d`...) whose output reaches a BatchNorm (`nn.BatchNorm1d/2d/3d`,
    `SyncBatchNorm`, `LazyBatchNorm*`) later on the same data path: in the order of an `nn.Sequential`
    (also nested Sequentials, lists built with `append`/`+=`, and repeated blocks such as
    `[Linear, BatchNorm1d, ReLU, Dropout] * 3`, where block k's dropout feeds block k+1's BatchNorm), in
    an `nn.ModuleList` iterated in `forward`, or in the order of operations of `forward`
    (`x = self.drop(x)` ... `x = self.bn(self.conv(x))`), through submodules that are themselves
    Sequentials or local `nn.Module` classes.

    ## Why is this bad?
    Dropout changes the variance of its output between training (units dropped, the rest scaled by
    1/(1-p)) and evaluation (nothing dropped). A BatchNorm after it learns its running variance on the
    training-time statistics and then normalizes evaluation-time activations with the wrong variance:
    the "variance shift" that makes models with dropout before BN evaluate worse than without dropout.
    Karpathy's recipe warns that dropout "does not seem to play well with batch normalization"
    (Karpathy 2019).

    ## Example
    ```python
    import torch.nn as nn

    model = nn.Sequential(
        nn.Linear(64, 256),
        nn.Dropout(0.3),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 1),
    )
    ```

    ## Use instead
    Put the dropout after the last BatchNorm (or drop it: BatchNorm already regularizes):
    ```python
    import torch.nn as nn

    model = nn.Sequential(
        nn.Linear(64, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, 1),
    )
    ```
    Not flagged: a dropout after the last BatchNorm, a dropout on a branch that never reaches a
    BatchNorm (an auxiliary head, a skip path returned separately), `p=0`, `F.dropout(..., training=False)`,
    and BatchNorms with `track_running_stats=False` (they use batch statistics at evaluation too).

    ## Fix safety
    No automatic fix: moving a layer changes the architecture and the shapes around it.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - Li et al., "Understanding the Disharmony between Dropout and Batch Normalization by Variance Shift" (CVPR 2019)
    - [torch.nn.Dropout](https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html)
    """

    code = "TL102"
    name = "dropout-before-batchnorm"
    severity = Severity.WARNING
    summary = "A dropout feeds a BatchNorm on the same path: BN's running variance is wrong at evaluation"
    probe = "dropout-bn-variance-shift"

    bad = (
        # tabular MLP in a Sequential
        """
import torch.nn as nn
net = nn.Sequential(
    nn.Linear(32, 128),
    nn.Dropout(p=0.2),  # expect: TL102
    nn.BatchNorm1d(128),
    nn.ReLU(),
    nn.Linear(128, 1),
)
""",
        # forward order, nested calls
        """
import torch.nn as nn
import torch.nn.functional as F
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.drop = nn.Dropout2d(0.25)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, 10)
    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.bn2(self.conv2(self.drop(x)))  # expect: TL102
        x = F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)
        return self.fc(x)
""",
        # repeated blocks: the dropout of block k feeds the BatchNorm of block k+1
        """
from torch import nn
block = [nn.Linear(100, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Dropout(0.5)]  # expect: TL102
model = nn.Sequential(*(block * 3), nn.Linear(100, 1))
""",
        # a list built in a loop with a known number of iterations
        """
import torch.nn as nn
class MLP(nn.Module):
    def __init__(self, d_in, hidden=(512, 256, 128), p=0.3):
        super().__init__()
        layers = []
        prev = d_in
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(p)]  # expect: TL102
            prev = h
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)
    def forward(self, x):
        return self.net(x)
""",
        # functional dropout in forward
        """
import torch
import torch.nn.functional as F
class Tower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(20, 64)
        self.fc2 = torch.nn.Linear(64, 64)
        self.bn = torch.nn.BatchNorm1d(64)
    def forward(self, x):
        h = F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training)  # expect: TL102
        h = self.fc2(h)
        return self.bn(h)
""",
        # a submodule class whose last op is dropout, followed by a BatchNorm
        """
import torch.nn as nn
class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.drop = nn.Dropout(0.1)
    def forward(self, x):
        return self.drop(self.conv(x))  # expect: TL102
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3), nn.BatchNorm2d(32), nn.ReLU())
    def forward(self, x):
        return self.body(self.stem(x))
""",
        # a helper builds the layers in a loop: the dropout of one turn feeds the BatchNorm of the next
        """
import torch.nn as nn
def mlp(sizes, p=0.3, batch_norm=True):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if batch_norm:
            layers.append(nn.BatchNorm1d(sizes[i + 1]))
        layers.append(nn.ReLU())
        layers.append(nn.Dropout(p))  # expect: TL102
    return nn.Sequential(*layers)
model = mlp([32, 64, 64, 1])
""",
        # an nn.ModuleDict read with constant keys in forward
        """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.parts = nn.ModuleDict({"fc": nn.Linear(8, 16), "drop": nn.Dropout(0.5), "bn": nn.BatchNorm1d(16)})
    def forward(self, x):
        x = self.parts["drop"](self.parts["fc"](x))  # expect: TL102
        return self.parts["bn"](x)
""",
        # a guarded dropout whose rate is on by default
        """
import torch
import torch.nn as nn
import torch.nn.functional as F
class Block(nn.Module):
    def __init__(self, c, drop_rate=0.2):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.drop_rate = drop_rate
    def forward(self, x):
        out = self.conv(x)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)  # expect: TL102
        return self.bn(out)
""",
    )
    good = (
        # two subclasses hand their own bottleneck and head to one base __init__: never one chain
        """
import torch.nn as nn
class Base(nn.Module):
    def __init__(self, bottleneck, head):
        super().__init__()
        self.bottleneck = bottleneck
        self.head = head
    def forward(self, x):
        return self.head(self.bottleneck(x))
class Classifier(Base):
    def __init__(self):
        super().__init__(nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5)), nn.Linear(8, 2))
class Regressor(Base):
    def __init__(self):
        super().__init__(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, 1)))
""",
        # the same guarded dropout with a rate of 0 by default: it never runs on the default path
        """
import torch
import torch.nn as nn
import torch.nn.functional as F
class Block(nn.Module):
    def __init__(self, c, drop_rate=0.0):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.drop_rate = drop_rate
    def forward(self, x):
        out = self.conv(x)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.bn(out)
""",
        # the same loop helper called without BatchNorm, or with a single turn
        """
import torch.nn as nn
def mlp(sizes, p=0.3, batch_norm=True):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if batch_norm:
            layers.append(nn.BatchNorm1d(sizes[i + 1]))
        layers.append(nn.ReLU())
        layers.append(nn.Dropout(p))
    return nn.Sequential(*layers)
model = mlp([32, 64, 64, 1], batch_norm=False)
head = mlp([64, 1])
""",
        # dropout after the last BatchNorm
        """
import torch.nn as nn
model = nn.Sequential(
    nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(),
    nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(),
    nn.Dropout(0.5),
    nn.Linear(128, 1),
)
""",
        # dropout in another branch (an auxiliary head)
        """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3)
        self.drop = nn.Dropout(0.3)
        self.aux = nn.Linear(32, 10)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.bn = nn.BatchNorm2d(64)
        self.head = nn.Linear(64, 10)
    def forward(self, x):
        x = self.conv(x)
        aux = self.aux(self.drop(x).mean((2, 3)))
        x = self.bn(self.conv2(x))
        return self.head(x.mean((2, 3))), aux
""",
        # one block whose dropout is last, used once (no repetition)
        """
import torch.nn as nn
def block(i, o, p):
    return nn.Sequential(nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU(), nn.Dropout(p))
model = nn.Sequential(block(10, 64, 0.2), nn.Linear(64, 1))
""",
        # dropout with p=0 / disabled, and BN without running stats
        """
import torch.nn as nn
import torch.nn.functional as F
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.0)
        self.bn = nn.BatchNorm1d(8)
        self.bn2 = nn.BatchNorm1d(8, track_running_stats=False)
    def forward(self, x):
        x = self.bn(self.fc(self.drop(x)))
        x = F.dropout(x, 0.5, training=False)
        x = self.bn(x)
        x = F.dropout(x, 0.2, self.training)
        return self.bn2(x)
""",
        # a list built in a loop over an unknown number of sizes: block k+1 may not exist
        """
import torch.nn as nn
def make_mlp(sizes, p):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(), nn.Dropout(p)]
    return nn.Sequential(*layers)
""",
        # LayerNorm is not BatchNorm
        """
import torch.nn as nn
ff = nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Dropout(0.1), nn.Linear(2048, 512), nn.LayerNorm(512))
""",
    )

    @classmethod
    def may_fire(cls, text: str, path: str) -> bool:
        # a dropout layer and a batch norm, both named in the file
        return "ropout" in text and ("BatchNorm" in text or "batchnorm" in text.lower())

    def check(self, ctx) -> Iterable[Finding]:
        if not self.may_fire(ctx.source.text, ctx.path):
            return
        world = ModelWorld.of_file(ctx)
        found = self._pairs(world, world.file_of_ctx(ctx))
        for drop, bn, between in sorted(found.values(), key=lambda t: _line(ctx, t[0])):
            yield self._finding(ctx, drop, bn, between)

    def check_program(self, program) -> Iterable[Finding]:
        """The same question with the whole program in view: a layer builder's arguments come from the
        caller in another file (``build_mlp(sizes=[...], batch_norm=args.bn)``), so the number of loop
        turns and the arm of ``if batch_norm:`` are known. Only what the file alone did not show."""
        texts = [f.ctx.source.text for f in program.files]
        if not any("ropout" in t for t in texts) or len(program.files) < 2:
            return
        for pf in program.files:
            text = pf.ctx.source.text
            if "ropout" not in text or ("BatchNorm" not in text and "batchnorm" not in text.lower()):
                continue
            ctx = pf.ctx
            # each file's pairs are asked on their own, and reused by the other programs that hold the file
            # and answer what they asked of the program the same way
            found = per_file(program, ctx, self.code, self._pairs)
            # what the file-level pass found already is found again here: the engine keeps one per place
            for drop, bn, between in sorted(found.values(), key=lambda t: _line(ctx, t[0])):
                yield self._finding(ctx, drop, bn, between)

    def _pairs(self, world: ModelWorld, file) -> Dict[int, Tuple[Op, Op, int]]:
        ctx = file.ctx
        found: Dict[int, Tuple[Op, Op, int]] = {}

        def collect(chains):
            for chain in chains:
                for drop, bn, between in dropout_bn_pairs(chain):
                    if drop.file.ctx is ctx and id(drop.node) not in found:
                        found[id(drop.node)] = (drop, bn, between)

        for call, scope, st in sequential_calls(file):
            collect(world.layer_chains(call, file, scope, st))
        for ref in module_classes(world, file):
            collect(world.output_chains(ref))
        return found

    def _finding(self, ctx, drop: Op, bn: Op, between: int) -> Finding:
        bn_span = bn.file.ctx.span(bn.node)
        where = bn.file.ctx.where(bn_span.line, home=ctx)
        if between < 0:
            gap = "in a later block (the same layer definition is used again downstream)"
        else:
            gap = "directly" if between == 0 else f"through {between} layer{'s' if between > 1 else ''}"
        message = (
            f"{drop.label} feeds {bn.label} ({where}) {gap}: the BatchNorm's running variance is learned on "
            "dropped-out activations and is wrong at evaluation time"
        )
        return self.finding(
            ctx,
            ctx.span(drop.node),
            message,
            hint="Move the dropout after the last BatchNorm (right before the output layer), or remove it",
            related=[Related(bn.file.ctx.path, bn_span, f"the {bn.label} this dropout feeds")],
        )


def _line(ctx, op: Op) -> int:
    return ctx.span(op.node).line
