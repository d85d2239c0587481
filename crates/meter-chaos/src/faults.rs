//! The faults, and how each is injected and healed.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use crate::harness::Cluster;
use crate::procs::{pid_file, signal};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `kill -9` of ingest, then a restart.
    KillIngest,
    /// `kill -9` of an aggregator, then a restart.
    KillAggregator,
    /// A second aggregator joins the group, then leaves (rebalances).
    AggregatorJoinLeave,
    /// The broker is stopped (SIGSTOP) past the producer's timeout, then resumed.
    BrokerPause,
    /// ClickHouse is stopped, then started again.
    ClickHouseRestart,
    /// Every aggregator stops, the consumer group is deleted (full replay
    /// from the earliest offset), and an aggregator starts again.
    GroupReset,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 6] = [
        FaultKind::KillIngest,
        FaultKind::KillAggregator,
        FaultKind::AggregatorJoinLeave,
        FaultKind::BrokerPause,
        FaultKind::ClickHouseRestart,
        FaultKind::GroupReset,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillIngest => "kill -9 ingest",
            FaultKind::KillAggregator => "kill -9 aggregator",
            FaultKind::AggregatorJoinLeave => "aggregator join+leave",
            FaultKind::BrokerPause => "broker SIGSTOP",
            FaultKind::ClickHouseRestart => "clickhouse restart",
            FaultKind::GroupReset => "group reset (full replay)",
        }
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Injects `kind` and heals it; returns when the cluster is whole again.
pub(crate) async fn inject(c: &mut Cluster, kind: FaultKind) -> anyhow::Result<()> {
    match kind {
        FaultKind::KillIngest => {
            c.ingest.kill9();
            c.start_ingest().await?;
        }
        FaultKind::KillAggregator => {
            if let Some(mut a) = c.aggregators.pop() {
                a.kill9();
            }
            c.start_aggregator().await?;
        }
        FaultKind::AggregatorJoinLeave => {
            c.start_aggregator().await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let first = c.aggregators.remove(0);
            drop(first); // SIGKILL: the group notices at the session timeout
        }
        FaultKind::BrokerPause => {
            let pid = pid_file(&c.stack_dir.join("kafka/kafka.pid"))?;
            signal(pid, "STOP")?;
            tokio::time::sleep(Duration::from_millis(c.produce_timeout_ms + 2000)).await;
            signal(pid, "CONT")?;
        }
        FaultKind::ClickHouseRestart => {
            let pid = pid_file(&c.stack_dir.join("clickhouse/clickhouse.pid"))?;
            signal(pid, "TERM")?;
            for _ in 0..120 {
                if !alive(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.stack_up().await?;
        }
        FaultKind::GroupReset => {
            c.aggregators.clear(); // SIGKILL each
            let admin: AdminClient<DefaultClientContext> = c.kafka.client_config().create()?;
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            // The group empties once the killed members' sessions expire.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let r = admin.delete_groups(&[c.group_id.as_str()], &opts).await?;
                match r.first() {
                    Some(Ok(_)) => break,
                    Some(Err((_, code))) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!(?code, "chaos.group_not_empty_yet");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    other => anyhow::bail!("deleting consumer group {}: {other:?}", c.group_id),
                }
            }
            c.start_aggregator().await?;
        }
    }
    c.heal().await
}
