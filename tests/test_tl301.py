"""TL301 missing-seed: the program-level behaviour the single-file snippets cannot show (seeds and draws
in other files, helpers resolved through every import style, uncalled helpers, where the finding goes)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths
from trainlint.findings import Applicability

LOOP = """
def fit(model, loader, opt):
    for epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            loss = model(x, y)
            loss.backward()
            opt.step()
"""


def _write(root: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def _run(root: Path, files: Dict[str, str]):
    _write(root, files)
    options = Options(config=Config(layers=[Selection()]), enabled=["TL301"])
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code == "TL301"]


def _where(findings) -> List[str]:
    return [f"{Path(f.path).name}:{f.line}" for f in findings]


def test_helper_imported_by_name_from_another_file_seeds(tmp_path):
    found = _run(tmp_path, {
        "utils.py": """
            import random, numpy as np, torch
            def set_seed(s):
                random.seed(s); np.random.seed(s); torch.manual_seed(s)
        """,
        "train.py": "import torch\nfrom utils import set_seed\n" + LOOP + "\nif __name__ == '__main__':\n    set_seed(0)\n    fit(m, l, o)\n",
    })
    assert found == []


def test_helper_called_through_its_module_seeds(tmp_path):
    found = _run(tmp_path, {
        "utils.py": "import torch\ndef seed_everything(s):\n    torch.manual_seed(s)\n",
        "train.py": "import torch\nimport utils\n" + LOOP + "\nutils.seed_everything(1)\nfit(m, l, o)\n",
    })
    assert found == []


def test_helper_in_a_sub_package_via_relative_import_and_reexport(tmp_path):
    found = _run(tmp_path, {
        "proj/__init__.py": "",
        "proj/common/__init__.py": "from .utils import seed_all\n",
        "proj/common/utils.py": "import torch\ndef seed_all(s):\n    torch.manual_seed(s)\n",
        "proj/train.py": "import torch\nfrom .common import seed_all\n" + LOOP + "\nif __name__ == '__main__':\n    seed_all(3)\n    fit(m, l, o)\n",
    })
    assert found == []


def test_helper_defined_but_never_called_is_reported_with_its_location(tmp_path):
    found = _run(tmp_path, {
        "utils.py": "import torch\n\n\ndef set_seed(s):\n    torch.manual_seed(s)\n",
        "train.py": "import torch\nfrom utils import set_seed\n" + LOOP + "\nif __name__ == '__main__':\n    fit(m, l, o)\n",
    })
    assert _where(found) == ["train.py:5"]  # the epoch loop in fit()
    f = found[0]
    assert "never seeds torch" in f.message
    assert "utils.py:4 defines set_seed() but nothing calls it" in f.message
    assert "(train.py + utils.py)" in f.message
    assert any(Path(r.path).name == "utils.py" and r.span.line == 4 for r in f.related)
    assert "set_seed(seed)" in f.hint


def test_module_level_seed_in_an_imported_file_counts_but_its_main_block_does_not(tmp_path):
    seeded = _run(tmp_path / "a", {
        "config.py": "import torch\ntorch.manual_seed(0)\nLR = 0.1\n",
        "train.py": "import torch\nfrom config import LR\n" + LOOP + "\nfit(m, l, o)\n",
    })
    assert seeded == []
    unseeded = _run(tmp_path / "b", {
        "config.py": "import torch\nLR = 0.1\nif __name__ == '__main__':\n    torch.manual_seed(0)\n",
        "train.py": "import torch\nfrom config import LR\n" + LOOP + "\nfit(m, l, o)\n",
    })
    assert _where(unseeded) == ["train.py:5"]


def test_unseeded_numpy_draw_in_another_file_is_named(tmp_path):
    found = _run(tmp_path, {
        "data.py": "import numpy as np\n\n\ndef split(n):\n    return np.random.permutation(n)\n",
        "train.py": "import torch\nimport data\n" + LOOP + "\ntorch.manual_seed(0)\nidx = data.split(10)\nfit(m, l, o)\n",
    })
    assert _where(found) == ["train.py:5"]
    msg = found[0].message
    assert msg.startswith("torch is seeded (train.py:12) but numpy's global generator is not")
    assert "data.py:5 draws from np.random.permutation()" in msg
    assert {Path(r.path).name for r in found[0].related} == {"train.py", "data.py"}
    assert found[0].fix is None


def test_draw_in_a_function_nobody_calls_is_ignored(tmp_path):
    found = _run(tmp_path, {
        "data.py": "import numpy as np\n\n\ndef split(n):\n    return np.random.permutation(n)\n",
        "train.py": "import torch\nimport data\n" + LOOP + "\ntorch.manual_seed(0)\nfit(m, l, o)\n",
    })
    assert found == []


def test_programs_that_do_not_train_are_not_judged(tmp_path):
    found = _run(tmp_path, {
        "model.py": "import torch\n" + LOOP,  # a training function nobody calls here
        "predict.py": """
            import torch
            from model import fit
            model = torch.load("m.pt")
            for x in loader:
                print(model(x).argmax(1))
        """,
        "plot.py": "import numpy as np\nimport matplotlib.pyplot as plt\nplt.plot(np.random.randn(10))\n",
    })
    assert found == []


def test_library_file_is_never_the_location(tmp_path):
    found = _run(tmp_path, {
        "engine.py": "import torch\n" + LOOP,
        "main.py": "import torch\nfrom engine import fit\n\nif __name__ == '__main__':\n    fit(m, l, o)\n",
    })
    assert _where(found) == ["main.py:4"]  # the __main__ guard: the loop is in engine.py


def test_notebook_style_script_without_a_loop_in_the_entry_points_at_line_one(tmp_path):
    found = _run(tmp_path, {
        "engine.py": "import torch\n" + LOOP,
        "nb.py": "import torch\nfrom engine import fit\n\nmodel = make()\nfit(model, l, o)\n",
    })
    assert _where(found) == ["nb.py:5"]


def test_outermost_training_loop_is_chosen(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import torch

            def train_epoch(model, loader, opt):
                for x, y in loader:
                    model(x, y).backward()
                    opt.step()

            def main():
                for epoch in range(10):
                    train_epoch(model, loader, opt)

            main()
        """,
    })
    assert _where(found) == ["train.py:9"]


