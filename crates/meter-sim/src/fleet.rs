//! The simulated fleet: a seeded, deterministic model of projects and their
//! computes. No I/O: `tick` turns a moment into the events each node reports.

use meter_core::{Cycle, Event, Metric, ProjectId, Span};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The shape of the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Prefix of every project id, so that runs do not mix.
    pub prefix: String,
    pub projects: usize,
    pub computes_per_project: usize,
    /// Reporting sources; computes are spread over them.
    pub nodes: usize,
    /// Usage time covered by one tick, per compute, seconds.
    pub span_seconds: i64,
    /// How far back the first interval starts, seconds, at most: never
    /// before the billing cycle of the fleet's start (`backfill_in_cycle`).
    pub backfill_seconds: i64,
    pub seed: u64,
}

/// `max_seconds` of backfill, or less so that the first interval does not
/// start before the billing cycle containing `now_ms`. A run that enforces
/// quotas needs its usage in the current cycle: with a fixed backfill, a
/// run on the first days of a month would report last month's usage only
/// and never cross a quota.
pub fn backfill_in_cycle(now_ms: i64, max_seconds: i64) -> i64 {
    ((now_ms - Cycle::containing(now_ms).start_ms) / 1000).min(max_seconds)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Idle,
    Suspended,
}

#[derive(Debug)]
struct Compute {
    project: usize,
    endpoint_id: String,
    state: State,
    /// Size in quarter compute units: 1 (0.25 CU) ..= 32 (8 CU).
    quarters: u32,
    /// Start of the next interval to report, ms.
    cursor_ms: i64,
    /// Index of its branch in the project's.
    branch: usize,
}

#[derive(Debug)]
struct Project {
    id: ProjectId,
    /// Each branch's id and logical size: one branch, or two for every
    /// other project (the storage quota applies to each branch).
    branches: Vec<(String, u64)>,
    /// How busy the project's computes are, 0.1 ..= 1.
    intensity: f64,
}

/// The simulated fleet.
#[derive(Debug)]
pub struct Fleet {
    cfg: FleetConfig,
    projects: Vec<Project>,
    computes: Vec<Compute>,
    rng: SmallRng,
}

const SIZES: [u32; 6] = [1, 2, 4, 8, 16, 32];

impl Fleet {
    /// A fleet whose intervals start `backfill_seconds` before `now_ms`, or
    /// at the start of the billing cycle containing `now_ms` if later.
    pub fn new(cfg: FleetConfig, now_ms: i64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let start = (now_ms / 1000 - backfill_in_cycle(now_ms, cfg.backfill_seconds)) * 1000;
        let projects: Vec<Project> = (0..cfg.projects)
            .map(|i| {
                let id = ProjectId::new(format!("{}-p{i:04}", cfg.prefix)).expect("valid project id");
                let intensity = 0.1 + 0.9 * rng.random::<f64>().powi(2);
                let size = rng.random_range(10u64 << 20..2u64 << 30);
                let mut branches = vec![(format!("br-{i:04}"), size)];
                if i % 2 == 1 {
                    branches.push((format!("br-{i:04}-dev"), size / 8));
                }
                Project { id, branches, intensity }
            })
            .collect();
        let computes = (0..cfg.projects * cfg.computes_per_project)
            .map(|i| Compute {
                project: i / cfg.computes_per_project,
                branch: i % cfg.computes_per_project % projects[i / cfg.computes_per_project].branches.len(),
                endpoint_id: format!("ep-{i:05}"),
                state: if rng.random_bool(0.6) { State::Active } else { State::Suspended },
                quarters: SIZES[rng.random_range(0..SIZES.len())],
                cursor_ms: start,
            })
            .collect();
        Fleet { cfg, projects, computes, rng }
    }

    /// The project ids, in order.
    pub fn project_ids(&self) -> impl Iterator<Item = &ProjectId> {
        self.projects.iter().map(|p| &p.id)
    }

