"""What runs in each iteration: the training loops of a program and the ordered events of one pass.

One place for "what runs in this iteration?". Other layers answer what an expression holds
(:mod:`trainlint.analysis.objects`), how a model is built (:mod:`trainlint.analysis.modules`) and what an
evaluation is (:mod:`trainlint.analysis.evaluation`); this layer answers when things happen:

**Loops.** A training loop is either an **epoch loop** (``for epoch in range(EPOCHS)``, ``while epoch < n``)
whose body holds a **batch loop** (``for x, y in loader``, ``enumerate(train_loader)``, ``tqdm(...)``,
``range(len(loader))``) — directly or inside a helper called once per epoch (``train_one_epoch(...)``,
``self.train_epoch()``, or a function imported from another file of the program, ``fit_one_epoch`` in
``utils/``) — or an **iteration loop** with no epochs around it (``for it in range(max_iters)``,
``while step < total_steps``, a single pass ``for batch in loader``) that calls ``backward()`` /
``optimizer.step()`` itself. :class:`TrainLoop` lists its :class:`Event` s with their level (``"batch"``,
``"epoch"``, ``"outside"``) and ``count``, the folded number of epochs / iterations the run plans.

**Timelines.** :class:`Timeline` lays the events of one training loop out in execution order
(:class:`TimedEvent`: ``forward``, ``loss``, ``backward``, ``clip``, ``unscale``, ``optimizer_step``,
``zero_grad``, ``scheduler_step``, ``set_epoch``), each with the loops around it from the training loop
inwards (across helper functions), the guards (``if`` / ``try`` branches) around it, and the object it acts
on (``receiver``: the optimizer cleared, the scheduler stepped, the sampler reseeded). Guards know whether
the run takes them by default (:meth:`Guard.default_arm`: ``if args.amp:`` with ``--amp`` off by default).

**Modes and autograd.** ``model.eval()`` / ``model.train()`` switches (:class:`ModeCall`, followed through
helpers), which statements run without autograd (``with torch.no_grad()``, ``@torch.inference_mode()``,
``torch.set_grad_enabled(False)``), the mode at a statement (:func:`mode_before`) and the call sites of a
helper (:func:`call_sites`).

**Losses and backward.** What is a loss (:func:`is_loss_callee`: torch losses, criterion objects, loss
helpers), what each iteration backpropagates (:func:`backward_roots`: ``loss.backward()``,
``accelerator.backward(loss)``, ``scaler.scale(loss).backward()``, what ``training_step`` or a loss function
returns) and how that value flows back through assignments, arithmetic and small helpers
(:func:`flow_back`, :func:`direct_caps`: the caps of TL202).

**Which object an event acts on.** :func:`event_target` / :func:`same_target` / :func:`acts_on` ask the
value-flow layer (:mod:`trainlint.analysis.objects`) which optimizer a ``zero_grad()`` clears and a
``step()`` steps (``scaler.step(opt)`` included), which scheduler is stepped, whether a receiver is a
``GradScaler`` (:func:`is_scaler`, :func:`scaler_disabled`) and which optimizer updates the parameters a
clip clips (:func:`updates_parameters_of`): by object identity, through names, ``self`` attributes,
parameters bound at call sites in other files, containers and factories.

Rules ask sentence-like questions: "is there a backward between this clip and the step it precedes?"
(TL203), "is the gradient of this optimizer cleared in the iteration of its step?" (TL204), "is
scheduler.step() before optimizer.step() in the same iteration?" (TL205), "is this sampler given the epoch
at every epoch?" (TL305), "is the model in eval mode when this validation loop runs?" (TL401).

Gradient clearing (``zero_grad``) counts ``optimizer.zero_grad()``, ``model.zero_grad()``,
``self.zero_grad()``, ``p.grad = None``, ``p.grad.zero_()`` / ``p.grad.data.zero_()`` and
``p.grad = torch.zeros_like(p)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import libcst as cst

from trainlint.analysis.facts import MARKER_LIMIT, FileFacts, Scope, Stmt, arm_marker
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.syntax import bound_arg, is_none, kwarg, string_keys
from trainlint.analysis.values import Folded, fold, format_value
from trainlint.analysis.walk import calls, type_test, walk



# ==================================================================================================
# loops and their events
# ==================================================================================================

_EPOCH_NAME = re.compile(r"epoch|^ep$|^e$", re.I)
_BATCHY = re.compile(r"load|(^|_)dl($|_)|batch|data|sampler|tqdm|pbar|iter|train|(^|_)ds($|_)|enumerate|zip|prefetch", re.I)
_SCHED_NAME = re.compile(r"sched|lr_policy|(^|_)lrs($|_)|warmup", re.I)
_OPTIM_NAME = re.compile(r"optim|(^|_)opt($|_|\d)|(^|_)optimi[sz]er", re.I)
_FORWARD_NAME = re.compile(r"(^|_)(model|net|network|module|encoder|generator|discriminator|classifier)s?$", re.I)
_COMPOUND = (cst.FunctionDef, cst.ClassDef, cst.For, cst.While, cst.If, cst.With, cst.Try)
_is_compound = type_test(*_COMPOUND)
_is_loop = type_test(cst.For, cst.While)

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


def assignments(name: str, facts: FileFacts, scope: Scope, stmt: Stmt, later: bool = False) -> list:
    """Assignments of ``name`` visible at ``stmt``: those reaching it in its scope, then ``self.x`` set in
    any method of the class, then the module's (``later``: also those after ``stmt`` when it is at module
    level). A cheap, file-local look-up for classifying events; :mod:`trainlint.analysis.objects` answers
    what a name holds across files."""
    found = scope.reaching(name, stmt)
    if found:
        return found
    if name.startswith("self.") and scope.class_name:
        found = facts.attributes.get(scope.class_name, {}).get(name, [])
        if found:
            return found
    if scope is not facts.module or later:
        return facts.module.assigns.get(name, [])
    return []


def _defined_class(name: str, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[str]:
    """The qualified class of the call ``name`` was assigned from, if any (scheduler vs optimizer)."""
    for a in assignments(name, facts, scope, stmt, later=True):
        if isinstance(a.value, cst.Call):
            q = facts.qualify(a.value.func)
            if q:
                return canonical(q)
    return None


def classify_call(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt, program: Any = None) -> Optional[str]:
    """The event kind of one call, or None. With a ``program``, the receiver of a ``.step()`` is asked of
    the value-flow layer first (an optimizer, a scheduler or a GradScaler, built anywhere: ``solver.step()``
    on a parameter, ``optimizers["g"].step()``); where it cannot tell, the assignment in the file and then
    the receiver's name (``sched``, ``optimizer``, ``scaler``) do."""
    func = call.func
    if isinstance(func, cst.Attribute):
        meth = func.attr.value
        recv = _receiver(call)
        last = recv.rsplit(".", 1)[-1]
        if meth == "zero_grad":
            return "zero_grad"
        if meth == "set_epoch":
            return "set_epoch"
        if meth in ("clip_grad_norm_", "clip_grad_value_", "clip_grad_norm", "clip_gradients"):
            return "clip"
        if meth == "step":
            if program is not None:
                # what the receiver holds, asked of the value-flow layer first (across names, attributes,
                # parameters and files); the file-local look-up and the name only where it cannot tell
                kind = _step_kind(program, ObjectRef(func.value, facts, scope, stmt))
                if kind is not None:
                    return kind
            cls = _defined_class(recv, facts, scope, stmt) if recv else None
            if cls is not None:
                if cls.startswith("torch.optim.lr_scheduler.") or "schedul" in cls.lower():
                    return "scheduler_step"
                if cls.startswith("torch.optim.") or cls in SCALER_CLASSES:
                    return "optimizer_step"  # scaler.step(opt) steps opt
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


def _step_kind(program: Any, ref: "ObjectRef") -> Optional[str]:
    """``scheduler_step`` / ``optimizer_step`` when every object ``ref`` holds is a scheduler / an optimizer
    or a GradScaler (:mod:`trainlint.analysis.objects`), else None."""
    objs = _objects_of(program, ref)
    if not _followed(objs):
        return None
    from trainlint.analysis.objects import World

    kinds = set()
    for o in objs:
        q = canonical(o.qname) if o.qname else ""
        if q.startswith("torch.optim.lr_scheduler."):
            kinds.add("scheduler_step")
        elif (q.startswith("torch.optim.") or (q.startswith(OPTIMIZER_LIBS[1:]) and "optim" in q.lower())
              or World.is_a(o, *SCALER_CLASSES)):
            kinds.add("optimizer_step")
        else:
            return None
    return kinds.pop() if len(kinds) == 1 else None


def _small(scope: Scope):
    """The statements of ``scope`` that are no compound statement (no def, class, loop, if, with, try)."""
    for s in scope.stmts:
        if not _is_compound(s.node):
            yield s


