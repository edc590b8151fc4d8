"""Rules keep no memory between programs: linting the same programs in any order (and with any number of
workers) gives the same findings. A file imported by two entry scripts is judged in both programs, and
the findings may differ (a schedule judged against each entry's run length): the engine keeps one per
rule and place, from the entry scripts in path order, whatever order the programs were processed in."""

from __future__ import annotations

import textwrap
from pathlib import Path

from trainlint.config import Config, Selection
from trainlint.engine import Options, lint_paths
from trainlint.rules import opt_in_codes, registry

FILES = {
    "engine.py": """
        import torch
        from torch.optim.lr_scheduler import StepLR


        def fit(model, loader, epochs):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
            for epoch in range(epochs):
                for x, y in loader:
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    optimizer.step()
                scheduler.step()
    """,
    "model.py": """
        import torch.nn as nn


        class Regressor(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(8, 64), nn.Dropout(0.2), nn.BatchNorm1d(64), nn.Linear(64, 1))

            def forward(self, x):
                return self.net(x)
    """,
    "a_train.py": """
        import torch
        from engine import fit
        from model import Regressor
        torch.manual_seed(0)
        fit(Regressor(), loader, 10)
    """,
    "b_train.py": """
        import torch
        from engine import fit
        from model import Regressor
        torch.manual_seed(0)
        fit(Regressor(), loader, 400)
    """,
}


def _lint(root: Path, names, jobs: int):
    config = Config(layers=[Selection(extend_select=opt_in_codes())])
    options = Options(config=config, enabled=config.enabled_codes(list(registry())), jobs=jobs)
    report, _ = lint_paths([str(root / n) for n in names], options)
    assert not report.errors, report.errors
    return sorted((Path(f.path).name, f.line, f.column, f.code, f.message) for f in report.findings)


def test_findings_do_not_depend_on_the_order_programs_are_linted_in(tmp_path):
    for rel, text in FILES.items():
        (tmp_path / rel).write_text(textwrap.dedent(text), encoding="utf-8")
    forward = _lint(tmp_path, ["a_train.py", "b_train.py", "engine.py", "model.py"], jobs=1)
    backward = _lint(tmp_path, ["model.py", "engine.py", "b_train.py", "a_train.py"], jobs=1)
    assert forward == backward
    # the shared file's schedule is judged in both programs (10 and 400 epochs), and reported once
    tl201 = [f for f in forward if f[3] == "TL201"]
    assert len(tl201) == 1 and "10-epoch run" in tl201[0][4]
    assert [f[:4] for f in forward if f[3] in ("TL102", "TL204")] == [
        ("engine.py", 12, 13, "TL204"), ("model.py", 8, 52, "TL102")]
    assert _lint(tmp_path, ["b_train.py", "model.py", "a_train.py", "engine.py"], jobs=2) == forward
