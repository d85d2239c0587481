//! Neon's `consumption_metrics` JSON (`{"events": [...]}`), as its
//! pageservers and proxies push it, into the records ingest writes. Pure,
//! so it is unit-tested and fuzzed (`fuzz/`, target `neon_json`).
//!
//! Each event names its project in `project_id` (an addition to Neon's
//! format, which names tenants, timelines and endpoints) and must carry
//! Neon's `idempotency_key`: a request has no batch identity, so the key is
//! what makes a retry harmless. Unknown fields (`tenant_id`, ...) are
//! ignored, as Neon's own collectors do.

use meter_core::keys::check_key;
use meter_core::{cycle::parse_rfc3339, BatchError, Limits, Metric, ProjectId, SourceId, Span};
use serde_json::{Map, Value};

use crate::v1;
use crate::{metric_to_wire, set_wire_span};

/// Our metric for a name in a Neon event: ours, or Neon's where one maps.
pub fn neon_metric(name: &str) -> Option<Metric> {
    match name {
        "proxy_io_bytes_per_client" => Some(Metric::DataTransferBytes),
        "timeline_logical_size" => Some(Metric::LogicalSizeBytes),
        _ => Metric::ALL.iter().copied().find(|m| m.name() == name),
    }
}

fn accepted_metrics() -> String {
    let ours: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    format!("{}, proxy_io_bytes_per_client, timeline_logical_size", ours.join(", "))
}

/// Validates a Neon JSON body into per-project batches, all-or-nothing,
/// with the same limits as a gRPC Report. The batches are `keyed_only`
/// under `source_id` and `session` (drawn per request by the caller).
pub fn validate_neon(
    limits: &Limits,
    body: &[u8],
    source_id: &str,
    session: u64,
    now: i64,
) -> Result<Vec<v1::ProjectBatch>, BatchError> {
    SourceId::check(source_id).map_err(|e| BatchError::batch("source_id", e.to_string()))?;
    let root: Value =
        serde_json::from_slice(body).map_err(|e| BatchError::batch("body", format!("is not valid JSON: {e}")))?;
    let events = match root.get("events") {
        Some(Value::Array(events)) => events,
        Some(_) => return Err(BatchError::batch("events", "must be an array")),
        None => return Err(BatchError::batch("events", "is missing; the body is {\"events\": [...]}")),
    };
    limits.check_batch_len(events.len())?;
    let mut out: Vec<v1::ProjectBatch> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Value::Object(e) = e else { return Err(BatchError::event(i, "events", "must be an object")) };
        let (project_id, w) = event(limits, i, e, now)?;
        match out.iter_mut().find(|b| b.project_id == project_id) {
            Some(b) => b.events.push(w),
            None => out.push(v1::ProjectBatch {
                source_id: source_id.to_owned(),
                batch_seq: 0,
                project_id,
                events: vec![w],
                ingested_unix_ms: now,
                source_session: session,
                keyed_only: true,
            }),
        }
    }
    Ok(out)
}

fn string<'a>(i: usize, e: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, BatchError> {
    match e.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(BatchError::event(i, field, format!("must be a string, got {other}"))),
    }
}

fn required<'a>(i: usize, e: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, BatchError> {
    string(i, e, field)?.ok_or_else(|| BatchError::event(i, field, "is missing"))
}

fn time(i: usize, e: &Map<String, Value>, field: &'static str) -> Result<i64, BatchError> {
    let s = required(i, e, field)?;
    parse_rfc3339(s).ok_or_else(|| BatchError::event(i, field, format!("{s:?} is not an RFC 3339 timestamp")))
}

/// Names the JSON field where the shared checks name the protobuf one.
fn json_field(mut err: BatchError) -> BatchError {
    err.field = match err.field {
        "kind" => "type",
        "start_unix_ms" => "start_time",
        "end_unix_ms" => "stop_time",
        "time_unix_ms" => "time",
        f => f,
    };
    err
}

