"""``dialin review``: the page's HTTP API against the real embedded broker, its guard
(loopback only, or a token), and the page itself driven in headless Chromium (Playwright).

The topics are seeded the way the service writes them (``intent-updates``,
``dialin-catalog``, ``dialin-memory``); every decision is read back from the
``intent-decisions`` topic, never from the server's memory.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
import numpy as np
import pytest

from dialin.streams.review import ReviewConfigError, ReviewServer, growth_per_hour
from dialin.streams.settings import Settings
from dialin.streams.tools.replay import make_producer
from kafka_harness import records_of, wait_for

pytestmark = pytest.mark.slow

EMAIL = "jo.smith@example.com"
NOW = "2026-11-29T04:00:00Z"


def _vector(seed: int, near: np.ndarray | None = None) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=16).astype(np.float32)
    if near is not None:
        v = near + 0.2 * v
    return v / np.linalg.norm(v)


def _pack(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def _update(intent_id: str, label: str, state: str, size: int, version: int = 1,
            examples: tuple[str, ...] = ()) -> dict:
    return {"schema_version": 2, "intent_id": intent_id, "label": label, "role": "customer",
            "version": version, "event": "created" if state == "candidate" else "activated",
            "state": state, "status": "created" if version == 1 else "updated",
            "actor": "engine", "merged_into": None, "split_from": None, "renamed_from": None,
            "size": size, "examples": list(examples), "created_at": NOW, "updated_at": NOW,
            "judge": {"backend": "heuristic", "confidence": 0.8}}


#: intent_id -> (label, state, size, centroid seed); ``a-*`` are active.
INTENTS = {
    "a-card": ("card arrival", "active", 300, 1),
    "a-refund": ("refund request", "active", 200, 2),
    "a-retire": ("old promotion", "active", 40, 3),
    "c-approve": ("card late", "candidate", 30, None),
    "c-rename": ("misc topic", "candidate", 25, 4),
    "c-merge": ("card delayed", "candidate", 20, None),
    "c-split": ("refund and pin", "candidate", 18, 5),
    "c-reject": ("noise", "candidate", 12, 6),
    "c-bad": ("bad input target", "candidate", 10, 7),
    "c-twice": ("clicked twice", "candidate", 10, 12),
    "b-approve": ("browser approve", "candidate", 9, 8),
    "b-rename": ("browser rename", "candidate", 8, 9),
}


def _seed(settings: Settings) -> None:
    producer = make_producer(settings, acks="all")
    centroids = {i: _vector(seed) for i, (_, _, _, seed) in INTENTS.items() if seed is not None}
    centroids["c-approve"] = _vector(10, near=centroids["a-card"])
    centroids["c-merge"] = _vector(11, near=centroids["a-card"])
    for intent_id, (label, state, size, _) in INTENTS.items():
        update = _update(intent_id, label, state, size,
                         examples=(f"{label} example, write to {EMAIL}",))
        catalog = {**update, "embedder": "test-16", "centroid": _pack(centroids[intent_id])}
        key = intent_id.encode()
        producer.send(settings.topic_updates, key=key, value=_json(update))
        producer.send(settings.topic_catalog, key=key, value=_json(catalog))
        for n in range(3):
            uid = f"{intent_id}-u{n}"
            memory = {"utterance_id": uid, "call_id": f"call-{uid}", "text": f"{label} number {n}",
                      "role": "customer", "embedding": _pack(centroids[intent_id]),
                      "accepted_at": 1000.0 + n, "intent_id": intent_id, "version": 1}
            producer.send(settings.topic_memory, key=uid.encode(), value=_json(memory))
    producer.flush(30)
    producer.close()


def _json(data: dict) -> bytes:
    import json

    return json.dumps(data).encode()


def _create_topics(settings: Settings) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(t, 1, 1, topic_configs={"cleanup.policy": "compact"})
                             for t in (settings.topic_updates, settings.topic_catalog,
                                       settings.topic_memory)])
    finally:
        admin.close()


@contextmanager
def running(server: ReviewServer) -> Iterator[str]:
    """``server`` started on its own event loop in a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(120)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def settings(broker) -> Settings:
    tag = uuid.uuid4().hex[:8]
    s = Settings(kafka_bootstrap=broker.bootstrap, app_id=f"r-{tag}", topic_updates=f"upd-{tag}",
                 topic_catalog=f"cat-{tag}", topic_memory=f"mem-{tag}",
                 topic_decisions=f"dec-{tag}")
    _create_topics(s)
    _seed(s)
    return s


