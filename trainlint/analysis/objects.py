"""What does this expression hold? Objects (allocation sites) and how they flow through a program.

This is the one place where a name, an attribute, a parameter or a call is resolved to the objects it
may hold. Every analysis layer and rule asks it instead of following assignments itself.

How to ask::

    from trainlint.analysis.objects import World

    world = World.of_program(program)        # or World.of_file(ctx) for one file alone
    file = world.file_of(facts)              # the FileRef of a FileFacts / FileContext
    for obj in world.objects(expr, file, scope, stmt):
        obj.kind       # "instance" | "class" | "function" | "literal" | "unknown"
        obj.qname      # the library meaning: "torch.utils.data.DataLoader", "torch.nn.ReLU",
                       # "torch.nn.functional.cross_entropy"; a project subclass gives its library
                       # base (class InfiniteDataLoader(DataLoader) -> torch.utils.data.DataLoader)
        obj.cls        # the project class (ClassRef) when the object is one of its instances / the class
        obj.node       # the allocation site: the constructor call, the literal, the def / class
        obj.file, obj.scope, obj.stmt   # where that allocation site is (to read its arguments)

    world.is_a(obj, "torch.utils.data.DataLoader")   # instance/class of that library class (or a subclass)
    world.objects_of_name("train_loader", file, scope, stmt)   # same question for a dotted name

``stmt`` is the statement the expression is evaluated at (assignments after it do not count); ``scope``
its function or module scope (``facts.module`` at top level). Answers are memoised per world; an empty
list means "nothing known" and an ``unknown`` object marks an alternative that could not be followed
(so "all of them are X" questions can tell). What is followed:

- allocation sites: calls of classes (library or project), literals (str, numbers), lambdas and defs;
- names through their reaching assignments (``scope.reaching``), enclosing scopes, module globals and
  names imported from other files of the program (``from nets import model``, ``import cfg; cfg.crit``);
- ``self.x`` set in any method of the class or of a project base class; ``obj.x`` where ``obj`` holds an
  instance of a project class (``trainer.model``); ``self`` in a method is an instance of its class;
- parameters, bound from every call site in the program (functions, methods called through ``self.m``
  or through an instance, ``Cls(...)`` for ``__init__``, ``super().__init__(...)``), or their default;
- return values (every ``return``), tuples and unpacking (``a, b = f()``, ``out[0]``), parallel
  assignment, containers with constant keys (``models[name]`` gives every value, ``{"relu": nn.ReLU}["relu"]``
  the one, lists and ``ModuleDict`` / dict literals), ``for x in [A(), B()]``;
- conditional expressions and ``a or b``: both arms, or only the arm the defaults take when the test
  folds to a constant (argparse defaults, config dicts/classes/dataclasses, module constants;
  :mod:`trainlint.analysis.values`);
- ``functools.partial(f, ...)`` (calling it calls ``f``), class aliases
  (``Sampler = DistributedSampler if ddp else RandomSampler``), ``getattr(nn, "ReLU")`` with a constant;
- wrappers that hand back their argument: ``model.to(device)``/``.cuda()``/``.train()``, ``DDP(model)``,
  ``DataParallel``, ``torch.compile``, ``accelerator.prepare(model)``; ``ddp.module``.

Bounded: a depth limit and a per-question budget; cycles give ``unknown``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from trainlint.analysis.facts import Assignment, ClassInfo, FileFacts, Scope, Stmt
from trainlint.analysis.names import canonical, dotted
from trainlint.analysis.syntax import bound_arg, constructed_class, positional
from trainlint.analysis.walk import type_test

_MAX_DEPTH = 16
_MAX_ALTS = 8
_BUDGET = 4000

#: Library class families a project subclass keeps the meaning of (checked by prefix after canonical()).
LIBRARY_ROOTS = ("torch", "lightning", "pytorch_lightning", "torchvision", "transformers", "timm", "accelerate")

#: Calls that hand back (a wrapper of) their first argument.
WRAPPER_FUNCS = {
    "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.DistributedDataParallel",
    "torch.nn.parallel.distributed.DistributedDataParallel", "torch.compile", "torch.jit.script",
    "torch.nn.SyncBatchNorm.convert_sync_batchnorm", "torch.distributed.fsdp.FullyShardedDataParallel",
}
#: Methods that return their receiver (for modules and tensors).
WRAPPER_METHODS = {"to", "cuda", "cpu", "float", "double", "half", "train", "bfloat16", "to_empty", "requires_grad_", "eval"}
#: Attributes of a wrapper that give back the wrapped object.
UNWRAP_ATTRS = {"module", "_orig_mod", "_module"}


@dataclass(eq=False)
class FileRef:
    ctx: object  # trainlint.context.FileContext
    path: str  # real path ("" when unknown)

    @property
    def facts(self) -> FileFacts:
        return self.ctx.facts


@dataclass(eq=False)
class ClassRef:
    file: FileRef
    info: ClassInfo

    @property
    def name(self) -> str:
        return self.info.name


@dataclass(eq=False)
class Obj:
    """One object an expression may hold (see the module doc)."""

    kind: str  # "instance" | "class" | "function" | "literal" | "unknown"
    qname: str = ""  # library meaning (canonical), "" when none
    node: Optional[cst.CSTNode] = None  # allocation site
    file: Optional[FileRef] = None
    scope: Optional[Scope] = None
    stmt: Optional[Stmt] = None
    cls: Optional[ClassRef] = None  # project class
    func: Optional[Tuple[FileRef, Scope]] = None  # project function (kind "function")
    value: object = None  # the literal's value (kind "literal")
    #: keyword arguments bound by functools.partial (name -> (expr, file, scope, stmt))
    bound: Tuple[Tuple[str, cst.BaseExpression], ...] = ()

    @property
    def name(self) -> str:
        """A short name for messages: the project class, else the library name."""
        if self.cls is not None:
            return self.cls.name
        return self.qname.rsplit(".", 1)[-1] if self.qname else "?"

    def call_args(self) -> Optional[cst.Call]:
        """The constructor call of an instance (to read its arguments), if the site is a call."""
        return self.node if isinstance(self.node, cst.Call) else None


class World:
    """The objects of a set of files (one program, or one file alone), resolved on demand and memoised."""

    def __init__(self, files: Sequence[FileRef], program: object = None) -> None:
        self.files = list(files)
        self.program = program
        self._by_path: Dict[str, FileRef] = {f.path: f for f in self.files if f.path}
        self._by_ctx: Dict[int, FileRef] = {id(f.ctx): f for f in self.files}
        self._modules: Dict[Tuple[str, str], Optional[FileRef]] = {}
        #: (id(expr), id(stmt), id(scope), bound parameters) -> (expr, its objects): the node is kept with
        #: its answer, so that a node built during the analysis and freed (``cst.Name("self")``) cannot
        #: leave its id to another node that would then read its answer
        self._memo: Dict[tuple, Tuple[cst.CSTNode, List[Obj]]] = {}
        self._active: set = set()
        self._bases: Dict[int, str] = {}
        self._calls_index: Dict[int, Dict[str, list]] = {}
        # memoised structure (it never changes during a world's life): hot in call-site binding
        self._globals: Dict[Tuple[str, int, int], object] = {}
        self._class_bases: Dict[Tuple[int, int], List[ClassRef]] = {}
        self._enclosing: Dict[Tuple[int, int], Optional[ClassInfo]] = {}
        self._callers: Dict[str, List[Tuple[int, FileRef]]] = {}
        self._init_index: Optional[Tuple[list, Dict[int, list]]] = None
        self._all_bases_memo: Dict[Tuple[int, int], List[ClassRef]] = {}
        #: parameters bound by the call being followed into a function (context sensitivity: a helper
        #: called from two places with two names gives each caller its own answer)
        self._env: Dict[int, Tuple[cst.Call, Dict[str, Tuple[cst.BaseExpression, FileRef, Scope, Optional[Stmt]]]]] = {}
        self.budget = _BUDGET
        #: While a world records (see :func:`per_file`): what its answers asked of the program, keyed by
        #: the question, with the answer got; ``_unsure`` when an answer could not be recorded.
        self._log: Optional[Dict[tuple, tuple]] = None
        self._unsure = False
        self._quiet = 0

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def of_program(cls, program) -> "World":
        """The world of a program (shared by every rule of the run: one cache)."""
        world = getattr(program, "_tl_model_world", None)
        if world is None:
            from trainlint.analysis.modules import ModelWorld  # the richest world; one per program

            world = ModelWorld([FileRef(f.ctx, f.path) for f in program.files], program)
            setattr(program, "_tl_model_world", world)
        return world

    @classmethod
    def of_file(cls, ctx) -> "World":
        world = getattr(ctx, "_tl_model_world", None)
        if world is None:
            from trainlint.analysis.modules import ModelWorld

            world = ModelWorld([FileRef(ctx, os.path.realpath(ctx.path))])
            setattr(ctx, "_tl_model_world", world)
        return world

    def file_of_ctx(self, ctx) -> FileRef:
        return self._by_ctx.get(id(ctx)) or self.files[0]

    def file_of(self, facts_or_ctx) -> Optional[FileRef]:
        """The FileRef of a FileContext or of a FileFacts."""
        hit = self._by_ctx.get(id(facts_or_ctx))
        if hit is not None:
            return hit
        for f in self.files:
            if f.ctx._facts is facts_or_ctx:  # type: ignore[attr-defined]
                return f
        return None

    # -- names ---------------------------------------------------------------------------------------
    def module_file(self, modname: str, importer: FileRef) -> Optional[FileRef]:
        """The file of the world that ``importer`` means by module ``modname`` (None: a library, or a
        file outside the world)."""
        if not importer.path or len(self._by_path) < 2:
            return None
        key = (modname, importer.path)
        if key not in self._modules:
            from trainlint.analysis.program import resolve_module

            target = resolve_module(modname, importer.path, [])
            self._modules[key] = self._by_path.get(os.path.realpath(target)) if target is not None else None
        got = self._modules[key]
        if self._log is not None:
            self._log[("m", modname, importer.path)] = (got.ctx if got is not None else None,)
        return got

    def resolve_global(self, name: str, file: FileRef, depth: int = 0):
        """What a module-level (dotted) name of ``file`` is: ("class", FileRef, ClassInfo), ("function",
        FileRef, Scope), ("assign", FileRef, [Assignment]), ("q", qualified library name) or None."""
        key = (name, id(file), depth)
        try:
            return self._globals[key]
        except KeyError:
            pass
        got = self._globals[key] = self._resolve_global(name, file, depth)
        return got

    def _resolve_global(self, name: str, file: FileRef, depth: int):
        if depth > 6:
            return None
        facts = file.facts
        head, _, rest = name.partition(".")
        if not rest:
            if head in facts.classes:
                return ("class", file, facts.classes[head])
            fn = facts.function(head)
            if fn is not None:
                return ("function", file, fn)
            assigns = [a for a in facts.module.assigns.get(head, []) if a.kind == "assign" and a.value is not None]
            if assigns:
                return ("assign", file, assigns)
        q = facts.aliases.qualify_dotted(name)
        if q is None:
            return None
        if q.startswith(LIBRARY_ROOTS):
            return ("q", canonical(q))
        # a project module: `from models.mlp import MLP` -> models.mlp : MLP; `import cfg; cfg.crit`
        mod, _, attr = q.rpartition(".")
        while mod and mod != ".":
            target = self.module_file(mod, file)
            if target is not None and target is not file:
                return self.resolve_global(attr, target, depth + 1)
            mod, _, last = mod.rpartition(".")
            attr = f"{last}.{attr}"
        return ("q", q)

    # -- classes -------------------------------------------------------------------------------------
    def class_bases(self, file: FileRef, info: ClassInfo) -> List[ClassRef]:
        """The project base classes of a class (local or imported). (Memoised: do not change the list.)"""
        key = (id(file), id(info))
        hit = self._class_bases.get(key)
        if hit is not None:
            return hit
        out = []
        for arg in info.node.bases:
            local = dotted(arg.value)
            if local is None:
                continue
            r = self.resolve_global(local, file)
            if r is not None and r[0] == "class" and r[2] is not info:
                out.append(ClassRef(r[1], r[2]))
        self._class_bases[key] = out
        return out

    def library_base(self, ref: ClassRef, depth: int = 0) -> str:
        """The library class a project class derives from (through project bases): ``class
        WarmUpLR(_LRScheduler)`` -> ``torch.optim.lr_scheduler._LRScheduler``; "" when none."""
        key = id(ref.info)
        if depth == 0 and key in self._bases:
            return self._bases[key]
        found = ""
        if depth <= 8:
            for arg in ref.info.node.bases:
                local = dotted(arg.value)
                if local is None:
                    continue
                r = self.resolve_global(local, ref.file)
                if r is None:
                    continue
                if r[0] == "q" and r[1].startswith(LIBRARY_ROOTS):
                    found = r[1]
                elif r[0] == "class" and r[2] is not ref.info:
                    found = self.library_base(ClassRef(r[1], r[2]), depth + 1)
                elif r[0] == "assign" and len(r[2]) == 1 and dotted(r[2][0].value) is not None:
                    # Base = nn.Module (a class alias)
                    g = self.resolve_global(dotted(r[2][0].value) or "", r[1], depth + 1)
                    if g is not None and g[0] == "q":
                        found = g[1]
                if found:
                    break
        if depth == 0:
            self._bases[key] = found
        return found

    def method(self, ref: ClassRef, name: str, depth: int = 0) -> Optional[Tuple[ClassRef, Scope]]:
        """The method ``name`` of a class or of its nearest project base that defines it."""
        if depth > 8:
            return None
        if name in ref.info.methods:
            return ref, ref.info.methods[name]
        for base in self.class_bases(ref.file, ref.info):
            found = self.method(base, name, depth + 1)
            if found is not None:
                return found
        return None

    def attribute(self, ref: ClassRef, attr: str, depth: int = 0, unpacked: bool = False) -> List[Tuple[ClassRef, Assignment]]:
        """Assignments of ``self.attr`` (dotted, with ``self.``) in the class (``__init__`` first) or its
        project bases; with ``unpacked`` also ``self.a, self.b = ...`` (value None: see
        :meth:`World.objects`)."""
        if depth > 8:
            return []
        found = ref.file.facts.attributes.get(ref.info.name, {}).get(attr, [])
        found = [a for a in found if a.kind in ("assign", "aug") and (a.value is not None or (unpacked and isinstance(a.node, cst.Assign)))]
        if found:
            init = [a for a in found if a.scope is not None and a.scope.name in ("__init__", "build", "setup", "_build", "build_model", "_build_model")]
            return [(ref, a) for a in (init or found)]
        for base in self.class_bases(ref.file, ref.info):
            out = self.attribute(base, attr, depth + 1, unpacked)
            if out:
                return out
        return []

    def enclosing_class(self, file: FileRef, scope: Scope) -> Optional[ClassRef]:
        key = (id(file), id(scope))
        try:
            info = self._enclosing[key]
        except KeyError:
            s = scope
            while s is not None and s.class_name is None:
                s = s.parent
            info = None if s is None else file.facts.classes.get(s.class_name)
            self._enclosing[key] = info
        return None if info is None else ClassRef(file, info)

    def defs(self, name: str, file: FileRef, scope: Scope, stmt: Optional[Stmt], every: bool = False) -> List[Tuple[FileRef, Scope, Assignment]]:
        """Assignments of a dotted name visible at ``stmt`` (local, then self attributes, then the
        enclosing scopes up to the module). ``every``: also loop targets and unpacking in enclosing
        scopes and unpacked ``self`` attributes (what :meth:`objects` follows)."""
        if stmt is None:
            found = [a for a in scope.assigns.get(name, []) if a.kind in ("assign", "aug", "with", "for", "inplace")]
        else:
            found = [a for a in scope.reaching(name, stmt) if a.kind in ("assign", "aug", "with", "for", "inplace")]
        if found:
            return [(file, a.scope or scope, a) for a in found]
        if name.startswith("self."):
            cls = self.enclosing_class(file, scope)
            if cls is not None:
                return [(c.file, a.scope or c.file.facts.module, a) for c, a in self.attribute(cls, name, unpacked=every)]
            return []
        if scope.kind == "function" and name.split(".", 1)[0] in scope.params():
            if "." in name:
                return self._hook_attribute(name, file, scope)
            return []  # a parameter shadows the globals of the same name: its call sites tell
        s = scope.parent
        while s is not None:
            if every:
                got = [a for a in s.assigns.get(name, []) if a.kind in ("assign", "aug", "for") and (a.value is not None or a.kind == "for" or isinstance(a.node, cst.Assign))]
            else:
                got = [a for a in s.assigns.get(name, []) if a.kind in ("assign", "aug") and a.value is not None]
            if got:
                return [(file, s, a) for a in got]
            s = s.parent
        return []

    def _hook_attribute(self, name: str, file: FileRef, scope: Scope) -> List[Tuple[FileRef, Scope, Assignment]]:
        """``pl_module.head`` read in one hook of a callback class, set as ``pl_module.head = ...`` in
        another hook of the same class: a framework calls every hook of a callback with the same objects
        (Lightning's ``Callback`` hooks all get ``(trainer, pl_module)``), so the attribute set on the
        argument in one hook is the one read in the next. Only for classes with a ``...Callback`` base."""
        head = name.split(".", 1)[0]
        info = file.facts.classes.get(scope.class_name or "")
        if info is None or not any((b or "").rsplit(".", 1)[-1].endswith("Callback") for b in info.bases):
            return []
        out: List[Tuple[FileRef, Scope, Assignment]] = []
        for method in info.methods.values():
            if method is scope or head not in method.params():
                continue
            out.extend((file, method, a) for a in method.assigns.get(name, []) if a.kind == "assign" and a.value is not None)
        return out

    # -- calls ---------------------------------------------------------------------------------------
    def calls_named(self, file: FileRef, last: str) -> List[Tuple[cst.Call, Scope, Stmt]]:
        """Calls in ``file`` whose callee's last dotted part is ``last`` (indexed once per file, on its
        facts: the index does not depend on the program, and every program that holds the file asks)."""
        index = self._calls_index.get(id(file))
        if index is None:
            index = self._calls_index[id(file)] = _calls_by_name(file)
        return index.get(last, [])

    def call_sites_binding(self, file: FileRef, scope: Scope, param: str, limit: int = 8):
        """(file, scope, stmt, argument expression) for each call of function or method ``scope`` in the
        world that passes parameter ``param`` (positionally or by keyword). Methods are bound from
        ``self.m(...)`` in their class or a subclass, ``obj.m(...)`` on an instance of it, ``Cls(...)``
        and ``super().__init__(...)`` for ``__init__``; module functions from their name, also imported
        into other files."""
        return self._bindings(file, scope, param, limit)[0]

    def _bindings(self, file: FileRef, scope: Scope, param: str, limit: int = 8):
        """(call sites passing ``param``, does some call of the function leave it out?)"""
        if self._log is None or (scope.class_name is not None and scope.name != "__init__"):
            return self._bindings_of(file, scope, param, limit)
        # A function's or a constructor's call sites are told by names alone (no objects asked): while a
        # world records, the sites that bind are what the answer asked, not every call of that name
        self._quiet += 1
        try:
            got = self._bindings_of(file, scope, param, limit)
        finally:
            self._quiet -= 1
        self._log[("b", id(file.ctx), id(scope), param, limit)] = (file.ctx, scope, param, limit, _bound(got))
        return got

    def _bindings_of(self, file: FileRef, scope: Scope, param: str, limit: int):
        fn = scope.node
        if not isinstance(fn, cst.FunctionDef):
            return [], False
        params = scope.params()
        try:
            index = params.index(param)
        except ValueError:
            return [], False
        if param in [p.name.value for p in fn.params.kwonly_params]:
            index = -1
        method = scope.class_name is not None
        if method:
            if index == 0:
                return [], False  # self
            if index > 0:
                index -= 1
        cls = self.enclosing_class(file, scope) if method else None
        if method and scope.name == "__init__":
            names = [scope.class_name or "", "__init__"]  # Cls(...), super().__init__(...)
        else:
            names = [scope.name]
        out = []
        omitted = False
        # super().__init__(...) calls are many (one per module class of a package): the ones in a direct
        # subclass of ``cls`` come from an index built once per world, not from a check of each call
        init_base = cls.info if cls is not None and scope.name == "__init__" else None
        for f, call, s, st, checked in self._candidates(names, init_base):
            if checked:
                pass  # super().__init__(...) in a direct subclass of ``cls`` (see _init_index)
            elif method and not self._calls_method(call, f, s, st, cls, scope):
                continue
            if not method and not self._calls_function(call, f, s, st, file, scope):
                continue
            arg = bound_arg(call, index, param)
            if arg is None:
                if not any(a.star for a in call.args):
                    omitted = True
                continue
            if len(out) < limit:
                out.append((f, s, st, arg))
        return out, omitted

    def _candidates(self, names: Sequence[str], init_base: Optional[ClassInfo]) -> list:
        """(file, call, scope, stmt, checked) for the calls of the world named one of ``names``, in the
        order of the files, then of ``names``, then of the file. With ``init_base``, the calls named
        ``__init__`` are only those that may call ``init_base.__init__``: every one that is not
        ``super().__init__(...)``, and the ``super().__init__(...)`` of its direct subclasses (``checked``)."""
        keyed = []
        for k, n in enumerate(names):
            if init_base is not None and n == "__init__":
                other, supers = self._init_index_of()
                keyed.extend((i, k, pos, f, entry, False) for i, pos, f, entry in other)
                keyed.extend((i, k, pos, f, entry, True) for i, pos, f, entry in supers.get(id(init_base), ()))
                continue
            for i, f in self._files_calling(n):
                keyed.extend((i, k, pos, f, entry, False) for pos, entry in enumerate(self.calls_named(f, n)))
        if len(names) > 1 or init_base is not None:
            keyed.sort(key=lambda x: (x[0], x[1], x[2]))
        out = [(f, entry[0], entry[1], entry[2], checked) for _, _, _, f, entry, checked in keyed]
        if self._log is not None and not self._quiet:
            self._log[("k", tuple(names), id(init_base))] = (names, init_base, _sites(out))
        return out

    def _files_calling(self, name: str) -> List[Tuple[int, FileRef]]:
        """(position, file) of the world's files that call ``name`` (a callee's last name), in order. Only
        the files whose text holds the name are indexed (a call's name is written in its file): a library
        module's program of ~50 files asks for a few names, and most of its files never call them."""
        hit = self._callers.get(name)
        if hit is None:
            hit = self._callers[name] = [(i, f) for i, f in enumerate(self.files)
                                         if name in f.ctx.source.text and self.calls_named(f, name)]
        return hit

    def _init_index_of(self) -> Tuple[list, Dict[int, list]]:
        """The world's calls named ``__init__``, as (file position, call position, file, entry): those
        that are not ``super().__init__(...)``, and the super calls by direct base class (id of its
        ClassInfo) of the class they are made in. One module class of a package after another asks for
        its __init__'s call sites: the super calls are sorted by base once, not checked for every class."""
        index = self._init_index
        if index is None:
            other: list = []
            supers: Dict[int, list] = {}
            for i, f in self._files_calling("__init__"):
                for pos, entry in enumerate(self.calls_named(f, "__init__")):
                    call, s, _ = entry
                    if not _is_super_call(call):
                        other.append((i, pos, f, entry))
                        continue
                    here = self.enclosing_class(f, s)
                    if here is None:
                        continue
                    for b in self.class_bases(here.file, here.info):
                        got = supers.setdefault(id(b.info), [])
                        if not got or got[-1][2] is not f or got[-1][1] != pos:
                            got.append((i, pos, f, entry))
            index = self._init_index = (other, supers)
        return index

    def _calls_function(self, call: cst.Call, f: FileRef, s: Scope, st: Stmt, file: FileRef, fscope: Scope) -> bool:
        name = dotted(call.func)
        if name is None:
            return False
        if f is file and "." not in name:
            return True
        g = self.resolve_global(name, f) if not (s is not f.facts.module and s.reaching(name.split(".")[0], st)) else None
        if g is None:
            return "." not in name and f is file
        return g[0] == "function" and g[2] is fscope

    def _calls_method(self, call: cst.Call, f: FileRef, s: Scope, st: Stmt, cls: Optional[ClassRef], mscope: Scope) -> bool:
        if cls is None:
            return False
        func = call.func
        if mscope.name == "__init__":
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Call) and dotted(func.value.func) == "super":
                here = self.enclosing_class(f, s)
                return here is not None and any(b.info is cls.info for b in self.class_bases(here.file, here.info))
            name = dotted(func)
            if name is None:
                return False
            g = self.resolve_global(name, f)
            return g is not None and g[0] == "class" and g[2] is cls.info
        if not isinstance(func, cst.Attribute):
            return False
        recv = func.value
        if dotted(recv) == "self":
            here = self.enclosing_class(f, s)
            return here is not None and (here.info is cls.info or any(b.info is cls.info for b in self._all_bases(here)))
        return any(o.cls is not None and (o.cls.info is cls.info or any(b.info is cls.info for b in self._all_bases(o.cls)))
                   for o in self.objects(recv, f, s, st))

    def _all_bases(self, ref: ClassRef, depth: int = 0) -> List[ClassRef]:
        if depth == 0:
            key = (id(ref.file), id(ref.info))
            hit = self._all_bases_memo.get(key)
            if hit is None:
                hit = self._all_bases_memo[key] = self._all_bases_of(ref, 0)
            return hit
        return self._all_bases_of(ref, depth)

    def _all_bases_of(self, ref: ClassRef, depth: int) -> List[ClassRef]:
        if depth > 6:
            return []
        out = []
        for b in self.class_bases(ref.file, ref.info):
            out.append(b)
            out.extend(self._all_bases_of(b, depth + 1))
        return out

    # -- the question --------------------------------------------------------------------------------
    def objects(self, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int = 0) -> List[Obj]:
        """The objects ``expr`` may hold at ``stmt`` (see the module doc)."""
        key = (id(expr), id(stmt), id(scope), tuple((k, id(v[0])) for k, v in self._env.items()))
        hit = self._memo.get(key)
        if hit is not None and hit[0] is expr:
            return hit[1]
        if depth > _MAX_DEPTH or key in self._active or self.budget <= 0:
            return [Obj("unknown", node=expr, file=file, scope=scope, stmt=stmt)]
        self.budget -= 1
        self._active.add(key)
        try:
            out = self._objects(expr, file, scope, stmt, depth)
        finally:
            self._active.discard(key)
        out = _dedupe(out)[: _MAX_ALTS * 2]
        if depth == 0:
            self.budget = _BUDGET
        self._memo[key] = (expr, out)
        return out

    def objects_of_name(self, name: str, file: FileRef, scope: Scope, stmt: Optional[Stmt]) -> List[Obj]:
        """The objects a dotted name holds at ``stmt``."""
        return self._named(cst.parse_expression(name), name, file, scope, stmt, 0) if name else []

    @staticmethod
    def is_a(obj: Obj, *qnames: str) -> bool:
        """Is ``obj`` an instance (or the class) of one of the library classes ``qnames``, or of a
        project subclass of it? Public re-exports match their defining module's spelling by the class
        name under the same package (``torch.utils.data.DataLoader`` is
        ``torch.utils.data.dataloader.DataLoader``)."""
        q = obj.qname
        if not q:
            return False
        for want in qnames:
            if q == want:
                return True
            top, last = want.split(".", 1)[0], want.rsplit(".", 1)[-1]
            if q.rsplit(".", 1)[-1] == last and q.split(".", 1)[0] == top:
                return True
        return False

    def _unknown(self, expr, file, scope, stmt) -> List[Obj]:
        return [Obj("unknown", node=expr, file=file, scope=scope, stmt=stmt)]

    def _objects(self, expr, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int) -> List[Obj]:
        if isinstance(expr, cst.SimpleString):
            return [Obj("literal", node=expr, file=file, scope=scope, stmt=stmt, value=expr.evaluated_value)]
        if isinstance(expr, (cst.Integer, cst.Float)):
            return [Obj("literal", node=expr, file=file, scope=scope, stmt=stmt, value=expr.evaluated_value)]
        if isinstance(expr, cst.Lambda):
            return [Obj("function", node=expr, file=file, scope=scope, stmt=stmt)]
        if isinstance(expr, cst.IfExp):
            arm = self._decided_arm(expr.test, file, scope, stmt)
            if arm is True:
                return self.objects(expr.body, file, scope, stmt, depth + 1)
            if arm is False:
                return self.objects(expr.orelse, file, scope, stmt, depth + 1)
            return self.objects(expr.body, file, scope, stmt, depth + 1) + self.objects(expr.orelse, file, scope, stmt, depth + 1)
        if isinstance(expr, cst.BooleanOperation) and isinstance(expr.operator, cst.Or):
            left = [o for o in self.objects(expr.left, file, scope, stmt, depth + 1) if not (o.kind == "literal" and o.value is None)]
            return left + self.objects(expr.right, file, scope, stmt, depth + 1)
        if isinstance(expr, cst.Subscript):
            return self._subscript(expr, file, scope, stmt, depth)
        if isinstance(expr, cst.Call):
            return self._call(expr, file, scope, stmt, depth)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            name = dotted(expr)
            if name is None:  # f(x).attr
                if isinstance(expr, cst.Attribute):
                    return self._member_of(self.objects(expr.value, file, scope, stmt, depth + 1), expr.attr.value, expr, file, scope, stmt, depth)
                return self._unknown(expr, file, scope, stmt)
            if name in ("None", "True", "False"):
                return [Obj("literal", node=expr, file=file, scope=scope, stmt=stmt, value={"None": None, "True": True, "False": False}[name])]
            return self._named(expr, name, file, scope, stmt, depth)
        return self._unknown(expr, file, scope, stmt)

    def fold(self, expr: cst.BaseExpression, facts: FileFacts, scope: Scope, stmt: Optional[Stmt]):
        """:func:`trainlint.analysis.values.fold` in this world's program (None when it cannot be told)."""
        from trainlint.analysis.values import fold_asked

        try:
            got, asked = fold_asked(expr, facts, scope, stmt, self.program)
        except RecursionError:  # pragma: no cover - pathological nesting
            self._unsure = True
            return None
        if asked and self._log is not None:
            self._log[("f", id(expr), id(facts), id(scope), id(stmt))] = (expr, facts, scope, stmt, got)
        return got

    def decided(self, test: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Optional[Stmt]) -> Optional[bool]:
        """What a condition evaluates to on the default path (argparse defaults, configs, constants,
        parameter defaults, ``self.x`` set from them), or None when it cannot be told."""
        return self._decided_arm(test, file, scope, stmt)

    def constant(self, expr: cst.BaseExpression, file: FileRef, scope: Scope, stmt: Optional[Stmt]) -> object:
        """The one constant value ``expr`` holds on the default path, or None (folded constants first,
        then the literals the objects layer follows: ``self.drop_rate`` set from a parameter default)."""
        got = self.fold(expr, file.facts, scope, stmt)
        if got is not None:
            return got.value
        v = self._literal(expr, file, scope, stmt, 0)
        return None if v is _ANY else v

    def _decided_arm(self, test, file: FileRef, scope: Scope, stmt: Optional[Stmt]) -> Optional[bool]:
        """True/False when the test of a conditional folds to a constant (defaults decide), else None."""
        got = self.fold(test, file.facts, scope, stmt)
        if got is not None:
            return bool(got.value)
        if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
            left = self.constant(test.left, file, scope, stmt)
            right = self.constant(test.comparisons[0].comparator, file, scope, stmt)
            if left is None or right is None:
                return None
            op = test.comparisons[0].operator
            try:
                if isinstance(op, cst.Equal):
                    return left == right
                if isinstance(op, cst.NotEqual):
                    return left != right
                if isinstance(op, cst.In) and isinstance(right, (tuple, str)):
                    return left in right
                if isinstance(op, cst.NotIn) and isinstance(right, (tuple, str)):
                    return left not in right
                if isinstance(left, (int, float)) and isinstance(right, (int, float)):
                    if isinstance(op, cst.GreaterThan):
                        return left > right
                    if isinstance(op, cst.GreaterThanEqual):
                        return left >= right
                    if isinstance(op, cst.LessThan):
                        return left < right
                    if isinstance(op, cst.LessThanEqual):
                        return left <= right
            except TypeError:
                return None
            return None
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            inner = self._decided_arm(test.expression, file, scope, stmt)
            return None if inner is None else not inner
        if isinstance(test, (cst.Name, cst.Attribute)):
            v = self.constant(test, file, scope, stmt)
            return None if v is None and not self._holds_none(test, file, scope, stmt) else bool(v)
        return None

    def _holds_none(self, expr, file, scope, stmt) -> bool:
        objs = self.objects(expr, file, scope, stmt)
        return bool(objs) and all(o.kind == "literal" and o.value is None for o in objs)

    def _named(self, expr, name: str, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int) -> List[Obj]:
        if name == "self":
            cls = self.enclosing_class(file, scope)
            if cls is not None:
                return [Obj("instance", self.library_base(cls), cls.info.node, cls.file, cls.file.facts.module, None, cls=cls)]
            return self._unknown(expr, file, scope, stmt)
        head = name.split(".")[0]
        defs = self.defs(name, file, scope, stmt, every=True)
        if defs:
            out: List[Obj] = []
            for f, s, a in defs[:_MAX_ALTS]:
                out.extend(self._assigned(a, name, f, s, depth))
            return out
        # a parameter: what this call passes (when followed from a call), else every call site, else its default
        if "." not in name and name in scope.params() and isinstance(scope.node, cst.FunctionDef):
            frame = self._env.get(id(scope))
            if frame is not None:
                env = frame[1]
                if name in env:
                    e, ef, es, est = env[name]
                    saved = self._env.pop(id(scope))
                    try:
                        return self.objects(e, ef, es, est, depth + 1)
                    finally:
                        self._env[id(scope)] = saved
                default = _param_default(scope, name)
                if default is not None:
                    return self.objects(default, file, scope.parent or file.facts.module, None, depth + 1)
            return self._param(name, file, scope, depth)
        # obj.attr where obj is not an imported module: an attribute of what obj holds
        if "." in name and isinstance(expr, cst.Attribute) and not self._is_import(head, file, scope, stmt):
            return self._member_of(self.objects(expr.value, file, scope, stmt, depth + 1), expr.attr.value, expr, file, scope, stmt, depth)
        g = self.resolve_global(name, file)
        if g is None:
            # a builtin, a name bound by `global`/`exec`, a star import
            return self._unknown(expr, file, scope, stmt)
        return self._global(g, expr, depth)

    def _is_import(self, head: str, file: FileRef, scope: Scope, stmt: Optional[Stmt]) -> bool:
        if file.facts.aliases.aliases.get(head) is None:
            return False
        s: Optional[Scope] = scope
        while s is not None:
            if s.kind == "function" and (head in s.assigns or head in s.params()):
                return False
            s = s.parent
        return True

    def _global(self, g, expr, depth: int) -> List[Obj]:
        kind = g[0]
        if kind == "q":
            q = g[1]
            return [Obj("class" if _looks_like_class(q) else "function", q, expr)]
        if kind == "class":
            ref = ClassRef(g[1], g[2])
            return [Obj("class", self.library_base(ref), ref.info.node, ref.file, ref.file.facts.module, None, cls=ref)]
        if kind == "function":
            return [Obj("function", "", g[2].node, g[1], g[2].parent, None, func=(g[1], g[2]))]
        if kind == "assign":
            out: List[Obj] = []
            f: FileRef = g[1]
            for a in g[2][:_MAX_ALTS]:
                out.extend(self.objects(a.value, f, f.facts.module, a.stmt, depth + 1))
            return out
        return []

    def _assigned(self, a: Assignment, name: str, f: FileRef, s: Scope, depth: int) -> List[Obj]:
        """The objects an assignment binds to ``name``."""
        if a.kind == "for":
            return self._loop_target(a, name, f, s, depth)
        if a.kind == "with":
            return self._unknown(a.value, f, s, a.stmt) if a.value is not None else []
        if a.kind == "aug":
            return self._unknown(a.node, f, s, a.stmt)
        if a.kind == "inplace":
            return self.objects(a.value.func.value, f, s, a.stmt, depth + 1) if isinstance(a.value, cst.Call) and isinstance(a.value.func, cst.Attribute) else []
        if a.value is not None:
            return self.objects(a.value, f, s, a.stmt, depth + 1)
        node = a.node
        if isinstance(node, (cst.Assign, cst.AnnAssign)) and node.value is not None:
            targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
            for tgt in targets:
                path = target_path(tgt, name)
                if path is None:
                    continue
                return self._project(node.value, path, f, s, a.stmt, depth)
        return self._unknown(node, f, s, a.stmt)

    def _project(self, value, path: Tuple[int, ...], f: FileRef, s: Scope, stmt: Stmt, depth: int) -> List[Obj]:
        """The element at ``path`` of what ``value`` holds (unpacking ``a, (b, c) = ...``)."""
        if not path:
            return self.objects(value, f, s, stmt, depth + 1)
        i, rest = path[0], path[1:]
        if isinstance(value, (cst.Tuple, cst.List)):
            els = value.elements
            if any(isinstance(e, cst.StarredElement) for e in els) or i >= len(els):
                return self._unknown(value, f, s, stmt)
            return self._project(els[i].value, rest, f, s, stmt, depth + 1)
        out: List[Obj] = []
        for el_expr, ef, es, est in self._returned_elements(value, i, f, s, stmt, depth):
            out.extend(self._project(el_expr, rest, ef, es, est, depth + 1))
        return out or self._unknown(value, f, s, stmt)

    def _returned_elements(self, value, i: int, f: FileRef, s: Scope, stmt: Stmt, depth: int):
        """(element expression, file, scope, stmt) for element ``i`` of each tuple a call returns."""
        if not isinstance(value, cst.Call):
            return []
        out = []
        for o in self.objects(value.func, f, s, stmt, depth + 1):
            if o.kind == "function" and o.func is not None:
                ff, fs = o.func
                for rv, rs in fs.returns[:_MAX_ALTS]:
                    if isinstance(rv, (cst.Tuple, cst.List)) and i < len(rv.elements) and not any(isinstance(e, cst.StarredElement) for e in rv.elements):
                        out.append((rv.elements[i].value, ff, fs, rs))
        return out

    def _loop_target(self, a: Assignment, name: str, f: FileRef, s: Scope, depth: int) -> List[Obj]:
        node = a.node
        if not isinstance(node, cst.For):
            return self._unknown(node, f, s, a.stmt)
        path = target_path(node.target, name)
        it = node.iter
        if path == () and isinstance(it, (cst.List, cst.Tuple)) and not any(isinstance(e, cst.StarredElement) for e in it.elements):
            out: List[Obj] = []
            for el in it.elements[:_MAX_ALTS]:
                out.extend(self.objects(el.value, f, s, a.stmt, depth + 1))
            return out
        return self._unknown(node, f, s, a.stmt)

    def _param_args(self, name: str, file: FileRef, scope: Scope):
        """The argument expressions a parameter may be bound to: (expr, file, scope, stmt) from the
        call being followed, else from every call site, plus the default where it applies."""
        frame = self._env.get(id(scope))
        if frame is not None:
            if name in frame[1]:
                return [frame[1][name]]
            d = _param_default(scope, name)
            return [(d, file, scope.parent or file.facts.module, None)] if d is not None else []
        sites, omitted = self._bindings(file, scope, name)
        out = [(arg, f, s, st) for f, s, st, arg in sites]
        d = _param_default(scope, name)
        if d is not None and (not sites or omitted):
            out.append((d, file, scope.parent or file.facts.module, None))
        return out

    def _param(self, name: str, file: FileRef, scope: Scope, depth: int) -> List[Obj]:
        sites, omitted = self._bindings(file, scope, name)
        out: List[Obj] = []
        for f, s, st, arg in sites:
            out.extend(self.objects(arg, f, s, st, depth + 1))
        fn = scope.node
        param = next((p for p in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params) if p.name.value == name), None)
        if param is not None and param.default is not None:
            if not sites or omitted:  # the default runs when a call leaves the parameter out
                out.extend(self.objects(param.default, file, scope.parent or file.facts.module, None, depth + 1))
        elif not sites:
            typed = self._annotated(param, file) if param is not None else []
            return typed or self._unknown(param.name if param is not None else fn, file, scope, None)
        return out

    def _annotated(self, param: cst.Param, file: FileRef) -> List[Obj]:
        """A parameter nothing binds (a library method nobody of the program calls), annotated with a
        project class (``def __init__(self, model: SequenceTagger)``): an instance of that class (or of
        a subclass: the questions asked of it are about its library base and its methods)."""
        ann = param.annotation.annotation if param.annotation is not None else None
        name = dotted(ann) if ann is not None else None
        if name is None:
            return []
        g = self.resolve_global(name, file)
        if g is None or g[0] != "class":
            return []
        ref = ClassRef(g[1], g[2])
        return [Obj("instance", self.library_base(ref), param, file, file.facts.module, None, cls=ref)]

    def _member_of(self, bases: List[Obj], attr: str, expr, file, scope, stmt, depth: int) -> List[Obj]:
        """``base.attr`` for each object ``base`` may hold."""
        out: List[Obj] = []
        for b in bases:
            if b.kind == "instance" and attr in UNWRAP_ATTRS:
                out.append(b)  # ddp_model.module
            elif b.kind in ("instance", "class") and b.cls is not None:
                assigns = self.attribute(b.cls, "self." + attr, unpacked=True) if b.kind == "instance" else []
                if assigns:
                    for c, a in assigns[:_MAX_ALTS]:
                        out.extend(self._assigned(a, "self." + attr, c.file, a.scope or c.file.facts.module, depth + 1))
                    continue
                # a class attribute: class Config: lr = 0.1 / a method
                found = self._class_attr(b.cls, attr, depth)
                out.extend(found or self._unknown(expr, file, scope, stmt))
            elif b.kind == "class" and b.qname and not b.cls:
                q = b.qname + "." + attr
                out.append(Obj("class" if _looks_like_class(q) else "function", q, expr, file, scope, stmt))
            else:
                out.extend(self._unknown(expr, file, scope, stmt))
        return out

    def _class_attr(self, ref: ClassRef, attr: str, depth: int) -> List[Obj]:
        for a in ref.file.facts.module.assigns.get(attr, ()):
            if id(ref.info.node) in a.stmt.block and a.value is not None:
                return self.objects(a.value, ref.file, ref.file.facts.module, a.stmt, depth + 1)
        m = self.method(ref, attr)
        if m is not None:
            c, ms = m
            return [Obj("function", "", ms.node, c.file, ms.parent, None, func=(c.file, ms), cls=c)]
        return []

    def _subscript(self, expr: cst.Subscript, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int) -> List[Obj]:
        if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
            return self._unknown(expr, file, scope, stmt)
        idx = expr.slice[0].slice.value
        folded = self.fold(idx, file.facts, scope, stmt)
        key = folded.value if folded is not None else self._literal(idx, file, scope, stmt, depth)
        out: List[Obj] = []
        for container, cf, cs, cst_ in self._containers(expr.value, file, scope, stmt, depth):
            out.extend(self._element(container, key, cf, cs, cst_, depth))
        if out:
            return out
        # f()[0] where f returns tuples
        if isinstance(key, int) and isinstance(expr.value, cst.Call):
            for el_expr, ef, es, est in self._returned_elements(expr.value, key, file, scope, stmt, depth):
                out.extend(self.objects(el_expr, ef, es, est, depth + 1))
        return out or self._unknown(expr, file, scope, stmt)

    def _literal(self, expr, file: FileRef, scope: Scope, stmt, depth: int) -> object:
        """The one literal value ``expr`` holds (through parameters bound by the call being followed),
        else _ANY."""
        if not isinstance(expr, (cst.Name, cst.Attribute, cst.Subscript)):
            return _ANY
        objs = self.objects(expr, file, scope, stmt, depth + 1)
        values = {repr(o.value) for o in objs if o.kind == "literal"}
        if objs and len(values) == 1 and all(o.kind == "literal" for o in objs):
            return objs[0].value
        return _ANY

    def _containers(self, expr, file: FileRef, scope: Scope, stmt, depth: int):
        """Container literals (dict/list/tuple, ``dict(...)``, ``nn.ModuleDict({...})``) ``expr`` holds."""
        if depth > _MAX_DEPTH:
            return []
        if isinstance(expr, (cst.Dict, cst.List, cst.Tuple)):
            return [(expr, file, scope, stmt)]
        if isinstance(expr, cst.Call):
            name = dotted(expr.func) or ""
            q = canonical(file.facts.qualify(expr.func) or name)
            pos = positional(expr)
            if q in ("dict", "torch.nn.ModuleDict", "torch.nn.ModuleList", "list", "tuple", "collections.OrderedDict", "OrderedDict") and pos:
                return self._containers(pos[0], file, scope, stmt, depth + 1)
            if q == "dict" and not pos:
                return [(expr, file, scope, stmt)]
            return []
        name = dotted(expr)
        if name is None:
            return []
        out = []
        defs = self.defs(name, file, scope, stmt)
        if defs:
            for f, s, a in defs[:_MAX_ALTS]:
                if a.kind == "assign" and a.value is not None:
                    out.extend(self._containers(a.value, f, s, a.stmt, depth + 1))
            return out
        if "." not in name and name in scope.params():
            for e, ef, es, est in self._param_args(name, file, scope)[:_MAX_ALTS]:
                out.extend(self._containers(e, ef, es, est, depth + 1))
            return out
        g = self.resolve_global(name, file)
        if g is not None and g[0] == "assign":
            for a in g[2][:_MAX_ALTS]:
                out.extend(self._containers(a.value, g[1], g[1].facts.module, a.stmt, depth + 1))
        return out

    def _element(self, container, key, f: FileRef, s: Scope, stmt, depth: int) -> List[Obj]:
        out: List[Obj] = []
        if isinstance(container, cst.Dict):
            for el in container.elements:
                if not isinstance(el, cst.DictElement):
                    continue
                k = el.key.evaluated_value if isinstance(el.key, cst.SimpleString) else _ANY
                if key is _ANY or k is _ANY or k == key:
                    out.extend(self.objects(el.value, f, s, stmt, depth + 1))
            return out
        if isinstance(container, cst.Call):  # dict(relu=nn.ReLU, ...)
            for a in container.args:
                if a.keyword is not None and (key is _ANY or a.keyword.value == key):
                    out.extend(self.objects(a.value, f, s, stmt, depth + 1))
            return out
        els = [e for e in container.elements]
        if any(isinstance(e, cst.StarredElement) for e in els):
            return self._unknown(container, f, s, stmt)
        if isinstance(key, int) and not isinstance(key, bool) and -len(els) <= key < len(els):
            return self.objects(els[key].value, f, s, stmt, depth + 1)
        for e in els[:_MAX_ALTS]:
            out.extend(self.objects(e.value, f, s, stmt, depth + 1))
        return out

    def _call(self, call: cst.Call, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int) -> List[Obj]:
        func = call.func
        facts = file.facts
        pos = positional(call)
        # receiver-returning methods: model.to(device), net.cuda()
        if isinstance(func, cst.Attribute) and func.attr.value in WRAPPER_METHODS and facts.qualify(func) is None:
            inner = self.objects(func.value, file, scope, stmt, depth + 1)
            if any(o.kind == "instance" for o in inner):
                return inner
        # accelerator.prepare(model, opt, loader): one object per position (the whole call for one)
        if isinstance(func, cst.Attribute) and func.attr.value == "prepare" and len(pos) == 1:
            return self.objects(pos[0], file, scope, stmt, depth + 1)
        name = dotted(func)
        if name == "getattr" and len(pos) >= 2:
            attr = self.fold(pos[1], facts, scope, stmt)
            if attr is not None and isinstance(attr.value, str):
                base = self.objects(pos[0], file, scope, stmt, depth + 1) if dotted(pos[0]) is None or not self._is_import(dotted(pos[0]).split(".")[0], file, scope, stmt) else self._global_module(pos[0], file)
                return self._member_of(base, attr.value, call, file, scope, stmt, depth)
            return self._unknown(call, file, scope, stmt)
        ctor = constructed_class(func)
        if ctor is not func:  # Trainer.from_argparse_args(args): an instance of the class, built here
            classes = [c for c in self.objects(ctor, file, scope, stmt, depth + 1) if c.kind == "class"]
            if classes:
                return [Obj("instance", c.qname, call, file, scope, stmt, cls=c.cls) for c in classes[:_MAX_ALTS]]
        callees = self.objects(func, file, scope, stmt, depth + 1)
        out: List[Obj] = []
        for c in callees[:_MAX_ALTS]:
            out.extend(self._apply(c, call, file, scope, stmt, depth))
        return out or self._unknown(call, file, scope, stmt)

    def _global_module(self, expr, file: FileRef) -> List[Obj]:
        q = file.facts.qualify(expr)
        if q is None:
            return []
        return [Obj("class", canonical(q), expr, file)]  # a library module: getattr(nn, "ReLU") -> nn.ReLU

    def _apply(self, c: Obj, call: cst.Call, file: FileRef, scope: Scope, stmt: Optional[Stmt], depth: int) -> List[Obj]:
        """What calling object ``c`` with ``call`` gives."""
        pos = positional(call)
        if c.kind == "class":
            if c.cls is None and c.qname in ("functools.partial",):
                if not pos:
                    return self._unknown(call, file, scope, stmt)
                out = []
                for inner in self.objects(pos[0], file, scope, stmt, depth + 1):
                    bound = tuple((a.keyword.value, a.value) for a in call.args if a.keyword is not None)
                    out.append(Obj(inner.kind, inner.qname, inner.node, inner.file, inner.scope, inner.stmt, inner.cls, inner.func, inner.value, inner.bound + bound))
                return out
            if c.cls is None and (c.qname in WRAPPER_FUNCS or c.qname.endswith("DistributedDataParallel") or c.qname.endswith(".DataParallel")):
                args = pos or [a.value for a in call.args if a.keyword is not None and a.keyword.value in ("module", "model")]
                return self.objects(args[0], file, scope, stmt, depth + 1) if args else self._unknown(call, file, scope, stmt)
            if c.cls is None and c.node is not None and not isinstance(c.node, (cst.Name, cst.Attribute)) and not isinstance(c.node, cst.Call):
                pass
            # an instance, allocated here (a partial's class keeps its bound keywords)
            return [Obj("instance", c.qname, call, file, scope, stmt, cls=c.cls, bound=c.bound)]
        if c.kind == "function":
            if c.qname in WRAPPER_FUNCS and pos:
                return self.objects(pos[0], file, scope, stmt, depth + 1)
            if c.qname in ("copy.deepcopy", "copy.copy") and pos:
                # a copy is a new object of the same kind, allocated here (an EMA / teacher model)
                inner = self.objects(pos[0], file, scope, stmt, depth + 1)
                if inner and all(o.kind == "instance" for o in inner):
                    return [Obj("instance", o.qname, call, file, scope, stmt, cls=o.cls) for o in inner]
                return self._unknown(call, file, scope, stmt)
            if c.func is not None:
                ff, fs = c.func
                out: List[Obj] = []
                rets = [(v, s) for v, s in fs.returns if v is not None]
                bindings = _bind(call, fs, file, scope, stmt, skip_self=c.cls is not None)
                pushed = bindings is not None and id(fs) not in self._env
                if pushed:
                    self._env[id(fs)] = (call, bindings)  # type: ignore[assignment]
                try:
                    for v, rs in rets[:_MAX_ALTS]:
                        out.extend(self.objects(v, ff, fs, rs, depth + 1))
                finally:
                    if pushed:
                        del self._env[id(fs)]
                return out or self._unknown(call, file, scope, stmt)
            if c.qname:
                # a library function's result: F.relu(x) is a tensor; torch.optim.SGD is a class
                return [Obj("unknown", c.qname + "()", call, file, scope, stmt)]
            return self._unknown(call, file, scope, stmt)
        if c.kind == "instance" and c.cls is not None:
            # calling an instance: its __call__ / forward result is not an object we follow
            return self._unknown(call, file, scope, stmt)
        return self._unknown(call, file, scope, stmt)


