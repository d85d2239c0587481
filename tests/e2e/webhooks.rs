//! Webhook delivery: a receiver failing half the time still gets every
//! alert (same id on each retry); one that always fails ends in the dead
//! letters, and a replay delivers them.

use std::collections::BTreeSet;
use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use meter_sim::receivers::{FailMode, WebhookReceiver};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    api_get, api_post, api_put, control_plane_on_loopback, fast_enforcer, inc, receiver_on_loopback, report, SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_receivers_get_everything_and_dead_letters_replay() {
    let Some(mut p) = Pipeline::start("hooks").await else { return };
    let stop = CancellationToken::new();
    let (_, cp_url) = control_plane_on_loopback(&stop).await;
    let flaky = WebhookReceiver::new(SECRET, FailMode::FirstAttempt);
    let dead = WebhookReceiver::new(SECRET, FailMode::Always);
    let flaky_url = receiver_on_loopback(&flaky, &stop).await;
    let dead_url = receiver_on_loopback(&dead, &stop).await;
    p.start_api().await;
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let api = p.api_url.clone();
    api_put(&format!("{api}/v1/webhooks/flaky"), json!({"url": flaky_url, "secret": SECRET})).await;
    api_put(&format!("{api}/v1/webhooks/dead"), json!({"url": dead_url, "secret": SECRET})).await;
    api_put(&format!("{api}/v1/projects/hook-p/quota"), json!({"plan": null, "quota": {"written_data_bytes": 100}}))
        .await;
    // One batch crosses every threshold at once: 50, 80, 90, 100, exceeded, suspended.
    p.client()
        .await
        .report(report("hook-src", 1, vec![inc("hook-p", Metric::WrittenDataBytes, 150)]))
        .await
        .expect("ack");

    let ids = eventually(Duration::from_secs(30), "the flaky receiver gets all six events", || async {
        let ids: BTreeSet<String> = flaky.accepted().into_iter().map(|d| d.id).collect();
        if ids.len() == 6 {
            Ok(ids)
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    for id in &ids {
        let attempts: Vec<_> = flaky.all().into_iter().filter(|d| &d.id == id).collect();
        assert_eq!(attempts.len(), 2, "{id}: one failed attempt, then the retry");
        assert!(attempts.iter().all(|d| d.verified), "{id}");
        assert_eq!(attempts[0].body, attempts[1].body, "{id}: same event on retry");
    }
    let dead_keys = eventually(Duration::from_secs(30), "six dead letters", || async {
        let (_, b) = api_get(&format!("{api}/v1/webhooks/dead-letters")).await;
        let list = b["dead_letters"].as_array().cloned().unwrap_or_default();
        if list.len() == 6 {
            Ok(list)
        } else {
            Err(b.to_string())
        }
    })
    .await;
    assert!(dead_keys.iter().all(|d| d["endpoint_id"] == "dead" && d["attempts"] == 3), "{dead_keys:?}");
    assert_eq!(dead.all().len(), 18, "three attempts for each of six events");

    dead.set_mode(FailMode::Never);
    let (s, b) = api_post(&format!("{api}/v1/webhooks/dead-letters/replay"), json!({})).await;
    assert_eq!((s, b["replayed"].as_u64()), (200, Some(6)), "{b}");
    eventually(Duration::from_secs(30), "the replay delivers", || async {
        let got: BTreeSet<String> = dead.accepted().into_iter().map(|d| d.id).collect();
        if got == ids {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    let (_, b) = api_get(&format!("{api}/v1/webhooks/dead-letters")).await;
    assert_eq!(b["dead_letters"], json!([]), "{b}");
    // The flaky receiver was not sent the replays.
    assert_eq!(flaky.all().len(), 12);
    stop.cancel();
    p.shutdown().await;
}
