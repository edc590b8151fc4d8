from __future__ import annotations

from typing import Iterable, List, Set, Tuple

from trainlint.analysis.losses import (
    LossCall,
    is_reconstruction,
    loss_calls,
    prediction_sources,
    program_target_standardization,
    target_standardization,
)
from trainlint.analysis.modules import RANGE_OF, ModelWorld, Op, last_meaningful
from trainlint.analysis.names import dotted
from trainlint.analysis.syntax import short
from trainlint.analysis.objects import FileRef
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule

#: Plain regression losses: the target can have any sign and any magnitude.
REGRESSION_LOSSES = {
    "torch.nn.MSELoss", "torch.nn.L1Loss", "torch.nn.SmoothL1Loss", "torch.nn.HuberLoss",
    "torch.nn.functional.mse_loss", "torch.nn.functional.l1_loss", "torch.nn.functional.smooth_l1_loss",
    "torch.nn.functional.huber_loss",
}
_TEXT_GATE = ("mse_loss", "MSELoss", "l1_loss", "L1Loss", "SmoothL1Loss", "HuberLoss", "huber_loss")
#: Nonnegative outputs that also kill the gradient at the bound: wrong for a regression output whatever
#: the targets (a sample whose pre-activation goes negative stops learning).
ALWAYS = {"relu", "relu6"}
#: Bounded or positive outputs that are right for some targets ([0, 1] pixels with Sigmoid, [-1, 1]
#: images with Tanh, positive rates with Softplus): flagged only with evidence that targets leave the range.
WITH_EVIDENCE = {"softplus", "sigmoid", "tanh", "hardtanh", "hardsigmoid"}

_UNREACHABLE = {
    "relu": "so every target below the mean is negative and can never be reached",
    "relu6": "so every target below the mean is negative and can never be reached",
    "softplus": "so every target below the mean is negative and can never be reached",
    "sigmoid": "so targets below 0 or above 1 (most z-scores) can never be reached",
    "hardsigmoid": "so targets below 0 or above 1 (most z-scores) can never be reached",
    "tanh": "so targets beyond ±1 (about a third of z-scores) can never be reached",
    "hardtanh": "so targets beyond ±1 (about a third of z-scores) can never be reached",
}


