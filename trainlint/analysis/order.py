"""Event order within one iteration of a training loop.

:mod:`trainlint.analysis.loops` finds the training loops and their events; this module lays the events of
one training loop out on a **timeline**: every event (``backward``, ``clip``, ``unscale``, ``optimizer_step``,
``zero_grad``, ``scheduler_step``, ...) in execution order, with

- ``loops``: the loops around it, from the training loop itself inwards (across helper functions: an event
  in ``train_one_epoch``'s batch loop has the epoch loop, then the batch loop);
- ``guards``: the ``if`` / ``try`` branches around it (``if (i + 1) % accum == 0:`` is an accumulation
  guard; ``elif``/``else`` branches know which ``if`` they belong to, so two events in different branches of
  one ``if`` are *exclusive*).

Rules then ask sentence-like questions: "is there a backward between this clip and the step it precedes?"
(TL203), "is the gradient cleared in the iteration of this step?" (TL204), "is scheduler.step() before
optimizer.step() in the same iteration?" (TL205).

Gradient clearing (``zero_grad``) counts ``optimizer.zero_grad()``, ``model.zero_grad()``,
``self.zero_grad()``, ``p.grad = None``, ``p.grad.zero_()`` / ``p.grad.data.zero_()`` and
``p.grad = torch.zeros_like(p)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import libcst as cst

from trainlint.analysis.facts import FileFacts, Scope, Stmt
from trainlint.analysis.loops import TrainLoop, classify_call, helper_of, program_loops, train_loops
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.walk import walk, calls

#: How deep helper functions are followed from a training loop.
HELPER_DEPTH = 3

_CLEAR_METHODS = {"zero_grad", "zero_grads", "zero_gradients", "clear_grad", "clear_grads", "clear_gradients"}
_ACCUM_NAME = re.compile(r"accum|accumulat|grad_steps|update_freq|(^|_)ga(_|$)|sync_grad|micro|n_acc|iters_to_acc", re.I)
_MARKER_LIMIT = 1000  # block entries below this are branch markers, not node ids


@dataclass(eq=False)
class Guard:
    """One branch around an event: ``node`` is the ``if`` (or ``try``/loop-``else``); ``branch`` 0 is the
    body of an ``if`` / ``try``, k > 0 an ``else`` (``try``: 2 = else, >= 10 an ``except`` handler)."""

    node: cst.CSTNode
    branch: int
    facts: FileFacts
    scope: Optional[Scope] = None

    @property
    def is_if(self) -> bool:
        return isinstance(self.node, cst.If)

    @property
    def test(self) -> Optional[cst.BaseExpression]:
        return self.node.test if isinstance(self.node, cst.If) else None

    @property
    def runs_always(self) -> bool:
        """A ``try`` body (or its ``else``) runs unless something raises: not a real condition."""
        return isinstance(self.node, (cst.Try,)) and self.branch in (0, 2)

    @property
    def is_accumulation(self) -> bool:
        """``if (i + 1) % accum_steps == 0:`` / ``if step % k == 0`` / ``if accelerator.sync_gradients:``
        / ``if (i + 1) % args.gradient_accumulation_steps == 0 or last``."""
        test = self.test
        if test is None:
            return False
        if _accumulation_expr(test):
            return True
        # need_update = (i + 1) % accum == 0 ... if need_update:
        if self.scope is not None:
            for n in walk(test):
                if isinstance(n, cst.Name):
                    for a in self.scope.assigns.get(n.value, ()):
                        if a.value is not None and _accumulation_expr(a.value):
                            return True
        return False


def _accumulation_expr(expr: cst.CSTNode) -> bool:
    for n in walk(expr):
        if isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.Modulo):
            return True
        if isinstance(n, cst.Name) and _ACCUM_NAME.search(n.value):
            return True
        if isinstance(n, cst.Attribute) and _ACCUM_NAME.search(n.attr.value):
            return True
    return False



@dataclass(eq=False)
class TimedEvent:
    kind: str  # forward | loss | backward | clip | unscale | optimizer_step | zero_grad | scheduler_step
    node: cst.CSTNode  # the call (or the `p.grad = None` statement)
    receiver: str  # dotted receiver of a method call, else ""
    facts: FileFacts
    scope: Scope
    stmt: Stmt
    order: Tuple[int, ...]
    loops: Tuple[cst.CSTNode, ...]  # loops around it, outermost (the training loop) first
    guards: Tuple[Guard, ...]  # branches around it, outermost first
    via: Tuple[cst.Call, ...] = ()  # the helper calls it was reached through

    @property
    def call(self) -> Optional[cst.Call]:
        return self.node if isinstance(self.node, cst.Call) else None

    @property
    def method(self) -> str:
        c = self.call
        return c.func.attr.value if c is not None and isinstance(c.func, cst.Attribute) else ""

    @property
    def conditional(self) -> bool:
        return any(not g.runs_always for g in self.guards)

    def real_guards(self) -> List[Guard]:
        return [g for g in self.guards if not g.runs_always]

    def optimizer(self) -> str:
        """The optimizer an optimizer step / zero_grad / unscale_ acts on: ``opt`` for ``opt.step()`` and
        ``scaler.step(opt)`` / ``scaler.unscale_(opt)``."""
        c = self.call
        if c is None:
            return ""
        if self.kind in ("optimizer_step", "unscale") and "scaler" in self.receiver.lower():
            for a in c.args:
                if a.keyword is None and not a.star:
                    return dotted(a.value) or ""
            return ""
        return self.receiver


@dataclass(eq=False)
class Timeline:
    """The events of one training loop in execution order."""

    loop: TrainLoop
    events: List[TimedEvent] = field(default_factory=list)

    def of(self, *kinds: str) -> List[TimedEvent]:
        return [e for e in self.events if e.kind in kinds]


# ------------------------------------------------------------------------------------------------
# relations between two events


def common_loops(a: TimedEvent, b: TimedEvent) -> Tuple[cst.CSTNode, ...]:
    out = []
    for x, y in zip(a.loops, b.loops):
        if x is not y:
            break
        out.append(x)
    return tuple(out)


def exclusive(a: TimedEvent, b: TimedEvent) -> bool:
    """Are ``a`` and ``b`` in different branches of one ``if`` / ``try`` (never both in one pass)?"""
    mine = {id(g.node): g.branch for g in a.guards}
    for g in b.guards:
        other = mine.get(id(g.node))
        if other is not None and other != g.branch:
            if isinstance(g.node, cst.Try) and {other, g.branch} <= {0, 2}:
                continue  # try body and try-else both run
            return True
    return False


def runs_whenever(a: TimedEvent, b: TimedEvent) -> bool:
    """Does ``a`` run whenever ``b`` runs (every real guard of ``a`` also guards ``b``, same branch)?"""
    theirs = {(id(g.node), g.branch) for g in b.guards}
    return all((id(g.node), g.branch) in theirs for g in a.real_guards())


def same_iteration_before(a: TimedEvent, b: TimedEvent) -> bool:
    """``a`` comes before ``b`` within one pass of the innermost loop around both."""
    return bool(common_loops(a, b)) and a.order < b.order and not exclusive(a, b)


def in_loop(e: TimedEvent, loop: cst.CSTNode) -> bool:
    return any(l is loop for l in e.loops)


# ------------------------------------------------------------------------------------------------
# building timelines


def _node_map(scope: Scope) -> Dict[int, cst.CSTNode]:
    cache = scope.__dict__.get("_order_nodes")
    if cache is None:
        cache = {}
        elif_parent: Dict[int, cst.If] = {}
        for s in scope.stmts:
            if isinstance(s.node, (cst.If, cst.For, cst.While, cst.Try, cst.With)) or isinstance(
                    s.node, getattr(cst, "TryStar", ())):
                cache[id(s.node)] = s.node
                if isinstance(s.node, cst.If) and isinstance(s.node.orelse, cst.If):
                    elif_parent[id(s.node.orelse)] = s.node
        cache["elif"] = elif_parent  # type: ignore[assignment]
        scope.__dict__["_order_nodes"] = cache
    return cache


def _guards_of(stmt: Stmt, scope: Scope, facts: FileFacts, after: Optional[cst.CSTNode]) -> Tuple[Tuple[Guard, ...], Tuple[cst.CSTNode, ...]]:
    """Guards and loops of ``stmt`` inside ``after`` (a loop of the same scope), or in the whole scope."""
    nodes = _node_map(scope)
    elif_parent: Dict[int, cst.If] = nodes["elif"]  # type: ignore[assignment]
    block = list(stmt.block)
    start = 0
    if after is not None:
        try:
            start = block.index(id(after)) + 1
        except ValueError:
            start = len(block)
    guards: List[Guard] = []
    for k in range(start, len(block)):
        key = block[k]
        if key < _MARKER_LIMIT:
            continue
        node = nodes.get(key)
        if node is None:
            continue
        marker = block[k + 1] if k + 1 < len(block) and block[k + 1] < _MARKER_LIMIT else 0
        if isinstance(node, cst.If):
            chain = []
            parent = elif_parent.get(id(node))
            while parent is not None:  # an elif: the else branch of the if above it
                chain.append(Guard(parent, 1, facts, scope))
                parent = elif_parent.get(id(parent))
            guards.extend(reversed(chain))
            guards.append(Guard(node, marker, facts, scope))
        elif isinstance(node, (cst.For, cst.While)):
            if marker:
                guards.append(Guard(node, marker, facts, scope))  # a loop's else
        elif not isinstance(node, cst.With):
            guards.append(Guard(node, marker, facts, scope))
    loops = stmt.loops
    if after is not None:
        idx = next((i for i, l in enumerate(loops) if l is after), None)
        loops = loops[idx + 1:] if idx is not None else ()
    return tuple(guards), tuple(loops)


def _grad_clear_stmt(node: cst.CSTNode) -> bool:
    """``p.grad = None`` / ``p.grad = torch.zeros_like(p)``."""
    if isinstance(node, cst.Assign):
        value = node.value
        clearing = (isinstance(value, cst.Name) and value.value == "None") or (
            isinstance(value, cst.Call) and (dotted(value.func) or "").rsplit(".", 1)[-1] in ("zeros_like", "zeros"))
        if not clearing:
            return False  # p.grad = p.grad / world_size rescales, it does not clear
        for t in node.targets:
            if isinstance(t.target, cst.Attribute) and t.target.attr.value == "grad":
                return True
    return False


#: Public name: is this statement ``p.grad = None`` / ``p.grad = torch.zeros_like(p)``?
is_grad_clear_statement = _grad_clear_stmt


def classify(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[str]:
    """:func:`trainlint.analysis.loops.classify_call` plus ``unscale`` and every way of clearing gradients."""
    func = call.func
    if isinstance(func, cst.Attribute):
        meth = func.attr.value
        if meth == "unscale_":
            return "unscale"
        if meth in _CLEAR_METHODS:
            return "zero_grad"
        if meth == "zero_" and isinstance(func.value, cst.Attribute):
            # p.grad.zero_(), p.grad.data.zero_()
            inner = func.value
            if inner.attr.value == "data" and isinstance(inner.value, cst.Attribute):
                inner = inner.value
            if inner.attr.value == "grad":
                return "zero_grad"
    elif isinstance(func, cst.Name) and (func.value in _CLEAR_METHODS or "zero_grad" in func.value):
        return "zero_grad"  # zero_grad(model), a helper we cannot read
    return classify_call(call, facts, scope, stmt)


class _Builder:
    def __init__(self, program: Any) -> None:
        self.program = program

    def timeline(self, loop: TrainLoop) -> Timeline:
        tl = Timeline(loop)
        scope, facts = loop.scope, loop.facts
        body_is_iteration = isinstance(loop.node, cst.FunctionDef)  # Lightning's manual training_step
        for s in scope.stmts:
            if isinstance(s.node, (cst.FunctionDef, cst.ClassDef)):
                continue
            if not body_is_iteration and not any(l is loop.node for l in s.loops):
                continue
            if isinstance(s.node, (cst.For, cst.While, cst.If, cst.Try, cst.With)):
                # only the header expressions of a compound statement (its body has its own statements)
                continue
            guards, loops = _guards_of(s, scope, facts, None if body_is_iteration else loop.node)
            self._stmt_events(tl, facts, scope, s, (s.index,), (loop.node,) + loops, guards, (), 0)
        tl.events.sort(key=lambda e: e.order)
        return tl

    def _stmt_events(self, tl: Timeline, facts: FileFacts, scope: Scope, s: Stmt, order, loops, guards, via, depth: int) -> None:
        node = s.node
        if _grad_clear_stmt(node):
            tl.events.append(TimedEvent("zero_grad", node, "", facts, scope, s, order + (0,), loops, guards, via))
            return
        i = 0
        for n in calls(node):
            i += 1
            kind = classify(n, facts, scope, s)
            if kind is not None:
                recv = dotted(n.func.value) or "" if isinstance(n.func, cst.Attribute) else ""
                tl.events.append(TimedEvent(kind, n, recv, facts, scope, s, order + (i,), loops, guards, via))
                continue
            if depth >= HELPER_DEPTH:
                continue
            helper = helper_of(n, facts, scope, self.program)
            if helper is None:
                continue
            hfacts, hscope = helper
            if any(c is n for c in via) or hscope.node is scope.node:
                continue
            for inner in hscope.stmts:
                if isinstance(inner.node, (cst.FunctionDef, cst.ClassDef, cst.For, cst.While, cst.If, cst.Try, cst.With)):
                    continue
                hguards, hloops = _guards_of(inner, hscope, hfacts, None)
                self._stmt_events(tl, hfacts, hscope, inner, order + (i, inner.index), loops + hloops,
                                  guards + hguards, via + (n,), depth + 1)


def timelines(facts: FileFacts, program: Any = None) -> List[Timeline]:
    """Timelines of the training loops of one file (memoized per file and program)."""
    cache: Dict[int, Tuple[Any, List[Timeline]]] = facts.__dict__.setdefault("_order_timelines", {})
    hit = cache.get(id(program))
    if hit is None or hit[0] is not program:
        b = _Builder(program)
        loops = list(train_loops(facts, program)) + _manual_training_steps(facts) + _step_functions(facts)
        hit = cache[id(program)] = (program, [b.timeline(l) for l in loops])
    return hit[1]


def _manual_training_steps(facts: FileFacts) -> List[TrainLoop]:
    """Lightning manual optimization: ``training_step`` runs once per batch and calls
    ``self.manual_backward(loss)`` and ``opt.step()`` itself — its body is one iteration."""
    out: List[TrainLoop] = []
    for scope in facts.functions:
        if scope.name != "training_step" or not scope.class_name:
            continue
        if not any(isinstance(n.func, cst.Attribute) and n.func.attr.value == "manual_backward"
                   for s in scope.stmts for n in calls(s.node)):
            continue
        out.append(TrainLoop(facts, scope, scope.node, Stmt(-1, scope.node, (), ()), "iteration", None))
    return out


def _step_functions(facts: FileFacts) -> List[TrainLoop]:
    """Functions that backpropagate and step straight through, outside any loop of their own
    (``def update(self, batch): ...; loss.backward(); self.optimizer.step()``): each call is one
    iteration of a loop we may not see (an RL agent's update, a ``train_step`` called from elsewhere).
    Their timelines have ``loop.unit == "call"``: what happens around the call (a zero_grad in the caller)
    is unknown, but the order inside the body is certain."""
    out: List[TrainLoop] = []
    for scope in facts.functions:
        if scope.name == "training_step" and scope.class_name:
            continue  # Lightning: see _manual_training_steps
        kinds = set()
        for s in scope.stmts:
            if s.loops or isinstance(s.node, (cst.For, cst.While, cst.If, cst.Try, cst.With, cst.FunctionDef, cst.ClassDef)):
                continue
            for n in calls(s.node):
                if isinstance(n.func, cst.Attribute) and n.func.attr.value in ("backward", "step"):
                    k = classify(n, facts, scope, s)
                    if k in ("backward", "optimizer_step"):
                        kinds.add(k)
        if kinds == {"backward", "optimizer_step"}:
            out.append(TrainLoop(facts, scope, scope.node, Stmt(-1, scope.node, (), ()), "call", None))
    return out


def program_timelines(program: Any) -> List[Timeline]:
    out: List[Timeline] = []
    for f in program.files:
        out.extend(timelines(f.facts, program))
    return out


# ------------------------------------------------------------------------------------------------
# what the stepped / cleared objects are


def defined_class(name: str, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[str]:
    """The qualified (canonical) class or factory ``name`` was built from at ``stmt``, if known."""
    from trainlint.analysis.loops import _defined_class

    return _defined_class(name, facts, scope, stmt)


def constructor_call(name: str, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[Tuple[cst.Call, FileFacts, Scope, Stmt]]:
    """The call ``name`` was assigned from (``scaler = GradScaler(enabled=...)``), if one is visible."""
    assigns = scope.reaching(name, stmt) or facts.module.assigns.get(name, [])
    if name.startswith("self.") and scope.class_name and not assigns:
        assigns = facts.attributes.get(scope.class_name, {}).get(name, [])
    for a in assigns:
        if isinstance(a.value, cst.Call):
            return a.value, facts, a.scope or scope, a.stmt
    return None


class Reported:
    """Report each node once per run, whatever program it is judged in (a file imported by two entry
    scripts, a helper reached from two loops)."""

    def __init__(self, program: Any, code: str) -> None:
        self.program, self.key = program, f"_reported_{code}"

    def first(self, facts: FileFacts, node: cst.CSTNode, line: int) -> bool:
        pf = self.program.file_of(facts) if self.program is not None else None
        store = pf.ctx.__dict__.setdefault(self.key, set()) if pf is not None else facts.__dict__.setdefault(self.key, set())
        if line in store:
            return False
        store.add(line)
        return True


def ctx_of(program: Any, facts: FileFacts):
    pf = program.file_of(facts)
    return pf.ctx if pf is not None else None


_TORCH_SCHED_FACTORY = re.compile(r"^(transformers|diffusers|timm\.scheduler\.scheduler_factory_never)\b.*get_.*schedul|^(transformers|diffusers)(\.\w+)*\.get_scheduler$")


def scheduler_kind(e: TimedEvent, program: Any = None) -> Optional[str]:
    """What the stepped scheduler of event ``e`` is: ``"torch"`` (a torch.optim.lr_scheduler class, a
    subclass, or a transformers/diffusers factory returning LambdaLR), ``"plateau"`` (ReduceLROnPlateau),
    ``"other"`` (a library or project scheduler with its own step semantics) or None (unknown: a parameter)."""
    if not e.receiver:
        return None
    made = constructor_call(e.receiver, e.facts, e.scope, e.stmt)
    if made is None:
        return None
    call, facts, scope, stmt = made
    return _kind_of_callee(call.func, facts, 0)


def _kind_of_callee(func: cst.BaseExpression, facts: FileFacts, depth: int) -> Optional[str]:
    q = facts.qualify(func)
    q = canonical(q) if q else (dotted(func) or "")
    if q == "self.lr_schedulers":
        return "torch"  # Lightning manual optimization: the schedulers of configure_optimizers
    if q.startswith("torch.optim.lr_scheduler.") or q.startswith("torch.optim."):
        return "plateau" if q.endswith("ReduceLROnPlateau") else "torch"
    if _TORCH_SCHED_FACTORY.search(q):
        return "torch"
    name = dotted(func) or ""
    if "." not in name:
        cls = facts.classes.get(name)
        if cls is not None:
            for b in cls.bases:
                b = canonical(b)
                if b.startswith("torch.optim.lr_scheduler.") or b.startswith("torch.optim."):
                    return "plateau" if b.endswith("ReduceLROnPlateau") else "torch"
                if b in facts.classes and depth < 3:
                    k = _kind_of_callee(cst.Name(b), facts, depth + 1)
                    if k is not None:
                        return k
            return "other"
        fn = facts.function(name)
        if fn is not None and depth < 2:
            kinds = set()
            for value, _ in fn.returns:
                if isinstance(value, cst.Call):
                    kinds.add(_kind_of_callee(value.func, facts, depth + 1))
                else:
                    kinds.add(None)
            if len(kinds) == 1:
                return kinds.pop()
            return "other" if "other" in kinds or "plateau" in kinds else None
        return None
    return "other"


def where(program: Any, e: TimedEvent, from_facts: FileFacts) -> str:
    """``line 12`` when ``e`` is in the file of ``from_facts``, else ``engine/train.py:12`` (relative to it)."""
    import os

    ctx = ctx_of(program, e.facts) if program is not None else None
    if ctx is None:
        return "another file"
    line = ctx.span(e.node).line
    if e.facts is from_facts:
        return ctx.where(line)
    home = ctx_of(program, from_facts)
    path = ctx.path
    if home is not None:
        try:
            path = os.path.relpath(ctx.path, os.path.dirname(home.path) or ".")
        except ValueError:
            pass
    return ctx.where(line, home=home, display=path.replace(os.sep, '/'))
