//! `MeterClient`: what a compute node embeds. Events are queued (bounded:
//! `record` waits for room, `try_record` refuses and counts), cut into
//! batches by size and time, spooled to disk when a spool is configured,
//! and sent one batch at a time until acknowledged, each retry with the
//! same batch identity.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meter_proto::v1::{ReportRequest, UsageEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::metrics as m;
use crate::{Delivery, Sender, SourceIdentity, Spool};

/// How a client batches, queues and spools.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// This node's source id (stable across restarts: a host or pod name).
    pub source_id: String,
    /// Bearer token, when ingest authenticates.
    pub token: Option<String>,
    /// A batch is sent when it has this many events...
    pub max_batch_events: usize,
    /// ... or when its first event has waited this long.
    pub max_batch_delay: Duration,
    /// Events waiting to be batched; beyond it `record` waits.
    pub queue_events: usize,
    /// Batches waiting for an acknowledgement (in memory, and in the spool
    /// when there is one); beyond it batching pauses and the queue fills.
    pub max_pending_batches: usize,
    /// Where batches are kept until acknowledged, across restarts; `None`:
    /// in memory only (lost if the process dies before the ack).
    pub spool_dir: Option<PathBuf>,
}

impl ClientConfig {
    /// Defaults for `source_id`: 1,000 events or 1 s per batch, 100,000
    /// queued events, 1,024 pending batches, no spool.
    pub fn new(source_id: impl Into<String>) -> Self {
        ClientConfig {
            source_id: source_id.into(),
            token: None,
            max_batch_events: 1000,
            max_batch_delay: Duration::from_secs(1),
            queue_events: 100_000,
            max_pending_batches: 1024,
            spool_dir: None,
        }
    }
}

/// Counts of what the client did, since it started.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub events_queued: AtomicU64,
    pub events_acked: AtomicU64,
    /// Refused by `try_record` with the queue full.
    pub events_dropped: AtomicU64,
    /// In batches ingest refused for good (invalid): never counted.
    pub events_rejected: AtomicU64,
    pub batches_spooled: AtomicU64,
    /// Events in the batches spooled.
    pub events_spooled: AtomicU64,
    /// Batches found in the spool at start and sent again.
    pub batches_replayed: AtomicU64,
    pub batches_acked: AtomicU64,
    pub retries: AtomicU64,
}

/// Why an event was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("the client's queue is full ({0} events); the event was dropped and counted")]
    Full(usize),
    #[error("the client is shut down")]
    Closed,
}

enum Command {
    Event(Box<UsageEvent>),
    Flush(oneshot::Sender<()>),
}

enum Pending {
    Batch(ReportRequest),
    Flushed(oneshot::Sender<()>),
}

/// A running client (see the module doc).
#[derive(Debug)]
pub struct MeterClient {
    tx: mpsc::Sender<Command>,
    stats: Arc<ClientStats>,
    queue_events: usize,
    stop: CancellationToken,
    batcher: JoinHandle<std::io::Result<()>>,
    sender: JoinHandle<()>,
    session: u64,
}

impl MeterClient {
    /// Starts a client over `channel`: first the batches a previous run
    /// left in the spool (with their own session and `batch_seq`), then
    /// this run's, in a session of its own.
    pub fn start(channel: Channel, cfg: ClientConfig) -> std::io::Result<Self> {
        m::describe();
        let spool = cfg.spool_dir.as_ref().map(Spool::open).transpose()?;
        let replay = match &spool {
            Some(s) => s.load(&cfg.source_id)?,
            None => Vec::new(),
        };
        let stats = Arc::new(ClientStats::default());
        stats.batches_replayed.store(replay.len() as u64, Ordering::Relaxed);
        if !replay.is_empty() {
            tracing::info!(batches = replay.len(), source = %cfg.source_id, "client.spool_replay");
        }
        let identity = SourceIdentity::start(cfg.source_id.clone());
        let session = identity.session();
        let (tx, rx) = mpsc::channel(cfg.queue_events.max(1));
        let (ptx, prx) = mpsc::channel(cfg.max_pending_batches.max(1));
        let stop = CancellationToken::new();
        let sender = Sender::new(channel, cfg.token.as_deref());
        let batcher = tokio::spawn(batch(cfg.clone(), identity, rx, ptx, spool.clone(), stats.clone()));
        let sender = tokio::spawn(send(sender, replay, prx, spool, stats.clone(), stop.clone()));
        Ok(MeterClient { tx, stats, queue_events: cfg.queue_events, stop, batcher, sender, session })
    }

