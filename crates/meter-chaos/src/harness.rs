//! The run: cluster set-up, load, faults, sampling, final check.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meter_kafka::KafkaConfig;
use meter_sim::{Fleet, FleetConfig, RunConfig, SendStats};
use meter_store::{Store, StoreConfig};

use crate::ports::free_port;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::adjust::Adjuster;
use crate::check::{final_check, replica_exact, Sampler};
use crate::faults::{end_clickhouse_outage, inject, FaultKind};
use crate::procs::{ready, Launcher, Proc};
use crate::quotas::{EnforcementReport, Quotas};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The `meterd` binary.
    pub meterd: PathBuf,
    /// The repository (for `deploy/local/stack`).
    pub repo: PathBuf,
    /// The local stack's directory (pid files).
    pub stack_dir: PathBuf,
    pub brokers: String,
    /// Replicas of the run's topics (3 on a replicated Kafka).
    pub replication_factor: i32,
    pub clickhouse_url: String,
    /// `clickhouse.cluster` of the run (empty: one ClickHouse server).
    pub clickhouse_cluster: String,
    /// Every replica's URL on a replicated ClickHouse (the first is
    /// `clickhouse_url`); each is checked exact at the end.
    pub clickhouse_replicas: Vec<String>,
    /// How long the load runs.
    pub duration: Duration,
    /// Pause between faults, drawn from this range (seconds).
    pub fault_gap_s: (u64, u64),
    pub kinds: Vec<FaultKind>,
    /// Keep injecting (and the load running) past `duration` until every
    /// kind was injected at least this often.
    pub faults_each: usize,
    pub projects: usize,
    /// Who reports: compute nodes for their own projects, or collectors.
    pub shape: LoadShape,
    pub seed: u64,
    /// Share of batches before which a compute node restarts and forgets
    /// everything (new session, `batch_seq` from 1).
    pub restart_rate: f64,
    /// Share of acknowledged batches reported again by a second source with
    /// the same idempotency keys.
    pub key_twin_rate: f64,
    /// How long a `ClickHouseOutage` keeps ClickHouse down.
    pub clickhouse_outage: Duration,
    /// Processes of each role but the aggregator (which varies by its own
    /// faults): load and enforce in their consumer groups, ingest and api
    /// on ports of their own; their kill faults kill one instance at a time.
    pub instances: usize,
}

/// The load's shape (issue 19), `--shape` of meter-chaos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LoadShape {
    /// 4 nodes, 2 computes per project, a tick every 100 ms, batches of at
    /// most 500 events: each batch carries a few dozen projects.
    #[default]
    ComputeNodes,
    /// 4 collectors reporting for every project (one compute each), a tick
    /// every second, batches of up to 2,000 events: with `--projects 2000`
    /// each batch carries ~500 projects, 1-4 events each, as a proxy or a
    /// storage service reports.
    Collectors,
}

impl LoadShape {
    /// (computes per project, tick, most events per batch).
    fn params(self) -> (usize, Duration, usize) {
        match self {
            LoadShape::ComputeNodes => (2, Duration::from_millis(100), 500),
            LoadShape::Collectors => (1, Duration::from_secs(1), 2_000),
        }
    }
}

/// What happened.
#[derive(Debug, Default)]
pub struct ChaosReport {
    /// When the faults began to be injected (unix ms): the `[Ns]` of the
    /// fault lines counts from it.
    pub started_ms: i64,
    pub faults: BTreeMap<FaultKind, usize>,
    pub crashes_restarted: usize,
    pub events_acked: u64,
    pub batches_acked: u64,
    pub duplicates_sent: u64,
    pub node_restarts: u64,
    pub key_twins_sent: u64,
    /// Sum over projects and metrics of stored minus truth, where positive.
    pub over_counted_value: u64,
    /// Sum over projects and metrics of truth minus stored, where positive.
    pub under_counted_value: u64,
    /// Sampling violations: a counter went down, or above what was sent.
    pub violations: Vec<String>,
    pub samples: usize,
    pub converged_after: Option<Duration>,
    pub totals_topic_exact: bool,
    pub enforcement: EnforcementReport,
    /// Adjustments applied through the api while the faults ran, and the
    /// requests it took beyond one each.
    pub adjustments_applied: u64,
    pub adjustment_retries: u64,
    /// `usage_adjustments` holds exactly the ledger's adjustments.
    pub adjustments_exact: bool,
    /// Replicas other than the one written to whose usage did not equal
    /// the ground truth (a replicated ClickHouse).
    pub replicas_not_exact: Vec<String>,
}

