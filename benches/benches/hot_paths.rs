//! Micro-benchmarks of the hot paths, per batch of 1,000 events:
//! decoding and validating a Report (ingest), encoding its per-project
//! records, aggregating a batch into a project's state, and evaluating a
//! project's quota (enforcer).
//!
//! `cargo bench -p meter-bench --bench hot_paths`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meter_bench::load::LoadConfig;
use meter_core::aggregate::Retention;
use meter_core::enforce::{evaluate, Usage};
use meter_core::{Limits, ProjectId, ProjectState, Quota, DEFAULT_THRESHOLDS};
use meter_proto::decode_batch;
use meter_proto::v1::{ProjectBatch, ReportRequest};
use prost::Message;

const EVENTS: usize = 1000;

/// One source's 1,000-event Report over 16 projects, as `meter-bench` sends.
fn request(now: i64) -> ReportRequest {
    let load = LoadConfig {
        prefix: "bench".into(),
        sources: 1,
        projects_per_source: 16,
        batch: EVENTS,
        concurrency: 1,
        rate: 0,
        duration: std::time::Duration::ZERO,
    };
    load.request(0, 0, now)
}

fn validate(req: ReportRequest, now: i64) -> Vec<ProjectBatch> {
    meter_ingest::validate(&Limits::default(), req, now).expect("valid")
}

fn hot_paths(c: &mut Criterion) {
    let now = meter_runtime::now_ms();
    let req = request(now);
    let bytes = req.encode_to_vec();
    let mut g = c.benchmark_group("per 1000-event batch");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("ingest: decode a Report (prost), no validation", |b| {
        b.iter(|| ReportRequest::decode(bytes.as_slice()).expect("decode").events.len())
    });
    g.bench_function("ingest: decode + validate + split (16 projects)", |b| {
        b.iter(|| validate(ReportRequest::decode(bytes.as_slice()).expect("decode"), now))
    });
    let batches = validate(req, now);
    g.bench_function("ingest: encode the per-project records", |b| {
        b.iter(|| meter_ingest::kafka_records(&batches).iter().map(|(_, v)| v.len()).sum::<usize>())
    });
    let records: Vec<Vec<u8>> = meter_ingest::kafka_records(&batches).into_iter().map(|(_, v)| v).collect();
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