@pytest.fixture(scope="module")
def redactor():
    from dialin.streams.factory import build_redactor

    return build_redactor(Settings())


@pytest.fixture(scope="module")
def page(settings, redactor) -> Iterator[str]:
    """The review server on loopback, with every seeded intent read."""
    with running(ReviewServer(settings, "127.0.0.1", 0, redactor=redactor)) as url:
        wait_for(lambda: _all_seeded(url), timeout=120, message="the seeded intents on the page")
        yield url


def _all_seeded(url: str) -> bool:
    data = httpx.get(f"{url}/api/state", timeout=10).json()
    views = {v["intent_id"]: v for v in data["intents"]}
    return (data["caught_up"] and set(views) == set(INTENTS)
            and all(len(v["examples"]) >= 3 for v in views.values()))


def _state(url: str, **kw) -> dict[str, dict]:
    return {v["intent_id"]: v for v in httpx.get(f"{url}/api/state", timeout=10, **kw).json()["intents"]}


def _decisions(settings: Settings) -> list[dict]:
    return [r.data | {"_key": r.key_str} for r in records_of(settings, settings.topic_decisions)
            if isinstance(r.data, dict)]


def _post(url: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(f"{url}/api/decisions", json=body, timeout=30, **kw)


# --- the API ------------------------------------------------------------------------------


def test_every_action_produces_its_decision(page, settings):
    actions = [
        {"action": "approve", "intent_id": "c-approve"},
        {"action": "rename", "intent_id": "c-rename", "label": "  report a  lost card "},
        {"action": "merge", "intent_id": "c-merge", "into": "a-card"},
        {"action": "split", "intent_id": "c-split", "utterance_ids": ["c-split-u1"]},
        {"action": "reject", "intent_id": "c-reject"},
        {"action": "retire", "intent_id": "a-retire"},
    ]
    answers = {}
    for body in actions:
        res = _post(page, {**body, "expected_version": 1})
        assert res.status_code == 201, res.text
        answers[body["intent_id"]] = res.json()
    produced = wait_for(lambda: (d := [x for x in _decisions(settings)
                                        if x["intent_id"] in answers]) and len(d) >= 6 and d,
                        timeout=60, message="six decisions on the topic")
    assert len(produced) == 6
    by_intent = {d["intent_id"]: d for d in produced}
    for body in actions:
        d = by_intent[body["intent_id"]]
        assert d["_key"] == d["decision_id"] == answers[body["intent_id"]]["decision_id"]
        assert d["action"] == body["action"] and d["expected_version"] == 1
        assert d["schema_version"] == 1 and d["actor"] == "reviewer" and d["decided_at"].endswith("Z")
    assert by_intent["c-rename"]["label"] == "report a lost card"
    assert by_intent["c-merge"]["into"] == "a-card"
    assert by_intent["c-split"]["utterance_ids"] == ["c-split-u1"]
    assert by_intent["c-approve"]["label"] is None and by_intent["c-approve"]["into"] is None
    # The page shows each as waiting until the leader publishes the next version.
    views = _state(page)
    assert views["c-approve"]["pending"]["action"] == "approve"
    assert views["a-retire"]["pending"]["action"] == "retire"


@pytest.mark.parametrize("body, status, says", [
    ({"action": "approve", "intent_id": "nope", "expected_version": 1}, 404, "no intent"),
    ({"action": "merge", "intent_id": "c-bad", "expected_version": 1, "into": "c-bad"}, 422,
     "itself"),
    ({"action": "merge", "intent_id": "c-bad", "expected_version": 1, "into": "nope"}, 404,
     "no intent"),
    ({"action": "rename", "intent_id": "c-bad", "expected_version": 1, "label": "   "}, 422,
     "empty"),
    ({"action": "rename", "intent_id": "c-bad", "expected_version": 1}, 422, "label"),
    ({"action": "rename", "intent_id": "c-bad", "expected_version": 1,
      "label": "<b>card</b>"}, 422, "markup"),
    ({"action": "approve", "intent_id": "c-bad", "expected_version": 2}, 409, "version"),
    ({"action": "approve", "intent_id": "a-refund", "expected_version": 1}, 409, "candidate"),
    ({"action": "split", "intent_id": "c-bad", "expected_version": 1,
      "utterance_ids": ["a-card-u0"]}, 422, "not a remembered"),
    ({"action": "split", "intent_id": "c-bad", "expected_version": 1,
      "utterance_ids": ["c-bad-u0", "c-bad-u1", "c-bad-u2"]}, 422, "leaves some"),
    ({"action": "split", "intent_id": "c-bad", "expected_version": 1}, 422, "pick"),
    ({"action": "launch", "intent_id": "c-bad", "expected_version": 1}, 400, "action"),
    ({"action": "approve", "intent_id": "c-bad", "expected_version": "1"}, 400,
     "expected_version"),
    ({"action": "approve", "intent_id": "c-bad", "expected_version": 1, "admin": True}, 400,
     "admin"),
])
def test_bad_input_is_a_clear_4xx_and_produces_nothing(page, settings, body, status, says):
    before = len(_decisions(settings))
    res = _post(page, body)
    assert res.status_code == status, res.text
    assert says in res.json()["error"]
    assert len(_decisions(settings)) == before
    assert _state(page)["c-bad"]["pending"] is None


def test_a_body_that_is_not_json_is_a_400(page):
    res = httpx.post(f"{page}/api/decisions", content=b"{not json", timeout=10,
                     headers={"Content-Type": "application/json"})
    assert res.status_code == 400 and res.json()["error"] == "the body is not JSON"
    res = httpx.post(f"{page}/api/decisions", data={"action": "approve"}, timeout=10)
    assert res.status_code == 415


def test_a_second_decision_on_a_waiting_intent_is_refused(page, settings):
    first = _post(page, {"action": "approve", "intent_id": "c-twice", "expected_version": 1})
    assert first.status_code == 201
    # The same click sent again (same decision_id) is no second decision.
    again = _post(page, {"action": "approve", "intent_id": "c-twice", "expected_version": 1,
                         "decision_id": first.json()["decision_id"]})
    assert again.status_code == 201
    second = _post(page, {"action": "reject", "intent_id": "c-twice", "expected_version": 1})
    assert second.status_code == 409 and "waiting" in second.json()["error"]
    mine = wait_for(lambda: [d for d in _decisions(settings) if d["intent_id"] == "c-twice"],
                    timeout=60, message="the decision on the topic")
    assert {d["decision_id"] for d in mine} == {first.json()["decision_id"]}
    assert all(d["action"] == "approve" for d in mine)


def test_the_page_shows_redacted_examples_growth_and_nearest_intents(page):
    views = _state(page)
    texts = [e["text"] for v in views.values() for e in v["examples"]]
    assert not any(EMAIL in t for t in texts)
    assert any("<EMAIL>" in t for t in texts)
    merge = views["c-merge"]
    assert merge["nearest"][0]["intent_id"] == "a-card" and merge["nearest"][0]["similarity"] > 0.8
    assert all(n["intent_id"].startswith("a-") for n in merge["nearest"])
    assert {e["utterance_id"] for e in merge["examples"] if e["utterance_id"]} == {
        "c-merge-u0", "c-merge-u1", "c-merge-u2"}
    assert merge["verdict"] == "Good" and merge["confidence"] == 0.8
    order = [v["intent_id"] for v in _state(page).values()]
    n_candidates = sum(state == "candidate" for _, state, _, _ in INTENTS.values())
    assert all(i.startswith(("c-", "b-")) for i in order[:n_candidates])  # candidates first


def test_growth_counts_the_last_hour():
    hour = 3600.0
    assert growth_per_hour([(0.0, 10), (hour, 25)], created_at=0.0, now=1.5 * hour) == 15
    assert growth_per_hour([(0.0, 10), (hour, 25)], created_at=0.0, now=2 * hour) == 0
    assert growth_per_hour([(hour * 1.5, 7)], created_at=hour * 1.5, now=2 * hour) == 7
    # Older versions compacted away: the average rate since it was created.
    assert growth_per_hour([(hour * 3.5, 40)], created_at=0.0, now=4 * hour) == 10
    assert growth_per_hour([(hour * 1.9, 40)], created_at=0.0, now=4 * hour) == 0
    assert growth_per_hour([], created_at=None, now=hour) == 0


def test_a_decision_the_leader_never_applies_stops_blocking_its_intent():
    import json

    from dialin.streams.review import PENDING_SECONDS, ReviewState, parse_time

    state = ReviewState()
    state.apply_update(b"c-1", json.dumps(_update("c-1", "card late", "candidate", 5)).encode())
    decided = "2026-11-29T04:00:00Z"
    state.apply_decision(b"d-1", json.dumps({"decision_id": "d-1", "action": "approve",
                                              "intent_id": "c-1", "expected_version": 1,
                                              "actor": "reviewer", "decided_at": decided}).encode())
    at = parse_time(decided)
    assert state.pending("c-1", now=at + 1)["decision_id"] == "d-1"
    assert state.pending("c-1", now=at + PENDING_SECONDS + 1) is None
    state.apply_update(b"c-1", json.dumps(_update("c-1", "card late", "active", 5, 2)).encode())
    assert state.pending("c-1", now=at + 1) is None  # applied: the intent moved on


def test_the_page_refuses_a_foreign_host_on_loopback(page):
    res = httpx.get(f"{page}/api/state", headers={"Host": "attacker.example"}, timeout=10)
    assert res.status_code == 403


# --- beyond loopback: a token ---------------------------------------------------------------


def test_bound_beyond_loopback_it_needs_tokens(settings):
    with pytest.raises(ReviewConfigError, match="DIALIN_REVIEW_TOKENS"):
        ReviewServer(settings, "0.0.0.0", 0, tokens={})
    with pytest.raises(ReviewConfigError, match="name and a value"):
        ReviewServer(settings, "0.0.0.0", 0, tokens={"ana": ""})


@pytest.mark.parametrize("args, says", [
    (["--host", "0.0.0.0"], "DIALIN_REVIEW_TOKENS"),
    (["--bootstrap", "127.0.0.1:1"], "Kafka at 127.0.0.1:1"),
])
def test_the_command_says_what_stops_it_in_one_line(settings, tmp_path, args, says):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
    env["DIALIN_KAFKA_BOOTSTRAP"] = settings.kafka_bootstrap
    env["DIALIN_PII_REDACTION"] = "false"  # the PII engines take seconds to load: not tested here
    proc = subprocess.run(
        [sys.executable, "-c", "from dialin.streams.cli import main; main()", "review",
         "--port", "0", *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], lines


def test_beyond_loopback_a_request_without_the_token_is_401(settings):
    server = ReviewServer(settings, "0.0.0.0", 0, tokens={"ana": "s3cret-token"})
    with running(server) as url:
        wait_for(lambda: server.caught_up, timeout=60, message="the readers")
        for res in (httpx.get(f"{url}/api/state", timeout=10),
                    httpx.get(f"{url}/", timeout=10),
                    httpx.get(f"{url}/api/state", timeout=10,
                              headers={"Authorization": "Bearer wrong"}),
                    _post(url, {"action": "approve", "intent_id": "b-approve",
                                "expected_version": 1})):
            assert res.status_code == 401
        assert "token" in httpx.get(f"{url}/", timeout=10).text.lower()
        auth = {"Authorization": "Bearer s3cret-token"}
        assert httpx.get(f"{url}/api/state", headers=auth, timeout=10).status_code == 200
        # The login form sets a cookie the page then sends.
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/login", data={"token": "wrong"}).status_code == 401
            client.post("/login", data={"token": "s3cret-token"})
            assert client.get("/api/state").json()["actor"] == "reviewer:ana"
        res = _post(url, {"action": "rename", "intent_id": "a-refund", "expected_version": 1,
                          "label": "ask for a refund"}, headers=auth)
        assert res.status_code == 201, res.text
    produced = wait_for(lambda: [d for d in _decisions(settings) if d["intent_id"] == "a-refund"],
                        timeout=60, message="the decision on the topic")
    assert [d["actor"] for d in produced] == ["reviewer:ana"]


# --- the page in a real browser ----------------------------------------------------------------


def test_a_person_approves_and_renames_in_the_browser(page, settings, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    shot = tmp_path / "review.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.goto(page)
            approve = tab.locator('[data-intent="b-approve"]')
            expect(approve).to_be_visible(timeout=30000)
            approve.locator('[data-action="approve"]').click()
            expect(approve.locator(".pending")).to_contain_text("waiting: approve", timeout=30000)
            rename = tab.locator('[data-intent="b-rename"]')
            rename.locator('[data-field="label"]').fill("change my address")
            rename.locator('[data-action="rename"]').click()
            expect(rename.locator(".pending")).to_contain_text("change my address", timeout=30000)
            expect(tab.locator("#summary")).to_contain_text("candidates", timeout=10000)
            assert EMAIL not in tab.content()
            tab.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    produced = wait_for(lambda: (d := {x["intent_id"]: x for x in _decisions(settings)
                                        if x["intent_id"].startswith("b-")}) and len(d) == 2 and d,
                        timeout=60, message="the two decisions from the browser")
    assert produced["b-approve"]["action"] == "approve"
    assert produced["b-rename"]["action"] == "rename"
    assert produced["b-rename"]["label"] == "change my address"
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[:2] == (900, 1280)
    # The dark header bar and dark text on the light page were painted.
    assert (image[:40].min(axis=2) < 60).mean() > 0.5
    body = image[60:]
    assert 0.005 < (body.max(axis=2) < 100).mean() < 0.5


# --- end to end: page -> decision -> worker -> intent-updates --------------------------------


def test_the_worker_applies_what_the_page_decides(kafka_settings, workers, redactor):
    from test_e2e_service import FAST, banking_events

    from dialin.streams.tools.replay import replay
    from dialin.streams.tools.supervise import metric

    tag = kafka_settings.app_id
    s = kafka_settings.model_copy(update={"topic_events": f"ev-{tag}",
                                          "topic_decisions": f"dec-{tag}"})
    env = {**FAST, "DIALIN_TOPIC_EVENTS": s.topic_events,
           "DIALIN_TOPIC_DECISIONS": s.topic_decisions,
           "DIALIN_TOPIC_VOLUME": f"vol-{tag}", "DIALIN_ACTIVATION_MIN_SIZE": "100000"}
    worker = workers.start(env)
    assert replay(iter(banking_events(300)), s).sent == 300
    # Every event decided first: a run on events still to come would change the intents
    # after they looked settled, and the decisions below would be stale.
    wait_for(lambda: metric(worker.metrics(), "dialin_events_total") >= 300, 240,
             message="the worker to decide on every event")
    with running(ReviewServer(s, "127.0.0.1", 0, redactor=redactor)) as url:
        def settled():  # three candidates with examples to split, and no run changing them
            before = {i: v["version"] for i, v in _state(url).items()}
            time.sleep(8)
            views = _state(url)
            ready = [v for v in views.values() if v["state"] == "candidate"
                     and sum(e["utterance_id"] is not None for e in v["examples"]) >= 2]
            same = before == {i: v["version"] for i, v in views.items()}
            return sorted(ready, key=lambda v: v["intent_id"])[:3] if same and len(ready) >= 3 \
                else None

        first, second, third = wait_for(settled, 300, interval=0, message="settled candidates")
        moved = [e["utterance_id"] for e in third["examples"] if e["utterance_id"]][:1]
        for body in ({"action": "approve", "intent_id": first["intent_id"]},
                     {"action": "rename", "intent_id": second["intent_id"], "label": "ask ana"},
                     {"action": "split", "intent_id": third["intent_id"], "utterance_ids": moved}):
            intent = {v["intent_id"]: v for v in (first, second, third)}[body["intent_id"]]
            res = _post(url, {**body, "expected_version": intent["version"]})
            assert res.status_code == 201, res.text

        def shown():  # the page shows the leader's new versions, nothing waiting
            views = _state(url)
            done = (views[first["intent_id"]]["state"] == "active"
                    and views[second["intent_id"]]["label"] == "ask ana"
                    and views[third["intent_id"]]["version"] > third["version"])
            return views if done and not any(views[v["intent_id"]]["pending"]
                                              for v in (first, second, third)) else None

        wait_for(shown, 120, message="the page to show the applied decisions")
    # The history (intent-events): each decision made the intent's next version, by the
    # reviewer, with its parent; later engine events on the same intents may follow.
    history = [r.data for r in records_of(s, s.topic_events) if isinstance(r.data, dict)]

    def made(intent: dict, event: str) -> dict:
        found = [e for e in history if e["intent_id"] == intent["intent_id"]
                 and e["version"] == intent["version"] + 1]
        assert [e["event"] for e in found][:1] == [event], found
        assert found[0]["actor"] == "reviewer"
        return found[0]

    made(first, "activated")
    assert made(second, "renamed")["renamed_from"] == second["label"]
    made(third, "split")
    # The split made one part, the reviewer's; the engine may have split the candidate
    # before the page showed it (parts created up to the version the reviewer saw), but
    # not after: a split pins the intent, whose members then stay where they are.
    seen_at = datetime.fromisoformat(next(
        e for e in history if e["intent_id"] == third["intent_id"]
        and e["version"] == third["version"])["updated_at"])
    parts = [e for e in history if e.get("split_from") == third["intent_id"]
             and e["event"] == "created" and datetime.fromisoformat(e["created_at"]) > seen_at]
    assert [e["actor"] for e in parts] == ["reviewer"], parts
