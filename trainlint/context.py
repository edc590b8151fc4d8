"""What a rule sees of one file: its text, its libcst tree, its facts, and positions on demand."""

from __future__ import annotations

from typing import Mapping, Optional

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from trainlint.analysis.facts import FileFacts, extract
from trainlint.findings import Span
from trainlint.source import SourceFile


class FileContext:
    def __init__(self, source: SourceFile, module: cst.Module) -> None:
        self.source = source
        self.module = module
        self._facts: Optional[FileFacts] = None
        self._positions: Optional[Mapping[cst.CSTNode, CodeRange]] = None

    @property
    def path(self) -> str:
        return self.source.path

    @property
    def facts(self) -> FileFacts:
        if self._facts is None:
            self._facts = extract(self.module)
        return self._facts

    def span(self, node: cst.CSTNode) -> Span:
        """1-based span of a node. Positions are computed once per file, and only for files where a
        rule reports something (most files never pay for them)."""
        if self._positions is None:
            try:
                self._positions = _positions(self.module)
            except RecursionError:
                raise
            except Exception as exc:
                # libcst computes positions recursively; on a tree too deep for that, its clean-up code
                # looks up positions never recorded and raises a KeyError holding a node: it is the
                # RecursionError underneath that says what happened
                cause = exc.__context__
                while cause is not None and not isinstance(cause, RecursionError):
                    cause = cause.__context__
                if cause is not None:
                    raise RecursionError("positions of a tree too deep to compute") from None
                raise
        rng = self._positions.get(node)
        if rng is None:  # (a KeyError would carry the node: its repr is the whole subtree)
            raise LookupError(f"no position for a {type(node).__name__} node that is not in this file's tree")
        return Span(rng.start.line, rng.start.column + 1, rng.end.line, rng.end.column + 1)

    def head_span(self, node: cst.CSTNode) -> Span:
        """The first line of a compound statement (``for epoch in range(n):`` up to the end of its iterable,
        ``while ...``, ``if ...``), a function's name, or the node itself: where a finding about a whole
        loop goes, since a ``# noqa`` anywhere inside the loop would otherwise suppress it."""
        if isinstance(node, cst.FunctionDef):
            return self.span(node.name)
        head = {cst.For: "iter", cst.While: "test", cst.If: "test"}.get(type(node))
        if head is None:
            return self.span(node)
        start, end = self.span(node), self.span(getattr(node, head))
        return Span(start.line, start.column, end.end_line, end.end_column)

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def where(self, line: int, home: Optional["FileContext"] = None, display: Optional[str] = None) -> str:
        """How a message names ``line`` of this file: ``line 12``, or ``cell 5, line 3`` in a notebook
        (never a line of the joined script); prefixed with the file (``display``, else its path) when
        the message is about another file ``home`` (``engine/train.py:12``, ``nb.ipynb, cell 5, line 3``)."""
        cells = self.source.cells
        same = home is None or home is self
        name = display or self.path
        if cells is not None:
            return cells.describe(line) if same else f"{name}, {cells.describe(line)}"
        return f"line {line}" if same else f"{name}:{line}"


def _positions(module: cst.Module) -> Mapping[cst.CSTNode, CodeRange]:
    """libcst's positions of every node of ``module``. ``MetadataWrapper.resolve`` also walks the whole
    tree once with an empty batch of visitors before it computes them (as much time again as the
    positions themselves): the provider is asked directly when this libcst has that entry point."""
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    gen = getattr(PositionProvider, "_gen", None)
    if gen is None:  # pragma: no cover - a libcst without it: the public way
        return wrapper.resolve(PositionProvider)
    return gen(PositionProvider(), wrapper)

