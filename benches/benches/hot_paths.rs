//! Micro-benchmarks of the hot paths, per batch of 1,000 events:
//! decoding and validating a Report (ingest), encoding its per-partition
//! records, aggregating a batch into a project's state, and evaluating a
//! project's quota (enforcer); the cost of idempotency keys (aggregating
//! keyed events, rebuilding a million keys, their memory), and validating a
//! Neon JSON body; decoding a totals record as the enforcer and the API do;
//! the aggregator's apply path on collectors' Reports over 50,000 projects;
//! a collector's packed totals, written and read back.
//!
//! `cargo bench -p meter-bench --bench hot_paths`

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meter_bench::load::LoadConfig;
use meter_core::aggregate::Retention;
use meter_core::enforce::{evaluate, Usage};
use meter_core::{Limits, ProjectId, ProjectState, Quota, DEFAULT_THRESHOLDS};
use meter_proto::decode_record;
use meter_proto::events::{decode_events, decode_events_prost};
use meter_proto::report_read::ReadReport;
use meter_proto::v1::{ProjectBatch, ReportRequest};
use prost::Message;

/// meterd's allocator, so that allocation costs what it costs there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 1000;

/// One source's 1,000-event Report over 16 projects, as `meter-bench` sends.
fn request(now: i64) -> ReportRequest {
    request_with_keys(now, false)
}

/// The same, each event with a unique idempotency key when `keys`.
fn request_with_keys(now: i64, keys: bool) -> ReportRequest {
    one_source(16, EVENTS, keys).request(0, 0, now)
}

