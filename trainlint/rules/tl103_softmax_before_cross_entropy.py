from __future__ import annotations

import itertools
import math
from typing import Dict, Iterable, List, Optional, Set

import libcst as cst

from trainlint.analysis.losses import (
    LossCall,
    Origin,
    branch_loss_calls,
    loss_calls,
    value_origins,
    wrapper_losses,
    wrapper_origins,
)
from trainlint.analysis.evaluation import in_eval_only_code
from trainlint.analysis.modules import ModelWorld
from trainlint.analysis.syntax import positional, short
from trainlint.findings import Applicability, Finding, Fix, Related, Severity
from trainlint.rules import Rule

#: Losses that apply log_softmax to their input themselves, or expect log-probabilities, and the
#: activation that must not come before them.
WRONG_BEFORE: Dict[str, str] = {
    "torch.nn.CrossEntropyLoss": "softmax",
    "torch.nn.functional.cross_entropy": "softmax",
    "torch.nn.NLLLoss": "softmax",
    "torch.nn.functional.nll_loss": "softmax",
    "torch.nn.BCEWithLogitsLoss": "sigmoid",
    "torch.nn.functional.binary_cross_entropy_with_logits": "sigmoid",
}
_CE = {"torch.nn.CrossEntropyLoss", "torch.nn.functional.cross_entropy"}
_NLL = {"torch.nn.NLLLoss", "torch.nn.functional.nll_loss"}
_LOSS_GATE = ("cross_entropy", "CrossEntropyLoss", "nll_loss", "NLLLoss", "BCEWithLogitsLoss", "binary_cross_entropy_with_logits")
_ACT_GATE = ("softmax", "Softmax", "sigmoid", "Sigmoid", "expit")


