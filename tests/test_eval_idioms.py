"""Evaluation idioms of real projects that the program model follows (issue 9, the real-bug benchmark):
library trainer classes nobody runs in the analysed files, forward passes reached through helper methods,
``model.forward(x)`` after ``model.eval()``, a module unpickled by ``torch.load()``, no_grad at every call
site of an evaluation helper (also through a star import of torch), a script that defines its own model
and loads weights into it, and ``import pkg.mod`` when only the package folder is linted."""

from __future__ import annotations

from pathlib import Path

from _lint import linters

lint401, tree401 = linters("TL401")
lint402, tree402 = linters("TL402")
tree301 = linters("TL301")[1]

TRAINER = '''
import torch


class Trainer:
    def __init__(self, model, optimizer, criterion):
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion

    def train_epoch(self, batches):
        self.model.train()
        for src, tgt in batches:
            self.optimizer.zero_grad()
            loss = self.criterion(self.model(src), tgt)
            loss.backward()
            self.optimizer.step()

    def validate(self, valid_iter):
        self.model.eval()
        total = 0.0
        {guard}for src, tgt in valid_iter:
        {ind}    total += self.criterion(self.model{fwd}(src), tgt).item()
        self.model.train()
        return total
'''


def _trainer(guard: bool = False, fwd: str = "") -> str:
    if guard:
        return TRAINER.format(guard="with torch.no_grad():\n            ", ind="    ", fwd=fwd)
    return TRAINER.format(guard="", ind="", fwd=fwd)


def _where(found) -> list:
    return sorted(f"{rel}:{line}" for rel, line, _ in found)


# -- a library trainer class that nothing of the run executes ------------------------------------


def test_a_trainer_class_in_a_library_module_is_judged_on_its_own(tmp_path):
    found = tree402(tmp_path, {"onmt/__init__.py": "", "onmt/trainer.py": _trainer()})
    assert _where(found) == ["onmt/trainer.py:22"]
    assert "validate()" in found[0][2].message


def test_the_library_trainer_with_no_grad_is_clean(tmp_path):
    assert tree402(tmp_path, {"onmt/__init__.py": "", "onmt/trainer.py": _trainer(guard=True)}) == []


def test_forward_spelled_model_forward_in_a_library_trainer(tmp_path):
    found = tree402(tmp_path, {"onmt/__init__.py": "", "onmt/trainer.py": _trainer(fwd=".forward")})
    assert _where(found) == ["onmt/trainer.py:22"]


def test_whole_program_rules_do_not_judge_a_library_module(tmp_path):
    # the library trainer trains without a seed: that is the business of the script that drives it
    assert tree301(tmp_path, {"onmt/__init__.py": "", "onmt/trainer.py": _trainer()}) == []


def test_an_api_function_of_a_library_module_nobody_calls_is_left_alone(tmp_path):
    lib = '''
import torch

def evaluate(model, loader):
    model.eval()
    return [model(x).argmax(1) for x, _ in loader] + [model(x) for x in []]

def predict(model, batches):
    out = []
    for x in batches:
        out.append(model(x))
    return out
'''
    assert tree402(tmp_path, {"lib/__init__.py": "", "lib/metrics.py": lib}) == []
    assert tree401(tmp_path / "b", {"lib/__init__.py": "", "lib/metrics.py": lib}) == []


# -- model.forward(x) runs in the mode of model ------------------------------------------------


def test_model_forward_after_eval_is_in_eval_mode(tmp_path):
    code = '''
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.3)
    def forward(self, x):
        return self.drop(self.fc(x))

class Trainer:
    def __init__(self, model):
        self.model = model
    def evaluate(self, val_loader):
        self.model.eval()
        with torch.no_grad():
            for x, y in val_loader:
                out = self.model.forward(x)

if __name__ == "__main__":
    Trainer(Net()).evaluate(val_loader)
'''
    assert lint401(code) == []
    bad = code.replace("        self.model.eval()\n", "")
    found = lint401(bad)
    assert [f.line for f in found] == [18]


# -- forward passes reached through helper methods ------------------------------------------------

