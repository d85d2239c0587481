//! Enforcement never waits for ClickHouse. The load role and the api of
//! this pipeline point at a port where nothing answers (ClickHouse down, as
//! far as they can tell; the shared server keeps serving the other tests):
//! a quota is crossed, the project is suspended and CheckQuota denies, and
//! nothing has reached ClickHouse yet. Then the load role reaches the real
//! server and the history is exact.

use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use meter_store::StoreConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{api_get, api_put, control_plane_on_loopback, fast_enforcer, inc, report, suspended_alone};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_is_enforced_while_clickhouse_is_unreachable_and_history_catches_up_exactly() {
    let Some(mut p) = Pipeline::start("chdown").await else { return };
    let stop = CancellationToken::new();
    let (cp, cp_url) = control_plane_on_loopback(&stop).await;
    let real = p.store_cfg.clone();
    let down = StoreConfig { url: "http://127.0.0.1:1".into(), ..real.clone() };
    p.start_load(&down);
    p.store_cfg = down;
    p.start_api().await;
    p.store_cfg = real.clone();
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let api = p.api_url.clone();
    api_put(&format!("{api}/v1/projects/chd-p/quota"), json!({"plan": null, "quota": {"written_data_bytes": 100}}))
        .await;

    let mut client = p.client().await;
    for seq in 1..=3u64 {
        let events = vec![inc("chd-p", Metric::WrittenDataBytes, 40), inc("chd-q", Metric::WrittenDataBytes, 7)];
        client.report(report("chd-src", seq, events)).await.expect("ack");
    }
    suspended_alone(&cp, "chd-p", "chd-p suspended with ClickHouse unreachable").await;
    // The api learns of the suspension from the enforcer's record, written
    // after the control plane's call: until then it denies as over quota.
    let (_, check) = api_get(&format!("{api}/v1/projects/chd-p/check")).await;
    assert_eq!(check["allowed"], json!(false), "{check}");
    eventually(Duration::from_secs(30), "CheckQuota says suspended", || async {
        let (_, check) = api_get(&format!("{api}/v1/projects/chd-p/check")).await;
        if check["allowed"] == json!(false) && check["reason"] == json!("suspended") {
            Ok(())
        } else {
            Err(check.to_string())
        }
    })
    .await;
    let (_, status) = api_get(&format!("{api}/v1/projects/chd-p/status")).await;
    assert_eq!(status["usage"]["written_data_bytes"], json!(120), "{status}");
    // The rows wait in Kafka: none is in ClickHouse yet.
    assert!(p.store.usage_with_prefix("chd-").await.expect("query").is_empty(), "rows loaded while unreachable");

    // ClickHouse back (for the load role): every row arrives, once.
    p.start_load(&real);
    let usage = eventually(Duration::from_secs(30), "history complete", || async {
        let rows = p.store.usage_with_prefix("chd-").await.map_err(|e| e.to_string())?;
        let got: Vec<(String, u64)> =
            rows.iter().map(|u| (u.project_id.clone(), u.get(meter_core::Metric::WrittenDataBytes))).collect();
        if got == [("chd-p".to_owned(), 120), ("chd-q".to_owned(), 21)] {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    assert_eq!(usage.len(), 2);
    // And stays exact: a restarted load role reads the rows again from its
    // committed offsets at most, never counting one twice.
    p.stop_load().await;
    p.start_load(&real);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = p.store.usage_with_prefix("chd-").await.expect("query");
    let again: Vec<u64> = again.iter().map(|u| u.get(meter_core::Metric::WrittenDataBytes)).collect();
    assert_eq!(again, [120, 21]);
    stop.cancel();
    p.shutdown().await;
}
