"""The HTML report of a ``trainlint run``: one self-contained page (inline CSS and SVG, no script, no
network) with the probes' verdicts, the static findings and their runtime status, and a plot for every
series a probe recorded (loss curves, the learning-rate trajectory, output/target histograms...).

Standard library only: the report is written by the runner, which never imports torch.
"""

from __future__ import annotations

import html
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

WIDTH, HEIGHT = 540, 220
PAD_L, PAD_R, PAD_T, PAD_B = 66, 12, 14, 28
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
VERDICT_CLASS = {"ok": "ok", "problem": "problem", "skipped": "skipped"}


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _finite(values: Iterable[Any]) -> List[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


LEGEND_ROW = 14


def plot_svg(title: str, series: Dict[str, Sequence[Any]],
             thresholds: Sequence[Tuple[float, str]] = ()) -> str:
    """One line chart (several series share the axes). Non-finite values are skipped; a series of one
    value is drawn as a dot. ``thresholds``: (value, label) drawn as dashed horizontal lines (the line a
    probe judged its verdict by). The legend sits below the axes, never over the data. Returns an ``<svg>``
    element with a ``data-series`` attribute per line and ``data-threshold`` per threshold."""
    clean = {name: _finite(vals) for name, vals in series.items()}
    clean = {k: v for k, v in clean.items() if v}
    marks = [(float(v), str(label)) for v, label in thresholds if v is not None and math.isfinite(float(v))]
    legend = len(clean) + len(marks)
    height = HEIGHT + LEGEND_ROW * legend
    parts = [
        f'<svg class="plot" role="img" aria-label="{html.escape(title)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<title>{html.escape(title)}</title>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>',
    ]
    if not clean:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#888">no finite values</text></svg>')
        return "".join(parts)
    lo = min(min(v) for v in clean.values())
    hi = max(max(v) for v in clean.values())
    for v, _ in marks:  # a threshold is always inside the axes
        lo, hi = min(lo, v), max(hi, v)
    # A learning rate decayed 10x three times, a loss that explodes: over three decades, plot log10.
    log = lo > 0 and hi / lo > 1e3
    if log:
        clean = {k: [math.log10(x) for x in v] for k, v in clean.items()}
        marks = [(math.log10(v), label) for v, label in marks]
        lo, hi = math.log10(lo), math.log10(hi)
    if hi == lo:
        lo, hi = lo - (abs(lo) or 1) * 0.5, hi + (abs(hi) or 1) * 0.5
    n = max(len(v) for v in clean.values())
    x0, x1 = PAD_L, WIDTH - PAD_R
    y0, y1 = HEIGHT - PAD_B, PAD_T

    def px(i: int) -> float:
        return x0 + (x1 - x0) * (i / (n - 1) if n > 1 else 0.5)

    def py(v: float) -> float:
        return y0 + (y1 - y0) * (v - lo) / (hi - lo)

    # axes, ticks
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#444"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#444"/>')
    for frac in (0.0, 0.5, 1.0):
        v = lo + (hi - lo) * frac
        y = py(v)
        parts.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        label = _fmt(10 ** v) if log else _fmt(v)
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#444">{label}</text>')
    parts.append(f'<text x="{x0}" y="{HEIGHT - 8}" font-size="11" fill="#444">0</text>')
    if log:
        parts.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" fill="#888">log scale</text>')
    parts.append(f'<text x="{x1}" y="{HEIGHT - 8}" text-anchor="end" font-size="11" fill="#444">{n - 1}</text>')
    row = 0
    for k, (name, vals) in enumerate(clean.items()):
        color = COLORS[k % len(COLORS)]
        if len(vals) == 1:
            parts.append(f'<circle data-series="{html.escape(name)}" cx="{px(0):.1f}" cy="{py(vals[0]):.1f}" r="3" fill="{color}"/>')
        else:
            pts = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(vals))
            parts.append(f'<polyline data-series="{html.escape(name)}" fill="none" stroke="{color}" stroke-width="1.8" points="{pts}"/>')
        ly = HEIGHT + LEGEND_ROW * row
        parts.append(f'<line x1="{x0}" y1="{ly - 4}" x2="{x0 + 18}" y2="{ly - 4}" stroke="{color}" stroke-width="2"/>'
                     f'<text class="legend" x="{x0 + 24}" y="{ly}" font-size="11" fill="{color}">{html.escape(name)}</text>')
        row += 1
    for v, label in marks:
        y = py(v)
        parts.append(f'<line data-threshold="{html.escape(label)}" x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" '
                     f'stroke="#cf222e" stroke-dasharray="5,4" stroke-width="1.2"/>')
        ly = HEIGHT + LEGEND_ROW * row
        parts.append(f'<line x1="{x0}" y1="{ly - 4}" x2="{x0 + 18}" y2="{ly - 4}" stroke="#cf222e" stroke-dasharray="5,4"/>'
                     f'<text class="legend" x="{x0 + 24}" y="{ly}" font-size="11" fill="#cf222e">{html.escape(label)}</text>')
        row += 1
    parts.append("</svg>")
    return "".join(parts)


