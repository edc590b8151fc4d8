"""Seeds and random draws of a training program.

Per file (memoized on the file's facts): every call that seeds a global random generator (torch,
numpy, Python's ``random``) — directly (``torch.manual_seed``), through a framework helper that seeds
all of them (Lightning ``seed_everything``, ``transformers.set_seed``, ``accelerate.utils.set_seed``,
an HF ``Trainer``, which seeds itself from ``TrainingArguments.seed``, ``LightningCLI``) — the seeded
generator objects (``torch.Generator().manual_seed(s)``, ``np.random.default_rng(s)``), the draws from an
unseeded global generator (``np.random.permutation``, ``random.shuffle``...), the determinism switches,
the training signs (``backward()``, ``trainer.fit``, HF ``trainer.train()``), and what each statement
refers to (to follow calls into helpers).

Per program (:func:`program_seeds`): which functions of the project actually run — starting from the
module bodies (an imported file runs its module body; its ``if __name__ == "__main__":`` block does
not) and following every reference to a project function or class, across files through the imports
(``from utils import set_seed``, ``import utils; utils.set_seed()``, ``from .common.utils import
seed_all``, re-exports in ``__init__.py``) — and therefore which seeds are really set (a seeding helper
that nothing calls seeds nothing), which draws really happen, and whether the program trains at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterator, List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import ClassInfo, FileFacts, Scope, Stmt
from trainlint.analysis.names import dotted
from trainlint.analysis.program import Program, ProgramFile, resolve_module
from trainlint.analysis.execution import backward_roots
from trainlint.analysis.syntax import constructed_class, short
from trainlint.analysis.walk import _children

TORCH, NUMPY, RANDOM = "torch", "numpy", "random"
ALL: FrozenSet[str] = frozenset({TORCH, NUMPY, RANDOM})

TORCH_SEEDS = {
    "torch.manual_seed", "torch.random.manual_seed", "torch.cuda.manual_seed", "torch.cuda.manual_seed_all",
    "torch.cuda.random.manual_seed", "torch.cuda.random.manual_seed_all", "torch.mps.manual_seed",
    "torch.xpu.manual_seed", "torch.xpu.manual_seed_all",
}
#: Framework helpers that seed torch, numpy and random at once.
FRAMEWORK_SEEDS = {
    "transformers.set_seed", "transformers.trainer_utils.set_seed", "transformers.enable_full_determinism",
    "transformers.trainer_utils.enable_full_determinism", "accelerate.utils.set_seed",
    "accelerate.utils.random.set_seed", "ignite.utils.manual_seed", "keras.utils.set_random_seed",
    "monai.utils.set_determinism", "mmengine.runner.set_random_seed", "detectron2.utils.env.seed_all_rng",
    "timm.utils.random_seed", "torch_geometric.seed_everything", "composer.utils.reproducibility.seed_all",
    "fastai.torch_core.set_seed", "catalyst.utils.set_global_seed",
}
#: Seeding a generator from the OS (not reproducible).
NOT_SEEDS = {"torch.seed", "torch.random.seed", "torch.cuda.seed", "torch.cuda.seed_all", "torch.initial_seed"}
#: Constructors of seeded generator objects (with a seed argument).
GENERATOR_CTORS = {
    "numpy.random.default_rng": NUMPY, "numpy.random.RandomState": NUMPY, "numpy.random.Generator": NUMPY,
    "numpy.random.PCG64": NUMPY, "numpy.random.MT19937": NUMPY, "numpy.random.Philox": NUMPY,
    "numpy.random.SFC64": NUMPY, "numpy.random.SeedSequence": NUMPY, "random.Random": RANDOM,
}
#: numpy.random names that are not draws from the global generator.
NUMPY_NOT_DRAWS = {
    "seed", "get_state", "set_state", "default_rng", "RandomState", "Generator", "PCG64", "PCG64DXSM", "MT19937",
    "Philox", "SFC64", "SeedSequence", "BitGenerator", "bit_generator", "mtrand",
}
RANDOM_DRAWS = {
    "random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform", "gauss", "normalvariate",
    "lognormvariate", "betavariate", "expovariate", "gammavariate", "triangular", "vonmisesvariate",
    "paretovariate", "weibullvariate", "getrandbits", "randbytes", "binomialvariate",
}
#: scikit-learn helpers that draw from numpy's global generator unless given a random_state.
SKLEARN_DRAWS = {
    "sklearn.model_selection.train_test_split", "sklearn.utils.shuffle", "sklearn.utils.resample",
}
#: Library calls that draw from a global generator INSIDE the library, so the user's code shows no
#: ``random.*`` / ``np.random.*`` call: (library, class, method or "" for the constructor) -> (generator,
#: keywords that make the call deterministic or not random, what to say). Sources:
#:
#: - torchtext (legacy ``torchtext.data``, 0.3-0.8, and ``torchtext.legacy.data``, 0.9-0.11):
#:   ``Dataset.split(split_ratio, stratified, strata_field, random_state=None)`` shuffles the examples with
#:   ``RandomShuffler(random_state)`` (torchtext/data/dataset.py), and ``RandomShuffler.__init__`` takes
#:   ``random.getstate()`` when no state is given (torchtext/data/utils.py): the split follows Python's
#:   unseeded ``random``. ``Iterator(..., train=True, shuffle=None)`` (and ``BucketIterator``, and their
#:   ``.splits((train, ...))``, whose first iterator is the training one) builds ``RandomShuffler()`` the
#:   same way and shuffles every epoch when ``shuffle`` (default: ``train``) is on
#:   (torchtext/data/iterator.py). https://github.com/pytorch/text/blob/v0.8.1/torchtext/data/dataset.py
LIBRARY_DRAWS: Dict[Tuple[str, str, str], Tuple[str, FrozenSet[str], str]] = {
    ("torchtext", "Dataset", "split"): (RANDOM, frozenset({"random_state"}),
                                        "torchtext's Dataset.split() shuffles with Python's random"),
    ("torchtext", "Iterator", ""): (RANDOM, frozenset({"shuffle", "train"}),
                                    "torchtext's Iterator shuffles with Python's random"),
    ("torchtext", "BucketIterator", ""): (RANDOM, frozenset({"shuffle", "train"}),
                                          "torchtext's BucketIterator shuffles with Python's random"),
    ("torchtext", "Iterator", "splits"): (RANDOM, frozenset({"shuffle"}),
                                          "torchtext's Iterator.splits() shuffles with Python's random"),
    ("torchtext", "BucketIterator", "splits"): (RANDOM, frozenset({"shuffle"}),
                                                "torchtext's BucketIterator.splits() shuffles with Python's random"),
}
#: torchtext names whose calls return datasets (``datasets.IMDB.splits(...)``, ``data.TabularDataset(...)``).
_TORCHTEXT_DATA = re.compile(r"^torchtext\.(?:legacy\.)?(?:data|datasets)\.")
#: Library helpers we do not know by name but that obviously seed (``seed_everything``, ``set_seed``...).
_SEEDY_NAME = re.compile(r"seed", re.I)
_NOT_SEEDY_NAME = re.compile(r"^_*(seed|seeds|initial_seed|seed_worker|worker_seed)$|get|worker|generator|rng_state|"
                             r"random_seed_?fn|^select_seed|randomly", re.I)
#: Names of user functions meant to seed a run (a worker_init_fn that nothing uses is not one).
_SEED_HELPER_NAME = re.compile(r"seed|determinis|reproduc", re.I)
#: Methods whose draws run in DataLoader workers, which torch seeds from its own seed (random and
#: numpy too since torch 1.9): not counted as unseeded draws.
_WORKER_METHODS = {"__getitem__", "__getitems__", "__iter__", "__next__", "__call__"}
_HF_TOP = ("transformers", "trl", "setfit", "sentence_transformers")
_LIGHTNING_TOP = ("lightning", "pytorch_lightning", "lightning_fabric")
_TORCH_FAMILY = ("torch", "lightning", "pytorch_lightning", "lightning_fabric", "transformers", "accelerate", "trl")


@dataclass(eq=False)
class SeedCall:
    call: cst.CSTNode  # the call (or, for a project subclass of HF Trainer, the reference to the class)
    scope: Scope
    stmt: Stmt
    seeds: FrozenSet[str]  # the global generators it seeds
    spelling: str  # as written: "torch.manual_seed", "L.seed_everything", "Trainer"
    generator: bool = False  # a seeded generator object, not the global state
    by_name: bool = False  # only its name says it seeds (an unknown library's helper, or a project one)


@dataclass(eq=False)
class Draw:
    call: cst.Call
    scope: Scope
    stmt: Stmt
    source: str  # NUMPY | RANDOM
    spelling: str  # "np.random.permutation"
    fresh_generator: bool = False  # np.random.default_rng() without a seed: never seeded by np.random.seed
    #: a library call that draws inside the library (:data:`LIBRARY_DRAWS`): what it is, for messages
    via: str = ""


@dataclass(eq=False)
class Sign:
    """A sign that the program trains: a backward, ``trainer.fit``, an HF ``trainer.train()``."""

    node: cst.CSTNode
    scope: Scope
    stmt: Stmt
    what: str
    #: a bare backward() trains only when parameters are updated nearby (optimizer.step(), p.grad...):
    #: a backward in a speed profiler or a gradient check is not training
    needs_update: bool = False


@dataclass(eq=False)
class StmtRefs:
    stmt: Stmt
    refs: List[Tuple[str, cst.CSTNode]]  # dotted names that may name a project function or class
    attrs: List[str] = field(default_factory=list)  # `obj.m` with a local object: the method names m


@dataclass(eq=False)
class FileSeeds:
    seeds: List[SeedCall] = field(default_factory=list)  # library seed calls (project helpers resolved per program)
    draws: List[Draw] = field(default_factory=list)
    determinism: List[Tuple[cst.CSTNode, Scope, Stmt, str]] = field(default_factory=list)
    signs: List[Sign] = field(default_factory=list)
    refs: Dict[int, List[StmtRefs]] = field(default_factory=dict)  # id(scope) -> statements' references
    #: Calls whose callee is a name we could not resolve to a library (a project helper, maybe).
    local_calls: List[Tuple[cst.Call, str, Scope, Stmt]] = field(default_factory=list)
    main_guards: Set[int] = field(default_factory=set)  # ids of `if __name__ == "__main__":` nodes
    updates: Set[int] = field(default_factory=set)  # ids of scopes that update parameters (step, zero_grad, p.grad)
    imports_torch_family: bool = False
    #: optimizer constructions (``torch.optim.Adam(params, ...)``): what they update decides whether
    #: the program trains a model or optimises an input (style transfer, deep dream)
    optimizers: List[Tuple[cst.Call, Scope, Stmt]] = field(default_factory=list)
    #: sources of torch randomness other than the global draws above: random tensors and in-place random
    #: fills, random ``nn.init``, shuffled loaders, random samplers and splits, random transforms
    randomness: List[Tuple[cst.Call, Scope, Stmt, str]] = field(default_factory=list)
    #: dotted targets written over a tensor's values (``img.weight.data = x.data``, ``p.copy_(x)``)
    overwritten: Set[str] = field(default_factory=set)

    def local_calls_in(self, scope: Scope) -> List[Tuple[cst.Call, str, Scope, Stmt]]:
        """The ``local_calls`` made in ``scope``, in order (indexed once: every reached scope asks)."""
        index = self.__dict__.get("_by_scope")
        if index is None:
            index = self.__dict__["_by_scope"] = {}
            for entry in self.local_calls:
                index.setdefault(id(entry[2]), []).append(entry)
        return index.get(id(scope), [])


# -- per file ----------------------------------------------------------------------------------

def _header_parts(node: cst.CSTNode) -> List[cst.CSTNode]:
    """The parts of a statement that run at that statement (a compound statement's body is recorded
    as statements of its own)."""
    kind = _HEADER_KINDS.get(type(node))
    if kind is None:
        kind = _HEADER_KINDS[type(node)] = _header_kind(node)
    if kind == "def":
        out: List[cst.CSTNode] = [d.decorator for d in node.decorators]
        p = node.params
        out.extend(x.default for x in (*p.posonly_params, *p.params, *p.kwonly_params) if x.default is not None)
        return out
    if kind == "for":
        return [node.iter]
    if kind == "test":
        return [node.test]
    if kind == "with":
        return [item.item for item in node.items]
    if kind == "match":
        return [node.subject]
    if kind == "none":
        return []
    return [node]


#: statement type -> what _header_parts takes of it (found once per type: isinstance against libcst's
#: classes is slow when it says no, and every statement of every program file passes here)
_HEADER_KINDS: Dict[type, str] = {}


def _header_kind(node: cst.CSTNode) -> str:
    if isinstance(node, cst.FunctionDef):
        return "def"
    if isinstance(node, cst.For):
        return "for"
    if isinstance(node, (cst.While, cst.If)):
        return "test"
    if isinstance(node, cst.With):
        return "with"
    if isinstance(node, getattr(cst, "Match", ())):
        return "match"
    if isinstance(node, (cst.Try, cst.ClassDef, cst.Import, cst.ImportFrom, cst.Global, cst.Nonlocal)) \
            or isinstance(node, getattr(cst, "TryStar", ())):
        return "none"
    return "self"


def _walk(root: cst.CSTNode, calls: List[cst.Call], refs: List[Tuple[str, cst.CSTNode]]) -> None:
    # (exact type checks: these libcst classes have no subclasses, and isinstance against libcst's
    # abstract node classes is slow; every statement of every program file passes here)
    Call, Name, Attribute, FunctionDef, ClassDef = cst.Call, cst.Name, cst.Attribute, cst.FunctionDef, cst.ClassDef
    stack = [root]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is Call:
            calls.append(n)
        elif t is Name or t is Attribute:
            name = dotted(n)
            if name is not None:
                refs.append((name, n))
                continue
        elif t is FunctionDef or t is ClassDef:
            continue
        kids = _children(n)
        kids.reverse()
        stack.extend(kids)


def _is_main_guard(node: cst.CSTNode) -> bool:
    if not isinstance(node, cst.If) or not isinstance(node.test, cst.Comparison):
        return False
    parts = [node.test.left] + [c.comparator for c in node.test.comparisons]
    names = {dotted(p) for p in parts}
    strings = {p.evaluated_value for p in parts if isinstance(p, cst.SimpleString)}
    return "__name__" in names and "__main__" in strings


def _args(call: cst.Call) -> List[cst.Arg]:
    return [a for a in call.args if a.star == ""]


def _has_seed_arg(call: cst.Call) -> bool:
    args = _args(call)
    if not args:
        return any(a.star for a in call.args)  # f(*args): assume a seed is passed
    v = args[0].value
    return not (isinstance(v, cst.Name) and v.value == "None")


def _is_true(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "True"


def _top(q: str) -> str:
    return q.split(".", 1)[0]


def is_hf_trainer_name(q: Optional[str]) -> bool:
    return bool(q) and _top(q) in _HF_TOP and q.rsplit(".", 1)[-1].endswith("Trainer")


def is_lightning_trainer_name(q: Optional[str]) -> bool:
    return bool(q) and _top(q) in _LIGHTNING_TOP and q.rsplit(".", 1)[-1] == "Trainer"


def classify_library_call(call: cst.Call, facts: FileFacts) -> Optional[tuple]:
    """(generators seeded, is a generator object[, only by its name]) when ``call`` is a library seed."""
    func = call.func
    q = facts.qualify(func)
    last = func.attr.value if isinstance(func, cst.Attribute) else (func.value if isinstance(func, cst.Name) else "")
    if q is not None:
        if q in NOT_SEEDS:
            return None
        if q in TORCH_SEEDS:
            return (frozenset({TORCH}), False) if _has_seed_arg(call) else None
        if q == "random.seed":
            return (frozenset({RANDOM}), False) if _has_seed_arg(call) else None
        if q == "numpy.random.seed":
            return (frozenset({NUMPY}), False) if _has_seed_arg(call) else None
        if q in GENERATOR_CTORS:
            return (frozenset({GENERATOR_CTORS[q]}), True) if _has_seed_arg(call) else None
        if q in FRAMEWORK_SEEDS:
            return ALL, False
        if q.endswith("LightningCLI"):
            off = any(a.keyword is not None and a.keyword.value == "seed_everything_default"
                      and isinstance(a.value, cst.Name) and a.value.value == "False" for a in call.args)
            return None if off else (ALL, False)
        if last == "seed_everything":
            return ALL, False
        if is_hf_trainer_name(q):
            return ALL, False  # the HF Trainer seeds itself (TrainingArguments.seed defaults to 42)
        top = _top(q)
        if top not in ("torch", "numpy", "random", "") and not q.startswith(".") and _SEEDY_NAME.search(last) \
                and not _NOT_SEEDY_NAME.search(last):
            return ALL, False, True  # a library's seeding helper we do not know by name
        return None
    if isinstance(func, cst.Attribute):
        # torch.Generator().manual_seed(0), g.manual_seed(0): a seeded torch generator object
        if last == "manual_seed" and _has_seed_arg(call):
            return frozenset({TORCH}), True
        if last == "seed_everything":  # fabric.seed_everything(42)
            return ALL, False
    if last and _SEEDY_NAME.search(last) and not _NOT_SEEDY_NAME.search(last):
        # set_seed(0) from a star import, self.set_seed(...), cfg.utils.fix_seed(...): a seeding helper
        # by its name; a project function of that name is followed instead (program_seeds)
        return ALL, False, True
    return None


def _library_draw(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[Tuple[str, str]]:
    """(generator, what) when ``call`` is a library call of :data:`LIBRARY_DRAWS` that draws from an
    unseeded global generator: ``data.BucketIterator(...)``, ``data.BucketIterator.splits(...)``, or
    ``ds.split()`` where ``ds`` holds a torchtext dataset (from ``datasets.IMDB.splits(...)``, a
    ``data.TabularDataset``, an earlier ``split()``, a project subclass of ``data.Dataset``)."""
    q = facts.qualify(call.func)
    key = None
    if q is not None and q.startswith("torchtext."):
        parts = [p for p in q.split(".")[1:] if p not in ("legacy", "data", "iterator", "dataset")]
        if len(parts) == 1:
            key = ("torchtext", parts[0], "")
        elif len(parts) == 2:
            key = ("torchtext", parts[0], parts[1])
    elif isinstance(call.func, cst.Attribute) and _torchtext_dataset(call.func.value, facts, scope, stmt, 0):
        key = ("torchtext", "Dataset", call.func.attr.value)
    row = LIBRARY_DRAWS.get(key) if key is not None else None
    if row is None:
        return None
    source, off, what = row
    for a in call.args:
        if a.keyword is None:
            continue
        kw = a.keyword.value
        if kw == "random_state" and kw in off:
            return None  # a given state: deterministic
        if kw in off and isinstance(a.value, cst.Name) and a.value.value == "False":
            return None  # shuffle=False / train=False: no shuffling
    return source, what


def _torchtext_dataset(expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int) -> bool:
    """Does ``expr`` (a name) hold a torchtext dataset at ``stmt``?"""
    if depth > 4:
        return False
    if isinstance(expr, cst.Call):
        q = facts.qualify(expr.func)
        if q is not None:
            if _TORCHTEXT_DATA.match(q):
                return True
            info = facts.classes.get(q) if "." not in q else None
            return info is not None and any(_TORCHTEXT_DATA.match(b or "") for b in info.bases)
        if isinstance(expr.func, cst.Attribute) and expr.func.attr.value in ("split", "splits"):
            return _torchtext_dataset(expr.func.value, facts, scope, stmt, depth + 1)
        if isinstance(expr.func, cst.Name) and expr.func.value in facts.classes:
            return any(_TORCHTEXT_DATA.match(b or "") for b in facts.classes[expr.func.value].bases)
        return False
    if not isinstance(expr, cst.Name):
        return False
    sc: Optional[Scope] = scope
    while sc is not None:
        found = sc.reaching(expr.value, stmt) if sc is scope else sc.assigns.get(expr.value, [])
        for a in found[:4]:
            value = a.value if a.value is not None else getattr(a.node, "value", None)
            if a.kind == "assign" and isinstance(value, cst.BaseExpression) and \
                    _torchtext_dataset(value, facts, a.scope or sc, a.stmt, depth + 1):
                return True
        if found:
            return False
        sc = sc.parent
    return False


def _draw(call: cst.Call, facts: FileFacts, scope: Optional[Scope] = None, stmt: Optional[Stmt] = None) \
        -> Optional[Tuple[str, bool, str]]:
    if scope is not None and stmt is not None:
        lib = _library_draw(call, facts, scope, stmt)
        if lib is not None:
            return lib[0], False, lib[1]
    q = facts.qualify(call.func)
    if q is None:
        return None
    if q.startswith("numpy.random."):
        name = q[len("numpy.random."):]
        if "." in name:
            return None
        if name in ("default_rng", "RandomState") and not _has_seed_arg(call) and not call.args:
            return NUMPY, True
        if name in NUMPY_NOT_DRAWS:
            return None
        return NUMPY, False
    if q.startswith("random.") and q[len("random."):] in RANDOM_DRAWS:
        return RANDOM, False
    if q in SKLEARN_DRAWS and not any(a.keyword is not None and a.keyword.value == "random_state" for a in call.args):
        return NUMPY, False  # random_state=None: numpy's global generator
    return None


_DETERMINISM = {"torch.use_deterministic_algorithms", "torch.backends.cudnn.deterministic"}


#: Modules that are never part of the project being linted: names from them are not followed.
_NOT_PROJECT = {
    "torch", "numpy", "random", "os", "sys", "math", "time", "json", "re", "typing", "collections", "functools",
    "itertools", "logging", "argparse", "dataclasses", "pathlib", "copy", "shutil", "glob", "datetime", "warnings",
    "contextlib", "abc", "enum", "pickle", "subprocess", "__future__", "io", "csv", "string", "textwrap",
    "inspect", "operator", "types", "uuid", "hashlib", "threading", "multiprocessing", "socket", "tempfile",
}


def file_seeds(facts: FileFacts, text: Optional[str] = None) -> FileSeeds:
    """The seed facts of one file (memoized on ``facts``; ``text``, the source, lets it skip the
    backward search in files that cannot contain one)."""
    cached = getattr(facts, "_seeds_cache", None)
    if cached is not None:
        return cached
    out = FileSeeds()
    out.imports_torch_family = any(_top(v) in _TORCH_FAMILY for v in facts.aliases.aliases.values())
    local_names = {f.name for f in facts.functions if f.class_name is None} | set(facts.classes)
    followed = local_names | {"self", "cls"} | {k for k, v in facts.aliases.aliases.items() if _top(v) not in _NOT_PROJECT}
    for scope in facts.scopes():
        worker = scope.kind == "function" and scope.class_name is not None and scope.name in _WORKER_METHODS
        rows: List[StmtRefs] = []
        for stmt in scope.stmts:
            if scope.kind == "module" and _is_main_guard(stmt.node):
                out.main_guards.add(id(stmt.node))
            calls: List[cst.Call] = []
            refs: List[Tuple[str, cst.CSTNode]] = []
            for part in _header_parts(stmt.node):
                _walk(part, calls, refs)
            if _updates(stmt.node, refs):
                out.updates.add(id(scope))
            kept = [(name, node) for name, node in refs if name.split(".", 1)[0] in followed]
            attrs = [name.rsplit(".", 1)[1] for name, _ in refs
                     if "." in name and name.split(".", 1)[0] not in followed]
            rows.append(StmtRefs(stmt, kept, attrs))
            if isinstance(stmt.node, cst.Assign):
                for t in stmt.node.targets:
                    if facts.qualify(t.target) == "torch.backends.cudnn.deterministic" and _is_true(stmt.node.value):
                        out.determinism.append((stmt.node, scope, stmt, "torch.backends.cudnn.deterministic = True"))
            _overwrites(stmt.node, out.overwritten)
            for call in calls:
                kind = _torch_randomness(call, facts)
                if kind is not None:
                    out.randomness.append((call, scope, stmt, kind))
                elif _is_optimizer(call, facts):
                    out.optimizers.append((call, scope, stmt))
                spelling = short(dotted(call.func) or "", 50)
                seeded = classify_library_call(call, facts)
                if seeded is not None:
                    out.seeds.append(SeedCall(call, scope, stmt, seeded[0], spelling or "manual_seed", seeded[1],
                                              len(seeded) > 2))
                    if len(seeded) > 2:
                        out.local_calls.append((call, spelling, scope, stmt))
                    continue
                q = facts.qualify(call.func)
                if q in _DETERMINISM:
                    if call.args and _is_true(call.args[0].value):
                        out.determinism.append((call, scope, stmt, f"{spelling}(True)"))
                    continue
                if not worker:
                    d = _draw(call, facts, scope, stmt)
                    if d is not None:
                        out.draws.append(Draw(call, scope, stmt, d[0], spelling, d[1], d[2] if len(d) > 2 else ""))
                        continue
                sign = "LightningCLI" if q is not None and q.endswith("LightningCLI") else \
                    _fit_or_train(call, facts, scope, stmt)
                if sign is not None:
                    out.signs.append(Sign(call, scope, stmt, sign))
                    continue
                if spelling and (q is None or q.startswith(".") or _top(q) not in ("torch", "numpy", "random")):
                    out.local_calls.append((call, spelling, scope, stmt))
        out.refs[id(scope)] = rows
    if text is None or any(h in text for h in ("backward", "training_step", "compute_loss", "autograd")):
        for root in backward_roots(facts):
            if not isinstance(root.call, cst.Call) or root.how.startswith("manual_backward"):
                # returned losses (a Lightning training_step, HF compute_loss, a loss helper) train only
                # when a trainer runs them (trainer.fit, LightningCLI, trainer.train): loading the module
                # for inference is not training
                continue
            out.signs.append(Sign(root.call, root.scope, root.stmt, root.how, needs_update=True))
    facts._seeds_cache = out  # type: ignore[attr-defined]
    return out


#: torch functions that draw from the global torch generator.
TORCH_RANDOM = {
    "torch.randn", "torch.rand", "torch.randint", "torch.randperm", "torch.normal", "torch.bernoulli",
    "torch.multinomial", "torch.poisson", "torch.randn_like", "torch.rand_like", "torch.randint_like",
    "torch.nn.functional.dropout", "torch.nn.functional.dropout2d", "torch.nn.functional.dropout3d",
    "torch.nn.functional.gumbel_softmax", "torch.utils.data.random_split", "torch.utils.data.RandomSampler",
    "torch.utils.data.sampler.RandomSampler", "torch.utils.data.SubsetRandomSampler",
    "torch.utils.data.WeightedRandomSampler", "torch.nn.Dropout", "torch.nn.Dropout2d", "torch.nn.Dropout3d",
}
#: Tensor methods that fill a tensor at random.
_RANDOM_FILLS = {"normal_", "uniform_", "random_", "bernoulli_", "exponential_", "cauchy_", "log_normal_", "geometric_"}
_DETERMINISTIC_INIT = {"zeros_", "ones_", "constant_", "eye_", "dirac_", "calculate_gain", "zero_"}


def _torch_randomness(call: cst.Call, facts: FileFacts) -> Optional[str]:
    """What kind of torch randomness ``call`` is (``"torch.randn"``, ``"shuffle=True"``...), or None."""
    func = call.func
    q = facts.qualify(func)
    if q is not None:
        if q in TORCH_RANDOM:
            return q
        last = q.rsplit(".", 1)[-1]
        if q.startswith("torch.nn.init.") and last not in _DETERMINISTIC_INIT:
            return q
        if q.startswith("torchvision.transforms.") and last.startswith("Random"):
            return q
        if last in ("DataLoader",) and any(a.keyword is not None and a.keyword.value == "shuffle"
                                           and not (isinstance(a.value, cst.Name) and a.value.value in ("False", "None"))
                                           for a in call.args):
            return "DataLoader(shuffle=...)"
        return None
    if isinstance(func, cst.Attribute) and func.attr.value in _RANDOM_FILLS:
        return "." + func.attr.value
    return None


def _is_optimizer(call: cst.Call, facts: FileFacts) -> bool:
    q = facts.qualify(call.func) or ""
    return q.startswith("torch.optim.") and "lr_scheduler" not in q and "swa_utils" not in q \
        and q.rsplit(".", 1)[-1][:1].isupper()


def _overwrites(node: cst.CSTNode, out: Set[str]) -> None:
    """Targets whose values a statement replaces: ``a.w.data = x``, ``a.w.data.copy_(x)``, ``a.w.copy_(x)``."""
    if isinstance(node, cst.Assign):
        for t in node.targets:
            name = dotted(t.target)
            if name is not None and name.endswith(".data"):
                out.add(name[: -len(".data")])
    elif isinstance(node, cst.Expr) and isinstance(node.value, cst.Call):
        func = node.value.func
        if isinstance(func, cst.Attribute) and func.attr.value == "copy_":
            name = dotted(func.value)
            if name is not None:
                out.add(name[: -len(".data")] if name.endswith(".data") else name)


_NOT_OPTIMIZER = re.compile(r"sched|env|lr_|warmup|progress|pbar|bar$", re.I)


_GRAD_CLEAR = re.compile(r"\.grad(\.data)?\.(zero_|detach_|fill_)$")
_INPLACE_UPDATES = {"sub_", "add_", "copy_", "addcmul_", "addcdiv_", "mul_", "set_"}


def _is_update(name: str) -> bool:
    """``optimizer.step``, ``scaler.step``, ``opt.zero_grad``, ``self.optimizer_step``, ``p.grad.zero_``."""
    head, _, last = name.rpartition(".")
    if last in ("step", "zero_grad"):
        return not _NOT_OPTIMIZER.search(head)
    if "optim" in last and last.endswith("step"):
        return True
    return bool(_GRAD_CLEAR.search(name))


def _reads_grad(names: List[str]) -> bool:
    return any(n.endswith(".grad") or ".grad." in n for n in names)


def _updates(node: cst.CSTNode, refs: List[Tuple[str, cst.CSTNode]]) -> bool:
    """Does this statement update parameters? An optimizer step or ``zero_grad``, clearing a gradient
    (``p.grad.zero_()``, ``p.grad = None``), or a hand-written step that writes a gradient into a
    tensor (``p.data -= lr * p.grad``, ``w = w - lr * w.grad``, ``p.data.add_(p.grad, alpha=-lr)``).
    Reading a gradient is not an update: a gradient check or a saliency map compares or plots
    ``x.grad`` and trains nothing."""
    names = [name for name, _ in refs]
    if any(_is_update(n) for n in names):
        return True
    if not _reads_grad(names):
        return False
    if isinstance(node, cst.AugAssign):
        return True
    if isinstance(node, cst.Assign):
        value_names: List[Tuple[str, cst.CSTNode]] = []
        _walk(node.value, [], value_names)
        read = [n for n, _ in value_names]
        for t in node.targets:
            target = dotted(t.target)
            if target is None:
                continue
            if target.endswith(".grad"):
                return True  # p.grad = None
            base = target[: -len(".data")] if target.endswith(".data") else target
            if _reads_grad(read) and any(n == base or n.startswith(base + ".") for n in read):
                return True
        return False
    return any(n.rpartition(".")[2] in _INPLACE_UPDATES for n in names)


def _fit_or_train(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[str]:
    """``trainer.fit(...)`` (Lightning) or ``trainer.train()`` (Hugging Face)."""
    func = call.func
    if not isinstance(func, cst.Attribute) or func.attr.value not in ("fit", "train"):
        return None
    meth = func.attr.value
    if meth == "train" and call.args:
        return None  # model.train(True) is a mode switch
    recv = func.value
    ctor: Optional[cst.BaseExpression] = None
    if isinstance(recv, cst.Call):
        ctor = constructed_class(recv.func)
    else:
        name = dotted(recv)
        if name is None:
            return None
        found = scope.reaching(name, stmt) or (facts.module.assigns.get(name, []) if scope is not facts.module else [])
        if not found and name.startswith("self.") and scope.class_name:
            found = facts.attributes.get(scope.class_name, {}).get(name, [])
        for a in found:
            if isinstance(a.value, cst.Call):
                ctor = constructed_class(a.value.func)
                break
        if ctor is None:
            last = name.rsplit(".", 1)[-1].lower()
            if "trainer" in last:
                tops = {_top(v) for v in facts.aliases.aliases.values()}
                if meth == "fit":  # trainer = build_trainer(cfg); trainer.fit(model)
                    return f"{name}.fit()"
                if meth == "train" and tops & set(_HF_TOP):
                    return f"{name}.train()"
            return None
    q = facts.qualify(ctor)
    if meth == "fit" and is_lightning_trainer_name(q):
        return "Trainer.fit()"
    if meth == "train" and (is_hf_trainer_name(q) or _local_hf_trainer(ctor, facts)):
        return "Trainer.train()"
    return None


def _local_hf_trainer(ctor: cst.BaseExpression, facts: FileFacts) -> bool:
    name = dotted(ctor)
    info = facts.classes.get(name or "")
    return info is not None and any(is_hf_trainer_name(b) for b in info.bases)


def _fs(pf: ProgramFile) -> FileSeeds:
    return file_seeds(pf.facts, pf.ctx.source.text)


# -- per program -------------------------------------------------------------------------------

@dataclass(eq=False)
class Reached:
    pf: ProgramFile
    scope: Scope
    depth: int
    via: Optional[Tuple[ProgramFile, cst.CSTNode, str]]  # where it is referenced from (file, node, name)


@dataclass(eq=False)
class ProgramSeeds:
    program: Program
    reached: Dict[int, Reached]  # id(scope) -> how it is reached
    seeds: List[Tuple[ProgramFile, SeedCall]]  # global seeds that run
    generators: List[Tuple[ProgramFile, SeedCall]]  # seeded generator objects that are created
    draws: List[Tuple[ProgramFile, Draw]]  # draws from global generators that run
    signs: List[Tuple[ProgramFile, Sign]]  # training signs that run
    determinism: List[Tuple[ProgramFile, cst.CSTNode, str]]
    uncalled_helpers: List[Tuple[ProgramFile, Scope]]  # project functions that seed but never run
    training_scopes: Set[int]  # ids of scopes that train (a sign, or a call into one)
    #: id(stmt) -> ids of the project functions the statement calls (methods through self./obj.)
    stmt_calls: Dict[int, Set[int]] = field(default_factory=dict)
    #: id(scope) -> how many calls separate it from a training sign (0: it holds one)
    train_distance: Dict[int, int] = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return bool(self.signs)

    def seeded(self) -> Set[str]:
        out: Set[str] = set()
        for _, s in self.seeds:
            out |= s.seeds
        return out


def _project_files(program: Program) -> Dict[str, ProgramFile]:
    return {os.path.realpath(pf.path): pf for pf in program.files}


def _memo(facts: FileFacts, attr: str) -> dict:
    memo = getattr(facts, attr, None)
    if memo is None:
        memo = {}
        setattr(facts, attr, memo)
    return memo


def _nested_functions(facts: FileFacts) -> Dict[Tuple[int, str], Scope]:
    """Plain (non-method) functions by (id of the scope they are defined in, name)."""
    memo = getattr(facts, "_seeds_nested", None)
    if memo is None:
        memo = {}
        for f in facts.functions:
            if f.class_name is None and f.parent is not None:
                memo.setdefault((id(f.parent), f.name), f)
        facts._seeds_nested = memo  # type: ignore[attr-defined]
    return memo


class _Resolver:
    """Names to project functions and classes, through the imports. Results are memoized on each
    file's facts as (real path, target) so that the programs of one run share them."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.by_path = _project_files(program)

    def file_for(self, module: str, importer: ProgramFile) -> Optional[ProgramFile]:
        memo = _memo(importer.facts, "_seeds_modules")
        if module not in memo:
            try:
                target = resolve_module(module, importer.path, [])
            except (OSError, ValueError):
                target = None
            memo[module] = os.path.realpath(target) if target is not None else None
        real = memo[module]
        return self.by_path.get(real) if real is not None else None

    def _out(self, pairs) -> list:
        out = []
        for path, target in pairs:
            pf = self.by_path.get(path)
            if pf is not None:
                out.append((pf, target))
        return out

    def symbol(self, pf: ProgramFile, parts: List[str], depth: int = 0) -> list:
        """Project functions / classes named by ``parts`` inside file ``pf``."""
        if not parts or depth > 4:
            return []
        facts = pf.facts
        head = parts[0]
        fn = facts.function(head)
        if fn is not None:
            return [(pf, fn)]
        info = facts.classes.get(head)
        if info is not None:
            return [(pf, info)]
        q = facts.aliases.aliases.get(head)
        if q is not None:  # a re-export: `from .utils import set_seed` in __init__.py
            return self.qualified(pf, q + ("." + ".".join(parts[1:]) if len(parts) > 1 else ""), depth + 1)
        return []

    def qualified(self, pf: ProgramFile, q: str, depth: int = 0) -> list:
        memo = _memo(pf.facts, "_seeds_qualified")
        if q in memo:
            return self._out(memo[q])
        memo[q] = []
        lead = len(q) - len(q.lstrip("."))
        parts = q[lead:].split(".") if q[lead:] else []
        out: list = []
        for k in range(len(parts) - 1, -1 if lead else 0, -1):
            module = "." * lead + ".".join(parts[:k])
            if not module.strip(".") and not lead:
                continue
            target = self.file_for(module, pf)
            if target is None:
                continue
            out = self.symbol(target, parts[k:], depth)
            break
        memo[q] = [(tpf.path, t) for tpf, t in out]
        return out

    def resolve(self, pf: ProgramFile, scope: Scope, ref: str) -> list:
        memo = _memo(pf.facts, "_seeds_resolved")
        key = (id(scope), ref)
        if key in memo:
            return self._out(memo[key])
        out = self._resolve(pf, scope, ref)
        memo[key] = [(tpf.path, t) for tpf, t in out]
        return out

    def _resolve(self, pf: ProgramFile, scope: Scope, ref: str) -> list:
        head, _, rest = ref.partition(".")
        if head in ("self", "cls", "super"):
            return []
        facts = pf.facts
        nested = _nested_functions(facts)
        s: Optional[Scope] = scope
        while s is not None:  # a function of this scope or an enclosing one
            f = nested.get((id(s), head))
            if f is not None:
                return [(pf, f)] if not rest else []
            s = s.parent
        info = facts.classes.get(head)
        if info is not None:
            return [(pf, info)]
        q = facts.aliases.aliases.get(head)
        if q is None:
            return []
        return self.qualified(pf, q + ("." + rest if rest else ""))


