from __future__ import annotations

from typing import Iterable, Set

from trainlint.analysis.evaluation import (
    eval_for_last_pass, eval_loops, evaluation_follows, forward_layers, forward_target, in_eval_loop, inference_calls,
)
from trainlint.analysis.execution import ObjectRef, loop_mode_calls, mode_before, program_loops, same_object
from trainlint.analysis.names import dotted
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule


class EvalWithoutEvalMode(Rule):
    """
    ## What it does
    Flags a model that has dropout or batch-norm layers and is evaluated in training mode:

    - an evaluation loop (over `val_loader` / `test_loader`, or inside `evaluate()` / `validate()` /
      `test()`) that calls the model with no `model.eval()` / `model.train(False)` before it — in the same
      function, in a helper called before it, or at every call site of the helper;
    - a training loop that switches the model to `eval()` for validation and never back to `train()`:
      every epoch after the first evaluation trains with dropout off and batch norm frozen;
    - a Hugging Face model fine-tuned straight from `from_pretrained()` (which returns it in eval mode)
      with no `model.train()` before its training loop: dropout stays off.

    An inference script is an evaluation too: a program that never trains (no backward, optimizer step,
    `fit` or `train()` anywhere) and calls a model on real input outside any loop (`out = model(spect)` in
    `predict.py`) is checked like an evaluation loop; a call on a made-up tensor (`torch.randn(...)`: a
    shape check, an export trace) and a model file's own `__main__` smoke test are not. A mode switch counts
    only for the model it acts on: `teacher.eval()` (or `ema.eval()`, a `copy.deepcopy` of the model) says
    nothing about the student that is evaluated. So is a package's own prediction API: a factory that builds
    a model, loads its trained weights and returns it without `eval()` (`get_model(name)`), whose class
    predicts in an `infer()` / `predict()` method that calls `self.forward(...)` with no `self.eval()` —
    the package's users call it on what the factory gave them (a method the program calls itself is judged
    at its callers).

    The model may be reached through helpers (`self.validation_step(x)` -> `self.infer(x)` ->
    `self.module_(x)`: the mode is the one on that path) and spelled `model.forward(x)` (the mode of
    `model`). A whole module unpickled by `torch.load(path)` keeps the mode it was saved in; training
    scripts save it mid-training (`torch.save(model, path)`, in training mode), so one that is evaluated
    with no `eval()` anywhere before it is flagged although its class (and so its layers) is unknown here:
    the message says "if it has any".

    The model's layers are read from its class (also across files, through submodules, the modules its
    constructor is given (`SoftmaxNN(CNNEncoder(dropout=0.5))` keeps the encoder's dropout), factories,
    `accelerator.prepare(...)` and `Trainer(model)` attributes), `nn.Sequential` stacks, torchvision
    classifiers (`models.resnet18()` holds BatchNorm) and Hugging Face models of families with dropout
    (BERT, RoBERTa, GPT-2, T5, BART...; `from_pretrained()` returns them in eval mode, so they are flagged
    only after a `train()` call).

    ## Why is this bad?
    In training mode dropout zeroes random units and batch norm normalizes with the statistics of the
    current batch (and updates its running averages with the validation data). Validation metrics are then
    noisy and pessimistic, and they depend on the batch size. The opposite mistake — staying in eval mode
    after validation — silently removes the regularization and freezes the batch-norm statistics for the
    rest of training. Karpathy's recipe asks for a complete, trustworthy train + evaluate skeleton before
    anything else, and for evaluation over the whole test set that you can believe
    (Karpathy 2019, "Set up the end-to-end training/evaluation skeleton + get dumb baselines" and
    "add significant digits to your eval"). PyTorch users ask for this warning
    (pytorch/pytorch#76383).

    ## Example
    ```python
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(10):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        with torch.no_grad():
            for x, y in val_loader:
                correct = (model(x).argmax(1) == y).sum()
    ```

    ## Use instead
    ```python
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 2))
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(10):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for x, y in val_loader:
                correct = (model(x).argmax(1) == y).sum()
    ```
    Not flagged: models without dropout or batch norm (a plain MLP: `eval()` changes nothing), models of
    unknown libraries, Lightning's `validation_step` and Hugging Face's `Trainer` (they switch modes),
    `model.train(False)`, evaluation helpers that call `model.eval()` themselves or are only called after
    it, `model.train()` at the top of each epoch, BatchNorm with `track_running_stats=False`, and
    Monte-Carlo dropout on purpose (`enable_dropout`, `mc_dropout`). `torch.inference_mode()` does not
    switch modes: it is no substitute for `eval()`.

    ## Fix safety
    No automatic fix: where `model.eval()` and `model.train()` belong depends on the loop.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - [pytorch/pytorch#76383](https://github.com/pytorch/pytorch/issues/76383)
    - [nn.Module.eval](https://pytorch.org/docs/stable/generated/torch.nn.Module.html#torch.nn.Module.eval)
    """

    code = "TL401"
    name = "eval-without-eval-mode"
    severity = Severity.WARNING
    summary = "A model with dropout/batchnorm is evaluated in train mode, or never switched back to train()"
    probe = None
    judges_libraries = True

    bad = (
        # a validate() helper that forgets model.eval(), torchvision ResNet
        """
import torch
import torchvision

def validate(model, loader):
    correct = 0
    with torch.no_grad():
        for images, labels in loader:  # expect: TL401
            correct += (model(images).argmax(1) == labels).sum().item()
    return correct

model = torchvision.models.resnet18(num_classes=10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(90):
    model.train()
    for images, labels in train_loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    acc = validate(model, val_loader)
""",
        # eval() for validation, never train() again
        """
import torch
import torch.nn as nn
import torch.nn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(256, 10)
    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))

net = Net()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for epoch in range(20):
    for x, y in train_loader:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()  # expect: TL401
    with torch.no_grad():
        for x, y in val_loader:
            val_loss = F.cross_entropy(net(x), y)
""",
        # inference_mode does not switch to eval mode
        """
import torch
from torch import nn

class Encoder(nn.Module):
    def __init__(self, d=256):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d, 8)
        self.head = nn.Linear(d, 2)
    def forward(self, x):
        return self.head(self.layer(x).mean(1))

model = Encoder()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
for epoch in range(3):
    model.train()
    for batch in train_dl:
        loss = nn.functional.cross_entropy(model(batch["x"]), batch["y"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.inference_mode():
        for batch in test_dl:  # expect: TL401
            preds = model(batch["x"]).argmax(-1)
""",
        # nanoGPT-style iteration loop: eval every N steps, never back to train()
        """
import torch
import torch.nn as nn

class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 4, dropout=0.1, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(0.1))
    def forward(self, x):
        x = x + self.attn(x, x, x)[0]
        return x + self.mlp(x)

model = nn.Sequential(*[Block(64) for _ in range(4)], nn.Linear(64, 100))
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
for it in range(5000):
    if it % 500 == 0:
        model.eval()  # expect: TL401
        with torch.no_grad():
            for k in range(eval_iters):
                X, Y = get_batch("val")
                val_loss = nn.functional.cross_entropy(model(X).flatten(0, 1), Y.flatten())
    X, Y = get_batch("train")
    loss = nn.functional.cross_entropy(model(X).flatten(0, 1), Y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
""",
        # a Hugging Face model of a dropout family, switched to train() and evaluated without eval()
        """
import torch
from transformers import AutoModelForSequenceClassification

model = AutoModelForSequenceClassification.from_pretrained("roberta-base", num_labels=3)
opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
for epoch in range(3):
    model.train()
    for batch in train_dataloader:
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        for batch in eval_dataloader:  # expect: TL401
            preds = model(**batch).logits.argmax(-1)
""",
        # validation first in each epoch, then training that never switches back
        """
import torch
import torch.nn as nn
from torchvision.models import densenet121

@torch.no_grad()
def evaluate(model, loader):
    model.eval()  # expect: TL401
    return [model(x).argmax(1) for x, _ in loader]

model = densenet121(num_classes=5)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
for epoch in range(30):
    evaluate(model, val_loader)
    for x, y in train_loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
""",
        # from_pretrained() returns the model in eval mode: fine-tuning it without train() trains with dropout off
        """
import torch
from transformers import BertForSequenceClassification

model = BertForSequenceClassification.from_pretrained("bert-base-uncased", num_labels=2)
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
for epoch in range(3):
    for batch in train_dataloader:
        loss = model(**batch).loss  # expect: TL401
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
""",
        # a whole module unpickled by torch.load(): it runs in the mode it was saved in
        """
import torch

model = torch.load("checkpoints/best.pt", weights_only=False).to("cuda")
with torch.no_grad():
    for images, _ in test_loader:  # expect: TL401
        print(model(images).argmax(1))
""",
    )
    good = (
        # the eval() is on a fresh copy passed to the helper, not on the trained model
        """
import torch
import torch.nn as nn
@torch.no_grad()
def evaluate(model, loader):
    model.eval()
    for x, y in loader:
        model(x)
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
    def forward(self, x):
        return self.bn(self.fc(x))
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model.train()
for epoch in range(10):
    for x, y in train_loader:
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    eval_model = Net()
    eval_model.load_state_dict(model.state_dict())
    evaluate(eval_model, val_loader)
""",
        # a plain MLP: eval() changes nothing
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(10):
    for x, y in train_loader:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        for x, y in val_loader:
            val = nn.functional.mse_loss(model(x), y)
""",
        # evaluate() switches to eval itself; train() at the top of each epoch
        """
import torch
import torchvision

def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)

