"""``dialin broker|serve|replay|watch|demo``: the streaming service."""

from __future__ import annotations

from .cli import app  # noqa: F401
