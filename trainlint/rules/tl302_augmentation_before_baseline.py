from __future__ import annotations

from typing import Iterable

from trainlint.analysis.data import data_model
from trainlint.analysis.roles import PATH_EVIDENCE
from trainlint.analysis.transforms import might_augment, random_op_names
from trainlint.analysis.seeds import may_train
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule


class AugmentationBeforeBaseline(Rule):
    """
    ## What it does
    Flags a training pipeline that applies random augmentation with no way to switch it off:
    `RandomResizedCrop`, `RandomHorizontalFlip`, `ColorJitter`, `RandAugment`... in a `Compose` (torchvision
    and `transforms.v2`, albumentations with `p > 0`, kornia `Random*`), or a `random.random() < p` branch
    in a `Dataset.__getitem__` (or a helper it calls), that reaches a dataset used for training — or a
    pipeline applied to the batch inside the training loop (`x = gpu_aug(x)`) — and none of it sits
    behind a flag. The pipeline is reported once, at its `Compose` (at the first random branch for a
    `Dataset` class), naming the random ops. The training role is read from structure: `train=True` (or a
    torchvision dataset's default), `split="train"`, a `"train"` folder, the loader iterated in the loop
    that calls `backward()` (also inside a helper in another file), Lightning's `train_dataloader()`.

    Behind a flag means: the random ops are added under `if args.augment:` / `if cfg.aug:` or a ternary,
    the pipeline is chosen by a config or argparse value, it is built by a helper or a `Dataset` whose
    `augment=`-style parameter (or a `train=` parameter left at its default) turns the ops off, or the
    probability comes from the config (`p=args.flip_p`).

    ## Why is this bad?
    Augmentation is a regularizer, and regularization comes after a baseline. Karpathy's recipe: when you
    build the first end-to-end training and evaluation skeleton, "simplify" — turn off any unnecessary
    fanciness, in particular data augmentation, which is one more opportunity to introduce a silly bug
    (he cites flipping images without flipping their labels); add it later, one change at a time, as the
    second-best regularizer after more data (Karpathy 2019).
    A pipeline that can only run augmented makes that first baseline — and the overfit-one-batch check —
    impossible without editing code. This is recipe advice (info), not a bug.

    ## Example
    ```python
    import torch
    import torchvision
    import torchvision.transforms as T

    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    train_set = torchvision.datasets.CIFAR10("data", train=True, transform=train_tf)
    loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True)
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```

    ## Use instead
    Put the random ops behind a switch, and get a baseline with it off:
    ```python
    import argparse
    import torch
    import torchvision
    import torchvision.transforms as T

    parser = argparse.ArgumentParser()
    parser.add_argument("--augment", action="store_true")
    args = parser.parse_args()
    ops = [T.ToTensor()]
    if args.augment:
        ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] + ops
    train_set = torchvision.datasets.CIFAR10("data", train=True, transform=T.Compose(ops))
    loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True)
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```
    Not flagged: deterministic preprocessing (`Resize`, `CenterCrop`, `Normalize`, `ToTensor`), pipelines
    only used for evaluation (that is TL303's business), pipelines a library file defines but no
    training program uses, and datasets whose role is not clear from the code.

    ## Fix safety
    No automatic fix: where the switch lives (argparse, a config file, a helper parameter) is the
    author's choice.

    ## References
    - Karpathy, "A Recipe for Training Neural Networks" — "simplify", "don't be a hero", regularize later
      (Karpathy 2019)
    - Holden, ["My Neural Network isn't working! What should I do?"](https://theorangeduck.com/page/neural-network-not-working) (2017), on augmentation as a form of regularization
    """

    code = "TL302"
    name = "augmentation-before-baseline"
    severity = Severity.INFO
    summary = "Random augmentation in the training pipeline with no switch to get a baseline without it"
    probe = "augmentation-active"

    bad = (
        # the plain CIFAR script
        """
import torch
import torchvision
import torchvision.transforms as transforms
transform_train = transforms.Compose([  # expect: TL302
    transforms.RandomCrop(32, padding=4),
    transforms.RandomHorizontalFlip(),
    transforms.ToTensor(),
])
trainset = torchvision.datasets.CIFAR10(root="./data", train=True, transform=transform_train)
trainloader = torch.utils.data.DataLoader(trainset, batch_size=128, shuffle=True)
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # transforms.v2, the role read from the training loop
        """
import torch
from torchvision.transforms import v2
from torchvision.datasets import ImageFolder
tf = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(224), v2.ColorJitter(0.4, 0.4, 0.4), v2.ToDtype(torch.float32, scale=True)])  # expect: TL302
ds = ImageFolder(root, transform=tf)
loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
for x, y in loader:
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
""",
        # albumentations
        """
