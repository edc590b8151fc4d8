"""TL302 augmentation-before-baseline: program-level behaviour (pipelines in library files, switches in
helpers and configs, roles read from training loops in other files, one finding per pipeline)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths

LOOP = """
def fit(model, loader, opt):
    for epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            loss = model(x, y)
            loss.backward()
            opt.step()
"""


def _run(root: Path, files: Dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    options = Options(config=Config(layers=[Selection()]), enabled=["TL302"])
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code == "TL302"]


def _where(findings) -> List[str]:
    return sorted(f"{Path(f.path).as_posix().split('/')[-1]}:{f.line}" for f in findings)


def test_pipeline_in_a_library_file_is_flagged_where_it_is_defined(tmp_path):
    found = _run(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/transforms.py": """
            import torchvision.transforms as T

            TRAIN = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4), T.ToTensor()])
            EVAL = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
        """,
        "pkg/engine.py": LOOP,
        "train.py": """
            import torch
            from torchvision.datasets import ImageFolder
            from pkg import transforms
            from pkg.engine import fit

            def main():
                ds = ImageFolder(data_root, transform=transforms.TRAIN)
                fit(model, torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True), opt)

            if __name__ == "__main__":
                main()
        """,
    })
    assert _where(found) == ["transforms.py:3"]
    f = found[0]
    assert "3 random op(s) (RandomResizedCrop, RandomHorizontalFlip, ColorJitter)" in f.message
    assert any("used for training" in r.message and "backward" in r.message for r in f.related)


def test_library_pipeline_no_program_uses_is_quiet(tmp_path):
    found = _run(tmp_path, {
        "presets.py": """
            import torchvision.transforms as T

            TRAIN = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
        """,
        "train.py": """
            from torchvision.datasets import MNIST
            import torchvision.transforms as T

            ds = MNIST("data", train=True, transform=T.ToTensor())
            main()
        """,
    })
    assert found == []


def test_helper_with_an_augment_switch_is_not_flagged_even_with_its_default(tmp_path):
    found = _run(tmp_path, {
        "aug.py": """
            import torchvision.transforms as T

            def make(train=True, augment=True):
                ops = [T.ToTensor()]
                if train and augment:
                    ops = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] + ops
                return T.Compose(ops)
        """,
        "train.py": """
            from torchvision.datasets import CIFAR10
            from aug import make

            ds = CIFAR10("data", train=True, transform=make())
            main()
        """,
    })
    assert found == []


def test_helper_with_only_a_role_parameter_is_flagged(tmp_path):
    found = _run(tmp_path, {
        "aug.py": """
            import torchvision.transforms as T

            def make(is_train):
                if is_train:
                    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
                return T.Compose([T.ToTensor()])
        """,
        "train.py": """
            from torchvision.datasets import CIFAR10
            from aug import make

            train_set = CIFAR10("data", train=True, transform=make(True))
            test_set = CIFAR10("data", train=False, transform=make(False))
            main()
        """,
    })
    assert _where(found) == ["aug.py:5"]


def test_pipeline_chosen_by_a_config_value(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import torchvision.transforms as T
            from torchvision.datasets import CIFAR10

            if cfg["aug"] == "strong":
                tf = T.Compose([T.RandAugment(), T.RandomCrop(32, padding=4), T.ToTensor()])
            else:
                tf = T.Compose([T.ToTensor()])
            ds = CIFAR10("data", train=True, transform=tf)
            main()
        """,
    })
    assert found == []


def test_dataset_class_augmenting_only_when_asked(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import random
            import torch
            from torch.utils.data import Dataset, DataLoader

            class Crops(Dataset):
                def __init__(self, files, augment=False):
                    self.files = files
                    self.augment = augment

                def __getitem__(self, i):
                    x = torch.load(self.files[i])
                    if self.augment and random.random() < 0.5:
                        x = x.flip(-1)
                    return x

            loader = DataLoader(Crops(files, augment=args.augment), batch_size=8, shuffle=True)
            for x in loader:
                loss = model(x).mean()
                loss.backward()
        """,
    })
    assert found == []


def test_random_pair_sampling_is_not_augmentation(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import random
            from torch.utils.data import Dataset, DataLoader

            class Pairs(Dataset):
                def __getitem__(self, i):
                    a = self.items[i]
                    if random.random() < 0.5:
                        b = random.choice(self.same[a.label])
                        target = 1
                    else:
                        b = random.choice(self.other[a.label])
                        target = 0
                    return a.image, b.image, target

            loader = DataLoader(Pairs(), batch_size=8, shuffle=True)
            for a, b, t in loader:
                loss = model(a, b, t)
                loss.backward()
        """,
    })
    assert found == []


