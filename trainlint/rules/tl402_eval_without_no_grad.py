from __future__ import annotations

import re
from typing import Iterable

from trainlint.analysis.evaluation import EVAL_FUNCTION_NAME, eval_loops, loop_head
from trainlint.analysis.execution import autograd_call_site, grad_free_callers
from trainlint.analysis.names import dotted
from trainlint.findings import Finding, Related, Severity, Span
from trainlint.rules import Rule


#: Code that sets ``requires_grad`` itself: gradients wanted on purpose (saliency, ``x.requires_grad_()``,
#: ``requires_grad=True``) or a frozen model (``p.requires_grad = False``, ``requires_grad_(False)``). Not
#: ``Variable(y, requires_grad=False)``: the default of a tensor made from data, it switches nothing.
_GRADS_ON_PURPOSE = re.compile(r"requires_grad_\(|\.requires_grad\s*=(?!=)|requires_grad\s*=\s*True")


class EvalWithoutNoGrad(Rule):
    """
    ## What it does
    Flags an evaluation loop — a loop over `val_loader` / `test_loader`, or inside `evaluate()` /
    `validate()` / `test()`, that calls the model and never backpropagates — that runs with autograd on:
    not under `with torch.no_grad()`, `with torch.inference_mode()`, `with torch.set_grad_enabled(False)`,
    not in a function decorated with `@torch.no_grad()` / `@torch.inference_mode()`, and not called only
    from those: one call site with autograd on (`test.test(model=model)` in `train.py`, while `test.py`'s
    own `__main__` wraps its call) is enough. The model may be reached through helpers
    (`self.validation_step(x)` -> `self.infer(x)` -> `self.module_(x)`, a no_grad inside one of them
    covers the loop) and spelled `self.model.forward(x)`.

    Evaluations also come as: the step function of ignite's `Engine(step)` (the engine calls it once per
    batch), a module's own `predict()` / `generate_text()` method running `self.forward(...)` over batches or
    steps, and in a program that never trains, a `while` loop or a loop of another file that the entry
    script calls (`translator.translate(...)`); a model is also recognised by its uses (the value that gets
    `load_state_dict(...)` or `eval()`, whatever it is called).

    A library module that nothing of the run executes or imports (a `Trainer` class of a package, linted
    without the scripts that drive it) is judged too: its evaluation methods are checked like any helper
    (their callers inside the class count), and one that nobody calls is flagged only when it switches
    its model to `eval()` itself (it owns the evaluation, autograd included). Whole-program rules (seeds,
    loaders) leave such a module to the scripts that drive it.

    ## Why is this bad?
    With autograd on, every forward pass records the graph and keeps every intermediate activation alive
    until the outputs are freed: evaluation takes more memory (often an out-of-memory error at a batch size
    that trains fine) and more time, and any metric accumulated as a tensor (`total_loss += loss`) keeps
    the graphs of all batches alive. Karpathy's recipe wants evaluation over the whole test set, every
    time (Karpathy 2019, "add significant digits to your eval": "evaluate on the entire (large) test set") — which is affordable only without the graph.

    ## Example
    ```python
    import torch
    import torch.nn.functional as F

    def evaluate(model, loader):
        model.eval()
        total = 0.0
        for x, y in loader:
            total += F.cross_entropy(model(x), y).item()
        return total / len(loader)

    if __name__ == "__main__":
        print(evaluate(torch.nn.Linear(10, 2), val_loader))
    ```

    ## Use instead
    ```python
    import torch
    import torch.nn.functional as F

    @torch.no_grad()
    def evaluate(model, loader):
        model.eval()
        total = 0.0
        for x, y in loader:
            total += F.cross_entropy(model(x), y).item()
        return total / len(loader)

    if __name__ == "__main__":
        print(evaluate(torch.nn.Linear(10, 2), val_loader))
    ```
    Not flagged: `torch.no_grad()`, `torch.inference_mode()`, `torch.set_grad_enabled(False)` (also a
    phase flag like `set_grad_enabled(phase == "train")`) around the loop or around the forward call, the
    decorators, a helper called under one of them, loops that need gradients (saliency, adversarial
    evaluation with `torch.autograd.grad` or `backward()`), frozen models (`requires_grad_(False)`), and
    Lightning's `validation_step` / Hugging Face's `Trainer.evaluate` (the frameworks disable autograd).

    ## Fix safety
    No automatic fix: wrap the loop in `with torch.no_grad():` or decorate the function.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - [torch.no_grad](https://pytorch.org/docs/stable/generated/torch.no_grad.html),
      [torch.inference_mode](https://pytorch.org/docs/stable/generated/torch.inference_mode.html)
    """

    code = "TL402"
    name = "eval-without-no-grad"
    severity = Severity.INFO
    summary = "An evaluation loop runs the model with autograd on (no torch.no_grad() / inference_mode())"
    probe = None
    judges_libraries = True

    bad = (
        # the model reached through per-batch helper methods of a trainer class
        """
import torch

class NeuralNet:
    def __init__(self, module):
        self.module_ = module
    def infer(self, x):
        return self.module_(x)
    def validation_step(self, x, y):
        self.module_.eval()
        return torch.nn.functional.cross_entropy(self.infer(x), y).item()
    def run_validation(self, valid_loader):
        for x, y in valid_loader:  # expect: TL402
            self.validation_step(x, y)

if __name__ == "__main__":
    NeuralNet(torch.nn.Linear(4, 2)).run_validation(valid_loader)
""",
        # validation inline in the epoch loop
        """
import torch
import torch.nn as nn
model = nn.Linear(10, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(10):
    model.train()
    for x, y in train_loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    for x, y in val_loader:  # expect: TL402
        val_loss = nn.functional.cross_entropy(model(x), y).item()
""",
        # a test() helper of a script, HF-style batches
        """
import torch

def test(model, dataloader, device):
    model.eval()
    correct = 0
    for batch in dataloader:  # expect: TL402
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(**batch).logits
        correct += (logits.argmax(-1) == batch["labels"]).sum().item()
    return correct

model = torch.nn.Linear(4, 2)
if __name__ == "__main__":
    test(model, test_loader, "cuda")
""",
        # a trainer class's validate method
        """
import torch

class Trainer:
    def __init__(self, model, val_loader):
        self.model = model
        self.val_loader = val_loader
    def validate(self):
        self.model.eval()
        losses = []
        for x, y in self.val_loader:  # expect: TL402
            losses.append(torch.nn.functional.mse_loss(self.model(x), y).item())
        return sum(losses) / len(losses)

if __name__ == "__main__":
    Trainer(torch.nn.Linear(3, 1), val_loader).validate()
""",
    )
    good = (
        # the decorator
        """
import torch
@torch.inference_mode()
def evaluate(model, loader):
    model.eval()
    return [model(x) for x, _ in loader] and sum(model(x).sum() for x, _ in loader)

def validate(model, loader):
    model.eval()
    out = []
    for x, y in loader:
        out.append(model(x).argmax(1))
    return out

model = torch.nn.Linear(2, 2)
evaluate(model, val_loader)
with torch.no_grad():
    validate(model, val_loader)
""",
        # set_grad_enabled(False), and no_grad around the forward only
        """
import torch
model = torch.nn.Linear(2, 2)
model.eval()
with torch.set_grad_enabled(False):
    for x, y in val_loader:
        preds = model(x)
for x, y in test_loader:
    with torch.no_grad():
        out = model(x)
    print(out.argmax(1))
""",
        # gradients needed on purpose: saliency maps on the test set
        """
import torch
model = torch.nn.Linear(2, 2)
model.eval()
for x, y in test_loader:
    x.requires_grad_(True)
    score = model(x)[0, y]
    grad, = torch.autograd.grad(score, x)
""",
        # the training loop is not an evaluation
        """
import torch
model = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in train_loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
""",
        # Lightning: validation_step runs without autograd
        """
import torch
import pytorch_lightning as pl
class Lit(pl.LightningModule):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.model(x), y))
    def on_validation_epoch_end(self):
        for name, loader in self.trainer.val_dataloaders.items():
            pass
pl.Trainer().fit(Lit())
""",
        # bare decorator, a context held in a variable, a conditional context
        """
import contextlib
import torch
from torch import no_grad

@no_grad
def validate(model, val_loader):
    model.eval()
    for x, y in val_loader:
        model(x)

def run_epoch(model, loader, train):
    ctx = torch.no_grad() if not train else contextlib.nullcontext()
    with ctx:
        for x, y in loader:
            out = model(x)

def test(model, test_loader):
    with (torch.inference_mode() if True else contextlib.nullcontext()):
        for x, y in test_loader:
            out = model(x)

model = torch.nn.Linear(2, 2)
if __name__ == "__main__":
    validate(model, val_loader)
    run_epoch(model, val_loader, False)
    test(model, test_loader)
""",
        # Hugging Face Trainer evaluates without autograd
        """
from transformers import Trainer
trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds)
trainer.train()
metrics = trainer.evaluate()
""",
        # the classic phase loop: set_grad_enabled(phase == "train")
        """
import torch
model = torch.nn.Linear(2, 2)
for phase in ["train", "val"]:
    model.train() if phase == "train" else model.eval()
    for x, y in loaders[phase]:
        with torch.set_grad_enabled(phase == "train"):
            out = model(x)
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        # PyTorch code: torch named in the program, or (a file that imports only its own package's names,
        # like allennlp's commands/evaluate.py) a model switched to eval() before it is called
        torch_named = any("torch" in f.ctx.source.text for f in program.files)
        for loop in eval_loops(program):
            if loop.no_grad:
                continue
            if not torch_named and loop.mode_at(program) != "eval":
                continue
            caller = None
            if loop.scope.kind == "function" and not loop.engine_step:
                callers = grad_free_callers(program, loop.pf, loop.scope)
                if callers is None and not _library_evaluation(program, loop):
                    continue  # a helper nobody calls: its callers decide
                if callers:
                    continue
                caller = autograd_call_site(program, loop.pf, loop.scope)
            ctx = loop.pf.ctx
            body = ctx.code(loop.scope.node) if loop.scope.kind == "function" else ctx.source.text
            if _GRADS_ON_PURPOSE.search(body):
                continue  # gradients wanted (x.requires_grad_(), requires_grad=True) or a frozen model (p.requires_grad = False)
            call, _ = loop.forwards[0]
            who = f"`{dotted(call.func) or 'the model'}`"
            if loop.paths and len(loop.paths[0]) > 1:
                who = f"`{dotted(loop.paths[0][-1].call.func) or 'the model'}` (through `{dotted(call.func) or 'a helper'}()`)"
            n = len(loop.forwards)
            where = f"in {loop.scope.name}() " if loop.scope.kind == "function" and loop.scope.name not in loop.evidence else ""
            message = (
                f"Evaluation loop ({loop.evidence}) calls {who} {'once' if n == 1 else f'{n} times'} per batch "
                f"{where}with autograd on: every batch records a graph and keeps its activations (memory and time for nothing)"
            )
            if loop.node is not None:
                span = ctx.span(loop.node)
                iter_span = ctx.span(loop_head(loop.node))
                span = Span(span.line, span.column, iter_span.end_line, iter_span.end_column)
            else:  # an engine's step function: at the model call
                span = ctx.span(call)
            yield self.finding(
                ctx,
                span,
                message,
                hint="Wrap the loop in `with torch.no_grad():` (or torch.inference_mode()), or decorate the function with @torch.no_grad()",
                related=_related(program, loop, ctx) + (
                    [Related(caller[0].ctx.path, caller[0].ctx.span(caller[3]), "called here with autograd on")]
                    if caller is not None and caller[1] is not loop.scope else []),
            )


def _related(program, loop, ctx) -> list:
    """The forward call; when it is reached through helpers, each call on the way to the model call."""
    path = loop.paths[0] if loop.paths else []
    if len(path) <= 1:
        call, _ = loop.forwards[0]
        return [Related(ctx.path, ctx.span(call), "forward pass recorded by autograd")]
    out = []
    for i, hop in enumerate(path):
        pf = program.file_of(hop.facts)
        if pf is None:
            continue
        last = i == len(path) - 1
        what = "forward pass recorded by autograd" if last else f"reaches the model through `{dotted(hop.call.func) or 'a helper'}()`"
        out.append(Related(pf.ctx.path, pf.ctx.span(hop.call), what))
    return out


def _library_evaluation(program, loop) -> bool:
    """An evaluation method of a library class that nothing of the analysed files calls
    (``Trainer.validate()`` in a package linted without the scripts that drive it): it switches its
    model to eval() itself before the loop, so it owns the evaluation state, autograd included; or it is
    a module's own inference method (``predict()`` / ``infer()`` of an ``nn.Module`` that runs
    ``self.forward(batch)`` over mini-batches)."""
    if not program.library or loop.scope.class_name is None:
        return False
    if (EVAL_FUNCTION_NAME.search(loop.scope.name) or loop.evidence.startswith("it generates")) and any(h.target is not None and dotted(h.target) == "self" for h in loop.model_calls()):
        return True  # a module's own predict()/infer() over mini-batches: its inference API
    # the mode at the model call (also when eval() is inside a validation_step() helper on the way)
    return any(loop.mode_at(program, i) == "eval" for i in range(len(loop.forwards)))
