#!/usr/bin/env bash
# Storage section of `make bench`: durable message puts, lease+ack cycles and
# the floor they are measured against in the same run — raw 18 KB writes
# followed by fsync on the same disk at the same concurrency. Prints a
# markdown table; ratio = store ops/s ÷ floor ops/s at the same concurrency.
#
# Other backends add rows by defining BenchmarkPutMessage / BenchmarkLeaseAck
# (via storagetest.BenchPutMessage / BenchLeaseAck) in their package and
# listing it in STORAGE_BENCH_PKGS (the floor always comes from storage/bolt,
# whose temp dir lives on the same disk as the embedded default).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
PKGS=${STORAGE_BENCH_PKGS:-./storage/bolt}
BENCHTIME=${STORAGE_BENCHTIME:-3s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for p in $PKGS; do
  $GO test -run '^$' -bench 'Benchmark(PutMessage|LeaseAck|FsyncFloor)' -benchtime "$BENCHTIME" "$p" \
    | awk -v pkg="$(basename "$p")" '/^Benchmark/ {print pkg, $0}' >>"$out"
done
echo "## Storage (18 KB messages, ops/s; floor = write 18 KB + fsync, same disk)"
echo
echo "| backend | operation | writers | ops/s | floor ops/s | ratio |"
echo "|---|---|---|---|---|---|"
awk '
  { pkg=$1; name=$2; sub(/-[0-9]+$/, "", name); split(name, a, "/"); op=a[1]; sub(/^Benchmark/, "", op)
    w=a[2]; sub(/writers=/, "", w)
    for (i=3; i<=NF; i++) if ($(i+1) == "ops/s") v=$i
    if (op == "FsyncFloor") floor[w]=v; else { n++; P[n]=pkg; O[n]=op; W[n]=w; V[n]=v } }
  END {
    for (w in floor) printf "| disk | write+fsync (floor) | %s | %.0f | %.0f | 1.00 |\n", w, floor[w], floor[w]
    for (i=1; i<=n; i++) {
      f = floor[W[i]]
      printf "| %s | %s | %s | %.0f | %.0f | %s |\n", P[i], O[i], W[i], V[i], f, (f > 0 ? sprintf("%.2f", V[i]/f) : "n/a")
    }
  }' "$out"
echo
echo "### bbolt pages per accepted letter (embedded default)"
echo
echo "Bytes of the pages bbolt's commits allocate (every dirty page is written) per letter: when it is applied, when its"
echo "events are sealed (in batches of 1,000, as the sealer does) and when it is fetched and acknowledged (8 pollers, ClaimNext"
echo "+ AckWith with the receipt COMPLETED and the fetch event); letters shaped as the hub makes them (random UUID, 12.7 KB"
echo "MeMo inline, one mailbox delivery, receipt, three events, two counters; 16 writers), on a store already holding that"
echo "many letters. The MeMo itself takes 16 KiB (four pages); the rest grows with the store where a key derived from a random"
echo "UUID dirties a page of its own (the receipt, keyed by the sender's transmission ID, still does)."
echo
echo "| letters stored | KiB written / letter (apply) | page writes / letter (apply) | KiB / letter (sealing its events) | KiB / letter (fetch + ack) |"
echo "|---|---|---|---|---|"
$GO test -run '^$' -bench 'BenchmarkApplyBytesPerLetter' -benchtime 3000x ./storage/bolt | awk '
  /^BenchmarkApplyBytesPerLetter/ { n=$1; sub(/.*stored=/, "", n); sub(/-[0-9]+$/, "", n)
    for (i=2; i<NF; i++) { if ($(i+1) == "KiB/letter") k=$i; if ($(i+1) == "writes/letter") w=$i; if ($(i+1) == "sealKiB/letter") e=$i; if ($(i+1) == "ackKiB/letter") a=$i }
    printf "| %s | %.1f | %.2f | %.1f | %.1f |\n", n, k, w, e, a }'