def _class_targets(resolver: _Resolver, pf: ProgramFile, info: ClassInfo, depth: int = 0) -> List[Tuple[ProgramFile, ClassInfo]]:
    """The class and its project base classes."""
    out = [(pf, info)]
    if depth > 5:
        return out
    facts = pf.facts
    for base in info.bases:
        if base in facts.classes:
            targets = [(pf, facts.classes[base])]
        elif base.split(".", 1)[0] in facts.aliases.aliases:
            targets = resolver.resolve(pf, facts.module, base)
        else:
            targets = resolver.qualified(pf, base)
        for tpf, target in targets:
            if isinstance(target, ClassInfo) and target is not info:
                out.extend(_class_targets(resolver, tpf, target, depth + 1))
    return out


def _is_hf_trainer_class(resolver: _Resolver, pf: ProgramFile, info: ClassInfo) -> bool:
    """A project subclass of a class that seeds when it is built (HF ``Trainer``, ``LightningCLI``)."""
    for cpf, c in _class_targets(resolver, pf, info):
        for b in c.bases:
            if is_hf_trainer_name(b) or b.endswith("LightningCLI"):
                return True
    return False


def _in_main_guard(stmt: Stmt, guards: Set[int]) -> bool:
    return bool(guards) and any(b in guards for b in stmt.block)


