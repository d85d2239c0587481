//! The API contract: every response the OpenAPI document describes is
//! produced by the real api role on the real stack, and each body is
//! validated against the document's schema for that path, method and status
//! (strictly: an object may carry no property the document does not name).
//! A status the document does not list for an operation fails the test, and
//! so does a documented one the test never saw.

use std::collections::BTreeSet;
use std::time::Duration;

use meter_core::auth::TokenHash;
use meter_core::enforce::{AlertType, EnforcementState, Suspension};
use meter_core::Metric as CoreMetric;
use meter_e2e::{eventually, Pipeline};
use meter_enforcer::{DeadLetter, WebhookJob};
use meter_proto::v1::Metric;
use meter_runtime::Auth;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Map, Value};

use crate::helpers::{await_usage, inc, report, SECRET};

/// Calls the api and checks each answer against the document.
struct Contract {
    doc: Value,
    /// `components.schemas`, made strict (see `strict`).
    schemas: Value,
    http: reqwest::Client,
    base: String,
    token: Option<&'static str>,
    /// (method, path template, status) answered so far.
    seen: BTreeSet<(String, String, String)>,
}

impl Contract {
    fn new(doc: Value) -> Contract {
        let schemas = strict(&doc["components"]["schemas"]);
        Contract { doc, schemas, http: reqwest::Client::new(), base: String::new(), token: None, seen: BTreeSet::new() }
    }

    /// Every (method, path, status) the document lists.
    fn documented(&self) -> BTreeSet<(String, String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                for status in op["responses"].as_object().expect("responses").keys() {
                    all.insert((method.clone(), path.clone(), status.clone()));
                }
            }
        }
        all
    }

    /// `method` on `template` with its `{...}` parts replaced by `args` in
    /// order, plus `query`; asserts the answer is `want` and matches the
    /// document. Returns the body.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        args: &[&str],
        query: &str,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let mut path = template.to_owned();
        for a in args {
            let (open, close) = (path.find('{').expect("a {param}"), path.find('}').expect("a {param}"));
            path.replace_range(open..=close, a);
        }
        let url = format!("{}{path}{}{query}", self.base, if query.is_empty() { "" } else { "?" });
        let mut req = self.http.request(method.to_uppercase().parse().expect("method"), &url);
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("api reachable");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert_eq!(status, want, "{method} {url}: {text}");
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"));
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not in the document");
        let documented = &op["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {template} answered {status}, which the document does not list: {text}"
        );
        if let Some(schema) = documented["content"]["application/json"]["schema"].as_object() {
            let mut root = Value::Object(schema.clone());
            root["components"] = json!({"schemas": self.schemas});
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&root)
                .expect("the document's schema compiles");
            let errors: Vec<String> =
                validator.iter_errors(&answer).map(|e| format!("{} at {}", e, e.instance_path)).collect();
            assert!(errors.is_empty(), "{method} {template} {status} does not match the document: {errors:#?}\n{text}");
        }
        self.seen.insert((method.to_owned(), template.to_owned(), status.to_string()));
        answer
    }
}

/// The schemas with every `allOf` of objects merged into one object, and
/// every object with properties closed (`additionalProperties: false`), so
/// a property the handlers add but the document lacks fails validation.
pub(crate) fn strict(schemas: &Value) -> Value {
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
            None => v.clone(),
        }
    };
    fn close(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                    o.insert("additionalProperties".into(), json!(false));
                }
                o.values_mut().for_each(close);
            }
            Value::Array(a) => a.iter_mut().for_each(close),
            _ => {}
        }
    }
    let mut out = Map::new();
    for (name, schema) in schemas.as_object().expect("schemas") {
        let mut s = schema.clone();
        if let Some(parts) = schema["allOf"].as_array() {
            let (mut properties, mut required) = (Map::new(), Vec::new());
            for part in parts.iter().map(resolve) {
                assert_eq!(part["type"], "object", "{name}: allOf of a non-object");
                properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
                required.extend(part["required"].as_array().cloned().unwrap_or_default());
            }
            s = json!({"type": "object", "properties": properties, "required": required});
        }
        close(&mut s);
        out.insert(name.clone(), s);
    }
    Value::Object(out)
}

