"""Replay a file of utterances onto the inbound topic (kafka-python producer).

Why it exists: the demo, the tests and anyone evaluating the service need live-looking
traffic from a file. JSONL lines are sent byte for byte as they are, even a line that
is not valid JSON or not UTF-8, so what the service does with bad input (it
dead-letters it) is visible; the key is the line's ``call_id`` when the line is a JSON
object that has one. CSV rows (read by :func:`dialin.models.load_table`) become
single-turn calls ``{"call_id": "<file>-<row>", "turn": 0, "text": ..., "role": ...}``.
Security settings (TLS, SASL) come from :func:`dialin.streams.service.kafka_config.security_kwargs`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import Settings

#: Larger than any line we expect: a payload the broker refuses is counted, never fatal.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class ReplayError(ValueError):
    """A replay that cannot start (missing file, bad CSV); the message is one line."""


@dataclass
class ReplayStats:
    """What a replay sent: ``sent`` acknowledged by the broker, ``failed`` refused."""

    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _key_of(line: bytes) -> bytes | None:
    """The call_id of a JSON-object line, else None (the broker then spreads the line)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    call_id = obj.get("call_id") if isinstance(obj, dict) else None
    return call_id.encode("utf-8", "surrogatepass") if isinstance(call_id, str) else None


def jsonl_records(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per non-blank line, the value exactly as in the file without its newline."""
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield _key_of(line), line


def csv_records(path: Path, text_field: str = "text",
                role_field: str | None = None) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) per CSV row as a single-turn call event; the file is checked first."""
    from dialin.models import InputError, load_table

    try:
        table = load_table(path, text_field=text_field, role_field=role_field)
    except InputError as exc:
        raise ReplayError(str(exc)) from None
    roles = table.roles or [None] * len(table)
    for row, (text, role) in enumerate(zip(table.texts, roles, strict=True)):
        call_id = f"{path.stem}-{row}"
        event = {"call_id": call_id, "turn": 0, "text": text, "role": role}
        yield call_id.encode("utf-8"), json.dumps(event, ensure_ascii=False).encode("utf-8")


def file_records(path: str | Path, text_field: str = "text",
                 role_field: str | None = None) -> Iterator[tuple[bytes | None, bytes]]:
    """The records of a .csv (converted) or any other file (JSONL, sent as is)."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        return csv_records(path, text_field, role_field)
    return jsonl_records(path)


def make_producer(settings: Settings, **overrides):
    """A kafka-python producer for ``settings.kafka_bootstrap`` with the project's security."""
    from kafka import KafkaProducer

    from ..service.kafka_config import check_tls, security_kwargs

    check_tls(settings)
    config = dict(bootstrap_servers=settings.kafka_bootstrap.split(","), linger_ms=5,
                  max_request_size=MAX_REQUEST_BYTES, retries=5, bootstrap_timeout_ms=10000)
    config.update(security_kwargs(settings, "kafka-python"))
    config.update(overrides)
    return KafkaProducer(**config)


def replay(records: Iterator[tuple[bytes | None, bytes]], settings: Settings, *,
           topic: str | None = None, rate: float | None = None, limit: int | None = None,
           on_send: Callable[[int], None] | None = None) -> ReplayStats:
    """Send ``records`` to ``topic`` (default: the utterances topic), ``rate`` per second.

    Pacing is by schedule (record i leaves at start + i/rate), so a slow send does not
    lower the average rate. Returns once every record is acknowledged or refused.
    """
    from kafka.errors import KafkaError

    topic = topic or settings.topic_utterances
    stats = ReplayStats()
    producer = make_producer(settings)
    start = time.monotonic()

    def _failed(exc: BaseException) -> None:
        stats.failed += 1
        if len(stats.errors) < 10:
            stats.errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    try:
        futures = []
        for i, (key, value) in enumerate(records):
            if limit is not None and i >= limit:
                break
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                futures.append(producer.send(topic, key=key, value=value))
            except KafkaError as exc:  # e.g. a record larger than the request limit
                _failed(exc)
            if on_send is not None:
                on_send(i + 1)
        producer.flush()
        for future in futures:
            try:
                future.get(timeout=30)
                stats.sent += 1
            except KafkaError as exc:
                _failed(exc)
    finally:
        producer.close()
    stats.seconds = time.monotonic() - start
    return stats
