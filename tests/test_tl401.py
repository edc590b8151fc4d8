"""TL401 eval-without-eval-mode: program-level behaviour the snippets cannot show (models and helpers in
other files, mode switches at the call sites of a helper, messages naming the layers and the run length)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths

MODEL = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.4)
        self.out = nn.Linear(32, 2)

    def forward(self, x):
        return self.out(self.drop(self.bn(self.fc(x)).relu()))
"""

PLAIN = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 32)
        self.out = nn.Linear(32, 2)

    def forward(self, x):
        return self.out(self.fc(x).relu())
"""

ENGINE = """
import torch
import torch.nn.functional as F

def train_epoch(model, loader, opt):
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

def evaluate(model, loader):
    with torch.no_grad():
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)

def validate(model, loader):
    total = 0
    with torch.no_grad():
        for x, y in loader:
            total += (model(x).argmax(1) == y).sum().item()
    return total
"""


def _write(root: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def _run(root: Path, files: Dict[str, str], code: str = "TL401"):
    _write(root, files)
    options = Options(config=Config(layers=[Selection()]), enabled=[code])
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code == code]


def _where(findings) -> List[str]:
    return sorted(f"{Path(f.path).name}:{f.line}" for f in findings)


def _train(pre: str = "", post: str = "") -> str:
    return f"""
import torch
from pkg.model import Net
from pkg.engine import train_epoch, validate

model = Net()
opt = torch.optim.Adam(model.parameters())
for epoch in range(12):
    {pre or "model.train()"}
    train_epoch(model, train_loader, opt)
    {post or "pass"}
    validate(model, val_loader)
"""


def test_helper_in_a_subpackage_evaluated_in_train_mode(tmp_path):
    found = _run(tmp_path, {"pkg/__init__.py": "", "pkg/model.py": MODEL, "pkg/engine.py": ENGINE, "train.py": _train()})
    assert _where(found) == ["engine.py:17"]
    msg = found[0].message
    assert "Net" in msg and "1 dropout layer and 1 batch-norm layer" in msg and "validate()" in msg
    assert any("model.py" in r.path for r in found[0].related)


def test_eval_at_the_call_site_is_enough(tmp_path):
    found = _run(tmp_path, {"pkg/__init__.py": "", "pkg/model.py": MODEL, "pkg/engine.py": ENGINE,
                            "train.py": _train(post="model.eval()")})
    assert found == []


def test_plain_model_is_not_flagged(tmp_path):
    found = _run(tmp_path, {"pkg/__init__.py": "", "pkg/model.py": PLAIN, "pkg/engine.py": ENGINE, "train.py": _train()})
    assert found == []


def test_never_switched_back_names_the_epochs(tmp_path):
    files = {
        "pkg/__init__.py": "", "pkg/model.py": MODEL, "pkg/engine.py": ENGINE,
        "train.py": """
            import argparse
            import torch
            from pkg.model import Net
            from pkg.engine import train_epoch, validate

            p = argparse.ArgumentParser()
            p.add_argument("--epochs", type=int, default=25)
            args = p.parse_args()
            model = Net()
            opt = torch.optim.Adam(model.parameters())
            model.train()
            for epoch in range(args.epochs):
                train_epoch(model, train_loader, opt)
                model.eval()
                validate(model, val_loader)
        """,
    }
    found = _run(tmp_path, files)
    assert _where(found) == ["train.py:14"]
    assert "25 epochs" in found[0].message and "model.train()" in found[0].message


def test_train_called_inside_the_training_helper_is_enough(tmp_path):
    engine = ENGINE.replace("def train_epoch(model, loader, opt):\n", "def train_epoch(model, loader, opt):\n    model.train()\n")
    files = {
        "pkg/__init__.py": "", "pkg/model.py": MODEL, "pkg/engine.py": engine,
        "train.py": _train(pre="pass", post="model.eval()"),
    }
    assert _run(tmp_path, files) == []


def test_eval_only_after_the_last_epoch_is_fine(tmp_path):
    files = {
        "pkg/__init__.py": "", "pkg/model.py": MODEL, "pkg/engine.py": ENGINE,
        "train.py": """
            import torch
            from pkg.model import Net
            from pkg.engine import train_epoch, validate
            model = Net()
            opt = torch.optim.Adam(model.parameters())
            for epoch in range(5):
                train_epoch(model, train_loader, opt)
                if epoch == 4:
                    model.eval()
                    validate(model, val_loader)
        """,
    }
    assert _run(tmp_path, files) == []


def test_trainer_class_attribute_model_from_constructor(tmp_path):
    files = {
        "pkg/__init__.py": "", "pkg/model.py": MODEL,
        "train.py": """
            import torch
            from pkg.model import Net

            class Trainer:
                def __init__(self, model):
                    self.model = model
                    self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

                def validate(self):
                    with torch.no_grad():
                        for x, y in val_loader:
                            self.model(x)

                def fit(self):
                    for epoch in range(3):
                        self.model.train()
                        for x, y in train_loader:
                            self.opt.zero_grad()
                            self.model(x).sum().backward()
                            self.opt.step()
                        self.validate()

            if __name__ == "__main__":
                Trainer(Net()).fit()
        """,
    }
    found = _run(tmp_path, files)
    assert _where(found) == ["train.py:11"]


def test_hf_trainer_train_is_not_a_mode_switch(tmp_path):
    found = _run(tmp_path, {
        "finetune.py": """
            import torch
            from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
            model = AutoModelForSequenceClassification.from_pretrained("roberta-base", num_labels=2)
            trainer = Trainer(model=model, args=TrainingArguments("out"), train_dataset=train_ds)
            trainer.train()
            with torch.no_grad():
                for batch in test_loader:
                    preds = model(**batch).logits.argmax(-1)
        """,
    })
    assert found == []


def test_custom_trainer_train_method_is_followed_not_taken_as_a_mode(tmp_path):
    files = {
        "pkg/__init__.py": "", "pkg/model.py": MODEL,
        "train.py": """
            import torch
            from pkg.model import Net

            class Runner:
                def __init__(self, model):
                    self.model = model
                    self.opt = torch.optim.SGD(model.parameters(), lr=0.1)

                def train(self):
                    for x, y in train_loader:
                        self.opt.zero_grad()
                        self.model(x).sum().backward()
                        self.opt.step()

                def validate(self):
                    self.model.eval()
                    with torch.no_grad():
                        for x, y in val_loader:
                            self.model(x)

                def fit(self):
                    for epoch in range(3):
                        self.train()
                        self.validate()

            if __name__ == "__main__":
                Runner(Net()).fit()
        """,
    }
    found = _run(tmp_path, files)
    assert _where(found) == ["train.py:16"]
    assert "never called again" in found[0].message


# ---- inference scripts: the whole program is an evaluation --------------------------------------------


PREDICT = """
import torch
from nets import Net
if __name__ == "__main__":
    model = Net()
    model.load_state_dict(torch.load("net.pt"))
    {before}
    image = torch.load("image.pt")
    print(model({arg}).argmax(1))