async fn produce(p: &Pipeline, topic: &str, key: &str, value: Value) {
    let producer: FutureProducer = p.kafka.client_config().create().expect("producer");
    let bytes = serde_json::to_vec(&value).expect("serializes");
    producer
        .send(FutureRecord::to(topic).key(key).payload(&bytes), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("record written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_response_is_what_the_api_returns() {
    let Some(mut p) = Pipeline::start("openapi").await else { return };
    p.start_api().await;
    let doc: Value =
        reqwest::get(format!("{}/v1/openapi.json", p.api_url)).await.expect("doc").json().await.expect("json");
    let mut c = Contract::new(doc);
    c.base = p.api_url.clone();
    let now = meter_e2e::now_ms();

    // Plans and quotas.
    let plan = json!({"quota": {"written_data_bytes": 10_000, "active_time_seconds": 3600}, "thresholds": [50, 100]});
    c.call("put", "/v1/plans/{name}", &["oa-plan"], "", Some(plan), 200).await;
    c.call("put", "/v1/plans/{name}", &["oa-bad"], "", Some(json!({"thresholds": [0]})), 400).await;
    c.call("get", "/v1/plans/{name}", &["oa-plan"], "", None, 200).await;
    c.call("get", "/v1/plans/{name}", &["oa-none"], "", None, 404).await;
    let plans = c.call("get", "/v1/plans", &[], "", None, 200).await;
    assert_eq!(plans["plans"][0]["name"], "oa-plan", "{plans}");
    let quota = json!({"plan": "oa-plan", "quota": {"written_data_bytes": 1000}});
    c.call("put", "/v1/projects/{id}/quota", &["oa-p1"], "", Some(quota), 200).await;
    c.call("put", "/v1/projects/{id}/quota", &["oa-p1"], "", Some(json!({"plan": "nope"})), 400).await;
    let merged = c
        .call(
            "patch",
            "/v1/projects/{id}/quota",
            &["oa-p1"],
            "",
            Some(json!({"quota": {"active_time_seconds": 7200}})),
            200,
        )
        .await;
    assert_eq!(merged["overrides"], json!({"written_data_bytes": 1000, "active_time_seconds": 7200}), "{merged}");
    c.call(
        "patch",
        "/v1/projects/{id}/quota",
        &["oa-p1"],
        "",
        Some(json!({"quota": {"active_time_seconds": null}})),
        200,
    )
    .await;
    c.call("patch", "/v1/projects/{id}/quota", &["oa-p1"], "", Some(json!({"plan": 5})), 400).await;

    // Usage over one quota, as ingest and the aggregator count it.
    let events = vec![inc("oa-p1", Metric::WrittenDataBytes, 2500), inc("oa-p1", Metric::ActiveTimeSeconds, 60)];
    p.client().await.report(report("oa-src", 1, events)).await.expect("report accepted");
    await_usage(&p.store, "oa-p1", |u| u.written_data_bytes, 2500, "oa-p1's usage in ClickHouse").await;
    eventually(Duration::from_secs(30), "the api sees oa-p1's usage", || async {
        let r = reqwest::get(format!("{}/v1/projects/oa-p1/status", p.api_url)).await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        (v["usage"]["written_data_bytes"] == 2500).then_some(()).ok_or(v.to_string())
    })
    .await;

    // A suspension and a dead letter, as the enforcer records them.
    let mut state = EnforcementState::new("oa-p2", meter_core::cycle::Cycle::containing(now).start_ms);
    state.suspended = Some(Suspension {
        metric: CoreMetric::WrittenDataBytes,
        usage: 5000,
        quota: 1000,
        since_ms: now,
        key: "oa-p2/1".into(),
    });
    state.fired.push(meter_core::enforce::Fired {
        metric: CoreMetric::WrittenDataBytes,
        threshold: 100,
        quota: 1000,
        cycle_start_ms: state.cycle_start_ms,
        branch: None,
    });
    produce(&p, &p.kafka.enforcement_topic, "oa-p2", json!(state)).await;
    let alert = meter_core::enforce::Alert {
        id: "oa-alert-1".into(),
        kind: AlertType::ProjectSuspended,
        project_id: "oa-p2".into(),
        branch_id: None,
        metric: Some(CoreMetric::WrittenDataBytes),
        threshold: None,
        usage: 5000,
        quota: Some(1000),
        cycle_start_ms: state.cycle_start_ms,
        cycle_end_ms: meter_core::cycle::Cycle::containing(now).end_ms,
        occurred_ms: now,
        reason: Some("quota_exceeded".into()),
    };
    let dead = DeadLetter {
        job: WebhookJob { alert, only_endpoint: None },
        endpoint_id: "oa-hook".into(),
        attempts: 8,
        last_error: "connection refused".into(),
        failed_ms: now,
    };
    produce(&p, &p.kafka.dead_letters_topic, &dead.key(), json!(dead)).await;
    eventually(Duration::from_secs(30), "the api sees oa-p2's suspension", || async {
        let r = reqwest::get(format!("{}/v1/projects/oa-p2/status", p.api_url)).await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        (v["state"] == "suspended").then_some(()).ok_or(v.to_string())
    })
    .await;

    for id in ["oa-p1", "oa-p2"] {
        c.call("get", "/v1/projects/{id}/quota", &[id], "", None, 200).await;
        c.call("get", "/v1/projects/{id}/status", &[id], "", None, 200).await;
        let check = c.call("get", "/v1/projects/{id}/check", &[id], "", None, 200).await;
        assert_eq!(check["allowed"], false, "{id}: {check}");
    }
    c.call("get", "/v1/projects/{id}/check", &["oa-unknown"], "", None, 404).await;
    for (template, bad) in [
        ("/v1/projects/{id}/quota", "bad%20id"),
        ("/v1/projects/{id}/status", "bad%20id"),
        ("/v1/projects/{id}/check", "bad%20id"),
    ] {
        c.call("get", template, &[bad], "", None, 400).await;
    }
    c.call("get", "/v1/projects/{id}/quota", &["oa-unknown"], "", None, 404).await;
    c.call("get", "/v1/projects/{id}/status", &["oa-unknown"], "", None, 404).await;
    let listed = c.call("get", "/v1/projects", &[], "min_percent=10", None, 200).await;
    assert_eq!(listed["projects"][0]["project_id"], "oa-p1", "{listed}");
    c.call("get", "/v1/projects", &[], "state=sleeping", None, 400).await;
    c.call("get", "/v1/projects", &[], "limit=1&limit=2", None, 400).await;

    // Webhooks and dead letters.
    let hook = json!({"url": "http://127.0.0.1:9/hook", "secret": SECRET, "event_types": ["project.suspended"]});
    c.call("put", "/v1/webhooks/{id}", &["oa-hook"], "", Some(hook), 200).await;
    c.call(
        "put",
        "/v1/webhooks/{id}",
        &["oa-hook"],
        "",
        Some(json!({"url": "http://127.0.0.1:9/", "secret": "x"})),
        400,
    )
    .await;
    c.call("get", "/v1/webhooks", &[], "", None, 200).await;
    let spare = json!({"url": "http://127.0.0.1:9/spare", "secret": SECRET});
    c.call("put", "/v1/webhooks/{id}", &["oa-spare"], "", Some(spare), 200).await;
    c.call("patch", "/v1/webhooks/{id}", &["oa-spare"], "", Some(json!({"disabled": true})), 200).await;
    c.call("patch", "/v1/webhooks/{id}", &["oa-spare"], "", Some(json!({"secret": "nope"})), 400).await;
    c.call("patch", "/v1/webhooks/{id}", &["oa-none"], "", Some(json!({})), 404).await;
    c.call("delete", "/v1/webhooks/{id}", &["oa-spare"], "", None, 200).await;
    c.call("delete", "/v1/webhooks/{id}", &["oa-spare"], "", None, 404).await;
    // Deliveries, from a dispatcher failing to reach oa-hook's receiver.
    p.start_enforcer(crate::helpers::fast_enforcer("http://127.0.0.1:9")).await;
    c.call("post", "/v1/webhooks/{id}/test", &["oa-hook"], "", None, 202).await;
    c.call("post", "/v1/webhooks/{id}/test", &["oa-none"], "", None, 404).await;
    let deliveries = "/v1/webhooks/{id}/deliveries";
    let url = format!("{}/v1/webhooks/oa-hook/deliveries", p.api_url);
    let first = eventually(Duration::from_secs(30), "a delivery with an attempt", || async {
        let v: Value = reqwest::get(&url).await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        let d =
            v["deliveries"].as_array().and_then(|a| a.iter().find(|d| d["attempt_count"].as_u64() > Some(0)).cloned());
        d.ok_or(v.to_string())
    })
    .await;
    let listed = c.call("get", deliveries, &["oa-hook"], "limit=1", None, 200).await;
    assert_eq!(listed["deliveries"].as_array().map(Vec::len), Some(1), "{listed}");
    c.call("get", deliveries, &["oa-hook"], "event_type=webhook.test&state=pending", None, 200).await;
    c.call("get", deliveries, &["oa-hook"], "state=lost", None, 400).await;
    c.call("get", deliveries, &["oa-none"], "", None, 404).await;
    let resend = "/v1/webhooks/{id}/deliveries/{delivery_id}/resend";
    let id = first["id"].as_str().expect("delivery id").to_owned();
    c.call("post", resend, &["oa-hook", &id], "", None, 202).await;
    c.call("post", resend, &["oa-hook", "nope"], "", None, 404).await;
    p.stop_enforcer().await;
    let listed = c.call("get", "/v1/webhooks/dead-letters", &[], "", None, 200).await;
    assert_eq!(listed["dead_letters"][0]["key"], dead.key(), "{listed}");
    let replay = "/v1/webhooks/dead-letters/replay";
    c.call("post", replay, &[], "", Some(json!({"keys": ["oa-none"]})), 404).await;
    c.call("post", replay, &[], "", Some(json!({"all": true})), 400).await;
    let replayed = c.call("post", replay, &[], "", Some(json!({"keys": [dead.key()]})), 200).await;
    assert_eq!(replayed["replayed"], 1);

    // History.
    let range = format!(
        "from={}&to={}&granularity=hourly",
        meter_core::cycle::rfc3339(now - 3_600_000),
        meter_core::cycle::rfc3339(now + 3_600_000)
    );
    let one = c.call("get", "/v1/projects/{id}/consumption_history", &["oa-p1"], &range, None, 200).await;
    let total: u64 = one["consumption"]
        .as_array()
        .expect("timeframes")
        .iter()
        .map(|t| t["written_data_bytes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 2500, "{one}");
    c.call("get", "/v1/projects/{id}/consumption_history", &["oa-p1"], "granularity=hourly", None, 400).await;
    c.call(
        "get",
        "/v1/consumption_history/projects",
        &[],
        &format!("{range}&limit=1&metrics=written_data_bytes"),
        None,
        200,
    )
    .await;
    c.call("get", "/v1/consumption_history/projects", &[], &format!("{range}&limit=0"), None, 400).await;
    c.call("get", "/v1/consumption_history/fleet", &[], &range, None, 200).await;
    c.call("get", "/v1/consumption_history/fleet", &[], "from=yesterday", None, 400).await;
    c.call("get", "/v1/watermark", &[], "", None, 200).await;
    c.call("get", "/v1/openapi.json", &[], "", None, 200).await;

    // Adjustments, and the trail of quota and plan changes.
    let adjust = "/v1/projects/{id}/adjustments";
    let adjustment = |delta: i64, key: &str| json!({"metric": "written_data_bytes", "delta": delta, "reason": "double-counted", "idempotency_key": key});
    let applied = c.call("post", adjust, &["oa-p1"], "", Some(adjustment(-500, "oa-k1")), 201).await;
    assert_eq!(applied["counter_after"], 2000, "{applied}");
    c.call("post", adjust, &["oa-p1"], "", Some(adjustment(-500, "oa-k1")), 200).await;
    c.call("post", adjust, &["oa-p1"], "", Some(adjustment(-400, "oa-k1")), 409).await;
    c.call("post", adjust, &["oa-p1"], "", Some(adjustment(-99_999, "oa-k2")), 422).await;
    c.call("post", adjust, &["oa-p1"], "", Some(json!({"metric": "cpu", "delta": 1})), 400).await;
    c.call("post", adjust, &["oa-unknown"], "", Some(adjustment(5, "oa-k3")), 404).await;
    let listed = c.call("get", adjust, &["oa-p1"], "", None, 200).await;
    assert_eq!(listed["adjustments"][0]["idempotency_key"], "oa-k1", "{listed}");
    c.call("get", adjust, &["oa-p1"], "cycle=2026-13", None, 400).await;
    let trail = c.call("get", "/v1/projects/{id}/quota/history", &["oa-p1"], "", None, 200).await;
    assert!(!trail["changes"].as_array().expect("changes").is_empty(), "{trail}");
    c.call("get", "/v1/projects/{id}/quota/history", &["bad%20id"], "", None, 400).await;
    c.call("get", "/v1/plans/{name}/history", &["oa-plan"], "", None, 200).await;
    c.call("get", "/v1/plans/{name}/history", &["oa-none"], "", None, 404).await;
    // With the aggregator stopped, an adjustment is written and not yet judged.
    p.stop_aggregator().await;
    let pending = c.call("post", adjust, &["oa-p1"], "", Some(adjustment(5, "oa-k4")), 202).await;
    assert_eq!(pending["status"], "pending", "{pending}");
    p.start_aggregator();

    // Neon's surface, documented in the same document.
    let neon_projects = "/api/v2/consumption_history/projects";
    let page = c.call("get", neon_projects, &[], &format!("{range}&project_ids=oa-p1&limit=1"), None, 200).await;
    assert_eq!(page["projects"][0]["project_id"], "oa-p1", "{page}");
    c.call("get", neon_projects, &[], "granularity=hourly", None, 400).await;
    let too_long = format!(
        "from={}&to={}&granularity=hourly",
        meter_core::cycle::rfc3339(now - 200 * 3_600_000),
        meter_core::cycle::rfc3339(now)
    );
    c.call("get", neon_projects, &[], &too_long, None, 406).await;
    let account = "/api/v2/consumption_history/account";
    c.call("get", account, &[], &format!("{range}&metrics=logical_size_bytes_hour"), None, 200).await;
    c.call("get", account, &[], "from=yesterday", None, 400).await;
    c.call("get", account, &[], &too_long, None, 406).await;
    let neon_project = "/api/v2/projects/{project_id}";
    c.call("get", neon_project, &["oa-p1"], "", None, 200).await;
    c.call("get", neon_project, &["bad%20id"], "", None, 400).await;
    c.call("get", neon_project, &["oa-unknown"], "", None, 404).await;
    let quota = json!({"project": {"settings": {"quota": {"active_time_seconds": 3600}}}});
    let patched = c.call("patch", neon_project, &["oa-p3"], "", Some(quota), 200).await;
    assert_eq!(patched["project"]["settings"]["quota"]["active_time_seconds"], 3600, "{patched}");
    c.call("patch", neon_project, &["oa-p3"], "", Some(json!({"project": {"name": "x"}})), 400).await;

    // Billing cycles: this month is not final; last month is once the api's clock is past the
    // late-event horizon (the probes it writes then reach ClickHouse).
    let this = meter_core::Cycle::containing(now);
    let last = meter_core::adjust::cycle_name(meter_core::Cycle::containing(this.start_ms - 1));
    let this = meter_core::adjust::cycle_name(this);
    c.call("get", "/v1/cycles/{cycle}", &[&this], "", None, 200).await;
    c.call("get", "/v1/cycles/{cycle}", &["2026-13"], "", None, 400).await;
    c.call("post", "/v1/cycles/{cycle}/close", &[&this], "", None, 409).await;
    c.call("post", "/v1/cycles/{cycle}/close", &["26-1"], "", None, 400).await;
    p.clock.jump_to(now + 8 * 86_400_000);
    let url = format!("{}/v1/cycles/{last}", p.api_url);
    eventually(Duration::from_secs(30), "last month final", || async {
        let v: Value = reqwest::get(&url).await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        (v["final"] == true).then_some(()).ok_or(v.to_string())
    })
    .await;
    c.call("post", "/v1/cycles/{cycle}/close", &[&last], "", None, 201).await;
    c.call("post", "/v1/cycles/{cycle}/close", &[&last], "", None, 200).await;

    // Without a token, or with one that may only read.
    p.stop_api().await;
    let credentials: meter_core::auth::Credentials = serde_json::from_value(json!({"api": [
        {"name": "reader", "sha256": TokenHash::of("oa-read").to_hex(), "scopes": ["read"]},
    ]}))
    .expect("credentials");
    p.start_api_with(Auth::fixed(credentials)).await;
    c.base = p.api_url.clone();
    for (method, template, status) in c.documented() {
        let args: Vec<&str> = template.matches('{').map(|_| "oa-p1").collect();
        let body = (method != "get").then(|| json!({}));
        match status.as_str() {
            "401" => {
                c.token = None;
                c.call(&method, &template, &args, "", body, 401).await;
            }
            "403" => {
                c.token = Some("oa-read");
                c.call(&method, &template, &args, "", body, 403).await;
            }
            _ => {}
        }
    }
    c.token = None;

    // ClickHouse not answering: the history answers 503.
    p.stop_api().await;
    let store = p.store_cfg.clone();
    p.store_cfg.url = "http://127.0.0.1:1".into();
    p.start_api().await;
    p.store_cfg = store;
    c.base = p.api_url.clone();
    c.call("get", "/v1/projects/{id}/consumption_history", &["oa-p1"], &range, None, 503).await;
    c.call("get", "/v1/consumption_history/projects", &[], &range, None, 503).await;
    c.call("get", "/v1/consumption_history/fleet", &[], &range, None, 503).await;
    c.call("get", "/api/v2/consumption_history/projects", &[], &range, None, 503).await;
    c.call("get", "/api/v2/consumption_history/account", &[], &range, None, 503).await;

    let missing: Vec<_> = c.documented().difference(&c.seen).cloned().collect();
    assert!(missing.is_empty(), "documented answers the test never saw: {missing:?}");
    p.shutdown().await;
}
