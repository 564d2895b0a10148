"""The review page (``dialin review``): candidates for a person to approve, rename, merge,
split, reject or retire, each action a decision on the ``intent-decisions`` topic.

:class:`ReviewServer` is the process (aiohttp), :class:`ReviewState` what it shows (read
from the service's compacted topics), :func:`decide` the check that turns an action into a
:class:`~dialin.streams.service.records.Decision` or a 4xx refusal.
"""

from ._actions import APPLIES_TO, ActionRefused, ActionRequest, decide, parse_request
from ._server import ReviewConfigError, ReviewServer, check_binding, is_loopback
from ._state import (MAX_EXAMPLES, N_NEAREST, PENDING_SECONDS, IntentView, ReviewState,
                     growth_per_hour, parse_time)

__all__ = ["APPLIES_TO", "MAX_EXAMPLES", "N_NEAREST", "PENDING_SECONDS", "ActionRefused",
           "ActionRequest", "IntentView", "ReviewConfigError", "parse_time",
           "ReviewServer", "ReviewState", "check_binding", "decide", "growth_per_hour",
           "is_loopback", "parse_request"]
