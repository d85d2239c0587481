//! The load: many sources, each reporting batches of `batch` events for its
//! own projects, as fast as `concurrency` in-flight requests allow (or at
//! `rate` events/s). Every acknowledged event is added to the truth.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meter_proto::v1::{Kind, ReportRequest, UsageEvent};

use crate::encoded::{put_event, put_head, put_tail, EventFields};

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub prefix: String,
    pub sources: usize,
    pub projects_per_source: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// Target events/s over all sources; 0: as fast as possible.
    pub rate: u64,
    pub duration: Duration,
    /// Every event carries a unique idempotency key.
    pub keys: bool,
}

/// The four counters, in `Metric::COUNTERS` order.
const METRICS: [i32; 4] = [1, 2, 3, 4];

impl LoadConfig {
    /// Project `p` of source `s`.
    pub fn project(&self, s: usize, p: usize) -> String {
        format!("{}-p{:05}", self.prefix, s * self.projects_per_source + p)
    }

    /// Every project id.
    pub fn projects(&self) -> Vec<String> {
        (0..self.sources)
            .flat_map(|s| (0..self.projects_per_source).map(move |p| (s, p)))
            .map(|(s, p)| self.project(s, p))
            .collect()
    }

    /// The project ids of source `s`.
    pub fn names(&self, s: usize) -> Vec<String> {
        (0..self.projects_per_source).map(|p| self.project(s, p)).collect()
    }

    /// Batch `seq` of source `s`: 1-second intervals ending at `now_ms`,
    /// cycling over the source's projects and the four counters.
    pub fn request(&self, s: usize, seq: u64, now_ms: i64) -> ReportRequest {
        self.request_for(s, &self.names(s), seq, now_ms)
    }

    /// The same, with the source's project ids given (the generator's hot
    /// path: no formatting per event).
    pub fn request_for(&self, s: usize, names: &[String], seq: u64, now_ms: i64) -> ReportRequest {
        self.request_counted(&ReportAt { source: s, names, seq, now_ms }, &mut Vec::new())
    }

    /// The same, and each event's share of the truth in `counted` (replaced):
    /// the generator adds it to its source's sums once the batch is
    /// acknowledged, without hashing a project id per event.
    pub fn request_counted(&self, at: &ReportAt<'_>, counted: &mut Vec<Counted>) -> ReportRequest {
        let source_id = self.source_id(at.source);
        let mut events = Vec::with_capacity(self.batch);
        self.each_event(at, &source_id, counted, |e| events.push(UsageEvent::from(e)));
        ReportRequest { source_id, source_session: SESSION, batch_seq: at.seq + 1, events }
    }

    /// `request_counted`'s Report as its message bytes, appended to `buf`
    /// (see `crate::encoded`); returns its events.
    pub fn write_counted(&self, at: &ReportAt<'_>, counted: &mut Vec<Counted>, buf: &mut Vec<u8>) -> usize {
        let source_id = self.source_id(at.source);
        put_head(&source_id, at.seq + 1, buf);
        self.each_event(at, &source_id, counted, |e| put_event(e, buf));
        put_tail(SESSION, buf);
        self.batch
    }

