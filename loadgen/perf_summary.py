#!/usr/bin/env python3
"""Summarizes `perf script` output of a latency run (PERF.md, "What else runs on the CPUs").

    perf script -i perf.data -F comm,tid,cpu,time,event,trace | python3 loadgen/perf_summary.py runs
    perf script -i perf.data -F comm,event,trace | python3 loadgen/perf_summary.py counts

`runs` needs `sched:sched_switch` events: each switch ends the previous task's run on that CPU.
It prints, per task name (digits folded to N) and CPU, the runs, their total and the longest,
then the longest single runs of tasks other than the broker's shards and the load generator's
actors: who kept a CPU from them, and for how long.

`counts` prints how often each (thread name, event) occurred, with system calls split by number
(`raw_syscalls:sys_enter`) and io_uring submissions by opcode and completions by result.
Divide by the recording's seconds for rates.
"""
import collections
import re
import sys

LINE = re.compile(r"\s*(.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)")
PIPELINE = re.compile(r"ringmq-shard|producer-|consumer-")


def runs(lines):
    current = {}
    all_runs = []
    for line in lines:
        match = LINE.match(line)
        if not match or match.group(5) != "sched:sched_switch":
            continue
        cpu, time, trace = int(match.group(3)), float(match.group(4)), match.group(6)
        following = re.search(r"next_comm=(.*?) next_pid=(\d+)", trace)
        if not following:
            continue
        if cpu in current:
            task, started = current[cpu]
            all_runs.append((time - started, cpu, task))
        current[cpu] = (f"{following.group(1)}/{following.group(2)}", time)
    by_task = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for length, cpu, task in all_runs:
        entry = by_task[(cpu, re.sub(r"\d+", "N", task))]
        entry[0] += 1
        entry[1] += length
        entry[2] = max(entry[2], length)
    print("cpu  task                            runs   total ms   longest ms")
    for (cpu, task), (count, total, longest) in sorted(by_task.items(), key=lambda item: -item[1][1])[:25]:
        print(f"{cpu:>3}  {task:<30} {count:>6} {total * 1e3:>10.2f} {longest * 1e3:>12.3f}")
    print("\nlongest runs of other tasks:")
    others = sorted((run for run in all_runs if not PIPELINE.search(run[2]) and "swapper" not in run[2]), reverse=True)
    for length, cpu, task in others[:20]:
        print(f"{length * 1e3:8.3f} ms  cpu {cpu}  {task}")


def counts(lines):
    tally = collections.Counter()
    for line in lines:
        fields = line.split(None, 2)
        if len(fields) < 2:
            continue
        comm, event = fields[0], fields[1].rstrip(":")
        rest = fields[2] if len(fields) > 2 else ""
        for pattern in (r"NR \d+", r"opcode [A-Z_]+", r"result -?\d+"):
            found = re.search(pattern, rest)
            if found and event.startswith(("raw_syscalls", "io_uring")):
                event = f"{event} {found.group(0)}"
                break
        tally[(re.sub(r"\d+", "N", comm), event)] += 1
    for (comm, event), count in tally.most_common(40):
        print(f"{count:>9}  {comm:<18} {event}")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "runs":
        runs(sys.stdin)
    elif mode == "counts":
        counts(sys.stdin)
    else:
        sys.exit("usage: perf script ... | perf_summary.py runs|counts (see the file's header)")
