#!/usr/bin/env bash
# Event-log section of `make bench` (scripts/bench.sh calls it): durable
# appends per second through eventlog.Log beside one AppendEvents per call
# on the same store and disk, sealing throughput, query latency p50/p99 for
# an organisation + day over a sealed log of BENCH_EVENTLOG_EVENTS entries
# (default 1,000,000), and verify throughput. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/posthub-bench-eventlog.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$GO" build -o "$tmp/bench-eventlog" ./scripts/bench-eventlog
"$tmp/bench-eventlog" -tmp "$tmp" -events "${BENCH_EVENTLOG_EVENTS:-1000000}" -dur "${BENCH_DUR:-3s}" \
	-writers "${BENCH_EVENTLOG_WRITERS:-256}" -queries "${BENCH_EVENTLOG_QUERIES:-2000}"
echo
echo "Load while measuring: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs."
