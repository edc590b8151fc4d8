from __future__ import annotations

from typing import Iterable, List, Optional

import libcst as cst

from trainlint.analysis.names import canonical, names_in
from trainlint.analysis.objects import World, file_calls
from trainlint.analysis.syntax import bound_arg, kwarg
from trainlint.analysis.values import Folded, fold, format_value
from trainlint.analysis.walk import calls
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule

#: Optimizer -> (family label, the lr from which it is flagged, its usual default).
_LIMITS = {
    "torch.optim.Adam": ("Adam", 1e-2, "3e-4 to 1e-3"),
    "torch.optim.AdamW": ("AdamW", 1e-2, "3e-4 to 1e-3"),
    "torch.optim.NAdam": ("NAdam", 1e-2, "2e-3"),
    "torch.optim.RAdam": ("RAdam", 1e-2, "1e-3"),
    "torch.optim.SparseAdam": ("SparseAdam", 1e-2, "1e-3"),
    # Adamax normalizes by an infinity norm and is run a little hotter (default 2e-3)
    "torch.optim.Adamax": ("Adamax", 2e-2, "2e-3"),
    "transformers.AdamW": ("AdamW", 1e-2, "5e-5 to 1e-3"),
    "transformers.optimization.AdamW": ("AdamW", 1e-2, "5e-5 to 1e-3"),
    "bitsandbytes.optim.Adam8bit": ("Adam", 1e-2, "3e-4 to 1e-3"),
    "bitsandbytes.optim.AdamW8bit": ("AdamW", 1e-2, "3e-4 to 1e-3"),
    "bitsandbytes.optim.AdamW": ("AdamW", 1e-2, "3e-4 to 1e-3"),
    "bitsandbytes.optim.Adam": ("Adam", 1e-2, "3e-4 to 1e-3"),
    "torch.optim.SGD": ("SGD", 1.0, "0.01 to 0.1"),
}
_ALIASES = {
    "torch.optim.adam.Adam": "torch.optim.Adam",
    "torch.optim.adamw.AdamW": "torch.optim.AdamW",
    "torch.optim.nadam.NAdam": "torch.optim.NAdam",
    "torch.optim.radam.RAdam": "torch.optim.RAdam",
    "torch.optim.adamax.Adamax": "torch.optim.Adamax",
    "torch.optim.sparse_adam.SparseAdam": "torch.optim.SparseAdam",
    "torch.optim.sgd.SGD": "torch.optim.SGD",
    "bnb.optim.Adam8bit": "bitsandbytes.optim.Adam8bit",
    "bnb.optim.AdamW8bit": "bitsandbytes.optim.AdamW8bit",
}
#: Hugging Face TrainingArguments: the learning rate of its default AdamW.
_HF_ARGS = {"transformers.TrainingArguments", "transformers.Seq2SeqTrainingArguments", "trl.SFTConfig"}

#: Code where the constructor's lr is not the lr that runs: a schedule that sets it (Noam-style
#: LambdaLR with lr=1, OneCycleLR's max_lr), param groups rewritten by hand, an LR range test.
_LR_OVERRIDDEN = (
    "LambdaLR", "MultiplicativeLR", "OneCycleLR", "CyclicLR", "param_groups", "lr_finder", "LRFinder",
    "lr_find", "NoamOpt", "ScheduledOptim",
    # ignite's parameter schedulers write the optimizer's lr
    "PiecewiseLinear", "LinearCyclicalScheduler", "CosineAnnealingScheduler", "create_lr_scheduler_with_warmup",
)
#: Domains whose standard recipes run Adam hotter on small networks: policy gradients on gym tasks
#: (REINFORCE / actor-critic at 1e-2..3e-2) and graph networks (GCN/GAT at 1e-2..5e-3).
_HOT_DOMAINS = ("gym", "gymnasium", "torch_geometric", "dgl")
_HOT_ADAM_LIMIT = 5e-2


