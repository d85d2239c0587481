//! A compute node in a box: reports `--events` usage events (each
//! `written_data_bytes` = `--value` for `--project`) through `MeterClient`,
//! optionally spooled, then waits until all are acknowledged. Prints
//! `spooled N` once every event is in the spool and `acked N` at the end.
//! The end-to-end test kills it with `kill -9` while ingest is down and
//! starts it again on the same spool.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use meter_client::{ClientConfig, MeterClient};
use meter_proto::v1::{Kind, Metric, UsageEvent};

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long)]
    ingest: String,
    #[arg(long)]
    source: String,
    #[arg(long)]
    project: String,
    #[arg(long, default_value_t = 100)]
    events: u64,
    #[arg(long, default_value_t = 1)]
    value: u64,
    /// Events per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    #[arg(long)]
    spool: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let channel = tonic::transport::Endpoint::from_shared(cli.ingest.clone())?.connect_lazy();
    let mut cfg = ClientConfig::new(cli.source.clone());
    cfg.spool_dir = cli.spool.clone();
    cfg.max_batch_events = 50;
    cfg.max_batch_delay = Duration::from_millis(200);
    let client = MeterClient::start(channel, cfg)?;
    let pause = Duration::from_micros(1_000_000 / cli.rate.max(1));
    for _ in 0..cli.events {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let event = UsageEvent {
            project_id: cli.project.clone(),
            metric: Metric::WrittenDataBytes as i32,
            kind: Kind::Incremental as i32,
            value: cli.value,
            start_unix_ms: now - 1000,
            end_unix_ms: now,
            ..Default::default()
        };
        client.record(event).await?;
        tokio::time::sleep(pause).await;
    }
    if cli.spool.is_some() {
        // Cut the last batch (the flush itself waits for ingest).
        let stats = client.stats();
        let flushing = client.flush();
        tokio::pin!(flushing);
        loop {
            tokio::select! {
                _ = &mut flushing => break,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    let spooled = stats.events_spooled.load(std::sync::atomic::Ordering::Relaxed);
                    if spooled == cli.events {
                        println!("spooled {spooled}");
                        // Waits for ingest (or for kill -9).
                        (&mut flushing).await?;
                        break;
                    }
                }
            }
        }
    } else {
        client.flush().await?;
    }
    let acked = client.stats().events_acked.load(std::sync::atomic::Ordering::Relaxed);
    println!("acked {acked}");
    client.shutdown(Duration::from_secs(30)).await;
    Ok(())
}