    /// Calls `each` with every event of the Report at `at` (of source
    /// `source_id`), in order, and puts each one's share of the truth in
    /// `counted` (replaced).
    fn each_event(
        &self,
        at: &ReportAt<'_>,
        source_id: &str,
        counted: &mut Vec<Counted>,
        mut each: impl FnMut(&EventFields<'_>),
    ) {
        counted.clear();
        let mut key = String::new();
        for i in 0..self.batch {
            let (k, c) = self.event_at(at.seq, i);
            counted.push(c);
            if self.keys {
                key.clear();
                write!(key, "{source_id}-{k}").expect("writing to a String");
            }
            each(&EventFields {
                project_id: &at.names[c.project],
                metric: METRICS[c.counter],
                kind: Kind::Incremental as i32,
                value: c.value,
                start_unix_ms: at.now_ms - 1000,
                end_unix_ms: at.now_ms,
                idempotency_key: &key,
            });
        }
    }

    fn source_id(&self, s: usize) -> String {
        format!("{}-src{s:04}", self.prefix)
    }

    /// Event `i` of a batch `seq`: its running number, and its project,
    /// counter and value (cycling over the source's projects and the four
    /// counters).
    fn event_at(&self, seq: u64, i: usize) -> (usize, Counted) {
        let k = seq as usize * self.batch + i;
        let c = Counted {
            project: k % self.projects_per_source,
            counter: (k / self.projects_per_source) % 4,
            value: 1 + (k % 7) as u64,
        };
        (k, c)
    }
}

/// One session per run: every run's sources have ids of their own.
const SESSION: u64 = 1;

/// Which Report: batch `seq` of source `source` (whose project ids are
/// `names`), its intervals ending at `now_ms`.
#[derive(Debug, Clone, Copy)]
pub struct ReportAt<'a> {
    pub source: usize,
    pub names: &'a [String],
    pub seq: u64,
    pub now_ms: i64,
}

/// A Report the generator builds and sends: prost's struct, or its bytes.
pub trait Request: Send + 'static {
    /// The Report at `at` (see `LoadConfig::request_counted`).
    fn build(cfg: &LoadConfig, at: &ReportAt<'_>, counted: &mut Vec<Counted>) -> Self;
    /// How many events it holds.
    fn events(&self) -> usize;
}

impl Request for ReportRequest {
    fn build(cfg: &LoadConfig, at: &ReportAt<'_>, counted: &mut Vec<Counted>) -> Self {
        cfg.request_counted(at, counted)
    }

    fn events(&self) -> usize {
        self.events.len()
    }
}

/// One event's share of the truth: its project (an index into its source's
/// project ids), its counter (in `Metric::COUNTERS` order) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub project: usize,
    pub counter: usize,
    pub value: u64,
}

/// What was acknowledged: per-project sums.
#[derive(Debug, Default)]
pub struct Acked {
    pub events: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    sums: Mutex<std::collections::HashMap<String, [u64; 4]>>,
}

