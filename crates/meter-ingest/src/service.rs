//! The gRPC service and the role's `run`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meter_core::auth::{bearer, AuthError, IngestCredential};
use meter_core::rate::RateLimiter;
use meter_core::{BatchError, Limits, ProjectId, SourceId};
use meter_kafka::{EventProducer, KafkaConfig};
use meter_proto::v1::ingest_server::{Ingest, IngestServer};
use meter_proto::v1::{self, ReportRequest, ReportResponse};
use meter_proto::{set_wire_span, wire_measure};
use meter_runtime::{Auth, Health};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::metrics as m;
use crate::{IngestConfig, IngestError};
use meter_runtime::now_ms;

/// Validates a Report into per-project batches, all-or-nothing: what
/// ingest writes to Kafka, one record per project (`kafka_records`).
///
/// Works on the wire events themselves, moving each into its project's
/// batch, without building domain events: the records are the bytes
/// `encode_batch` writes for `Batch::split_by_project` of the decoded events
/// (a test holds the two equal), at half the cost (BENCHMARKS.md).
pub fn validate(limits: &Limits, req: ReportRequest, now: i64) -> Result<Vec<v1::ProjectBatch>, BatchError> {
    SourceId::check(&req.source_id).map_err(|e| BatchError::batch("source_id", e.to_string()))?;
    limits.check_batch_len(req.events.len())?;
    let mut out: Vec<v1::ProjectBatch> = Vec::new();
    for (i, mut w) in req.events.into_iter().enumerate() {
        // A linear search: for the tens of projects a compute node reports
        // at once it beats hashing the id (BENCHMARKS.md). An id is checked
        // when first seen; the events after it compare equal to a good one.
        let known = out.iter().position(|b| b.project_id == w.project_id);
        if known.is_none() {
            ProjectId::check(&w.project_id).map_err(|e| BatchError::event(i, "project_id", e.to_string()))?;
        }
        let (metric, span) = wire_measure(i, &w)?;
        limits.check_usage(i, metric, w.value, span, now)?;
        set_wire_span(&mut w, span);
        let project_id = std::mem::take(&mut w.project_id);
        match known {
            Some(k) => out[k].events.push(w),
            None => out.push(v1::ProjectBatch {
                source_id: req.source_id.clone(),
                batch_seq: req.batch_seq,
                project_id,
                events: vec![w],
                ingested_unix_ms: now,
            }),
        }
    }
    Ok(out)
}

/// The Kafka records of validated batches: one per project, keyed by it.
pub fn kafka_records(batches: &[v1::ProjectBatch]) -> Vec<(String, Vec<u8>)> {
    batches.iter().map(|b| (b.project_id.clone(), b.encode_to_vec())).collect()
}

