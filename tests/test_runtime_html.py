"""The HTML report of a run: self-contained, a plot for every recorded series, values on the page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from trainlint.runtime.html import plot_svg, plots_of, render

RESULT = {
    "probes": [
        {"name": "lr-trajectory", "verdict": "problem", "reason": "decays to 1e-10 of its start <early>",
         "metrics": {"final_lr": 1e-11, "steps": 300}, "series": {"lr": [0.1 * 0.1 ** (i // 30) for i in range(300)]}},
        {"name": "output-range", "verdict": "problem", "reason": "49% of targets < 0",
         "metrics": {"share_below": 0.49}, "series": {"targets_hist": [1, 4, 9, 4, 1], "outputs_hist": [20, 0, 0, 0, 0, 0, 0, 0]}},
        {"name": "determinism", "verdict": "ok", "reason": "same losses", "metrics": {},
         "series": {"run0": [2.3, 2.1, 1.9], "run1": [2.3, 2.1, 1.9]}},
        {"name": "augmentation-active", "verdict": "skipped", "reason": "no eval loader", "metrics": {}, "series": {}},
        {"name": "loss-clamp-zero-grad", "verdict": "ok", "reason": "one value", "metrics": {}, "series": {"loss": [float("nan"), 3.0]}},
    ],
    "findings": [
        {"code": "TL101", "name": "activation-before-regression-output", "path": "train.py", "line": 16, "column": 5,
         "message": "ends with nn.ReLU & <friends>", "runtime": {"status": "confirmed", "probe": "output-range",
                                                            "evidence": {"summary": "49% of targets < 0"}}},
        {"code": "TL301", "name": "missing-seed", "path": "nb.ipynb", "cell": 3, "line": 2, "column": 1,
         "message": "never seeds torch", "runtime": {"status": "not-confirmed", "probe": "determinism"}},
    ],
}


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.attrs = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))


def test_every_series_gets_a_plot_and_the_page_is_self_contained():
    page = render(RESULT, ["python", "train.py"], 4.2)
    p = _Collect()
    p.feed(page)
    assert "script" not in p.tags and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    expected = plots_of(RESULT["probes"])
    # output-range has series of different lengths: one plot each; the skipped probe has none.
    assert [t for _, t, _ in expected] == [
        "lr-trajectory", "output-range: targets_hist", "output-range: outputs_hist", "determinism", "loss-clamp-zero-grad"]
    assert p.tags.count("svg") == len(expected)
    drawn = [a.get("data-series") for tag, a in p.attrs if tag in ("polyline", "circle")]
    assert drawn == ["lr", "targets_hist", "outputs_hist", "run0", "run1", "loss"]


def test_points_stay_inside_the_plot_and_nan_is_skipped():
    svg = plot_svg("lr", {"lr": [1.0, float("inf"), 0.5, 1e-9]})
    pts = re.search(r'points="([^"]+)"', svg).group(1).split()
    assert len(pts) == 3
    for pt in pts:
        x, y = map(float, pt.split(","))
        assert 0 <= x <= 540 and 0 <= y <= 220
    assert "no finite values" in plot_svg("empty", {"a": [float("nan")]})


def test_values_are_escaped_and_statuses_shown():
    page = render(RESULT, excerpts=[[(15, "x = 1"), (16, "y = <relu>")], []])
    assert "16 | y = &lt;relu&gt;" in page
    assert "&lt;friends&gt;" in page and "<friends>" not in page
    assert "&lt;early&gt;" in page
    assert 'class="confirmed">confirmed by output-range' in page
    assert "nb.ipynb:cell 3:2:1" in page
    assert "2 problem(s)" in page and "1 confirmed at runtime" in page


def test_values_over_three_decades_are_plotted_on_a_log_scale():
    svg = plot_svg("lr", {"lr": [0.1, 0.01, 1e-3, 1e-4, 1e-5]})
    assert "log scale" in svg
    ys = [float(pt.split(",")[1]) for pt in re.search(r'points="([^"]+)"', svg).group(1).split()]
    steps = [b - a for a, b in zip(ys, ys[1:])]
    assert max(steps) - min(steps) < 0.5  # equal decades, equal steps
    assert "log scale" not in plot_svg("loss", {"loss": [2.3, 1.2, 0.4]})


def test_run_report_dir_writes_the_json_and_the_html_page(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "trainlint", "run", "--report", str(out), "--probe", "lr-trajectory",
         "--", "python", "fixtures/runtime/steplr_per_batch.py"],
        cwd=root, capture_output=True, text=True, timeout=240, env=dict(os.environ, NO_COLOR="1"),
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads((out / "trainlint-run.json").read_text(encoding="utf-8"))
    page = (out / "report.html").read_text(encoding="utf-8")
    (lr,) = [p for p in data["probes"] if p["name"] == "lr-trajectory"]
    assert lr["verdict"] == "problem" and lr["series"]["lr"]
    p = _Collect()
    p.feed(page)
    assert [a.get("data-series") for tag, a in p.attrs if tag == "polyline"] == ["lr"]
    assert "log scale" in page  # StepLR stepped per batch decays over many decades
    assert "TL201" in page and "confirmed by lr-trajectory" in page
    # the finding's code excerpt, with its line marked
    assert '<pre class="excerpt">' in page and 'class="hit"' in page and "scheduler.step()" in page
