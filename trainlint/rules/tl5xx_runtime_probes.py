"""The probe-only codes TL501-TL508: problems that a runtime probe of ``trainlint run`` finds and that no static
rule describes. Their name, probe, severity and summary are also in ``trainlint.runtime.PROBE_CODES`` (the
runtime side imports no rule module); tests/test_catalogue.py checks that both agree."""

from trainlint.findings import Severity
from trainlint.rules import EngineRule


class RuntimeProbeRule(EngineRule):
    """A finding of a runtime probe: it is found only by ``trainlint run`` (a probe running on a copy of the
    user's model, batch and optimizer); static lint (``trainlint check``) never emits it. It has a catalogue page
    but no ``check`` and no bad/good snippets."""

    #: Found only at runtime (``trainlint.docs`` words the page's header accordingly).
    runtime_only = True


class LossAtInit(RuntimeProbeRule):
    """
    ## What it does
    The `loss-at-init` probe compares the first training loss with what a well-initialized last layer gives:
    ln C for C-class cross-entropy, ln 2 for binary cross-entropy, Var(y) for MSE. It flags a first loss more
    than 3x or less than 1/3 of that value; the evidence is the measured loss, the expected one and the ratio.

    ## Why is this bad?
    Karpathy's recipe, "verify loss @ init" (Karpathy 2019): a wrong initial loss means a bad
    last-layer init (a bias far from the data), a wrong loss or wrong labels, and the first steps are spent
    undoing it (the "hockey stick"). TheDeepChecker flags abs(L0 - ln C) >= ln C (the same upper bound, 2x).

    ## Example
    ```python
    head = nn.Linear(512, 10)
    nn.init.constant_(head.bias, 5.0)
    head.bias.data[0] = 50.0  # class 0 wins every sample at init
    ```

    ## Use instead
    ```python
    head = nn.Linear(512, 10)
    nn.init.zeros_(head.bias)  # first loss ~ ln 10 = 2.30
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [A Recipe for Training Neural Networks](https://karpathy.github.io/2019/04/25/recipe/)
    """

    code = "TL501"
    name = "loss-at-init"
    severity = Severity.WARNING
    summary = "The first loss is far from what a well-initialized last layer gives (ln C, Var(y))"
    probe = "loss-at-init"


class CannotOverfitOneBatch(RuntimeProbeRule):
    """
    ## What it does
    The `overfit-one-batch` probe trains a copy of the model on 16 samples for up to 500 steps (the script's
    optimizer and learning rate, then Adam 1e-3). It flags a loss that stays above 10% of its start, or a
    classification accuracy below 95%; the evidence is the loss series of both attempts.

    ## Why is this bad?
    Karpathy's recipe, "overfit one batch" (Karpathy 2019): a model that cannot memorize a
    handful of samples has a bug or an unfit architecture or learning rate, and more data will not help.
    TheDeepChecker uses 16 samples and flags accuracy < 95%. It is a symptom: the finding is left out when a
    confirmed static finding of the same run names the cause (TL103, TL206).

    ## Example
    ```python
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1), nn.ReLU())
    loss = F.mse_loss(model(x), y)  # y is negative: a ReLU output cannot reach it
    ```

    ## Use instead
    ```python
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))
    loss = F.mse_loss(model(x), y)
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [A Recipe for Training Neural Networks](https://karpathy.github.io/2019/04/25/recipe/)
    """

    code = "TL502"
    name = "cannot-overfit-one-batch"
    severity = Severity.ERROR
    summary = "The model cannot drive the loss on one small batch close to zero"
    probe = "overfit-one-batch"


