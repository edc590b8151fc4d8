"""TL305 distributed-sampler-without-set-epoch: samplers built in helpers and sub-packages, set_epoch
found anywhere in the program, dead distributed branches, loops without an epoch counter."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths


def _run(root: Path, files: Dict[str, str], codes=("TL305",)):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    options = Options(config=Config(layers=[Selection()]), enabled=list(codes))
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code in codes]


DATA = """
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

def build(ds, distributed):
    sampler = DistributedSampler(ds) if distributed else None
    loader = DataLoader(ds, batch_size=8, sampler=sampler, shuffle=sampler is None)
    return loader, sampler
"""


def _main(extra: str = "", distributed: str = "True") -> str:
    return f"""
        import argparse
        from pkg.data import build
        p = argparse.ArgumentParser()
        p.add_argument("--epochs", type=int, default=12)
        args = p.parse_args()
        def main():
            train_loader, sampler = build(train_ds, distributed={distributed})
            for epoch in range(args.epochs):
                {extra}
                for x, y in train_loader:
                    loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
        if __name__ == "__main__":
            main()
    """


def test_sampler_in_a_subpackage_and_the_epoch_count_in_the_message(tmp_path):
    found = _run(tmp_path, {"pkg/__init__.py": "", "pkg/data.py": DATA, "main.py": _main("pass")})
    assert [(Path(f.path).name, f.line) for f in found] == [("data.py", 5)]
    assert "12 epochs" in found[0].message and "--epochs 12" in found[0].message
    assert any("epoch loop" in r.message for r in found[0].related)


def test_set_epoch_in_the_entry_file_counts(tmp_path):
    found = _run(tmp_path, {"pkg/__init__.py": "", "pkg/data.py": DATA, "main.py": _main("sampler.set_epoch(epoch)")})
    assert found == []


def test_a_distributed_branch_that_never_runs(tmp_path):
    found = _run(tmp_path, {"pkg/__init__.py": "", "pkg/data.py": DATA, "main.py": _main("pass", distributed="False")})
    assert found == []


def test_while_true_around_the_batch_loop_is_an_epoch_loop(tmp_path):
    found = _run(tmp_path, {"train.py": """
        from torch.utils.data import DataLoader, DistributedSampler
        train_sampler = DistributedSampler(train_set)
        train_loader = DataLoader(train_set, sampler=train_sampler, batch_size=16)
        step = 0
        while True:
            for x, y in train_loader:
                loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
                step += 1
            if step > 10000:
                break
    """})
    assert [f.line for f in found] == [2]


def test_fix_inserts_set_epoch_at_the_top_of_the_epoch_loop(tmp_path):
    found = _run(tmp_path, {"train.py": """
        from torch.utils.data import DataLoader, DistributedSampler
        def main():
            sampler = DistributedSampler(ds)
            loader = DataLoader(ds, sampler=sampler, batch_size=4)
            for epoch in range(5):
                for x, y in loader:
                    loss_fn(model(x), y).backward(); opt.step()
        main()
    """})
    assert len(found) == 1
    edit = found[0].fix.edits[0]
    assert edit.span.line == 6 and edit.content == "        sampler.set_epoch(epoch)\n"


# ---- which sampler gets set_epoch, when, with what (the execution layer) ----------------------------


def test_set_epoch_once_before_the_epoch_loop_is_not_every_epoch(tmp_path):
    found = _run(tmp_path, {"pkg/__init__.py": "", "pkg/data.py": DATA, "main.py": _main("pass").replace(
        "            for epoch in range(args.epochs):", "            sampler.set_epoch(0)\n            for epoch in range(args.epochs):")})
    assert [(Path(f.path).name, f.line) for f in found] == [("data.py", 5)]
    assert "constant epoch 0" in found[0].message


def test_set_epoch_with_the_loop_variable_before_the_loop_runs_once(tmp_path):
    found = _run(tmp_path, {"train.py": """
        from torch.utils.data import DataLoader, DistributedSampler
        def main(start_epoch, epochs):
            sampler = DistributedSampler(ds)
            loader = DataLoader(ds, sampler=sampler, batch_size=4)
            sampler.set_epoch(start_epoch)
            for epoch in range(start_epoch, epochs):
                for x, y in loader:
                    loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
        main(0, 10)
    """})
    assert [f.line for f in found] == [3]
    assert "only once, before the epoch loop (line 5)" in found[0].message
    assert found[0].fix is None


def test_set_epoch_on_the_validation_sampler_does_not_reseed_the_training_one(tmp_path):
    found = _run(tmp_path, {"train.py": """
        from torch.utils.data import DataLoader, DistributedSampler
        train_sampler = DistributedSampler(train_set)
        val_sampler = DistributedSampler(val_set)
        train_loader = DataLoader(train_set, sampler=train_sampler, batch_size=16)
        val_loader = DataLoader(val_set, sampler=val_sampler, batch_size=16)
        for epoch in range(10):
            val_loader.sampler.set_epoch(epoch)
            for x, y in train_loader:
                loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    """})
    assert [f.line for f in found] == [2]
    assert "only called on `val_loader.sampler`" in found[0].message


def test_near_misses_set_epoch_reaches_the_training_sampler(tmp_path):
    # through a parameter bound at the call site, through batch_sampler.sampler, with an offset epoch
    found = _run(tmp_path, {"a/train.py": """
        from torch.utils.data import DataLoader, DistributedSampler
        def run_epoch(dl, e):
            dl.batch_sampler.sampler.set_epoch(e + 1000)
            for x, y in dl:
                loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
        loader = DataLoader(ds, sampler=DistributedSampler(ds), batch_size=8)
        val_sampler = DistributedSampler(val_ds, shuffle=False)
        val_sampler.set_epoch(0)
        for epoch in range(10):
            run_epoch(loader, epoch)
    """, "b/train.py": """
        from torch.utils.data import DataLoader, DistributedSampler
        loader = DataLoader(ds, sampler=DistributedSampler(ds), batch_size=8)
        for epoch in range(10):
            get_loader_sampler().set_epoch(epoch)   # a receiver we cannot follow: trusted
            for x, y in loader:
                loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    """})
    assert found == []


def test_a_training_module_linted_alone(tmp_path):
    # a module that runs nothing by itself is checked on its own too (Rule.module_program)
    found = _run(tmp_path, {"engine.py": """
        from torch.utils.data import DataLoader
        from torch.utils.data.distributed import DistributedSampler

        def fit(model, ds, opt, loss_fn, epochs):
            sampler = DistributedSampler(ds)
            loader = DataLoader(ds, batch_size=8, sampler=sampler)
            for epoch in range(epochs):
                for x, y in loader:
                    loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    """})
    assert [(Path(f.path).name, f.line) for f in found] == [("engine.py", 5)]
