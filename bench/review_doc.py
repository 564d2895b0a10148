"""Write the "Review candidates" section of docs/operate.md and its screenshot
(docs/review.png) from a real run of ``dialin review``.

Usage: python bench/review_doc.py [--out docs/operate.md] [--image docs/review.png]

An embedded broker is started and the service's topics (``intent-updates``,
``dialin-catalog``, ``dialin-memory``) are written as the discovery leader writes them,
from the BANKING77 sample (``tests/data/banking77_sample.csv``): three gold intents as
active intents and four as candidates, labels from the gold names, sizes the number of
sample rows, centroids and the judge's confidence (the mean cosine of the members to their
centroid) from an LSA embedder fitted on the sample, plus one utterance with a card number
to show the redaction. Then ``dialin review`` runs as a user runs it (the console script,
in a child process), headless Chromium (Playwright, on the Debian ``chromium``) opens the
page, approves one candidate and takes the screenshot. The section sits between
``<!-- review:start -->`` and ``<!-- review:end -->``; nothing else in the file is
touched, and no number in it is typed by hand. No model download; about a minute.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from _doc import markers, provenance, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "review"
ACTIVE = ["activate_my_card", "card_swallowed", "verify_my_identity"]
CANDIDATES = ["virtual_card_not_working", "card_payment_fee_charged", "atm_support", "age_limit"]
PII_EXAMPLE = ("virtual_card_not_working",
               "my virtual card 4111 1111 1111 1111 is declined everywhere")


def _pack(v: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def seed(settings) -> dict[str, int]:
    """The catalog, updates and memory of seven intents; returns each intent's size."""
    from dialin.models import LSAEmbedder
    from dialin.streams.service.records import utc_now
    from dialin.streams.tools.replay import make_producer

    with (ROOT / "tests" / "data" / "banking77_sample.csv").open(newline="", encoding="utf-8") as fh:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(fh)]
    rows.append(PII_EXAMPLE[::-1])
    texts = [t for t, _ in rows]
    X = LSAEmbedder(n_components=64).fit(texts).encode(texts)
    producer = make_producer(settings, acks="all")
    sizes, now = {}, utc_now()
    for n, category in enumerate(ACTIVE + CANDIDATES):
        members = [i for i, (_, c) in enumerate(rows) if c == category]
        centroid = X[members].mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        intent_id = f"intent-{n + 1:04d}"
        state = "active" if category in ACTIVE else "candidate"
        update = {
            "schema_version": 2, "intent_id": intent_id, "label": category.replace("_", " "),
            "role": "customer", "version": 1 if state == "candidate" else 2,
            "event": "created" if state == "candidate" else "activated", "state": state,
            "status": "created" if state == "candidate" else "updated", "actor": "engine",
            "merged_into": None, "split_from": None, "renamed_from": None,
            "size": len(members), "examples": [texts[i] for i in members[:10]],
            "created_at": now, "updated_at": now,
            "judge": {"backend": "heuristic",
                      "confidence": round(float((X[members] @ centroid).mean()), 2)}}
        key = intent_id.encode()
        producer.send(settings.topic_updates, key=key, value=json.dumps(update).encode())
        catalog = {**update, "embedder": "lsa-64", "centroid": _pack(centroid)}
        producer.send(settings.topic_catalog, key=key, value=json.dumps(catalog).encode())
        for i in members:
            uid = f"u-{i:05d}"
            memory = {"utterance_id": uid, "call_id": f"call-{i}", "text": texts[i],
                      "role": "customer", "embedding": _pack(X[i]), "accepted_at": float(i),
                      "intent_id": intent_id, "version": 1}
            producer.send(settings.topic_memory, key=uid.encode(),
                          value=json.dumps(memory).encode())
        sizes[intent_id] = len(members)
    producer.flush(60)
    producer.close()
    return sizes


def screenshot(url: str, image: Path) -> dict:
    """Open the page, approve the first candidate, screenshot; the page's state after."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 1000})
            tab.goto(url)
            first = tab.locator("#candidates [data-intent]").first
            expect(first).to_be_visible(timeout=60000)
            first.locator('[data-action="approve"]').click()
            expect(first.locator(".pending")).to_be_visible(timeout=30000)
            image.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(image))
        finally:
            browser.close()
    return httpx.get(f"{url}/api/state", timeout=10).json()


def section(state: dict, image: Path, out: Path) -> str:
    from dialin.streams.review import APPLIES_TO, MAX_EXAMPLES, N_NEAREST, PENDING_SECONDS
    from dialin.streams.service.records import MAX_LABEL_CHARS

    start, end = markers(SECTION)
    intents = state["intents"]
    candidates = [v for v in intents if v["state"] == "candidate"]
    applies = "\n".join(f"| {a} | {' or '.join(s)} |" for a, s in APPLIES_TO.items())
    rel = os.path.relpath(image, out.parent)
    return f"""{start}
## Review candidates (`dialin review`)