def program_seeds(program: Program) -> ProgramSeeds:
    cached = getattr(program, "_seeds_cache", None)
    if cached is not None:
        return cached
    resolver = _Resolver(program)
    reached: Dict[int, Reached] = {}
    classes_done: Set[int] = set()
    queue: List[Reached] = []
    hf_classes: List[Tuple[ProgramFile, ClassInfo, cst.CSTNode, Scope, Stmt]] = []

    def reach(pf: ProgramFile, scope: Scope, depth: int, via) -> None:
        if id(scope) not in reached:
            r = Reached(pf, scope, depth, via)
            reached[id(scope)] = r
            queue.append(r)

    def reach_class(pf: ProgramFile, info: ClassInfo, depth: int, via) -> None:
        for cpf, c in _class_targets(resolver, pf, info):
            if id(c) in classes_done:
                continue
            classes_done.add(id(c))
            for m in c.methods.values():
                reach(cpf, m, depth, via)

    for pf in program.files:
        reach(pf, pf.facts.module, 0 if pf is program.entry else 1, None)
    while queue:
        r = queue.pop(0)
        pf, scope = r.pf, r.scope
        fs = _fs(pf)
        guards = fs.main_guards if (scope.kind == "module" and pf is not program.entry) else set()
        for row in fs.refs.get(id(scope), ()):
            if _in_main_guard(row.stmt, guards):
                continue
            for name, node in row.refs:
                for tpf, target in resolver.resolve(pf, scope, name):
                    if isinstance(target, ClassInfo):
                        reach_class(tpf, target, r.depth + 1, (pf, node, name))
                        if _is_hf_trainer_class(resolver, tpf, target):
                            hf_classes.append((pf, target, node, scope, row.stmt))
                    else:
                        reach(tpf, target, r.depth + 1, (pf, node, name))
        if not queue:
            _lenient_helpers(program, reached, reach)

    def runs(pf: ProgramFile, scope: Scope, stmt: Stmt) -> bool:
        if id(scope) not in reached:
            return False
        if scope.kind == "module" and pf is not program.entry:
            return not _in_main_guard(stmt, _fs(pf).main_guards)
        return True

    seeds, generators, draws, signs, determinism = [], [], [], [], []
    optimizers, randomness, overwritten = [], [], set()
    for pf in program.files:
        fs = _fs(pf)
        optimizers.extend((pf, c, sc, st) for c, sc, st in fs.optimizers if runs(pf, sc, st))
        randomness.extend((pf, c, sc, st) for c, sc, st, _ in fs.randomness if runs(pf, sc, st))
        overwritten |= fs.overwritten
        for s in fs.seeds:
            if not runs(pf, s.scope, s.stmt):
                continue
            if s.by_name and resolver.resolve(pf, s.scope, dotted(s.call.func) or ""):
                continue  # a project helper: what it really seeds is counted where it runs
            (generators if s.generator else seeds).append((pf, s))
        for d in fs.draws:
            if runs(pf, d.scope, d.stmt):
                draws.append((pf, d))
        for g in fs.signs:
            if runs(pf, g.scope, g.stmt):
                signs.append((pf, g))
        for node, scope, stmt, text in fs.determinism:
            if runs(pf, scope, stmt):
                determinism.append((pf, node, text))
    for pf, info, node, scope, stmt in hf_classes:  # a project subclass of transformers.Trainer seeds itself
        seeds.append((pf, SeedCall(node, scope, stmt, ALL, f"{info.name} (seeds when it is built)")))
    if hf_classes:  # trainer = MyTrainer(...) (a project subclass of transformers.Trainer); trainer.train()
        for r in list(reached.values()):
            for call, spelling, scope, stmt in _fs(r.pf).local_calls_in(r.scope):
                if scope is r.scope and spelling.endswith(".train") and not call.args and runs(r.pf, scope, stmt):
                    signs.append((r.pf, Sign(call, scope, stmt, f"{spelling}()")))
    uncalled = []
    for pf in program.files:
        fs = _fs(pf)
        for scope in {id(s.scope): s.scope for s in fs.seeds
                      if not s.generator and not s.by_name and s.scope.kind == "function"}.values():
            if id(scope) not in reached and _SEED_HELPER_NAME.search(scope.name):
                uncalled.append((pf, scope))
    stmt_calls, scope_calls = _call_edges(program, resolver, reached)
    updates: Set[int] = set()
    for pf in program.files:
        updates |= _fs(pf).updates
    callers: Dict[int, Set[int]] = {}
    for sid, targets in scope_calls.items():
        for t in targets:
            callers.setdefault(t, set()).add(sid)

    def near_update(sid: int) -> bool:
        return sid in updates or bool(scope_calls.get(sid, set()) & updates) or bool(callers.get(sid, set()) & updates)

    signs = [(pf, g) for pf, g in signs if not g.needs_update or near_update(id(g.scope))]
    signs = _repeated_signs(signs, stmt_calls, reached)
    signs = _invoked_signs(program, signs, reached)
    if signs and optimizers and all(_updates_tensors(program, pf, c, sc, st) for pf, c, sc, st in optimizers) \
            and not draws and not any(not _overwritten_start(st, overwritten) for _, _, _, st in randomness):
        # Every optimizer updates an input (an image in style transfer or deep dream, a tensor of a module
        # whose forward takes no input) that starts from data, and nothing else in the program draws at
        # random: no model is trained, and two runs compute the same thing.
        signs = [(pf, g) for pf, g in signs if not g.needs_update]
    # scopes that train: a sign in them, or a call into one that trains
    distance: Dict[int, int] = {}
    for _, g in signs:
        distance[id(g.scope)] = 0
    changed = True
    while changed:
        changed = False
        for sid, targets in scope_calls.items():
            ds = [distance[t] + 1 for t in targets if t in distance and t != sid]
            if ds and (sid not in distance or min(ds) < distance[sid]):
                distance[sid] = min(ds)
                changed = True
    training = set(distance)
    # Draws in what DataLoader workers run (a Dataset's __getitem__ and what it calls) come from
    # generators torch reseeds in each worker from its own seed: not unseeded draws.
    worker = {sid for sid, r in reached.items()
              if r.scope.kind == "function" and r.scope.class_name and r.scope.name in _WORKER_METHODS}
    stack = list(worker)
    while stack:
        for t in scope_calls.get(stack.pop(), ()):
            if t not in worker:
                worker.add(t)
                stack.append(t)
    draws = [(pf, d) for pf, d in draws if id(d.scope) not in worker]
    draws = _before_training_ends(draws, signs, stmt_calls, training, reached)
    result = ProgramSeeds(program, reached, seeds, generators, draws, signs, determinism, uncalled, training,
                          stmt_calls, distance)
    program._seeds_cache = result  # type: ignore[attr-defined]
    return result


