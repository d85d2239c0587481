//! The faults, and how each is injected and healed.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use crate::harness::Cluster;
use crate::procs::{pid_file, signal};

/// A kind of fault (`--kinds` names: the variants in kebab case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultKind {
    /// `kill -9` of ingest, then a restart.
    KillIngest,
    /// `kill -9` of an aggregator, then a restart.
    KillAggregator,
    /// `kill -9` of the enforcer (evaluation, actuator, webhooks), then a restart.
    KillEnforcer,
    /// `kill -9` of the API, then a restart.
    KillApi,
    /// A second aggregator joins the group, then leaves (rebalances).
    AggregatorJoinLeave,
    /// The broker is stopped (SIGSTOP) past the producer's timeout, then resumed.
    BrokerPause,
    /// `kill -9` of the load role (usage.rows -> ClickHouse), then a restart.
    KillLoad,
    /// ClickHouse is stopped (SIGTERM and SIGKILL in turn), then started again.
    #[value(name = "clickhouse-restart")]
    ClickHouseRestart,
    /// ClickHouse is stopped and stays down for the configured outage
    /// (60 s by default) under load; enforcement must not notice.
    #[value(name = "clickhouse-outage")]
    ClickHouseOutage,
    /// Every aggregator stops (SIGTERM), the consumer group is deleted (full replay
    /// from the earliest offset), and an aggregator starts again.
    GroupReset,
    /// On a replicated Kafka only: `kill -9` of the broker leading the most
    /// partitions of the events topic, then a restart.
    KillLeaderBroker,
    /// On a replicated Kafka only, two at once: an aggregator joins (the
    /// group rebalances), the leading broker is killed, the first
    /// aggregator is killed (another rebalance, the broker still down),
    /// then the broker restarts.
    BrokerKillDuringRebalance,
    /// On a replicated ClickHouse only: `kill -9` of a replica (each in
    /// turn: the one the roles talk to, then another), then a restart.
    #[value(name = "kill-clickhouse-replica")]
    KillClickHouseReplica,
    /// On a replicated ClickHouse only: `kill -9` of ZooKeeper, down for
    /// 15 s (the replicated tables refuse writes), then a restart.
    #[value(name = "zookeeper-down")]
    ZooKeeperDown,
    /// On a replicated ClickHouse only, two at once: ZooKeeper killed, then
    /// a replica other than the one written to, both down for 10 s.
    #[value(name = "replica-kill-during-zookeeper-down")]
    ReplicaKillDuringZooKeeperDown,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::KillIngest,
        FaultKind::KillAggregator,
        FaultKind::KillEnforcer,
        FaultKind::KillApi,
        FaultKind::AggregatorJoinLeave,
        FaultKind::BrokerPause,
        FaultKind::KillLoad,
        FaultKind::ClickHouseRestart,
        FaultKind::ClickHouseOutage,
        FaultKind::GroupReset,
    ];

    /// The kinds added on a replicated Kafka (more than one broker).
    pub const CLUSTER: [FaultKind; 2] = [FaultKind::KillLeaderBroker, FaultKind::BrokerKillDuringRebalance];

    /// The kinds added on a replicated ClickHouse (`clickhouse.cluster`).
    pub const CLICKHOUSE_CLUSTER: [FaultKind; 3] =
        [FaultKind::KillClickHouseReplica, FaultKind::ZooKeeperDown, FaultKind::ReplicaKillDuringZooKeeperDown];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillIngest => "kill -9 ingest",
            FaultKind::KillAggregator => "kill -9 aggregator",
            FaultKind::KillEnforcer => "kill -9 enforcer",
            FaultKind::KillApi => "kill -9 api",
            FaultKind::AggregatorJoinLeave => "aggregator join+leave",
            FaultKind::BrokerPause => "broker SIGSTOP",
            FaultKind::KillLoad => "kill -9 load",
            FaultKind::ClickHouseRestart => "clickhouse restart",
            FaultKind::ClickHouseOutage => "clickhouse outage",
            FaultKind::GroupReset => "group reset (full replay)",
            FaultKind::KillLeaderBroker => "kill -9 leading broker",
            FaultKind::BrokerKillDuringRebalance => "broker kill during rebalance",
            FaultKind::KillClickHouseReplica => "kill -9 clickhouse replica",
            FaultKind::ZooKeeperDown => "zookeeper down",
            FaultKind::ReplicaKillDuringZooKeeperDown => "replica kill, zookeeper down",
        }
    }
}

/// True while `pid` runs. A zombie (exited, not yet reaped: the stack's
/// servers are not our children) counts as gone.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// The pid file of the broker leading the most partitions of the events
/// topic: the only broker's on one node, `kafka/node<id>/` on a cluster.
fn leading_broker_pid_file(c: &Cluster) -> anyhow::Result<std::path::PathBuf> {
    let single = c.stack_dir.join("kafka/kafka.pid");
    if single.exists() {
        return Ok(single);
    }
    let id = meter_kafka::busiest_leader(&c.kafka, &c.kafka.events_topic)?;
    Ok(c.stack_dir.join(format!("kafka/node{id}/kafka.pid")))
}

