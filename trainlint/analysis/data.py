"""Data facts: transform pipelines (which ops are random), the datasets they feed, the DataLoaders that
read those datasets, and the ROLE of each (training vs evaluation).

A pipeline is found from where it is *used*: a dataset call's ``transform=`` argument (or a
positional one), followed back through names, dict entries (``data_transforms["val"]``), list
variables built with ``append``/``extend``/``+=``, helper functions (``get_transform(train=False)``,
with the literal arguments bound so that ``if train:`` picks its branch), ternaries and imports from
other files of the program. Custom ``Dataset`` classes whose ``__getitem__`` flips or crops under
``random.random() < p`` are pipelines of their own.

Roles come from structure first (``train=False``, ``split="val"``, a ``"val"`` path component, the
loader iterated in a loop that calls ``backward()`` or under ``torch.no_grad()``/after ``model.eval()``,
Lightning's ``val_dataloader()``/``fit(val_dataloaders=...)``, Hugging Face's ``eval_dataset=``) and
from names only when nothing structural says anything.

Everything is computed per program and memoized on the program object (:func:`data_model`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import libcst as cst

from trainlint.analysis.execution import NO_GRAD_CONTEXTS, runs_without_grad
from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.walk import calls, child_nodes
from trainlint.analysis.names import canonical, dotted, names_in
from trainlint.analysis.syntax import is_none, keyword_arg, kwarg, positional

# -- the transform vocabulary ----------------------------------------------------------------------

TORCHVISION_RANDOM = {
    "RandomCrop", "RandomResizedCrop", "RandomSizedCrop", "RandomHorizontalFlip", "RandomVerticalFlip",
    "RandomRotation", "RandomAffine", "RandomPerspective", "RandomErasing", "RandomGrayscale", "RandomApply",
    "RandomChoice", "RandomOrder", "RandomInvert", "RandomPosterize", "RandomSolarize", "RandomAdjustSharpness",
    "RandomAutocontrast", "RandomEqualize", "ColorJitter", "GaussianBlur", "AutoAugment", "RandAugment",
    "TrivialAugmentWide", "AugMix", "ElasticTransform", "RandomIoUCrop", "ScaleJitter", "RandomShortestSize",
    "RandomZoomOut", "MixUp", "CutMix", "RandomPhotometricDistort", "RandomResize", "RandomChannelPermutation",
    "GaussianNoise", "RandomJPEG",
}
TORCHVISION_DETERMINISTIC = {
    "Resize", "CenterCrop", "Normalize", "ToTensor", "PILToTensor", "ToImage", "ToDtype", "ConvertImageDtype",
    "Pad", "Grayscale", "Lambda", "FiveCrop", "TenCrop", "ToPILImage", "ToImageTensor", "ConvertBoundingBoxFormat",
    "SanitizeBoundingBoxes", "ClampBoundingBoxes", "ToPureTensor", "LinearTransformation", "Identity",
}
#: Ops whose probability is a ``p`` argument (literal 0 disables them).
_P_OPS = {
    "RandomHorizontalFlip", "RandomVerticalFlip", "RandomGrayscale", "RandomErasing", "RandomInvert",
    "RandomPosterize", "RandomSolarize", "RandomAdjustSharpness", "RandomAutocontrast", "RandomEqualize",
    "RandomApply", "RandomPhotometricDistort",
}
#: Ops that are deterministic when they always fire (a flip with p=1 is a plain flip: TTA uses it).
_FLIPS = {"RandomHorizontalFlip", "RandomVerticalFlip", "HorizontalFlip", "VerticalFlip", "Transpose", "Flip"}
_ALB_DETERMINISTIC = {
    "Normalize", "Resize", "ToTensorV2", "ToTensor", "PadIfNeeded", "CenterCrop", "LongestMaxSize",
    "SmallestMaxSize", "ToFloat", "FromFloat", "NoOp", "Lambda", "Crop", "ToGray", "ToRGB", "FDA",
    "Compose", "ReplayCompose", "Sequential", "BboxParams", "KeypointParams",
}
_ALB_CONTAINERS = {"Compose", "ReplayCompose", "Sequential", "OneOf", "SomeOf", "OneOrOther", "SelectiveChannelTransform"}
_KORNIA_DETERMINISTIC = {"Normalize", "Denormalize", "Resize", "CenterCrop", "CenterCrop3D", "LongestMaxSize", "SmallestMaxSize", "PadTo"}
_KORNIA_CONTAINERS = {"AugmentationSequential", "ImageSequential", "VideoSequential", "ManyToManyAugmentationDispather"}
_TV_CONTAINERS = {"Compose"}
_TV_RANDOM_CONTAINERS = {"RandomApply", "RandomChoice", "RandomOrder"}

#: Keyword arguments of dataset constructors that carry the input pipeline.
TRANSFORM_KWS = {
    "transform", "transforms", "train_transform", "val_transform", "test_transform", "img_transform",
    "image_transform", "input_transform", "preprocess", "augment", "augmentation", "augmentations", "aug", "tf",
    "transform_fn", "transforms_fn", "pipeline",
}
_NOT_INPUT_TRANSFORM = {"target_transform", "label_transform", "mask_transform"}

#: torchvision datasets whose second positional parameter is ``train`` (default True).
_TV_TRAIN_FLAG = {
    "MNIST", "FashionMNIST", "KMNIST", "QMNIST", "CIFAR10", "CIFAR100", "USPS", "Omniglot", "PhotoTour",
}
_SPLIT_KWS = {"split", "subset", "mode", "phase", "image_set", "stage", "set", "partition", "fold", "kind", "which"}
_TRAIN_WORDS = {"train", "training", "trn", "trainval"}
_EVAL_WORDS = {"val", "valid", "validation", "validate", "test", "testing", "eval", "evaluation", "dev", "holdout", "tst"}

#: A condition on such a name is a switch for augmentation (``if args.augment:``, ``use_flip``).
_SWITCH_NAME = re.compile(r"aug|random|rand_|jitter|flip|crop|no_?aug|use_|enable|disable|rotate|erasing|mix", re.I)
#: Parameters that say which role a pipeline is built for; their value can be folded.
_ROLE_PARAM = re.compile(r"^(is_?)?(train|training|train_mode|split|mode|phase|stage|subset|is_train)$", re.I)
_TTA_NAME = re.compile(r"tta|test_time_aug|testtime|test_aug", re.I)

_EVAL_LOADER_METHODS = {"val_dataloader", "test_dataloader", "predict_dataloader"}

UNKNOWN = object()


# -- results -----------------------------------------------------------------------------------------


@dataclass(eq=False)
class Op:
    """One transform inside a pipeline (or a random branch in a dataset's ``__getitem__``)."""

    node: cst.CSTNode
    name: str  # "RandomHorizontalFlip", "random flip in MyDataset.__getitem__"
    random: bool
    gated: bool  # added under a condition, a ternary, or with a probability from a config
    file: Any  # ProgramFile


@dataclass(eq=False)
class Pipeline:
    node: cst.CSTNode  # the Compose call (or the list, the single op, the dataset class)
    file: Any  # ProgramFile where ``node`` is
    ops: List[Op]
    gated: bool = False  # the pipeline itself is chosen by a condition
    label: str = ""  # the variable it was read from ("train_transform")
    kind: str = "compose"  # "compose" | "op" | "dataset-class"

    @property
    def random_ops(self) -> List[Op]:
        return [o for o in self.ops if o.random]

    def ungated_random_ops(self) -> List[Op]:
        return [o for o in self.ops if o.random and not o.gated]


#: The evidence of a role read from a dataset's path or split words (``"data/train"``), not from use.
PATH_EVIDENCE = "its path or split argument says"


@dataclass(eq=False)
class PipelineUse:
    """A pipeline handed to a dataset, with the dataset's role."""

    pipeline: Pipeline
    dataset: cst.Call  # the dataset constructor call
    arg: cst.CSTNode  # the argument that carries the pipeline (the dataset call for a dataset class)
    file: Any  # ProgramFile of the dataset call
    role: Optional[str]  # "train" | "eval" | None
    evidence: str  # why ("train=False", "iterated under torch.no_grad()"...)
    structural: bool  # the role comes from structure, not from names alone
    tta: bool = False
    site: str = "dataset"  # "dataset" (a transform= argument, a Dataset class) | "batch" (applied in a loop)
    #: an evaluation part cut from a training dataset (random_split, Subset, SubsetRandomSampler): it
    #: shares the dataset's pipeline
    cut: bool = False


@dataclass(eq=False)
class _Where:
    pf: Any  # ProgramFile
    scope: Scope
    stmt: Optional[Stmt]
    bindings: Dict[str, Any] = field(default_factory=dict)

    @property
    def facts(self) -> FileFacts:
        return self.pf.facts

    def at(self, scope: Scope, stmt: Optional[Stmt], bindings: Optional[Dict[str, Any]] = None) -> "_Where":
        return _Where(self.pf, scope, stmt, self.bindings if bindings is None else bindings)


@dataclass
class _ExprBinding:
    """A parameter bound to an expression of the caller (followed when the helper uses it)."""

    expr: cst.BaseExpression
    where: _Where


# -- small helpers -----------------------------------------------------------------------------------


def _literal(expr: Optional[cst.BaseExpression], bindings: Dict[str, Any]) -> Any:
    """A folded literal (bool, None, number, string) or UNKNOWN."""
    if expr is None:
        return UNKNOWN
    if isinstance(expr, cst.Name):
        if expr.value in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[expr.value]
        v = bindings.get(expr.value, UNKNOWN)
        return UNKNOWN if isinstance(v, _ExprBinding) else v
    if isinstance(expr, cst.Attribute):
        name = dotted(expr)
        if name is not None and name in bindings and not isinstance(bindings[name], _ExprBinding):
            return bindings[name]
        return UNKNOWN
    if isinstance(expr, cst.SimpleString):
        try:
            return expr.evaluated_value
        except Exception:  # pragma: no cover - odd prefixes
            return UNKNOWN
    if isinstance(expr, (cst.Integer, cst.Float)):
        try:
            return float(expr.value.replace("_", ""))
        except ValueError:
            return UNKNOWN
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        v = _literal(expr.expression, bindings)
        return -v if isinstance(v, float) else UNKNOWN
    return UNKNOWN


def _mentions_random(expr: cst.CSTNode, facts: FileFacts) -> bool:
    """Does an expression draw a random number (random.random(), torch.rand(1), np.random.rand()...)?"""
    for call in calls(expr):
        q = facts.qualify(call.func) or dotted(call.func) or ""
        if q.startswith(("random.", "numpy.random.", "np.random.")) or q in (
            "torch.rand", "torch.randint", "torch.randn", "torch.rand_like", "torch.bernoulli", "torch.multinomial",
        ):
            return True
        if q.endswith((".random", ".rand", ".uniform", ".randint", ".choice")) and ("rng" in q or "random" in q):
            return True
    return False



#: Attributes a library base class sets from a constructor argument that defaults to None, so that
#: ``self.val_transforms is None`` holds unless the user passes one: pytorch_lightning (< 2.0)
#: ``LightningDataModule.__init__(self, train_transforms=None, val_transforms=None, test_transforms=None,
#: dims=None)`` (pytorch_lightning/core/datamodule.py). Read only when no file of the class assigns them.
_LIBRARY_NONE_ATTRS = {
    ("pytorch_lightning", "LightningDataModule"): frozenset({"train_transforms", "val_transforms", "test_transforms", "dims"}),
    ("lightning", "LightningDataModule"): frozenset({"train_transforms", "val_transforms", "test_transforms", "dims"}),
}


def _library_default_test(test: cst.BaseExpression, where: "_Where") -> Any:
    """``self.val_transforms is None`` (``is not None``) in a method of a subclass of a library class
    whose constructor leaves that attribute None by default (:data:`_LIBRARY_NONE_ATTRS`), when the
    class never assigns it: True (False), the arm the defaults take; UNKNOWN otherwise."""
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return UNKNOWN
    comp = test.comparisons[0]
    if not isinstance(comp.operator, (cst.Is, cst.IsNot)) or not is_none(comp.comparator):
        return UNKNOWN
    name = dotted(test.left) or ""
    cls_name = where.scope.class_name
    if not name.startswith("self.") or name.count(".") != 1 or not cls_name:
        return UNKNOWN
    info = where.facts.classes.get(cls_name)
    if info is None or where.facts.attributes.get(cls_name, {}).get(name):
        return UNKNOWN
    attr = name.split(".", 1)[1]
    for base in info.bases:
        q = canonical(base or "")
        key = (q.split(".", 1)[0], q.rsplit(".", 1)[-1])
        if attr in _LIBRARY_NONE_ATTRS.get(key, ()):
            return isinstance(comp.operator, cst.Is)
    return UNKNOWN


def _eval_cond(test: cst.BaseExpression, bindings: Dict[str, Any], facts: FileFacts) -> Any:
    """True/False when the condition folds with the bound parameters; UNKNOWN otherwise (a switch)."""
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        v = _eval_cond(test.expression, bindings, facts)
        return UNKNOWN if v is UNKNOWN else (not v)
    if isinstance(test, cst.BooleanOperation):
        left = _eval_cond(test.left, bindings, facts)
        right = _eval_cond(test.right, bindings, facts)
        if isinstance(test.operator, cst.And):
            if left is False or right is False:
                return False
            if left is True and right is True:
                return True
            return UNKNOWN
        if left is True or right is True:
            return True
        if left is False and right is False:
            return False
        return UNKNOWN
    if isinstance(test, (cst.Name, cst.Attribute)):
        name = dotted(test) or ""
        if _SWITCH_NAME.search(name.rsplit(".", 1)[-1]):
            return UNKNOWN  # a switch stays a switch even when its default is known
        if name in bindings.get(_DEFAULTS, ()):
            return UNKNOWN  # `train=True` left at its default: the caller can turn it off
        v = _literal(test, bindings)
        return UNKNOWN if v is UNKNOWN else bool(v)
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        comp = test.comparisons[0]
        left = _literal(test.left, bindings)
        op = comp.operator
        if isinstance(op, (cst.Equal, cst.NotEqual, cst.Is, cst.IsNot)):
            right = _literal(comp.comparator, bindings)
            if left is UNKNOWN or right is UNKNOWN:
                return UNKNOWN
            same = left == right
            return same if isinstance(op, (cst.Equal, cst.Is)) else not same
        if isinstance(op, (cst.In, cst.NotIn)) and isinstance(comp.comparator, (cst.Tuple, cst.List, cst.Set)):
            if left is UNKNOWN:
                return UNKNOWN
            vals = [_literal(e.value, bindings) for e in comp.comparator.elements]
            if any(v is UNKNOWN for v in vals):
                return UNKNOWN
            return (left in vals) if isinstance(op, cst.In) else (left not in vals)
    return UNKNOWN


def _conditions(stmt: Stmt, scope: Scope, since: Tuple[int, ...] = ()) -> Optional[List[Tuple[cst.BaseExpression, bool]]]:
    """The if-tests (and their polarity) under which ``stmt`` runs, below the block ``since``."""
    ifs = _if_map(scope)
    out: List[Tuple[cst.BaseExpression, bool]] = []
    block = stmt.block[len(since):] if stmt.block[: len(since)] == since else stmt.block
    for i, b in enumerate(block):
        if isinstance(b, int) and b in ifs:
            chain = ifs[b]
            nxt = block[i + 1] if i + 1 < len(block) else None
            if isinstance(nxt, int) and nxt < 10 and nxt not in ifs:
                # else-branch of the k-th element of the chain: every test of the chain is false
                out.extend((t, False) for t in chain[1] if t is not None)
            else:
                tests, pos = chain[1], chain[2]
                out.extend((t, False) for t in tests[:pos] if t is not None)
                out.append((tests[pos], True))
    return out


def _if_map(scope: Scope) -> Dict[int, Tuple[cst.If, List[cst.BaseExpression], int]]:
    cached = getattr(scope, "_tl_if_map", None)
    if cached is not None:
        return cached
    m: Dict[int, Tuple[cst.If, List[cst.BaseExpression], int]] = {}
    for s in scope.stmts:
        if isinstance(s.node, cst.If) and id(s.node) not in m:
            chain: List[cst.If] = []
            node: Any = s.node
            while isinstance(node, cst.If):
                chain.append(node)
                node = node.orelse
            tests = [c.test for c in chain]
            for pos, c in enumerate(chain):
                m.setdefault(id(c), (c, tests, pos))
    scope._tl_if_map = m  # type: ignore[attr-defined]
    return m


def _exclusive(a: Tuple[int, ...], b: Tuple[int, ...], ifs: Dict[int, Any]) -> bool:
    """Are blocks ``a`` and ``b`` the body and the else-branch of the same ``if`` (either way round)?"""
    for x, y in ((a, b), (b, a)):
        if x and len(y) > len(x) and y[: len(x)] == x and x[-1] in ifs:
            marker = y[len(x)]
            if marker < 10 and marker not in ifs:
                return True
    return False


def _reaching(scope: Scope, name: str, before: Stmt) -> List[Any]:
    """``Scope.reaching`` that knows an ``if`` body does not reach its own ``else`` branch (the facts
    pass gives the else-block the body's block as a prefix)."""
    ifs = _if_map(scope)
    out: List[Any] = []
    for a in reversed(scope.assigns.get(name, ())):
        if a.stmt.index >= before.index:
            continue
        if _exclusive(a.stmt.block, before.block, ifs):
            continue
        out.append(a)
        if before.block[: len(a.stmt.block)] == a.stmt.block:
            break
    return out


def _status(conds: Optional[List[Tuple[cst.BaseExpression, bool]]], bindings: Dict[str, Any], facts: FileFacts) -> str:
    """"on" (always runs), "off" (never, given the bindings) or "gated" (depends on a switch)."""
    if not conds:
        return "on"
    gated = False
    for test, polarity in conds:
        v = _eval_cond(test, bindings, facts)
        if v is UNKNOWN:
            gated = True
        elif bool(v) != polarity:
            return "off"
    return "gated" if gated else "on"


# -- the model ---------------------------------------------------------------------------------------


class DataModel:
    """Pipelines, datasets, loaders and roles of one program (see the module docstring)."""

    def __init__(self, program: Any) -> None:
        self.program = program
        self.uses: List[PipelineUse] = []
        self._iter_cache: Dict[Tuple[int, str], Tuple[Optional[str], str, bool]] = {}
        self._build()

    # -- program lookups ---------------------------------------------------------------------------
    def _file_for_module(self, pf: Any, module: str) -> Optional[Any]:
        from trainlint.analysis.program import resolve_module

        try:
            target = resolve_module(module, pf.path, [])
        except (OSError, ValueError):
            return None
        if target is None:
            return None
        real = os.path.realpath(target)
        for f in self.program.files:
            if f.path == real:
                return f
        return None

    def _imported(self, pf: Any, name: str, hops: int = 0) -> Optional[Tuple[Any, str]]:
        """(program file, name in it) that ``name`` (``train_tf`` or ``T.train_tf``) comes from."""
        if hops > 4:
            return None
        q = pf.facts.aliases.qualify_dotted(name)
        if q is None:
            return None
        mod, _, attr = q.rpartition(".")
        if not mod or (mod.endswith(".") and not attr):
            return None
        target = self._file_for_module(pf, mod)
        if target is None or target is pf:
            return None
        for _ in range(3):  # follow re-exports: `from .dataset import TileDataset` in a package __init__
            tf = target.facts
            if attr in tf.classes or tf.function(attr) is not None or attr in tf.module.assigns:
                break
            if tf.aliases.qualify_dotted(attr) is None:
                break
            nxt = self._imported(target, attr, hops + 1) if target is not pf else None
            if nxt is None:
                break
            target, attr = nxt
        return target, attr

    def _function_of_call(self, func: cst.BaseExpression, where: _Where) -> Optional[Tuple[Any, Scope]]:
        name = dotted(func)
        if name is None:
            return None
        if "." not in name:
            s = where.facts.function(name)
            if s is not None and not _assigned_elsewhere(name, where):
                return where.pf, s
            imp = self._imported(where.pf, name)
            if imp is not None:
                s = imp[0].facts.function(imp[1])
                if s is not None:
                    return imp[0], s
            return None
        if name.startswith("self.") and name.count(".") == 1 and where.scope.class_name:
            cls = where.facts.classes.get(where.scope.class_name)
            if cls is not None and name[5:] in cls.methods:
                return where.pf, cls.methods[name[5:]]
            return None
        imp = self._imported(where.pf, name)
        if imp is not None:
            s = imp[0].facts.function(imp[1])
            if s is not None:
                return imp[0], s
        return None

    def _class_of_call(self, func: cst.BaseExpression, where: _Where) -> Optional[Tuple[Any, Any]]:
        name = dotted(func)
        if name is None:
            return None
        if "." not in name and name in where.facts.classes:
            return where.pf, where.facts.classes[name]
        imp = self._imported(where.pf, name)
        if imp is not None and imp[1] in imp[0].facts.classes:
            return imp[0], imp[0].facts.classes[imp[1]]
        return None

    # -- resolving a pipeline ----------------------------------------------------------------------
    def pipelines_of(self, expr: cst.BaseExpression, where: _Where, depth: int = 0) -> List[Pipeline]:
        """Every pipeline ``expr`` may be (several when it is chosen by a condition)."""
        if depth > 12 or expr is None:
            return []
        facts = where.facts
        if isinstance(expr, cst.Call):
            q = canonical(facts.qualify(expr.func) or "")
            kind = _container_kind(q)
            if kind is not None:
                seq = positional(expr)
                ops: List[Op] = []
                if kind == "kornia":  # AugmentationSequential(op1, op2, ...)
                    for a in seq:
                        ops.extend(self.ops_of(a, where, depth + 1))
                else:  # Compose([op1, op2, ...])
                    lst = seq[0] if seq else (kwarg(expr, "transforms") or kwarg(expr, "augmentations"))
                    if lst is not None:
                        ops = self.ops_of(lst, where, depth + 1)
                return [Pipeline(expr, where.pf, ops)]
            op = self._op(expr, where)
            if op is not None:
                return [Pipeline(expr, where.pf, [op], kind="op")]
            if q in ("torch.nn.Sequential",):
                ops = []
                for a in positional(expr):
                    ops.extend(self.ops_of(a, where, depth + 1))
                if ops:
                    return [Pipeline(expr, where.pf, ops)]
                return []
            target = self._function_of_call(expr.func, where)
            if target is not None:
                return self._returned_pipelines(target, expr, where, depth)
            return []
        if isinstance(expr, cst.IfExp):
            v = _eval_cond(expr.test, where.bindings, facts)
            if v is UNKNOWN:
                v = _library_default_test(expr.test, where)
            if v is True:
                return self.pipelines_of(expr.body, where, depth + 1)
            if v is False:
                return self.pipelines_of(expr.orelse, where, depth + 1)
            out = self.pipelines_of(expr.body, where, depth + 1) + self.pipelines_of(expr.orelse, where, depth + 1)
            for p in out:
                p.gated = True
            return out
        if isinstance(expr, cst.Subscript):
            key = _subscript_key(expr, where.bindings)
            if key is UNKNOWN:
                return []
            out = []
            for d, dw in self._dicts_of(expr.value, where, depth + 1):
                if isinstance(d, cst.Dict):
                    for el in d.elements:
                        if isinstance(el, cst.DictElement) and _literal(el.key, dw.bindings) == key:
                            for p in self.pipelines_of(el.value, dw, depth + 1):
                                p.label = p.label or f"{dotted(expr.value) or 'dict'}[{key!r}]"
                                out.append(p)
            return out
        name = dotted(expr)
        if name is None:
            return []
        out: List[Pipeline] = []
        alts = self._values_of(expr, where, depth + 1)
        for value, vw in alts:
            for p in self.pipelines_of(value, vw, depth + 1):
                if len(alts) > 1:
                    p.gated = True
                p.label = p.label or name
                out.append(p)
        return out

    def _values_of(self, expr: cst.BaseExpression, where: _Where, depth: int) -> List[Tuple[cst.BaseExpression, _Where]]:
        """The expressions a name may hold at ``where`` (through assignments, self attributes,
        module globals, imports and bound parameters)."""
        name = dotted(expr)
        if name is None:
            return [(expr, where)]
        if depth > 12:
            return []
        b = where.bindings.get(name)
        if isinstance(b, _ExprBinding):
            return self._values_of(b.expr, b.where, depth + 1) if dotted(b.expr) else [(b.expr, b.where)]
        scope, stmt, facts = where.scope, where.stmt, where.facts
        found = _reaching(scope, name, stmt) if stmt is not None else scope.assigns.get(name, [])[-1:]
        out: List[Tuple[cst.BaseExpression, _Where]] = []
        unconditional = False
        for a in found:
            if a.value is None or a.kind not in ("assign", "with", "aug"):
                continue
            if a.kind == "aug":
                out.extend(self._values_of(expr, where.at(scope, a.stmt), depth + 1))
                out.append((a.value, where.at(scope, a.stmt)))
                continue
            st = _status(_conditions(a.stmt, scope, _common_prefix(a.stmt.block, stmt.block if stmt else ())), where.bindings, facts)
            if st == "off":
                continue
            out.append((a.value, where.at(scope, a.stmt)))
            if st == "on":
                unconditional = True
        if out or found:
            return out
        if name.startswith("self.") and scope.class_name:
            attrs = facts.attributes.get(scope.class_name, {}).get(name, [])
            for a in attrs:
                if a.value is not None and a.kind == "assign":
                    out.append((a.value, where.at(a.scope or scope, a.stmt)))
            return out
        if scope is not facts.module and name not in scope.params():
            mod = facts.module
            for a in mod.assigns.get(name, [])[-1:]:
                if a.value is not None and a.kind == "assign":
                    out.append((a.value, _Where(where.pf, mod, None)))
            if out:
                return out
        head = name.split(".")[0]
        if head in scope.params() and not name.startswith("self."):
            return []
        imp = self._imported(where.pf, name)
        if imp is not None:
            target, attr = imp
            mod = target.facts.module
            for a in mod.assigns.get(attr, [])[-1:]:
                if a.value is not None and a.kind == "assign":
                    out.append((a.value, _Where(target, mod, None)))
        return out

    def _dicts_of(self, expr: cst.BaseExpression, where: _Where, depth: int) -> List[Tuple[cst.BaseExpression, _Where]]:
        """Dict literals an expression may be: itself, through names, or returned by a helper."""
        if depth > 12:
            return []
        if isinstance(expr, cst.Dict):
            return [(expr, where)]
        if isinstance(expr, cst.Call):
            target = self._function_of_call(expr.func, where)
            if target is None:
                return []
            pf, fscope = target
            fw = _Where(pf, fscope, None, _bind(expr, fscope, where))
            out = []
            for value, rstmt in fscope.returns:
                if value is not None:
                    out.extend(self._dicts_of(value, fw.at(fscope, rstmt), depth + 1))
            return out
        if dotted(expr) is None:
            return []
        out = []
        for value, vw in self._values_of(expr, where, depth + 1):
            if value is not expr:
                out.extend(self._dicts_of(value, vw, depth + 1))
        return out

    def _returned_pipelines(self, target: Tuple[Any, Scope], call: cst.Call, where: _Where, depth: int) -> List[Pipeline]:
        pf, fscope = target
        bindings = _bind(call, fscope, where)
        fw = _Where(pf, fscope, None, bindings)
        out: List[Pipeline] = []
        alts = []
        for value, rstmt in fscope.returns:
            if value is None:
                continue
            st = _status(_conditions(rstmt, fscope), bindings, pf.facts)
            if st == "off":
                continue
            alts.append((value, rstmt, st))
            if st == "on":
                break  # this return always runs when reached: the later ones are dead for these arguments
        for value, rstmt, st in alts:
            for p in self.pipelines_of(value, fw.at(fscope, rstmt), depth + 1):
                if st == "gated" and len(alts) > 1:
                    p.gated = True
                p.label = p.label or f"{fscope.name}()"
                out.append(p)
        return out

    def ops_of(self, expr: cst.BaseExpression, where: _Where, depth: int = 0) -> List[Op]:
        """The ops of a list of transforms (a literal, a variable built with appends, a sum...)."""
        if depth > 14 or expr is None:
            return []
        if isinstance(expr, (cst.List, cst.Tuple)):
            out: List[Op] = []
            for el in expr.elements:
                if isinstance(el, cst.StarredElement):
                    out.extend(self.ops_of(el.value, where, depth + 1))
                else:
                    out.extend(self._element_ops(el.value, where, depth + 1))
            return out
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
            return self.ops_of(expr.left, where, depth + 1) + self.ops_of(expr.right, where, depth + 1)
        if isinstance(expr, cst.IfExp):
            v = _eval_cond(expr.test, where.bindings, where.facts)
            if v is True:
                return self.ops_of(expr.body, where, depth + 1)
            if v is False:
                return self.ops_of(expr.orelse, where, depth + 1)
            return [_gated(o) for o in self.ops_of(expr.body, where, depth + 1) + self.ops_of(expr.orelse, where, depth + 1)]
        if isinstance(expr, cst.Call):
            # list(...) / [*a, *b] / a single op or a nested pipeline
            if dotted(expr.func) == "list" and expr.args:
                return self.ops_of(expr.args[0].value, where, depth + 1)
            return self._element_ops(expr, where, depth + 1)
        name = dotted(expr)
        if name is None:
            return []
        scope, stmt = where.scope, where.stmt
        found = _reaching(scope, name, stmt) if stmt is not None else scope.assigns.get(name, [])[-1:]
        segments: List[List[Op]] = []  # latest first
        base = None
        plain = [a for a in found if a.kind == "assign" and a.value is not None]
        for a in found:
            if a.value is None or a.kind not in ("assign", "aug"):
                continue
            st = _status(_conditions(a.stmt, scope, _common_prefix(a.stmt.block, stmt.block if stmt else ())), where.bindings, where.facts)
            if st == "off":
                continue
            ops = self.ops_of(a.value, where.at(scope, a.stmt), depth + 1)
            if st == "gated" or (a.kind == "assign" and len(plain) > 1):
                ops = [_gated(o) for o in ops]
            segments.append(ops)
            if base is None or a.stmt.index > base.stmt.index:
                base = a
            dominates = stmt is None or stmt.block[: len(a.stmt.block)] == a.stmt.block
            if a.kind == "aug" and dominates:
                segments.append(self.ops_of(expr, where.at(scope, a.stmt), depth + 1))  # what it extends
                break
        out: List[Op] = [o for seg in reversed(segments) for o in seg]
        if base is None:
            vals = self._values_of(expr, where, depth + 1)
            for value, vw in vals:
                if value is not expr:
                    out.extend(self.ops_of(value, vw, depth + 1))
            return out
        # mutations between the assignment and the use: ops.append(...), ops.extend([...]), ops.insert(i, ...)
        end = stmt.index if stmt is not None else 1 << 30
        for s in scope.stmts:
            if s.index <= base.stmt.index or s.index >= end:
                continue
            node = s.node
            if not (isinstance(node, cst.Expr) and isinstance(node.value, cst.Call)):
                continue
            call = node.value
            if not (isinstance(call.func, cst.Attribute) and dotted(call.func.value) == name):
                continue
            meth = call.func.attr.value
            args = positional(call)
            if meth == "append" and args:
                new = self._element_ops(args[0], where.at(scope, s), depth + 1)
            elif meth == "extend" and args:
                new = self.ops_of(args[0], where.at(scope, s), depth + 1)
            elif meth == "insert" and len(args) > 1:
                new = self._element_ops(args[1], where.at(scope, s), depth + 1)
            else:
                continue
            st = _status(_conditions(s, scope, _common_prefix(s.block, base.stmt.block)), where.bindings, where.facts)
            if st == "off":
                continue
            out.extend(_gated(o) for o in new) if st == "gated" else out.extend(new)
        return out

    def _element_ops(self, expr: cst.BaseExpression, where: _Where, depth: int) -> List[Op]:
        if isinstance(expr, cst.IfExp):
            return self.ops_of(expr, where, depth)
        if isinstance(expr, cst.Call):
            q = canonical(where.facts.qualify(expr.func) or "")
            if _container_kind(q) is not None:
                return [o for p in self.pipelines_of(expr, where, depth + 1) for o in p.ops]
            op = self._op(expr, where)
            return [op] if op is not None else []
        if isinstance(expr, (cst.Name, cst.Attribute)):
            out = []
            for value, vw in self._values_of(expr, where, depth + 1):
                if isinstance(value, (cst.List, cst.Tuple, cst.BinaryOperation)):
                    out.extend(self.ops_of(value, vw, depth + 1))
                else:
                    out.extend(self._element_ops(value, vw, depth + 1))
            return out
        return []

    def _op(self, call: cst.Call, where: _Where) -> Optional[Op]:
        """One transform call classified random / deterministic (None: not a known transform)."""
        q = canonical(where.facts.qualify(call.func) or "")
        if not q:
            return None
        parts = q.split(".")
        short = parts[-1]
        family = None
        if parts[0] == "torchvision" and len(parts) > 2 and parts[1] == "transforms":
            family = "torchvision"
        elif parts[0] in ("albumentations", "A") and len(parts) >= 2:
            family = "albumentations"
        elif parts[0] == "kornia" and len(parts) > 2 and parts[1] == "augmentation":
            family = "kornia"
        if family is None:
            return None
        bindings = where.bindings
        p_expr = kwarg(call, "p") if kwarg(call, "p") is not None else kwarg(call, "prob")
        if family == "torchvision" and p_expr is None and short in ("RandomHorizontalFlip", "RandomVerticalFlip", "RandomGrayscale"):
            pos = positional(call)
            p_expr = pos[0] if pos else None
        if family == "torchvision" and p_expr is None and short == "RandomApply":
            pos = positional(call)
            p_expr = pos[1] if len(pos) > 1 else None
        p = _literal(p_expr, bindings) if p_expr is not None else UNKNOWN
        p_from_config = p_expr is not None and p is UNKNOWN
        if family == "torchvision":
            if short in TORCHVISION_DETERMINISTIC or short in _TV_CONTAINERS:
                return Op(call, short, False, False, where.pf)
            if short not in TORCHVISION_RANDOM:
                return Op(call, short, False, False, where.pf)
            random = True
            if short in _P_OPS and p is not UNKNOWN and isinstance(p, float):
                if p <= 0:
                    return None
                if p >= 1 and short in _FLIPS:
                    random = False
            if short == "ColorJitter" and not call.args:
                random = False  # all factors 0: identity
            if short == "GaussianBlur":
                sigma = kwarg(call, "sigma")
                pos = positional(call)
                if sigma is None and len(pos) > 1:
                    sigma = pos[1]
                if sigma is not None and isinstance(_literal(sigma, bindings), float):
                    random = False
            return Op(call, short, random, p_from_config, where.pf)
        if family == "albumentations":
            if short in _ALB_DETERMINISTIC or short in _ALB_CONTAINERS or not short[:1].isupper():
                return Op(call, short, False, False, where.pf)
            if isinstance(p, float):
                if p <= 0:
                    return None
                if p >= 1 and short in _FLIPS:
                    return Op(call, short, False, False, where.pf)
            return Op(call, short, True, p_from_config, where.pf)
        # kornia
        if short in _KORNIA_DETERMINISTIC or short in _KORNIA_CONTAINERS:
            return Op(call, short, False, False, where.pf)
        if short.startswith("Random") or short in ("ColorJitter", "ColorJiggle", "RandAugment", "TrivialAugment", "AutoAugment"):
            if isinstance(p, float):
                if p <= 0:
                    return None
                if p >= 1 and short in _FLIPS | {"RandomHorizontalFlip", "RandomVerticalFlip"}:
                    return Op(call, short, False, False, where.pf)
            return Op(call, short, True, p_from_config, where.pf)
        return Op(call, short, False, False, where.pf)

    # -- custom dataset classes ------------------------------------------------------------------
    def _class_pipeline(self, call: cst.Call, cls_pf: Any, cls: Any, where: _Where) -> Optional[Pipeline]:
        """Random branches in a Dataset class's ``__getitem__`` (and the helpers it calls), and a
        pipeline the class builds itself in ``__init__``."""
        getitem = cls.methods.get("__getitem__")
        init = cls.methods.get("__init__")
        bindings: Dict[str, Any] = {}
        attr_defaults: Set[str] = set()
        if init is not None:
            params = _bind(call, init, where)
            # self.train = train  ->  "self.train" bound
            for a_name, assigns in cls_pf.facts.attributes.get(cls.name, {}).items():
                if len(assigns) != 1 or assigns[0].scope is not init:
                    continue
                v = assigns[0].value
                if isinstance(v, cst.Name) and v.value in params:
                    bindings[a_name] = params[v.value]
                    if v.value in params.get(_DEFAULTS, ()):
                        attr_defaults.add(a_name)
                else:
                    lit = _literal(v, params)
                    if lit is not UNKNOWN:
                        bindings[a_name] = lit
            bindings.update({k: v for k, v in params.items()})
            bindings[_DEFAULTS] = set(params.get(_DEFAULTS, ())) | attr_defaults
        ops: List[Op] = []
        if getitem is not None:
            ops.extend(self._random_branches(cls_pf, getitem, bindings, cls, set()))
        if init is not None:
            # self.transform = Compose([...]) built by the class itself
            iw = _Where(cls_pf, init, None, bindings)
            for a_name, assigns in cls_pf.facts.attributes.get(cls.name, {}).items():
                for a in assigns:
                    if a.scope is not init or not isinstance(a.value, cst.Call):
                        continue
                    q = canonical(cls_pf.facts.qualify(a.value.func) or "")
                    if _container_kind(q) is None:
                        continue
                    if not _attr_used(cls, a_name, getitem):
                        continue
                    st = _status(_conditions(a.stmt, init), bindings, cls_pf.facts)
                    if st == "off":
                        continue
                    for p in self.pipelines_of(a.value, iw.at(init, a.stmt), 1):
                        ops.extend(_gated(o) if (st == "gated" or len(assigns) > 1) else o for o in p.ops)
        if not any(o.random for o in ops):
            return None
        return Pipeline(cls.node, cls_pf, ops, label=cls.name, kind="dataset-class")

    def _random_branches(self, pf: Any, fscope: Scope, bindings: Dict[str, Any], cls: Any, seen: Set[int], gated_by_caller: bool = False) -> List[Op]:
        if id(fscope) in seen or len(seen) > 8:
            return []
        seen.add(id(fscope))
        facts = pf.facts
        out: List[Op] = []
        ifs = _if_map(fscope)
        for _, (ifnode, tests, pos) in list(ifs.items()):
            if pos != 0 or not _mentions_random(ifnode.test, facts):
                continue
            if _is_trivial_body(ifnode.body) or not _looks_like_augmentation(ifnode.body):
                continue  # random sampling (pick a negative pair, resample) is not augmentation
            # find the statement of this If to know what it sits under
            stmt = next((s for s in fscope.stmts if s.node is ifnode), None)
            if stmt is None:
                continue
            conds = _conditions(stmt, fscope) or []
            st = _status(conds, bindings, facts)
            if st == "off":
                continue
            own = _split_random_test(ifnode.test, facts)
            own_st = _status([(t, True) for t in own], bindings, facts)
            if own_st == "off":
                continue
            exit_st = _early_exit(fscope, stmt, bindings, facts)
            if exit_st == "off":
                continue  # `if not self.train: return ...` before it, and this is not the training instance
            gated = gated_by_caller or st == "gated" or own_st == "gated" or exit_st == "gated"
            where = f"{cls.name}.{fscope.name}" if fscope.class_name else f"{fscope.name}()"
            out.append(Op(ifnode, f"a random branch in {where}", True, gated, pf))
        # helpers called from here: self.augment(x), augment(x)
        for s in fscope.stmts:
            if not isinstance(s.node, (cst.Assign, cst.Expr, cst.Return, cst.AugAssign, cst.AnnAssign)):
                continue
            exit_st = _early_exit(fscope, s, bindings, facts)
            if exit_st == "off":
                continue
            value = s.node.value
            if value is None:
                continue
            for call in calls(value):
                target = None
                name = dotted(call.func) or ""
                if name.startswith("self.") and name.count(".") == 1 and name[5:] in cls.methods:
                    target = (pf, cls.methods[name[5:]])
                elif "." not in name and name:
                    f = facts.function(name)
                    if f is not None:
                        target = (pf, f)
                if target is None:
                    continue
                st = _status(_conditions(s, fscope), bindings, facts)
                if st == "off":
                    continue
                out.extend(self._random_branches(target[0], target[1], bindings if target[1].class_name else {}, cls, seen, gated_by_caller or st == "gated"))
        return out

    # -- datasets and their roles ----------------------------------------------------------------
    def _build(self) -> None:
        for pf in self.program.files:
            for scope, stmt, node in _candidates(pf):
                where = _Where(pf, scope, stmt)
                if isinstance(node, cst.Call):
                    self._maybe_dataset(node, where, stmt)
                else:
                    self._scan_value(node, where, stmt)
            for scope, stmt, call in _batch_candidates(pf):
                self._maybe_batch_use(call, _Where(pf, scope, stmt), stmt)

    def _maybe_batch_use(self, call: cst.Call, where: _Where, stmt: Stmt) -> None:
        """A pipeline applied to the batch inside a loop (``x = gpu_aug(x)``, kornia style): the loop's
        role is the pipeline's role."""
        pipelines = [p for p in self.pipelines_of(call.func, where) if p.random_ops]
        if not pipelines:
            return
        role, evidence, tta = None, "", False
        for loop in reversed(stmt.loops):
            if not isinstance(loop, cst.For):
                continue
            if _is_range_call(loop.iter):
                target = (dotted(loop.target) or "").lower()
                if "epoch" not in target and not _trains(loop.body):
                    tta = True  # several passes over the same batch
                continue
            r = self._loop_role(loop, where, stmt)
            if r is not None:
                role, evidence = r[0], r[1].replace("iterated", "applied to the batch", 1)
            break
        if role is None:
            return
        value = getattr(stmt.node, "value", None)
        if value is not None and _in_range_comprehension(value, call):
            tta = True
        for p in pipelines:
            self.uses.append(PipelineUse(p, call, call, where.pf, role, evidence, True, tta or bool(_TTA_NAME.search(p.label)), "batch"))

    def _scan_value(self, value: cst.BaseExpression, where: _Where, stmt: Stmt) -> None:
        # comprehensions over literal keys: {x: ImageFolder(join(d, x), tf[x]) for x in ["train", "val"]}
        if isinstance(value, (cst.DictComp, cst.ListComp, cst.GeneratorExp)):
            comp = value.for_in
            names = _targets_of(comp.target)
            if len(names) == 1 and isinstance(comp.iter, (cst.List, cst.Tuple)) and comp.inner_for_in is None:
                for el in comp.iter.elements:
                    lit = _literal(el.value, where.bindings)
                    if lit is UNKNOWN:
                        continue
                    b = dict(where.bindings)
                    b[names[0]] = lit
                    inner = value.value if isinstance(value, cst.DictComp) else value.elt
                    self._scan_value(inner, _Where(where.pf, where.scope, stmt, b), stmt)
                return
        for call in calls(value):
            self._maybe_dataset(call, where, stmt)

    def _maybe_dataset(self, call: cst.Call, where: _Where, stmt: Stmt) -> None:
        facts = where.facts
        q = canonical(facts.qualify(call.func) or "")
        if _container_kind(q) is not None or q.startswith(("torchvision.transforms", "albumentations", "kornia")):
            return
        arg_exprs: List[cst.BaseExpression] = []
        for a in call.args:
            if a.keyword is not None:
                kw = a.keyword.value
                if kw in TRANSFORM_KWS and kw not in _NOT_INPUT_TRANSFORM:
                    arg_exprs.append(a.value)
        tv_dataset = q.startswith("torchvision.datasets.")
        cls = None if tv_dataset else self._class_of_call(call.func, where)
        if not arg_exprs and (tv_dataset or cls is not None):
            for i, a in enumerate(call.args):
                if a.keyword is None and a.star == "" and i >= 1 and isinstance(a.value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)):
                    if cls is not None:
                        init = cls[1].methods.get("__init__")
                        params = init.params() if init is not None else []
                        pname = params[i + 1] if init is not None and i + 1 < len(params) else ""
                        if pname in _NOT_INPUT_TRANSFORM or not re.search(r"transform|aug|tf|pipeline|preprocess", pname):
                            continue
                    arg_exprs.append(a.value)
        found: List[Tuple[Pipeline, cst.CSTNode]] = []
        for e in arg_exprs:
            for p in self.pipelines_of(e, where):
                if p.ops:
                    found.append((p, e))
        if cls is not None and _looks_like_dataset(cls[1]):
            p = self._class_pipeline(call, cls[0], cls[1], where)
            if p is not None:
                found.append((p, call))
        if not found:
            return
        role, evidence, structural = self.dataset_role(call, where, stmt, q, tv_dataset, cls)
        tta = (
            any(_TTA_NAME.search(n) for n in names_in(call))
            or any(_TTA_NAME.search(p.label) for p, _ in found)
            or "(TTA)" in evidence
        )
        if role is not None and evidence and not evidence.startswith(("iterated", "passed", "returned", "its random_split", "its train_test_split")):
            # the role came from train=False / split= / a path: does the code that reads it agree?
            c_role, consumer_ev, c_structural = self._consumer_role(call, where, stmt)
            if c_structural and c_role is not None and c_role != role:
                role = None  # CIFAR10(train=False) iterated in the loop that calls backward(): used for training
            tta = tta or "(TTA)" in consumer_ev
        for p, e in found:
            self.uses.append(PipelineUse(p, call, e, where.pf, role, evidence, structural, tta))
        if role != "eval" and not tta and any(p.random_ops for p, _ in found):
            cut = self._eval_cut(call, where, stmt)
            if cut is not None:  # a validation part cut from this (augmenting) dataset shares its pipeline
                for p, e in found:
                    self.uses.append(PipelineUse(p, call, e, where.pf, "eval", cut, True, False, cut=True))

    def _eval_cut(self, call: cst.Call, where: _Where, stmt: Stmt) -> Optional[str]:
        """Evidence that an evaluation set is cut from the dataset built by ``call``: a ``random_split`` /
        ``train_test_split`` part, a ``Subset`` or a loader with a ``SubsetRandomSampler`` over it, that is
        used for evaluation. Such a part reads the dataset's transform (augmentation included)."""
        node = stmt.node
        if not isinstance(node, cst.Assign) or node.value is not call or len(node.targets) != 1:
            return None
        name = dotted(node.targets[0].target)
        text = where.pf.ctx.source.text
        if name is None or ".transform =" in text or ".transforms =" in text:
            return None  # the parts' transforms are reassigned somewhere: too subtle to judge
        for uw, us, use, how in self._uses_of_name(name, where, stmt):
            if how != "stmt" or not isinstance(use, cst.Assign) or len(use.targets) != 1:
                continue
            target = use.targets[0].target
            for c in calls(use.value):
                fn = (canonical(uw.facts.qualify(c.func) or dotted(c.func) or "")).rsplit(".", 1)[-1]
                first = c.args[0].value if c.args and c.args[0].keyword is None else None
                if first is None or dotted(first) != name:
                    continue
                if fn in ("random_split", "train_test_split") and c is use.value and isinstance(target, (cst.Tuple, cst.List)):
                    for el in target.elements:
                        part = dotted(el.value)
                        r, ev, structural = self._name_role(part, uw, us, "dataset") if part else (None, "", False)
                        if r == "eval" and structural:
                            return f"its {fn}() subset `{part}` is {ev}"
                bound = dotted(target)
                if bound is None:
                    continue
                if fn == "Subset":
                    kind = "dataset" if c is use.value else "loader"
                    r, ev, structural = self._name_role(bound, uw, us, kind)
                    if r == "eval" and structural:
                        return f"its Subset `{bound}` is {ev}" if kind == "dataset" else \
                            f"the loader `{bound}` reads a Subset of it and is {ev}"
                if fn.endswith("DataLoader"):
                    sampler = keyword_arg(c, "sampler")
                    sname = (dotted(sampler.value.func) or "") if sampler is not None and isinstance(sampler.value, cst.Call) else ""
                    if sname.rsplit(".", 1)[-1] in ("SubsetRandomSampler", "SubsetSampler"):
                        r, ev, structural = self._name_role(bound, uw, us, "loader")
                        if r == "eval" and structural:
                            return f"the loader `{bound}` reads part of it through {sname.rsplit('.', 1)[-1]} and is {ev}"
        return None

    def dataset_role(self, call: cst.Call, where: _Where, stmt: Stmt, q: str, tv_dataset: bool, cls) -> Tuple[Optional[str], str, bool]:
        b = where.bindings
        train_kw = kwarg(call, "train")
        if train_kw is None and kwarg(call, "is_train") is not None:
            train_kw = kwarg(call, "is_train")
        short = q.rsplit(".", 1)[-1]
        if train_kw is None and tv_dataset and short in _TV_TRAIN_FLAG:
            pos = positional(call)
            if len(pos) > 1:
                train_kw = pos[1]
        if train_kw is not None:
            v = _literal(train_kw, b)
            if v is UNKNOWN:
                v = _eval_cond(train_kw, b, where.facts)  # is_train=(x == "train")
            if v is True:
                return "train", "train=True", True
            if v is False:
                return "eval", "train=False", True
        elif tv_dataset and short in _TV_TRAIN_FLAG:
            return "train", f"{short} defaults to train=True", True
        for a in call.args:
            if a.keyword is not None and a.keyword.value in _SPLIT_KWS:
                role = _word_role(_literal(a.value, b))
                if role:
                    return role, f"{a.keyword.value}={_literal(a.value, b)!r}", True
        # a "val" / "train" path component or split word among the literal arguments
        role = None
        text = ""
        for a in call.args:
            if a.keyword is not None and (a.keyword.value in TRANSFORM_KWS or a.keyword.value in _NOT_INPUT_TRANSFORM):
                continue
            found = _path_role(a.value, b)
            if found is None:
                continue
            r, lit = found
            if role is not None and r != role:
                role = "conflict"
                break
            role, text = r, text or lit
        if role in ("train", "eval"):
            return role, f"{PATH_EVIDENCE} {text!r}", True
        # who consumes the dataset
        return self._consumer_role(call, where, stmt)

    def _consumer_role(self, call: cst.Call, where: _Where, stmt: Stmt) -> Tuple[Optional[str], str, bool]:
        node = stmt.node
        scope = where.scope
        target = None
        if isinstance(node, (cst.Assign, cst.AnnAssign)) and node.value is call:
            tgts = node.targets if isinstance(node, cst.Assign) else [node]
            if len(tgts) == 1:
                target = dotted(tgts[0].target)
        elif isinstance(node, cst.Return):
            # returned by a helper / a Lightning hook
            if scope.name in _EVAL_LOADER_METHODS:
                return "eval", f"returned by {scope.name}()", True
            if scope.name == "train_dataloader":
                return "train", "returned by train_dataloader()", True
        if isinstance(node, cst.Return) or (isinstance(node, (cst.Assign, cst.Expr)) and node.value is not call):
            # DataLoader(MyDataset(...)) inline, or return DataLoader(...)
            parent_loader = _enclosing_loader(node.value if node.value is not None else None, call, where.facts)
            if parent_loader is not None:
                return self._loader_value_role(parent_loader, node, where, stmt)
        if target is None:
            return None, "", False
        return self._name_role(target, where, stmt, kind="dataset")

    def _loader_value_role(self, loader_call: cst.Call, node, where: _Where, stmt: Stmt) -> Tuple[Optional[str], str, bool]:
        r = self._loader_role_from_stmt(loader_call, stmt, where)
        if r is not None:
            return r[0], r[1], True
        if isinstance(node, cst.Assign) and node.value is loader_call and len(node.targets) == 1:
            t = dotted(node.targets[0].target)
            if t is not None:
                return self._name_role(t, where, stmt, kind="loader")  # names, as a weak signal
        return None, "", False

    def _name_role(self, name: str, where: _Where, stmt: Stmt, kind: str) -> Tuple[Optional[str], str, bool]:
        """Role of a dataset or loader bound to ``name`` at ``stmt``, from how it is used."""
        roles: List[Tuple[str, str]] = []
        for user_where, user_stmt, expr, how in self._uses_of_name(name, where, stmt):
            r = self._role_of_use(expr, how, user_where, user_stmt, name, kind)
            if r is not None:
                if r[0] == "eval" and _in_repeated_passes(expr, how, user_stmt, name, user_where):
                    r = ("eval", r[1] + ", in several averaged passes (TTA)")
                roles.append(r)
        kinds = {r for r, _ in roles}
        if len(kinds) == 1:
            r, ev = roles[0]
            if any("(TTA)" in e for _, e in roles):
                ev = next(e for _, e in roles if "(TTA)" in e)
            return r, ev, True
        if len(kinds) > 1:
            return None, "used for both", False
        # names only: a weak signal
        r = _word_role_of_name(name)
        if r is not None:
            return r, f"named {name}", False
        return None, "", False

    def _uses_of_name(self, name: str, where: _Where, stmt: Stmt):
        """(where, stmt, expression-using-it, how) for statements after ``stmt`` in the same scope (or
        in other methods of the class for ``self.x``)."""
        scopes: List[Scope] = [where.scope]
        if name.startswith("self.") and where.scope.class_name:
            cls = where.facts.classes.get(where.scope.class_name)
            if cls is not None:
                scopes = list(cls.methods.values())
        if where.scope is where.facts.module and "." not in name:
            # a module-level loader read inside the file's functions (`def main(): evaluate(model, val_loader)`)
            for fn in where.facts.functions:
                if name not in fn.assigns and name not in fn.params():
                    scopes.append(fn)
        for sc in scopes:
            for s in sc.stmts:
                if sc is where.scope and s.index <= stmt.index:
                    continue
                n = s.node
                if isinstance(n, cst.For):
                    if name in names_in(n.iter):
                        yield where.at(sc, s), s, n, "iter"
                    continue
                if not isinstance(n, (cst.Assign, cst.AnnAssign, cst.Expr, cst.Return, cst.AugAssign)) or n.value is None:
                    continue
                if name not in names_in(n.value):
                    continue
                yield where.at(sc, s), s, n, "stmt"

    def _role_of_use(self, node, how: str, where: _Where, stmt: Stmt, name: str, kind: str) -> Optional[Tuple[str, str]]:
        facts = where.facts
        if how == "iter":
            return self._loop_role(node, where, stmt)
        value = node.value
        if kind == "dataset" and isinstance(node, cst.Assign) and isinstance(value, cst.Call):
            r = self._split_role(node, value, where, stmt, name)
            if r is not None:
                return r
        it = _iterator_over(node, name)
        if it is not None:
            # it = iter(loader) ... batch = next(it) / it.next() in a loop: the loader of that loop
            r = self._drawn_role(it, name, where, stmt)
            if r is not None:
                return r
        if _iterated_by_comprehension(value, name):
            # [model(x) for x, _ in loader]
            if _under_no_grad(node, where.scope, facts):
                return "eval", "iterated under torch.no_grad()"
            if _eval_mode_before(where.scope, stmt):
                return "eval", "iterated after model.eval()"
        if True:
            for call in calls(value):
                for i, a in enumerate(call.args):
                    if dotted(a.value) != name:
                        # comprehension/iter: `for x in tqdm(loader)` is handled as iter
                        continue
                    r = self._arg_role(call, i, a, where, stmt, kind)
                    if r is not None:
                        return r
            if isinstance(node, cst.Return):
                idx = returned_index(value, name)
                if idx is not None:
                    if where.scope.name in _EVAL_LOADER_METHODS and idx == -1:
                        return "eval", f"returned by {where.scope.name}()"
                    if where.scope.name == "train_dataloader" and idx == -1:
                        return "train", "returned by train_dataloader()"
                    r = self.returned_role(where.pf, where.scope, idx, kind)
                    if r is not None and r[2]:
                        return r[0], r[1]
        return None

    def returned_role(self, pf: Any, fscope: Scope, idx: int, kind: str) -> Optional[Tuple[str, str, bool]]:
        """The role of a dataset or loader that helper ``fscope`` returns (``idx`` -1: the value itself,
        k: element k of a returned tuple), read from its callers: what the caller binds it to and how
        that is used (``test_loader = load_testing(...)`` iterated after ``model.eval()``; ``src, tar =
        load_training(...), load_testing(...)``; ``evaluate(model, load_testing(...))``). Structural when
        the callers' uses agree on one role; otherwise, as a weak signal, the names the callers give it
        (``named test_loader = load_testing(...)``). Lightning's loader hooks are called by the library
        (see ``_consumer_role``), so they have no project callers to read."""
        if fscope.kind != "function" or fscope.name in _EVAL_LOADER_METHODS or fscope.name == "train_dataloader":
            return None
        key = (id(fscope), f"return:{idx}:{kind}")
        if key in self._iter_cache:
            r = self._iter_cache[key]
            return r if r[0] else None
        self._iter_cache[key] = (None, "", False)
        fname = fscope.name
        found: List[Tuple[str, str]] = []
        weak: List[Tuple[str, str]] = []
        for f in self.program.files:
            if fname not in f.ctx.source.text:
                continue
            for sc in f.facts.scopes():
                if sc is fscope:
                    continue
                for s in sc.stmts:
                    n = s.node
                    value = n.iter if isinstance(n, cst.For) else getattr(n, "value", None)
                    if value is None or isinstance(n, cst.BaseCompoundStatement) and not isinstance(n, cst.For):
                        continue
                    for call in calls(value):
                        callee = dotted(call.func) or ""
                        if callee.rsplit(".", 1)[-1] != fname:
                            continue
                        w = _Where(f, sc, s)
                        target = self._function_of_call(call.func, w)
                        if target is not None and target[1] is not fscope:
                            continue  # another function of the same name
                        r = self._caller_binding_role(n, call, idx, w, s, kind)
                        if r is None:
                            continue
                        role, ev, structural, bound = r
                        if structural:
                            found.append((role, f"{ev}, as {bound} = {fname}(...)" if bound else ev))
                        else:
                            weak.append((role, f"named {bound} = {fname}(...)"))
        out: Tuple[Optional[str], str, bool] = (None, "", False)
        roles = {r for r, _ in found}
        if len(roles) == 1:
            out = (found[0][0], found[0][1], True)
        elif not roles and len({r for r, _ in weak}) == 1:
            out = (weak[0][0], weak[0][1], False)
        self._iter_cache[key] = out
        return out if out[0] else None

    def _caller_binding_role(self, node: cst.CSTNode, call: cst.Call, idx: int, where: _Where, stmt: Stmt, kind: str) -> Optional[Tuple[str, str, bool, str]]:
        """(role, evidence, structural, bound name) of what the statement ``node`` does with element
        ``idx`` of ``call``'s result (see :meth:`returned_role`)."""
        if isinstance(node, cst.For):
            if node.iter is call and idx == -1:
                r = self._loop_role(node, where, stmt)
                return (r[0], r[1], True, "") if r is not None else None
            return None
        bound: Optional[str] = None
        if isinstance(node, cst.Assign) and len(node.targets) == 1:
            t = node.targets[0].target
            if node.value is call:
                if idx == -1:
                    bound = dotted(t)
                elif isinstance(t, (cst.Tuple, cst.List)) and idx < len(t.elements):
                    bound = dotted(t.elements[idx].value)
            elif idx == -1 and isinstance(node.value, cst.Tuple) and isinstance(t, (cst.Tuple, cst.List)):
                # a, b = load_training(...), load_testing(...)
                vals = node.value.elements
                for k, el in enumerate(vals):
                    if el.value is call and len(vals) == len(t.elements) and not isinstance(t.elements[k], cst.StarredElement):
                        bound = dotted(t.elements[k].value)
        if bound is not None:
            try:
                r, ev, structural = self._name_role(bound, where, stmt, kind)
            except RecursionError:  # pragma: no cover - pathological code
                return None
            return (r, ev, structural, bound) if r is not None else None
        if idx != -1:
            return None
        # evaluate(model, load_testing(...)): the role of that argument
        value = getattr(node, "value", None)
        for outer in calls(value) if value is not None else ():
            for i, a in enumerate(outer.args):
                if a.value is call:
                    r = self._arg_role(outer, i, a, where, stmt, kind)
                    return (r[0], r[1], True, "") if r is not None else None
        return None

    def _drawn_role(self, it: str, name: str, where: _Where, stmt: Stmt) -> Optional[Tuple[str, str]]:
        """The role of the loop that draws batches from the iterator ``it`` (``next(it)``, ``it.next()``,
        ``it.__next__()``)."""
        for user_stmt in where.scope.stmts:
            if user_stmt.index <= stmt.index or not _draws_next(getattr(user_stmt.node, "value", None), it):
                continue
            loop = user_stmt.loops[-1] if user_stmt.loops else None
            if isinstance(loop, (cst.For, cst.While)):
                r = self._loop_role(loop, where.at(where.scope, user_stmt), user_stmt)
                if r is not None:
                    return r[0], f"read with next(iter({name})) {r[1].replace('iterated ', '', 1)}"
        return None

    def _split_role(self, node: cst.Assign, call: cst.Call, where: _Where, stmt: Stmt, name: str) -> Optional[Tuple[str, str]]:
        """``train_ds, val_ds = random_split(ds, [...])``: a validation subset of an augmented dataset still
        gets its transform. Returns the eval role when a subset is used for evaluation."""
        q = canonical(where.facts.qualify(call.func) or dotted(call.func) or "")
        if q.rsplit(".", 1)[-1] not in ("random_split", "train_test_split") or not call.args or dotted(call.args[0].value) != name:
            return None
        if ".transform =" in where.pf.ctx.source.text or ".transforms =" in where.pf.ctx.source.text:
            return None  # the subsets' transforms are reassigned somewhere: too subtle to judge
        if len(node.targets) != 1 or not isinstance(node.targets[0].target, (cst.Tuple, cst.List)):
            return None
        for el in node.targets[0].target.elements:
            sub = dotted(el.value)
            if sub is None:
                continue
            r, ev, structural = self._name_role(sub, where, stmt, kind="dataset")
            if r == "eval" and structural:
                return "eval", f"its {q.rsplit('.', 1)[-1]}() subset `{sub}` is {ev}"
        return None

    def _arg_role(self, call: cst.Call, i: int, a: cst.Arg, where: _Where, stmt: Stmt, kind: str) -> Optional[Tuple[str, str]]:
        """The role a dataset or loader gets by being argument ``i`` of ``call``."""
        facts = where.facts
        q = canonical(facts.qualify(call.func) or "")
        kw = a.keyword.value if a.keyword is not None else None
        attr = call.func.attr.value if isinstance(call.func, cst.Attribute) else ""
        if kw in ("eval_dataset", "val_dataset", "test_dataset", "val_dataloaders", "eval_dataloader", "valid_dataloader", "test_dataloaders"):
            return "eval", f"passed as {kw}="
        if kw in ("train_dataset", "train_dataloaders", "train_dataloader", "train_loader"):
            return "train", f"passed as {kw}="
        if attr in ("validate", "test", "predict") and _looks_like_trainer(call.func.value):
            return "eval", f"passed to trainer.{attr}()"
        if attr == "fit" and _looks_like_trainer(call.func.value) and kw is None:
            pos = [x for x in call.args if x.keyword is None]
            idx = next((k for k, x in enumerate(pos) if x is a), -1)
            if idx == 1:
                return "train", "passed to trainer.fit()"
            if idx == 2:
                return "eval", "passed to trainer.fit() as the validation loader"
        if q.endswith("DataLoader") or (dotted(call.func) or "").endswith("DataLoader"):
            if kind == "dataset" and (i == 0 or kw == "dataset"):
                return self._loader_role_from_stmt(call, stmt, where)  # the loader's own role
            return None
        target = self._function_of_call(call.func, where)
        if target is not None:
            pf, fscope = target
            params = fscope.params()
            if fscope.class_name and params and params[0] == "self":
                params = params[1:]
            pname = kw if kw is not None else (params[i] if i < len(params) else None)
            if pname is None or pname not in fscope.params():
                return None
            return self._param_role(pf, fscope, pname, kind)
        return None

    def _loader_role_from_stmt(self, loader_call: cst.Call, stmt: Stmt, where: _Where) -> Optional[Tuple[str, str]]:
        node = stmt.node
        if isinstance(node, cst.Return):
            if where.scope.name in _EVAL_LOADER_METHODS:
                return "eval", f"returned by {where.scope.name}()"
            if where.scope.name == "train_dataloader":
                return "train", "returned by train_dataloader()"
            idx = -1 if node.value is loader_call else None
            if isinstance(node.value, cst.Tuple):
                idx = next((k for k, el in enumerate(node.value.elements) if el.value is loader_call), None)
            r = self.returned_role(where.pf, where.scope, idx, "loader") if idx is not None else None
            return (r[0], r[1]) if r is not None and r[2] else None
        if isinstance(node, cst.Assign) and node.value is loader_call and len(node.targets) == 1:
            t = dotted(node.targets[0].target)
            if t is not None:
                r, ev, structural = self._name_role(t, where, stmt, kind="loader")
                if r is not None and structural:
                    return r, ev
            return None
        value = getattr(node, "value", None)
        if value is not None:
            for call in calls(value):
                for i, a in enumerate(call.args):
                    if a.value is loader_call:
                        return self._arg_role(call, i, a, where, stmt, "loader")
        return None

    def _param_role(self, pf: Any, fscope: Scope, pname: str, kind: str) -> Optional[Tuple[str, str]]:
        key = (id(fscope), pname)
        if key in self._iter_cache:
            r = self._iter_cache[key]
            return (r[0], r[1]) if r[0] else None
        self._iter_cache[key] = (None, "", False)
        w = _Where(pf, fscope, None)
        first = Stmt(-1, fscope.node, (), ())
        r, ev, structural = self._name_role(pname, w, first, kind)
        if r is not None and not structural:
            r = None
        self._iter_cache[key] = (r, ev, structural)
        return (r, f"{ev} in {fscope.name}()") if r else None

    def _loop_role(self, loop: cst.For, where: _Where, stmt: Stmt) -> Optional[Tuple[str, str]]:
        facts = where.facts
        body_calls = list(calls(loop.body))
        for c in body_calls:
            if isinstance(c.func, cst.Attribute):
                attr = c.func.attr.value
                recv = dotted(c.func.value) or ""
                if attr in ("backward", "manual_backward"):
                    return "train", "iterated in the loop that calls backward()"
                if attr == "step" and re.search(r"opt", recv, re.I):
                    return "train", "iterated in the loop that calls optimizer.step()"
        scope = where.scope
        if _under_no_grad(loop, scope, facts):
            return "eval", "iterated under torch.no_grad()"
        for c in body_calls:
            q = facts.qualify(c.func) or ""
            if q in NO_GRAD_CONTEXTS:
                return "eval", "iterated with torch.no_grad() around the forward pass"
        if _eval_mode_before(scope, stmt):
            return "eval", "iterated after model.eval()"
        return None

    # -- queries ------------------------------------------------------------------------------------
    def eval_uses(self) -> List[PipelineUse]:
        return [u for u in self.uses if u.role == "eval"]

    def train_uses(self) -> List[PipelineUse]:
        return [u for u in self.uses if u.role == "train"]

    def plain_train_uses(self) -> List[PipelineUse]:
        """Training datasets whose pipeline draws nothing: the program trains a baseline without
        augmentation (a notebook that trains with a plain transform, then with an augmenting one)."""
        return [u for u in self.train_uses() if u.structural and u.site == "dataset" and u.pipeline.kind == "compose"
                and not u.pipeline.random_ops]


