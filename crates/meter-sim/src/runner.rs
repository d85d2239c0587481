//! Running a simulated fleet against a live ingest endpoint.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meter_core::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sender::Delivery;
use crate::{Fleet, FleetConfig, NodeSender, SendStats, Truth};
use meter_runtime::now_ms;

/// A run: which fleet, against which ingest, for how long.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Ingest gRPC endpoint, e.g. `http://127.0.0.1:50051`; several,
    /// comma-separated: node i sends to the (i mod n)-th.
    pub ingest_url: String,
    pub fleet: FleetConfig,
    pub duration: Duration,
    pub tick: Duration,
    /// Largest batch a node sends; a tick's events are split to fit.
    pub max_batch_events: usize,
    /// Share of acknowledged batches resent once (retries to deduplicate).
    pub duplicate_rate: f64,
    /// Bearer token for ingest, when it authenticates.
    pub token: Option<String>,
    /// Share of batches before which the node restarts and forgets
    /// everything (a new session, `batch_seq` from 1).
    pub restart_rate: f64,
    /// Share of acknowledged batches that a second source (`<node>-twin`)
    /// reports again with the same idempotency keys (then every event
    /// carries a key).
    pub key_twin_rate: f64,
}

/// What a run sent.
#[derive(Debug)]
pub struct RunSummary {
    pub truth: Truth,
    pub elapsed: Duration,
    pub project_ids: Vec<String>,
}

/// Runs the fleet until `duration` has passed or `finish` is cancelled, then
/// waits until every generated batch is acknowledged (or `stop` is
/// cancelled). The truth holds exactly the acknowledged events.
pub async fn run(
    cfg: RunConfig,
    stats: Arc<SendStats>,
    finish: CancellationToken,
    stop: CancellationToken,
) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let mut fleet = Fleet::new(cfg.fleet.clone(), now_ms());
    let project_ids = fleet.project_ids().map(ToString::to_string).collect();
    let channels = cfg
        .ingest_url
        .split(',')
        .map(|url| {
            Ok(tonic::transport::Endpoint::from_shared(url.trim().to_owned())?
                .connect_timeout(Duration::from_secs(5))
                .initial_stream_window_size(meter_proto::STREAM_WINDOW)
                .initial_connection_window_size(meter_proto::CONNECTION_WINDOW)
                .tcp_nodelay(true)
                .connect_lazy())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let truth = Arc::new(Mutex::new(Truth::default()));
    let mut queues = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..cfg.fleet.nodes {
        let (tx, mut rx) = mpsc::channel::<Vec<Event>>(2);
        queues.push(tx);
        let source = format!("{}-node{i:03}", cfg.fleet.prefix);
        let channel = channels[i % channels.len()].clone();
        let mut sender = NodeSender::new(channel, source, cfg.duplicate_rate, cfg.fleet.seed ^ i as u64)
            .with_token(cfg.token.as_deref())
            .with_faults(cfg.restart_rate, cfg.key_twin_rate);
        let (stats, truth, stop, max) = (stats.clone(), truth.clone(), stop.clone(), cfg.max_batch_events.max(1));
        nodes.push(tokio::spawn(async move {
            while let Some(events) = rx.recv().await {
                for chunk in events.chunks(max) {
                    match sender.send(chunk, &stats, &stop).await {
                        Delivery::Acked => truth.lock().expect("truth lock").record(chunk),
                        Delivery::Rejected(_) => {}
                        Delivery::Stopped => return,
                    }
                }
            }
        }));
    }
    let mut ticker = tokio::time::interval(cfg.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = tokio::time::Instant::now() + cfg.duration;
    'gen: loop {
        tokio::select! {
            _ = finish.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => break,
            _ = ticker.tick() => {}
        }
        for (q, events) in queues.iter().zip(fleet.tick(now_ms())) {
            if events.is_empty() {
                continue;
            }
            tokio::select! {
                _ = finish.cancelled() => break 'gen,
                sent = q.send(events) => if sent.is_err() { break 'gen },
            }
        }
    }
    drop(queues);
    for n in nodes {
        n.await?;
    }
    let truth =
        Arc::try_unwrap(truth).map_err(|_| anyhow::anyhow!("truth still shared"))?.into_inner().expect("truth lock");
    Ok(RunSummary { truth, elapsed: started.elapsed(), project_ids })
}