class _Finder:
    def __init__(self, facts: FileFacts, program: Any) -> None:
        self.facts = facts
        self.program = program
        #: Did an answer depend on the program (a ``.step()`` receiver asked of the value-flow layer, a
        #: loop count folded)? When it did not, the loops found are those of every program that holds
        #: the file and the same files at ``files_asked``, and :func:`train_loops` keeps them for those.
        self.asked_program = False
        #: The project files a helper was looked up in: (path, the facts the program holds there or None).
        self.files_asked: List[Tuple[str, Optional[FileFacts]]] = []

    def _classify(self, call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[str]:
        if isinstance(call.func, cst.Attribute) and call.func.attr.value == "step":
            self.asked_program = True  # (classify_call reads the program for ``.step()`` only)
        return classify_call(call, facts, scope, stmt, self.program)

    def loops(self) -> List[TrainLoop]:
        out: List[TrainLoop] = []
        facts = self.facts
        for scope in facts.scopes():
            loop_stmts = [s for s in scope.stmts if _is_loop(s.node)]
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
        for inner in _small(scope):
            if node in inner.loops and inner.loops[-1] is not node:
                for call in calls(inner.node):
                    if self._classify(call, self.facts, scope, inner) in ("backward", "optimizer_step"):
                        training_loops.update(id(l) for l in inner.loops[inner.loops.index(node) + 1:])
                        break
        for inner in scope.stmts:
            if node in inner.loops and isinstance(inner.node, (cst.For, cst.While)) and (
                _is_batch_loop(inner.node) or id(inner.node) in training_loops
            ):
                loop.batch_loops.append(inner.node)
                batch_ids.add(id(inner.node))
        for inner in _small(scope):
            if node not in inner.loops and inner is not s:
                continue
            if node not in inner.loops:
                continue
            k = inner.loops.index(node)
            in_batch = any(id(l) in batch_ids for l in inner.loops[k + 1:])
            level = "batch" if in_batch else "epoch"
            self._events_of(loop, self.facts, scope, inner, level, (inner.index,), 0)
        # events before/after the loop in the same scope
        for inner in _small(scope):
            if node in inner.loops:
                continue
            for call in calls(inner.node):
                kind = self._classify(call, self.facts, scope, inner)
                if kind == "scheduler_step" or kind == "optimizer_step":
                    loop.events.append(Event(kind, call, _receiver(call), self.facts, scope, inner, "outside", (inner.index,)))
        loop.events.sort(key=lambda e: e.order)
        return loop

    def _iteration_loop(self, scope: Scope, s: Stmt) -> Optional[TrainLoop]:
        node = s.node
        loop = TrainLoop(self.facts, scope, node, s, "iteration", None)
        for inner in _small(scope):
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
        self.asked_program = True  # (constants fold through the program's files)
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
        for i, call in enumerate(calls(stmt.node)):
            kind = self._classify(call, facts, scope, stmt)
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
            for inner in _small(hscope):
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
        if self.program.file_of(facts) is None:
            self.asked_program = True
            return None
        path = _module_path(q, facts, self.program)
        if path is None:
            return None  # a library function (``F.relu``): the same answer in every program
        # a project file's function: the answer is the same in every program that holds the same file
        target = self.program.file_at(str(path))
        self.files_asked.append((str(path), target.facts if target is not None else None))
        if target is None:
            return None
        fn = target.facts.function(q.lstrip(".").rsplit(".", 1)[-1])
        return (target.facts, fn) if fn is not None else None


def _module_path(qualified: str, facts: FileFacts, program: Any):
    """The project file (path) of the module a qualified function name lives in, or None (a library,
    a bare name, or a file outside ``program``). Read from the disk only: no program file is needed."""
    from trainlint.analysis.program import resolve_module

    me = program.file_of(facts)
    if me is None:
        return None
    lead = len(qualified) - len(qualified.lstrip("."))
    parts = qualified[lead:].split(".")
    if len(parts) < 2:
        return None
    return resolve_module("." * lead + ".".join(parts[:-1]), me.path, [])


def _imported_function(qualified: str, facts: FileFacts, program: Any) -> Optional[Tuple[FileFacts, Scope]]:
    path = _module_path(qualified, facts, program)
    if path is None:
        return None
    parts = qualified.lstrip(".").split(".")
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



# ------------------------------------------------------------------------------------------------


def train_loops(facts: FileFacts, program: Any = None) -> List[TrainLoop]:
    """The training loops of one file (epoch loops and iteration loops), with their events. Memoized
    per file (and program: helpers and constants may come from other files)."""
    if program is not None:
        shared = facts.__dict__.get("_train_loops_any")
        if shared is not None and _same_files(program, facts, shared[0]):
            return shared[1]  # found without asking the program: the same in every program
    cache: Dict[int, Tuple[Any, List[TrainLoop]]] = getattr(facts, "_train_loops", None) or {}
    key = id(program)
    hit = cache.get(key)
    if hit is None or hit[0] is not program:
        finder = _Finder(facts, program)
        hit = cache[key] = (program, finder.loops())
        if program is not None and not finder.asked_program:
            facts.__dict__["_train_loops_any"] = (finder.files_asked, hit[1])
        try:
            setattr(facts, "_train_loops", cache)
        except Exception:  # pragma: no cover
            pass
    return hit[1]


def _same_files(program: Any, me: FileFacts, asked: List[Tuple[str, Optional[FileFacts]]]) -> bool:
    """Does ``program`` hold the same files (the same facts, or none) at each of these paths (and, when
    there are any, the file ``me`` itself: helpers are only looked up from a file of the program)?"""
    if asked and program.file_of(me) is None:
        return False
    for path, facts in asked:
        f = program.file_at(path)
        if (f.facts if f is not None else None) is not facts:
            return False
    return True


def program_loops(program: Any) -> List[TrainLoop]:
    """Training loops of every file of a program."""
    out: List[TrainLoop] = []
    for f in program.files:
        out.extend(train_loops(f.facts, program))
    return out


def repeated_training_loop(program: Any) -> Optional[Tuple[Any, cst.CSTNode]]:
    """A loop around a batch loop that trains (``while True:`` / ``for it in ...`` around ``for batch in
    loader: ... backward()``), as (program file, outer loop): the data is read again and again even
    without an epoch counter. None when there is none."""
    for pf in program.files:
        for scope in pf.facts.scopes():
            for s in scope.stmts:
                if isinstance(s.node, cst.For) and s.loops and trains(s.node.body):
                    return pf, s.loops[0]
    return None


def trains(body: cst.CSTNode) -> bool:
    """Does a loop body train: call ``backward()`` / ``manual_backward()`` or step an optimizer
    (``opt.step()``, ``optimizer.step()``)?"""
    for c in calls(body):
        if isinstance(c.func, cst.Attribute):
            if c.func.attr.value in ("backward", "manual_backward"):
                return True
            if c.func.attr.value == "step" and "opt" in (dotted(c.func.value) or "").lower():
                return True
    return False


# ------------------------------------------------------------------------------------------------
# set_epoch: when it runs, with what, on which sampler

SAMPLER_CLASSES = ("torch.utils.data.distributed.DistributedSampler", "torch.utils.data.DistributedSampler")
LOADER_CLASSES = ("torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader")


@dataclass(eq=False)
class EpochReseed:
    """One ``x.set_epoch(...)`` call of the program."""

    call: cst.Call
    facts: FileFacts
    scope: Scope
    stmt: Stmt
    receiver: str  # "train_sampler", "train_loader.sampler", "self.sampler"
    #: "per-epoch" (an event of a training loop, or inside some loop of its function), "once" (before the
    #: epoch loop of its own function, outside any loop) or "unknown" (a helper whose callers we cannot see)
    placement: str
    #: the argument is a literal (``set_epoch(0)``): every call gives the sampler the same epoch
    constant: bool
    loop: Optional["TrainLoop"] = None  # the training loop it is an event of

    def acts_on(self, program: Any) -> Optional[Set[int]]:
        """ids of the DistributedSampler constructor calls this call reseeds (``train_sampler``,
        ``train_loader.sampler``, ``loader.batch_sampler.sampler``, a parameter bound from the call
        sites, ``self.sampler``); an empty set when it acts on something else (the validation sampler, a
        dataset); None when the receiver cannot be followed (treat as "maybe this one")."""
        return _reseeded_samplers(self, program)


def epoch_reseeds(program: Any) -> List[EpochReseed]:
    """Every ``set_epoch`` call of the program with its placement (memoised on the program)."""
    cached = getattr(program, "_tl_epoch_reseeds", None)
    if cached is not None:
        return cached
    loops = None
    out: List[EpochReseed] = []
    for f in program.files:
        if "set_epoch" not in f.ctx.source.text:
            continue
        if loops is None:
            loops = program_loops(program)
        facts = f.facts
        for scope in facts.scopes():
            for s in _small(scope):
                for call in calls(s.node):
                    if not (isinstance(call.func, cst.Attribute) and call.func.attr.value == "set_epoch"):
                        continue
                    loop = next((l for l in loops for e in l.events if e.call is call), None)
                    if loop is not None or s.loops:
                        placement = "per-epoch"
                    elif any(l.scope is scope and l.facts is facts and l.stmt.index > s.index for l in loops):
                        placement = "once"
                    else:
                        placement = "unknown"
                    pos = [a.value for a in call.args if a.keyword is None and not a.star]
                    arg = pos[0] if pos else next((a.value for a in call.args if a.keyword and a.keyword.value == "epoch"), None)
                    constant = isinstance(arg, cst.Integer)
                    out.append(EpochReseed(call, facts, scope, s, _receiver(call), placement, constant, loop))
    program._tl_epoch_reseeds = out
    return out


def _reseeded_samplers(r: EpochReseed, program: Any) -> Optional[Set[int]]:
    from trainlint.analysis.objects import World

    world = World.of_program(program)
    file = world.file_of(r.facts)
    if file is None or not isinstance(r.call.func, cst.Attribute):
        return None
    expr = r.call.func.value
    path: List[str] = []
    while isinstance(expr, cst.Attribute) and expr.attr.value in ("sampler", "batch_sampler"):
        path.insert(0, expr.attr.value)
        expr = expr.value
    out: Set[int] = set()
    for obj in world.objects(expr, file, r.scope, r.stmt):
        found = _samplers_of(world, obj, path, 0)
        if found is None:
            return None
        out |= found
    return out


def _samplers_of(world: Any, obj: Any, path: List[str], depth: int) -> Optional[Set[int]]:
    """DistributedSampler allocation sites reached from ``obj`` through the attributes ``path``."""
    if depth > 4 or obj.kind == "unknown":
        return None
    if obj.kind == "literal":
        return set()  # None: the sampler of a single-process run
    if not path:
        if world.is_a(obj, *SAMPLER_CLASSES):
            return {id(obj.node)}
        if obj.kind == "instance" and obj.qname and obj.cls is None:
            return set()  # a library object that is no DistributedSampler (a dataset, another sampler)
        return None  # a project object with its own set_epoch (it may pass it on), a class, a function
    if not isinstance(obj.node, cst.Call) or obj.file is None:
        return None
    head = path[0]
    if world.is_a(obj, *LOADER_CLASSES):
        index = {"sampler": 3, "batch_sampler": 4}[head]
    elif head == "sampler" and obj.qname.endswith("BatchSampler"):
        index = 0  # BatchSampler(sampler, batch_size, drop_last).sampler
    else:
        return None
    arg = bound_arg(obj.node, index, head)
    if arg is None and head == "batch_sampler" and path[1:2] == ["sampler"]:
        # no batch_sampler given: the loader builds BatchSampler(its sampler), whose .sampler is the sampler
        arg, path = bound_arg(obj.node, 3, "sampler"), ["batch_sampler"] + path[2:]
    if arg is None:
        return set()
    out: Set[int] = set()
    for inner in world.objects(arg, obj.file, obj.scope, obj.stmt):
        found = _samplers_of(world, inner, path[1:], depth + 1)
        if found is None:
            return None
        out |= found
    return out


def trainer_max_epochs(program: Any) -> Optional[Tuple[Folded, FileFacts]]:
    """``max_epochs=`` of a Lightning/other ``Trainer(...)`` call in the program, folded (one value)."""
    found: List[Folded] = []
    for f in program.files:
        facts = f.facts
        if "max_epochs" not in f.ctx.source.text:
            continue
        for scope in facts.scopes():
            for s in _small(scope):
                for call in calls(s.node):
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


# ==================================================================================================
# timelines: the events of one iteration in order
# ==================================================================================================


#: How deep helper functions are followed from a training loop.
HELPER_DEPTH = 3

_CLEAR_METHODS = {"zero_grad", "zero_grads", "zero_gradients", "clear_grad", "clear_grads", "clear_gradients"}
_ACCUM_NAME = re.compile(r"accum|accumulat|grad_steps|update_freq|(^|_)ga(_|$)|sync_grad|micro|n_acc|iters_to_acc", re.I)


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

    def default_taken(self, program: Any = None) -> Optional[bool]:
        """Does the run take this branch when the user passes nothing? ``if args.amp:`` with ``--amp``
        off by default: the body is not taken, the ``else`` is; ``if opt.lr_scheduler == 'multistep':``
        with that default: taken. None when the test cannot be decided from defaults and constants."""
        if not isinstance(self.node, cst.If) or self.scope is None:
            return None
        stmt = next((s for s in self.scope.stmts if s.node is self.node), None)
        value = condition_value(self.node.test, self.facts, self.scope, stmt, program)
        if value is None:
            return None
        return value if self.branch == 0 else not value

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

    @property
    def tests_grad_exists(self) -> bool:
        """``if p.grad is not None:`` (also inside ``and``): the body is skipped only while no gradient exists."""
        test = self.test
        for n in walk(test) if test is not None else ():
            if isinstance(n, cst.Comparison) and isinstance(n.left, cst.Attribute) and n.left.attr.value == "grad" \
                    and any(isinstance(c.operator, cst.IsNot) and isinstance(c.comparator, cst.Name)
                            and c.comparator.value == "None" for c in n.comparisons):
                return True
        return False

    @property
    def always_in_practice(self) -> bool:
        """``if scheduler is not None:`` / ``if self.scheduler:`` / ``if args.use_scheduler:`` (and ``and`` of
        those): a switch or a presence test, so the body runs every time in practice."""
        return _always_in_practice(self.test)


def _always_in_practice(test: Optional[cst.BaseExpression]) -> bool:
    if test is None:
        return False
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        return _always_in_practice(test.left) and _always_in_practice(test.right)
    if isinstance(test, (cst.Name, cst.Attribute)):
        return True
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        comp = test.comparisons[0]
        return isinstance(comp.operator, cst.IsNot) and isinstance(comp.comparator, cst.Name) and comp.comparator.value == "None"
    return False


def condition_value(test: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Optional[Stmt], program: Any = None,
                    depth: int = 0) -> Optional[bool]:
    """The truth of a branch test on the default path, from folded constants and argparse / config
    defaults (:func:`trainlint.analysis.values.fold`): ``args.amp``, ``not opt.no_train``,
    ``cfg.scheduler == "cosine"``, ``a and b``; None when any part is unknown."""
    if depth > 8:
        return None
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = condition_value(test.expression, facts, scope, stmt, program, depth + 1)
        return None if inner is None else not inner
    if isinstance(test, cst.BooleanOperation):
        left = condition_value(test.left, facts, scope, stmt, program, depth + 1)
        right = condition_value(test.right, facts, scope, stmt, program, depth + 1)
        if isinstance(test.operator, cst.And):
            if left is False or right is False:
                return False
            return True if left and right else None
        if left is True or right is True:
            return True
        return False if left is False and right is False else None
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        a = _settled(test.left, facts, scope, stmt, program)
        comp = test.comparisons[0]
        b = _settled(comp.comparator, facts, scope, stmt, program)
        if a is None or b is None:
            return None
        x, y, op = a.value, b.value, comp.operator
        try:
            if isinstance(op, (cst.Is, cst.Equal)):
                return x == y
            if isinstance(op, (cst.IsNot, cst.NotEqual)):
                return x != y
            if isinstance(op, cst.In) and isinstance(y, (tuple, str)):
                return x in y
            if isinstance(op, cst.NotIn) and isinstance(y, (tuple, str)):
                return x not in y
            nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
            if nums and isinstance(op, cst.LessThan):
                return x < y
            if nums and isinstance(op, cst.LessThanEqual):
                return x <= y
            if nums and isinstance(op, cst.GreaterThan):
                return x > y
            if nums and isinstance(op, cst.GreaterThanEqual):
                return x >= y
        except TypeError:
            return None
        return None
    f = _settled(test, facts, scope, stmt, program)
    if f is None or not isinstance(f.value, (bool, int, float, str, type(None), tuple)):
        return None
    return bool(f.value)


_LITERALS = (cst.Integer, cst.Float, cst.SimpleString)


def _settled(expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Optional[Stmt], program: Any) -> Optional[Folded]:
    """``expr`` folded when its value is settled for the whole run: a literal written in the test, a
    module constant, a config value, an argparse or parameter default. A local flag set to a literal
    (``first = True`` ... ``first = False`` later in the loop) is not: it changes between iterations."""
    for n in walk(expr):
        name = dotted(n) if isinstance(n, (cst.Name, cst.Attribute)) else None
        if name is not None and len(scope.assigns.get(name, ())) + (
                len(facts.module.assigns.get(name, ())) if scope is not facts.module else 0) > 1:
            return None  # rebound somewhere (a flag flipped in the loop): not one value for the run
    f = fold(expr, facts, scope, stmt, program)
    if f is None:
        return None
    if f.how == "literal" and not (isinstance(expr, _LITERALS) or (isinstance(expr, cst.Name) and expr.value in ("True", "False", "None"))):
        return None
    return f


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
    #: an optimizer_step that is a manual parameter update (:func:`manual_update`): no optimizer object
    manual: bool = False

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
        if key < MARKER_LIMIT:
            continue
        node = nodes.get(key)
        if node is None:
            continue
        marker = arm_marker(block, k)
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


#: In-place updates of a parameter by its gradient: ``p.data.add_(-lr, p.grad)``, ``p.sub_(lr * p.grad)``.
_MANUAL_UPDATE_METHODS = {"add_", "sub_", "addcdiv_", "addcmul_"}
#: The loop a manual update runs in iterates the parameters: ``model.parameters()``, ``named_parameters()``,
#: ``group["params"]``, a ``params`` list.
_PARAMS_ITER = re.compile(r"param", re.I)


def _mentions_grad_of(node: cst.CSTNode, name: str) -> bool:
    for n in walk(node):
        if isinstance(n, cst.Attribute) and n.attr.value == "grad" and dotted(n.value) in (name, name + ".data"):
            return True
    return False


def _param_loop(name: str, stmt: Stmt) -> Optional[cst.For]:
    """The innermost enclosing ``for`` over parameters that binds ``name``
    (``for p in model.parameters():``, ``for n, p in model.named_parameters():``)."""
    for loop in reversed(stmt.loops):
        if not isinstance(loop, cst.For):
            continue
        bound = {dotted(t) for t in ([loop.target] if not isinstance(loop.target, (cst.Tuple, cst.List))
                                     else [e.value for e in loop.target.elements])}
        if name in bound:
            code = cst.Module([]).code_for_node(loop.iter)
            return loop if _PARAMS_ITER.search(code) else None
    return None


def manual_update(node: cst.CSTNode, stmt: Stmt) -> Optional[cst.For]:
    """A manual optimizer step (plain SGD written by hand) in one loop over the parameters: ``node`` is a
    call ``p.data.add_(-lr, p.grad.data)`` / ``p.add_(p.grad, alpha=-lr)`` / ``p.data.sub_(lr * p.grad)``
    or an augmented assignment ``p -= lr * p.grad`` / ``p.data -= lr * p.grad.data``, where ``p`` is the
    target of an enclosing ``for p in model.parameters():``. Returns that parameter loop (the update is
    one step of the whole model, not one per loop turn); None otherwise. (An in-place update of a leaf
    that requires grad is an error outside ``torch.no_grad()`` or ``.data``, so the spelling that runs
    is one of these.)"""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _MANUAL_UPDATE_METHODS:
        recv = dotted(node.func.value)
        name = recv[: -len(".data")] if recv and recv.endswith(".data") else recv
        if name and "." not in name and any(_mentions_grad_of(a.value, name) for a in node.args):
            return _param_loop(name, stmt)
        return None
    if isinstance(node, cst.AugAssign) and isinstance(node.operator, (cst.SubtractAssign, cst.AddAssign)):
        recv = dotted(node.target)
        name = recv[: -len(".data")] if recv and recv.endswith(".data") else recv
        if name and "." not in name and _mentions_grad_of(node.value, name):
            return _param_loop(name, stmt)
    return None


def classify(call: cst.Call, facts: FileFacts, scope: Scope, stmt: Stmt, program: Any = None) -> Optional[str]:
    """:func:`classify_call` plus ``unscale`` and every way of clearing gradients."""
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
    return classify_call(call, facts, scope, stmt, program)


class _Builder:
    def __init__(self, program: Any) -> None:
        self.program = program
        #: follows helpers and records what was asked of the program (see _Finder.asked_program)
        self.finder = _Finder(None, program)  # type: ignore[arg-type]

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
        ploop = manual_update(node, s)
        if ploop is not None:  # p -= lr * p.grad
            tl.events.append(TimedEvent("optimizer_step", node, "", facts, scope, s, order + (0,),
                                        tuple(l for l in loops if l is not ploop), guards, via, manual=True))
            return
        i = 0
        for n in calls(node):
            i += 1
            if isinstance(n.func, cst.Attribute) and n.func.attr.value == "step":
                self.finder.asked_program = True  # (classify_call reads the program for ``.step()`` only)
            kind = classify(n, facts, scope, s, self.program)
            if kind is None:
                ploop = manual_update(n, s)
                if ploop is not None:  # p.data.add_(-lr, p.grad)
                    tl.events.append(TimedEvent("optimizer_step", n, "", facts, scope, s, order + (i,),
                                                tuple(l for l in loops if l is not ploop), guards, via, manual=True))
                    continue
            if kind is not None:
                recv = dotted(n.func.value) or "" if isinstance(n.func, cst.Attribute) else ""
                tl.events.append(TimedEvent(kind, n, recv, facts, scope, s, order + (i,), loops, guards, via))
                continue
            if depth >= HELPER_DEPTH:
                continue
            helper = self.finder._helper(n, facts, scope)
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
    """Timelines of the training loops of one file (memoized per file and program; shared by the programs
    that hold the same files where a helper was looked up, when nothing else was asked of the program)."""
    found = train_loops(facts, program)
    if program is not None:
        shared = facts.__dict__.get("_order_timelines_any")
        if shared is not None and shared[0] is found and _same_files(program, facts, shared[1]):
            return shared[2]
    cache: Dict[int, Tuple[Any, List[Timeline]]] = facts.__dict__.setdefault("_order_timelines", {})
    hit = cache.get(id(program))
    if hit is None or hit[0] is not program:
        b = _Builder(program)
        framework = _framework_train_steps(facts, program)
        loops = list(found) + _manual_training_steps(facts) + framework + \
            _step_functions(facts, {id(l.scope) for l in framework})
        hit = cache[id(program)] = (program, [b.timeline(l) for l in loops])
        # (a library trainer's train_step is judged by the program's own files: see _library_base)
        if program is not None and not b.finder.asked_program and \
                not any(f.name == "train_step" and f.class_name for f in facts.functions):
            facts.__dict__["_order_timelines_any"] = (found, b.finder.files_asked, hit[1])
    return hit[1]


def _manual_training_steps(facts: FileFacts) -> List[TrainLoop]:
    """Lightning manual optimization: ``training_step`` runs once per batch and calls
    ``self.manual_backward(loss)`` and ``opt.step()`` itself — its body is one iteration."""
    found = facts.__dict__.get("_tl_manual_steps")
    if found is None:  # (which functions, once per file: every program of the file asks)
        found = facts.__dict__["_tl_manual_steps"] = [
            scope for scope in facts.functions
            if scope.name == "training_step" and scope.class_name
            and any(isinstance(n.func, cst.Attribute) and n.func.attr.value == "manual_backward"
                    for s in scope.stmts for n in calls(s.node))]
    return [TrainLoop(facts, scope, scope.node, Stmt(-1, scope.node, (), ()), "iteration", None) for scope in found]


def _steps_itself(scope: Scope, facts: FileFacts) -> bool:
    """Does the body of ``scope`` (its own statements, parameter loops included) backpropagate and step?"""
    kinds = set()
    for s in scope.stmts:
        if isinstance(s.node, (cst.For, cst.While, cst.If, cst.Try, cst.With, cst.FunctionDef, cst.ClassDef)):
            continue
        if manual_update(s.node, s) is not None:
            kinds.add("optimizer_step")
            continue
        for n in calls(s.node):
            if manual_update(n, s) is not None:
                kinds.add("optimizer_step")
            elif isinstance(n.func, cst.Attribute) and n.func.attr.value in ("backward", "step"):
                k = classify(n, facts, scope, s)
                if k in ("backward", "optimizer_step"):
                    kinds.add(k)
    return kinds == {"backward", "optimizer_step"}


def _framework_train_steps(facts: FileFacts, program: Any) -> List[TrainLoop]:
    """``train_step`` overridden in a subclass of a library trainer class (skorch's / inferno's
    ``NeuralNet``, a Keras-style model): the library's fit loop calls it once per batch and the override
    owns the whole update, so when it backpropagates and steps itself its body is one iteration (the
    library clears nothing for it: skorch's own ``train_step`` is where ``zero_grad()`` lives)."""
    out: List[TrainLoop] = []
    for scope in facts.functions:
        if scope.name != "train_step" or not scope.class_name:
            continue
        info = facts.classes.get(scope.class_name)
        if info is None or not info.bases or not all(_library_base(b, facts, program) for b in info.bases):
            continue
        if _steps_itself(scope, facts):
            out.append(TrainLoop(facts, scope, scope.node, Stmt(-1, scope.node, (), ()), "iteration", None))
    return out


def _library_base(base: str, facts: FileFacts, program: Any) -> bool:
    """Is the class base ``base`` (qualified through the imports) a library's trainer class: imported, from
    no file of the program, and not torch's / Lightning's (``nn.Module`` has no fit loop; Lightning's
    ``training_step`` is read by :func:`_manual_training_steps`)."""
    if not base or base in facts.classes or "." not in base or base.startswith("."):
        return False
    top = base.split(".", 1)[0]
    if top in ("torch", "lightning", "pytorch_lightning", "lightning_fabric", "object", "abc", "typing"):
        return False
    if top not in {canonical(v).split(".", 1)[0] for v in facts.aliases.aliases.values()}:
        return False  # not imported: a name we cannot place
    files = getattr(program, "files", None) or []
    for f in files:
        parts = str(getattr(getattr(f, "ctx", None), "path", "")).replace("\\", "/").split("/")
        if top in parts or top + ".py" in parts:
            return False  # the project's own package
    return True


def _step_functions(facts: FileFacts, skip: Set[int] = frozenset()) -> List[TrainLoop]:
    """Functions that backpropagate and step straight through, outside any loop of their own
    (``def update(self, batch): ...; loss.backward(); self.optimizer.step()``): each call is one
    iteration of a loop we may not see (an RL agent's update, a ``train_step`` called from elsewhere).
    Their timelines have ``loop.unit == "call"``: what happens around the call (a zero_grad in the caller)
    is unknown, but the order inside the body is certain."""
    found = facts.__dict__.get("_tl_step_functions")
    if found is None:  # (which functions, once per file: every program of the file asks)
        found = facts.__dict__["_tl_step_functions"] = []
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
                found.append(scope)
    # a library trainer's train_step is an iteration of its own (see _framework_train_steps)
    return [TrainLoop(facts, scope, scope.node, Stmt(-1, scope.node, (), ()), "call", None) for scope in found
            if id(scope) not in skip]


def program_timelines(program: Any) -> List[Timeline]:
    out: List[Timeline] = []
    for f in program.files:
        out.extend(timelines(f.facts, program))
    return out


# ------------------------------------------------------------------------------------------------
# what the stepped / cleared objects are


def constructor_call(name: str, facts: FileFacts, scope: Scope, stmt: Stmt) -> Optional[Tuple[cst.Call, FileFacts, Scope, Stmt]]:
    """The call ``name`` was assigned from (``scaler = GradScaler(enabled=...)``), if one is visible."""
    for a in assignments(name, facts, scope, stmt, later=True):
        if isinstance(a.value, cst.Call):
            return a.value, facts, a.scope or scope, a.stmt
    return None


class Reported:
    """Report each node once per program (a helper reached from two loops of one program). Rules keep no
    memory between programs: the engine keeps one finding per rule and place when a file belongs to
    several programs."""

    def __init__(self, program: Any, code: str) -> None:
        self.program, self.code = program, code
        self._seen: Set[Tuple[int, int]] = set()

    def first(self, facts: FileFacts, node: cst.CSTNode, line: int) -> bool:
        key = (id(facts), line)
        if key in self._seen:
            return False
        self._seen.add(key)
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
    # the objects it holds, by value flow (a parameter, self.sched set elsewhere, another file): one kind
    # for every object; a mix (a MultiStepLR or a ReduceLROnPlateau by a config switch, stepped under the
    # matching `if`) stays unknown unless the file builds it where it is stepped
    objs = target_objects(program, e) if program is not None else None
    kinds = {_kind_of_object(o) for o in objs} if objs else set()
    if len(kinds) == 1 and None not in kinds:
        return kinds.pop()
    made = constructor_call(e.receiver, e.facts, e.scope, e.stmt)
    if made is None:
        return None
    call, facts, scope, stmt = made
    return _kind_of_callee(call.func, facts, 0)


def _kind_of_object(o: Any) -> Optional[str]:
    q = canonical(o.qname) if o.qname else ""
    if o.kind == "instance" and q.startswith("torch.optim."):
        return "plateau" if q.endswith("ReduceLROnPlateau") else "torch"
    if _TORCH_SCHED_FACTORY.search(q):
        return "torch"
    return "other" if o.kind == "instance" or q else None


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


def lightning_interval(scope: Scope) -> str:
    """How often Lightning steps the scheduler that ``configure_optimizers`` returns: ``"step"`` (a
    ``"interval": "step"`` entry of its scheduler dict), ``"unknown"`` (an interval that is no string
    literal) or ``"epoch"`` (Lightning's default)."""
    for stmt in scope.stmts:
        for n in walk(stmt.node):
            if isinstance(n, cst.DictElement) and isinstance(n.key, cst.SimpleString) and n.key.evaluated_value == "interval":
                if isinstance(n.value, cst.SimpleString) and n.value.evaluated_value == "step":
                    return "step"
                if not isinstance(n.value, cst.SimpleString):
                    return "unknown"
    return "epoch"


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


# ==================================================================================================
# model modes and autograd
# ==================================================================================================

NO_GRAD_CONTEXTS = {
    "torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.grad_mode.no_grad",
    "torch.autograd.grad_mode.inference_mode", "torch.autograd.inference_mode",
}
SET_GRAD = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled"}


# -- mode switches --------------------------------------------------------------------------------


@dataclass(eq=False)
class ModeCall:
    call: cst.Call
    mode: str  # "eval" | "train" | "unknown"
    receiver: str
    facts: FileFacts
    scope: Scope
    stmt: Stmt

    def ref(self) -> "ObjectRef":
        """The module switched (the receiver where the call is)."""
        return ObjectRef(self.call.func.value, self.facts, self.scope, self.stmt)  # type: ignore[attr-defined]


_NOT_A_MODULE = re.compile(r"trainer|learner|engine|runner|tuner|fabric|accelerator|agent|(^|_)env$|pipeline|tokenizer|xgb|lgb|lightgbm|xgboost|catboost|^sp$|spm", re.I)


def mode_of_call(call: cst.Call) -> Optional[str]:
    """``x.eval()`` -> "eval"; ``x.train()`` / ``x.train(True)`` -> "train"; ``x.train(False)`` ->
    "eval"; ``x.train(flag)`` -> "unknown"; anything else None."""
    func = call.func
    if not isinstance(func, cst.Attribute):
        return None
    meth = func.attr.value
    if meth not in ("eval", "train"):
        return None
    recv = (dotted(func.value) or "").rsplit(".", 1)[-1] if not isinstance(func.value, cst.Call) else ""
    if _NOT_A_MODULE.search(recv) or isinstance(func.value, cst.Call) and _NOT_A_MODULE.search(dotted(func.value.func) or ""):
        return None  # trainer.train(), Trainer(...).train(), xgb/lgb/tokenizer .train(): not nn.Module modes
    if meth == "eval" and not call.args:
        return "eval"
    if meth != "train":
        return None
    args = [a for a in call.args if a.keyword is None or a.keyword.value == "mode"]
    if len(call.args) > 1 or (call.args and not args):
        return None
    if not args:
        return "train"
    v = args[0].value
    if isinstance(v, cst.Name) and v.value == "True":
        return "train"
    if isinstance(v, cst.Name) and v.value == "False":
        return "eval"
    return "unknown"


def _stmt_calls(stmt: Stmt) -> List[cst.Call]:
    node = stmt.node
    if _is_compound(node):
        return []
    return list(calls(node))


class _Reach:
    """Mode switches reached from statements, following helpers (local functions, ``self.method()``,
    functions imported from other files of the program) a few calls deep."""

    def __init__(self, program: Any) -> None:
        self.program = program
        self._cache: Dict[int, List[ModeCall]] = {}

    def helper(self, call: cst.Call, facts: FileFacts, scope: Scope) -> Optional[Tuple[FileFacts, Scope]]:
        try:
            return helper_of(call, facts, scope, self.program)
        except Exception:  # pragma: no cover - defensive: a resolution failure is "unknown"
            return None

    def of_stmt(self, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int = 0) -> List[ModeCall]:
        out: List[ModeCall] = []
        for call in _stmt_calls(stmt):
            m = mode_of_call(call)
            if m is not None and dotted(call.func.value) == "self" and not _module_class(facts, scope, self.program):  # type: ignore[attr-defined]
                m = None  # `self.train()` of a Trainer class is its training method, not a mode switch
            if m is not None:
                out.append(ModeCall(call, m, dotted(call.func.value) or "", facts, scope, stmt))  # type: ignore[attr-defined]
                continue
            if depth >= 3:
                continue
            h = self.helper(call, facts, scope)
            if h is not None and h[1] is not scope:
                out.extend(self.of_scope(h[0], h[1], depth + 1))
        return out

    def of_scope(self, facts: FileFacts, scope: Scope, depth: int = 0) -> List[ModeCall]:
        key = id(scope)
        if key in self._cache:
            return self._cache[key]
        self._cache[key] = []  # recursion guard
        out: List[ModeCall] = []
        for s in _small(scope):
            out.extend(self.of_stmt(facts, scope, s, depth))
        self._cache[key] = out
        return out


def _module_class(facts: FileFacts, scope: Scope, program: Any = None) -> bool:
    """Is ``scope`` (a method) in an ``nn.Module`` class? By its bases' names (``nn.Module``, ``BaseModel``,
    ``Net``); with the program, also through project bases the value-flow layer resolves (OpenNRE's
    ``class SoftmaxNN(SentenceRE)``, ``class SentenceRE(nn.Module)`` in another file)."""
    s = scope
    while s is not None and s.class_name is None:
        s = s.parent
    info = facts.classes.get(s.class_name) if s is not None else None
    if info is None:
        return False
    if any(b.endswith(("Module", "Model", "Net")) for b in info.bases):
        return True
    if program is None or not info.bases:
        return False
    from trainlint.analysis.objects import ClassRef, World

    world = World.of_program(program)
    file = world.file_of(facts)
    return file is not None and world.is_module_class(ClassRef(file, info))


def reach(program: Any) -> _Reach:
    r = getattr(program, "_tl_mode_reach", None) if program is not None else None
    if r is None:
        r = _Reach(program)
        if program is not None:
            program._tl_mode_reach = r
    return r


# -- no_grad ----------------------------------------------------------------------------------------


def _is_no_grad_item(expr: cst.BaseExpression, facts: FileFacts, scope: Optional[Scope] = None, depth: int = 0,
                     certain: bool = False) -> bool:
    """Does the context manager (or decorator call) ``expr`` switch autograd off? ``certain``: only where it
    surely does (``set_grad_enabled(False)``, both arms of a conditional); otherwise also where it may
    (``set_grad_enabled(phase == "train")``, one arm): no plain evaluation either way."""
    if isinstance(expr, cst.IfExp):  # `with torch.no_grad() if not train else nullcontext():`
        arms = (_is_no_grad_item(expr.body, facts, scope, depth, certain), _is_no_grad_item(expr.orelse, facts, scope, depth, certain))
        return all(arms) if certain else any(arms)
    if isinstance(expr, cst.Name) and scope is not None and depth < 3:  # ctx = torch.no_grad(); with ctx:
        return any(a.value is not None and _is_no_grad_item(a.value, facts, scope, depth + 1, certain) for a in scope.assigns.get(expr.value, []))
    if not isinstance(expr, cst.Call):
        return False
    q = canonical(facts.qualify(expr.func) or "")
    if q in NO_GRAD_CONTEXTS:
        return True
    if q in SET_GRAD or (not certain and (dotted(expr.func) or "").endswith("set_grad_enabled")):
        a = expr.args[0].value if expr.args else None
        if certain:
            return isinstance(a, cst.Name) and a.value == "False"
        return not (isinstance(a, cst.Name) and a.value == "True")  # False, or a phase flag: not a plain eval
    return False


def decorated_no_grad(scope: Scope, facts: FileFacts, certain: bool = False) -> bool:
    """Does a decorator turn autograd off for the whole function: ``@torch.no_grad()``,
    ``@torch.inference_mode()``, a project's own ``@smart_inference_mode()``, a decorator of this file
    whose wrapper runs the function under ``no_grad``? (``certain``: see :func:`no_grad_nodes`.)"""
    fn = scope.node
    if not isinstance(fn, cst.FunctionDef):
        return False
    for d in fn.decorators:
        dec = d.decorator
        if isinstance(dec, cst.Call):
            if _is_no_grad_item(dec, facts, certain=certain):
                return True
            dec = dec.func
        if canonical(facts.qualify(dec) or "") in NO_GRAD_CONTEXTS:
            return True
        # a project's own wrapper: @smart_inference_mode() (YOLOv5), @torch_no_grad, @nograd
        name = (dotted(dec) or "").rsplit(".", 1)[-1]
        if re.search(r"no_?grad|inference_mode", name, re.I):
            return True
        # a decorator of this file whose wrapper runs the function under no_grad (`def wrap(*a): with
        # t.no_grad(): return f(*a)`), whatever its name
        helper = facts.function(name) if name and isinstance(dec, cst.Name) else None
        if helper is not None and isinstance(helper.node, cst.FunctionDef) and any(
                isinstance(n, cst.With) and any(_is_no_grad_item(it.item, facts, certain=certain) for it in n.items)
                for n in walk(helper.node.body)):
            return True
    return False


def no_grad_nodes(scope: Scope, facts: FileFacts, certain: bool = False) -> Set[Any]:
    """ids of the statements (small, loops, ``with``, ``if``) of ``scope`` that run without autograd; "*"
    when the whole function does (decorator). ``certain``: only where autograd is surely off (see
    :func:`_is_no_grad_item`), for "is this loader only read for evaluation?" questions. Memoized on the
    scope."""
    attr = "_tl_no_grad_certain" if certain else "_tl_eval_no_grad"
    cache = getattr(scope, attr, None)
    if cache is not None:
        return cache
    cache = set()
    if decorated_no_grad(scope, facts, certain):
        cache.add("*")
    switched_off_at: Optional[int] = None
    for s in scope.stmts:
        node = s.node
        if isinstance(node, cst.With) and any(_is_no_grad_item(it.item, facts, scope, certain=certain) for it in node.items):
            cache.add(id(node))
            for n in walk(node.body):
                if isinstance(n, (cst.For, cst.While, cst.BaseSmallStatement, cst.With, cst.If)):
                    cache.add(id(n))
        elif isinstance(node, cst.Expr) and isinstance(node.value, cst.Call) and _is_no_grad_item(node.value, facts, certain=certain) and not s.loops:
            # torch.set_grad_enabled(False) as a statement: everything after it in the function
            switched_off_at = s.index if switched_off_at is None else switched_off_at
    if switched_off_at is not None:
        for s in scope.stmts:
            if s.index > switched_off_at:
                cache.add(id(s.node))
    setattr(scope, attr, cache)
    return cache


def under_no_grad(stmt: Stmt, scope: Scope, facts: FileFacts, certain: bool = False) -> bool:
    return runs_without_grad(stmt.node, scope, facts, certain)


def runs_without_grad(node: cst.CSTNode, scope: Scope, facts: FileFacts, certain: bool = False) -> bool:
    """Does ``node`` (a statement or loop of ``scope``) run with autograd off (:func:`no_grad_nodes`)?"""
    ids = no_grad_nodes(scope, facts, certain)
    return "*" in ids or id(node) in ids


# -- call sites of a helper --------------------------------------------------------------------------


def call_sites(program: Any, pf: Any, scope: Scope, limit: int = 12) -> List[Tuple[Any, Scope, Stmt, cst.Call]]:
    """Calls of function/method ``scope`` in the program: ``evaluate(...)``, ``self.validate(...)``,
    ``engine.evaluate(...)`` (by name; methods only through ``self.``/an instance)."""
    if scope.kind != "function":
        return []
    name = scope.name
    out = []
    for f in program.files:
        if name not in f.ctx.source.text:
            continue
        for s2 in f.facts.scopes():
            if s2 is scope:
                continue
            for st in _small(s2):
                for call in _stmt_calls(st):
                    d = dotted(call.func)
                    if d is None and isinstance(call.func, cst.Attribute):
                        d = "<expr>." + call.func.attr.value  # Trainer(...).validate()
                    if d is None or d.rsplit(".", 1)[-1] != name:
                        continue
                    if scope.class_name is None and "." in d and f is pf:
                        continue
                    out.append((f, s2, st, call))
                    if len(out) >= limit:
                        return out
    return out


def mode_before(program: Any, pf: Any, scope: Scope, stmt: Stmt, depth: int = 0, model: Optional["ObjectRef"] = None) -> str:
    """The mode at ``stmt``: "eval", "train", "unknown", or "initial" (no switch anywhere before it:
    a module-level statement, or a helper whose callers switch nothing either). With ``model`` (the
    evaluated model), only switches that may act on that object count: ``teacher.eval()`` says nothing
    about ``student``."""
    r = reach(program)
    last: Optional[str] = None
    for s in _small(scope):
        if s.index >= stmt.index:
            break
        for m in r.of_stmt(pf.facts, scope, s):
            if model is not None and same_object(program, model, m.ref()) is False \
                    and not holds_submodule(program, m.ref(), model):
                continue
            last = m.mode
    if last is not None:
        return last
    if scope.kind == "module":
        return "initial"
    if depth >= 2:
        return "unknown"
    sites = call_sites(program, pf, scope)
    if not sites:
        return "unknown"
    modes = {mode_before(program, f, s2, st, depth + 1, model) for f, s2, st, _ in sites}
    if modes <= {"train", "initial"}:
        return "train" if "train" in modes else "initial"
    if modes == {"eval"}:
        return "eval"
    return "unknown"


def mode_along(program: Any, path: Sequence[Tuple[Any, Scope, Stmt]], model: Optional["ObjectRef"] = None,
               public: bool = False) -> str:
    """The mode at the end of a call path (outermost first: the loop's ``self.validation_step(x)``, then
    ``self.infer(x)`` inside it, then ``self.module_(x)`` inside that): the last switch before the call
    in the innermost function, else in the function that called it on this path, ..., else what
    :func:`mode_before` says at the outermost call. (A helper shared by training and validation steps is
    in eval mode on the validation path, whatever its other callers do.) ``public``: the outermost call
    is a factory's ``return`` whose callers are outside the program (a package's users): with no switch
    before it, the model leaves in its initial mode."""
    r = reach(program)
    for pf, scope, stmt in reversed(list(path)[1:]):
        last: Optional[str] = None
        for s in _small(scope):
            if s.index >= stmt.index:
                break
            for m in r.of_stmt(pf.facts, scope, s):
                if model is not None and same_object(program, model, m.ref()) is False:
                    continue
                last = m.mode
        if last is not None:
            return last
    pf, scope, stmt = path[0]
    if public:
        last = None
        for s in _small(scope):
            if s.index >= stmt.index:
                break
            for m in r.of_stmt(pf.facts, scope, s):
                last = m.mode
        return last or "initial"
    return mode_before(program, pf, scope, stmt, model=model)


# ------------------------------------------------------------------------------------------------
# which object an event acts on


@dataclass(frozen=True, eq=False)
class ObjectRef:
    """An expression where it is evaluated: the receiver of ``model.eval()``, the callee of ``model(x)``."""

    expr: cst.BaseExpression
    facts: FileFacts
    scope: Scope
    stmt: Stmt


def allocation_sites(program: Any, ref: ObjectRef) -> Optional[Set[int]]:
    """ids of the allocation sites (constructor calls...) ``ref`` may hold, from the value-flow layer
    (:mod:`trainlint.analysis.objects`); None when some alternative cannot be followed."""
    if program is None:
        return None
    objs = _objects_of(program, ref)
    # an "unknown" with a library name is the result of a library call (``densenet121()``): a fresh
    # object made at that call, so still an allocation site
    if not objs or any((o.kind == "unknown" and not o.qname) or o.node is None for o in objs):
        return None
    if any(isinstance(o.node, cst.ClassDef) for o in objs):
        return None  # `self` in a method: whichever instance of the class the callers hold
    return {id(o.node) for o in objs}


def same_object(program: Any, a: ObjectRef, b: ObjectRef) -> Optional[bool]:
    """May ``a`` and ``b`` be the same object? True when they share an allocation site, False when both
    are known and share none (``teacher`` vs ``student``, the validation vs the training sampler), None
    when either cannot be followed."""
    x = allocation_sites(program, a)
    if x is None:
        return None
    y = allocation_sites(program, b)
    if y is None:
        return None
    return bool(x & y)


def holds_submodule(program: Any, owner: ObjectRef, part: ObjectRef) -> bool:
    """Is ``part`` a submodule of the module ``owner``, so that ``owner.eval()`` switches it too? An
    attribute chain of it (``self.parallel_model`` under ``self.eval()`` in a framework class that is an
    ``nn.Module`` holding the model, OpenNRE's ``SentenceRE``)."""
    if program is None:
        return False
    o, p = dotted(owner.expr), dotted(part.expr)
    if o is None or p is None or not p.startswith(o + "."):
        return False
    from trainlint.analysis.objects import World

    world = World.of_program(program)
    objs = _objects_of(program, owner)
    return bool(objs) and all(ob.kind == "instance" and ob.cls is not None and world.is_module_class(ob.cls) for ob in objs)


# -- the object an optimizer / scheduler / scaler event acts on -----------------------------------------

#: Library classes of gradient scalers (``scaler.step(opt)`` steps ``opt``).
SCALER_CLASSES = ("torch.cuda.amp.GradScaler", "torch.amp.GradScaler", "torch.cpu.amp.GradScaler",
                  "torch.cuda.amp.grad_scaler.GradScaler", "torch.amp.grad_scaler.GradScaler")
#: Libraries whose optimizers keep torch.optim's contract (step uses .grad, zero_grad clears it).
OPTIMIZER_LIBS = ("torch.", "apex.", "bitsandbytes.", "transformers.", "timm.", "torch_optimizer.", "lion_pytorch.",
                  "deepspeed.ops.", "schedulefree.")


def _objects_of(program: Any, ref: Optional[ObjectRef]) -> list:
    """What ``ref`` may hold (:meth:`trainlint.analysis.objects.World.objects`); [] when it cannot be asked."""
    if ref is None or program is None:
        return []
    from trainlint.analysis.objects import World

    world = World.of_program(program)
    file = world.file_of(ref.facts)
    if file is None:
        return []
    return world.objects(ref.expr, file, ref.scope, ref.stmt)


def _followed(objs: list) -> bool:
    """Every alternative was followed to an allocation site (a constructor, a library call's result)."""
    return bool(objs) and all(o.node is not None and (o.kind != "unknown" or o.qname) for o in objs)


def receiver_ref(e: Any) -> Optional[ObjectRef]:
    """The receiver of a method-call event (``opt`` of ``opt.step()``), where it is evaluated."""
    if getattr(e, "manual", False):
        return None  # a manual parameter update acts on no optimizer object
    call = e.node if isinstance(getattr(e, "node", None), cst.Call) else getattr(e, "call", None)
    if not isinstance(call, cst.Call) or not isinstance(call.func, cst.Attribute):
        return None
    return ObjectRef(call.func.value, e.facts, e.scope, e.stmt)


def is_scaler(program: Any, e: Any) -> bool:
    """Is the receiver of ``e`` a gradient scaler (``scaler.step(opt)``, ``scaler.unscale_(opt)``)? Asked of
    the value-flow layer (a ``torch.amp.GradScaler``, a project class named like one); where the receiver
    cannot be followed, its name tells (``self.scaler``, ``grad_scaler``)."""
    ref = receiver_ref(e)
    if ref is None:
        return False
    objs = _objects_of(program, ref)
    if _followed(objs):
        from trainlint.analysis.objects import World

        return any(World.is_a(o, *SCALER_CLASSES) or "scaler" in o.name.lower() for o in objs)
    return "scaler" in (dotted(ref.expr) or "").lower()


def event_target(program: Any, e: Any) -> Optional[ObjectRef]:
    """The object an optimizer / scheduler event acts on: ``opt`` of ``opt.step()``, ``opt.zero_grad()``,
    ``sched.step()``; the optimizer argument of ``scaler.step(opt)`` / ``scaler.unscale_(opt)``. None for
    events that name no object (``p.grad = None``, a bare ``zero_grad(model)``, a manual update
    ``p.data.add_(-lr, p.grad)``)."""
    if getattr(e, "manual", False):
        return None
    ref = receiver_ref(e)
    if ref is None:
        return None
    if e.kind in ("optimizer_step", "unscale") and is_scaler(program, e):
        call = e.node if isinstance(getattr(e, "node", None), cst.Call) else e.call
        arg = next((a.value for a in call.args if a.keyword is None and not a.star), None)
        if arg is None:
            arg = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "optimizer"), None)
        return ObjectRef(arg, e.facts, e.scope, e.stmt) if arg is not None else None
    return ref


