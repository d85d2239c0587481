//! The pipeline itself: `meterd` ingest, aggregate, enforce and api as
//! processes on the local stack, under the same load; quotas set just above
//! projects' usage while it runs (crossing-to-suspend measured at a
//! control-plane double); throughput to ClickHouse and the totals topic.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use meter_chaos::procs::{ready, Launcher, Proc};
use meter_chaos::{free_port, meterd_config, Ports, StackArgs};
use meter_kafka::KafkaConfig;
use meter_sim::receivers::ControlPlane;
use meter_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::baselines::{client, drive_client, Rate};
use meter_bench::load::LoadConfig;

/// The start of the load left out of the steady-state suspend latency.
pub(crate) const WARM_UP: Duration = Duration::from_secs(3);

/// CPU seconds and peak resident memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub(crate) cpu_s: f64,
    pub(crate) peak_rss_mib: f64,
}

/// CPU seconds (utime + stime) in the `stat` file at `path`, of a process
/// or a thread; 0 when it is gone.
fn stat_cpu_s(path: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
    // Fields after the command: state is 0, utime 11, stime 12 (clock ticks of 1/100 s).
    [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum::<f64>() / 100.0
}

/// The ClickHouse database of run `prefix` for `part` of it (`""`: the
/// pipeline's): every one is `bench_<prefix>` or `bench_<prefix>_<part>`,
/// which is how the run drops them at its end.
pub(crate) fn database_of(prefix: &str, part: &str) -> String {
    match part {
        "" => format!("bench_{prefix}"),
        _ => format!("bench_{prefix}_{part}"),
    }
}

/// Reads `/proc/<pid>`: utime + stime, and VmHWM.
pub(crate) fn usage_of(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    Usage { cpu_s: stat_cpu_s(std::path::Path::new(&format!("/proc/{pid}/stat"))), peak_rss_mib: hwm_kb / 1024.0 }
}

/// CPU seconds of the threads of `pid` whose name `which` accepts
/// (`/proc/<pid>/task/<tid>/comm` and `stat`); threads gone are not counted.
pub(crate) fn thread_cpu_s(pid: u32, which: impl Fn(&str) -> bool) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    tasks
        .flatten()
        .map(|task| task.path())
        .filter(|t| which(std::fs::read_to_string(t.join("comm")).unwrap_or_default().trim_end()))
        .map(|t| stat_cpu_s(&t.join("stat")))
        .sum()
}

/// A JVM's JIT compiler threads (`C1 CompilerThread0`, `C2 CompilerThread0`;
/// the kernel keeps 15 characters of a thread's name).
pub(crate) fn is_jit_thread(comm: &str) -> bool {
    comm.starts_with("C1 CompilerThre") || comm.starts_with("C2 CompilerThre")
}

/// What the pipeline did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) ingest: Option<Rate>,
    /// Events acked / time from the load's start until ClickHouse held them
    /// all: until the read that found it exact began (its snapshot).
    pub(crate) to_clickhouse: Option<Rate>,
    /// How long that read took (FINAL over every row of the run's
    /// projects): the checker's cost, not the pipeline's.
    pub(crate) exact_read_s: Option<f64>,
    /// The same, until the totals topic showed them all.
    pub(crate) to_totals: Option<Rate>,
    pub(crate) lag: Vec<(u64, f64)>,
    pub(crate) suspend_latency: Option<Histogram<u64>>,
    /// The same, for crossings ingested after the first `WARM_UP` of load
    /// (the aggregator restoring and the first lag spike excluded).
    pub(crate) suspend_latency_steady: Option<Histogram<u64>>,
    /// The steady crossings split in two hops: ingest of the crossing to the
    /// enforcer's decision (aggregator, totals, enforcer), and the decision to
    /// the control plane's receipt (actions topic, actuator, HTTP).
    pub(crate) to_decision_steady: Option<Histogram<u64>>,
    pub(crate) decision_to_call_steady: Option<Histogram<u64>>,
    /// Suspensions whose crossing was the quota set below the usage (the
    /// usage the quota was computed from trailed), measured from the quota.
    pub(crate) crossed_by_quota: usize,
    /// The slowest steady crossing, hop by hop, and when its quota was set:
    /// what a p99 far from the rest needs to be explained.
    pub(crate) slowest: Option<String>,
    pub(crate) roles: BTreeMap<String, Usage>,
    pub(crate) exact: bool,
    /// What a restore of the whole state costs at the end of the run.
    pub(crate) restore: Option<Restore>,
}

