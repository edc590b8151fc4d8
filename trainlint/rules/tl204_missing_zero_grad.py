from __future__ import annotations

from typing import Iterable, List, Optional

import libcst as cst

from trainlint.analysis.execution import (
    Reported, TimedEvent, Timeline, calls_clearing_function, common_loops, ctx_of, distinct_targets, event_target,
    exclusive, in_loop, is_optimizer, is_scaler, judged_optimizer, program_timelines, runs_whenever,
    same_iteration_before, same_target, where,
)
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule
from trainlint.analysis.syntax import short


class MissingZeroGrad(Rule):
    """
    ## What it does
    Flags a training loop whose iteration calls `backward()` and `optimizer.step()` but never clears the
    gradients (`optimizer.zero_grad()`, `model.zero_grad()`, `p.grad = None`, `p.grad.zero_()`), clears
    them only once per epoch while stepping every batch, clears them only on some branches
    (`if cond: optimizer.zero_grad()`), clears only **another optimizer** (`head_opt.zero_grad()` before
    `full_opt.step()`), or clears them **between** `backward()` and `step()` — which wipes the gradients the
    step was about to use. The iteration is followed into helpers (`train_step(...)`, `self.training_step()`,
    functions of other files of the program); a Lightning `training_step` with manual optimization
    (`self.manual_backward(loss)`, `opt.step()`) is one iteration, and so is the `train_step` a subclass of a
    library trainer (skorch's `NeuralNet`) overrides. A step written by hand counts as an optimizer step:
    `for p in model.parameters(): p.data.add_(-lr, p.grad)`, `p.add_(p.grad, alpha=-lr)` or
    `p -= lr * p.grad` under `torch.no_grad()`. The optimizer cleared and the one stepped are told apart by
    object identity, not by name: `opt.zero_grad()` in `train_one_epoch(model, opt)` and `optimizer.step()`
    in the helper it passes `opt` to are one optimizer; `self.optimizer`, an alias and a
    `scaler.step(optimizer)` are followed to what they hold.

    ## Why is this bad?
    PyTorch accumulates gradients: every `backward()` adds to `.grad`. Without clearing, step *n* applies
    the sum of all gradients since the start, the updates grow and the run diverges or crawls — yet the code
    runs and the loss even goes down for a while. Users asked PyTorch to warn about this
    (pytorch/pytorch#47175); it is the most common of the silent bugs the source texts warn about, code that
    is syntactically fine but trains badly, where "most of the time it trains, only badly"
    (Karpathy 2019: "Everything could be correct syntactically, but the whole thing isn't arranged properly";
    "It will train but silently work a bit worse").

    ## Example
    ```python
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(10):
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    ```

    ## Use instead
    ```python
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in range(10):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    ```
    Not flagged: gradient accumulation that clears every k steps (`if (i + 1) % k == 0: step(); zero_grad()`),
    `optimizer.zero_grad(set_to_none=True)`, `model.zero_grad()`, `for p in model.parameters(): p.grad = None`,
    clearing at the end of the iteration after the step, clearing in a helper called every iteration,
    Accelerate's `with accelerator.accumulate(model):` with `optimizer.zero_grad()` inside, and frameworks
    that clear for you (Lightning's automatic optimization, HF `Trainer`, DeepSpeed's `engine.step()`).

    ## Fix safety
    No automatic fix: where to clear depends on whether you accumulate on purpose. Add
    `optimizer.zero_grad()` at the start of the iteration (or right after `optimizer.step()`).

    ## References
    - [Zeroing out gradients in PyTorch](https://pytorch.org/tutorials/recipes/recipes/zeroing_out_gradients.html)
    - pytorch/pytorch#47175 (warn when zero_grad is missing)
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    """

    code = "TL204"
    name = "missing-zero-grad"
    severity = Severity.ERROR
    summary = "A training loop steps the optimizer on gradients that are never cleared (or cleared before they are used)"
    probe = None

    bad = (
        # never cleared
        """
import torch
optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
for epoch in range(10):
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()  # expect: TL204
""",
        # cleared once per epoch, stepped every batch
        """
import torch
optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
for epoch in range(10):
    optimizer.zero_grad()
    for inputs, labels in trainloader:
        loss = criterion(net(inputs), labels)
        loss.backward()
        optimizer.step()  # expect: TL204
""",
        # zero_grad between backward and step wipes the gradients
        """
import torch
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.zero_grad()  # expect: TL204
    optimizer.step()
""",
        # cleared on one branch only
        """
import torch
for step, (x, y) in enumerate(loader):
    if step == 0:
        optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()  # expect: TL204
""",
        # tensor-parallel style: a single iteration loop, AMP-free, no clearing
        """
import torch
optimizer = torch.optim.AdamW(sharded_model.parameters(), lr=0.25, foreach=True)
for i in range(num_iters):
    inp = torch.rand(20, 10, device="cuda")
    output = sharded_model(inp)
    output.sum().backward()
    optimizer.step()  # expect: TL204
""",
        # a GAN: the generator's optimizer is never cleared
        """
import torch
for real in loader:
    opt_d.zero_grad()
    d_loss = criterion(netD(real), ones) + criterion(netD(netG(z).detach()), zeros)
    d_loss.backward()
    opt_d.step()
    g_loss = criterion(netD(netG(z)), ones)
    g_loss.backward()
    opt_g.step()  # expect: TL204
""",
        # Lightning manual optimization: training_step is one iteration
        """
import torch
import lightning as L
class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.compute_loss(batch)
        self.manual_backward(loss)
        opt.step()  # expect: TL204
L.Trainer(max_epochs=3).fit(Model(), loader)
""",
        # plain SGD written by hand, never cleared (skorch's word-LM example before its fix)
        """
import torch
for epoch in range(10):
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad  # expect: TL204
""",
        # in a helper called per batch
        """
import torch
def train_step(model, batch, optimizer, scaler):
    with torch.autocast("cuda"):
        loss = model(batch).mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # expect: TL204
    scaler.update()
for epoch in range(3):
    for batch in loader:
        train_step(model, batch, optimizer, scaler)
""",
    )
    good = (
        # clearing at the end of the iteration
        """
import torch
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
""",
        # model.zero_grad() and p.grad = None
        """
import torch
for x, y in loader:
    model.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
for x, y in loader:
    for p in model.parameters():
        p.grad = None
    criterion(model(x), y).backward()
    optimizer.step()
""",
        # accumulation: cleared every k steps
        """
import torch
optimizer.zero_grad()
for i, (x, y) in enumerate(loader):
    loss = criterion(model(x), y) / accum_steps
    loss.backward()
    if (i + 1) % accum_steps == 0:
        optimizer.step()
        optimizer.zero_grad()
""",
        # accumulation with the clear at the top of the window
        """
import torch
for i, (x, y) in enumerate(loader):
    if i % accum_steps == 0:
        optimizer.zero_grad()
    criterion(model(x), y).backward()
    if (i + 1) % accum_steps == 0:
        optimizer.step()
""",
        # timm style: the accumulation condition in a variable, the same condition for step and clear
        """
import torch
for batch_idx, (x, y) in enumerate(loader):
    need_update = (batch_idx + 1) % accum_steps == 0
    loss = criterion(model(x), y) / accum_steps
    loss.backward()
    if need_update:
        optimizer.step()
    if need_update:
        optimizer.zero_grad()
for x, y in loader:
    if training:
        criterion(model(x), y).backward()
        optimizer.step()
    if training:
        optimizer.zero_grad()
""",
        # Accelerate
        """
from accelerate import Accelerator
accelerator = Accelerator(gradient_accumulation_steps=8)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
for batch in loader:
    with accelerator.accumulate(model):
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
""",
        # a helper called every iteration clears
        """
import torch
def reset(model, optimizer):
    optimizer.zero_grad()
def step(loss, optimizer):
    loss.backward()
    optimizer.step()
for x, y in loader:
    reset(model, optimizer)
    step(criterion(model(x), y), optimizer)
""",
        # both branches clear
        """
import torch
for x, y in loader:
    if use_amp:
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(criterion(model(x), y)).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
""",
        # plain SGD written by hand that clears each gradient after using it
        """
import torch
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    for p in model.parameters():
        p.data.add_(-lr, p.grad.data)
        p.grad.data.zero_()
""",
        # DeepSpeed's engine clears for you
        """
import deepspeed
model_engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=params, config=cfg)
for batch in loader:
    loss = model_engine(batch)
    model_engine.backward(loss)
    model_engine.step()
""",
        # Lightning automatic optimization and HF Trainer
        """
import lightning as L
from transformers import Trainer
class LitModel(L.LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.criterion(self(x), y)
L.Trainer(max_epochs=3).fit(LitModel())
Trainer(model=model, args=args, train_dataset=ds).train()
""",
        # Lightning manual optimization that clears, with accumulation
        """
import lightning as L
class Model(L.LightningModule):
    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.compute_loss(batch) / 4
        self.manual_backward(loss)
        if (batch_idx + 1) % 4 == 0:
            self.clip_gradients(opt, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
            opt.step()
            opt.zero_grad()
L.Trainer(max_epochs=3).fit(Model(), loader)
""",
        # LBFGS: the closure clears
        """
import torch
optimizer = torch.optim.LBFGS(model.parameters())
for x, y in loader:
    def closure():
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        return loss
    optimizer.step(closure)
""",
        # a GAN with model-level clears (DCGAN)
        """
import torch
for real in loader:
    netD.zero_grad()
    errD = criterion(netD(real), ones)
    errD.backward()
    optimizerD.step()
    netG.zero_grad()
    errG = criterion(netD(netG(noise)), ones)
    errG.backward()
    optimizerG.step()
""",
        # the clear in a method of the class, called every iteration
        """
import torch
from base import BaseTrainer
class Trainer(BaseTrainer):
    def train_epoch(self):
        for x, y in self.loader:
            self.reset_grads()
            loss = self.criterion(self.model(x), y)
            loss.backward()
            self.optimizer.step()
    def reset_grads(self):
        self.optimizer.zero_grad()
for epoch in range(3):
    Trainer().train_epoch()
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        if not any("backward" in f.ctx.source.text for f in program.files):
            return
        reported = Reported(program, self.code)
        for tl in program_timelines(program):
            for finding, e in self._judge(tl, program):
                if reported.first(e.facts, e.node, finding.span.line):
                    yield finding

    def _judge(self, tl: Timeline, program):
        steps = [p for p in tl.of("optimizer_step") if _real_step(program, p)]
        if not steps:
            return
        backwards = tl.of("backward")
        clears = tl.of("zero_grad")
        optimizers = _Optimizers(program, steps)
        for p in steps:
            loop = p.loops[-1]
            mine = [b for b in backwards if in_loop(b, loop) and not exclusive(b, p)]
            if not mine:
                continue
            # 1. zero_grad between backward and step
            wipe = self._wipe(p, mine, clears, tl.of("optimizer_step"), optimizers)
            if wipe is not None:
                yield self._wipe_finding(program, wipe, p, mine), wipe
                continue
            if tl.loop.unit == "call":
                continue  # a step function: its caller may clear the gradients
            here = [z for z in clears if in_loop(z, loop) and not exclusive(z, p)]
            cleared = [z for z in here if optimizers.clears(z, p)]
            if cleared:
                if any(runs_whenever(z, p) or any(g.is_accumulation for g in z.real_guards()) for z in cleared):
                    continue
                if not _only_some_branches(cleared, p):
                    continue
                yield self._finding(program, p, mine, "some"), p
                continue
            if calls_clearing_function(program, tl, loop):
                continue
            outer = [z for z in clears if not in_loop(z, loop) and common_loops(z, p) and optimizers.clears(z, p)]
            other = [z for z in here if is_optimizer(program, z) and same_target(program, z, p) is False]
            if outer:
                yield self._finding(program, p, mine, "outer", outer[0]), p
            elif other:
                yield self._finding(program, p, mine, "other", other[0]), p
            else:
                yield self._finding(program, p, mine, "never"), p

    def _wipe(self, p: TimedEvent, backwards: List[TimedEvent], clears: List[TimedEvent], steps: List[TimedEvent],
              optimizers) -> Optional[TimedEvent]:
        for z in clears:
            if z.loops != p.loops or not same_iteration_before(z, p) or not runs_whenever(z, p):
                continue
            if not optimizers.clears(z, p, strict=True):
                continue
            before = [b for b in backwards if same_iteration_before(b, z) and len(common_loops(b, z)) == len(z.loops)]
            after = [b for b in backwards if same_iteration_before(z, b) and same_iteration_before(b, p)]
            if not before or after:
                continue
            last = before[-1]
            if any(q is not p and same_iteration_before(last, q) and same_iteration_before(q, z) for q in steps):
                continue  # stepped in between: the clear is for the next update
            return z
        return None

    def _finding(self, program, p: TimedEvent, backwards: List[TimedEvent], how: str, outer: Optional[TimedEvent] = None) -> Finding:
        ctx = ctx_of(program, p.facts)
        span = ctx.span(p.node)
        step = short(ctx.code(p.node))
        b = backwards[0]
        bctx = ctx_of(program, b.facts)
        related = [Related(bctx.path, bctx.span(b.node), "gradients accumulate into .grad here")] if bctx else []
        opt = p.optimizer() or ("model" if p.manual else "optimizer")
        if how == "never":
            where_ = f"in {p.loops[0].name.value}" if isinstance(p.loops[0], cst.FunctionDef) and len(p.loops) == 1 \
                else "in the loop"
            message = (f"`{step}` runs every iteration, but the gradients are never cleared {where_}: each `backward()` adds to "
                       "the previous ones, so every update uses the sum of all gradients so far")
            hint = f"Call {opt}.zero_grad() at the start of each iteration (or right after {step})"
        elif how == "outer":
            octx = ctx_of(program, outer.facts)
            message = (f"`{step}` runs every batch, but the gradients are only cleared once per outer loop "
                       f"({where(program, outer, p.facts)}): within it every update uses the sum of the gradients so far")
            if octx:
                related.append(Related(octx.path, octx.span(outer.node), "the only clearing, outside the batch loop"))
            hint = f"Move {opt}.zero_grad() into the batch loop"
        elif how == "other":
            octx = ctx_of(program, outer.facts)
            cleared = short(octx.code(outer.node)) if octx else "zero_grad()"
            message = (f"`{step}` runs every iteration, but the only clearing in the loop, `{cleared}` "
                       f"({where(program, outer, p.facts)}), clears another optimizer: the gradients `{opt}` steps on "
                       "are never cleared, so every update uses the sum of all gradients so far")
            if octx:
                related.append(Related(octx.path, octx.span(outer.node), "clears another optimizer's parameters"))
            hint = f"Call {opt}.zero_grad() in each iteration (the optimizer that is stepped)"
        else:
            message = (f"`{step}` runs every iteration, but the gradients are only cleared on some branches: on the "
                       "others each `backward()` adds to the previous gradients")
            hint = f"Call {opt}.zero_grad() unconditionally in every iteration (or every k steps when accumulating)"
        return self.finding(ctx, span, message, hint=hint, related=related)

    def _wipe_finding(self, program, z: TimedEvent, p: TimedEvent, backwards: List[TimedEvent]) -> Finding:
        ctx = ctx_of(program, z.facts)
        pctx = ctx_of(program, p.facts)
        b = [x for x in backwards if same_iteration_before(x, z)][-1]
        bctx = ctx_of(program, b.facts)
        pspan = pctx.span(p.node)
        message = (f"`{short(ctx.code(z.node))}` runs between `backward()` ({where(program, b, z.facts)}) and "
                   f"`{short(pctx.code(p.node))}` ({where(program, p, z.facts)}): it wipes the gradients the step was about to use")
        related = [Related(bctx.path, bctx.span(b.node), "the backward pass"), Related(pctx.path, pspan, "the optimizer step")]
        return self.finding(ctx, ctx.span(z.node), message, hint="Clear the gradients before the forward pass or after optimizer.step()",
                            related=related)


def _real_step(program, p: TimedEvent) -> bool:
    """An optimizer step we can judge: not ``optimizer.step(closure)`` (LBFGS: the closure clears), not a
    project optimizer wrapper (it may clear in its own step), not ``scaler.step()`` without an optimizer."""
    if p.manual:
        return True  # a manual parameter update (p.data.add_(-lr, p.grad)): plain SGD on .grad
    call = p.call
    if call is None:
        return False
    if call.args and not is_scaler(program, p):
        return False  # optimizer.step(closure) / step(closure=...): the closure clears
    return event_target(program, p) is not None and judged_optimizer(program, p)


class _Optimizers:
    """The optimizers a timeline steps, told apart by object identity (the model's
    :func:`~trainlint.analysis.execution.same_target`)."""

    def __init__(self, program, steps: List[TimedEvent]) -> None:
        self.program, self.steps = program, steps
        self.count = distinct_targets(program, steps)

    def clears(self, z: TimedEvent, p: TimedEvent, strict: bool = False) -> bool:
        """Does clearing ``z`` clear what step ``p`` uses? An optimizer's zero_grad clears its own
        parameters (one the model cannot pair with any step is given the benefit of the doubt unless
        ``strict``); model.zero_grad() / p.grad = None are taken to clear every optimizer's (when
        ``strict``: only with a single optimizer)."""
        program = self.program
        stepped = [same_target(program, z, q) for q in self.steps]
        if is_optimizer(program, z) or any(stepped):
            same = same_target(program, z, p)
            if same is not None:
                return same
            return not strict and not any(stepped)
        return not strict or self.count == 1


def _only_some_branches(cleared: List[TimedEvent], p: TimedEvent) -> bool:
    """Every clear sits in the body of one plain ``if`` (no elif/else) that does not guard the step."""
    theirs = {id(g.node) for g in p.guards}
    tests = [g.test for g in p.guards if g.is_if and g.branch == 0]
    ifs = set()
    for z in cleared:
        own = [g for g in z.real_guards() if id(g.node) not in theirs]
        if not own:
            return False
        g = own[0]
        if not g.is_if or g.branch != 0 or g.node.orelse is not None or g.is_accumulation:
            return False
        if any(t is not None and t.deep_equals(g.test) for t in tests):
            return False  # `if cond: step()` ... `if cond: zero_grad()`: the same condition
        if g.tests_grad_exists:
            return False  # `if p.grad is not None: p.grad.zero_()`: without a gradient there is nothing to clear
        ifs.add(id(g.node))
    return len(ifs) == 1
