from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.execution import (
    Event, ObjectRef, TrainLoop, acts_on, ctx_of, holds_site, lightning_interval, mentions_site, program_loops,
    trainer_max_epochs,
)
from trainlint.analysis.names import canonical, names_in
from trainlint.analysis.objects import World, file_calls
from trainlint.analysis.syntax import bound_arg
from trainlint.analysis.values import Folded, fold, format_value
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule

_PREFIX = "torch.optim.lr_scheduler."
_CHECKED = {"StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR"}
_WRAPPERS = {"SequentialLR", "ChainedScheduler"}
_QUICK = re.compile(r"StepLR|ExponentialLR|CosineAnnealingLR|OneCycleLR|lr_scheduler")

#: Copied recipes: (milestones or ("step", 30)), what it was made for, and the run length it was made for.
_RECIPES = {
    ("step", 30): ("ImageNet's", 90),
    (30, 60, 90): ("ImageNet's", 90),
    (30, 60, 80): ("ImageNet's", 90),
    (150, 225): ("CIFAR's", 300),
    (60, 120, 160): ("CIFAR's (WideResNet)", 200),
    (100, 150): ("CIFAR's", 200),
}

#: Names that carry the run length: a value computed from them is derived from the run, not copied.
_RUN_NAME = re.compile(r"epoch|iters?$|iteration|total|^len$|steps|num_train|max_step|n_step|training_step", re.I)
#: Signs that an epoch count was scaled to optimizer steps.
_SCALED = re.compile(r"^len$|steps|iters?$|iteration|batch|num_train|per_epoch|n_step|max_step|total", re.I)
_EPOCHY = re.compile(r"epoch", re.I)


@dataclass(eq=False)
class _Sched:
    cls: str  # "StepLR"
    call: cst.Call
    facts: FileFacts
    scope: Scope
    stmt: Stmt
    lightning_interval: Optional[str] = None  # in configure_optimizers: "epoch" (default) | "step"
    #: the SequentialLR / ChainedScheduler that steps it (its .step() calls are this one's)
    via: Optional["_Sched"] = None
    #: SequentialLR: the milestone after which this (last) part starts
    offset: Optional[cst.BaseExpression] = None


class DefaultLrSchedule(Rule):
    """
    ## What it does
    Flags a learning-rate decay schedule that does not fit the run it is in:

    - a copied ImageNet/CIFAR default — `StepLR(step_size=30, gamma=0.1)`, `MultiStepLR` milestones
      `[30, 60, 90]`, `[30, 60, 80]`, `[150, 225]`, `[60, 120, 160]`, `[100, 150]` — in a run far shorter or
      longer than the one the recipe was made for (outside 0.6×–2× of its 90/200/300 epochs, or with no decay
      inside the run), or in a run whose length cannot be known (then it says so);
    - a schedule that never fires before the last epoch (`step_size` or the first milestone ≥ the epochs);
    - a schedule that decays the LR to ~0 (1e-5 of its start) in the first two thirds of the run;
    - an epoch-unit scheduler (`StepLR`, `MultiStepLR`, `ExponentialLR`, `CosineAnnealingLR` with
      epoch-sized parameters) whose `.step()` is called every batch, with no sign that its parameters were
      scaled to steps;
    - `CosineAnnealingLR(T_max=...)` that does not match the epochs (or iterations) it is stepped over, and
      `OneCycleLR` planned per batch but stepped once per epoch.

    The run length is the epoch loop's `range()` bound (or Lightning's `Trainer(max_epochs=...)`), folded
    from literals, module constants (also in another file of the program), config dicts and argparse
    defaults. Where `.step()` is called — per batch or per epoch — is followed into helpers such as
    `train_one_epoch(...)`, also in other files. Schedules computed from the run length
    (`T_max=args.epochs`, `milestones=[int(0.5 * epochs), int(0.75 * epochs)]`,
    `total_steps=epochs * len(loader)`), `ReduceLROnPlateau`, `LambdaLR`, `CosineAnnealingWarmRestarts`,
    warmup schedules from `transformers` (`get_linear_schedule_with_warmup`...), timm's schedulers and the
    Hugging Face `Trainer`'s own scheduler are not flagged. Inside a `SequentialLR`, the warm-up parts are
    not judged and the last part is judged over the epochs after the last milestone, stepped where the
    `SequentialLR` is stepped (`ChainedScheduler` parts: over the whole run). In Lightning, a scheduler returned by `configure_optimizers` is stepped per epoch
    unless `"interval": "step"` says otherwise (then epoch-unit parameters are flagged), and the run length
    is `Trainer(max_epochs=...)`. A `.step()` under a condition inside the batch loop
    (`if step % 1000 == 0`) is not taken as per batch. Unknown values stay unknown: nothing is flagged on a
    guess.

    ## Why is this bad?
    Karpathy's recipe warns: "do not trust learning-rate decay defaults ... ImageNet decays by 10 at epoch
    30; if you are not training ImageNet you almost certainly do not want this. If you are not careful your
    code could secretly be driving your learning rate to zero too early, not allowing your model to
    converge" (Karpathy 2019). Decay
    schedules count epochs, and an epoch means very different amounts of training on different datasets;
    a schedule that never fires, fires far too late, or runs 1000× too fast because it is stepped per
    batch trains silently worse (the step, multistep and exponential schedules of [torch.optim](https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate)). The
    PyTorch issue tracker has users asking for a warning on a scheduler stepped per iteration
    (pytorch#40492).

    ## Example
    ```python
    import argparse
    import torch
    from torch.optim.lr_scheduler import StepLR

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(args.epochs):
        for x, y in train_loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        scheduler.step()
    ```

    ## Use instead
    Derive the schedule from the run length (or use a constant LR until the end, then tune the decay):
    ```python
    import argparse
    import torch
    from torch.optim.lr_scheduler import CosineAnnealingLR

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = CosineAnnealingLR(optimizer, T_max=args.epochs)
    for epoch in range(args.epochs):
        for x, y in train_loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        scheduler.step()
    ```
    `milestones=[int(0.5 * args.epochs), int(0.75 * args.epochs)]` is fine too; a scheduler stepped per
    batch needs its parameters in steps (`T_max=args.epochs * len(train_loader)`).

    ## Fix safety
    No fix is offered: the right schedule depends on the run. The message gives the numbers found; the
    `lr-trajectory` probe (`trainlint run`) prints the LR the schedule gives over the planned run.

    ## References
    - Karpathy, "A Recipe for Training Neural Networks", "do not trust learning rate decay defaults"
      (Karpathy 2019)
    - [torch.optim: how to adjust the learning rate](https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate) (step, multistep, exponential schedules)
    - [torch.optim.lr_scheduler](https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate)
    - [pytorch/pytorch#40492](https://github.com/pytorch/pytorch/issues/40492): warn when a scheduler is stepped per iteration
    """

    code = "TL201"
    name = "default-lr-schedule"
    severity = Severity.WARNING
    summary = "An LR decay schedule copied from ImageNet/CIFAR defaults, or one that does not fit the run's length"
    probe = "lr-trajectory"

    bad = (
        # ImageNet's StepLR copied into a 20-epoch fine-tune (argparse default)
        """
import argparse
import torch
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)  # expect: TL201
for epoch in range(args.epochs):
    for x, y in loader:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
        # CIFAR milestones in a 40-epoch run, epochs in a config dict
        """
from torch import optim
config = {"epochs": 40, "lr": 0.1}
optimizer = optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9)
scheduler = optim.lr_scheduler.MultiStepLR(optimizer, milestones=[150, 225], gamma=0.1)  # expect: TL201
for epoch in range(config["epochs"]):
    train(net, trainloader, optimizer)
    scheduler.step()
