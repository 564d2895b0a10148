"""``dialin evaluate`` and ``dialin discover``: the engine on files, no Kafka."""

from __future__ import annotations

from .cli import app  # noqa: F401
