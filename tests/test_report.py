"""The discover HTML report: self-contained, escaped, and really rendered by Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from dialin.streams.tools.report import MAP_COLOURS, render_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def blobs(n_per: int = 60, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 16)) * 4
    X = np.concatenate([c + rng.normal(size=(n_per, 16)) for c in centres]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, np.repeat(np.arange(k), n_per)


def document(labels: np.ndarray, texts: list[str]) -> dict:
    intents = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c).tolist()
        intents.append({"id": f"intent-{c}", "cluster": int(c), "label": f"inquire-topic {c}",
                        "role": None, "size": len(rows), "share": len(rows) / len(labels),
                        "rows": rows, "examples": [texts[i] for i in rows[:10]],
                        "verdict": "Good" if c % 2 == 0 else "Bad", "confidence": 0.8})
    intents[1]["label"] = '<script>alert("x")</script> & co'
    return {"metadata": {"input": "calls.csv", "n_utterances": len(labels), "n_intents": len(intents),
                         "strategy": "budget", "judge": "heuristic", "judge_calls": 42,
                         "calls_by_phase": {"coarse": 10, "growth": 32}},
            "log": [{"phase": "coarse", "n_cluster": 16, "good": 9, "rate": 1.2},
                    {"phase": "merge", "n_cluster": 4, "good": 4, "rate": float("inf")}],
            "intents": intents, "unassigned_rows": []}


@pytest.fixture(scope="module")
def report_html() -> str:
    X, labels = blobs()
    texts = [f"utterance {i} about topic {c} <u>" for i, c in enumerate(labels)]
    return render_report(document(labels, texts), X, labels, texts=texts, seed=0)


def test_self_contained_no_external_resources(report_html):
    assert report_html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", report_html, re.I)
    assert not re.search(r"<(script|link|iframe|img)\b", report_html, re.I)
    assert "@import" not in report_html and "url(" not in report_html


def test_user_text_is_escaped(report_html):
    assert "<script>alert" not in report_html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in report_html
    assert "<u>" not in report_html and "topic 0 &lt;u&gt;" in report_html


def test_map_intents_and_log_are_there(report_html):
    assert report_html.count("<circle") == 240  # every utterance of a small run is drawn
    for colour in MAP_COLOURS[:4]:
        assert colour in report_html
    assert report_html.count("inquire-topic") >= 3
    assert "Iteration log" in report_html and "<td>merge</td>" in report_html
    assert "judge calls" in report_html


def test_large_runs_draw_a_sample_with_every_cluster():
    X, labels = blobs(n_per=400, k=3)
    html = render_report(document(labels, ["t"] * len(labels)), X, labels, seed=1, map_points=300)
    n = html.count("<circle")
    assert 290 <= n <= 310
    assert all(MAP_COLOURS[c] in html for c in range(3))


def test_renders_in_headless_chromium(report_html, tmp_path):
    """A real browser opens the file offline and paints the map (CI has chromium: no skip)."""
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(report_html, encoding="utf-8")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1400",
           "--hide-scrollbars", f"--screenshot={shot}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    # Not blank: plenty of non-white pixels, and the map's colours were painted.
    assert (image.min(axis=2) < 200).mean() > 0.01
    for hex_colour in MAP_COLOURS[:4]:
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        close = (np.abs(image - rgb).sum(axis=2) < 60).sum()
        assert close > 50, f"{hex_colour} was not painted"
