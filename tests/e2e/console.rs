//! The console in a real browser (headless Chromium over WebDriver) on the
//! real stack, with a simulated fleet's data: every page renders what the
//! API holds, editing a quota changes what the API answers and what the
//! enforcer does, and a `read` token can change nothing (the controls are
//! absent and the server refuses the form). Screenshots of each page go to
//! `target/console-screenshots/` (or `METER_CONSOLE_SCREENSHOTS`); the
//! README shows copies of them from `docs/console/`.

use std::path::PathBuf;
use std::time::Duration;

use meter_core::auth::TokenHash;
use meter_e2e::browser::Browser;
use meter_e2e::{eventually, Pipeline};
use meter_runtime::Auth;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::fleet::simulated_fleet;
use crate::helpers::{control_plane_on_loopback, fast_enforcer, receiver_on_loopback, SECRET};

/// `reader` (read) and `ops` (manage).
fn credentials() -> meter_core::auth::Credentials {
    serde_json::from_value(json!({"api": [
        {"name": "reader", "sha256": TokenHash::of("console-r").to_hex(), "scopes": ["read"]},
        {"name": "ops", "sha256": TokenHash::of("console-m").to_hex(), "scopes": ["manage"]},
    ]}))
    .expect("credentials")
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url).bearer_auth("console-m");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("api reachable");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Where screenshots go: `METER_CONSOLE_SCREENSHOTS` (relative to the
/// workspace), else `target/console-screenshots`.
fn screenshots() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("METER_CONSOLE_SCREENSHOTS").unwrap_or_else(|| "target/console-screenshots".into());
    workspace.join(dir)
}

/// axe-core's source (`deploy/local/axe-core` installs it; `METER_AXE_JS`
/// names another copy); `None` after a `skip` when it is missing.
fn axe_js() -> Option<String> {
    let path = std::env::var_os("METER_AXE_JS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.stack/axe-core/node_modules/axe-core/axe.min.js")
    });
    match std::fs::read_to_string(&path) {
        Ok(js) => Some(js),
        Err(e) => meter_e2e::skip(&format!("{} is missing ({e}): run deploy/local/axe-core", path.display())),
    }
}

/// Fails naming every WCAG 2.1 A/AA violation axe-core finds on the page.
async fn assert_accessible(b: &Browser, axe: &str) {
    let found = b.accessibility_violations(axe).await;
    assert!(found.is_empty(), "{}: {} accessibility violation(s):\n{}", b.url().await, found.len(), found.join("\n"));
}

/// `v` with thousands separators, as the console prints exact numbers.
fn grouped(v: u64) -> String {
    let d = v.to_string();
    d.chars().enumerate().fold(String::new(), |mut out, (i, c)| {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
        out
    })
}

