"""The value-flow API (trainlint.analysis.objects): "what does this expression hold?" for each idiom
real training code uses. Each test asks about the expression marked ``# ask`` (the right side of the
assignment, or the expression statement) and checks the library meaning / project class answered."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Dict, List

import libcst as cst
import pytest

from trainlint.analysis.names import dotted
from trainlint.analysis.objects import World
from trainlint.analysis.program import build_programs
from trainlint.context import FileContext
from trainlint.source import SourceFile


def _ctx(path: Path) -> FileContext:
    text = path.read_text(encoding="utf-8")
    return FileContext(SourceFile(str(path), text), cst.parse_module(text))


def _world(tmp_path: Path, files: Dict[str, str]):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    run = {os.path.realpath(p): _ctx(p) for p in tmp_path.rglob("*.py")}
    programs = build_programs(run, lambda real: _ctx(Path(real)) if os.path.exists(real) else None)
    assert programs, "no entry script"
    return World.of_program(programs[0])


def _ask(world: World) -> List:
    """The objects of every expression on a line ending with ``# ask``."""
    out = []
    for file in world.files:
        lines = file.ctx.source.text.splitlines()
        for scope in file.facts.scopes():
            for st in scope.stmts:
                node = st.node
                if not isinstance(node, (cst.Assign, cst.Expr, cst.Return)):
                    continue
                line = file.ctx.span(node).line
                if not lines[line - 1].rstrip().endswith("# ask"):
                    continue
                expr = node.value
                out.extend(world.objects(expr, file, scope, st))
    return out


def _names(objs) -> List[str]:
    return sorted({o.name if o.cls is not None else o.qname for o in objs if o.kind != "unknown"})


def test_constructor_flows_through_assignments_and_wrappers(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch
        import torch.nn as nn
        net = nn.Linear(3, 1)
        model = net.to("cuda")
        model = nn.DataParallel(model)
        if __name__ == "__main__":
            x = model.module  # ask
    """})
    objs = _ask(w)
    assert _names(objs) == ["torch.nn.Linear"]
    assert objs[0].kind == "instance" and isinstance(objs[0].node, cst.Call)


def test_parameters_bound_from_call_sites_across_files(tmp_path):
    w = _world(tmp_path, {
        "engine.py": """
            def train_one_epoch(model, loader, criterion, optimizer):
                for x, y in loader:
                    loss = criterion(model(x), y)  # ask
        """,
        "train.py": """
            import torch
            import torch.nn as nn
            from engine import train_one_epoch
            crit = nn.CrossEntropyLoss()
            if __name__ == "__main__":
                train_one_epoch(None, [], crit, None)
        """,
    })
    file = next(f for f in w.files if f.path.endswith("engine.py"))
    fn = file.facts.function("train_one_epoch")
    objs = w.objects_of_name("criterion", file, fn, fn.stmts[-1])
    assert _names(objs) == ["torch.nn.CrossEntropyLoss"]


def test_self_attributes_from_another_method_and_a_base_class(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch.nn as nn
        class Base(nn.Module):
            def __init__(self):
                super().__init__()
                self.criterion = nn.MSELoss()
        class Trainer(Base):
            def setup(self):
                self.sched = None
            def step(self, x, y):
                return self.criterion  # ask
        if __name__ == "__main__":
            Trainer().step(1, 2)
    """})
    assert _names(_ask(w)) == ["torch.nn.MSELoss"]


def test_trainer_class_receives_objects_through_init(tmp_path):
    w = _world(tmp_path, {
        "trainer.py": """
            class Trainer:
                def __init__(self, model, train_loader, optimizer):
                    self.model = model
                    self.loader = train_loader
                def fit(self):
                    loader = self.loader  # ask
        """,
        "main.py": """
            import torch
            from torch.utils.data import DataLoader
            from trainer import Trainer
            if __name__ == "__main__":
                t = Trainer(model, DataLoader(ds, batch_size=8), opt)
                t.fit()
        """,
    })
    assert _names(_ask(w)) == ["torch.utils.data.DataLoader"]


