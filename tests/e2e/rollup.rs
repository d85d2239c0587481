//! Rollups: final days compacted into `usage_hourly_rollup` and
//! `usage_daily_rollup` and read in place of the per-batch rows. A simulated
//! fleet's usage over four days, read per hour, day and month, for each
//! project and the fleet, equals the simulator's ground truth: before the
//! rollup job ran; with the leftovers of a crashed job in place (a staging
//! table, a day's partitions replaced but not recorded); after the job rolled
//! the final days up; while redos are cut short at many points; and after
//! the month was compacted into one partition (a crashed compaction's
//! leftovers ignored), its per-batch rows dropped (a redo then refused), and
//! its rolled days dropped after an hour.

use std::time::Duration;

use meter_core::finality::{day_floor, DAY_MS};
use meter_core::history::{Granularity, HistoryRange};
use meter_core::{Cycle, Metric, HOUR_MS};
use meter_e2e::{eventually, now_ms, Pipeline};
use meter_sim::Truth;
use meter_store::PeriodUsage;

use crate::fleet::simulated_fleet;
use crate::schema_sql::{ch_time, num, query};

/// `[from, to)` split in `g`'s timeframes.
fn frames(g: Granularity, from: i64, to: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut t = g.floor(from);
    while t < to {
        out.push((t, g.next(t)));
        t = g.next(t);
    }
    out
}

/// What the store should answer for `ids` (the fleet's sum when `fleet`):
/// every timeframe with some usage.
fn expected(truth: &Truth, ids: &[String], g: Granularity, from: i64, to: i64, fleet: bool) -> Vec<PeriodUsage> {
    let mut out = Vec::new();
    let one = |id: &str, (s, e): (i64, i64)| -> ([u64; 5], u64) {
        let mut v = [0; 5];
        for (i, m) in Metric::ALL.iter().enumerate() {
            v[i] = truth.in_timeframe(id, *m, s, e);
        }
        (v, truth.byte_hours_in(id, s, e))
    };
    let mut push = |project_id: &str, start_ms: i64, values: [u64; 5], bh: u64| {
        if values.iter().any(|x| *x > 0) || bh > 0 {
            let project_id = project_id.to_owned();
            out.push(PeriodUsage { project_id, start_ms, values, logical_size_bytes_hour: bh, adjusted: false });
        }
    };
    if fleet {
        for f in frames(g, from, to) {
            let (mut v, mut bh) = ([0u64; 5], 0);
            for id in ids {
                let (x, b) = one(id, f);
                v.iter_mut().zip(x).for_each(|(a, b)| *a += b);
                bh += b;
            }
            push("", f.0, v, bh);
        }
    } else {
        for id in ids {
            for f in frames(g, from, to) {
                let (v, bh) = one(id, f);
                push(id, f.0, v, bh);
            }
        }
    }
    out
}

fn nonzero(v: Vec<PeriodUsage>) -> Vec<PeriodUsage> {
    v.into_iter().filter(|u| u.values.iter().any(|x| *x > 0) || u.logical_size_bytes_hour > 0).collect()
}