impl ChaosReport {
    /// True when nothing was lost or double-counted and no sample misbehaved.
    pub fn exact(&self) -> bool {
        self.over_counted_value == 0
            && self.under_counted_value == 0
            && self.violations.is_empty()
            && self.converged_after.is_some()
            && self.totals_topic_exact
            && self.adjustments_exact
            && self.replicas_not_exact.is_empty()
            && self.enforcement.mismatches.is_empty()
    }
}

/// The processes under test and how to restart them.
#[derive(Debug)]
pub(crate) struct Cluster {
    launcher: Launcher,
    /// `ingest` and `api` (one process each), `load` and `enforce`
    /// (`ChaosConfig::instances` each).
    singles: Vec<Proc>,
    /// Instances killed so far (picks the next victim of a role).
    kills: usize,
    pub(crate) aggregators: Vec<Proc>,
    pub(crate) kafka: KafkaConfig,
    pub(crate) group_id: String,
    pub(crate) stack_dir: PathBuf,
    pub(crate) produce_timeout_ms: u64,
    repo: PathBuf,
    started: usize,
    pub(crate) crashes: usize,
    /// ClickHouse restarts so far (they alternate SIGTERM and SIGKILL).
    pub(crate) clickhouse_restarts: usize,
    /// (from, to) Unix ms of each ClickHouse outage injected.
    pub(crate) outages: Vec<(i64, i64)>,
    /// When the ClickHouse outage under way began.
    pub(crate) outage_from: Option<i64>,
    /// ClickHouse servers (replicas of one shard on a replicated ClickHouse).
    pub(crate) clickhouse_replicas: usize,
    /// Replicas killed so far (the next victim: the replicas in turn).
    pub(crate) replica_kills: usize,
    /// Listen addresses of the second and later ingest and api instances
    /// (`METER__...` overrides), kept across their restarts.
    listen: HashMap<String, Vec<(String, String)>>,
}

impl Cluster {
    /// Starts one more `meterd <role>` (a new instance) and waits until it is ready.
    pub(crate) async fn start(&mut self, role: &'static str) -> anyhow::Result<()> {
        let instance = format!("{role}-{}", self.started + 1);
        self.start_as(role, &instance).await
    }

    /// Starts `meterd <role>` as `instance` (the name a restarted instance
    /// keeps) and waits until it is ready.
    pub(crate) async fn start_as(&mut self, role: &'static str, instance: &str) -> anyhow::Result<()> {
        self.started += 1;
        let admin = format!("127.0.0.1:{}", free_port()?);
        let env = self.listen.get(instance).cloned().unwrap_or_default();
        let p = self.launcher.start_with(role, instance, &admin, self.started, &env)?;
        if role == "aggregate" {
            self.aggregators.push(p);
        } else {
            self.singles.push(p);
        }
        self.wait_ready(&admin).await
    }

    /// `kill -9` of one instance of `role` (each in turn when it runs
    /// several), then a restart as the same instance.
    pub(crate) async fn kill_and_restart(&mut self, role: &'static str) -> anyhow::Result<()> {
        let of_role: Vec<usize> = (0..self.singles.len()).filter(|i| self.singles[*i].role() == role).collect();
        anyhow::ensure!(!of_role.is_empty(), "no {role} runs");
        self.kills += 1;
        let victim = self.singles.remove(of_role[self.kills % of_role.len()]);
        let instance = victim.instance().to_owned();
        drop(victim); // dropping a Proc SIGKILLs it
        self.start_as(role, &instance).await
    }

