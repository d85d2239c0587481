//! Ingest alone over Neon JSON (`POST /v1/events`): the same load as the
//! gRPC measurement, each event with a unique idempotency key (JSON
//! requires one), so the ratio is JSON/gRPC for the same events.

use std::fmt::Write as _;
use std::path::Path;

use meter_chaos::StackArgs;
use meter_kafka::KafkaConfig;
use meter_proto::v1::ReportRequest;

use crate::baselines::Rate;
use crate::ours::{measure_ingest_alone, Usage};
use meter_bench::load::{drive, Acked, LoadConfig};

/// Our metric names, by wire code.
const NAMES: [&str; 6] = [
    "",
    "active_time_seconds",
    "compute_time_seconds",
    "written_data_bytes",
    "data_transfer_bytes",
    "logical_size_bytes",
];

/// The Neon JSON body of a Report's events (incremental counters).
pub(crate) fn body(req: &ReportRequest) -> String {
    let mut out = String::with_capacity(req.events.len() * 230);
    out.push_str("{\"events\":[");
    let (mut start, mut stop) = (String::new(), String::new());
    for (i, e) in req.events.iter().enumerate() {
        if i == 0 {
            start = meter_core::cycle::rfc3339(e.start_unix_ms);
            stop = meter_core::cycle::rfc3339(e.end_unix_ms);
        }
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"metric\":\"{}\",\"type\":\"incremental\",\"start_time\":\"{start}\",\"stop_time\":\"{stop}\",\
             \"idempotency_key\":\"{}-{}-{i}\",\"value\":{},\"project_id\":\"{}\"}}",
            NAMES[e.metric as usize], req.source_id, req.batch_seq, e.value, e.project_id
        );
    }
    out.push_str("]}");
    out
}

/// Runs `meterd ingest` alone and drives the load over JSON.
pub(crate) async fn ingest_alone_json(
    load: &LoadConfig,
    meterd: &Path,
    kafka: &KafkaConfig,
    stack: &StackArgs,
    dir: &Path,
) -> anyhow::Result<(Rate, Usage)> {
    measure_ingest_alone(load, meterd, kafka, stack, dir, "json", |ports| async move {
        let url = format!("http://127.0.0.1:{}/v1/events", ports.ingest_http);
        let http = reqwest::Client::builder().pool_max_idle_per_host(load.concurrency).build()?;
        let acked = std::sync::Arc::new(Acked::default());
        let took = drive(load, acked.clone(), move |req: ReportRequest| {
            let (http, url) = (http.clone(), url.clone());
            async move { matches!(http.post(&url).body(body(&req)).send().await, Ok(r) if r.status().is_success()) }
        })
        .await;
        let events = acked.events.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Rate { events, seconds: took.as_secs_f64() })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_neon_json() {
        let load = LoadConfig {
            prefix: "b".into(),
            sources: 1,
            projects_per_source: 3,
            batch: 5,
            concurrency: 1,
            rate: 0,
            duration: std::time::Duration::ZERO,
            keys: false,
        };
        let now = 1_795_635_480_000;
        let b = body(&load.request(0, 0, now));
        let batches = meter_proto::neon::validate_neon(&meter_core::Limits::default(), b.as_bytes(), "json", 1, now)
            .expect("valid");
        assert_eq!(batches.iter().map(|b| b.events.len()).sum::<usize>(), 5);
    }
}