/// Every read of the four days (and today) equals the ground truth.
pub(crate) async fn assert_history(p: &Pipeline, truth: &Truth, when: &str) {
    let ids: Vec<String> = truth.projects.keys().cloned().collect();
    let (from, to) = (day_floor(now_ms()) - 4 * DAY_MS, day_floor(now_ms()) + DAY_MS);
    let month = (Cycle::containing(from).start_ms, Cycle::containing(to - 1).end_ms);
    let reads = [
        (Granularity::Hourly, (from, to), &ids[..3]),
        (Granularity::Daily, (from, to), &ids[..]),
        (Granularity::Monthly, month, &ids[..]),
    ];
    for (g, (from, to), ids) in reads {
        let range =
            HistoryRange { from_ms: from, to_ms: to, granularity: g, metrics: Metric::ALL.to_vec(), byte_hours: true };
        let got = nonzero(p.store.history(&range, ids).await.expect("history"));
        assert_eq!(got, expected(truth, ids, g, from, to, false), "{when}: {g:?} history of {ids:?}");
        let fleet = nonzero(p.store.fleet_history(&range).await.expect("fleet history"));
        assert_eq!(
            fleet,
            expected(truth, &truth.projects.keys().cloned().collect::<Vec<_>>(), g, from, to, true),
            "{when}: {g:?} fleet"
        );
    }
    // A storage reading of an hour in the middle of a rolled day, not only whole days.
    let range = HistoryRange {
        from_ms: from + 5 * HOUR_MS,
        to_ms: to - 7 * HOUR_MS,
        granularity: Granularity::Hourly,
        metrics: Metric::ALL.to_vec(),
        byte_hours: true,
    };
    let got = nonzero(p.store.history(&range, &ids[3..6]).await.expect("history"));
    assert_eq!(
        got,
        expected(truth, &ids[3..6], Granularity::Hourly, range.from_ms, range.to_ms, false),
        "{when}: hours"
    );
    // The project listing, page by page (of 3: the last day rolled has 6
    // projects, so early pages are bounded by it): every page but the last full.
    let range =
        HistoryRange { from_ms: from, to_ms: to, granularity: Granularity::Daily, metrics: vec![], byte_hours: false };
    let (mut listed, mut after, mut sizes) = (Vec::new(), String::new(), Vec::new());
    loop {
        let page = p.store.history_projects(&range, &after, &[], 3).await.expect("projects");
        let Some(last) = page.last().cloned() else { break };
        sizes.push(page.len());
        listed.extend(page);
        after = last;
    }
    assert!(sizes.iter().rev().skip(1).all(|n| *n == 3), "{when}: pages of {sizes:?}");
    assert_eq!(listed, ids, "{when}: the projects with usage");
}

/// Usage of six of the projects on the three days before today (the
/// simulator's stays in the current month, which may have begun today):
/// compute across midnights, and storage of a branch of their own read
/// through the days; recorded in `truth` as sent.
pub(crate) async fn past_days(p: &Pipeline, truth: &mut Truth) {
    use meter_core::{Event, ProjectId, Span};
    let today = day_floor(now_ms());
    let mut client = p.client().await;
    for (seq, id) in truth.projects.keys().take(6).cloned().collect::<Vec<_>>().into_iter().enumerate() {
        let project = ProjectId::new(id.as_str()).expect("id");
        let event = |metric, value, span, branch: Option<&str>| Event {
            project_id: project.clone(),
            endpoint_id: None,
            branch_id: branch.map(str::to_owned),
            metric,
            value,
            span,
            idempotency_key: None,
        };
        let mut events = Vec::new();
        for d in 1..=3 {
            let midnight = today - (d - 1) * DAY_MS;
            // Today's part ends now at the latest (ingest refuses the future).
            let (start, end) = (midnight - 20 * 60_000 - seq as i64 * 60_000, (midnight + 17 * 60_000).min(now_ms()));
            events.push(event(
                Metric::ComputeTimeSeconds,
                1_000 + d as u64 * 37,
                Span::Interval { start_ms: start, end_ms: end },
                None,
            ));
            events.push(event(
                Metric::WrittenDataBytes,
                50_000 * d as u64,
                Span::Interval { start_ms: start, end_ms: end },
                None,
            ));
            for (h, size) in [(3, 7_000_000u64), (11, 6_500_000), (20, 9_000_000)] {
                let t = today - d * DAY_MS + h * HOUR_MS + seq as i64 * 1000;
                events.push(event(
                    Metric::LogicalSizeBytes,
                    size + d as u64,
                    Span::Instant { time_ms: t },
                    Some("br-past"),
                ));
            }
        }
        // In time order, as one compute reports them.
        events.sort_by_key(|e| match e.span {
            Span::Interval { start_ms, .. } => start_ms,
            Span::Instant { time_ms } => time_ms,
        });
        truth.record(&events);
        let wire = events.iter().map(|e| meter_proto::event_to_wire(e, true)).collect();
        client.report(crate::helpers::report("ru-past", seq as u64 + 1, wire)).await.expect("acknowledged");
    }
}