NET = '''
import torch


class NeuralNet:
    def __init__(self, module, criterion):
        self.module = module
        self.criterion = criterion

    def initialize(self):
        self.module_ = self.module()
        self.optimizer_ = torch.optim.SGD(self.module_.parameters(), lr=0.1)

    def infer(self, x):
        return self.module_(x)

    def train_step(self, xi, yi):
        self.module_.train()
        loss = self.criterion(self.infer(xi), yi)
        loss.backward()
        self.optimizer_.step()
        self.optimizer_.zero_grad()
        return loss

    def validation_step(self, xi, yi):
        self.module_.eval()
        {body}

    def fit_loop(self, dataset_train, dataset_valid, epochs=10):
        for _ in range(epochs):
            for xi, yi in self.get_iterator(dataset_train, training=True):
                self.train_step(xi, yi)
            for xi, yi in self.get_iterator(dataset_valid, training=False):
                self.validation_step(xi, yi)
        return self
'''


def test_the_forward_reached_through_validation_step_and_infer(tmp_path):
    body = "y_pred = self.infer(xi)\n        return self.criterion(y_pred, yi)"
    found = tree402(tmp_path, {"skorch/__init__.py": "", "skorch/net.py": NET.format(body=body)})
    assert _where(found) == ["skorch/net.py:34"]
    f = found[0][2]
    assert "self.module_" in f.message and "self.validation_step" in f.message
    # the related locations walk the path: the step call, the infer() call, the model call itself
    assert [r.span.line for r in f.related] == [35, 27, 15]


def test_no_grad_inside_the_step_helper_covers_the_loop(tmp_path):
    body = "with torch.no_grad():\n            y_pred = self.infer(xi)\n            return self.criterion(y_pred, yi)"
    assert tree402(tmp_path, {"skorch/__init__.py": "", "skorch/net.py": NET.format(body=body)}) == []


def test_a_helper_with_its_own_evaluation_loop_is_reported_once():
    code = '''
import torch

def evaluate(model, loader):
    model.eval()
    total = 0.0
    for x, y in loader:
        total += model(x).sum().item()
    return total + sum(model(x).sum().item() for x, _ in loader)

model = torch.nn.Linear(4, 2)
for name, val_loader in {"a": loader_a, "b": loader_b}.items():
    evaluate(model, val_loader)
'''
    found = lint402(code)
    assert [f.line for f in found] == [7]


# -- no_grad at every call site ---------------------------------------------------------------------

TEST_PY = '''
import torch
from models import *


def test(model, dataloader):
    model.eval()
    correct = 0
    for imgs, targets in dataloader:
        correct += (model(imgs).argmax(1) == targets).sum().item()
    return correct


if __name__ == "__main__":
    with torch.no_grad():
        test(Darknet(), val_loader)
'''
TRAIN_PY = '''
import torch
import test
from models import *

model = Darknet()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(10):
    model.train()
    for imgs, targets in train_loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(imgs), targets).backward()
        optimizer.step()
    {guard}results = test.test(model, val_loader)
'''
MODELS_PY = '''
import torch
import torch.nn as nn


class Darknet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x)).mean((2, 3))
'''


def test_one_caller_without_no_grad_is_enough(tmp_path):
    files = {"models.py": MODELS_PY, "test.py": TEST_PY, "train.py": TRAIN_PY.format(guard="")}
    found = tree402(tmp_path, files)
    assert _where(found) == ["test.py:9"]
    assert any(r.message == "called here with autograd on" and Path(r.path).name == "train.py" for r in found[0][2].related)


def test_every_caller_under_no_grad_through_a_star_import_of_torch(tmp_path):
    # test.py and train.py get `torch` from `from models import *` only
    files = {
        "models.py": MODELS_PY,
        "test.py": TEST_PY.replace("import torch\nfrom models", "from models"),
        "train.py": TRAIN_PY.format(guard="with torch.no_grad():\n        ").replace("import torch\nimport test", "import test"),
    }
    assert tree402(tmp_path, files) == []


# -- modules unpickled by torch.load() --------------------------------------------------------------

PREDICT = '''
import argparse
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--model_path", default="model.pt")
args = parser.parse_args()

model = torch.load(args.model_path).to("cuda")
{switch}with torch.no_grad():
    for images, _ in test_loader:
        print(model(images).argmax(1))
'''


def test_a_torch_load_ed_module_evaluated_without_eval(tmp_path):
    found = lint401(PREDICT.format(switch=""))
    assert [f.line for f in found] == [11]
    assert "unpickled by torch.load()" in found[0].message and "if it has any" in found[0].message


