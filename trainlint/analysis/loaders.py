"""Loader facts: every ``torch.utils.data.DataLoader`` of a program with how it orders its data
(``shuffle=``, ``sampler=``, ``batch_sampler=``, ``**kwargs``), the dataset it reads, and its role
(training vs evaluation) as the data model (:mod:`trainlint.analysis.data`) reads it; every
``DistributedSampler`` with the loader it feeds; every ``.set_epoch(...)`` call.

Roles come from :class:`trainlint.analysis.roles.Roles`: the loader iterated in the loop that calls
``backward()``, passed to a helper that does, returned by Lightning's ``train_dataloader()``, passed
as ``train_dataloaders=``... (structural), or only its name (``train_loader``: weak).

Everything is computed once per program (:func:`loader_facts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Optional

import libcst as cst

from trainlint.analysis.callsite import UNKNOWN, Where, conditions
from trainlint.analysis.data import data_model
from trainlint.analysis.roles import returned_index, word_role_of_name
from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.names import canonical, dotted, names_in
from trainlint.analysis.values import fold
from trainlint.analysis.walk import calls, walk
from trainlint.analysis.syntax import is_none, keyword_arg

#: Loaders that take ``shuffle`` like torch's (their positional parameters up to it): torch's own, and
#: other libraries' (PyTorch Geometric, DGL's graph loader).
_LOADER_POSITIONAL = {
    "torch.utils.data.DataLoader": ("dataset", "batch_size", "shuffle", "sampler", "batch_sampler"),
    "torch.utils.data.dataloader.DataLoader": ("dataset", "batch_size", "shuffle", "sampler", "batch_sampler"),
    "torch_geometric.loader.DataLoader": ("dataset", "batch_size", "shuffle"),
    "torch_geometric.loader.dataloader.DataLoader": ("dataset", "batch_size", "shuffle"),
    "torch_geometric.data.DataLoader": ("dataset", "batch_size", "shuffle"),
    "torch_geometric.loader.DenseDataLoader": ("dataset", "batch_size", "shuffle"),
    "torch_geometric.data.DenseDataLoader": ("dataset", "batch_size", "shuffle"),
    "dgl.dataloading.GraphDataLoader": ("dataset",),
    "dgl.dataloading.pytorch.GraphDataLoader": ("dataset",),
    "dgl.dataloading.dataloader.GraphDataLoader": ("dataset",),
}
DATALOADERS = set(_LOADER_POSITIONAL)
DISTRIBUTED_SAMPLERS = {
    "torch.utils.data.DistributedSampler",
    "torch.utils.data.distributed.DistributedSampler",
}
#: Positional parameters of DataLoader(dataset, batch_size, shuffle, sampler, batch_sampler, ...).
_POSITIONAL = ("dataset", "batch_size", "shuffle", "sampler", "batch_sampler")

#: Datasets that are streams (no index, so no shuffling by the loader): class bases and factories.
_ITERABLE_BASE = re.compile(r"IterableDataset|IterDataPipe|IterableWrapper|WebDataset|StreamingDataset|DataPipe")
_STREAM_MODULES = ("webdataset", "torchdata", "streaming", "ffcv", "litdata", "torchtext.datasets", "datasets.IterableDataset")


@dataclass(eq=False)
class LoaderFact:
    call: cst.Call
    pf: Any  # ProgramFile
    scope: Scope
    stmt: Stmt
    target: Optional[str]  # the name it is bound to ("train_loader", "self.train_dl"), if any
    dataset: Optional[cst.BaseExpression]
    #: True / False (literal or constant) / None (not given) / UNKNOWN (computed: args.shuffle, is_train...)
    shuffle: Any
    shuffle_node: Optional[cst.CSTNode]
    sampler: Optional[cst.BaseExpression]  # not None-literal
    batch_sampler: Optional[cst.BaseExpression]
    star_kwargs: bool  # DataLoader(ds, **kwargs)
    role: Optional[str]  # "train" | "eval" | None
    evidence: str
    structural: bool
    #: built only under a condition that is false in this program (``if 1: ... else: <here>``)
    dead: bool = False

    @property
    def facts(self) -> FileFacts:
        return self.pf.facts

    def sampler_names(self) -> List[str]:
        return [d for e in (self.sampler, self.batch_sampler) if e is not None for d in names_in(e)]


@dataclass(eq=False)
class SamplerFact:
    call: cst.Call
    pf: Any
    scope: Scope
    stmt: Stmt
    target: Optional[str]
    shuffle: Any  # True (default) / False / UNKNOWN
    loaders: List[LoaderFact] = field(default_factory=list)  # the loaders it feeds
    #: built only under a condition that is false in this program (``if distributed:`` with
    #: ``distributed=False`` by default and never passed)
    dead: bool = False


@dataclass(eq=False)
class SetEpochCall:
    call: cst.Call
    pf: Any
    scope: Scope
    stmt: Stmt
    receiver: str  # "train_sampler", "train_loader.sampler", "self.sampler"


@dataclass(eq=False)
class LoaderFacts:
    loaders: List[LoaderFact]
    samplers: List[SamplerFact]
    set_epoch_calls: List[SetEpochCall]


def _arg(call: cst.Call, name: str, positional: tuple = _POSITIONAL) -> Optional[cst.BaseExpression]:
    a = keyword_arg(call, name)
    if a is not None:
        return a.value
    if name in positional:
        i = positional.index(name)
        pos = [x.value for x in call.args if x.keyword is None and not x.star]
        if i < len(pos):
            return pos[i]
    return None


def _flag(expr: Optional[cst.BaseExpression], facts: FileFacts, scope: Scope, stmt: Stmt, program: Any) -> Any:
    """A boolean argument: True/False when written as a literal or a constant of the code, None when
    absent, UNKNOWN when it comes from a config, argparse, a parameter or a computation."""
    if expr is None:
        return None
    f = fold(expr, facts, scope, stmt, program)
    if f is None or f.how not in ("literal", "constant") or not isinstance(f.value, (bool, int)):
        return UNKNOWN
    return bool(f.value)


def is_dataloader(call: cst.Call, facts: FileFacts) -> bool:
    q = canonical(facts.qualify(call.func) or "")
    return q in DATALOADERS


def is_distributed_sampler(call: cst.Call, facts: FileFacts) -> bool:
    q = canonical(facts.qualify(call.func) or "")
    return q in DISTRIBUTED_SAMPLERS


def _bound_target(stmt: Stmt, call: cst.Call) -> Optional[str]:
    """The name ``call`` is bound to: ``x = call`` or ``x = call if cond else None``."""
    node = stmt.node
    value = getattr(node, "value", None)
    if isinstance(value, cst.IfExp) and call in (value.body, value.orelse):
        value = call
    if isinstance(node, cst.Assign) and value is call and len(node.targets) == 1:
        return dotted(node.targets[0].target)
    if isinstance(node, cst.AnnAssign) and value is call:
        return dotted(node.target)
    return None


def _dead(call: cst.Call, scope: Scope, stmt: Stmt, facts: FileFacts, program: Any) -> bool:
    """Does ``call`` only run under a test that folds to the other polarity (a ternary or ifs around it)?"""
    tests: List[Any] = []
    value = getattr(stmt.node, "value", None)
    if isinstance(value, cst.IfExp):
        if value.body is call:
            tests.append((value.test, True))
        elif value.orelse is call:
            tests.append((value.test, False))
    tests.extend(conditions(stmt, scope) or [])
    for test, polarity in tests:
        f = fold(test, facts, scope, stmt, program)
        if f is not None and isinstance(f.value, (bool, int, type(None))) and bool(f.value) != polarity:
            return True
    return False


def _small(scope: Scope):
    for s in scope.stmts:
        n = s.node
        if isinstance(n, (cst.Assign, cst.AnnAssign, cst.Expr, cst.Return, cst.AugAssign)) and n.value is not None:
            yield s


def loader_facts(program: Any) -> LoaderFacts:
    """Loaders, distributed samplers and set_epoch calls of a program (memoized on the program)."""
    cached = getattr(program, "_tl_loader_facts", None)
    if cached is not None:
        return cached
    loaders: List[LoaderFact] = []
    samplers: List[SamplerFact] = []
    set_epochs: List[SetEpochCall] = []
    dm = None
    for pf in program.files:
        text = pf.ctx.source.text
        has_loader = "DataLoader" in text
        has_sampler = "DistributedSampler" in text
        has_set_epoch = "set_epoch" in text
        if not (has_loader or has_sampler or has_set_epoch):
            continue
        facts = pf.facts
        for scope in facts.scopes():
            for s in _small(scope):
                for call in calls(s.node.value):
                    if has_set_epoch and isinstance(call.func, cst.Attribute) and call.func.attr.value == "set_epoch":
                        set_epochs.append(SetEpochCall(call, pf, scope, s, dotted(call.func.value) or ""))
                        continue
                    if has_sampler and is_distributed_sampler(call, facts):
                        sh = keyword_arg(call, "shuffle")
                        shuffle = True if sh is None else _flag(sh.value, facts, scope, s, program)
                        samplers.append(SamplerFact(call, pf, scope, s, _bound_target(s, call), shuffle,
                                                    dead=_dead(call, scope, s, facts, program)))
                        continue
                    if has_loader and is_dataloader(call, facts):
                        if dm is None:
                            dm = data_model(program)
                        loaders.append(_loader(call, pf, scope, s, program, dm))
    # link samplers to the loaders they feed
    for sm in samplers:
        for ld in loaders:
            if ld.pf is not sm.pf:
                continue
            inline = any(n is sm.call for e in (ld.sampler, ld.batch_sampler) if e is not None for n in walk(e))
            named = sm.target is not None and sm.target in ld.sampler_names() and ld.scope is sm.scope
            if inline or named:
                sm.loaders.append(ld)
    out = LoaderFacts(loaders, samplers, set_epochs)
    program._tl_loader_facts = out
    return out


def _loader(call: cst.Call, pf: Any, scope: Scope, stmt: Stmt, program: Any, dm: Any) -> LoaderFact:
    facts = pf.facts
    positional = _LOADER_POSITIONAL.get(canonical(facts.qualify(call.func) or ""), _POSITIONAL)
    star = any(a.star == "**" for a in call.args)
    shuffle_expr = _arg(call, "shuffle", positional)
    shuffle = _flag(shuffle_expr, facts, scope, stmt, program)
    sampler = _arg(call, "sampler", positional)
    batch_sampler = _arg(call, "batch_sampler", positional)
    target = _bound_target(stmt, call)
    role, evidence, structural = None, "", False
    where = Where(pf, scope, stmt)
    try:
        r = dm.roles.loader_role(call, stmt, where)
    except RecursionError:  # pragma: no cover - pathological code
        r = None
    if r is not None:
        role, evidence, structural = r[0], r[1], True
    else:
        r2 = _role_through_callers(call, pf, scope, stmt, target, program, dm)
        if r2 is not None:
            role, evidence, structural = r2
        elif target is not None:
            w = word_role_of_name(target)
            if w is not None:
                role, evidence = w, f"named {target}"
    return LoaderFact(
        call, pf, scope, stmt, target, _arg(call, "dataset", positional), shuffle, shuffle_expr,
        None if is_none(sampler) else sampler, None if is_none(batch_sampler) else batch_sampler,
        star, role, evidence, structural, dead=_dead(call, scope, stmt, facts, program),
    )


def _loader_returned_index(call: cst.Call, scope: Scope, stmt: Stmt, target: Optional[str]) -> Optional[int]:
    """-1 when the helper returns the loader itself, k when it returns it as element k of a tuple,
    None when it does not return it."""
    node = stmt.node
    if isinstance(node, cst.Return) and node.value is call:
        return -1
    if target is None or "." in target:
        return None
    for value, _ in scope.returns:
        idx = returned_index(value, target)
        if idx is not None:
            return idx
    return None


def _role_through_callers(call: cst.Call, pf: Any, scope: Scope, stmt: Stmt, target: Optional[str], program: Any, dm: Any):
    """A loader built and returned by a helper (``train_loader = make_loader(ds)``): its role is the
    role its callers give it (:meth:`roles.Roles.returned_role`), structural or by name."""
    idx = _loader_returned_index(call, scope, stmt, target)
    if idx is None:
        return None
    return dm.roles.returned_role(pf, scope, idx, "loader")


# -- datasets --------------------------------------------------------------------------------------


def dataset_call(ld: LoaderFact) -> Optional[cst.Call]:
    """The constructor call of the loader's dataset (followed through names in its file), or None."""
    if ld.dataset is None:
        return None
    return _resolve_call(ld.dataset, ld.facts, ld.scope, ld.stmt)


