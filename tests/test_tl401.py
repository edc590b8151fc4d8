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


# -- a package's factory hands out a trained model whose infer() predicts in training mode --------------
# (thunlp/OpenNRE f74970f: get_model() builds SoftmaxNN(CNNEncoder(dropout=0.5)), load_state_dict()s it
# and returns it; SoftmaxNN.infer() runs self.forward() without self.eval())

NRE_CNN = """
import torch.nn as nn
import torch.nn.functional as F

class CNN(nn.Module):
    def __init__(self, input_size=50, hidden_size=256, dropout=0):
        super().__init__()
        self.conv = nn.Conv1d(input_size, hidden_size, 3, padding=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(F.relu(self.conv(x)))
"""

NRE_ENCODER = """
import torch.nn as nn
from ..module.cnn import CNN

class CNNEncoder(nn.Module):
    def __init__(self, token2id, hidden_size=230, dropout=0.5):
        super().__init__()
        self.token2id = token2id
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(len(token2id), 50)
        self.conv = CNN(50, hidden_size, dropout)

    def forward(self, token):
        return self.conv(self.embedding(token).transpose(1, 2)).max(-1)[0]

    def tokenize(self, item):
        return [self.token2id[t] for t in item["token"]]
"""

NRE_BASE = """
from torch import nn

class SentenceRE(nn.Module):
    def infer(self, item):
        raise NotImplementedError
"""

NRE_MODEL = """
import torch
from torch import nn
from .base_model import SentenceRE

class SoftmaxNN(SentenceRE):
    def __init__(self, sentence_encoder, num_class, rel2id):
        super().__init__()
        self.sentence_encoder = sentence_encoder
        self.fc = nn.Linear(self.sentence_encoder.hidden_size, num_class)
        self.id2rel = {i: r for r, i in rel2id.items()}

    def infer(self, item):
        {switch}
        token = torch.tensor([self.sentence_encoder.tokenize(item)])
        score, pred = self.forward(token).softmax(-1).max(-1)
        return self.id2rel[pred.item()], score.item()

    def forward(self, token):
        return self.fc(self.sentence_encoder(token))
"""

NRE_PRETRAIN = """
import json
import torch
from .encoder.cnn_encoder import CNNEncoder
from .model.softmax_nn import SoftmaxNN

def get_model(name, root="pretrain"):
    token2id = json.load(open(f"{root}/{name}_word2id.json"))
    rel2id = json.load(open(f"{root}/{name}_rel2id.json"))
    sentence_encoder = CNNEncoder(token2id, hidden_size=230, dropout=0.5)
    m = SoftmaxNN(sentence_encoder, len(rel2id), rel2id)
    m.load_state_dict(torch.load(f"{root}/{name}.pth.tar")["state_dict"])
    {after_load}
    return m
"""


def _nre(switch: str = "pass", after_load: str = "pass", cnn: str = NRE_CNN, pretrain: str = NRE_PRETRAIN,
         extra: Dict[str, str] = None) -> Dict[str, str]:
    files = {
        "nre/__init__.py": "from .pretrain import get_model\n",
        "nre/pretrain.py": pretrain.replace("{after_load}", after_load),
        "nre/model/__init__.py": "",
        "nre/model/base_model.py": NRE_BASE,
        "nre/model/softmax_nn.py": NRE_MODEL.replace("{switch}", switch),
        "nre/encoder/__init__.py": "",
        "nre/encoder/cnn_encoder.py": NRE_ENCODER,
        "nre/module/__init__.py": "",
        "nre/module/cnn.py": cnn,
    }
    files.update(extra or {})
    return files


def test_infer_of_a_model_the_package_factory_hands_out_in_training_mode(tmp_path):
    found = _run(tmp_path, _nre())
    assert _where(found) == ["softmax_nn.py:15"]
    f = found[0]
    assert "get_model() returns the SoftmaxNN" in f.message and "infer()" in f.message
    # the dropout lives in the encoder the constructor was given, two modules down
    assert any(Path(r.path).name == "cnn.py" and "Dropout" in r.message for r in f.related)


def test_infer_that_switches_to_eval_mode_itself_is_fine(tmp_path):
    # the fix: self.eval() in infer(); SoftmaxNN is a Module through its project base SentenceRE
    assert _run(tmp_path, _nre(switch="self.eval()")) == []


def test_a_factory_that_returns_the_model_in_eval_mode_is_fine(tmp_path):
    assert _run(tmp_path, _nre(after_load="m.eval()")) == []


def test_a_factory_without_trained_weights_hands_out_a_model_to_train(tmp_path):
    # near-miss: no load_state_dict: get_model() builds a model to train, not one to predict with
    pretrain = NRE_PRETRAIN.replace('    m.load_state_dict(torch.load(f"{root}/{name}.pth.tar")["state_dict"])\n', "")
    assert _run(tmp_path, _nre(pretrain=pretrain)) == []