def test_one_finding_per_pipeline_across_entry_scripts(tmp_path):
    found = _run(tmp_path, {
        "data.py": """
            import torch
            import torchvision.transforms as T
            from torchvision.datasets import CIFAR10

            tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
            train_loader = torch.utils.data.DataLoader(CIFAR10("data", transform=tf), batch_size=64, shuffle=True)
        """,
        "train_resnet.py": "from data import train_loader\nif __name__ == '__main__':\n    main()\n",
        "train_vgg.py": "from data import train_loader\nif __name__ == '__main__':\n    main()\n",
    })
    assert _where(found) == ["data.py:5"]
    assert "CIFAR10 defaults to train=True" in found[0].related[0].message


DATASET = """
import random
import torch
from torch.utils.data import Dataset, DataLoader

class Tiles(Dataset):
    def __init__(self, files, train=True):
        self.files = files
        self.train = train

    def __getitem__(self, i):
        x = torch.load(self.files[i])
        if not self.train:
            return x
        if random.random() < 0.5:
            x = torch.flip(x, dims=[-1])
        return x
"""


def test_dataset_train_parameter_left_at_its_default_is_a_switch(tmp_path):
    found = _run(tmp_path, {
        "data.py": DATASET,
        "train.py": """
            from data import Tiles, DataLoader
            loader = DataLoader(Tiles(files), batch_size=8, shuffle=True)
            for x in loader:
                model(x).mean().backward()
        """,
    })
    assert found == []


def test_dataset_train_parameter_passed_explicitly_is_a_role(tmp_path):
    found = _run(tmp_path, {
        "data.py": DATASET,
        "train.py": """
            from data import Tiles, DataLoader
            loader = DataLoader(Tiles(files, train=True), batch_size=8, shuffle=True)
            for x in loader:
                model(x).mean().backward()
        """,
    })
    # reported at the random branch, after the early return that only the eval instance takes
    assert _where(found) == ["data.py:14"]
    assert "a random branch in Tiles.__getitem__" in found[0].message


# -- issue 10: right on real code ----------------------------------------------------------------------

def test_a_program_that_first_trains_a_plain_baseline_is_not_flagged(tmp_path):
    found = _run(tmp_path, {"nb.py": """
        import torch
        import torchvision
        import torchvision.transforms as T

        plain_tf = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
        aug_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])

        def train(model, loader, opt, epochs):
            for epoch in range(epochs):
                for x, y in loader:
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()

        base_set = torchvision.datasets.CIFAR10("data", train=True, transform=plain_tf)
        train(model, torch.utils.data.DataLoader(base_set, batch_size=64, shuffle=True), opt, 5)
        aug_set = torchvision.datasets.CIFAR10("data", train=True, transform=aug_tf)
        train(model2, torch.utils.data.DataLoader(aug_set, batch_size=64, shuffle=True), opt2, 5)
    """})
    assert found == []


LOOKS_AT_DATA = """
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
    ds = ImageFolder("data/train", transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)
    images, labels = next(iter(loader))
    show_grid(images)
"""


def test_a_notebook_that_never_trains_is_not_judged_by_its_folder_names(tmp_path):
    assert _run(tmp_path, {"look.py": LOOKS_AT_DATA}) == []


def test_the_same_pipeline_in_a_program_that_trains_is_flagged(tmp_path):
    trains = LOOKS_AT_DATA + """
    for x, y in loader:
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()
    """
    assert _where(_run(tmp_path, {"look.py": trains})) == ["look.py:5"]


def test_a_program_that_calls_a_training_helper_it_cannot_follow_still_trains(tmp_path):
    # `d2l.train(...)` of a course package re-exported through a star import: the call says it trains
    trains = LOOKS_AT_DATA.replace("show_grid(images)", "d2l.train(loader, net, loss, optimizer, num_epochs=5)")
    assert _where(_run(tmp_path, {"look.py": trains})) == ["look.py:5"]


def test_a_plain_training_set_in_another_file_is_not_a_baseline_of_this_one(tmp_path):
    found = _run(tmp_path, {
        "utils.py": """
            import torchvision
            import torchvision.transforms as T
            def load_mnist():
                return torchvision.datasets.MNIST("data", train=True, transform=T.ToTensor())
        """,
        "look.py": LOOKS_AT_DATA.replace("import torch\n", "import torch\n    import utils\n", 1) + """
    for x, y in loader:
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()
    """})
    assert [w for w in _where(found)] == ["look.py:6"]
