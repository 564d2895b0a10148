"""Export the intent catalog to bot platforms, and import (or restore) it.

``dialin catalog export`` (:mod:`dialin.streams.cli.catalog`) reads the catalog
(:mod:`._sources`: the live ``dialin-catalog`` topic or a ``dialin discover`` file),
turns examples into training phrases (:mod:`._phrases`), names intents by each
platform's rules (:mod:`._names`) and writes one format (:mod:`._formats`), checked by
the platform's own definition (:mod:`._vendors`). ``dialin catalog import`` reads a
file (:mod:`._parse`) and publishes its intents as the discovery leader would
(:mod:`._importer`); the ``dialin`` format is a full backup of the catalog.
"""

from ._errors import CatalogError
from ._formats import FORMATS, Export, export
from ._importer import CatalogImporter, ImportPlan
from ._names import CX_DISPLAY_NAME_MAX, LEX_NAME_MAX
from ._parse import IMPORT_FORMATS, Seed, read_import
from ._phrases import PUBLISHED_EXAMPLES
from ._sources import Snapshot, read_discover, read_live
from ._vendors import RASA_NLU_SCHEMA

__all__ = ["CX_DISPLAY_NAME_MAX", "FORMATS", "IMPORT_FORMATS", "LEX_NAME_MAX",
           "PUBLISHED_EXAMPLES", "CatalogError", "CatalogImporter", "Export",
           "ImportPlan", "RASA_NLU_SCHEMA", "Seed", "Snapshot", "export", "read_discover",
           "read_import", "read_live"]
