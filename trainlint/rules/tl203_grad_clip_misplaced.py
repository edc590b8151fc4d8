from __future__ import annotations

import math
from typing import Iterable, Optional

import libcst as cst

from trainlint.analysis.names import canonical
from trainlint.analysis.execution import (
    ObjectRef, Reported, TimedEvent, Timeline, common_loops, ctx_of, event_target, exclusive, is_scaler,
    program_timelines, runs_whenever, same_iteration_before, same_target, scaler_disabled, updates_parameters_of,
    where,
)
from trainlint.findings import Applicability, Finding, Fix, Related, Severity
from trainlint.rules import Rule
from trainlint.analysis.syntax import bound_arg, short as _short_text
from trainlint.analysis.values import fold


def _short(text: str) -> str:
    return _short_text(text, 48)


class GradClipMisplaced(Rule):
    """
    ## What it does
    Flags gradient clipping (`torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`,
    `accelerator.clip_grad_norm_`, `fabric.clip_gradients`) that cannot do its job because of where it is in
    the training iteration:

    - **before `backward()`**: a `backward()` runs between the clip and the `optimizer.step()` it precedes,
      so the step uses fresh, unclipped gradients (the clip saw zeros or last iteration's gradients);
    - **after `optimizer.step()`**: the update has already been applied with the unclipped gradients, and
      the clipped ones are cleared or overwritten before the next step;
    - **with a `GradScaler`, without `scaler.unscale_(optimizer)` first**: the gradients are still
      multiplied by the loss scale (65536 at the start), so `max_norm` is compared against scaled norms and
      the clip either fires on every step or never.

    Events are ordered within one iteration (statement order, helpers followed, `if`/`else` branches that
    never run together told apart; an accumulation block `if (i + 1) % k == 0:` is one update). A clip is
    paired with the steps of the optimizers that update the parameters it clips (`clip_grad_norm_(D.parameters())`
    with `optimizer_D`, not the generator's), and a `GradScaler` is known by what it is, not by its name
    (`self.amp = GradScaler()`), also when it is passed into a helper of another file. A function
    that backpropagates and steps straight through (an agent's `update()`, a `train_step()`) is one
    iteration per call, and so is a Lightning `training_step` with manual optimization.

    ## Why is this bad?
    Clipping is there to keep one bad batch from blowing up the weights; a misplaced clip silently does
    nothing (or clips almost everything), and nothing in the loss curve says so until a spike wrecks the run.
    Holden points out how much gradient clipping changes training — it can hide a learning rate that is too
    high, and it should be a deliberate, working setting (Holden 2017, "You Used an Incorrect Learning Rate");
    Karpathy lists mixing up what is clipped among the silent bugs that let a network train, only worse
    (Karpathy 2019: "you clipped your loss instead of your gradients").

    ## Example
    ```python
    import torch

    scaler = torch.cuda.amp.GradScaler()
    for x, y in loader:
        optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()
    ```

    ## Use instead
    ```python
    import torch

    scaler = torch.cuda.amp.GradScaler()
    for x, y in loader:
        optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()
    ```
    The order is backward → (unscale_) → clip → step. Not flagged: that order (also inside an
    accumulation block, or at the top of the iteration for the gradients accumulated so far),
    `accelerator.clip_grad_norm_` (Accelerate unscales for you), a `GradScaler(enabled=False)` (its scale is
    1, `unscale_` would be a no-op; a scaler switched by a flag, `GradScaler(enabled=args.amp)`, is flagged:
    the clip is wrong whenever AMP is on), a clip that only measures the norm (`max_norm=float("inf")`),
    Lightning's `gradient_clip_val` and HF Trainer's `max_grad_norm` (the framework clips in the right
    place).

    ## Fix safety
    An unsafe fix, applied only with `--unsafe-fixes`, when the change is mechanical: a one-line clip
    statement directly before `loss.backward()` moves to just after it; one directly after
    `optimizer.step()` moves to just before it (not with a GradScaler's `scaler.step`, where the clip also
    needs `scaler.unscale_`). It is unsafe because the clipped gradients change every update of the run
    (that is the point). Elsewhere (another block, statements in between) move the clip between
    `backward()` (or `scaler.unscale_(optimizer)`) and `optimizer.step()` yourself.

    ## References
    - [torch.nn.utils.clip_grad_norm_](https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html)
    - [AMP examples: gradient clipping with unscale_](https://pytorch.org/docs/stable/notes/amp_examples.html#gradient-clipping)
    - Holden, ["My Neural Network isn't working! What should I do?"](https://theorangeduck.com/page/neural-network-not-working) (2017)
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    """

    code = "TL203"
    name = "grad-clip-misplaced"
    severity = Severity.ERROR
    summary = "Gradient clipping before backward(), after optimizer.step(), or on scaled AMP gradients has no useful effect"
    probe = "gradient-health"

    bad = (
        # clip before backward
        """
import torch
for x, y in loader:
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # expect: TL203
    loss.backward()
    optimizer.step()
""",
        # clip after the step
        """
from torch.nn.utils import clip_grad_value_
for epoch in range(10):
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        clip_grad_value_(model.parameters(), 0.5)  # expect: TL203
""",
        # AMP without unscale_
        """
import torch
from torch.cuda.amp import GradScaler, autocast
scaler = GradScaler()
for images, targets in train_loader:
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        loss = criterion(model(images), targets)
    scaler.scale(loss).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)  # expect: TL203
    scaler.step(optimizer)
    scaler.update()
""",
        # AMP with accumulation, scaler enabled by a flag
        """
import torch
from torch import nn
scaler = torch.cuda.amp.GradScaler(enabled=args.amp)
for step, (x, y) in enumerate(loader):
    with torch.autocast("cuda", enabled=args.amp):
        loss = criterion(model(x), y) / args.accum
    scaler.scale(loss).backward()
    if (step + 1) % args.accum == 0:
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)  # expect: TL203
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
""",
        # the clip in a helper of the step
        """
import torch
def clip(model):
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # expect: TL203
def train_step(model, batch, optimizer):
    optimizer.zero_grad()
    loss = model(batch).mean()
    loss.backward()
    optimizer.step()
    clip(model)
for batch in loader:
    train_step(model, batch, optimizer)
""",
        # an agent's update method: each call is one iteration
        """
import torch
class Agent:
    def update(self, states, q_target):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.q_net(states), q_target)
        loss.backward()
        self.optimizer.step()
        torch.nn.utils.clip_grad_norm_(self.q_net.parameters(), 10.0)  # expect: TL203
agent = Agent()
for t in range(10000):
    agent.update(*replay.sample(64))
""",
        # a GAN: G clipped before G's backward
        """
import torch
for real in loader:
    opt_d.zero_grad()
    d_loss(real).backward()
    opt_d.step()
    opt_g.zero_grad()
    torch.nn.utils.clip_grad_norm_(netG.parameters(), 10.0)  # expect: TL203
    g_loss().backward()
    opt_g.step()
""",
    )
    good = (
        # backward -> clip -> step
        """
import torch
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
""",
        # backward -> unscale_ -> clip -> step
        """
import torch
scaler = torch.cuda.amp.GradScaler()
for x, y in loader:
    optimizer.zero_grad()
    with torch.autocast("cuda"):
        loss = criterion(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
""",
        # nanoGPT style: micro-steps, then unscale_ and clip behind a flag
        """
import torch
scaler = torch.cuda.amp.GradScaler(enabled=(dtype == "float16"))
while True:
    for micro_step in range(gradient_accumulation_steps):
        with ctx:
            logits, loss = model(X, Y)
        scaler.scale(loss).backward()
    if grad_clip != 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
""",
        # a disabled scaler has scale 1: unscale_ is a no-op
        """
import torch
scaler = torch.cuda.amp.GradScaler(enabled=False)
for x, y in loader:
    optimizer.zero_grad()
    scaler.scale(criterion(model(x), y)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
""",
        # Accelerate unscales for you
        """
from accelerate import Accelerator
accelerator = Accelerator(mixed_precision="fp16", gradient_accumulation_steps=4)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
for batch in loader:
    with accelerator.accumulate(model):
        loss = model(**batch).loss
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
""",
        # accumulation: update at the top of the iteration, for the gradients accumulated so far
        """
import torch
for i, (x, y) in enumerate(loader):
    if i > 0 and i % accum == 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    loss = criterion(model(x), y) / accum
    loss.backward()
""",
        # AMP and fp32 paths in different branches
        """
import torch
for x, y in loader:
    optimizer.zero_grad()
    if use_amp:
        with torch.autocast("cuda"):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
""",
        # Lightning and HF Trainer clip in the right place
        """
import lightning as L
from transformers import Trainer, TrainingArguments
trainer = L.Trainer(max_epochs=10, gradient_clip_val=1.0, precision="16-mixed")
trainer.fit(model, datamodule=dm)
hf = Trainer(model=model, args=TrainingArguments(output_dir="out", max_grad_norm=1.0, fp16=True))
hf.train()
""",
        # apex: scale_loss unscales on exit
        """
import torch
from apex import amp
for x, y in loader:
    optimizer.zero_grad()
    with amp.scale_loss(criterion(model(x), y), optimizer) as scaled_loss:
        scaled_loss.backward()
    torch.nn.utils.clip_grad_norm_(amp.master_params(optimizer), 1.0)
    optimizer.step()
""",
        # measuring the norm after the step (max_norm=inf clips nothing)
        """
import torch
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
""",
        # a clip of the gradients accumulated before the step at the end of the epoch's batch loop
        """
import torch
for epoch in range(10):
    for x, y in loader:
        criterion(model(x), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        if not any("clip_grad" in f.ctx.source.text or "clip_gradients" in f.ctx.source.text for f in program.files):
            return
        reported = Reported(program, self.code)
        for tl in program_timelines(program):
            clips = tl.of("clip")
            if not clips:
                continue
            for c in clips:
                finding = self._judge(c, tl, program)
                if finding is not None and reported.first(c.facts, c.node, finding.span.line):
                    yield finding

    def _judge(self, c: TimedEvent, tl: Timeline, program) -> Optional[Finding]:
        # the steps of the optimizers that update the clipped parameters (all, when the model cannot tell)
        params = _clipped(c)
        every_step = tl.of("optimizer_step")
        steps = [p for p in every_step if params is None or updates_parameters_of(program, p, params) is not False]
        backwards = tl.of("backward")
        if not steps or not backwards or _measures_only(program, c):
            return None

        def same(a: TimedEvent, b: TimedEvent) -> bool:  # a before b, in one pass of c's loops
            return same_iteration_before(a, b) and len(common_loops(a, b)) >= min(len(c.loops), len(a.loops), len(b.loops))

        nxt = next((p for p in steps if same(c, p) and len(common_loops(c, p)) == len(c.loops)), None)
        prev_steps = [p for p in steps if same(p, c)]
        prev = prev_steps[-1] if prev_steps else None
        ctx = ctx_of(program, c.facts)
        if ctx is None:
            return None
        if nxt is not None:
            # before backward: a backward between the clip and its step, none since the last step
            between = [b for b in backwards if same(c, b) and same(b, nxt)]
            last = ([p for p in every_step if same(p, c)] or [None])[-1]  # the last step of any optimizer
            since = [b for b in backwards if same(b, c) and (last is None or last.order < b.order)]
            if between and not since:
                b = between[0]
                return self._report(ctx, c, program, b,
                                    f"`{_short(ctx.code(c.node))}` runs before `{_short(_code(program, b))}` ("
                                    f"{_line(program, b, c.facts)}): the step at {_line(program, nxt, c.facts)} uses the fresh, unclipped gradients",
                                    "Clip after backward() and before optimizer.step()", nxt,
                                    fix=_move_fix(ctx, c, b, after=True) if len(between) == 1 else None)
            # with a GradScaler: unscale_ first
            if _is_torch_clip(c) and _scaler_step(program, nxt) and since:
                unscaled = [u for u in tl.of("unscale") if same(u, c) and not exclusive(u, c)
                            and same_target(program, u, nxt) is not False]
                if not unscaled and not scaler_disabled(program, nxt):
                    unscale = f"{nxt.receiver}.unscale_({_optimizer_text(program, nxt)})"
                    return self._report(ctx, c, program, since[-1],
                                        f"`{_short(ctx.code(c.node))}` clips gradients still multiplied by the GradScaler's "
                                        f"loss scale (`{_short(_code(program, nxt))}`, {_line(program, nxt, c.facts)}): call "
                                        f"`{unscale}` first, or the max norm is compared against scaled norms",
                                        f"Insert `{unscale}` before the clip", nxt)
            return None
        # after the step: no step follows in this pass, the last one runs whenever the clip does
        if prev is None or not runs_whenever(prev, c):
            return None
        if any(same(prev, b) and same(b, c) for b in backwards):
            return None  # a new backward between: the clip is for the next step
        if not any(same(b, prev) for b in backwards):
            return None
        return self._report(ctx, c, program, prev,
                            f"`{_short(ctx.code(c.node))}` runs after `{_short(_code(program, prev))}` ("
                            f"{_line(program, prev, c.facts)}): the update already used the unclipped gradients",
                            "Clip after backward() and before optimizer.step()", None,
                            fix=None if _scaler_step(program, prev) else _move_fix(ctx, c, prev, after=False))

    def _report(self, ctx, c: TimedEvent, program, other: TimedEvent, message: str, hint: str, step: Optional[TimedEvent],
                fix: Optional[Fix] = None) -> Finding:
        related = []
        octx = ctx_of(program, other.facts)
        if octx is not None:
            what = {"backward": "the backward pass", "optimizer_step": "the optimizer step"}.get(other.kind, other.kind)
            related.append(Related(octx.path, octx.span(other.node), what))
        if step is not None and step is not other:
            sctx = ctx_of(program, step.facts)
            if sctx is not None:
                related.append(Related(sctx.path, sctx.span(step.node), "the optimizer step"))
        return self.finding(ctx, ctx.span(c.node), message, hint=hint, related=related, fix=fix)


def _move_fix(ctx, c: TimedEvent, other: TimedEvent, after: bool) -> Optional[Fix]:
    """The clip directly before backward() (move it just after) or directly after the step (move it just
    before), both one-line statements of one block."""
    first, second = (c, other) if after else (other, c)
    if c.facts is not other.facts or c.stmt.block != other.stmt.block or first.stmt.index + 1 != second.stmt.index:
        return None
    if c.call is None or other.call is None or c.via or other.via:
        return None
    from trainlint.edits import move_statement

    edits = move_statement(ctx, c.call, other.call, after=after)
    if edits is None:
        return None
    where = "after" if after else "before"
    return Fix(message=f"Move the clip {where} `{_short(ctx.code(other.call))}`", edits=edits, applicability=Applicability.UNSAFE)


def _measures_only(program, c: TimedEvent) -> bool:
    """``clip_grad_norm_(params, float("inf"))`` (``math.inf``, ``np.inf``, a constant or default holding
    one): computes the norm for logging, clips nothing."""
    call = c.call
    if call is None:
        return False
    limit = bound_arg(call, 1, "max_norm")
    if limit is None:
        limit = bound_arg(call, 1, "clip_value")
    if limit is None:
        return False
    v = fold(limit, c.facts, c.scope, c.stmt, program)
    return v is not None and isinstance(v.value, float) and math.isinf(v.value) and v.value > 0


def _is_torch_clip(c: TimedEvent) -> bool:
    call = c.call
    if call is None:
        return False
    q = c.facts.qualify(call.func) or ""
    q = canonical(q) if q else ""
    if q.startswith("torch.nn.utils") or q.startswith("torch.nn.utils.clip_grad"):
        return True
    return q == "" and isinstance(call.func, cst.Name)  # a bare clip_grad_norm_ of unknown origin


def _scaler_step(program, p: TimedEvent) -> bool:
    """``scaler.step(optimizer)``: a GradScaler (asked of the model) stepping an optimizer."""
    return p.call is not None and is_scaler(program, p) and event_target(program, p) is not None


def _optimizer_text(program, p: TimedEvent) -> str:
    ref = event_target(program, p)
    ctx = ctx_of(program, p.facts)
    return ctx.code(ref.expr) if ref is not None and ctx is not None else "optimizer"


def _clipped(c: TimedEvent) -> Optional[ObjectRef]:
    """The parameters a clip clips (its first argument), where it is evaluated."""
    call = c.call
    if call is None:
        return None
    arg = bound_arg(call, 0, "parameters")
    return ObjectRef(arg, c.facts, c.scope, c.stmt) if arg is not None else None


def _code(program, e: TimedEvent) -> str:
    ctx = ctx_of(program, e.facts)
    return ctx.code(e.node) if ctx is not None else e.kind


def _line(program, e: TimedEvent, home=None) -> str:
    return where(program, e, home if home is not None else e.facts)
