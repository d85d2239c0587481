//! Versioned schema migrations, recorded in `schema_migrations`. Each runs
//! once, in order; every statement is idempotent so a crash between a
//! migration and its record is harmless.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::{cluster, Error, Result, StoreConfig};

/// `(version, name, statements)`; `{db}` stands for the database. A
/// statement `ADD COLUMN` is skipped when the column exists (ClickHouse
/// 18.16 has no `ADD COLUMN IF NOT EXISTS`).
pub const MIGRATIONS: &[(u32, &str, &[&str])] = &[
    (
        1,
        "usage_hourly",
        &[
            // One row per (project, metric, hour, source, batch): a batch counted
            // twice (replay after a crash) writes the same key again, and the
            // ReplacingMergeTree keeps one. Queries read it with FINAL, which
            // gives the exact answer whether or not the merge has happened.
            "CREATE TABLE IF NOT EXISTS {db}.usage_hourly (
            project_id String,
            metric Enum8('active_time_seconds' = 1, 'compute_time_seconds' = 2,
                         'written_data_bytes' = 3, 'data_transfer_bytes' = 4,
                         'logical_size_bytes' = 5),
            hour DateTime('UTC'),
            source_id String,
            batch_seq UInt64,
            value UInt64,
            last_value UInt64,
            last_time_ms Int64,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(hour)
        ORDER BY (project_id, metric, hour, source_id, batch_seq)",
        ],
    ),
    (
        2,
        "usage_hourly_branch_id",
        &[
            // Storage is kept per branch: a batch's readings of two branches
            // in one hour are two rows, so the branch joins the sorting key
            // (a column added in the same ALTER may; the primary key stays).
            // No DEFAULT: ClickHouse refuses a key column with one; a String
            // column reads as '' in the rows written before.
            "ALTER TABLE {db}.usage_hourly ADD COLUMN branch_id String AFTER batch_seq,
             MODIFY ORDER BY (project_id, metric, hour, source_id, batch_seq, branch_id)",
        ],
    ),
    (
        3,
        "usage_hourly_byte_hours",
        &[
            // Storage held over time (byte-hours), written by the aggregator
            // as rows of their own; adding an Enum8 value rewrites no data.
            "ALTER TABLE {db}.usage_hourly MODIFY COLUMN metric Enum8('active_time_seconds' = 1,
                'compute_time_seconds' = 2, 'written_data_bytes' = 3, 'data_transfer_bytes' = 4,
                'logical_size_bytes' = 5, 'logical_size_bytes_hour' = 6)",
        ],
    ),
    (
        4,
        "usage_adjustments",
        &[
            // Corrections the aggregator applied: one row per (project, key),
            // signed; written again after a load crash, it replaces itself.
            "CREATE TABLE IF NOT EXISTS {db}.usage_adjustments (
            project_id String,
            metric Enum8('active_time_seconds' = 1, 'compute_time_seconds' = 2,
                         'written_data_bytes' = 3, 'data_transfer_bytes' = 4),
            hour DateTime('UTC'),
            idempotency_key String,
            delta Int64,
            cycle_wide UInt8,
            reason String,
            actor String,
            created_ms Int64,
            request_id String,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(hour)
        ORDER BY (project_id, idempotency_key)",
        ],
    ),
    (
        5,
        "pipeline_watermarks",
        &[
            // The latest probe loaded per usage.events partition: merges keep
            // one row each; readers take max() and need no FINAL.
            "CREATE TABLE IF NOT EXISTS {db}.pipeline_watermarks (
            partition UInt32,
            written_ms Int64
        ) ENGINE = ReplacingMergeTree(written_ms)
        ORDER BY partition",
        ],
    ),
    (
        6,
        "usage_rollups",
        &[
            // Final days compacted: one row per (project, metric, hour,
            // branch) and per (project, metric, day, branch), partitioned by
            // day so that the rollup job replaces a day whole and atomically
            // (REPLACE PARTITION from a staging table): never read with FINAL.
            "CREATE TABLE IF NOT EXISTS {db}.usage_hourly_rollup (
            project_id String,
            metric Enum8('active_time_seconds' = 1, 'compute_time_seconds' = 2,
                         'written_data_bytes' = 3, 'data_transfer_bytes' = 4,
                         'logical_size_bytes' = 5, 'logical_size_bytes_hour' = 6),
            hour DateTime('UTC'),
            branch_id String,
            value UInt64,
            last_value UInt64,
            last_time_ms Int64
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMMDD(hour)
        ORDER BY (project_id, metric, hour, branch_id)",
            "CREATE TABLE IF NOT EXISTS {db}.usage_daily_rollup (
            project_id String,
            metric Enum8('active_time_seconds' = 1, 'compute_time_seconds' = 2,
                         'written_data_bytes' = 3, 'data_transfer_bytes' = 4,
                         'logical_size_bytes' = 5, 'logical_size_bytes_hour' = 6),
            day DateTime('UTC'),
            branch_id String,
            value UInt64,
            last_value UInt64,
            last_time_ms Int64
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMMDD(day)
        ORDER BY (project_id, metric, day, branch_id)",
            // One row per day rolled up (again, after a redo): the rollups
            // hold every day before the latest one's end, and usage_hourly
            // is read only from there on.
            "CREATE TABLE IF NOT EXISTS {db}.rollup_days (
            day DateTime('UTC'),
            rolled_ms Int64,
            hourly_rows UInt64,
            daily_rows UInt64
        ) ENGINE = MergeTree
        ORDER BY day",
        ],
    ),
    (
        7,
        "usage_hourly_rollup_months",
        &[
            // The hourly rollup's rows of a month copied into one partition
            // (one part), replaced whole like a day, each week of rolled days
            // and when the month is whole. A read of a month's hours opens
            // one part here instead of one per day (decision 0012). Its
            // columns are the hourly rollup's; its partitions are months.
            "CREATE TABLE IF NOT EXISTS {db}.usage_hourly_rollup_months AS {db}.usage_hourly_rollup
            ENGINE = MergeTree
            PARTITION BY toYYYYMM(hour)
            ORDER BY (project_id, metric, hour, branch_id)",
            // One row per copy of a month: its days before `through`, as
            // rolled when they had `day_rolls` records in rollup_days;
            // `loaded_ms`: how far ClickHouse was loaded then (the clock its
            // day partitions are dropped by).
            "CREATE TABLE IF NOT EXISTS {db}.rollup_months (
            month DateTime('UTC'),
            through DateTime('UTC'),
            compacted_ms Int64,
            loaded_ms Int64,
            day_rolls UInt64,
            hourly_rows UInt64
        ) ENGINE = MergeTree
        ORDER BY month",
        ],
    ),
];