def target_objects(program: Any, e: Any) -> Optional[list]:
    """The objects the event acts on (:func:`event_target`), when every alternative was followed; else None."""
    objs = _objects_of(program, event_target(program, e))
    return objs if _followed(objs) else None


def same_target(program: Any, a: Any, b: Any) -> Optional[bool]:
    """Do events ``a`` and ``b`` act on the same object (the optimizer cleared and the one stepped, the
    scheduler built and the one stepped)? By object identity (:func:`same_object`): across names,
    attributes (``self.opt``), parameters bound at call sites in other files and containers. Where either
    cannot be followed, one name is taken for one object; otherwise None (unknown)."""
    ra, rb = event_target(program, a), event_target(program, b)
    if ra is None or rb is None:
        return None
    same = same_object(program, ra, rb)
    if same is not None:
        return same
    na, nb = dotted(ra.expr), dotted(rb.expr)
    return True if na is not None and na == nb else None


def acts_on(program: Any, e: Any, site: cst.CSTNode) -> Optional[bool]:
    """May event ``e`` act on the object built at ``site`` (a constructor call)? True when one of the
    objects its target holds was built there, False when every alternative was followed elsewhere, None
    when some alternative cannot be followed (a parameter nobody binds) and none is ``site``."""
    objs = _objects_of(program, event_target(program, e))
    if any(o.node is site for o in objs):
        return True
    return False if _followed(objs) else None