def _sites(found: list) -> tuple:
    """What a list of call sites (file, call, scope, stmt, checked) is, across worlds: the file's context
    stands for the file (each world has FileRefs of its own)."""
    return tuple((f.ctx, call, checked) for f, call, _, _, checked in found)


def _bound(got) -> tuple:
    """What :meth:`World._bindings` answered, across worlds (see :func:`_sites`)."""
    sites, omitted = got
    return tuple((f.ctx, s, st, arg) for f, s, st, arg in sites), omitted


def per_file(program, ctx, key: str, compute):
    """``compute(world, file)`` for the file ``ctx`` of ``program``: asked in a world of its own, which
    records what the answer asked of the program (the file an import names, the call sites of a
    function, a constant folded through another file or a call site), and memoised on the file's facts
    with that record. Another program that holds the file reuses the answer when it answers each of
    those questions the same way (timm's ~200 shared files are in each of its ten programs); else it is
    computed again, and kept beside the first. The answer does not depend on what other questions its
    world was asked before (a world of its own), so a reused answer is the one the program would get."""
    from trainlint.analysis.modules import ModelWorld

    facts = ctx.facts
    store = facts.__dict__.setdefault("_tl_per_file", {})
    variants = store.setdefault(key, [])
    if variants:
        shared = World.of_program(program)
        for log, answer in variants:
            if _still_holds(log, shared, program):
                return answer
    world = ModelWorld([FileRef(f.ctx, f.path) for f in program.files], program)
    world._log = {("n",): (len(world._by_path) < 2,)}
    answer = compute(world, world.file_of_ctx(ctx))
    if not world._unsure and len(variants) < 4:
        variants.append((world._log, answer))
    return answer


