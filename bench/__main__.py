"""Run every benchmark in one command and print their tables: ``python -m bench [--quick]``.

Each benchmark runs in its own process (so memory figures and caches do not leak between
them) and prints its own table, measured against its baseline in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHES = [
    ("core engine (issue 2)", "bench.bench_core"),
    ("rollup tiers (issue 6)", "bench.bench_rollup"),
    ("durability (issue 4)", "bench.bench_durability"),
    ("HTTP server (issue 3)", "bench.bench_http"),
    ("protocols (issue 5)", "bench.bench_protocols"),
]


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    root = Path(__file__).resolve().parent.parent
    failed = 0
    for title, module in BENCHES:
        if not (root / (module.replace(".", "/") + ".py")).exists():
            continue
        print(f"\n== {title}: python -m {module}{' --quick' if quick else ''}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", module, *(["--quick"] if quick else [])], cwd=root)
        print(f"({time.perf_counter() - t:.0f} s{'' if rc == 0 else f', exit status {rc}'})", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
