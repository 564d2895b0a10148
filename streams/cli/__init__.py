"""The ``dialin`` command line (typer): one app, commands registered by topic.

Engine commands (``evaluate``, ``discover``) live in :mod:`.engine`; service
commands (``broker``, ``serve``, ``replay``, ``watch``, ``demo``) in
:mod:`.service`. Heavy imports happen inside each command, so ``dialin --help``
is instant and ``dialin evaluate`` never imports faust.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dialin",
    help="Discover customer intents in call-center utterances (LLM-in-the-loop clustering).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Importing these modules registers their commands on ``app``.
from . import engine  # noqa: E402,F401
from . import service  # noqa: E402,F401


def main() -> None:
    """Console-script entry point."""
    app()
