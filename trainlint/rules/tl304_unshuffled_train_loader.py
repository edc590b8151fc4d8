from __future__ import annotations

from typing import Iterable, Optional

from trainlint.analysis.callsite import UNKNOWN
from trainlint.analysis.roles import word_role_of_name
from trainlint.analysis.loaders import (
    LoaderFact, dataset_is_synthetic, dataset_may_stream, dataset_shuffles_itself, is_test_file, loader_facts,
    order_matters, program_mentions, reads_data_once,
)
from trainlint.analysis.names import dotted
from trainlint.findings import Applicability, Edit, Finding, Fix, Related, Span
from trainlint.findings import Severity
from trainlint.rules import Rule
from trainlint.analysis.syntax import keyword_arg, short



class UnshuffledTrainLoader(Rule):
    """
    ## What it does
    Flags a `torch.utils.data.DataLoader` that is used for **training** but reads its dataset in the
    same fixed order every epoch: no `shuffle=True`, no `sampler=` and no `batch_sampler=`. The
    training role is read from the program's structure: the loader is iterated in the loop that calls
    `backward()` / `optimizer.step()` (also inside a helper it is passed to, such as
    `train_one_epoch(model, train_loader, ...)`, or read through an iterator, `it = iter(loader)` then
    `next(it)` / `it.next()` in that loop), returned by a Lightning `train_dataloader()`, or passed
    as `train_dataloaders=` / to `trainer.fit(model, loader)`; a loader only *named* `train_loader` is
    flagged when its dataset is named for training too.

    ## Why is this bad?
    `DataLoader` does not shuffle by default. Without shuffling, every epoch shows the model the same
    sequence of batches — often sorted by class or by file name, as `ImageFolder` and most CSV exports
    are — so the gradient of each step is biased toward one class at a time, the loss curve saw-tooths
    and the model ends in a worse minimum. That is what `shuffle=True` is for: "have the data
    reshuffled at every epoch" ([torch.utils.data.DataLoader](https://pytorch.org/docs/stable/data.html#torch.utils.data.DataLoader)). Like the other silent failures in Karpathy's
    recipe, nothing crashes: the network just trains worse (Karpathy 2019).

    ## Example
    ```python
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    train_ds = TensorDataset(X_train, y_train)
    train_loader = DataLoader(train_ds, batch_size=256)
    for epoch in range(20):
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
    ```

    ## Use instead
    ```python
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    train_ds = TensorDataset(X_train, y_train)
    train_loader = DataLoader(train_ds, batch_size=256, shuffle=True)
    for epoch in range(20):
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
    ```
    Not flagged: validation and test loaders (iterated under `torch.no_grad()`, after `model.eval()`,
    returned by `val_dataloader()`...), loaders with any `sampler=` or `batch_sampler=`
    (`DistributedSampler`, `WeightedRandomSampler`, a bucketing sampler), `shuffle=` set from a
    variable, a config or the command line (`shuffle=args.shuffle`, `shuffle=is_train`), loaders built
    from `**kwargs`, iterable / streaming datasets (an `IterableDataset` subclass, webdataset, Hugging
    Face `streaming=True`), datasets that take a shuffle flag of their own (`ListDataset(files,
    shuffle=True)`), synthetic datasets of random numbers (`RandomDataset(32, 64)`, `FakeData`, a class
    drawing its samples with `torch.randn`), stateful RNN training that carries its hidden state from
    batch to batch (in the training loop or the loader's own file), test modules (`tests/`, `test_*.py`),
    and Hugging Face `Trainer` (it builds and shuffles its own training loader).

    The verdict is about the loader and the loop that reads it, not about whatever else a program
    imports: sister scripts (`train_a.py`, `train_b.py`) that build and iterate the same loader the same
    way get the same verdict, and a loader that both import from one module is reported once.

    ## Fix safety
    An unsafe fix is offered: it adds `shuffle=True` (or turns `shuffle=False` into `shuffle=True`). It
    changes the order the model sees the data in, so results change; it is never applied without
    `--unsafe-fixes`.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019)
    - [torch.utils.data.DataLoader](https://pytorch.org/docs/stable/data.html#torch.utils.data.DataLoader)
    """

    code = "TL304"
    name = "unshuffled-train-loader"
    severity = Severity.WARNING
    summary = "The training DataLoader has neither shuffle=True nor a sampler: every epoch repeats the same order"
    probe = None

    bad = (
        # notebook / tabular style
        """
import torch
from torch.utils.data import DataLoader, TensorDataset
train_ds = TensorDataset(X, y)
loader = DataLoader(train_ds, batch_size=256)  # expect: TL304
for epoch in range(10):
    for xb, yb in loader:
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()
""",
        # explicit shuffle=False, used by a helper that trains
        """
import torch
import torchvision
train_set = torchvision.datasets.ImageFolder("data/train", transform=tf)
train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=False, num_workers=4)  # expect: TL304
def train_one_epoch(model, loader, optimizer):
    for images, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
for epoch in range(30):
    train_one_epoch(model, train_loader, optimizer)
""",
        # Lightning: the trainer does not shuffle for you
        """
import lightning as L
from torch.utils.data import DataLoader
class MNISTData(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(self.mnist_train, batch_size=self.batch_size, num_workers=4)  # expect: TL304
    def val_dataloader(self):
        return DataLoader(self.mnist_val, batch_size=self.batch_size)
""",
        # a trainer class keeping the loader on self
        """
from torch.utils import data
class Trainer:
    def __init__(self, model, train_ds, opt):
        self.model, self.opt = model, opt
        self.train_dl = data.DataLoader(train_ds, batch_size=32, drop_last=True)  # expect: TL304
    def fit(self, epochs):
        for epoch in range(epochs):
            for x, y in self.train_dl:
                self.opt.zero_grad()
                self.model.loss(x, y).backward()
                self.opt.step()
""",
        # positional shuffle=False
        """
from torch.utils.data import DataLoader
train_loader = DataLoader(train_data, 128, False)  # expect: TL304
for epoch in range(5):
    for batch in train_loader:
        loss = model(batch).loss
        loss.backward()
        optimizer.step()
""",
    )

    good = (
        # eval loaders are not shuffled on purpose
        """
import torch
from torch.utils.data import DataLoader
train_loader = DataLoader(train_ds, batch_size=64, shuffle=True)
val_loader = DataLoader(val_ds, batch_size=256)
for epoch in range(10):
    model.train()
    for x, y in train_loader:
        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            acc = (model(x).argmax(1) == y).float().mean()
""",
        # DistributedSampler shuffles
        """
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
sampler = DistributedSampler(train_ds, shuffle=True)
train_loader = DataLoader(train_ds, batch_size=64, sampler=sampler)
for epoch in range(10):
    sampler.set_epoch(epoch)
    for x, y in train_loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
""",
        # any sampler, a batch sampler, a sampler chosen at run time
        """
from torch.utils.data import DataLoader, WeightedRandomSampler
sampler = WeightedRandomSampler(weights, num_samples=len(weights))
train_loader = DataLoader(train_ds, batch_size=64, sampler=sampler)
bucket_loader = DataLoader(train_ds, batch_sampler=BucketBatchSampler(lengths, 32))
dist_loader = DataLoader(train_ds, batch_size=64, sampler=train_sampler if distributed else None)
for epoch in range(10):
    for x, y in train_loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    for x, y in bucket_loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    for x, y in dist_loader:
        loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
""",
        # shuffle from argparse / a variable / **kwargs: the user decides
        """
from torch.utils.data import DataLoader
def make_loader(ds, is_train):
    return DataLoader(ds, batch_size=32, shuffle=is_train)
train_loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=args.shuffle)
train_kwargs = {"batch_size": 64}
train_kwargs.update({"num_workers": 1, "shuffle": True})
loader2 = DataLoader(train_ds, **train_kwargs)
for epoch in range(10):
    for x, y in train_loader:
        loss_fn(model(x), y).backward(); opt.step()
    for x, y in loader2:
        loss_fn(model(x), y).backward(); opt.step()
""",
        # an iterable dataset: the stream orders itself
        """
import torch
from torch.utils.data import DataLoader, IterableDataset
class TokenStream(IterableDataset):
    def __iter__(self):
        yield from read_shards(self.files)
train_loader = DataLoader(TokenStream(files), batch_size=8)
for epoch in range(3):
    for batch in train_loader:
        model(batch).loss.backward(); opt.step(); opt.zero_grad()
""",
        # Hugging Face streaming dataset
        """
from datasets import load_dataset
from torch.utils.data import DataLoader
train_ds = load_dataset("c4", "en", split="train", streaming=True)
train_loader = DataLoader(train_ds, batch_size=16)
for step, batch in enumerate(train_loader):
    model(**batch).loss.backward(); optimizer.step(); optimizer.zero_grad()
""",
        # Lightning: unshuffled loaders in val/test hooks
        """
import pytorch_lightning as pl
from torch.utils.data import DataLoader
class DM(pl.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(self.train, batch_size=32, shuffle=True)
    def val_dataloader(self):
        return DataLoader(self.val, batch_size=32)
    def test_dataloader(self):
        return DataLoader(self.test, batch_size=32)
""",
        # HF Trainer shuffles its own training loader
        """
from transformers import Trainer, TrainingArguments
trainer = Trainer(model=model, args=TrainingArguments("out"), train_dataset=train_ds, eval_dataset=val_ds)
trainer.train()
""",
        # stateful RNN: the hidden state is carried across consecutive batches, order matters
        """
from torch.utils.data import DataLoader
train_loader = DataLoader(windows, batch_size=20)
for epoch in range(10):
    hidden = model.init_hidden(20)
    for x, y in train_loader:
        hidden = repackage_hidden(hidden)
        out, hidden = model(x, hidden)
        criterion(out, y).backward(); opt.step(); opt.zero_grad()
""",
        # synthetic random data (order carries nothing), a dataset that shuffles itself
        """
import torch
from torch.utils.data import DataLoader, Dataset
class RandomDataset(Dataset):
    def __init__(self, size, length):
        self.data = torch.randn(length, size)
    def __len__(self):
        return len(self.data)
    def __getitem__(self, i):
        return self.data[i]
train_loader = DataLoader(RandomDataset(32, 64), batch_size=2)
crowd_loader = DataLoader(ListDataset(train_list, shuffle=True, train=True), batch_size=1)
for epoch in range(3):
    for batch in train_loader:
        model(batch).sum().backward(); opt.step(); opt.zero_grad()
    for img, target in crowd_loader:
        criterion(model(img), target).backward(); opt.step(); opt.zero_grad()
""",
        # a loader iterated once for feature extraction, not training
        """
import torch
from torch.utils.data import DataLoader
train_loader = DataLoader(train_ds, batch_size=64)
feats = []
model.eval()
with torch.no_grad():
    for x, _ in train_loader:
        feats.append(backbone(x))
""",
    )

    @classmethod
    def may_fire(cls, text: str, path: str) -> bool:
        # the loader it judges is built in the file, which is no test module (``_unshuffled_training``)
        return "DataLoader" in text and not is_test_file(path)

    def check(self, ctx) -> Iterable[Finding]:
        # a module that runs nothing by itself (a Lightning DataModule file linted alone) is checked on
        # its own too
        program = self.module_program(ctx)
        if program is not None:
            yield from self._check(program)

    def check_program(self, program) -> Iterable[Finding]:
        # a file checked on its own as well (it is imported by this entry), or shared by a sister program
        # (train_a.py and train_b.py importing one loader builder): one loader, one finding, whatever each
        # program's evidence says; the engine keeps one finding per rule and place
        yield from self._check(program)

    def _check(self, program) -> Iterable[Finding]:
        if not program_mentions(program, "DataLoader"):
            return
        flagged = [ld for ld in loader_facts(program).loaders if self._unshuffled_training(ld, program)]
        if flagged and reads_data_once(program):
            return  # one pass over the data (a demo, a benchmark of N steps): the order is never repeated
        # One finding per loader: the same variable assigned in several branches (one per dataset) is
        # one loader of the program.
        groups: dict = {}
        for ld in flagged:
            key = (id(ld.pf), id(ld.scope), ld.target) if ld.target else (id(ld.call),)
            groups.setdefault(key, []).append(ld)
        for lds in groups.values():
            yield self._finding(lds[0], others=lds[1:])

    def _unshuffled_training(self, ld: LoaderFact, program) -> bool:
        if ld.role != "train" or ld.dead:
            return False
        if not ld.structural:
            ds = dotted(ld.dataset) if ld.dataset is not None else None
            if ds is None or word_role_of_name(ds) != "train":
                return False
        if ld.shuffle is UNKNOWN or ld.shuffle is True or ld.star_kwargs:
            return False
        if ld.sampler is not None or ld.batch_sampler is not None:
            return False
        if is_test_file(ld.pf.ctx.path):
            return False
        if dataset_is_synthetic(ld, program) or dataset_shuffles_itself(ld, program):
            return False
        if dataset_may_stream(ld, program) or order_matters(ld, program):
            return False
        if ld.stmt.loops and _reshuffled_by_hand(ld):
            return False
        return True

    def _finding(self, ld: LoaderFact, others=()) -> Finding:
        ctx = ld.pf.ctx
        name = f"`{ld.target}`" if ld.target else "This DataLoader"
        ds = ctx.code(ld.dataset).strip() if ld.dataset is not None else "its dataset"
        why = "shuffle=False" if ld.shuffle is False else "no shuffle=True"
        message = (
            f"{name} is the training loader ({ld.evidence}) but has {why} and no sampler: "
            f"it reads `{short(ds)}` in the same order every epoch"
        )
        related = []
        if ld.shuffle_node is not None:
            related.append(Related(ctx.path, ctx.span(ld.shuffle_node), "shuffling is turned off here"))
        for other in others[:4]:
            related.append(Related(other.pf.ctx.path, other.pf.ctx.span(other.call),
                                   f"`{ld.target}` is also built here without shuffling"))
        return self.finding(
            ctx,
            ctx.span(ld.call),
            message,
            hint="Pass shuffle=True (or a DistributedSampler / RandomSampler via sampler=) to the training DataLoader",
            fix=_fix(ld),
            related=related,
        )


def _fix(ld: LoaderFact) -> Optional[Fix]:
    ctx = ld.pf.ctx
    call = ld.call
    kw = keyword_arg(call, "shuffle")
    if kw is not None:
        edits = (Edit(ctx.span(kw.value), "True"),)
    elif ld.shuffle_node is not None:
        edits = (Edit(ctx.span(ld.shuffle_node), "True"),)
    else:
        if not call.args:
            return None
        end = ctx.span(call.args[-1].value)
        edits = (Edit(Span(end.end_line, end.end_column, end.end_line, end.end_column), ", shuffle=True"),)
    return Fix(message="Shuffle the training data: shuffle=True", edits=edits, applicability=Applicability.UNSAFE)


def _reshuffled_by_hand(ld: LoaderFact) -> bool:
    """A loader rebuilt inside the epoch loop over data the code permutes itself."""
    text = ld.pf.ctx.source.text
    return any(k in text for k in ("randperm", "permutation(", "shuffle(", ".sample(frac"))
