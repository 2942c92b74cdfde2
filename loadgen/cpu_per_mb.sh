#!/usr/bin/env bash
# CPU per megabyte produced, of the load generator and of the broker measured apart: each run
# starts a standalone `ringmq serve --fsync never` on a fresh data dir under target/, times the
# loadgen with /usr/bin/time, and reads the broker's utime+stime from /proc before and after.
# Variants run interleaved, ROUNDS times.
#
#   loadgen/cpu_per_mb.sh ROUNDS LABEL:LOADGEN_BIN:BROKER_BIN[:EXTRA_FLAGS] ... -- LOADGEN_FLAGS...
#   loadgen/cpu_per_mb.sh 3 sa:target/release/ringmq-loadgen:target/release/ringmq \
#       plain:target/release/ringmq-loadgen:target/release/ringmq:"--shard-aware false" \
#       -- --duration 6s --producers 2 --message-bytes 1KiB --batch-bytes 1MiB --quiet
set -euo pipefail
rounds=$1
shift
variants=()
while [ "$1" != "--" ]; do
  variants+=("$1")
  shift
done
shift
port=19557
tick=$(getconf CLK_TCK)
mkdir -p target
for _ in $(seq 1 "$rounds"); do
  for variant in "${variants[@]}"; do
    IFS=: read -r label loadgen broker extra <<< "$variant"
    data=$(mktemp -d target/cpu-per-mb.XXXX)
    "$broker" serve --data-dir "$data" --listen 127.0.0.1:$port --fsync never > /dev/null 2>&1 &
    pid=$!
    sleep 1.5
    before=$(awk '{print $14 + $15}' /proc/$pid/stat)
    # shellcheck disable=SC2086
    out=$({ /usr/bin/time -f "TIME %U %S" "$loadgen" --bootstrap 127.0.0.1:$port --warmup 0s "$@" $extra; } 2>&1)
    after=$(awk '{print $14 + $15}' /proc/$pid/stat)
    kill $pid
    wait $pid 2> /dev/null || true
    rm -rf "$data"
    line=$(echo "$out" | grep "produce throughput")
    megabytes=$(echo "$line" | sed -E 's/.*messages, ([0-9.]+) MB in.*/\1/')
    rate=$(echo "$line" | awk '{print $5}')
    loadgen_s=$(echo "$out" | grep TIME | awk '{print $2 + $3}')
    python3 -c "
broker_s = ($after - $before) / $tick
print(f'{\"$label\":12} {$rate:8.1f} MB/s  loadgen {$loadgen_s * 1000 / $megabytes:.3f} core-ms/MB  broker {broker_s * 1000 / $megabytes:.3f} core-ms/MB')"
  done
done
