"""The execution layer: which object each event acts on (asked of the value-flow layer), set_epoch
placement and arguments, and the mode a model is in when it is evaluated."""

from __future__ import annotations

import textwrap

import libcst as cst

from trainlint.analysis.execution import ObjectRef, epoch_reseeds, mode_before, same_object
from trainlint.analysis.program import Program, ProgramFile
from trainlint.analysis.walk import calls
from trainlint.config import Config, Selection
from trainlint.context import FileContext
from trainlint.engine import Options, lint_paths
from trainlint.source import SourceFile


def _program(tmp_path, src):
    path = tmp_path / "train.py"
    text = textwrap.dedent(src)
    path.write_text(text, encoding="utf-8")
    ctx = FileContext(SourceFile(str(path), text), cst.parse_module(text))
    pf = ProgramFile(str(path), str(path), ctx, True)
    return Program(pf, [pf]), ctx


def _ref(ctx, code, nth=0):
    """An ObjectRef for the callee/receiver of the nth call whose text is ``code``."""
    found = []
    for scope in ctx.facts.scopes():
        for st in scope.stmts:
            if isinstance(st.node, (cst.FunctionDef, cst.ClassDef)):
                continue
            for c in calls(st.node):
                if ctx.code(c).startswith(code):
                    expr = c.func.value if isinstance(c.func, cst.Attribute) and c.func.attr.value in ("eval", "train", "set_epoch") else c.func
                    found.append(ObjectRef(expr, ctx.facts, scope, st))
    return found[nth]


def _lint(tmp_path, src, code):
    (tmp_path / "train.py").write_text(textwrap.dedent(src), encoding="utf-8")
    report, _ = lint_paths([str(tmp_path)], Options(config=Config(layers=[Selection()]), enabled=[code]))
    assert not report.errors, report.errors
    return [(f.line, f.message) for f in report.findings]


def test_which_object_a_switch_acts_on(tmp_path):
    program, ctx = _program(tmp_path, """
        import copy
        import torch.nn as nn
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = nn.Linear(4, 4)
        teacher = copy.deepcopy(model)
        ddp = DDP(model)
        alias = model
        def evaluate(model, loader):
            model.eval()
        teacher.eval()
        ddp.module.eval()
        alias.train()
        evaluate(teacher, None)
        model(x)
        unknown_thing.eval()
    """)
    fwd = _ref(ctx, "model(x)")
    assert same_object(program, fwd, _ref(ctx, "teacher.eval")) is False  # a deepcopy is another object
    assert same_object(program, fwd, _ref(ctx, "ddp.module.eval")) is True  # DDP(model).module is model
    assert same_object(program, fwd, _ref(ctx, "alias.train")) is True
    # inside evaluate(), `model` is the parameter (bound to the teacher), not the global of that name
    assert same_object(program, fwd, _ref(ctx, "model.eval")) is False
    assert same_object(program, fwd, _ref(ctx, "unknown_thing.eval")) is None


def test_mode_before_counts_only_switches_of_the_evaluated_model(tmp_path):
    program, ctx = _program(tmp_path, """
        import copy
        import torch.nn as nn
        student = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        teacher = copy.deepcopy(student)
        student.train()
        teacher.eval()
        student(x)
    """)
    fwd = _ref(ctx, "student(x)")
    pf = program.files[0]
    assert mode_before(program, pf, fwd.scope, fwd.stmt) == "eval"  # any switch
    assert mode_before(program, pf, fwd.scope, fwd.stmt, model=fwd) == "train"  # the student's own


def test_set_epoch_placement_and_argument(tmp_path):
    program, ctx = _program(tmp_path, """
        from torch.utils.data import DataLoader, DistributedSampler
        def main():
            sampler = DistributedSampler(ds)
            loader = DataLoader(ds, sampler=sampler)
            sampler.set_epoch(0)
            for epoch in range(3):
                loader.sampler.set_epoch(epoch)
                for x, y in loader:
                    model(x).sum().backward(); opt.step(); opt.zero_grad()
        def helper(s):
            s.set_epoch(7)
    """)
    by_receiver = {r.receiver: r for r in epoch_reseeds(program)}
    assert (by_receiver["sampler"].placement, by_receiver["sampler"].constant) == ("once", True)
    assert (by_receiver["loader.sampler"].placement, by_receiver["loader.sampler"].constant) == ("per-epoch", False)
    assert by_receiver["loader.sampler"].loop is not None
    assert by_receiver["s"].placement == "unknown"
    sampler_call = next(c for st in ctx.facts.functions[0].stmts for c in calls(st.node) if ctx.code(c) == "DistributedSampler(ds)")
    assert by_receiver["loader.sampler"].acts_on(program) == {id(sampler_call)}
    assert by_receiver["s"].acts_on(program) is None  # a parameter nobody passes: unknown


def test_tl401_near_misses_on_the_evaluated_object(tmp_path):
    model = """
        import torch
        import torch.nn as nn
        from torch.nn.parallel import DistributedDataParallel as DDP
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.drop = nn.Dropout(0.5)
            def forward(self, x):
                return self.drop(self.fc(x))
        """
    loop = """
        for epoch in range(5):
            {train}.train()
            for x, y in train_loader:
                opt.zero_grad(); nn.functional.mse_loss({train}(x), y).backward(); opt.step()
            {switch}.eval()
            with torch.no_grad():
                for x, y in val_loader:
                    print((model(x) - y).abs().mean())
        """
    model, loop = textwrap.dedent(model), textwrap.dedent(loop)
    head = "model = Net()\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    # DDP: model.module.eval() switches the model itself
    clean = model + "net = DDP(model)\n" + head.replace("model = Net()\n", "") + loop.format(train="net", switch="net.module")
    assert _lint(tmp_path, clean.replace("net = DDP(model)", "model = Net()\nnet = DDP(model)"), "TL401") == []
    # an alias of the model
    alias = model + head + "m = model\n" + loop.format(train="model", switch="m")
    assert _lint(tmp_path, alias, "TL401") == []
    # an EMA copy switched instead of the evaluated model: flagged
    ema = model + "import copy\n" + head + "ema = copy.deepcopy(model)\n" + loop.format(train="model", switch="ema")
    found = _lint(tmp_path, ema, "TL401")
    assert len(found) == 1 and "evaluated in training mode" in found[0][1]
    # a switch on something the model cannot follow: trusted
    opaque = model + head + loop.format(train="model", switch="get_model()")
    assert _lint(tmp_path, opaque, "TL401") == []


def test_guards_know_the_arm_the_default_run_takes(tmp_path):
    program, ctx = _program(tmp_path, """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--amp", action="store_true")
        p.add_argument("--sched", default="step")
        p.add_argument("--warmup", type=int, default=0)
        args = p.parse_args()
        first = True
        for epoch in range(3):
            for x, y in loader:
                opt.zero_grad()
                model(x).sum().backward()
                if args.amp:
                    opt.step()
                elif args.sched == "step" and not args.warmup > 0:
                    opt.step()
                if first:
                    opt.step()
                    first = False
    """)
    from trainlint.analysis.execution import timelines

    (tl,) = timelines(ctx.facts, program)
    amp_step, default_step, flag_step = tl.of("optimizer_step")
    assert [g.default_taken(program) for g in amp_step.real_guards()] == [False]  # --amp is off
    assert [g.default_taken(program) for g in default_step.real_guards()] == [True, True]  # the else of `if args.amp`, then the elif
    # a local flag set to a literal changes between iterations: not settled by defaults
    assert [g.default_taken(program) for g in flag_step.real_guards()] == [None]
