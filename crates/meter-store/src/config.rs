//! The `[clickhouse]` section of the configuration.

use serde::Deserialize;

/// Where ClickHouse is and which database holds the pipeline's tables.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`, or `https://...:8443`
    /// (ClickHouse Cloud, any server behind TLS). With `cluster`: the
    /// replicas, comma-separated; connections go to the first that accepts
    /// and stay with it until it refuses one (`failover.rs`).
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
    /// The URLs `url` lists: one server, or the replicas of `cluster`.
    pub(crate) fn urls(&self) -> crate::Result<Vec<hyper::Uri>> {
        let named = |e: &dyn std::fmt::Display| crate::Error::Config(format!("clickhouse.url {:?}: {e}", self.url));
        let listed: Vec<&str> = self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        if listed.is_empty() {
            return Err(named(&"is empty"));
        }
        if listed.len() > 1 && self.cluster.is_empty() {
            // Independent servers would each get part of the rows.
            return Err(named(&"several servers need clickhouse.cluster (they must be replicas of one shard)"));
        }
        let https = listed[0].starts_with("https://");
        let mut out = Vec::new();
        for u in listed {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(named(&format!("{u}: not an http:// or https:// URL")));
            }
            if u.starts_with("https://") != https {
                return Err(named(&"mixes http:// and https:// replicas"));
            }
            out.push(u.parse().map_err(|e| named(&format!("{u}: {e}")))?);
        }
        Ok(out)
    }

    /// A client without a default database (for DDL that creates it).
    pub(crate) fn server_client(&self) -> crate::Result<clickhouse::Client> {
        let urls = self.urls()?;
        let first = urls[0].to_string();
        let client = clickhouse::Client::with_http_client(crate::tls::http_client(&self.ca_file, urls)?)
            .with_url(first.trim_end_matches('/'))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(url: &str, cluster: &str) -> StoreConfig {
        StoreConfig { url: url.into(), cluster: cluster.into(), ..StoreConfig::default() }
    }

    #[test]
    fn replicas_are_listed_comma_separated_and_need_a_cluster() {
        let urls = with("http://a:8123, http://b:8124,", "meter").urls().expect("two replicas");
        assert_eq!(
            urls.iter().map(|u| u.authority().expect("host").as_str()).collect::<Vec<_>>(),
            ["a:8123", "b:8124"]
        );
        assert_eq!(with("https://c.example:8443", "").urls().expect("one server").len(), 1);
        for (url, cluster, says) in [
            ("http://a:8123,http://b:8124", "", "several servers need clickhouse.cluster"),
            ("http://a:8123,https://b:8443", "meter", "mixes http:// and https://"),
            ("a:8123", "", "not an http:// or https:// URL"),
            (" , ", "", "is empty"),
        ] {
            let e = with(url, cluster).urls().expect_err(url).to_string();
            assert!(e.contains("clickhouse.url") && e.contains(says), "{url}: {e}");
        }
    }
}