    /// Advances every compute by one span (never past `now_ms`) and returns
    /// the events each node reports, indexed by node.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Vec<Event>> {
        let mut out: Vec<Vec<Event>> = vec![Vec::new(); self.cfg.nodes];
        let now_s_ms = now_ms / 1000 * 1000;
        let mut written: Vec<Vec<u64>> = self.projects.iter().map(|p| vec![0; p.branches.len()]).collect();
        for (i, c) in self.computes.iter_mut().enumerate() {
            let end = (c.cursor_ms + self.cfg.span_seconds * 1000).min(now_s_ms);
            if end - c.cursor_ms < 1000 {
                continue;
            }
            let (start, secs) = (c.cursor_ms, (end - c.cursor_ms) / 1000);
            c.cursor_ms = end;
            transition(&mut self.rng, c);
            let p = &self.projects[c.project];
            let cu = f64::from(c.quarters) / 4.0;
            let usage = match c.state {
                State::Suspended => continue,
                State::Idle => {
                    [secs as u64, (cu * secs as f64 * 0.02).round() as u64, 0, self.rng.random_range(0..4096)]
                }
                State::Active => {
                    let busy = p.intensity * (0.3 + 0.7 * self.rng.random::<f64>());
                    [
                        secs as u64,
                        (cu * secs as f64 * busy).round() as u64,
                        (busy * cu * secs as f64 * self.rng.random_range(0.0..65536.0)) as u64,
                        (busy * cu * secs as f64 * self.rng.random_range(0.0..131072.0)) as u64,
                    ]
                }
            };
            written[c.project][c.branch] += usage[2];
            let node = &mut out[i % self.cfg.nodes];
            for (metric, value) in Metric::COUNTERS.into_iter().zip(usage) {
                if value > 0 {
                    node.push(Event {
                        project_id: p.id.clone(),
                        endpoint_id: Some(c.endpoint_id.clone()),
                        branch_id: Some(p.branches[c.branch].0.clone()),
                        metric,
                        value,
                        span: Span::Interval { start_ms: start, end_ms: end },
                        idempotency_key: None,
                    });
                }
            }
        }
        for (i, (p, written)) in self.projects.iter_mut().zip(written).enumerate() {
            for ((branch, size), w) in p.branches.iter_mut().zip(written) {
                if w == 0 {
                    continue;
                }
                *size += w / 2;
                out[i % self.cfg.nodes].push(Event {
                    project_id: p.id.clone(),
                    endpoint_id: None,
                    branch_id: Some(branch.clone()),
                    metric: Metric::LogicalSizeBytes,
                    value: *size,
                    span: Span::Instant { time_ms: now_ms },
                    idempotency_key: None,
                });
            }
        }
        out
    }
}

fn transition(rng: &mut SmallRng, c: &mut Compute) {
    let r: f64 = rng.random();
    c.state = match c.state {
        State::Suspended if r < 0.15 => State::Active,
        State::Active if r < 0.08 => State::Idle,
        State::Active if r < 0.16 => {
            let i = SIZES.iter().position(|&s| s == c.quarters).unwrap_or(0);
            let j = if rng.random_bool(0.5) { i.saturating_sub(1) } else { (i + 1).min(SIZES.len() - 1) };
            c.quarters = SIZES[j];
            State::Active
        }
        State::Idle if r < 0.25 => State::Active,
        State::Idle if r < 0.40 => State::Suspended,
        s => s,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FleetConfig {
        FleetConfig {
            prefix: "t".into(),
            projects: 20,
            computes_per_project: 3,
            nodes: 4,
            span_seconds: 60,
            backfill_seconds: 3600,
            seed: 7,
        }
    }

    #[test]
    fn the_backfill_stays_in_the_current_cycle() {
        let dec1 = meter_core::cycle::parse_rfc3339("2026-12-01T00:05:00Z").expect("time");
        assert_eq!(backfill_in_cycle(dec1, 3 * 24 * 3600), 300);
        let dec15 = meter_core::cycle::parse_rfc3339("2026-12-15T00:00:00Z").expect("time");
        assert_eq!(backfill_in_cycle(dec15, 3 * 24 * 3600), 3 * 24 * 3600);
    }

    #[test]
    fn events_are_valid_and_never_in_the_future() {
        let now = 1_795_635_480_000;
        let mut f = Fleet::new(cfg(), now);
        let limits = meter_core::Limits::default();
        let mut n = 0;
        for k in 0..100 {
            let t = now + k * 100;
            for (i, e) in f.tick(t).into_iter().flatten().enumerate() {
                limits.check_event(i, &e, t).unwrap();
                n += 1;
            }
        }
        assert!(n > 1000, "only {n} events");
    }

    #[test]
    fn the_same_seed_gives_the_same_fleet() {
        let now = 1_795_635_480_000;
        let (mut a, mut b) = (Fleet::new(cfg(), now), Fleet::new(cfg(), now));
        assert_eq!(a.tick(now), b.tick(now));
    }

    #[test]
    fn catches_up_then_follows_the_clock() {
        let now = 1_795_635_480_000;
        let mut f = Fleet::new(FleetConfig { backfill_seconds: 120, ..cfg() }, now);
        assert!(!f.tick(now).iter().all(Vec::is_empty));
        assert!(!f.tick(now).iter().all(Vec::is_empty));
        // Caught up: nothing new until the clock moves.
        assert!(f.tick(now).iter().all(Vec::is_empty));
        assert!(!f.tick(now + 5_000).iter().all(Vec::is_empty));
    }
}
