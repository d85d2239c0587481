//! Observability on a real Prometheus (Debian's `prometheus` package): the
//! roles' `/metrics` pass `promtool check metrics`, Prometheus scrapes them,
//! loads deploy/prometheus/rules.yml, and every expression of the Grafana
//! dashboard and of the alerting rules returns data.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use meter_runtime::Health;
use meter_sim::receivers::{FailMode, WebhookReceiver};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{api_put, control_plane_on_loopback, fast_enforcer, inc, receiver_on_loopback, report, SECRET};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A binary from Debian's `prometheus` package; fails loudly when missing.
/// The tool's path; `None` (the test skipped, or failed when end-to-end
/// tests are required) when it is not installed.
fn tool(name: &str) -> Option<String> {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().expect("sh");
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    if path.is_empty() {
        return meter_e2e::skip(&format!("{name} is not installed (deploy/local/prereqs installs it)"));
    }
    Some(path)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The expressions of every panel of the dashboard, `$__rate_interval` set to 30 s.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(format!("{REPO}/deploy/grafana/meter-dashboard.json")).expect("dashboard");
    let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("expr").replace("$__rate_interval", "30s"));
        }
    }
    out
}

/// The alert expressions of the rules file, each without its final
/// threshold comparison: an alert's condition is empty while all is well,
/// but the series it compares must exist.
fn rule_operands() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{REPO}/deploy/prometheus/rules.yml")).expect("rules");
    let mut out = Vec::new();
    let mut alert = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("- alert: ") {
            alert = a.to_owned();
        } else if let Some(e) = line.strip_prefix("expr: ") {
            let cut = [" > ", " < ", " == ", " != ", " >= ", " <= "].iter().filter_map(|op| e.rfind(op)).max();
            out.push((alert.clone(), cut.map_or(e, |i| &e[..i]).to_owned()));
        }
    }
    out
}