def _invoked_signs(program: Program, signs, reached: Dict[int, Reached]) -> list:
    """Drop the signs in a class's ``__call__`` when no running statement calls an instance of that class:
    a loss object with an inner solve (``CNBBLoss.__call__`` running ``backward()`` on sample weights) that
    a visualisation script builds but never calls trains nothing there."""
    inside = [(pf, g) for pf, g in signs if g.scope.kind == "function" and g.scope.name == "__call__" and g.scope.class_name]
    if not inside:
        return signs
    from trainlint.analysis.objects import World

    world = World.of_program(program)
    memo: Dict[Tuple[int, str], bool] = {}

    def called(pf: ProgramFile, class_name: str) -> bool:
        key = (id(pf), class_name)
        if key in memo:
            return memo[key]
        info = pf.facts.classes.get(class_name)
        memo[key] = True
        if info is None:
            return True
        for r in list(reached.values()):
            file = world.file_of(r.pf.facts)
            if file is None:
                continue
            for call, _, scope, stmt in _fs(r.pf).local_calls_in(r.scope):
                if scope is not r.scope or not isinstance(call.func, (cst.Name, cst.Attribute)):
                    continue
                for o in world.objects(call.func, file, scope, stmt):
                    if o.kind == "instance" and o.cls is not None and o.cls.info is info:
                        return True
        memo[key] = False
        return False

    return [(pf, g) for pf, g in signs if (pf, g) not in inside or called(pf, g.scope.class_name)]


