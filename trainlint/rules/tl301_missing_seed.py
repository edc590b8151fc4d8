from __future__ import annotations

import os
import re
from typing import Iterable, List, Optional, Tuple

import libcst as cst

from trainlint.analysis.program import Program, ProgramFile
from trainlint.analysis.seeds import (
    NUMPY,
    RANDOM,
    TORCH,
    ProgramSeeds,
    display_name,
    imports_torch_family,
    iter_entry_candidates,
    program_seeds,
)
from trainlint.findings import Applicability, Edit, Finding, Fix, Related, Severity, Span
from trainlint.rules import Rule

#: Substrings one of the program's files must contain for it to possibly train.
_TRAIN_HINTS = ("backward", ".fit(", ".train(", "training_step", "compute_loss", "autograd")
_MAX_RELATED = 6
#: Entries whose runs are not meant to be reproduced: tests and speed benchmarks.
_NOT_JUDGED = re.compile(r"(^|/)(tests?|benchmarks?)/|(^|/)(test_[^/]*|[^/]*_test|conftest|[^/]*bench[^/]*|[^/]*profil[^/]*)\.py$")


class MissingSeed(Rule):
    """
    ## What it does
    Judges a whole training program — the entry script and every project file it imports — and flags it
    when it never seeds torch (`torch.manual_seed`, or a helper that does), or when it seeds torch but
    draws from numpy's or Python's global random generator (`np.random.permutation`, `random.shuffle`,
    scikit-learn's `train_test_split` without `random_state`...) without seeding that one too, or creates
    an unseeded `np.random.default_rng()`. Library calls that draw inside the library count too: legacy
    torchtext's `Dataset.split()` and its shuffling `Iterator` / `BucketIterator` (and `.splits(...)`)
    shuffle with Python's `random` (torchtext/data/utils.py `RandomShuffler` takes `random.getstate()`
    when no `random_state` is given). The finding is on the entry script, at the start of the training loop
    (or the `trainer.fit(...)` call).

    Seeds count wherever they run: in `main()`, behind `if args.seed is not None:`, with `seed + rank`, in
    a helper of another file (`from utils import set_seed`, `import utils; utils.set_seed(...)`,
    `from .common.utils import seed_all`) — as long as the helper is actually called. Framework helpers seed
    all three generators: Lightning's `seed_everything` (`L.seed_everything`, `pl.seed_everything`,
    `fabric.seed_everything`, `LightningCLI`), `transformers.set_seed`, `accelerate.utils.set_seed`, and the
    Hugging Face `Trainer`, which seeds itself from `TrainingArguments.seed` (42 by default). Programs
    that do not train are not judged: data preparation, plotting and inference scripts, and a `backward()`
    with no parameter update near it (`optimizer.step()`, `zero_grad()`, `p.grad`) such as a speed profiler.
    Nor are programs that optimise an input instead of a model: style transfer or deep dream started
    from the content image through a pretrained network, whose optimizers update an image (tensors made
    from data, or a module whose `forward` takes no input) while nothing draws at random — two runs compute
    the same image. Started from noise (`torch.randn(...)`), they are judged. A `backward()` in a class's
    `__call__` (a loss object with an inner solve) counts only where an instance of the class is called.
    A program trains when it runs a `backward()` with an update, a Lightning `training_step`,
    `trainer.fit(...)` or an HF `trainer.train()`. Test files (`test_*.py`, `tests/`) and benchmarks
    (`*bench*.py`, `*profil*.py`) are not judged either: their runs are not meant to be reproduced.

    ## Why is this bad?
    Without a fixed seed two runs of the same code give different results: a change that "helped" may just
    be a luckier initialization or data order, and a bug cannot be reproduced. Karpathy's recipe starts
    with it — "fix the random seed: always use a fixed random seed so that when you run the code twice you
    get the same result; this removes a factor of variation and helps keep you sane"
    (Karpathy 2019).
    Seeding torch alone is not enough when the data split or the augmentation draws from numpy's or
    Python's global generator: those still change from run to run.

    ## Example
    ```python
    import torch
    from torch import nn

    model = nn.Linear(10, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(10):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    ```

    ## Use instead
    ```python
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Linear(10, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(10):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    ```
    Or call one helper that seeds everything: `lightning.seed_everything(seed)`, `transformers.set_seed(seed)`,
    or your own `set_seed(seed)` that calls `random.seed`, `np.random.seed` and `torch.manual_seed`. Draw from
    a seeded generator object (`rng = np.random.default_rng(seed)`) instead of the global one.

    Draws inside `Dataset.__getitem__` / `__iter__`, transform `__call__` methods and what they call are
    not counted: in DataLoader workers torch reseeds `random` and numpy from its own seed. Nor are draws
    that do not change what is learned: a random `MASTER_PORT`, a run name, a random seed that is then
    used (and logged) as the seed. A seeded `torch.Generator`
    (`random_split(..., generator=torch.Generator().manual_seed(0))`) fixes only what it is passed to,
    so it does not count as seeding torch. `torch.use_deterministic_algorithms(True)` makes kernels
    deterministic but does not fix the seed.

    ## Fix safety
    When the entry script imports `torch`, an unsafe fix inserts `torch.manual_seed(0)` after its imports.
    It changes the program's results (that is its point) and cannot know whether the program draws from
    numpy or `random` elsewhere, nor whether a seed should come from the command line, so it is only
    applied with `--unsafe-fixes`. No fix is offered when numpy or `random` is the unseeded one: where the
    draw happens decides where the seed belongs.

    ## References
    - Karpathy, ["A Recipe for Training Neural Networks"](https://karpathy.github.io/2019/04/25/recipe/) (2019): fix the random seed
    - [PyTorch: Reproducibility](https://pytorch.org/docs/stable/notes/randomness.html)
    - [lightning.seed_everything](https://lightning.ai/docs/pytorch/stable/common/trainer.html#reproducibility)
    """

    code = "TL301"
    name = "missing-seed"
    severity = Severity.WARNING
    summary = "The training program never seeds torch (or seeds torch but draws from numpy/random unseeded)"
    probe = "determinism"

    bad = (
        # a plain script with no seed at all
        """
import torch
import torch.nn as nn
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
opt = torch.optim.Adam(model.parameters(), lr=3e-4)
for step in range(100):  # expect: TL301
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
""",
        # seeded torch, but the split draws from numpy's global generator
        """
import numpy as np
import torch

def main():
    torch.manual_seed(0)
    idx = np.random.permutation(1000)
    train_idx = idx[:800]
    for epoch in range(5):  # expect: TL301
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()

if __name__ == "__main__":
    main()
""",
        # a seeding helper that is defined but never called
        """
import random
import numpy as np
import torch

def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

def train(model, loader, opt):
    for x, y in loader:
        opt.zero_grad()
        model(x, y).loss.backward()
        opt.step()

def main():
    model = build()
    for epoch in range(3):  # expect: TL301
        train(model, loader, opt)

if __name__ == "__main__":
    main()
""",
        # Lightning without seed_everything
        """
import lightning as L
from model import LitModel

if __name__ == "__main__":
    trainer = L.Trainer(max_epochs=3)
    trainer.fit(LitModel(), train_loader)  # expect: TL301
""",
        # random.shuffle with torch seeded
        """
import random
import torch
torch.manual_seed(42)
files = sorted(glob_files())
random.shuffle(files)
for x, y in make_batches(files):  # expect: TL301
    loss = model(x).sub(y).pow(2).mean()
    loss.backward()
    opt.step()
""",
        # style transfer from noise: the start image is random, so two runs give different images
        """
import torch
from torchvision import models
vgg = models.vgg19(pretrained=True).features.eval()
target = torch.randn(1, 3, 224, 224).requires_grad_(True)
optimizer = torch.optim.Adam([target], lr=0.003)
for step in range(2000):  # expect: TL301
    loss = style_loss(vgg(target), style_features) + content_loss(vgg(target), content_features)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
""",
        # only a seeded generator for the split: the global torch RNG (init, dropout, shuffle) is not
        """
import torch
from torch.utils.data import random_split
train_set, val_set = random_split(data, [0.9, 0.1], generator=torch.Generator().manual_seed(42))
for epoch in range(10):  # expect: TL301
    for x, y in train_set:
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
""",
    )
    good = (
        # seed set inside main(), behind a flag
        """
import argparse
import random
import numpy as np
import torch

def main():
    args = parser.parse_args()
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
    idx = np.random.permutation(100)
    for epoch in range(args.epochs):
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()

if __name__ == "__main__":
    main()
""",
        # Lightning seed_everything (every spelling)
        """
import lightning as L
import numpy as np
L.seed_everything(7)
noise = np.random.randn(10)
trainer = L.Trainer(max_epochs=3)
trainer.fit(model, loader)
""",
        """
import pytorch_lightning as pl
if __name__ == "__main__":
    pl.seed_everything(1234, workers=True)
    pl.Trainer().fit(model)
""",
        """
from lightning.fabric.utilities.seed import seed_everything
seed_everything(0)
trainer.fit(model)
""",
        # LightningCLI seeds (seed_everything option)
        """
from lightning.pytorch.cli import LightningCLI
from model import LitModel

def cli_main():
    LightningCLI(LitModel)

if __name__ == "__main__":
    cli_main()
""",
        # transformers.set_seed / accelerate set_seed
        """
import torch
from transformers import set_seed
set_seed(42)
for batch in loader:
    loss = model(**batch).loss
    accelerator.backward(loss)
""",
        """
import random
from accelerate.utils import set_seed
def main(args):
    set_seed(args.seed)
    random.shuffle(examples)
    for batch in loader:
        accelerator.backward(model(**batch).loss)
        optimizer.step()
main(parse())
""",
        # HF Trainer seeds itself (TrainingArguments.seed defaults to 42)
        """
from transformers import Trainer, TrainingArguments
args = TrainingArguments(output_dir="out", num_train_epochs=3)
trainer = Trainer(model=model, args=args, train_dataset=ds)
trainer.train()
""",
        # distributed: seed + rank
        """
import torch
import torch.distributed as dist
def worker(rank, args):
    dist.init_process_group("nccl", rank=rank, world_size=args.world_size)
    torch.manual_seed(args.seed + rank)
    for x, y in loader:
        loss = model(x, y)
        loss.backward()
        opt.step()
if __name__ == "__main__":
    torch.multiprocessing.spawn(worker, args=(args,), nprocs=4)
""",
        # no training at all: inference / data preparation
        """
import numpy as np
import torch
model = torch.load("model.pt")
model.eval()
with torch.no_grad():
    for x in loader:
        print(model(x).argmax(1))
idx = np.random.permutation(10)
""",
        # style transfer from the content image through a pretrained network in eval mode: the optimizer
        # updates an image, not a model, and nothing is drawn at random
        """
import torch
from torchvision import models, transforms

def load_image(path, transform):
    return transform(Image.open(path)).unsqueeze(0)

def main(config):
    content = load_image(config.content, transforms.ToTensor())
    target = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([target], lr=config.lr, betas=[0.5, 0.999])
    vgg = models.vgg19(pretrained=True).features.eval()
    for step in range(config.total_step):
        loss = torch.mean((vgg(target) - vgg(content)) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

if __name__ == "__main__":
    main(parser.parse_args())
""",
        # the generated image as a module whose forward takes no input, its start replaced by the content
        """
import torch

class GeneratedImage(torch.nn.Module):
    def __init__(self, img_shape):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(*img_shape))

    def forward(self):
        return self.weight

def train(X, contents_Y, lr, max_epochs):
    gen_img = GeneratedImage(X.shape)
    gen_img.weight.data = X.data
    optimizer = torch.optim.Adam(gen_img.parameters(), lr=lr)
    for i in range(max_epochs):
        l = compute_loss(gen_img(), contents_Y)
        optimizer.zero_grad()
        l.backward()
        optimizer.step()
    return gen_img().detach()

output = train(content_X, contents_Y, 0.01, 500)
""",
        # a loss object whose __call__ runs an inner solve: built by a visualisation script, never called
        """
import torch

class ReweightedLoss:
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

def show(model, loader):
    lossfn = ReweightedLoss(0.1, 10)
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            plot(x, model(x).argmax(1), y)

if __name__ == "__main__":
    show(torch.load("model.pt"), loader)
""",
        # draws from a seeded generator object are fine; worker-side draws are seeded by torch
        """
import random
import numpy as np
import torch
torch.manual_seed(0)
rng = np.random.default_rng(0)
idx = rng.permutation(100)

class Aug:
    def __call__(self, x):
        return x.flip(-1) if random.random() < 0.5 else x

class Data(torch.utils.data.Dataset):
    def __getitem__(self, i):
        return np.random.rand(3), i

for x, y in loader:
    loss = model(x).mean()
    loss.backward()
""",
        # the helper in another module style: imported and called through its module
        """
import torch
import numpy as np
from torch.backends import cudnn

def seed_all(seed):
    np.random.seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.manual_seed(seed)

class Runner:
    def run(self):
        seed_all(3)
        np.random.shuffle(self.items)
        for x, y in self.loader:
            self.model(x, y).backward()

if __name__ == "__main__":
    Runner().run()
""",
        # a seeding helper from a star import; a random port and a random (logged) seed are not training draws
        """
import os
import random
import torch
from common import *

def main(args):
    if args.seed is None:
        args.seed = random.randint(0, 2**31 - 1)
    print("seed", args.seed)
    set_seed(args.seed)
    os.environ["MASTER_PORT"] = str(random.randint(20000, 30000))
    for x, y in loader:
        loss = model(x, y)
        loss.backward()

if __name__ == "__main__":
    main(parse_args())
""",
    )

    def check_program(self, program: Program) -> Iterable[Finding]:
        if _NOT_JUDGED.search(program.entry.path.replace(os.sep, "/")):
            return
        texts = [pf.ctx.source.text for pf in program.files]
        if not any(h in t for t in texts for h in _TRAIN_HINTS):
            return
        if not imports_torch_family(program):
            return
        ps = program_seeds(program)
        if not ps.trains:
            return
        seeded = ps.seeded()
        if TORCH not in seeded:
            yield self._unseeded_torch(program, ps)
            return
        missing = []
        for source in (NUMPY, RANDOM):
            draws = [(pf, d) for pf, d in ps.draws if d.source == source and (source not in seeded or d.fresh_generator)
                     and not _incidental(pf, d)]
            if draws:
                missing.append((source, draws))
        if missing:
            yield self._unseeded_draws(program, ps, missing)

    # -- findings -----------------------------------------------------------------------------
    def _where(self, program: Program, ps: ProgramSeeds) -> Tuple[Span, str]:
        entry = program.entry
        ctx = entry.ctx
        best: Optional[Tuple[Tuple[int, int, int], cst.CSTNode, str]] = None
        rank = {"loop": 0, "sign": 1, "call": 3}
        for dist, node, kind in iter_entry_candidates(ps):
            line = ctx.span(node).line
            key = (rank[kind], -dist, line)
            if best is None or key < best[0]:
                best = (key, node, kind)
        if best is not None and best[2] != "call":
            return ctx.head_span(best[1]), "the training starts here"
        guard = self._main_guard(entry)
        if guard is not None:
            return ctx.head_span(guard), "the program starts here"
        if best is not None:
            return ctx.head_span(best[1]), "the training starts here"
        return Span.point(1), "the program starts here"

    @staticmethod
    def _main_guard(entry: ProgramFile) -> Optional[cst.CSTNode]:
        from trainlint.analysis.seeds import _is_main_guard

        for stmt in entry.ctx.module.body:
            if _is_main_guard(stmt):
                return stmt
        return None

    def _loc(self, program: Program, pf: ProgramFile, node: cst.CSTNode) -> Tuple[str, Span]:
        span = pf.ctx.head_span(node)
        cells = pf.ctx.source.cells  # a notebook: cell coordinates, never lines of the joined script
        name = display_name(program, pf)
        return (f"{name}, {cells.describe(span.line)}" if cells is not None else f"{name}:{span.line}"), span

    def _program_label(self, program: Program) -> str:
        names = [display_name(program, pf) for pf in program.files
                 if pf is program.entry or os.path.basename(pf.path) != "__init__.py"]
        if len(names) == 1:
            return f"The training program {names[0]}"
        rest = names[1:]
        shown = ", ".join(rest[:4]) + (f" and {len(rest) - 4} more" if len(rest) > 4 else "")
        return f"The training program ({names[0]} + {shown})"

    def _unseeded_torch(self, program: Program, ps: ProgramSeeds) -> Finding:
        entry = program.entry
        span, where = self._where(program, ps)
        related: List[Related] = []
        notes: List[str] = []
        others = sorted({k for _, s in ps.seeds for k in s.seeds} - {TORCH})
        if others:
            pf, s = next((pf, s) for pf, s in ps.seeds if s.seeds & set(others))
            loc, sp = self._loc(program, pf, s.call)
            names = " and ".join("numpy" if k == NUMPY else "random" for k in others)
            notes.append(f"{names} {'are' if len(others) > 1 else 'is'} seeded ({loc}) but torch is not")
            related.append(Related(pf.ctx.path, sp, f"seeds {names} only"))
        for pf, scope in ps.uncalled_helpers[:2]:
            loc, sp = self._loc(program, pf, scope.node)
            notes.append(f"{loc} defines {scope.name}() but nothing calls it")
            related.append(Related(pf.ctx.path, sp, f"{scope.name}() seeds, but is never called"))
        here = os.path.dirname(entry.path)
        gens = [(pf, s) for pf, s in ps.generators if TORCH in s.seeds and os.path.dirname(pf.path) == here]
        if gens:
            pf, s = gens[0]
            loc, sp = self._loc(program, pf, s.call)
            notes.append(f"the torch.Generator seeded at {loc} fixes only what it is passed to")
            related.append(Related(pf.ctx.path, sp, "a seeded generator object: the global torch RNG stays unseeded"))
        for pf, node, text in ps.determinism[:1]:
            loc, sp = self._loc(program, pf, node)
            notes.append(f"{text} at {loc} does not fix the seed")
            related.append(Related(pf.ctx.path, sp, "deterministic kernels, but no seed"))
        seeded = ps.seeded()
        for pf, d in [(pf, d) for pf, d in ps.draws
                      if (d.source not in seeded or d.fresh_generator) and not _incidental(pf, d)][:3]:
            _, sp = self._loc(program, pf, d.call)
            related.append(Related(pf.ctx.path, sp, f"an unseeded draw: {d.spelling}()"))
        message = f"{self._program_label(program)} never seeds torch: two runs give different results"
        if notes:
            message += " (" + "; ".join(notes) + ")"
        hint = self._hint(program, ps)
        return self.finding(entry.ctx, span, message, hint=hint, fix=self._fix(entry), related=related[:_MAX_RELATED])

    def _hint(self, program: Program, ps: ProgramSeeds) -> str:
        entry_name = display_name(program, program.entry)
        if ps.uncalled_helpers:
            pf, scope = ps.uncalled_helpers[0]
            return (f"Call {scope.name}(seed) (defined in {display_name(program, pf)}) at the start of {entry_name}, "
                    "before the model and the data are built")
        tops = {v.split(".", 1)[0] for pf in program.files for v in pf.facts.aliases.aliases.values()}
        if tops & {"lightning", "pytorch_lightning", "lightning_fabric"}:
            return "Call L.seed_everything(seed, workers=True) before the model and the data are built (it seeds torch, numpy and random)"
        if tops & {"transformers", "accelerate"}:
            return "Call transformers.set_seed(seed) (or accelerate.utils.set_seed) before the model and the data are built"
        extra = " plus random.seed(seed) / np.random.seed(seed) if the program draws from them" if ps.draws else ""
        return (f"Call torch.manual_seed(seed){extra} at the start of {entry_name}, before the model and the data are "
                "built; take the seed from a flag to vary it on purpose")

    def _fix(self, entry: ProgramFile) -> Optional[Fix]:
        aliases = entry.facts.aliases.aliases
        local = next((k for k, v in aliases.items() if v == "torch"), None)
        if local is None:
            return None
        # After the import that binds torch and the imports right after it: never above `import torch`
        # (a script that sets sys.path or an environment variable first, a notebook's import cells).
        body = list(entry.ctx.module.body)
        at = next((i for i, stmt in enumerate(body) if _binds(stmt, local)), None)
        if at is None:  # torch imported inside a try/if or a function: no safe place to guess
            return None
        last_import: cst.CSTNode = body[at]
        for stmt in body[at + 1:]:
            if isinstance(stmt, cst.SimpleStatementLine) and all(
                    isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
                last_import = stmt
            else:
                break
        line = entry.ctx.span(last_import).end_line + 1
        return Fix(
            message=f"Seed torch after the imports: {local}.manual_seed(0)",
            edits=(Edit(Span(line, 1, line, 1), f"{local}.manual_seed(0)\n"),),
            applicability=Applicability.UNSAFE,
        )

    def _unseeded_draws(self, program: Program, ps: ProgramSeeds, missing) -> Finding:
        entry = program.entry
        span, _ = self._where(program, ps)
        related: List[Related] = []
        pf, s = next((pf, s) for pf, s in ps.seeds if TORCH in s.seeds)
        seed_loc, seed_span = self._loc(program, pf, s.call)
        related.append(Related(pf.ctx.path, seed_span, f"torch is seeded here ({s.spelling})"))
        reached = ps.reached.get(id(s.scope))
        if reached is not None and reached.via is not None and reached.via[0] is not pf:
            vpf, vnode, vname = reached.via
            vloc, _ = self._loc(program, vpf, vnode)
            seed_loc = f"{seed_loc}, through {vname}() at {vloc}"
        parts = []
        for source, draws in missing:
            label = "numpy's global generator" if source == NUMPY else "Python's random module"
            dpf, d = draws[0]
            dloc, _ = self._loc(program, dpf, d.call)
            more = f" ({len(draws)} unseeded draws in all)" if len(draws) > 1 else ""
            if d.fresh_generator:
                parts.append(f"{dloc} creates an unseeded numpy generator with {d.spelling}(){more}")
            else:
                via = f" ({d.via})" if d.via else ""
                parts.append(f"{label} is not, and {dloc} draws from {d.spelling}(){via}{more}")
            for dpf, d in draws[:3]:
                _, sp = self._loc(program, dpf, d.call)
                related.append(Related(dpf.ctx.path, sp, f"an unseeded draw: {d.spelling}()"
                                       + (f" ({d.via})" if d.via else "")))
        message = f"torch is seeded ({seed_loc}) but " + "; ".join(parts) + ": two runs still differ"
        fixes = []
        if any(src == NUMPY and not draws[0][1].fresh_generator for src, draws in missing):
            fixes.append("np.random.seed(seed)")
        if any(src == RANDOM for src, _ in missing):
            fixes.append("random.seed(seed)")
        objects = []
        if any(src == NUMPY for src, _ in missing):
            objects.append("np.random.default_rng(seed)")
        if any(src == RANDOM for src, _ in missing):
            objects.append("random.Random(seed)")
        alt = f"draw from a seeded {' / '.join(objects)}"
        hint = f"Add {' and '.join(fixes)} next to the torch seed ({seed_loc}), or {alt}" if fixes else \
            f"Pass a seed: {alt}"
        return self.finding(entry.ctx, span, message, hint=hint, related=related[:_MAX_RELATED])


def _binds(stmt: cst.CSTNode, local: str) -> bool:
    """Is ``stmt`` a top-level ``import torch`` (``import torch as T``, ``import torch.nn``) binding ``local``?"""
    from trainlint.analysis.names import dotted

    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    for small in stmt.body:
        if isinstance(small, cst.Import):
            for a in small.names:
                name = a.asname.name.value if a.asname is not None and isinstance(a.asname.name, cst.Name) \
                    else (dotted(a.name) or "").split(".")[0]
                if name == local:
                    return True
    return False


#: Draws that do not change what is learned: a free port for the process group, a run name, a
#: random seed that is then used (and logged) as the seed.
_INCIDENTAL = re.compile(r"port|environ|run_?id|run_?name|uuid|ascii|hexdigits|colou?r|seed|tmp|temp", re.I)


def _incidental(pf: ProgramFile, draw) -> bool:
    return bool(_INCIDENTAL.search(pf.ctx.code(draw.stmt.node)[:300]))
