"""Loop events: the training loops of a file and where each training call happens in them.

A training loop is either an **epoch loop** (``for epoch in range(EPOCHS)``, ``while epoch < n``) whose
body holds a **batch loop** (``for x, y in loader``, ``enumerate(train_loader)``, ``tqdm(...)``,
``range(len(loader))``) — directly or inside a helper called once per epoch (``train_one_epoch(...)``,
``self.train_epoch()``, or a function imported from another file of the program) — or an **iteration
loop** with no epochs around it (``for it in range(max_iters)``, ``while step < total_steps``, a single
pass ``for batch in loader``) that calls ``backward()`` / ``optimizer.step()`` itself.

Each call of interest is an :class:`Event` — ``forward``, ``loss``, ``backward``, ``clip``,
``optimizer_step``, ``zero_grad``, ``scheduler_step`` — with its level: ``"batch"`` (inside the batch
loop, or every iteration of an iteration loop), ``"epoch"`` (inside the epoch loop, outside the batch
loop) or ``"outside"`` (before/after the loop). Events keep their order (file, statement, call), so
rules can ask "is scheduler.step() before optimizer.step() in the same iteration?" or "is there a
zero_grad in the batch loop?".

The run length: ``TrainLoop.count`` is the folded number of epochs (epoch loops) or iterations
(iteration loops); ``len(loader)`` is unknowable statically and stays None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import libcst as cst

from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.values import Folded, fold, format_value
from trainlint.analysis.walk import walk, calls

_EPOCH_NAME = re.compile(r"epoch|^ep$|^e$", re.I)
_BATCHY = re.compile(r"load|(^|_)dl($|_)|batch|data|sampler|tqdm|pbar|iter|train|(^|_)ds($|_)|enumerate|zip|prefetch", re.I)
_SCHED_NAME = re.compile(r"sched|lr_policy|(^|_)lrs($|_)|warmup", re.I)
_OPTIM_NAME = re.compile(r"optim|(^|_)opt($|_|\d)|(^|_)optimi[sz]er", re.I)
_FORWARD_NAME = re.compile(r"(^|_)(model|net|network|module|encoder|generator|discriminator|classifier)s?$", re.I)
_COMPOUND = (cst.FunctionDef, cst.ClassDef, cst.For, cst.While, cst.If, cst.With, cst.Try)

#: How deep helpers called from a loop are followed.
_HELPER_DEPTH = 2


@dataclass(eq=False)
class Event:
    kind: str  # forward | loss | backward | clip | optimizer_step | zero_grad | scheduler_step
    call: cst.Call
    receiver: str  # dotted receiver of a method call ("scheduler", "self.lr_sched"), else ""
    facts: FileFacts
    scope: Scope
    stmt: Stmt
    level: str  # "batch" | "epoch" | "outside"
    order: Tuple[int, ...]  # sorts events of one loop in execution order (helpers inline at their call)
    #: under an if/try inside its innermost loop (``if step % 100 == 0: scheduler.step()``): not every iteration
    conditional: bool = False


@dataclass(eq=False)
class TrainLoop:
    facts: FileFacts
    scope: Scope
    node: cst.CSTNode  # the For/While statement (epochs or iterations)
    stmt: Stmt
    unit: str  # "epoch" | "iteration"
    count: Optional[Folded]  # number of epochs / iterations the run plans, when foldable
    count_node: Optional[cst.CSTNode] = None  # the expression the count was folded from (range bound...)
    batch_loops: List[cst.CSTNode] = field(default_factory=list)
    helpers: List[Scope] = field(default_factory=list)  # functions called per epoch / per batch
    events: List[Event] = field(default_factory=list)

    def of(self, kind: str, level: Optional[str] = None) -> List[Event]:
        return [e for e in self.events if e.kind == kind and (level is None or e.level == level)]

    def describe_count(self) -> str:
        if self.count is None:
            return "an unknown number of " + ("epochs" if self.unit == "epoch" else "iterations")
        n = format_value(self.count.value)
        what = "epochs" if self.unit == "epoch" else "iterations"
        if self.count.how == "argparse" and self.count.label:
            return f"{n} {what} (with the default {self.count.label} {format_value(self.count.value)})"
        return f"{n} {what}"


# ------------------------------------------------------------------------------------------------


def _unwrap_iter(expr: cst.BaseExpression) -> cst.BaseExpression:
    """tqdm(range(n)) / enumerate(loader) / trange(n) -> the iterated thing."""
    for _ in range(4):
        if isinstance(expr, cst.Call):
            name = (dotted(expr.func) or "").rsplit(".", 1)[-1]
            pos = [a.value for a in expr.args if a.keyword is None and not a.star]
            if name in ("tqdm", "enumerate", "iter", "progress_bar", "track", "list") and pos:
                expr = pos[0]
                continue
        break
    return expr


def _range_args(expr: cst.BaseExpression) -> Optional[List[cst.BaseExpression]]:
    expr = _unwrap_iter(expr)
    if isinstance(expr, cst.Call):
        name = (dotted(expr.func) or "").rsplit(".", 1)[-1]
        if name in ("range", "trange") and expr.args and all(a.keyword is None and not a.star for a in expr.args):
            return [a.value for a in expr.args]
    return None


def _mentions(expr: cst.CSTNode, pattern: re.Pattern) -> bool:
    for n in walk(expr):
        if isinstance(n, cst.Name) and pattern.search(n.value):
            return True
        if isinstance(n, cst.Attribute) and pattern.search(n.attr.value):
            return True
    return False


def is_epoch_loop(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.For):
        target = dotted(node.target) if not isinstance(node.target, cst.Tuple) else None
        if isinstance(node.target, cst.Tuple):
            names = [dotted(e.value) or "" for e in node.target.elements]
            if any(_EPOCH_NAME.search(n.rsplit(".", 1)[-1]) for n in names) and _range_args(node.iter) is not None:
                return True
            return False
        if target and _EPOCH_NAME.search(target.rsplit(".", 1)[-1]):
            return True
        args = _range_args(node.iter)
        return bool(args) and any(_mentions(a, re.compile(r"epoch", re.I)) for a in args)
    if isinstance(node, cst.While):
        return _mentions(node.test, re.compile(r"epoch", re.I))
    return False


def _is_batch_loop(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.For):
        args = _range_args(node.iter)
        if args is not None:
            return any(isinstance(c, cst.Call) and (dotted(c.func) or "") == "len" for a in args for c in walk(a)) or any(
                _mentions(a, re.compile(r"step|iter|batch", re.I)) for a in args)
        return _mentions(node.iter, _BATCHY) or _mentions(node.target, re.compile(r"batch|^x$|^inputs?$|^images?$|^data$", re.I))
    if isinstance(node, cst.While):
        return _mentions(node.test, re.compile(r"step|iter|batch", re.I))
    return False


def _receiver(call: cst.Call) -> str:
    if isinstance(call.func, cst.Attribute):
        return dotted(call.func.value) or ""
    return ""


def _defined_class(name: str, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[str]:
    """The qualified class of the call ``name`` was assigned from, if any (scheduler vs optimizer)."""
    assigns = scope.reaching(name, stmt) or facts.module.assigns.get(name, [])
    if name.startswith("self.") and scope.class_name and not assigns:
        assigns = facts.attributes.get(scope.class_name, {}).get(name, [])
    for a in assigns:
        if isinstance(a.value, cst.Call):
            q = facts.qualify(a.value.func)
            if q:
                return canonical(q)
    return None


def classify_call(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[str]:
    """The event kind of one call, or None."""
    from trainlint.analysis.training import _root_of_call, is_loss_callee

    func = call.func
    if isinstance(func, cst.Attribute):
        meth = func.attr.value
        recv = _receiver(call)
        last = recv.rsplit(".", 1)[-1]
        if meth == "zero_grad":
            return "zero_grad"
        if meth in ("clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_gradients"):
            return "clip"
        if meth == "step":
            cls = _defined_class(recv, facts, scope, stmt) if recv else None
            if cls is not None:
                if cls.startswith("torch.optim.lr_scheduler.") or "schedul" in cls.lower():
                    return "scheduler_step"
                if cls.startswith("torch.optim."):
                    return "optimizer_step"
            if _SCHED_NAME.search(last):
                return "scheduler_step"
            if _OPTIM_NAME.search(last) or "scaler" in last.lower():
                return "optimizer_step"
            return None
        if meth in ("backward", "manual_backward") or facts.qualify(func) in ("torch.autograd.backward",):
            return "backward" if _root_of_call(call, facts) is not None else None
    if isinstance(func, (cst.Name, cst.Attribute)):
        q = facts.qualify(func) or ""
        if q.endswith(("clip_grad_norm_", "clip_grad_value_")):
            return "clip"
        if q in ("torch.autograd.backward",):
            return "backward"
        name = dotted(func) or ""
        if name and _FORWARD_NAME.search(name.rsplit(".", 1)[-1]) and name != "self":
            return "forward"
        if name and is_loss_callee(func, facts, scope, stmt):
            return "loss"
    return None


def _small_stmts(scope: Scope):
    for s in scope.stmts:
        if not isinstance(s.node, _COMPOUND):
            yield s


class _Finder:
    def __init__(self, facts: FileFacts, program: Any) -> None:
        self.facts = facts
        self.program = program

    def loops(self) -> List[TrainLoop]:
        out: List[TrainLoop] = []
        facts = self.facts
        for scope in facts.scopes():
            loop_stmts = [s for s in scope.stmts if isinstance(s.node, (cst.For, cst.While))]
            epoch_nodes = [s for s in loop_stmts if is_epoch_loop(s.node) and not any(is_epoch_loop(l) for l in s.loops)]
            for s in epoch_nodes:
                out.append(self._epoch_loop(scope, s))
            taken = {id(s.node) for s in epoch_nodes}
            # iteration loops: outermost loops that train by themselves, not inside an epoch loop
            for s in loop_stmts:
                if id(s.node) in taken or any(id(l) in taken for l in s.loops) or s.loops:
                    continue
                loop = self._iteration_loop(scope, s)
                if loop is not None:
                    out.append(loop)
        return out

    # ---------------------------------------------------------------------------------------
    def _epoch_loop(self, scope: Scope, s: Stmt) -> TrainLoop:
        node = s.node
        count, count_node = self._count(node, scope, s, epoch=True)
        loop = TrainLoop(self.facts, scope, node, s, "epoch", count, count_node)
        batch_ids = set()
        # loops inside the epoch loop that train (backward / optimizer.step) are batch loops whatever they iterate
        training_loops = set()
        for inner in _small_stmts(scope):
            if node in inner.loops and inner.loops[-1] is not node:
                for call in _calls_in(inner.node):
                    if classify_call(call, self.facts, scope, inner) in ("backward", "optimizer_step"):
                        training_loops.update(id(l) for l in inner.loops[inner.loops.index(node) + 1:])
                        break
        for inner in scope.stmts:
            if node in inner.loops and isinstance(inner.node, (cst.For, cst.While)) and (
                _is_batch_loop(inner.node) or id(inner.node) in training_loops
            ):
                loop.batch_loops.append(inner.node)
                batch_ids.add(id(inner.node))
        for inner in _small_stmts(scope):
            if node not in inner.loops and inner is not s:
                continue
            if node not in inner.loops:
                continue
            k = inner.loops.index(node)
            in_batch = any(id(l) in batch_ids for l in inner.loops[k + 1:])
            level = "batch" if in_batch else "epoch"
            self._events_of(loop, self.facts, scope, inner, level, (inner.index,), 0)
        # events before/after the loop in the same scope
        for inner in _small_stmts(scope):
            if node in inner.loops:
                continue
            for call in _calls_in(inner.node):
                kind = classify_call(call, self.facts, scope, inner)
                if kind == "scheduler_step" or kind == "optimizer_step":
                    loop.events.append(Event(kind, call, _receiver(call), self.facts, scope, inner, "outside", (inner.index,)))
        loop.events.sort(key=lambda e: e.order)
        return loop

    def _iteration_loop(self, scope: Scope, s: Stmt) -> Optional[TrainLoop]:
        node = s.node
        loop = TrainLoop(self.facts, scope, node, s, "iteration", None)
        for inner in _small_stmts(scope):
            if node in inner.loops:
                self._events_of(loop, self.facts, scope, inner, "batch", (inner.index,), 0)
        kinds = {e.kind for e in loop.events}
        if not ({"backward", "optimizer_step"} & kinds):
            return None
        loop.count, loop.count_node = self._count(node, scope, s, epoch=False)
        loop.events.sort(key=lambda e: e.order)
        return loop

    def _count(self, node, scope: Scope, s: Stmt, epoch: bool):
        facts, program = self.facts, self.program
        if isinstance(node, cst.For):
            args = _range_args(node.iter)
            if not args:
                return None, None
            if len(args) == 1:
                return fold(args[0], facts, scope, s, program), args[0]
            start, stop = args[0], args[1]
            if len(args) > 2:
                step = fold(args[2], facts, scope, s, program)
                if step is None or step.value != 1:
                    return None, None
            # range(start, start + N): N
            if isinstance(stop, cst.BinaryOperation) and isinstance(stop.operator, cst.Add) and stop.left.deep_equals(start):
                return fold(stop.right, facts, scope, s, program), stop.right
            f_start = fold(start, facts, scope, s, program)
            f_stop = fold(stop, facts, scope, s, program)
            if f_stop is None or not isinstance(f_stop.value, int):
                return None, None
            if f_start is None:
                # range(start_epoch, epochs): a resumed run starts later; the plan is `epochs`
                return (f_stop, stop) if epoch and isinstance(start, (cst.Name, cst.Attribute)) else (None, None)
            if not isinstance(f_start.value, int):
                return None, None
            # range(1, epochs + 1): `epochs` epochs
            if isinstance(stop, cst.BinaryOperation) and isinstance(stop.operator, cst.Add) and f_start.value == 1:
                right = fold(stop.right, facts, scope, s, program)
                if right is not None and right.value == 1:
                    left = fold(stop.left, facts, scope, s, program)
                    if left is not None:
                        return left, stop.left
            n = f_stop.value - f_start.value
            return Folded(n, f_stop.node, f_stop.facts, f_stop.how, f_stop.label, f_stop.deps | f_start.deps), stop
        if isinstance(node, cst.While) and isinstance(node.test, cst.Comparison) and len(node.test.comparisons) == 1:
            comp = node.test.comparisons[0]
            if isinstance(comp.operator, (cst.LessThan,)):
                return fold(comp.comparator, facts, scope, s, program), comp.comparator
            if isinstance(comp.operator, cst.LessThanEqual):
                f = fold(comp.comparator, facts, scope, s, program)
                if f is not None and isinstance(f.value, int):
                    return Folded(f.value + 1, f.node, f.facts, f.how, f.label, f.deps), comp.comparator
        return None, None

    def _events_of(self, loop: TrainLoop, facts: FileFacts, scope: Scope, stmt: Stmt, level: str, order, depth: int) -> None:
        for i, call in enumerate(_calls_in(stmt.node)):
            kind = classify_call(call, facts, scope, stmt)
            if kind is not None:
                loop.events.append(Event(kind, call, _receiver(call), facts, scope, stmt, level, order + (i,),
                                         _conditional(stmt)))
                continue
            if depth >= _HELPER_DEPTH:
                continue
            helper = self._helper(call, facts, scope)
            if helper is None or helper in loop.helpers:
                continue
            hfacts, hscope = helper
            loop.helpers.append(hscope)
            for inner in _small_stmts(hscope):
                if level == "batch":
                    lvl = "batch"
                else:
                    lvl = "batch" if inner.loops else "epoch"
                    if inner.loops and not any(_is_batch_loop(l) for l in inner.loops):
                        lvl = "batch" if any(isinstance(l, (cst.For, cst.While)) for l in inner.loops) else "epoch"
                    if lvl == "batch":
                        for l in inner.loops:
                            if l not in loop.batch_loops:
                                loop.batch_loops.append(l)
                self._events_of(loop, hfacts, hscope, inner, lvl, order + (i, inner.index), depth + 1)

    def _helper(self, call: cst.Call, facts: FileFacts, scope: Scope) -> Optional[Tuple[FileFacts, Scope]]:
        name = dotted(call.func)
        if name is None:
            return None
        if "." not in name:
            f = facts.function(name)
            if f is not None:
                return facts, f
        elif name.startswith("self.") and name.count(".") == 1 and scope.class_name:
            cls = facts.classes.get(scope.class_name)
            if cls is not None and name[5:] in cls.methods:
                return facts, cls.methods[name[5:]]
            return None
        if self.program is None:
            return None
        q = facts.aliases.qualify_dotted(name)
        if q is None:
            return None
        return _imported_function(q, facts, self.program)


def _imported_function(qualified: str, facts: FileFacts, program: Any) -> Optional[Tuple[FileFacts, Scope]]:
    import os

    from trainlint.analysis.program import resolve_module

    me = program.file_of(facts)
    if me is None:
        return None
    lead = len(qualified) - len(qualified.lstrip("."))
    parts = qualified[lead:].split(".")
    if len(parts) < 2:
        return None
    mod = "." * lead + ".".join(parts[:-1])
    path = resolve_module(mod, me.path, [])
    if path is None:
        return None
    f = program.file_at(str(path))
    if f is None:
        return None
    fn = f.facts.function(parts[-1])
    return (f.facts, fn) if fn is not None else None


def _conditional(stmt: Stmt) -> bool:
    """Is the statement under an if/try/else inside its innermost loop (or its function, outside loops)?"""
    if not stmt.loops:
        return bool(stmt.block)
    inner = id(stmt.loops[-1])
    if inner not in stmt.block:
        return True
    return stmt.block.index(inner) != len(stmt.block) - 1


def _calls_in(node: cst.CSTNode):
    return calls(node)


# ------------------------------------------------------------------------------------------------


def train_loops(facts: FileFacts, program: Any = None) -> List[TrainLoop]:
    """The training loops of one file (epoch loops and iteration loops), with their events. Memoized
    per file (and program: helpers and constants may come from other files)."""
    cache: Dict[int, Tuple[Any, List[TrainLoop]]] = getattr(facts, "_train_loops", None) or {}
    key = id(program)
    hit = cache.get(key)
    if hit is None or hit[0] is not program:
        hit = cache[key] = (program, _Finder(facts, program).loops())
        try:
            setattr(facts, "_train_loops", cache)
        except Exception:  # pragma: no cover
            pass
    return hit[1]


def program_loops(program: Any) -> List[TrainLoop]:
    """Training loops of every file of a program."""
    out: List[TrainLoop] = []
    for f in program.files:
        out.extend(train_loops(f.facts, program))
    return out


def trainer_max_epochs(program: Any) -> Optional[Tuple[Folded, FileFacts]]:
    """``max_epochs=`` of a Lightning/other ``Trainer(...)`` call in the program, folded (one value)."""
    found: List[Folded] = []
    for f in program.files:
        facts = f.facts
        if "max_epochs" not in f.ctx.source.text:
            continue
        for scope in facts.scopes():
            for s in _small_stmts(scope):
                for call in _calls_in(s.node):
                    name = (dotted(call.func) or "").rsplit(".", 1)[-1]
                    if name != "Trainer":
                        continue
                    for a in call.args:
                        if a.keyword is not None and a.keyword.value == "max_epochs":
                            v = fold(a.value, facts, scope, s, program)
                            if v is None:
                                return None
                            found.append(v)
    if len({repr(v.value) for v in found}) == 1:
        return found[0], found[0].facts
    return None


def helper_of(call: cst.Call, facts: FileFacts, scope: Scope, program: Any = None) -> Optional[Tuple[FileFacts, Scope]]:
    """The project function a call runs (a function of this file, a ``self.method()`` of the class, or a
    function imported from another file of the program), as (facts, scope); None for library calls."""
    return _Finder(facts, program)._helper(call, facts, scope)
