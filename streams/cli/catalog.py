"""``dialin catalog export|import``: the intent catalog to bot platforms, from a taxonomy,
and as a backup.

``export`` reads the service's catalog (the ``dialin-catalog`` topic) or a ``dialin
discover`` output and writes one format (``dialin``, ``rasa``, ``dialogflow-cx``,
``lex-v2``, ``csv``) to ``--out`` or stdout, with a summary line on stderr. ``import``
publishes the intents of a file (``dialin``, ``rasa``, ``csv``) into the service's
catalog, as the discovery leader would. The work is in :mod:`dialin.streams.catalog`;
this module only parses options and reports. Every user mistake is one ``error:`` line
on stderr and exit status 2 (:mod:`dialin.streams.cli`). :func:`register` adds the
``catalog`` group to the ``dialin`` app.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from .engine import _choices, _fail, _OneLineErrors, _value, _write_text
from .service import _tool_errors, _tool_settings

#: The formats, written out so ``dialin --help`` needs no import of the catalog package
#: (tests/test_catalog_export.py holds them equal to ``dialin.streams.catalog.FORMATS``).
EXPORT_FORMATS = ("dialin", "rasa", "dialogflow-cx", "lex-v2", "csv")
IMPORT_FORMATS = ("dialin", "rasa", "csv")

ExportFormat = _choices("ExportFormat", *EXPORT_FORMATS)
ImportFormat = _choices("ImportFormat", *IMPORT_FORMATS)
LanguageChoice = _choices("LanguageChoice", "en", "zh")
RoleChoice = _choices("RoleChoice", "customer", "agent")

Bootstrap = Annotated[str | None, typer.Option(
    "--bootstrap", help="Kafka bootstrap servers (default: DIALIN_KAFKA_BOOTSTRAP).")]

catalog_app = typer.Typer(
    name="catalog", no_args_is_help=True, pretty_exceptions_enable=False,
    help="Export the intent catalog to bot platforms; import a taxonomy or a backup.")


def _settings(bootstrap: str | None):
    """The process settings (``--bootstrap`` applied); a bad ``DIALIN_*`` is one line."""
    return _tool_settings(bootstrap)


@contextlib.contextmanager
def _catalog_errors(bootstrap: str) -> Iterator[None]:
    """Expected failures as one ``error:`` line and exit status 2."""
    from dialin.models import EmbeddingSpaceError, InputError

    from ..catalog import CatalogError
    from ..factory import SettingsError

    with _tool_errors(bootstrap):
        try:
            yield
        except (CatalogError, SettingsError, InputError, EmbeddingSpaceError) as exc:
            _fail(str(exc))


@catalog_app.command("export", cls=_OneLineErrors)
def export_command(
    fmt: Annotated[ExportFormat, typer.Option(  # type: ignore[valid-type]
        "--format", help="dialin (full backup), rasa, dialogflow-cx, lex-v2 or csv.")],
    from_file: Annotated[Path | None, typer.Option(
        "--from",
        help="A `dialin discover` output (intents.json) instead of the service's catalog.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write here (default: stdout).")] = None,
    max_examples: Annotated[int, typer.Option(
        "--max-examples", min=1, help="Training phrases per intent at most.")] = 10,
    language: Annotated[LanguageChoice | None, typer.Option(  # type: ignore[valid-type]
        "--language", help="Dialogflow languageCode / Lex localeId (default: detected).")] = None,
    bot_id: Annotated[str, typer.Option(
        "--bot-id", help="Lex V2 botId written into each CreateIntent request.")] = "DIALINBOT0",
    bootstrap: Bootstrap = None,
) -> None:
    """Write the active intents with their training phrases in a bot platform's format."""
    settings = _settings(bootstrap)
    with _catalog_errors(settings.kafka_bootstrap):
        from ..catalog import export, read_discover, read_live
        from ..factory import build_redactor

        redactor = build_redactor(settings)
        snapshot = read_discover(from_file) if from_file is not None else read_live(settings)
        result = export(snapshot, _value(fmt), redactor=redactor, max_examples=max_examples,
                        language=_value(language), bot_id=bot_id)
        if out is None:
            sys.stdout.write(result.text)
            sys.stdout.flush()
        else:
            _write_text(out, result.text)
    notes = [f"language {result.language}"] if result.language else []
    if result.left_out:
        notes.append(f"{result.left_out} intents left out: no training phrase")
    if snapshot.skipped:
        notes.append(f"{snapshot.skipped} unreadable catalog records skipped")
    typer.echo(f"exported {result.n_intents} intents, {result.n_phrases} training phrases "
               f"({result.format}{'; ' + '; '.join(notes) if notes else ''}) from {snapshot.source}"
               + (f" -> {out}" if out is not None else ""), err=True)


@catalog_app.command("import", cls=_OneLineErrors)
def import_command(
    file: Annotated[Path, typer.Argument(help="A dialin backup (.json), a Rasa NLU file (.yml) "
                                              "or a CSV of label,example rows.", show_default=False)],
    fmt: Annotated[ImportFormat | None, typer.Option(  # type: ignore[valid-type]
        "--format", help="dialin, rasa or csv (default: from the file's extension).")] = None,
    role: Annotated[RoleChoice, typer.Option(  # type: ignore[valid-type]
        "--role", help="Role of the intents whose file names none.")] = "customer",
    bootstrap: Bootstrap = None,
) -> None:
    """Seed the service's catalog from a file (or restore a backup), as the leader publishes."""
    settings = _settings(bootstrap)
    with _catalog_errors(settings.kafka_bootstrap):
        from ..catalog import CatalogImporter, read_import, read_live
        from ..factory import build_redactor, build_service_embedder

        kind, seeds = read_import(file, _value(fmt))
        embedder = build_service_embedder(settings)
        importer = CatalogImporter(settings, embedder, build_redactor(settings),
                                   default_role=_value(role) or "customer")
        plan = importer.plan(seeds, read_live(settings))
        importer.publish(plan)
    typer.echo(f"imported {len(plan.intents)} of {len(seeds)} intents from {file} ({kind}) into "
               f"topic {settings.topic_catalog}: {plan.restored} restored with their vectors, "
               f"{plan.embedded} embedded from their examples ({embedder.name}), "
               f"{len(plan.skipped)} already in the catalog")


def register(app: typer.Typer) -> None:
    """Add the ``catalog`` group (``export``, ``import``) to the ``dialin`` app."""
    app.add_typer(catalog_app, name="catalog")
