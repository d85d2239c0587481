#!/usr/bin/env bash
# One project's 30 days of hours as read on a live day, on a database written
# by meter-bench-fleet-month (October 2026): 16 days from the month's copy
# (usage_hourly_rollup_months), 6 from day partitions (usage_hourly_rollup),
# the last 8 (not final yet) from the per-batch rows, deduplicated with FINAL
# or by grouping their key (what the API does for a page of projects).
# The same SQL the store sends (Spans::sql), timed by the server per query.
#
#   benches/live-month-read.sh DATABASE [REQUESTS]    (clickhouse-client on the local stack)
set -euo pipefail
db=${1:?usage: live-month-read.sh DATABASE [REQUESTS]}
n=${2:-100}
cols="project_id, metric, hour, branch_id, value, last_value, last_time_ms"
at() { echo "toDateTime('2026-$1 00:00:00')"; }
ids=$(clickhouse-client -d "$db" -q "SELECT DISTINCT project_id FROM usage_daily_rollup
  WHERE day = $(at 10-03) AND cityHash64(project_id) % 1000 = 3 LIMIT $n")
for dedup in final grouped; do
  for p in $ids; do
    range="hour >= $(at 10-24) AND hour < $(at 11-01) AND project_id IN ('$p')"
    if [ "$dedup" = final ]; then
      batches="SELECT $cols FROM usage_hourly FINAL WHERE $range"
    else
      batches="SELECT project_id, metric, hour, branch_id, v AS value, lv AS last_value, lt AS last_time_ms
        FROM (SELECT project_id, metric, hour, branch_id, argMax(value, version) AS v,
          argMax(last_value, version) AS lv, argMax(last_time_ms, version) AS lt
          FROM usage_hourly WHERE $range GROUP BY project_id, metric, hour, source_id, batch_seq, branch_id)"
    fi
    rows="SELECT $cols FROM usage_hourly_rollup_months WHERE hour >= $(at 10-02) AND hour < $(at 10-18) AND project_id IN ('$p')
      UNION ALL SELECT $cols FROM usage_hourly_rollup WHERE hour >= $(at 10-18) AND hour < $(at 10-24) AND project_id IN ('$p')
      UNION ALL $batches"
    clickhouse-client -d "$db" --time -q "SELECT project_id, toStartOfHour(hour) AS h, branch_id, sum(value)
      FROM ($rows) GROUP BY project_id, h, branch_id FORMAT Null" 2>&1
  done | sort -n | awk -v d="$dedup" '{a[NR] = $1 * 1000}
    END { printf "per-batch rows by %-8s p50 %5.1f ms  p99 %5.1f ms  (%d requests)\n", d, a[int(NR * 0.5)], a[int(NR * 0.99)], NR }'
done
