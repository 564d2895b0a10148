"""A real, scriptable OpenAI-compatible HTTP server for tests (stdlib ``http.server``).

It speaks ``POST /v1/chat/completions`` and ``GET /v1/models`` on 127.0.0.1 at a random
port, answers with a function of the request, can misbehave on purpose (garbage text,
HTTP 500, a stall past the client's timeout, a 400 for structured outputs or logprobs,
a body that is not JSON) and records every request body so tests can assert what the
client sent. The ``llm_server`` fixture is registered for every test (``conftest.py``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

_LINE = re.compile(r'^\d+\. (".*")$')


def utterance_groups(body: dict) -> list[list[str]]:
    """The utterance blocks of the last user message, decoded (one list per block)."""
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    groups, current = [], None
    for line in content.splitlines():
        if line.startswith("<utterances"):
            current = []
        elif line == "</utterances>":
            groups.append(current)
            current = None
        elif current is not None:
            match = _LINE.match(line)
            assert match, f"utterance line not quoted: {line!r}"
            current.append(json.loads(match.group(1)))
    return groups


def task_of(body: dict) -> str:
    """judge | name | prune, from the system prompt the client sent."""
    system = body["messages"][0]["content"]
    if "Action-Objective" in system:
        return "name"
    if "n_cluster" in system:
        return "prune"
    return "judge"


def default_answer(body: dict) -> str:
    """Good for every judge question, a fixed label, a fixed list of counts."""
    return {"judge": "Good", "name": "inquire-test", "prune": "[30, 20, 40]"}[task_of(body)]


class FakeLLMServer:
    """The server. Set ``answer``, ``fail``, ``p_good`` and the ``reject_*`` flags freely.

    ``answer(body) -> str`` gives the text; ``fail(i, body) -> None|"garbage"|"400"|"500"|
    "stall"|"notjson"`` picks a misbehaviour for the i-th request (0-based, in arrival order);
    ``p_good(body) -> float`` sets the logprobs returned when the client asks for them.
    """

    def __init__(self) -> None:
        self.answer: Callable[[dict], str] = default_answer
        self.fail: Callable[[int, dict], str | None] = lambda i, body: None
        self.p_good: Callable[[dict], float] = lambda body: 0.9
        self.reject_structured = False
        self.reject_logprobs = False
        self.stall_seconds = 3.0
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def chat_requests(self) -> list[dict]:
        with self._lock:
            return list(self.requests)

    # --- the HTTP side ------------------------------------------------------------------

    def _respond(self, body: dict) -> tuple[int, bytes]:
        with self._lock:
            index = len(self.requests)
            self.requests.append(body)
        if self.reject_structured and ("structured_outputs" in body or "response_format" in body):
            return 400, _error("structured outputs are not supported")
        if self.reject_logprobs and body.get("logprobs"):
            return 400, _error("logprobs are not supported")
        mode = self.fail(index, body)
        if mode == "400":
            return 400, _error("prompt too long")
        if mode == "500":
            return 500, _error("internal error")
        if mode == "stall":
            time.sleep(self.stall_seconds)
        if mode == "notjson":
            return 200, b"<html>oops</html>"
        if self.delay:
            time.sleep(self.delay)
        text = "Sure! Here is my analysis: maybe." if mode == "garbage" else self.answer(body)
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        if body.get("logprobs") and task_of(body) == "judge":
            choice["logprobs"] = {"content": _logprobs(text, self.p_good(body))}
        payload = {"id": f"chatcmpl-{index}", "object": "chat.completion", "created": 0,
                   "model": body.get("model", ""), "choices": [choice],
                   "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101}}
        return 200, json.dumps(payload).encode()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a stall test)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": "test-model", "object": "model", "owned_by": "test"}]}).encode())
                else:
                    self._send(404, _error("not found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, _error("not found"))
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, data = server._respond(json.loads(raw))
                finally:
                    with server._lock:
                        server.in_flight -= 1
                self._send(status, data)

        return Handler


class _Server(ThreadingHTTPServer):
    """The stdlib server with a listen backlog for the client's 16 concurrent requests
    (socketserver's default of 5 can refuse connections on a loaded machine)."""

    request_queue_size = 64


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


def _logprobs(text: str, p: float) -> list[dict]:
    """One token for the answer, with Good and Bad as the top alternatives at ``p``."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    top = [{"token": "Good", "logprob": math.log(p), "bytes": None},
           {"token": "Bad", "logprob": math.log(1 - p), "bytes": None}]
    chosen = next((t for t in top if t["token"] == text), {"token": text, "logprob": -0.01})
    return [{"token": chosen["token"], "logprob": chosen["logprob"], "bytes": None,
             "top_logprobs": top}]


@pytest.fixture
def llm_server():
    server = FakeLLMServer().start()
    yield server
    server.stop()
