//! The engines' own limits, measured with the same load on the same broker
//! and server: a tonic server that does nothing (transport), a plain rdkafka
//! producer writing the records ingest would write (Kafka), and a direct
//! RowBinary insert of the rows the aggregator would write (ClickHouse).

use std::sync::Arc;
use std::time::Instant;

use meter_core::aggregate::hourly_rows;
use meter_kafka::KafkaConfig;
use meter_proto::v1::ingest_server::{Ingest, IngestServer};
use meter_proto::v1::{ReportRequest, ReportResponse};
use meter_store::{Store, UsageRow};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use meter_bench::encoded::{Encoded, RawClient};
use meter_bench::load::{drive, Acked, LoadConfig};

/// Events/s of one measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) events: u64,
    pub(crate) seconds: f64,
}

impl Rate {
    pub(crate) fn per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

struct Nothing;

#[tonic::async_trait]
impl Ingest for Nothing {
    async fn report(&self, r: tonic::Request<ReportRequest>) -> Result<tonic::Response<ReportResponse>, tonic::Status> {
        let n = r.into_inner().events.len() as u32;
        Ok(tonic::Response::new(ReportResponse { accepted_events: n, kafka_records: 0 }))
    }
}

/// A gRPC client of `url` with large messages allowed.
pub(crate) async fn client(url: &str) -> anyhow::Result<RawClient> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .initial_stream_window_size(meter_proto::STREAM_WINDOW)
        .initial_connection_window_size(meter_proto::CONNECTION_WINDOW)
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(RawClient::new(ch))
}

/// Drives `cfg`'s load through `c` (a Report per call, as fast as acked):
/// what was acknowledged, and its rate over the load's duration.
pub(crate) async fn drive_client(cfg: &LoadConfig, c: RawClient) -> (Arc<Acked>, Rate) {
    let acked = Arc::new(Acked::default());
    let took = drive(cfg, acked.clone(), move |req: Encoded| {
        let mut c = c.clone();
        async move { c.report(req).await.is_ok() }
    })
    .await;
    let events = acked.events.load(std::sync::atomic::Ordering::Relaxed);
    (acked, Rate { events, seconds: took.as_secs_f64() })
}

/// The transport limit: the same requests to a tonic server that does nothing.
pub(crate) async fn transport(cfg: &LoadConfig) -> anyhow::Result<Rate> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(meter_proto::STREAM_WINDOW)
        .initial_connection_window_size(meter_proto::CONNECTION_WINDOW)
        .tcp_nodelay(true)
        .add_service(IngestServer::new(Nothing).max_decoding_message_size(64 << 20))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.clone().cancelled_owned(),
        );
    let handle = tokio::spawn(server);
    let (_, rate) = drive_client(cfg, client(&url).await?).await;
    stop.cancel();
    let _ = handle.await;
    Ok(rate)
}

/// The records ingest writes for a request among `partitions` partitions
/// (ingest's own validation and encoding).
fn records(req: ReportRequest, now_ms: i64, partitions: i32) -> Vec<meter_proto::report::EventsRecord> {
    meter_ingest::validate(&meter_core::Limits::default(), req, now_ms)
        .map(|b| meter_ingest::kafka_records(b, partitions))
        .unwrap_or_default()
}

/// The Kafka limit: a plain rdkafka producer (ingest's settings) writing the
/// same records to a topic of the same partitions.
pub(crate) async fn kafka(cfg: &LoadConfig, kafka: &KafkaConfig, topic: &str) -> anyhow::Result<Rate> {
    let producer: FutureProducer = kafka.events_producer_config().create()?;
    let acked = Arc::new(Acked::default());
    let topic = topic.to_owned();
    let partitions = kafka.partitions;
    let took = drive(cfg, acked.clone(), move |req: ReportRequest| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            let recs = records(req, meter_runtime::now_ms(), partitions);
            // Enqueue every record, then wait for every delivery (as ingest does).
            let mut pending = Vec::with_capacity(recs.len());
            for r in &recs {
                let record = FutureRecord::to(&topic).partition(r.partition).key(&r.key).payload(&r.value);
                match producer.send_result(record) {
                    Ok(f) => pending.push(f),
                    Err(_) => return false,
                }
            }
            let mut ok = true;
            for f in pending {
                ok &= matches!(f.await, Ok(Ok(_)));
            }
            ok
        }
    })
    .await;
    Ok(Rate { events: acked.events.load(std::sync::atomic::Ordering::Relaxed), seconds: took.as_secs_f64() })
}

/// The ClickHouse limit: the rows the aggregator would write for `events`
/// events of the same load, inserted directly (RowBinary, the same client
/// and table), in inserts of `rows_per_insert` rows, over and over for at
/// least the load's duration (the same keys: ClickHouse does the same work).
/// Returns the events those rows carry per second, and the rows per second.
pub(crate) async fn clickhouse(
    cfg: &LoadConfig,
    store: &Store,
    events: u64,
    rows_per_insert: usize,
) -> anyhow::Result<(Rate, f64)> {
    let now = meter_runtime::now_ms();
    let mut rows: Vec<UsageRow> = Vec::new();
    let (mut made, mut seq, mut offset) = (0u64, 0u64, 0u64);
    while made < events {
        for s in 0..cfg.sources {
            let req = cfg.request(s, seq, now);
            made += req.events.len() as u64;
            for r in records(req, now, 8) {
                offset += 1;
                for b in meter_proto::decode_record(&r.value)? {
                    rows.extend(UsageRow::of_batch(&b, offset, &hourly_rows(&b)));
                }
            }
        }
        seq += 1;
    }
    let started = Instant::now();
    let mut rounds = 0u64;
    while rounds == 0 || started.elapsed() < cfg.duration {
        for chunk in rows.chunks(rows_per_insert) {
            store.write_usage(chunk).await?;
        }
        rounds += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((Rate { events: made * rounds, seconds: secs }, (rows.len() as u64 * rounds) as f64 / secs))
}
