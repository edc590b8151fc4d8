from __future__ import annotations

from typing import Iterable, List, Optional

from trainlint.analysis.execution import (
    Reported, TimedEvent, Timeline, common_loops, ctx_of, exclusive, program_timelines, same_iteration_before,
    scheduler_kind, schedules, where,
)
from trainlint.findings import Applicability, Finding, Fix, Related, Severity
from trainlint.rules import Rule
from trainlint.analysis.syntax import short


class SchedulerBeforeOptimizer(Rule):
    """
    ## What it does
    Flags `scheduler.step()` called before `optimizer.step()` in the same iteration of a training loop:
    in the batch loop before the batch's `optimizer.step()` (per-batch schedules such as `OneCycleLR`,
    warmup, `get_linear_schedule_with_warmup`), or at the start of the epoch loop before the batch loop
    that steps the optimizer (the pre-1.1 habit of stepping the scheduler at the top of each epoch). The
    events are followed into helpers (`train_one_epoch(...)`, `self.train_step()`, functions of other
    files of the program), `scaler.step(optimizer)` counts as the optimizer step, and `if`/`else` branches
    that never run together are told apart. With several optimizers (a GAN's generator and discriminator)
    each scheduler is paired with the optimizer it was built on, followed through names, attributes,
    parameters and files; a scheduler whose optimizer cannot be followed is not judged there.

    ## Why is this bad?
    Since PyTorch 1.1 a scheduler applies its first value when it is built and `scheduler.step()` moves to
    the next one, so it must come after `optimizer.step()`. Stepped first, the first value of the schedule
    is never used: a warmup starts one step late, a OneCycle schedule is shifted, a per-epoch StepLR decays
    one epoch early — PyTorch itself warns "Detected call of `lr_scheduler.step()` before
    `optimizer.step()`" (pytorch/pytorch#40492, #117540 ask for more of these warnings). The run still
    trains, just not on the schedule you planned — the kind of quiet learning-rate trouble the source texts
    warn about: do not trust the decay you think you have (Karpathy 2019,
    "don't trust learning rate decay defaults").

    A scheduler stepped at the start of each epoch (before that epoch's batch loop) is the same bug one
    level up: the first epoch never runs at the initial learning rate, so it is flagged too.

    ## Example
    ```python
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=len(loader) * 10)
    for epoch in range(10):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            scheduler.step()
            optimizer.step()
    ```

    ## Use instead
    ```python
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=len(loader) * 10)
    for epoch in range(10):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
    ```
    Not flagged: schedulers stepped after the optimizer (per batch or after the epoch's batch loop),
    `ReduceLROnPlateau.step(val_loss)` after validation, `scheduler.step(epoch)` / `step(metric)` with an
    explicit argument (the value is set, not advanced), a scheduler step guarded by a condition on the epoch
    or step counter (`if epoch > 0: scheduler.step()`), library schedulers with their own stepping contract
    (timm's `scheduler.step(epoch)`), and Lightning / HF Trainer, which step schedulers in the right order.
    A guard the default run takes is no condition: `if opt.lr_scheduler == "multistep": scheduler.step()` with
    `--lr_scheduler` defaulting to `multistep` (argparse defaults, config values and module constants, also
    through a `get_opt()` helper in another file) is judged like an unguarded step.

    ## Fix safety
    An unsafe fix, applied only with `--unsafe-fixes`, when `scheduler.step()` is the statement directly
    before `optimizer.step()` in the same block: it moves the scheduler step just after the optimizer
    step. The learning rate of every step of the run changes by one position of the schedule, so it is
    unsafe. For a per-epoch schedule stepped before the batch loop there is no fix: move
    `scheduler.step()` after the epoch's batch loop yourself.

    ## References
    - [torch.optim: how to adjust the learning rate](https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate)
    - pytorch/pytorch#40492, pytorch/pytorch#117540 (schedulers stepped per iteration)
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    """

    code = "TL205"
    name = "scheduler-before-optimizer"
    severity = Severity.WARNING
    summary = "scheduler.step() runs before optimizer.step() in the same iteration: the first LR of the schedule is skipped"
    probe = "lr-trajectory"

    bad = (
        # per batch: OneCycleLR stepped before the optimizer
        """
import torch
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10 * len(loader))
for epoch in range(10):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        scheduler.step()  # expect: TL205
        optimizer.step()
""",
        # old style: StepLR stepped at the start of each epoch, before the batch loop
        """
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
optimizer = optim.SGD(net.parameters(), lr=0.01)
scheduler = StepLR(optimizer, step_size=10, gamma=0.5)
for epoch in range(40):
    scheduler.step()  # expect: TL205
    for inputs, labels in trainloader:
        optimizer.zero_grad()
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()
""",
        # epoch start, the batch loop in a helper
        """
import torch
def train_one_epoch(model, loader, optimizer):
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=90)
for epoch in range(90):
    lr_scheduler.step()  # expect: TL205
    train_one_epoch(model, train_loader, optimizer)
""",
        # AMP: scaler.step(optimizer) is the optimizer step
        """
import torch
from transformers import get_linear_schedule_with_warmup
scaler = torch.cuda.amp.GradScaler()
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
scheduler = get_linear_schedule_with_warmup(optimizer, 500, 10000)
for step, batch in enumerate(loader):
    with torch.autocast("cuda"):
        loss = model(**batch).loss
    scaler.scale(loss).backward()
    scheduler.step()  # expect: TL205
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad()
""",
        # accumulation: both in the update block, in the wrong order
        """
import torch
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / 1000))
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y) / 4
    loss.backward()
    if (i + 1) % 4 == 0:
        scheduler.step()  # expect: TL205
        optimizer.step()
        optimizer.zero_grad()
""",
        # a scheduler passed in as a parameter
        """
def train(model, loader, optimizer, scheduler, criterion):
    model.train()
    for batch in loader:
        optimizer.zero_grad()
        loss = criterion(model(batch["x"]), batch["y"])
        loss.backward()
        scheduler.step()  # expect: TL205
        optimizer.step()
for epoch in range(5):
    train(model, loader, optimizer, scheduler, criterion)
""",
    )
    good = (
        # stepped after the optimizer, per batch
        """
import torch
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=1000)
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
    scheduler.step()
""",
        # stepped after the epoch's batch loop
        """
import torch
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
for epoch in range(90):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    scheduler.step()
""",
        # ReduceLROnPlateau with the validation metric after the epoch
        """
import torch
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=3)
for epoch in range(50):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    val_loss = evaluate(model, val_loader)
    scheduler.step(val_loss)
""",
        # ReduceLROnPlateau stepped at the top of the epoch with last epoch's metric
        """
import torch
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
val_loss = float("inf")
for epoch in range(50):
    plateau.step(val_loss)
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    val_loss = evaluate(model, val_loader)
""",
        # guarded so that the first epoch runs at the initial LR
        """
import torch
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 30)
for epoch in range(90):
    if epoch > 0:
        scheduler.step()
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
""",
        # an explicit epoch argument sets the value (timm style)
        """
from timm.scheduler import create_scheduler
lr_scheduler, num_epochs = create_scheduler(args, optimizer)
for epoch in range(num_epochs):
    lr_scheduler.step(epoch)
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
""",
        # accumulation: optimizer then scheduler inside the update block
        """
import torch
for step, batch in enumerate(loader):
    loss = model(**batch).loss / args.gradient_accumulation_steps
    loss.backward()
    if (step + 1) % args.gradient_accumulation_steps == 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
""",
        # a GAN: each scheduler after its own optimizer
        """
import torch
sched_d = torch.optim.lr_scheduler.StepLR(opt_d, 10)
sched_g = torch.optim.lr_scheduler.StepLR(opt_g, 10)
for epoch in range(100):
    for real in loader:
        opt_d.zero_grad()
        d_loss(real).backward()
        opt_d.step()
        sched_d.step()
        opt_g.zero_grad()
        g_loss().backward()
        opt_g.step()
        sched_g.step()
""",
        # a project scheduler with its own contract
        """
import torch
class WarmupLR:
    def __init__(self, optimizer, warmup):
        self.optimizer, self.warmup, self.n = optimizer, warmup, 0
    def step(self):
        self.n += 1
        for g in self.optimizer.param_groups:
            g["lr"] = 1e-3 * min(1.0, self.n / self.warmup)
warmup_scheduler = WarmupLR(optimizer, 1000)
for x, y in loader:
    warmup_scheduler.step()
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
""",
        # Lightning steps the scheduler for you
        """
import torch
import lightning as L
class Net(L.LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.criterion(self(x), y)
    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=1000)
        return [opt], [{"scheduler": sched, "interval": "step"}]
""",
        # different branches never run together
        """
import torch
for epoch in range(10):
    for x, y in loader:
        if warmup_phase:
            warmup_sched.step()
        else:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        if not any(".step(" in f.ctx.source.text for f in program.files):
            return
        reported = Reported(program, self.code)
        for tl in program_timelines(program):
            steps = tl.of("optimizer_step")
            if not steps:
                continue
            for s in tl.of("scheduler_step"):
                finding = self._judge(s, steps, tl, program)
                if finding is not None and reported.first(s.facts, s.node, finding.span.line):
                    yield finding

    def _judge(self, s: TimedEvent, steps: List[TimedEvent], tl: Timeline, program) -> Optional[Finding]:
        call = s.call
        if call is None or call.args:
            return None  # step(epoch) / step(val_loss): the value is set, not advanced
        kind = scheduler_kind(s, program)
        if kind in ("plateau", "other"):
            return None
        # several optimizers (a GAN's generator and discriminator): where the model knows which optimizer
        # this scheduler wraps, only that one's steps count
        paired = [p for p in steps if schedules(program, s, p) is True]
        if paired:
            steps = paired
        # guards the run takes by default (`if opt.lr_scheduler == "multistep":` with that default) are
        # the default path, not a condition
        guards = [g for g in s.real_guards() if not (g.is_if and g.default_taken(program) is True)]
        if any(not g.always_in_practice for g in guards if g.is_if) or any(not g.is_if for g in guards):
            # `if epoch > 0: scheduler.step()`: unsure; unless the optimizer step shares the guard
            later = [p for p in steps if same_iteration_before(s, p) and _shares_guards(s, p)]
            if not later:
                return None
        # an optimizer stepped earlier in the same pass: several optimizers we cannot pair, or this
        # scheduler's own optimizer already stepped
        if any(same_iteration_before(p, s) and len(common_loops(p, s)) >= len(s.loops) for p in steps):
            return None
        target = next((p for p in steps if same_iteration_before(s, p) and len(common_loops(s, p)) == len(s.loops)), None)
        if target is None:
            return None
        ctx = ctx_of(program, s.facts)
        pctx = ctx_of(program, target.facts)
        if ctx is None or pctx is None:
            return None
        span = ctx.span(call)
        pspan = pctx.span(target.node)
        sched = s.receiver or "scheduler"
        opt = short(pctx.code(target.node))
        level = "same"
        if len(s.loops) < len(target.loops):
            message = (f"`{sched}.step()` runs at the start of each epoch, before the batch loop's `{opt}` "
                       f"({where(program, target, s.facts)}): the first epoch never uses the schedule's initial learning rate")
            level = "epoch"
        else:
            message = (f"`{sched}.step()` runs before `{opt}` ({where(program, target, s.facts)}) in the same iteration: the "
                       "schedule's first learning rate is skipped and every later one comes one step early")
        related = [Related(pctx.path, pspan, "the optimizer step it should follow")]
        hint = ("Move the scheduler step after the epoch's batch loop (after the last optimizer.step())"
                if level == "epoch" else "Call optimizer.step() first, then scheduler.step()")
        return self.finding(ctx, span, message, hint=hint, related=related, fix=_fix(ctx, s, target, level))


def _fix(ctx, s: TimedEvent, p: TimedEvent, level: str) -> Optional[Fix]:
    """The scheduler step directly before the optimizer step, in one block: move it just after."""
    if level != "same" or s.facts is not p.facts or s.stmt.block != p.stmt.block or s.stmt.index + 1 != p.stmt.index:
        return None
    if s.call is None or p.call is None or s.via or p.via:
        return None
    from trainlint.edits import move_statement

    edits = move_statement(ctx, s.call, p.call, after=True)
    if edits is None:
        return None
    return Fix(message=f"Move `{ctx.code(s.call).strip()}` after `{ctx.code(p.call).strip()}`", edits=edits,
               applicability=Applicability.UNSAFE)


def _shares_guards(s: TimedEvent, p: TimedEvent) -> bool:
    mine = [(id(g.node), g.branch) for g in s.real_guards()]
    theirs = {(id(g.node), g.branch) for g in p.guards}
    return all(m in theirs for m in mine) and not exclusive(s, p)
