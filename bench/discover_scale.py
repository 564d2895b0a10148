"""``dialin discover`` on large inputs: seconds per stage, intents, judge calls, peak memory.

Builds the input from BANKING77 train + test concatenated (13,083 utterances; a smaller
``--sizes`` value takes a seeded random subset of it), runs exactly the command a user
would, as a child process with the offline defaults (no ``DIALIN_*`` variable, no
embedding cache), plus ``--timings`` to learn the seconds of each stage, and writes the
``discover13k`` section of ``docs/benchmarks.md``. The child's peak resident memory is
its own ``ru_maxrss`` (``os.wait4``), not polled.

Usage::

    python bench/discover_scale.py                      # 13,083 utterances (about 2 minutes)
    python bench/discover_scale.py --sizes 3000 6000 13083
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from _data import banking77
from _doc import markers, write_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
WORK = ROOT / ".bench-cache" / "discover"
SECTION = "discover13k"
COMMAND = ["discover", "b77_all.csv", "--text-field", "text", "--out", "intents.json",
           "--report", "report.html", "--timings", "timings.json"]
STAGES = [("load", "load the file, build judge and namer"), ("embed", "embed"),
          ("cluster", "cluster"), ("name", "name the intents"), ("write", "write intents.json"),
          ("report", "write the HTML report")]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_input(data: Path, size: int, folder: Path) -> tuple[Path, int]:
    """``folder/b77_all.csv`` with ``size`` rows of BANKING77 train + test; the number of intents."""
    train, y_train = banking77(data, "train")
    test, y_test = banking77(data, "test")
    texts, labels = train + test, np.concatenate([y_train, y_test])
    if not 2 <= size <= len(texts):
        sys.exit(f"bench: --sizes must be between 2 and {len(texts):,} (BANKING77 train + test), got {size}")
    rows = np.arange(len(texts)) if size == len(texts) else np.sort(
        np.random.default_rng(0).permutation(len(texts))[:size])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "b77_all.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["text", "category"])
        out.writerows([texts[i], labels[i]] for i in rows)
    return path, len(set(labels[rows]))


def run_discover(folder: Path) -> dict:
    """Run the command in ``folder``; its timings, its metadata, wall seconds and peak RSS."""
    dialin = Path(sys.executable).with_name("dialin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALIN_")}
    started = time.perf_counter()
    with open(folder / "stderr.log", "wb") as err, open(folder / "stdout.log", "wb") as out:
        child = subprocess.Popen([str(dialin), *COMMAND], cwd=folder, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        tail = (folder / "stderr.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        sys.exit(f"bench: dialin discover exited {child.returncode}:\n{tail}")
    meta = json.loads((folder / "intents.json").read_text(encoding="utf-8"))["metadata"]
    timings = json.loads((folder / "timings.json").read_text(encoding="utf-8"))
    # Linux reports ru_maxrss in KiB.
    return {"timings": timings, "meta": meta, "wall": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def section(runs: list[dict]) -> str:
    head = "| stage | " + " | ".join(f"{r['n']:,} utterances" for r in runs) + " |"
    lines = [head, "|---|" + "---:|" * len(runs)]
    for key, what in STAGES:
        lines.append(f"| {what} (s) | " + " | ".join(f"{r['timings'][key]:.1f}" for r in runs) + " |")
    rows = [
        ("whole command, in the process (s)", lambda r: f"{r['timings']['total']:.1f}"),
        ("child wall time, with Python start-up (s)", lambda r: f"{r['wall']:.1f}"),
        ("peak resident memory of the child (MB)", lambda r: f"{r['peak_rss_mb']:.0f}"),
        ("intents found / true intents", lambda r: f"{r['meta']['n_intents']} / {r['k']}"),
        ("judge calls (per utterance)", lambda r: f"{r['meta']['judge_calls']:,} "
                                                  f"({r['meta']['judge_calls_per_utterance']:.2f})"),
        ("unassigned utterances", lambda r: f"{r['meta']['n_unassigned']}"),
    ]
    lines += [f"| {what} | " + " | ".join(cell(r) for r in runs) + " |" for what, cell in rows]
    meta = runs[-1]["meta"]
    ratios = [r["meta"]["n_intents"] / r["k"] for r in runs]
    sizes = " ".join(str(r["n"]) for r in runs)
    command = "dialin " + " ".join(COMMAND)
    over = (f"On these inputs the label-free heuristic judge ends with {min(ratios):.1f}x to "
            f"{max(ratios):.1f}x the true number of intents" if len(runs) > 1 else
            f"It found {ratios[0]:.1f}x the true number of intents")
    over += (": it over-splits dense data (an LLM judge is the intended backend here)."
             if max(ratios) > 1.5 else ".")
    return f"""## `dialin discover` at scale (BANKING77 train + test)

Produced by `python bench/discover_scale.py --sizes {sizes}`: BANKING77 train + test
concatenated (13,083 utterances, 77 intents; smaller sizes are a seeded random subset),
the offline defaults ({meta['embedder']}, {meta['judge']} judge at its default budget
{meta['judge_budget']}, {meta['namer']} namer), no `DIALIN_*` variable and no embedding cache,
run as a child process in a fresh folder:

```sh
{command}
```

Stage seconds come from `--timings` (naming happens inside clustering and is counted
apart); peak memory is the child's own `ru_maxrss`.

{chr(10).join(lines)}

{over} The report is one self-contained HTML file; `tests/test_report.py` renders one in
headless Chromium. Machine: {os.cpu_count()} CPUs shared with other jobs (1-minute load average
{runs[0]['load']:.1f} when the first run started, {runs[-1]['load_end']:.1f} when the last one ended; stage
times stretch with it), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')},
Python {platform.python_version()}, {date.today().isoformat()}.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--sizes", type=int, nargs="+", default=[13083],
                    help="utterances per run (at most 13,083)")
    args = ap.parse_args()
    if not (args.data / "banking77" / "train.csv").exists():
        sys.exit(f"bench: no data at {args.data} (pass --data DIR holding banking77/)")
    runs = []
    for size in args.sizes:
        folder = WORK / str(size)
        path, k = build_input(args.data, size, folder)
        load = os.getloadavg()[0]
        log(f"dialin discover on {size:,} utterances ({k} intents) in {folder}")
        result = run_discover(folder)
        runs.append({"n": size, "k": k, "load": load, "load_end": os.getloadavg()[0], **result})
        log(f"  {json.dumps(result['timings'])}; {result['meta']['n_intents']} intents, "
            f"{result['meta']['judge_calls']} judge calls, peak {result['peak_rss_mb']:.0f} MB")
    start, end = markers(SECTION)
    write_section(DOC, SECTION, f"{start}\n{section(runs).strip()}\n{end}")
    log(f"wrote section {SECTION!r} of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
