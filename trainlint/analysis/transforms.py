"""Transform pipelines: which ops are random, and the pipeline an expression is.

The vocabulary of torchvision, albumentations and kornia transforms (:data:`TORCHVISION_RANDOM`, a ``p=0``
op is no op, a flip with ``p=1`` is a plain flip); an :class:`Op` is one transform (or a random branch of a
custom ``Dataset.__getitem__``), a :class:`Pipeline` the ops one ``Compose`` (or list, single op, dataset
class) applies. :class:`Pipelines` resolves an expression to the pipelines it may be: through names, dict
entries (``data_transforms["val"]``), list variables built with ``append``/``extend``/``+=``, helper
functions (``get_transform(train=False)``, with the literal arguments bound so that ``if train:`` picks its
branch: :mod:`trainlint.analysis.callsite`), ternaries and imports from other files of the program. Custom
``Dataset`` classes whose ``__getitem__`` flips or crops under ``random.random() < p`` are pipelines of their
own (:meth:`Pipelines.class_pipeline`).

Which dataset a pipeline feeds and that dataset's role are in :mod:`trainlint.analysis.data` and
:mod:`trainlint.analysis.roles`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import libcst as cst

from trainlint.analysis.callsite import (
    DEFAULTS, UNKNOWN, ExprBinding, Lookups, Where, bind, common_prefix, conditions, early_exit, eval_cond, if_map,
    library_default_test, literal, reaching, status, subscript_key,
)
from trainlint.analysis.facts import FileFacts, Scope
from trainlint.analysis.names import canonical, dotted, names_in
from trainlint.analysis.syntax import kwarg, positional
from trainlint.analysis.walk import calls, child_nodes
from trainlint.textscan import search_words

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
NOT_INPUT_TRANSFORM = {"target_transform", "label_transform", "mask_transform"}

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

# -- resolving a pipeline ------------------------------------------------------------------------------


class Pipelines:
    """The pipelines and ops an expression may be, in one program (see the module docstring)."""

    def __init__(self, lookups: Lookups) -> None:
        self.lookups = lookups

    # -- resolving a pipeline ----------------------------------------------------------------------
    def pipelines_of(self, expr: cst.BaseExpression, where: Where, depth: int = 0) -> List[Pipeline]:
        """Every pipeline ``expr`` may be (several when it is chosen by a condition)."""
        if depth > 12 or expr is None:
            return []
        facts = where.facts
        if isinstance(expr, cst.Call):
            q = canonical(facts.qualify(expr.func) or "")
            kind = container_kind(q)
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
            target = self.lookups.function_of_call(expr.func, where)
            if target is not None:
                return self._returned_pipelines(target, expr, where, depth)
            return []
        if isinstance(expr, cst.IfExp):
            v = eval_cond(expr.test, where.bindings, facts)
            if v is UNKNOWN:
                v = library_default_test(expr.test, where)
            if v is True:
                return self.pipelines_of(expr.body, where, depth + 1)
            if v is False:
                return self.pipelines_of(expr.orelse, where, depth + 1)
            out = self.pipelines_of(expr.body, where, depth + 1) + self.pipelines_of(expr.orelse, where, depth + 1)
            for p in out:
                p.gated = True
            return out
        if isinstance(expr, cst.Subscript):
            key = subscript_key(expr, where.bindings)
            if key is UNKNOWN:
                return []
            out = []
            for d, dw in self._dicts_of(expr.value, where, depth + 1):
                if isinstance(d, cst.Dict):
                    for el in d.elements:
                        if isinstance(el, cst.DictElement) and literal(el.key, dw.bindings) == key:
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

    def _values_of(self, expr: cst.BaseExpression, where: Where, depth: int) -> List[Tuple[cst.BaseExpression, Where]]:
        """The expressions a name may hold at ``where`` (through assignments, self attributes,
        module globals, imports and bound parameters)."""
        name = dotted(expr)
        if name is None:
            return [(expr, where)]
        if depth > 12:
            return []
        b = where.bindings.get(name)
        if isinstance(b, ExprBinding):
            return self._values_of(b.expr, b.where, depth + 1) if dotted(b.expr) else [(b.expr, b.where)]
        scope, stmt, facts = where.scope, where.stmt, where.facts
        found = reaching(scope, name, stmt) if stmt is not None else scope.assigns.get(name, [])[-1:]
        out: List[Tuple[cst.BaseExpression, Where]] = []
        for a in found:
            if a.value is None or a.kind not in ("assign", "with", "aug"):
                continue
            if a.kind == "aug":
                out.extend(self._values_of(expr, where.at(scope, a.stmt), depth + 1))
                out.append((a.value, where.at(scope, a.stmt)))
                continue
            st = status(conditions(a.stmt, scope, common_prefix(a.stmt.block, stmt.block if stmt else ())), where.bindings, facts)
            if st == "off":
                continue
            out.append((a.value, where.at(scope, a.stmt)))
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
                    out.append((a.value, Where(where.pf, mod, None)))
            if out:
                return out
        head = name.split(".")[0]
        if head in scope.params() and not name.startswith("self."):
            return []
        imp = self.lookups.imported(where.pf, name)
        if imp is not None:
            target, assigns = imp
            out.extend((a.value, Where(target, target.facts.module, None)) for a in assigns[-1:])
        return out

    def _dicts_of(self, expr: cst.BaseExpression, where: Where, depth: int) -> List[Tuple[cst.BaseExpression, Where]]:
        """Dict literals an expression may be: itself, through names, or returned by a helper."""
        if depth > 12:
            return []
        if isinstance(expr, cst.Dict):
            return [(expr, where)]
        if isinstance(expr, cst.Call):
            target = self.lookups.function_of_call(expr.func, where)
            if target is None:
                return []
            pf, fscope = target
            fw = Where(pf, fscope, None, bind(expr, fscope, where))
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

    def _returned_pipelines(self, target: Tuple[Any, Scope], call: cst.Call, where: Where, depth: int) -> List[Pipeline]:
        pf, fscope = target
        bindings = bind(call, fscope, where)
        fw = Where(pf, fscope, None, bindings)
        out: List[Pipeline] = []
        alts = []
        for value, rstmt in fscope.returns:
            if value is None:
                continue
            st = status(conditions(rstmt, fscope), bindings, pf.facts)
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

    def ops_of(self, expr: cst.BaseExpression, where: Where, depth: int = 0) -> List[Op]:
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
            v = eval_cond(expr.test, where.bindings, where.facts)
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
        found = reaching(scope, name, stmt) if stmt is not None else scope.assigns.get(name, [])[-1:]
        segments: List[List[Op]] = []  # latest first
        base = None
        plain = [a for a in found if a.kind == "assign" and a.value is not None]
        for a in found:
            if a.value is None or a.kind not in ("assign", "aug"):
                continue
            st = status(conditions(a.stmt, scope, common_prefix(a.stmt.block, stmt.block if stmt else ())), where.bindings, where.facts)
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
            st = status(conditions(s, scope, common_prefix(s.block, base.stmt.block)), where.bindings, where.facts)
            if st == "off":
                continue
            out.extend(_gated(o) for o in new) if st == "gated" else out.extend(new)
        return out

    def _element_ops(self, expr: cst.BaseExpression, where: Where, depth: int) -> List[Op]:
        if isinstance(expr, cst.IfExp):
            return self.ops_of(expr, where, depth)
        if isinstance(expr, cst.Call):
            q = canonical(where.facts.qualify(expr.func) or "")
            if container_kind(q) is not None:
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

    def _op(self, call: cst.Call, where: Where) -> Optional[Op]:
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
        p = literal(p_expr, bindings) if p_expr is not None else UNKNOWN
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
                if sigma is not None and isinstance(literal(sigma, bindings), float):
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
    def class_pipeline(self, call: cst.Call, cls_pf: Any, cls: Any, where: Where) -> Optional[Pipeline]:
        """Random branches in a Dataset class's ``__getitem__`` (and the helpers it calls), and a
        pipeline the class builds itself in ``__init__``."""
        getitem = cls.methods.get("__getitem__")
        init = cls.methods.get("__init__")
        bindings: Dict[str, Any] = {}
        attr_defaults: Set[str] = set()
        if init is not None:
            params = bind(call, init, where)
            # self.train = train  ->  "self.train" bound
            for a_name, assigns in cls_pf.facts.attributes.get(cls.name, {}).items():
                if len(assigns) != 1 or assigns[0].scope is not init:
                    continue
                v = assigns[0].value
                if isinstance(v, cst.Name) and v.value in params:
                    bindings[a_name] = params[v.value]
                    if v.value in params.get(DEFAULTS, ()):
                        attr_defaults.add(a_name)
                else:
                    lit = literal(v, params)
                    if lit is not UNKNOWN:
                        bindings[a_name] = lit
            bindings.update({k: v for k, v in params.items()})
            bindings[DEFAULTS] = set(params.get(DEFAULTS, ())) | attr_defaults
        ops: List[Op] = []
        if getitem is not None:
            ops.extend(self._random_branches(cls_pf, getitem, bindings, cls, set()))
        if init is not None:
            # self.transform = Compose([...]) built by the class itself
            iw = Where(cls_pf, init, None, bindings)
            for a_name, assigns in cls_pf.facts.attributes.get(cls.name, {}).items():
                for a in assigns:
                    if a.scope is not init or not isinstance(a.value, cst.Call):
                        continue
                    q = canonical(cls_pf.facts.qualify(a.value.func) or "")
                    if container_kind(q) is None:
                        continue
                    if not _attr_used(cls, a_name, getitem):
                        continue
                    st = status(conditions(a.stmt, init), bindings, cls_pf.facts)
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
        ifs = if_map(fscope)
        for _, (ifnode, tests, pos) in list(ifs.items()):
            if pos != 0 or not _mentions_random(ifnode.test, facts):
                continue
            if _is_trivial_body(ifnode.body) or not _looks_like_augmentation(ifnode.body):
                continue  # random sampling (pick a negative pair, resample) is not augmentation
            # find the statement of this If to know what it sits under
            stmt = next((s for s in fscope.stmts if s.node is ifnode), None)
            if stmt is None:
                continue
            conds = conditions(stmt, fscope) or []
            st = status(conds, bindings, facts)
            if st == "off":
                continue
            own = _split_random_test(ifnode.test, facts)
            own_st = status([(t, True) for t in own], bindings, facts)
            if own_st == "off":
                continue
            exit_st = early_exit(fscope, stmt, bindings, facts)
            if exit_st == "off":
                continue  # `if not self.train: return ...` before it, and this is not the training instance
            gated = gated_by_caller or st == "gated" or own_st == "gated" or exit_st == "gated"
            where = f"{cls.name}.{fscope.name}" if fscope.class_name else f"{fscope.name}()"
            out.append(Op(ifnode, f"a random branch in {where}", True, gated, pf))
        # helpers called from here: self.augment(x), augment(x)
        for s in fscope.stmts:
            if not isinstance(s.node, (cst.Assign, cst.Expr, cst.Return, cst.AugAssign, cst.AnnAssign)):
                continue
            exit_st = early_exit(fscope, s, bindings, facts)
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
                st = status(conditions(s, fscope), bindings, facts)
                if st == "off":
                    continue
                out.extend(self._random_branches(target[0], target[1], bindings if target[1].class_name else {}, cls, seen, gated_by_caller or st == "gated"))
        return out

# -- helpers -------------------------------------------------------------------------------------------


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


def container_kind(q: str) -> Optional[str]:
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


def looks_like_dataset(cls: Any) -> bool:
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


_RANDOM_CALL = re.compile(r"\b(?:" + "|".join(sorted(TORCHVISION_RANDOM)) + r")\s*\(")
#: Every name of TORCHVISION_RANDOM holds one of these (tests/test_textscan.py checks it).
RANDOM_HINTS = ("Rand", "Jitter", "Gaussian", "Aug", "Elastic", "Mix")


def text_might_augment(text: str) -> bool:
    """Cheap text test: can this file hold a random op (a known random transform called, albumentations
    or kornia imported, or a ``__getitem__`` next to random draws)?"""
    return ("albumentations" in text or "kornia.augmentation" in text or "import kornia" in text
            or search_words(_RANDOM_CALL, text, RANDOM_HINTS)
            or ("__getitem__" in text and ("random" in text or "rand(" in text)))


def might_augment(program: Any) -> bool:
    """Can any file of the program hold a random op (:func:`text_might_augment`)?"""
    for f in program.files:
        cached = getattr(f.ctx, "_tl_might_augment", None)
        if cached is None:
            cached = text_might_augment(f.ctx.source.text)
            f.ctx._tl_might_augment = cached
        if cached:
            return True
    return False


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
