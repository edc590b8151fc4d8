"""The rules/ catalogue is generated from the rule classes; this test fails when it is stale."""

from pathlib import Path

from click.testing import CliRunner

from trainlint.cli import main
from trainlint.docs import expected_files
from trainlint.rules import registry

CATALOGUE = Path(__file__).resolve().parents[1] / "rules"


def test_catalogue_is_fresh():
    wanted = expected_files()
    stale = []
    for name, text in wanted.items():
        path = CATALOGUE / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    extra = sorted(p.name for p in CATALOGUE.glob("TL*.md") if p.name not in wanted)
    assert not stale and not extra, (
        f"rules/ is stale (changed: {stale}, extra: {extra}); regenerate with `python -m trainlint.docs`"
    )


def test_rule_command_prints_the_catalogue_page():
    result = CliRunner().invoke(main, ["rule", "TL202"])
    assert result.exit_code == 0
    assert result.output == (CATALOGUE / "TL202.md").read_text(encoding="utf-8")


def test_rule_all_lists_every_rule():
    result = CliRunner().invoke(main, ["rule", "--all"])
    assert result.exit_code == 0
    for code, cls in registry().items():
        assert code in result.output and cls.name in result.output


def test_rule_all_json_and_markdown():
    import json

    out = CliRunner().invoke(main, ["rule", "--all", "--format", "json"])
    data = json.loads(out.output)
    assert {d["code"] for d in data} == set(registry())
    assert all({"code", "name", "severity", "summary", "explanation"} <= set(d) for d in data)
    md = CliRunner().invoke(main, ["rule", "--all", "--format", "markdown"])
    assert md.output == (CATALOGUE / "README.md").read_text(encoding="utf-8")


def test_rule_by_name_and_unknown_code():
    runner = CliRunner()
    assert runner.invoke(main, ["rule", "loss-clipped-not-gradients"]).exit_code == 0
    bad = runner.invoke(main, ["rule", "TL2O2"])
    assert bad.exit_code == 2
    assert "unknown rule" in (bad.stderr if hasattr(bad, "stderr") else bad.output)


def test_probe_codes_match_their_rule_classes():
    from trainlint import docs_url
    from trainlint.rules.tl5xx_runtime_probes import RuntimeProbeRule
    from trainlint.runtime import PROBE_CODES, PROBE_NAMES, probe_code_url

    rules = {code: cls for code, cls in registry().items() if issubclass(cls, RuntimeProbeRule)}
    assert set(rules) == set(PROBE_CODES)
    for code, (name, probe, severity, summary) in PROBE_CODES.items():
        cls = rules[code]
        assert (cls.name, cls.probe, cls.severity.label, cls.summary) == (name, probe, severity, summary)
        assert probe in PROBE_NAMES
        assert probe_code_url(code) == docs_url(code)
        assert "No fix: found at runtime" in cls.doc()
        assert (CATALOGUE / f"{code}.md").exists()


def test_rule_command_prints_a_probe_code_page():
    result = CliRunner().invoke(main, ["rule", "TL503"])
    assert result.exit_code == 0
    assert "batch-mixing" in result.output and "Found only at runtime" in result.output