def _resolve_call(expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Optional[Stmt]) -> Optional[cst.Call]:
    for _ in range(6):
        if isinstance(expr, cst.Call):
            return expr
        name = dotted(expr)
        if name is None:
            return None
        assigns = scope.reaching(name, stmt) if stmt is not None else list(scope.assigns.get(name, []))
        if not assigns and scope.parent is not None:
            assigns = facts.module.assigns.get(name, [])
        if not assigns and name.startswith("self.") and scope.class_name:
            assigns = facts.attributes.get(scope.class_name, {}).get(name, [])
        if len(assigns) != 1 or assigns[0].value is None:
            return None
        a = assigns[0]
        expr, scope, stmt = a.value, a.scope or scope, a.stmt
    return None


def dataset_is_stream(ld: LoaderFact, program: Any) -> Optional[bool]:
    """Is the loader's dataset an iterable (stream) dataset? True / False when known, None when the
    dataset cannot be followed."""
    call = dataset_call(ld)
    if call is None:
        return None
    return _call_is_stream(call, ld.facts, program)


_SYNTHETIC_NAME = re.compile(r"random|dummy|fake|synthetic|boring|toy", re.I)
_RANDOM_DATA = ("randn", "rand", "randint", "normal", "uniform", "randperm")


def dataset_is_synthetic(ld: LoaderFact, program: Any) -> bool:
    """A dataset of random numbers (``RandomDataset(32, 64)``, ``FakeData``, a class whose ``__init__``
    or ``__getitem__`` draws its samples with ``torch.randn``): its order carries nothing."""
    call = dataset_call(ld)
    if call is None:
        return False
    name = (dotted(call.func) or "").rsplit(".", 1)[-1]
    for _ in range(3):
        # Subset(RandomDataset(...), ...) / random_split(full, ...): the dataset underneath
        if name not in ("Subset", "random_split") or not call.args or call.args[0].keyword is not None:
            break
        inner = _resolve_call(call.args[0].value, ld.facts, ld.scope, None)
        if inner is None:
            break
        call, name = inner, (dotted(inner.func) or "").rsplit(".", 1)[-1]
    if _SYNTHETIC_NAME.search(name):
        return True
    cls = _find_class(dotted(call.func) or "", ld.facts, program)
    if cls is None:
        return False
    for m in ("__init__", "__getitem__"):
        sc = cls.methods.get(m)
        if sc is None:
            continue
        for st in sc.stmts:
            for c in calls(st.node) if not isinstance(st.node, (cst.FunctionDef, cst.ClassDef)) else ():
                if (dotted(c.func) or "").rsplit(".", 1)[-1] in _RANDOM_DATA:
                    return True
    return False