class ActivationBeforeRegressionOutput(Rule):
    """
    ## What it does
    Flags a model whose last operation is ReLU / ReLU6 (module or functional, in an `nn.Sequential`,
    in `forward`, or applied to the model's output before the loss) when that model's output is the
    prediction of a regression loss (`nn.MSELoss`, `nn.L1Loss`, `nn.SmoothL1Loss`, `nn.HuberLoss`,
    `F.mse_loss`, `F.l1_loss`, `F.smooth_l1_loss`, `F.huber_loss`); and a model ending with
    Sigmoid / Tanh / Hardtanh / Softplus trained with such a loss when the program standardizes the
    targets (`(y - mean) / std`, `StandardScaler().fit_transform(y)`), so they fall outside the range.

    The model is followed from the loss call back to the model call (through local variables,
    `.squeeze()`/`.view()`, Lightning's `self(x)`), to its definition — an `nn.Sequential` (also built
    from a list), an `nn.Module` subclass (also through base classes and other files of the program),
    a factory function, `DDP(model)`, `torch.compile(model)`, `model.to(device)` — and into its `forward`
    down to the returned expression.

    ## Why is this bad?
    A ReLU output is never negative and a Sigmoid/Tanh output never leaves (0, 1) / (-1, 1): targets
    outside that range can never be reached, the loss floors above zero, and with ReLU every sample whose
    pre-activation goes negative gets zero gradient. Holden lists "wrong activation on the last layer" —
    "the most common mistake is a ReLU on the last layer, so the network can only output positive values;
    for regression, use no activation on the last layer" (Holden 2017, section 7).

    Sigmoid and Tanh outputs are correct for bounded targets — an autoencoder reconstructing
    `ToTensor()` pixels in [0, 1], a GAN generator for images normalized to [-1, 1] — and Softplus is
    the usual choice for a positive quantity. trainlint cannot see the targets' range, so it flags those
    only when the program standardizes its targets (z-scores are signed and exceed 1). ReLU/ReLU6 is
    flagged whatever the targets, except when the target is the model's own input (a reconstruction,
    whose range follows the input pipeline).

    ## Example
    ```python
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, 1), nn.ReLU())
    criterion = nn.MSELoss()
    for x, y in loader:
        loss = criterion(model(x).squeeze(-1), (y - y_mean) / y_std)
        loss.backward()
    ```

    ## Use instead
    End a regression model with a Linear layer:
    ```python
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, 1))
    criterion = nn.MSELoss()
    for x, y in loader:
        loss = criterion(model(x).squeeze(-1), (y - y_mean) / y_std)
        loss.backward()
    ```
    Not flagged: ReLU in hidden layers; a Linear last; classification losses (`CrossEntropyLoss`,
    `BCELoss` after a Sigmoid); `GaussianNLLLoss` / `PoissonNLLLoss` (a positive output is what they
    want); Sigmoid/Tanh/Softplus outputs without evidence that the targets leave their range (min-max
    scaling to [0, 1] or `(y - 0.5) / 0.5` is not such evidence); a reconstruction whose target is the
    model's own (possibly noised) input; a convolutional output (images, depth and density maps are
    nonnegative by nature) unless the targets are standardized; a loss between two model outputs
    (feature matching, distillation); a model whose several returns end differently, or that returns
    a tuple; predictions post-processed by arithmetic (`model(x) * std + mean`).

    ## Fix safety
    No automatic fix: removing the activation changes the model (and a checkpoint's meaning). If the
    targets really are nonnegative, prefer Softplus or predicting a log to a ReLU output.

    ## References
    - Holden, ["My Neural Network isn't working! What should I do?"](https://theorangeduck.com/page/neural-network-not-working) (2017)
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019), on dying ReLUs
    - [torch.nn.MSELoss](https://pytorch.org/docs/stable/generated/torch.nn.MSELoss.html)
    """

    code = "TL101"
    name = "activation-before-regression-output"
    severity = Severity.ERROR
    summary = "A model ending with ReLU/Sigmoid/Tanh feeds a regression loss: targets outside its range are unreachable"
    probe = "output-range"

    bad = (
        # Sequential ending with ReLU, criterion object
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1), nn.ReLU())  # expect: TL101
criterion = nn.MSELoss()
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
""",
        # nn.Module with forward returning the activation of the last layer
        """
import torch
import torch.nn as nn
import torch.nn.functional as F
class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 64)
        self.out = nn.Linear(64, 1)
    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.out(x))  # expect: TL101
        return x.squeeze(1)
def main():
    net = Regressor().to("cuda")
    opt = torch.optim.Adam(net.parameters())
    for x, y in loader:
        loss = F.l1_loss(net(x), y)
        loss.backward()
        opt.step()
if __name__ == "__main__":
    main()
""",
        # Lightning: forward returns torch.relu(...), F.mse_loss in training_step
        """
import torch
import torch.nn.functional as F
import lightning as L
class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(16, 16)
        self.out = torch.nn.Linear(16, 1)
    def forward(self, x):
        return torch.relu(self.out(self.body(x)))  # expect: TL101
    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)
trainer = L.Trainer(max_epochs=3)
trainer.fit(Model(), loader)
""",
        # Tanh head with standardized targets and a criterion passed into a train function
        """
import torch
from torch import nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1), nn.Tanh())  # expect: TL101
    def forward(self, x):
        return self.head(x)
y_train = (y_train - y_train.mean()) / y_train.std()
def train(model, loader, criterion, opt):
    for xb, yb in loader:
        loss = criterion(model(xb), yb)
        loss.backward()
        opt.step()
net = Net()
train(net, loader, nn.SmoothL1Loss(), torch.optim.SGD(net.parameters(), lr=0.1))
""",
        # activation applied to the output in the training loop, from a factory
        """
import torch
import torch.nn as nn
def build_model(d):
    return nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 1))
