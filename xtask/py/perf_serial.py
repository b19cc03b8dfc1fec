#!/usr/bin/env python3
"""Where a multi-threaded run has only one thread working, from a `perf` recording.

    perf record --call-graph dwarf,8192 -F 8000 -o perf.data \
        target/release/trm bench --config sudoku-att --hidden 128 --batch 32 --only train --steps 1
    perf script -i perf.data -F tid,time,ip,sym > samples.txt
    python3 xtask/py/perf_serial.py samples.txt [bucket_seconds]

A worker that waits is either asleep (no samples) or, since the `trm` binary's workers
poll for work while a command runs (`trm_backend::run_on_compute_pool`), sampled inside
rayon's polling loop. Samples with rayon's polling or stealing (`find_work`, `yield_now`,
crossbeam's deques) or the kernel's scheduler among their three innermost frames count as
waiting.

Two reports over the two busiest threads:
- time buckets (1 ms by default) where one thread worked while the other only waited or
  slept, named by the working thread's innermost `trm_model::` frame: which kernel or
  model function ran alone, beside its share of all working samples;
- every waiting sample paired with the other thread's nearest sample (within one bucket):
  what ran while a thread waited, as a share of all samples. Short waits at the joins of
  many parallel calls show here even when no bucket is wholly one-sided.
"""
import bisect
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


# Frames of a thread that waits: polling or stealing in rayon, or in the kernel's
# scheduler. The polling loop's own iterator code is inlined into leaf frames of other
# names, so the three innermost frames are looked at (a thread running a stolen job has
# rayon frames only further out).
WAITING = ("find_work", "yield_now", "wait_until", "Stealer", "Injector", "crossbeam_epoch",
           "__schedule", "futex", "sched_yield", "do_syscall", "finish_task_switch")


def waiting(stack):
    return not stack or any(k in frame for frame in stack[:3] for k in WAITING)


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
    rows = [r for r in rows if r[0] in busiest]
    buckets = collections.defaultdict(lambda: collections.defaultdict(list))
    for tid, time, stack in rows:
        buckets[int((time - start) / bucket)][tid].append(stack)
    # From the first bucket where both threads worked (skips single-threaded start-up).
    both = [i for i, b in buckets.items() if sum(any(not waiting(s) for s in st) for st in b.values()) == 2]
    if not both:
        sys.exit("the two busiest threads never worked at the same time")
    first = min(both)
    rows = [r for r in rows if int((r[1] - start) / bucket) >= first]
    alone, working = collections.Counter(), collections.Counter()
    for i, by_thread in buckets.items():
        if i < first:
            continue
        busy = {t: [s for s in st if not waiting(s)] for t, st in by_thread.items()}
        for stacks in busy.values():
            working.update(owner(s) for s in stacks)
        active = [t for t in busiest if busy.get(t)]
        if len(active) == 1:
            alone.update(owner(s) for s in busy[active[0]])
    n_alone, n_working = sum(alone.values()), sum(working.values())
    print(f"working samples with the other thread idle: {n_alone} of {n_working} ({100 * n_alone / n_working:.1f} %)")
    print(f"{'alone':>7} {'of all':>7}  function")
    for name, count in alone.most_common(25):
        print(f"{100 * count / n_alone:6.1f}% {100 * working[name] / n_working:6.1f}%  {name}")

    # What the other thread ran while one waited.
    times = {t: sorted(((time, stack) for tid, time, stack in rows if tid == t), key=lambda x: x[0]) for t in busiest}
    keys = {t: [time for time, _ in times[t]] for t in busiest}
    partner, n_waiting = collections.Counter(), 0
    for me, other in (busiest, busiest[::-1]):
        for time, stack in times[me]:
            if not waiting(stack):
                continue
            n_waiting += 1
            i = bisect.bisect_left(keys[other], time)
            near = min((j for j in (i - 1, i) if 0 <= j < len(keys[other])), key=lambda j: abs(keys[other][j] - time))
            if abs(keys[other][near] - time) > bucket:
                partner["(no sample of the other thread nearby)"] += 1
            else:
                other_stack = times[other][near][1]
                partner["(both waiting)" if waiting(other_stack) else owner(other_stack)] += 1
    print(f"\nwaiting samples: {n_waiting} of {len(rows)} ({100 * n_waiting / len(rows):.1f} %); the other thread meanwhile:")
    for name, count in partner.most_common(25):
        print(f"{100 * count / len(rows):6.1f}%  {name}")


if __name__ == "__main__":
    main()
