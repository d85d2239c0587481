"""Replays the statements logged by the local ClickHouse on chDB (see check-sql)."""

import json
import os
import re
import sys
import tempfile
import urllib.request

import chdb
from chdb import session as chs

CREATE_DB = re.compile(r"^\s*CREATE DATABASE IF NOT EXISTS (\w+)", re.I)
# INSERT ... SELECT (the rollup job's): its SELECT is replayed as a query.
INSERT_SELECT = re.compile(r"^\s*INSERT INTO [\w.`]+\s*(?:\([^)]*\))?\s*(SELECT\b.*)$", re.I | re.S)
URL = os.environ.get("METER_CLICKHOUSE_URL", "http://127.0.0.1:8123")


def server(sql):
    req = urllib.request.Request(URL + "/", data=sql.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode()


def kind(query):
    head = query.lstrip().split(None, 2)
    first = head[0].upper() if head else ""
    second = head[1].upper() if len(head) > 1 else ""
    if first == "CREATE" and second == "DATABASE":
        return 0
    if first in ("CREATE", "ALTER", "RENAME", "OPTIMIZE"):
        return 1
    if first in ("SELECT", "WITH"):
        return 2
    return None  # INSERT ... VALUES/FORMAT, DROP, SYSTEM, ...: not replayed


def main():
    # --since UNIX_SECONDS: only what ran from then on (deploy/local/test passes
    # its start, so statements typed into the stack by hand earlier are not
    # taken for the suite's).
    since = 0
    if len(sys.argv) == 3 and sys.argv[1] == "--since" and sys.argv[2].isdigit():
        since = int(sys.argv[2])
    elif len(sys.argv) != 1:
        print("usage: check-sql [--since UNIX_SECONDS]", file=sys.stderr)
        return 2
    server("SYSTEM FLUSH LOGS")
    # type 2: QueryFinish (ran without an error on 18.16). 18.16 does not log
    # the database a query ran in; every test database has the same schema,
    # so the replay puts them all in one, `meter`.
    text = server(
        "SELECT query, min(query_start_time) AS first FROM system.query_log "
        f"WHERE type = 2 AND positionCaseInsensitive(query, 'system.') = 0 AND event_time >= toDateTime({since}) "
        "GROUP BY query ORDER BY first FORMAT JSONEachRow"
    )
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    databases = set()
    for r in rows:
        m = CREATE_DB.match(r["query"])
        if m:
            databases.add(m.group(1))
    qualified = re.compile(r"\b(" + "|".join(map(re.escape, sorted(databases))) + r")\.") if databases else None

    def one_db(query):
        query = CREATE_DB.sub("CREATE DATABASE IF NOT EXISTS meter", query)
        return qualified.sub("meter.", query) if qualified else query

    statements = {}
    skipped = 0
    for r in rows:
        query = r["query"]
        m = INSERT_SELECT.match(query)
        if m:
            query = m.group(1)
        k = kind(query)
        if k is None:
            skipped += 1
            continue
        q = one_db(query)
        # The log's times are whole seconds: within one, a table is created
        # before it is altered (a migration's CREATE and the next one's ALTER).
        creates = 0 if q.lstrip().upper().startswith("CREATE") else 1
        statements.setdefault(q, (k, r["first"], creates, q))
    statements = [(k, first, q) for k, first, _, q in sorted(statements.values())]
    if not any(k == 2 for k, _, _ in statements):
        print("check-sql: system.query_log holds no query of the test suite "
              "(log_queries off, or the suite did not run?)", file=sys.stderr)
        return 1
    engine = chdb.query("SELECT version()", "CSV").bytes().decode().strip().strip('"')
    failures = []
    counts = [0, 0, 0]
    with tempfile.TemporaryDirectory() as path:
        sess = chs.Session(path)
        # The replay has no rows (INSERTs are not replayed), so the rollup
        # job's REPLACE PARTITION finds its staging table empty, which current
        # servers refuse unless told; the job itself never replaces from an
        # empty one (it drops the partition instead).
        sess.query("SET allow_replace_partition_from_empty_source = 1")
        for k, _, query in statements:
            try:
                if k > 0:
                    # Statements the pipeline sends unqualified (the rollup
                    # job's) run in its database.
                    sess.query("USE meter")
                sess.query(query, "Null")
                counts[k] += 1
            except Exception as e:  # chdb raises its own error type
                failures.append((query, str(e).strip().splitlines()[0][:300]))
        sess.close()
    print(
        f"check-sql: {len(statements)} distinct statements of the test suite (from {len(databases)} databases, "
        f"logged by ClickHouse 18.16) replayed on ClickHouse {engine} (chDB {chdb.__version__}): "
        f"{counts[0]} CREATE DATABASE, {counts[1]} other DDL, {counts[2]} queries ran; {len(failures)} refused; "
        f"{skipped} INSERT/DROP/other statements not replayed (an INSERT ... SELECT's SELECT is)"
    )
    for query, err in failures[:20]:
        print(f"  refused: {' '.join(query.split())[:200]}\n    {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