model = build_model(12)
for x, y in loader:
    pred = torch.relu(model(x)).view(-1)  # expect: TL101
    loss = nn.HuberLoss()(pred, y)
    loss.backward()
""",
        # activation chosen by a string through a helper and a dict, layer registered with add_module
        """
import torch.nn as nn
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}
def get_activation(name):
    return ACTIVATIONS[name]()
class MLP(nn.Module):
    def __init__(self, d, output_activation="linear"):
        super().__init__()
        self.add_module("fc", nn.Linear(d, 1))
        self.out_act = get_activation(output_activation)
    def forward(self, x):
        return self.out_act(self.fc.forward(x))  # expect: TL101
model = MLP(8, output_activation="relu")
for x, y in loader:
    nn.MSELoss()(model(x), y).backward()
""",
    )
    good = (
        # the same model built with its default (linear) output activation
        """
import torch.nn as nn
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}
def get_activation(name):
    return ACTIVATIONS[name]()
class MLP(nn.Module):
    def __init__(self, d, output_activation="linear"):
        super().__init__()
        self.add_module("fc", nn.Linear(d, 1))
        self.out_act = get_activation(output_activation)
    def forward(self, x):
        return self.out_act(self.fc.forward(x))
model = MLP(8)
for x, y in loader:
    nn.MSELoss()(model(x), y).backward()
""",
        # ReLU in hidden layers, Linear last
        """
import torch.nn as nn
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
criterion = nn.MSELoss()
for x, y in loader:
    criterion(model(x), y).backward()
""",
        # classification with ReLU hidden layers
        """
import torch.nn as nn
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
criterion = nn.CrossEntropyLoss()
for x, y in loader:
    criterion(model(x), y).backward()
""",
        # a sigmoid before BCELoss
        """
import torch.nn as nn
model = nn.Sequential(nn.Linear(20, 1), nn.Sigmoid())
criterion = nn.BCELoss()
for x, y in loader:
    criterion(model(x).squeeze(1), y.float()).backward()
""",
        # autoencoder: Sigmoid output reconstructing [0, 1] pixels with MSE
        """
import torch.nn as nn
import torch.nn.functional as F
class AE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(784, 64), nn.ReLU())
        self.dec = nn.Sequential(nn.Linear(64, 784), nn.Sigmoid())
    def forward(self, x):
        return self.dec(self.enc(x))
ae = AE()
for x, _ in loader:
    x = x.view(-1, 784)
    F.mse_loss(ae(x), x).backward()
""",
        # GAN-style Tanh output, images normalized to [-1, 1], L1 reconstruction
        """
import torch.nn as nn
G = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh())
l1 = nn.L1Loss()
for real, _ in loader:
    fake = G(z)
    l1(fake, real.view(-1, 784)).backward()
""",
        # Softplus for a positive quantity with PoissonNLLLoss / GaussianNLLLoss
        """
import torch.nn as nn
rate = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1), nn.Softplus())
crit = nn.PoissonNLLLoss(log_input=False)
for x, counts in loader:
    crit(rate(x), counts).backward()
""",
        # the returns disagree: training output is linear
        """
import torch
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)
    def forward(self, x, clip=False):
        if clip:
            return torch.relu(self.fc(x))
        return self.fc(x)
net = Net()
for x, y in loader:
    torch.nn.functional.mse_loss(net(x), y).backward()
""",
        # residual add after the activation is not an activation output
        """
import torch
import torch.nn as nn
class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    def forward(self, x):
        return x + self.block(x)
net = Res()
for x, y in loader:
    nn.MSELoss()(net(x), y).backward()