def run_eval(model, loader):
    total = 0
    with torch.no_grad():
        for x, y in loader:
            total += (model(x).argmax(1) == y).sum().item()
    return total

model = torchvision.models.resnet50()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(5):
    model.train()
    for x, y in train_loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    evaluate(model, val_loader)
    model.train(False)
    run_eval(model, test_loader)
""",
        # Lightning switches modes itself
        """
import torch
import torch.nn as nn
import lightning as L

class LitNet(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.2), nn.Linear(16, 2))
    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())

L.Trainer(max_epochs=3).fit(LitNet(), train_loader, val_loader)
""",
        # Monte-Carlo dropout on purpose
        """
import torch
import torch.nn as nn

def enable_dropout(model):
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()

def mc_dropout_predict(model, loader, passes=20):
    enable_dropout(model)
    with torch.no_grad():
        for x, _ in loader:
            samples = torch.stack([model(x) for _ in range(passes)])
    return samples

model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 1))
preds = mc_dropout_predict(model, test_loader)
""",
        # BatchNorm without running stats behaves the same in both modes
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16, track_running_stats=False), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
opt = torch.optim.Adam(model.parameters())
for epoch in range(5):
    for x, y in train_loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        for x, y in val_loader:
            acc = (model(x).argmax(1) == y).float().mean()
""",
        # eval() after each epoch, train() at the start of the next one (inside the helper)
        """
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.1), nn.Linear(32, 2))
optimizer = torch.optim.Adam(model.parameters())

def train_one_epoch(model, loader):
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

for epoch in range(10):
    train_one_epoch(model, train_loader)
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            F.cross_entropy(model(x), y)
""",
        # a model from an unknown library: not flagged
        """
import torch
import timm
model = timm.create_model("resnet50", pretrained=True, num_classes=10)
with torch.no_grad():
    for x, y in test_loader:
        preds = model(x).argmax(1)
""",
        # Hugging Face Trainer switches modes around evaluation
        """
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
model = AutoModelForSequenceClassification.from_pretrained("bert-base-uncased", num_labels=2)
trainer = Trainer(model=model, args=TrainingArguments("out", eval_strategy="epoch"), train_dataset=train_ds, eval_dataset=val_ds)
trainer.train()
print(trainer.evaluate())
""",
        # eval() inside the evaluation loop, before the forward pass
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 2))
opt = torch.optim.Adam(model.parameters())
for epoch in range(3):
    for x, y in train_loader:
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        for x, y in test_loader:
            model.eval()
            acc = (model(x).argmax(1) == y).float().mean()
