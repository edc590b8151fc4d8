"""TL402 eval-without-no-grad: no_grad at the call sites of a helper (also in other files), helpers nobody
calls, decorators, and the message naming the loop and the model."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths

HELPERS = """
def evaluate(model, loader):
    model.eval()
    hits = 0
    for x, y in loader:
        hits += (model(x).argmax(1) == y).sum().item()
    return hits
"""


def _write(root: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def _run(root: Path, files: Dict[str, str]):
    _write(root, files)
    options = Options(config=Config(layers=[Selection()]), enabled=["TL402"])
    report, _ = lint_paths([str(root)], options)
    assert not report.errors, report.errors
    return [f for f in report.findings if f.code == "TL402"]


def _where(findings) -> List[str]:
    return sorted(f"{Path(f.path).name}:{f.line}" for f in findings)


def test_helper_in_another_file_called_with_autograd_on(tmp_path):
    found = _run(tmp_path, {
        "lib/__init__.py": "",
        "lib/metrics.py": HELPERS,
        "train.py": """
            import torch
            from lib.metrics import evaluate
            model = torch.nn.Linear(4, 2)
            if __name__ == "__main__":
                print(evaluate(model, val_loader))
        """,
    })
    assert _where(found) == ["metrics.py:4"]
    assert "evaluate()" in found[0].message and "`model`" in found[0].message


def test_caller_in_another_file_under_no_grad(tmp_path):
    found = _run(tmp_path, {
        "lib/__init__.py": "",
        "lib/metrics.py": HELPERS,
        "train.py": """
            import torch
            from lib.metrics import evaluate
            model = torch.nn.Linear(4, 2)
            if __name__ == "__main__":
                with torch.no_grad():
                    print(evaluate(model, val_loader))
        """,
    })
    assert found == []


def test_caller_of_the_caller_under_inference_mode(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import torch
            """ + HELPERS + """
            @torch.inference_mode()
            def report(model):
                return evaluate(model, val_loader)

            if __name__ == "__main__":
                report(torch.nn.Linear(4, 2))
        """,
    })
    assert found == []


def test_uncalled_helper_is_left_alone(tmp_path):
    found = _run(tmp_path, {
        "train.py": """
            import torch
            """ + HELPERS + """
            if __name__ == "__main__":
                pass
        """,
    })
    assert found == []


def test_two_forwards_counted_and_loop_header_is_the_location(tmp_path):
    found = _run(tmp_path, {
        "gan_eval.py": """
            import torch
            generator = torch.nn.Linear(4, 4)
            discriminator = torch.nn.Linear(4, 1)
            generator.eval()
            scores = []
            for z, real in test_loader:
                fake = generator(z)
                scores.append(discriminator(fake).mean().item())
        """,
    })
    assert _where(found) == ["gan_eval.py:6"]
    assert "2 times" in found[0].message


DETECT = """
import torch
import torchvision
from data import ImageFolderStream

def detect(source):
    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights="DEFAULT")
    model.eval()
    for path, img in ImageFolderStream(source):
        {line}
        print(path, pred[0]["boxes"].shape)

if __name__ == "__main__":
    detect("images/")
"""


def test_a_loop_of_an_inference_script_is_an_evaluation(tmp_path):
    data = "class ImageFolderStream:\n    def __init__(self, root):\n        self.root = root\n"
    found = _run(tmp_path / "a", {"data.py": data, "detect.py": DETECT.format(line="pred = model([img])")})
    assert _where(found) == ["detect.py:8"] and "never trains" in found[0].message
    clean = DETECT.format(line="with torch.no_grad():\n            pred = model([img])")
    assert _run(tmp_path / "b", {"data.py": data, "detect.py": clean}) == []
    # the same loop in a script that trains (fine-tuning first) is judged by the usual evidence: not here
    trains = DETECT.format(line="pred = model([img])").replace("    model.eval()\n", "    train_one_epoch(model)\n    model.eval()\n")
    assert _run(tmp_path / "c", {"data.py": data, "detect.py": trains}) == []


