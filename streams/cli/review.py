"""``dialin review``: serve the review page (:mod:`dialin.streams.review`) until Ctrl-C or
SIGTERM.

This module only reads options and settings and reports: a bind beyond loopback without
``DIALIN_REVIEW_TOKENS``, a bad setting, a port in use or Kafka out of reach is one
``error:`` line and exit status 2 (:mod:`dialin.streams.cli`). :func:`register` adds the
command to the ``dialin`` app.
"""

from __future__ import annotations

import typer

from ._exit import USER_ERROR
from .service import _BOOTSTRAP_HELP, _tool_errors, _tool_settings


def review(
    host: str | None = typer.Option(
        None, help="Address to bind (default: DIALIN_REVIEW_HOST, 127.0.0.1). Beyond "
        "loopback it needs DIALIN_REVIEW_TOKENS."),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="Port (default: DIALIN_REVIEW_PORT, 8470; 0 = any free)."),
    bootstrap: str | None = typer.Option(None, help=_BOOTSTRAP_HELP),
) -> None:
    """Serve the page where a person approves, renames, merges, splits, rejects or retires
    intents; each action is a decision on DIALIN_TOPIC_DECISIONS."""
    import asyncio

    from aiokafka.errors import KafkaError as AIOKafkaError

    from ..factory import SettingsError, build_redactor
    from ..service.kafka_config import KafkaConfigError
    from ..review import ReviewConfigError, ReviewServer, check_binding

    settings = _tool_settings(bootstrap)
    host = host or settings.review_host
    port = settings.review_port if port is None else port
    tokens = {name: token.get_secret_value() for name, token in settings.review_tokens.items()}

    async def run() -> None:
        check_binding(host, tokens)  # before the redactor's engines load: an instant refusal
        server = ReviewServer(settings, host, port, tokens, redactor=build_redactor(settings))
        try:
            await server.start()
            typer.echo(f"review page on http://{host}:{server.port}/ (Ctrl-C stops it)", err=True)
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with _tool_errors(settings.kafka_bootstrap):
        try:
            asyncio.run(_until_signal(run()))
        except (ReviewConfigError, SettingsError, KafkaConfigError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(USER_ERROR) from None
        except AIOKafkaError as exc:  # the topic readers and the admin client (aiokafka)
            typer.echo(f"error: Kafka at {settings.kafka_bootstrap}: {exc}", err=True)
            raise typer.Exit(USER_ERROR) from None
        except OSError as exc:  # the port is taken or the address is not ours
            typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
            raise typer.Exit(USER_ERROR) from None
        except KeyboardInterrupt:
            pass


async def _until_signal(main) -> None:
    """Run ``main`` until it ends or SIGTERM/SIGINT arrives (then cancel it: its ``finally``
    stops the server and the readers)."""
    import asyncio
    import signal

    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass


def register(app: typer.Typer) -> None:
    """Add ``review`` to the ``dialin`` app."""
    app.command()(review)