def dataset_shuffles_itself(ld: LoaderFact, program: Any) -> bool:
    """``listDataset(train_list, shuffle=True)``: the dataset takes a shuffle flag of its own."""
    call = dataset_call(ld)
    if call is None:
        return False
    for a in call.args:
        if a.keyword is not None and "shuffle" in a.keyword.value:
            f = fold(a.value, ld.facts, ld.scope, None, program)
            return f is None or bool(f.value)
    return False


def is_test_file(path: str) -> bool:
    """A library's test module (``tests/...``, ``test_*.py``, ``conftest.py``): values there are chosen
    to exercise code, not to train."""
    parts = re.split(r"[/\\]", path)
    base = parts[-1]
    if base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py":
        return True
    return any(p in ("tests", "test", "testing") for p in parts[:-1])


def _call_is_stream(call: cst.Call, facts: FileFacts, program: Any) -> Optional[bool]:
    q = facts.qualify(call.func) or dotted(call.func) or ""
    if q.startswith(_STREAM_MODULES) or _ITERABLE_BASE.search(q):
        return True
    for a in call.args:
        if a.keyword is not None and a.keyword.value == "streaming":
            return True
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in ("to_iterable_dataset", "shuffle", "batched", "decode"):
        return True
    if q.startswith("torchvision.datasets."):
        return False
    if q in ("torch.utils.data.TensorDataset", "torch.utils.data.Subset", "torch.utils.data.ConcatDataset"):
        return False
    cls = _find_class(dotted(call.func) or "", facts, program)
    if cls is None:
        return None
    return _class_is_stream(cls, program, 0)