    /// Queues an event, waiting while the queue is full (backpressure).
    pub async fn record(&self, event: UsageEvent) -> Result<(), RecordError> {
        self.tx.send(Command::Event(Box::new(event))).await.map_err(|_| RecordError::Closed)?;
        self.stats.events_queued.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::EVENTS, "outcome" => "queued").increment(1);
        Ok(())
    }

    /// Queues an event if there is room; otherwise drops it and counts it.
    pub fn try_record(&self, event: UsageEvent) -> Result<(), RecordError> {
        match self.tx.try_send(Command::Event(Box::new(event))) {
            Ok(()) => {
                self.stats.events_queued.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::EVENTS, "outcome" => "queued").increment(1);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::EVENTS, "outcome" => "dropped").increment(1);
                Err(RecordError::Full(self.queue_events))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(RecordError::Closed),
        }
    }

    /// Cuts the current batch and waits until every batch so far is
    /// acknowledged (or refused).
    pub async fn flush(&self) -> Result<(), RecordError> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Command::Flush(done)).await.map_err(|_| RecordError::Closed)?;
        wait.await.map_err(|_| RecordError::Closed)
    }

    /// What the client did so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// This run's session.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Sends what is queued, waiting up to `timeout` for acknowledgements;
    /// what is still unacknowledged then stays in the spool (if any) for
    /// the next start. Returns true when everything was acknowledged.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        let flushed = tokio::time::timeout(timeout, self.flush()).await.is_ok_and(|r| r.is_ok());
        drop(self.tx);
        self.stop.cancel();
        let _ = self.batcher.await;
        let _ = self.sender.await;
        flushed
    }
}

async fn batch(
    cfg: ClientConfig,
    mut identity: SourceIdentity,
    mut rx: mpsc::Receiver<Command>,
    out: mpsc::Sender<Pending>,
    spool: Option<Spool>,
    stats: Arc<ClientStats>,
) -> std::io::Result<()> {
    let mut events: Vec<UsageEvent> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut closed = false;
    while !closed {
        // `None` from the timer: the batch's time is up.
        let cmd = match deadline {
            Some(d) => tokio::select! {
                c = rx.recv() => Some(c),
                _ = tokio::time::sleep_until(d) => None,
            },
            None => Some(rx.recv().await),
        };
        let (cut, flushed) = match cmd {
            Some(Some(Command::Event(e))) => {
                events.push(*e);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + cfg.max_batch_delay);
                (events.len() >= cfg.max_batch_events, None)
            }
            Some(Some(Command::Flush(done))) => (true, Some(done)),
            Some(None) => {
                closed = true;
                (true, None)
            }
            None => (true, None),
        };
        if cut && !events.is_empty() {
            let req = ReportRequest {
                source_id: identity.source_id().to_owned(),
                source_session: identity.session(),
                batch_seq: identity.next_seq(),
                events: std::mem::take(&mut events),
            };
            if let Some(s) = &spool {
                s.put(&req)?;
                stats.batches_spooled.fetch_add(1, Ordering::Relaxed);
                stats.events_spooled.fetch_add(req.events.len() as u64, Ordering::Relaxed);
                metrics::counter!(m::SPOOLED).increment(1);
            }
            if out.send(Pending::Batch(req)).await.is_err() {
                return Ok(());
            }
            deadline = None;
        }
        if let Some(done) = flushed {
            let _ = out.send(Pending::Flushed(done)).await;
        }
    }
    Ok(())
}

async fn send(
    mut sender: Sender,
    replay: Vec<ReportRequest>,
    mut rx: mpsc::Receiver<Pending>,
    spool: Option<Spool>,
    stats: Arc<ClientStats>,
    stop: CancellationToken,
) {
    let mut replay = replay.into_iter();
    loop {
        let req = match replay.next() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(Pending::Batch(r)) => r,
                Some(Pending::Flushed(done)) => {
                    let _ = done.send(());
                    continue;
                }
                None => return,
            },
        };
        metrics::gauge!(m::PENDING).set(rx.len() as f64);
        let delivery = sender
            .send_until_acked(&req, &stop, |s| {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(seq = req.batch_seq, status = %s, "client.retry");
            })
            .await;
        let n = req.events.len() as u64;
        match delivery {
            Delivery::Acked => {
                stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                stats.events_acked.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(m::EVENTS, "outcome" => "acked").increment(n);
            }
            Delivery::Rejected(s) => {
                stats.events_rejected.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(m::EVENTS, "outcome" => "rejected").increment(n);
                tracing::error!(seq = req.batch_seq, events = n, status = %s, "client.batch_rejected");
            }
            Delivery::Stopped => return,
        }
        if let Some(s) = &spool {
            if let Err(e) = s.remove(&req) {
                tracing::warn!(error = %e, "client.spool_remove_failed");
            }
        }
    }
}