_PARAMS_CALLS = {"parameters", "named_parameters"}


def _updates_tensors(program: Program, pf: ProgramFile, call: cst.Call, scope: Scope, stmt: Stmt) -> bool:
    """Does the optimizer built by ``call`` update tensors rather than a model: tensors made from data
    (``[target]`` with ``target = content.clone().requires_grad_()``), or the parameters of a project
    module whose ``forward`` takes no input (a learnable image)? What we cannot follow is a model."""
    from trainlint.analysis.objects import World

    params = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "params"), None)
    if params is None:
        pos = [a.value for a in call.args if a.keyword is None and not a.star]
        if not pos:
            return False
        params = pos[0]
    world = World.of_program(program)
    file = world.file_of(pf.facts)
    if file is None:
        return False
    resolver = _Resolver(program)
    budget = [40]

    def tensors(expr: cst.BaseExpression, sc: Scope, st: Stmt, depth: int) -> bool:
        budget[0] -= 1
        if depth > 6 or budget[0] < 0:
            return False
        if isinstance(expr, (cst.List, cst.Tuple)):
            return bool(expr.elements) and all(not isinstance(e, cst.StarredElement) and tensors(e.value, sc, st, depth + 1)
                                               for e in expr.elements)
        if isinstance(expr, cst.Dict):  # a param group: {"params": [...], "lr": ...}
            return all(isinstance(e, cst.DictElement) and (not isinstance(e.key, cst.SimpleString)
                       or e.key.evaluated_value != "params" or tensors(e.value, sc, st, depth + 1)) for e in expr.elements)
        if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
            return tensors(expr.value, sc, st, depth + 1)
        if isinstance(expr, cst.Call):
            func = expr.func
            if isinstance(func, cst.Attribute) and func.attr.value in _PARAMS_CALLS:
                objs = world.objects(func.value, file, sc, st)
                return bool(objs) and all(_input_free_module(world, o) for o in objs)
            if isinstance(func, cst.Attribute) and func.attr.value in _TENSOR_METHODS:
                return tensors(func.value, sc, st, depth + 1)
            q = pf.facts.qualify(func) or ""
            if q in ("torch.nn.Parameter", "torch.nn.parameter.Parameter", "torch.autograd.Variable"):
                args = [a.value for a in expr.args if a.keyword is None and not a.star]
                return bool(args) and tensors(args[0], sc, st, depth + 1)
            if q.startswith("torch.") and not q.startswith("torch.nn."):
                return True  # a tensor made by torch
            name = dotted(func)
            if q or name is None:
                return False
            targets = resolver.resolve(pf, sc, name)
            # a helper of the project that builds the tensor from data (load_image(...), preprocess(...))
            return bool(targets) and all(isinstance(t, Scope) and "parameters(" not in tpf.ctx.code(t.node)
                                         for tpf, t in targets)
        name = dotted(expr) if isinstance(expr, cst.Name) else None
        if name is None:
            return False
        found = sc.reaching(name, st) or (pf.facts.module.assigns.get(name, []) if sc is not pf.facts.module else [])
        return bool(found) and all(a.value is not None and a.kind == "assign"
                                   and tensors(a.value, a.scope or sc, a.stmt, depth + 1) for a in found)

    return tensors(params, scope, stmt, 0)


