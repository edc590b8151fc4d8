"""`trainlint server`, driven by a real LSP client (pytest-lsp) over stdio."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

pytest_lsp = pytest.importorskip("pytest_lsp")
from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

UNSHUFFLED = textwrap.dedent(
    """\
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    loader = DataLoader(train_ds, batch_size=32)
    for epoch in range(3):
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
    """
)

MODEL = textwrap.dedent(
    """\
    import torch.nn as nn


    def make_model():
        return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    """
)

TRAIN = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn
    from model import make_model

    torch.manual_seed(0)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(3):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
    """
)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "trainlint", "server"]))
async def client(lsp_client: LanguageClient, request):
    root = request.getfixturevalue("tmp_path")
    (root / "pyproject.toml").write_text('[tool.trainlint]\nignore = ["TL301"]\n')
    lsp_client.root = root
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="ws")]))
    yield
    await lsp_client.shutdown_session()


async def _diagnostics(client: LanguageClient, uri: str, want, timeout: float = 60.0):
    """Wait until the diagnostics published for ``uri`` satisfy ``want``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        diags = client.diagnostics.get(uri)
        if diags is not None and want(diags):
            return diags
        if loop.time() > end:
            raise AssertionError(f"no matching diagnostics for {uri}: {diags}")
        await asyncio.sleep(0.1)


def _open(client: LanguageClient, path: Path, text: str, version: int = 1) -> str:
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))
    return uri


@pytest.mark.asyncio
async def test_diagnostics_arrive_change_after_an_edit_and_a_code_action_fixes(client: LanguageClient):
    uri = _open(client, client.root / "train.py", UNSHUFFLED)
    diags = await _diagnostics(client, uri, lambda d: any(x.code == "TL304" for x in d))
    d = next(x for x in diags if x.code == "TL304")
    assert d.source == "trainlint" and d.range.start.line == 4
    assert d.code_description.href.endswith("TL304.md") or "TL304" in d.code_description.href
    assert not any(x.code == "TL301" for x in diags)  # the workspace's [tool.trainlint] ignore

    # hover on the diagnostic: the rule's summary and a link
    hover = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=4, character=12)))
    assert hover is not None and "TL304" in hover.contents.value and "http" in hover.contents.value

    # code actions: the fix, and a noqa
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=d.range,
        context=types.CodeActionContext(diagnostics=[d])))
    titles = [a.title for a in actions]
    assert any(t.startswith("Fix TL304") for t in titles) and any("noqa: TL304" in t for t in titles), titles
    fix = next(a for a in actions if a.title.startswith("Fix TL304"))
    (edit,) = fix.edit.changes[uri]
    lines = UNSHUFFLED.splitlines(keepends=True)
    start = sum(len(l) for l in lines[: edit.range.start.line]) + edit.range.start.character
    end = sum(len(l) for l in lines[: edit.range.end.line]) + edit.range.end.character
    fixed = UNSHUFFLED[:start] + edit.new_text + UNSHUFFLED[end:]
    assert "DataLoader(train_ds, batch_size=32, shuffle=True)" in fixed

    # the editor applies the edit: the diagnostic goes away
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)]))
    await _diagnostics(client, uri, lambda d: not any(x.code == "TL304" for x in d))

    # an edit that brings a bug back: the diagnostic returns (after the debounce)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=UNSHUFFLED)]))
    await _diagnostics(client, uri, lambda d: any(x.code == "TL304" for x in d))


@pytest.mark.asyncio
async def test_a_program_spanning_two_files_reports_the_cross_file_finding(client: LanguageClient):
    (client.root / "train.py").write_text(TRAIN)  # on disk, not open: read from disk as context
    uri = _open(client, client.root / "model.py", MODEL)
    diags = await _diagnostics(client, uri, lambda d: any(x.code == "TL103" for x in d))
    d = next(x for x in diags if x.code == "TL103")
    assert d.range.start.line == 4
    assert d.related_information and d.related_information[0].location.uri.endswith("train.py")

    # the open buffer takes precedence over the file on disk: drop the softmax in the editor only
    fixed = MODEL.replace(", nn.Softmax(dim=1)", "")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=fixed)]))
    await _diagnostics(client, uri, lambda d: not any(x.code == "TL103" for x in d))


def test_readme_editor_snippets_and_problem_matcher(tmp_path):
    """The README's VS Code settings and tasks are valid JSON, and the task's problem matcher reads every
    line of `--output-format concise`."""
    import json
    import re

    from click.testing import CliRunner

    from trainlint.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Editors: `trainlint server`", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    settings, tasks = (json.loads(b) for b in blocks)
    assert settings["glspc.server.command"] == "trainlint" and settings["glspc.server.commandArguments"] == ["server"]
    assert "vim.lsp.start" in section and 'cmd = { "trainlint", "server" }' in section
    assert '[language-server.trainlint]' in section
    matcher = tasks["tasks"][0]["problemMatcher"]
    pattern = re.compile(matcher["pattern"]["regexp"])
    (tmp_path / "train.py").write_text(UNSHUFFLED.replace("torch.manual_seed(0)\n", ""))
    r = CliRunner().invoke(main, ["check", "--isolated", "--output-format", "concise", str(tmp_path)])
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 2
    for line in lines:
        m = pattern.match(line)
        assert m and m.group(matcher["pattern"]["code"]).startswith("TL") and int(m.group(2)) >= 1, line


def test_help_lists_the_new_commands_and_options():
    from click.testing import CliRunner

    from trainlint.cli import main

    top = CliRunner().invoke(main, ["--help"]).output
    assert "server" in top
    check = CliRunner().invoke(main, ["check", "--help"]).output
    for opt in ("--fix", "--unsafe-fixes", "--diff", "--fix-only", "--exit-non-zero-on-fix", "--add-noqa"):
        assert opt in check, opt


@pytest.mark.asyncio
async def test_rapid_edits_end_on_the_last_version(client: LanguageClient):
    """A burst of edits is debounced and a lint of an older version is never published over a newer one:
    after the burst settles, the diagnostics are those of the last text, and stay so."""
    clean = UNSHUFFLED.replace("batch_size=32)", "batch_size=32, shuffle=True)")
    uri = _open(client, client.root / "train.py", clean)
    await _diagnostics(client, uri, lambda d: not any(x.code == "TL304" for x in d))
    for version in range(2, 9):  # buggy, clean, buggy, ... ending clean
        text = UNSHUFFLED if version % 2 == 0 else clean
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=9),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=clean)]))
    await asyncio.sleep(3)
    assert not any(x.code == "TL304" for x in client.diagnostics[uri])
