from __future__ import annotations

import os
from typing import Iterable, List, Optional

import libcst as cst

from trainlint.analysis.roles import word_role_of_name
from trainlint.analysis.loaders import SamplerFact, loader_facts, program_mentions
from trainlint.analysis.execution import EpochReseed, TrainLoop, epoch_reseeds, program_loops, repeated_training_loop
from trainlint.findings import Applicability, Edit, Finding, Fix, Related, Severity, Span
from trainlint.rules import Rule


class DistributedSamplerWithoutSetEpoch(Rule):
    """
    ## What it does
    Flags a `torch.utils.data.distributed.DistributedSampler` that shuffles (the default) and feeds the
    training DataLoader of a program that reads its data more than once (an epoch loop, or a
    `while True:` / iteration loop around the batch loop), when no `set_epoch(...)` call gives **this
    sampler** a new epoch every epoch. The program model follows each `set_epoch` to the object it acts on
    (`sampler.set_epoch(epoch)`, `train_loader.sampler.set_epoch(epoch)`,
    `loader.batch_sampler.sampler.set_epoch(epoch)`, `self.train_loader.sampler` of a trainer class, a
    parameter bound at the call site of a helper in another file) and to when it runs. So it also flags
    `set_epoch` called only on the validation sampler, `set_epoch(0)` with a constant, and a `set_epoch`
    that runs once before the epoch loop.

    ## Why is this bad?
    A `DistributedSampler` draws its permutation from `seed + epoch`, and the epoch only changes when
    you call `set_epoch`. Without it, every epoch uses the permutation of epoch 0: each process sees
    exactly the same sequence of batches every epoch, as if the data were never reshuffled. The
    training still runs, just worse — the silent kind of failure Karpathy warns about
    (Karpathy 2019), and precisely what shuffling is for: the data are reshuffled at every epoch
    ([torch.utils.data.DataLoader](https://pytorch.org/docs/stable/data.html#torch.utils.data.DataLoader), `shuffle`).
    The PyTorch docs say it plainly: "calling the set_epoch() method at the beginning of each epoch
    before creating the DataLoader iterator is necessary to make shuffling work properly across
    multiple epochs. Otherwise, the same ordering will be always used."

    ## Example
    ```python
    import torch
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(train_ds)
    train_loader = DataLoader(train_ds, batch_size=64, sampler=sampler)
    for epoch in range(90):
        for images, target in train_loader:
            loss = criterion(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    ```

    ## Use instead
    ```python
    import torch
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(train_ds)
    train_loader = DataLoader(train_ds, batch_size=64, sampler=sampler)
    for epoch in range(90):
        sampler.set_epoch(epoch)
        for images, target in train_loader:
            loss = criterion(model(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    ```
    Not flagged: `set_epoch` with a changing argument on this sampler every epoch (directly, through
    `loader.sampler.set_epoch(epoch)` or `loader.batch_sampler.sampler`, in a helper called per epoch, on a
    receiver the model cannot follow), evaluation samplers
    (`shuffle=False`, or feeding a validation loader), a `shuffle=` from a variable or the command line,
    a sampler built only under a condition that is false in the program (`if distributed:` with
    `distributed=False` never overridden), programs that read the data once, and Lightning, Accelerate
    and Hugging Face `Trainer`, which call `set_epoch` for you.

    ## Fix safety
    An unsafe fix is offered when the sampler and the epoch loop are in the same function: it inserts
    `sampler.set_epoch(epoch)` as the first statement of the epoch loop. It changes the data order of
    every epoch but the first, so results change; it is never applied without `--unsafe-fixes`.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - [torch.utils.data.distributed.DistributedSampler](https://pytorch.org/docs/stable/data.html#torch.utils.data.distributed.DistributedSampler)
    """

    code = "TL305"
    name = "distributed-sampler-without-set-epoch"
    severity = Severity.WARNING
    summary = "DistributedSampler shuffles by epoch but set_epoch() is never called: every epoch repeats the same order"
    probe = None

    bad = (
        # DDP ImageNet style
        """
import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler
train_sampler = DistributedSampler(train_dataset)  # expect: TL305
val_sampler = DistributedSampler(val_dataset, shuffle=False)
train_loader = torch.utils.data.DataLoader(train_dataset, batch_size=256, sampler=train_sampler)
val_loader = torch.utils.data.DataLoader(val_dataset, batch_size=256, sampler=val_sampler)
for epoch in range(90):
    model.train()
    for images, target in train_loader:
        loss = criterion(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
""",
        # inline sampler, chosen per run
        """
import torch.utils.data as tud
train_loader = tud.DataLoader(ds, batch_size=32, sampler=tud.distributed.DistributedSampler(ds) if ddp else None)  # expect: TL305
def train(loader):
    for x, y in loader:
        loss_fn(model(x), y).backward()
        opt.step()
        opt.zero_grad()
for epoch in range(args.epochs):
    train(train_loader)
""",
        # sampler built in a helper method of a trainer class
        """
from torch.utils.data import DataLoader, DistributedSampler
class Trainer:
    def __init__(self, model, ds, opt):
        self.model, self.opt = model, opt
        self.sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=True)  # expect: TL305
        self.train_loader = DataLoader(ds, batch_size=16, sampler=self.sampler)
    def run(self, epochs):
        for epoch in range(epochs):
            for batch in self.train_loader:
                self.opt.zero_grad()
                self.model(batch).loss.backward()
                self.opt.step()
""",
        # set_epoch on the validation sampler, not the training one
        """
from torch.utils.data import DataLoader, DistributedSampler
train_sampler = DistributedSampler(train_ds)  # expect: TL305
val_sampler = DistributedSampler(val_ds)
train_loader = DataLoader(train_ds, batch_size=64, sampler=train_sampler)
val_loader = DataLoader(val_ds, batch_size=64, sampler=val_sampler)
for epoch in range(30):
    val_sampler.set_epoch(epoch)
    for x, y in train_loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
""",
    )

    good = (
        # set_epoch on the sampler
        """
from torch.utils.data import DataLoader, DistributedSampler
sampler = DistributedSampler(ds)
loader = DataLoader(ds, batch_size=32, sampler=sampler)
for epoch in range(10):
    sampler.set_epoch(epoch)
    for x, y in loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
""",
        # set_epoch through the loader
        """
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
train_loader = DataLoader(ds, batch_size=32, sampler=DistributedSampler(ds))
for epoch in range(10):
    if isinstance(train_loader.sampler, DistributedSampler):
        train_loader.sampler.set_epoch(epoch)
    for x, y in train_loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
""",
        # set_epoch in a helper called per epoch
        """
from torch.utils.data import DataLoader, DistributedSampler
train_loader = DataLoader(ds, batch_size=32, sampler=DistributedSampler(ds))
def train_one_epoch(loader, epoch):
    loader.batch_sampler.sampler.set_epoch(epoch)
    for x, y in loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
for epoch in range(10):
    train_one_epoch(train_loader, epoch)
""",
        # evaluation sampler: no shuffling, nothing to reseed
        """
import torch
from torch.utils.data import DataLoader, DistributedSampler
val_loader = DataLoader(val_ds, batch_size=64, sampler=DistributedSampler(val_ds, shuffle=False))
for epoch in range(10):
    train(model)
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            metric.update(model(x), y)
""",
        # Accelerate calls set_epoch on the prepared loader
        """
from accelerate import Accelerator
from torch.utils.data import DataLoader, DistributedSampler
accelerator = Accelerator()
train_loader = DataLoader(ds, batch_size=32, sampler=DistributedSampler(ds))
model, opt, train_loader = accelerator.prepare(model, opt, train_loader)
for epoch in range(3):
    for batch in train_loader:
        accelerator.backward(model(**batch).loss); opt.step(); opt.zero_grad()
""",
        # Lightning calls set_epoch on the sampler of the train loader
        """
import lightning as L
from torch.utils.data import DataLoader, DistributedSampler
class DM(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=32, sampler=DistributedSampler(self.ds))
trainer = L.Trainer(max_epochs=10, strategy="ddp")
trainer.fit(model, datamodule=DM())
""",
        # a single pass (no epoch loop): the order is never repeated
        """
from torch.utils.data import DataLoader, DistributedSampler
loader = DataLoader(ds, batch_size=8, sampler=DistributedSampler(ds))
for step, batch in enumerate(loader):
    model(**batch).loss.backward(); opt.step(); opt.zero_grad()
""",
    )

    @classmethod
    def may_fire(cls, text: str, path: str) -> bool:
        # the sampler it judges is built in the file, whose loaders no framework re-seeds (``_check``)
        return "DistributedSampler" in text and not _framework_sets_epoch_in(text)

    def check(self, ctx) -> Iterable[Finding]:
        # a module that runs nothing by itself (a training function's module linted alone) is checked on
        # its own too
        program = self.module_program(ctx)
        if program is not None:
            yield from self._check(program)

    def check_program(self, program) -> Iterable[Finding]:
        # a file checked on its own as well (it is imported by this entry): the engine keeps the file's
        # own finding at a place both passes report
        yield from self._check(program)

    def _check(self, program) -> Iterable[Finding]:
        if not program_mentions(program, "DistributedSampler"):
            return
        if _framework_sets_epoch(program):
            return
        facts = loader_facts(program)
        if not facts.samplers:
            return
        epoch_loops = [l for l in program_loops(program) if l.unit == "epoch"]
        repeated = None if epoch_loops else repeated_training_loop(program)
        if not epoch_loops and repeated is None:
            return
        reseeds = epoch_reseeds(program)
        for sm in facts.samplers:
            if sm.shuffle is not True or sm.dead or not _for_training(sm):
                continue
            # the set_epoch calls that may act on this sampler (or whose receiver cannot be followed)
            mine = [r for r in reseeds if _may_act_on(r, sm, program)]
            if any(r.placement != "once" and not r.constant for r in mine):
                continue  # given the epoch every epoch
            yield self._finding(sm, epoch_loops, repeated, program, mine, reseeds)

    def _finding(self, sm: SamplerFact, epoch_loops: List[TrainLoop], repeated, program, mine: List[EpochReseed],
                 reseeds: List[EpochReseed]) -> Finding:
        ctx = sm.pf.ctx
        loop = _loop_for(sm, epoch_loops) if epoch_loops else None
        name = f"`{sm.target}`" if sm.target else "This DistributedSampler"
        run = f"each of the {loop.describe_count()}" if loop is not None and loop.count is not None else "every epoch"
        related = []
        if mine:
            r = mine[0]
            where_ = _where(program, r, sm)
            if r.constant:
                arg = r.call.args[0].value.value if r.call.args and isinstance(r.call.args[0].value, cst.Integer) else "a constant"
                message = (f"{name} shuffles with seed + epoch, but it is only given the constant epoch {arg} "
                           f"(`{r.receiver}.set_epoch({arg})`, {where_}): {run} reads the same order")
                note = "set_epoch() with a constant: the epoch never changes"
            else:
                message = (f"{name} shuffles with seed + epoch, but set_epoch() runs only once, before the epoch loop "
                           f"({where_}): {run} reads the same order")
                note = "set_epoch() runs once, before the epoch loop"
            rctx = _ctx(program, r.facts)
            if rctx is not None:
                related.append(Related(rctx.path, rctx.span(r.call), note))
        elif reseeds:
            others = ", ".join(dict.fromkeys(f"`{r.receiver}`" for r in reseeds))
            message = (f"{name} shuffles with seed + epoch, but set_epoch() is only called on {others}, not on this "
                       f"sampler: {run} reads the same order as epoch 0")
            for r in reseeds[:2]:
                rctx = _ctx(program, r.facts)
                if rctx is not None:
                    related.append(Related(rctx.path, rctx.span(r.call), "set_epoch() on another object"))
        else:
            message = (
                f"{name} shuffles with seed + epoch, but set_epoch() is never called: "
                f"{run} reads the same order as epoch 0"
            )
        fix = None
        if loop is not None and not mine:
            lpf = program.file_of(loop.facts)
            lctx = lpf.ctx if lpf is not None else None
            if lctx is not None:
                related.append(Related(lctx.path, lctx.span(loop.node), "the epoch loop that should call set_epoch(epoch)"))
            fix = _fix(sm, loop)
        elif repeated is not None:
            rpf, rnode = repeated
            related.append(Related(rpf.ctx.path, rpf.ctx.span(rnode), "the loop that passes over the training data again and again"))
        target = sm.target or "train_loader.sampler"
        return self.finding(
            ctx,
            ctx.span(sm.call),
            message,
            hint=f"Call {target}.set_epoch(epoch) at the start of every epoch, before iterating the loader",
            fix=fix,
            related=related,
        )


