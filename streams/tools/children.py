"""Child processes that die with their parent: no broker or worker outlives the command.

``dialin broker``, ``dialin demo``, the benchmarks and the test fixtures start the tansu
broker (and workers) as child processes. A parent that exits normally stops them in its
``finally`` blocks, and the CLI turns SIGTERM and SIGHUP into such an exit; but nothing
runs in a parent killed with SIGKILL (an OOM kill, a CI timeout, ``kill -9``), and its
children are re-parented to init and keep running. Measured before this module: after
``kill -9`` of ``dialin broker`` its tansu child still listened on the port.

Why ``prctl(PR_SET_PDEATHSIG)`` in a ``preexec_fn``: it is the Linux way to have the
kernel signal a child when its parent dies, whatever killed the parent. A process group
(``start_new_session``) only helps whoever signals the whole group; it does nothing when
the parent alone is SIGKILLed. It must be set in the child between fork and exec, and
``subprocess`` offers only ``preexec_fn`` for that; ``libc.prctl`` is resolved in the
parent beforehand so the child only makes the one call (Python warns that
``preexec_fn`` is unsafe with threads because the child may need a lock another thread
held at fork; a resolved ctypes call needs none). If the parent died before the call
took effect, the child exits at once.

Two limits: the signal fires when the *thread* that started the child ends, so start
such children from a thread that lives as long as they should (the main thread here);
and on other systems (no ``prctl``) :func:`die_with_parent` returns None and children
are stopped only by a normal exit.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child receive ``sig`` when
    this process dies (Linux); None where the system has no ``prctl``.

    SIGKILL by default: the in-memory broker has nothing to flush, and a worker is built
    to be killed at any point (at-least-once delivery, see docs/guarantees.md).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    signum = int(sig)

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(1)

    return set_parent_death_signal
