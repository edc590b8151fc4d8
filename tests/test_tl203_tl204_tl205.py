"""TL203 grad-clip-misplaced, TL204 missing-zero-grad and TL205 scheduler-before-optimizer beyond the rules'
snippets: event order across files and helpers, branches, accumulation, constants folded for GradScaler(enabled=...),
one report per line when a file belongs to two programs, and messages that name the lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst

from trainlint.analysis.facts import extract
from trainlint.analysis.execution import exclusive, same_iteration_before, timelines
from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths


def _lint_tree(tmp_path: Path, files: dict, code: str) -> list:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    options = Options(config=Config(layers=[Selection()]), enabled=[code])
    report, _ = lint_paths([str(tmp_path)], options)
    assert not report.errors, report.errors
    return sorted((Path(f.path).name, f.line, f.message) for f in report.findings if f.code == code)


def _events(src: str):
    facts = extract(cst.parse_module(textwrap.dedent(src)))
    (tl,) = timelines(facts)
    return tl


# ---- the timeline ------------------------------------------------------------------------------


def test_timeline_orders_events_and_knows_branches():
    tl = _events("""
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        if (i + 1) % 4 == 0:
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
        elif warm:
            for p in model.parameters():
                p.grad = None
        else:
            optimizer.step()
    """)
    kinds = [e.kind for e in tl.events if e.kind not in ("forward", "loss")]
    assert kinds == ["backward", "unscale", "optimizer_step", "zero_grad", "optimizer_step"]
    back, unscale, scaler_step, clear, plain_step = [e for e in tl.events if e.kind not in ("forward", "loss")]
    assert unscale.guards[0].is_accumulation and scaler_step.optimizer() == "optimizer"
    assert exclusive(scaler_step, plain_step) and exclusive(clear, plain_step) and exclusive(scaler_step, clear)
    assert same_iteration_before(back, plain_step) and not exclusive(back, clear)
    assert len(clear.loops) == 2  # inside the parameter loop


def test_timeline_follows_helpers_into_other_files(tmp_path):
    found = _lint_tree(tmp_path, {
        "train.py": """
            import torch
            from engine.steps import train_epoch
            sched = torch.optim.lr_scheduler.StepLR(optimizer, 10)
            for epoch in range(30):
                sched.step()
                train_epoch(model, loader, optimizer)
        """,
        "engine/__init__.py": "",
        "engine/steps.py": """
            def train_epoch(model, loader, optimizer):
                for x, y in loader:
                    optimizer.zero_grad()
                    model(x).mean().backward()
                    optimizer.step()
        """,
    }, "TL205")
    assert len(found) == 1
    name, line, message = found[0]
    assert (name, line) == ("train.py", 6)
    assert "engine/steps.py:6" in message and "start of each epoch" in message


# ---- TL203 -------------------------------------------------------------------------------------


def test_tl203_scaler_disabled_by_a_constant_is_clean_but_a_flag_is_not(tmp_path):
    loop = """
        import torch
        scaler = torch.cuda.amp.GradScaler(enabled={enabled})
        for x, y in loader:
            optimizer.zero_grad()
            scaler.scale(criterion(model(x), y)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
    """
    assert _lint_tree(tmp_path / "a", {"t.py": "USE_AMP = False\n" + loop.replace("{enabled}", "USE_AMP")}, "TL203") == []
    found = _lint_tree(tmp_path / "b", {"t.py": loop.replace("{enabled}", "args.amp")}, "TL203")
    assert [(n, l) for n, l, _ in found] == [("t.py", 7)]
    assert "scaler.unscale_(optimizer)" in found[0][2]


def test_the_value_model_folds_infinity_in_its_library_spellings():
    from trainlint.analysis.values import fold

    src = textwrap.dedent("""
        import math, torch
        import numpy as np
        from math import inf
        INF = float("inf")
        a = float("inf")
        b = math.inf
        c = np.Inf
        d = torch.inf
        e = inf
        f = INF
        g = float("1e-3")
        h = float("not a number")
        infinity = 3.0
        i = infinity
    """)
    facts = extract(cst.parse_module(src))
    got = {}
    for name in "abcdefghi":
        a = facts.module.assigns[name][-1]
        v = fold(a.value, facts, facts.module, a.stmt)
        got[name] = None if v is None else v.value
    assert got == {"a": float("inf"), "b": float("inf"), "c": float("inf"), "d": float("inf"), "e": float("inf"),
                   "f": float("inf"), "g": 0.001, "h": None, "i": 3.0}


def test_tl203_a_clip_to_infinity_only_measures_the_norm_in_every_spelling(tmp_path):
    loop = """
        import argparse, math
        import numpy as np
        import torch
        parser = argparse.ArgumentParser()
        parser.add_argument("--clip", type=float, default={default})
        args = parser.parse_args()
        LIMIT = {limit}
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), {arg})
    """
    def lint(name, default="1.0", limit="1.0", arg="LIMIT"):
        src = loop.replace("{default}", default).replace("{limit}", limit).replace("{arg}", arg)
        return [(n, l) for n, l, _ in _lint_tree(tmp_path / name, {"t.py": src}, "TL203")]

    # measuring the norm for logging after the step: nothing is clipped, nothing to report
    assert lint("a", arg='float("inf")') == []
    assert lint("b", arg="max_norm=math.inf") == []
    assert lint("c", limit="np.inf") == []
    assert lint("d", default='float("inf")', arg="args.clip") == []
    # a finite limit after the step clips gradients that were already used
    assert lint("e") == [("t.py", 13)]
    assert lint("f", arg="args.clip") == [("t.py", 13)]
    # near-miss: a project variable that merely ends in "inf" is no infinity
    assert lint("g", limit="1.0\n        clip_inf = LIMIT", arg="clip_inf") == [("t.py", 14)]


def test_tl203_clip_after_step_in_a_helper_of_another_file(tmp_path):
    found = _lint_tree(tmp_path, {
        "main.py": """
            from utils.train import step
            for epoch in range(5):
                for batch in loader:
                    step(model, optimizer, batch)
        """,
        "utils/__init__.py": "",
        "utils/train.py": """
            import torch
            def step(model, optimizer, batch):
                optimizer.zero_grad()
                model(batch).mean().backward()
                optimizer.step()
                torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
        """,
    }, "TL203")
    assert [(n, l) for n, l, _ in found] == [("train.py", 7)]
    assert "(line 6)" in found[0][2]


# ---- TL204 -------------------------------------------------------------------------------------


def test_tl204_reported_once_when_two_entry_scripts_share_the_loop(tmp_path):
    lib = """
        def fit(model, loader, optimizer):
            for x, y in loader:
                loss = (model(x) - y).pow(2).mean()
                loss.backward()
                optimizer.step()
    """
    entry = """
        from lib import fit
        if __name__ == "__main__":
            fit(model, loader, optimizer)
    """
    found = _lint_tree(tmp_path, {"lib.py": lib, "a.py": entry, "b.py": entry}, "TL204")
    assert [(n, l) for n, l, _ in found] == [("lib.py", 6)]
    assert "never cleared" in found[0][2]


def test_tl204_clear_in_an_inherited_method_of_another_file(tmp_path):
    found = _lint_tree(tmp_path, {
        "base.py": """
            class BaseTrainer:
                def reset(self):
                    self.optimizer.zero_grad(set_to_none=True)
        """,
        "train.py": """
            from base import BaseTrainer
            class Trainer(BaseTrainer):
                def run(self):
                    for epoch in range(3):
                        for x, y in self.loader:
                            self.reset()
                            self.criterion(self.model(x), y).backward()
                            self.optimizer.step()
            if __name__ == "__main__":
                Trainer().run()
        """,
    }, "TL204")
    assert found == []


def test_tl204_wipe_names_both_lines(tmp_path):
    found = _lint_tree(tmp_path, {"t.py": """
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            model.zero_grad()
            optimizer.step()
    """}, "TL204")
    assert [(n, l) for n, l, _ in found] == [("t.py", 5)]
    assert "(line 4)" in found[0][2] and "(line 6)" in found[0][2]


def test_tl204_custom_optimizer_wrapper_is_not_judged(tmp_path):
    found = _lint_tree(tmp_path, {"t.py": """
        from transformer.Optim import ScheduledOptim
        optimizer = ScheduledOptim(inner, 2.0, 512, 4000)
        for x, y in loader:
            criterion(model(x), y).backward()
            optimizer.step()
    """}, "TL204")
    assert found == []


# ---- TL205 -------------------------------------------------------------------------------------


def test_tl205_custom_subclass_of_torch_scheduler_is_judged_but_a_plain_class_is_not(tmp_path):
    body = """
        for x, y in loader:
            sched.step()
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
    """
    sub = """
        from torch.optim.lr_scheduler import _LRScheduler
        class FindLR(_LRScheduler):
            def get_lr(self):
                return [b * 1.1 ** self.last_epoch for b in self.base_lrs]
        sched = FindLR(optimizer)
    """
    plain = """
        class Warmup:
            def step(self):
                pass
        sched = Warmup()
    """
    assert [(n, l) for n, l, _ in _lint_tree(tmp_path / "a", {"t.py": sub + body}, "TL205")] == [("t.py", 9)]
    assert _lint_tree(tmp_path / "b", {"t.py": plain + body}, "TL205") == []


def test_tl204_rescaling_grads_between_backward_and_step_is_not_a_wipe(tmp_path):
    found = _lint_tree(tmp_path, {"t.py": """
        import torch.distributed as dist
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad = p.grad / world_size
            optimizer.step()
    """}, "TL204")
    assert found == []


def test_step_functions_are_one_iteration_per_call_but_tl204_trusts_the_caller(tmp_path):
    files = {"agent.py": """
        import torch
        class Agent:
            def learn(self, batch):
                loss = self.loss_fn(self.net(batch.s), batch.q)
                loss.backward()
                self.lr_sched.step()
                self.optimizer.step()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        if __name__ == "__main__":
            agent = Agent()
            for t in range(100):
                agent.net.zero_grad()
                agent.learn(buffer.sample())
    """}
    assert [(n, l) for n, l, _ in _lint_tree(tmp_path / "a", files, "TL203")] == [("agent.py", 9)]
    assert [(n, l) for n, l, _ in _lint_tree(tmp_path / "b", files, "TL205")] == [("agent.py", 7)]
    assert _lint_tree(tmp_path / "c", files, "TL204") == []


def test_lightning_manual_optimization_training_step(tmp_path):
    found = _lint_tree(tmp_path, {"lit.py": """
        import lightning as L
        class GAN(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False
            def training_step(self, batch, batch_idx):
                opt_g, opt_d = self.optimizers()
                opt_d.zero_grad()
                self.manual_backward(self.d_loss(batch))
                opt_d.step()
                self.manual_backward(self.g_loss(batch))
                opt_g.step()
        if __name__ == "__main__":
            L.Trainer().fit(GAN())
    """}, "TL204")
    assert [(n, l) for n, l, _ in found] == [("lit.py", 13)]
    assert "training_step" in found[0][2]


def test_tl203_a_clip_is_paired_with_the_step_of_the_optimizer_that_updates_its_parameters(tmp_path):
    # the critic's clip after the critic's step: the actor's step that follows does not use those gradients,
    # so the clip is late (after its step), not early (before the actor's backward)
    found = _lint_tree(tmp_path, {"a2c.py": """
        import torch
        actor, critic = torch.nn.Linear(8, 4), torch.nn.Linear(8, 1)
        actor_opt = torch.optim.Adam(actor.parameters(), lr=1e-4)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
        for episode in range(1000):
            for obs, act, ret in rollouts():
                critic_opt.zero_grad()
                value_loss = (critic(obs) - ret).pow(2).mean()
                value_loss.backward()
                critic_opt.step()
                torch.nn.utils.clip_grad_norm_(critic.parameters(), 0.5)
                actor_opt.zero_grad()
                policy_loss = -(actor(obs).log_prob(act) * (ret - critic(obs).detach())).mean()
                policy_loss.backward()
                actor_opt.step()
    """}, "TL203")
    assert [(n, l) for n, l, _ in found] == [("a2c.py", 12)]
    assert "runs after `critic_opt.step()`" in found[0][2]


def test_tl204_a_clear_of_another_optimizer_does_not_clear_the_stepped_one(tmp_path):
    loop = """
        import torch
        head_opt = torch.optim.SGD(model.fc.parameters(), lr=0.1)
        full_opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for epoch in range(10):
            for x, y in loader:
                {opt}.zero_grad()
                criterion(model(x), y).backward()
                full_opt.step()
    """
    found = _lint_tree(tmp_path / "a", {"t.py": loop.replace("{opt}", "head_opt")}, "TL204")
    assert [(n, l) for n, l, _ in found] == [("t.py", 9)]
    assert "clears another optimizer" in found[0][2]
    assert _lint_tree(tmp_path / "b", {"t.py": loop.replace("{opt}", "full_opt")}, "TL204") == []
    # one optimizer under two names (an alias) is one optimizer
    alias = loop.replace("{opt}", "opt").replace("        for epoch", "        opt = full_opt\n        for epoch")
    assert _lint_tree(tmp_path / "c", {"t.py": alias}, "TL204") == []


# ---- manual optimizer steps (plain SGD written by hand) ------------------------------------------


def test_manual_sgd_updates_are_optimizer_steps_of_the_whole_model():
    tl = _events("""
    import torch
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        for p in model.parameters():
            p.data.add_(-lr, p.grad.data)
        for name, p in model.named_parameters():
            p.add_(p.grad, alpha=-lr)
    """)
    steps = tl.of("optimizer_step")
    assert len(steps) == 3 and all(s.manual for s in steps)
    # the parameter loop is not an iteration of its own: each update is one step of the batch loop
    assert all(len(s.loops) == 1 for s in steps)


def test_updates_that_are_not_manual_steps():
    tl = _events("""
    import torch
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        x_adv.data.add_(eps * x_adv.grad.sign())          # an adversarial input, not a parameter loop
        for p in model.parameters():
            p.grad.data.add_(wd * p.data)                 # weight decay added to the gradient
            ema[p].mul_(0.99).add_(p.data, alpha=0.01)    # an EMA of the weights
        for p in model.parameters():
            q.data.add_(-lr, p.grad)                      # another tensor than the loop's parameter
    """)
    assert [s.manual for s in tl.of("optimizer_step")] == [False]


def test_tl204_manual_sgd_without_clearing_is_flagged(tmp_path):
    found = _lint_tree(tmp_path, {"train.py": """
    import torch
    model = torch.nn.Linear(4, 1)
    for epoch in range(3):
        for x, y in loader:
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
    """}, "TL204")
    assert [(f, line) for f, line, _ in found] == [("train.py", 10)]
    assert "gradients are never cleared" in found[0][2]


def test_tl204_manual_sgd_that_clears_is_clean(tmp_path):
    found = _lint_tree(tmp_path, {"train.py": """
    import torch
    model = torch.nn.Linear(4, 1)
    for x, y in loader:
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
                p.grad.zero_()
    for x, y in loader:
        model.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        for p in model.parameters():
            p.data.add_(-0.1, p.grad.data)
    """}, "TL204")
    assert found == []


def test_tl204_train_step_of_a_library_trainer_subclass_is_one_iteration(tmp_path):
    # skorch / inferno NeuralNet: the library's fit loop calls train_step once per batch; an override
    # that backpropagates and updates the parameters owns the clearing
    src = """
    import torch
    import skorch

    class Trainer(skorch.NeuralNet):
        def train_step(self, X, y):
            self.module_.train()
            {clear}
            loss = self.get_loss(self.module_(X), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.module_.parameters(), 0.25)
            for p in self.module_.parameters():
                p.data.add_(-self.lr, p.grad.data)
            return loss

    net = Trainer(module=torch.nn.Linear, lr=20)
    net.fit(X, y)
    """
    found = _lint_tree(tmp_path / "bad", {"train.py": src.replace("{clear}", "")}, "TL204")
    assert [(f, line) for f, line, _ in found] == [("train.py", 13)]
    assert "never cleared in train_step" in found[0][2]
    assert _lint_tree(tmp_path / "good", {"train.py": src.replace("{clear}", "self.module_.zero_grad()")}, "TL204") == []


def test_tl204_train_step_of_a_project_class_is_left_to_its_caller(tmp_path):
    # a project base class: its own fit loop (not read here) may clear before calling train_step
    found = _lint_tree(tmp_path, {
        "base.py": """
        class BaseTrainer:
            def fit(self, loader):
                for x, y in loader:
                    self.optimizer.zero_grad()
                    self.train_step(x, y)
        """,
        "train.py": """
        import torch
        from base import BaseTrainer

        class Trainer(BaseTrainer):
            def train_step(self, x, y):
                loss = self.model(x).sum()
                loss.backward()
                for p in self.model.parameters():
                    p.data.add_(-0.1, p.grad.data)

        Trainer().fit(loader)
        """}, "TL204")
    assert found == []


def test_tl204_clear_guarded_by_grad_is_not_none_is_not_partial(tmp_path):
    # d2l's train_ch3: clears through the optimizer or by hand (only once a gradient exists), then steps
    # through the optimizer or with a hand-written sgd() helper
    found = _lint_tree(tmp_path, {"train.py": """
    import torch

    def sgd(params, lr, batch_size):
        for param in params:
            param.data -= lr * param.grad / batch_size

    def train(net, train_iter, loss, num_epochs, batch_size, params=None, lr=None, optimizer=None):
        for epoch in range(num_epochs):
            for X, y in train_iter:
                l = loss(net(X), y).sum()
                if optimizer is not None:
                    optimizer.zero_grad()
                elif params is not None and params[0].grad is not None:
                    for param in params:
                        param.grad.data.zero_()
                l.backward()
                if optimizer is None:
                    sgd(params, lr, batch_size)
                else:
                    optimizer.step()

    train(net, it, loss, 5, 256, [w, b], 0.1)
    """}, "TL204")
    assert found == []


def test_tl205_the_scheduler_passed_into_a_helper_is_judged_by_what_it_is(tmp_path):
    engine = """
        def train_one_epoch(model, loader, optimizer, lr_schedule):
            for x, y in loader:
                lr_schedule.step()
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
    """
    main = """
        import torch
        from engine import train_one_epoch
        from schedule import WarmupCosine
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
        sched = {sched}
        for epoch in range(20):
            train_one_epoch(model, loader, optimizer, sched)
    """
    setter = "class WarmupCosine:\n    def __init__(self, opt):\n        self.opt = opt\n    def step(self):\n        pass\n"
    found = _lint_tree(tmp_path / "a", {"engine.py": engine, "schedule.py": setter,
                                        "train.py": main.replace("{sched}", "torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-4, total_steps=1000)")}, "TL205")
    assert [(n, l) for n, l, _ in found] == [("engine.py", 4)]
    # a project class that sets the learning rate itself has its own contract
    assert _lint_tree(tmp_path / "b", {"engine.py": engine, "schedule.py": setter,
                                       "train.py": main.replace("{sched}", "WarmupCosine(optimizer)")}, "TL205") == []


_GAN = """
    import torch
    G, D = make_generator(), make_discriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4)
    sched_g = torch.optim.lr_scheduler.StepLR(opt_g, step_size=30)
    sched_d = torch.optim.lr_scheduler.StepLR({d_opt}, step_size=30)
    for epoch in range(100):
        for real in loader:
            opt_d.zero_grad()
            d_loss(D, G, real).backward()
            opt_d.step()
{order}
"""
_G_STEP = "            opt_g.zero_grad()\n            g_loss(D, G, real).backward()\n            opt_g.step()\n"


def test_tl205_pairs_each_scheduler_with_the_optimizer_it_wraps(tmp_path):
    # a GAN: the discriminator's optimizer steps first, so "an optimizer stepped earlier" no longer hides
    # the generator's scheduler stepped before the generator's own optimizer
    buggy = _GAN.replace("{d_opt}", "opt_d").replace("{order}", "            sched_d.step()\n            sched_g.step()\n" + _G_STEP)
    found = _lint_tree(tmp_path / "a", {"gan.py": buggy}, "TL205")
    assert [(n, l) for n, l, _ in found] == [("gan.py", 14)]
    assert "before `opt_g.step()`" in found[0][2]
    # each scheduler after its own optimizer: clean, although sched_d runs before opt_g.step()
    clean = _GAN.replace("{d_opt}", "opt_d").replace("{order}", "            sched_d.step()\n" + _G_STEP + "            sched_g.step()\n")
    assert _lint_tree(tmp_path / "b", {"gan.py": clean}, "TL205") == []


def test_tl205_pairing_follows_the_optimizer_through_a_class_and_a_helper_of_another_file(tmp_path):
    trainer = """
        def train_epoch(loader, G, D, opt_g, opt_d, sched_g):
            for real in loader:
                opt_d.zero_grad()
                d_loss(D, G, real).backward()
                opt_d.step()
                sched_g.step()
                opt_g.zero_grad()
                g_loss(D, G, real).backward()
                opt_g.step()
    """
    main = """
        import torch
        from trainer import train_epoch
        class GAN:
            def __init__(self, G, D):
                self.opt_g = torch.optim.Adam(G.parameters(), lr=2e-4)
                self.opt_d = torch.optim.Adam(D.parameters(), lr=2e-4)
                self.sched = torch.optim.lr_scheduler.LambdaLR({opt}, lambda e: 0.99 ** e)
        G, D = make_generator(), make_discriminator()
        gan = GAN(G, D)
        for epoch in range(100):
            train_epoch(loader, G, D, gan.opt_g, gan.opt_d, gan.sched)
    """
    found = _lint_tree(tmp_path / "a", {"trainer.py": trainer, "train.py": main.replace("{opt}", "self.opt_g")}, "TL205")
    assert [(n, l) for n, l, _ in found] == [("trainer.py", 7)]
    # the scheduler of the discriminator's optimizer, stepped after it: clean
    assert _lint_tree(tmp_path / "b", {"trainer.py": trainer, "train.py": main.replace("{opt}", "self.opt_d")}, "TL205") == []


def test_tl205_two_optimizers_and_a_scheduler_that_cannot_be_paired_stay_unjudged(tmp_path):
    # near miss: the scheduler wraps an optimizer the model cannot follow (a parameter nobody binds), so
    # the discriminator's earlier step still keeps the rule quiet, as before
    src = """
        import torch
        def fit(loader, G, D, opt_g, opt_d, make_sched):
            sched_g = make_sched()
            for real in loader:
                opt_d.zero_grad()
                d_loss(D, G, real).backward()
                opt_d.step()
                sched_g.step()
                opt_g.zero_grad()
                g_loss(D, G, real).backward()
                opt_g.step()
    """
    assert _lint_tree(tmp_path, {"fit.py": src}, "TL205") == []
