"""bench/_procfs.py: the process tree, memory and CPU time the benchmarks read from /proc
(the throughput benchmark's table of where the CPU went rests on them)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def procfs():
    spec = importlib.util.spec_from_file_location("bench_procfs", ROOT / "bench" / "_procfs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUSY_THEN_WAIT = """
import sys, time
end = time.process_time() + 0.6
while time.process_time() < end:
    pass
print("done", flush=True)
sys.stdin.read()
"""


def test_a_busy_child_is_found_below_its_parent_and_its_cpu_seconds_counted():
    p = procfs()
    child = subprocess.Popen([sys.executable, "-c", BUSY_THEN_WAIT], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
        assert child.pid in p.descendants(p.os.getpid())
        used = p.cpu_seconds(child.pid)
        assert 0.55 <= used < 5.0, used  # its 0.6 s of CPU, plus Python's start-up
        time.sleep(0.3)  # waiting on its input costs no CPU
        assert p.cpu_seconds(child.pid) - used < 0.05
        assert p.rss_mb(child.pid) > 1.0
    finally:
        child.communicate("")
    assert p.cpu_seconds(child.pid) == 0.0  # gone: nothing more to count
    assert p.rss_mb(child.pid) != p.rss_mb(child.pid)  # nan