def _still_holds(log: Dict[tuple, tuple], world: "World", program) -> bool:
    """Does ``world`` (of ``program``) answer every question of ``log`` as the world that recorded it did?"""
    from trainlint.analysis.values import fold_asked, same_fold

    for key, got in log.items():
        kind = key[0]
        if kind == "n":
            if (len(world._by_path) < 2) != got[0]:
                return False
        elif kind == "m":
            here = world.module_file(key[1], FileRef(None, key[2]))
            if (here.ctx if here is not None else None) is not got[0]:
                return False
        elif kind == "k":
            names, init_base, sites = got
            mine = _sites(world._candidates(names, init_base))
            if len(mine) != len(sites) or any(a[0] is not b[0] or a[1] is not b[1] or a[2] != b[2] for a, b in zip(mine, sites)):
                return False
        elif kind == "b":
            fctx, scope, param, limit, (sites, omitted) = got
            here = world._by_ctx.get(id(fctx))
            if here is None:
                return False
            mine, mine_omitted = _bound(world._bindings(here, scope, param, limit))
            if mine_omitted != omitted or len(mine) != len(sites) or \
                    any(any(x is not y for x, y in zip(a, b)) for a, b in zip(mine, sites)):
                return False
        elif kind == "f":
            expr, facts, scope, stmt, value = got
            try:
                now = fold_asked(expr, facts, scope, stmt, program)[0]
            except RecursionError:  # pragma: no cover
                return False
            if not same_fold(now, value):
                return False
        else:  # pragma: no cover - a question this check does not know
            return False
    return True