def scaler_disabled(program: Any, e: Any) -> bool:
    """Is the scaler of ``scaler.step(opt)`` / ``scaler.unscale_(opt)`` off for good
    (``GradScaler(enabled=False)``, ``enabled=USE_AMP`` with a module constant; followed through
    attributes, parameters and other files)? Then its scale is 1 and unscale_ is a no-op. A scaler switched
    by a flag or config (``enabled=args.amp``) is on whenever the user turns AMP on: not off. A scaler that
    is not torch's GradScaler has its own contract: counted as off. Unknown: on."""
    ref = receiver_ref(e)
    objs = _objects_of(program, ref) if ref is not None else []
    if not _followed(objs):
        return False
    from trainlint.analysis.objects import World

    world = World.of_program(program)
    for o in objs:
        if not World.is_a(o, *SCALER_CLASSES):
            continue  # a project or library scaler of its own
        call = o.call_args()
        enabled = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "enabled"), None) if call else None
        if enabled is None or o.file is None or o.scope is None:
            return False
        folded = fold(enabled, o.file.facts, o.scope, o.stmt, program)
        if folded is not None:
            # a switch the user flips (``enabled=args.amp``, a config key) is on whenever AMP is used
            if folded.value is not False or folded.how not in ("literal", "constant"):
                return False
        elif world.constant(enabled, o.file, o.scope, o.stmt) is not False:
            return False
    return True