def test_project_subclass_keeps_its_library_base(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch
        from torch.utils.data import DataLoader
        from torch.optim.lr_scheduler import _LRScheduler
        class InfiniteDataLoader(DataLoader):
            pass
        class FastLoader(InfiniteDataLoader):
            pass
        class WarmUpLR(_LRScheduler):
            def get_lr(self):
                return [0.1]
        if __name__ == "__main__":
            loader = FastLoader(ds)  # ask
            sched = WarmUpLR(opt)  # ask
    """})
    objs = _ask(w)
    assert {o.qname for o in objs} == {"torch.utils.data.DataLoader", "torch.optim.lr_scheduler._LRScheduler"}
    assert {o.name for o in objs} == {"FastLoader", "WarmUpLR"}
    assert all(World.is_a(o, "torch.utils.data.DataLoader") for o in objs if o.name == "FastLoader")


def test_class_alias_conditional_both_arms_and_default_arm(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import argparse
        from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
        parser = argparse.ArgumentParser()
        parser.add_argument("--ddp", action="store_true", default=False)
        args = parser.parse_args()
        Sampler = DistributedSampler if ddp else RandomSampler
        USE_DDP = False
        Sampler2 = DistributedSampler if USE_DDP else RandomSampler
        if __name__ == "__main__":
            s = Sampler(ds)  # ask
            t = Sampler2(ds)  # ask
    """})
    objs = _ask(w)
    assert sorted(o.qname for o in objs) == [
        "torch.utils.data.DistributedSampler", "torch.utils.data.RandomSampler", "torch.utils.data.RandomSampler"]


def test_returns_tuples_unpacking_and_indexing(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch
        import torch.nn as nn
        def build(cfg):
            model = nn.Linear(4, 2)
            crit = nn.BCEWithLogitsLoss()
            return model, crit
        def loaders():
            return torch.utils.data.DataLoader(a), torch.utils.data.DataLoader(b)
        if __name__ == "__main__":
            net, loss_fn = build(None)
            c = loss_fn  # ask
            v = loaders()[1]  # ask
    """})
    objs = _ask(w)
    assert sorted(o.qname for o in objs) == ["torch.nn.BCEWithLogitsLoss", "torch.utils.data.DataLoader"]


def test_containers_with_constant_keys_and_getattr(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch.nn as nn
        ACTS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
        LOSSES = dict(mse=nn.MSELoss, l1=nn.L1Loss)
        if __name__ == "__main__":
            a = ACTS["sigmoid"]()  # ask
            b = getattr(nn, "Tanh")()  # ask
            c = LOSSES["l1"]  # ask
            d = ACTS[name]  # ask
    """})
    objs = _ask(w)
    assert sorted(o.qname for o in objs) == [
        "torch.nn.L1Loss", "torch.nn.ReLU", "torch.nn.Sigmoid", "torch.nn.Sigmoid", "torch.nn.Tanh"]
    assert [o.kind for o in objs[:2]] == ["instance", "instance"]


def test_functools_partial_and_config_defaults(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import functools
        from functools import partial
        import torch
        import torch.nn as nn
        CONFIG = {"loss": "mse", "act": nn.Tanh}
        Norm = functools.partial(nn.BatchNorm1d, eps=1e-3)
        make_opt = partial(torch.optim.SGD, lr=0.1)
        def head(act=CONFIG["act"]):
            return nn.Sequential(nn.Linear(4, 1), act())
        if __name__ == "__main__":
            n = Norm(16)  # ask
            o = make_opt(params)  # ask
            h = head()  # ask
            s = CONFIG["loss"]  # ask
    """})
    objs = _ask(w)
    quals = [o.qname for o in objs if o.kind == "instance"]
    assert quals == ["torch.nn.BatchNorm1d", "torch.optim.SGD", "torch.nn.Sequential"]
    assert [o.bound[0][0] for o in objs[:2]] == ["eps", "lr"]
    assert any(o.kind == "literal" and o.value == "mse" for o in objs)


def test_module_attributes_across_files(tmp_path):
    w = _world(tmp_path, {
        "config.py": """
            import torch.nn as nn
            criterion = nn.SmoothL1Loss()
        """,
        "train.py": """
            import config
            import config as C
            if __name__ == "__main__":
                a = config.criterion  # ask
                b = C.criterion  # ask
        """,
    })
    assert [o.qname for o in _ask(w)] == ["torch.nn.SmoothL1Loss", "torch.nn.SmoothL1Loss"]


def test_method_parameters_bound_through_an_instance(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch.nn as nn
        class Loop:
            def run(self, criterion):
                return criterion  # ask
        if __name__ == "__main__":
            loop = Loop()
            loop.run(nn.NLLLoss())
    """})
    assert _names(_ask(w)) == ["torch.nn.NLLLoss"]


