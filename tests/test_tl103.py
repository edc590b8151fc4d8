"""TL103 softmax-before-cross-entropy: behaviour the rule's snippets do not cover (cross-file models and
criteria, helpers, model alternatives, evaluation-only code, messages naming the numbers)."""

from __future__ import annotations

from _lint import linters

CODE = "TL103"
lint, lint_tree = linters(CODE)


def test_model_in_a_subpackage_criterion_in_a_config_module_reported_once(tmp_path):
    found = lint_tree(tmp_path, {
        "proj/__init__.py": "",
        "proj/nets/__init__.py": "from .clf import Classifier\n",
        "proj/nets/clf.py": """
            import torch.nn as nn
            class Classifier(nn.Module):
                def __init__(self, n_classes=7):
                    super().__init__()
                    self.fc = nn.Linear(32, n_classes)
                    self.out = nn.Softmax(dim=-1)
                def forward(self, x):
                    return self.out(self.fc(x))
        """,
        "proj/losses.py": """
            import torch.nn as nn
            criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
        """,
        "train.py": """
            import torch
            from proj.nets import Classifier
            from proj.losses import criterion
            def main():
                model = torch.compile(Classifier().cuda())
                for x, y in loader:
                    loss = criterion(model(x), y)
                    loss.backward()
            if __name__ == "__main__":
                main()
        """,
        "finetune.py": """
            from proj.nets import Classifier
            from proj.losses import criterion
            net = Classifier()
            for x, y in loader:
                criterion(net(x), y).backward()
        """,
    })
    assert [(p, line) for p, line, _ in found] == [("proj/nets/clf.py", 9)]
    f = found[0][2]
    # 7 classes: the loss cannot go below ln(e + 6) - 1
    assert "`Classifier` ends with nn.Softmax" in f.message and "7 classes" in f.message and "1.17" in f.message
    assert f.related and f.related[0].span.line in (8, 6)


def test_number_of_classes_folded_from_a_constant_in_a_sequential():
    found = lint("""
        import torch.nn as nn
        N_CLASSES = 100
        model = nn.Sequential(nn.Linear(512, N_CLASSES), nn.Softmax(1))
        for x, y in loader:
            nn.CrossEntropyLoss()(model(x), y).backward()
    """)
    assert [f.line for f in found] == [4]
    assert "100 classes" in found[0].message and "3.62" in found[0].message  # ln(e + 99) - 1


def test_local_softmax_of_a_resolvable_model_names_its_width():
    found = lint("""
        import torch
        import torch.nn as nn
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
        for x, y in loader:
            probs = torch.softmax(model(x), dim=1)
            loss = nn.functional.cross_entropy(probs, y)
            loss.backward()
    """)
    assert [f.line for f in found] == [6]
    assert "3 classes" in found[0].message and "`torch.softmax(model(x), dim=1)`" in found[0].message


def test_nll_and_bce_with_logits_messages():
    found = lint("""
        import torch
        import torch.nn.functional as F
        for x, y, tags in loader:
            p = model(x).softmax(-1)
            s = torch.sigmoid(tagger(x))
            loss = F.nll_loss(p, y) + F.binary_cross_entropy_with_logits(s, tags)
            loss.backward()
    """)
    assert sorted(f.line for f in found) == [5, 6]
    by_line = {f.line: f for f in found}
    assert "log-probabilities" in by_line[5].message and "-p(y)" in by_line[5].message
    assert "(0.5, 0.73)" in by_line[6].message and "0.31" in by_line[6].message and "0.69" in by_line[6].message


def test_self_softmax_module_in_a_lightning_training_step_points_at_the_call():
    found = lint("""
        import torch
        import torch.nn as nn
        import lightning as L
        class Lit(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.backbone = nn.Linear(10, 4)
                self.softmax = nn.Softmax(dim=1)
                self.ce = nn.CrossEntropyLoss()
            def training_step(self, batch, batch_idx):
                x, y = batch
                return self.ce(self.softmax(self.backbone(x)), y)
            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val", self.ce(self.softmax(self.backbone(x)), y))
        L.Trainer(max_epochs=1).fit(Lit(), loader)
    """)
    assert [f.line for f in found] == [13]


def test_model_alternatives_one_ending_in_softmax_is_flagged():
    found = lint("""
        import torch.nn as nn
        import torch.nn.functional as F
        class A(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 4)
            def forward(self, x):
                return F.softmax(self.fc(x), dim=1)
        class B(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 4)
            def forward(self, x):
                return self.fc(x)
        if args.arch == "a":
            model = A()
        else:
            model = B()
        criterion = nn.CrossEntropyLoss()
        for x, y in loader:
            criterion(model(x), y).backward()
    """)
    assert [f.line for f in found] == [9]


