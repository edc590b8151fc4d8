"""``trainlint server``: a language server over stdio (pygls), for any editor with an LSP client.

- Diagnostics on open, change (debounced) and save, computed with the program context: the document is
  linted together with the files of its folder (and of the workspace root) that import it, and the files it
  imports are read from disk, except the documents open in the editor, whose buffers take precedence.
- Code actions: apply a finding's fix (unsafe fixes say so in their title), and add `# noqa: TLxxx`.
- Hover on a diagnostic: the rule's summary and a link to its page.
- The configuration is the one the command line would use for that file (``[tool.trainlint]`` in the
  nearest pyproject.toml / trainlint.toml), so the workspace's settings are honoured.
- A slow lint never blocks the editor: each change restarts a short debounce timer, the lint runs in a
  worker thread, and a result for an older version of the document is dropped (stale work is cancelled).

pygls is an optional dependency: ``pip install 'trainlint[lsp]'``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Dict, List, Optional
from urllib.parse import unquote, urlparse

from trainlint import __version__

DEBOUNCE_S = 0.25
#: At most this many other files are linted with a document to find the programs it belongs to.
MAX_CONTEXT_FILES = 64


def uri_to_path(uri: str) -> Optional[str]:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    path = unquote(parsed.path)
    if os.name == "nt" and path.startswith("/") and len(path) > 2 and path[2] == ":":
        path = path[1:]
    return path


def path_to_uri(path: str) -> str:
    from pathlib import Path

    return Path(os.path.abspath(path)).as_uri()


def _context_files(path: str, root: Optional[str]) -> List[str]:
    """Other files that may make ``path`` part of a program: Python files of its folder and of the
    workspace root that mention its module name (an entry script importing it)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    out: List[str] = []
    folders = [os.path.dirname(path)]
    if root and os.path.abspath(root) not in folders:
        folders.append(os.path.abspath(root))
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            full = os.path.join(folder, name)
            if not name.endswith(".py") or os.path.realpath(full) == os.path.realpath(path) or not os.path.isfile(full):
                continue
            try:
                with open(full, "r", encoding="utf-8", errors="replace") as fh:
                    text = fh.read(200_000)
            except OSError:
                continue
            if stem in text:
                out.append(full)
            if len(out) >= MAX_CONTEXT_FILES:
                return out
    return out


def lint_document(path: Optional[str], text: str, overlay: Dict[str, str], root: Optional[str] = None):
    """Findings of one document (its buffer ``text``) and the run's rule infos, with program context."""
    from trainlint.config import ConfigError, resolve_config
    from trainlint.engine import Options, lint_paths, lint_text
    from trainlint.rules import registry

    all_codes = list(registry())
    try:
        config = resolve_config(None, [path] if path else [root or os.getcwd()], all_codes)
    except ConfigError as exc:
        return [], str(exc)
    enabled = config.enabled_codes(all_codes)
    options = Options(config=config, enabled=enabled,
                      report_unused_suppressions=config.report_unused_suppressions or "TL002" in enabled,
                      min_severity=config.min_severity)
    if path is None or not os.path.isfile(path):
        report, _ = lint_text(text, path or "untitled.py", options)
        return report.findings, None
    real = os.path.realpath(path)
    options.overlay = dict(overlay)
    options.overlay[real] = text
    report, _ = lint_paths([path, *_context_files(path, root)], options)
    mine = [f for f in report.findings if report.real_paths.get(f.path) == real]
    errors = [e.message for e in report.errors if report.real_paths.get(e.path, e.path) in (real, path)]
    return mine, (errors[0] if errors else None)


def _lsp_types():
    from lsprotocol import types

    return types


