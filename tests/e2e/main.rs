//! End-to-end tests against the real local stack: Apache Kafka (KRaft) and
//! ClickHouse, started by `deploy/local/stack up`. Ingest and aggregators run
//! in process, each test on topics and a database of its own.

mod adjustments;
mod aggregators;
mod audit_trail;
mod bad_input;
mod branch_storage;
mod clickhouse_cluster;
mod clickhouse_down;
mod clickhouse_tls;
mod cluster;
mod console;
mod delivery;
mod enforcement;
mod finality;
mod fleet;
mod helpers;
mod history;
mod kafka_down;
mod meterctl;
mod neon_api;
mod openapi;
mod prometheus;
mod quiet_logs;
mod retries;
mod rollup;
mod rollup_outage;
mod schema_sql;
mod security;
mod sources;
mod upgrade;
mod webhooks;