def test_unsafe_fix_inserts_a_seed_after_the_imports(tmp_path):
    found = _run(tmp_path, {"t.py": '"""doc"""\nimport torch as th\nimport numpy as np\n' + LOOP + "\nfit(m, l, o)\n"})
    fix = found[0].fix
    assert fix is not None and fix.applicability is Applicability.UNSAFE
    (edit,) = fix.edits
    assert edit.content == "th.manual_seed(0)\n" and edit.span.line == 4 and edit.span.column == 1


def test_seeded_generator_objects_do_not_count_as_unseeded_draws(tmp_path):
    found = _run(tmp_path, {
        "t.py": """
            import random
            import numpy as np
            import torch
            torch.manual_seed(0)
            rng = np.random.default_rng(0)
            r = random.Random(1)
            idx = rng.permutation(10)
            r.shuffle(items)
            for x, y in loader:
                model(x, y).backward()
        """,
    })
    assert found == []


def test_unseeded_default_rng_is_reported_even_with_np_random_seed(tmp_path):
    found = _run(tmp_path, {
        "t.py": """
            import numpy as np
            import torch
            torch.manual_seed(0)
            np.random.seed(0)
            rng = np.random.default_rng()
            for x, y in loader:
                model(x, y).backward()
                opt.step()
        """,
    })
    assert len(found) == 1 and "unseeded numpy generator" in found[0].message


