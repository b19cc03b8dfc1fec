#!/usr/bin/env python3
"""Where a multi-threaded run has only one thread busy, from a `perf` recording.

    perf record --call-graph dwarf,8192 -F 8000 -o perf.data \
        target/release/trm bench --config sudoku-att --hidden 128 --batch 32 --only train --steps 1
    perf script -i perf.data -F tid,time,ip,sym > samples.txt
    python3 xtask/py/perf_serial.py samples.txt [bucket_seconds]

Samples of the two busiest threads are bucketed in time (1 ms by default). A bucket where
only one of them has samples is time when the other one was idle (waiting for a join, or
asleep in rayon). Each sample is named by its innermost `trm_model::` frame, so the table
says which kernel or model function ran alone, beside its share of all samples.
"""
import collections
import re
import sys


def samples(path):
    current = None
    for line in open(path):
        if not line.strip():
            if current:
                yield current
            current = None
        elif not line.startswith("\t"):
            tid, time = line.split()[:2]
            current = (int(tid), float(time.rstrip(":")), [])
        elif current is not None:
            parts = line.strip().split(None, 1)
            if len(parts) > 1:
                current[2].append(parts[1])
    if current:
        yield current


def owner(stack):
    for frame in stack:
        if "trm_model::" in frame:
            return re.sub(r"<.*?>", "", frame)[:80]
    return (stack[0][:60] + " (no trm_model frame)") if stack else "?"


def main():
    path = sys.argv[1]
    bucket = float(sys.argv[2]) if len(sys.argv) > 2 else 0.001
    rows = list(samples(path))
    if not rows:
        sys.exit(f"{path}: no samples (record with perf record, then perf script -F tid,time,ip,sym)")
    busiest = [t for t, _ in collections.Counter(r[0] for r in rows).most_common(2)]
    if len(busiest) < 2:
        sys.exit("only one thread has samples")
    start = min(r[1] for r in rows)
    buckets = collections.defaultdict(lambda: collections.defaultdict(list))
    for tid, time, stack in rows:
        if tid in busiest:
            buckets[int((time - start) / bucket)][tid].append(owner(stack))
    # From the first bucket where both threads ran (skips single-threaded start-up).
    first = min(i for i, b in buckets.items() if len(b) == 2)
    alone, every = collections.Counter(), collections.Counter()
    for i, by_thread in buckets.items():
        if i < first:
            continue
        for names in by_thread.values():
            every.update(names)
        if len(by_thread) == 1:
            alone.update(next(iter(by_thread.values())))
    n_alone, n_all = sum(alone.values()), sum(every.values())
    print(f"samples on one thread alone: {n_alone} of {n_all} ({100 * n_alone / n_all:.1f} %)")
    print(f"{'alone':>7} {'of all':>7}  function")
    for name, count in alone.most_common(25):
        print(f"{100 * count / n_alone:6.1f}% {100 * every[name] / n_all:6.1f}%  {name}")


if __name__ == "__main__":
    main()