def test_a_torch_load_ed_module_switched_to_eval_is_clean():
    assert lint401(PREDICT.format(switch="model.eval()\n")) == []


def test_a_loaded_state_dict_is_read_from_its_class():
    # a plain MLP: eval() changes nothing, whatever torch.load() returns
    code = '''
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
model.load_state_dict(torch.load("w.pt"))
with torch.no_grad():
    for x, _ in test_loader:
        print(model(x))
'''
    assert lint401(code) == []


# -- a script with its own model class that loads weights and predicts -------------------------------

INFER = '''
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


model = Net()
{load}for x in batches:
    print(model(x).argmax(1))
'''


def test_a_script_that_defines_its_model_and_loads_weights_is_an_inference():
    found = lint401(INFER.format(load='model.load_state_dict(torch.load("net.pt"))\n'))
    assert [f.line for f in found] == [19] and "inference" in found[0].message
    assert [f.line for f in lint402(INFER.format(load='model.load_state_dict(torch.load("net.pt"))\n'))] == [19]


def test_a_model_file_smoke_test_is_still_no_inference():
    smoke = INFER.format(load="").replace("for x in batches:", "for x in [torch.randn(2, 784)]:")
    assert lint401(smoke) == [] and lint402(smoke) == []
    # without loaded weights the file is a model file: its own loop is a smoke test
    assert lint401(INFER.format(load="")) == []


# -- a function named train() that never trains --------------------------------------------------------


def test_a_validation_script_whose_function_is_named_train(tmp_path):
    code = '''
import torch
import torchvision

def train(args):
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(args.model_path))
    with torch.no_grad():
        for images, labels in valloader:
            outputs = model(images)

if __name__ == "__main__":
    train(parse())
'''
    found = lint401(code)
    assert [f.line for f in found] == [9]
    trains = code.replace("            outputs = model(images)", "            model(images).sum().backward()")
    assert lint401(trains) == []


# -- import pkg.mod when only the package folder is linted -----------------------------------------


def test_absolute_imports_of_a_package_linted_on_its_own(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/nets.py": MODELS_PY,
        "pkg/evaluator.py": '''
import torch
import pkg.nets


class Evaluator:
    def __init__(self):
        self.model = pkg.nets.Darknet()

    def run(self, valid_iter):
        self.model.train()
        return self.validate(valid_iter)

    def validate(self, valid_iter):
        with torch.no_grad():
            for x, y in valid_iter:
                self.model(x)
''',
    }
    # linting the package folder only: the root is pkg/, and `pkg.nets` still resolves (BatchNorm found)
    tree401(tmp_path, files)
    found = tree401(tmp_path / "pkg", {})
    assert _where(found) == ["evaluator.py:16"]


# -- a method of the model's class that runs its forward, on a parameter typed by its annotation --------

TAGGER_MODEL = '''
import torch
import torch.nn as nn


class Tagger(nn.Module):
    def __init__(self, n_tags=17):
        super().__init__()
        self.emb = nn.EmbeddingBag(1000, 64)
        self.out = nn.Linear(64, n_tags)

    def forward(self, batch):
        return self.out(self.emb(batch))

    def predict_scores(self, batch):
        scores = self.forward(batch)
        return scores, scores.argmax(-1)

    def tag_names(self, ids):
        return [str(i) for i in ids]
'''
TAGGER_TRAINER = '''
import torch
from tagger.model import Tagger


class TaggerTrainer:
    def __init__(self, model{ann}, corpus):
        self.model = model
        self.corpus = corpus

    def evaluate(self, batches):
        self.model.eval()
        for batch in batches:
            scores, ids = self.model.{method}(batch)
            print(ids)
'''


def _tagger(ann: str = ": Tagger", method: str = "predict_scores") -> dict:
    return {"tagger/__init__.py": "", "tagger/model.py": TAGGER_MODEL,
            "tagger/trainer.py": TAGGER_TRAINER.format(ann=ann, method=method)}


def test_a_model_method_that_runs_forward_on_an_annotated_parameter(tmp_path):
    found = tree402(tmp_path, _tagger())
    assert _where(found) == ["tagger/trainer.py:13"]
    assert "self.model.predict_scores" in found[0][2].message


