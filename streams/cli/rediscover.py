"""``dialin rediscover``: replay discovery over a range of the input topic, deterministically.

The work is in :mod:`dialin.streams.tools.rediscover`; this module parses the options,
writes the catalog the run produces (``--out`` or stdout; a dry run: nothing is
published unless ``--publish TOPIC``), prints the diff against the live catalog and a
summary on stderr (with how many review decisions of the live catalog applied), and
``--explain INTENT_ID`` the verdicts that made one intent. Every
user mistake (a bad or empty range, an unknown intent, an unreachable broker, a bad
setting) is one ``error:`` line on stderr and exit status 2 (:mod:`dialin.streams.cli`).
:func:`register` adds the command to the ``dialin`` app.

Library: typer.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from .engine import _fail, _OneLineErrors, _show_warning, _write_text
from .service import _tool_errors, _tool_settings


@contextlib.contextmanager
def _replay_errors(bootstrap: str) -> Iterator[None]:
    """Expected failures as one ``error:`` line and exit status 2."""
    from dialin.models import EmbeddingSpaceError, InputError, LLMUnavailableError

    from ..catalog import CatalogError
    from ..factory import SettingsError
    from ..tools.rediscover import RediscoverError

    with _tool_errors(bootstrap), warnings.catch_warnings():
        warnings.showwarning = _show_warning  # an engine warning is one line, too
        try:
            yield
        except (RediscoverError, CatalogError, SettingsError, InputError,
                EmbeddingSpaceError) as exc:
            _fail(str(exc))
        except LLMUnavailableError as exc:
            _fail(f"the LLM server is needed for prompts not in the response log: {exc}")


def rediscover(
    start: Annotated[str | None, typer.Option(
        "--from", help="First record time, ISO-8601 (2026-11-01T00:00Z; no zone: UTC).")] = None,
    end: Annotated[str | None, typer.Option(
        "--to", help="End time, ISO-8601, exclusive (records before it).")] = None,
    start_offsets: Annotated[str | None, typer.Option(
        "--from-offset", help="First offsets, PARTITION:OFFSET,... (partitions not named: "
                              "from their start).")] = None,
    end_offsets: Annotated[str | None, typer.Option(
        "--to-offset", help="End offsets, exclusive, PARTITION:OFFSET,... (partitions not "
                            "named: to their end).")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the catalog (JSON) here (default: stdout).")] = None,
    publish: Annotated[str | None, typer.Option(
        "--publish", help="Also publish the catalog records to this topic (default: a dry "
                          "run; never the live catalog topic).")] = None,
    explain: Annotated[str | None, typer.Option(
        "--explain", help="Print the judge questions and verdicts that made this intent "
                          "instead of the catalog.")] = None,
    no_diff: Annotated[bool, typer.Option(
        "--no-diff", help="Do not print the diff against the live catalog (its review "
                          "decisions apply all the same).")] = False,
    bootstrap: Annotated[str | None, typer.Option(
        "--bootstrap", help="Kafka bootstrap servers (default: DIALIN_KAFKA_BOOTSTRAP).")] = None,
) -> None:
    """Re-run discovery over a range of the input topic as one batch, with the LLM answers
    recorded the first time each prompt was asked; write the catalog it produces."""
    settings = _tool_settings(bootstrap)
    with _replay_errors(settings.kafka_bootstrap):
        from ..tools.rediscover import Range, RediscoverError, diff_live
        from ..tools.rediscover import publish as publish_records
        from ..tools.rediscover import rediscover as replay

        span = Range.parse(start, end, start_offsets, end_offsets)
        if publish is not None and publish == settings.topic_catalog:
            raise RediscoverError(f"--publish {publish} is the live catalog topic; name "
                                  "another topic (a replay never overwrites the live catalog)")
        run = replay(settings, span)
        if explain is not None:
            typer.echo("\n".join(run.explain(explain)))
            return
        text = run.text()
        if out is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            _write_text(out, text)
        if not no_diff:
            for line in diff_live(run, run.live):  # the catalog the decisions came from
                typer.echo(line.text, err=True)
        sent = publish_records(run, publish) if publish is not None else 0
    u = run.utterances
    asked = "" if run.llm is None else f"; LLM: {_llm_line(run.llm)}"
    decided = (f"; review decisions applied: {len(run.applied)}"
               + (f" ({len(run.dropped)} intents dropped as rejected)" if run.dropped else ""))
    typer.echo(f"rediscovered {len(run.intents)} intents in {len(u.ids)} utterances "
               f"({u.rejected} rejected, {u.duplicates} duplicates) of topic "
               f"{settings.topic_utterances}{decided}{asked}"
               + (f" -> {out}" if out is not None else "")
               + (f"; published {sent} records to {publish}" if publish is not None
                  else "; dry run, nothing published"), err=True)


def _llm_line(stats: dict) -> str:
    """Questions answered from the log and questions sent, judge and namer together."""
    calls = stats.get("calls", {})
    cached = sum(n for by in calls.values() for o, n in by.items() if o == "cached")
    sent = sum(n for by in calls.values() for o, n in by.items() if o != "cached")
    return f"{cached} answers from the response log, {sent} requests sent"


def register(app: typer.Typer) -> None:
    """Add ``rediscover`` to the ``dialin`` app."""
    app.command(cls=_OneLineErrors)(rediscover)
