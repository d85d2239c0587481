//! One reporting node: numbers its batches and retries each until ingest
//! acknowledges it, as a real compute node would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meter_core::Event;
use meter_proto::event_to_wire;
use meter_proto::v1::ingest_client::IngestClient;
use meter_proto::v1::ReportRequest;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::Code;

/// Counters shared by every node of a run.
#[derive(Debug, Default)]
pub struct SendStats {
    pub events_acked: AtomicU64,
    pub batches_acked: AtomicU64,
    /// Attempts that failed with a retryable status and were sent again.
    pub retries: AtomicU64,
    /// Batches refused as invalid (a simulator bug if ever non-zero).
    pub rejected: AtomicU64,
    /// Acknowledged batches deliberately sent again (1 to 5 times each).
    pub duplicates_sent: AtomicU64,
    /// Every event sent at least once, acknowledged or not: an upper bound
    /// of what the pipeline may have counted at any moment.
    pub attempted: std::sync::Mutex<crate::Truth>,
    /// Every acknowledged batch: `(source_id, batch_seq, project ids)`.
    pub acked_batches: std::sync::Mutex<Vec<AckedBatch>>,
}

/// An acknowledged batch, for checking that each one was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedBatch {
    pub source_id: String,
    pub batch_seq: u64,
    /// Events per project in the batch.
    pub projects: Vec<(String, usize)>,
}

/// What became of a batch.
#[derive(Debug)]
pub enum Delivery {
    Acked,
    Rejected(tonic::Status),
    /// `stop` was cancelled before an acknowledgement.
    Stopped,
}

/// A source reporting to ingest.
#[derive(Debug)]
pub struct NodeSender {
    client: IngestClient<Channel>,
    source_id: String,
    next_seq: u64,
    duplicate_rate: f64,
    rng: SmallRng,
    /// `Bearer <token>`, when ingest authenticates.
    authorization: Option<MetadataValue<Ascii>>,
}

fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
    )
}

impl NodeSender {
    /// A sender for `source_id` over `channel`. `duplicate_rate` is the
    /// share of acknowledged batches sent once more (a client retry whose
    /// first answer was lost).
    pub fn new(channel: Channel, source_id: String, duplicate_rate: f64, seed: u64) -> Self {
        NodeSender {
            client: IngestClient::new(channel).max_decoding_message_size(64 << 20),
            source_id,
            next_seq: 1,
            duplicate_rate,
            rng: SmallRng::seed_from_u64(seed),
            authorization: None,
        }
    }

    /// Sends `token` as a bearer token with every Report.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.authorization = token.and_then(|t| format!("Bearer {t}").parse().ok());
        self
    }

    /// Sends `events` as the next batch, retrying with backoff until it is
    /// acknowledged, refused, or `stop` is cancelled.
    pub async fn send(&mut self, events: &[Event], stats: &SendStats, stop: &CancellationToken) -> Delivery {
        let req = ReportRequest {
            source_id: self.source_id.clone(),
            batch_seq: self.next_seq,
            events: events.iter().map(|e| event_to_wire(e, true)).collect(),
        };
        self.next_seq += 1;
        stats.attempted.lock().expect("attempted").record(events);
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut call = tonic::Request::new(req.clone());
            call.set_timeout(Duration::from_secs(15));
            if let Some(a) = &self.authorization {
                call.metadata_mut().insert("authorization", a.clone());
            }
            match self.client.report(call).await {
                Ok(_) => break,
                Err(s) if retryable(s.code()) => {
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(source = %self.source_id, seq = req.batch_seq, status = %s, "sim.retry");
                    // A rate-limited source waits as long as ingest says.
                    let hint = s
                        .metadata()
                        .get(meter_proto::RETRY_AFTER_MS)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    let wait = hint.map_or(backoff, |ms| Duration::from_millis(ms.min(60_000)));
                    tokio::select! {
                        _ = stop.cancelled() => return Delivery::Stopped,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(s) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(source = %self.source_id, seq = req.batch_seq, status = %s, "sim.batch_rejected");
                    return Delivery::Rejected(s);
                }
            }
        }
        stats.batches_acked.fetch_add(1, Ordering::Relaxed);
        stats.events_acked.fetch_add(events.len() as u64, Ordering::Relaxed);
        let mut projects: Vec<(String, usize)> = Vec::new();
        for e in events {
            match projects.iter_mut().find(|(p, _)| p == e.project_id.as_str()) {
                Some((_, n)) => *n += 1,
                None => projects.push((e.project_id.to_string(), 1)),
            }
        }
        stats.acked_batches.lock().expect("acked").push(AckedBatch {
            source_id: self.source_id.clone(),
            batch_seq: req.batch_seq,
            projects,
        });
        if self.duplicate_rate > 0.0 && self.rng.random_bool(self.duplicate_rate) {
            // A client retry whose first answer was lost, 1 to 5 times:
            // whatever these answer, the batch is already counted once.
            for _ in 0..self.rng.random_range(1..=5) {
                let _ = self.client.report(req.clone()).await;
                stats.duplicates_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Delivery::Acked
    }
}