async fn sign_in(b: &Browser, api: &str, token: &str) {
    b.goto(&format!("{api}/console")).await;
    assert!(b.url().await.ends_with("/console/login"), "not sent to sign in: {}", b.url().await);
    b.fill("#token", token).await;
    b.click_and_wait("form[action=\"/console/login\"] button").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_fleet_and_changes_only_what_a_manage_token_may() {
    let Some(mut p) = Pipeline::start("console").await else { return };
    let Some(axe) = axe_js() else { return };
    let Some(b) = Browser::start().await else { return };
    // The accessibility check can fail: a page without alt text, labels or
    // a language is reported.
    b.goto("data:text/html,<title>bad</title><img src=x.png><input name=q>").await;
    let found = b.accessibility_violations(&axe).await.join("\n");
    for rule in ["image-alt", "label", "html-has-lang"] {
        assert!(found.contains(rule), "axe-core did not report {rule}: {found}");
    }
    let stop = CancellationToken::new();
    let (cp, cp_url) = control_plane_on_loopback(&stop).await;
    let hooks = meter_sim::receivers::WebhookReceiver::new(SECRET, meter_sim::receivers::FailMode::Never);
    let hook_url = receiver_on_loopback(&hooks, &stop).await;
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://127.0.0.1:{}/hook", l.local_addr().expect("addr").port())
    };
    p.start_api_with(Auth::fixed(credentials())).await;
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let api = p.api_url.clone();
    for (id, url) in [("con-ok", &hook_url), ("con-gone", &gone)] {
        let (s, body) =
            call(reqwest::Method::PUT, &format!("{api}/v1/webhooks/{id}"), Some(json!({"url": url, "secret": SECRET})))
                .await;
        assert_eq!(s, 200, "{body}");
    }

    // A simulated fleet, counted exactly; one project over its plan's
    // quota (suspended), one at ~90% of an override.
    let truth = simulated_fleet(&p, "con").await;
    let mut ids: Vec<(&String, u64)> = truth.projects.iter().map(|(id, t)| (id, t.counters[0])).collect();
    ids.sort_by_key(|(_, active)| std::cmp::Reverse(*active));
    let (over, over_active) = (ids[0].0.clone(), ids[0].1);
    let (near, near_active) = (ids[1].0.clone(), ids[1].1);
    assert!(over_active > 10 && near_active > 10, "the fleet reported too little: {ids:?}");
    let (s, _) = call(
        reqwest::Method::PUT,
        &format!("{api}/v1/plans/con-small"),
        Some(json!({"quota": {"active_time_seconds": over_active / 2}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) =
        call(reqwest::Method::PUT, &format!("{api}/v1/projects/{over}/quota"), Some(json!({"plan": "con-small"})))
            .await;
    assert_eq!(s, 200);
    let near_quota = near_active * 10 / 9;
    let (s, _) = call(
        reqwest::Method::PATCH,
        &format!("{api}/v1/projects/{near}/quota"),
        Some(json!({"quota": {"active_time_seconds": near_quota}})),
    )
    .await;
    assert_eq!(s, 200);
    eventually(Duration::from_secs(30), "the project over quota suspended", || async {
        let (_, st) = call(reqwest::Method::GET, &format!("{api}/v1/projects/{over}/status"), None).await;
        if st["state"] == json!("suspended") {
            Ok(())
        } else {
            Err(st.to_string())
        }
    })
    .await;
    let shots = screenshots();

    // Signing in: a wrong token is refused, the manage token lands on the fleet.
    sign_in(&b, &api, "not-a-token").await;
    assert!(b.source().await.contains("not a valid API token"));
    assert_accessible(&b, &axe).await;
    b.fill("#token", "console-m").await;
    b.click_and_wait("form[action=\"/console/login\"] button").await;
    assert!(b.title().await.starts_with("Fleet"), "{}", b.title().await);

    // Fleet: the suspended project with why, the near one, five charts.
    let main = b.text("main").await;
    assert!(main.contains(&over) && main.contains("over its Active time quota"), "{main}");
    assert!(main.contains(&near), "{main}");
    let near_text = b.text("#near ~ table").await;
    assert!(near_text.contains(&near) && near_text.contains("90%"), "{near_text}");
    b.screenshot(&shots.join("fleet.png")).await;
    assert_accessible(&b, &axe).await;
    assert_eq!(b.find_all("iframe[src=\"/console/fleet/usage\"]").await.len(), 1, "the fleet's charts");
    b.goto(&format!("{api}/console/fleet/usage")).await;
    assert_eq!(b.find_all("figure svg").await.len(), 5, "one fleet chart per metric");
    assert_accessible(&b, &axe).await;
    let fleet_active = truth.projects.values().map(|t| t.counters[0]).sum::<u64>();
    let caption = b.text("figure:nth-child(1) figcaption").await;
    assert!(caption.ends_with(&format!("total {}", grouped(fleet_active))), "{caption:?}, truth {fleet_active}");
    b.goto(&format!("{api}/console")).await;

    // Search, then the project's page, daily: the charts' totals are the
    // simulator's ground truth, exactly.
    b.fill("#id", &over).await;
    b.click_and_wait("form[role=search] button").await;
    assert!(b.url().await.ends_with(&format!("/console/projects/{over}")), "{}", b.url().await);
    b.goto(&format!("{api}/console/projects/{over}?granularity=daily")).await;
    let main = b.text("main").await;
    assert!(main.contains("State: suspended"), "{main}");
    let captions: Vec<String> = {
        let mut v = Vec::new();
        for i in 1..=4 {
            v.push(b.text(&format!(".charts figure:nth-child({i}) figcaption")).await);
        }
        v
    };
    for (i, caption) in captions.iter().enumerate() {
        let want = grouped(truth.projects[&over].counters[i]);
        assert!(caption.ends_with(&format!("total {want}")), "chart {i}: {caption:?}, truth {want}");
    }
    b.screenshot(&shots.join("project.png")).await;
    assert_accessible(&b, &axe).await;

    // Raising the quota in the page: a confirmation, then the API answers
    // the new quota and the enforcer resumes the project.
    let raised = over_active * 2;
    b.fill("#q_active_time_seconds", &raised.to_string()).await;
    b.click_and_wait("form[action$=\"/quota\"] button[type=submit]").await;
    assert!(b.title().await.starts_with("Confirm the quota change"), "{}", b.title().await);
    assert!(b.text("main").await.contains("(changes)"));
    b.screenshot(&shots.join("confirm.png")).await;
    assert_accessible(&b, &axe).await;
    b.click_and_wait("button[name=confirm]").await;
    assert!(b.text("main").await.contains("Quota saved."));
    let (_, q) = call(reqwest::Method::GET, &format!("{api}/v1/projects/{over}/quota"), None).await;
    assert_eq!(q["overrides"]["active_time_seconds"], json!(raised), "{q}");
    assert_eq!(q["plan"], json!("con-small"), "{q}");
    eventually(Duration::from_secs(30), "the project resumed", || async {
        let resumed = cp.calls_of("resume").iter().any(|c| c.project_id == over);
        if resumed {
            Ok(())
        } else {
            Err(format!("{:?}", cp.calls_of("resume")))
        }
    })
    .await;

    // The project's page shows the change just made (by the console's
    // token) and an adjustment made through the API, with who and why.
    let adjustment =
        json!({"metric": "written_data_bytes", "delta": 7, "reason": "console check", "idempotency_key": "con-k"});
    let (s, a) = call(reqwest::Method::POST, &format!("{api}/v1/projects/{over}/adjustments"), Some(adjustment)).await;
    assert_eq!(s, 201, "{a}");
    b.goto(&format!("{api}/console/projects/{over}")).await;
    let changes = b.text("#quota-changes + table").await;
    assert!(changes.contains("ops") && changes.contains(&raised.to_string()), "{changes}");
    let adjustments = b.text("#adjustments + table").await;
    assert!(adjustments.contains("console check") && adjustments.contains("applied"), "{adjustments}");
    assert_accessible(&b, &axe).await;

    // Plans: listed, and editing thresholds writes the plan.
    b.goto(&format!("{api}/console/plans")).await;
    assert!(b.text("main").await.contains("con-small"));
    b.screenshot(&shots.join("plans.png")).await;
    assert_accessible(&b, &axe).await;
    b.goto(&format!("{api}/console/plans/con-small")).await;
    b.fill("#thresholds", "50, 90, 100").await;
    b.click_and_wait("form[action=\"/console/plans/con-small\"] button[type=submit]").await;
    b.click_and_wait("button[name=confirm]").await;
    assert!(b.text("main").await.contains("Plan saved."));
    let (_, plan) = call(reqwest::Method::GET, &format!("{api}/v1/plans/con-small"), None).await;
    assert_eq!(plan["thresholds"], json!([50, 90, 100]), "{plan}");

    // Webhooks: endpoints without secrets, the gone one's dead letters, a
    // test event delivered to the healthy one.
    eventually(Duration::from_secs(30), "dead letters of the gone endpoint", || async {
        b.goto(&format!("{api}/console/webhooks")).await;
        let t = b.text("main").await;
        if t.contains("Replay all dead letters") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;
    let source = b.source().await;
    assert!(source.contains("con-ok") && source.contains("con-gone"));
    assert!(!source.contains(&SECRET[6..]), "a secret is shown");
    b.screenshot(&shots.join("webhooks.png")).await;
    assert_accessible(&b, &axe).await;
    b.click_and_wait("form[action=\"/console/webhooks/con-ok\"] button").await;
    assert!(b.text("main").await.contains("Test event"), "{}", b.text("main").await);
    eventually(Duration::from_secs(30), "the test event delivered and listed", || async {
        b.goto(&format!("{api}/console/webhooks/con-ok")).await;
        let t = b.text("main").await;
        if t.contains("webhook.test") && t.contains("delivered") {
            Ok(())
        } else {
            Err(t)
        }
    })
    .await;
    assert!(hooks
        .accepted()
        .iter()
        .any(|d| d.payload.as_ref().is_some_and(|p| p.kind == meter_core::enforce::AlertType::WebhookTest)));
    b.screenshot(&shots.join("webhook.png")).await;
    assert_accessible(&b, &axe).await;

    // A read token: the same pages, no controls, and the server refuses
    // the form even when posted by hand; a form from another site too.
    let manage_cookie = b.cookie("meter_console").await.expect("signed-in cookie");
    b.click_and_wait("form[action=\"/console/logout\"] button").await;
    sign_in(&b, &api, "console-r").await;
    b.goto(&format!("{api}/console/projects/{over}")).await;
    assert!(b.text("main").await.contains("Read only"));
    assert!(b.find_all("form[action$=\"/quota\"]").await.is_empty(), "a quota form for a read token");
    b.goto(&format!("{api}/console/webhooks")).await;
    assert!(b.find_all("form[method=post] button").await.iter().len() <= 1, "controls for a read token");
    assert!(!b.source().await.contains("Send test"));
    let read_cookie = b.cookie("meter_console").await.expect("signed-in cookie");
    let post = |cookie: String, origin: Option<&'static str>| {
        let url = format!("{api}/console/projects/{over}/quota");
        async move {
            let mut req = reqwest::Client::new()
                .post(url)
                .header("cookie", format!("meter_console={cookie}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("plan=&q_active_time_seconds=1&confirm=yes");
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            req.send().await.expect("api reachable").status().as_u16()
        }
    };
    assert_eq!(post(read_cookie, None).await, 403);
    assert_eq!(post(manage_cookie, Some("https://evil.example")).await, 403);
    let (_, q) = call(reqwest::Method::GET, &format!("{api}/v1/projects/{over}/quota"), None).await;
    assert_eq!(q["overrides"]["active_time_seconds"], json!(raised), "a refused form changed the quota: {q}");
    assert_eq!(q["plan"], json!("con-small"));

    b.quit().await;
    stop.cancel();
    p.shutdown().await;
}
