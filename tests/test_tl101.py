"""TL101 activation-before-regression-output: behaviour the rule's snippets do not cover
(cross-file models and criteria, wrappers, inheritance, evidence of target standardization)."""

from __future__ import annotations

from _lint import linters

CODE = "TL101"
lint, lint_tree = linters(CODE)


def test_model_class_in_a_subpackage_and_criterion_in_a_config_module(tmp_path):
    found = lint_tree(tmp_path, {
        "proj/__init__.py": "",
        "proj/nets/__init__.py": "from .mlp import MLP\n",
        "proj/nets/mlp.py": """
            import torch.nn as nn
            class MLP(nn.Module):
                def __init__(self, d):
                    super().__init__()
                    self.fc = nn.Linear(d, 1)
                    self.act = nn.ReLU6()
                def forward(self, x):
                    return self.act(self.fc(x))
        """,
        "proj/losses.py": """
            import torch.nn as nn
            criterion = nn.L1Loss()
        """,
        "train.py": """
            import torch
            from proj.nets import MLP
            from proj.losses import criterion
            def main():
                model = torch.compile(MLP(8).cuda())
                for x, y in loader:
                    loss = criterion(model(x), y)
                    loss.backward()
            if __name__ == "__main__":
                main()
        """,
    })
    assert [(p, line) for p, line, _ in found] == [("proj/nets/mlp.py", 9)]
    f = found[0][2]
    assert "[0, 6]" in f.message and "nn.L1Loss" in f.message and "train.py:8" in f.message
    assert f.related and f.related[0].path.endswith("train.py") and f.related[0].span.line == 8


def test_forward_inherited_from_a_base_class_in_another_file(tmp_path):
    found = lint_tree(tmp_path, {
        "base.py": """
            import torch
            from torch import nn
            class Base(nn.Module):
                def forward(self, x):
                    h = self.body(x)
                    return torch.sigmoid(self.head(h))
        """,
        "train.py": """
            import torch.nn as nn
            import torch.nn.functional as F
            from base import Base
            class Net(Base):
                def __init__(self):
                    super().__init__()
                    self.body = nn.Linear(4, 8)
                    self.head = nn.Linear(8, 1)
            y_all = (y_all - y_all.mean()) / y_all.std()
            net = nn.DataParallel(Net())
            for xb, yb in loader:
                F.mse_loss(net(xb).squeeze(1), yb).backward()
        """,
    })
    assert [(p, line) for p, line, _ in found] == [("base.py", 7)]
    assert "(0, 1)" in found[0][2].message and "standardized" in found[0][2].message
    assert any(r.span.line == 10 for r in found[0][2].related)  # where the targets are standardized


def test_lightning_criterion_attribute_and_sequential_head():
    found = lint("""
        import torch
        import pytorch_lightning as pl
        from torch import nn
        class Reg(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1), nn.ReLU(inplace=True))
                self.criterion = nn.SmoothL1Loss()
            def forward(self, x):
                return self.net(x)
            def training_step(self, batch, batch_idx):
                x, y = batch
                return self.criterion(self.forward(x), y)
        trainer = pl.Trainer()
        trainer.fit(Reg())
    """)
    assert [f.line for f in found] == [8]


def test_model_and_criterion_passed_as_arguments_and_built_by_a_factory():
    found = lint("""
        import torch.nn as nn
        from collections import OrderedDict
        def build(cfg):
            return nn.Sequential(OrderedDict([("fc", nn.Linear(4, 1)), ("out", nn.Softplus())]))
        def fit(net, crit, loader):
            for x, y in loader:
                out = net(x).view(-1)
                loss = crit(out, y)
                loss.backward()
        scaler_y = StandardScaler()
        y_train = scaler_y.fit_transform(y_train)
        model = build(cfg)
        fit(model, nn.MSELoss(), loader)
    """)
    assert [f.line for f in found] == [5]


def test_module_list_iterated_in_forward():
    found = lint("""
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = nn.ModuleList([nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1), nn.ReLU()])
            def forward(self, x):
                for layer in self.layers:
                    x = layer(x)
                return x
        net = Net()
        for x, y in loader:
            nn.MSELoss()(net(x), y).backward()
    """)
    assert [f.line for f in found] == [6]