impl Acked {
    /// A batch of `events` was acknowledged (its sums are added by `add`).
    pub fn record(&self, events: usize) {
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a source's acknowledged sums, `sums[i]` being those of `names[i]`.
    pub fn add(&self, names: &[String], sums: &[[u64; 4]]) {
        let mut g = self.sums.lock().expect("sums");
        for (name, v) in names.iter().zip(sums).filter(|(_, v)| v.iter().any(|&x| x > 0)) {
            let e = g.entry(name.clone()).or_default();
            for i in 0..4 {
                e[i] += v[i];
            }
        }
    }

    /// The sums per (project, counter index), non-zero ones only.
    pub fn totals(&self) -> BTreeMap<(String, usize), u64> {
        let g = self.sums.lock().expect("sums");
        g.iter().flat_map(|(p, v)| (0..4).map(move |i| ((p.clone(), i), v[i]))).filter(|(_, v)| *v > 0).collect()
    }
}

/// Runs `send` for every batch of every source until the duration is over;
/// `send` returns true when the batch was acknowledged (else it is resent).
pub async fn drive<R, F, Fut>(cfg: &LoadConfig, acked: Arc<Acked>, send: F) -> Duration
where
    R: Request,
    F: Fn(R) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let deadline = started + cfg.duration;
    // Only tasks with a source send (fewer sources than tasks leave some idle).
    let senders = cfg.concurrency.min(cfg.sources).max(1);
    let per_task_rate = if cfg.rate == 0 { 0.0 } else { cfg.rate as f64 / senders as f64 };
    let mut tasks = Vec::new();
    for t in 0..cfg.concurrency {
        let (cfg, acked, send) = (cfg.clone(), acked.clone(), send.clone());
        tasks.push(tokio::spawn(async move {
            // Task t drives sources t, t + concurrency, ...
            let sources: Vec<usize> = (t..cfg.sources).step_by(cfg.concurrency).collect();
            if sources.is_empty() {
                return;
            }
            let names: Vec<Vec<String>> = sources.iter().map(|&s| cfg.names(s)).collect();
            let mut seqs = vec![0u64; sources.len()];
            // Per source, per project (by index), the acknowledged sums.
            let mut sums: Vec<Vec<[u64; 4]>> = names.iter().map(|n| vec![[0; 4]; n.len()]).collect();
            let mut counted = Vec::with_capacity(cfg.batch);
            let mut sent = 0u64;
            let mut i = 0;
            while Instant::now() < deadline {
                let j = i % sources.len();
                let at =
                    ReportAt { source: sources[j], names: &names[j], seq: seqs[j], now_ms: meter_runtime::now_ms() };
                let req = R::build(&cfg, &at, &mut counted);
                let n = req.events();
                if send(req).await {
                    acked.record(n);
                    for c in &counted {
                        sums[j][c.project][c.counter] += c.value;
                    }
                    seqs[j] += 1;
                    i += 1;
                    sent += n as u64;
                } else {
                    acked.failures.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if per_task_rate > 0.0 {
                    let due = started + Duration::from_secs_f64(sent as f64 / per_task_rate);
                    tokio::time::sleep_until(due.into()).await;
                }
            }
            for (names, sums) in names.iter().zip(&sums) {
                acked.add(names, sums);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_the_sources_projects_and_counters() {
        let cfg = LoadConfig {
            prefix: "b".into(),
            sources: 2,
            projects_per_source: 3,
            batch: 12,
            concurrency: 1,
            rate: 0,
            duration: Duration::ZERO,
            keys: false,
        };
        let r = cfg.request(1, 0, 10_000);
        assert_eq!(r.source_id, "b-src0001");
        assert_eq!(r.batch_seq, 1);
        let projects: std::collections::BTreeSet<_> = r.events.iter().map(|e| e.project_id.as_str()).collect();
        assert_eq!(projects.into_iter().collect::<Vec<_>>(), ["b-p00003", "b-p00004", "b-p00005"]);
        let metrics: std::collections::BTreeSet<_> = r.events.iter().map(|e| e.metric).collect();
        assert_eq!(metrics.len(), 4);
    }

    #[test]
    fn the_counted_shares_are_the_events_sent() {
        let cfg = LoadConfig {
            prefix: "b".into(),
            sources: 2,
            projects_per_source: 5,
            batch: 37,
            concurrency: 1,
            rate: 0,
            duration: Duration::ZERO,
            keys: false,
        };
        let names = cfg.names(1);
        let mut counted = vec![Counted { project: 9, counter: 9, value: 9 }];
        for seq in 0..3 {
            let r = cfg.request_counted(&ReportAt { source: 1, names: &names, seq, now_ms: 10_000 }, &mut counted);
            let sent: Vec<Counted> = r
                .events
                .iter()
                .map(|e| Counted {
                    project: names.iter().position(|n| *n == e.project_id).expect("a name of the source"),
                    counter: METRICS.iter().position(|&m| m == e.metric).expect("a counter"),
                    value: e.value,
                })
                .collect();
            assert_eq!(counted, sent);
        }
    }

    /// The bytes the generator sends are prost's encoding of the Report it
    /// would have built, with and without idempotency keys.
    #[test]
    fn written_reports_are_the_built_ones_bytes() {
        use prost::Message;
        for keys in [false, true] {
            let cfg = LoadConfig {
                prefix: "bench-x".into(),
                sources: 3,
                projects_per_source: 700,
                batch: 2000,
                concurrency: 1,
                rate: 0,
                duration: Duration::ZERO,
                keys,
            };
            let names = cfg.names(2);
            let (mut built, mut written) = (Vec::new(), Vec::new());
            for seq in [0, 1, 200, 1 << 40] {
                let at = ReportAt { source: 2, names: &names, seq, now_ms: 1_764_547_200_123 };
                let r = cfg.request_counted(&at, &mut built);
                let mut buf = Vec::new();
                let n = cfg.write_counted(&at, &mut written, &mut buf);
                assert_eq!(n, r.events.len());
                assert_eq!(written, built);
                assert_eq!(buf, r.encode_to_vec(), "keys {keys}, seq {seq}");
            }
        }
    }
}