class BatchMixing(RuntimeProbeRule):
    """
    ## What it does
    The `batch-independence` probe puts a copy of the model in eval mode and computes, for each sample i, the
    sum over j != i of abs(d out_i / d x_j). Any non-zero value is flagged; the evidence lists the offending
    (i, j) pairs.

    ## Why is this bad?
    Karpathy's recipe, "use backprop to chart dependencies" (Karpathy 2019): a `view` where a
    `transpose`/`permute` was meant mixes information across the batch; set the loss of example i to 1.0 and
    only example i may get a gradient. Such a model still trains (measured: loss 0.003 on one batch), so only
    this check finds it. TheDeepChecker's threshold is exactly 0 (abs, not the signed sum).

    ## Example
    ```python
    h = self.encoder(x)             # (batch, time, features)
    h = h.view(h.size(1), h.size(0), -1)  # wrong: mixes samples
    ```

    ## Use instead
    ```python
    h = self.encoder(x)             # (batch, time, features)
    h = h.permute(1, 0, 2)          # (time, batch, features)
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [A Recipe for Training Neural Networks](https://karpathy.github.io/2019/04/25/recipe/)
    """

    code = "TL503"
    name = "batch-mixing"
    severity = Severity.ERROR
    summary = "A sample's output depends on other samples of the batch (a view/reshape across the batch)"
    probe = "batch-independence"


class InputIgnored(RuntimeProbeRule):
    """
    ## What it does
    The `input-independent-baseline` probe trains two copies of the model on the same 16 samples, one with
    every floating-point input zeroed. It flags the zeroed run ending within 5% of the loss on real inputs;
    the evidence is both final losses and their ratio.

    ## Why is this bad?
    Karpathy's recipe, "input-independent baseline" (Karpathy 2019): a model that does no
    better on real data than on zeros has learned nothing from its input (inputs detached, overwritten or never
    reaching the output). TheDeepChecker compares the two loss series (Mann-Whitney, p <= .05). It is a symptom:
    left out when a confirmed static finding of the same run names the cause.

    ## Example
    ```python
    def forward(self, x):
        h = self.features(x)
        return self.head(torch.zeros_like(h))  # the input never reaches the head
    ```

    ## Use instead
    ```python
    def forward(self, x):
        h = self.features(x)
        return self.head(h)
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [A Recipe for Training Neural Networks](https://karpathy.github.io/2019/04/25/recipe/)
    """

    code = "TL504"
    name = "input-ignored"
    severity = Severity.ERROR
    summary = "Training on zeroed inputs reaches the same loss: the model ignores its input"
    probe = "input-independent-baseline"


class DeadUnits(RuntimeProbeRule):
    """
    ## What it does
    The `dead-units` probe records the output of every ReLU-family module (ReLU, ReLU6, LeakyReLU, ELU...) on
    the batch. A unit (a channel, dim 1) is dead when its output is <= 0 for every sample and position; a layer
    with >= 70% dead units is flagged, with the layer's name and its dead share as evidence.

    ## Why is this bad?
    Holden's list, "dead ReLUs" (Holden 2017): a unit that never fires gets no gradient and
    never recovers, so the layer's capacity is lost (a too-high learning rate, a bad init or a large negative
    bias). Thresholds: AUTOTRAINER flags >= 70% of gradient entries exactly 0, DeepDiagnosis >= 70% of ReLU
    outputs <= 0.

    ## Example
    ```python
    layer = nn.Linear(256, 256)
    nn.init.constant_(layer.bias, -10.0)  # every pre-activation is negative
    block = nn.Sequential(layer, nn.ReLU())
    ```

    ## Use instead
    ```python
    layer = nn.Linear(256, 256)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    block = nn.Sequential(layer, nn.ReLU())
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [My neural network isn't working! What should I do?](https://theorangeduck.com/page/neural-network-not-working)
    """

    code = "TL505"
    name = "dead-units"
    severity = Severity.WARNING
    summary = "Most units of a ReLU-family layer never fire on the batch"
    probe = "dead-units"