def test_criterion_chosen_with_the_model_is_not_flagged():
    # the criterion follows the same switch as the model: a sigmoid model gets BCELoss
    assert lint("""
        import torch.nn as nn
        if args.probs:
            model = nn.Sequential(nn.Linear(8, 1), nn.Sigmoid())
            criterion = nn.BCELoss()
        else:
            model = nn.Sequential(nn.Linear(8, 1))
            criterion = nn.BCEWithLogitsLoss()
        for x, y in loader:
            criterion(model(x).squeeze(1), y).backward()
    """) == []


def test_branch_criterion_with_a_model_that_always_ends_in_sigmoid():
    found = lint("""
        import torch
        import torch.nn as nn
        class Seg(nn.Module):
            def __init__(self, n_classes=1):
                super().__init__()
                self.n_classes = n_classes
                self.out = nn.Conv2d(16, n_classes, 1)
            def forward(self, x):
                return torch.sigmoid(self.out(x))
        def train_net(net, loader):
            criterion = nn.CrossEntropyLoss() if net.n_classes > 1 else nn.BCEWithLogitsLoss()
            for imgs, masks in loader:
                loss = criterion(net(imgs), masks)
                loss.backward()
        train_net(net=Seg(), loader=loader)
    """)
    assert [f.line for f in found] == [10]
    assert "BCEWithLogitsLoss" in found[0].message


def test_unresolvable_model_alternative_keeps_it_quiet():
    assert lint("""
        import torch.nn as nn
        from .parts import *
        if args.arch == "soft":
            net = nn.Sequential(nn.Linear(8, 3), nn.Softmax(dim=1))
        else:
            net = UNknownNet()
        for x, y in loader:
            nn.CrossEntropyLoss()(net(x), y).backward()
    """) == []


def test_evaluation_only_code_is_not_flagged():
    assert lint("""
        import torch
        import torch.nn.functional as F
        @torch.no_grad()
        def validate(model, loader):
            return sum(F.cross_entropy(model(x).softmax(1), y).item() for x, y in loader)
        def run_test(model, loader):
            with torch.inference_mode():
                for x, y in loader:
                    print(F.cross_entropy(F.softmax(model(x), 1), y))
        with torch.set_grad_enabled(False):
            for x, y in val_loader:
                val = F.nll_loss(torch.softmax(model(x), 1), y)
        @torch.inference_mode()
        def check(model, batch):
            return F.cross_entropy(model(batch[0]).softmax(-1), batch[1])
    """) == []


def test_evaluation_routines_by_name_or_by_a_project_no_grad_decorator_are_not_flagged():
    src = """
        import torch.nn.functional as F
        from utils import smart_inference_mode
        def {name}(model, x, y):
            return F.cross_entropy(model(x).softmax(-1), y)
        @smart_inference_mode()
        def check(model, x, y):
            def inner():
                return F.nll_loss(model(x).softmax(-1), y)
            return inner()
        for x, y in loader:
            {name}(model, x, y).backward()
    """
    # the names evaluation.py reads as an evaluation routine (one regex for every rule)
    for name in ("compute_metrics", "run_validation", "on_test_batch_end", "evaluate_step"):
        assert lint(src.replace("{name}", name)) == [], name
    # near-miss: the same loss in a training helper, or a GAN's validity loss (no evaluation)
    for name in ("train_step", "validity_loss"):
        assert [f.line for f in lint(src.replace("{name}", name))] == [5], name


def test_set_grad_enabled_for_the_training_phase_is_training_code():
    found = lint("""
        import torch
        import torch.nn as nn
        model = nn.Sequential(nn.Linear(8, 4), nn.Softmax(dim=1))
        criterion = nn.CrossEntropyLoss()
        for phase in ["train", "val"]:
            for x, y in loaders[phase]:
                with torch.set_grad_enabled(phase == "train"):
                    loss = criterion(model(x), y)
                    if phase == "train":
                        loss.backward()
    """)
    assert [f.line for f in found] == [4]


def test_forward_with_a_flag_or_a_tuple_return_is_not_flagged():
    assert lint("""
        import torch.nn as nn
        import torch.nn.functional as F
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 4)
            def forward(self, x, return_probs=False):
                logits = self.fc(x)
                if return_probs:
                    return F.softmax(logits, dim=-1)
                return logits
        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 4)
            def forward(self, x):
                logits = self.fc(x)
                return logits, F.softmax(logits, dim=-1)
        net, two = Net(), Two()
        for x, y in loader:
            logits, probs = two(x)
            loss = F.cross_entropy(net(x), y) + F.cross_entropy(logits, y) + F.cross_entropy(two(x)[0], y)
            loss.backward()
    """) == []


def test_log_of_softmax_and_log_softmax_are_not_flagged():
    assert lint("""
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        model = nn.Sequential(nn.Linear(8, 4), nn.Softmax(dim=1))
        for x, y in loader:
            p = model(x)
            loss = F.nll_loss(p.log(), y) + F.nll_loss(torch.log(p + 1e-9), y)
            loss = loss + nn.CrossEntropyLoss()(torch.log_softmax(head(x), 1), y)
            loss = loss + F.cross_entropy((p + 1e-9).log(), y)
            loss.backward()
    """) == []