def _is_super_call(call: cst.Call) -> bool:
    """``super().m(...)`` / ``super(Cls, self).m(...)``."""
    func = call.func
    return isinstance(func, cst.Attribute) and isinstance(func.value, cst.Call) and dotted(func.value.func) == "super"


class _Any:
    def __repr__(self) -> str:
        return "<any key>"


_ANY = _Any()


def _looks_like_class(q: str) -> bool:
    last = q.rsplit(".", 1)[-1]
    return bool(last) and (last[0].isupper() or last.startswith("_") and len(last) > 1 and last[1].isupper()) or q == "functools.partial"


def _dedupe(objs: List[Obj]) -> List[Obj]:
    seen = set()
    out = []
    for o in objs:
        k = (o.kind, id(o.node), o.qname, o.bound)
        if k in seen:
            continue
        seen.add(k)
        out.append(o)
    return out


def _param_default(scope: Scope, name: str) -> Optional[cst.BaseExpression]:
    fn = scope.node
    if not isinstance(fn, cst.FunctionDef):
        return None
    for p in (*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params):
        if p.name.value == name:
            return p.default
    return None


def _bind(call: cst.Call, fs: Scope, file: FileRef, scope: Scope, stmt: Optional[Stmt], skip_self: bool):
    """{parameter: (argument, file, scope, stmt)} for a call of function ``fs``; None when ``*args`` /
    ``**kwargs`` hide the binding."""
    fn = fs.node
    if not isinstance(fn, cst.FunctionDef) or any(a.star for a in call.args):
        return None
    params = [p.name.value for p in (*fn.params.posonly_params, *fn.params.params)]
    if fs.class_name is not None and params and (skip_self or params[0] in ("self", "cls")):
        params = params[1:]
    out = {}
    pos = [a for a in call.args if a.keyword is None]
    if len(pos) > len(params):
        return None
    for name, a in zip(params, pos):
        out[name] = (a.value, file, scope, stmt)
    for a in call.args:
        if a.keyword is not None:
            out[a.keyword.value] = (a.value, file, scope, stmt)
    return out


