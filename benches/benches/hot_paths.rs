//! Micro-benchmarks of the hot paths, per batch of 1,000 events:
//! decoding and validating a Report (ingest), encoding its per-project
//! records, aggregating a batch into a project's state, and evaluating a
//! project's quota (enforcer).
//!
//! `cargo bench -p meter-bench --bench hot_paths`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meter_core::aggregate::Retention;
use meter_core::enforce::{evaluate, Usage};
use meter_core::{Batch, Limits, ProjectId, ProjectState, Quota, SourceId, DEFAULT_THRESHOLDS};
use meter_proto::v1::{Kind, ReportRequest, UsageEvent};
use meter_proto::{decode_batch, encode_batch, event_from_wire};
use prost::Message;

const EVENTS: usize = 1000;

fn request(now: i64, projects: usize) -> ReportRequest {
    let events = (0..EVENTS)
        .map(|k| UsageEvent {
            project_id: format!("bench-p{:05}", k % projects),
            metric: 1 + ((k / projects) % 4) as i32,
            kind: Kind::Incremental as i32,
            value: 1 + (k % 7) as u64,
            start_unix_ms: now - 1000,
            end_unix_ms: now,
            ..Default::default()
        })
        .collect();
    ReportRequest { source_id: "bench-src".into(), batch_seq: 1, events }
}

fn validate(req: &ReportRequest, now: i64) -> Vec<Batch> {
    let limits = Limits::default();
    let source = SourceId::new(req.source_id.clone()).expect("id");
    limits.check_batch_len(req.events.len()).expect("len");
    let events = req
        .events
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let e = event_from_wire(i, w, None).expect("valid");
            limits.check_event(i, &e, now).expect("valid");
            e
        })
        .collect();
    Batch::split_by_project(&source, req.batch_seq, events, now)
}

fn hot_paths(c: &mut Criterion) {
    let now = meter_runtime::now_ms();
    let req = request(now, 16);
    let bytes = req.encode_to_vec();
    let mut g = c.benchmark_group("per 1000-event batch");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("ingest: decode + validate + split (16 projects)", |b| {
        b.iter(|| validate(&ReportRequest::decode(bytes.as_slice()).expect("decode"), now))
    });
    let batches = validate(&req, now);
    g.bench_function("ingest: encode the per-project records", |b| {
        b.iter(|| batches.iter().map(encode_batch).map(|v| v.len()).sum::<usize>())
    });
    let records: Vec<Vec<u8>> = batches.iter().map(encode_batch).collect();
    let retention = Retention::default();
    g.bench_function("aggregator: decode + dedup + hour split + apply", |b| {
        b.iter_batched(
            || {
                (0..16)
                    .map(|p| ProjectState::new(ProjectId::new(format!("bench-p{p:05}")).expect("id")))
                    .collect::<Vec<_>>()
            },
            |mut states| {
                for (i, r) in records.iter().enumerate() {
                    let batch = decode_batch(r).expect("decode");
                    let _ = states[i % 16].apply(&batch, &retention);
                }
                states
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
    let quota = Quota { active_time_seconds: 1000, compute_time_seconds: 5000, ..Quota::default() };
    let usage = Usage { counters: [700, 4000, 10, 10], logical_size: 5, last_ingested_ms: now };
    c.bench_function("enforcer: evaluate one project", |b| {
        b.iter(|| evaluate(None, "bench-p00001", &usage, &quota, &DEFAULT_THRESHOLDS, now))
    });
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