/// Reading `usage.totals` to its end and rebuilding every project's state
/// and idempotency keys, as an aggregator does when it takes partitions over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Restore {
    pub(crate) seconds: f64,
    pub(crate) records: usize,
    pub(crate) bytes: u64,
    pub(crate) projects: usize,
    pub(crate) keys: usize,
    /// Bytes of the key chunk records alone.
    pub(crate) key_bytes: u64,
}

/// Measures a full restore of `kafka`'s totals topic (all partitions).
pub(crate) async fn restore_cost(kafka: &KafkaConfig) -> anyhow::Result<Restore> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let all: Vec<i32> = (0..kafka.partitions).collect();
        let parts = meter_kafka::read_partitions_to_end(&kafka, &kafka.totals_topic, &all, Duration::from_secs(120))?;
        let mut r = Restore { seconds: 0.0, records: 0, bytes: 0, projects: 0, keys: 0, key_bytes: 0 };
        for records in parts.into_values() {
            r.records += records.len();
            r.bytes += records.iter().map(|(_, v)| v.len() as u64).sum::<u64>();
            let restored = meter_proto::restore(records).map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
            r.projects += restored.states.len();
            r.keys += restored.keys;
            r.key_bytes += restored.key_bytes;
        }
        r.seconds = started.elapsed().as_secs_f64();
        Ok(r)
    })
    .await?
}

async fn lag_of(admin: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{admin}/metrics")).await.ok()?.text().await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("meter_aggregator_consumer_lag_records "))
        .and_then(|v| v.trim().parse().ok())
}

/// The roles of the pipeline run, in start order.
const ROLES: &[&str] = &["ingest", "aggregate", "load", "enforce", "api"];

/// The roles of `ROLES` that `meterd` offers (its `--help`): a binary from
/// before the load role (for before/after runs with `--meterd`) lacks it.
fn roles_of(meterd: &Path) -> anyhow::Result<Vec<&'static str>> {
    let help = std::process::Command::new(meterd).arg("--help").output()?;
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    Ok(ROLES.iter().copied().filter(|r| text.lines().any(|l| l.trim_start().starts_with(&format!("{r} ")))).collect())
}

