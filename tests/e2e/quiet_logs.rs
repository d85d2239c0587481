//! An operator alerts on ERROR and WARN lines: a healthy `meterd all`,
//! idle, then under a simulated fleet whose projects cross their quotas
//! (suspensions and signed alerts delivered), then idle again, writes
//! none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meter_chaos::{meterd_config, procs::ready, Ports};
use meter_kafka::KafkaConfig;
use meter_sim::receivers::{ControlPlane, FailMode, WebhookReceiver};
use meter_sim::{run, SendStats};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::fleet::fleet_run;
use crate::helpers::SECRET;

/// The lines of a log at level WARN or ERROR (tracing's fmt layer writes
/// the level as a word of its own, with or without colours).
fn alarming(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "WARN" || w == "ERROR")).collect()
}

#[test]
fn finds_warn_and_error_lines() {
    let log =
        "2026-11-30T12:00:00Z  INFO meterd.started\n\x1b[33m WARN\x1b[0m kafka.client_error\nERROR x\nan ERRORS word";
    assert_eq!(alarming(log).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_meterd_logs_no_warn_or_error() {
    let Some(stack) = meter_e2e::Stack::available().await else { return };
    let Some(meterd) = meter_e2e::workspace_binary("meterd", "meterd") else { return };
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let id = format!("quiet{:x}", t % 0xffff_ffff);
    let kafka =
        KafkaConfig { brokers: stack.brokers.clone(), partitions: 4, ..KafkaConfig::default() }.with_topic_prefix(&id);
    let ports = Ports::free().expect("ports");
    let dir = std::env::temp_dir().join(&id);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("meterd.toml");
    let store = meter_store::StoreConfig {
        url: stack.clickhouse_url.clone(),
        database: format!("e2e_{id}"),
        ..meter_store::StoreConfig::default()
    };
    std::fs::write(&config, meterd_config(&kafka, &store, &ports, &id)).expect("config");
    let admin = format!("127.0.0.1:{}", meter_chaos::free_port().expect("port"));
    let log_path = dir.join("meterd.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = tokio::process::Command::new(meterd)
        .arg("--config")
        .arg(&config)
        .arg("all")
        .env("METER__ADMIN__LISTEN", &admin)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("meterd starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ready(&admin).await {
        assert!(
            Instant::now() < deadline,
            "meterd not ready in 90 s:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The systems a platform owns: a control plane and a webhook consumer.
    let stop = CancellationToken::new();
    let cp = ControlPlane::default();
    let l = tokio::net::TcpListener::bind(("127.0.0.1", ports.control_plane)).await.expect("control plane port");
    tokio::spawn(cp.clone().serve(l, stop.clone()));
    let hooks = WebhookReceiver::new(SECRET, FailMode::Never);
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/", hook_listener.local_addr().expect("addr"));
    tokio::spawn(hooks.clone().serve(hook_listener, stop.clone()));
    let api = format!("http://127.0.0.1:{}", ports.api);
    let http = reqwest::Client::new();
    let put = |path: String, body: serde_json::Value| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let r = http.put(format!("{api}{path}")).json(&body).send().await.expect("api");
            assert!(r.status().is_success(), "{path}: {}", r.text().await.unwrap_or_default());
        }
    };
    put("/v1/webhooks/quiet".into(), json!({"url": hook_url, "secret": SECRET})).await;
    let cfg = fleet_run(&format!("http://127.0.0.1:{}", ports.ingest), &id, 20);
    let fleet = meter_sim::Fleet::new(cfg.fleet.clone(), meter_runtime::now_ms());
    for p in fleet.project_ids().take(5) {
        put(format!("/v1/projects/{p}/quota"), json!({"plan": null, "quota": {"active_time_seconds": 600}})).await;
    }

    tokio::time::sleep(Duration::from_secs(5)).await; // idle
    let stats = Arc::new(SendStats::default());
    run(cfg, stats, CancellationToken::new(), CancellationToken::new()).await.expect("load");
    meter_e2e::eventually(Duration::from_secs(60), "suspensions and alerts happened", || async {
        let (calls, alerts) = (cp.calls_of("suspend").len(), hooks.accepted().len());
        if calls > 0 && alerts > 0 {
            Ok(())
        } else {
            Err(format!("{calls} suspend calls, {alerts} alerts"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await; // idle again
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().expect("pid").to_string()).status();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    stop.cancel();
    let log = std::fs::read_to_string(&log_path).expect("log");
    let bad = alarming(&log);
    assert!(
        bad.is_empty(),
        "{} WARN/ERROR lines on a healthy run ({}):\n{}",
        bad.len(),
        log_path.display(),
        bad.join("\n")
    );
    assert!(log.contains("meterd"), "the log has the roles' lines");
    let _ = std::fs::remove_dir_all(&dir);
}