# -- module helpers ---------------------------------------------------------------------------------


def returned_index(value: Optional[cst.BaseExpression], name: str) -> Optional[int]:
    """-1 when a ``return`` statement's value is ``name`` itself, k when it is element k of a returned
    tuple, None otherwise."""
    if value is None:
        return None
    if dotted(value) == name:
        return -1
    if isinstance(value, cst.Tuple):
        for k, el in enumerate(value.elements):
            if dotted(el.value) == name:
                return k
    return None


def _container_kind(q: str) -> Optional[str]:
    if not q:
        return None
    parts = q.split(".")
    short = parts[-1]
    if parts[0] == "torchvision" and len(parts) > 2 and parts[1] == "transforms" and short in _TV_CONTAINERS:
        return "torchvision"
    if parts[0] == "albumentations" and short in ("Compose", "ReplayCompose", "Sequential"):
        return "albumentations"
    if parts[0] == "kornia" and short in _KORNIA_CONTAINERS:
        return "kornia"
    return None


def _gated(op: Op) -> Op:
    return Op(op.node, op.name, op.random, True, op.file)


def _common_prefix(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[int, ...]:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


def _subscript_key(expr: cst.Subscript, bindings: Dict[str, Any]) -> Any:
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return UNKNOWN
    return _literal(expr.slice[0].slice.value, bindings)


def _targets_of(target: cst.BaseExpression) -> List[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    return []


def _bind(call: cst.Call, fscope: Scope, where: _Where) -> Dict[str, Any]:
    """Parameters of ``fscope`` bound to the call's literal arguments (defaults otherwise)."""
    node = fscope.node
    out: Dict[str, Any] = {}
    if not isinstance(node, cst.FunctionDef):
        return out
    params = [*node.params.posonly_params, *node.params.params]
    names = [p.name.value for p in params]
    if fscope.class_name and names and names[0] in ("self", "cls"):
        params = params[1:]
    defaults: Set[str] = set()
    out[_DEFAULTS] = defaults  # parameters left at their default: a switch the caller did not touch
    for p in [*params, *node.params.kwonly_params]:
        if p.default is not None:
            v = _literal(p.default, {})
            if v is not UNKNOWN:
                out[p.name.value] = v
                defaults.add(p.name.value)
    pos = [a for a in call.args if a.keyword is None and a.star == ""]
    for p, a in zip(params, pos):
        _bind_one(out, p.name.value, a.value, where)
    for a in call.args:
        if a.keyword is not None:
            _bind_one(out, a.keyword.value, a.value, where)
    return out


_DEFAULTS = "<defaults>"


def _bind_one(out: Dict[str, Any], name: str, value: cst.BaseExpression, where: _Where) -> None:
    out.get(_DEFAULTS, set()).discard(name)
    v = _literal(value, where.bindings)
    if v is not UNKNOWN:
        out[name] = v
    else:
        out.pop(name, None)
        if isinstance(value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)):
            out[name] = _ExprBinding(value, where)


def _assigned_elsewhere(name: str, where: _Where) -> bool:
    return bool(where.scope.assigns.get(name)) and where.scope is not where.facts.module and any(
        a.kind != "def" for a in where.scope.assigns.get(name, [])
    )


def _word_role(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return None
    w = v.strip().lower()
    if w in _TRAIN_WORDS:
        return "train"
    if w in _EVAL_WORDS:
        return "eval"
    return None


_PATH_SPLIT = re.compile(r"[/\\]")
_TOKEN_SPLIT = re.compile(r"[_\-.\s]")


def _path_role(expr: cst.BaseExpression, bindings: Dict[str, Any]) -> Optional[Tuple[str, str]]:
    """A role word among the string literals of an argument ("data/val", os.path.join(d, "val"))."""
    roles: Set[str] = set()
    strings: List[str] = []
    stack: List[cst.CSTNode] = [expr]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.SimpleString):
            v = _literal(n, bindings)
            if isinstance(v, str):
                strings.append(v)
            continue
        if isinstance(n, cst.FormattedStringText):
            strings.append(n.value)
            continue
        if isinstance(n, cst.Name) and n.value in bindings and isinstance(bindings[n.value], str):
            strings.append(bindings[n.value])
            continue
        if isinstance(n, (cst.Lambda, cst.Call)) and n is not expr and isinstance(n, cst.Lambda):
            continue
        stack.extend(child_nodes(n))
    matched = ""
    for s in strings:
        if len(s) > 200:
            continue
        for comp in _PATH_SPLIT.split(s):
            comp_l = comp.lower()
            if comp_l == "dev" and ("/dev/" in s or s.startswith("dev/shm")):
                continue  # /dev/shm is a cache, not a dev split
            r = _word_role(comp_l)
            if r is None:
                toks = [t for t in _TOKEN_SPLIT.split(comp_l) if t]
                # "val.csv", "test_list.txt", "train_images"
                if toks:
                    r = _word_role(toks[0])
            if r is not None:
                roles.add(r)
                matched = matched or s
    if len(roles) == 1:
        return roles.pop(), matched
    return None


def _word_role_of_name(name: str) -> Optional[str]:
    last = name.rsplit(".", 1)[-1].lower()
    toks = [t for t in re.split(r"[_\d]+", last) if t]
    if not toks:
        return None
    train = any(t in _TRAIN_WORDS or t in ("tr",) for t in toks)
    ev = any(t in _EVAL_WORDS or t in ("vl", "te") for t in toks)
    if train and not ev:
        return "train"
    if ev and not train:
        return "eval"
    return None


def _enclosing_loader(value: Optional[cst.BaseExpression], inner: cst.Call, facts: FileFacts) -> Optional[cst.Call]:
    if value is None:
        return None
    for call in calls(value):
        if call is inner:
            continue
        name = canonical(facts.qualify(call.func) or dotted(call.func) or "")
        if not name.endswith("DataLoader"):
            continue
        for a in call.args:
            if a.value is inner:
                return call
    return None


def _in_repeated_passes(node: cst.CSTNode, how: str, stmt: Stmt, name: str, where: _Where) -> bool:
    """Is a loader read several times on purpose: inside ``for _ in range(n)`` that trains nothing, or a
    comprehension over ``range(n)`` (``torch.stack([predict(loader) for _ in range(8)]).mean(0)``)?"""
    for loop in stmt.loops:
        if isinstance(loop, cst.For) and _is_range_call(loop.iter):
            target = (dotted(loop.target) or "").lower()
            if "epoch" in target or target in ("ep", "e"):
                continue
            if not any(
                isinstance(c.func, cst.Attribute) and (c.func.attr.value == "backward" or (c.func.attr.value == "step" and "opt" in (dotted(c.func.value) or "")))
                for c in calls(loop.body)
            ):
                return True
    if how == "stmt" and getattr(node, "value", None) is not None:
        stack = [node.value]
        while stack:
            n = stack.pop()
            if isinstance(n, (cst.ListComp, cst.GeneratorExp, cst.SetComp)) and _is_range_call(n.for_in.iter):
                if name in names_in(n.elt):
                    return True
            if isinstance(n, (cst.Lambda, cst.FunctionDef)):
                continue
            stack.extend(child_nodes(n))
    return False


def _eval_mode_before(scope: Scope, stmt: Stmt) -> bool:
    """``model.eval()`` earlier in the same function, with no ``.train()`` between."""
    last = None
    for s in scope.stmts:
        if s.index >= stmt.index:
            break
        n = s.node
        if isinstance(n, cst.Expr) and isinstance(n.value, cst.Call) and isinstance(n.value.func, cst.Attribute):
            a = n.value.func.attr.value
            if a == "eval" and not n.value.args:
                last = "eval"
            elif a == "train" and (not n.value.args or _literal(n.value.args[0].value, {}) is not False):
                last = "train"
    return last == "eval"


def _iterator_over(node: cst.CSTNode, name: str) -> Optional[str]:
    """``it = iter(loader)``: the iterator's name when ``node`` makes one over ``name``."""
    if not isinstance(node, cst.Assign) or len(node.targets) != 1:
        return None
    value, target = node.value, dotted(node.targets[0].target)
    if target is None or not isinstance(value, cst.Call) or not isinstance(value.func, cst.Name) \
            or value.func.value != "iter" or len(value.args) != 1 or dotted(value.args[0].value) != name:
        return None
    return target


def _draws_next(value: Optional[cst.CSTNode], it: str) -> bool:
    """Does ``value`` draw from the iterator ``it``: ``next(it)``, ``it.next()`` (Python 2 era),
    ``it.__next__()``?"""
    for c in calls(value) if value is not None else ():
        if isinstance(c.func, cst.Name) and c.func.value == "next" and c.args and dotted(c.args[0].value) == it:
            return True
        if isinstance(c.func, cst.Attribute) and c.func.attr.value in ("next", "__next__") and dotted(c.func.value) == it:
            return True
    return False


def _iterated_by_comprehension(value: cst.CSTNode, name: str) -> bool:
    stack = [value]
    while stack:
        n = stack.pop()
        if isinstance(n, cst.CompFor):
            if dotted(n.iter) == name or (isinstance(n.iter, cst.Call) and any(dotted(a.value) == name for a in n.iter.args)):
                return True
        if isinstance(n, (cst.Lambda, cst.FunctionDef)):
            continue
        stack.extend(child_nodes(n))
    return False


def _is_range_call(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Call) and dotted(expr.func) in ("range", "trange")


def _looks_like_trainer(expr: cst.BaseExpression) -> bool:
    name = (dotted(expr) or "").rsplit(".", 1)[-1].lower()
    return "trainer" in name


def _looks_like_dataset(cls: Any) -> bool:
    if "__getitem__" not in cls.methods:
        return False
    return True


def _attr_used(cls: Any, attr: str, getitem: Optional[Scope]) -> bool:
    if getitem is None:
        return False
    for s in getitem.stmts:
        n = s.node
        for sub in names_in(n):
            if sub == attr or sub.startswith(attr + "."):
                return True
    return False


def _is_trivial_body(body: cst.BaseSuite) -> bool:
    stmts = body.body if isinstance(body, cst.IndentedBlock) else body.body
    for s in stmts:
        if isinstance(s, cst.SimpleStatementLine):
            if all(isinstance(x, (cst.Pass, cst.Continue, cst.Break)) for x in s.body):
                continue
            if all(isinstance(x, (cst.Return, cst.Raise)) for x in s.body):
                continue  # early exits (resampling, skipping) are not augmentation
        return False
    return True


_AUG_WORD = re.compile(
    r"flip|rot90|rotate|rotation|transpose|crop|jitter|noise|blur|bright|contrast|affine|shift|scale|mirror|"
    r"hflip|vflip|roll|erase|cutout|mixup|cutmix|perspective|warp|gamma|hue|saturat|sharp|invert|solarize|"
    r"posterize|elastic|zoom|shear|translate|augment|aug_|_aug|color",
    re.I,
)


def _early_exit(fscope: Scope, stmt: Stmt, bindings: Dict[str, Any], facts: FileFacts) -> str:
    """Can a ``return`` earlier in the function skip ``stmt``? "off" when one always does (given the
    bindings), "gated" when one may, "on" otherwise."""
    result = "on"
    for value, rstmt in fscope.returns:
        if rstmt.index >= stmt.index or _exclusive(rstmt.block, stmt.block, _if_map(fscope)):
            continue
        if stmt.block[: len(rstmt.block)] == rstmt.block:
            return "off"  # an unconditional return in an enclosing block: dead code
        common = _common_prefix(rstmt.block, stmt.block)
        st = _status(_conditions(rstmt, fscope, common), bindings, facts)
        if st == "on":
            return "off"
        if st == "gated":
            result = "gated"
    return result


def _looks_like_augmentation(body: cst.CSTNode) -> bool:
    """Does a branch transform the sample (a flip, a rotation, a crop, noise...)? ``x[:, ::-1]`` counts."""
    stack = [body]
    while stack:
        n = stack.pop()
        if isinstance(n, (cst.Name, cst.Attribute)):
            d = dotted(n)
            if d is not None:
                if _AUG_WORD.search(d.rsplit(".", 1)[-1]):
                    return True
                continue
        if isinstance(n, cst.Slice) and isinstance(n.step, cst.UnaryOperation) and isinstance(n.step.operator, cst.Minus):
            return True
        if isinstance(n, cst.SimpleString):
            continue
        stack.extend(child_nodes(n))
    return False


def _split_random_test(test: cst.BaseExpression, facts: FileFacts) -> List[cst.BaseExpression]:
    """The non-random operands of an ``and`` test: ``self.train and random.random() < .5`` -> [self.train]."""
    out: List[cst.BaseExpression] = []
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        for side in (test.left, test.right):
            out.extend(_split_random_test(side, facts))
        return out
    if _mentions_random(test, facts):
        return []
    return [test]


def _under_no_grad(node: cst.CSTNode, scope: Scope, facts: FileFacts) -> bool:
    """Is ``node`` read with autograd surely off (a loader iterated for evaluation)?"""
    return runs_without_grad(node, scope, facts, certain=True)


_AUGMENT_RE = re.compile(
    r"\b(?:" + "|".join(sorted(TORCHVISION_RANDOM)) + r")\s*\(|albumentations|kornia\.augmentation|import kornia"
)


def might_augment(program: Any) -> bool:
    """Cheap text test: can any file of the program hold a random op (a known random transform called,
    albumentations or kornia imported, or a ``__getitem__`` next to random draws)?"""
    for f in program.files:
        text = f.ctx.source.text
        cached = getattr(f.ctx, "_tl_might_augment", None)
        if cached is None:
            cached = bool(_AUGMENT_RE.search(text)) or ("__getitem__" in text and ("random" in text or "rand(" in text))
            f.ctx._tl_might_augment = cached
        if cached:
            return True
    return False


def _candidates(pf: Any) -> List[Tuple[Scope, Stmt, cst.CSTNode]]:
    """Calls of a file that may build a dataset from a pipeline (a ``transform=`` keyword, a torchvision
    dataset, a class-like callee), and comprehensions over literal splits; computed once per file."""
    facts = pf.facts
    cached = getattr(facts, "_tl_data_candidates", None)
    if cached is not None:
        return cached
    out: List[Tuple[Scope, Stmt, cst.CSTNode]] = []
    text = pf.ctx.source.text
    low = text.lower()
    if "transform" in low or "data" in low or "augment" in low or "folder" in low or "loader" in low:
        for scope in facts.scopes():
            for stmt in scope.stmts:
                node = stmt.node
                if not isinstance(node, (cst.Assign, cst.AnnAssign, cst.Expr, cst.Return)) or node.value is None:
                    continue
                value = node.value
                if isinstance(value, (cst.DictComp, cst.ListComp, cst.GeneratorExp)) and isinstance(value.for_in.iter, (cst.List, cst.Tuple)):
                    out.append((scope, stmt, value))
                    continue
                for call in calls(value):
                    if _is_candidate(call, facts):
                        out.append((scope, stmt, call))
    facts._tl_data_candidates = out  # type: ignore[attr-defined]
    return out


def _batch_candidates(pf: Any) -> List[Tuple[Scope, Stmt, cst.Call]]:
    """Calls inside loops whose callee is a name this file binds to a transform pipeline."""
    facts = pf.facts
    cached = getattr(facts, "_tl_batch_candidates", None)
    if cached is not None:
        return cached
    out: List[Tuple[Scope, Stmt, cst.Call]] = []
    bound: Set[str] = set()
    for scope in facts.scopes():
        for name, assigns in scope.assigns.items():
            for a in assigns:
                if isinstance(a.value, cst.Call):
                    q = canonical(facts.qualify(a.value.func) or "")
                    if _container_kind(q) is not None or q.startswith(("torchvision.transforms", "kornia.augmentation")):
                        bound.add(name)
    if bound:
        for scope in facts.scopes():
            for stmt in scope.stmts:
                if not stmt.loops:
                    continue
                node = stmt.node
                if not isinstance(node, (cst.Assign, cst.AnnAssign, cst.Expr, cst.Return, cst.AugAssign)) or node.value is None:
                    continue
                for call in calls(node.value):
                    if dotted(call.func) in bound and call.args:
                        out.append((scope, stmt, call))
    facts._tl_batch_candidates = out  # type: ignore[attr-defined]
    return out


def _trains(body: cst.CSTNode) -> bool:
    for c in calls(body):
        if isinstance(c.func, cst.Attribute):
            if c.func.attr.value in ("backward", "manual_backward"):
                return True
            if c.func.attr.value == "step" and "opt" in (dotted(c.func.value) or "").lower():
                return True
    return False


def _in_range_comprehension(value: cst.CSTNode, target: cst.CSTNode) -> bool:
    """Is ``target`` inside a comprehension over ``range(...)`` within ``value``?"""
    stack: List[Tuple[cst.CSTNode, bool]] = [(value, False)]
    while stack:
        n, inside = stack.pop()
        if n is target:
            return inside
        if isinstance(n, (cst.ListComp, cst.GeneratorExp, cst.SetComp)) and _is_range_call(n.for_in.iter):
            inside = True
        if isinstance(n, (cst.Lambda, cst.FunctionDef)):
            continue
        stack.extend((c, inside) for c in child_nodes(n))
    return False


def _is_candidate(call: cst.Call, facts: FileFacts) -> bool:
    for a in call.args:
        if a.keyword is not None and a.keyword.value in TRANSFORM_KWS:
            return True
    name = dotted(call.func)
    if name is None:
        return False
    q = facts.qualify(call.func) or ""
    if q.startswith("torchvision.datasets."):
        return True
    if q.startswith(("torch.", "torchvision.", "numpy.", "albumentations", "kornia", "timm", "transformers")):
        return False
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper()


def data_model(program: Any) -> DataModel:
    """The program's data model, built once per program object."""
    model = getattr(program, "_tl_data_model", None)
    if model is None:
        model = DataModel(program)
        program._tl_data_model = model
    return model


def random_op_names(ops: Sequence[Op]) -> str:
    counts: Dict[str, int] = {}
    for o in ops:
        counts[o.name] = counts.get(o.name, 0) + 1
    out = []
    for name, n in counts.items():
        if n > 1 and name.startswith("a random branch"):
            out.append(f"{n} random branches" + name[len("a random branch"):])
        else:
            out.append(name)
    return ", ".join(out)