    async fn wait_ready(&self, admin: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        while !ready(admin).await {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "a role on {admin} not ready in 90 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    pub(crate) async fn stack_up(&self) -> anyhow::Result<()> {
        let mut cmd = std::process::Command::new(self.repo.join("deploy/local/stack"));
        cmd.arg("up").env("METER_STACK_DIR", &self.stack_dir);
        let status = tokio::task::spawn_blocking(move || cmd.status()).await??;
        anyhow::ensure!(status.success(), "deploy/local/stack up failed");
        Ok(())
    }

    /// Restarts what died on its own, and makes sure one aggregator runs.
    pub(crate) async fn heal(&mut self) -> anyhow::Result<()> {
        let mut dead = Vec::new();
        self.singles.retain_mut(|p| {
            let alive = p.alive();
            if !alive {
                dead.push((p.role(), p.instance().to_owned()));
            }
            alive
        });
        for (role, instance) in dead {
            self.crashes += 1;
            tracing::warn!(role, instance, "chaos.role_died");
            self.start_as(role, &instance).await?;
        }
        let mut died = Vec::new();
        self.aggregators.retain_mut(|a| {
            let alive = a.alive();
            if !alive {
                died.push(a.instance().to_owned());
            }
            alive
        });
        self.crashes += died.len();
        for instance in died {
            self.start_as("aggregate", &instance).await?;
        }
        if self.aggregators.is_empty() {
            self.start("aggregate").await?;
        }
        for a in self.singles.iter().chain(&self.aggregators) {
            self.wait_ready(a.admin()).await?;
        }
        Ok(())
    }
}

/// The `meterd` configuration of a run: its own topics, group and database.
pub fn meterd_config(kafka: &KafkaConfig, store: &StoreConfig, ports: &Ports, group_id: &str) -> String {
    let (clickhouse_url, database, cluster) = (&store.url, &store.database, &store.cluster);
    format!(
        "[kafka]\nbrokers = \"{}\"\npartitions = {}\nreplication_factor = {}\nproduce_timeout_ms = {}\n\
         events_topic = \"{}\"\ntotals_topic = \"{}\"\nrows_topic = \"{}\"\nconfig_topic = \"{}\"\nenforcement_topic = \"{}\"\n\
         actions_topic = \"{}\"\nwebhooks_topic = \"{}\"\ndead_letters_topic = \"{}\"\n\
         deliveries_topic = \"{}\"\ncalls_topic = \"{}\"\nadjustments_topic = \"{}\"\nconfig_history_topic = \"{}\"\n\
         [clickhouse]\nurl = \"{clickhouse_url}\"\ndatabase = \"{database}\"\ncluster = \"{cluster}\"\n\
         [ingest]\nlisten = \"127.0.0.1:{}\"\nhttp_listen = \"127.0.0.1:{}\"\n\
         [aggregator]\ngroup_id = \"{group_id}\"\ntransactional_id_prefix = \"{group_id}\"\n\
         [load]\ngroup_id = \"{group_id}.load\"\nlinger_ms = 100\n\
         [enforcer]\ngroup_id = \"{group_id}.enf\"\ntransactional_id_prefix = \"{group_id}.enf\"\n\
         actuator_group_id = \"{group_id}.act\"\nwebhook_group_id = \"{group_id}.hooks\"\n\
         control_plane_url = \"http://127.0.0.1:{}\"\n\
         [api]\nlisten = \"127.0.0.1:{}\"\ngrpc_listen = \"127.0.0.1:{}\"\n\
         [security]\nwebhook_allowed_targets = [\"loopback\"]\n",
        kafka.brokers,
        kafka.partitions,
        kafka.replication_factor,
        kafka.produce_timeout_ms,
        kafka.events_topic,
        kafka.totals_topic,
        kafka.rows_topic,
        kafka.config_topic,
        kafka.enforcement_topic,
        kafka.actions_topic,
        kafka.webhooks_topic,
        kafka.dead_letters_topic,
        kafka.deliveries_topic,
        kafka.calls_topic,
        kafka.adjustments_topic,
        kafka.config_history_topic,
        ports.ingest,
        ports.ingest_http,
        ports.control_plane,
        ports.api,
        ports.api_grpc,
    )
}

/// Loopback ports of one run.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub ingest: u16,
    /// Ingest's HTTP (Neon JSON) listener.
    pub ingest_http: u16,
    pub control_plane: u16,
    pub api: u16,
    pub api_grpc: u16,
}

impl Ports {
    /// Free loopback ports for every listener.
    pub fn free() -> anyhow::Result<Ports> {
        Ok(Ports {
            ingest: free_port()?,
            ingest_http: free_port()?,
            control_plane: free_port()?,
            api: free_port()?,
            api_grpc: free_port()?,
        })
    }
}