def target_path(target: cst.BaseExpression, name: str) -> Optional[Tuple[int, ...]]:
    """The position of ``name`` inside an unpacking target (``a, (b, c)``): () for the whole target."""
    if dotted(target) == name:
        return ()
    if isinstance(target, (cst.Tuple, cst.List)):
        for i, el in enumerate(target.elements):
            if isinstance(el, cst.StarredElement):
                return None
            sub = target_path(el.value, name)
            if sub is not None:
                return (i,) + sub
    return None


# -- every call of a file ----------------------------------------------------------------------------

_STOP = (cst.Lambda, cst.FunctionDef, cst.ClassDef, cst.IndentedBlock, cst.BaseString, cst.Integer, cst.Float, cst.Name)


def _with_subclasses(classes) -> frozenset:
    out, todo = set(), list(classes)
    while todo:
        c = todo.pop()
        if c not in out:
            out.add(c)
            todo.extend(c.__subclasses__())
    return frozenset(out)


#: The node types of _STOP and their subclasses (BaseString is abstract), for a set lookup by exact type.
_STOP_TYPES = _with_subclasses(_STOP)
def calls_in(node: cst.CSTNode):
    """Calls inside a statement, outermost first, without entering nested defs or lambdas. Reads the
    dataclass fields directly and stops at leaves (names, literals): the hot path of every call index."""
    from trainlint.analysis.walk import _children

    stack = [node]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is cst.Call:
            yield n
        if n is not node and t in _STOP_TYPES:
            continue
        kids = _children(n)
        kids.reverse()
        stack.extend(kids)