def test_a_model_method_that_does_not_run_forward_is_no_forward(tmp_path):
    assert tree402(tmp_path, _tagger(method="tag_names")) == []


def test_without_the_annotation_the_model_class_is_unknown(tmp_path):
    assert tree402(tmp_path, _tagger(ann="")) == []


# -- a module's own inference method --------------------------------------------------------------

CLASSIFIER = '''
import torch
import torch.nn as nn


class TextClassifier(nn.Module):
    def __init__(self, vocab=1000, n_labels=4):
        super().__init__()
        self.emb = nn.EmbeddingBag(vocab, 64)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(64, n_labels)

    def forward(self, batch):
        self.zero_grad()
        return self.out(self.drop(self.emb(batch)))

    {decorator}def predict(self, sentences, mini_batch_size=32):
        batches = [sentences[i:i + mini_batch_size] for i in range(0, len(sentences), mini_batch_size)]
        labels = []
        for batch in batches:
            labels.extend(self.forward(batch).argmax(-1).tolist())
        return labels

    {decorator}def sample(self, start, steps=20):
        out = [start]
        for _ in range(steps):
            out.append(self(out[-1]).argmax(-1))
        return out
'''


def test_a_modules_own_predict_over_mini_batches(tmp_path):
    # (a zero_grad() inside forward() does not make predict() a training loop)
    # and its generation method runs its own forward step after step with autograd on
    found = tree402(tmp_path, {"clf/__init__.py": "", "clf/model.py": CLASSIFIER.format(decorator="")})
    assert _where(found) == ["clf/model.py:20", "clf/model.py:26"]
    assert "self.forward" in found[0][2].message and "generates in sample()" in found[1][2].message


def test_a_modules_own_predict_and_sample_under_no_grad_are_clean(tmp_path):
    files = {"clf/__init__.py": "", "clf/model.py": CLASSIFIER.format(decorator="@torch.no_grad()\n    ")}
    assert tree402(tmp_path, files) == []


# -- what tells PyTorch code and gradients wanted on purpose --------------------------------------------


def test_variable_requires_grad_false_elsewhere_is_no_frozen_model():
    code = '''
import torch
from torch.autograd import Variable

model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(3):
    model.train()
    for x, y in train_loader:
        y = Variable(y, requires_grad=False)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for x, y in test_loader:
        out = model(Variable(x, volatile=True))
'''
    assert [f.line for f in lint402(code)] == [16]
    frozen = code.replace("    model.eval()\n", "    model.eval()\n    model.requires_grad_(False)\n")
    assert lint402(frozen) == []


def test_a_package_module_that_never_names_torch(tmp_path):
    evaluate = '''
from mylib.data import batches_of


def evaluate(model, instances):
    {switch}for batch in batches_of(instances):
        model(**batch)
    return model.get_metrics()
'''
    run = "from mylib.evaluate import evaluate\n\nif __name__ == '__main__':\n    print(evaluate(load_archive('m.tar.gz'), read('dev.json')))\n"
    files = {"mylib/__init__.py": "", "mylib/data.py": "def batches_of(xs):\n    return [xs]\n", "mylib/run.py": run}
    found = tree402(tmp_path / "a", dict(files, **{"mylib/evaluate.py": evaluate.format(switch="model.eval()\n    ")}))
    assert _where(found) == ["mylib/evaluate.py:7"]
    # without an eval() nothing says the model is a PyTorch module (a TF / JAX program): left alone
    assert tree402(tmp_path / "b", dict(files, **{"mylib/evaluate.py": evaluate.format(switch="")})) == []


# -- an inference program's loop in a file the entry script calls into ----------------------------------

TRANSLATOR = '''
import torch


class Translator:
    def __init__(self, model, beam_size=5):
        self.model = model
        self.beam_size = beam_size

    def translate_batch(self, batch):
        memory = self.model.encoder(batch.src)
        return self.model.decoder(batch.tgt, memory).argmax(-1)

    def translate(self, data_iter):
        out = []
        for batch in data_iter:
            out.append(self.translate_batch(batch))
        return out
'''
TRANSLATE_PY = '''
import torch
from nmt.translator import Translator


def main():
    model = torch.load("model.pt", weights_only=False)
    model.eval()
    translator = Translator(model)
    {guard}print(translator.translate(open_batches("test.src")))


if __name__ == "__main__":
    main()
'''


