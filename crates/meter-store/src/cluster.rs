//! Replicated ClickHouse: the migrations' statements made for a cluster of
//! the server's `remote_servers` (`ON CLUSTER`, `Replicated*` engines with a
//! ZooKeeper path per database and table), and the checks that the cluster
//! is one the schema supports (one shard, macros `shard` and `replica`).

use crate::{Error, Result};

/// `sql` (a migration's statement, `{db}` standing for the database) as
/// run on one server (`cluster` empty) or on every replica of `cluster`.
pub(crate) fn statement(sql: &str, db: &str, cluster: &str) -> String {
    let sql = sql.replace("{db}", db);
    // An ALTER of a replicated table replicates through ZooKeeper by itself
    // (18.16 also refuses `MODIFY ORDER BY` with `ON CLUSTER`).
    if cluster.is_empty() || !sql.trim_start().starts_with("CREATE") {
        return sql;
    }
    let prefix = format!("{db}.");
    let Some(at) = sql.find(&prefix) else { return sql };
    let name_start = at + prefix.len();
    let name_len = sql[name_start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(0);
    let name_end = name_start + name_len;
    let table = &sql[name_start..name_end];
    let mut out = format!("{} ON CLUSTER {cluster}{}", &sql[..name_end], &sql[name_end..]);
    // Each table's replicas meet at one ZooKeeper path; the macros are the
    // server's own (`<macros>` in its config).
    let path = format!("'/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'");
    out = out.replace("ENGINE = ReplacingMergeTree(", &format!("ENGINE = ReplicatedReplacingMergeTree({path}, "));
    out = out.replace("ENGINE = MergeTree", &format!("ENGINE = ReplicatedMergeTree({path})"));
    out
}

/// `CREATE DATABASE` for one server or every replica of `cluster`.
pub(crate) fn create_database(db: &str, cluster: &str) -> String {
    if cluster.is_empty() {
        format!("CREATE DATABASE IF NOT EXISTS {db}")
    } else {
        format!("CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {cluster}")
    }
}

/// Refuses a cluster this server does not define, one with several shards
/// (one project's rows would have to stay on one shard and reads go through
/// `Distributed` tables: not built), and a server without the macros the
/// tables' ZooKeeper paths use.
pub(crate) async fn check(server: &clickhouse::Client, cluster: &str) -> Result<()> {
    let (shards, replicas): (u64, u64) = server
        .query("SELECT uniqExact(shard_num), count() FROM system.clusters WHERE cluster = ?")
        .bind(cluster)
        .fetch_one()
        .await?;
    if replicas == 0 {
        return Err(Error::Cluster(format!(
            "clickhouse.cluster = {cluster:?} is not a cluster of this server (its <remote_servers> config)"
        )));
    }
    if shards > 1 {
        return Err(Error::Cluster(format!(
            "clickhouse.cluster = {cluster:?} has {shards} shards; only one shard (replicas of it) is supported"
        )));
    }
    let macros: Vec<String> = server
        .query("SELECT macro FROM system.macros WHERE macro IN ('shard', 'replica') ORDER BY macro")
        .fetch_all()
        .await?;
    if macros != ["replica", "shard"] {
        return Err(Error::Cluster(format!(
            "clickhouse.cluster = {cluster:?} needs the server's <macros> `shard` and `replica` (it has {macros:?})"
        )));
    }
    Ok(())
}

/// Refuses a database made for the other shape: replicated tables read
/// without `cluster` (a new table would land on one replica), or one
/// server's tables with it (they would never replicate).
pub(crate) fn check_engine(db: &str, engine: &str, cluster: &str) -> Result<()> {
    let replicated = engine.starts_with("Replicated");
    match (replicated, cluster.is_empty()) {
        (true, true) => Err(Error::Cluster(format!(
            "database {db} holds replicated tables ({engine}): set clickhouse.cluster to the cluster they were made on"
        ))),
        (false, false) => Err(Error::Cluster(format!(
            "clickhouse.cluster = {cluster:?}, but database {db} was made on one server ({engine} tables): \
             a cluster is set for a new database (docs/schema.md)"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_statements_are_unchanged() {
        let sql = "CREATE TABLE IF NOT EXISTS {db}.t (a UInt8) ENGINE = MergeTree ORDER BY a";
        assert_eq!(statement(sql, "m", ""), "CREATE TABLE IF NOT EXISTS m.t (a UInt8) ENGINE = MergeTree ORDER BY a");
        assert_eq!(create_database("m", ""), "CREATE DATABASE IF NOT EXISTS m");
    }

    #[test]
    fn tables_are_created_on_the_cluster_and_replicated() {
        let sql = "CREATE TABLE IF NOT EXISTS {db}.usage_hourly (\n version UInt64\n) \
                   ENGINE = ReplacingMergeTree(version)\n ORDER BY x";
        assert_eq!(
            statement(sql, "m", "c"),
            "CREATE TABLE IF NOT EXISTS m.usage_hourly ON CLUSTER c (\n version UInt64\n) ENGINE = \
             ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/m/usage_hourly', '{replica}', version)\n ORDER BY x"
        );
        let sql = "CREATE TABLE IF NOT EXISTS {db}.months AS {db}.days\n ENGINE = MergeTree\n ORDER BY x";
        assert_eq!(
            statement(sql, "m", "c"),
            "CREATE TABLE IF NOT EXISTS m.months ON CLUSTER c AS m.days\n ENGINE = \
             ReplicatedMergeTree('/clickhouse/tables/{shard}/m/months', '{replica}')\n ORDER BY x"
        );
        assert_eq!(create_database("m", "c"), "CREATE DATABASE IF NOT EXISTS m ON CLUSTER c");
    }

    #[test]
    fn alters_replicate_through_the_tables() {
        let sql = "ALTER TABLE {db}.usage_hourly ADD COLUMN b String";
        assert_eq!(statement(sql, "m", "c"), "ALTER TABLE m.usage_hourly ADD COLUMN b String");
    }

    #[test]
    fn every_migration_is_replicated_on_a_cluster() {
        for (v, _, statements) in crate::MIGRATIONS {
            for sql in *statements {
                let out = statement(sql, "m", "c");
                assert_eq!(out.contains(" ON CLUSTER c"), out.starts_with("CREATE"), "migration {v}: {out}");
                if out.contains("ENGINE") {
                    assert!(out.contains("ENGINE = Replicated"), "migration {v}: {out}");
                    assert_eq!(out.matches("ENGINE").count(), 1, "migration {v}: {out}");
                }
            }
        }
    }

    #[test]
    fn a_database_of_the_other_shape_is_refused() {
        assert!(check_engine("m", "ReplicatedMergeTree", "c").is_ok());
        assert!(check_engine("m", "MergeTree", "").is_ok());
        let e = check_engine("m", "ReplicatedMergeTree", "").unwrap_err().to_string();
        assert!(e.contains("set clickhouse.cluster"), "{e}");
        let e = check_engine("m", "MergeTree", "c").unwrap_err().to_string();
        assert!(e.contains("made on one server"), "{e}");
    }
}