def test_subclass_of_hf_trainer_in_another_file_seeds(tmp_path):
    found = _run(tmp_path, {
        "trainers.py": """
            from transformers import Trainer
            class WeightedTrainer(Trainer):
                def compute_loss(self, model, inputs, return_outputs=False):
                    return model(**inputs).loss * 2
        """,
        "run.py": "from trainers import WeightedTrainer\ntrainer = WeightedTrainer(model=m, args=a)\ntrainer.train()\n",
    })
    assert found == []


def test_lightning_trainer_without_seed_everything_is_flagged_at_fit(tmp_path):
    found = _run(tmp_path, {
        "run.py": """
            import pytorch_lightning as pl
            from model import Net
            trainer = pl.Trainer(max_epochs=1)
            trainer.fit(Net())
        """,
        "model.py": """
            import pytorch_lightning as pl
            class Net(pl.LightningModule):
                def training_step(self, batch, i):
                    return self(batch).mean()
        """,
    })
    assert _where(found) == ["run.py:4"]
    assert "seed_everything" in found[0].hint


def test_keras_or_sklearn_fit_is_not_a_torch_training_program(tmp_path):
    found = _run(tmp_path, {
        "k.py": "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
                "X = np.random.randn(10, 2)\nclf = LogisticRegression()\nclf.fit(X, y)\n",
    })
    assert found == []


def test_self_method_chain_reaches_the_loop(tmp_path):
    found = _run(tmp_path, {
        "t.py": """
            import torch

            class Runner:
                def step(self, batch):
                    loss = self.model(batch)
                    loss.backward()

                def run(self, epochs):
                    for epoch in range(epochs):
                        for batch in self.loader:
                            self.step(batch)

            if __name__ == "__main__":
                Runner().run(3)
        """,
    })
    assert _where(found) == ["t.py:9"]


def test_draws_in_what_dataloader_workers_run_are_not_unseeded(tmp_path):
    found = _run(tmp_path, {
        "data.py": """
            import random
            import numpy as np
            from torch.utils.data import Dataset

            def jitter(x):
                return x + np.random.randn(*x.shape)

            class Tiles(Dataset):
                def _augment(self, x):
                    return x[::-1] if random.random() < 0.5 else x

                def __getitem__(self, i):
                    return jitter(self._augment(self.items[i]))
        """,
        "train.py": """
            import torch
            from torch.utils.data import DataLoader
            from data import Tiles
            torch.manual_seed(0)
            loader = DataLoader(Tiles(), batch_size=8, shuffle=True, num_workers=4)
            for x in loader:
                model(x).mean().backward()
        """,
    })
    assert found == []


def test_lightning_cli_with_seeding_switched_off_is_flagged(tmp_path):
    found = _run(tmp_path, {
        "main.py": """
            from lightning.pytorch.cli import LightningCLI
            from model import Net
            if __name__ == "__main__":
                LightningCLI(Net, seed_everything_default=False)
        """,
        "model.py": """
            import lightning as L
            class Net(L.LightningModule):
                def training_step(self, batch, i):
                    return self(batch).mean()
        """,
    })
    assert _where(found) == ["main.py:4"]  # the LightningCLI(...) call