""",
        # post-processing arithmetic between the model and the loss
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())
for x, y in loader:
    pred = model(x) * (y_max - y_min) + y_min
    nn.functional.mse_loss(pred, y).backward()
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        if not any(any(t in f.ctx.source.text for t in _TEXT_GATE) for f in program.files):
            return
        world = ModelWorld.of_program(program)
        reported: Set[int] = set()
        evidence_cache: List = []
        for file in world.files:
            # no per-file text gate: the criterion may be imported from another file of the program
            for lc in loss_calls(world, file, REGRESSION_LOSSES, min_args=2):
                a = lc.argument(0, "input")
                b = lc.argument(1, "target")
                if a is None or b is None:
                    continue
                for pred, target in ((a, b), (b, a)):
                    sources = prediction_sources(world, pred, lc.file, lc.scope, lc.stmt)
                    if sources and prediction_sources(world, target, lc.file, lc.scope, lc.stmt):
                        break  # model vs model (feature matching, distillation): the target has the same range
                    for src in sources:
                        for op, model_name, dense in self._last_ops(world, src):
                            if id(op.node) in reported or op.act not in ALWAYS | WITH_EVIDENCE:
                                continue
                            recon = is_reconstruction(src, target)
                            evidence = target_standardization(target, lc)
                            if evidence is None and not recon:
                                if not evidence_cache:
                                    evidence_cache.append(program_target_standardization(world))
                                evidence = evidence_cache[0]
                            if op.act in ALWAYS and not dense:
                                if recon and evidence is None:
                                    continue
                            elif evidence is None:
                                continue
                            reported.add(id(op.node))
                            # a model file shared by several programs (train.py, finetune.py) is judged in
                            # each: the engine keeps one finding per rule and place
                            yield self._finding(op, model_name, lc, evidence)

    def _last_ops(self, world: ModelWorld, src) -> List[Tuple[Op, str, bool]]:
        """(the activation that produces the output, the model's name, is it a dense (conv) output?)"""
        out = []
        for model in src.models:
            chains = world.model_chains(model)
            name = model.name if model.kind == "class" else (dotted(src.call.func) or model.name)
            if src.after:
                # an activation applied to the model's output in the training code
                dense = bool(chains) and all(_dense_output(c) for c in chains)
                out.append((src.after[-1], name, dense))
                continue
            if not chains:
                continue
            lasts = [last_meaningful(c) for c in chains]
            if any(o is None or o.kind != "act" for o in lasts):
                continue
            if len({o.act for o in lasts}) != 1:
                continue
            dense = all(_dense_output(c[: c.index(o)]) for c, o in zip(chains, lasts))
            out.append((lasts[0], name, dense))
        return out

    def _finding(self, op: Op, model_name: str, lc: LossCall, evidence) -> Finding:
        ctx = op.file.ctx
        rng = RANGE_OF.get(op.act or "", "a bounded range")
        loss_span = lc.file.ctx.span(lc.call)
        where = lc.file.ctx.where(loss_span.line, home=ctx)
        message = f"`{model_name}` ends with {op.label}, so its outputs lie in {rng}, and they are the predictions of {lc.label} ({where})"
        if evidence is not None:
            message += f"; the targets are standardized (`{short(evidence[0].ctx.code(evidence[1]), 60)}`), {_UNREACHABLE.get(op.act or '', 'so targets outside that range can never be reached')}"
        else:
            message += "; it can never predict a value below 0"
        if op.act in ALWAYS:
            message += ", and every sample whose pre-activation falls below 0 gets zero gradient (the output can die at 0)"
        related = [Related(lc.file.ctx.path, loss_span, f"the regression loss ({lc.label}) that receives this output")]
        if evidence is not None:
            ef: FileRef = evidence[0]
            related.append(Related(ef.ctx.path, ef.ctx.span(evidence[1]), "the targets are standardized here"))
        return Finding(
            code=self.code, name=self.name, severity=self.severity, message=message, path=ctx.path,
            span=ctx.span(op.node),
            hint="Remove the final activation: a regression output should be a plain Linear layer "
            "(predict log(y) or use Softplus if the target must be positive)",
            related=related,
        )


def _dense_output(chain) -> bool:
    """Does the layer that feeds the final activation make an image-like map (a convolution,
    pixel shuffle, upsampling)? Such outputs — images, depth, density maps — are nonnegative by
    nature, so a ReLU there is a modelling choice, not a range bug."""
    for op in reversed(chain):
        if op.kind in ("dropout", "shape", "act"):
            continue
        return op.kind == "layer" and any(k in op.label for k in ("Conv", "PixelShuffle", "Upsample"))
    return False
