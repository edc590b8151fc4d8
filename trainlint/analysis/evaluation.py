"""Evaluation facts: where a model is evaluated, in which mode, and with or without autograd.

An **evaluation loop** is a ``for`` loop over an evaluation loader (``val_loader``, ``test_dl``,
``loaders["valid"]``, or any loader iterated inside ``evaluate()`` / ``validate()`` / ``test()``) that
calls a model (``model(x)``, ``self.net(x)``, ``model(**batch)``) and never backpropagates or steps an
optimizer, neither itself nor through the helpers it calls.

For each loop we know:

- the **mode** the model is in when the loop starts: the last ``.eval()`` / ``.train(False)`` /
  ``.train()`` before it in its function (also inside helpers called before it), else — for a helper
  like ``evaluate(model, loader)`` — the mode at every call site of the helper in the program;
- whether the forward passes run **without autograd**: under ``with torch.no_grad()`` /
  ``torch.inference_mode()`` / ``torch.set_grad_enabled(False)``, a ``@torch.no_grad()`` decorator, or
  every call site of the helper under one of those;
- which **mode-dependent layers** the evaluated model has (dropout, batch norm, layers with a dropout
  argument, torchvision classifiers that hold BatchNorm), from :mod:`trainlint.analysis.modules`.

The mode switches, the no_grad regions and the mode at a statement are execution facts, answered by
:mod:`trainlint.analysis.execution` (also :func:`~trainlint.analysis.execution.loop_mode_calls`: a training
loop that reaches ``model.eval()`` but no ``model.train()`` trains in eval mode after the first evaluation).

Everything is computed from the facts pass; nothing imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.execution import (
    _Reach, _module_class, _small, _stmt_calls, classify_call, decorated_no_grad, is_epoch_loop, mode_along, reach,
    runs_without_grad, under_no_grad,
)
from trainlint.analysis.modules import BN_MODULES, DROPOUT_MODULES, ModelWorld, assigned_value
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.objects import ClassRef, FileRef, file_calls
from trainlint.analysis.walk import calls, type_test, walk
from trainlint.analysis.syntax import bound_arg, kwarg, number, short_qualname
from trainlint.textscan import search_words

_is_loop = type_test(cst.For, cst.While)


_EVAL_TOKEN = re.compile(
    r"(?:^|_)(?:val|valid|validation|validate|test|testing|tst|eval|evaluation|evaluate|dev|holdout)(?:_|$|loader|set|data|dl|ds|iter|batch)"
    r"|^(?:val|valid|test|eval|dev)(?:loader|set|data|dl|ds|iter)",
    re.I,
)
#: A function named as an evaluation routine (search it): ``evaluate``, ``validate``, ``test``,
#: ``run_validation``, ``predict_step``, ``compute_metrics``, Lightning's ``validation_step`` /
#: ``on_validation_epoch_end`` / ``on_test_batch_end``; not ``evaluating`` or ``test2``.
EVAL_FUNCTION_NAME = re.compile(
    r"^_?(?:eval|evaluate|evaluation|validate|validation|valid|val|test|testing|run_eval|run_validation|run_test|"
    r"do_eval|do_validation|predict|inference|infer|compute_metrics?|accuracy|score)(?:_|$)|(?:^|_)(?:eval|evaluate|validate|validation)(?:_|$)"
    r"|^on_(?:test|predict)_",
    re.I,
)
_TRAIN_TOKEN = re.compile(r"(?:^|_)train", re.I)
#: Generation methods of a module (its own forward run step after step): ``generate_text``, ``sample``, ``beam_search``.
_GENERATE = re.compile(r"^_?(?:generate|sample|decode|greedy|beam_search)(?:_|$)", re.I)
#: Deliberate train-mode evaluation: Monte-Carlo dropout, BN recalibration.
_ON_PURPOSE = re.compile(r"mc_?dropout|enable_dropout|monte_?carlo|mc_samples|update_bn|bn_update|precise_bn|recalibrat", re.I)
_FORWARD_NAME = re.compile(r"(^|_)(model|net|network|module|encoder|generator|discriminator|classifier|backbone|student)s?_?$", re.I)

#: torchvision classification constructors (every one holds BatchNorm or dropout).
_TV_MODEL = re.compile(
    r"^(resnet|resnext|wide_resnet|vgg|alexnet|densenet|mobilenet|efficientnet|inception|googlenet|shufflenet|"
    r"squeezenet|mnasnet|regnet|convnext)"
)
#: torch.nn layers whose behaviour depends on the mode through a ``dropout`` argument (default > 0 or given).
_DROPOUT_ARG_LAYERS = {
    "torch.nn.TransformerEncoderLayer": 0.1, "torch.nn.TransformerDecoderLayer": 0.1, "torch.nn.Transformer": 0.1,
    "torch.nn.MultiheadAttention": 0.0, "torch.nn.LSTM": 0.0, "torch.nn.GRU": 0.0, "torch.nn.RNN": 0.0,
}


# -- evaluation loops -------------------------------------------------------------------------------


@dataclass(eq=False)
class EvalLoop:
    pf: Any  # ProgramFile
    scope: Scope
    stmt: Stmt  # the For statement (an inference call: its statement)
    node: Optional[cst.For]  # None for an inference call outside any loop (:func:`inference_calls`)
    forwards: List[Tuple[cst.Call, Stmt]]
    evidence: str  # why it is an evaluation ("iterates `val_loader`", "in validate()")
    no_grad: bool  # the loop (or every forward in it) runs without autograd
    on_purpose: bool = False  # MC dropout / BN recalibration named in the function
    #: per forward (same order): the calls from the loop's statement to the model call itself; one hop
    #: for ``model(x)`` in the loop, more for ``self.validation_step(x)`` -> ``self.infer(x)`` -> ``self.module_(x)``
    paths: List[List["Hop"]] = field(default_factory=list)
    #: a step function that a framework's engine calls once per batch (ignite's ``Engine(step)``): its
    #: callers are the engine, so its own body decides (``node`` is None)
    engine_step: bool = False
    #: the first hop is the ``return`` of a factory that hands the model out to the package's users
    #: (:func:`handed_out_inference`): its callers are outside the program, so the mode it returns the
    #: model in is the mode the users' calls start from
    handed_out: bool = False

    @property
    def facts(self) -> FileFacts:
        return self.pf.facts

    def mode_at(self, program: Any, index: int = 0, model: Any = None) -> str:
        """The mode at the ``index``-th model call, following its path (see :func:`execution.mode_along`):
        "eval", "train", "initial" or "unknown"."""
        path = self.paths[index] if self.paths else [Hop(self.forwards[index][0], self.forwards[index][1], self.pf.facts, self.scope)]
        hops = [(program.file_of(h.facts), h.scope, h.stmt) for h in path]
        if any(pf is None for pf, _, _ in hops):
            return "unknown"
        return mode_along(program, hops, model, public=self.handed_out)

    def model_calls(self) -> List["Hop"]:
        """The model calls themselves (the last hop of each path; the forwards when there are no paths)."""
        if self.paths:
            return [p[-1] for p in self.paths]
        return [Hop(c, st, self.pf.facts, self.scope) for c, st in self.forwards]


@dataclass(eq=False)
class Hop:
    """A call on the way from an evaluation loop to a model's forward pass, where it is."""

    call: cst.Call
    stmt: Stmt
    facts: FileFacts
    scope: Scope
    #: the module the model call runs, when it is not the callee (``self.model`` of
    #: ``self.model._predict_scores_batch(x)``); see :func:`forward_target`
    target: Optional[cst.BaseExpression] = None

    @property
    def module(self) -> cst.BaseExpression:
        return self.target if self.target is not None else forward_target(self.call)