""",
        # an epoch-unit StepLR stepped every batch (notebook style)
        """
import torch
from torch.optim.lr_scheduler import StepLR
EPOCHS = 10
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
sched = StepLR(opt, step_size=5, gamma=0.5)
for epoch in range(EPOCHS):
    for xb, yb in train_dl:
        loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        sched.step()  # expect: TL201
        opt.zero_grad()
""",
        # cosine with the wrong T_max, stepped in a helper called once per epoch
        """
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR
NUM_EPOCHS = 50
def train_one_epoch(model, loader, optimizer, scheduler):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
def main():
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = CosineAnnealingLR(optimizer, T_max=200)  # expect: TL201
    for epoch in range(NUM_EPOCHS):
        train_one_epoch(model, loader, optimizer, scheduler)
if __name__ == "__main__":
    main()
""",
        # never fires: the step size is longer than the run
        """
import torch
epochs = 25
optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=40, gamma=0.5)  # expect: TL201
for epoch in range(1, epochs + 1):
    for batch in loader:
        optimizer.zero_grad()
        loss = criterion(model(batch["x"]), batch["y"])
        loss.backward()
        optimizer.step()
    scheduler.step()
""",
        # decays to ~0 long before the end
        """
import torch
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)  # expect: TL201
for epoch in range(100):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
        # a copied ImageNet default, the run length unknown (epochs from a yaml file)
        """
import yaml
import torch
cfg = yaml.safe_load(open("config.yaml"))
optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [30, 60, 90])  # expect: TL201
for epoch in range(cfg["epochs"]):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
        # a trainer class: epochs from __init__'s default, the copied StepLR never fires
        """
import torch
class Trainer:
    def __init__(self, model, loader, epochs=20):
        self.model, self.loader, self.epochs = model, loader, epochs
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, 30)  # expect: TL201
    def fit(self):
        for epoch in range(self.epochs):
            for x, y in self.loader:
                self.optimizer.zero_grad()
                self.model.loss(x, y).backward()
                self.optimizer.step()
            self.scheduler.step()
if __name__ == "__main__":
    Trainer(Net(), loader).fit()
""",
        # the cosine part of a SequentialLR, far longer than the epochs left after the warm-up
        """
