//! The `[clickhouse]` section of the configuration.

use serde::Deserialize;

/// Where ClickHouse is and which database holds the pipeline's tables.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`, or `https://...:8443`
    /// (ClickHouse Cloud, any server behind TLS).
    pub url: String,
    /// For `https://` URLs: a PEM file of the certificates to trust instead
    /// of the system's roots (a private CA, a self-signed server). Empty:
    /// the system's roots.
    pub ca_file: String,
    pub database: String,
    /// A cluster of the server's `remote_servers` (one shard, its
    /// replicas): the migrations then run `ON CLUSTER` and create
    /// replicated tables (docs/schema.md). Empty: one server.
    pub cluster: String,
    pub user: String,
    /// Never printed (see the `Debug` impl).
    pub password: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "http://127.0.0.1:8123".into(),
            ca_file: String::new(),
            database: "meter".into(),
            cluster: String::new(),
            user: "default".into(),
            password: String::new(),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("database", &self.database)
            .field("cluster", &self.cluster)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .finish()
    }
}

impl StoreConfig {
    /// A client without a default database (for DDL that creates it).
    pub(crate) fn server_client(&self) -> crate::Result<clickhouse::Client> {
        let https = self.url.starts_with("https://");
        let client = clickhouse::Client::with_http_client(crate::tls::http_client(&self.ca_file, https)?)
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            // Validation asks the server for settings 18.16 does not know.
            .with_validation(false);
        // A replicated table drops an INSERT whose block equals one of the
        // last ones: off, so every insert lands as on one server (the
        // tables' keys already make a batch written twice count once).
        Ok(if self.cluster.is_empty() { client } else { client.with_setting("insert_deduplicate", "0") })
    }

    /// A client whose queries run in `database`.
    pub(crate) fn client(&self) -> crate::Result<clickhouse::Client> {
        Ok(self.server_client()?.with_database(&self.database))
    }
}