#: Tensor methods that give (a view or copy of) the same values.
_TENSOR_METHODS = {"clone", "detach", "requires_grad_", "to", "cuda", "cpu", "float", "double", "half", "contiguous",
                   "view", "reshape", "unsqueeze", "squeeze", "detach_", "type"}


def _input_free_module(world, obj) -> bool:
    """An instance of a project module whose ``forward`` takes nothing but ``self``: a learnable tensor
    (the generated image of style transfer), not a model."""
    if obj.kind != "instance" or obj.cls is None:
        return False
    found = world.method(obj.cls, "forward")
    if found is None:
        return False
    params = [p for p in found[1].params() if p not in ("self",)]
    return not params


def _overwritten_start(stmt: Stmt, overwritten: Set[str]) -> bool:
    """A random start the program replaces: ``self.weight = nn.Parameter(torch.rand(...))`` in the class,
    and ``img.weight.data = content.data`` where it is used."""
    node = stmt.node
    if not isinstance(node, cst.Assign) or not overwritten:
        return False
    for t in node.targets:
        name = dotted(t.target)
        if name is None:
            continue
        last = name.rsplit(".", 1)[-1]
        if any(o == name or o.endswith("." + last) for o in overwritten):
            return True
    return False


def _repeated_signs(signs, stmt_calls: Dict[int, Set[int]], reached: Dict[int, Reached]) -> list:
    """The training signs that run more than once. A single ``backward(); optimizer.step()`` outside any
    loop (a library module's smoke test on random tensors, an API demo) does not train a model. A sign
    counts when it is in a loop, or in a function called from a loop (or from such a function, or with no
    call site we can see); framework calls (``trainer.fit``) loop by themselves."""
    callers: Dict[int, List[Tuple[Stmt, Scope]]] = {}
    for r in reached.values():
        for row in _fs(r.pf).refs.get(id(r.scope), ()):
            for t in stmt_calls.get(id(row.stmt), ()):
                callers.setdefault(t, []).append((row.stmt, r.scope))

    def called_here(stmt: Stmt, name: str) -> bool:
        """Is ``name`` called in ``stmt`` (not passed as a value: ``Engine(train_step)`` runs it in a loop)?"""
        found: List[cst.Call] = []
        for part in _header_parts(stmt.node):
            _walk(part, found, [])
        return any((dotted(c.func) or "").rsplit(".", 1)[-1] == name for c in found)

    def repeats(stmt: Stmt, scope: Scope, depth: int) -> bool:
        if stmt.loops or depth > 4:
            return True
        if scope.kind == "module":
            return False
        found = callers.get(id(scope))
        if not found:
            return True  # called in a way we do not follow: assume it trains
        return any(not called_here(s, scope.name) or repeats(s, sc, depth + 1) for s, sc in found)

    return [(pf, g) for pf, g in signs if not g.needs_update or repeats(g.stmt, g.scope, 0)]