def _find_class(name: str, facts: FileFacts, program: Any):
    last = name.rsplit(".", 1)[-1]
    if last in facts.classes:
        return facts.classes[last]
    for f in program.files:
        if last in f.facts.classes:
            return f.facts.classes[last]
    return None


def _class_is_stream(cls: Any, program: Any, depth: int) -> Optional[bool]:
    if depth > 5:
        return None
    for b in cls.bases:
        if _ITERABLE_BASE.search(b):
            return True
    if "__iter__" in cls.methods and "__getitem__" not in cls.methods:
        return True
    if "__getitem__" in cls.methods:
        return False
    for b in cls.bases:
        local = None
        for f in program.files:
            if b.rsplit(".", 1)[-1] in f.facts.classes:
                local = f.facts.classes[b.rsplit(".", 1)[-1]]
                break
        if local is not None and local is not cls:
            r = _class_is_stream(local, program, depth + 1)
            if r is not None:
                return r
    if any(b.endswith("Dataset") for b in cls.bases):
        return False
    return None


def reads_data_once(program: Any) -> bool:
    """Does the program read its training data in a single pass? Its training loops are all iteration
    loops (a demo, a benchmark bounded by a step count) with no epoch loop and no loop around a batch
    loop. False when no training loop is found at all (a framework's trainer runs the epochs)."""
    from trainlint.analysis.execution import program_loops, repeated_training_loop

    loops = program_loops(program)
    if not loops or any(l.unit == "epoch" for l in loops):
        return False
    return repeated_training_loop(program) is None  # no `while True:` around a batch loop that trains