def test_an_inference_function_under_a_project_no_grad_decorator_is_not_flagged(tmp_path):
    data = "class ImageFolderStream:\n    def __init__(self, root):\n        self.root = root\n"
    utils = "import torch\ndef smart_inference_mode():\n    def decorate(fn):\n        return torch.inference_mode()(fn)\n    return decorate\n"
    src = DETECT.format(line="pred = model([img])").replace("def detect(source):", "from utils import smart_inference_mode\n\n@smart_inference_mode()\ndef detect(source):")
    assert _run(tmp_path, {"data.py": data, "utils.py": utils, "detect.py": src}) == []


def test_torch_from_a_star_import_of_the_model_module(tmp_path):
    # deeplab's train.py gets `torch` from `from modeling.deeplab import *`: its no_grad is torch's
    found = _run(tmp_path, {
        "modeling/__init__.py": "",
        "modeling/deeplab.py": "import torch\nimport torch.nn as nn\nclass DeepLab(nn.Module):\n    pass\n",
        "train.py": """
            from modeling.deeplab import *

            class Trainer:
                def __init__(self):
                    self.model = DeepLab()
                def training(self, epoch):
                    self.model.train()
                    for image, target in self.train_loader:
                        self.optimizer.zero_grad()
                        self.criterion(self.model(image), target).backward()
                        self.optimizer.step()
                def validation(self, epoch):
                    self.model.eval()
                    for i, sample in enumerate(self.val_loader):
                        image, target = sample["image"], sample["label"]
                        with torch.no_grad():
                            output = self.model(image)
                        loss = self.criterion(output, target)

            if __name__ == "__main__":
                trainer = Trainer()
                for epoch in range(10):
                    trainer.training(epoch)
                    trainer.validation(epoch)
        """,
    })
    assert found == []


def test_a_project_decorator_that_runs_the_function_under_no_grad(tmp_path):
    # simple-faster-rcnn's @nograd around FasterRCNN.predict(); a decorator of any name whose wrapper
    # runs the function under torch.no_grad() is a no-grad decorator too
    found = _run(tmp_path, {
        "model.py": """
            import torch as t
            from torch import nn
            from functools import wraps

            def nograd(f):
                def new_f(*args, **kwargs):
                    with t.no_grad():
                        return f(*args, **kwargs)
                return new_f

            def frozen(f):
                @wraps(f)
                def run(*args, **kwargs):
                    with t.no_grad():
                        return f(*args, **kwargs)
                return run

            class FasterRCNN(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.head = nn.Linear(4, 4)
                def forward(self, x):
                    return self.head(x)
                @nograd
                def predict(self, imgs):
                    self.eval()
                    out = []
                    for img in imgs:
                        out.append(self(img).argmax(-1))
                    return out
                @frozen
                def score(self, imgs):
                    self.eval()
                    return [self(img).max() for img in imgs]
        """,
        "train.py": """
            import torch
            from model import FasterRCNN
            model = FasterRCNN()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for epoch in range(3):
                model.train()
                for x, y in loader:
                    opt.zero_grad(); torch.nn.functional.mse_loss(model(x), y).backward(); opt.step()
                print(model.predict(val_images), model.score(val_images))
        """,
    })
    assert found == []


def test_a_paddle_program_is_not_judged(tmp_path):
    # face.evoLVe's paddle/align: the same MTCNN inference script as its PyTorch sibling, on PaddlePaddle
    # (whose `import paddle` even resolves to the repository's own paddle/ folder): no PyTorch evaluation
    found = _run(tmp_path, {
        "paddle/__init__.py": "",
        "paddle/align/get_nets.py": """
            import paddle
            import paddle.nn as nn
            class ONet(nn.Layer):
                def forward(self, x):
                    return self.conv(x)
        """,
        "paddle/align/detector.py": """
            import paddle
            from get_nets import ONet
            def detect_faces(image):
                onet = ONet()
                onet.eval()
                return onet(paddle.to_tensor(image))
        """,
        "paddle/align/face_align.py": """
            import os
            from detector import detect_faces
            for name in os.listdir("faces"):
                boxes = detect_faces(load(name))
        """,
    })
    assert found == []