def test_project_helper_that_seeds_only_numpy_does_not_count_as_a_torch_seed(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import numpy as np
            import torch

            def set_seed(seed):
                np.random.seed(seed)

            set_seed(0)
            for x, y in loader:
                model(x, y).backward()
                opt.step()
        """,
    })
    assert len(found) == 1 and "numpy is seeded (train.py:5) but torch is not" in found[0].message


def test_test_and_benchmark_entries_are_not_judged(tmp_path):
    loop = "import torch\nfor x in loader:\n    model(x).mean().backward()\n"
    found = _run(tmp_path, {"benchmark.py": loop, "tests/test_train.py": loop, "bench_speed.py": loop})
    assert found == []


def test_hf_trainer_subclass_counts_as_the_torch_seed_in_the_numpy_message(tmp_path):
    found = _run(tmp_path, {
        "trainers.py": """
            from transformers import Trainer
            class MyTrainer(Trainer):
                pass
        """,
        "run.py": """
            import numpy as np
            from trainers import MyTrainer
            rng = np.random.default_rng()  # before training (a draw after it cannot change what is learned)
            trainer = MyTrainer(model=m, args=a, callbacks=[Shuffle(rng)])
            trainer.train()
        """,
    })
    assert len(found) == 1 and found[0].message.startswith("torch is seeded (run.py:4)")


def test_a_backward_without_any_parameter_update_is_not_training(tmp_path):
    found = _run(tmp_path, {
        "profile_utils.py": """
            import torch
            def time_layer(m, x, n=10):
                for _ in range(n):
                    m(x).sum().backward()
        """,
        "detect.py": """
            import torch
            from profile_utils import time_layer
            model = torch.load("yolo.pt")
            time_layer(model, torch.zeros(1, 3, 64, 64))
            print(model(torch.zeros(1, 3, 64, 64)))
        """,
    })
    assert found == []


def test_update_in_the_caller_makes_a_backward_helper_training(tmp_path):
    found = _run(tmp_path, {
        "t.py": """
            import torch
            def backprop(loss):
                loss.backward()
            for x, y in loader:
                backprop(model(x, y))
                optimizer.step()
        """,
    })
    assert _where(found) == ["t.py:4"]


def test_seed_through_a_helper_names_the_call_site(tmp_path):
    found = _run(tmp_path, {
        "utils.py": "import torch\n\n\ndef set_seed(s):\n    torch.manual_seed(s)\n",
        "train.py": "import random\nimport torch\nfrom utils import set_seed\n" + LOOP
                    + "\nset_seed(0)\nrandom.shuffle(files)\nfit(m, l, o)\n",
    })
    assert len(found) == 1
    assert found[0].message.startswith("torch is seeded (utils.py:5, through set_seed() at train.py:13) but Python's random")


def test_loading_a_lightning_module_for_inference_is_not_training(tmp_path):
    found = _run(tmp_path, {
        "model.py": """
            import lightning as L
            class Net(L.LightningModule):
                def training_step(self, batch, i):
                    return self(batch).mean()
        """,
        "predict.py": """
            import torch
            from model import Net
            if __name__ == "__main__":
                net = Net.load_from_checkpoint("last.ckpt")
                print(net(torch.zeros(1, 3)))
        """,
    })
    assert found == []


def test_train_test_split_without_random_state_is_an_unseeded_numpy_draw(tmp_path):
    body = """
        import torch
        from sklearn.model_selection import train_test_split
        torch.manual_seed(0)
        x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2{extra})
        for xb, yb in loader:
            model(xb, yb).backward()
            optimizer.step()
    """
    found = _run(tmp_path / "a", {"t.py": body.format(extra="")})
    assert len(found) == 1 and "draws from train_test_split()" in found[0].message
    assert _run(tmp_path / "b", {"t.py": body.format(extra=", random_state=0")}) == []


# -- issue 10: right on real code ----------------------------------------------------------------------

TRAIN_LOOP = """
    for epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            loss = crit(model(x), y)
            loss.backward()
            opt.step()