def updates_parameters_of(program: Any, step: Any, params: ObjectRef) -> Optional[bool]:
    """Does the optimizer of ``step`` update the parameters in ``params`` (``model.parameters()`` of a
    clip)? Compared by the modules: the clip's ``X.parameters()`` and the optimizer's constructor argument
    ``Y.parameters()`` (followed through names, attributes, parameters and other files). None when either
    cannot be followed."""
    mine = _modules_of_params(program, params)
    if mine is None:
        return None
    objs = target_objects(program, step)
    if not objs:
        return None
    theirs = _argument_sites(program, objs, 0, "params", _modules_of_params)
    return None if theirs is None else bool(mine & theirs)


def constructor_argument(o: Any, index: int, param: str) -> Optional[ObjectRef]:
    """The argument the constructor call of object ``o`` (an :class:`~trainlint.analysis.objects.Obj`) passed
    for parameter ``param`` at position ``index``, where it was evaluated (the parameters an optimizer was
    built on, the optimizer a scheduler wraps); None when the site is no call or the argument is hidden."""
    call = o.call_args()
    if call is None or o.file is None or o.scope is None:
        return None
    arg = bound_arg(call, index, param)
    return ObjectRef(arg, o.file.facts, o.scope, o.stmt) if arg is not None else None


def _argument_sites(program: Any, objs: list, index: int, param: str, sites: Any) -> Optional[Set[int]]:
    """The union of ``sites(program, ref)`` over the argument each object's constructor got for ``param``;
    None when one of them cannot be followed."""
    out: Set[int] = set()
    for o in objs:
        arg = constructor_argument(o, index, param)
        got = sites(program, arg) if arg is not None else None
        if got is None:
            return None
        out |= got
    return out