""",
        # from_pretrained() returns the model in eval mode; a model family without dropout
        """
import torch
from transformers import AutoModelForCausalLM, BertForSequenceClassification
bert = BertForSequenceClassification.from_pretrained("bert-base-uncased")
with torch.no_grad():
    for batch in test_dataloader:
        preds = bert(**batch).logits.argmax(-1)
llm = AutoModelForCausalLM.from_pretrained("meta-llama/Llama-2-7b-hf")
llm.train()
with torch.no_grad():
    for batch in test_dataloader:
        preds = llm(**batch).logits.argmax(-1)
""",
        # eval() on purpose before training: frozen BatchNorm statistics while fine-tuning the head
        """
import torch
import torchvision
model = torchvision.models.resnet50(weights="DEFAULT")
opt = torch.optim.SGD(model.fc.parameters(), lr=0.01)
for epoch in range(5):
    model.eval()
    for x, y in train_loader:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
""",
        # model.forward(x) after model.eval(): the forward runs in the mode of the model
        """
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)
        self.drop = nn.Dropout(0.3)
    def forward(self, x):
        return self.fc(self.drop(x))

class Trainer:
    def __init__(self, model):
        self.model = model
    def evaluate(self, val_loader):
        self.model.eval()
        with torch.no_grad():
            for x, _ in val_loader:
                print(self.model.forward(x).argmax(1))

