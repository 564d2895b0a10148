"""Write one marked section of docs/benchmarks.md, leaving every other byte alone.

Each benchmark owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``;
several benchmarks write the same file, so each reads, replaces and writes in one go.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace section ``name`` with ``text`` (which includes its markers) or append it."""
    start, end = markers(name)
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + text + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")


def provenance(prefix: str = "OMP_NUM_THREADS=1 ") -> str:
    """"Command: `...`. Machine: ..." for this run: the script and its arguments as given."""
    command = f"{prefix}python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}".strip()
    return (f"Command: `{command}`. Machine: {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}.")
