#!/usr/bin/env bash
# Runs one load generator case three times and prints the median of the key figures.
#   loadgen/perf.sh NAME [loadgen flags...]
# Each run's JSON goes to target/perf/NAME-RUN.json. Run from the workspace root after
# `cargo build --release --workspace`. Needs python3 for the medians.
set -euo pipefail
name=$1
shift
mkdir -p target/perf
for run in 1 2 3; do
  ./target/release/ringmq-loadgen --quiet --json "target/perf/$name-$run.json" "$@" > /dev/null
done
python3 - "$name" <<'PY'
import json, statistics, sys
name = sys.argv[1]
runs = [json.load(open(f"target/perf/{name}-{i}.json"))["results"] for i in (1, 2, 3)]
def med(path):
    values = []
    for r in runs:
        v = r
        for key in path:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(v)
    return (statistics.median(values), min(values), max(values)) if values else None
out = [name]
for label, path, unit in [
    ("produce", ("produce", "mb_per_s"), "MB/s"), ("produce", ("produce", "msgs_per_s"), "msgs/s"),
    ("consume", ("consume", "mb_per_s"), "MB/s"), ("consume", ("consume", "msgs_per_s"), "msgs/s"),
    ("ack p50", ("produce_ack_latency", "p50_us"), "us"), ("ack p99", ("produce_ack_latency", "p99_us"), "us"),
    ("ack p99.9", ("produce_ack_latency", "p99_9_us"), "us"),
    ("e2e p50", ("end_to_end_latency", "p50_us"), "us"), ("e2e p99", ("end_to_end_latency", "p99_us"), "us"),
    ("rss/partition", ("broker_memory", "rss_kib_per_partition"), "KiB"),
    ("rebalance pause max", ("rebalance", "pause_ms_max"), "ms"),
]:
    m = med(path)
    if m and m[0]:
        out.append(f"{label} {m[0]:.1f} {unit} [{m[1]:.1f}-{m[2]:.1f}]")
errors = [r.get("errors") for r in runs if r.get("errors")]
out.append(f"errors {errors}" if errors else "no errors")
print(" | ".join(out))
PY