"""


def test_draws_that_pick_samples_to_plot_after_training_are_not_training_randomness(tmp_path):
    found = _run(tmp_path, {"t.py": "import random\nimport torch\nimport matplotlib.pyplot as plt\ntorch.manual_seed(0)\n"
                            + textwrap.dedent(TRAIN_LOOP) +
                            "samples = random.sample(list(test_set), 9)\nfor i, (img, label) in enumerate(samples):\n"
                            "    plt.subplot(3, 3, i + 1)\n    plt.imshow(img)\nplt.show()\n"})
    assert found == []


def test_a_plotting_helper_called_after_training_in_main_is_not_training_randomness(tmp_path):
    found = _run(tmp_path, {"t.py": """
        import numpy as np
        import torch

        def fit(model, loader, opt):
            for x, y in loader:
                opt.zero_grad()
                model(x).sum().backward()
                opt.step()

        def show_predictions(model, data):
            idx = np.random.choice(len(data), 8)
            plot(model, data[idx])

        def main():
            torch.manual_seed(0)
            fit(model, loader, opt)
            show_predictions(model, test_data)

        if __name__ == "__main__":
            main()
    """})
    assert found == []


def test_a_draw_between_epochs_still_counts(tmp_path):
    # the shuffle after the update runs before the next epoch's training: it changes what is learned
    found = _run(tmp_path, {"t.py": """
        import random
        import torch
        torch.manual_seed(0)
        for epoch in range(3):
            for x, y in make_batches(files):
                opt.zero_grad()
                model(x).sum().backward()
                opt.step()
            random.shuffle(files)
    """})
    assert len(found) == 1 and "random.shuffle" in found[0].message


def test_a_gradient_check_computes_gradients_but_does_not_train(tmp_path):
    found = _run(tmp_path, {"gradcheck.py": """
        import torch
        from torch import nn

        def grad_check():
            model = nn.Linear(3, 1)
            x = torch.randn(4, 3)
            loss = model(x).sum()
            loss.backward()
            num = numerical_grad(model, x)
            print((model.weight.grad - num).abs().max())
            saliency = x.grad.abs() if x.grad is not None else None

        if __name__ == "__main__":
            grad_check()
    """})
    assert found == []


def test_hand_written_updates_are_training(tmp_path):
    found = _run(tmp_path, {"manual.py": """
        import torch
        w = torch.randn(3, requires_grad=True)
        for step in range(100):
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                w.grad.zero_()
    """})
    assert _where(found) == ["manual.py:3"]


def test_a_training_loop_counts_in_any_function(tmp_path):
    found = _run(tmp_path, {"exp.py": """
        import torch
        from torch import nn

        def run_experiment(model, loader):
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(3):
                for x, y in loader:
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()

        if __name__ == "__main__":
            run_experiment(nn.Linear(3, 2), make_loader())
    """})
    assert _where(found) == ["exp.py:6"]


def test_a_seed_helper_of_the_projects_own_package_counts(tmp_path):
    # the helper's name says nothing about seeding: it counts because it is resolved and it seeds
    found = _run(tmp_path, {
        "mypkg/__init__.py": "",
        "mypkg/env.py": """
            import random
            import numpy as np
            import torch

            def setup_env(seed):
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
        """,
        "tools/train.py": """
            import numpy as np
            import torch
            from mypkg.env import setup_env

            def main():
                setup_env(0)
                idx = np.random.permutation(10)
                for x, y in loader:
                    opt.zero_grad()
                    model(x).sum().backward()
                    opt.step()

            if __name__ == "__main__":
                main()
        """,
    })
    assert found == []


def test_the_inserted_seed_goes_after_import_torch_never_above_it(tmp_path):
    found = _run(tmp_path, {"t.py": "import os\nimport sys\nsys.path.insert(0, '..')\nos.environ['X'] = '1'\n"
                            "import torch\nfrom torch import nn\n" + textwrap.dedent(TRAIN_LOOP)})
    (edit,) = found[0].fix.edits
    assert edit.content == "torch.manual_seed(0)\n" and edit.span.line == 7


def test_no_seed_fix_when_torch_is_imported_in_a_try_block(tmp_path):
    found = _run(tmp_path, {"t.py": "try:\n    import torch\nexcept ImportError:\n    torch = None\n" + textwrap.dedent(TRAIN_LOOP)})
    assert len(found) == 1 and found[0].fix is None


def test_a_single_update_outside_any_loop_is_a_smoke_test_not_training(tmp_path):
    found = _run(tmp_path, {"lejepa.py": """
        import torch
        from torch import nn

        class Learner(nn.Module):
            def forward(self, x):
                return x.mean()

        if __name__ == "__main__":
            learner = Learner()
            opt = torch.optim.Adam(learner.parameters(), lr=3e-4)
            loss = learner(torch.randn(8, 3, 256, 256))
            opt.zero_grad()
            loss.backward()
            opt.step()
            print("loss:", loss.item())
    """})
    assert found == []


def test_one_step_in_a_helper_called_from_a_loop_is_training(tmp_path):
    found = _run(tmp_path, {"t.py": """
        import torch

        def step(model, opt, x, y):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()

        if __name__ == "__main__":
            for x, y in loader:
                step(model, opt, x, y)
    """})
    assert len(found) == 1


def test_a_step_function_handed_to_a_framework_engine_is_training(tmp_path):
    found = _run(tmp_path, {"t.py": """
        import torch
        from ignite.engine import Engine

        def training(config):
            def train_step(engine, batch):
                x, y = batch
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
            trainer = Engine(train_step)
            trainer.run(train_loader, max_epochs=3)

        if __name__ == "__main__":
            training({})
    """})
    assert len(found) == 1


def test_a_loss_object_with_an_inner_solve_trains_only_where_it_is_called(tmp_path):
    # CSG's visual.py builds the loss object of the training script (its __call__ runs backward() on
    # sample weights) but only explains predictions: not a training program; the training script is one.
    found = _run(tmp_path, {
        "methods.py": """
            import torch
            class CNBBLoss:
                def __init__(self, lr, n_iter):
                    self.lr, self.n_iter = lr, n_iter
                def __call__(self, feat, logits, y):
                    weight = torch.full([feat.shape[0]], 1.0 / feat.shape[0], requires_grad=True)
                    for it in range(self.n_iter):
                        loss = ((feat.T @ weight) ** 2).sum()
                        loss.backward()
                        with torch.no_grad():
                            weight -= self.lr * weight.grad
                            weight.grad.zero_()
                    return weight.detach() @ torch.nn.functional.cross_entropy(logits, y, reduction="none")
        """,
        "utils_main.py": """
            import torch
            from methods import CNBBLoss
            def ood_methods(ag):
                return CNBBLoss(ag.lr_w, ag.n_iter_w)
            def main_stem(ag, model, loader, opt):
                lossfn = ood_methods(ag)
                for epoch in range(ag.n_epk):
                    for x, y in loader:
                        opt.zero_grad()
                        lossfn(model.feat(x), model(x), y).backward()
                        opt.step()
        """,
        "visual.py": """
            import torch
            from utils_main import ood_methods
            def get_visual(ag, model, loader):
                lossfn = ood_methods(ag)
                model.eval()
                for x, y in loader:
                    explain(model, x)
            if __name__ == "__main__":
                get_visual(parse(), torch.load("ckpt.pt"), loader)
        """,
        "train.py": """
            import torch
            from utils_main import main_stem
            if __name__ == "__main__":
                main_stem(parse(), build(), loader, opt)
        """,
    })
    assert sorted(Path(f.path).name for f in found) == ["train.py"]


def test_torch_from_a_star_import_of_the_model_module_is_seeded(tmp_path):
    # deeplab's train.py gets `torch` from `from modeling.deeplab import *`: torch.manual_seed there is the
    # global seed, not a generator object's
    found = _run(tmp_path, {
        "modeling/__init__.py": "",
        "modeling/deeplab.py": "import torch\nimport torch.nn as nn\nclass DeepLab(nn.Module):\n    pass\n",
        "train.py": "from modeling.deeplab import *\n" + LOOP + "\nif __name__ == '__main__':\n    torch.manual_seed(1)\n    fit(DeepLab(), l, o)\n",
    })
    assert found == []


LIGHTNING_CLI = """
import torch
import pytorch_lightning as pl
from pytorch_lightning import Trainer


