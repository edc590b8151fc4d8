"""TL304 unshuffled-train-loader: roles read across files and helpers, values folded, messages."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths


def _run(root: Path, files: Dict[str, str], codes=("TL304",)):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    options = Options(config=Config(layers=[Selection()]), enabled=list(codes))
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code in codes]


LOOP = """
import torch
from proj.data import make_loaders

def main():
    train_loader, val_loader = make_loaders("data")
    for epoch in range(10):
        for x, y in train_loader:
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
        with torch.no_grad():
            for x, y in val_loader:
                model(x)

if __name__ == "__main__":
    main()
"""


def test_loader_built_in_a_subpackage_helper_is_judged_by_the_caller(tmp_path):
    found = _run(tmp_path, {
        "proj/__init__.py": "",
        "proj/data.py": """
            from torch.utils.data import DataLoader
            def make_loaders(root):
                train = DataLoader(Folder(root + "/tr"), batch_size=32)
                val = DataLoader(Folder(root + "/va"), batch_size=32)
                return train, val
        """,
        "train.py": LOOP,
    })
    assert [(Path(f.path).name, f.line) for f in found] == [("data.py", 3)]
    assert "train = make_loaders(...)" in found[0].message or "train_loader = make_loaders" in found[0].message
    assert found[0].fix is not None and found[0].fix.edits[0].content == ", shuffle=True"


def test_shuffle_from_a_module_constant_is_read(tmp_path):
    found = _run(tmp_path, {"train.py": """
        from torch.utils.data import DataLoader
        SHUFFLE = False
        loader = DataLoader(train_ds, batch_size=8, shuffle=SHUFFLE)
        for epoch in range(3):
            for x, y in loader:
                loss_fn(model(x), y).backward(); opt.step()
    """})
    assert [f.line for f in found] == [3]
    assert "shuffle=False" in found[0].message


def test_shuffle_from_argparse_or_a_parameter_is_left_to_the_user(tmp_path):
    found = _run(tmp_path, {"train.py": """
        import argparse
        from torch.utils.data import DataLoader
        p = argparse.ArgumentParser()
        p.add_argument("--no-shuffle", action="store_true")
        args = p.parse_args()
        loader = DataLoader(train_ds, batch_size=8, shuffle=not args.no_shuffle)
        def make(ds, train):
            return DataLoader(ds, batch_size=8, shuffle=train)
        loader2 = make(train_ds, True)
        for epoch in range(3):
            for x, y in loader:
                loss_fn(model(x), y).backward(); opt.step()
            for x, y in loader2:
                loss_fn(model(x), y).backward(); opt.step()
    """})
    assert found == []


def test_only_named_train_needs_a_train_named_dataset(tmp_path):
    found = _run(tmp_path, {"train.py": """
        from torch.utils.data import DataLoader
        def build():
            train_loader = DataLoader(train_set, batch_size=8)
            probe_loader = DataLoader(everything, batch_size=8)
            return train_loader, probe_loader
    """})
    # neither is used where a role can be seen: the first is named for training twice (loader and
    # dataset), the second is not
    assert [f.line for f in found] == [3]


def test_lightning_datamodule_in_its_own_file(tmp_path):
    found = _run(tmp_path, {
        "dm.py": """
            import lightning as L
            from torch.utils.data import DataLoader
            class DM(L.LightningDataModule):
                def train_dataloader(self):
                    return DataLoader(self.train_set, batch_size=64)
                def val_dataloader(self):
                    return DataLoader(self.val_set, batch_size=64)
        """,
        "fit.py": """
            import lightning as L
            from dm import DM
            if __name__ == "__main__":
                L.Trainer(max_epochs=5).fit(model, datamodule=DM())
        """,
    })
    assert [(Path(f.path).name, f.line) for f in found] == [("dm.py", 5)]


def test_a_datamodule_file_linted_alone(tmp_path):
    # a module that runs nothing by itself is checked on its own too (Rule.module_program)
    found = _run(tmp_path, {"dm.py": """
        import lightning as L
        from torch.utils.data import DataLoader
        class DM(L.LightningDataModule):
            def train_dataloader(self):
                return DataLoader(self.train_set, batch_size=64)
    """})
    assert [(Path(f.path).name, f.line) for f in found] == [("dm.py", 5)]


def test_test_modules_are_quiet(tmp_path):
    found = _run(tmp_path, {"tests/test_training.py": """
        from torch.utils.data import DataLoader
        def test_fit():
            loader = DataLoader(ds, batch_size=2)
            for epoch in range(2):
                for x, y in loader:
                    loss_fn(model(x), y).backward(); opt.step()
    """})
    assert found == []


# -- issue 10: right on real code ----------------------------------------------------------------------

EPOCHS = """
for epoch in range(10):
    for batch in train_loader:
        opt.zero_grad()
        loss_fn(model(batch), batch.y).backward()
        opt.step()
