//! One reporting node: numbers its batches and retries each until ingest
//! acknowledges it, as a real compute node would.

use std::sync::atomic::{AtomicU64, Ordering};

use meter_client::{Sender, SourceIdentity};
use meter_core::Event;
use meter_proto::event_to_wire;
use meter_proto::v1::ReportRequest;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use meter_client::Delivery;

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
    /// Node restarts (a new session, `batch_seq` from 1).
    pub restarts: AtomicU64,
    /// Acknowledged batches reported again by a twin source, same keys.
    pub key_twins_sent: AtomicU64,
    /// Every event sent at least once, acknowledged or not: an upper bound
    /// of what the pipeline may have counted at any moment.
    pub attempted: std::sync::Mutex<crate::Truth>,
}

/// A source reporting to ingest, through the client library's identity
/// and retry policy (`meter-client`).
#[derive(Debug)]
pub struct NodeSender {
    sender: Sender,
    identity: SourceIdentity,
    duplicate_rate: f64,
    rng: SmallRng,
    restart_rate: f64,
    key_twin_rate: f64,
    /// The second source that repeats keyed batches.
    twin: SourceIdentity,
}

impl NodeSender {
    /// A sender for `source_id` over `channel`. `duplicate_rate` is the
    /// share of acknowledged batches sent once more (a client retry whose
    /// first answer was lost).
    pub fn new(channel: Channel, source_id: String, duplicate_rate: f64, seed: u64) -> Self {
        NodeSender {
            sender: Sender::new(channel, None),
            twin: SourceIdentity::start(format!("{source_id}-twin")),
            identity: SourceIdentity::start(source_id),
            duplicate_rate,
            rng: SmallRng::seed_from_u64(seed),
            restart_rate: 0.0,
            key_twin_rate: 0.0,
        }
    }

    /// Restarts before `restart_rate` of the batches; has `key_twin_rate`
    /// of the acknowledged batches reported again by a twin source with
    /// the same idempotency keys (every event then carries a key).
    pub fn with_faults(mut self, restart_rate: f64, key_twin_rate: f64) -> Self {
        (self.restart_rate, self.key_twin_rate) = (restart_rate, key_twin_rate);
        self
    }

    /// Sends `token` as a bearer token with every Report.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.sender = self.sender.with_token(token);
        self
    }

    /// The node restarts and forgets everything: a new session, batch
    /// numbers from 1 again (what `meter-chaos` injects as "compute node
    /// restart").
    pub fn restart(&mut self) {
        self.identity.restart();
    }

    /// Sends `events` as the next batch, retrying with backoff until it is
    /// acknowledged, refused, or `stop` is cancelled.
    pub async fn send(&mut self, events: &[Event], stats: &SendStats, stop: &CancellationToken) -> Delivery {
        if self.restart_rate > 0.0 && self.rng.random_bool(self.restart_rate) {
            self.restart();
            stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        let mut req = ReportRequest {
            source_id: self.identity.source_id().to_owned(),
            source_session: self.identity.session(),
            batch_seq: self.identity.next_seq(),
            events: events.iter().map(|e| event_to_wire(e, true)).collect(),
        };
        if self.key_twin_rate > 0.0 {
            for (i, e) in req.events.iter_mut().enumerate() {
                e.idempotency_key = format!("{}-{:x}-{}-{i}", req.source_id, req.source_session, req.batch_seq);
            }
        }
        stats.attempted.lock().expect("attempted").record(events);
        let source = self.identity.source_id().to_owned();
        let delivery = self
            .sender
            .send_until_acked(&req, stop, |s| {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(source = %source, seq = req.batch_seq, status = %s, "sim.retry");
            })
            .await;
        match &delivery {
            Delivery::Acked => {}
            Delivery::Rejected(s) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(source = %source, seq = req.batch_seq, status = %s, "sim.batch_rejected");
                return delivery;
            }
            Delivery::Stopped => return delivery,
        }
        stats.batches_acked.fetch_add(1, Ordering::Relaxed);
        stats.events_acked.fetch_add(events.len() as u64, Ordering::Relaxed);
        if self.duplicate_rate > 0.0 && self.rng.random_bool(self.duplicate_rate) {
            // A client retry whose first answer was lost, 1 to 5 times:
            // whatever these answer, the batch is already counted once.
            for _ in 0..self.rng.random_range(1..=5) {
                let _ = self.sender.try_send(&req).await;
                stats.duplicates_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.key_twin_rate > 0.0 && self.rng.random_bool(self.key_twin_rate) {
            // Another source reports the same events with the same keys: a
            // second collector, or a failover. Counted once, whatever it answers.
            let twin = ReportRequest {
                source_id: self.twin.source_id().to_owned(),
                source_session: self.twin.session(),
                batch_seq: self.twin.next_seq(),
                events: req.events.clone(),
            };
            if matches!(self.sender.send_until_acked(&twin, stop, |_| {}).await, Delivery::Acked) {
                stats.key_twins_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Delivery::Acked
    }
}