def test_a_model_without_dropout_or_batchnorm_is_fine(tmp_path):
    cnn = NRE_CNN.replace("        self.dropout = nn.Dropout(dropout)\n", "").replace("self.dropout(F.relu", "(F.relu")
    assert _run(tmp_path, _nre(cnn=cnn)) == []


def test_infer_called_by_the_program_is_judged_at_its_callers(tmp_path):
    # near-miss: the program's own script switches the model to eval mode before infer(): the factory's
    # users are no longer unknown, and they do the right thing
    script = """
        import nre

        if __name__ == "__main__":
            model = nre.get_model("wiki80_cnn_softmax")
            model.eval()
            print(model.infer({"token": ["a", "b"]}))
    """
    assert _run(tmp_path, _nre(extra={"demo.py": script})) == []


# -- the layers of a module include those of the modules its constructor is given ----------------------

WRAPPED = """
import torch
import torch.nn as nn

class Encoder(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.fc = nn.Linear(8, 32)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return self.drop(self.fc(x).relu())

class Classifier(nn.Module):
    def __init__(self, encoder, n_class):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(32, n_class)

    def forward(self, x):
        return self.head(self.encoder(x))

def evaluate(model, loader):
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
    return correct

if __name__ == "__main__":
    model = Classifier({encoder}, 10)
    model.load_state_dict(torch.load("classifier.pt"))
    print(evaluate(model, test_loader))
"""


def test_dropout_of_a_submodule_given_to_the_constructor(tmp_path):
    found = _run(tmp_path, {"predict.py": WRAPPED.replace("{encoder}", "Encoder(p=0.3)")})
    assert _where(found) == ["predict.py:25"]
    assert "Classifier" in found[0].message and "1 dropout layer" in found[0].message


def test_a_submodule_given_to_the_constructor_without_dropout_is_fine(tmp_path):
    # near-miss: the encoder passed in is a plain Linear: nothing depends on the mode
    assert _run(tmp_path, {"predict.py": WRAPPED.replace("{encoder}", "nn.Linear(8, 32)")}) == []


# -- a module's own generation method: the mode is the callers' (self is whichever instance they hold) --

GPT_MODEL = """
import torch
import torch.nn as nn

class GPT(nn.Module):
    def __init__(self, vocab=100, dim=64, p=0.1):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(p)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx):
        return self.head(self.drop(self.emb(idx)))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            logits = self(idx)[:, -1, :]
            idx = torch.cat((idx, logits.softmax(-1).multinomial(1)), dim=1)
        return idx
"""

SAMPLE = """
import torch
from model import GPT

if __name__ == "__main__":
    model = GPT()
    model.load_state_dict(torch.load("ckpt.pt"))
    {switch}
    print(model.generate(torch.zeros((1, 1), dtype=torch.long), 100))
"""


def test_generate_called_after_eval_by_its_caller_is_fine(tmp_path):
    # nanoGPT's sample.py: model.eval() then model.generate(); inside generate() `self` is that model
    found = _run(tmp_path, {"model.py": GPT_MODEL, "sample.py": SAMPLE.replace("{switch}", "model.eval()")})
    assert found == []


def test_generate_called_without_eval_is_flagged(tmp_path):
    found = _run(tmp_path, {"model.py": GPT_MODEL, "sample.py": SAMPLE.replace("{switch}", "pass")})
    assert _where(found) == ["model.py:16"]
    assert "GPT" in found[0].message and "generate()" in found[0].message


def test_the_message_says_what_each_mode_does_to_the_model_s_layers(tmp_path):
    # ModelLayers.effect (evaluated in training mode) and off_effect (trained in eval mode) read the same
    # kinds of layers; a model holding a torchvision backbone is spoken of as its BatchNorm layers (as
    # counts() does), its own dropout aside
    backbone = (MODEL.replace("import torch.nn as nn", "import torch.nn as nn\nimport torchvision")
                .replace("nn.Linear(8, 32)", "torchvision.models.resnet18()")
                .replace("nn.BatchNorm1d(32)", "nn.Identity()"))
    cases = {
        "own": (MODEL, "dropout stays active and batch norm normalizes",
                "Net (1 dropout layer and 1 batch-norm layer) with dropout off and batch-norm statistics frozen"),
        "torchvision": (backbone, "(Net, with BatchNorm layers) is evaluated in training mode (it is in validate(), "
                                  "after a .train() call): batch norm normalizes",
                        "Net (BatchNorm layers) with batch-norm statistics frozen"),
    }
    for name, (model, in_training, in_eval) in cases.items():
        files = {"pkg/__init__.py": "", "pkg/model.py": model, "pkg/engine.py": ENGINE}
        found = _run(tmp_path / name / "on", dict(files, **{"train.py": _train()}))
        assert in_training in found[0].message, found[0].message
        found = _run(tmp_path / name / "off", dict(files, **{"train.py": _train(pre="pass", post="model.eval()")}))
        assert found[0].message.endswith(in_eval), found[0].message