"""


def _lines(found):
    return sorted((Path(f.path).name, f.line) for f in found)


def test_pyg_and_dgl_loaders_that_take_shuffle_are_loaders(tmp_path):
    found = _run(tmp_path, {
        "pyg.py": "from torch_geometric.loader import DataLoader\ntrain_loader = DataLoader(train_graphs, batch_size=32)\n" + EPOCHS,
        "dgl_train.py": "from dgl.dataloading import GraphDataLoader\ntrain_loader = GraphDataLoader(train_set, batch_size=32)\n" + EPOCHS,
        "pyg_ok.py": "import torch_geometric.loader as L\ntrain_loader = L.DataLoader(train_graphs, 32, True)\n" + EPOCHS,
        "dgl_ok.py": "from dgl.dataloading import GraphDataLoader\ntrain_loader = GraphDataLoader(train_set, batch_size=32, shuffle=True)\n" + EPOCHS,
    })
    assert _lines(found) == [("dgl_train.py", 2), ("pyg.py", 2)]


def test_a_program_that_reads_its_data_once_is_not_flagged(tmp_path):
    found = _run(tmp_path, {"bench.py": """
        import time
        from torch.utils.data import DataLoader
        train_loader = DataLoader(train_set, batch_size=64)
        start = time.time()
        for i, (x, y) in enumerate(train_loader):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            if i == 100:
                break
        print((time.time() - start) / 100)
    """})
    assert found == []


def test_a_loader_in_a_branch_that_never_runs_is_dead(tmp_path):
    found = _run(tmp_path, {"t.py": """
        from torch.utils.data import DataLoader
        if 1:
            train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
        else:
            train_loader = DataLoader(train_set, batch_size=64)
    """ + textwrap.indent(EPOCHS, "        ")})
    assert found == []


def test_one_finding_per_loader_not_per_assignment_of_its_variable(tmp_path):
    found = _run(tmp_path, {"t.py": """
        from torch.utils.data import DataLoader
        if args.dataset == "mnist":
            train_loader = DataLoader(mnist_train, batch_size=64)
        elif args.dataset == "cifar":
            train_loader = DataLoader(cifar_train, batch_size=64)
        else:
            train_loader = DataLoader(svhn_train, batch_size=64)
    """ + textwrap.indent(EPOCHS, "        ")})
    assert _lines(found) == [("t.py", 3)]
    assert len(found[0].related) == 2


SISTER = """
import torch
from torch.utils.data import DataLoader
from mydata import ImageSet
{extra}

def main():
    train_loader = DataLoader(ImageSet("train"), batch_size=64)
    for epoch in range(10):
        for x, y in train_loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

if __name__ == "__main__":
    main()
