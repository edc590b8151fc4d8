"""TL303 augmentation-in-eval: behaviour the single-file snippets cannot show (pipelines defined in one
file and used in another, roles read from helper functions and Lightning hooks, TTA passes, messages)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths


def _run(root: Path, files: Dict[str, str], codes=("TL303",)):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    options = Options(config=Config(layers=[Selection()]), enabled=list(codes))
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code in codes]


def _where(findings) -> List[str]:
    return sorted(f"{Path(f.path).name}:{f.line}" for f in findings)


TRANSFORMS = """
import torchvision.transforms as T

train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
eval_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
"""


def test_pipeline_imported_from_a_subpackage_and_used_for_the_test_set(tmp_path):
    found = _run(tmp_path, {
        "proj/__init__.py": "",
        "proj/data/__init__.py": "",
        "proj/data/transforms.py": TRANSFORMS,
        "train.py": """
            import torch
            from torchvision.datasets import CIFAR10
            from proj.data.transforms import train_tf, eval_tf

            train_set = CIFAR10("data", train=True, transform=train_tf)
            test_set = CIFAR10("data", train=False, transform=train_tf)

            if __name__ == "__main__":
                main()
        """,
    })
    assert _where(found) == ["train.py:6"]
    f = found[0]
    assert "train=False" in f.message and "RandomResizedCrop, RandomHorizontalFlip" in f.message
    # the random ops are shown where they are, in the other file
    assert {Path(r.path).name for r in f.related} == {"transforms.py"}


def test_module_alias_import_style(tmp_path):
    found = _run(tmp_path, {
        "tfs.py": TRANSFORMS,
        "train.py": """
            import tfs as presets
            from torchvision import datasets

            val_set = datasets.ImageFolder("data/val", transform=presets.train_tf)
            train()
        """,
    })
    assert _where(found) == ["train.py:4"]


def test_role_from_an_evaluate_helper_in_another_file(tmp_path):
    found = _run(tmp_path, {
        "engine.py": """
            import torch

            @torch.no_grad()
            def evaluate(model, loader):
                model.eval()
                return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
        """,
        "train.py": """
            import torch
            import torchvision.transforms as T
            from engine import evaluate
            from mydata import Leaves

            tf = T.Compose([T.RandomRotation(15), T.ToTensor()])
            holdout = torch.utils.data.DataLoader(Leaves(files_b, transform=tf), batch_size=32)

            def main():
                evaluate(model, holdout)

            if __name__ == "__main__":
                main()
        """,
    })
    assert _where(found) == ["train.py:6"]
    assert "evaluate()" in found[0].message


def test_names_alone_are_not_enough(tmp_path):
    # nothing structural says this dataset is used for evaluation
    found = _run(tmp_path, {
        "train.py": """
            import torchvision.transforms as T
            from mydata import Leaves

            tf = T.Compose([T.RandomRotation(15), T.ToTensor()])
            val_ds = Leaves(files_b, transform=tf)
            main()
        """,
    })
    assert found == []


def test_tta_passes_over_a_loader_are_not_flagged(tmp_path):
    found = _run(tmp_path, {
        "predict.py": """
            import torch
            import torchvision.transforms as T
            from torchvision.datasets import ImageFolder

            aug = T.Compose([T.RandomResizedCrop(224, scale=(0.8, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])
            loader = torch.utils.data.DataLoader(ImageFolder("data/test", transform=aug), batch_size=64)

            @torch.no_grad()
            def predict(loader):
                return torch.cat([model(x).softmax(1) for x, _ in loader])

            probs = torch.stack([predict(loader) for _ in range(8)]).mean(0)
            main()
        """,
    })
    assert found == []


def test_eval_loop_nested_in_the_epoch_loop_is_not_tta(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import torch
            import torchvision.transforms as T
            from mydata import Leaves

            tf = T.Compose([T.RandomRotation(15), T.ToTensor()])
            val_loader = torch.utils.data.DataLoader(Leaves(files_b, transform=tf), batch_size=32)
            for epoch in range(10):
                train_one_epoch(model, optimizer)
                model.eval()
                with torch.no_grad():
                    for x, y in val_loader:
                        acc = (model(x).argmax(1) == y).float().mean()
        """,
    })
    assert _where(found) == ["train.py:5"]


