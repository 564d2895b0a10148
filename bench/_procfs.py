"""What the benchmarks read about their child processes from ``/proc`` (Linux only):
the process tree below a pid, its resident memory and the CPU time it has used.

Why ``/proc`` and not psutil: psutil is not a dependency of the project, and the three
numbers needed here are one line of ``/proc/PID/status`` or ``/proc/PID/stat`` each.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Clock ticks per second of ``/proc/PID/stat``'s CPU times.
TICKS = os.sysconf("SC_CLK_TCK")


def descendants(pid: int | None) -> list[int]:
    """Every process below ``pid`` (``/proc/PID/task/*/children``)."""
    out: list[int] = []
    todo = [pid] if pid is not None else []
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def rss_mb(pid: int | None) -> float:
    """Resident set size of ``pid`` and its descendants in MB (a worker's encoder and
    discovery fit run in child processes); nan when ``pid`` is gone."""
    total, found = 0.0, False
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    found = found or p == pid
        except (OSError, ValueError):
            pass
    return total if found else float("nan")


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU seconds ``pid`` has used so far (0 when it is gone)."""
    try:
        # The command name (field 2) may hold spaces: split after its closing parenthesis.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)