if __name__ == "__main__":
    Trainer(Net()).evaluate(val_loader)
""",
        # the teacher is put in eval mode; the trained student keeps train()
        """
import torch
import torch.nn as nn
student = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.Linear(16, 2))
teacher = nn.Sequential(nn.Linear(8, 64), nn.Dropout(0.2), nn.Linear(64, 2))
opt = torch.optim.Adam(student.parameters())
for epoch in range(10):
    teacher.eval()
    for x, y in train_loader:
        with torch.no_grad():
            t = teacher(x)
        opt.zero_grad()
        nn.functional.kl_div(student(x).log_softmax(-1), t.softmax(-1)).backward()
        opt.step()
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        texts = [f.ctx.source.text for f in program.files]
        if not any("torch" in t for t in texts):
            return
        yield from self._missing_eval(program)
        yield from self._never_back(program)
        yield from self._trains_loaded_in_eval(program)

    # -- a model loaded in eval mode and trained without train() ------------------------------------
    def _trains_loaded_in_eval(self, program) -> Iterable[Finding]:
        """``from_pretrained()`` returns the model in eval mode: a training loop that runs it with no
        ``train()`` anywhere before its first training forward pass trains with dropout off."""
        reported: Set[int] = set()
        for tl in program_loops(program):
            trains = [e for e in tl.events if e.kind in ("backward", "optimizer_step") and e.level == "batch"]
            if not trains:
                continue
            forwards = sorted((e for e in tl.events if e.kind == "forward" and e.level == "batch"
                               and not in_eval_loop(program, e)), key=lambda e: e.order)
            if not forwards:
                continue
            fwd = forwards[0]
            fpf = program.file_of(fwd.facts)
            if fpf is None:
                continue
            model = ObjectRef(forward_target(fwd.call), fwd.facts, fwd.scope, fwd.stmt)
            if mode_before(program, fpf, fwd.scope, fwd.stmt, model=model) != "initial":
                continue
            # a switch anywhere in the loop (also after the forward: evaluate() ending with model.train())
            # only helps from the second pass on; a train() before the loop would have made the mode "train"
            ml = forward_layers(program, fpf, fwd.call, fwd.scope, fwd.stmt)
            if ml is None or not ml.starts_in_eval or not ml.layers or id(ml.layers[0].node) in reported:
                continue
            reported.add(id(ml.layers[0].node))
            ctx = fpf.ctx
            layer = ml.layers[0]
            related = [Related(layer.file.ctx.path, layer.file.ctx.span(layer.node), "from_pretrained() returns the model in eval mode")]
            who = dotted(forward_target(fwd.call)) or "the model"
            message = (
                f"`{who}` ({ml.name}) is trained in eval mode: from_pretrained() returns it with model.eval() applied "
                f"and no `{who}.train()` runs before the training loop, so its dropout ({ml.counts()}) stays off while it fine-tunes"
            )
            yield self.finding(ctx, ctx.span(fwd.call), message,
                               hint=f"Call {who}.train() before the training loop (and after each evaluation)",
                               related=related)

    # -- evaluation in train mode -------------------------------------------------------------
    def _missing_eval(self, program) -> Iterable[Finding]:
        for loop in eval_loops(program) + inference_calls(program):
            if loop.on_purpose:
                continue
            # the mode at the first model call (``model.eval()`` may sit inside the loop, before it, or
            # inside the helper that calls the model); ``model.forward(x)`` runs in the mode of ``model``
            targets = [(h, program.file_of(h.facts)) for h in loop.model_calls()]
            if not targets or any(pf is None for _, pf in targets):
                continue
            i = min(range(len(loop.forwards)), key=lambda k: loop.forwards[k][1].index)
            first = targets[i][0]
            model = ObjectRef(first.module, first.facts, first.scope, first.stmt)
            mode = loop.mode_at(program, i, model=model)
            if mode not in ("train", "initial"):
                continue
            layers = None
            for h, hpf in targets:
                ml = forward_layers(program, hpf, h.call, h.scope, h.stmt, h.target)
                if ml is not None and ml.layers:
                    layers = (h.call, ml, hpf)
                    break
            if layers is None:
                continue
            call, ml, cpf = layers
            if mode == "initial" and ml.starts_in_eval:
                continue  # from_pretrained() returns the model in eval mode
            ctx = loop.pf.ctx
            who = dotted(call.func) or "the model"
            state = "after a .train() call" if mode == "train" else "with no model.eval() anywhere before it"
            if ml.pickled:
                message = (
                    f"`{who}` (a module unpickled by torch.load(), {state}) is evaluated in the mode it was saved in, "
                    f"training mode when a training script saved it ({loop.evidence}): {ml.effect()}, so the "
                    f"{'metrics' if loop.node is not None else 'predictions'} are noisy and biased"
                )
            else:
                message = (
                    f"`{who}` ({ml.name}, with {ml.counts()}) is evaluated in training mode ({loop.evidence}, {state}): "
                    f"{ml.effect()}, so the {'metrics' if loop.node is not None else 'predictions'} are noisy and biased"
                )
            related = [Related(l.file.ctx.path, l.file.ctx.span(l.node),
                               l.label if ml.pickled else f"mode-dependent layer: {l.label}") for l in ml.layers[:4]]
            related.insert(0, Related(cpf.ctx.path, cpf.ctx.span(call), "the model is called here"))
            yield self.finding(
                ctx,
                ctx.head_span(loop.node) if loop.node is not None else ctx.span(call),
                message,
                hint="Call model.eval() before the evaluation loop (and model.train() before training resumes)",
                related=related,
            )

    # -- eval() and never train() again ---------------------------------------------------------
    def _never_back(self, program) -> Iterable[Finding]:
        reported: Set[int] = set()
        for tl in program_loops(program):
            trains = [e for e in tl.events if e.kind in ("backward", "optimizer_step") and e.level == "batch"]
            if not trains:
                continue
            modes = loop_mode_calls(program, tl)
            evals = [m for m in modes if m.mode == "eval"]
            if not evals or any(m.mode in ("train", "unknown") for m in modes):
                continue
            forwards = [e for e in tl.events if e.kind == "forward" and e.level == "batch"]
            for m in evals:
                if id(m.call) in reported or eval_for_last_pass(m, tl) or not evaluation_follows(program, m, tl):
                    continue
                # the training forward passes (not the evaluation's own) that run the model this eval() switches
                target = [e for e in forwards
                          if not (e.scope is m.scope and m.scope is not tl.scope) and not in_eval_loop(program, e)
                          and same_object(program, m.ref(), ObjectRef(e.call.func, e.facts, e.scope, e.stmt))]
                if not target:
                    continue
                fwd = target[0]
                fpf = program.file_of(fwd.facts)
                mpf = program.file_of(m.facts)
                if fpf is None or mpf is None:
                    continue
                ml = forward_layers(program, fpf, fwd.call, fwd.scope, fwd.stmt)
                if ml is None or not ml.layers or ml.pickled:
                    continue
                reported.add(id(m.call))
                ctx = mpf.ctx
                first = trains[0]
                bpf = program.file_of(first.facts)
                related = []
                if bpf is not None:
                    related.append(Related(bpf.ctx.path, bpf.ctx.span(first.call), "training continues here in eval mode"))
                related += [Related(l.file.ctx.path, l.file.ctx.span(l.node), f"mode-dependent layer: {l.label}") for l in ml.layers[:3]]
                unit = "epoch" if tl.unit == "epoch" else "iteration"
                loop_text = "the training loop" if tl.count is None else f"the training loop of {tl.describe_count()}"
                message = (
                    f"`{m.receiver}.eval()` runs inside {loop_text}, but `{m.receiver}.train()` "
                    f"is never called again: after the first evaluation every {unit} trains {ml.name} "
                    f"({ml.counts()}) with {ml.off_effect()}"
                )
                yield self.finding(
                    ctx,
                    ctx.span(m.call),
                    message,
                    hint=f"Call {m.receiver}.train() at the start of each {unit}'s training (or at the end of the evaluation)",
                    related=related,
                )