fn event(limits: &Limits, i: usize, e: &Map<String, Value>, now: i64) -> Result<(String, v1::UsageEvent), BatchError> {
    let project_id = required(i, e, "project_id")?;
    ProjectId::check(project_id).map_err(|err| BatchError::event(i, "project_id", err.to_string()))?;
    let name = required(i, e, "metric")?;
    let metric = neon_metric(name).ok_or_else(|| {
        BatchError::event(i, "metric", format!("unknown metric {name:?}; accepted: {}", accepted_metrics()))
    })?;
    let key = required(i, e, "idempotency_key")?;
    if key.is_empty() {
        return Err(BatchError::event(i, "idempotency_key", "is empty; every event of a JSON request needs one"));
    }
    check_key(i, key)?;
    let value = match e.get("value") {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| BatchError::event(i, "value", format!("must be a non-negative integer, got {n}")))?,
        Some(other) => {
            return Err(BatchError::event(i, "value", format!("must be a non-negative integer, got {other}")))
        }
        None => return Err(BatchError::event(i, "value", "is missing")),
    };
    let span = match required(i, e, "type")? {
        "incremental" => Span::Interval { start_ms: time(i, e, "start_time")?, end_ms: time(i, e, "stop_time")? },
        "absolute" => Span::Instant { time_ms: time(i, e, "time")? },
        other => {
            return Err(BatchError::event(i, "type", format!("{other:?} is neither \"incremental\" nor \"absolute\"")))
        }
    };
    meter_core::check_measure(i, metric, span).map_err(json_field)?;
    limits.check_usage(i, value, span, now).map_err(json_field)?;
    let branch = string(i, e, "branch_id")?.or(string(i, e, "timeline_id")?).unwrap_or_default();
    meter_core::validate::check_branch_id(i, branch).map_err(json_field)?;
    let mut w = v1::UsageEvent {
        endpoint_id: string(i, e, "endpoint_id")?.unwrap_or_default().to_owned(),
        branch_id: branch.to_owned(),
        metric: metric_to_wire(metric) as i32,
        value,
        idempotency_key: key.to_owned(),
        ..Default::default()
    };
    set_wire_span(&mut w, span);
    Ok((project_id.to_owned(), w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_batch;
    use prost::Message;

    const NOW: i64 = 1_795_635_480_000; // 2026-11-25T19:38:00Z

    fn run(body: &str) -> Result<Vec<v1::ProjectBatch>, BatchError> {
        validate_neon(&Limits::default(), body.as_bytes(), "json", 7, NOW)
    }

    #[test]
    fn neon_bodies_become_keyed_batches() {
        let body = r#"{"events": [
            {"metric": "proxy_io_bytes_per_client", "type": "incremental",
             "start_time": "2026-11-25T19:30:00.317310284Z", "stop_time": "2026-11-25T19:37:00Z",
             "idempotency_key": "2026-11-25 19:37:00.1 UTC-1-4019", "value": 12345,
             "endpoint_id": "ep-1", "project_id": "p1", "tenant_id": "5d07d9ce"},
            {"metric": "timeline_logical_size", "type": "absolute", "time": "2026-11-25T19:37:00Z",
             "idempotency_key": "k2", "value": 99, "timeline_id": "tl-1", "project_id": "p2"},
            {"metric": "compute_time_seconds", "type": "incremental", "start_time": "2026-11-25T19:00:00Z",
             "stop_time": "2026-11-25T19:10:00Z", "idempotency_key": "k3", "value": 600, "project_id": "p1"}
        ]}"#;
        let out = run(body).unwrap();
        assert_eq!(out.iter().map(|b| b.project_id.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
        assert!(out.iter().all(|b| b.keyed_only && b.source_session == 7 && b.batch_seq == 0));
        let p1 = decode_batch(&out[0].encode_to_vec()).unwrap();
        assert_eq!(p1.events[0].metric, Metric::DataTransferBytes);
        assert_eq!(p1.events[0].span, Span::Interval { start_ms: NOW - 8 * 60_000 + 317, end_ms: NOW - 60_000 });
        assert_eq!(p1.events[0].idempotency_key.as_deref(), Some("2026-11-25 19:37:00.1 UTC-1-4019"));
        assert_eq!(p1.events[0].endpoint_id.as_deref(), Some("ep-1"));
        let p2 = decode_batch(&out[1].encode_to_vec()).unwrap();
        assert_eq!((p2.events[0].metric, p2.events[0].value), (Metric::LogicalSizeBytes, 99));
        assert_eq!(p2.events[0].branch_id.as_deref(), Some("tl-1"));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let ok = r#""type": "incremental", "start_time": "2026-11-25T19:00:00Z", "stop_time": "2026-11-25T19:01:00Z", "idempotency_key": "k", "project_id": "p""#;
        let cases = [
            ("{", "body: is not valid JSON"),
            ("{}", "events: is missing"),
            (r#"{"events": 3}"#, "events: must be an array"),
            (r#"{"events": [3]}"#, "events[0].events: must be an object"),
            (
                &format!(r#"{{"events": [{{"metric": "written_size", "value": 1, {ok}}}]}}"#),
                "events[0].metric: unknown metric \"written_size\"",
            ),
            (
                &format!(r#"{{"events": [{{"metric": "written_data_bytes", "value": -1, {ok}}}]}}"#),
                "events[0].value: must be a non-negative integer, got -1",
            ),
            (
                &format!(r#"{{"events": [{{"metric": "written_data_bytes", "value": 1.5, {ok}}}]}}"#),
                "events[0].value: must be a non-negative integer, got 1.5",
            ),
            (&format!(r#"{{"events": [{{"metric": "written_data_bytes", {ok}}}]}}"#), "events[0].value: is missing"),
            (
                r#"{"events": [{"metric": "written_data_bytes", "value": 1, "type": "incremental", "start_time": "2026-11-25T19:00:00Z", "stop_time": "2026-11-25T19:01:00Z", "project_id": "p"}]}"#,
                "events[0].idempotency_key: is missing",
            ),
            (
                r#"{"events": [{"metric": "written_data_bytes", "value": 1, "type": "incremental", "start_time": "yesterday", "stop_time": "2026-11-25T19:01:00Z", "project_id": "p", "idempotency_key": "k"}]}"#,
                "events[0].start_time: \"yesterday\" is not an RFC 3339 timestamp",
            ),
            (
                r#"{"events": [{"metric": "written_data_bytes", "value": 1, "type": "incremental", "start_time": "2026-11-25T19:02:00Z", "stop_time": "2026-11-25T19:01:00Z", "project_id": "p", "idempotency_key": "k"}]}"#,
                "events[0].stop_time:",
            ),
            (
                r#"{"events": [{"metric": "written_data_bytes", "value": 1, "type": "absolute", "time": "2026-11-25T19:02:00Z", "project_id": "p", "idempotency_key": "k"}]}"#,
                "events[0].type: written_data_bytes is a counter",
            ),
            (
                r#"{"events": [{"metric": "written_data_bytes", "value": 1, "type": "gauge", "project_id": "p", "idempotency_key": "k"}]}"#,
                "events[0].type: \"gauge\" is neither",
            ),
            (
                r#"{"events": [{"metric": "written_data_bytes", "value": 1, "type": "incremental", "start_time": "2026-11-25T19:00:00Z", "stop_time": "2026-11-25T19:01:00Z", "idempotency_key": "k", "project_id": "a b"}]}"#,
                "events[0].project_id: contains ' '",
            ),
            (
                r#"{"events": [{"metric": "written_data_bytes", "value": 1, "type": "incremental", "start_time": "2020-11-25T19:00:00Z", "stop_time": "2020-11-25T19:01:00Z", "project_id": "p", "idempotency_key": "k"}]}"#,
                "events[0].start_time:",
            ),
        ];
        for (body, want) in cases {
            let err = run(body).unwrap_err().to_string();
            assert!(err.starts_with(want), "{body}: {err}");
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic; what is accepted decodes.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(batches) = validate_neon(&Limits::default(), &body, "json", 1, NOW) {
                for b in batches {
                    proptest::prop_assert!(decode_batch(&b.encode_to_vec()).is_ok());
                }
            }
        }
    }
}