/// Runs meterctl; its output, or the error text.
async fn ctl(args: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    meterctl::run(std::iter::once("meterctl").chain(args.iter().copied()), &mut out)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

/// A test that reads "today" several times starts after the next midnight
/// if that is less than 3 minutes away.
pub(crate) async fn not_across_midnight() {
    let to_midnight = day_floor(now_ms()) + DAY_MS - now_ms();
    if to_midnight < 180_000 {
        tokio::time::sleep(Duration::from_millis(to_midnight as u64 + 1_000)).await;
    }
}

async fn rolled_through(p: &Pipeline) -> Option<i64> {
    p.store.rolled_through().await.expect("rolled_through")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_and_open_hours_equal_the_ground_truth_before_after_and_across_a_crashed_job() {
    not_across_midnight().await;
    let Some(mut p) = Pipeline::start("rollup").await else { return };
    p.start_api().await;
    let load = meter_aggregator::LoadConfig {
        linger_ms: 50,
        rollup_interval_seconds: 1,
        keep_batches_days: 0,
        ..Default::default()
    };
    p.start_load_config(&p.store_cfg.clone(), load.clone());
    let mut truth = simulated_fleet(&p, "ru").await;
    assert!(truth.projects.len() >= 6);
    past_days(&p, &mut truth).await;
    crate::fleet::assert_exact(&p, "ru", &truth).await;
    assert_history(&p, &truth, "nothing rolled up").await;
    assert_eq!(rolled_through(&p).await, None, "nothing is final yet");

    // What a crashed job leaves: a staging table, and yesterday's partitions
    // replaced (here with wrong rows) but the day not recorded. Neither is read.
    let db = &p.store_cfg.database.clone();
    let yesterday = day_floor(now_ms()) - DAY_MS;
    let someone = truth.projects.keys().next().expect("a project").clone();
    for sql in [
        format!(
            "CREATE TABLE {db}.rollup_stage_1000_1_0_h AS {db}.usage_hourly_rollup ENGINE = MergeTree \
             PARTITION BY toYYYYMMDD(hour) ORDER BY (project_id, metric, hour, branch_id)"
        ),
        format!(
            "INSERT INTO {db}.rollup_stage_1000_1_0_h VALUES ('{someone}', 'compute_time_seconds', {}, '', 7, 0, 0)",
            ch_time(yesterday)
        ),
        format!(
            "INSERT INTO {db}.usage_hourly_rollup VALUES ('{someone}', 'compute_time_seconds', {}, '', 999, 0, 0)",
            ch_time(yesterday + 5 * HOUR_MS)
        ),
        format!(
            "INSERT INTO {db}.usage_daily_rollup VALUES ('{someone}', 'compute_time_seconds', {}, '', 999, 0, 0)",
            ch_time(yesterday)
        ),
    ] {
        let r = reqwest::Client::new().post(&p.store_cfg.url).body(sql.clone()).send().await.expect("clickhouse");
        assert!(r.status().is_success(), "{sql}: {}", r.text().await.unwrap_or_default());
    }
    assert_history(&p, &truth, "a crashed job's leftovers in place").await;

    // A week and a minute later (the api's clock, which writes the probes):
    // every day before today is final and rolled up; today is not.
    p.clock.jump_to(now_ms() + 7 * DAY_MS + 65_000);
    let today = day_floor(now_ms());
    eventually(Duration::from_secs(60), "the final days rolled up", || async {
        match rolled_through(&p).await {
            Some(t) if t == today => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let days = query(&p, &format!("SELECT count(), sum(hourly_rows) FROM {db}.rollup_days")).await;
    assert!(num(&days[0][0]) == 3 && num(&days[0][1]) > 0, "the three days before today: {days:?}");
    let stages = query(
        &p,
        // (The job may be copying a month right now, in a staging table of its own.)
        &format!("SELECT count() FROM system.tables WHERE database = '{db}' AND name = 'rollup_stage_1000_1_0_h'"),
    )
    .await;
    assert_eq!(num(&stages[0][0]), 0, "the crashed job's staging table was dropped");
    assert_history(&p, &truth, "final days rolled up, today open").await;

    // The operator's view, and rolling days again (as after a backfill).
    let config = std::env::temp_dir().join(format!("rollup-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\nevents_topic = \"{}\"\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{db}\"\n",
            p.kafka.brokers, p.kafka.events_topic, p.store_cfg.url
        ),
    )
    .expect("config");
    let config = config.to_str().expect("path");
    // A week of the month rolled: its days are copied into one partition.
    let compacted = p.store.reach().await.expect("reach").compacted_through;
    if today >= Cycle::containing(today).start_ms + 7 * DAY_MS {
        assert!(compacted > Some(Cycle::containing(today).start_ms), "the month copied: {compacted:?}");
    }
    // Whatever the date: yesterday's month copied through today, as the job
    // does each week (its rolled days then come from the copy); the redos
    // below make it stale, and the job copies it again.
    let copied = Cycle::containing(today - DAY_MS);
    let rolls = query(
        &p,
        &format!(
            "SELECT count() FROM {db}.rollup_days WHERE day >= {} AND day < {}",
            ch_time(copied.start_ms),
            ch_time(today)
        ),
    )
    .await;
    let copy = meter_core::compaction::MonthCopy {
        month: meter_core::finality::month_of(copied.start_ms),
        through: today,
        rolls: num(&rolls[0][0]),
    };
    let at = meter_store::At { now_ms: now_ms(), loaded_ms: meter_runtime::Clock::now_ms(&*p.clock) };
    p.store.compact_month(copy, at).await.expect("copy");
    assert_eq!(p.store.reach().await.expect("reach").compacted_through, Some(today));
    assert_history(&p, &truth, "the month copied through today").await;
    let status = ctl(&["rollup", "status", "--config", config]).await.expect("status");
    assert!(status.contains(&format!("rolled up through {}", meter_core::cycle::rfc3339(today))), "{status}");
    let day = |t: i64| meter_core::cycle::rfc3339(t)[..10].to_owned();
    let redo = ctl(&["rollup", "redo", "--config", config, "--from", &day(today - 3 * DAY_MS), "--to", &day(today)])
        .await
        .expect("redo");
    assert_eq!(redo.lines().filter(|l| l.starts_with("rolled 20")).count(), 3, "{redo}");
    let refused = ctl(&["rollup", "redo", "--config", config, "--from", &day(today), "--to", &day(today + DAY_MS)])
        .await
        .expect_err("today is not rolled up");
    assert!(refused.contains("not rolled up yet"), "{refused}");
    assert_history(&p, &truth, "days rolled up again").await;
    // Redos cut short at 20 points along the way (the job killed): every
    // read in between is exact.
    for i in 0..20u64 {
        let (from, to) = (day(today - 3 * DAY_MS), day(today));
        let args = ["rollup", "redo", "--config", config, "--from", &from, "--to", &to];
        let redo = ctl(&args);
        // Dropped when the time is up, wherever it was.
        let _ = tokio::time::timeout(Duration::from_millis(5 + i * 12), redo).await;
        assert_history(&p, &truth, &format!("a redo killed after {} ms", 5 + i * 12)).await;
    }

    // What a crashed copy of the month leaves: a staging table, and the
    // month's partition of the copies replaced by one reaching further than
    // any recorded (here with a wrong row today) but not recorded. Neither is read.
    let month = Cycle::containing(now_ms());
    for sql in [
        format!(
            "CREATE TABLE {db}.rollup_stage_1000_1_1_m AS {db}.usage_hourly_rollup_months ENGINE = MergeTree \
             PARTITION BY toYYYYMM(hour) ORDER BY (project_id, metric, hour, branch_id)"
        ),
        format!(
            "INSERT INTO {db}.usage_hourly_rollup_months VALUES ('{someone}', 'compute_time_seconds', {}, '', 999, 0, 0)",
            ch_time(today + HOUR_MS)
        ),
    ] {
        let r = reqwest::Client::new().post(&p.store_cfg.url).body(sql.clone()).send().await.expect("clickhouse");
        assert!(r.status().is_success(), "{sql}: {}", r.text().await.unwrap_or_default());
    }
    assert_history(&p, &truth, "a crashed compaction's leftovers in place").await;

    // Past the month's end and a day more: every day rolled up, the month
    // compacted, and its per-batch rows dropped (keep_batches_days = 1).
    // Only the rollups are left, and they answer the same.
    let month_end = month.end_ms;
    let yyyymm = meter_core::finality::month_of(month.start_ms);
    p.start_load_config(&p.store_cfg.clone(), meter_aggregator::LoadConfig { keep_batches_days: 1, ..load });
    let jumped = month_end + 8 * DAY_MS + 65_000;
    p.clock.jump_to(jumped);
    eventually(Duration::from_secs(90), "the month compacted and its per-batch rows dropped", || async {
        let months = p.store.batch_months().await.map_err(|e| e.to_string())?;
        let reach = p.store.reach().await.map_err(|e| e.to_string())?;
        match (reach.rolled_through, reach.compacted_through) {
            (Some(t), Some(c)) if t >= month_end && c == month_end && months.is_empty() => Ok(()),
            other => Err(format!("rolled and compacted through {other:?}, per-batch months {months:?}")),
        }
    })
    .await;
    let left = query(&p, &format!("SELECT count() FROM {db}.usage_hourly")).await;
    assert_eq!(num(&left[0][0]), 0, "no per-batch rows left");
    let compacted = query(
        &p,
        &format!("SELECT count(), sum(hourly_rows) FROM {db}.rollup_months WHERE toYYYYMM(month) = {yyyymm}"),
    )
    .await;
    assert!(num(&compacted[0][0]) >= 1 && num(&compacted[0][1]) > 0, "the month recorded: {compacted:?}");
    let parts = |table: &'static str| {
        let p = &p;
        async move {
            let sql = format!(
                "SELECT count() FROM system.parts WHERE database = '{db}' AND table = '{table}' AND active \
                 AND toUInt32(substring(partition, 1, 6)) = {yyyymm}"
            );
            num(&query(p, &sql).await[0][0])
        }
    };
    assert_eq!(parts("usage_hourly_rollup_months").await, 1, "the month in one part");
    assert!(parts("usage_hourly_rollup").await > 0, "its days kept for an hour after");
    assert_history(&p, &truth, "per-batch rows dropped, the month compacted").await;
    // Rolling such a day again would empty it: refused.
    let (from, to) = (day(today - DAY_MS), day(today));
    let refused =
        ctl(&["rollup", "redo", "--config", config, "--from", &from, "--to", &to]).await.expect_err("refused");
    assert!(refused.contains("are not kept"), "{refused}");
    assert_history(&p, &truth, "after the refused redo").await;

    // Two hours on: the month's days are dropped; its compacted copy answers.
    p.clock.jump_to(jumped + 2 * HOUR_MS);
    eventually(Duration::from_secs(60), "the compacted month's days dropped", || async {
        match parts("usage_hourly_rollup").await {
            0 => Ok(()),
            n => Err(format!("{n} parts")),
        }
    })
    .await;
    assert_history(&p, &truth, "the compacted month's days dropped").await;
    let refused = ctl(&[
        "rollup",
        "redo",
        "--config",
        config,
        "--from",
        &day(month.start_ms),
        "--to",
        &day(month.start_ms + DAY_MS),
    ])
    .await
    .expect_err("refused");
    assert!(refused.contains("rolled days were dropped"), "{refused}");
    p.shutdown().await;
}
