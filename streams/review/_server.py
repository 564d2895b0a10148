"""``dialin review``: the review page and its JSON API, a small aiohttp server beside the
workers.

A separate process, not a route of the worker: it needs no faust, no embedder and no
consumer group, it can be restarted or left off without touching discovery, and the
worker's port stays a health and metrics port. The page reads what it shows from Kafka
(:class:`~._state.ReviewState`, filled by one group-less
:class:`~dialin.streams.service.buffer.TopicFollower` per topic) and writes nothing but
decisions: each action is one :class:`~dialin.streams.service.records.Decision` on the
compacted ``intent-decisions`` topic (key = decision_id), produced with ``acks=all`` and
answered only once the broker acknowledged it. The leader applies it; the page polls
``GET /api/state`` every two seconds and shows the new state when the intent's next
version arrives on ``intent-updates``.

Who may decide. Bound to a loopback address (the default, 127.0.0.1) there is no login;
requests must name a loopback ``Host`` (a page elsewhere cannot reach the API through DNS
rebinding) and decisions are made by ``reviewer``. Bound elsewhere the server refuses to
start without ``DIALIN_REVIEW_TOKENS`` (a JSON object, name -> token), and every request
needs one of the tokens, as ``Authorization: Bearer <token>`` or the cookie that the
login form sets (``SameSite=Strict``, ``HttpOnly``; the API takes JSON bodies only, which
a cross-site form cannot send); without it: 401. The decision's actor is then
``reviewer:<token name>``. Tokens are compared in constant time.

Probes. ``GET /healthz`` (the process serves: liveness) and ``GET /readyz`` (every topic
reader has applied its topic's history: readiness, 503 before) answer without a token and
whatever the ``Host``: the kubelet sends neither, and they tell nothing but ``ok``.

Libraries: aiohttp (web server), kafka-python (the acknowledged producer, through
:func:`dialin.streams.tools.replay.make_producer`), aiokafka (the topic readers and the
creation of the compacted decisions topic).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Mapping
from importlib import resources

from aiohttp import web

from ..service.buffer import TopicFollower
from ..service.kafka_config import security_kwargs
from ..service.records import dumps
from ..settings import Settings
from ._actions import ActionRefused, decide, parse_request
from ._state import ReviewState

log = logging.getLogger(__name__)

COOKIE = "dialin_review_token"
#: How long a decision waits for the broker's acknowledgement before the API answers 503.
SEND_TIMEOUT_SECONDS = 15.0
LOOPBACK_NAMES = ("localhost",)
#: Probe routes, open to everyone (they answer only ``ok`` or ``reading the topics``).
HEALTH_PATHS = ("/healthz", "/readyz")


class ReviewConfigError(ValueError):
    """A review server that must not start (one line for the CLI)."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: Mapping[str, str]) -> None:
    """Refuse a bind beyond loopback without tokens, and a token that is empty."""
    if any(not name or not token for name, token in tokens.items()):
        raise ReviewConfigError("DIALIN_REVIEW_TOKENS: every token needs a name and a value")
    if not is_loopback(host) and not tokens:
        raise ReviewConfigError(
            f"dialin review bound to {host} needs DIALIN_REVIEW_TOKENS (a JSON object, "
            "name -> token); without tokens it binds only to 127.0.0.1")


