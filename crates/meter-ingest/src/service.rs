//! The gRPC service and the role's `run`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meter_core::auth::{bearer, AuthError, IngestCredential};
use meter_core::rate::RateLimiter;
use meter_core::BatchError;
use meter_core::Limits;
use meter_kafka::{EventProducer, KafkaConfig};
use meter_proto::ingest_raw::ingest_server::{Ingest, IngestServer};
use meter_proto::report::EventsRecord;
use meter_proto::report_codec::RawReport;
use meter_proto::report_read::ReadReport;
use meter_proto::v1::{ProjectBatch, ReportRequest, ReportResponse};
use meter_runtime::{Auth, Health};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::metrics as m;
use crate::{kafka_records, validate, IngestConfig, IngestError};
use meter_proto::neon::validate_neon;
use meter_runtime::now_ms;

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

    /// The credential of a call, `None` when authentication is off: the
    /// client certificate's (mTLS), else the bearer token's.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<Option<IngestCredential>, IngestError> {
        let Some(table) = self.auth.current() else { return Ok(None) };
        if let Some(c) = request.peer_certs().and_then(|certs| table.ingest_by_certificate(certs.first()?).cloned()) {
            return Ok(Some(c));
        }
        self.by_token(request.metadata().get("authorization").and_then(|v| v.to_str().ok()))
    }

    /// The credential of an `Authorization` header's bearer token, `None`
    /// when authentication is off.
    pub(crate) fn by_token(&self, authorization: Option<&str>) -> Result<Option<IngestCredential>, IngestError> {
        let Some(table) = self.auth.current() else { return Ok(None) };
        let token = bearer(authorization)?;
        Ok(Some(table.ingest(token).cloned().ok_or(AuthError::Unknown)?))
    }

    /// Reads a Report's bytes at time `now`: a valid one straight into its
    /// records (`report_read`); any other is decoded through prost's
    /// structs, for `validate` to name what is wrong with it.
    fn parse<'a>(&self, bytes: &'a [u8], now: i64) -> Result<Report<'a>, IngestError> {
        if let Some(read) = ReadReport::read(&self.limits, bytes, now) {
            return Ok(Report::Read(read));
        }
        ReportRequest::decode(bytes)
            .map(Report::Decoded)
            .map_err(|e| self.rejected(BatchError::batch("request", format!("is not a ReportRequest: {e}"))))
    }

    async fn handle(
        &self,
        credential: Option<IngestCredential>,
        report: Report<'_>,
        now: i64,
    ) -> Result<ReportResponse, IngestError> {
        let started = Instant::now();
        let _permit = self.in_flight.try_acquire().map_err(|_| IngestError::Overloaded(self.max_in_flight))?;
        let (source_id, _, _, n_events) = report.header();
        if let Some(c) = credential.as_ref().filter(|c| !c.may_use_source(source_id)) {
            return Err(IngestError::PermissionDenied(format!(
                "source_id: credential {:?} may not report as source {:?}",
                c.name, source_id
            )));
        }
        let source_id = source_id.to_owned();
        let batches = match report {
            Report::Read(read) => Batches::Read(read),
            Report::Decoded(req) => Batches::Decoded(validate(&self.limits, req, now).map_err(|e| self.rejected(e))?),
        };
        let records = self.write(credential.as_ref(), source_id, n_events, batches, started).await?;
        Ok(ReportResponse { accepted_events: n_events as u32, kafka_records: records as u32 })
    }

    /// Counts a refused Report (by field and reason) and returns its error.
    fn rejected(&self, e: BatchError) -> IngestError {
        metrics::counter!(m::REJECTED, "field" => e.field, "reason" => e.kind.label()).increment(1);
        IngestError::Invalid(e)
    }

    /// Handles a Neon `consumption_metrics` JSON body (`POST /v1/events`):
    /// the same checks, limits and acknowledgement as a Report. Returns
    /// the events accepted and the Kafka records written.
    pub(crate) async fn handle_json(
        &self,
        credential: Option<IngestCredential>,
        body: &[u8],
    ) -> Result<(usize, usize), IngestError> {
        let started = Instant::now();
        let _permit = self.in_flight.try_acquire().map_err(|_| IngestError::Overloaded(self.max_in_flight))?;
        // No batch identity: the events' keys deduplicate; the session only
        // keeps this request's ClickHouse rows apart from any other's.
        let source_id = match &credential {
            Some(c) => format!("json:{}", c.name),
            None => "json".to_owned(),
        };
        let session = rand::random::<u64>() | 1;
        let batches = validate_neon(&self.limits, body, &source_id, session, now_ms()).map_err(|e| self.rejected(e))?;
        let n_events = batches.iter().map(|b| b.events.len()).sum();
        let records = self.write(credential.as_ref(), source_id, n_events, Batches::Decoded(batches), started).await?;
        Ok((n_events, records))
    }

    /// Checks the credential's projects and the source's rate, then writes
    /// the batches to Kafka; returns how many records were written.
    async fn write(
        &self,
        credential: Option<&IngestCredential>,
        source_id: String,
        n_events: usize,
        batches: Batches<'_>,
        started: Instant,
    ) -> Result<usize, IngestError> {
        if let Some(c) = credential {
            if let Some(p) = batches.project_ids().find(|p| !c.may_report_for(p)) {
                return Err(IngestError::PermissionDenied(format!(
                    "project_id: credential {:?} may not report for project {p:?}",
                    c.name
                )));
            }
        }
        if let Some((rate, limiter)) = &self.rate {
            let taken = limiter.lock().expect("rate lock").take(&source_id, n_events as u64, now_ms());
            if let Err(retry_after_ms) = taken {
                return Err(IngestError::RateLimited { source_id, rate: *rate, retry_after_ms });
            }
        }
        let partitions = self.producer.partitions().await?;
        let records = batches.records(partitions);
        self.producer.send_all(&records).await?;
        metrics::histogram!(m::PRODUCE_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::BATCH_EVENTS).record(n_events as f64);
        Ok(records.len())
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn report(&self, request: Request<RawReport>) -> Result<Response<ReportResponse>, Status> {
        use tracing::Instrument;
        let credential = self.authenticate(&request);
        let bytes = request.into_inner().0;
        let now = now_ms();
        let (n, result) = match self.parse(&bytes, now) {
            Ok(report) => {
                let (source_id, session, batch_seq, n) = report.header();
                let span = tracing::info_span!("ingest.report", source_id = %source_id, session, batch_seq, events = n);
                let result = match credential {
                    Ok(c) => self.handle(c, report, now).instrument(span).await,
                    Err(e) => Err(e),
                };
                (n, result)
            }
            Err(e) => (0, Err(e)),
        };
        let n = n as u64;
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

/// A Report as it came in: read from its bytes (valid), or decoded by
/// prost (to be validated).
enum Report<'a> {
    Read(ReadReport<'a>),
    Decoded(ReportRequest),
}

impl Report<'_> {
    /// Its source id, session, batch number and event count.
    fn header(&self) -> (&str, u64, u64, usize) {
        match self {
            Report::Read(r) => (r.source_id, r.source_session, r.batch_seq, r.len()),
            Report::Decoded(r) => (&r.source_id, r.source_session, r.batch_seq, r.events.len()),
        }
    }
}

/// Valid batches, to be written: a Report read from its bytes, or the
/// batches of `validate` (a Report prost decoded) or `validate_neon`.
enum Batches<'a> {
    Read(ReadReport<'a>),
    Decoded(Vec<ProjectBatch>),
}

impl Batches<'_> {
    fn project_ids(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Batches::Read(r) => Box::new(r.project_ids()),
            Batches::Decoded(b) => Box::new(b.iter().map(|b| b.project_id.as_str())),
        }
    }

    fn records(self, partitions: i32) -> Vec<EventsRecord> {
        match self {
            Batches::Read(r) => r.records(partitions),
            Batches::Decoded(b) => kafka_records(b, partitions),
        }
    }
}