class UnsafeLearningRate(Rule):
    """
    **Opt-in**: this rule is not in the default selection; enable it with `--extend-select TL206` or
    `extend-select = ["TL206"]` in the configuration. Read statically, a learning rate is only a number:
    whether it is too high depends on what is trained (a whole network, or an adapter, a prompt, a
    LayerNorm, a linear probe), on the schedule, the batch size and the loss scale, none of which the code
    states next to it. On 32 public training repositories (about 330k lines, judged by hand, see
    `benchmarks/precision/`) and on an earlier audit of about 234k lines, no finding of this rule was a
    real problem: parameter-efficient fine-tuning trains a tiny parameter set at 1e-2 to 1 by design,
    tutorials train tiny models at high rates that converge, published recipes use them. It stays as advice
    for a first script, where a high literal learning rate is worth a second look; the
    `overfit-one-batch` probe of `trainlint run` confirms or refutes it on the real model.

    ## What it does
    Flags an optimizer built with a learning rate written in the code (a literal, or a constant of the
    program) that is far outside what the optimizer tolerates: `Adam`, `AdamW`, `NAdam`, `RAdam`
    (and Hugging Face `TrainingArguments(learning_rate=...)`, whose optimizer is AdamW) with
    `lr >= 1e-2`, `Adamax` with `lr >= 2e-2`, `SGD` with `lr >= 1`. Spellings followed: keyword or
    positional `lr`, `LR = 0.1` constants, a local `lr = 0.1`, a value passed by the only call of a
    helper, per-parameter-group `{"params": ..., "lr": 0.1}` dicts, Lightning's `configure_optimizers`.

    ## Why is this bad?
    Adaptive optimizers normalize the step, so the learning rate is close to the size of every weight
    update: with Adam at 0.1 each step moves each weight by about 0.1, which wrecks a network in a few
    iterations (loss spikes, NaNs, dead ReLUs) or leaves it bouncing without ever converging. Karpathy's
    recipe: "Adam is safe" at 3e-4 in the early stage — it forgives a bad learning rate, within reason
    (Karpathy 2019).
    Holden lists the wrong learning rate among the top reasons a network does not train, and notes that
    beginners set it far too high and then hide the damage with gradient clipping
    (Holden 2017, "You Used an Incorrect Learning Rate"). Plain SGD has no normalization: at lr ≥ 1
    the steps are as large as the gradients themselves.

    ## Example
    ```python
    import torch

    model = torch.nn.Linear(20, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    ```

    ## Use instead
    ```python
    import torch

    model = torch.nn.Linear(20, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    ```
    Not flagged: a learning rate from argparse, a config file or dict, an environment variable or a
    function parameter's default (the user sets those); values computed from other names
    (`lr=0.1 * batch_size / 256`, the linear scaling rule); SGD at 0.1 (the ImageNet recipe); programs
    where a schedule sets the real learning rate (`LambdaLR` Noam schedules with `lr=1`, `OneCycleLR`,
    `CyclicLR`, writes to `param_groups`, ignite parameter schedulers, LR range tests); an optimizer
    class chosen at run time; test modules (`tests/`, `test_*.py`). Programs that import `gym` /
    `gymnasium` (policy-gradient recipes) or `torch_geometric` / `dgl` (GCN-style recipes) run Adam
    hotter by convention: there the Adam family is flagged from 5e-2.

    ## Fix safety
    No automatic fix: the right learning rate depends on the model, the data and the batch size. Start
    from 3e-4 for Adam/AdamW (0.01–0.1 for SGD with momentum) and tune with an LR range test.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - Holden, ["My Neural Network isn't working! What should I do?"](https://theorangeduck.com/page/neural-network-not-working) (2017)
    - [torch.optim.Adam](https://pytorch.org/docs/stable/generated/torch.optim.Adam.html)
    """

    code = "TL206"
    name = "unsafe-learning-rate"
    severity = Severity.INFO
    opt_in = True
    summary = "A literal learning rate far outside what the optimizer tolerates (Adam >= 1e-2, SGD >= 1)"
    probe = "overfit-one-batch"

    bad = (
        # notebook style
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=0.1)  # expect: TL206
""",
        # module constant, from-import spelling
        """
