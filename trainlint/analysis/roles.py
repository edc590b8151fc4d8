"""Roles: is a dataset or a loader read for training or for evaluation?

Roles come from structure first (``train=False``, ``split="val"``, a ``"val"`` path component, the loader
iterated in a loop that calls ``backward()`` or under ``torch.no_grad()``/after ``model.eval()``,
Lightning's ``val_dataloader()``/``fit(val_dataloaders=...)``, Hugging Face's ``eval_dataset=``, a
``trainer.validate(...)`` argument, a helper's parameter or return value read at its callers) and from
names only when nothing structural says anything (:func:`word_role_of_name`). :class:`Roles` answers for
one program; the data model (:mod:`trainlint.analysis.data`) asks it for each dataset that takes a
pipeline, and the loader facts (:mod:`trainlint.analysis.loaders`) for each ``DataLoader``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Set, Tuple

import libcst as cst

from trainlint.analysis.callsite import UNKNOWN, Lookups, Where, eval_cond, literal
from trainlint.analysis.execution import NO_GRAD_CONTEXTS, runs_without_grad, trains
from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.names import canonical, dotted, names_in
from trainlint.analysis.syntax import keyword_arg, kwarg, positional
from trainlint.analysis.transforms import NOT_INPUT_TRANSFORM, TRANSFORM_KWS
from trainlint.analysis.walk import calls, child_nodes

#: torchvision datasets whose second positional parameter is ``train`` (default True).
_TV_TRAIN_FLAG = {
    "MNIST", "FashionMNIST", "KMNIST", "QMNIST", "CIFAR10", "CIFAR100", "USPS", "Omniglot", "PhotoTour",
}
_SPLIT_KWS = {"split", "subset", "mode", "phase", "image_set", "stage", "set", "partition", "fold", "kind", "which"}
_TRAIN_WORDS = {"train", "training", "trn", "trainval"}
_EVAL_WORDS = {"val", "valid", "validation", "validate", "test", "testing", "eval", "evaluation", "dev", "holdout", "tst"}


_EVAL_LOADER_METHODS = {"val_dataloader", "test_dataloader", "predict_dataloader"}


#: The evidence of a role read from a dataset's path or split words (``"data/train"``), not from use.
PATH_EVIDENCE = "its path or split argument says"


class Roles:
    """The role of each dataset and loader of one program, from how it is used (see the module docstring)."""

    def __init__(self, program: Any, lookups: Lookups) -> None:
        self.program = program
        self.lookups = lookups
        self._iter_cache: Dict[Tuple[int, str], Tuple[Optional[str], str, bool]] = {}

    def eval_cut(self, call: cst.Call, where: Where, stmt: Stmt) -> Optional[str]:
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

    def dataset_role(self, call: cst.Call, where: Where, stmt: Stmt, q: str, tv_dataset: bool, cls) -> Tuple[Optional[str], str, bool]:
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
            v = literal(train_kw, b)
            if v is UNKNOWN:
                v = eval_cond(train_kw, b, where.facts)  # is_train=(x == "train")
            if v is True:
                return "train", "train=True", True
            if v is False:
                return "eval", "train=False", True
        elif tv_dataset and short in _TV_TRAIN_FLAG:
            return "train", f"{short} defaults to train=True", True
        for a in call.args:
            if a.keyword is not None and a.keyword.value in _SPLIT_KWS:
                role = _word_role(literal(a.value, b))
                if role:
                    return role, f"{a.keyword.value}={literal(a.value, b)!r}", True
        # a "val" / "train" path component or split word among the literal arguments
        role = None
        text = ""
        for a in call.args:
            if a.keyword is not None and (a.keyword.value in TRANSFORM_KWS or a.keyword.value in NOT_INPUT_TRANSFORM):
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
        return self.consumer_role(call, where, stmt)

    def consumer_role(self, call: cst.Call, where: Where, stmt: Stmt) -> Tuple[Optional[str], str, bool]:
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

    def _loader_value_role(self, loader_call: cst.Call, node, where: Where, stmt: Stmt) -> Tuple[Optional[str], str, bool]:
        r = self.loader_role(loader_call, stmt, where)
        if r is not None:
            return r[0], r[1], True
        if isinstance(node, cst.Assign) and node.value is loader_call and len(node.targets) == 1:
            t = dotted(node.targets[0].target)
            if t is not None:
                return self._name_role(t, where, stmt, kind="loader")  # names, as a weak signal
        return None, "", False

    def _name_role(self, name: str, where: Where, stmt: Stmt, kind: str) -> Tuple[Optional[str], str, bool]:
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
        r = word_role_of_name(name)
        if r is not None:
            return r, f"named {name}", False
        return None, "", False

    def _uses_of_name(self, name: str, where: Where, stmt: Stmt):
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

    def _role_of_use(self, node, how: str, where: Where, stmt: Stmt, name: str, kind: str) -> Optional[Tuple[str, str]]:
        facts = where.facts
        if how == "iter":
            return self.loop_role(node, where, stmt)
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
                        w = Where(f, sc, s)
                        target = self.lookups.function_of_call(call.func, w)
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

    def _caller_binding_role(self, node: cst.CSTNode, call: cst.Call, idx: int, where: Where, stmt: Stmt, kind: str) -> Optional[Tuple[str, str, bool, str]]:
        """(role, evidence, structural, bound name) of what the statement ``node`` does with element
        ``idx`` of ``call``'s result (see :meth:`returned_role`)."""
        if isinstance(node, cst.For):
            if node.iter is call and idx == -1:
                r = self.loop_role(node, where, stmt)
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

    def _drawn_role(self, it: str, name: str, where: Where, stmt: Stmt) -> Optional[Tuple[str, str]]:
        """The role of the loop that draws batches from the iterator ``it`` (``next(it)``, ``it.next()``,
        ``it.__next__()``)."""
        for user_stmt in where.scope.stmts:
            if user_stmt.index <= stmt.index or not _draws_next(getattr(user_stmt.node, "value", None), it):
                continue
            loop = user_stmt.loops[-1] if user_stmt.loops else None
            if isinstance(loop, (cst.For, cst.While)):
                r = self.loop_role(loop, where.at(where.scope, user_stmt), user_stmt)
                if r is not None:
                    return r[0], f"read with next(iter({name})) {r[1].replace('iterated ', '', 1)}"
        return None

    def _split_role(self, node: cst.Assign, call: cst.Call, where: Where, stmt: Stmt, name: str) -> Optional[Tuple[str, str]]:
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

    def _arg_role(self, call: cst.Call, i: int, a: cst.Arg, where: Where, stmt: Stmt, kind: str) -> Optional[Tuple[str, str]]:
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
                return self.loader_role(call, stmt, where)  # the loader's own role
            return None
        target = self.lookups.function_of_call(call.func, where)
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

    def loader_role(self, loader_call: cst.Call, stmt: Stmt, where: Where) -> Optional[Tuple[str, str]]:
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
        w = Where(pf, fscope, None)
        first = Stmt(-1, fscope.node, (), ())
        r, ev, structural = self._name_role(pname, w, first, kind)
        if r is not None and not structural:
            r = None
        self._iter_cache[key] = (r, ev, structural)
        return (r, f"{ev} in {fscope.name}()") if r else None

    def loop_role(self, loop: cst.For, where: Where, stmt: Stmt) -> Optional[Tuple[str, str]]:
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

