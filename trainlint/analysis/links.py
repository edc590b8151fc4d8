"""What one file takes from the files it imports: its import bindings and which of them it uses.

A program is not the whole package its entry script imports: ``from timm.layers import Mlp`` needs
``Mlp`` (and what ``Mlp``'s file uses), not the forty other modules ``timm/layers/__init__.py`` imports.
The program model (``trainlint.analysis.program``) follows imports by these links. They are plain data
(no syntax tree, no libcst: the cache stores them with a file's facts), computed from a file's syntax tree
in one place, ``trainlint.analysis.facts.FileFacts.links``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

#: The name asked of a module used as a value (``getattr(models, arch)``, ``models.__dict__``): all of it.
EVERYTHING = "*"


class Links:
    """The import bindings of one file and the names it reads.

    - ``froms``: ``from module import name as local``: (local, module, name), in source order (relative
      modules keep their dots: ``("Mlp", ".mlp", "Mlp")``, ``("losses", ".", "losses")``);
    - ``modules``: ``import a.b.c`` / ``import a.b as k``: (local, module, sub), where ``sub`` is the
      dotted path from the local name to the module (``("a", "a.b.c", "b.c")``; ``("k", "a.b", "")``);
    - ``stars``: the modules of ``from module import *``;
    - ``used``: the bound names (of ``froms`` and ``modules``) that the file reads outside its import
      statements (a name in a comment or a string does not count; an attribute of the same spelling
      does: a superset is safe);
    - ``attrs``: for each used local, the dotted chains read through it, without the local and cut after
      three attributes (``utils.set_seed(0)`` gives ``set_seed``; ``""``: the name itself is read, as a
      value: a module used so is asked for everything it has);
    - ``free``: with a star import only, the names the file reads but neither binds nor defines (they
      may come through the star);
    - ``defined``: the names the module level defines (classes, functions, assignments).
    """

    __slots__ = ("froms", "modules", "stars", "used", "attrs", "free", "defined")

    def __init__(self, froms: Sequence[Tuple[str, str, str]] = (), modules: Sequence[Tuple[str, str, str]] = (),
                 stars: Sequence[str] = (), used: Sequence[str] = (), attrs: Optional[Dict[str, Sequence[str]]] = None,
                 free: Sequence[str] = (), defined: Sequence[str] = ()) -> None:
        self.froms: List[Tuple[str, str, str]] = [tuple(x) for x in froms]  # type: ignore[misc]
        self.modules: List[Tuple[str, str, str]] = [tuple(x) for x in modules]  # type: ignore[misc]
        self.stars: List[str] = list(stars)
        self.used = frozenset(used)
        self.attrs: Dict[str, List[str]] = {k: sorted(v) for k, v in (attrs or {}).items()}
        self.free: List[str] = sorted(free)
        self.defined = frozenset(defined)

    def record(self) -> Dict[str, object]:
        """Plain data for the cache (sorted where order does not matter: the same file, the same record)."""
        return {"f": [list(x) for x in self.froms], "m": [list(x) for x in self.modules], "s": list(self.stars),
                "u": sorted(self.used), "a": {k: list(self.attrs[k]) for k in sorted(self.attrs)},
                "x": list(self.free), "d": sorted(self.defined)}

    @classmethod
    def from_record(cls, data: Dict[str, object]) -> "Links":
        """The links of a cache record (a KeyError/TypeError/ValueError on a record of another shape)."""
        froms = [(str(a), str(b), str(c)) for a, b, c in data["f"]]  # type: ignore[union-attr]
        modules = [(str(a), str(b), str(c)) for a, b, c in data["m"]]  # type: ignore[union-attr]
        attrs = data["a"]
        if not isinstance(attrs, dict):
            raise TypeError("attrs")
        return cls(froms, modules, [str(s) for s in data["s"]], [str(u) for u in data["u"]],  # type: ignore[union-attr]
                   {str(k): [str(t) for t in v] for k, v in attrs.items()},
                   [str(x) for x in data["x"]], [str(d) for d in data["d"]])  # type: ignore[union-attr]