def _before_training_ends(draws, signs, stmt_calls: Dict[int, Set[int]], training: Set[int],
                          reached: Dict[int, Reached]) -> list:
    """The draws that can change what is learned: not those that run after every training statement
    of the program (a `random.sample` of test images for a figure after the last epoch, a notebook's
    plotting cell after its training cell). A draw is after the training when, in a scope that runs once
    (the module, or functions called once from it outside loops), it follows every statement that trains
    and shares no loop with one; a draw in a helper counts when every call of the helper is such a
    statement."""
    trains_stmt: Set[int] = {id(g.stmt) for _, g in signs}
    trains_stmt |= {sid for sid, targets in stmt_calls.items() if targets & training}
    callers: Dict[int, List[Tuple[Stmt, Scope]]] = {}
    by_scope: Dict[int, List[Stmt]] = {}
    for r in reached.values():
        for row in _fs(r.pf).refs.get(id(r.scope), ()):
            if id(row.stmt) in trains_stmt:
                by_scope.setdefault(id(r.scope), []).append(row.stmt)
            for t in stmt_calls.get(id(row.stmt), ()):
                callers.setdefault(t, []).append((row.stmt, r.scope))

    def once(scope: Scope, depth: int) -> bool:
        if scope.kind == "module":
            return True
        found = callers.get(id(scope), [])
        return bool(found) and depth < 4 and all(not s.loops and once(sc, depth + 1) for s, sc in found)

    def after(stmt: Stmt, scope: Scope, depth: int) -> bool:
        if depth > 4:
            return False
        here = by_scope.get(id(scope), [])
        if here:
            loops = {id(n) for n in stmt.loops}
            return (all(s.index < stmt.index and not loops & {id(n) for n in s.loops} for s in here)
                    and once(scope, depth))
        found = callers.get(id(scope), [])
        return bool(found) and all(after(s, sc, depth + 1) for s, sc in found)

    if not trains_stmt:
        return draws
    return [(pf, d) for pf, d in draws if not after(d.stmt, d.scope, 0)]


