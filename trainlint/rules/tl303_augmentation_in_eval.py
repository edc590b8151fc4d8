from __future__ import annotations

from typing import Iterable, List

from trainlint.analysis.data import PipelineUse, data_model
from trainlint.analysis.roles import word_role_of_name
from trainlint.analysis.transforms import might_augment, random_op_names, text_might_augment
from trainlint.findings import Finding, Related, Severity
from trainlint.rules import Rule


class AugmentationInEval(Rule):
    """
    ## What it does
    Flags random augmentation in a validation or test pipeline: a `RandomCrop`, `RandomHorizontalFlip`,
    `ColorJitter`, `RandAugment`, an albumentations `HorizontalFlip(p=0.5)`, a kornia `Random*` op, or a
    `random.random() < p` branch in a `Dataset.__getitem__`, reaching a dataset that is used for
    evaluation. The evaluation role is read from the structure of the program: `train=False`,
    `split="val"`, a `"val"`/`"test"` folder, a `data_transforms["val"]` entry, the loader being iterated
    under `torch.no_grad()` / after `model.eval()` without `backward()` (also when a helper builds and
    returns it: `data_tar = load_testing(...)` then `test(model, data_tar)`), Lightning's `val_dataloader()` and
    `trainer.validate()`, Hugging Face's `eval_dataset=`. The classic copy-paste —
    `test_set = CIFAR10(train=False, transform=train_transform)` — is reported at the argument, with the
    random ops as related locations; so is a validation subset cut with `random_split` from a dataset
    that augments (the subsets share its transform). Pipelines are followed through names, dict entries,
    lists built with `append`, helper functions (`build_transform(is_train=False)`, with the `if` on the
    argument folded), and imports from other files of the program. A choice on an attribute that a library
    base leaves None by default takes the default arm: in a `LightningDataModule`,
    `self.train_transform() if self.val_transforms is None else self.val_transforms` is the training
    pipeline unless the class sets `val_transforms` itself.

    ## Why is this bad?
    Evaluation must measure the model, not the dice: with random crops and flips the validation loss and
    accuracy change from run to run and are biased low, so model selection, early stopping and the
    comparison with a baseline are made on noise. Karpathy's recipe asks for a trustworthy, deterministic
    evaluation before anything else — fix the seed, evaluate the whole test set, keep every run comparable
    (Karpathy 2019). Test-time augmentation is the one
    place augmented evaluation belongs, and there the augmented passes are averaged on purpose
    (test-time augmentation, TTA).

    ## Example
    ```python
    import torch
    import torchvision
    import torchvision.transforms as T

    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    train_set = torchvision.datasets.CIFAR10("data", train=True, transform=train_tf)
    test_set = torchvision.datasets.CIFAR10("data", train=False, transform=train_tf)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=256)
    ```

    ## Use instead
    A deterministic pipeline for evaluation:
    ```python
    import torch
    import torchvision
    import torchvision.transforms as T

    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    test_tf = T.Compose([T.ToTensor()])
    train_set = torchvision.datasets.CIFAR10("data", train=True, transform=train_tf)
    test_set = torchvision.datasets.CIFAR10("data", train=False, transform=test_tf)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=256)
    ```
    Not flagged: deterministic evaluation transforms (`Resize`, `CenterCrop`, `Normalize`, `ToTensor`,
    `FiveCrop`/`TenCrop`), a flip with `p=1.0`, random ops in a training pipeline, ops added under a
    switch (`if args.augment:`), and test-time augmentation that averages several augmented passes on
    purpose (a loop over passes, names like `tta`).

    ## Fix safety
    No automatic fix: which deterministic ops should replace the random ones (`CenterCrop` for
    `RandomResizedCrop`, nothing for a flip) is a choice for the author.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - [torchvision transforms](https://pytorch.org/vision/stable/transforms.html)
    """

    code = "TL303"
    name = "augmentation-in-eval"
    severity = Severity.ERROR
    summary = "Random augmentation in a validation/test pipeline makes evaluation noisy and biased"
    probe = "augmentation-active"

    bad = (
        # the copy-paste: the training pipeline handed to the test set
        """
import torch
import torchvision
import torchvision.transforms as transforms
transform_train = transforms.Compose([
    transforms.RandomCrop(32, padding=4),
    transforms.RandomHorizontalFlip(),
    transforms.ToTensor(),
])
trainset = torchvision.datasets.CIFAR10(root="./data", train=True, transform=transform_train)
testset = torchvision.datasets.CIFAR10(root="./data", train=False, transform=transform_train)  # expect: TL303
""",
        # the transfer-learning tutorial's dict, with a random op in the "val" entry
        """
import os
import torch
from torchvision import datasets, transforms
data_transforms = {
    "train": transforms.Compose([transforms.RandomResizedCrop(224), transforms.ToTensor()]),
    "val": transforms.Compose([
        transforms.Resize(256),
        transforms.RandomHorizontalFlip(),  # expect: TL303
        transforms.ToTensor(),
    ]),
}
image_datasets = {x: datasets.ImageFolder(os.path.join(data_dir, x), data_transforms[x]) for x in ["train", "val"]}
""",
        # a custom Dataset that flips in __getitem__, also used for validation
        """
import random
import torch
from torch.utils.data import Dataset, DataLoader
class Tiles(Dataset):
    def __init__(self, files):
        self.files = files
    def __len__(self):
        return len(self.files)
    def __getitem__(self, i):
        x, y = torch.load(self.files[i])
        if random.random() < 0.5:
            x = torch.flip(x, dims=[-1])
        return x, y
train_loader = DataLoader(Tiles(train_files), batch_size=32, shuffle=True)
val_loader = DataLoader(Tiles(val_files), batch_size=32)  # expect: TL303
model.eval()
with torch.no_grad():
    for x, y in val_loader:
        acc += (model(x).argmax(1) == y).sum()
""",
        # a helper that builds the pipeline; the eval branch still crops randomly
        """
import torchvision.transforms as T
from torchvision.datasets import ImageFolder
def build_transform(is_train):
    if is_train:
        return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
    return T.Compose([T.Resize(256), T.RandomCrop(224), T.ToTensor()])  # expect: TL303
train_ds = ImageFolder("data/train", transform=build_transform(True))
val_ds = ImageFolder("data/val", transform=build_transform(False))
""",
        # albumentations, validation split by keyword
        """
import albumentations as A
from albumentations.pytorch import ToTensorV2
val_aug = A.Compose([A.Resize(256, 256), A.RandomBrightnessContrast(p=0.3), A.Normalize(), ToTensorV2()])  # expect: TL303
val_ds = SegDataset(root, split="val", transform=val_aug)
""",
        # Lightning DataModule: val_dataloader returns a dataset built with the training transform
        """
import lightning as L
from torch.utils.data import DataLoader
from torchvision import transforms as T
class XrayData(L.LightningDataModule):
    def __init__(self):
        super().__init__()
        self.train_tf = T.Compose([T.RandomCrop(32, padding=4), T.ToTensor()])
    def setup(self, stage=None):
        self.train_ds = XrayDataset(self.train_df, transform=self.train_tf)
        self.val_ds = XrayDataset(self.val_df, transform=self.train_tf)  # expect: TL303
    def train_dataloader(self):
        return DataLoader(self.train_ds, batch_size=64, shuffle=True)
    def val_dataloader(self):
        return DataLoader(self.val_ds, batch_size=64)
""",
        # a validation subset of an augmented dataset keeps its transform
        """
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, random_split
from torchvision.datasets import ImageFolder
tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
full = ImageFolder("photos", transform=tf)  # expect: TL303
train_ds, val_ds = random_split(full, [0.9, 0.1])
val_loader = DataLoader(val_ds, batch_size=64)
model.eval()
with torch.no_grad():
    for x, y in val_loader:
        correct += (model(x).argmax(1) == y).sum()
""",
        # GPU augmentation (kornia) applied to the batch in the validation loop too
        """
import torch
import kornia.augmentation as K
gpu_aug = K.AugmentationSequential(K.RandomHorizontalFlip(), K.RandomAffine(degrees=10))
for epoch in range(10):
    for x, y in train_loader:
        loss = crit(model(gpu_aug(x)), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            x = gpu_aug(x)  # expect: TL303
            acc = (model(x).argmax(1) == y).float().mean()
""",
    )
    good = (
        # subsets built from two dataset objects, each with its own transform
        """
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader, Subset, random_split
from torchvision.datasets import ImageFolder
train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
eval_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
train_part, val_part = random_split(range(len(ImageFolder("photos"))), [0.9, 0.1])
val_ds = Subset(ImageFolder("photos", transform=eval_tf), list(val_part))
val_loader = DataLoader(val_ds, batch_size=64)
with torch.no_grad():
    for x, y in val_loader:
        correct += (model(x).argmax(1) == y).sum()
""",
        # deterministic evaluation pipeline
        """
import torchvision
import torchvision.transforms as T
train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
val_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
train_ds = torchvision.datasets.ImageFolder("data/train", train_tf)
val_ds = torchvision.datasets.ImageFolder("data/val", val_tf)
""",
        # TenCrop evaluation and a p=1 flip are deterministic
        """
import torchvision.transforms as T
from torchvision.datasets import ImageFolder
tta_free = T.Compose([T.Resize(256), T.TenCrop(224), T.Lambda(lambda crops: torch.stack([T.ToTensor()(c) for c in crops]))])
flipped = T.Compose([T.Resize(224), T.RandomHorizontalFlip(p=1.0), T.ToTensor()])
val_a = ImageFolder("data/val", transform=tta_free)
val_b = ImageFolder("data/val", transform=flipped)
""",
        # test-time augmentation averaged on purpose
        """
import torch
import torchvision.transforms as T
from torchvision.datasets import ImageFolder
tta_tf = T.Compose([T.RandomResizedCrop(224, scale=(0.8, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])
tta_set = ImageFolder("data/test", transform=tta_tf)
tta_loader = torch.utils.data.DataLoader(tta_set, batch_size=64)
model.eval()
with torch.no_grad():
    probs = torch.stack([torch.cat([model(x).softmax(1) for x, _ in tta_loader]) for _ in range(8)]).mean(0)
""",
        # TTA on the batch inside the eval loop: the dataset itself is deterministic
        """
import torch
import torchvision.transforms as T
from torchvision.datasets import CIFAR10
aug = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
test_set = CIFAR10("data", train=False, transform=T.ToTensor())
loader = torch.utils.data.DataLoader(test_set, batch_size=100)
with torch.no_grad():
    for x, y in loader:
        logits = torch.stack([model(aug(x)) for _ in range(10)]).mean(0)
""",
        # random ops only in the training pipeline
        """
import torchvision.transforms as T
from torchvision.datasets import CIFAR10
train_set = CIFAR10("data", train=True, transform=T.Compose([T.RandomCrop(32, padding=4), T.ToTensor()]))
test_set = CIFAR10("data", train=False, transform=T.Compose([T.ToTensor()]))
""",
        # a Dataset that only augments when asked to
        """
import random
import torch
from torch.utils.data import Dataset, DataLoader
class Tiles(Dataset):
    def __init__(self, files, train=False):
        self.files = files
        self.train = train
    def __getitem__(self, i):
        x, y = torch.load(self.files[i])
        if self.train and random.random() < 0.5:
            x = torch.flip(x, dims=[-1])
        return x, y
val_loader = DataLoader(Tiles(val_files, train=False), batch_size=32)
with torch.no_grad():
    for x, y in val_loader:
        out = model(x)
""",
        # eval augmentation behind an explicit switch
        """
import torchvision.transforms as T
from torchvision.datasets import CIFAR10
ops = [T.ToTensor()]
if args.eval_flip:
    ops.append(T.RandomHorizontalFlip())
test_set = CIFAR10("data", train=False, transform=T.Compose(ops))
""",
    )

    @classmethod
    def may_fire(cls, text: str, path: str) -> bool:
        # a pipeline (transform / augment) or a dataset that builds its samples (__getitem__), and a random
        # op that may be in it (check_program's own test, on the file's program of one file)
        lower = text.lower()
        return ("transform" in lower or "__getitem__" in text or "augment" in lower) and text_might_augment(text)

    def check(self, ctx) -> Iterable[Finding]:
        # a file that runs nothing by itself is checked on its own too (a dataset module linted alone)
        program = self.module_program(ctx)
        if program is not None:
            yield from self.check_program(program)

    def check_program(self, program) -> Iterable[Finding]:
        if not might_augment(program):
            return
        model = data_model(program)
        # the very pipeline object a training dataset gets (not one built again by a helper call)
        train_nodes = {id(u.pipeline.node) for u in model.train_uses() if not u.pipeline.label.endswith("()")}
        for use in model.eval_uses():
            if use.tta or not use.structural or use.pipeline.gated:
                continue
            ops = use.pipeline.ungated_random_ops()
            if not ops or len(ops) != len(use.pipeline.random_ops):
                continue
            yield from self._report(use, ops, id(use.pipeline.node) in train_nodes)

    def _report(self, use: PipelineUse, ops: List, shared: bool) -> Iterable[Finding]:
        names = random_op_names(ops)
        label = use.pipeline.label or "the pipeline"
        # at the argument when the pipeline is (also) the training one, or its file is not part of the run
        split = use.cut or "_split() subset" in use.evidence  # subsets share the dataset's transform
        shared = shared or split
        at_arg = shared or use.pipeline.kind == "dataset-class" or _train_named(label) or not getattr(ops[0].file, "in_run", True)
        if at_arg:
            ctx, node = use.file.ctx, use.arg
            related = [Related(o.file.ctx.path, o.file.ctx.span(o.node), f"random op: {o.name}") for o in ops[:6]]
            what = "the training pipeline" if (shared or _train_named(label)) else f"`{label}`"
            if use.pipeline.kind == "dataset-class":
                what = f"`{label}`, whose __getitem__ augments at random,"
            where = "An evaluation batch" if use.site == "batch" else "An evaluation dataset"
            message = (
                f"{where} ({use.evidence}) gets {what} with {len(ops)} random op(s) "
                f"({names}): validation metrics become noisy and biased"
            )
        else:
            ctx, node = ops[0].file.ctx, ops[0].node
            related = [Related(use.file.ctx.path, use.file.ctx.span(use.arg), f"the pipeline feeds an evaluation dataset ({use.evidence})")]
            related += [Related(o.file.ctx.path, o.file.ctx.span(o.node), f"random op: {o.name}") for o in ops[1:6]]
            message = (
                f"Random augmentation ({names}) in the evaluation pipeline `{label}` ({use.evidence}): "
                "validation metrics become noisy and biased"
            )
        span = ctx.span(node)
        # the same file may belong to several programs (two entry scripts): the engine keeps one finding
        hint = (
            "Evaluate with a deterministic pipeline (Resize/CenterCrop/Normalize/ToTensor); keep random "
            "ops for training, or average several augmented passes on purpose (TTA)"
        )
        if split:
            hint = (
                "Subsets of one dataset share its transform: build a second dataset with a deterministic "
                "transform and take the validation indices from it (Subset(eval_ds, val_subset.indices))"
            )
        yield self.finding(ctx, span, message, hint=hint, related=related)


def _train_named(label: str) -> bool:
    return word_role_of_name(label.split("[")[0].rstrip("()")) == "train"
