//! Building requests in tests.

use meter_proto::v1::{Kind, Metric, ReportRequest, UsageEvent};
use meter_store::{ProjectUsage, Store};

/// An INCREMENTAL event over the last minute.
pub(crate) fn inc(project: &str, metric: Metric, value: u64) -> UsageEvent {
    let now = meter_e2e::now_ms();
    UsageEvent {
        project_id: project.into(),
        metric: metric as i32,
        kind: Kind::Incremental as i32,
        value,
        start_unix_ms: now - 60_000,
        end_unix_ms: now,
        ..Default::default()
    }
}

/// A request from `source`, in its session 1.
pub(crate) fn report(source: &str, seq: u64, events: Vec<UsageEvent>) -> ReportRequest {
    report_in(source, 1, seq, events)
}

/// A request from `source` in `session`.
pub(crate) fn report_in(source: &str, session: u64, seq: u64, events: Vec<UsageEvent>) -> ReportRequest {
    ReportRequest { source_id: source.into(), source_session: session, batch_seq: seq, events }
}

/// The Kafka records ingest writes for a Report of `projects` (one per
/// partition holding any of them) among `partitions`.
pub(crate) fn records_for(projects: &[&str], partitions: i32) -> u32 {
    let distinct: std::collections::BTreeSet<i32> =
        projects.iter().map(|p| meter_core::partition::partition_of(p, partitions)).collect();
    distinct.len() as u32
}

/// Written bytes of `project` in the totals topic, this cycle and before.
pub(crate) async fn totals_written(p: &meter_e2e::Pipeline, project: &str) -> Option<u64> {
    p.totals().await.get(project).map(|s| s.cycles.values().map(|c| c.values[2]).sum())
}

/// All-time usage of one project, `None` if ClickHouse has nothing of it.
pub(crate) async fn usage_of(store: &Store, project: &str) -> Option<ProjectUsage> {
    store.usage_with_prefix(project).await.expect("query").into_iter().find(|u| u.project_id == project)
}

/// Waits up to 60 s until ClickHouse shows `want` for `project` in the
/// value `pick` reads (`what` names the wait in the failure).
pub(crate) async fn await_usage(store: &Store, project: &str, pick: fn(&ProjectUsage) -> u64, want: u64, what: &str) {
    meter_e2e::eventually(std::time::Duration::from_secs(60), what, || async {
        match usage_of(store, project).await.as_ref().map(pick) {
            Some(got) if got == want => Ok(()),
            got => Err(format!("{got:?} != Some({want})")),
        }
    })
    .await;
}

/// PUTs JSON to the api and returns the answer's status and body.
pub(crate) async fn api_put(url: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().put(url).json(&body).send().await.expect("api reachable");
    (r.status().as_u16(), r.json().await.expect("json answer"))
}

/// GETs from the api.
pub(crate) async fn api_get(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.expect("api reachable");
    (r.status().as_u16(), r.json().await.expect("json answer"))
}

/// POSTs JSON to the api.
pub(crate) async fn api_post(url: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().post(url).json(&body).send().await.expect("api reachable");
    (r.status().as_u16(), r.json().await.expect("json answer"))
}

/// Starts `serve` on a fresh loopback port; returns its base URL.
pub(crate) async fn on_loopback<F, Fut>(serve: F) -> String
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener));
    url
}

/// A Standard Webhooks secret for tests.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Enforcer settings for tests: fast evaluation and retries.
pub(crate) fn fast_enforcer(control_plane_url: &str) -> meter_enforcer::EnforcerConfig {
    meter_enforcer::EnforcerConfig {
        control_plane_url: control_plane_url.to_owned(),
        evaluate_interval_ms: 200,
        webhook_schedule_ms: vec![0, 50, 150],
        ..Default::default()
    }
}

/// Serves `receiver` on a fresh loopback port until `stop`; returns its URL.
pub(crate) async fn receiver_on_loopback(
    receiver: &meter_sim::receivers::WebhookReceiver,
    stop: &tokio_util::sync::CancellationToken,
) -> String {
    let (r, s) = (receiver.clone(), stop.clone());
    on_loopback(move |l| r.serve(l, s)).await
}

/// Serves a control-plane double on a fresh loopback port until `stop`;
/// returns it and its URL.
pub(crate) async fn control_plane_on_loopback(
    stop: &tokio_util::sync::CancellationToken,
) -> (meter_sim::receivers::ControlPlane, String) {
    let cp = meter_sim::receivers::ControlPlane::default();
    let (c, s) = (cp.clone(), stop.clone());
    (cp, on_loopback(move |l| c.serve(l, s)).await)
}

/// The cluster stack's directory (`deploy/local/cluster-test` sets it).
pub(crate) fn stack_dir() -> String {
    std::env::var("METER_STACK_DIR").expect("METER_STACK_DIR: run deploy/local/cluster-test")
}

/// kill -9 of the process in `pid_file` (under the stack dir).
pub(crate) fn kill9(pid_file: &str) {
    let pid = std::fs::read_to_string(format!("{}/{pid_file}", stack_dir())).expect(pid_file);
    let status = std::process::Command::new("kill").args(["-9", pid.trim()]).status().expect("kill");
    assert!(status.success(), "kill -9 {pid_file}");
}

/// The stack starts again what is not running.
pub(crate) fn stack_up() {
    let stack = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/stack");
    let up = std::process::Command::new(stack).arg("up").status().expect("stack up");
    assert!(up.success(), "restarting what was killed");
}

/// Sends `req` until acknowledged, as a client does (the same batch, so
/// counted once); fails after 120 refusals. Returns the refusals.
pub(crate) async fn report_until_acked(
    client: &mut meter_proto::v1::ingest_client::IngestClient<tonic::transport::Channel>,
    req: &ReportRequest,
) -> u32 {
    let mut refused = 0;
    while let Err(e) = client.report(req.clone()).await {
        refused += 1;
        assert!(refused < 120, "batch {} never acknowledged: {e}", req.batch_seq);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    refused
}

/// Waits up to 30 s until the control plane's only suspend call is for
/// `project` (`what` names the wait in a failure).
pub(crate) async fn suspended_alone(cp: &meter_sim::receivers::ControlPlane, project: &str, what: &str) {
    meter_e2e::eventually(std::time::Duration::from_secs(30), what, || async {
        match cp.calls_of("suspend").as_slice() {
            [c] if c.project_id == project => Ok(()),
            calls => Err(format!("{calls:?}")),
        }
    })
    .await;
}