def forward_target(call: cst.Call) -> cst.BaseExpression:
    """The module a forward call runs: ``model`` of ``model(x)`` and of ``model.forward(x)`` (the mode of
    ``model`` is the mode of its ``forward``)."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value == "forward":
        return func.value
    return func


#: How many helpers deep a forward pass is followed from an evaluation loop (``self.validation_step()``
#: -> ``self.infer()`` -> ``self.module_(x)``).
FORWARD_HELPER_DEPTH = 2


def forward_path(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt, r: _Reach, depth: int = 0) -> Optional[List[Hop]]:
    """The calls from ``call`` to a model's forward pass: ``[call]`` when it is one (``model(x)``,
    ``self.model.forward(x)``); else, for a call of a project helper (``self.infer(x)``, a local
    ``predict(x)``, a function of another file) whose body calls a model outside any loop of its own (a
    per-batch step, not an evaluation loop of its own), ``[call, ...]`` down to that model call. None when
    the call reaches no model."""
    if _is_forward(call, facts, scope, stmt):
        return [Hop(call, stmt, facts, scope)]
    if _self_forward(call, facts, scope, r.program):
        # `self.forward(batch)` in a module's own predict()/infer(): the model is the module itself
        return [Hop(call, stmt, facts, scope, target=cst.Name("self"))]
    if _module_method_forward(call, facts, scope, stmt, r.program):
        # `self.model._predict_scores_batch(batch)`: a method of the model's class that runs its forward
        return [Hop(call, stmt, facts, scope, target=call.func.value)]  # type: ignore[attr-defined]
    if depth >= FORWARD_HELPER_DEPTH:
        return None
    h = r.helper(call, facts, scope)
    if h is None or h[1] is scope or h[1].kind != "function" or h[1].name in ("forward", "__call__", "__init__"):
        return None
    hf, hs = h
    # memoised per program (on its _Reach): which helper a call runs depends on the program's files
    memos = r.__dict__.setdefault("_forward_paths", {})
    key = (id(hs), depth)
    memo = memos.get(key)
    if memo is None:
        found: Optional[List[Hop]] = None
        memos[key] = (depth, None)  # recursion guard
        for st in _small(hs):
            if st.loops or any(isinstance(n, _COMPREHENSIONS) for n in walk(st.node)):
                continue  # the helper's own loop over the batches: an evaluation loop of its own
            for c in _stmt_calls(st):
                sub = forward_path(c, hf, hs, st, r, depth + 1)
                if sub is not None:
                    found = sub
                    break
            if found is not None:
                break
        memo = memos[key] = (depth, found)
    return [Hop(call, stmt, facts, scope)] + memo[1] if memo[1] is not None else None


_COMPREHENSIONS = (cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp)


def _self_forward(call: cst.Call, facts: FileFacts, scope: Scope, program: Any = None) -> bool:
    """``self(x)`` / ``self.forward(x)`` in a method (other than forward) of an ``nn.Module`` class."""
    if dotted(call.func) not in ("self", "self.forward") or scope.name in ("forward", "__call__", "__init__"):
        return False
    return _module_class(facts, scope, program)


def _module_method_forward(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt, program: Any) -> bool:
    """Is ``call`` a method of a project ``nn.Module`` class, called on an instance of it, that runs the
    module's own forward (``self(x)`` / ``self.forward(x)`` outside any loop of the method), like flair's
    ``self.model._predict_scores_batch(batch)``? The receiver is resolved by the value-flow layer."""
    func = call.func
    if program is None or not isinstance(func, cst.Attribute) or func.attr.value in ("forward", "__call__"):
        return False
    recv = dotted(func.value)
    if recv is None or recv == "self" or not _FORWARD_NAME.search(recv.rsplit(".", 1)[-1]):
        return False
    from trainlint.analysis.objects import World

    world = World.of_program(program)
    file = world.file_of(facts)
    if file is None:
        return False
    for o in world.objects(func.value, file, scope, stmt)[:4]:
        if o.kind != "instance" or o.cls is None or not world.is_a(o, "torch.nn.Module"):
            continue
        found = world.method(o.cls, func.attr.value)
        if found is None:
            continue
        _, m = found
        for st in _small(m):
            if st.loops:
                continue
            for c in _stmt_calls(st):
                d = dotted(c.func)
                if d in ("self", "self.forward", "self.__call__"):
                    return True
    return False


def _path_no_grad(path: List[Hop]) -> bool:
    """Does some call on the path run without autograd (``with torch.no_grad():`` around the model call
    inside ``validation_step()``, or a decorated helper)?"""
    return any(under_no_grad(h.stmt, h.scope, h.facts) for h in path)


def _names(expr: cst.CSTNode) -> List[str]:
    out = []
    for n in walk(expr):
        if isinstance(n, cst.Name):
            out.append(n.value)
        elif isinstance(n, cst.Attribute):
            out.append(n.attr.value)
        elif isinstance(n, cst.SimpleString):
            out.append(n.value.strip("'\"rbuf"))
    return out


def _is_forward(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt) -> bool:
    func = call.func
    name = dotted(func)
    if name is None:
        return False
    if name.endswith(".forward"):
        name = name[: -len(".forward")]
    last = name.rsplit(".", 1)[-1]
    if last == "self" or not (_FORWARD_NAME.search(last) or name in _module_typed_names(scope)):
        return False
    if isinstance(func, cst.Name):
        # a function of the program (`query_model(prompt)`) or an imported callable is not a model
        if facts.function(name) is not None or facts.aliases.qualify(func) is not None:
            return False
        if any(a.kind == "def" for sc in (scope, facts.module) for a in sc.assigns.get(name, [])):
            return False
    q = facts.qualify(func) or ""
    return not q.startswith(("torch.", "numpy", "sklearn"))


def _module_typed_names(scope: Scope) -> Set[str]:
    """Names a function (or the module level) treats as an ``nn.Module`` by its uses, whatever they are
    called: the receiver of ``x.load_state_dict(...)`` or ``x.eval()`` (faster-rcnn's ``fasterRCNN``).
    Memoised on the scope (it reads only the scope's own statements)."""
    hit = getattr(scope, "_tl_module_typed", None)
    if hit is None:
        hit = set()
        for st in _small(scope):
            for c in _stmt_calls(st):
                f = c.func
                if isinstance(f, cst.Attribute) and f.attr.value in ("load_state_dict", "eval") and not (
                        f.attr.value == "eval" and c.args):
                    d = dotted(f.value)
                    if d is not None and d != "self":
                        hit.add(d)
        scope._tl_module_typed = hit  # type: ignore[attr-defined]
    return hit


def _trains_in(stmts: Sequence[Stmt], facts: FileFacts, scope: Scope, r: _Reach, depth: int = 0) -> bool:
    for s in stmts:
        for call in _stmt_calls(s):
            kind = classify_call(call, facts, scope, s)
            if kind in ("backward", "optimizer_step"):  # (a zero_grad() alone trains nothing: flair's forward() calls one)
                return True
            if isinstance(call.func, cst.Attribute):
                if call.func.attr.value in ("backward", "manual_backward", "step", "grad"):
                    return True
            q = facts.qualify(call.func) or ""
            if q in ("torch.autograd.grad", "torch.autograd.backward", "torch.enable_grad"):
                return True
            if depth < 2:
                h = r.helper(call, facts, scope)
                if h is not None and h[1] is not scope and _trains_in(list(_small(h[1])), h[0], h[1], r, depth + 1):
                    return True
        if isinstance(s.node, cst.With) and any(
            isinstance(it.item, cst.Call) and (facts.qualify(it.item.func) or "") == "torch.enable_grad" for it in s.node.items
        ):
            return True
    return False


def _iterated_names(node: cst.CSTNode) -> List[str]:
    """Names in what a loop iterates (a ``while`` loop: its test), without keyword names of calls
    (``training`` of ``self.get_iterator(dataset_valid, training=False)`` says nothing about the data)."""
    it = node.iter if isinstance(node, cst.For) else node.test  # type: ignore[attr-defined]
    keywords = {id(a.keyword) for n in walk(it) if isinstance(n, cst.Call) for a in n.args if a.keyword is not None}
    return [v for n, v in _name_nodes(it) if id(n) not in keywords]


def loop_head(node: cst.CSTNode) -> cst.CSTNode:
    """What a loop's header ends with: the iterable of a ``for``, the test of a ``while``."""
    return node.iter if isinstance(node, cst.For) else node.test  # type: ignore[attr-defined]


def _name_nodes(expr: cst.CSTNode) -> List[Tuple[cst.CSTNode, str]]:
    out: List[Tuple[cst.CSTNode, str]] = []
    for n in walk(expr):
        if isinstance(n, cst.Name):
            out.append((n, n.value))
        elif isinstance(n, cst.Attribute):
            out.append((n.attr, n.attr.value))
        elif isinstance(n, cst.SimpleString):
            out.append((n, n.value.strip("'\"rbuf")))
    return out


def eval_loops(program: Any) -> List[EvalLoop]:
    """Every evaluation loop of the program (memoized on the program)."""
    cached = getattr(program, "_tl_eval_loops", None)
    if cached is not None:
        return cached
    out: List[EvalLoop] = []
    if not _uses_torch(program):
        program._tl_eval_loops = out
        return out
    r = reach(program)
    # a library module nobody runs (``Program.library``) is no inference script; its own loops only
    inference = never_trains(program)
    for pf in (program.files[:1] if program.library else program.files):
        text = pf.ctx.source.text
        if "for " not in text and "while " not in text and "Engine" not in text:
            continue
        base = pf.display.replace("\\", "/").rsplit("/", 1)[-1]
        if base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py":
            continue
        out.extend(_file_eval_loops(pf, r, inference and pf is program.entry and not _model_file(pf),
                                    module_only=program.library,
                                    reached=program if inference and pf is not program.entry and not program.library else None))
    program._tl_eval_loops = out
    return out


#: What a program that trains calls somewhere (text check, before any parse of the statements).
_TRAINS_TEXT = re.compile(r"\.backward\(|\.step\(|\.fit\(|Trainer\(|\.train\(\s*\)|autograd\.grad|manual_backward|accelerator|deepspeed")


_CALLS_TRAINING = re.compile(r"\b(train\w*|fit\w*|\w*_train\w*|\w*_fit|run_epoch|\w*one_epoch)\s*\(", re.I)
_CALLS_TRAINING_HINTS = ("train", "fit", "epoch")  # (every word it matches holds one, in lower case)


def _uses_torch(program: Any) -> bool:
    """Does any file of the program import torch (or a library built on it)? A PaddlePaddle or TensorFlow
    program (face.evoLVe's paddle/align, whose ``import paddle`` even resolves to the repository's own
    ``paddle/`` folder) has no PyTorch evaluation to judge, whatever its models are called."""
    cached = getattr(program, "_tl_uses_torch", None)
    if cached is None:
        heads = set()
        cached = False
        for pf in program.files:  # (each file's import heads are read once per run, and the first torch stops)
            mine = _import_heads(pf.facts)
            if any(h.startswith("torch") or h in _TORCH_LIBRARIES for h in mine):
                cached = True
                break
            heads |= mine
        if not cached:
            # a package module that never names torch (allennlp's evaluate.py calls model.eval() on what
            # it is given) is still judged; a program of another framework is not
            cached = not (heads & _OTHER_FRAMEWORKS)
        program._tl_uses_torch = cached
    return cached


def _import_heads(facts: FileFacts) -> frozenset:
    """The top-level packages a file imports (memoised on its facts)."""
    got = facts.__dict__.get("_tl_import_heads")
    if got is None:
        got = facts.__dict__["_tl_import_heads"] = frozenset(v.split(".", 1)[0] for v in facts.aliases.aliases.values())
    return got


#: Deep-learning frameworks other than PyTorch: a program that imports one of them and no PyTorch
#: library has no PyTorch evaluation to judge.
_OTHER_FRAMEWORKS = frozenset({"paddle", "tensorflow", "tf", "keras", "jax", "flax", "haiku", "mxnet", "oneflow",
                               "mindspore", "megengine", "chainer", "theano", "cntk"})


#: Libraries built on PyTorch (a program that imports one of them runs PyTorch models).
_TORCH_LIBRARIES = frozenset({
    "lightning", "pytorch_lightning", "lightning_fabric", "transformers", "accelerate", "trl", "timm", "ignite",
    "fastai", "skorch", "detectron2", "mmcv", "mmdet", "mmengine", "dgl", "pl_bolts", "flair", "allennlp",
    "sentence_transformers", "diffusers", "peft", "monai", "kornia", "opacus", "captum", "fairseq", "mmseg",
    "catalyst", "composer", "poutyne", "pyro", "deepspeed", "apex", "speechbrain", "espnet", "nemo",
})


def never_trains(program: Any) -> bool:
    """Does nothing in the program train (no backward, optimizer step, ``fit``, ``.train()``, trainer)?
    Then every forward pass of its entry script is an inference."""
    cached = getattr(program, "_tl_never_trains", None)
    if cached is None:
        # the entry neither trains itself nor calls a training helper (train(), fit_one_epoch(), ...);
        # the library files it imports may well hold training code it does not run
        text = program.entry.ctx.source.text
        cached = not _TRAINS_TEXT.search(text) and not search_words(_CALLS_TRAINING, text, _CALLS_TRAINING_HINTS, True)
        program._tl_never_trains = cached
    return cached


def inference_calls(program: Any) -> List[EvalLoop]:
    """Forward passes of an inference script: the program never trains (no backward, optimizer step,
    ``fit``, ``.train()`` or trainer anywhere in its files), and its entry file calls a model outside any
    loop (``out = model(spect)`` in ``predict.py``) — every such call is an evaluation. One record per
    call, with ``node`` None (there is no loop). Memoised on the program."""
    cached = getattr(program, "_tl_inference_calls", None)
    if cached is not None:
        return cached
    out: List[EvalLoop] = []
    pf = program.entry
    base = pf.display.replace("\\", "/").rsplit("/", 1)[-1]
    if _uses_torch(program) and not (base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py") and never_trains(program):
        facts = pf.facts
        # a model file's `__main__` smoke test (`Net()(torch.randn(1, 3, 224, 224)).shape`) is no inference
        # a library module nobody imports (``Program.library``): only what its own module level runs (a
        # demo script without a `__main__` guard); its functions are an API whose callers are unknown
        for scope in ([] if _model_file(pf) else [facts.module] if program.library else facts.scopes()):
            if scope.name in ("forward", "__call__", "__init__") or scope.class_name is not None or _decorated(scope):
                continue
            for s in _small(scope):
                if s.loops:
                    continue  # loops are eval_loops' business
                for c in _stmt_calls(s):
                    if _is_forward(c, facts, scope, s) and not _synthetic_input(c, facts, scope, s):
                        fn_text = pf.ctx.code(scope.node) if scope.kind == "function" else ""
                        purpose = bool(_ON_PURPOSE.search(fn_text)) or bool(_ON_PURPOSE.search(scope.name))
                        out.append(EvalLoop(pf, scope, s, None, [(c, s)], f"{base} only runs inference",
                                            under_no_grad(s, scope, facts), purpose))
    out.extend(handed_out_inference(program))
    program._tl_inference_calls = out
    return out


#: Inference methods of a module: what a package's users call on the model its factory returns.
_INFER_METHOD = re.compile(r"^(?:predict|inference|infer)(?:_|$)", re.I)


def handed_out_inference(program: Any) -> List[EvalLoop]:
    """Inference methods of a model that the program's own factory hands out trained: a function that
    builds an instance of a project ``nn.Module`` class, loads weights into it (``load_state_dict`` /
    ``torch.load``) and returns it with no ``eval()`` (OpenNRE's ``get_model()``), while the class's
    ``infer()`` / ``predict()`` runs ``self.forward(...)`` / ``self(...)`` outside any loop. The factory's
    callers are the package's users (``model = opennre.get_model(name); model.infer(item)``), so the
    mode it returns the model in is the mode of the prediction. An inference method the program calls
    itself is left to its callers (:func:`inference_calls`, the evaluation loops). One record per method,
    the factory's ``return`` first on its path (:attr:`EvalLoop.handed_out`)."""
    out: List[EvalLoop] = []
    if not _uses_torch(program):
        return out
    texts = [f.ctx.source.text for f in program.files]
    if not any(_loads_weights(t) for t in texts):
        return out
    from trainlint.analysis.objects import World

    world = World.of_program(program)
    done: Set[int] = set()
    for pf, text in zip(program.files, texts):
        if "return" not in text or ".load_state_dict(" not in text:
            continue
        file = world.file_of(pf.facts)
        if file is None:
            continue
        for fn in pf.facts.functions:
            if fn.class_name is not None or fn.parent is not pf.facts.module:
                continue
            for value, rstmt in fn.returns:
                name = dotted(value) if value is not None else None
                if name is None or "." in name or not _loads_weights_into(fn, name, rstmt):
                    continue
                for o in world.objects(value, file, fn, rstmt)[:4]:
                    if o.kind != "instance" or o.cls is None or not world.is_a(o, "torch.nn.Module"):
                        continue
                    for ref, m in _inference_methods(world, o.cls):
                        if id(m) in done or any(f".{m.name}(" in t for t in texts):
                            continue  # called in the program: its callers decide
                        if _decorated(m) and not _grad_decorators_only(m, ref.file.facts):
                            continue  # a decorator of the project's may switch the mode
                        mpf = program.file_of(ref.file.facts)
                        hop = _self_forward_hop(m, mpf.facts) if mpf is not None else None
                        if hop is None:
                            continue
                        done.add(id(m))
                        evidence = (f"{fn.name}() returns the {o.cls.name} with its trained weights loaded, and "
                                    f"{o.cls.name}.{m.name}() predicts with it")
                        first = Hop(cst.Call(func=cst.Name(fn.name)), rstmt, pf.facts, fn)
                        out.append(EvalLoop(mpf, m, hop.stmt, None, [(hop.call, hop.stmt)], evidence,
                                            under_no_grad(hop.stmt, m, mpf.facts), False, [[first, hop]],
                                            handed_out=True))
    return out


def _grad_decorators_only(scope: Scope, facts: FileFacts) -> bool:
    """Are all of a function's decorators autograd switches (``@torch.no_grad()``), which leave the mode alone?"""
    for d in scope.node.decorators:  # type: ignore[attr-defined]
        expr = d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator
        if canonical(facts.qualify(expr) or "") not in ("torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad",
                                                        "torch.autograd.grad_mode.no_grad"):
            return False
    return True


def _loads_weights_into(fn: Scope, name: str, before: Stmt) -> bool:
    """Does ``fn`` call ``name.load_state_dict(...)`` before ``before``?"""
    for st in _small(fn):
        if st.index >= before.index:
            break
        for c in _stmt_calls(st):
            if isinstance(c.func, cst.Attribute) and c.func.attr.value == "load_state_dict" and dotted(c.func.value) == name:
                return True
    return False


def _inference_methods(world: Any, cls: Any) -> List[Tuple[Any, Scope]]:
    """(class, method) for the inference methods (:data:`_INFER_METHOD`) of a class and its project bases,
    the nearest definition of each name."""
    out: List[Tuple[Any, Scope]] = []
    seen: Set[str] = set()
    for ref in [cls] + world._all_bases(cls):
        for name, m in ref.info.methods.items():
            if name not in seen and _INFER_METHOD.search(name):
                seen.add(name)
                out.append((ref, m))
    return out


def _self_forward_hop(m: Scope, facts: FileFacts) -> Optional["Hop"]:
    """The first ``self(...)`` / ``self.forward(...)`` of method ``m`` outside any loop, as a hop that runs
    the module itself."""
    for st in _small(m):
        if st.loops:
            continue
        for c in _stmt_calls(st):
            if dotted(c.func) in ("self", "self.forward"):
                return Hop(c, st, facts, m, target=cst.Name("self"))
    return None


def _called_from_entry(program: Any, pf: Any, scope: Scope) -> bool:
    """Does the program's entry script call this function (or method) itself?"""
    from trainlint.analysis.execution import call_sites

    return any(f is program.entry for f, _, _, _ in call_sites(program, pf, scope))


def _decorated(scope: Scope) -> bool:
    """A decorated function: the decorator may switch autograd or the mode off (we cannot always tell)."""
    return isinstance(scope.node, cst.FunctionDef) and bool(scope.node.decorators)


def _loads_weights(text: str) -> bool:
    """Does the text call ``.load_state_dict(``, ``torch.load(`` or ``load_from_checkpoint(``?"""
    return ".load_state_dict(" in text or "torch.load(" in text or "load_from_checkpoint(" in text


def _model_file(pf: Any) -> bool:
    """A model file, whose ``__main__`` block is a smoke test (``Net()(torch.randn(...))``), not an
    inference: it defines a Module class and loads no trained weights (a script that defines its own
    ``class Net`` and ``load_state_dict()``s it before predicting is an inference script)."""
    return _defines_module(pf.facts) and not _loads_weights(pf.ctx.source.text)


def _defines_module(facts: FileFacts) -> bool:
    """A model file (its ``__main__`` block is a smoke test, not an inference)."""
    return any(b.rsplit(".", 1)[-1] in ("Module", "LightningModule") for c in facts.classes.values() for b in c.bases)


_SYNTHETIC = {"torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.randint", "torch.full",
              "torch.arange", "torch.randn_like", "torch.rand_like", "torch.zeros_like", "torch.ones_like"}


def _synthetic_input(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt) -> bool:
    """Is the model fed a made-up tensor (a shape check, a benchmark, an export trace), directly or
    through a name assigned from one?"""
    exprs = [a.value for a in call.args]
    for e in list(exprs):
        for n in walk(e):
            if isinstance(n, cst.Name):
                exprs.extend(a.value for a in scope.reaching(n.value, stmt) if a.value is not None)
    return any(isinstance(n, cst.Call) and canonical(facts.qualify(n.func) or "") in _SYNTHETIC
               for e in exprs for n in walk(e))


def _framework_scope(scope: Scope, facts: FileFacts) -> bool:
    if scope.class_name is None:
        return False
    info = facts.classes.get(scope.class_name)
    if info is None:
        return False
    return any(b.endswith(("LightningModule", "Trainer", "Callback")) for b in info.bases)


def _file_eval_loops(pf: Any, r: _Reach, inference: bool = False, module_only: bool = False,
                     reached: Any = None) -> List[EvalLoop]:
    """The evaluation loops of one file; with ``module_only`` (a library module nobody runs), an
    inference script's loops only at module level. ``reached``: the program, when it never trains and
    this file is not its entry: a loop in a function the entry script calls itself (translate.py's
    ``translator.translate(...)`` -> ``Translator.translate()`` looping over the batches) is an inference."""
    facts = pf.facts
    out: List[EvalLoop] = []
    for scope in facts.scopes():
        if scope.name in ("forward", "__call__", "__init__") or _framework_scope(scope, facts):
            continue
        # train_one_epoch / train(): only a loop that names its evaluation data (the dev loop after each
        # epoch, `for x, y in val_loader:`) is an evaluation there, unless the function never trains
        train_named = bool(_TRAIN_TOKEN.search(scope.name) and not EVAL_FUNCTION_NAME.search(scope.name))
        trains: List[bool] = []  # computed on the first loop that needs it
        fn_eval = bool(EVAL_FUNCTION_NAME.search(scope.name)) if scope.kind == "function" else False
        taken: Set[int] = set()
        for s in scope.stmts:
            node = s.node
            if not _is_loop(node) or any(id(l) in taken for l in s.loops):
                continue
            if isinstance(node, cst.While) and not inference:
                continue  # a `while` loop is an evaluation only in an inference script (`while num_images >= 0:`)
            if is_epoch_loop(node):
                continue
            inner = [x for x in scope.stmts if node in x.loops]
            paths = [p for x in inner for c in _stmt_calls(x) for p in [forward_path(c, facts, scope, x, r)] if p is not None]
            forwards = [(p[0].call, p[0].stmt) for p in paths]
            if not forwards:
                continue
            if _trains_in(inner, facts, scope, r):
                continue
            names = _iterated_names(node)
            it_eval = [n for n in names if _EVAL_TOKEN.search(n)]
            it_train = [n for n in names if _TRAIN_TOKEN.search(n)]
            if it_eval and not it_train:
                evidence = f"it iterates `{it_eval[0]}`"
            elif train_named and (trains or trains.append(_trains_in(list(_small(scope)), facts, scope, r)) or trains)[0]:
                continue
            elif fn_eval and not it_train:
                evidence = f"it is in {scope.name}()"
            elif (_GENERATE.search(scope.name) and not it_train
                  and all(h.target is not None and dotted(h.target) == "self" for p in paths for h in p[-1:])):
                # a module's own generation method: `for i in range(n): out, hidden = self.forward(x, hidden)`
                evidence = f"it generates in {scope.name}()"
            elif (inference and not it_train and scope.class_name is None and not _decorated(scope)
                  and not (module_only and scope.kind != "module")
                  and not _synthetic_input(forwards[0][0], facts, scope, forwards[0][1])):
                evidence = "the program never trains: an inference script"
            elif (reached is not None and not it_train and scope.kind == "function" and not _decorated(scope)
                  and not _module_class(facts, scope) and _called_from_entry(reached, pf, scope)):
                evidence = f"the program never trains: {reached.entry.display.replace(chr(92), '/').rsplit('/', 1)[-1]} runs it"
            else:
                continue
            taken.add(id(node))
            ng = under_no_grad(s, scope, facts) or all(_path_no_grad(p) for p in paths)
            fn_text = pf.ctx.code(scope.node) if scope.kind == "function" else ""
            purpose = bool(_ON_PURPOSE.search(fn_text)) or bool(_ON_PURPOSE.search(scope.name))
            out.append(EvalLoop(pf, scope, s, node, forwards, evidence, ng, purpose, paths))
    if "Engine" in pf.ctx.source.text:
        out.extend(_engine_steps(pf, r))
    return out


def _is_engine(call: cst.Call, facts: FileFacts) -> bool:
    """``Engine(step)`` of ignite (``ignite.engine.Engine``; ``ignite.engines.engine.Engine`` in its own code)."""
    q = facts.qualify(call.func) or ""
    return q.rsplit(".", 1)[-1] == "Engine" and (q.startswith("ignite.") or ".engines.engine" in q or ".engine.engine" in q)


def _engine_steps(pf: Any, r: _Reach) -> List[EvalLoop]:
    """ignite's ``Engine(process_function)``: ``engine.run(loader)`` calls the step function once per batch
    (``def _inference(engine, batch): model.eval(); y_pred = model(x)``), so a step function that calls a
    model and never trains is an evaluation loop of its own (``node`` None: the loop is the engine's; its
    statement is the first model call)."""
    facts = pf.facts
    out: List[EvalLoop] = []
    for scope in facts.scopes():
        for st in _small(scope):
            for c in _stmt_calls(st):
                if not _is_engine(c, facts):
                    continue
                pos = [a.value for a in c.args if a.keyword is None]
                name = dotted(pos[0]) if pos else None
                if name is None or "." in name:
                    continue
                fn = next((s2 for s2 in facts.scopes() if s2.kind == "function" and s2.name == name and s2.parent is scope), None)
                if fn is None:
                    fn = facts.function(name)
                if fn is None or _decorated(fn):
                    continue
                body = [x for x in _small(fn) if not x.loops]
                paths = [p for x in body for c2 in _stmt_calls(x) for p in [forward_path(c2, facts, fn, x, r)] if p is not None]
                if not paths or _trains_in(list(_small(fn)), facts, fn, r):
                    continue
                forwards = [(p[0].call, p[0].stmt) for p in paths]
                ng = all(_path_no_grad(p) for p in paths)
                out.append(EvalLoop(pf, fn, forwards[0][1], None, forwards, f"ignite's Engine runs {name}() once per batch",
                                    ng, bool(_ON_PURPOSE.search(pf.ctx.code(fn.node))), paths, engine_step=True))
    return out


# -- mode-dependent layers -----------------------------------------------------------------------------


@dataclass(eq=False)
class Layer:
    label: str  # "nn.Dropout(p=0.5)", "nn.BatchNorm2d", "torchvision resnet18 (BatchNorm)"
    kind: str  # "dropout" | "bn"
    node: cst.CSTNode
    file: FileRef


@dataclass(eq=False)
class ModelLayers:
    name: str  # "Net", "model"
    layers: List[Layer] = field(default_factory=list)
    #: loaded in eval mode (Hugging Face ``from_pretrained`` calls ``model.eval()``)
    starts_in_eval: bool = False
    #: a module unpickled by ``torch.load(path)``: its class is unknown here, and it is in the mode it was
    #: saved in (see :func:`_pickled_module`)
    pickled: bool = False

    def _kinds(self) -> set:
        """The kinds of its layers ("dropout", "bn"); a torchvision model's are taken for batch norm."""
        if any(l.label.startswith("torchvision ") for l in self.layers):
            return {"bn"}
        return {l.kind for l in self.layers}

    def effect(self) -> str:
        """What training mode does to these layers, in words."""
        if self.pickled:
            return "its dropout and batch-norm layers, if it has any, act as in training"
        kinds = self._kinds()
        parts = []
        if "dropout" in kinds:
            parts.append("dropout stays active")
        if "bn" in kinds:
            parts.append("batch norm normalizes with batch statistics and overwrites its running averages")
        return " and ".join(parts)

    def off_effect(self) -> str:
        """What eval mode does to these layers during training, in words."""
        kinds = self._kinds()
        parts = []
        if "dropout" in kinds:
            parts.append("dropout off")
        if "bn" in kinds:
            parts.append("batch-norm statistics frozen")
        return " and ".join(parts)

    def counts(self) -> str:
        if self.pickled:
            return "its layers unknown"
        if self.starts_in_eval and self.layers:
            return self.layers[0].label.split("(", 1)[-1].rstrip(")")
        if any(l.label.startswith("torchvision ") for l in self.layers):
            return "BatchNorm layers"
        d = sum(1 for l in self.layers if l.kind == "dropout")
        b = sum(1 for l in self.layers if l.kind == "bn")
        parts = []
        if d:
            parts.append(f"{d} dropout layer{'s' if d > 1 else ''}")
        if b:
            parts.append(f"{b} batch-norm layer{'s' if b > 1 else ''}")
        return " and ".join(parts)


def _layer_of_call(call: cst.Call, file: FileRef) -> Optional[Layer]:
    q = canonical(file.facts.qualify(call.func) or "")
    if not q:
        return None
    if q in DROPOUT_MODULES:
        pos = [a.value for a in call.args if a.keyword is None]
        p = pos[0] if pos else kwarg(call, "p")
        if p is not None and number(p) == 0.0:
            return None
        ptxt = file.ctx.code(p).strip() if p is not None else "0.5"
        return Layer(f"{short_qualname(q)}(p={ptxt})", "dropout", call, file)
    if q in BN_MODULES:
        t = kwarg(call, "track_running_stats")
        if isinstance(t, cst.Name) and t.value == "False":
            return None
        return Layer(short_qualname(q), "bn", call, file)
    if q in _DROPOUT_ARG_LAYERS:
        d = kwarg(call, "dropout")
        default = _DROPOUT_ARG_LAYERS[q]
        if d is None and default == 0.0:
            return None
        if d is not None and number(d) == 0.0:
            return None
        txt = file.ctx.code(d).strip() if d is not None else f"{default:g}"
        return Layer(f"{short_qualname(q)}(dropout={txt})", "dropout", call, file)
    if q in ("torch.nn.functional.dropout", "torch.nn.functional.dropout2d", "torch.nn.functional.dropout1d",
             "torch.nn.functional.alpha_dropout"):
        t = kwarg(call, "training")
        if t is not None and "training" in file.ctx.code(t):
            return Layer("F.dropout(training=self.training)", "dropout", call, file)
        return None
    if q.startswith("torchvision.models."):
        last = q.rsplit(".", 1)[-1]
        if _TV_MODEL.match(last):
            return Layer(f"torchvision {last}", "bn", call, file)
    return None


def class_layers(world: ModelWorld, ref: ClassRef, depth: int = 0, seen: Optional[Set[int]] = None) -> List[Layer]:
    """Mode-dependent layers a Module class builds (its body, its bases, the project classes it builds)."""
    seen = seen if seen is not None else set()
    if id(ref.info) in seen or depth > 6:
        return []
    seen.add(id(ref.info))
    out: List[Layer] = []
    file = ref.file
    for n in walk(ref.info.node, into_functions=True):
        if not isinstance(n, cst.Call):
            continue
        layer = _layer_of_call(n, file)
        if layer is not None:
            out.append(layer)
            continue
        name = dotted(n.func)
        if name is None or not name[:1].isupper() and "." not in name:
            continue
        g = world.resolve_global(name, file)
        if g is not None and g[0] == "class":
            sub = ClassRef(g[1], g[2])
            if world.is_module_class(sub):
                out.extend(class_layers(world, sub, depth + 1, seen))
    for base in world.class_bases(file, ref.info):
        out.extend(class_layers(world, base, depth + 1, seen))
    return out


def _value_layers(world: ModelWorld, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int) -> Optional[ModelLayers]:
    """Layers of the model an expression builds: ``Net()``, ``nn.Sequential(...)``,
    ``models.resnet18()``, ``Net().to(device)``, ``DataParallel(net)``, a factory's return."""
    if depth > 16:
        return None
    if isinstance(expr, (cst.Name, cst.Attribute)):
        return callee_layers(world, expr, file, scope, stmt, depth + 1)
    if isinstance(expr, cst.IfExp):  # `model.cuda() if cuda else model`: either arm
        found = None
        for arm in (expr.body, expr.orelse):
            ml = _value_layers(world, arm, file, scope, stmt, depth + 1)
            if ml is not None and ml.layers:
                return ml
            found = found or ml
        return found
    if not isinstance(expr, cst.Call):
        return None
    func = expr.func
    q = canonical(file.facts.qualify(func) or "")
    if isinstance(func, cst.Attribute) and func.attr.value in ("to", "cuda", "cpu", "float", "double", "half", "train", "eval", "bfloat16") and not q:
        return _value_layers(world, func.value, file, scope, stmt, depth + 1)
    if q.endswith("DataParallel") or q in ("torch.compile", "torch.jit.script"):
        pos = [a.value for a in expr.args if a.keyword is None]
        return _value_layers(world, pos[0], file, scope, stmt, depth + 1) if pos else None
    if q == "torch.nn.Sequential":
        layers = []
        for n in walk(expr):
            if isinstance(n, cst.Call):
                l = _layer_of_call(n, file)
                if l is not None:
                    layers.append(l)
                    continue
                sub_name = dotted(n.func)
                g = world.resolve_global(sub_name, file) if sub_name else None
                if g is not None and g[0] == "class" and world.is_module_class(ClassRef(g[1], g[2])):
                    layers.extend(class_layers(world, ClassRef(g[1], g[2])))
        for m in world.models_of_value(expr, file, scope, stmt):
            for chain in world.model_chains(m):
                for op in chain:
                    if op.kind in ("dropout", "bn") and not any(l.node is op.node for l in layers):
                        layers.append(Layer(op.label, op.kind, op.node, op.file))
        return ModelLayers("nn.Sequential", layers)
    single = _layer_of_call(expr, file)
    if single is not None:
        return ModelLayers(single.label, [single])
    if q == "torch.load":
        return _pickled_module(expr, file)
    hf = _hf_pretrained(expr, file, scope)
    if hf is not None:
        return hf
    name = dotted(func)
    if name is None:
        return None
    if accelerate_prepare(expr, file):
        pos = [a.value for a in expr.args if a.keyword is None]
        return _value_layers(world, pos[0], file, scope, stmt, depth + 1) if pos else None
    g = world.resolve_global(name, file)
    if g is None:
        return None
    if g[0] == "class":
        ref = ClassRef(g[1], g[2])
        if world.is_module_class(ref):
            # SoftmaxNN(CNNEncoder(dropout=0.5), ...): the modules it keeps from its arguments too
            kept = _kept_argument_layers(world, ref, depth, (expr, file, scope, stmt))
            return ModelLayers(ref.info.name, class_layers(world, ref) + kept)
        return None
    if g[0] == "function":
        fn: Scope = g[2]
        found = None
        for value, rstmt in fn.returns[:6]:
            if value is not None:
                ml = _value_layers(world, value, g[1], fn, rstmt, depth + 1)
                if ml is not None and ml.layers:
                    return ml
                found = found or ml
        return found
    return None


def _pickled_module(call: cst.Call, file: FileRef) -> ModelLayers:
    """A module unpickled by ``torch.load(path)`` and called as a model (``model = torch.load(p);
    model(x)``). Policy: its class is unknown, but an unpickled module keeps the ``training`` flag it was
    saved with, and a whole module is saved by a training script (``torch.save(model, path)`` in the epoch
    loop, in training mode; eval() and back to train() around validation). So it is taken to be in
    training mode, with mode-dependent layers: a finding says so ("if it has any"). Only the missing
    ``eval()`` before an evaluation is judged this way; a ``state_dict`` loaded into a known class is read
    from that class instead."""
    layer = Layer("a module unpickled by torch.load() (its class and layers unknown; it keeps the mode it was saved in)",
                  "pickled", call, file)
    return ModelLayers("a torch.load()ed module", [layer], pickled=True)


#: Hugging Face families whose default config has dropout > 0 (hidden_dropout_prob / dropout = 0.1).
_HF_DROPOUT_FAMILY = re.compile(
    r"(?<![a-z])(bert|roberta|distilbert|gpt2|t5|bart|electra|deberta|camembert|mpnet|xlnet|flaubert|longformer|mbart|marian|pegasus)",
    re.I,
)


def _hf_pretrained(call: cst.Call, file: FileRef, scope: Scope) -> Optional[ModelLayers]:
    """``BertForSequenceClassification.from_pretrained(...)`` / ``AutoModel...from_pretrained("roberta-base")``
    of a family with dropout: a model that starts in eval mode and has dropout."""
    func = call.func
    if not isinstance(func, cst.Attribute) or func.attr.value != "from_pretrained":
        return None
    q = canonical(file.facts.qualify(func.value) or "")
    if not q.startswith("transformers."):
        return None
    cls = q.rsplit(".", 1)[-1]
    family = None
    if cls.startswith(("Auto", "TF", "Flax")):
        pos = [a.value for a in call.args if a.keyword is None]
        arg = pos[0] if pos else kwarg(call, "pretrained_model_name_or_path")
        text = None
        if isinstance(arg, cst.SimpleString):
            text = arg.evaluated_value
        elif isinstance(arg, cst.Name):
            for a in file.facts.module.assigns.get(arg.value, []):
                if isinstance(a.value, cst.SimpleString):
                    text = a.value.evaluated_value
        if text is not None and not isinstance(text, bytes):
            m = _HF_DROPOUT_FAMILY.search(text.rsplit("/", 1)[-1])
            family = m.group(1) if m else None
            if m and text.lower().rsplit("/", 1)[-1].startswith("albert"):
                family = None
    else:
        m = _HF_DROPOUT_FAMILY.match(cls)
        family = m.group(1) if m and not cls.lower().startswith("albert") else None
    if family is None:
        return None
    layer = Layer(f"{cls} ({family}: dropout 0.1 by default)", "dropout", call, file)
    return ModelLayers(cls, [layer], starts_in_eval=True)


def accelerate_prepare(call: cst.Call, file: FileRef) -> bool:
    return isinstance(call.func, cst.Attribute) and call.func.attr.value == "prepare" and "accelerat" in (dotted(call.func.value) or "").lower()


def callee_layers(world: ModelWorld, func: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Stmt, depth: int = 0) -> Optional[ModelLayers]:
    """Layers of the model a call ``func(x)`` runs; None when the model is unknown."""
    if depth > 16:
        return None
    name = dotted(func)
    if name is None:
        return None
    if name.endswith(".forward") or name.endswith(".module") or name.endswith("._orig_mod"):
        return callee_layers(world, func.value, file, scope, stmt, depth + 1)  # type: ignore[attr-defined]
    if name == "self" and scope.class_name:
        # a module's own method running self.forward(...): its layers, and those of the modules its
        # constructor was given (``self.sentence_encoder = sentence_encoder``), from its construction sites
        ref = world.enclosing_class(file, scope)
        if ref is not None and world.is_module_class(ref):
            return ModelLayers(ref.info.name, class_layers(world, ref) + _kept_argument_layers(world, ref, depth, None))
        return None
    defs = world.defs(name, file, scope, stmt)
    if defs:
        best = None
        for f, s, a in defs[:6]:
            if a.kind == "for":
                continue
            value = assigned_value(a, name)
            if value is None:
                # model, optimizer = accelerator.prepare(model, optimizer)
                v = a.value if a.value is not None else getattr(a.node, "value", None)
                if isinstance(v, cst.Call) and accelerate_prepare(v, f) and isinstance(getattr(a.node, "targets", None), (list, tuple)):
                    pos = _unpack_position(a, name)
                    args = [x.value for x in v.args if x.keyword is None]
                    if pos is not None and pos < len(args):
                        value = args[pos]
                elif isinstance(v, cst.Call) and isinstance(getattr(a.node, "targets", None), (list, tuple)):
                    # model, optimizer = build(cfg): the element of what the factory returns
                    ml = _unpacked_return_layers(world, v, _unpack_position(a, name), f, s, a.stmt, depth)
                    if ml is not None and ml.layers:
                        return ml
                    best = best or ml
                if value is None:
                    continue
            ml = _value_layers(world, value, f, s, a.stmt, depth + 1)
            if ml is not None and ml.layers:
                return ml
            best = best or ml
        return best
    if "." not in name and name in scope.params():
        if scope.class_name and scope.name == "__init__":
            return _constructor_arg_layers(world, name, file, scope, depth)
        for f, s, st, arg in world.call_sites_binding(file, scope, name):
            ml = _value_layers(world, arg, f, s, st, depth + 1)
            if ml is not None:
                return ml
        return None
    if "." not in name:
        g = world.resolve_global(name, file)
        if g is not None and g[0] == "assign":
            for a in g[2][:6]:
                ml = _value_layers(world, a.value, g[1], g[1].facts.module, a.stmt, depth + 1)
                if ml is not None:
                    return ml
    return None


def _unpacked_return_layers(world: ModelWorld, call: cst.Call, pos: Optional[int], file: FileRef, scope: Scope, stmt: Stmt, depth: int) -> Optional[ModelLayers]:
    name = dotted(call.func)
    if pos is None or name is None or depth > 16:
        return None
    g = world.resolve_global(name, file)
    if g is None or g[0] != "function":
        return None
    fn: Scope = g[2]
    found = None
    for value, rstmt in fn.returns[:6]:
        if isinstance(value, cst.Tuple) and pos < len(value.elements):
            el = value.elements[pos].value
            ml = _value_layers(world, el, g[1], fn, rstmt, depth + 1)
            if ml is not None and ml.layers:
                return ml
            found = found or ml
    return found


def _unpack_position(a, name: str) -> Optional[int]:
    for t in a.node.targets:
        if isinstance(t.target, (cst.Tuple, cst.List)):
            for i, el in enumerate(t.target.elements):
                if dotted(el.value) == name:
                    return i
    return None


def _constructor_arg_layers(world: ModelWorld, param: str, file: FileRef, init: Scope, depth: int) -> Optional[ModelLayers]:
    """An ``__init__`` parameter (``self.model = model``): the arguments of the ``Trainer(model, ...)`` calls."""
    cls_name = init.class_name or ""
    params = init.params()[1:]
    if param not in params:
        return None
    index = params.index(param)
    for f in world.files:
        if cls_name not in f.ctx.source.text:
            continue
        for call, s, st in file_calls(f):
            d = dotted(call.func)
            if d is None or d.rsplit(".", 1)[-1] != cls_name:
                continue
            arg = bound_arg(call, index, param)
            if arg is not None:
                ml = _value_layers(world, arg, f, s, st, depth + 1)
                if ml is not None:
                    return ml
    return None


def _kept_argument_layers(world: ModelWorld, ref: ClassRef, depth: int, site: Optional[Tuple[cst.Call, FileRef, Scope, Stmt]]) -> List[Layer]:
    """Mode-dependent layers of the modules a Module class keeps from its constructor's arguments
    (``def __init__(self, sentence_encoder, ...): self.sentence_encoder = sentence_encoder``): the
    arguments of the construction ``site`` when given (the call, where it is), else of the class's
    construction sites in the program (:func:`_constructor_arg_layers`)."""
    init = ref.info.methods.get("__init__")
    if init is None or depth > 12:
        return []
    params = init.params()[1:]
    out: List[Layer] = []
    for p in _kept_params(init, params):
        if site is not None:
            call, cfile, cscope, cstmt = site
            arg = bound_arg(call, params.index(p), p)
            ml = _value_layers(world, arg, cfile, cscope, cstmt, depth + 1) if arg is not None else None
        else:
            ml = _constructor_arg_layers(world, p, ref.file, init, depth + 1)
        if ml is not None and not ml.pickled:
            out.extend(ml.layers)
    return out


def _kept_params(init: Scope, params: List[str]) -> List[str]:
    """The ``__init__`` parameters stored as they are on ``self`` (``self.encoder = encoder``)."""
    out = []
    for st in init.stmts:
        n = st.node
        if (isinstance(n, cst.Assign) and len(n.targets) == 1 and isinstance(n.value, cst.Name)
                and n.value.value in params and n.value.value not in out):
            t = dotted(n.targets[0].target) or ""
            if t.startswith("self.") and t.count(".") == 1:
                out.append(n.value.value)
    return out


def forward_layers(program: Any, pf: Any, call: cst.Call, scope: Scope, stmt: Stmt,
                   module: Optional[cst.BaseExpression] = None) -> Optional[ModelLayers]:
    """Mode-dependent layers of the model ``call`` runs (``module``: the model, when the call is one of
    its methods, :attr:`Hop.target`)."""
    world = ModelWorld.of_program(program)
    file = world.file_of_ctx(pf.ctx)
    func = module if module is not None else call.func
    ml = callee_layers(world, func, file, scope, stmt)
    if ml is not None and not ml.layers:
        return ml
    if ml is not None:
        # deduplicate (a class walked twice through two paths)
        seen: Set[int] = set()
        uniq = []
        for l in ml.layers:
            if id(l.node) not in seen:
                seen.add(id(l.node))
                uniq.append(l)
        ml.layers = uniq
    return ml


# -- an eval() inside a training loop: is it an evaluation's switch, and does training go on after it? ----


def in_eval_only_code(file: FileRef, scope: Scope, stmt: Stmt) -> Optional[str]:
    """Why the statement runs only for evaluation, or None: in a function named as an evaluation routine
    (:data:`EVAL_FUNCTION_NAME`, and no ``train`` in the name) or decorated to run without autograd, also
    a function nested in one; or under ``with torch.no_grad()`` / ``torch.inference_mode()`` /
    ``torch.set_grad_enabled(False)``."""
    s: Optional[Scope] = scope
    while s is not None and s.kind == "function":
        if EVAL_FUNCTION_NAME.search(s.name) and "train" not in s.name.lower():
            return f"in {s.qualname}()"
        if decorated_no_grad(s, file.facts, certain=True):
            return f"in {s.qualname}(), decorated to run without autograd"
        s = s.parent
    if runs_without_grad(stmt.node, scope, file.facts, certain=True):
        return "under torch.no_grad()"
    return None


def in_eval_loop(program: Any, e: Any) -> bool:
    """Does event ``e`` run inside an evaluation loop of its own scope?"""
    return any(l.node in e.stmt.loops for l in eval_loops(program) if l.scope is e.scope)


_LAST_PASS = re.compile(r"last|final", re.I)


def eval_for_last_pass(m: Any, tl: Any) -> bool:
    """Is the mode switch ``m`` (a :class:`~trainlint.analysis.execution.ModeCall` in the training loop ``tl``)
    an eval() under ``if epoch == epochs - 1:`` or ``if is_last:``, so that training does not go on after it?"""
    if m.scope is not tl.scope:
        return False
    for s in tl.scope.stmts:
        if isinstance(s.node, cst.If) and id(s.node) in m.stmt.block and tl.node in s.loops:
            test = s.node.test
            code = _code(test)
            if _LAST_PASS.search(code) or ("==" in code and "%" not in code):
                return True
    return False


def evaluation_follows(program: Any, m: Any, tl: Any) -> bool:
    """Is the eval() ``m`` in the training loop ``tl`` the switch for an evaluation (an evaluation loop or an
    evaluate()/validate() call follows it)? A bare ``model.eval()`` before the batch loop with no evaluation
    is a deliberate choice (frozen batch norm while fine-tuning)."""
    loops = eval_loops(program)
    if m.scope is not tl.scope:
        return bool(EVAL_FUNCTION_NAME.search(m.scope.name)) or any(l.scope is m.scope for l in loops)
    for l in loops:
        if l.scope is tl.scope and tl.node in l.stmt.loops and l.stmt.index > m.stmt.index:
            return True
    for s in _small(tl.scope):
        if s.index <= m.stmt.index or tl.node not in s.loops:
            continue
        for call in calls(s.node):
            name = (dotted(call.func) or "").rsplit(".", 1)[-1]
            if name and EVAL_FUNCTION_NAME.search(name):
                return True
    return False


def _code(node: cst.CSTNode) -> str:  # (the test as written)
    return cst.Module(body=[]).code_for_node(node)