def test_helper_with_split_argument_and_role_branches(tmp_path):
    found = _run(tmp_path, {
        "data.py": """
            import albumentations as A
            from albumentations.pytorch import ToTensorV2

            def get_aug(split):
                if split == "train":
                    return A.Compose([A.HorizontalFlip(p=0.5), A.Normalize(), ToTensorV2()])
                return A.Compose([A.Resize(256, 256), A.RandomBrightnessContrast(p=0.2), A.Normalize(), ToTensorV2()])
        """,
        "train.py": """
            from data import get_aug
            from mydata import Polyps

            train_ds = Polyps(root, split="train", transform=get_aug("train"))
            val_ds = Polyps(root, split="val", transform=get_aug("val"))
            main()
        """,
    })
    # the eval branch of the helper is reported, at its random op
    assert _where(found) == ["data.py:7"]
    assert "RandomBrightnessContrast" in found[0].message


def test_reported_once_when_two_entry_scripts_share_the_file(tmp_path):
    files = {
        "data.py": """
            import torchvision.transforms as T
            from torchvision.datasets import CIFAR10

            tf = T.Compose([T.RandomCrop(32, padding=4), T.ToTensor()])
            test_set = CIFAR10("data", train=False, transform=tf)
        """,
        "train_a.py": "from data import test_set\nif __name__ == '__main__':\n    main()\n",
        "train_b.py": "from data import test_set\nif __name__ == '__main__':\n    main()\n",
    }
    found = _run(tmp_path, files)
    assert _where(found) == ["data.py:4"]


def test_dataset_module_linted_alone(tmp_path):
    # a file that runs nothing is checked on its own too
    found = _run(tmp_path, {
        "datasets.py": """
            import torchvision.transforms as T
            from torchvision.datasets import CIFAR10

            train_tf = T.Compose([T.RandomCrop(32, padding=4), T.ToTensor()])

            def get_test_set(root):
                return CIFAR10(root, train=False, transform=train_tf)
        """,
    })
    assert _where(found) == ["datasets.py:7"]


def test_early_return_for_the_eval_instance_skips_the_random_branch(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import random
            import torch
            from torch.utils.data import Dataset, DataLoader

            class Tiles(Dataset):
                def __init__(self, files, train):
                    self.files = files
                    self.train = train

                def __getitem__(self, i):
                    x = torch.load(self.files[i])
                    if not self.train:
                        return x
                    if random.random() < 0.5:
                        x = torch.flip(x, dims=[-1])
                    return x

            val_loader = DataLoader(Tiles(files, train=False), batch_size=8)
            with torch.no_grad():
                for x in val_loader:
                    model(x)
        """,
    })
    assert found == []


def test_random_split_validation_subset_is_reported_at_the_dataset(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import torch
            import torchvision.transforms as T
            from torch.utils.data import DataLoader, random_split
            from torchvision.datasets import ImageFolder

            tf = T.Compose([T.RandomResizedCrop(224), T.ToTensor()])
            full = ImageFolder("photos", transform=tf)
            train_ds, val_ds = random_split(full, [0.9, 0.1])
            val_loader = DataLoader(val_ds, batch_size=64)
            with torch.no_grad():
                for x, y in val_loader:
                    model(x)
        """,
    })
    assert _where(found) == ["train.py:7"]
    assert "random_split() subset `val_ds`" in found[0].message
    assert "Subset" in found[0].hint