Discovery publishes each new intent as a **candidate**; the activation rule or a person makes
it **active**. `dialin review` is the page where an analyst looks at the candidates and decides.
It is a separate process (no faust, no embedder): it reads `intent-updates`, `dialin-catalog`,
`dialin-memory` and `intent-decisions` from the beginning, then follows them, and writes
nothing but decisions.

```console
$ dialin review                                   # http://127.0.0.1:8470/, no login
$ DIALIN_REVIEW_TOKENS='{{"ana":"<long random token>"}}' dialin review --host 0.0.0.0
```

![The review page]({rel})

The page above ({len(candidates)} candidates, {len(intents) - len(candidates)} active intents,
seeded by `bench/review_doc.py` from the BANKING77 sample) right after the analyst clicked
**Approve** on the first candidate: the card shows the decision as *waiting* until the leader
applies it and publishes the intent's next version, which the page shows within seconds (it
polls `GET /api/state` every two seconds).

**What a card shows.** Candidates come first, by growth (utterances gained in the last hour,
from the versions of the intent the page has seen) and size. Each card has the label, state and
version, the judge's verdict and confidence, up to {MAX_EXAMPLES} examples (the remembered utterances of
the intent, newest first, then its published examples; five shown, the rest folded), all passed through the PII redactor
(`DIALIN_PII_ENTITIES`: the card number above reads `<CARD>`), and its {N_NEAREST} nearest active
intents by the cosine of the catalog centroids: a candidate very close to an active intent is
usually one to merge into it.

**Actions.** Each is one decision on the compacted `intent-decisions` topic (key =
`decision_id`, produced with `acks=all`; the API answers 201 only once the broker has it),
applied by the leader in order, only if the intent is still at the version the page showed.

| Action | Applies to |
|---|---|
{applies}

Rename takes the name typed beside the button; merge the intent chosen in *merge into…*;
split the examples ticked on the card (at least one, not all: they form a new intent). A
decision already waiting on an intent disables its buttons, for {PENDING_SECONDS / 60:.0f} minutes at most (a
decision the leader could not apply, say a split of utterances it no longer remembers, is
logged by the worker and then stops blocking the intent).

**Refusals.** Nothing is produced and the page shows the reason: an unknown intent (404), a
stale version (409: someone or the machine changed the intent since the page loaded: look
again and decide again), an action that does not apply to the intent's state or a second
decision while one waits (409), a merge into itself, an empty name, a name with markup
(`<`, `>`, `&`) or longer than {MAX_LABEL_CHARS} characters, a split of nothing or of everything (422).

**Who decides.** Bound to 127.0.0.1 (`DIALIN_REVIEW_HOST`, the default) there is no login and
decisions are made by `reviewer`; requests must name a loopback host, so a web page elsewhere
cannot reach the API through DNS rebinding. Bound to any other address the command refuses to
start without `DIALIN_REVIEW_TOKENS` (a JSON object, reviewer name → token). Every request then
needs a token: `Authorization: Bearer <token>` for scripts, or the sign-in form, which sets an
`HttpOnly`, `SameSite=Strict` cookie; without one the answer is 401. Decisions are made by
`reviewer:<name>`, which the leader writes as the `actor` of the events it publishes. Put TLS
in front of it (an ingress or a reverse proxy) when it leaves the machine.

| Setting | Default | Meaning |
|---|---|---|
| `DIALIN_REVIEW_HOST` | `127.0.0.1` | address to bind (`--host`) |
| `DIALIN_REVIEW_PORT` | `8470` | port (`--port`, 0 = any free) |
| `DIALIN_REVIEW_TOKENS` | none | reviewers, `{{"name": "token"}}`; required beyond loopback |
| `DIALIN_TOPIC_DECISIONS` | `intent-decisions` | where decisions go (created compacted if missing) |

{provenance(prefix="")}
{end}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "operate.md")
    parser.add_argument("--image", type=Path, default=ROOT / "docs" / "review.png")
    args = parser.parse_args()

    from dialin.streams.settings import Settings
    from dialin.streams.tools.broker import EmbeddedBroker, free_port

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port()) as broker:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        seed(settings)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
        env["DIALIN_KAFKA_BOOTSTRAP"] = broker.bootstrap
        dialin = shutil.which("dialin", path=str(Path(sys.executable).parent)) or "dialin"
        child = subprocess.Popen([dialin, "review", "--port", str(port)], cwd=tmp, env=env,
                                 stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    state = httpx.get(f"{url}/api/state", timeout=5).json()
                    if state["caught_up"] and len(state["intents"]) == len(ACTIVE + CANDIDATES):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("dialin review did not show the seeded intents in time")
                time.sleep(0.5)
            state = screenshot(url, args.image)
        finally:
            child.terminate()
            child.wait(30)
    write_section(args.out, SECTION, section(state, args.image, args.out))
    print(f"wrote {args.image} and the {SECTION} section of {args.out}")


if __name__ == "__main__":
    main()
