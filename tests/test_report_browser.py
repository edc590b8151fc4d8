"""The HTML report in a real browser: headless Chromium renders it and every plot shows.

The screenshot is decoded here (zlib + the PNG filters) and the plot lines are found by their colour:
each plot is drawn, not merely present in the markup. .ci/run installs Chromium (Debian's package).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

from trainlint.runtime.html import COLORS, plots_of, render


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        # CI installs Chromium (.ci/run) and must run this test; a developer's fresh machine may not have it.
        if os.environ.get("CI") or os.environ.get("TRAINLINT_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here (apt-get install chromium; .ci/run installs it)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return exe


def _decode_png(data: bytes):
    """(width, height, rows of RGB tuples) for 8-bit RGB/RGBA PNGs."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, rows, bpp


def test_every_plot_of_the_report_renders_in_headless_chromium():
    # One plot per probe series, each in its own colour, to find each one on the screenshot.
    result = {
        "probes": [
            {"name": f"probe-{k}", "verdict": "ok", "reason": "", "metrics": {},
             "series": {"s": [float((i * (k + 2)) % 7) for i in range(30)]}}
            for k in range(4)
        ],
        "findings": [{"code": "TL101", "name": "activation-before-regression-output", "path": "train.py", "line": 16,
                      "column": 5, "message": "ends with nn.ReLU", "runtime": {"status": "confirmed", "probe": "output-range"}}],
    }
    page = render(result, ["python", "train.py"], 1.0)
    # Give each plot a distinct colour (the renderer colours series within a plot).
    for k, color in enumerate(COLORS[1:5]):
        page = page.replace('data-series="s" fill="none" stroke="#1f77b4"', f'data-series="s" fill="none" stroke="{color}"', 1)
    assert len(plots_of(result["probes"])) == 4
    with tempfile.TemporaryDirectory() as d:
        html_file = Path(d) / "report.html"
        html_file.write_text(page, encoding="utf-8")
        shot = Path(d) / "shot.png"
        subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={d}/profile", "--hide-scrollbars", "--force-device-scale-factor=1",
             "--window-size=1200,1400", f"--screenshot={shot}", html_file.as_uri()],
            capture_output=True, timeout=120,
        )
        assert shot.exists(), "Chromium wrote no screenshot"
        width, height, rows, bpp = _decode_png(shot.read_bytes())
    assert (width, height) == (1200, 1400)
    found = {}
    targets = {c: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in COLORS[1:5]}
    for line in rows:
        for x in range(0, width * bpp, bpp):
            px = (line[x], line[x + 1], line[x + 2])
            for name, rgb in targets.items():
                if all(abs(p - q) <= 40 for p, q in zip(px, rgb)):
                    found[name] = found.get(name, 0) + 1
    # Every plot's line is drawn: many pixels of its colour (the legend text alone has few).
    assert all(found.get(c, 0) > 150 for c in targets), found
