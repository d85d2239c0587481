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

/// A request from `source`.
pub(crate) fn report(source: &str, seq: u64, events: Vec<UsageEvent>) -> ReportRequest {
    ReportRequest { source_id: source.into(), batch_seq: seq, events }
}

/// All-time usage of one project, `None` if ClickHouse has nothing of it.
pub(crate) async fn usage_of(store: &Store, project: &str) -> Option<ProjectUsage> {
    store.usage_with_prefix(project).await.expect("query").into_iter().find(|u| u.project_id == project)
}