/// True when `sql` adds a column `usage_hourly` already has.
async fn column_exists(server: &clickhouse::Client, db: &str, sql: &str) -> Result<bool> {
    let Some(rest) = sql.split("ADD COLUMN ").nth(1) else { return Ok(false) };
    let column = rest.split_whitespace().next().unwrap_or_default();
    let n: u64 = server
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = 'usage_hourly' AND name = ?")
        .bind(db)
        .bind(column)
        .fetch_one()
        .await?;
    Ok(n > 0)
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Applied {
    version: u32,
}

#[derive(Debug, Row, Serialize)]
struct Record<'a> {
    version: u32,
    name: &'a str,
}

/// The table recording the migrations applied (replicated on a cluster).
const SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32, name String, applied_at DateTime('UTC') DEFAULT now()
) ENGINE = MergeTree ORDER BY version";

/// Creates the database and applies every migration not yet recorded.
/// With `cluster` set, on every replica (`ON CLUSTER`, replicated tables).
/// Returns the server's version string.
pub async fn migrate(cfg: &StoreConfig) -> Result<String> {
    let server = cfg.server_client()?;
    let version: String = server.query("SELECT version()").fetch_one().await?;
    let (db, on) = (&cfg.database, cfg.cluster.as_str());
    if !on.is_empty() {
        cluster::check(&server, on).await?;
    }
    // Made only when missing: `ON CLUSTER` waits for every replica, and a
    // role must start while one is down.
    let made: Vec<String> = server
        .query("SELECT engine FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
        .bind(db)
        .fetch_all()
        .await?;
    match made.first() {
        Some(engine) => cluster::check_engine(db, engine, on)?,
        None => {
            server.query(&cluster::create_database(db, on)).execute().await?;
            server.query(&cluster::statement(SCHEMA_MIGRATIONS, db, on)).execute().await?;
        }
    }
    let client = server.clone().with_database(db);
    let applied: Vec<u32> = client
        .query("SELECT version FROM schema_migrations")
        .fetch_all::<Applied>()
        .await?
        .into_iter()
        .map(|a| a.version)
        .collect();
    for &(v, name, statements) in MIGRATIONS {
        if applied.contains(&v) {
            continue;
        }
        for sql in statements {
            let sql = cluster::statement(sql, db, on);
            if column_exists(&server, db, &sql).await? {
                continue;
            }
            server.query(&sql).execute().await.map_err(|source| Error::Migration { version: v, name, source })?;
        }
        let mut ins = client.insert::<Record<'_>>("schema_migrations").await?;
        ins.write(&Record { version: v, name }).await?;
        ins.end().await?;
        tracing::info!(version = v, name, database = %db, "store.migration_applied");
    }
    Ok(version)
}
