"""How steady this machine's cores are: a fixed unit of single-thread work, timed back to back.

    .venv/bin/python bench/machine_drift.py [--seconds S]

One process times the unit for S seconds alone, then two such processes at once (both cores busy, as in a
2-rank run). Per process it prints the fastest, median and slowest unit, the share of units slower than 1.5 x
the fastest ("slow"), and the longest stretch of consecutive slow units in seconds. A machine whose slow stretches
last longer than a benchmark's runs cannot be compared to a few percent run against run: read the other
benchmarks' figures against this one's (docs/performance-model.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from _common import load_average

UNIT = 2_000_000
"""Additions in one unit: about 60 ms of one core here when it runs at full speed."""
SLOW = 1.5


def unit() -> float:
    """Seconds for one unit of pure-Python arithmetic (no memory traffic to speak of)."""
    start = time.perf_counter()
    total = 0
    for i in range(UNIT):
        total += i * i
    return time.perf_counter() - start


def time_units(seconds: float) -> list[float]:
    """Unit times, back to back, for ``seconds``."""
    end, times = time.monotonic() + seconds, []
    while time.monotonic() < end:
        times.append(unit())
    return times


def summary(times: list[float]) -> dict[str, float]:
    """Fastest, median, slowest (ms), the slow share and the longest slow stretch (s) of ``times``."""
    fastest = min(times)
    longest = stretch = 0.0
    for t in times:
        stretch = stretch + t if t > SLOW * fastest else 0.0
        longest = max(longest, stretch)
    return {
        "fastest_ms": fastest * 1e3,
        "median_ms": statistics.median(times) * 1e3,
        "slowest_ms": max(times) * 1e3,
        "slow_share": sum(t > SLOW * fastest for t in times) / len(times),
        "longest_slow_s": longest,
    }


def show(label: str, figures: dict[str, float]) -> None:
    print(
        f"  {label}: unit {figures['fastest_ms']:.0f} ms fastest, {figures['median_ms']:.0f} median, "
        f"{figures['slowest_ms']:.0f} slowest (x{figures['slowest_ms'] / figures['fastest_ms']:.2f}); "
        f"{figures['slow_share']:.0%} of units slower than x{SLOW}, "
        f"the longest such stretch {figures['longest_slow_s']:.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per measurement (default 60)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error(f"--seconds: expected more than 0, got {args.seconds}")
    if args.child:
        print(json.dumps(time_units(args.seconds)))
        return
    print(f"single-thread speed over time, {load_average()} at the start", flush=True)
    show("1 process alone", summary(time_units(args.seconds)))
    child = [sys.executable, __file__, "--child", "--seconds", str(args.seconds)]
    both = [subprocess.Popen(child, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate()[0] for process in both]
    if any(process.returncode for process in both):
        sys.exit("machine_drift: a timing process failed")
    for i, output in enumerate(outputs):
        show(f"2 at once, process {i + 1}", summary(json.loads(output)))
    print(f"  {load_average()} at the end")


if __name__ == "__main__":
    main()