def schedules(program: Any, sched: Any, step: Any) -> Optional[bool]:
    """Does the scheduler that event ``sched`` steps wrap the optimizer that event ``step`` steps? The
    optimizer its constructor was given (``StepLR(opt, ...)``, ``optimizer=``, a factory such as
    ``get_linear_schedule_with_warmup(opt, ...)``, a project subclass) compared by object identity
    (:func:`same_object`) with the stepped one: across names, attributes, parameters and files. None when
    either cannot be followed (so that two optimizers, a GAN's, can be told apart only where it is known)."""
    objs = target_objects(program, sched)
    opt = event_target(program, step)
    if not objs or opt is None:
        return None
    theirs = allocation_sites(program, opt)
    if theirs is None:
        return None
    mine = _argument_sites(program, objs, 0, "optimizer", allocation_sites)
    return None if mine is None else bool(mine & theirs)


def _modules_of_params(program: Any, ref: ObjectRef) -> Optional[Set[int]]:
    """Allocation sites of the module(s) whose ``.parameters()`` ``ref`` is (``model.parameters()``,
    ``self.G.parameters()``); None for anything else (a list of groups, a filter, a name)."""
    expr = ref.expr
    if not (isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "parameters"):
        return None
    return allocation_sites(program, ObjectRef(expr.func.value, ref.facts, ref.scope, ref.stmt))


def holds_site(program: Any, ref: ObjectRef, site: cst.CSTNode) -> Optional[bool]:
    """May ``ref`` hold the object built at ``site``? None when it cannot be followed."""
    objs = _objects_of(program, ref)
    if not _followed(objs):
        return None
    return any(o.node is site for o in objs)


def mentions_site(program: Any, ref: ObjectRef, site: cst.CSTNode) -> bool:
    """Does the expression of ``ref`` build the object made at ``site`` inside it, or name something that
    holds it (``SequentialLR(opt, parts, ...)`` with ``parts`` a list built elsewhere holding a scheduler)?"""
    for n in walk(ref.expr):
        if n is site and n is not ref.expr:
            return True
        if type(n) in (cst.Name, cst.Attribute) and holds_site(program, ObjectRef(n, ref.facts, ref.scope, ref.stmt), site) is True:
            return True
    return False


def is_optimizer(program: Any, e: Any) -> bool:
    """Is the object of ``e`` an optimizer (a torch.optim class, a library optimizer, a project subclass
    or a project class named like one)? Not a module (``model.zero_grad()``). Where the object cannot be
    followed, its name tells (``optimizer``, ``opt_g``)."""
    ref = event_target(program, e)
    if ref is None:
        return False
    objs = _objects_of(program, ref)
    if _followed(objs):
        for o in objs:
            q = o.qname or ""
            if q.startswith("torch.optim.") and not q.startswith("torch.optim.lr_scheduler."):
                return True
            if q.startswith(OPTIMIZER_LIBS[1:]) and "optim" in q.lower():
                return True
            if o.cls is not None and not q and _OPTIM_NAME.search(o.cls.name):
                return True
        return False
    return bool(_OPTIM_NAME.search((dotted(ref.expr) or "").rsplit(".", 1)[-1]))


def judged_optimizer(program: Any, e: Any) -> bool:
    """Is the stepped optimizer of ``e`` one whose contract we know: not a project optimizer class or
    wrapper (its own ``step`` may clear), not a class of another library with a contract of its own.
    An optimizer that cannot be followed (a parameter of a function nobody calls) is judged."""
    objs = target_objects(program, e)
    if objs is None:
        return True
    for o in objs:
        if o.cls is not None:
            return False  # a project optimizer (wrapper or subclass)
        q = o.qname or ""
        last = q.rsplit(".", 1)[-1]
        if q and not q.startswith(OPTIMIZER_LIBS) and last[:1].isupper():
            return False
    return True