def test_bounded_outputs_without_evidence_and_nonregression_losses_are_not_flagged():
    assert lint("""
        import torch.nn as nn
        net = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())
        for x, y in loader:
            nn.MSELoss()(net(x), y).backward()
            nn.GaussianNLLLoss()(net(x), y, var).backward()
    """) == []
    assert lint("""
        import torch.nn as nn
        net = nn.Sequential(nn.Linear(4, 1), nn.ReLU())
        for x, y in loader:
            nn.PoissonNLLLoss(log_input=False)(net(x), y).backward()
    """) == []


def test_dense_conv_output_and_denoising_reconstruction_are_not_flagged():
    # a density-map / super-resolution style output: conv then ReLU, image-like targets
    assert lint("""
        import torch.nn as nn
        net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 1, 1), nn.ReLU())
        for img, density in loader:
            nn.MSELoss()(net(img), density).backward()
    """) == []
    # denoising autoencoder: the target is the clean version of the input
    assert lint("""
        import torch
        import torch.nn as nn
        ae = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 784), nn.ReLU())
        for x, _ in loader:
            noisy = x + 0.1 * torch.randn_like(x)
            torch.nn.functional.mse_loss(ae(noisy), x).backward()
    """) == []


def test_tuple_output_and_unpacked_predictions_are_unknown():
    assert lint("""
        import torch
        import torch.nn as nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 1)
            def forward(self, x):
                return torch.relu(self.fc(x)), x
        net = Net()
        for x, y in loader:
            pred, _ = net(x)
            nn.MSELoss()(pred, y).backward()
    """) == []


def test_min_max_scaled_targets_are_not_evidence_for_a_sigmoid_output():
    assert lint("""
        import torch.nn as nn
        net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
        y_train = (y_train - y_train.min()) / (y_train.max() - y_train.min())
        labels = (labels - 0.5) / 0.5
        for x, y in loader:
            nn.MSELoss()(net(x), y).backward()
    """) == []
    found = lint("""
        import torch.nn as nn
        net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
        for x, y in loader:
            y = (y - Y_MEAN) / Y_STD
            nn.MSELoss()(net(x), y).backward()
    """)
    assert [f.line for f in found] == [3]
    assert "(0, 1)" in found[0].message and "z-scores" in found[0].message


def test_feature_matching_between_two_model_outputs_is_not_flagged():
    assert lint("""
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        class Features(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 64, 3)
                self.fc = nn.Linear(64, 64)
            def forward(self, x):
                return F.relu(self.fc(self.conv(x).mean((2, 3))))
        feats = Features().eval()
        for real, z in loader:
            fake = G(z)
            loss = F.mse_loss(feats(fake), feats(real).detach())
            loss.backward()
    """) == []


def test_a_model_file_shared_by_two_entry_scripts_is_reported_once(tmp_path):
    train = """
        import torch.nn as nn
        from model import Net
        net = Net()
        for x, y in loader:
            nn.MSELoss()(net(x), y).backward()
    """
    found = lint_tree(tmp_path, {
        "model.py": """
            import torch
            import torch.nn as nn
            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(3, 1)
                def forward(self, x):
                    return torch.relu(self.fc(x))
        """,
        "train.py": train,
        "finetune.py": train,
    })
    assert [(p, line) for p, line, _ in found] == [("model.py", 9)]


def test_the_message_spells_torch_names_as_training_code_writes_them():
    # one helper (syntax.short_qualname) shortens the names of the model's last op and of the loss:
    # torch.nn.X -> nn.X, torch.nn.functional.x -> F.x, other names as they are
    from trainlint.analysis.syntax import short_qualname

    assert short_qualname("torch.nn.ReLU") == "nn.ReLU"
    assert short_qualname("torch.nn.functional.mse_loss") == "F.mse_loss"
    assert short_qualname("torch.nnx.Foo") == "torch.nnx.Foo" and short_qualname("timm.layers.Mlp") == "timm.layers.Mlp"
    found = lint("""
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        class Reg(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 1)
            def forward(self, x):
                return F.relu(self.fc(x))
        class Head(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(4, 1), nn.ReLU())
            def forward(self, x):
                return self.body(x)
        reg, head = Reg(), Head()
        for x, y in loader:
            loss = F.mse_loss(reg(x), y) + nn.L1Loss()(head(x), y)
            loss.backward()
    """)
    messages = sorted(f.message for f in found)
    assert len(messages) == 2, messages
    assert "`Head` ends with nn.ReLU" in messages[0] and "nn.L1Loss" in messages[0]
    assert "`Reg` ends with F.relu" in messages[1] and "F.mse_loss" in messages[1]
