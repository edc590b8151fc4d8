from __future__ import annotations

import re
from typing import Iterable, Set

import libcst as cst

from trainlint.analysis.objects import World
from trainlint.analysis.execution import as_cap, backward_roots, direct_caps, flow_back, is_lossy
from trainlint.findings import Applicability, Edit, Finding, Fix, Related, Severity
from trainlint.rules import Rule
from trainlint.analysis.syntax import short


#: ``clip`` as a name of its own (``torch.clip(``, ``x.clip_(``, ``from torch import clip``): the word
#: ``clip``, or ``clip(`` / ``clip_(`` ending a name. (Written to begin with the literal ``clip``:
#: ``\bclip\b|...`` made Python's re try every position of the file, 50 times slower.)
_CLIP = re.compile(r"clip(?:_?\s*\(|(?<=\bclip)\b)")


class LossClippedNotGradients(Rule):
    """
    ## What it does
    Flags a loss that is capped from above — `torch.clamp(loss, max=c)`, `loss.clamp(max=c)`,
    `loss.clamp_(0, c)`, `torch.min(loss, c)`, `min(loss, c)` — when that capped value is what gets
    backpropagated (`loss.backward()`, `scaler.scale(loss).backward()`, `accelerator.backward(loss)`,
    or the loss a Lightning `training_step` returns). When the capped value is itself what is
    backpropagated (`loss = torch.clamp(crit(out, y), max=1.0); loss.backward()`), it is a capped loss
    whatever the capped expression is: the criterion need not be resolved (a project loss, a criterion
    from a config, a model that returns its own loss).

    ## Why is this bad?
    Where the loss is over the cap, the clamp's derivative is zero: those samples — usually the ones the
    model gets most wrong — contribute no gradient at all, and the model silently stops learning from them.
    A cap on a mean-reduced loss (what `criterion(out, y)` returns by default) is worse: whenever the
    batch's mean loss is over the cap, the whole batch gets zero gradient.
    The training still runs and the loss curve looks calm, so nothing tells you. Karpathy lists exactly this
    among the silent failures of neural-net training: "you tried to clip your gradients but instead clipped
    the loss, causing the outlier examples to be ignored during training" (Karpathy 2019). Holden adds that clipping, rounding and min/max give zero gradients
    wherever they saturate (Holden 2017, "bad gradients").

    ## Example
    ```python
    import torch
    import torch.nn as nn

    model = nn.Linear(10, 1)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss = torch.clamp(loss, max=10.0)
        loss.backward()
        optimizer.step()
    ```

    ## Use instead
    Clip the gradients, after `backward()` and before `step()`:
    ```python
    import torch
    import torch.nn as nn

    model = nn.Linear(10, 1)
    criterion = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
    ```
    To damp outliers on purpose, use a robust loss (`nn.SmoothL1Loss`, `nn.HuberLoss`) that keeps a
    non-zero gradient everywhere.

    Clamping predictions, targets or logits (`model(x).clamp(0, 1)`), a lower bound only
    (`torch.clamp(margin + d_pos - d_neg, min=0)`, a hinge), and clamping a copy that is only logged
    (`loss.item()`, `loss.detach()`) are not flagged.

    ## Fix safety
    An unsafe fix is offered: it removes the cap (`torch.clamp(loss, max=10.0)` becomes `loss`). It changes
    what the model optimizes, so it is never applied without `--unsafe-fixes`; add gradient clipping where
    the loss was clipped if you need the stability.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - Holden, ["My Neural Network isn't working! What should I do?"](https://theorangeduck.com/page/neural-network-not-working) (2017)
    - [torch.nn.utils.clip_grad_norm_](https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html)
    """

    code = "TL202"
    name = "loss-clipped-not-gradients"
    severity = Severity.ERROR
    summary = "The loss is clamped before backward(): whatever is over the cap (the whole batch, for a mean loss) gets zero gradient"
    probe = "loss-clamp-zero-grad"

    bad = (
        # in-place clamp between the loss and backward
        """
import torch.nn.functional as F
for x, y in loader:
    loss = F.mse_loss(model(x), y)
    loss.clamp_(max=5)  # expect: TL202
    loss.backward()
""",
        # method form, chained straight into backward
        """
import torch
criterion = torch.nn.L1Loss(reduction="none")
for x, y in loader:
    criterion(model(x), y).clamp(0, 4).mean().backward()  # expect: TL202
""",
        # builtin min() as a cap, with AMP
        """
import torch
from torch import nn
scaler = torch.cuda.amp.GradScaler()
loss_fn = nn.SmoothL1Loss()
for x, y in loader:
    with torch.autocast("cuda"):
        loss = loss_fn(model(x), y)
    capped = min(loss, torch.tensor(3.0))  # expect: TL202
    scaler.scale(capped).backward()
""",
        # capped in a helper that returns the loss
        """
import torch
def compute_loss(out, y):
    loss = ((out - y) ** 2).mean()
    return torch.clamp(loss, max=1e3)  # expect: TL202
for x, y in loader:
    loss = compute_loss(model(x), y)
    loss.backward()
""",
        # Lightning: the returned loss is backpropagated by the trainer
        """
import torch
import lightning as L
class Regressor(L.LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.criterion(self(x), y)
        return {"loss": loss.clamp(max=10.0)}  # expect: TL202
""",
        # accelerate
        """
import torch
for batch in loader:
    outputs = model(**batch)
    loss = torch.clamp(outputs.loss, 0.0, 20.0)  # expect: TL202
    accelerator.backward(loss)
""",
        # part of a sum, per-sample losses capped to ignore outliers
        """
import torch
import torch.nn as nn
crit = nn.MSELoss(reduction="none")
for x, y in loader:
    per_sample = crit(model(x), y)
    per_sample = per_sample.clamp(max=per_sample.mean() * 3)  # expect: TL202
    total = per_sample.mean() + 0.1 * reg
    total.backward()
""",
        # a custom loss module whose forward caps what it returns
        """
import torch
from torch import nn
class PhysicsLoss(nn.Module):
    def __init__(self, max_loss_value=50.0):
        super().__init__()
        self.max_loss_value = max_loss_value
    def forward(self, pred, true):
        loss = ((pred - true) ** 2).mean()
        loss = torch.clamp(loss, max=self.max_loss_value)  # expect: TL202
        return loss
""",
        # a loss function of a library file, used elsewhere
        """
import torch
def fourier_latent_loss(pred, target):
    loss = torch.mean((torch.fft.fft2(target).abs() - torch.fft.fft2(pred).abs()) ** 2)
    loss = torch.clamp(loss, max=10.0)  # expect: TL202
    return loss
""",
        # the criterion cannot be resolved (a config object): the backpropagated value itself is capped
        """
import torch
crit = build_criterion(cfg)
for x, y in loader:
    loss = torch.clamp(crit(model(x), y), max=1.0)  # expect: TL202
    loss.backward()
""",
        # a model that returns its own loss, capped before backward
        """
for idx, targets in loader:
    logits, loss = model(idx, targets)
    loss = loss.clamp(0, 8.0)  # expect: TL202
    loss.backward()
""",
        # the criterion is known only through the object model (getattr(nn, name)()), capped term of a sum
        """
import torch
import torch.nn as nn
fn = getattr(nn, "SmoothL1Loss")()
for x, y in loader:
    v = fn(model(x), y)
    total = torch.clamp(v, max=2.0) + 0.01 * reg  # expect: TL202
    total.backward()
""",
    )
    good = (
        # a hinge: clamped from below only, the margin term is the loss (not capped from above)
        """
import torch
for a, p, n in loader:
    loss = torch.clamp(margin + dist(a, p) - dist(a, n), min=0).mean()
    loss.backward()
""",
        # the capped value is one factor of the objective (PPO's ratio), not what is backpropagated
        """
import torch
for batch in loader:
    ratio = torch.exp(new_logp - old_logp)
    loss = -(torch.clamp(ratio, 0.8, 1.2) * adv).mean()
    loss.backward()
""",
        # the clamped value is a probability before the log, not the loss
        """
import torch
def marginal_nll(score, target):
    predict = torch.softmax(score, dim=-1)
    loss = (predict * target).sum(dim=-1)
    loss = torch.clamp(loss, min=1e-9, max=1)
    loss = -torch.log(loss)
    return loss.mean()
""",
        # a loss function that clamps its inputs
        """
import torch
import torch.nn.functional as F
def bce_loss(p, y, eps=1e-7):
    p = p.clamp(eps, 1 - eps)
    return F.binary_cross_entropy(p, y)
""",
        # clamping predictions, targets and logits is fine
        """
import torch
import torch.nn.functional as F
for x, y in loader:
    pred = model(x).clamp(0, 1)
    y = torch.clamp(y, -3, 3)
    loss = F.mse_loss(pred, y)
    loss.backward()
""",
        """
import torch.nn as nn
crit = nn.CrossEntropyLoss()
for x, y in loader:
    logits = model(x).clamp(-50, 50)
    loss = crit(logits, y)
    loss.backward()
""",
        # gradient clipping is the right thing
        """
import torch
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    torch.nn.utils.clip_grad_value_(model.parameters(), 0.5)
    optimizer.step()
""",
        # a hinge: lower bound only
        """
import torch
for a, p, n in loader:
    d_pos = (model(a) - model(p)).pow(2).sum(1)
    d_neg = (model(a) - model(n)).pow(2).sum(1)
    loss = torch.clamp(d_pos - d_neg + 0.2, min=0.0).mean()
    loss.backward()
""",
        # clamping a logged copy
        """
import torch
for x, y in loader:
    loss = criterion(model(x), y)
    shown = min(loss.item(), 10.0)
    logged = loss.detach().clamp(max=10.0)
    writer.add_scalar("loss", shown)
    loss.backward()
""",
        # clamped after backward: for display only
        """
import torch
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    loss = loss.clamp(max=10)
    print(loss)
""",
        # a clamped loss that is never backpropagated (evaluation)
        """
import torch
with torch.no_grad():
    for x, y in val_loader:
        val_loss = torch.clamp(criterion(model(x), y), max=100.0)
""",
        # .data is outside autograd: the gradient is unchanged
        """
for x, y in loader:
    loss = criterion(model(x), y)
    loss.data.clamp_(max=10)
    loss.backward()
""",
        # PPO: the min of two objectives is the loss; clamping the ratio is not clamping the loss
        """
import torch
for batch in loader:
    ratio = torch.exp(logp - old_logp)
    surr_loss1 = -adv * ratio
    surr_loss2 = -adv * torch.clamp(ratio, 0.8, 1.2)
    loss = torch.max(surr_loss1, surr_loss2).mean() + torch.min(pg_loss_a, pg_loss_b).mean()
    loss.backward()
""",
        # a clamped loss weight is not the loss
        """
import torch
for x, y in loader:
    loss_weight = torch.clamp(step / 1000, max=1.0)
    loss = loss_weight * criterion(model(x), y)
    loss.backward()
""",
    )

    @classmethod
    def may_fire(cls, text: str, path: str) -> bool:
        # a cap (``as_cap``: clamp / clip / min(...) / minimum / fmin; not the `clip` of gradient_clip_val
        # or clip_grad_norm_), and something backpropagated for it to cap (``backward_roots``: a
        # backward() / manual_backward() / torch.autograd call, a loss function or loss module, a
        # training_step / compute_loss)
        if not (any(word in text for word in ("clamp", "min(", "minimum", "fmin")) or _CLIP.search(text)):
            return False
        lower = text.lower()
        return any(word in lower for word in ("backward", "autograd", "loss", "criterion", "nll", "training_step"))

    def check(self, ctx) -> Iterable[Finding]:
        if not self.may_fire(ctx.source.text, ctx.path):
            return  # no cap, or nothing backpropagated: nothing to find, and the facts pass is skipped
        facts = ctx.facts
        world = World.of_file(ctx)  # what a criterion holds: a parameter, a dict entry, getattr(nn, name)()
        reported: Set[int] = set()
        for root in backward_roots(facts):
            # the backpropagated value itself is capped: a capped loss, whatever the criterion is
            for cap, reduced in direct_caps(root.expr, facts, root.scope, root.stmt):
                if id(cap.call) in reported:
                    continue
                reported.add(id(cap.call))
                yield self._finding(ctx, cap.call, cap.operand, cap.bound, root, "sample" if reduced else "batch")
            for expr, scope, stmt in flow_back(root.expr, facts, root.scope, root.stmt):
                if not isinstance(expr, cst.Call) or id(expr) in reported:
                    continue
                cap = as_cap(expr, facts)
                if cap is None:
                    continue
                operand, bound = cap.operand, cap.bound
                operand_lossy = is_lossy(operand, facts, scope, stmt, world=world)
                if cap.is_min:
                    # min(a, b): a cap only when exactly one side is the loss; the min of two
                    # objectives (PPO's clipped surrogate) is a loss of its own.
                    bound_lossy = bound is not None and is_lossy(bound, facts, scope, stmt, world=world)
                    if operand_lossy == bound_lossy:
                        continue
                    if bound_lossy:
                        operand, bound = bound, operand  # min(10.0, loss)
                elif not operand_lossy:
                    continue
                reported.add(id(expr))
                yield self._finding(ctx, expr, operand, bound, root, "term")

    def _finding(self, ctx, call: cst.Call, operand, bound, root, what: str) -> Finding:
        cap_text = ctx.code(bound).strip() if bound is not None else "a bound"
        operand_text = ctx.code(operand).strip()
        span = ctx.span(call)
        back = ctx.span(root.call)
        if what == "sample":
            effect = ("every element of the loss that is over the cap gets zero gradient: each such sample when the "
                      "loss is per sample (reduction='none'), the whole batch when it is already a batch mean")
        elif what == "batch":
            effect = ("whenever the batch loss is over the cap the whole batch gets zero gradient (a mean-reduced "
                      "loss is capped as a whole, not per sample)")
        else:
            effect = "whenever it is over the cap it contributes zero gradient (for a mean-reduced loss: for the whole batch)"
        message = f"The loss `{short(operand_text)}` is capped at {short(cap_text)} before it is backpropagated: {effect}"
        fix = Fix(
            message=f"Remove the cap: use `{short(operand_text)}`",
            edits=(Edit(span, operand_text),),
            applicability=Applicability.UNSAFE,
        )
        if isinstance(call.func, cst.Attribute) and call.func.attr.value.endswith("_"):
            fix = None  # an in-place clamp statement: removing it needs a statement deletion, left to the user
        return self.finding(
            ctx,
            span,
            message,
            hint="Clip the gradients instead: torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) "
            "after backward() and before optimizer.step(); for outliers use nn.HuberLoss / SmoothL1Loss",
            fix=fix,
            related=[Related(ctx.path, back, f"the capped loss is backpropagated here ({root.how})")],
        )
