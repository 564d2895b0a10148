"""The ``dialin discover`` HTML report: one self-contained file an analyst opens offline.

Three views of one run: a 2-D map of the utterances coloured by intent (t-SNE of a
sample of the embeddings, scikit-learn's ``TSNE`` after a ``PCA`` to 50 dimensions, drawn
as inline SVG), the intents largest first with their examples, and the iteration log
of the strategy. There is no JavaScript and no external resource (fonts, scripts,
stylesheets): the file renders the same without a network, and every user text is
escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Points drawn on the map at most (t-SNE time and SVG size grow with it).
MAP_POINTS = 2000
#: Intents that get their own colour on the map; the rest are grey.
MAP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
               "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#393b79")
_GREY = "#c8c8c8"
_W, _H, _PAD = 900, 620, 24

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;
margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.9rem}
.meta dt{color:#666}.meta dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#4c78a8;height:.7rem;display:inline-block;vertical-align:middle}
.sw{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;margin-right:.4rem;vertical-align:middle}
details summary{cursor:pointer;color:#444}ul.ex{margin:.3rem 0 .3rem 1rem;padding:0}
.good{color:#2a7a2a}.bad{color:#b02a2a}svg{border:1px solid #ddd;background:#fff}
.map text{font-size:12px;paint-order:stroke;stroke:#fff;stroke-width:3px}
"""


def render_report(doc: dict, X: np.ndarray, labels: Sequence[int],
                  texts: Sequence[str] | None = None, seed: int = 0,
                  map_points: int = MAP_POINTS) -> str:
    """The report of a ``discover`` run as one HTML string.

    ``doc`` is the discover JSON document (metadata, log, intents); ``X``, ``labels``
    and ``texts`` (row order of the input) are what the map draws and its tooltips show.
    ``map_points`` caps the rows drawn (a per-cluster stratified sample).
    """
    meta = doc.get("metadata", {})
    intents = doc.get("intents", [])
    colour = {it["cluster"]: MAP_COLOURS[i] for i, it in enumerate(intents[:len(MAP_COLOURS)])}
    title = f"Dial-In: {len(intents)} intents in {meta.get('n_utterances', len(labels))} utterances"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _metadata(meta),
        "<h2>Map of the clusters</h2>",
        f"<p>Each dot is an utterance ({_drawn(len(labels), map_points)}), placed by t-SNE of "
        f"its embedding; the {len(colour)} largest intents "
        "have their own colour, the rest are grey. Hover a dot to read it.</p>",
        _map_svg(np.asarray(X), np.asarray(labels), texts, doc, colour, seed, map_points),
        "<h2>Intents by size</h2>",
        _intents_table(intents, colour),
        "<h2>Iteration log</h2>",
        _log_table(doc.get("log", [])),
        "</body></html>",
    ]
    return "\n".join(parts)


def _drawn(n: int, cap: int) -> str:
    return f"all {n}" if n <= cap else f"a sample of {cap} of {n}, every intent kept"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _metadata(meta: dict) -> str:
    shown = ["input", "n_utterances", "n_intents", "n_unassigned", "embedder", "strategy",
             "judge_budget", "judge", "namer", "prompt_version", "judge_calls",
             "judge_calls_per_utterance", "calls_by_phase", "seed", "seconds", "created_at",
             "dialin_version"]
    rows = []
    for key in shown:
        value = meta.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        rows.append(f"<dt>{_e(key.replace('_', ' '))}</dt><dd>{_e(value)}</dd>")
    llm = meta.get("llm")
    if llm:
        calls = "; ".join(f"{task}: " + ", ".join(f"{o} {n}" for o, n in by.items())
                          for task, by in llm.get("calls", {}).items())
        rows.append(f"<dt>LLM calls</dt><dd>{_e(calls)} (tokens in {llm.get('prompt_tokens')}, "
                    f"out {llm.get('completion_tokens')}, {llm.get('seconds')} s)</dd>")
    return f'<dl class="meta">{"".join(rows)}</dl>'