# -- helpers -------------------------------------------------------------------------------------------


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
            v = literal(n, bindings)
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


def word_role_of_name(name: str) -> Optional[str]:
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


def _in_repeated_passes(node: cst.CSTNode, how: str, stmt: Stmt, name: str, where: Where) -> bool:
    """Is a loader read several times on purpose: inside ``for _ in range(n)`` that trains nothing, or a
    comprehension over ``range(n)`` (``torch.stack([predict(loader) for _ in range(8)]).mean(0)``)?"""
    for loop in stmt.loops:
        if isinstance(loop, cst.For) and is_range_call(loop.iter):
            target = (dotted(loop.target) or "").lower()
            if "epoch" in target or target in ("ep", "e"):
                continue
            if not trains(loop.body):
                return True
    if how == "stmt" and getattr(node, "value", None) is not None:
        stack = [node.value]
        while stack:
            n = stack.pop()
            if isinstance(n, (cst.ListComp, cst.GeneratorExp, cst.SetComp)) and is_range_call(n.for_in.iter):
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
            elif a == "train" and (not n.value.args or literal(n.value.args[0].value, {}) is not False):
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


def is_range_call(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Call) and dotted(expr.func) in ("range", "trange")


def _looks_like_trainer(expr: cst.BaseExpression) -> bool:
    name = (dotted(expr) or "").rsplit(".", 1)[-1].lower()
    return "trainer" in name


def _under_no_grad(node: cst.CSTNode, scope: Scope, facts: FileFacts) -> bool:
    """Is ``node`` read with autograd surely off (a loader iterated for evaluation)?"""
    return runs_without_grad(node, scope, facts, certain=True)
