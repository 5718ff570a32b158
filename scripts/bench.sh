#!/usr/bin/env bash
# make bench: performance yardsticks, one markdown table per section, each
# measured in this run beside its floor (xmllint, raw disk, ...). Numbers are
# printed, never asserted: timed tests flake, a table is read.
#
# Adding a section: define a function section_<name> that prints a "## "
# header and its table, and add <name> to SECTIONS. `scripts/bench.sh memo`
# runs only the named sections.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
GO=${GO:-go}

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/posthub-bench.XXXXXX")
trap 'rm -rf "$BENCH_TMP"' EXIT

# MeMo validation: in-process throughput of the official full example, and
# time and peak memory of a ~99 MB message, against xmllint --huge --schema.
section_memo() {
	echo "## MeMo validation (memo.Validator vs xmllint)"
	echo
	"$GO" build -o "$BENCH_TMP/bench-memo" ./scripts/bench-memo
	"$BENCH_TMP/bench-memo" -tmp "$BENCH_TMP" -big "${BENCH_MEMO_MIB:-99}" -dur "${BENCH_DUR:-3s}"
	echo
	echo "Load while measuring: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs."
}

# Storage: durable puts and lease+ack against raw write+fsync (scripts/bench-storage.sh).
section_storage() { GO="$GO" scripts/bench-storage.sh; }

# Send: end-to-end accepted MeMos over HTTP, latency, 99 MB accept (scripts/bench-send.sh).
section_send() { scripts/bench-send.sh; }

# RBAC: authorisation decisions/s and statistics latency (scripts/bench-rbac.sh).
section_rbac() { GO="$GO" scripts/bench-rbac.sh; }

# Event log: appends/s, query p50/p99 over 1,000,000 events, verify throughput (scripts/bench-eventlog.sh).
section_eventlog() { GO="$GO" scripts/bench-eventlog.sh; }

# Retrieval: messages drained/s by 1 and 5 receiver systems, bolt and FerretDB (scripts/bench-retrieval.sh).
section_retrieval() { GO="$GO" scripts/bench-retrieval.sh; }

# Commands per operation on the MongoDB store, before and now (scripts/bench-commands.sh).
section_commands() { GO="$GO" scripts/bench-commands.sh; }

SECTIONS=(memo storage send rbac eventlog retrieval commands)

selected=("$@")
[ ${#selected[@]} -eq 0 ] && selected=("${SECTIONS[@]}")
for s in "${selected[@]}"; do
	"section_$s"
	echo
done