/// One source's load: `batch` events per Report over `projects` projects.
fn one_source(projects: usize, batch: usize, keys: bool) -> LoadConfig {
    LoadConfig {
        prefix: "bench".into(),
        sources: 1,
        projects_per_source: projects,
        batch,
        concurrency: 1,
        rate: 0,
        duration: std::time::Duration::ZERO,
        keys,
    }
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
    g.bench_function("ingest: its bytes to its records through prost's structs (16 projects)", |b| {
        b.iter(|| {
            let req = ReportRequest::decode(bytes.as_slice()).expect("decode");
            meter_ingest::kafka_records(validate(req, now), 8).len()
        })
    });
    let limits = Limits::default();
    g.bench_function("ingest: its bytes to its records (report_read, 16 projects)", |b| {
        b.iter(|| ReadReport::read(&limits, &bytes, now).expect("valid").records(8).len())
    });
    let batches = validate(req, now);
    g.bench_function("ingest: encode the per-partition records (8 partitions)", |b| {
        b.iter_batched(
            || batches.clone(),
            |batches| meter_ingest::kafka_records(batches, 8).iter().map(|r| r.value.len()).sum::<usize>(),
            criterion::BatchSize::SmallInput,
        )
    });
    let encode = |batches: Vec<ProjectBatch>| -> Vec<Vec<u8>> {
        meter_ingest::kafka_records(batches, 8).into_iter().map(|r| r.value).collect()
    };
    let records = encode(batches.clone());
    let keyed_records = encode(validate(request_with_keys(now, true), now));
    let retention = Retention::default();
    g.bench_function("aggregator: decode the records (no apply)", |b| {
        b.iter(|| records.iter().map(|r| decode_record(r).expect("decode").len()).sum::<usize>())
    });
    for (name, records) in [
        ("aggregator: decode + dedup + hour split + apply", &records),
        ("aggregator: the same, a new idempotency key on every event", &keyed_records),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    batches
                        .iter()
                        .map(|b| {
                            let id = ProjectId::new(b.project_id.clone()).expect("id");
                            (b.project_id.clone(), ProjectState::new(id))
                        })
                        .collect::<HashMap<_, _>>()
                },
                |mut states| {
                    for r in records.iter() {
                        for batch in decode_record(r).expect("decode") {
                            let state = states.get_mut(batch.project_id.as_str()).expect("known project");
                            let _ = state.apply(&batch, &retention);
                        }
                    }
                    states
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    collectors_records(c, now);
    collectors_apply(c, now);
    let mut g = c.benchmark_group("per 1000-event batch");
    g.throughput(Throughput::Elements(EVENTS as u64));
    let json = neon_body(&request_with_keys(now, false));
    g.bench_function("ingest: validate + split a Neon JSON body", |b| {
        b.iter(|| {
            meter_proto::neon::validate_neon(&Limits::default(), json.as_bytes(), "json", 1, now).expect("valid").len()
        })
    });
    g.finish();
    keys(c);
    let quota = Quota { active_time_seconds: 1000, compute_time_seconds: 5000, ..Quota::default() };
    let usage = Usage { counters: [700, 4000, 10, 10], branches: vec![("br-main".into(), 5)], last_ingested_ms: now };
    c.bench_function("enforcer: evaluate one project", |b| {
        b.iter(|| evaluate(None, "bench-p00001", &usage, &quota, &DEFAULT_THRESHOLDS, now))
    });
    totals_record(c, now);
    packed_totals(c, now);
}

/// A `usage.totals` record of a project 64 collectors report for (issue
/// 19's shape): what the enforcer and the API decoded of it before
/// (`decode_totals`, the whole state with its 64 dedup windows) and now
/// (`decode_usage`, the counters only).
/// A collector's Report: 2,000 events over 1,000 projects (issue 19's
/// shape), as the aggregator reads its records: straight into domain
/// batches (`decode_events`), and through prost's structs as before.
fn collectors_records(c: &mut Criterion, now: i64) {
    let load = one_source(1000, 2 * EVENTS, false);
    let report = load.request(0, 0, now).encode_to_vec();
    let batches = validate(load.request(0, 0, now), now);
    let records: Vec<Vec<u8>> = meter_ingest::kafka_records(batches.clone(), 8).into_iter().map(|r| r.value).collect();
    // The same batches as ingest wrote them until 2026-12-04: each with its
    // own source fields, no head.
    let headless: Vec<Vec<u8>> =
        meter_proto::report::records_without_head(batches, 8).into_iter().map(|r| r.value).collect();
    let bytes = |r: &[Vec<u8>]| r.iter().map(Vec::len).sum::<usize>();
    eprintln!("a collector's records: {} bytes with heads, {} without", bytes(&records), bytes(&headless));
    let mut g = c.benchmark_group("a collector's 2000-event Report, 1000 projects");
    g.throughput(Throughput::Elements(2 * EVENTS as u64));
    let limits = Limits::default();
    g.bench_function("ingest: its bytes to its records through prost's structs", |b| {
        b.iter(|| {
            let req = ReportRequest::decode(report.as_slice()).expect("decode");
            meter_ingest::kafka_records(validate(req, now), 8).len()
        })
    });
    g.bench_function("ingest: its bytes to its records (report_read)", |b| {
        b.iter(|| ReadReport::read(&limits, &report, now).expect("valid").records(8).len())
    });
    g.bench_function("aggregator: decode its records (decode_events)", |b| {
        b.iter(|| records.iter().map(|r| decode_events(r).expect("decode").batches.len()).sum::<usize>())
    });
    g.bench_function("aggregator: decode its records through prost's structs", |b| {
        b.iter(|| records.iter().map(|r| decode_events_prost(r).expect("decode").batches.len()).sum::<usize>())
    });
    g.bench_function("aggregator: decode them as written before heads (decode_events)", |b| {
        b.iter(|| headless.iter().map(|r| decode_events(r).expect("decode").batches.len()).sum::<usize>())
    });
    g.finish();
}

/// The aggregator applying collectors' Reports (issue 19's shape, as
/// `meter-bench --shape collectors` sends: 16 sources x 3,125 projects,
/// 2,000 events per Report, ~1 event per project batch) to the states of
/// 50,000 projects, on one thread, no Kafka: per iteration one
/// transaction of 16 Reports (32,000 events: a light load's), and one of
/// 128 (256,000 events, ~5 batches per project: a loaded aggregator's
/// backlog), each Report with a new batch number; the transaction's
/// `usage.rows` records written as its flush writes them.
fn collectors_apply(c: &mut Criterion, now: i64) {
    use std::time::{Duration, Instant};
    let load = LoadConfig { sources: 16, ..one_source(3125, 2 * EVENTS, false) };
    let names: Vec<Vec<String>> = (0..load.sources).map(|s| load.names(s)).collect();
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    // `rounds` Reports of each source, batch numbers from `seq` on.
    let mut txn = |seq: u64, rounds: u64| {
        let mut records = Vec::new();
        for seq in seq..seq + rounds {
            for (s, names) in names.iter().enumerate() {
                let batches = validate(load.request_for(s, names, seq, now), now);
                for r in meter_ingest::kafka_records(batches, 8) {
                    let offset = offsets.entry(r.partition).or_default();
                    records.push((r.partition, *offset, r.value));
                    *offset += 1;
                }
            }
        }
        meter_aggregator::bench::Transaction::new(records)
    };
    let mut states = meter_aggregator::bench::States::default();
    let mut seq = 0;
    while states.projects() < 16 * 3125 {
        states.apply(&txn(seq, 1));
        seq += 1;
    }
    let mut g = c.benchmark_group("collectors' Reports, 50000 projects");
    g.sampling_mode(criterion::SamplingMode::Flat).sample_size(10);
    for rounds in [1, 8] {
        g.throughput(Throughput::Elements(rounds * 16 * 2 * EVENTS as u64));
        let name = format!(
            "aggregator: apply a transaction of {} Reports (decode, dedup, count, collapse, rows)",
            16 * rounds
        );
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    let t = txn(seq, rounds);
                    seq += rounds;
                    let started = Instant::now();
                    criterion::black_box(states.apply(&t));
                    took += started.elapsed();
                }
                took
            })
        });
    }
    g.finish();
}