from torch.optim import AdamW
LEARNING_RATE = 5e-2
def main():
    opt = AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)  # expect: TL206
""",
        # positional lr, SGD
        """
import torch.optim as optim
optimizer = optim.SGD(net.parameters(), 1.5, momentum=0.9)  # expect: TL206
""",
        # Lightning configure_optimizers
        """
import torch
import pytorch_lightning as pl
class LitModel(pl.LightningModule):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-1)  # expect: TL206
""",
        # a local variable in the training function
        """
import torch
def train(model, loader):
    lr = 0.05
    opt = torch.optim.Adam(model.parameters(), lr=lr)  # expect: TL206
    for x, y in loader:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
""",
        # per-parameter group
        """
import torch
optimizer = torch.optim.Adam([
    {"params": model.backbone.parameters()},
    {"params": model.head.parameters(), "lr": 0.1},  # expect: TL206
], lr=1e-4)
""",
        # Hugging Face TrainingArguments: AdamW underneath
        """
from transformers import TrainingArguments
args = TrainingArguments(output_dir="out", learning_rate=0.02, num_train_epochs=3)  # expect: TL206
""",
    )

    good = (
        # safe values
        """
import torch
opt1 = torch.optim.Adam(model.parameters(), lr=3e-4)
opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
opt3 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
opt4 = torch.optim.Adamax(model.parameters(), lr=1e-2)
opt5 = torch.optim.Adagrad(model.parameters(), lr=0.1)
""",
        # argparse default: the user sets it
        """
import argparse
import torch
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
""",
        # config dict / yaml
        """
import torch
import yaml
config = {"lr": 0.1, "epochs": 10}
cfg = yaml.safe_load(open("cfg.yaml"))
opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
opt2 = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"])
""",
        # linear scaling rule: computed from the batch size
        """
import torch
batch_size = 1024
lr = 0.1 * batch_size / 256
optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
opt2 = torch.optim.Adam(model.parameters(), lr=1e-3 * batch_size / 32)
""",
        # a parameter default of a helper
        """
import torch
def build_optimizer(model, lr=0.1):
    return torch.optim.Adam(model.parameters(), lr=lr)
""",
        # Noam schedule: lr=1 is a multiplier of the LambdaLR rate
        """
import torch
from torch.optim.lr_scheduler import LambdaLR
optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
scheduler = LambdaLR(optimizer, lr_lambda=lambda step: rate(step, d_model=512, factor=1, warmup=4000))
""",
        # OneCycleLR sets the learning rate itself
        """
import torch
optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=10000)
""",
        # policy gradient on a gym task: the REINFORCE recipe runs Adam at 1e-2
        """
import gym
import torch
env = gym.make("CartPole-v1")
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
""",
        # optimizer class chosen at run time
        """