import albumentations as A
from albumentations.pytorch import ToTensorV2
train_aug = A.Compose([  # expect: TL302
    A.HorizontalFlip(p=0.5),
    A.ShiftScaleRotate(shift_limit=0.05, scale_limit=0.1, rotate_limit=15, p=0.5),
    A.RandomBrightnessContrast(p=0.2),
    A.Normalize(),
    ToTensorV2(),
])
train_ds = LesionDataset(df_train, split="train", transform=train_aug)
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # a list built with appends, none of them conditional
        """
import torchvision.transforms as T
from torchvision.datasets import CIFAR100
ops = [T.RandomCrop(32, padding=4)]
ops.append(T.RandomHorizontalFlip())
ops += [T.ToTensor(), T.Normalize(mean, std)]
train_set = CIFAR100("data", train=True, transform=T.Compose(ops))  # expect: TL302
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # a Dataset whose __getitem__ flips at random, used for training
        """
import random
import numpy as np
from torch.utils.data import Dataset, DataLoader
class Patches(Dataset):
    def __init__(self, arrays):
        self.arrays = arrays
    def __len__(self):
        return len(self.arrays)
    def __getitem__(self, i):
        x, y = self.arrays[i]
        if np.random.rand() < 0.5:  # expect: TL302
            x = np.fliplr(x).copy()
        return x, y
train_loader = DataLoader(Patches(train_arrays), batch_size=16, shuffle=True)
for x, y in train_loader:
    loss = loss_fn(net(x), y)
    loss.backward()
""",
    )
    good = (
        # augmentation behind a flag
        """
import torchvision.transforms as T
from torchvision.datasets import CIFAR10
ops = []
if args.augment:
    ops += [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
ops.append(T.ToTensor())
train_set = CIFAR10("data", train=True, transform=T.Compose(ops))
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # chosen by a ternary on the config
        """
import torchvision.transforms as T
from torchvision.datasets import ImageFolder
aug_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
plain_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
train_ds = ImageFolder("data/train", transform=aug_tf if cfg.augment else plain_tf)
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # deterministic preprocessing only
        """
import torchvision.transforms as T
from torchvision.datasets import ImageFolder
tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
train_ds = ImageFolder("data/train", transform=tf)
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # a helper with an augment= switch
        """
import torchvision.transforms as T
from torchvision.datasets import CIFAR10
def make_transform(augment=True):
    ops = [T.ToTensor()]
    if augment:
        ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] + ops
    return T.Compose(ops)
train_set = CIFAR10("data", train=True, transform=make_transform())
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # probability from the config
        """
import torchvision.transforms as T
from torchvision.datasets import CIFAR10
train_set = CIFAR10("data", train=True, transform=T.Compose([T.RandomHorizontalFlip(p=args.flip_p), T.ToTensor()]))
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # a pipeline nobody trains with (a library file)
        """
import torchvision.transforms as T
IMAGENET_TRAIN = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
        # evaluation only (that is TL303's concern, not this rule's)
        """
import torchvision.transforms as T
from torchvision.datasets import CIFAR10
test_set = CIFAR10("data", train=False, transform=T.Compose([T.RandomCrop(32, padding=4), T.ToTensor()]))
for epoch in range(10):
    train_one_epoch(model, optimizer)
""",
    )

    def check_program(self, program) -> Iterable[Finding]:
        if not might_augment(program):
            return
        model = data_model(program)
        plain = {id(u.file) for u in model.plain_train_uses()}
        trains = None
        for use in model.train_uses():
            p = use.pipeline
            if not use.structural or p.gated:
                continue
            if id(use.file) in plain:
                continue  # the same file also trains without augmentation: the baseline exists
            if use.evidence.startswith(PATH_EVIDENCE):
                # a folder name says "train": only a program that trains has a training pipeline (a
                # notebook that only looks at the data does not)
                trains = may_train(program) if trains is None else trains
                if not trains:
                    continue
            ops = p.random_ops
            if not ops or any(o.gated for o in ops):
                continue
            if p.kind in ("compose",) :
                ctx, node = p.file.ctx, p.node
            else:
                ctx, node = ops[0].file.ctx, ops[0].node
            span = ctx.span(node)
            names = random_op_names(ops)
            label = f" `{p.label}`" if p.label and p.kind != "dataset-class" else ""
            related = [Related(use.file.ctx.path, use.file.ctx.span(use.arg), f"used for training ({use.evidence})")]
            related += [Related(o.file.ctx.path, o.file.ctx.span(o.node), f"random op: {o.name}") for o in ops[:6] if o.node is not node]
            yield self.finding(
                ctx,
                span,
                f"The training pipeline{label} applies {len(ops)} random op(s) ({names}) with no switch to "
                "turn them off: a first baseline without augmentation is not possible without editing code",
                hint="Put the random ops behind a flag (`if args.augment:`) or a config value, train a "
                "baseline with it off, then add augmentation as a regularizer",
                related=related,
            )