class AE(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 8)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.net(batch), batch)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def cli_main(args):
    {seed}
    trainer = Trainer.from_argparse_args(args)
    trainer.fit(AE(), torch.utils.data.DataLoader(torch.randn(64, 8), batch_size=8, shuffle=True))


if __name__ == "__main__":
    cli_main(None)
"""


def test_a_lightning_trainer_built_by_from_argparse_args_trains(tmp_path):
    # lightning-bolts' CLIs: `Trainer.from_argparse_args(args)` is a Trainer, so `trainer.fit` trains
    assert _where(_run(tmp_path, {"train.py": LIGHTNING_CLI.replace("{seed}", "pass")})) == ["train.py:21"]


def test_near_miss_a_seeded_lightning_cli_is_silent(tmp_path):
    assert _run(tmp_path, {"train.py": LIGHTNING_CLI.replace("{seed}", "pl.seed_everything(0)")}) == []


# --- library calls that draw from a global generator inside the library (seeds.LIBRARY_DRAWS) ---

TORCHTEXT_HEAD = """
import torch
from torchtext import data, datasets
torch.manual_seed(1234)
TEXT = data.Field(tokenize="spacy")
LABEL = data.LabelField()
train, test = datasets.IMDB.splits(TEXT, LABEL)
"""
TORCHTEXT_LOOP = """
for epoch in range(3):
    for batch in it:
        opt.zero_grad()
        loss = model(batch.text).sum()
        loss.backward()
        opt.step()