def build_server():
    """The pygls server (imported lazily: the linter itself never needs pygls)."""
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    class TrainlintServer(LanguageServer):
        def __init__(self) -> None:
            super().__init__("trainlint", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
            self.pending: Dict[str, asyncio.Task] = {}
            self.findings: Dict[str, List[Any]] = {}  # uri -> findings of the last published lint
            self.lock = threading.Lock()

    server = TrainlintServer()

    def root() -> Optional[str]:
        try:
            return server.workspace.root_path
        except Exception:
            return None

    def overlay() -> Dict[str, str]:
        out = {}
        for uri, doc in list(server.workspace.text_documents.items()):
            p = uri_to_path(uri)
            if p and p.endswith(".py"):
                out[os.path.realpath(p)] = doc.source
        return out

    def to_range(doc, span) -> "types.Range":
        lines = doc.lines
        codec = doc.position_codec

        def pos(line: int, col: int) -> types.Position:
            ln = max(line - 1, 0)
            if ln >= len(lines):
                return types.Position(line=len(lines), character=0)
            return codec.position_to_client_units(lines, types.Position(line=ln, character=max(col - 1, 0)))

        return types.Range(start=pos(span.line, span.column), end=pos(span.end_line, span.end_column))

    severity = {3: types.DiagnosticSeverity.Error, 2: types.DiagnosticSeverity.Warning, 1: types.DiagnosticSeverity.Information}

    def diagnostic(doc, f) -> "types.Diagnostic":
        from trainlint import docs_url

        related = []
        for r in f.related:
            rpath = r.path
            if not os.path.isabs(rpath):
                rpath = os.path.abspath(rpath)
            rng = types.Range(start=types.Position(line=r.span.line - 1, character=r.span.column - 1),
                              end=types.Position(line=r.span.end_line - 1, character=r.span.end_column - 1))
            related.append(types.DiagnosticRelatedInformation(location=types.Location(uri=path_to_uri(rpath), range=rng), message=r.message))
        message = f.message + (f"\nhelp: {f.hint}" if f.hint else "")
        return types.Diagnostic(
            range=to_range(doc, f.span), message=message, severity=severity[int(f.severity)], code=f.code,
            code_description=types.CodeDescription(href=docs_url(f.code)), source="trainlint",
            related_information=related or None,
            data={"fix": f.fix.to_dict() if f.fix else None, "line": f.span.line},
        )

    async def lint_and_publish(uri: str, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            doc = server.workspace.get_text_document(uri)
            version = doc.version
            path = uri_to_path(uri)
            text = doc.source
            loop = asyncio.get_running_loop()
            findings, error = await loop.run_in_executor(None, _locked_lint, path, text, overlay(), root())
            doc = server.workspace.get_text_document(uri)
            if doc.version != version or doc.source != text:
                return  # stale: a newer change has its own lint coming
            server.findings[uri] = findings
            diags = [diagnostic(doc, f) for f in findings]
            server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=version))
            if error:
                server.window_log_message(types.LogMessageParams(type=types.MessageType.Warning, message=f"trainlint: {error}"))
        except asyncio.CancelledError:
            pass

    def _locked_lint(path, text, ov, rt):
        with server.lock:  # the engine keeps per-run caches: one lint at a time
            return lint_document(path, text, ov, rt)

    def schedule(uri: str, delay: float) -> None:
        if not uri.endswith(".py") and not uri.startswith("untitled:"):
            return
        old = server.pending.pop(uri, None)
        if old is not None and not old.done():
            old.cancel()
        server.pending[uri] = asyncio.ensure_future(lint_and_publish(uri, delay))

    def others(uri: str) -> None:
        # other open documents may belong to the same program: refresh them after an edit
        for other in list(server.workspace.text_documents):
            if other != uri and other in server.findings:
                schedule(other, DEBOUNCE_S * 2)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(ls, params: types.DidOpenTextDocumentParams) -> None:
        schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls, params: types.DidChangeTextDocumentParams) -> None:
        schedule(params.text_document.uri, DEBOUNCE_S)
        others(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls, params: types.DidSaveTextDocumentParams) -> None:
        schedule(params.text_document.uri, 0)
        others(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(ls, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        task = server.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        server.findings.pop(uri, None)
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix], resolve_provider=False))
    def code_action(ls, params: types.CodeActionParams) -> List[types.CodeAction]:
        from trainlint.fixes import noqa_fix

        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        actions: List[types.CodeAction] = []
        for d in params.context.diagnostics:
            if d.source != "trainlint" or not isinstance(d.code, str):
                continue
            data = d.data if isinstance(d.data, dict) else {}
            fix = data.get("fix")
            if fix and fix.get("edits"):
                edits = []
                for e in fix["edits"]:
                    from trainlint.findings import Span

                    span = Span(e["location"]["row"], e["location"]["column"], e["end_location"]["row"], e["end_location"]["column"])
                    edits.append(types.TextEdit(range=to_range(doc, span), new_text=e["content"]))
                unsafe = fix.get("applicability") == "unsafe"
                title = f"Fix {d.code}: {fix['message']}" + (" (unsafe: changes the training)" if unsafe else "")
                actions.append(types.CodeAction(title=title, kind=types.CodeActionKind.QuickFix, diagnostics=[d],
                                                is_preferred=not unsafe,
                                                edit=types.WorkspaceEdit(changes={uri: edits})))
            line = data.get("line") or d.range.start.line + 1
            nq = noqa_fix(doc.source, int(line), [d.code])
            if nq is not None:
                e = nq.edits[0]
                actions.append(types.CodeAction(
                    title=f"Disable {d.code} for this line (# noqa: {d.code})", kind=types.CodeActionKind.QuickFix, diagnostics=[d],
                    edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=to_range(doc, e.span), new_text=e.content)]})))
        return actions

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls, params: types.HoverParams) -> Optional[types.Hover]:
        from trainlint import docs_url
        from trainlint.rules import registry

        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        pos = params.position
        parts = []
        for f in server.findings.get(uri, []):
            rng = to_range(doc, f.span)
            after_start = (pos.line, pos.character) >= (rng.start.line, rng.start.character)
            before_end = (pos.line, pos.character) <= (rng.end.line, rng.end.character)
            if after_start and before_end:
                cls = registry().get(f.code)
                summary = cls.summary if cls is not None else ""
                parts.append(f"**{f.code}** `{f.name}` ({f.severity.label}): {summary}\n\n"
                             f"[{f.code} documentation]({docs_url(f.code)})")
        if not parts:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n---\n\n".join(parts)))

    return server


def serve() -> None:
    build_server().start_io()
