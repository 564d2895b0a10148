"""The ``dialin`` command line (typer): one app, each command module registers its commands.

Engine commands (``evaluate``, ``discover``) live in :mod:`.engine`; service
commands (``broker``, ``replay``, ``watch``, ``serve``, ``demo``) in :mod:`.service`;
the review page (``review``) in :mod:`.review`; ``rediscover`` in :mod:`.rediscover`.
Each module has a ``register(app)``, called once below; neither imports this package
back. ``main()`` is the console script (``dialin = "dialin.streams.cli:main"``). Heavy
imports happen inside each command, so ``dialin --help`` is instant and
``dialin evaluate`` never imports faust.

Exit codes, the same for every command (:mod:`._exit`):

- ``0``: done.
- ``1``: the command ran but did not finish its work: the broker refused records
  (``replay``), the demo timed out or was stopped by SIGTERM/SIGHUP (``demo``).
- ``2``: nothing was done, for a reason the user fixes; one ``error:`` line on stderr:
  a usage error (unknown option, bad choice or number, missing argument), an invalid
  option value or ``DIALIN_*`` setting, an input file that cannot be read, an LLM server
  or model that is needed but not set, Kafka unreachable or its TLS/SASL settings
  wrong, a port in use, a worker that could not start (``demo``).
- ``broker`` exits with the embedded broker's code, ``serve`` with the faust worker's:
  0 after SIGTERM drained it, 70 when it could neither process nor dead-letter a batch
  (``EXIT_UNACKED``: it exits before acking, and the batch is redelivered).
"""

from __future__ import annotations

import typer

from . import catalog, engine, rediscover, review, service

app = typer.Typer(
    name="dialin",
    help="Discover customer intents in call-center utterances (LLM-in-the-loop clustering).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
engine.register(app)
service.register(app)
catalog.register(app)
rediscover.register(app)
review.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