def test_an_inference_programs_loop_in_the_file_it_calls(tmp_path):
    files = {"nmt/__init__.py": "", "nmt/translator.py": TRANSLATOR, "translate.py": TRANSLATE_PY.format(guard="")}
    found = tree402(tmp_path, files)
    assert _where(found) == ["nmt/translator.py:16"]
    assert "translate.py runs it" in found[0][2].message and "self.model.encoder" in found[0][2].message


def test_the_entry_wraps_the_call_in_no_grad(tmp_path):
    files = {"nmt/__init__.py": "", "nmt/translator.py": TRANSLATOR,
             "translate.py": TRANSLATE_PY.format(guard="with torch.no_grad():\n        ")}
    assert tree402(tmp_path, files) == []


def test_a_program_that_trains_gives_no_inference_evidence_to_other_files(tmp_path):
    train = TRANSLATE_PY.format(guard="").replace("    model.eval()\n", "    model.train()\n    fit(model)\n")
    files = {"nmt/__init__.py": "", "nmt/translator.py": TRANSLATOR, "translate.py": train}
    assert tree402(tmp_path, files) == []


# -- ignite's Engine calls the step function once per batch -------------------------------------------------

IGNITE = '''
import torch
from ignite.engine import Engine, Events

model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)


def train_step(engine, batch):
    model.train()
    optimizer.zero_grad()
    x, y = batch
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def eval_step(engine, batch):
    model.eval()
    x, y = batch
    {body}


trainer = Engine(train_step)
evaluator = Engine(eval_step)


@trainer.on(Events.EPOCH_COMPLETED)
def validate(engine):
    evaluator.run(val_loader)


trainer.run(train_loader, max_epochs=5)
'''


def test_an_ignite_evaluation_step_with_autograd_on():
    found = lint402(IGNITE.format(body="return model(x), y"))
    assert [f.line for f in found] == [22]
    assert "Engine runs eval_step()" in found[0].message


def test_an_ignite_evaluation_step_under_no_grad():
    assert lint402(IGNITE.format(body="with torch.no_grad():\n        return model(x), y")) == []


# -- a model named by its uses, a while loop of an inference script ------------------------------------------

DEMO = '''
import torch
from detector import build_detector

detector_net = build_detector("res101")
detector_net.load_state_dict(torch.load("faster_rcnn.pth")["model"])
detector_net.eval()
frames = open_camera(0)
while frames.more():
    im = frames.next()
    {call}
    show(boxes)
'''


def test_a_model_typed_by_load_state_dict_in_a_while_loop_of_an_inference_script(tmp_path):
    files = {"detector.py": "def build_detector(name):\n    return None\n", "demo.py": DEMO.format(call="boxes = detector_net(im)")}
    found = tree402(tmp_path, files)
    assert _where(found) == ["demo.py:9"]
    clean = DEMO.format(call="with torch.no_grad():\n        boxes = detector_net(im)")
    assert tree402(tmp_path / "b", {"detector.py": files["detector.py"], "demo.py": clean}) == []


def test_a_while_loop_of_a_training_program_is_no_evaluation():
    code = DEMO.format(call="boxes = detector_net(im)").replace("detector_net.eval()", "detector_net.train()\nfit(detector_net)")
    assert lint402(code) == []


# -- a from_pretrained() model fine-tuned without train() ----------------------------------------------------

FINETUNE = '''
import torch
from transformers import BertForSequenceClassification


def evaluate(model):
    model.eval()
    with torch.no_grad():
        for batch in val_dataloader:
            model(**batch)
    model.train()


model = BertForSequenceClassification.from_pretrained("bert-base-uncased", num_labels=2)
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
{before}for step, batch in enumerate(train_dataloader):
    loss = model(**batch)[0]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if step % 100 == 0:
        evaluate(model)
'''


def test_a_from_pretrained_model_trained_before_any_train_call():
    # evaluate() ends with model.train(), but the first 100 steps train with dropout off
    found = lint401(FINETUNE.format(before=""))
    assert [f.line for f in found] == [17]
    assert "from_pretrained() returns it" in found[0].message


def test_train_before_the_loop_is_enough():
    assert lint401(FINETUNE.format(before="model.train()\n")) == []