fn totals_record(c: &mut Criterion, now: i64) {
    use meter_core::Metric;
    let project = ProjectId::new("bench-p00001").expect("id");
    let mut state = ProjectState::new(project.clone());
    for source in 0..64 {
        let source = (format!("collector-{source:02}.proxy"), 1_764_500_400_000 + source);
        let batch = one_event(&project, source, 1_000, (Metric::ActiveTimeSeconds, 60), now - 60_000, now);
        state.apply(&batch, &Retention::default());
    }
    let bytes = meter_proto::packed::own_record(&state, 0, now);
    let mut g = c.benchmark_group("a totals record of a project with 64 sources");
    g.bench_function("decode the whole state (decode_totals)", |b| {
        b.iter(|| meter_proto::decode_totals(&bytes).expect("decodes"))
    });
    g.bench_function("decode the usage only (decode_usage)", |b| {
        b.iter(|| meter_proto::decode_usage(&bytes).expect("decodes"))
    });
    g.finish();
}

/// The packed totals of a collector's transaction: 2,000 projects' states,
/// each with a cycle and 16 sources' dedup windows, written by the
/// aggregator and read back by the enforcer and the api; each next to the
/// same work through prost's wire structs (what both did before).
fn packed_totals(c: &mut Criterion, now: i64) {
    use meter_core::Metric;
    let states: Vec<ProjectState> = (0..2000)
        .map(|p| {
            let project = ProjectId::new(format!("bench-p{p:05}")).expect("id");
            let mut state = ProjectState::new(project.clone());
            for source in 0..16 {
                let source = (format!("bench-src{source:04}"), 1);
                let batch = one_event(&project, source, 1_000 + p, (Metric::WrittenDataBytes, 1 + p), now - 1000, now);
                state.apply(&batch, &Retention::default());
            }
            state
        })
        .collect();
    let records = meter_proto::packed::packed_records(&states, 42, now);
    let mut g = c.benchmark_group("a collector's packed totals, 2000 projects with 16 sources each");
    g.throughput(Throughput::Elements(states.len() as u64));
    g.bench_function("aggregator: write them (packed_records)", |b| {
        b.iter(|| meter_proto::packed::packed_records(&states, 42, now))
    });
    g.bench_function("aggregator: write them through prost's structs (state_to_wire)", |b| {
        b.iter(|| {
            let packed = states.iter().map(|s| meter_proto::state_to_wire(s, now)).collect();
            meter_proto::v1::ProjectTotals { events_next_offset: 42, packed, ..Default::default() }.encode_to_vec()
        })
    });
    g.bench_function("enforcer, api: read their usage (decode_usage)", |b| {
        b.iter(|| records.iter().map(|r| meter_proto::decode_usage(&r.value).expect("decodes").len()).sum::<usize>())
    });
    g.bench_function("enforcer, api: read their usage through prost's structs (decode_usage_prost)", |b| {
        b.iter(|| {
            records.iter().map(|r| meter_proto::decode_usage_prost(&r.value).expect("decodes").len()).sum::<usize>()
        })
    });
    g.finish();
}

