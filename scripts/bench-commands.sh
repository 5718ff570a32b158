#!/usr/bin/env bash
# "Commands per operation" section of `make bench`: the MongoDB commands each
# hot path sends, counted with mongo-driver's command monitor on FerretDB by
# the budget tests (storage/mongo TestStoreCommandBudget, cmd/posthub
# TestMongoCommandBudget through a real posthub serve). Counts, not timings:
# deterministic for a given code path (the idle row is timer-driven and
# varies by a few). serial = the critical path (commands issued side by side
# count once), writes (serial) = writes in all and on the critical path.
# The "before" column is main at e0535f2, measured by the same tests.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
# The budget tests skip without their servers; here that would print an
# empty table, so they must find them (make bench exports the path).
export POSTHUB_TEST_BIN=${POSTHUB_TEST_BIN:-$PWD/.cache/bin} POSTHUB_TEST_SERVERS=require
out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=""
POSTHUB_COMMANDS_TABLE=$out $GO test -count=1 -run '^TestStoreCommandBudget$' ./storage/mongo >/dev/null 2>&1 || failed="$failed storage/mongo"
POSTHUB_COMMANDS_TABLE=$out $GO test -count=1 -run '^TestMongoCommandBudget$' ./cmd/posthub >/dev/null 2>&1 || failed="$failed cmd/posthub"

echo "## Commands per operation (MongoDB store; serial / total / writes (on the critical path))"
echo
echo "| operation | before (e0535f2) | now | budget |"
echo "|---|---|---|---|"
awk -F'\t' '
  BEGIN {
    before["accept (letter to a citizen)"] = "15 / 16 / 9 (8)"
    before["accept (letter to a receiver system)"] = "16 / 17 / 8 (7)"
    before["drain cycle: fetch (GET /memos/next)"] = "9 / 9 / 1 (1)"
    before["drain cycle: ack (DELETE /memos/{id})"] = "19 / 20 / 6 (5)"
    before["drain cycle (fetch + ack)"] = "28 / 29 / 7 (6)"
    before["viewer mailbox page (5 letters)"] = "15 / 15 / 0"
    before["idle instance, per second"] = "– / 37–57 / 12–18"
    before["Store.sealer step (one letter'"'"'s events; lock held, head known)"] = "9 / 9 / 3 (3)"
    before["Store.sealer step (nothing pending)"] = "5 / 5 / 1 (1)"
    budget["accept (letter to a citizen)"] = "≤ 5 (≤ 3 writes)"
    budget["accept (letter to a receiver system)"] = "≤ 5 (≤ 3 writes)"
    budget["drain cycle (fetch + ack)"] = "≤ 6"
    budget["viewer mailbox page (5 letters)"] = "≤ 2"
    budget["idle instance, per second"] = "≤ 1 (sealer work, not in this table'"'"'s tests)"
    n = split("accept (letter to a citizen)|accept (letter to a receiver system)|drain cycle: fetch (GET /memos/next)|drain cycle: ack (DELETE /memos/{id})|drain cycle (fetch + ack)|viewer mailbox page (5 letters)|idle instance, per second|Store.sealer step (one letter'"'"'s events; lock held, head known)|Store.sealer step (nothing pending)", order, "|")
  }
  { now[$1] = ($1 ~ /^idle/) ? "– / " $3 " / " $4 : $2 " / " $3 " / " $4 " (" $5 ")" }
  END {
    for (i = 1; i <= n; i++) {
      op = order[i]
      name = op; sub(/^Store\./, "", name)
      printf "| %s | %s | %s | %s |\n", name, before[op], (op in now ? now[op] : "n/a"), (op in budget ? budget[op] : "")
    }
  }' "$out"
echo
echo "Store methods on the hot paths (storage/mongo, one call each):"
echo
echo "| Store call | now: serial / total / writes (serial) | commands, in order (\\| = side by side with the one before) |"
echo "|---|---|---|"
awk -F'\t' '$1 ~ /^Store\./ && $1 !~ /sealer/ { name = $1; sub(/^Store\./, "", name); t = $6; gsub(/\|/, "\\|", t)
  printf "| %s | %s / %s / %s (%s) | %s |\n", name, $2, $3, $4, $5, t }' "$out"
echo
if [ -n "$failed" ]; then
  echo "Over budget (the budget tests failed in:$failed); run them with -v."
else
  echo "Every path within its budget (the budget tests passed)."
fi
