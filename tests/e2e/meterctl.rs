//! `meterctl` against a real api role, Kafka and ClickHouse: quotas and
//! plans, status, usage, projects over quota, dead letters, and a backfill
//! that rebuilds ClickHouse rows from Kafka into an empty database.

use std::sync::Arc;
use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric as WireMetric;
use meter_sim::{run, SendStats};
use meter_store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;

use crate::fleet::{assert_exact, fleet_run};
use crate::helpers::{inc, report};

/// True when `out` has a line whose words are `words`.
fn has_row(out: &str, words: &[&str]) -> bool {
    out.lines().any(|l| l.split_whitespace().eq(words.iter().copied()))
}

/// Runs meterctl against the pipeline's api; its output, or the error text.
async fn ctl(p: &Pipeline, args: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    let mut all = vec!["meterctl", "--api", p.api_url.as_str()];
    all.extend_from_slice(args);
    meterctl::run(all, &mut out).await.map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meterctl_manages_quotas_and_reads_usage() {
    let Some(mut p) = Pipeline::start("meterctl").await else { return };
    p.start_api().await;
    let out = ctl(&p, &["plan", "set", "small", "--quota", "active_time_seconds=100", "--thresholds", "50,100"]).await;
    assert!(
        out.as_ref().is_ok_and(|o| o.contains("plan small") && has_row(o, &["active_time_seconds", "100"])),
        "{out:?}"
    );
    let out = ctl(&p, &["plan", "get", "small"]).await.expect("plan get");
    assert!(out.contains("[50,100]") && has_row(&out, &["written_data_bytes", "unlimited"]), "{out}");
    ctl(&p, &["plan", "set", "large", "--quota", "active_time_seconds=900"]).await.expect("plan set");
    let out = ctl(&p, &["plan", "list"]).await.expect("plan list");
    let (large, small) = (out.find("plan large"), out.find("plan small"));
    assert!(large.is_some() && large < small && has_row(&out, &["active_time_seconds", "900"]), "{out}");
    let err = ctl(&p, &["quota", "set", "ctl-p1", "--plan", "nope"]).await.unwrap_err();
    assert!(err.contains("400") && err.contains("unknown plan"), "{err}");
    let err = ctl(&p, &["quota", "set", "ctl-p1", "--quota", "cpu=3"]).await.unwrap_err();
    assert!(err.contains("unknown metric \"cpu\""), "{err}");
    ctl(&p, &["quota", "set", "ctl-p1", "--plan", "small", "--quota", "written_data_bytes=1000"])
        .await
        .expect("quota set");
    ctl(&p, &["quota", "set", "ctl-p2", "--plan", "small"]).await.expect("quota set");

    let mut client = p.client().await;
    client
        .report(report(
            "ctl-node",
            1,
            vec![
                inc("ctl-p1", WireMetric::ActiveTimeSeconds, 150),
                inc("ctl-p2", WireMetric::ActiveTimeSeconds, 60),
                meter_proto::v1::UsageEvent {
                    project_id: "ctl-p1".into(),
                    branch_id: "br-ctl".into(),
                    metric: WireMetric::LogicalSizeBytes as i32,
                    kind: meter_proto::v1::Kind::Absolute as i32,
                    value: 42,
                    time_unix_ms: meter_e2e::now_ms(),
                    ..Default::default()
                },
            ],
        ))
        .await
        .expect("ingest");
    eventually(Duration::from_secs(30), "status shows the usage", || async {
        let out = ctl(&p, &["status", "ctl-p1"]).await?;
        if has_row(&out, &["active_time_seconds", "150", "150.0", "%", "100"])
            && has_row(&out, &["br-ctl", "42", "false", "-"])
        {
            Ok(out)
        } else {
            Err(out)
        }
    })
    .await;
    let out = ctl(&p, &["quota", "get", "ctl-p1"]).await.expect("quota get");
    assert!(out.contains("plan small") && has_row(&out, &["written_data_bytes", "1000"]), "{out}");
    // `quota set` merges: the plan and the other override stay.
    let out = ctl(&p, &["quota", "set", "ctl-p1", "--quota", "data_transfer_bytes=7"]).await.expect("merge");
    assert!(out.contains("plan small") && has_row(&out, &["written_data_bytes", "1000"]), "{out}");
    assert!(has_row(&out, &["data_transfer_bytes", "7"]), "{out}");
    let out = ctl(&p, &["quota", "set", "ctl-p1", "--quota", "data_transfer_bytes=inherit"]).await.expect("inherit");
    assert!(has_row(&out, &["data_transfer_bytes", "unlimited"]), "{out}");

    let out = ctl(&p, &["over-quota", "--min-percent", "50"]).await.expect("over-quota");
    let lines: Vec<&str> = out.lines().collect();
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(lines[1]), ["ctl-p1", "active", "active_time_seconds", "150", "100", "150"], "{out}");
    assert_eq!(words(lines[2]), ["ctl-p2", "active", "active_time_seconds", "60", "100", "60"], "{out}");
    assert!(out.contains("2 of 2 matching"), "{out}");
    let out = ctl(&p, &["--json", "over-quota", "--min-percent", "100"]).await.expect("json");
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["total"], 1, "{v}");

    eventually(Duration::from_secs(30), "usage by day from ClickHouse", || async {
        let now = meter_e2e::now_ms();
        let (from, to) = (meter_core::cycle::rfc3339(now - 86_400_000), meter_core::cycle::rfc3339(now + 1));
        let out =
            ctl(&p, &["--json", "usage", "ctl-p1", "--from", &from, "--to", &to, "--metrics", "active_time_seconds"])
                .await?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let sum: u64 = v["consumption"]
            .as_array()
            .ok_or("frames")?
            .iter()
            .map(|f| f["active_time_seconds"].as_u64().unwrap_or(0))
            .sum();
        if sum == 150 {
            Ok(())
        } else {
            Err(format!("sum {sum}: {out}"))
        }
    })
    .await;

    // Adjustments: applied once per key, refused below zero, listed with why.
    let add =
        ["adjust", "add", "ctl-p1", "--metric", "active_time_seconds", "--delta", "-50", "--reason", "test usage"];
    let keyed = [&add[..], &["--key", "ctl-k1"]].concat();
    let out = ctl(&p, &keyed).await.expect("adjust add");
    assert!(out.contains("applied: ctl-p1 active_time_seconds of") && out.contains("is now 100 (key ctl-k1)"), "{out}");
    let again = ctl(&p, &keyed).await.expect("adjust add again");
    assert_eq!(again, out, "the same key applies once");
    let err =
        ctl(&p, &["adjust", "add", "ctl-p1", "--metric", "active_time_seconds", "--delta", "-500", "--reason", "r"])
            .await
            .unwrap_err();
    assert!(err.contains("422") && err.contains("below zero: it is 100"), "{err}");
    let out = ctl(&p, &["adjust", "list", "ctl-p1"]).await.expect("adjust list");
    assert!(out.lines().any(|l| l.contains("-50") && l.contains("applied") && l.contains("test usage")), "{out}");

    let out = ctl(&p, &["dead-letters", "list"]).await.expect("dead letters");
    assert_eq!(out.trim(), "KEY  TYPE  PROJECT  ATTEMPTS  FAILED_AT  LAST_ERROR");
    let err = ctl(&p, &["dead-letters", "replay", "no-such-key"]).await.unwrap_err();
    assert!(err.contains("404") && err.contains("no-such-key"), "{err}");
    let err = ctl(&p, &["status", "never-seen"]).await.unwrap_err();
    assert!(err.contains("404"), "{err}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_rebuilds_clickhouse_from_kafka() {
    let Some(mut p) = Pipeline::start("backfill").await else { return };
    let prefix = "bf";
    let started = meter_e2e::now_ms();
    let summary = run(
        fleet_run(&p.ingest_url, prefix, 4),
        Arc::new(SendStats::default()),
        CancellationToken::new(),
        CancellationToken::new(),
    )
    .await
    .expect("simulation");
    assert_exact(&p, prefix, &summary.truth).await;
    // An adjustment, applied and loaded: the backfill writes it again from usage.rows.
    p.start_api().await;
    let project = summary.truth.projects.keys().next().expect("a project").clone();
    let out =
        ctl(&p, &["adjust", "add", &project, "--metric", "data_transfer_bytes", "--delta", "77", "--reason", "bf"])
            .await
            .expect("adjust");
    assert!(out.starts_with("applied:"), "{out}");
    let adjusted = || async { p.store.adjustment_sums(prefix).await.expect("query") };
    meter_e2e::eventually(Duration::from_secs(30), "the adjustment loaded", || async {
        if adjusted().await.len() == 1 {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
    // An empty database, as after losing the table: the backfill fills it from Kafka.
    let fresh = StoreConfig { database: format!("{}_rebuilt", p.store_cfg.database), ..p.store_cfg.clone() };
    meter_store::migrate(&fresh).await.expect("migrate");
    let dir = std::env::temp_dir().join(format!("meterctl-backfill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("meterd.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\nrows_topic = \"{}\"\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n[ingest]\nlisten = \"ignored:1\"\n",
            p.kafka.brokers, p.kafka.rows_topic, fresh.url, fresh.database
        ),
    )
    .expect("config");
    let (from, to) =
        (meter_core::cycle::rfc3339(started - 60_000), meter_core::cycle::rfc3339(meter_e2e::now_ms() + 60_000));
    let out = ctl(&p, &["backfill", "--config", config.to_str().expect("path"), "--from", &from, "--to", &to])
        .await
        .expect("backfill");
    assert!(
        out.starts_with("backfill: ") && out.contains("rows written (0 undecodable), 1 adjustments written"),
        "{out}"
    );
    let rebuilt = Store::new(&fresh).expect("store").usage_with_prefix(prefix).await.expect("query");
    let original = p.store.usage_with_prefix(prefix).await.expect("query");
    assert_eq!(rebuilt, original, "the rebuilt database equals the aggregator's");
    assert!(meter_sim::compare(&summary.truth, &rebuilt).is_empty(), "and the ground truth");
    let rebuilt_adjustments = Store::new(&fresh).expect("store").adjustment_sums(prefix).await.expect("query");
    assert_eq!(rebuilt_adjustments, adjusted().await, "the adjustments too");
    assert_eq!(rebuilt_adjustments[0].delta, 77);
    // Run twice: nothing changes (the same rows under the same keys).
    ctl(&p, &["backfill", "--config", config.to_str().expect("path"), "--from", &from, "--to", &to])
        .await
        .expect("again");
    assert_eq!(Store::new(&fresh).expect("store").usage_with_prefix(prefix).await.expect("query"), original);
    let err = ctl(&p, &["backfill", "--config", config.to_str().expect("path"), "--from", "today", "--to", &to])
        .await
        .unwrap_err();
    assert!(err.contains("--from \"today\""), "{err}");
    std::fs::remove_dir_all(&dir).ok();
    p.shutdown().await;
}