class SoftmaxBeforeCrossEntropy(Rule):
    """
    ## What it does
    Flags a softmax whose output is the input (the first argument, never the target) of
    `nn.CrossEntropyLoss` / `F.cross_entropy` or `nn.NLLLoss` / `F.nll_loss`, and a sigmoid whose output
    is the input of `nn.BCEWithLogitsLoss` / `F.binary_cross_entropy_with_logits`, in training code.

    The softmax may be a module (`nn.Softmax(dim=1)` ending an `nn.Sequential`, or `self.softmax(x)`),
    functional (`F.softmax`, `torch.softmax`) or a tensor method (`x.softmax(-1)`); it may be the last op
    of a model's `forward` (also one element of a returned tuple or dict, in another file of the
    program, through base classes, factories,
    `DDP(model)`, `torch.compile`, Lightning's `self(x)`), or applied in the training code to a model's
    output through local variables, shape ops (`.view`, `.squeeze`, `[:, -1]`), helper functions and
    the parameters of a loss helper. When the model is chosen on a branch (`if args.arch == ...:
    model = A() else: model = B()`), a model every output of which is the wrong activation is reported
    (training it is wrong whichever branch picks it); a criterion chosen on a branch
    (`nn.CrossEntropyLoss() if n_classes > 1 else nn.BCEWithLogitsLoss()`) is checked for each
    alternative; a loss class handed to a training wrapper with the model
    (`NeuralNetClassifier(Module, criterion=nn.CrossEntropyLoss)`) is checked against the model's output.
    The finding points at the activation; the loss is a related location. Loss calls in
    evaluation-only code are left out (see below).

    ## Why is this bad?
    `CrossEntropyLoss` applies `log_softmax` to its input: it wants raw logits. Given probabilities it
    computes a second softmax over values in [0, 1], which is nearly uniform: the loss cannot go below
    ln(e + C - 1) - 1 for C classes (1.46 for 10 classes) however right the model is, and its gradients
    shrink as the probabilities saturate, so training crawls and stalls. `NLLLoss` expects
    log-probabilities: given probabilities it computes -p(y) (between -1 and 0) instead of -log p(y),
    so confident mistakes are barely penalized. `BCEWithLogitsLoss` applies the sigmoid itself: after
    a sigmoid its input stays in (0, 1), so sigmoid(input) stays in (0.5, 0.73) and the loss cannot go
    below 0.31 for positives and 0.69 for negatives.

    The bug is silent: the loss still decreases at first, and — as the source texts advise checking —
    the loss at init is no help (2.29 against the -log(1/n_classes) = 2.30 Karpathy tells you to verify
    for 10 classes, Karpathy 2019, step 4 "verify loss @ init"); what reveals it is
    overfitting one batch (step 8 of the same text), where the loss floors far above zero. Holden's
    "wrong activation on the last layer" (Holden 2017, section 7) is the same
    mistake for classification: the last layer's activation must fit what the loss expects. PyTorch
    users have asked the framework to warn about it (pytorch/pytorch#55902).

    ## Example
    ```python
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.fc1(x))
            return F.softmax(self.fc2(x), dim=1)

    model = Net()
    criterion = nn.CrossEntropyLoss()
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
    ```

    ## Use instead
    Return the logits and apply softmax only where probabilities are needed (predictions, metrics):
    ```python
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.fc1(x))
            return self.fc2(x)

    model = Net()
    criterion = nn.CrossEntropyLoss()
    for x, y in loader:
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        accuracy = (logits.softmax(dim=1).argmax(dim=1) == y).float().mean()
    ```
    Not flagged: `log_softmax` + `NLLLoss`; `log_softmax` into `CrossEntropyLoss` (harmless: log_softmax
    is idempotent, so the loss is exactly right — not reported at all, since a rule has one severity);
    `NLLLoss` on `torch.log(probs)` of a model ending in Softmax (log + softmax, numerically worse than
    log_softmax but correct); softmax used only for predictions or metrics (`out.softmax(1).argmax(1)`);
    a loss computed only in evaluation code (under `torch.no_grad()`, in `evaluate()` / `test()` /
    `predict()` / Lightning's `validation_step`); a model whose `forward` applies softmax only in eval
    mode (`if not self.training`) or behind a flag; a softmax on the TARGET (soft-label cross entropy
    `F.cross_entropy(logits, F.softmax(teacher_logits, -1))`, valid since torch 1.10); distillation with
    `F.kl_div(F.log_softmax(s / T), F.softmax(t / T))`; a sigmoid before `BCELoss`; Hugging Face models
    (`outputs.logits` are logits) and models trainlint cannot see into; a model chosen on a branch
    one alternative of which cannot be followed; model alternatives that disagree when the criterion
    is chosen on a branch too (both may follow the same switch: a Sigmoid model with `BCELoss`, a
    logits model with `BCEWithLogitsLoss`); the other elements of a `forward` that returns a tuple or a
    dict (class logits plus an auxiliary output: only the element that reaches the loss is followed,
    through `out, aux = model(x)`, `model(x)[0]` or `out["logits"]`).

    ## Fix safety
    When the activation is written inside the loss call (`F.cross_entropy(F.softmax(logits, 1), y)`,
    `criterion(out.sigmoid(), y)` with `BCEWithLogitsLoss`), its output feeds only the loss, and an unsafe
    fix drops it (`F.cross_entropy(logits, y)`). Unsafe, applied only with `--unsafe-fixes`: the loss
    and so the whole training change (that is the point). No automatic fix when the model's `forward`
    ends with the activation: removing it changes what the model returns to every caller (inference
    code that expects probabilities must then apply softmax itself).

    ## References
    - Karpathy, "A Recipe for Training Neural Networks": verify the loss at init (-log(1/n_classes)) and
      overfit one batch (Karpathy 2019)
    - Holden, "My neural network isn't working! What should I do?", wrong activation on the last layer
      (Holden 2017)
    - [pytorch/pytorch#55902](https://github.com/pytorch/pytorch/issues/55902): warn about softmax before CrossEntropyLoss
    - [torch.nn.CrossEntropyLoss](https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html)
    """

    code = "TL103"
    name = "softmax-before-cross-entropy"
    severity = Severity.ERROR
    summary = "Softmax output fed to CrossEntropyLoss/NLLLoss, or sigmoid output to BCEWithLogitsLoss: the loss squashes twice"
    probe = "overfit-one-batch"

    bad = (
        # Sequential ending with nn.Softmax, criterion object
        """
import torch
import torch.nn as nn
model = nn.Sequential(
    nn.Linear(20, 64), nn.ReLU(),
    nn.Linear(64, 5),
    nn.Softmax(dim=1),  # expect: TL103
)
criterion = nn.CrossEntropyLoss()
opt = torch.optim.Adam(model.parameters(), lr=3e-4)
for x, y in loader:
    opt.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    opt.step()
""",
        # local variable: probabilities computed in the loop, functional loss
        """
import torch
import torch.nn.functional as F
for images, labels in train_loader:
    logits = model(images)
    probs = F.softmax(logits, dim=1)  # expect: TL103
    loss = F.cross_entropy(probs, labels)
    loss.backward()
""",
        # the .softmax() method inline, criterion passed into a train function
        """
import torch
from torch import nn
def train(model, loader, criterion, optimizer):
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x).softmax(-1), y)  # expect: TL103
        loss.backward()
        optimizer.step()
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
train(net, loader, nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1))
""",
        # Lightning: forward ends with torch.sigmoid, BCEWithLogitsLoss in training_step
        """
import torch
import torch.nn as nn
import lightning as L
class Classifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 1))
        self.loss_fn = nn.BCEWithLogitsLoss()
    def forward(self, x):
        return torch.sigmoid(self.body(x)).squeeze(-1)  # expect: TL103
    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y.float())
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)
L.Trainer(max_epochs=5).fit(Classifier(), loader)
""",
        # softmax module attribute applied before NLLLoss
        """
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.fc = nn.Linear(8 * 26 * 26, 10)
        self.softmax = nn.Softmax(dim=1)
    def forward(self, x):
        x = self.conv(x).relu().flatten(1)
        return self.softmax(self.fc(x))  # expect: TL103
model = Net()
loss_fn = nn.NLLLoss()
for x, y in loader:
    loss_fn(model(x), y).backward()
""",
        # a loss helper whose parameter receives the probabilities
        """
import torch
import torch.nn.functional as F
def compute_loss(outputs, targets):
    return F.cross_entropy(outputs, targets, label_smoothing=0.1)
for x, y in loader:
    out = torch.softmax(model(x), dim=-1)  # expect: TL103
    loss = compute_loss(out, y)
    loss.backward()
""",
        # a head returned as a tuple (class probabilities, auxiliary output): the element reaching the loss
        """
import torch.nn as nn
import torch.nn.functional as F
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(32, 64)
        self.cls = nn.Linear(64, 10)
        self.box = nn.Linear(64, 4)
    def forward(self, x):
        h = F.relu(self.body(x))
        return F.softmax(self.cls(h), dim=1), self.box(h)  # expect: TL103
model = Net()
criterion = nn.CrossEntropyLoss()
for x, y, b in loader:
    probs, boxes = model(x)
    loss = criterion(probs, y) + F.smooth_l1_loss(boxes, b)
    loss.backward()
""",
        # indexing the returned tuple
        """
import torch
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)
    def forward(self, x):
        z = self.fc(x)
        return torch.softmax(z, -1), z  # expect: TL103
net = Net()
for x, y in loader:
    out = net(x)
    nn.functional.nll_loss(out[0], y).backward()
""",
        # a project subclass of CrossEntropyLoss keeps its meaning; called through .forward
        """
import torch.nn as nn
class SmoothedCE(nn.CrossEntropyLoss):
    def __init__(self):
        super().__init__(label_smoothing=0.1)
model = nn.Sequential(nn.Linear(10, 3), nn.Softmax(dim=1))  # expect: TL103
crit = SmoothedCE()
for x, y in loader:
    crit.forward(model(x), y).backward()
""",
        # a loss class handed to a training wrapper (skorch), which calls it on the module's output
        """
import torch.nn as nn
import torch.nn.functional as F
from skorch import NeuralNetClassifier
class Classifier(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.fc = nn.Linear(20, hidden)
        self.out = nn.Linear(hidden, 3)
    def forward(self, X):
        return F.softmax(self.out(F.relu(self.fc(X))), dim=-1)  # expect: TL103
net = NeuralNetClassifier(Classifier, criterion=nn.CrossEntropyLoss, max_epochs=20, lr=0.05)
net.fit(X_train, y_train)
""",
        # a sigmoid in a helper method of the model; a softmax spelled exp(log_softmax(...))
        """
import torch
import torch.nn as nn
import torch.nn.functional as F
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)
    def _score(self, h):
        return torch.sigmoid(self.fc(h))  # expect: TL103
    def forward(self, x):
        return self._score(x)
net = Net()
head = nn.Linear(8, 5)
for x, y, c in loader:
    nn.BCEWithLogitsLoss()(net(x), y).backward()
    p = torch.exp(F.log_softmax(head(x), dim=1))  # expect: TL103
    F.cross_entropy(p, c).backward()
""",
    )
    good = (
        # exp(log_softmax) into NLLLoss after a log: log-probabilities again, correct
        """
import torch
import torch.nn as nn
import torch.nn.functional as F
head = nn.Linear(8, 5)
for x, c in loader:
    p = torch.exp(F.log_softmax(head(x), dim=1))
    F.nll_loss(torch.log(p), c).backward()
""",
        # skorch's default NLLLoss takes the log of the probabilities a module returns: correct
        """
import torch.nn as nn
import torch.nn.functional as F
from skorch import NeuralNetClassifier
class Classifier(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.fc = nn.Linear(20, hidden)
        self.out = nn.Linear(hidden, 3)
    def forward(self, X):
        return F.softmax(self.out(F.relu(self.fc(X))), dim=-1)
net = NeuralNetClassifier(Classifier, criterion=nn.NLLLoss, max_epochs=20, lr=0.05)
net.fit(X_train, y_train)
""",
        # a subclass that overrides forward computes its own loss (here: it takes probabilities)
        """
import torch
import torch.nn as nn
class ProbCE(nn.CrossEntropyLoss):
    def forward(self, probs, target):
        return nn.functional.nll_loss(torch.log(probs + 1e-8), target)
model = nn.Sequential(nn.Linear(10, 3), nn.Softmax(dim=1))
crit = ProbCE()
for x, y in loader:
    crit(model(x), y).backward()
""",
        # a tuple head whose softmax element is only for metrics: the logits element reaches the loss
        """
import torch.nn as nn
import torch.nn.functional as F
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls = nn.Linear(64, 10)
    def forward(self, x):
        logits = self.cls(x)
        return logits, F.softmax(logits, dim=1)
model = Net()
criterion = nn.CrossEntropyLoss()
for x, y in loader:
    logits, probs = model(x)
    loss = criterion(logits, y)
    loss.backward()
    acc = (probs.argmax(1) == y).float().mean()
""",
        # log_softmax + NLLLoss
        """
import torch.nn as nn
import torch.nn.functional as F
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)
    def forward(self, x):
        return F.log_softmax(self.fc(x), dim=1)
model = Net()
for x, y in loader:
    F.nll_loss(model(x), y).backward()
""",
        # nn.LogSoftmax last with NLLLoss
        """
import torch.nn as nn
model = nn.Sequential(nn.Linear(10, 3), nn.LogSoftmax(dim=1))
criterion = nn.NLLLoss()
for x, y in loader:
    criterion(model(x), y).backward()
""",
        # log_softmax into CrossEntropyLoss: harmless (log_softmax is idempotent)
        """
import torch.nn as nn
import torch.nn.functional as F
criterion = nn.CrossEntropyLoss()
for x, y in loader:
    criterion(F.log_softmax(model(x), dim=-1), y).backward()
""",
        # softmax only for predictions / metrics
        """
import torch.nn as nn
model = nn.Sequential(nn.Linear(20, 4))
criterion = nn.CrossEntropyLoss()
for x, y in loader:
    out = model(x)
    loss = criterion(out, y)
    loss.backward()
    preds = out.softmax(1).argmax(1)
    probs = torch.softmax(out, dim=1)
    acc = (preds == y).float().mean()
""",
        # softmax in predict() and an evaluation loop under no_grad
        """
import torch
import torch.nn as nn
import torch.nn.functional as F
model = nn.Sequential(nn.Linear(20, 4))
criterion = nn.CrossEntropyLoss()
def predict(x):
    probs = F.softmax(model(x), dim=1)
    return probs, criterion(probs, torch.zeros(len(x), dtype=torch.long))
def evaluate(loader):
    total = 0.0
    for x, y in loader:
        total += criterion(F.softmax(model(x), dim=1), y).item()
    return total
for x, y in train_loader:
    criterion(model(x), y).backward()
with torch.no_grad():
    for x, y in val_loader:
        val_loss = criterion(model(x).softmax(-1), y)
""",
        # a model ending in Softmax trained with NLLLoss on torch.log(probs): log + softmax, correct
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(16, 3), nn.Softmax(dim=1))
nll = nn.NLLLoss()
for x, y in loader:
    probs = model(x)
    loss = nll(torch.log(probs + 1e-8), y)
    loss.backward()