def _layout(X: np.ndarray, seed: int) -> np.ndarray:
    """2-D coordinates for the rows of ``X``: t-SNE when there are enough, else PCA."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = X.shape[0]
    if n < 3:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    reduced = PCA(n_components=min(50, n - 1, X.shape[1]), random_state=seed).fit_transform(X)
    if n < 50:
        return reduced[:, :2] if reduced.shape[1] >= 2 else np.column_stack([reduced[:, 0], np.zeros(n)])
    perplexity = float(min(30.0, (n - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=500).fit_transform(reduced)


def _sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Up to ``size`` rows, every cluster kept in proportion (at least one row each)."""
    n = len(labels)
    if n <= size:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        take = max(1, int(round(size * len(rows) / n)))
        picked.append(rng.choice(rows, size=min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(picked))


def _map_svg(X: np.ndarray, labels: np.ndarray, texts: Sequence[str] | None, doc: dict,
             colour: dict, seed: int, map_points: int) -> str:
    if X.ndim != 2 or X.shape[0] == 0:
        return "<p>(no utterances to draw)</p>"
    rows = _sample(labels, map_points, seed)
    xy = _layout(X[rows].astype(np.float64), seed)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    px = _PAD + (xy - lo) / span * np.array([_W - 2 * _PAD, _H - 2 * _PAD])
    name = {it["cluster"]: it["label"] for it in doc.get("intents", [])}
    # Grey first so the coloured intents are drawn on top.
    order = sorted(range(len(rows)), key=lambda i: labels[rows[i]] in colour)
    dots = []
    for i in order:
        c = int(labels[rows[i]])
        tip = name.get(c, "unassigned") + (f": {texts[rows[i]]}" if texts is not None else "")
        dots.append(f'<circle cx="{px[i, 0]:.1f}" cy="{px[i, 1]:.1f}" r="3" '
                    f'fill="{colour.get(c, _GREY)}" fill-opacity="0.8"><title>{_e(tip)}</title></circle>')
    tags = []
    for c, fill in colour.items():
        mine = px[labels[rows] == c]
        if len(mine):
            x, y = np.median(mine, axis=0)
            # Keep labels near the edges inside the picture.
            anchor = "start" if x < 0.15 * _W else "end" if x > 0.85 * _W else "middle"
            tags.append(f'<text x="{x:.1f}" y="{y:.1f}" fill="{fill}" text-anchor="{anchor}">'
                        f"{_e(_short(name.get(c, c)))}</text>")
    return (f'<svg class="map" role="img" aria-label="2-D map of the clusters" width="{_W}" '
            f'height="{_H}" viewBox="0 0 {_W} {_H}">' + "".join(dots) + "".join(tags) + "</svg>")


def _short(label: Any, limit: int = 28) -> str:
    text = str(label)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _intents_table(intents: list[dict], colour: dict) -> str:
    if not intents:
        return "<p>No intents were found.</p>"
    biggest = max(it["size"] for it in intents) or 1
    rows = ["<table><thead><tr><th>#</th><th>intent</th><th>role</th><th>size</th><th>share</th>"
            "<th>judge</th><th>examples</th></tr></thead><tbody>"]
    for rank, it in enumerate(intents, start=1):
        sw = (f'<span class="sw" style="background:{colour[it["cluster"]]}"></span>'
              if it["cluster"] in colour else "")
        verdict = it.get("verdict")
        judged = "-" if verdict is None else (
            f'<span class="{"good" if verdict == "Good" else "bad"}">{_e(verdict)}</span>'
            + (f" ({it['confidence']:.2f})" if isinstance(it.get("confidence"), (int, float)) else ""))
        examples = "".join(f"<li>{_e(t)}</li>" for t in it.get("examples", []))
        width = max(1, round(120 * it["size"] / biggest))
        rows.append(
            f"<tr><td class=num>{rank}</td><td>{sw}<b>{_e(it['label'])}</b><br><small>{_e(it['id'])}"
            f"</small></td><td>{_e(it.get('role') or '')}</td><td class=num>{it['size']}</td>"
            f'<td><span class="bar" style="width:{width}px"></span> {100 * it.get("share", 0):.1f}%</td>'
            f"<td>{judged}</td><td><details><summary>{len(it.get('examples', []))} examples"
            f'</summary><ul class="ex">{examples}</ul></details></td></tr>')
    rows.append("</tbody></table>")
    return "".join(rows)


def _log_table(log: list[dict]) -> str:
    if not log:
        return "<p>The strategy kept no iteration log.</p>"
    keys: list[str] = []
    for row in log:
        keys.extend(k for k in row if k not in keys)
    head = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_e(_cell(row.get(k)))}</td>" for k in keys) + "</tr>"
                   for row in log)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if np.isfinite(value) else str(value)
    if isinstance(value, (list, tuple, dict)):
        return str(value)
    return str(value)