def _may_act_on(r: EpochReseed, sm: SamplerFact, program) -> bool:
    """Does set_epoch call ``r`` act on sampler ``sm`` (or on an object we cannot follow)?"""
    targets = r.acts_on(program)
    return targets is None or id(sm.call) in targets


def _ctx(program, facts):
    pf = program.file_of(facts)
    return pf.ctx if pf is not None else None


def _where(program, r: EpochReseed, sm: SamplerFact) -> str:
    ctx = _ctx(program, r.facts)
    if ctx is None:
        return "in another file"
    line = ctx.span(r.call).line
    if r.facts is sm.pf.facts:
        return f"line {line}"
    return f"{os.path.relpath(ctx.path, os.path.dirname(sm.pf.ctx.path) or '.').replace(os.sep, '/')}:{line}"


def _framework_sets_epoch(program) -> bool:
    return any(_framework_sets_epoch_in(f.ctx.source.text) for f in program.files)


def _framework_sets_epoch_in(text: str) -> bool:
    """Does this file hand its loaders to a framework that calls set_epoch() itself (accelerate's
    prepare(), a Lightning or transformers trainer)?"""
    if "accelerate" in text and ".prepare(" in text:
        return True
    if "lightning" in text and ("LightningModule" in text or "LightningDataModule" in text or "Trainer(" in text):
        return True
    if "transformers" in text and "Trainer(" in text:
        return True
    return False


