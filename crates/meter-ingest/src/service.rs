//! The gRPC service and the role's `run`.

use std::time::{Duration, Instant};

use meter_core::{Batch, BatchError, Limits, SourceId};
use meter_kafka::{EventProducer, KafkaConfig};
use meter_proto::v1::ingest_server::{Ingest, IngestServer};
use meter_proto::v1::{ReportRequest, ReportResponse};
use meter_proto::{encode_batch, event_from_wire};
use meter_runtime::Health;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::metrics as m;
use crate::{IngestConfig, IngestError};
use meter_runtime::now_ms;

/// Validates a Report into per-project batches, all-or-nothing: what
/// ingest writes to Kafka, one record per batch (`encode_batch`).
pub fn validate(limits: &Limits, req: ReportRequest, now: i64) -> Result<Vec<Batch>, BatchError> {
    let source = SourceId::new(req.source_id).map_err(|e| BatchError::batch("source_id", e.to_string()))?;
    limits.check_batch_len(req.events.len())?;
    let mut events = Vec::with_capacity(req.events.len());
    for (i, w) in req.events.iter().enumerate() {
        let e = event_from_wire(i, w, None)?;
        limits.check_event(i, &e, now)?;
        events.push(e);
    }
    Ok(Batch::split_by_project(&source, req.batch_seq, events, now))
}

/// The Kafka records of validated batches: one per project, keyed by it.
pub fn kafka_records(batches: &[Batch]) -> Vec<(String, Vec<u8>)> {
    batches.iter().map(|b| (b.project_id.to_string(), encode_batch(b))).collect()
}

/// Validates batches and writes them to Kafka.
#[derive(Debug, Clone)]
pub struct IngestService {
    producer: EventProducer,
    limits: Limits,
}

impl IngestService {
    /// A service writing through `producer`.
    pub fn new(producer: EventProducer, limits: Limits) -> Self {
        IngestService { producer, limits }
    }

    async fn handle(&self, req: ReportRequest) -> Result<ReportResponse, IngestError> {
        let started = Instant::now();
        let n_events = req.events.len();
        let batches = validate(&self.limits, req, now_ms()).inspect_err(|e| {
            metrics::counter!(m::REJECTED, "field" => e.field).increment(1);
        })?;
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
        let req = request.into_inner();
        let n = req.events.len() as u64;
        match self.handle(req).await {
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
    listener: TcpListener,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::describe();
    let producer = EventProducer::new(kafka)?;
    let service = IngestService::new(producer.clone(), cfg.limits());
    let ready = health.part("ingest");
    tracing::info!(addr = %listener.local_addr()?, "ingest.listening");
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    // HTTP/2 windows sized for batches of thousands of events: with the
    // 64 KiB defaults a large Report waits on flow-control round trips.
    tonic::transport::Server::builder()
        .initial_stream_window_size(meter_proto::STREAM_WINDOW)
        .initial_connection_window_size(meter_proto::CONNECTION_WINDOW)
        .tcp_nodelay(true)
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
