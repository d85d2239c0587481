//! The whole configuration of `meterd`.

use std::path::Path;

use meter_aggregator::AggregatorConfig;
use meter_api::ApiConfig;
use meter_enforcer::EnforcerConfig;
use meter_ingest::IngestConfig;
use meter_kafka::KafkaConfig;
use meter_runtime::AdminConfig;
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
    pub(crate) enforcer: EnforcerConfig,
    pub(crate) api: ApiConfig,
    pub(crate) admin: AdminConfig,
}

impl Config {
    /// Defaults, then `path`, then `METER__*` variables.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        meter_runtime::load_config(path, "METER")
    }
}