def distinct_targets(program: Any, events: List[Any]) -> int:
    """How many different objects ``events`` act on (events whose objects cannot be told apart, by identity
    or by one name, count apart)."""
    groups: List[Any] = []
    for e in events:
        if not any(same_target(program, e, g) for g in groups):
            groups.append(e)
    return len(groups)


# -- gradient clearing done by project functions -----------------------------------------------------

_CLEAR_TEXT = re.compile(r"zero_grad|\.grad\s*=\s*None|grad\.zero_|grad\.data\.zero_|clear_grad")


def clearing_functions(program: Any) -> Set[str]:
    """Names of the program's functions whose body clears gradients (``zero_grad()``, ``p.grad = None``,
    ``p.grad.zero_()``): a call to one that the timelines cannot follow (an inherited method, a module
    attribute) still clears. Memoised per program."""
    hit = getattr(program, "_tl_clearing_functions", None)
    if hit is not None:
        return hit
    out: Set[str] = set()
    for f in program.files:
        if not _CLEAR_TEXT.search(f.ctx.source.text):
            continue
        for scope in f.facts.functions:
            for s in scope.stmts:
                node = s.node
                if _grad_clear_stmt(node) or any(
                        isinstance(n, cst.Attribute) and n.attr.value in ("zero_grad", "zero_") for n in walk(node)):
                    out.add(scope.name)
                    break
    try:
        setattr(program, "_tl_clearing_functions", out)
    except Exception:  # pragma: no cover
        pass
    return out


def calls_clearing_function(program: Any, tl: "Timeline", loop: cst.CSTNode) -> bool:
    """Does the body of ``loop`` (of timeline ``tl``) call a project function that clears gradients?"""
    names = clearing_functions(program)
    if not names:
        return False
    for s in tl.loop.scope.stmts:
        if not any(l is loop for l in s.loops) and not any(l is tl.loop.node for l in s.loops):
            continue
        for n in walk(s.node):
            if isinstance(n, cst.Call) and (dotted(n.func) or "").rsplit(".", 1)[-1] in names:
                return True
    return False


def grad_free_callers(program: Any, pf: Any, scope: Scope, depth: int = 0) -> Optional[bool]:
    """True when every call site of helper ``scope`` runs under no_grad (the call is inside ``with
    torch.no_grad():``, or the function it is in is itself only called under no_grad); False when some
    call site runs with autograd on (``test.test(model=model)`` in train.py, while test.py's own
    ``__main__`` wraps its call); None when no call site is known."""
    if scope.kind != "function":
        return None
    sites = call_sites(program, pf, scope)
    if not sites:
        return None
    return autograd_call_site(program, pf, scope, depth) is None


def autograd_call_site(program: Any, pf: Any, scope: Scope, depth: int = 0) -> Optional[Tuple[Any, Scope, Stmt, cst.Call]]:
    """The first call site of helper ``scope`` that runs it with autograd on (see :func:`grad_free_callers`),
    as (program file, scope, statement, call); None when there is none (or no call site is known)."""
    for f, s2, st, call in call_sites(program, pf, scope):
        if under_no_grad(st, s2, f.facts):
            continue
        if depth < 2 and s2.kind == "function" and s2 is not scope and grad_free_callers(program, f, s2, depth + 1):
            continue
        return f, s2, st, call
    return None


# -- mode switches of a training loop ------------------------------------------------------------------


def loop_mode_calls(program: Any, loop: Any) -> List[ModeCall]:
    """Mode switches a training loop (:class:`TrainLoop`) reaches on every
    pass: directly in its body or inside the helpers its body calls."""
    r = reach(program)
    out: List[ModeCall] = []
    for s in _small(loop.scope):
        if loop.node in s.loops:
            out.extend(r.of_stmt(loop.facts, loop.scope, s))
    return out


# ==================================================================================================
# losses and what is backpropagated
# ==================================================================================================
# What is a loss, where is it backpropagated (``backward()``, ``accelerator.backward(loss)``,
# ``scaler.scale(loss).backward()``, what ``training_step`` / a loss function returns), and how a value flows
# back from ``backward()`` through assignments, arithmetic and small helper functions (TL202's caps).

#: torch.nn.functional losses.
FUNCTIONAL_LOSSES = {
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "cosine_embedding_loss", "cross_entropy",
    "ctc_loss", "gaussian_nll_loss", "hinge_embedding_loss", "huber_loss", "kl_div", "l1_loss", "margin_ranking_loss",
    "mse_loss", "multi_margin_loss", "multilabel_margin_loss", "multilabel_soft_margin_loss", "nll_loss",
    "poisson_nll_loss", "smooth_l1_loss", "soft_margin_loss", "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
}

#: Methods and torch functions that keep "this is the loss" (reductions, casts, scaling).
PASS_THROUGH_METHODS = {
    "mean", "sum", "float", "double", "half", "to", "squeeze", "unsqueeze", "view", "reshape", "contiguous",
    "cuda", "cpu", "type", "nanmean", "nansum", "flatten", "div", "mul", "add", "sub", "div_", "mul_", "add_",
    "sub_", "__truediv__", "__mul__",
}
PASS_THROUGH_FUNCS = {"torch.mean", "torch.sum", "torch.nanmean", "torch.nansum", "torch.stack", "torch.cat"}

#: Callers whose first argument is what gets backpropagated.
_BACKWARD_ARG_RECEIVERS = re.compile(r"(accelerator|fabric|engine|deepspeed|model_engine|trainer)$", re.I)
_LOSSY_NAME = re.compile(r"(^|_)(loss|losses|criterion|objective|nll|cost)(_|$|\d)|loss", re.I)
_NOT_LOSS_NAME = re.compile(r"(weight|scale|coef|lambda|factor|ratio|log|hist|meter|avg|ema|running|best|prev)", re.I)


def is_loss_callee(func: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int = 0, world=None) -> bool:
    """Does calling ``func`` compute a loss? (torch losses, criterion objects, loss helpers). With a
    ``world`` (:class:`trainlint.analysis.objects.World`), the object model is asked what ``func``
    holds: a criterion passed as a parameter, kept in a dict, built by ``getattr(nn, name)()``."""
    q = facts.qualify(func)
    if q is not None:
        q = canonical(q)
        if q.startswith("torch.nn.functional."):
            return q.rsplit(".", 1)[1] in FUNCTIONAL_LOSSES
        if q.startswith("torch.nn.") and q.endswith("Loss"):
            return True  # nn.MSELoss()(pred, y)
    name = dotted(func)
    if name is None:
        if isinstance(func, cst.Call):  # nn.MSELoss()(out, y)
            return is_loss_class(func.func, facts)
        return False
    # A criterion object: criterion = nn.MSELoss(); self.loss_fn = nn.L1Loss()
    for a in assignments(name, facts, scope, stmt):
        if isinstance(a.value, cst.Call) and is_loss_class(a.value.func, facts):
            return True
    last = name.rsplit(".", 1)[-1]
    if re.search(r"(loss|criterion)", last, re.I):
        return True
    if world is not None:
        file = world.file_of(facts)
        if file is not None:
            return any(_is_torch_loss(o.qname) and o.kind in ("instance", "function") for o in world.objects(func, file, scope, stmt))
    return False


def _is_torch_loss(q: str) -> bool:
    q = canonical(q) if q else ""
    if q.startswith("torch.nn.functional."):
        return q.rsplit(".", 1)[1] in FUNCTIONAL_LOSSES
    return q.startswith("torch.nn.") and q.endswith("Loss")


def is_loss_class(func: cst.BaseExpression, facts: FileFacts) -> bool:
    q = facts.qualify(func)
    if q is None:
        return False
    q = canonical(q)
    return q.startswith("torch.nn.") and q.endswith("Loss")


@dataclass
class BackwardRoot:
    expr: cst.BaseExpression  # what is backpropagated
    call: cst.CSTNode  # the node to point at (the backward() call, or the return)
    scope: Scope
    stmt: Stmt
    how: str  # "backward()" | "accelerator.backward()" | "return from training_step" ...


def backward_roots(facts: FileFacts) -> Iterator[BackwardRoot]:
    for scope in facts.scopes():
        for stmt in scope.stmts:
            node = stmt.node
            if not isinstance(node, (cst.Expr, cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Return)):
                continue
            value = node.value
            if value is None:
                continue
            for call in calls(value):
                root = _root_of_call(call, facts)
                if root is not None:
                    yield BackwardRoot(root[0], call, scope, stmt, root[1])
        if scope.kind == "function" and _is_loss_function(scope, facts):
            # A loss function or a loss module's forward: what it returns is what gets
            # backpropagated wherever it is used.
            for value, stmt in scope.returns:
                expr = _loss_of_return(value)
                if expr is not None and is_lossy(expr, facts, scope, stmt):
                    yield BackwardRoot(expr, stmt.node, scope, stmt, f"returned by the loss function {scope.qualname}()")
            continue
        if scope.kind == "function" and scope.class_name and scope.name in ("training_step", "compute_loss"):
            # Lightning backpropagates what training_step returns (a loss, or a dict with "loss");
            # HF Trainer backpropagates what compute_loss returns.
            for value, stmt in scope.returns:
                expr = _loss_of_return(value)
                if expr is not None:
                    yield BackwardRoot(expr, stmt.node, scope, stmt, f"return from {scope.name}()")


_LOSS_FUNC_NAME = re.compile(r"(^|_)(loss|criterion|nll)(_|$)|loss$|^loss", re.I)


def _is_loss_function(scope: Scope, facts: FileFacts) -> bool:
    """A function named like a loss (``fourier_loss``, ``compute_loss``), or the ``forward`` of a loss
    module (``class PhysicsLoss(nn.Module)``, a subclass of a torch loss)."""
    if scope.class_name is None:
        return bool(_LOSS_FUNC_NAME.search(scope.name)) and not scope.name.startswith(("log_", "print_", "plot_"))
    if scope.name in ("compute_loss", "training_step"):
        return False  # handled as framework hooks
    if scope.name == "forward" or scope.name == "__call__":
        cls = facts.classes.get(scope.class_name)
        if cls is None:
            return False
        if re.search(r"(Loss|Criterion)$", cls.name):
            return True
        return any(canonical(b).startswith("torch.nn.") and b.endswith("Loss") for b in cls.bases)
    return bool(re.search(r"(^|_)loss(_|$)|^loss", scope.name, re.I)) and not scope.name.startswith(("log_", "print_", "plot_"))


def _loss_of_return(value: Optional[cst.BaseExpression]) -> Optional[cst.BaseExpression]:
    if value is None:
        return None
    if isinstance(value, cst.Dict):
        for el in value.elements:
            if isinstance(el, cst.DictElement) and isinstance(el.key, cst.SimpleString) and el.key.evaluated_value == "loss":
                return el.value
        return None
    if isinstance(value, cst.Tuple) and value.elements:  # compute_loss(return_outputs=True) -> (loss, outputs)
        return value.elements[0].value
    return value