async fn query(prom: &str, expr: &str) -> Result<usize, String> {
    let r = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(format!("{expr}: {v}"));
    }
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_roles_and_every_dashboard_and_rule_expression_has_data() {
    let (Some(prometheus), Some(promtool)) = (tool("prometheus"), tool("promtool")) else { return };
    if meter_e2e::Stack::available().await.is_none() {
        return;
    }
    meter_runtime::metrics_handle(); // the recorder, before any role records
    let stop = CancellationToken::new();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().expect("addr");
    tokio::spawn(meter_runtime::serve_admin(admin, Health::default(), stop.clone()));

    // A real Prometheus scraping the roles, with the alerting rules loaded,
    // from before the traffic (so increase() sees the dead letter happen).
    let dir = std::env::temp_dir().join(format!("meter-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let web = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {REPO}/deploy/prometheus/rules.yml\nscrape_configs:\n  - job_name: meter\n    static_configs:\n      - targets: ['{admin_addr}']\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let _server = Server(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    );
    let prom = format!("http://{web}");

    // Every role, and traffic that makes each series move.
    let Some(mut p) = Pipeline::start("prom").await else { return };
    let (cp, cp_url) = control_plane_on_loopback(&stop).await;
    cp.always("prom-r", 404); // refused for good: MeterControlPlaneRefusing
    let dead = WebhookReceiver::new(SECRET, FailMode::Always);
    let dead_url = receiver_on_loopback(&dead, &stop).await;
    p.start_api().await;
    // The dead endpoint is disabled after failing for 1 s: MeterWebhookEndpointDisabled.
    p.start_enforcer(meter_enforcer::EnforcerConfig { webhook_disable_after_ms: 1000, ..fast_enforcer(&cp_url) }).await;
    // Prometheus has a sample of the dead-letter counter before the dead letter.
    eventually(Duration::from_secs(30), "Prometheus scraped the roles once", || async {
        match query(&prom, "meter_webhook_dead_letters_total").await? {
            0 => Err("not yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    let api = p.api_url.clone();
    api_put(&format!("{api}/v1/webhooks/dead"), json!({"url": dead_url, "secret": SECRET})).await;
    api_put(&format!("{api}/v1/projects/prom-p/quota"), json!({"plan": null, "quota": {"written_data_bytes": 100}}))
        .await;
    api_put(&format!("{api}/v1/projects/prom-r/quota"), json!({"plan": null, "quota": {"written_data_bytes": 100}}))
        .await;
    let mut client = p.client().await;
    client
        .report(report(
            "prom-src",
            1,
            vec![inc("prom-p", Metric::WrittenDataBytes, 150), inc("prom-r", Metric::WrittenDataBytes, 150)],
        ))
        .await
        .expect("ack");
    client.report(report("prom-src", 2, vec![inc("", Metric::WrittenDataBytes, 1)])).await.expect_err("invalid");
    // An event past the late-event horizon (7 days): refused, and counted as late.
    let mut late = inc("prom-p", Metric::WrittenDataBytes, 1);
    (late.start_unix_ms, late.end_unix_ms) = (late.start_unix_ms - 8 * 86_400_000, late.end_unix_ms - 8 * 86_400_000);
    let refused = client.report(report("prom-src", 2, vec![late])).await.expect_err("late");
    assert!(refused.message().contains("in the past"), "{refused:?}");

    // promtool's linter on what the roles export.
    let body = eventually(Duration::from_secs(30), "a suspension and a dead letter are exported", || async {
        let body = reqwest::get(format!("http://{admin_addr}/metrics"))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let suspended = body.contains("meter_enforcer_crossing_to_suspend_percentile_seconds{percentile=\"99\"}");
        let dead = body.lines().any(|l| l.starts_with("meter_webhook_dead_letters_total ") && !l.ends_with(" 0"));
        // (The recorder is shared by the tests of this process: other tests' refusals count too.)
        let refused = ["field=\"project_id\",reason=\"invalid\"}", "field=\"start_unix_ms\",reason=\"late\"}"]
            .iter()
            .all(|labels| {
                let series = format!("meter_ingest_rejected_batches_total{{{labels} ");
                body.lines().any(|l| l.starts_with(&series) && !l.ends_with(" 0"))
            });
        if suspended && dead && refused {
            Ok(body)
        } else {
            let lines: Vec<&str> = body.lines().filter(|l| l.starts_with("meter_ingest_rejected")).collect();
            Err(format!("suspended {suspended}, dead letter {dead}, refusals counted {refused}: {lines:?}"))
        }
    })
    .await;
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(check.stdin.as_mut().expect("stdin"), body.as_bytes()).expect("write");
    let lint = check.wait_with_output().expect("promtool");
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // Keep traffic flowing while Prometheus collects samples for rate().
    for seq in 3..13u64 {
        client.report(report("prom-src", seq, vec![inc("prom-q", Metric::ActiveTimeSeconds, 1)])).await.expect("ack");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let exprs: Vec<(String, String)> =
        dashboard_exprs().into_iter().map(|e| ("dashboard".to_owned(), e)).chain(rule_operands()).collect();
    assert_eq!(exprs.len(), 22 + 15, "22 panels and 15 rules");
    for (what, expr) in &exprs {
        eventually(Duration::from_secs(60), &format!("{what}: {expr} returns data"), || async {
            match query(&prom, expr).await? {
                0 => Err("no series".to_owned()),
                n => Ok(n),
            }
        })
        .await;
    }
    let must_fire = ["MeterWebhookDeadLetters", "MeterWebhookEndpointDisabled", "MeterControlPlaneRefusing"];
    eventually(
        Duration::from_secs(30),
        "every rule loaded and evaluated, the three alerts of this traffic firing",
        || async {
            let v: Value = reqwest::get(format!("{prom}/api/v1/rules"))
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let rules: Vec<Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let healthy = rules.len() == 15 && rules.iter().all(|r| r["health"] == "ok");
            let fired = must_fire.iter().all(|name| rules.iter().any(|r| r["name"] == *name && r["state"] == "firing"));
            if healthy && fired {
                Ok(())
            } else {
                Err(format!("{rules:?}"))
            }
        },
    )
    .await;
    stop.cancel();
    p.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}