import torch
opt_cls = torch.optim.Adam if use_adam else torch.optim.SGD
optimizer = opt_cls(model.parameters(), lr=0.1)
""",
    )

    @classmethod
    def may_fire(cls, text: str, path: str) -> bool:
        # an optimizer or trainer configuration, no schedule that writes the lr, not a test module
        if "Adam" not in text and "SGD" not in text and "TrainingArguments" not in text and "SFTConfig" not in text:
            return False
        if any(k in text for k in _LR_OVERRIDDEN):
            return False
        from trainlint.analysis.loaders import is_test_file

        return not is_test_file(path)

    def check(self, ctx) -> Iterable[Finding]:
        if not self.may_fire(ctx.source.text, ctx.path):
            return
        facts = ctx.facts
        hot = any(m.split(".")[0] in _HOT_DOMAINS for m in facts.imports)
        for call, scope, stmt in file_calls(World.of_file(ctx).file_of_ctx(ctx)):
            if type(stmt.node) not in _BUILDS:
                continue
            q = canonical(facts.qualify(call.func) or "")
            q = _ALIASES.get(q, q)
            if q in _LIMITS:
                yield from self._optimizer(ctx, call, q, scope, stmt, hot)
            elif q in _HF_ARGS:
                yield from self._hf_args(ctx, call, q, scope, stmt)

    # -------------------------------------------------------------------------------------------
    def _optimizer(self, ctx, call: cst.Call, q: str, scope, stmt, hot: bool) -> Iterable[Finding]:
        label, limit, usual = _LIMITS[q]
        if limit < 1 and hot:
            limit = max(limit, _HOT_ADAM_LIMIT)
        lr_expr = bound_arg(call, 1, "lr")
        params = bound_arg(call, 0, "params")
        if params is not None:
            world = World.of_file(ctx)
            for expr, gscope, gstmt in world.entries_of_listed_dicts(params, "lr", world.file_of_ctx(ctx), scope, stmt):
                yield from self._judge(ctx, call, expr, label, limit, usual, gscope, gstmt, "a parameter group's lr")
        if lr_expr is not None:
            yield from self._judge(ctx, call, lr_expr, label, limit, usual, scope, stmt, "lr")

    def _hf_args(self, ctx, call: cst.Call, q: str, scope, stmt) -> Iterable[Finding]:
        expr = kwarg(call, "learning_rate")
        if expr is None:
            return
        optim = kwarg(call, "optim")
        if optim is not None:
            f = fold(optim, ctx.facts, scope, stmt)
            if f is None or not isinstance(f.value, str) or "adam" not in f.value.lower():
                return
        yield from self._judge(ctx, call, expr, "AdamW (the Trainer's optimizer)", 1e-2, "5e-5 to 1e-3", scope, stmt, "learning_rate")

    def _judge(self, ctx, call, expr, label: str, limit: float, usual: str, scope, stmt, what: str) -> Iterable[Finding]:
        value = _written_value(expr, ctx.facts, scope, stmt)
        if value is None:
            return
        v = value.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < limit:
            return
        related: List[Related] = []
        if value.facts is ctx.facts and value.node is not expr:
            span = ctx.span(value.node)
            if span.line != ctx.span(expr).line:
                related.append(Related(ctx.path, span, f"the learning rate {format_value(v)} is set here"))
        times = v / (3e-4 if limit < 1 else 0.1)
        shown = f"{value.label} ({format_value(v)})" if value.label and value.how == "constant" else format_value(v)
        message = (
            f"{label} with {what}={shown}: far above what it tolerates (flagged from "
            f"{format_value(limit)}; usual {usual}), {_times(times, limit)} — training is likely to diverge or stall"
        )
        yield self.finding(
            ctx,
            ctx.span(expr),
            message,
            hint=(
                "Start from lr=3e-4 for Adam/AdamW (0.01-0.1 for SGD with momentum) and tune it with an LR range test"
                if limit < 1 else "Use lr=0.1 or less for SGD (0.1 is the ImageNet recipe at batch 256) and tune from there"
            ),
            related=related,
        )


def _times(t: float, limit: float) -> str:
    ref = "Karpathy's safe 3e-4" if limit < 1 else "the ImageNet recipe's 0.1"
    return f"{t:.0f}x {ref}"


#: The statements whose calls may build an optimizer or a TrainingArguments the rule judges.
_BUILDS = frozenset((cst.Assign, cst.AnnAssign, cst.Expr, cst.Return))


def _written_value(expr, facts, scope, stmt) -> Optional[Folded]:
    """The lr when it is written in the code: a literal, a constant, a local variable, the argument of the
    only call of a helper. None for argparse, configs, parameter defaults, and values computed from names."""
    f = fold(expr, facts, scope, stmt)
    if f is None or f.how not in ("literal", "constant"):
        return None
    # computed from other names (lr = 0.1 * batch_size / 256) or calls: the user scales it on purpose
    if calls(f.node) or any(n not in ("True", "False", "None") for n in names_in(f.node)):
        return None
    return f