/// A batch of one event of `project` from `source` (its id and session),
/// numbered `batch_seq`: `metric`'s `value` over `start_ms`..`now`.
fn one_event(
    project: &ProjectId,
    source: (String, u64),
    batch_seq: u64,
    (metric, value): (meter_core::Metric, u64),
    start_ms: i64,
    now: i64,
) -> meter_core::Batch {
    let event = meter_core::Event {
        project_id: project.clone(),
        endpoint_id: None,
        branch_id: None,
        metric,
        value,
        span: meter_core::Span::Interval { start_ms, end_ms: now },
        idempotency_key: None,
    };
    meter_core::Batch {
        source_id: meter_core::SourceId::new(source.0).expect("id"),
        session: source.1,
        batch_seq,
        keyed_only: false,
        project_id: project.clone(),
        events: vec![event],
        ingested_ms: now,
    }
}

/// The JSON body of a Report's events (as Neon's emitters send them).
fn neon_body(req: &ReportRequest) -> String {
    let names = ["", "active_time_seconds", "compute_time_seconds", "written_data_bytes", "data_transfer_bytes"];
    let t = |ms| meter_core::cycle::rfc3339(ms);
    let events: Vec<serde_json::Value> = req
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({"metric": names[e.metric as usize], "type": "incremental",
                "start_time": t(e.start_unix_ms), "stop_time": t(e.end_unix_ms),
                "idempotency_key": format!("k-{i}"), "value": e.value, "project_id": e.project_id})
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split(' ').nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// A million keys: inserting them, rebuilding them from their chunks (a
/// restore), and the memory they hold.
fn keys(c: &mut Criterion) {
    use meter_core::keys::{key_hash, KeySet};
    const N: u64 = 1_000_000;
    let hashes: Vec<u64> = (0..N).map(|i| key_hash(&format!("source-7-{i}"))).collect();
    let before = rss_bytes();
    let mut set = KeySet::default();
    for &h in &hashes {
        set.insert(h);
    }
    let held = rss_bytes().saturating_sub(before);
    let chunks: std::collections::BTreeMap<u32, Vec<u64>> = set.dirty_chunks().map(|(i, c)| (i, c.to_vec())).collect();
    eprintln!(
        "keys: {N} keys hold {:.1} MiB in the aggregator ({:.1} B per key, RSS); {} chunk records of {} B",
        held as f64 / (1 << 20) as f64,
        held as f64 / N as f64,
        chunks.len(),
        8 * meter_core::keys::CHUNK
    );
    let mut g = c.benchmark_group("a million idempotency keys");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("format and hash (SHA-256) a million keys", |b| {
        b.iter(|| (0..N).map(|i| key_hash(&format!("source-7-{i}"))).fold(0u64, |a, h| a ^ h))
    });
    g.bench_function("insert a million hashes into a project's key set", |b| {
        b.iter(|| {
            let mut s = KeySet::default();
            for &h in &hashes {
                s.insert(h);
            }
            s.len()
        })
    });
    g.bench_function("rebuild a million keys from their chunks (restore)", |b| {
        b.iter(|| KeySet::from_chunks(chunks.clone()).len())
    });
    g.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
