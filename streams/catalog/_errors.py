"""User mistakes in catalog export and import, each said in one line.

Kept apart so every module of the package raises the same type, and reads a user's
file and reports a pydantic validation error the same way; the CLI turns a
:class:`CatalogError` into one ``error:`` line and exit status 2
(:mod:`dialin.streams.cli._exit`).

Library: pydantic (its ``ValidationError``, summarised).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class CatalogError(ValueError):
    """An export or import that cannot be done as asked (an empty catalog, a label that
    names nothing on the platform, a malformed file); the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def first_error(exc: ValidationError) -> str:
    """``where: what`` of the first problem pydantic found (``intents.3.label: ...``)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "document"
    return f"{where}: {err['msg']}"


def read_text(path: Path) -> str:
    """A user's file as UTF-8 text (a BOM tolerated); :class:`CatalogError` otherwise."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CatalogError(f"{path}: not a file") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read it ({exc.strerror})") from None
