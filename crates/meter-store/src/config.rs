//! The `[clickhouse]` section of the configuration.

use serde::Deserialize;

/// Where ClickHouse is and which database holds the pipeline's tables.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: String,
    /// Never printed (see the `Debug` impl).
    pub password: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "meter".into(),
            user: "default".into(),
            password: String::new(),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .finish()
    }
}

impl StoreConfig {
    /// A client without a default database (for DDL that creates it).
    pub(crate) fn server_client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            // Validation asks the server for settings 18.16 does not know.
            .with_validation(false)
    }

    /// A client whose queries run in `database`.
    pub(crate) fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(&self.database)
    }
}