def test_loss_helper_parameter_followed_to_its_call_sites():
    found = lint("""
        import torch.nn as nn
        import torch.nn.functional as F
        model = nn.Sequential(nn.Linear(8, 4))
        ce = nn.CrossEntropyLoss()
        def step(outputs, targets):
            loss = ce(outputs, targets)
            loss.backward()
            return loss
        for x, y in loader:
            step(F.softmax(model(x), dim=1), y)
    """)
    assert [f.line for f in found] == [11]


def test_no_torch_loss_no_activation_skips_cheaply():
    assert lint("""
        import torch.nn as nn
        model = nn.Sequential(nn.Linear(8, 4), nn.Softmax(dim=1))
        for x, y in loader:
            (model(x) - y).pow(2).mean().backward()
    """) == []


def test_replaced_head_of_a_torchvision_model():
    found = lint("""
        import torch
        import torch.nn as nn
        from torchvision import models
        def build(num_classes):
            return None
        def train(model, loader, criterion, optimizer):
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
        model = models.resnet50(weights="IMAGENET1K_V2").to("cuda")
        model.fc = nn.Sequential(nn.Linear(2048, 256), nn.ReLU(), nn.Dropout(0.4), nn.Linear(256, 5), nn.Softmax(dim=1))
        train(model, loader, nn.CrossEntropyLoss(), torch.optim.Adam(model.fc.parameters()))
    """)
    assert [f.line for f in found] == [14]
    assert "`model.fc` ends with nn.Softmax" in found[0].message and "5 classes" in found[0].message


def test_replaced_head_ending_in_log_softmax_with_nll_is_clean():
    assert lint("""
        import torch.nn as nn
        from torchvision import models
        model = models.vgg16(pretrained=True)
        model.classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Linear(4096, 102), nn.LogSoftmax(dim=1))
        criterion = nn.NLLLoss()
        for x, y in loader:
            criterion(model(x), y).backward()
    """) == []


def test_replaced_head_of_a_library_model_inside_a_module_class():
    found = lint("""
        import torch.nn as nn
        from torch.nn.parallel import DistributedDataParallel as DDP
        from torchvision.models import resnet18, ResNet18_Weights
        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
                self.model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
                self.model.fc = nn.Sequential(nn.Linear(512, 2), nn.Softmax(dim=1))
            def forward(self, x):
                return self.model(x)
        def train(net, loader, opt):
            for x, y in loader:
                loss = nn.CrossEntropyLoss()(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        model = DDP(Model().cuda())
        train(model, loader, opt)
    """)
    assert [f.line for f in found] == [10]
    assert "`Model` ends with nn.Softmax" in found[0].message and "2 classes" in found[0].message


# --- a head attached to the hook argument in one callback hook and called in another --------------

ONLINE_EVAL = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_lightning import Callback


class Evaluator(nn.Module):
    def __init__(self, n_input, n_classes):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(n_input, n_classes), {last})

    def forward(self, x):
        return self.block(x)


class OnlineEvaluator({base}):
    def on_fit_start(self, trainer, pl_module):
        pl_module.online_head = Evaluator(2048, 10)
        self.optimizer = torch.optim.Adam(pl_module.online_head.parameters(), lr=1e-4)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        x, y = batch
        with torch.no_grad():
            feats = pl_module(x)
        preds = pl_module.online_head(feats)
        loss = F.cross_entropy(preds, y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()


if __name__ == "__main__":
    from pytorch_lightning import Trainer
    Trainer(max_epochs=10, callbacks=[OnlineEvaluator()]).fit(Encoder(), loader)
"""


def test_head_set_on_pl_module_in_one_hook_and_trained_in_another(tmp_path):
    found = lint_tree(tmp_path, {"online.py": ONLINE_EVAL.replace("{last}", "nn.Softmax(dim=1)").replace("{base}", "Callback")})
    # reported at the head's softmax, with the loss it reaches in the other hook as a related location
    assert [(p, line) for p, line, _ in found] == [("online.py", 11)]
    f = found[0][2]
    assert "`Evaluator` ends with nn.Softmax" in f.message, f.message
    assert any(r.span.line == 27 for r in f.related), [(r.span.line, r.message) for r in f.related]


def test_hook_attribute_near_misses(tmp_path):
    # a head that ends in a Linear; a class that is not a framework callback (its methods may get
    # different objects under the same parameter name)
    clean = ONLINE_EVAL.replace("{last}", "nn.Identity()").replace("{base}", "Callback")
    assert lint_tree(tmp_path / "linear", {"online.py": clean}) == []
    other = ONLINE_EVAL.replace("{last}", "nn.Softmax(dim=1)").replace("{base}", "object")
    assert lint_tree(tmp_path / "plain", {"online.py": other}) == []