/// `config` without what a meterd lacking the load role refuses (its
/// configuration denies unknown keys): `rows_topic` and the `[load]` section.
fn without_load(config: &str) -> String {
    let mut out = String::new();
    let mut in_load = false;
    for line in config.lines() {
        if line.starts_with('[') {
            in_load = line == "[load]";
        }
        if !in_load && !line.starts_with("rows_topic") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Writes a meterd config for `database` and `group` and starts `roles`
/// (each ready before the next starts); the control plane's port is left
/// free for the caller.
pub(crate) async fn start(
    roles: &[&'static str],
    meterd: &Path,
    kafka: &KafkaConfig,
    stack: &StackArgs,
    dir: &Path,
    database: &str,
    group: &str,
) -> anyhow::Result<(Ports, Vec<Proc>)> {
    let ports = Ports::free()?;
    let config = dir.join(format!("meterd-{database}.toml"));
    let store = stack.store(database);
    let mut text = meterd_config(kafka, &store, &ports, group);
    if !roles.contains(&"load") {
        text = without_load(&text);
    }
    std::fs::write(&config, text)?;
    let launcher = Launcher { meterd: meterd.to_owned(), config: config.clone(), log_dir: dir.to_owned() };
    anyhow::ensure!(
        std::process::Command::new(meterd).arg("--config").arg(&config).arg("migrate").status()?.success(),
        "meterd migrate failed"
    );
    let mut procs: Vec<Proc> = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let admin = format!("127.0.0.1:{}", free_port()?);
        // Each process its own static group member (several aggregators).
        procs.push(launcher.start(role, &format!("{role}-{i}"), &admin, i)?);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !ready(&admin).await {
            anyhow::ensure!(Instant::now() < deadline, "{role} not ready in 90 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok((ports, procs))
}

/// `meterd ingest` alone (no aggregator, enforcer or api running), the same
/// load, into topics of its own: the like-for-like comparison with the Kafka
/// baseline, which also has the machine to itself.
pub(crate) async fn ingest_alone(
    load: &LoadConfig,
    meterd: &Path,
    kafka: &KafkaConfig,
    stack: &StackArgs,
    dir: &Path,
) -> anyhow::Result<(Rate, Usage)> {
    measure_ingest_alone(load, meterd, kafka, stack, dir, "grpc", |ports| async move {
        Ok(drive_client(load, client(&format!("http://127.0.0.1:{}", ports.ingest)).await?).await.1)
    })
    .await
}

/// Starts `meterd ingest` alone (files under `dir/ingest-alone-<what>`),
/// runs `drive` against it, and returns its rate with ingest's CPU and
/// peak memory over the drive.
pub(crate) async fn measure_ingest_alone<F, Fut>(
    load: &LoadConfig,
    meterd: &Path,
    kafka: &KafkaConfig,
    stack: &StackArgs,
    dir: &Path,
    what: &str,
    drive: F,
) -> anyhow::Result<(Rate, Usage)>
where
    F: FnOnce(Ports) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Rate>>,
{
    let database = database_of(&load.prefix, &format!("ingest_{what}"));
    let dir = dir.join(format!("ingest-alone-{what}"));
    std::fs::create_dir_all(&dir)?;
    let (ports, procs) = start(&["ingest"], meterd, kafka, stack, &dir, &database, "unused").await?;
    let before = usage_of(procs[0].pid());
    let rate = drive(ports).await?;
    let after = usage_of(procs[0].pid());
    Ok((rate, Usage { cpu_s: after.cpu_s - before.cpu_s, peak_rss_mib: after.peak_rss_mib }))
}

/// Runs the pipeline under `load`; `stack_dir` has the stack's pid files.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    load: &LoadConfig,
    quota_margin: u64,
    aggregators: usize,
    meterd: &Path,
    kafka: &KafkaConfig,
    stack: &StackArgs,
    dir: &Path,
) -> anyhow::Result<Outcome> {
    let database = database_of(&load.prefix, "");
    let group = format!("{}.agg", load.prefix);
    let roles: Vec<&'static str> = roles_of(meterd)?
        .into_iter()
        .flat_map(|r| std::iter::repeat_n(r, if r == "aggregate" { aggregators.max(1) } else { 1 }))
        .collect();
    let (ports, procs) = start(&roles, meterd, kafka, stack, dir, &database, &group).await?;
    let stop = CancellationToken::new();
    let cp = ControlPlane::default();
    let l = tokio::net::TcpListener::bind(("127.0.0.1", ports.control_plane)).await?;
    tokio::spawn(cp.clone().serve(l, stop.clone()));
    let before: Vec<Usage> = procs.iter().map(|p| usage_of(p.pid())).collect();
    let agg_admins: Vec<String> =
        procs.iter().filter(|p| p.role() == "aggregate").map(|p| p.admin().to_owned()).collect();
    let api = format!("http://127.0.0.1:{}", ports.api);

    // Lag sampler and quota setter, while the load runs.
    let samples = tokio::spawn({
        let (stop, agg_admins) = (stop.clone(), agg_admins.clone());
        async move {
            let (t0, mut out) = (Instant::now(), Vec::new());
            while !stop.is_cancelled() {
                // The group's lag: each aggregator reports its partitions'.
                let mut sum = Some(0.0);
                for admin in &agg_admins {
                    sum = sum.zip(lag_of(admin).await).map(|(a, b)| a + b);
                }
                if let Some(l) = sum {
                    out.push((t0.elapsed().as_secs(), l));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            out
        }
    });
    let quotas = tokio::spawn({
        let (stop, projects, api) = (stop.clone(), load.projects(), api.clone());
        async move {
            let http = reqwest::Client::new();
            // Per project: when its quota was set, its usage read then, the quota.
            let mut set = BTreeMap::new();
            for p in projects.iter().step_by((projects.len() / 200).max(1)) {
                if stop.is_cancelled() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Ok(r) = http.get(format!("{api}/v1/projects/{p}/status")).send().await else { continue };
                let Ok(v) = r.json::<serde_json::Value>().await else { continue };
                let Some(u) = v["usage"]["active_time_seconds"].as_u64() else { continue };
                let body = json!({"quota": {"active_time_seconds": u + quota_margin}});
                // Before the request: no quota is in force earlier than this.
                let sent_ms = meter_runtime::now_ms();
                let r = http.patch(format!("{api}/v1/projects/{p}/quota")).json(&body).send().await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    set.insert(p.clone(), (sent_ms, u, u + quota_margin));
                }
            }
            set
        }
    });

    let c = client(&format!("http://127.0.0.1:{}", ports.ingest)).await?;
    let load_started = Instant::now();
    let load_started_ms = meter_runtime::now_ms();
    let (acked, ingest) = drive_client(load, c).await;
    let events = ingest.events;
    let mut out = Outcome { ingest: Some(ingest), ..Outcome::default() };

    // Until ClickHouse and the totals topic show every acknowledged event.
    let store = Store::new(&stack.store(&database))?;
    let want = acked.totals();
    let deadline = Instant::now() + Duration::from_secs(600);
    let want_sum: u64 = want.values().sum();
    let store_cfg = stack.store(&database);
    while Instant::now() < deadline && out.to_clickhouse.is_none() {
        // The exact read (FINAL over every row) costs ClickHouse seconds on a
        // large run and would slow the catch-up it measures: first wait, with
        // a plain sum, until the rows hold at least every acknowledged event.
        // (A failed sum falls through to the exact read.)
        if unfinal_sum(&store_cfg, &load.prefix).await.is_some_and(|s| s < want_sum) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        // ClickHouse reads the parts there when the query starts.
        let read_started = load_started.elapsed().as_secs_f64();
        if let Ok(usage) = store.usage_with_prefix(&load.prefix).await {
            let got: BTreeMap<(String, usize), u64> = usage
                .iter()
                .flat_map(|u| {
                    meter_core::Metric::COUNTERS
                        .iter()
                        .enumerate()
                        .map(move |(i, m)| ((u.project_id.clone(), i), u.get(*m)))
                })
                .filter(|(_, v)| *v > 0)
                .collect();
            if got == want {
                out.to_clickhouse = Some(Rate { events, seconds: read_started });
                out.exact_read_s = Some(load_started.elapsed().as_secs_f64() - read_started);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    while Instant::now() < deadline && out.to_totals.is_none() {
        if totals_match(kafka, &want).await.unwrap_or(false) {
            out.to_totals = Some(Rate { events, seconds: load_started.elapsed().as_secs_f64() });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    out.exact = out.to_clickhouse.is_some() && out.to_totals.is_some();
    out.restore = restore_cost(kafka).await.ok();
    tokio::time::sleep(Duration::from_secs(2)).await; // the last suspensions
    stop.cancel();
    out.lag = samples.await.unwrap_or_default();
    let quotas_set = quotas.await.unwrap_or_default();
    // Instances of one role: CPU added up, the largest peak memory.
    for ((p, b), role) in procs.iter().zip(&before).zip(&roles) {
        let a = usage_of(p.pid());
        let u = out.roles.entry((*role).to_owned()).or_default();
        u.cpu_s += a.cpu_s - b.cpu_s;
        u.peak_rss_mib = u.peak_rss_mib.max(a.peak_rss_mib);
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut steady = h.clone();
    let (mut to_decision, mut to_call) = (h.clone(), h.clone());
    let mut seen = std::collections::HashSet::new();
    let mut slowest = None;
    for c in cp.calls_of("suspend") {
        if let Some(a) = c.action.filter(|_| seen.insert(c.idempotency_key.clone())) {
            // The crossing: the batch that took usage over the quota, or the
            // quota set below the usage (the api's usage, read to set it,
            // trails the totals), whichever came later.
            let set_ms = quotas_set.get(&c.project_id).map(|&(t, _, _)| t);
            let crossed = set_ms.map_or(a.crossing_ingested_ms, |t| t.max(a.crossing_ingested_ms));
            out.crossed_by_quota += usize::from(crossed > a.crossing_ingested_ms);
            let ms = (c.received_ms - crossed).max(1) as u64;
            h.record(ms)?;
            if crossed >= load_started_ms + WARM_UP.as_millis() as i64 {
                steady.record(ms)?;
                to_decision.record((a.decided_ms - crossed).max(1) as u64)?;
                to_call.record((c.received_ms - a.decided_ms).max(1) as u64)?;
                if slowest.as_ref().is_none_or(|(m, _, _)| ms > *m) {
                    slowest = Some((ms, c.project_id.clone(), [a.crossing_ingested_ms, a.decided_ms, c.received_ms]));
                }
            }
        }
    }
    out.slowest = slowest.map(|(ms, project, times)| {
        let at = |t: i64| format!("{:.2} s", (t - load_started_ms) as f64 / 1000.0);
        let [crossed, decided, called] = times.map(at);
        let quota = match quotas_set.get(&project) {
            Some(&(t, usage, quota)) => format!("quota {quota} set at {} (its usage read {usage})", at(t)),
            None => "its quota not set by this run".to_owned(),
        };
        format!("{ms} ms, {project}: its newest batch ingested at {crossed} into the load, decided at {decided}, called at {called}; {quota}")
    });
    out.suspend_latency = Some(h);
    out.suspend_latency_steady = Some(steady);
    out.to_decision_steady = Some(to_decision);
    out.decision_to_call_steady = Some(to_call);
    drop(procs);
    Ok(out)
}

async fn totals_match(kafka: &KafkaConfig, want: &BTreeMap<(String, usize), u64>) -> anyhow::Result<bool> {
    let kafka = kafka.clone();
    let states = tokio::task::spawn_blocking(move || {
        let all: Vec<i32> = (0..kafka.partitions).collect();
        meter_kafka::read_partitions_to_end(&kafka, &kafka.totals_topic, &all, Duration::from_secs(60))
    })
    .await??;
    let mut got: BTreeMap<(String, usize), u64> = BTreeMap::new();
    for (_, v) in states.into_values().flatten() {
        for s in meter_proto::decode_usage(&v)? {
            for i in 0..4 {
                got.insert((s.project_id.to_string(), i), s.cycles.values().map(|c| c.values[i]).sum());
            }
        }
    }
    got.retain(|_, v| *v > 0);
    Ok(&got == want)
}

/// The counters' sum over the rows of the projects of `prefix`, without
/// FINAL (a row loaded twice counts twice): never below the exact sum.
async fn unfinal_sum(store: &meter_store::StoreConfig, prefix: &str) -> Option<u64> {
    let url = store.url.split(',').next()?;
    let sql = format!(
        "SELECT sum(value) FROM {}.usage_hourly WHERE toInt8(metric) <= 4 AND startsWith(project_id, '{prefix}')",
        store.database
    );
    let r = reqwest::Client::new().post(url).body(sql).send().await.ok()?;
    r.text().await.ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_threads_are_the_jvms_compiler_threads() {
        assert!(is_jit_thread("C2 CompilerThre") && is_jit_thread("C1 CompilerThre"));
        assert!(!is_jit_thread("data-plane-kafk") && !is_jit_thread("GC Thread#0") && !is_jit_thread("Sweeper thread"));
    }

    #[test]
    fn thread_cpu_adds_up_the_chosen_threads_of_a_process() {
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let all = thread_cpu_s(std::process::id(), |_| true);
        assert!(all >= 0.1, "this thread burned 0.3 s: {all}");
        assert_eq!(thread_cpu_s(std::process::id(), |_| false), 0.0);
        assert_eq!(thread_cpu_s(u32::MAX, |_| true), 0.0, "no such process");
    }
}