/// Authenticates, validates and rate-limits Reports and writes them to Kafka.
#[derive(Debug, Clone)]
pub struct IngestService {
    producer: EventProducer,
    limits: Limits,
    auth: Auth,
    rate: Option<(u64, Arc<Mutex<RateLimiter>>)>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

/// Sources whose rate is tracked at once (idle ones are forgotten first).
const RATE_KEYS: usize = 100_000;

impl IngestService {
    /// A service writing through `producer`, authenticating with `auth`.
    pub fn new(producer: EventProducer, cfg: &IngestConfig, auth: Auth) -> Self {
        let rate = (cfg.rate_limit_events_per_second > 0).then(|| {
            let r = cfg.rate_limit_events_per_second;
            let burst = if cfg.rate_limit_burst_events > 0 { cfg.rate_limit_burst_events } else { r };
            (r, Arc::new(Mutex::new(RateLimiter::new(r, burst, RATE_KEYS))))
        });
        let max_in_flight = cfg.max_in_flight_requests.max(1);
        IngestService {
            producer,
            limits: cfg.limits(),
            auth,
            rate,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }

    /// The credential of a call, `None` when authentication is off.
    fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Option<IngestCredential>, IngestError> {
        let Some(table) = self.auth.current() else { return Ok(None) };
        let token = bearer(metadata.get("authorization").and_then(|v| v.to_str().ok()))?;
        Ok(Some(table.ingest(token).cloned().ok_or(AuthError::Unknown)?))
    }

    async fn handle(
        &self,
        credential: Option<IngestCredential>,
        req: ReportRequest,
    ) -> Result<ReportResponse, IngestError> {
        let started = Instant::now();
        let _permit = self.in_flight.try_acquire().map_err(|_| IngestError::Overloaded(self.max_in_flight))?;
        let n_events = req.events.len();
        if let Some(c) = credential.as_ref().filter(|c| !c.may_use_source(&req.source_id)) {
            return Err(IngestError::PermissionDenied(format!(
                "source_id: credential {:?} may not report as source {:?}",
                c.name, req.source_id
            )));
        }
        let source_id = req.source_id.clone();
        let batches = validate(&self.limits, req, now_ms()).inspect_err(|e| {
            metrics::counter!(m::REJECTED, "field" => e.field).increment(1);
        })?;
        if let Some(c) = &credential {
            if let Some(b) = batches.iter().find(|b| !c.may_report_for(&b.project_id)) {
                return Err(IngestError::PermissionDenied(format!(
                    "project_id: credential {:?} may not report for project {:?}",
                    c.name, b.project_id
                )));
            }
        }
        if let Some((rate, limiter)) = &self.rate {
            let taken = limiter.lock().expect("rate lock").take(&source_id, n_events as u64, now_ms());
            if let Err(retry_after_ms) = taken {
                return Err(IngestError::RateLimited { source_id, rate: *rate, retry_after_ms });
            }
        }
        let records = kafka_records(&batches);
        self.producer.send_all(&records).await?;
        metrics::histogram!(m::PRODUCE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::BATCH_EVENTS).record(n_events as f64);
        Ok(ReportResponse { accepted_events: n_events as u32, kafka_records: records.len() as u32 })
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn report(&self, request: Request<ReportRequest>) -> Result<Response<ReportResponse>, Status> {
        let credential = self.authenticate(request.metadata());
        let req = request.into_inner();
        let n = req.events.len() as u64;
        let result = match credential {
            Ok(c) => self.handle(c, req).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(resp) => {
                metrics::counter!(m::REQUESTS, "outcome" => "ok").increment(1);
                metrics::counter!(m::EVENTS, "outcome" => "ok").increment(n);
                Ok(Response::new(resp))
            }
            Err(e) => {
                metrics::counter!(m::REQUESTS, "outcome" => e.outcome()).increment(1);
                metrics::counter!(m::EVENTS, "outcome" => e.outcome()).increment(n);
                tracing::debug!(error = %e, "ingest.report_failed");
                Err(e.into())
            }
        }
    }
}

/// Runs the ingest role on `listener` until `shutdown`, then flushes the
/// producer.
pub async fn run(
    cfg: &IngestConfig,
    kafka: &KafkaConfig,
    auth: Auth,
    listener: TcpListener,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::describe();
    let producer = EventProducer::new(kafka)?;
    let service = IngestService::new(producer.clone(), cfg, auth);
    let ready = health.part("ingest");
    tracing::info!(addr = %listener.local_addr()?, "ingest.listening");
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    // HTTP/2 windows sized for batches of thousands of events: with the
    // 64 KiB defaults a large Report waits on flow-control round trips.
    tonic::transport::Server::builder()
        .initial_stream_window_size(meter_proto::STREAM_WINDOW)
        .initial_connection_window_size(meter_proto::CONNECTION_WINDOW)
        .tcp_nodelay(true)
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .serve_with_incoming_shutdown(
            IngestServer::new(service).max_decoding_message_size(cfg.max_message_bytes),
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.cancelled_owned(),
        )
        .await?;
    producer.flush(Duration::from_secs(10));
    tracing::info!("ingest.stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_core::Batch;
    use meter_proto::{encode_batch, event_from_wire};
    use proptest::prelude::*;

    const NOW: i64 = 1_760_000_000_000;

    /// The records through domain events: decode every event, split by
    /// project, encode each batch. `validate` must write the same bytes.
    fn via_domain(req: &ReportRequest) -> Result<Vec<(String, Vec<u8>)>, BatchError> {
        let limits = Limits::default();
        let source = SourceId::new(req.source_id.clone()).map_err(|e| BatchError::batch("source_id", e.to_string()))?;
        limits.check_batch_len(req.events.len())?;
        let mut events = Vec::new();
        for (i, w) in req.events.iter().enumerate() {
            let e = event_from_wire(i, w, None)?;
            limits.check_event(i, &e, NOW)?;
            events.push(e);
        }
        let batches = Batch::split_by_project(&source, req.batch_seq, events, NOW);
        Ok(batches.iter().map(|b| (b.project_id.to_string(), encode_batch(b))).collect())
    }

    fn direct(req: &ReportRequest) -> Result<Vec<(String, Vec<u8>)>, BatchError> {
        validate(&Limits::default(), req.clone(), NOW).map(|b| kafka_records(&b))
    }

    fn event(project: &str, metric: i32, kind: i32, value: u64, times: (i64, i64, i64)) -> v1::UsageEvent {
        v1::UsageEvent {
            project_id: project.into(),
            metric,
            kind,
            value,
            start_unix_ms: times.0,
            end_unix_ms: times.1,
            time_unix_ms: times.2,
            ..Default::default()
        }
    }

    #[test]
    fn writes_the_bytes_of_the_domain_path() {
        let mut with_ids = event("b", 4, 1, 5, (NOW - 10, NOW, 0));
        (with_ids.endpoint_id, with_ids.branch_id, with_ids.idempotency_key) = ("ep".into(), "br".into(), "k".into());
        let req = ReportRequest {
            source_id: "src-1".into(),
            batch_seq: 9,
            events: vec![
                // stray time fields of the other kind are dropped on both paths
                event("a", 1, 1, 3, (NOW - 1000, NOW, 77)),
                with_ids,
                event("a", 5, 2, 1 << 40, (5, 6, NOW)),
                event("c", 2, 1, 0, (NOW, NOW, 0)),
                event("b", 3, 1, 8, (NOW - 5, NOW - 1, 0)),
            ],
        };
        let got = direct(&req).unwrap();
        assert_eq!(got.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(got, via_domain(&req).unwrap());
    }

    #[test]
    fn refuses_as_the_domain_path_does() {
        let good = event("a", 1, 1, 3, (NOW - 1000, NOW, 0));
        let cases = [
            ("", vec![good.clone()]),
            ("src", vec![good.clone(), event("", 1, 1, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![good.clone(), event("a b", 9, 1, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![good.clone(), event("a", 9, 1, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![event("a", 1, 7, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![good.clone(), event("a", 1, 2, 3, (0, 0, NOW))]),
            ("src", vec![good.clone(), event("a", 1, 1, u64::MAX, (NOW - 1000, NOW, 0))]),
            ("src", vec![good, event("z", 1, 1, 3, (NOW - 1000, NOW + 3_600_000, 0))]),
        ];
        for (source, events) in cases {
            let req = ReportRequest { source_id: source.into(), batch_seq: 1, events };
            let err = direct(&req).unwrap_err();
            assert_eq!(err, via_domain(&req).unwrap_err(), "{err}");
        }
        let l = Limits { max_events_per_batch: 1, ..Limits::default() };
        let req =
            ReportRequest { source_id: "s".into(), batch_seq: 1, events: vec![event("a", 1, 1, 1, (NOW, NOW, 0)); 2] };
        assert_eq!(validate(&l, req, NOW).unwrap_err().field, "events");
    }

    proptest! {
        /// Any mix of projects, metrics, kinds and times: the same records
        /// or the same error as the domain path.
        #[test]
        fn agrees_with_the_domain_path(
            events in proptest::collection::vec(
                (0..6usize, 0..7i32, 0..4i32, 0..(1u64 << 51), -3_000i64..3_000, -3_000i64..3_000, -3_000i64..3_000),
                0..40,
            ),
        ) {
            let projects = ["p0", "p1", "p2", "p3", "", "bad id"];
            let events = events
                .into_iter()
                .map(|(p, m, k, v, a, b, c)| event(projects[p], m, k, v, (NOW + a, NOW + b, NOW + c * 1000)))
                .collect();
            let req = ReportRequest { source_id: "s".into(), batch_seq: 3, events };
            prop_assert_eq!(direct(&req), via_domain(&req));
        }
    }
}