"""


def test_an_inference_script_without_eval_is_flagged_and_its_near_misses_are_not(tmp_path):
    found = _run(tmp_path / "a", {"nets.py": MODEL, "predict.py": PREDICT.format(before="", arg="image")})
    assert [(Path(f.path).name, f.line) for f in found] == [("predict.py", 8)]
    assert "only runs inference" in found[0].message and "predictions" in found[0].message
    # switched to eval first
    assert _run(tmp_path / "b", {"nets.py": MODEL, "predict.py": PREDICT.format(before="model.eval()", arg="image")}) == []
    # a made-up input: a shape check or an export trace, not an inference
    assert _run(tmp_path / "c", {"nets.py": MODEL, "predict.py": PREDICT.format(before="dummy = torch.randn(1, 8)", arg="dummy")}) == []
    # a program that trains somewhere is not an inference script (its loops are judged as evaluations)
    trains = PREDICT.format(before="", arg="image") + "    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n    model(image).sum().backward()\n    opt.step()\n"
    assert _run(tmp_path / "d", {"nets.py": MODEL, "predict.py": trains}) == []


FRAMEWORK = """
import torch
from torch import nn

class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.drop = nn.Dropout(0.5)
    def forward(self, x):
        return self.drop(self.fc(x))

class SentenceRE(nn.Module):
    def __init__(self, model, train_loader, val_loader):
        super().__init__()
        self.model = model
        self.parallel_model = nn.DataParallel(self.model)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
    def train_model(self):
        for epoch in range(3):
            self.train()
            for x, y in self.train_loader:
                loss = nn.functional.cross_entropy(self.parallel_model(x), y)
                loss.backward(); self.optimizer.step(); self.optimizer.zero_grad()
            self.eval_model(self.val_loader)
    def eval_model(self, loader):
        {switch}
        with torch.no_grad():
            for x, y in loader:
                pred = self.parallel_model(x).argmax(-1)

if __name__ == "__main__":
    SentenceRE(Encoder(), train_loader, val_loader).train_model()
"""


def test_a_framework_module_switching_itself_switches_the_model_it_holds(tmp_path):
    # OpenNRE: the framework is an nn.Module holding the model; self.eval() puts self.parallel_model in eval
    assert _run(tmp_path / "a", {"train.py": FRAMEWORK.replace("{switch}", "self.eval()")}) == []
    # without the switch the held model is evaluated with dropout on
    assert _where(_run(tmp_path / "b", {"train.py": FRAMEWORK.replace("{switch}", "pass")})) != []
