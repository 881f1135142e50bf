"""Run a Python program under tracemalloc and write where its memory grows (bench only).

    python bench/tracemalloc_run.py OUT.txt [--interval 60] [--frames 6] [--start-file PATH] -- PROGRAM [ARGS...]

``PROGRAM`` is a script path (``manage.py``) or an installed console script
(``.../bin/uvicorn``, ``.../bin/celery``), run as ``__main__`` in this process
with ``sys.argv`` set to ``PROGRAM ARGS``. A daemon thread starts tracing once
``--start-file`` exists (at once without it: tracing the imports makes the
start very slow, and only growth is wanted), takes a baseline snapshot one
interval later and then every ``--interval`` seconds appends to ``OUT.txt``
the allocation sites that grew most since the baseline, by traceback of
``--frames`` frames, plus the traced total. Nothing of it is imported by the project:
``load_bench --tracemalloc`` wraps its processes in it.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

_FILTERS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
]


def _report(out: Path, interval: float, frames: int, top: int, start_file: Path | None, stop: threading.Event) -> None:
    while start_file is not None and not start_file.exists():
        if stop.wait(1.0):
            return
    tracemalloc.start(frames)
    started = time.monotonic()
    baseline: tracemalloc.Snapshot | None = None
    while not stop.wait(interval):
        snapshot = tracemalloc.take_snapshot().filter_traces(_FILTERS)
        if baseline is None:
            baseline = snapshot
            continue
        stats = snapshot.compare_to(baseline, "traceback")
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"=== t={time.monotonic() - started:.0f}s traced={current / 2**20:.1f}MB peak={peak / 2**20:.1f}MB"]
        for stat in stats[:top]:
            lines.append(f"{stat.size_diff / 2**20:+.2f} MB ({stat.count_diff:+d} blocks) now {stat.size / 2**20:.2f} MB")
            lines += [f"    {line}" for line in stat.traceback.format(most_recent_first=True)]
        with out.open("a") as f:
            f.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--start-file", type=Path)
    if "--" not in sys.argv:
        parser.error("name the program after --")
    split = sys.argv.index("--")
    args = parser.parse_args(sys.argv[1:split])
    program = sys.argv[split + 1 :]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    report = (out, args.interval, args.frames, args.top, args.start_file, stop)
    threading.Thread(target=_report, args=report, name="tracemalloc-report", daemon=True).start()
    sys.argv = program
    path = Path(program[0])
    sys.path.insert(0, str(Path.cwd()))
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