import torch
from torch.optim import lr_scheduler
EPOCHS = 40
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = lr_scheduler.SequentialLR(
    optimizer,
    schedulers=[lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=3),
                lr_scheduler.CosineAnnealingLR(optimizer, T_max=300)],  # expect: TL201
    milestones=[3],
)
for epoch in range(EPOCHS):
    for x, y in loader:
        optimizer.zero_grad()
        crit(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
        # OneCycleLR sized in batches, stepped once per epoch
        """
import torch
from torch.optim.lr_scheduler import OneCycleLR
EPOCHS = 12
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
scheduler = OneCycleLR(optimizer, max_lr=1e-3, epochs=EPOCHS, steps_per_epoch=len(train_dl))  # expect: TL201
for epoch in range(EPOCHS):
    for xb, yb in train_dl:
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    scheduler.step()
""",
        # T_max in epochs, stepped every batch
        """
import torch
def main(args):
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    for epoch in range(args.epochs):
        for x, y in train_loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
            scheduler.step()  # expect: TL201
if __name__ == "__main__":
    main(parse())
""",
    )
    good = (
        # derived from the run length
        """
import argparse
import torch
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
for epoch in range(args.epochs):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
        # milestones computed from the epochs
        """
import torch
EPOCHS = 40
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[int(0.5 * EPOCHS), int(0.75 * EPOCHS)])
for epoch in range(EPOCHS):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
        # the real ImageNet recipe: 90 epochs, StepLR(30)
        """
import argparse
import torch
from torch.optim.lr_scheduler import StepLR
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", default=90, type=int)
parser.add_argument("--start-epoch", default=0, type=int)
def main_worker(args):
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(args.start_epoch, args.epochs):
        train(train_loader, model, criterion, optimizer, epoch, args)
        scheduler.step()
if __name__ == "__main__":
    main_worker(parser.parse_args())
""",
        # per-batch schedules scaled to steps
        """
import torch
epochs = 30
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, epochs=epochs, steps_per_epoch=len(loader))
cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10 * len(loader), gamma=0.1)
for epoch in range(epochs):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        cosine.step()
        step.step()
""",
        # ReduceLROnPlateau, LambdaLR and a per-epoch StepLR that fits (MNIST example)
        """
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau, LambdaLR, StepLR
optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
plateau = ReduceLROnPlateau(optimizer, patience=30)
warm = LambdaLR(optimizer, lambda e: min(1.0, (e + 1) / 5))
scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
for epoch in range(1, 14 + 1):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    plateau.step(val_loss)
    scheduler.step()
""",
        # warmup + cosine from transformers, computed from the config
        """
import torch
from transformers import get_cosine_schedule_with_warmup
optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
total = cfg.epochs * len(train_loader)
scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=int(0.1 * total), num_training_steps=total)
for epoch in range(cfg.epochs):
    for batch in train_loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
""",
        # Lightning: epoch-unit scheduler, stepped per epoch by the trainer; T_max from the trainer
        """
import torch
import lightning as L
class Model(L.LightningModule):
    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.max_epochs)
        step = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
        return [opt], [sched, step]
if __name__ == "__main__":
    L.Trainer(max_epochs=40).fit(Model())
""",
        # Lightning with a per-step interval and step-unit parameters
        """
import torch
import pytorch_lightning as pl
class Model(pl.LightningModule):
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=3e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-4, total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
if __name__ == "__main__":
    pl.Trainer(max_epochs=5).fit(Model())
""",
        # iteration-based training: cosine over the planned iterations
        """
import torch
max_iters = 5000
optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_iters)
for it in range(max_iters):
    x, y = get_batch("train")
    loss = model(x, y)
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
""",
        # CIFAR recipe at its own length
        """
import torch
optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[150, 225], gamma=0.1)
start_epoch = 0
for epoch in range(start_epoch, start_epoch + 300):
    train(epoch)
    test(epoch)
    scheduler.step()
""",
        # Hugging Face Trainer: its own scheduler, sized from num_train_epochs
        """
from transformers import Trainer, TrainingArguments
args = TrainingArguments("out", num_train_epochs=3, learning_rate=5e-5, lr_scheduler_type="cosine", warmup_ratio=0.1)
trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds)
if __name__ == "__main__":
    trainer.train()
""",
        # a per-iteration StepLR with iteration-sized steps and a gentle gamma
        """
import torch
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2000, gamma=0.95)
milestones = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[32000, 48000])
for epoch in range(160):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        milestones.step()
""",
        # stepped every k batches: not judged as per batch
        """
import torch
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.5)
for epoch in range(10):
    for i, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
        if (i + 1) % 1000 == 0:
            scheduler.step()
""",
        # SequentialLR warmup + cosine: the cosine covers the epochs after the warm-up
        """
import torch
from torch.optim.lr_scheduler import LinearLR, CosineAnnealingLR, SequentialLR
EPOCHS = 100
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
warmup = LinearLR(optimizer, start_factor=0.1, total_iters=5)
cosine = CosineAnnealingLR(optimizer, T_max=EPOCHS - 5)
scheduler = SequentialLR(optimizer, schedulers=[warmup, cosine], milestones=[5])
for epoch in range(EPOCHS):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
    )

    # ------------------------------------------------------------------------------------------
    def check_program(self, program) -> Iterable[Finding]:
        if not any(_QUICK.search(f.ctx.source.text) for f in program.files):
            return
        scheds = list(_schedulers(program))
        if not scheds:
            return
        loops = program_loops(program)
        epoch_loops = [l for l in loops if l.unit == "epoch"]
        for s in scheds:
            # one event stepping two schedulers gives one finding: the engine keeps one per rule and place
            # (also for a file that two entry scripts import)
            yield from self._judge(s, scheds, loops, epoch_loops, program)

    # ------------------------------------------------------------------------------------------
    def _judge(self, s: _Sched, scheds: List[_Sched], loops: List[TrainLoop], epoch_loops, program) -> Iterable[Finding]:
        args = _Args(s, program)
        # where is it stepped, and over how long a run? (a SequentialLR part: where the wrapper is stepped)
        stepper = s.via or s
        steps = _steps_of(stepper, scheds, loops, program)
        levels = {lvl for _, lvl, _ in steps if lvl != "outside"}
        loop: Optional[TrainLoop] = None
        if len(levels) == 1:
            placement = levels.pop()
            loop = next(l for l, lvl, _ in steps if lvl == placement)
            if placement == "batch" and all(cond for _, lvl, cond in steps if lvl == "batch"):
                placement = "unknown"  # `if step % k == 0: scheduler.step()`: every k batches
            elif placement == "batch" and loop.unit == "iteration":
                placement = "iteration"
        elif not steps and s.lightning_interval is not None and not _manual_lightning(program):
            placement = {"epoch": "epoch", "step": "step"}.get(s.lightning_interval, "unknown")
        else:
            placement = "unknown"
        run: Optional[Folded] = None
        run_unit = "epoch"
        if loop is not None and loop.count is not None:
            run, run_unit = loop.count, loop.unit
        elif s.lightning_interval is not None:
            found = trainer_max_epochs(program)
            run = found[0] if found else None
        elif loop is None and len(epoch_loops) == 1 and epoch_loops[0].count is not None:
            run = epoch_loops[0].count
        if run is not None and (not isinstance(run.value, int) or isinstance(run.value, bool) or run.value <= 0):
            run = None
        part_note = ""
        if s.offset is not None:  # the last part of a SequentialLR runs after its last milestone
            m = fold(s.offset, s.via.facts, s.via.scope, s.via.stmt, program)
            if m is not None and isinstance(m.value, tuple):  # milestones=[5] or a constant list: the last one
                m = Folded(m.value[-1], m.node, m.facts, m.how, m.label, m.deps) if m.value else None
            if m is None or not isinstance(m.value, int) or run is None or run.value - m.value <= 0:
                run = None
            else:
                part_note = (f" (it runs after the SequentialLR milestone {m.value}: {run.value - m.value} of the "
                             f"{run.value} {'epochs' if run_unit == 'epoch' else 'iterations'})")
                run = Folded(run.value - m.value, run.node, run.facts, "literal", "", run.deps | m.deps)

        ctx = ctx_of(program, s.facts)
        if ctx is None:
            return
        related: List[Related] = []
        if run is not None:
            rctx = ctx_of(program, run.facts)
            if rctx is not None:
                text = "the run length" + part_note if part_note else _run_text(run, run_unit, "the run has")
                related.append(Related(rctx.path, rctx.span(run.node), text))
        if placement == "batch" and loop is not None and loop.unit == "epoch":
            msg = self._per_batch(s, args, run)
            if msg is not None:
                ev = next(e for e, lvl in _step_events(stepper, scheds, loops, program) if lvl == "batch")
                ectx = ctx_of(program, ev.facts)
                if ectx is None:
                    return
                rel = [Related(ctx.path, ctx.span(s.call), f"the {s.cls} is built here")] + related
                yield self.finding(ectx, ectx.span(ev.call), msg + part_note + args.defaults_note(), hint=_HINT_BATCH,
                                   related=rel)
            return
        if placement == "step":  # Lightning, "interval": "step": stepped every batch by the trainer
            msg = self._per_batch(s, args, run)
            if msg is not None:
                msg = msg.replace("is stepped every batch", 'is stepped every batch ("interval": "step")')
                yield self.finding(ctx, ctx.span(s.call), msg + part_note + args.defaults_note(), hint=_HINT_BATCH,
                                   related=related)
            return
        if placement == "iteration":
            msg = self._per_iteration(s, args, run)
        elif placement in ("epoch", "unknown"):
            msg = self._per_epoch(s, args, run if run_unit == "epoch" else None, placement == "epoch")
        else:
            msg = None
        if msg is not None:
            yield self.finding(ctx, ctx.span(s.call), msg + part_note + args.defaults_note(), hint=_HINT, related=related)

    # ---- per epoch ----------------------------------------------------------------------------
    def _per_epoch(self, s: _Sched, a: "_Args", run: Optional[Folded], stepped_per_epoch: bool) -> Optional[str]:
        E = run.value if run is not None else None
        runs = _run_text(run, "epoch", "a") if run is not None else ""
        if s.cls in ("StepLR", "MultiStepLR"):
            gamma = a.num("gamma", 2, default=0.1)
            if s.cls == "StepLR":
                size = a.get("step_size", 1)
                if size is None or a.derived("step_size", 1, run) or not isinstance(size.value, int) or size.value <= 0:
                    return None
                marks = None
                recipe_key = ("step", size.value) if gamma == 0.1 else None
                shown = f"StepLR(step_size={size.value}" + (f", gamma={format_value(gamma)})" if gamma is not None and a.expr("gamma", 2) is not None else ")")
            else:
                ms = a.get("milestones", 1)
                if ms is None or a.derived("milestones", 1, run) or not isinstance(ms.value, tuple) or not ms.value:
                    return None
                if not all(isinstance(m, int) for m in ms.value):
                    return None
                marks = sorted(ms.value)
                recipe_key = tuple(marks)
                shown = f"MultiStepLR(milestones={format_value(ms.value)})"
            recipe = _RECIPES.get(recipe_key) if recipe_key else None
            if recipe is not None:
                who, made_for = recipe
                if E is None:
                    what = "schedule" if marks is None else "milestones"
                    verb = "is" if marks is None else "are"
                    return (f"{shown} {verb} {who} {made_for}-epoch {what}, copied: nothing ties it to this run's length "
                            f"(the number of epochs could not be determined)")
                first = size.value if marks is None else marks[0]
                # A recipe stretched or squeezed a little still decays at sensible points of the run.
                fits = 0.6 * made_for <= E <= 2 * made_for and first < E
                if not fits:
                    return f"{shown} {'is' if marks is None else 'are'} {who} {made_for}-epoch " \
                           f"{'schedule' if marks is None else 'milestones'}, copied into {runs}: " \
                           + _consequence(marks, size.value if marks is None else None, gamma, E)
                return None
            if E is None or not stepped_per_epoch:
                return None
            first = size.value if marks is None else marks[0]
            if first >= E:
                return f"{shown} never fires: the run has {_run_text(run, 'epoch', '')}"
            if first == E - 1 and E >= 4:
                return f"{shown} first decays at epoch {first} of {E}: only the last epoch runs at the lower LR"
            if gamma is not None and 0 < gamma < 1:
                hit = _epoch_reaching(marks, size.value if marks is None else None, gamma, 1e-5, E)
                if hit is not None and hit <= (2 * E) // 3:
                    return (f"{shown} decays the LR to {_factor(_factor_at(marks, size.value if marks is None else None, gamma, hit))} "
                            f"of its start by epoch {hit} of {E}: the rest of the run barely trains")
            return None
        if s.cls == "ExponentialLR":
            gamma = a.get("gamma", 1)
            if E is None or not stepped_per_epoch or gamma is None or not _is_num(gamma.value) or a.derived("gamma", 1, run):
                return None
            g = gamma.value
            if not 0 < g < 1:
                return None
            hit = math.ceil(math.log(1e-5) / math.log(g))
            if hit <= (2 * E) // 3:
                return (f"ExponentialLR(gamma={format_value(g)}) decays the LR to {_factor(g ** hit)} of its start by "
                        f"epoch {hit} of {E}: the rest of the run barely trains")
            return None
        if s.cls == "CosineAnnealingLR":
            if E is None or not stepped_per_epoch:
                return None
            return _cosine(a, run, E, "epoch")
        if s.cls == "OneCycleLR" and stepped_per_epoch:
            return _one_cycle_per_epoch(a, run)
        return None

    # ---- per iteration (no epochs) -------------------------------------------------------------
    def _per_iteration(self, s: _Sched, a: "_Args", run: Optional[Folded]) -> Optional[str]:
        if run is None or s.cls != "CosineAnnealingLR":
            return None
        return _cosine(a, run, run.value, "iteration")

    # ---- per batch inside an epoch loop --------------------------------------------------------
    def _per_batch(self, s: _Sched, a: "_Args", run: Optional[Folded]) -> Optional[str]:
        E = run.value if run is not None else None
        of_run = f"; the run has {_run_text(run, 'epoch', '')}" if run is not None else ""
        limit = max(100, E or 0)
        if s.cls == "StepLR":
            size = a.get("step_size", 1)
            if size is None or a.scaled("step_size", 1) or not isinstance(size.value, int) or not 0 < size.value <= limit:
                return None
            g = a.num("gamma", 2, default=0.1)
            if g is None or not 0 < g < 1 or g ** (1000 / size.value) > 1e-2:
                return None  # a gentle per-step decay (0.95 every 100 steps) may be meant
            n = size.value * 10
            return (f"StepLR(step_size={size.value}) counts epochs but is stepped every batch: the LR falls "
                    f"{_times(g)} every {'batch' if size.value == 1 else f'{size.value} batches'}, to {_factor(g ** 10)} of its start after {n} batches{of_run}")
        if s.cls == "MultiStepLR":
            ms = a.get("milestones", 1)
            if ms is None or a.scaled("milestones", 1) or not isinstance(ms.value, tuple) or not ms.value:
                return None
            if not all(isinstance(m, int) for m in ms.value) or max(ms.value) > limit:
                return None
            g = a.num("gamma", 2, default=0.1)
            if g is None or not 0 < g < 1 or g ** len(ms.value) > 0.1:
                return None
            return (f"MultiStepLR(milestones={format_value(ms.value)}) counts epochs but is stepped every batch: "
                    f"the LR is {_factor(g ** len(ms.value))} of its start after {max(ms.value)} batches{of_run}")
        if s.cls == "ExponentialLR":
            gamma = a.get("gamma", 1)
            if gamma is None or not _is_num(gamma.value) or not 0 < gamma.value <= 0.98 or a.scaled("gamma", 1):
                return None
            g = gamma.value
            hit = math.ceil(math.log(1e-5) / math.log(g))
            return (f"ExponentialLR(gamma={format_value(g)}) counts epochs but is stepped every batch: the LR is "
                    f"{_factor(g ** hit)} of its start after {hit} batches{of_run}")
        if s.cls == "CosineAnnealingLR":
            expr = a.expr("T_max", 1)
            if expr is None or a.scaled("T_max", 1):
                return None
            t = a.get("T_max", 1)
            epochy = a.epochy("T_max", 1)
            if t is not None and isinstance(t.value, int) and (epochy or (E is not None and t.value <= E)):
                return (f"CosineAnnealingLR(T_max={t.value}) counts epochs but is stepped every batch: the LR hits its "
                        f"minimum after {t.value} batches and then cycles up and down every {2 * t.value} batches{of_run}")
            if t is None and epochy:
                text = " ".join(a.ctx_code(expr).split())
                return (f"CosineAnnealingLR(T_max={text}) counts epochs but is stepped every batch: the LR hits its "
                        f"minimum after {text} batches and then cycles up and down for the rest of the run")
        return None


_HINT = ("Derive the schedule from the run length (T_max=epochs, milestones=[int(0.5 * epochs), int(0.75 * epochs)]), "
         "or train with a constant LR first and tune the decay last")
_HINT_BATCH = ("Step this scheduler once per epoch (after the batch loop), or give its parameters in steps "
               "(e.g. T_max=epochs * len(train_loader), step_size=k * len(train_loader))")


# ------------------------------------------------------------------------------------------------
# the scheduler's arguments


class _Args:
    def __init__(self, s: _Sched, program) -> None:
        self.s = s
        self.program = program
        self._cache: Dict[str, Optional[Folded]] = {}

    def expr(self, name: str, index: int) -> Optional[cst.BaseExpression]:
        return bound_arg(self.s.call, index, name)

    def get(self, name: str, index: int) -> Optional[Folded]:
        if name not in self._cache:
            e = self.expr(name, index)
            self._cache[name] = fold(e, self.s.facts, self.s.scope, self.s.stmt, self.program) if e is not None else None
        return self._cache[name]

    def num(self, name: str, index: int, default: Optional[float]) -> Optional[float]:
        e = self.expr(name, index)
        if e is None:
            return default
        f = self.get(name, index)
        return f.value if f is not None and _is_num(f.value) else None

    def _names(self, name: str, index: int) -> List[str]:
        e = self.expr(name, index)
        if e is None:
            return []
        # every part of every name read (`cfg.epochs.n` is derived from epochs; `len(loader)` reads `len`)
        out = [part for n in names_in(e) for part in n.split(".")]
        f = self.get(name, index)
        if f is not None:
            out.extend(d.split(":")[-1].rsplit(".", 1)[-1] for d in f.deps)
        return out

    def derived(self, name: str, index: int, run: Optional[Folded]) -> bool:
        """Is this argument computed from the run length (names like epochs/steps, or the run's own value)?"""
        f = self.get(name, index)
        if run is not None and f is not None and f.deps & run.deps:
            return True
        return any(_RUN_NAME.search(n) for n in self._names(name, index))

    def scaled(self, name: str, index: int) -> bool:
        """Was the epoch count scaled to steps (len(loader), steps_per_epoch, total_steps...)?"""
        names = self._names(name, index)
        if any(_SCALED.search(n) for n in names):
            return True
        e = self.expr(name, index)
        return e is not None and self.get(name, index) is None and not self.epochy(name, index)

    def epochy(self, name: str, index: int) -> bool:
        names = self._names(name, index)
        return any(_EPOCHY.search(n) for n in names) and not any(_SCALED.search(n) for n in names)

    def defaults_note(self) -> str:
        """" (with the default --lr-step 30)" for arguments that come from argparse defaults."""
        notes = []
        for name, index in (("step_size", 1), ("milestones", 1), ("T_max", 1), ("gamma", 2 if self.s.cls != "ExponentialLR" else 1)):
            expr = self.expr(name, index)
            if name in self._cache and self._cache[name] is not None and isinstance(expr, (cst.Name, cst.Attribute)):
                f = self._cache[name]
                if f.how == "argparse" and f.label:
                    notes.append(f"{f.label} {format_value(f.value)}")
        return f" (with the default {', '.join(notes)})" if notes else ""

    def ctx_code(self, node: cst.CSTNode) -> str:
        ctx = ctx_of(self.program, self.s.facts)
        return ctx.code(node) if ctx is not None else "?"


# ------------------------------------------------------------------------------------------------
# finding schedulers and their steps


_COMPOUND = frozenset((cst.For, cst.While, cst.If, cst.With))


def _schedulers(program) -> Iterable[_Sched]:
    """The schedulers the program builds (a constructor of torch.optim.lr_scheduler, at a statement of its
    own: not in the head of a loop or ``with``)."""
    world = World.of_program(program)
    for f in program.files:
        if not _QUICK.search(f.ctx.source.text):
            continue
        facts = f.facts
        checked: List[_Sched] = []
        wrappers: List[_Sched] = []
        for call, scope, stmt in file_calls(world.file_of(facts)):
            if type(stmt.node) in _COMPOUND:
                continue  # (the call is in the head of a loop / if / with)
            q = facts.qualify(call.func)
            if q is None:
                continue
            q = canonical(q)
            if not q.startswith(_PREFIX):
                continue
            cls = q[len(_PREFIX):]
            if cls in _WRAPPERS or cls in _CHECKED:
                s = _Sched(cls, call, facts, scope, stmt)
                if scope.name == "configure_optimizers":
                    s.lightning_interval = lightning_interval(scope)
                (wrappers if cls in _WRAPPERS else checked).append(s)
        skipped: Set[int] = set()
        for w in wrappers:
            _link_parts(w, checked, skipped, program)
        for s in checked:
            if id(s) not in skipped:
                yield s


def _link_parts(w: _Sched, checked: List[_Sched], skipped: Set[int], program) -> None:
    """SequentialLR([warmup, main], milestones=[m]): `main` is judged over the run after m, stepped where the
    wrapper is stepped; the warm-up parts are not judged. ChainedScheduler([a, b]): both run from the start.
    Parts that cannot be matched to a list element are not judged alone either."""
    sequential = w.cls == "SequentialLR"
    # SequentialLR(optimizer, schedulers, milestones), ChainedScheduler(schedulers, optimizer=None)
    parts_expr = bound_arg(w.call, 1 if sequential else 0, "schedulers")
    world = World.of_program(program)
    file = world.file_of(w.facts)
    items = world.list_items(parts_expr, file, w.scope, w.stmt) if parts_expr is not None and file is not None else None
    if items is None:
        whole = ObjectRef(w.call, w.facts, w.scope, w.stmt)
        for s in checked:  # parts we cannot place: not judged alone
            if mentions_site(program, whole, s.call):
                skipped.add(id(s))
        return
    elements: List[Tuple[cst.BaseExpression, Scope, Optional[Stmt]]] = []
    for el, sc, st in items:  # (a part appended in a loop is listed once per turn)
        if all(el is not other for other, _, _ in elements):
            elements.append((el, sc, st))
    milestones = bound_arg(w.call, 2, "milestones") if sequential else None
    for i, (el, sc, st) in enumerate(elements):
        part = None
        for s in checked:
            if s.call is el or (isinstance(el, (cst.Name, cst.Attribute))
                                and holds_site(program, ObjectRef(el, w.facts, sc, st), s.call) is True):
                part = s
        if part is None:
            continue
        last = i == len(elements) - 1
        if sequential and not last:
            skipped.add(id(part))  # a warm-up part
            continue
        if sequential:
            if isinstance(milestones, (cst.List, cst.Tuple)):
                milestones = milestones.elements[-1].value if milestones.elements else None
            if milestones is None:
                skipped.add(id(part))
                continue
            part.offset = milestones  # folded where it is judged (a list held by a name: its last milestone)
        part.via = w
        if part.lightning_interval is None:
            part.lightning_interval = w.lightning_interval


def _step_events(s: _Sched, scheds: List[_Sched], loops: List[TrainLoop], program) -> List[Tuple[Event, str]]:
    """The ``.step()`` events of this scheduler: those whose receiver holds the object built at its call
    (asked of the model: through names, ``self.sched``, parameters, factories, other files). A scheduler
    step whose receiver cannot be followed (a parameter nobody binds) is this one's when it is the
    program's only scheduler."""
    out = []
    alone = len(scheds) == 1
    for loop in loops:
        for e in loop.events:
            if not e.receiver or e.call.func.attr.value != "step":
                continue
            mine = acts_on(program, e, s.call)
            if mine or (mine is None and alone and e.kind == "scheduler_step"):
                out.append((e, e.level))
    return out


def _steps_of(s: _Sched, scheds: List[_Sched], loops: List[TrainLoop], program) -> List[Tuple[TrainLoop, str, bool]]:
    """(loop, level, conditional) of every ``.step()`` of this scheduler."""
    out = []
    for loop in loops:
        for e, lvl in _step_events(s, scheds, [loop], program):
            out.append((loop, lvl, e.conditional))
    # an event seen through an epoch loop's helper wins over the helper's own iteration loop
    if any(l.unit == "epoch" for l, _, _ in out):
        out = [x for x in out if x[0].unit == "epoch"]
    return out


def _manual_lightning(program) -> bool:
    """Lightning manual optimization: the module steps its schedulers itself (self.lr_schedulers())."""
    return any("lr_schedulers()" in f.ctx.source.text or "automatic_optimization" in f.ctx.source.text
               for f in program.files)


# ------------------------------------------------------------------------------------------------
# numbers


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _run_text(run: Folded, unit: str, lead: str) -> str:
    """"the run has 20 epochs (with the default --epochs 20)" / "a 20-epoch run (...)"."""
    n = format_value(run.value)
    default = f" (the default of {run.label})" if run.how == "argparse" and run.label else ""
    if lead == "a":
        return f"a {n}-{'epoch' if unit == 'epoch' else 'iteration'} run{default}"
    what = "epochs" if unit == "epoch" else "iterations"
    return f"{lead} {n} {what}".strip() + default


def _factor(x: float) -> str:
    if x >= 0.01:
        return f"{x * 100:.0f}%"
    text = f"{x:.0e}"  # 1e-03
    mant, _, exp = text.partition("e")
    return f"{mant}e{int(exp)}"


def _times(g: float) -> str:
    return f"{1 / g:g}x"


def _factor_at(marks, size, gamma: float, epoch: int) -> float:
    """LR factor during epoch ``epoch`` (0-based) of a per-epoch StepLR/MultiStepLR."""
    if marks is None:
        return gamma ** (epoch // size)
    return gamma ** sum(1 for m in marks if m <= epoch)


def _epoch_reaching(marks, size, gamma: float, floor: float, E: int) -> Optional[int]:
    for k in range(E):
        if _factor_at(marks, size, gamma, k) <= floor * (1 + 1e-9):
            return k
    return None


def _consequence(marks, size, gamma: Optional[float], E: int) -> str:
    g = gamma if gamma is not None and 0 < gamma < 1 else None
    if marks is None:
        if size >= E:
            return "it never fires"
        decays = (E - 1) // size
        if g is None:
            return f"it decays {decays} times"
        hit = _epoch_reaching(None, size, g, 1e-5, E)
        if hit is not None and hit <= (2 * E) // 3:
            return (f"the LR falls {_times(g)} every {size} epochs and is down to {_factor(_factor_at(None, size, g, hit))} "
                    f"of its start by epoch {hit} of {E}")
        if decays == 1:
            return f"it fires once, at epoch {size} of {E}"
        return f"the LR falls {_times(g)} every {size} epochs, to {_factor(g ** decays)} of its start by epoch {decays * size}"
    reached = [m for m in marks if m < E]
    if not reached:
        return "none of them is reached, the LR never decays"
    if len(reached) < len(marks):
        return f"only {format_value(tuple(reached))} {'is' if len(reached) == 1 else 'are'} reached"
    last = max(marks)
    tail = E - last
    if g is None:
        return f"the last decay comes at epoch {last}, {tail} epochs before the end"
    return f"the LR sits at {_factor(g ** len(marks))} of its start for the last {tail} of {E} epochs"


def _one_cycle_per_epoch(a: _Args, run: Optional[Folded]) -> Optional[str]:
    """OneCycleLR sized in batches (steps_per_epoch, total_steps=epochs * len(loader)) but stepped per epoch."""
    tail = "but is stepped once per epoch: the LR never gets past the warm-up"
    spe_expr = a.expr("steps_per_epoch", 4)
    if spe_expr is not None:
        spe = a.get("steps_per_epoch", 4)
        if spe is not None and spe.value == 1:
            return None
        text = format_value(spe.value) if spe is not None else " ".join(a.ctx_code(spe_expr).split())
        return f"OneCycleLR(steps_per_epoch={text}) is planned per batch {tail}"
    total_expr = a.expr("total_steps", 2)
    if total_expr is None:
        return None
    total = a.get("total_steps", 2)
    if total is not None:
        if run is None or not isinstance(total.value, int) or total.value <= 1.5 * run.value:
            return None
        return f"OneCycleLR(total_steps={total.value}) is planned over {total.value} steps {tail} ({run.value} steps)"
    if a.scaled("total_steps", 2) and any(n in ("len",) or "batch" in n.lower() or "per_epoch" in n.lower()
                                           for n in a._names("total_steps", 2)):
        text = " ".join(a.ctx_code(total_expr).split())
        return f"OneCycleLR(total_steps={text}) is planned per batch {tail}"
    return None


def _cosine(a: _Args, run: Folded, E: int, unit: str) -> Optional[str]:
    t = a.get("T_max", 1)
    if t is None or not isinstance(t.value, int) or t.value <= 0 or a.derived("T_max", 1, run):
        return None
    T = t.value
    word = "epochs" if unit == "epoch" else "iterations"
    if T >= 1.5 * E:
        left = (1 + math.cos(math.pi * E / T)) / 2
        return (f"CosineAnnealingLR(T_max={T}) but the run has {_run_text(run, unit, '')}: the LR only falls to "
                f"~{left * 100:.0f}% of its start")
    if T < E and E - T >= max(2, 0.2 * E):
        back = (1 + math.cos(math.pi * (E - 1) / T)) / 2
        return (f"CosineAnnealingLR(T_max={T}) but the run has {_run_text(run, unit, '')}: the LR reaches its minimum "
                f"at {word[:-1]} {T}, then climbs back up (to ~{back * 100:.0f}% of its start at the end)")
    return None
