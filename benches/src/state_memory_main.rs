//! The memory each role's state takes per project, measured at any fleet
//! size (1,000,000 projects fits on a laptop) without a pipeline: live heap
//! bytes (a counting allocator) after building the states the way the roles
//! do, from `usage.totals` records:
//!
//! - the aggregator's `ProjectState` (counters, gauge, one dedup window per
//!   source session), rebuilt by `meter_proto::restore` as on a takeover;
//! - the readers' `Totals` (the enforcer's and the api's view), decoded by
//!   `meter_proto::decode_usage`.
//!
//! Kafka client buffers and each process's fixed part are not included;
//! BENCHMARKS.md has the processes' RSS next to these.
//!
//! `cargo run --release -p meter-bench --bin meter-bench-state-memory -- --projects 1000000`

use std::collections::HashMap;

use clap::{Parser, ValueEnum};
use meter_core::Totals;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Aggregator,
    Readers,
}

#[derive(Debug, Parser)]
#[command(name = "meter-bench-state-memory", about = "State memory per project, per role, at any fleet size")]
struct Cli {
    /// Projects in the fleet.
    #[arg(long, default_value_t = 1_000_000)]
    projects: usize,
    /// Source sessions that reported each project (each keeps a dedup window in the aggregator).
    #[arg(long, default_value_t = 1)]
    sources_per_project: usize,
    /// Measure one role's state in this process (without it, each role is
    /// measured in a process of its own, so that neither reuses memory the
    /// other freed).
    #[arg(long, value_enum)]
    role: Option<Role>,
}

/// Resident bytes of this process.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split(' ').nth(1).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0) * 4096
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let n = cli.projects.max(1);
    let Some(role) = cli.role else {
        println!(
            "{n} projects, {} source session(s) each (resident memory the state adds, per project):",
            cli.sources_per_project
        );
        for role in ["aggregator", "readers"] {
            let out = std::process::Command::new(std::env::current_exe()?)
                .args(["--projects", &n.to_string(), "--sources-per-project", &cli.sources_per_project.to_string()])
                .args(["--role", role])
                .output()?;
            anyhow::ensure!(out.status.success(), "{role}: {}", String::from_utf8_lossy(&out.stderr));
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        return Ok(());
    };
    let now = meter_runtime::now_ms();
    let records: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let s = meter_bench::fixtures::project_state(&format!("proj-{i:07}"), cli.sources_per_project, now, 60);
            (s.project_id.to_string(), meter_proto::packed::own_record(&s, 0, now))
        })
        .collect();
    let record_bytes: usize = records.iter().map(|(_, v)| v.len()).sum();
    let before = rss();
    let (what, kept, added) = match role {
        Role::Aggregator => {
            let restored = meter_proto::restore(records.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())))
                .map_err(|(key, e)| anyhow::anyhow!("{key}: {e}"))?;
            ("aggregator (ProjectState, restored)", restored.states.len(), rss().saturating_sub(before))
        }
        Role::Readers => {
            let mut readers: HashMap<String, Totals> = HashMap::new();
            for (key, value) in &records {
                let t = meter_proto::decode_usage(value)?.pop().ok_or_else(|| anyhow::anyhow!("{key}: empty"))?;
                readers.insert(key.clone(), t);
            }
            ("enforcer / api (Totals)", readers.len(), rss().saturating_sub(before))
        }
    };
    anyhow::ensure!(kept == n, "{kept} of {n} projects");
    println!(
        "  {what:<38} {:>8.1} MiB, {:>6.0} B per project (usage.totals record: {:.0} B)",
        added as f64 / 1048576.0,
        added as f64 / n as f64,
        record_bytes as f64 / n as f64
    );
    Ok(())
}