/// Runs the whole harness.
pub async fn run(cfg: ChaosConfig) -> anyhow::Result<ChaosReport> {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let prefix = format!("chaos{:x}", t % 0xff_ffff);
    let dir = cfg.stack_dir.join("chaos").join(&prefix);
    std::fs::create_dir_all(&dir)?;
    let ports = Ports::free()?;
    let produce_timeout_ms = 3000;
    let kafka = KafkaConfig {
        brokers: cfg.brokers.clone(),
        partitions: 4,
        produce_timeout_ms,
        replication_factor: cfg.replication_factor,
        ..KafkaConfig::default()
    }
    .with_topic_prefix(&prefix);
    let group_id = format!("{prefix}.agg");
    let store_cfg = StoreConfig {
        url: cfg.clickhouse_url.clone(),
        database: format!("chaos_{prefix}"),
        cluster: cfg.clickhouse_cluster.clone(),
        ..StoreConfig::default()
    };
    let config = dir.join("meterd.toml");
    // The roles are given every replica, and fail over between them; the
    // checks read each replica alone (a reader that fails over may see a
    // replica that has not fetched every part yet).
    let roles_store = match cfg.clickhouse_replicas.as_slice() {
        [] => store_cfg.clone(),
        replicas => StoreConfig { url: replicas.join(","), ..store_cfg.clone() },
    };
    std::fs::write(&config, meterd_config(&kafka, &roles_store, &ports, &group_id))?;
    let launcher = Launcher { meterd: cfg.meterd.clone(), config: config.clone(), log_dir: dir.clone() };
    let migrate = std::process::Command::new(&cfg.meterd).arg("--config").arg(&config).arg("migrate").status()?;
    anyhow::ensure!(migrate.success(), "meterd migrate failed");

    let mut cluster = Cluster {
        launcher,
        singles: Vec::new(),
        kills: 0,
        aggregators: Vec::new(),
        kafka: kafka.clone(),
        group_id: group_id.clone(),
        stack_dir: cfg.stack_dir.clone(),
        produce_timeout_ms,
        repo: cfg.repo.clone(),
        started: 0,
        crashes: 0,
        clickhouse_restarts: 0,
        outages: Vec::new(),
        outage_from: None,
        clickhouse_replicas: cfg.clickhouse_replicas.len().max(1),
        replica_kills: 0,
        listen: HashMap::new(),
    };
    // Instance 0 of ingest and api listens where the config says; the
    // others on ports of their own. The simulator's nodes spread over every
    // ingest; quotas go through the first api, adjustments through the last.
    let n = cfg.instances.max(1);
    let (mut ingest_urls, mut api_urls) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (ingest, api) = if i == 0 {
            (ports.ingest, ports.api)
        } else {
            let (ingest, api) = (free_port()?, free_port()?);
            let listen = |key: &str, port: u16| (key.to_owned(), format!("127.0.0.1:{port}"));
            cluster.listen.insert(
                format!("ingest-{i}"),
                vec![listen("METER__INGEST__LISTEN", ingest), listen("METER__INGEST__HTTP_LISTEN", free_port()?)],
            );
            cluster.listen.insert(
                format!("api-{i}"),
                vec![listen("METER__API__LISTEN", api), listen("METER__API__GRPC_LISTEN", free_port()?)],
            );
            (ingest, api)
        };
        ingest_urls.push(format!("http://127.0.0.1:{ingest}"));
        api_urls.push(format!("http://127.0.0.1:{api}"));
    }
    for role in ["ingest", "load", "enforce", "api"] {
        for i in 0..n {
            // One instance keeps the role's name (as before); several are numbered.
            let instance = if n == 1 { role.to_owned() } else { format!("{role}-{i}") };
            cluster.start_as(role, &instance).await?;
        }
    }
    cluster.start("aggregate").await?;
    let stop = CancellationToken::new();
    let mut quotas = Quotas::start(api_urls[0].clone(), ports.control_plane, &stop).await?;
    println!("chaos: prefix {prefix}, logs in {}", dir.display());

    let store = Store::new(&store_cfg)?;
    let stats = Arc::new(SendStats::default());
    let (computes_per_project, tick, max_batch_events) = cfg.shape.params();
    let fleet = FleetConfig {
        prefix: prefix.clone(),
        projects: cfg.projects,
        computes_per_project,
        nodes: 4,
        span_seconds: 120,
        backfill_seconds: 3 * 24 * 3600,
        seed: cfg.seed,
    };
    let project_ids: Vec<String> = Fleet::new(fleet.clone(), 0).project_ids().map(ToString::to_string).collect();
    let run_cfg = RunConfig {
        token: None,
        ingest_url: ingest_urls.join(","),
        fleet,
        // The load ends when the faults do (`finish`), at `duration` or later.
        duration: Duration::from_secs(30 * 24 * 3600),
        tick,
        max_batch_events,
        duplicate_rate: 0.05,
        restart_rate: cfg.restart_rate,
        key_twin_rate: cfg.key_twin_rate,
    };
    let finish = CancellationToken::new();
    let load = tokio::spawn(meter_sim::run(run_cfg, stats.clone(), finish.clone(), stop.clone()));
    let sampler = Sampler::start(store.clone(), prefix.clone(), stats.clone());
    let adjuster = Adjuster::start(api_urls[n - 1].clone(), project_ids.clone(), cfg.seed);

    let mut report = ChaosReport::default();
    let mut rng = SmallRng::seed_from_u64(cfg.seed);
    let mut queue: Vec<FaultKind> = Vec::new();
    let started = Instant::now();
    report.started_ms = meter_runtime::now_ms();
    let enough = |r: &ChaosReport| cfg.kinds.iter().all(|k| r.faults.get(k).copied().unwrap_or(0) >= cfg.faults_each);
    while !cfg.kinds.is_empty()
        && (started.elapsed() + Duration::from_secs(cfg.fault_gap_s.1) < cfg.duration || !enough(&report))
    {
        tokio::time::sleep(Duration::from_secs(rng.random_range(cfg.fault_gap_s.0..=cfg.fault_gap_s.1))).await;
        quotas.step(&mut rng, &project_ids).await;
        if queue.is_empty() {
            queue = cfg.kinds.clone();
            queue.shuffle(&mut rng);
        }
        let kind = queue.pop().expect("refilled");
        let t0 = Instant::now();
        inject(&mut cluster, kind).await.map_err(|e| e.context(format!("injecting {}", kind.name())))?;
        if kind == FaultKind::ClickHouseOutage {
            // Projects cross their quotas while ClickHouse is down: quotas
            // just above usage, every 3 s; the report measures those suspensions.
            let until = Instant::now() + cfg.clickhouse_outage;
            while Instant::now() < until {
                quotas.cross_soon(&mut rng, &project_ids).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            end_clickhouse_outage(&mut cluster).await?;
        }
        *report.faults.entry(kind).or_default() += 1;
        println!(
            "chaos: [{:>4}s] {} (from {:.1} s, healed in {:.1} s)",
            started.elapsed().as_secs(),
            kind.name(),
            (t0 - started).as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
    }
    tokio::time::sleep(cfg.duration.saturating_sub(started.elapsed())).await;
    finish.cancel();
    let summary = load.await??;
    cluster.heal().await?;
    let ledger = adjuster.finish().await;
    let (violations, samples) = sampler.stop().await;
    report.violations = violations;
    report.samples = samples;
    report.crashes_restarted = cluster.crashes;
    report.events_acked = summary.truth.events;
    report.batches_acked = stats.batches_acked.load(std::sync::atomic::Ordering::Relaxed);
    report.duplicates_sent = stats.duplicates_sent.load(std::sync::atomic::Ordering::Relaxed);
    report.node_restarts = stats.restarts.load(std::sync::atomic::Ordering::Relaxed);
    report.key_twins_sent = stats.key_twins_sent.load(std::sync::atomic::Ordering::Relaxed);
    final_check(&mut report, &store, &kafka, &prefix, &summary.truth, &ledger).await?;
    for url in cfg.clickhouse_replicas.iter().skip(1) {
        let replica = Store::new(&StoreConfig { url: url.clone(), ..store_cfg.clone() })?;
        let exact = replica_exact(&replica, &prefix, &summary.truth).await;
        println!("chaos: replica {url}: {}", if exact { "exact" } else { "NOT EXACT" });
        if !exact {
            report.replicas_not_exact.push(url.clone());
        }
    }
    report.enforcement = quotas.check(&project_ids, Duration::from_secs(60), &cluster.outages).await;
    drop(cluster);
    stop.cancel();
    Ok(report)
}