def _for_training(sm: SamplerFact) -> bool:
    roles = {ld.role for ld in sm.loaders if ld.role is not None and (ld.structural or ld.role == "eval")}
    if "eval" in roles:
        return False
    if "train" in roles:
        return True
    weak = {ld.role for ld in sm.loaders if ld.role is not None}
    if weak == {"train"}:
        return True
    if not sm.loaders and sm.target is not None:
        return word_role_of_name(sm.target) == "train"
    return False


def _loop_for(sm: SamplerFact, loops: List[TrainLoop]) -> Optional[TrainLoop]:
    same = [l for l in loops if l.facts is sm.pf.facts and l.scope is sm.scope]
    if same:
        return same[0]
    in_file = [l for l in loops if l.facts is sm.pf.facts]
    if in_file:
        return in_file[0]
    return loops[0] if len(loops) == 1 else None


def _fix(sm: SamplerFact, loop: TrainLoop) -> Optional[Fix]:
    node = loop.node
    if sm.target is None or "." in sm.target or loop.scope is not sm.scope or loop.facts is not sm.pf.facts:
        return None
    if not isinstance(node, cst.For) or not isinstance(node.target, cst.Name) or not isinstance(node.body, cst.IndentedBlock):
        return None
    if loop.stmt.index < sm.stmt.index:
        return None
    ctx = sm.pf.ctx
    first = node.body.body[0]
    span = ctx.span(first)
    indent = " " * (span.column - 1)
    edit = Edit(Span(span.line, 1, span.line, 1), f"{indent}{sm.target}.set_epoch({node.target.value})\n")
    return Fix(message=f"Call {sm.target}.set_epoch({node.target.value}) at the start of each epoch", edits=(edit,),
               applicability=Applicability.UNSAFE)