def test_subset_transform_reassigned_is_left_alone(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import torch
            import torchvision.transforms as T
            from torch.utils.data import DataLoader, random_split
            from torchvision.datasets import ImageFolder

            tf = T.Compose([T.RandomResizedCrop(224), T.ToTensor()])
            full = ImageFolder("photos", transform=tf)
            train_ds, val_ds = random_split(full, [0.9, 0.1])
            val_ds.dataset.transform = T.Compose([T.Resize(224), T.ToTensor()])
            val_loader = DataLoader(val_ds, batch_size=64)
            with torch.no_grad():
                for x, y in val_loader:
                    model(x)
        """,
    })
    assert found == []


# -- issue 10: validation data cut from an augmenting training set --------------------------------------

CUT_HEAD = """
import torch
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader, random_split, Subset
from torch.utils.data.sampler import SubsetRandomSampler

aug = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
train_ds = torchvision.datasets.CIFAR10("data", train=True, transform=aug)
idx = list(range(len(train_ds)))
train_idx, valid_idx = idx[:45000], idx[45000:]
"""
CUT_TAIL = """
def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            model(x)

for epoch in range(10):
    for x, y in train_loader:
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()
    evaluate(model, valid_loader)
"""


def test_a_subset_random_sampler_over_the_training_dataset_is_augmentation_in_evaluation(tmp_path):
    mid = ("train_loader = DataLoader(train_ds, batch_size=64, sampler=SubsetRandomSampler(train_idx))\n"
           "valid_loader = DataLoader(train_ds, batch_size=64, sampler=SubsetRandomSampler(valid_idx))\n")
    found = _run(tmp_path, {"t.py": CUT_HEAD + mid + CUT_TAIL})
    assert _where(found) == ["t.py:8"] and "SubsetRandomSampler" in found[0].message


def test_a_subset_of_the_training_dataset_is_augmentation_in_evaluation(tmp_path):
    mid = ("train_loader = DataLoader(Subset(train_ds, train_idx), batch_size=64, shuffle=True)\n"
           "val_set = Subset(train_ds, valid_idx)\nvalid_loader = DataLoader(val_set, batch_size=64)\n")
    found = _run(tmp_path, {"t.py": CUT_HEAD + mid + CUT_TAIL})
    assert _where(found) == ["t.py:8"] and "Subset `val_set`" in found[0].message


def test_a_random_split_of_the_training_dataset_is_augmentation_in_evaluation(tmp_path):
    mid = ("tr, va = random_split(train_ds, [45000, 5000])\n"
           "train_loader = DataLoader(tr, batch_size=64, shuffle=True)\nvalid_loader = DataLoader(va, batch_size=64)\n")
    found = _run(tmp_path, {"t.py": CUT_HEAD + mid + CUT_TAIL})
    assert _where(found) == ["t.py:8"]


def test_a_validation_subset_of_a_plain_copy_of_the_dataset_is_fine(tmp_path):
    mid = ("plain_ds = torchvision.datasets.CIFAR10('data', train=True, transform=T.ToTensor())\n"
           "train_loader = DataLoader(train_ds, batch_size=64, sampler=SubsetRandomSampler(train_idx))\n"
           "valid_loader = DataLoader(plain_ds, batch_size=64, sampler=SubsetRandomSampler(valid_idx))\n")
    assert _run(tmp_path, {"t.py": CUT_HEAD + mid + CUT_TAIL}) == []


# --- a LightningDataModule's val_dataloader() falling back to the train pipeline by default -------

DATAMODULE = """
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.datasets import ImageFolder


class ImagesDataModule({base}):
    def __init__(self, data_dir, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_dir = data_dir
        {assign}

    def train_transform(self):
        return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])

    def val_transform(self):
        return T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])

    def val_dataloader(self):
        transforms = {choice}
        dataset = ImageFolder(self.data_dir + "/val", transform=transforms)
        return DataLoader(dataset, batch_size=64, shuffle=False)
"""


def _dm(base="LightningDataModule", assign="", choice="self.train_transform() if self.val_transforms is None else self.val_transforms"):
    return DATAMODULE.replace("{base}", base).replace("{assign}", assign).replace("{choice}", choice)


def test_val_dataloader_defaulting_to_the_train_pipeline_is_flagged(tmp_path):
    found = _run(tmp_path, {"dm.py": _dm()})
    assert [f.line for f in found] == [21]
    assert "RandomResizedCrop, RandomHorizontalFlip" in found[0].message


def test_val_dataloader_default_arm_near_misses(tmp_path):
    cases = {
        # the default arm is the evaluation pipeline
        "right_default": _dm(choice="self.val_transform() if self.val_transforms is None else self.val_transforms"),
        "is_not_none": _dm(choice="self.val_transforms if self.val_transforms is not None else self.val_transform()"),
        # the class sets the attribute itself: which arm runs is not the library's default
        "assigned": _dm(assign="self.val_transforms = self.val_transform()"),
        # not a LightningDataModule: nothing says the attribute starts as None
        "other_base": _dm(base="object"),
    }
    for name, src in cases.items():
        assert _run(tmp_path / name, {"dm.py": src}) == [], name


# -- an evaluation loader built and returned by a helper: the role comes from what the callers do with it

LOADER_HELPERS = """
import torch
from torchvision import datasets, transforms

def load_training(root, batch_size):
    tf = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    data = datasets.ImageFolder(root=root, transform=tf)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)

def load_testing(root, batch_size):
    tf = transforms.Compose([transforms.Resize([256, 256]), {eval_op}, transforms.ToTensor()])
    data = datasets.ImageFolder(root=root, transform=tf)
    test_loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    return test_loader
