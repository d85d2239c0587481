//! Command-line options naming the local stack and the `meterd` binary,
//! shared by the harnesses that drive them (`meter-chaos`, `meter-bench`).

use std::path::PathBuf;

/// Where the stack and `meterd` are.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// The meterd binary.
    #[arg(long, default_value = "target/release/meterd")]
    pub meterd: PathBuf,
    /// The local stack's directory (pid files).
    #[arg(long, env = "METER_STACK_DIR", default_value = ".stack")]
    pub stack_dir: PathBuf,
    #[arg(long, env = "METER_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, env = "METER_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    /// `clickhouse.cluster` of a replicated ClickHouse (`deploy/local/stack env`
    /// prints it when METER_STACK_CLICKHOUSE_REPLICAS > 1).
    #[arg(long, env = "METER_CLICKHOUSE_CLUSTER", default_value = "")]
    pub clickhouse_cluster: String,
    /// Every replica's URL, comma-separated (the first: `clickhouse_url`).
    #[arg(long, env = "METER_CLICKHOUSE_REPLICA_URLS", default_value = "")]
    pub clickhouse_replica_urls: String,
}

impl StackArgs {
    /// The stack's ClickHouse for `database`: on a replicated one, every
    /// replica (roles fail over between them) and its cluster; else the
    /// one server.
    pub fn store(&self, database: &str) -> meter_store::StoreConfig {
        let replicated = !self.clickhouse_cluster.is_empty() && !self.clickhouse_replica_urls.is_empty();
        meter_store::StoreConfig {
            url: if replicated { self.clickhouse_replica_urls.clone() } else { self.clickhouse_url.clone() },
            database: database.to_owned(),
            cluster: self.clickhouse_cluster.clone(),
            ..meter_store::StoreConfig::default()
        }
    }
}
