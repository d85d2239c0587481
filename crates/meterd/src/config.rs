//! The whole configuration of `meterd`.

use std::path::Path;

use meter_aggregator::{AggregatorConfig, LoadConfig};
use meter_api::ApiConfig;
use meter_enforcer::EnforcerConfig;
use meter_ingest::IngestConfig;
use meter_kafka::KafkaConfig;
use meter_runtime::{AdminConfig, SecurityConfig};
use meter_store::StoreConfig;
use serde::Deserialize;

/// Every section; each has defaults, so an empty file is a valid config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) kafka: KafkaConfig,
    pub(crate) clickhouse: StoreConfig,
    pub(crate) ingest: IngestConfig,
    pub(crate) aggregator: AggregatorConfig,
    pub(crate) load: LoadConfig,
    pub(crate) enforcer: EnforcerConfig,
    pub(crate) api: ApiConfig,
    pub(crate) admin: AdminConfig,
    pub(crate) security: SecurityConfig,
}

impl Config {
    /// Defaults, then `path`, then `METER__*` variables.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        meter_runtime::load_config(path, "METER")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    /// `(section, key)` of every `key = value` line of a TOML text.
    fn keys(toml: &str) -> Vec<(String, String)> {
        let mut section = String::new();
        let mut out = Vec::new();
        for line in toml.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_owned();
            } else if let Some((k, _)) = line.split_once(" = ").filter(|_| !line.starts_with('#')) {
                out.push((section.clone(), k.trim().to_owned()));
            }
        }
        out
    }

    #[test]
    fn the_example_config_loads_and_every_key_is_in_the_reference() {
        let example = format!("{REPO}/deploy/local/meterd.toml");
        Config::load(Some(Path::new(&example))).expect("deploy/local/meterd.toml loads");
        let reference = std::fs::read_to_string(format!("{REPO}/docs/configuration.md")).expect("reference");
        let keys = keys(&std::fs::read_to_string(&example).expect("example"));
        assert!(keys.len() > 40, "{keys:?}");
        for (section, key) in keys {
            let documented = reference
                .split(&format!("## `[{section}]`"))
                .nth(1)
                .is_some_and(|s| s.split("\n## ").next().unwrap_or_default().contains(&format!("| `{key}` |")));
            assert!(documented, "[{section}] {key} is not in docs/configuration.md");
        }
    }

    #[test]
    fn the_config_dump_holds_no_secret() {
        let dir = std::env::temp_dir().join(format!("meterd-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("meterd.toml");
        std::fs::write(
            &path,
            "[clickhouse]\npassword = \"ch-Secret-1\"\n[kafka.client]\n\"sasl.password\" = \"kafka-Secret-2\"\n\
             [security]\ntokens_file = \"/etc/meter/tokens.toml\"\n",
        )
        .expect("write");
        let dump = format!("{:#?}", Config::load(Some(&path)).expect("loads"));
        for secret in ["ch-Secret-1", "kafka-Secret-2"] {
            assert!(!dump.contains(secret), "{secret} in `meterd config`:\n{dump}");
        }
        assert!(dump.contains("<redacted>") && dump.contains("/etc/meter/tokens.toml"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_kubernetes_configmap_holds_a_valid_config() {
        let map = std::fs::read_to_string(format!("{REPO}/deploy/kubernetes/configmap.yaml")).expect("configmap");
        let body = map.split("meterd.toml: |\n").nth(1).expect("meterd.toml key");
        let toml: String = body.lines().map(|l| l.strip_prefix("    ").unwrap_or(l)).collect::<Vec<_>>().join("\n");
        let dir = std::env::temp_dir().join(format!("meterd-cm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("meterd.toml"), toml).expect("write");
        let cfg = Config::load(Some(&dir.join("meterd.toml"))).expect("the ConfigMap's meterd.toml loads");
        assert_eq!(cfg.kafka.replication_factor, 3);
        assert!(cfg.security.tokens_file.is_some(), "the cluster config listens on 0.0.0.0: it must authenticate");
        std::fs::remove_dir_all(&dir).ok();
    }
}