def _call_edges(program: Program, resolver: "_Resolver", reached: Dict[int, Reached]):
    """What each running statement calls among the project's functions: functions by name, a class
    by its ``__init__``, ``self.m()`` by the class's (and its bases') methods, ``obj.m()`` by the
    methods ``m`` of the running classes."""
    by_name: Dict[str, List[int]] = {}
    method_class: Dict[int, Tuple[ProgramFile, ClassInfo]] = {}
    for pf in program.files:
        for info in pf.facts.classes.values():
            for m in info.methods.values():
                method_class[id(m)] = (pf, info)
                if id(m) in reached:
                    by_name.setdefault(m.name, []).append(id(m))
    stmt_calls: Dict[int, Set[int]] = {}
    scope_calls: Dict[int, Set[int]] = {}
    for r in reached.values():
        pf, scope = r.pf, r.scope
        fs = _fs(pf)
        out_scope = scope_calls.setdefault(id(scope), set())
        for row in fs.refs.get(id(scope), ()):
            targets: Set[int] = set()
            for name, _ in row.refs:
                head, _, rest = name.partition(".")
                if head in ("self", "cls") and rest and "." not in rest and id(scope) in method_class:
                    cpf, info = method_class[id(scope)]
                    for _, c in _class_targets(resolver, cpf, info):
                        m = c.methods.get(rest)
                        if m is not None:
                            targets.add(id(m))
                    continue
                resolved = resolver.resolve(pf, scope, name)
                for tpf, target in resolved:
                    if isinstance(target, ClassInfo):
                        for _, c in _class_targets(resolver, tpf, target):
                            if "__init__" in c.methods:
                                targets.add(id(c.methods["__init__"]))
                                break
                    else:
                        targets.add(id(target))

            for attr in row.attrs:  # obj.m(): the methods m of the classes that run
                targets.update(by_name.get(attr, ()))
            if targets:
                stmt_calls[id(row.stmt)] = targets
                out_scope |= targets
    return stmt_calls, scope_calls


def _lenient_helpers(program: Program, reached: Dict[int, Reached], reach) -> None:
    """A seeding helper of the project called in a way we cannot resolve (``obj.set_seed(...)``, a
    registry, a star import): when a running scope calls that name, count the helper as called."""
    helpers = [(pf, s.scope) for pf in program.files for s in _fs(pf).seeds
               if not (s.generator or s.by_name or s.scope.kind != "function" or id(s.scope) in reached)]
    if not helpers:  # (most programs: every seeding function already runs, or there is none)
        return
    called: Dict[str, Tuple[ProgramFile, cst.CSTNode]] = {}
    for r in list(reached.values()):
        fs = _fs(r.pf)
        for call, spelling, scope, stmt in fs.local_calls_in(r.scope):
            if scope is r.scope:
                called.setdefault(spelling.rsplit(".", 1)[-1], (r.pf, call))
    for pf, scope in helpers:
        if id(scope) in reached:  # (a helper seeding twice: reached at its first seed)
            continue
        hit = called.get(scope.name)
        if hit is not None:
            reach(pf, scope, 1, (hit[0], hit[1], scope.name))


#: A call of a training helper in the entry's text (``train_ch5(...)``, ``d2l.train(...)``, ``trainer.fit(``).
_CALLS_TRAINING = re.compile(r"(?<![\w.])(?:\w+\.)*(?:train|fit)(?:_(?!test_split)\w+)?\s*\(|\.backward\s*\(")


def may_train(program: Program) -> bool:
    """Does the program train, or at least call something named like training from its entry (a helper
    of a package we cannot follow, such as a course's ``d2l.train(...)``)? A notebook that only looks at
    its data does neither."""
    if program_seeds(program).trains:
        return True
    return bool(_CALLS_TRAINING.search(program.entry.ctx.source.text))


def display_name(program: Program, pf: ProgramFile) -> str:
    """A program file's path relative to the entry's folder (``depthnet/model.py``)."""
    base = os.path.dirname(program.entry.path)
    try:
        rel = os.path.relpath(pf.path, base)
    except ValueError:
        rel = os.path.basename(pf.path)
    if rel.startswith(".."):
        rel = os.path.basename(pf.path)
    return rel.replace(os.sep, "/")


def imports_torch_family(program: Program) -> bool:
    return any(_fs(pf).imports_torch_family for pf in program.files)


def iter_entry_candidates(ps: ProgramSeeds) -> Iterator[Tuple[int, cst.CSTNode, str]]:
    """(distance, node, kind) of statements of the entry that start training: the loops that train
    (directly or by calling a function that trains), the training calls, the calls into training
    functions. ``distance``: how many calls separate the statement from the training sign (the outermost
    loop has the largest)."""
    program = ps.program
    entry = program.entry
    fs = _fs(entry)
    sign_stmts = {id(g.stmt) for pf, g in ps.signs if pf is entry}
    for scope in entry.facts.scopes():
        if id(scope) not in ps.reached:
            continue
        for row in fs.refs.get(id(scope), ()):
            stmt = row.stmt
            if id(stmt) in sign_stmts:
                dist = 0
            else:
                ds = [ps.train_distance[t] + 1 for t in ps.stmt_calls.get(id(stmt), ()) if t in ps.train_distance]
                if not ds:
                    continue
                dist = min(ds)
            if stmt.loops:
                yield dist, stmt.loops[0], "loop"
            elif id(stmt) in sign_stmts:
                yield dist, stmt.node, "sign"
            else:
                yield dist, stmt.node, "call"