class UnhealthyGradients(RuntimeProbeRule):
    """
    ## What it does
    The `gradient-health` probe runs one backward pass and one optimizer step on a copy. It flags a trainable
    parameter with a None or all-zero gradient; NaN/Inf (naming the first module whose output was not finite);
    ||g_first||/||g_last|| < 1e-3 with ||g_first|| < 1e-4 (vanishing) or > 70 (exploding); a layer gradient
    norm > 1e3; and log10(||dw||/||w||) below -4 or above 0 on this first step (TheDeepChecker's upper bound,
    -1, is for trained weights: at init a step of 10^-0.5 of the weights is common, e.g. SGD at LR 20 for an
    LSTM language model). The evidence names the parameters and the norms.

    ## Why is this bad?
    Holden's list, "bad gradients" (Holden 2017): parameters that get no gradient never
    train, and vanishing or exploding gradients stall or wreck training. Thresholds: AUTOTRAINER (norm ratio),
    TheDeepChecker (update/weight ratio).

    ## Example
    ```python
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    features = model.encoder(x).detach()  # the encoder gets no gradient
    loss = criterion(model.head(features), y)
    ```

    ## Use instead
    ```python
    features = model.encoder(x)
    loss = criterion(model.head(features), y)
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [My neural network isn't working! What should I do?](https://theorangeduck.com/page/neural-network-not-working)
    """

    code = "TL506"
    name = "unhealthy-gradients"
    severity = Severity.WARNING
    summary = "None/zero/NaN gradients, vanishing or exploding layer gradients, or an update/weight ratio off"
    probe = "gradient-health"


class UnnormalizedData(RuntimeProbeRule):
    """
    ## What it does
    The `input-normalization` probe measures the batch the script feeds the model. It flags a floating-point
    input with abs(mean) > 10 or std > 20 (0..255 pixels: mean ~127, std ~74) and regression targets with
    abs(mean) or std > 100 (targets in the thousands); the evidence is the measured mean and std.

    ## Why is this bad?
    Holden's list, "forgot to normalize your data" (Holden 2017): inputs and targets far
    from zero-mean, unit-scale make the first layers saturate and the loss scale unpredictable, so no default
    learning rate or init fits. Standardize them (or set the last layer's bias and scale to the targets').

    ## Example
    ```python
    x = torch.tensor(image, dtype=torch.float32)  # pixels in 0..255
    loss = criterion(model(x), y)
    ```

    ## Use instead
    ```python
    x = torch.tensor(image, dtype=torch.float32) / 255.0
    x = (x - mean) / std
    loss = criterion(model(x), y)
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [My neural network isn't working! What should I do?](https://theorangeduck.com/page/neural-network-not-working)
    """

    code = "TL507"
    name = "unnormalized-data"
    severity = Severity.WARNING
    summary = "Inputs or regression targets are far from zero-mean, unit-scale"
    probe = "input-normalization"


class SummedLoss(RuntimeProbeRule):
    """
    ## What it does
    The `loss-reduction` probe puts a copy of the model in eval mode and compares loss(batch ++ batch) with
    loss(batch): 1 for a mean, 2 for a sum. A ratio near 2 is flagged; the evidence is the two losses.

    ## Why is this bad?
    A summed loss scales the gradient, and so the effective learning rate, with the batch size: changing the
    batch size silently changes the learning rate, the batch-size/learning-rate link of
    Karpathy 2019 (the linear scaling rule). TheDeepChecker uses the same duplicated-batch
    check. It is only advice (info) when the learning rate was chosen for it.

    ## Example
    ```python
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss = criterion(model(x), y)
    ```

    ## Use instead
    ```python
    criterion = nn.CrossEntropyLoss()  # reduction="mean"
    loss = criterion(model(x), y)
    ```

    ## Fix safety
    No fix: found at runtime.

    ## References
    - [torch.nn.CrossEntropyLoss](https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html)
    """

    code = "TL508"
    name = "summed-loss"
    severity = Severity.INFO
    summary = "The loss is summed over the batch, not averaged: the gradient scales with the batch size"
    probe = "loss-reduction"