/// `kill -9` of the process whose pid file is `file` (under the stack
/// dir); returns once it is gone.
async fn kill9(c: &Cluster, file: &str) -> anyhow::Result<()> {
    let pid = pid_file(&c.stack_dir.join(file))?;
    signal(pid, "KILL")?;
    for _ in 0..40 {
        if !alive(pid) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("{file}: pid {pid} still running 10 s after SIGKILL")
}

/// `kill -9` of the broker leading the most events partitions.
async fn kill_leading_broker(c: &Cluster) -> anyhow::Result<()> {
    let file = leading_broker_pid_file(c)?;
    let relative = file.strip_prefix(&c.stack_dir)?.to_string_lossy().into_owned();
    kill9(c, &relative).await?;
    println!("chaos: broker {} killed", file.parent().map_or_else(String::new, |d| d.display().to_string()));
    Ok(())
}

/// The pid file of ClickHouse replica `i` (1-based), as deploy/local/stack lays them out.
fn replica_pid_file(i: usize) -> String {
    if i == 1 {
        "clickhouse/clickhouse.pid".into()
    } else {
        format!("clickhouse{i}/clickhouse.pid")
    }
}

/// Stops ClickHouse, by SIGTERM and SIGKILL in turn.
async fn stop_clickhouse(c: &mut Cluster) -> anyhow::Result<()> {
    let pid = pid_file(&c.stack_dir.join("clickhouse/clickhouse.pid"))?;
    c.clickhouse_restarts += 1;
    let sig = if c.clickhouse_restarts.is_multiple_of(2) { "KILL" } else { "TERM" };
    let t0 = std::time::Instant::now();
    signal(pid, sig)?;
    for _ in 0..240 {
        if !alive(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::ensure!(!alive(pid), "clickhouse (pid {pid}) still running 60 s after SIG{sig}");
    println!("chaos: clickhouse stopped by SIG{sig} in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Starts ClickHouse again after a `ClickHouseOutage`; records the window.
pub(crate) async fn end_clickhouse_outage(c: &mut Cluster) -> anyhow::Result<()> {
    if let Some(from) = c.outage_from.take() {
        c.stack_up().await?;
        c.outages.push((from, meter_runtime::now_ms()));
    }
    Ok(())
}

/// Injects `kind` and heals it; returns when the cluster is whole again.
pub(crate) async fn inject(c: &mut Cluster, kind: FaultKind) -> anyhow::Result<()> {
    match kind {
        FaultKind::KillIngest => c.kill_and_restart("ingest").await?,
        FaultKind::KillEnforcer => c.kill_and_restart("enforce").await?,
        FaultKind::KillApi => c.kill_and_restart("api").await?,
        FaultKind::KillAggregator => match c.aggregators.pop() {
            Some(mut a) => {
                a.kill9();
                c.start_as("aggregate", a.instance()).await?;
            }
            None => c.start("aggregate").await?,
        },
        FaultKind::AggregatorJoinLeave => {
            c.start("aggregate").await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let first = c.aggregators.remove(0);
            drop(first); // SIGKILL: the group notices at the session timeout
        }
        FaultKind::BrokerPause => {
            let pid = pid_file(&leading_broker_pid_file(c)?)?;
            signal(pid, "STOP")?;
            tokio::time::sleep(Duration::from_millis(c.produce_timeout_ms + 2000)).await;
            signal(pid, "CONT")?;
        }
        FaultKind::KillLoad => c.kill_and_restart("load").await?,
        FaultKind::KillLeaderBroker => {
            kill_leading_broker(c).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            c.stack_up().await?;
        }
        FaultKind::BrokerKillDuringRebalance => {
            c.start("aggregate").await?;
            kill_leading_broker(c).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            let first = c.aggregators.remove(0);
            drop(first); // SIGKILL: a second rebalance, the broker still down
            tokio::time::sleep(Duration::from_secs(3)).await;
            c.stack_up().await?;
        }
        FaultKind::KillClickHouseReplica => {
            let i = c.replica_kills % c.clickhouse_replicas + 1;
            c.replica_kills += 1;
            kill9(c, &replica_pid_file(i)).await?;
            println!("chaos: clickhouse replica {i} killed");
            tokio::time::sleep(Duration::from_secs(3)).await;
            c.stack_up().await?;
        }
        FaultKind::ZooKeeperDown => {
            kill9(c, "zookeeper/zookeeper.pid").await?;
            tokio::time::sleep(Duration::from_secs(15)).await;
            c.stack_up().await?;
        }
        FaultKind::ReplicaKillDuringZooKeeperDown => {
            kill9(c, "zookeeper/zookeeper.pid").await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            kill9(c, &replica_pid_file(c.clickhouse_replicas)).await?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            c.stack_up().await?;
        }
        FaultKind::ClickHouseRestart => {
            stop_clickhouse(c).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.stack_up().await?;
        }
        FaultKind::ClickHouseOutage => {
            // Ended by `end_clickhouse_outage` once the run has made
            // crossings during it.
            stop_clickhouse(c).await?;
            c.outage_from = Some(meter_runtime::now_ms());
        }
        FaultKind::GroupReset => {
            // Stopped gracefully (kill -9 of an aggregator is a fault of its
            // own); static members stay in the group until their session
            // times out, so the deletion is retried until then.
            for mut a in c.aggregators.drain(..) {
                tokio::task::spawn_blocking(move || a.terminate()).await?;
            }
            let admin: AdminClient<DefaultClientContext> = c.kafka.client_config().create()?;
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
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
            c.start("aggregate").await?;
        }
    }
    c.heal().await
}