"""


def test_torchtext_split_draws_from_unseeded_random(tmp_path):
    found = _run(tmp_path, {"train.py": TORCHTEXT_HEAD + "train, valid = train.split()\n"
                            "it = data.Iterator(train, batch_size=4, shuffle=False)\n" + TORCHTEXT_LOOP})
    assert _where(found) == ["train.py:10"]
    msg = found[0].message
    assert "Python's random module is not, and train.py:7 draws from train.split()" in msg
    assert "torchtext's Dataset.split() shuffles with Python's random" in msg


def test_torchtext_bucket_iterator_splits_shuffles_the_training_iterator(tmp_path):
    found = _run(tmp_path, {"train.py": TORCHTEXT_HEAD + "it, vit = data.BucketIterator.splits((train, test), batch_size=4)\n"
                            + TORCHTEXT_LOOP})
    assert len(found) == 1
    assert "data.BucketIterator.splits()" in found[0].message


def test_torchtext_split_of_a_split_and_of_a_project_subclass(tmp_path):
    found = _run(tmp_path, {"train.py": """
import torch
from torchtext import data
class Reviews(data.Dataset):
    pass
torch.manual_seed(0)
full = Reviews()
train, valid = full.split(0.8)
train, extra = train.split()
it = data.Iterator(train, batch_size=4, train=False)
""" + TORCHTEXT_LOOP})
    assert len(found) == 1 and "(2 unseeded draws in all)" in found[0].message


def test_torchtext_near_misses_are_not_draws(tmp_path):
    # a random_state given to split(), shuffling off, random seeded (the sentiment tutorials' fix seeds
    # it as a side effect of random_state=random.seed(SEED)), and split() of a list or a string
    found = _run(tmp_path, {"train.py": TORCHTEXT_HEAD + """
import random
SEED = 1
state = random.getstate()
train, valid = train.split(random_state=state)
it = data.BucketIterator(train, batch_size=4, shuffle=False)
words = "a b".split()
parts = [1, 2].copy()
""" + TORCHTEXT_LOOP})
    assert found == []
    found = _run(tmp_path / "fixed", {"train.py": TORCHTEXT_HEAD + """
import random
SEED = 1
train, valid = train.split(random_state=random.seed(SEED))
it, vit = data.BucketIterator.splits((train, valid), batch_size=4)
""" + TORCHTEXT_LOOP})
    assert found == []


def test_split_of_something_that_is_not_a_torchtext_dataset_is_not_a_draw(tmp_path):
    found = _run(tmp_path, {"train.py": """
import torch
from mylib import Corpus
torch.manual_seed(0)
corpus = Corpus("x")
train, valid = corpus.split()
it = corpus.batches()
""" + TORCHTEXT_LOOP})
    assert found == []