"""


def test_sister_scripts_building_the_same_loader_get_the_same_verdict(tmp_path):
    # train_b.py imports a module that defines a stream dataset and a stateful-RNN helper for other
    # data: that says nothing about the loader both scripts build and iterate the same way
    found = _run(tmp_path, {
        "train_a.py": SISTER.format(extra=""),
        "train_b.py": SISTER.format(extra="from text_utils import TokenStream"),
        "text_utils.py": """
            from torch.utils.data import IterableDataset
            class TokenStream(IterableDataset):
                def __iter__(self):
                    yield from open("corpus.txt")
            def repackage_hidden(h):
                return h.detach()
        """,
    })
    assert sorted((Path(f.path).name, f.line) for f in found) == [("train_a.py", 7), ("train_b.py", 7)]


def test_sister_scripts_importing_one_loader_builder_get_one_finding(tmp_path):
    # each program reaches the builder's loader with its own evidence (a loop of its own, a helper):
    # one loader, one finding
    found = _run(tmp_path, {
        "data.py": """
            from torch.utils.data import DataLoader
            from mydata import TrainSet
            def get_loader(root, bs):
                return DataLoader(TrainSet(root), batch_size=bs)
        """,
        "train_a.py": """
            from data import get_loader
            def main():
                train_loader = get_loader("data", 64)
                for epoch in range(10):
                    for x, y in train_loader:
                        opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
            if __name__ == "__main__":
                main()
        """,
        "train_b.py": """
            from data import get_loader
            from engine import train_one_epoch
            def main():
                loader = get_loader("data", 64)
                for epoch in range(10):
                    train_one_epoch(model, loader, opt)
            if __name__ == "__main__":
                main()
        """,
        "engine.py": """
            def train_one_epoch(model, loader, opt):
                for x, y in loader:
                    opt.zero_grad(); model(x, y).backward(); opt.step()
        """,
    })
    assert [(Path(f.path).name, f.line) for f in found] == [("data.py", 4)]


def test_a_stateful_rnn_loop_in_a_sister_keeps_the_order(tmp_path):
    # the hidden state is carried across batches in the training loop itself: the order is the point
    found = _run(tmp_path, {
        "train_lm.py": """
            from torch.utils.data import DataLoader
            from utils import repackage_hidden
            train_loader = DataLoader(windows, batch_size=20)
            for epoch in range(10):
                hidden = model.init_hidden(20)
                for x, y in train_loader:
                    hidden = repackage_hidden(hidden)
                    out, hidden = model(x, hidden)
                    criterion(out, y).backward(); opt.step(); opt.zero_grad()
        """,
        "utils.py": "def repackage_hidden(h):\n    return h.detach()\n",
    })
    assert found == []


# --- a loader consumed through an explicit iterator: it = iter(loader); batch = next(it) ---------

ITER_SRC = """
import torch
dataloader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0)
for epoch in range(10):
    data_iter = iter(dataloader)
    for step in range(iters_per_epoch):
        data = {draw}
        opt.zero_grad()
        loss = model(data[0]).sum()
        loss.backward()
        opt.step()
"""


def test_loader_read_with_next_of_its_iterator_in_the_training_loop(tmp_path):
    for i, draw in enumerate(("data_iter.next()", "next(data_iter)", "data_iter.__next__()")):
        found = _run(tmp_path / str(i), {"train.py": ITER_SRC.replace("{draw}", draw)})
        assert [f.line for f in found] == [2], draw
        assert "read with next(iter(dataloader)) in the loop that calls backward()" in found[0].message


def test_iterator_near_misses(tmp_path):
    # drawn from in an evaluation loop (under no_grad), one batch peeked outside any loop, an
    # iterator over another loader, a shuffled loader
    found = _run(tmp_path, {"train.py": """
    import torch
    val_loader_ = torch.utils.data.DataLoader(val_set, batch_size=8, shuffle=False)
    peek_loader = torch.utils.data.DataLoader(train_set, batch_size=8, shuffle=False)
    loader = torch.utils.data.DataLoader(train_set, batch_size=8, shuffle=True)
    first = next(iter(peek_loader))
    show(first)
    it = iter(val_loader_)
    with torch.no_grad():
        for _ in range(10):
            x, y = next(it)
            model(x)
    for epoch in range(3):
        other = iter(loader)
        for step in range(100):
            x, y = next(other)
            opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """})
    assert found == []