/// Runs the ingest role until `shutdown`: gRPC on `listener`, Neon JSON
/// over HTTP on `http` when given; then flushes the producer.
pub async fn run(
    cfg: &IngestConfig,
    kafka: &KafkaConfig,
    auth: Auth,
    listener: TcpListener,
    http: Option<TcpListener>,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::describe();
    let producer = EventProducer::new(kafka)?;
    let service = IngestService::new(producer.clone(), cfg, auth);
    let ready = health.part("ingest");
    tracing::info!(addr = %listener.local_addr()?, "ingest.listening");
    let http_task = match http {
        Some(l) => {
            tracing::info!(addr = %l.local_addr()?, "ingest.http_listening");
            let app = crate::http::router(service.clone(), cfg.max_message_bytes);
            let stop = shutdown.clone();
            // The HTTP server ending (failed) ends the gRPC one too.
            let served = axum::serve(l, app).with_graceful_shutdown(stop.clone().cancelled_owned());
            Some(tokio::spawn(meter_runtime::cancel_when_done(served, stop)))
        }
        None => None,
    };
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    // HTTP/2 windows sized for batches of thousands of events: with the
    // 64 KiB defaults a large Report waits on flow-control round trips.
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = cfg.tls()? {
        server = server.tls_config(tls)?;
        tracing::info!(mtls = cfg.tls_client_ca_file.is_some(), "ingest.tls");
    }
    server
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
    if let Some(t) = http_task {
        t.await??;
    }
    producer.flush(Duration::from_secs(10));
    tracing::info!("ingest.stopped");
    Ok(())
}
