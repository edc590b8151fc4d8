"""TL201 default-lr-schedule beyond the rule's snippets: value folding (argparse, configs, constants in
other files), loop events (per batch / per epoch, through helpers), and messages that name the numbers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest

from trainlint.analysis.facts import extract
from trainlint.analysis.execution import train_loops
from trainlint.analysis.values import fold
from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths
from trainlint.findings import Finding


def _lint_tree(tmp_path: Path, files: dict) -> list:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    options = Options(config=Config(layers=[Selection()]), enabled=["TL201"])
    report, _ = lint_paths([str(tmp_path)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code == "TL201"]


def _value(src: str, expr: str = "VALUE"):
    """Fold the expression assigned to `probe` on the last line of ``src``."""
    facts = extract(cst.parse_module(textwrap.dedent(src) + f"\nprobe = {expr}\n"))
    a = facts.module.assigns["probe"][-1]
    return fold(a.value, facts, facts.module, a.stmt)


# ---- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src,expr,value",
    [
        ("EPOCHS = 90", "EPOCHS", 90),
        ("EPOCHS = 30", "2 * EPOCHS + 1", 61),
        ("E = 40", "[int(0.5 * E), int(0.75 * E)]", (20, 30)),
        ("lr = 1e-3", "-lr", -0.001),
        ("", "(30, 60, 90)", (30, 60, 90)),
        ('config = {"epochs": 20, "opt": {"lr": 0.1}}', 'config["epochs"]', 20),
        ('config = {"epochs": 20, "opt": {"lr": 0.1}}', 'config["opt"]["lr"]', 0.1),
        ('cfg = {"lr": 0.1}', 'cfg.get("epochs", 10)', 10),
        ('cfg = dict(epochs=12)', 'cfg["epochs"]', 12),
        ("from types import SimpleNamespace\nhp = SimpleNamespace(epochs=7)", "hp.epochs", 7),
        ("from easydict import EasyDict\ncfg = EasyDict({'train': {'epochs': 9}})", "cfg.train.epochs", 9),
        ("class Config:\n    epochs = 11\n", "Config.epochs", 11),
        ("from dataclasses import dataclass\n@dataclass\nclass C:\n    epochs: int = 13\ncfg = C()", "cfg.epochs", 13),
        ("from dataclasses import dataclass\n@dataclass\nclass C:\n    epochs: int = 13\ncfg = C(epochs=3)", "cfg.epochs", 3),
        (
            "import argparse\np = argparse.ArgumentParser()\np.add_argument('--num-epochs', type=int, default=25)\nargs = p.parse_args()",
            "args.num_epochs",
            25,
        ),
        (
            "import argparse\np = argparse.ArgumentParser()\np.add_argument('-e', '--n', dest='epochs', default=6)\nopt = p.parse_args()",
            "opt.epochs",
            6,
        ),
        (
            "import argparse\np = argparse.ArgumentParser()\np.add_argument('--epochs', type=int)\np.set_defaults(epochs=4)\nargs, _ = p.parse_known_args()",
            "args.epochs",
            4,
        ),
    ],
)
def test_fold_values(src, expr, value):
    f = _value(src, expr)
    assert f is not None and f.value == value


@pytest.mark.parametrize(
    "src,expr",
    [
        ("import yaml\ncfg = yaml.safe_load(open('c.yaml'))", 'cfg["epochs"]'),
        ("cfg = {'lr': 0.1}", "cfg['epochs']"),
        ("EPOCHS = 10\nif DEBUG:\n    EPOCHS = 1", "EPOCHS"),
        ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--epochs', type=int, required=True)\nargs = p.parse_args()", "args.epochs"),
        ("", "len(train_loader)"),
        ("n = 3\nfor i in range(4):\n    n += 1", "n"),
    ],
)
def test_unknown_values_stay_unknown(src, expr):
    assert _value(src, expr) is None


def test_argparse_default_is_labelled():
    f = _value("import argparse\np = argparse.ArgumentParser()\np.add_argument('--epochs', default=20)\nargs = p.parse_args()", "args.epochs")
    assert f.how == "argparse" and f.label == "--epochs" and f.describe() == "the default --epochs 20"


def test_parameter_default_and_call_sites():
    src = """
    def train(model, epochs=20):
        probe = epochs
    train(net)
    """
    facts = extract(cst.parse_module(textwrap.dedent(src)))
    fn = facts.function("train")
    a = fn.assigns["probe"][0]
    assert fold(a.value, facts, fn, a.stmt).value == 20
    src2 = src.replace("train(net)", "train(net, epochs=5)")
    facts = extract(cst.parse_module(textwrap.dedent(src2)))
    fn = facts.function("train")
    a = fn.assigns["probe"][0]
    assert fold(a.value, facts, fn, a.stmt).value == 5


# ---- loops -------------------------------------------------------------------------------------


def _loops(src: str):
    return train_loops(extract(cst.parse_module(textwrap.dedent(src))))


def test_epoch_loop_with_helper_and_levels():
    loops = _loops(
        """
        EPOCHS = 12
        def train_one_epoch(model, loader, optimizer, scheduler):
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
            scheduler.step()
        for epoch in range(1, EPOCHS + 1):
            train_one_epoch(model, loader, optimizer, scheduler)
        """
    )
    epoch = [l for l in loops if l.unit == "epoch"][0]
    assert epoch.count.value == 12
    levels = {e.kind: e.level for e in epoch.events}
    assert levels["optimizer_step"] == "batch" and levels["zero_grad"] == "batch" and levels["backward"] == "batch"
    assert levels["scheduler_step"] == "epoch"
    kinds = [e.kind for e in epoch.events]
    assert kinds.index("zero_grad") < kinds.index("backward") < kinds.index("optimizer_step") < kinds.index("scheduler_step")


def test_iteration_loop_and_resumed_range():
    loops = _loops(
        """
        max_iters = 600000
        for it in range(max_iters):
            loss = model(x, y)
            loss.backward()
            optimizer.step()
        """
    )
    assert loops[0].unit == "iteration" and loops[0].count.value == 600000
    loops = _loops(
        """
        start_epoch = 0
        if resume:
            start_epoch = ckpt["epoch"]
        for epoch in range(start_epoch, start_epoch + 200):
            for x, y in trainloader:
                optimizer.step()
        """
    )
    assert loops[0].unit == "epoch" and loops[0].count.value == 200


# ---- the rule on programs ----------------------------------------------------------------------


def test_epochs_from_another_file(tmp_path):
    found = _lint_tree(
        tmp_path,
        {
            "settings.py": "EPOCHS = 30\n",
            "train.py": """
                import torch
                from settings import EPOCHS
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=300)
                for epoch in range(EPOCHS):
                    for x, y in loader:
                        optimizer.zero_grad()
                        criterion(model(x), y).backward()
                        optimizer.step()
                    scheduler.step()
            """,
        },
    )
    assert len(found) == 1
    f: Finding = found[0]
    assert f.path.endswith("train.py") and f.line == 5
    assert "T_max=300" in f.message and "30 epochs" in f.message and "~98%" in f.message
    assert any(r.path.endswith("settings.py") and r.span.line == 1 and "30 epochs" in r.message for r in f.related)


def test_derived_from_imported_epochs_is_clean(tmp_path):
    found = _lint_tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/config.py": "EPOCHS = 30\nMILESTONES = [int(EPOCHS * 0.6), int(EPOCHS * 0.85)]\n",
            "train.py": """
                import torch
                from pkg import config as C
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, C.MILESTONES)
                for epoch in range(C.EPOCHS):
                    for x, y in loader:
                        optimizer.zero_grad()
                        criterion(model(x), y).backward()
                        optimizer.step()
                    scheduler.step()
            """,
        },
    )
    assert found == []


def test_scheduler_stepped_per_batch_in_other_file(tmp_path):
    found = _lint_tree(
        tmp_path,
        {
            "engine.py": """
                def train_one_epoch(model, loader, optimizer, lr_scheduler):
                    for x, y in loader:
                        optimizer.zero_grad()
                        loss = criterion(model(x), y)
                        loss.backward()
                        optimizer.step()
                        lr_scheduler.step()
            """,
            "main.py": """
                import argparse
                import torch
                from engine import train_one_epoch
                parser = argparse.ArgumentParser()
                parser.add_argument("--epochs", type=int, default=50)
                parser.add_argument("--milestones", type=int, nargs="+", default=[30, 40])
                args = parser.parse_args()
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.milestones)
                for epoch in range(args.epochs):
                    train_one_epoch(model, loader, optimizer, lr_scheduler)
            """,
        },
    )
    assert len(found) == 1
    f = found[0]
    assert f.path.endswith("engine.py") and f.line == 8
    assert "[30, 40]" in f.message and "every batch" in f.message and "--epochs" in f.message
    assert any(r.path.endswith("main.py") and r.span.line == 10 for r in f.related)


def test_unknown_run_length_only_flags_copied_defaults(tmp_path):
    found = _lint_tree(
        tmp_path,
        {
            "train.py": """
                import json
                import torch
                cfg = json.load(open("cfg.json"))
                optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
                a = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
                b = torch.optim.lr_scheduler.StepLR(optimizer, 30)
                for epoch in range(cfg["epochs"]):
                    for x, y in loader:
                        optimizer.zero_grad()
                        criterion(model(x), y).backward()
                        optimizer.step()
                    a.step()
                    b.step()
            """,
        },
    )
    assert [f.line for f in found] == [7]
    assert "ImageNet" in found[0].message and "could not be determined" in found[0].message


def test_same_factory_in_two_programs_reported_once(tmp_path):
    found = _lint_tree(
        tmp_path,
        {
            "sched.py": """
                from torch.optim.lr_scheduler import MultiStepLR
                def build(optimizer):
                    return MultiStepLR(optimizer, milestones=[60, 120, 160], gamma=0.2)
            """,
            "train_a.py": """
                from sched import build
                scheduler = build(optimizer)
                for epoch in range(30):
                    for x, y in loader:
                        loss = criterion(model(x), y)
                        loss.backward()
                        optimizer.step()
                    scheduler.step()
            """,
            "train_b.py": """
                from sched import build
                scheduler = build(optimizer)
                for epoch in range(20):
                    for x, y in loader:
                        loss = criterion(model(x), y)
                        loss.backward()
                        optimizer.step()
                    scheduler.step()
            """,
        },
    )
    assert len(found) == 1 and found[0].path.endswith("sched.py")


def test_a_conditional_assignment_is_not_the_value():
    src = """
    EPOCHS = 90
    def main(debug):
        if debug:
            EPOCHS = 1
        probe = EPOCHS
    """
    facts = extract(cst.parse_module(textwrap.dedent(src)))
    fn = facts.function("main")
    a = fn.assigns["probe"][0]
    assert fold(a.value, facts, fn, a.stmt) is None


def test_sequential_lr_part_is_judged_after_the_warmup(tmp_path):
    found = _lint_tree(
        tmp_path,
        {
            "train.py": """
                import argparse
                import torch
                from torch.optim.lr_scheduler import LinearLR, CosineAnnealingLR, SequentialLR
                parser = argparse.ArgumentParser()
                parser.add_argument("--epochs", type=int, default=50)
                parser.add_argument("--warmup-epochs", type=int, default=5)
                args = parser.parse_args()
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
                warmup = LinearLR(optimizer, start_factor=0.01, total_iters=args.warmup_epochs)
                cosine = CosineAnnealingLR(optimizer, T_max=args.epochs - args.warmup_epochs)
                scheduler = SequentialLR(optimizer, schedulers=[warmup, cosine], milestones=[args.warmup_epochs])
                for epoch in range(args.epochs):
                    for x, y in loader:
                        optimizer.zero_grad()
                        crit(model(x), y).backward()
                        optimizer.step()
                        scheduler.step()
            """,
        },
    )
    # stepped per batch although T_max counts epochs: flagged at the wrapper's step
    assert [f.line for f in found] == [18]
    assert "T_max=45" in found[0].message and "SequentialLR milestone 5" in found[0].message
    text = (tmp_path / "train.py").read_text()
    (tmp_path / "train.py").write_text(text.replace("        scheduler.step()", "    scheduler.step()"))
    assert _lint_tree(tmp_path, {}) == []  # per epoch: the torchvision recipe, clean


def test_sequential_lr_parts_held_by_a_list_variable_and_milestones_by_a_constant(tmp_path):
    src = """
        import torch
        from torch.optim.lr_scheduler import LinearLR, CosineAnnealingLR, SequentialLR
        EPOCHS = 50
        WARMUP = [5]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        parts = [LinearLR(optimizer, start_factor=0.01, total_iters=5)]
        parts.append(CosineAnnealingLR(optimizer, T_max={t_max}))
        scheduler = SequentialLR(optimizer, parts, WARMUP)
        for epoch in range(EPOCHS):
            for x, y in loader:
                optimizer.zero_grad()
                crit(model(x), y).backward()
                optimizer.step()
            scheduler.step()
    """
    # the cosine part runs 45 epochs after the warm-up: T_max=45 is right, T_max=10 restarts early
    assert _lint_tree(tmp_path / "a", {"train.py": src.replace("{t_max}", "45")}) == []
    found = _lint_tree(tmp_path / "b", {"train.py": src.replace("{t_max}", "10")})
    assert [f.line for f in found] == [8]
    assert "SequentialLR milestone 5" in found[0].message
