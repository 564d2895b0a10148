"""The exit codes every ``dialin`` command shares (listed in :mod:`dialin.streams.cli`),
and the one way every command reads its settings.

Kept apart so the engine and the service commands use the same numbers without
importing each other.
"""

from __future__ import annotations

import re

import typer

#: The command ran but did not finish its work (records refused, timed out, stopped).
INCOMPLETE = 1
#: Nothing was done, for a reason the user fixes: the command line, an option or
#: ``DIALIN_*`` setting, the input file, or the Kafka / LLM server it needs. click's
#: usage errors use this code too.
USER_ERROR = 2


def process_settings():
    """The process settings (``DIALIN_*``); a bad variable is one ``error:`` line and
    :data:`USER_ERROR`, not a pydantic traceback.

    Two kinds of bad value: one pydantic refuses (``ValidationError``), and one
    pydantic-settings cannot even parse, e.g. ``DIALIN_REVIEW_TOKENS=`` (empty) where a
    JSON object is expected (its ``SettingsError``).
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from ..settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        typer.echo(f"error: {invalid_setting(exc)}", err=True)
        raise typer.Exit(USER_ERROR) from None
    except SettingsError as exc:
        typer.echo(f"error: {unparsable_setting(exc)}", err=True)
        raise typer.Exit(USER_ERROR) from None


def unparsable_setting(exc) -> str:
    """The one line for a ``DIALIN_*`` value pydantic-settings could not parse (its message
    names the field: 'error parsing value for field "review_tokens" from source ...')."""
    field = re.search(r'field "([^"]+)"', str(exc))
    name = f"DIALIN_{field.group(1).upper()}" if field else "a DIALIN_* variable"
    return f"invalid setting {name}: cannot parse its value (a JSON object or list is expected)"


def invalid_setting(exc) -> str:
    """The one line that names the ``DIALIN_*`` variable a pydantic ``ValidationError``
    of the settings is about."""
    err = exc.errors()[0]
    where = str(err["loc"][0]).upper() if err.get("loc") else "*"
    return f"invalid setting DIALIN_{where}: {err['msg']}"