def _calls_by_name(file: FileRef) -> Dict[str, List[Tuple[cst.Call, Scope, Stmt]]]:
    """The calls of a file by their callee's last dotted part (see :meth:`World.calls_named`; memoized on
    the file's facts)."""
    facts = file.facts
    index = facts.__dict__.get("_tl_calls_by_name")
    if index is None:
        index = {}
        for call, s, st in file_calls(file):
            n = dotted(call.func)
            if n is None:
                if isinstance(call.func, cst.Call) and dotted(call.func.func) == "super":
                    continue
                if isinstance(call.func, cst.Attribute):  # super().__init__(...), f(x).g(...)
                    index.setdefault(call.func.attr.value, []).append((call, s, st))
                continue
            index.setdefault(n.rsplit(".", 1)[-1], []).append((call, s, st))
        facts.__dict__["_tl_calls_by_name"] = index
    return index


_is_block = type_test(cst.FunctionDef, cst.ClassDef, cst.For, cst.While, cst.If, cst.Try, cst.With)
_has_head = type_test(cst.For, cst.While, cst.If, cst.With)


def file_calls(file: FileRef) -> List[Tuple[cst.Call, Scope, Stmt]]:
    """Every call of a file with its scope and statement (memoized on the file's facts)."""
    facts = file.facts
    cached = getattr(facts, "_tl_calls", None)
    if cached is None:
        cached = []
        for scope in facts.scopes():
            for st in scope.stmts:
                if _is_block(st.node):
                    if _has_head(st.node):
                        if isinstance(st.node, cst.With):
                            heads = [item.item for item in st.node.items]
                        else:
                            head = st.node.iter if isinstance(st.node, cst.For) else getattr(st.node, "test", None)
                            heads = [head] if head is not None else []
                        for head in heads:
                            cached.extend((c, scope, st) for c in calls_in(head))
                    continue
                cached.extend((c, scope, st) for c in calls_in(st.node))
        facts._tl_calls = cached  # type: ignore[attr-defined]
    return cached