"""

TRANSFER_SCRIPT = """
import torch
import data_loader

def train(model, optimizer, loader):
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

def test(model, loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return correct

if __name__ == "__main__":
    {binding}
    for epoch in range(10):
        train(model, optimizer, data_src)
        test(model, data_tar)
"""

_TWO_AT_ONCE = "data_src, data_tar = data_loader.load_training('amazon', 32), data_loader.load_testing('webcam', 32)"


def test_an_evaluation_loader_returned_by_a_helper_in_another_file(tmp_path):
    # jindongwang/transferlearning 0178ef2: load_testing() crops at random; office31.py runs its loader
    # in test() under model.eval() and no_grad
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.RandomResizedCrop(224)"),
        "office31.py": TRANSFER_SCRIPT.replace("{binding}", _TWO_AT_ONCE),
    })
    assert _where(found) == ["data_loader.py:10"]
    assert "RandomResizedCrop" in found[0].message and "load_testing(...)" in found[0].message
    assert "test()" in found[0].message


def test_a_returned_loader_bound_one_call_at_a_time(tmp_path):
    binding = "data_src = data_loader.load_training('amazon', 32)\n    data_tar = data_loader.load_testing('webcam', 32)"
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.RandomResizedCrop(224)"),
        "office31.py": TRANSFER_SCRIPT.replace("{binding}", binding),
    })
    assert _where(found) == ["data_loader.py:10"]


def test_a_returned_loader_passed_straight_to_the_evaluation_function(tmp_path):
    script = TRANSFER_SCRIPT.replace("{binding}", "data_src = data_loader.load_training('amazon', 32)").replace(
        "test(model, data_tar)", "test(model, data_loader.load_testing('webcam', 32))")
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.RandomResizedCrop(224)"),
        "office31.py": script,
    })
    assert _where(found) == ["data_loader.py:10"]


def test_a_deterministic_evaluation_loader_from_a_helper_is_fine(tmp_path):
    # the fix: CenterCrop in load_testing()
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.CenterCrop(224)"),
        "office31.py": TRANSFER_SCRIPT.replace("{binding}", _TWO_AT_ONCE),
    })
    assert found == []


def test_a_helper_loader_only_trained_on_is_not_evaluation(tmp_path):
    # near-miss: the loader the helper returns feeds the training loop only (its name says test, its use
    # says train): random crops are augmentation, not noise in the metrics
    binding = "data_src, data_tar = data_loader.load_testing('amazon', 32), data_loader.load_training('webcam', 32)"
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.RandomResizedCrop(224)"),
        "office31.py": TRANSFER_SCRIPT.replace("{binding}", binding).replace("test(model, data_tar)", "pass"),
    })
    assert found == []


def test_a_helper_loader_used_for_training_and_for_evaluation_is_left_alone(tmp_path):
    # near-miss: one helper serves both loops (its callers disagree): nothing says which pipeline the
    # evaluation sees, so nothing is claimed
    binding = "data_src, data_tar = data_loader.load_testing('amazon', 32), data_loader.load_testing('webcam', 32)"
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.RandomResizedCrop(224)"),
        "office31.py": TRANSFER_SCRIPT.replace("{binding}", binding),
    })
    assert found == []


def test_a_helper_loader_whose_callers_say_nothing_is_left_alone(tmp_path):
    # near-miss: the helper is named load_testing and its loader test_loader, but no caller evaluates
    # with it (names alone are not enough)
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.RandomResizedCrop(224)"),
        "office31.py": """
            import data_loader
            data_tar = data_loader.load_testing('webcam', 32)
            print(len(data_tar))
        """,
    })
    assert found == []


def test_a_same_named_helper_of_another_module_is_not_the_callee(tmp_path):
    # near-miss: the evaluation calls another module's load_testing(); the augmenting helper of this one
    # is only ever used for training
    found = _run(tmp_path, {
        "data_loader.py": LOADER_HELPERS.replace("{eval_op}", "transforms.RandomResizedCrop(224)"),
        "other_data.py": LOADER_HELPERS.replace("{eval_op}", "transforms.CenterCrop(224)"),
        "office31.py": TRANSFER_SCRIPT.replace(
            "{binding}", "data_src, data_tar = data_loader.load_training('amazon', 32), other_data.load_testing('webcam', 32)"
        ).replace("import data_loader", "import data_loader\nimport other_data"),
    })
    assert found == []