class ReviewServer:
    """The page, the API and the topic readers of one ``dialin review`` process.

    ``tokens`` (name -> token) are required when ``host`` is not loopback. ``redactor``
    is the project's PII redactor (or None when redaction is off). Call :meth:`start`
    and :meth:`stop` on one event loop; ``port`` 0 picks a free port (:attr:`port`).
    """

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 tokens: Mapping[str, str] | None = None, redactor=None) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.tokens = dict(tokens or {})
        check_binding(host, self.tokens)
        self.loopback = is_loopback(host)
        self.state = ReviewState(redact=redactor.redact if redactor is not None else str)
        self._followers: list[TopicFollower] = []
        self._producer = None
        self._runner: web.AppRunner | None = None
        self._decide_lock = asyncio.Lock()
        self._page = resources.files(__package__).joinpath("page.html").read_text("utf-8")

    # --- life cycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Create the decisions topic, start the readers and the producer, then serve."""
        from ..tools.replay import make_producer

        s = self.settings
        # The producer first: kafka-python names an unreachable broker in one KafkaError.
        self._producer = await asyncio.to_thread(make_producer, s, acks="all", linger_ms=0)
        await self._ensure_decisions_topic()
        for topic, apply in ((s.topic_updates, self.state.apply_update),
                             (s.topic_catalog, self.state.apply_catalog),
                             (s.topic_memory, self.state.apply_memory),
                             (s.topic_decisions, self.state.apply_decision)):
            follower = TopicFollower(s, topic, apply)
            await follower.start()
            self._followers.append(follower)
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("review page on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for follower in self._followers:
            await follower.stop()
        self._followers.clear()
        if self._producer is not None:
            await asyncio.to_thread(self._producer.close, 5)
            self._producer = None

    @property
    def caught_up(self) -> bool:
        """Every reader has applied the history its topic had at start."""
        return bool(self._followers) and all(f.caught_up.is_set() for f in self._followers)

    async def _ensure_decisions_topic(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        name = self.settings.topic_decisions
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                    **security_kwargs(self.settings, "aiokafka"))
        await admin.start()
        try:
            if name not in set(await admin.list_topics()):
                try:
                    await admin.create_topics(
                        [NewTopic(name, 1, 1, topic_configs={"cleanup.policy": "compact"})])
                except TopicAlreadyExistsError:  # the leader made it first
                    pass
        finally:
            await admin.close()

    # --- HTTP -----------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=256 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_post("/login", self._login)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/decisions", self._decide)
        return app

    def actor_of(self, request: web.Request) -> str | None:
        """Who is asking: ``reviewer`` on loopback, ``reviewer:<name>`` for a known token."""
        if self.loopback:
            return "reviewer"
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        given = given or request.cookies.get(COOKIE, "")
        return self._name_of(given)

    def _name_of(self, given: str) -> str | None:
        found = None
        for name, token in self.tokens.items():  # every token compared: no early exit
            if given and hmac.compare_digest(given.encode(), token.encode()):
                found = f"reviewer:{name}"
        return found

    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path in HEALTH_PATHS and request.method in ("GET", "HEAD"):
            return await handler(request)
        if self.loopback:
            if not is_loopback(request.url.host or ""):
                return _error(403, f"Host {request.host!r} is not a loopback name")
        elif request.path != "/login" and self.actor_of(request) is None:
            if request.path.startswith("/api/"):
                return _error(401, "a reviewer token is required (Authorization: Bearer ...)")
            return web.Response(status=401, text=_LOGIN_PAGE, content_type="text/html")
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'")
        return response

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=self._page, content_type="text/html")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if not self.caught_up:
            return web.Response(status=503, text="reading the topics\n")
        return web.Response(text="ok\n")

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        if self.loopback or self._name_of(token) is None:
            return web.Response(status=401, text=_LOGIN_PAGE, content_type="text/html")
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    async def _state(self, request: web.Request) -> web.Response:
        views = await asyncio.to_thread(self.state.views)  # redaction may take a moment
        return web.json_response({"caught_up": self.caught_up,
                                  "actor": self.actor_of(request),
                                  "intents": [v.to_json() for v in views]})

    async def _decide(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, "send the action as application/json")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        actor = self.actor_of(request) or "reviewer"
        async with self._decide_lock:  # two clicks on one intent: the second sees the first
            try:
                decision = decide(parse_request(body), self.state, actor)
            except ActionRefused as refused:
                return _error(refused.status, refused.message)
            key, value = decision.decision_id.encode(), dumps(decision)
            try:
                await asyncio.to_thread(self._send, key, value)
            except Exception as exc:  # noqa: BLE001 - any broker failure is one 503 line
                log.warning("decision %s not produced: %s", decision.decision_id, exc)
                return _error(503, f"the broker did not acknowledge the decision: "
                                   f"{type(exc).__name__}; nothing was decided, try again")
            self.state.apply_decision(key, value)
        return web.json_response(json.loads(value), status=201)

    def _send(self, key: bytes, value: bytes) -> None:
        future = self._producer.send(self.settings.topic_decisions, key=key, value=value)
        future.get(timeout=SEND_TIMEOUT_SECONDS)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Dial-In review: sign in</title></head>
<body style="font-family:sans-serif;margin:3em">
<h1>Dial-In review</h1>
<form method="post" action="/login">
<label>Reviewer token <input type="password" name="token" autofocus></label>
<button type="submit">Sign in</button>
</form></body></html>
"""
