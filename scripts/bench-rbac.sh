#!/usr/bin/env bash
# RBAC section of `make bench`: authorisation decisions per second on one
# core (the decision as the middleware makes it; and the whole middleware,
# authentication of a session cookie or a system token included), and the
# statistics query latency over a year of counters for 100 organisations.
# Target: >= 200,000 decisions/s on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BENCHTIME=${RBAC_BENCHTIME:-2s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
$GO test -run '^$' -bench 'BenchmarkDecision' -cpu 1 -benchtime "$BENCHTIME" ./rbac >>"$out"
$GO test -run '^$' -bench 'BenchmarkAuthorize' -cpu 1 -benchtime "$BENCHTIME" ./api >>"$out"
$GO test -run '^$' -bench 'BenchmarkStatisticsYear' -cpu 1 -benchtime "$BENCHTIME" ./admin >>"$out"
val() { awk -v u="$2" -v n="$1" '$1 ~ n { for (i=2;i<=NF;i++) if ($(i+1)==u) print $i }' "$out" | head -1; }
echo "## RBAC and statistics (one core)"
echo
echo "| measurement | value | target |"
echo "|---|---|---|"
printf "| casbin enforcer decision (1,000 users, 100 organisations) | %.0f decisions/s | >= 200,000 |\n" "$(val '^BenchmarkDecision' decisions/s)"
printf "| middleware decision (domain from :org + enforcer) | %.0f decisions/s | >= 200,000 |\n" "$(val 'Authorize/decision' decisions/s)"
printf "| whole middleware, session cookie (HMAC + user read + decision) | %.0f requests/s | - |\n" "$(val 'Authorize/middleware-session' requests/s)"
printf "| whole middleware, system token (hash + system read + decision) | %.0f requests/s | - |\n" "$(val 'Authorize/middleware-token' requests/s)"
printf "| statistics, 1 org × 365 days per day (of %s cells) | %s ms/query | - |\n" "$(val 'StatisticsYear/per-day' cells-in-store)" "$(val 'StatisticsYear/per-day' ms/query)"
printf "| statistics, 1 org × 365 days per month × type × channel × system | %s ms/query | - |\n" "$(val 'StatisticsYear/per-month' ms/query)"