def _root_of_call(call: cst.Call, facts: FileFacts) -> Optional[Tuple[cst.BaseExpression, str]]:
    func = call.func
    q = facts.qualify(func)
    if q in ("torch.autograd.backward", "torch.autograd.grad"):
        arg = _first_arg(call)
        return (arg, q) if arg is not None else None
    if not isinstance(func, cst.Attribute):
        return None
    meth = func.attr.value
    if meth == "manual_backward":
        arg = _first_arg(call)
        return (arg, "manual_backward()") if arg is not None else None
    if meth != "backward":
        return None
    recv = func.value
    recv_name = dotted(recv) or ""
    arg = _first_arg(call)
    if arg is not None and _BACKWARD_ARG_RECEIVERS.search(recv_name.rsplit(".", 1)[-1]):
        return arg, f"{recv_name}.backward()"
    if isinstance(recv, cst.Call) and isinstance(recv.func, cst.Attribute) and recv.func.attr.value == "scale":
        inner = _first_arg(recv)  # scaler.scale(loss).backward()
        if inner is not None:
            return inner, "scaler.scale(...).backward()"
    return recv, "backward()"


def _first_arg(call: cst.Call) -> Optional[cst.BaseExpression]:
    for a in call.args:
        if a.keyword is None and a.star == "":
            return a.value
    for a in call.args:
        if a.keyword is not None and a.keyword.value in ("loss", "tensors", "outputs"):
            return a.value
    return None


def is_lossy(expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int = 0, seen: Optional[Set[int]] = None, world=None) -> bool:
    """Is ``expr`` (at ``stmt``) a loss value: a loss call, a variable holding one, ``outputs.loss``...?
    (``world``: ask the object model what a callee holds, see :func:`is_loss_callee`.)"""
    if depth > 12:
        return False
    seen = seen if seen is not None else set()
    if isinstance(expr, cst.Call):
        func = expr.func
        if is_loss_callee(func, facts, scope, stmt, world=world):
            return True
        if isinstance(func, cst.Attribute):
            if func.attr.value == "item":
                return False
            if func.attr.value in PASS_THROUGH_METHODS:
                return is_lossy(func.value, facts, scope, stmt, depth + 1, seen, world)
        q = facts.qualify(func)
        if q in PASS_THROUGH_FUNCS and expr.args:
            return is_lossy(expr.args[0].value, facts, scope, stmt, depth + 1, seen, world)
        return False
    if isinstance(expr, cst.BinaryOperation):
        return is_lossy(expr.left, facts, scope, stmt, depth + 1, seen, world) or is_lossy(expr.right, facts, scope, stmt, depth + 1, seen, world)
    if isinstance(expr, cst.UnaryOperation):
        return is_lossy(expr.expression, facts, scope, stmt, depth + 1, seen, world)
    if isinstance(expr, cst.Subscript):
        if any("loss" in key.lower() for key in string_keys(expr)):
            return True
        return is_lossy(expr.value, facts, scope, stmt, depth + 1, seen, world)
    name = dotted(expr)
    if name is None:
        return False
    last = name.rsplit(".", 1)[-1]
    if last in ("data", "grad"):
        return False
    if last == "loss" and "." in name:
        return True  # outputs.loss (Hugging Face), self.loss
    if _LOSSY_NAME.search(last) and not _NOT_LOSS_NAME.search(last):
        return True
    for a in assignments(name, facts, scope, stmt):
        if id(a) in seen or a.value is None:
            continue
        seen.add(id(a))
        if is_lossy(a.value, facts, a.scope or scope, a.stmt, depth + 1, seen, world):
            return True
    return False


def flow_back(
    expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, depth: int = 0, seen: Optional[Set[int]] = None
) -> Iterator[Tuple[cst.BaseExpression, Scope, Stmt]]:
    """Every expression whose value flows into ``expr`` without passing through a loss call's
    arguments (predictions and targets are not the loss) or an opaque call: the loss domain."""
    if depth > 25:
        return
    seen = seen if seen is not None else set()
    yield expr, scope, stmt
    if isinstance(expr, cst.Call):
        func = expr.func
        name = dotted(func)
        if name is not None and "." not in name:
            helper = facts.function(name)
            if helper is not None:  # a helper of this file: what it returns flows here
                if id(helper) not in seen:
                    seen.add(id(helper))
                    for value, rstmt in helper.returns:
                        if value is not None:
                            yield from flow_back(value, facts, helper, rstmt, depth + 1, seen)
                return
        if is_loss_callee(func, facts, scope, stmt):
            return
        if isinstance(func, cst.Attribute):
            # x.clamp(...), x.mean(), scaler.scale(x)...
            if func.attr.value == "scale" and expr.args:
                yield from flow_back(expr.args[0].value, facts, scope, stmt, depth + 1, seen)
                return
            meth = func.attr.value
            # Only through what keeps the value a loss (reductions, casts, scaling, caps): after
            # log/exp/pow the clamped value is an intermediate (a probability), not the loss.
            if meth in PASS_THROUGH_METHODS or meth in CAP_FUNCS_METHODS:
                yield from flow_back(func.value, facts, scope, stmt, depth + 1, seen)
            if meth in CAP_FUNCS_METHODS:
                for a in expr.args:
                    yield from flow_back(a.value, facts, scope, stmt, depth + 1, seen)
            return
        q = facts.qualify(func)
        if q is not None:
            if q in PASS_THROUGH_FUNCS or q in CAP_FUNCS:
                for a in expr.args:
                    if a.keyword is None:
                        yield from flow_back(a.value, facts, scope, stmt, depth + 1, seen)
            return
        if name in ("min", "max", "sum"):
            for a in expr.args:
                yield from flow_back(a.value, facts, scope, stmt, depth + 1, seen)
        return
    if isinstance(expr, cst.BinaryOperation):
        yield from flow_back(expr.left, facts, scope, stmt, depth + 1, seen)
        yield from flow_back(expr.right, facts, scope, stmt, depth + 1, seen)
        return
    if isinstance(expr, cst.UnaryOperation):
        yield from flow_back(expr.expression, facts, scope, stmt, depth + 1, seen)
        return
    if isinstance(expr, cst.IfExp):
        yield from flow_back(expr.body, facts, scope, stmt, depth + 1, seen)
        yield from flow_back(expr.orelse, facts, scope, stmt, depth + 1, seen)
        return
    name = dotted(expr)
    if name is None:
        return
    for a in scope.reaching(name, stmt):
        if id(a) in seen or a.value is None:
            continue
        seen.add(id(a))
        yield from flow_back(a.value, facts, scope, a.stmt, depth + 1, seen)
        if a.kind == "aug":  # x += v: the old x flows too
            yield from flow_back(expr, facts, scope, a.stmt, depth + 1, seen)


CAP_FUNCS_METHODS = {"clamp", "clip", "clamp_", "clip_", "clamp_max", "clamp_max_", "minimum", "fmin"}
CAP_FUNCS = {"torch.clamp", "torch.clip", "torch.clamp_max", "torch.min", "torch.minimum", "torch.fmin",
             "torch.max", "torch.maximum"}


@dataclass
class Cap:
    call: cst.Call
    operand: cst.BaseExpression
    bound: Optional[cst.BaseExpression]  # the cap, when it is one expression
    spelling: str  # "torch.clamp", ".clamp_()", "min()"
    is_min: bool = False  # min(a, b) / torch.minimum(a, b): either side may be the capped one


def as_cap(call: cst.Call, facts: FileFacts) -> Optional[Cap]:
    """If ``call`` caps a value from above (clamp/clip with a max, min(x, c)...), what and how."""
    func = call.func
    pos = [a.value for a in call.args if a.keyword is None and a.star == ""]
    q = facts.qualify(func)
    if q in ("torch.clamp", "torch.clip", "torch.clamp_max"):
        if not pos:
            return None
        if q == "torch.clamp_max":
            bound = pos[1] if len(pos) > 1 else kwarg(call, "max")
        else:
            bound = pos[2] if len(pos) > 2 else kwarg(call, "max")
        return None if is_none(bound) else Cap(call, pos[0], bound, q)
    if q in ("torch.min", "torch.minimum", "torch.fmin") or (q is None and dotted(func) == "min"):
        if len(pos) == 2:
            return Cap(call, pos[0], pos[1], q or "min", is_min=True)
        return None
    if isinstance(func, cst.Attribute) and q is None:
        meth = func.attr.value
        if meth in ("clamp", "clip", "clamp_", "clip_"):
            bound = pos[1] if len(pos) > 1 else kwarg(call, "max")
            return None if is_none(bound) else Cap(call, func.value, bound, f".{meth}()")
        if meth in ("clamp_max", "clamp_max_"):
            bound = pos[0] if pos else kwarg(call, "max")
            return None if is_none(bound) else Cap(call, func.value, bound, f".{meth}()")
        if meth in ("minimum", "fmin") and pos:
            return Cap(call, func.value, pos[0], f".{meth}()", is_min=True)
    return None


#: Reductions: a cap applied before one of these caps each element (sample), not the batch loss.
_REDUCTIONS = {"mean", "sum", "nanmean", "nansum"}
_REDUCTION_FUNCS = {"torch.mean", "torch.sum", "torch.nanmean", "torch.nansum"}


def direct_caps(
    expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Stmt, reduced: bool = False, depth: int = 0, seen: Optional[Set[int]] = None
) -> Iterator[Tuple[Cap, bool]]:
    """Caps whose result IS the backpropagated value ``expr`` (through names, reductions and casts
    only, never through arithmetic or another term): ``loss = torch.clamp(crit(out, y), max=1.0);
    loss.backward()``. Whatever the capped operand is — a criterion that cannot be resolved, a model
    that returns its loss — what is backpropagated is a loss, so the cap caps the loss. Yields
    (cap, reduced): ``reduced`` when a mean/sum comes after the cap (each sample is capped; else the
    reduced batch loss is)."""
    if depth > 12:
        return
    seen = seen if seen is not None else set()
    if isinstance(expr, cst.Call):
        cap = as_cap(expr, facts)
        if cap is not None:
            if not cap.is_min:
                yield cap, reduced
            return
        func = expr.func
        if isinstance(func, cst.Attribute) and facts.qualify(func) is None:
            meth = func.attr.value
            if meth in _REDUCTIONS or meth in ("float", "double", "half", "to", "squeeze", "view", "reshape", "cuda", "cpu", "contiguous"):
                yield from direct_caps(func.value, facts, scope, stmt, reduced or meth in _REDUCTIONS, depth + 1, seen)
            elif meth == "scale" and expr.args:  # scaler.scale(loss)
                yield from direct_caps(expr.args[0].value, facts, scope, stmt, reduced, depth + 1, seen)
            return
        q = facts.qualify(func)
        if q in _REDUCTION_FUNCS and expr.args and expr.args[0].keyword is None:
            yield from direct_caps(expr.args[0].value, facts, scope, stmt, True, depth + 1, seen)
        return
    name = dotted(expr)
    if name is None:
        return
    for a in scope.reaching(name, stmt):
        if id(a) in seen or a.value is None or a.kind not in ("assign", "inplace"):
            continue
        seen.add(id(a))
        if a.kind == "inplace":  # loss.clamp_(max=1.0)
            cap = as_cap(a.value, facts) if isinstance(a.value, cst.Call) else None
            if cap is not None and not cap.is_min:
                yield cap, reduced
            continue
        yield from direct_caps(a.value, facts, a.scope or scope, a.stmt, reduced, depth + 1, seen)