""",
        # distillation: softmax is the target of kl_div
        """
import torch.nn.functional as F
T = 4.0
for x, y in loader:
    s, t = student(x), teacher(x).detach()
    kd = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T * T
    loss = kd + F.cross_entropy(s, y)
    loss.backward()
""",
        # soft-label cross entropy: the softmax is applied to the TARGET
        """
import torch.nn.functional as F
for x, _ in loader:
    logits = student(x)
    soft = F.softmax(teacher(x) / 2.0, dim=-1)
    loss = F.cross_entropy(logits, F.softmax(teacher(x), -1)) + F.cross_entropy(input=logits, target=soft)
    loss.backward()
""",
        # softmax applied in forward only in eval mode
        """
import torch.nn as nn
import torch.nn.functional as F
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 10)
    def forward(self, x):
        x = self.fc(x)
        if not self.training:
            x = F.softmax(x, dim=1)
        return x
net = Net()
for x, y in loader:
    nn.CrossEntropyLoss()(net(x), y).backward()
""",
        # a sigmoid before BCELoss; BCEWithLogitsLoss on raw logits
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(8, 1), nn.Sigmoid())
head = nn.Linear(8, 1)
for x, y in loader:
    loss = nn.BCELoss()(model(x).squeeze(1), y) + nn.BCEWithLogitsLoss()(head(x).squeeze(1), y)
    loss.backward()
    pred = torch.sigmoid(head(x)) > 0.5
""",
        # Hugging Face: outputs.logits are logits
        """
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained("bert-base-uncased", num_labels=3)
for batch in loader:
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    loss = F.cross_entropy(outputs.logits, batch["labels"])
    loss.backward()
    probs = outputs.logits.softmax(-1)
""",
        # Lightning: softmax only in validation_step / predict_step
        """
import torch
import torch.nn.functional as F
import lightning as L
class Lit(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(10, 4)
    def forward(self, x):
        return self.net(x)
    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)
    def validation_step(self, batch, batch_idx):
        x, y = batch
        probs = self(x).softmax(-1)
        self.log("val_nll", F.nll_loss(probs.log(), y))
        self.log("val_ce_of_probs", F.cross_entropy(probs, y))
    def predict_step(self, batch, batch_idx):
        return F.softmax(self(batch[0]), dim=-1)
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        texts = [f.ctx.source.text for f in program.files]
        if not any(any(t in text for t in _LOSS_GATE) for text in texts):
            return
        if not any(any(t in text for t in _ACT_GATE) for text in texts):
            return
        world = ModelWorld.of_program(program)
        reported: Set[int] = set()
        for file in world.files:
            # no per-file gate: the criterion may be imported from another file of the program
            wanted = set(WRONG_BEFORE)
            branch = list(branch_loss_calls(world, file, wanted))
            # a wrapper (skorch's NeuralNetClassifier(Module, criterion=nn.CrossEntropyLoss)) calls the
            # loss on the model's output itself; NLLLoss is left out (skorch takes the log of the
            # probabilities a module returns for it)
            wrapped = {id(w.lc): w for w in wrapper_losses(world, file, wanted - _NLL)}
            for lc in itertools.chain(loss_calls(world, file, wanted, min_args=2), branch, (w.lc for w in wrapped.values())):
                wl = wrapped.get(id(lc))
                pred = lc.argument(0, "input") if wl is None else None
                if pred is None and wl is None:
                    continue
                if in_eval_only_code(lc.file, lc.scope, lc.stmt) is not None:
                    continue
                wrong = WRONG_BEFORE[lc.loss]
                origins = value_origins(world, pred, lc.file, lc.scope, lc.stmt) if wl is None else wrapper_origins(world, wl)
                for origin in _wrong_origins(origins, wrong, ambiguous_loss=lc in branch):
                    op = origin.op
                    if op is None or id(op.node) in reported:
                        continue
                    reported.add(id(op.node))
                    finding = self._finding(world, origin, lc, program)
                    if len(origins) == 1 and op.node is pred and lc.loss not in _NLL:
                        finding.fix = _drop_fix(op)
                    # a model file shared by several programs is judged in each: the engine keeps one
                    yield finding

    def _finding(self, world: ModelWorld, origin: Origin, lc: LossCall, program) -> Finding:
        op = origin.op
        assert op is not None
        ctx = op.file.ctx
        loss_span = lc.file.ctx.span(lc.call)
        where = lc.file.ctx.where(loss_span.line, home=ctx)
        if origin.model:
            subject = f"`{origin.model}` ends with {op.label}, and its output"
        else:
            subject = f"The output of `{short(ctx.code(op.node), 50)}`"
        loss = lc.label
        if lc.loss in _CE:
            classes = world.output_width(origin.chain)
            if classes is None and not origin.model and isinstance(op.node, cst.Call):
                # F.softmax(logits, 1) with logits = model(x): the model's last Linear
                first = positional(op.node)
                if op.label.startswith(".") and isinstance(op.node.func, cst.Attribute):  # logits.softmax(-1)
                    inner = op.node.func.value
                else:
                    inner = first[0] if first else None
                if inner is not None:
                    widths = {world.output_width(o.chain) for o in value_origins(world, inner, lc.file, lc.scope, lc.stmt) if o.chain}
                    if len(widths) == 1:
                        classes = widths.pop()
            floor = (
                f"with {classes} classes it cannot go below {math.log(math.e + classes - 1) - 1:.2f}"
                if classes is not None and classes >= 2
                else "with C classes it cannot go below ln(e + C - 1) - 1 (1.46 for 10 classes)"
            )
            message = (
                f"{subject} is the input of {loss} ({where}), which applies log_softmax itself: the loss sees a "
                f"softmax of probabilities in [0, 1], so {floor} and its gradients shrink as the model grows confident"
            )
            hint = (
                f"Pass the raw logits to {loss} (drop the {op.label}); apply softmax only where probabilities are "
                "needed (predictions, metrics)"
            )
        elif lc.loss in _NLL:
            message = (
                f"{subject} is the input of {loss} ({where}), which expects log-probabilities: given probabilities "
                "it computes -p(y), between -1 and 0, instead of -log p(y), so confident mistakes are barely penalized"
            )
            hint = f"Use log_softmax instead of softmax before {loss} (or pass the raw logits to CrossEntropyLoss)"
        else:
            message = (
                f"{subject} is the input of {loss} ({where}), which applies the sigmoid itself: sigmoid(sigmoid(x)) "
                "stays in (0.5, 0.73), so the loss cannot go below 0.31 for positives and 0.69 for negatives"
            )
            hint = f"Pass the raw logits to {loss} (drop the {op.label}); keep the sigmoid for predictions only"
        related = [Related(lc.file.ctx.path, loss_span, f"the loss ({loss}) that receives this output")]
        return Finding(
            code=self.code, name=self.name, severity=self.severity, message=message, path=ctx.path,
            span=ctx.span(op.node), hint=hint, related=related,
        )


def _wrong_origins(origins: List[Origin], wrong: str, ambiguous_loss: bool) -> List[Origin]:
    """The origins to report: all of them when every alternative is the wrong activation; else, with
    one known loss, the alternatives that come out of a model every one of whose outputs is the wrong
    activation (``model = A() if args.a else B()`` with A ending in softmax: training A is wrong). The
    alternatives of one model (``if not self.training: x = softmax(x)``) are judged together, and so
    are those of local variables (``if args.probs: out = out.softmax(1)``)."""
    def bad(o: Origin) -> bool:
        return o.kind == "act" and o.op is not None and o.op.act == wrong

    if not origins:
        return []
    if all(bad(o) for o in origins):
        return origins
    if ambiguous_loss:
        return []  # `criterion = A() if ... else B()` may follow the same switch as the model
    groups: Dict[str, List[Origin]] = {}
    for o in origins:
        if o.model and o.model_call is not None:
            groups.setdefault(o.model, []).append(o)
    models = {o.model for o in origins if o.model}
    if len(models) < 2:
        return []  # one model (or none): its alternatives disagree
    out: List[Origin] = []
    for members in groups.values():
        if all(bad(o) for o in members):
            out.extend(members)
    return out



def _drop_fix(op) -> Optional[Fix]:
    """The activation written inside the loss call (`criterion(F.softmax(logits, 1), y)`): its output
    feeds only the loss, so dropping it is mechanical. Unsafe: the loss, hence the training, changes."""
    from trainlint.edits import unwrap_call

    edits = unwrap_call(op.file.ctx, op.node, method=op.label.startswith("."))
    if edits is None:
        return None
    return Fix(message=f"Pass the logits to the loss: drop the {op.label}", edits=edits, applicability=Applicability.UNSAFE)