def test_unknown_marks_what_cannot_be_followed(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import yaml
        import torch.nn as nn
        if __name__ == "__main__":
            cfg = yaml.safe_load(open("c.yaml"))
            m = nn.Linear(2, 2) if cfg["small"] else build(cfg)  # ask
    """})
    objs = _ask(w)
    assert sorted(o.kind for o in objs) == ["instance", "unknown"]


def test_near_miss_shadowed_names_and_reassignment(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch.nn as nn
        crit = nn.MSELoss()
        def f():
            crit = nn.L1Loss()
            return crit  # ask
        if __name__ == "__main__":
            crit = nn.HuberLoss()
            g = crit  # ask
            f()
    """})
    assert sorted(o.qname for o in _ask(w)) == ["torch.nn.HuberLoss", "torch.nn.L1Loss"]


def test_a_helper_called_twice_answers_per_call(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch.nn as nn
        ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh}
        def act(name):
            return ACTS[name]()
        class Net(nn.Module):
            def __init__(self, hidden="relu", out="tanh"):
                super().__init__()
                self.h = act(hidden)
                self.o = act(out)
            def forward(self, x):
                return self.o  # ask
        if __name__ == "__main__":
            Net()
    """})
    assert _names(_ask(w)) == ["torch.nn.Tanh"]


def test_defaults_decide_conditions_on_self_attributes(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import torch.nn as nn
        class Block(nn.Module):
            def __init__(self, drop_rate=0.0, norm="bn"):
                super().__init__()
                self.drop_rate = drop_rate
                self.norm = nn.BatchNorm1d(8) if norm == "bn" else nn.LayerNorm(8)
            def forward(self, x):
                return self.norm  # ask
        if __name__ == "__main__":
            Block()
    """})
    objs = _ask(w)
    assert _names(objs) == ["torch.nn.BatchNorm1d"]
    file = w.files[0]
    cls = file.facts.classes["Block"]
    fwd = cls.methods["forward"]
    test = cst.parse_expression("self.drop_rate > 0")
    assert w.decided(test, file, fwd, fwd.stmts[0]) is False
    assert w.constant(cst.parse_expression("self.drop_rate"), file, fwd, fwd.stmts[0]) == 0.0


def test_near_miss_an_undecidable_condition_keeps_both_arms(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import sys
        import torch.nn as nn
        if __name__ == "__main__":
            norm = nn.BatchNorm1d(8) if len(sys.argv) > 2 else nn.LayerNorm(8)
            n = norm  # ask
    """})
    assert _names(_ask(w)) == ["torch.nn.BatchNorm1d", "torch.nn.LayerNorm"]


def test_a_classmethod_constructor_builds_an_instance_of_its_class(tmp_path):
    w = _world(tmp_path, {"train.py": """
        import pytorch_lightning as pl
        from net import Net
        if __name__ == "__main__":
            trainer = pl.Trainer.from_argparse_args(args)
            x = trainer  # ask
            model = Net.from_config({"width": 3})
            y = model  # ask
            z = model.from_file("w.pt")  # ask
    """, "net.py": """
        import torch.nn as nn
        class Net(nn.Module):
            @classmethod
            def from_config(cls, cfg):
                return cls()
    """})
    objs = _ask(w)
    assert [o.kind for o in objs[:2]] == ["instance", "instance"]
    assert objs[0].qname == "pytorch_lightning.Trainer" or objs[0].qname.endswith(".Trainer")
    assert objs[1].cls is not None and objs[1].cls.name == "Net"
    # near miss: `from_*` on an instance (lowercase receiver) is an ordinary method call, not a constructor
    assert all(o.kind != "instance" for o in objs[2:])


def test_names_in_reads_whole_chains_not_their_parts():
    # the one helper for "is this expression derived from / does it use X?" (names.names_in)
    from trainlint.analysis.names import names_in
    from trainlint.analysis.syntax import string_keys

    expr = cst.parse_expression('enumerate(self.loader) + f(x).y + len(cfg.epochs) + d["lr"]')
    names = names_in(expr)
    assert names == ["enumerate", "self.loader", "f", "x", "len", "cfg.epochs", "d"]
    # a lambda's body reads the enclosing names too
    assert "scale" in names_in(cst.parse_expression("(lambda b: b * scale)(2)"))
    # a local `loader` or `sampler` is not read by `self.loader`, and `.y` of `f(x).y` is no name read
    assert "loader" not in names and "self" not in names and "y" not in names
    sub = cst.parse_expression('df.loc[:, "price"]')
    assert string_keys(sub) == ["price"]
