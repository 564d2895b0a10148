"""The exit codes every ``dialin`` command shares (listed in :mod:`dialin.streams.cli`).

Kept apart so the engine and the service commands use the same numbers without
importing each other.
"""

from __future__ import annotations

#: The command ran but did not finish its work (records refused, timed out, stopped).
INCOMPLETE = 1
#: Nothing was done, for a reason the user fixes: the command line, an option or
#: ``DIALIN_*`` setting, the input file, or the Kafka / LLM server it needs. click's
#: usage errors use this code too.
USER_ERROR = 2
