//! ClickHouse over `https://`: the local server's TLS port, with a
//! certificate signed by the CA `deploy/local/stack` made. Trusting that CA
//! (`clickhouse.ca_file`), the schema is migrated and rows are written and
//! read back; trusting only the system's roots, the connection is refused
//! (so the certificate really is checked).

use meter_e2e::{unique, Stack};
use meter_store::{Store, StoreConfig, UsageRow};

#[tokio::test]
async fn rows_are_written_and_read_through_https_with_a_configured_ca() {
    let Some(stack) = Stack::available().await else { return };
    assert!(
        std::path::Path::new(&stack.clickhouse_ca_file).exists(),
        "{} missing: deploy/local/stack up makes it (restart the stack if it predates TLS)",
        stack.clickhouse_ca_file
    );
    let cfg = StoreConfig {
        url: stack.clickhouse_https_url.clone(),
        ca_file: stack.clickhouse_ca_file.clone(),
        database: format!("e2e_{}", unique("tls")),
        ..StoreConfig::default()
    };
    let version = meter_store::migrate(&cfg).await.expect("migrating over https");
    assert!(!version.is_empty());
    let store = Store::new(&cfg).expect("store");
    let rows: Vec<UsageRow> = (1..=3u64)
        .map(|i| UsageRow {
            project_id: "tls-p".into(),
            metric: 3, // written_data_bytes
            hour: 1_764_500_400,
            source_id: "tls-src/0001".into(),
            batch_seq: i,
            value: 100 * i,
            last_value: 0,
            last_time_ms: 1_764_500_400_000,
            version: i,
            branch_id: String::new(),
        })
        .collect();
    store.write_usage(&rows).await.expect("insert over https");
    let usage = store.usage_with_prefix("tls-").await.expect("query over https");
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].get(meter_core::Metric::WrittenDataBytes), 600);

    let untrusted = StoreConfig { ca_file: String::new(), ..cfg };
    let err = meter_store::migrate(&untrusted).await.expect_err("a certificate of an unknown CA is refused");
    assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{err:?}");
}
