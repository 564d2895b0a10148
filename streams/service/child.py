"""What every helper process of the worker (encoder, discovery fit) does as it starts.

A helper process is started with ``spawn`` by a :class:`concurrent.futures.ProcessPoolExecutor`
of the worker. It ignores Ctrl-C (the worker gets it and stops its pools, which stops the
helpers) and exits when the worker is gone: a worker killed without its shutdown (SIGKILL,
the kernel's OOM killer) never tells its pool's processes, which would wait for work
forever holding their memory (a MiniLM encoder, about 700 MB).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait


def start_child(name: str) -> None:
    """In a helper process, before its first task: Ctrl-C ignored, exit with the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name=f"dialin-{name}-watch", daemon=True).start()


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(0)