#: Signs that the order of the batches is the point: a stateful RNN carrying its hidden state across
#: batches, truncated BPTT.
_ORDER_MATTERS = ("repackage_hidden", "detach_hidden", "stateful", "tbptt", "truncated_bptt")
#: Signs that a dataset we cannot follow may be a stream.
_STREAM_WORDS = ("IterableDataset", "IterDataPipe", "webdataset", "streaming=True", "WebDataset", "StreamingDataset")


def order_matters(ld: LoaderFact, program: Any) -> bool:
    """Does the order of this loader's batches carry meaning: its own file, or a training loop of the
    program (with the helpers it calls), carries a hidden state across batches? What another module
    of the program defines for some other data does not count, so two sister scripts that build and
    iterate the same loader get the same answer whatever else they import."""
    if any(w in ld.pf.ctx.source.text for w in _ORDER_MATTERS):
        return True
    from trainlint.analysis.execution import ctx_of, program_loops

    loops = program_loops(program)
    if not loops:  # no loop we can read (a framework runs it): the program's text decides
        return program_mentions(program, *_ORDER_MATTERS)
    for loop in loops:
        ctx = ctx_of(program, loop.facts)
        if ctx is None:
            continue
        parts = [loop.node] + [h.node for h in loop.helpers]
        if any(w in ctx.code(n) for n in parts for w in _ORDER_MATTERS):
            return True
    return False


def dataset_may_stream(ld: LoaderFact, program: Any) -> Optional[bool]:
    """Is the loader's dataset a stream? True / False when it can be followed (:func:`dataset_is_stream`);
    when it cannot, True if the loader's file or the file that defines the dataset's constructor
    (``build_dataset`` of ``datasets.py``) speaks of streams, else None."""
    known = dataset_is_stream(ld, program)
    if known is not None:
        return known
    texts = [ld.pf.ctx.source.text]
    call = dataset_call(ld)
    if call is not None:
        last = (dotted(call.func) or "").rsplit(".", 1)[-1]
        if last:
            for f in program.files:
                if f.facts.function(last) is not None or last in f.facts.classes:
                    texts.append(f.ctx.source.text)
    if any(w in t for t in texts for w in _STREAM_WORDS):
        return True
    return None


def program_mentions(program: Any, *needles: str) -> bool:
    for f in program.files:
        text = f.ctx.source.text
        if any(n in text for n in needles):
            return True
    return False
