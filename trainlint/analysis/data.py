"""The data model: which pipeline feeds which dataset, and the dataset's role (training vs evaluation).

:func:`data_model` builds one :class:`DataModel` per program: every dataset call that takes a pipeline (a
``transform=`` argument, a positional one, a custom ``Dataset`` class with random branches in its
``__getitem__``) and every pipeline applied to the batch inside a loop (kornia style) becomes a
:class:`PipelineUse` with the role of its dataset. The parts live in their own modules:

- :mod:`trainlint.analysis.transforms`: the transform vocabulary (which ops are random) and the pipeline
  an expression is (:class:`~trainlint.analysis.transforms.Pipelines`);
- :mod:`trainlint.analysis.roles`: whether a dataset or loader is read for training or for evaluation
  (:class:`~trainlint.analysis.roles.Roles`);
- :mod:`trainlint.analysis.callsite`: a helper's parameters bound to a call's literal arguments, the
  branches that run for them, and the function or class a call reaches.

Everything is computed per program and memoized on the program object (:func:`data_model`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.callsite import UNKNOWN, Lookups, Where, literal
from trainlint.analysis.execution import trains
from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.names import canonical, dotted, names_in
from trainlint.analysis.roles import Roles, is_range_call
from trainlint.analysis.transforms import (
    NOT_INPUT_TRANSFORM, TRANSFORM_KWS, Pipeline, Pipelines, container_kind, looks_like_dataset,
)
from trainlint.analysis.walk import calls, child_nodes

#: A pipeline or dataset so named is applied several times on purpose (test-time augmentation).
_TTA_NAME = re.compile(r"tta|test_time_aug|testtime|test_aug", re.I)


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

# -- the model ---------------------------------------------------------------------------------------


class DataModel:
    """Pipelines, datasets, loaders and roles of one program (see the module docstring)."""

    def __init__(self, program: Any) -> None:
        self.program = program
        self.uses: List[PipelineUse] = []
        self.lookups = Lookups(program)
        self.pipelines = Pipelines(self.lookups)
        self.roles = Roles(program, self.lookups)
        self._build()

    # -- datasets and their roles ----------------------------------------------------------------
    def _build(self) -> None:
        for pf in self.program.files:
            for scope, stmt, node in _candidates(pf):
                where = Where(pf, scope, stmt)
                if isinstance(node, cst.Call):
                    self._maybe_dataset(node, where, stmt)
                else:
                    self._scan_value(node, where, stmt)
            for scope, stmt, call in _batch_candidates(pf):
                self._maybe_batch_use(call, Where(pf, scope, stmt), stmt)

    def _maybe_batch_use(self, call: cst.Call, where: Where, stmt: Stmt) -> None:
        """A pipeline applied to the batch inside a loop (``x = gpu_aug(x)``, kornia style): the loop's
        role is the pipeline's role."""
        pipelines = [p for p in self.pipelines.pipelines_of(call.func, where) if p.random_ops]
        if not pipelines:
            return
        role, evidence, tta = None, "", False
        for loop in reversed(stmt.loops):
            if not isinstance(loop, cst.For):
                continue
            if is_range_call(loop.iter):
                target = (dotted(loop.target) or "").lower()
                if "epoch" not in target and not trains(loop.body):
                    tta = True  # several passes over the same batch
                continue
            r = self.roles.loop_role(loop, where, stmt)
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

    def _scan_value(self, value: cst.BaseExpression, where: Where, stmt: Stmt) -> None:
        # comprehensions over literal keys: {x: ImageFolder(join(d, x), tf[x]) for x in ["train", "val"]}
        if isinstance(value, (cst.DictComp, cst.ListComp, cst.GeneratorExp)):
            comp = value.for_in
            names = _targets_of(comp.target)
            if len(names) == 1 and isinstance(comp.iter, (cst.List, cst.Tuple)) and comp.inner_for_in is None:
                for el in comp.iter.elements:
                    lit = literal(el.value, where.bindings)
                    if lit is UNKNOWN:
                        continue
                    b = dict(where.bindings)
                    b[names[0]] = lit
                    inner = value.value if isinstance(value, cst.DictComp) else value.elt
                    self._scan_value(inner, Where(where.pf, where.scope, stmt, b), stmt)
                return
        for call in calls(value):
            self._maybe_dataset(call, where, stmt)

    def _maybe_dataset(self, call: cst.Call, where: Where, stmt: Stmt) -> None:
        facts = where.facts
        q = canonical(facts.qualify(call.func) or "")
        if container_kind(q) is not None or q.startswith(("torchvision.transforms", "albumentations", "kornia")):
            return
        arg_exprs: List[cst.BaseExpression] = []
        for a in call.args:
            if a.keyword is not None:
                kw = a.keyword.value
                if kw in TRANSFORM_KWS and kw not in NOT_INPUT_TRANSFORM:
                    arg_exprs.append(a.value)
        tv_dataset = q.startswith("torchvision.datasets.")
        cls = None if tv_dataset else self.lookups.class_of_call(call.func, where)
        if not arg_exprs and (tv_dataset or cls is not None):
            for i, a in enumerate(call.args):
                if a.keyword is None and a.star == "" and i >= 1 and isinstance(a.value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)):
                    if cls is not None:
                        init = cls[1].methods.get("__init__")
                        params = init.params() if init is not None else []
                        pname = params[i + 1] if init is not None and i + 1 < len(params) else ""
                        if pname in NOT_INPUT_TRANSFORM or not re.search(r"transform|aug|tf|pipeline|preprocess", pname):
                            continue
                    arg_exprs.append(a.value)
        found: List[Tuple[Pipeline, cst.CSTNode]] = []
        for e in arg_exprs:
            for p in self.pipelines.pipelines_of(e, where):
                if p.ops:
                    found.append((p, e))
        if cls is not None and looks_like_dataset(cls[1]):
            p = self.pipelines.class_pipeline(call, cls[0], cls[1], where)
            if p is not None:
                found.append((p, call))
        if not found:
            return
        role, evidence, structural = self.roles.dataset_role(call, where, stmt, q, tv_dataset, cls)
        tta = (
            any(_TTA_NAME.search(n) for n in names_in(call))
            or any(_TTA_NAME.search(p.label) for p, _ in found)
            or "(TTA)" in evidence
        )
        if role is not None and evidence and not evidence.startswith(("iterated", "passed", "returned", "its random_split", "its train_test_split")):
            # the role came from train=False / split= / a path: does the code that reads it agree?
            c_role, consumer_ev, c_structural = self.roles.consumer_role(call, where, stmt)
            if c_structural and c_role is not None and c_role != role:
                role = None  # CIFAR10(train=False) iterated in the loop that calls backward(): used for training
            tta = tta or "(TTA)" in consumer_ev
        for p, e in found:
            self.uses.append(PipelineUse(p, call, e, where.pf, role, evidence, structural, tta))
        if role != "eval" and not tta and any(p.random_ops for p, _ in found):
            cut = self.roles.eval_cut(call, where, stmt)
            if cut is not None:  # a validation part cut from this (augmenting) dataset shares its pipeline
                for p, e in found:
                    self.uses.append(PipelineUse(p, call, e, where.pf, "eval", cut, True, False, cut=True))

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

# -- helpers -------------------------------------------------------------------------------------------


def _targets_of(target: cst.BaseExpression) -> List[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    return []


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
                    if container_kind(q) is not None or q.startswith(("torchvision.transforms", "kornia.augmentation")):
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


def _in_range_comprehension(value: cst.CSTNode, target: cst.CSTNode) -> bool:
    """Is ``target`` inside a comprehension over ``range(...)`` within ``value``?"""
    stack: List[Tuple[cst.CSTNode, bool]] = [(value, False)]
    while stack:
        n, inside = stack.pop()
        if n is target:
            return inside
        if isinstance(n, (cst.ListComp, cst.GeneratorExp, cst.SetComp)) and is_range_call(n.for_in.iter):
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