def bar_svg(title: str, labels: Sequence[str], values: Sequence[Any],
            thresholds: Sequence[Tuple[float, str]] = ()) -> str:
    """A labelled horizontal bar chart (one bar per layer), with dashed threshold lines."""
    rows = [(str(l), float(v)) for l, v in zip(labels, values) if isinstance(v, (int, float)) and math.isfinite(float(v))]
    marks = [(float(v), str(label)) for v, label in thresholds if v is not None and math.isfinite(float(v))]
    bar_h, lab_w = 16, 170
    height = PAD_T + bar_h * max(1, len(rows)) + 30 + LEGEND_ROW * len(marks)
    parts = [f'<svg class="plot bars" role="img" aria-label="{html.escape(title)}" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">', f'<title>{html.escape(title)}</title>',
             f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>']
    if not rows:
        parts.append(f'<text x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle" fill="#888">no finite values</text></svg>')
        return "".join(parts)
    vals = [v for _, v in rows] + [v for v, _ in marks]
    lo, hi = min(0.0, min(vals)), max(vals)
    log = min(vals) > 0 and hi / min(vals) > 1e3
    f = (lambda v: math.log10(v)) if log else (lambda v: v)  # noqa: E731
    if log:
        lo = math.log10(min(vals))
    hi_f = f(hi) if hi > 0 or not log else hi
    if hi_f == lo:
        hi_f = lo + 1.0
    x0, x1 = lab_w, WIDTH - PAD_R

    def px(v: float) -> float:
        return x0 + (x1 - x0) * (f(v) - lo) / (hi_f - lo)

    for k, (label, v) in enumerate(rows):
        y = PAD_T + k * bar_h
        short = label if len(label) <= 26 else "…" + label[-25:]
        parts.append(f'<text x="{x0 - 6}" y="{y + 12}" text-anchor="end" font-size="11" fill="#444">{html.escape(short)}</text>')
        parts.append(f'<rect data-series="{html.escape(label)}" x="{x0}" y="{y + 2}" width="{max(1.0, px(v) - x0):.1f}" '
                     f'height="{bar_h - 4}" fill="{COLORS[0]}"/>')
        parts.append(f'<text x="{min(x1 - 2, px(v) + 4):.1f}" y="{y + 12}" font-size="10" fill="#222">{_fmt(v)}</text>')
    y_end = PAD_T + len(rows) * bar_h
    parts.append(f'<line x1="{x0}" y1="{PAD_T}" x2="{x0}" y2="{y_end}" stroke="#444"/>')
    parts.append(f'<text x="{x0}" y="{y_end + 14}" font-size="11" fill="#444">{_fmt(10 ** lo if log else lo)}</text>'
                 f'<text x="{x1}" y="{y_end + 14}" text-anchor="end" font-size="11" fill="#444">{_fmt(hi)}'
                 f'{" (log scale)" if log else ""}</text>')
    for j, (v, label) in enumerate(marks):
        x = px(v)
        parts.append(f'<line data-threshold="{html.escape(label)}" x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{y_end}" '
                     f'stroke="#cf222e" stroke-dasharray="5,4"/>')
        ly = y_end + 30 + LEGEND_ROW * j
        parts.append(f'<text class="legend" x="{x0}" y="{ly}" font-size="11" fill="#cf222e">- - {html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
.ok{color:#1a7f37}.problem{color:#cf222e;font-weight:600}.skipped{color:#6e7781}
.confirmed{color:#cf222e;font-weight:600}.not-confirmed{color:#1a7f37}.not-probed{color:#6e7781}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plotbox{border:1px solid #ddd;padding:8px}
.plotbox h3{font-size:13px;margin:0 0 4px}.plotbox .meta{max-width:540px;font-size:12px}code{background:#f6f8fa;padding:0 3px}
.meta{color:#555}
pre.excerpt{background:#f6f8fa;padding:4px 6px;margin:6px 0 0;font-size:12px;white-space:pre-wrap;word-break:break-all}
pre.excerpt .hit{background:#fff1c2}
table.findings{table-layout:fixed}table.findings td{overflow-wrap:anywhere}
"""


def _metrics_text(metrics: Dict[str, Any], limit: int = 8) -> str:
    items = []
    for k, v in list(metrics.items())[:limit]:
        if isinstance(v, float):
            v = _fmt(v)
        elif isinstance(v, (list, dict)):
            continue
        items.append(f"{html.escape(str(k))}={html.escape(str(v))}")
    return ", ".join(items)


def plots_of(probes: Sequence[Dict[str, Any]]) -> List[Tuple[str, str, Dict[str, Sequence[Any]]]]:
    """(probe, title, series) for every plot the report shows: one per probe with series; a probe whose
    series have very different lengths (a histogram next to a curve) gets one plot per series."""
    out = []
    for p in probes:
        series = {k: v for k, v in (p.get("series") or {}).items() if isinstance(v, (list, tuple)) and v}
        if not series:
            continue
        lengths = {len(v) for v in series.values()}
        if len(lengths) == 1:
            out.append((p["name"], p["name"], series))
        else:
            for k, v in series.items():
                out.append((p["name"], f"{p['name']}: {k}", {k: v}))
    return out


def _plot_html(p: Dict[str, Any], title: str, series: Dict[str, Sequence[Any]]) -> str:
    """A probe's plot: labelled bars for per-layer series (``metrics.plot.bars``), else lines; the thresholds
    its verdict was judged by (``metrics.plot.thresholds``: {"value", "label", "series"?}) drawn dashed."""
    plot = (p.get("metrics") or {}).get("plot") or {}
    marks = [(t.get("value"), t.get("label", "threshold")) for t in plot.get("thresholds") or []
             if isinstance(t, dict) and (t.get("series") is None or t.get("series") in series)]
    bars = plot.get("bars") or {}
    if len(series) == 1:
        (name, vals), = series.items()
        if name in bars:
            return bar_svg(title, bars[name], vals, marks)
    return plot_svg(title, series, marks)


def _excerpt_html(rows: Sequence[Tuple[int, str]], line: Any) -> str:
    if not rows:
        return ""
    width = max(len(str(n)) for n, _ in rows)
    out = []
    for n, text in rows:
        cls = ' class="hit"' if n == line else ""
        out.append(f"<span{cls}>{str(n).rjust(width)} | {html.escape(text.expandtabs(4))}</span>")
    return '<pre class="excerpt">' + "\n".join(out) + "</pre>"


def render(result: Dict[str, Any], command: Sequence[str] = (), elapsed: Optional[float] = None,
           excerpts: Optional[Sequence[Sequence[Tuple[int, str]]]] = None) -> str:
    """The page for a run's JSON result (``{"findings": [...], "probes": [...]}``); ``excerpts``, one
    per finding in the same order, are the source lines shown under each finding."""
    probes = result.get("probes") or []
    findings = result.get("findings") or []
    esc = html.escape
    rows = []
    for p in probes:
        verdict = str(p.get("verdict", ""))
        rows.append(
            f'<tr><td><code>{esc(str(p.get("name", "")))}</code></td>'
            f'<td class="{VERDICT_CLASS.get(verdict, "")}">{esc(verdict)}</td>'
            f'<td>{esc(str(p.get("reason", "")))}</td><td class="meta">{_metrics_text(p.get("metrics") or {})}</td></tr>'
        )
    frows = []
    for k, f in enumerate(findings):
        rt = f.get("runtime") or {}
        status = str(rt.get("status", "static only"))
        where = f'{f.get("path")}:{f.get("line")}:{f.get("column")}'
        if f.get("cell"):
            where = f'{f.get("path")}:cell {f.get("cell")}:{f.get("line")}:{f.get("column")}'
        evidence = rt.get("evidence")
        ev_text = ""
        if isinstance(evidence, dict):
            ev_text = evidence.get("summary") or _metrics_text(evidence)
        elif evidence:
            ev_text = str(evidence)
        frows.append(
            f'<tr><td><code>{esc(where)}</code></td><td><b>{esc(str(f.get("code")))}</b> {esc(str(f.get("name", "")))}</td>'
            f'<td>{esc(str(f.get("message", "")))}'
            f'{_excerpt_html(excerpts[k], f.get("line")) if excerpts and k < len(excerpts) else ""}</td>'
            f'<td class="{esc(status)}">{esc(status)}'
            f'{" by " + esc(str(rt.get("probe"))) if rt.get("probe") else ""}</td><td class="meta">{esc(str(ev_text))}</td></tr>'
        )
    by_name = {p.get("name"): p for p in probes}
    plots = "".join(
        f'<div class="plotbox" data-probe="{esc(probe)}"><h3>{esc(title)} '
        f'<span class="{VERDICT_CLASS.get(str(by_name[probe].get("verdict")), "")}">'
        f'{esc(str(by_name[probe].get("verdict", "")))}</span></h3>{_plot_html(by_name[probe], title, series)}'
        f'<div class="meta">{esc(str(by_name[probe].get("evidence") or by_name[probe].get("reason") or ""))}</div></div>'
        for probe, title, series in plots_of(probes)
    )
    error = result.get("error") or {}
    error_html = ""
    if error:
        error_html = (f'<h2>Error</h2><p class="problem">{esc(str(error.get("message", "")))}</p>'
                      + (f'<pre class="excerpt">{esc(str(error.get("traceback")))}</pre>' if error.get("traceback") else "")
                      + (f'<h3>The script\'s output (end)</h3><pre class="excerpt">'
                         f'{esc(chr(10).join(str(error.get("output")).splitlines()[-60:]))}</pre>' if error.get("output") else ""))
    problems = sum(1 for p in probes if p.get("verdict") == "problem")
    confirmed = sum(1 for f in findings if (f.get("runtime") or {}).get("status") == "confirmed")
    head = esc(" ".join(command)) if command else "trainlint run"
    took = f" · {elapsed:.1f} s" if elapsed is not None else ""
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>trainlint run report</title><style>{_CSS}</style></head><body>"
        f"<h1>trainlint run report</h1><div class=\"meta\"><code>{head}</code>{took}</div>{error_html}"
        f"<p>{len(probes)} probes, <span class=\"problem\">{problems} problem(s)</span>; {len(findings)} finding(s), "
        f"<span class=\"confirmed\">{confirmed} confirmed at runtime</span>.</p>"
        "<h2>Probes</h2><table><tr><th>probe</th><th>verdict</th><th>reason</th><th>metrics</th></tr>"
        f"{''.join(rows)}</table>"
        "<h2>Findings</h2><table class=\"findings\"><tr><th style=\"width:18%\">where</th><th style=\"width:12%\">rule</th>"
        "<th style=\"width:40%\">message</th><th style=\"width:12%\">runtime</th><th>evidence</th></tr>"
        f"{''.join(frows) or '<tr><td colspan=5>none</td></tr>'}</table>"
        f"<h2>Plots</h2><div class=\"plots\">{plots or '<p class=meta>no probe recorded a series</p>'}</div>"
        "</body></html>\n"
    )
