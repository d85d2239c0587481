//! Neon's API, read by Neon's own schemas: every answer of the `/api/v2`
//! surface validates against Neon's published OpenAPI document
//! (`tests/neon/neon-openapi-v2.json`, cut from it by `tests/neon/extract.py`)
//! for that operation and status, strictly (no property Neon's schema does
//! not name), and equals the simulator's ground truth in every timeframe;
//! and Neon's official TypeScript client (`@neondatabase/api-client` from
//! npm, installed by `deploy/local/neon-client`) pages through it and reads
//! the same numbers.

use meter_core::cycle::{parse_rfc3339, rfc3339, Cycle};
use meter_core::Metric;
use meter_e2e::Pipeline;
use meter_proto::v1::Metric as WireMetric;
use meter_sim::Truth;
use serde_json::{json, Map, Value};

use crate::fleet::simulated_fleet;
use crate::helpers::{api_get as get, api_put, inc, report};
use crate::openapi::strict;

/// Neon's document, and a way to check an answer against it.
struct Neon {
    doc: Value,
    schemas: Value,
}

impl Neon {
    fn load() -> Neon {
        let doc: Value = serde_json::from_str(include_str!("../neon/neon-openapi-v2.json")).expect("Neon's document");
        let schemas = strict(&doc["components"]["schemas"]);
        Neon { doc, schemas }
    }

    /// The schema of `status` (or `default`) of `method path`, with an
    /// `allOf` of objects merged into one closed object.
    fn schema(&self, path: &str, method: &str, status: u16) -> Value {
        let responses = &self.doc["paths"][path][method]["responses"];
        let mut response = responses.get(status.to_string()).unwrap_or(&responses["default"]).clone();
        if let Some(r) = response["$ref"].as_str() {
            response = self.doc["components"]["responses"][r.trim_start_matches("#/components/responses/")].clone();
        }
        let schema = response["content"]["application/json"]["schema"].clone();
        assert!(schema.is_object(), "Neon documents no body for {method} {path} {status}");
        let Some(parts) = schema["allOf"].as_array() else { return schema };
        let (mut properties, mut required) = (Map::new(), Vec::new());
        for part in parts {
            let name = part["$ref"].as_str().expect("allOf of references").trim_start_matches("#/components/schemas/");
            let part = &self.schemas[name];
            properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
            required.extend(part["required"].as_array().cloned().unwrap_or_default());
        }
        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
    }

    /// Asserts `body` is what Neon's document says `method path` answers
    /// with `status`.
    fn check(&self, path: &str, method: &str, status: u16, body: &Value) {
        let mut root = self.schema(path, method, status);
        root["components"] = json!({"schemas": self.schemas});
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(&root)
            .expect("Neon's schema compiles");
        let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{method} {path} {status} does not match Neon's schema: {errors:#?}\n{body}");
    }
}

/// Where `deploy/local/neon-client` installed Neon's client; `None` after a
/// `skip` when it has not.
fn neon_client() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stack/neon-client");
    if dir.join("node_modules/@neondatabase/api-client").is_dir() {
        return Some(dir);
    }
    meter_e2e::skip("Neon's API client is not installed (deploy/local/neon-client)")
}

/// Runs `tests/neon/client/<script>` (Neon's client) against `api`.
async fn with_neons_client(dir: &std::path::Path, script: &str, api: &str, args: &[&str]) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("neon/client").join(script);
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .env("NEON_CLIENT_DIR", dir)
        .env("METER_API", api)
        .output()
        .await
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Neon's client failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("Neon's client printed no JSON ({e}): {stderr}"))
}

/// Checks one scope's periods: each timeframe inside its period's cycle,
/// `period_end` only for ended cycles, and each value equal to `want`.
fn check_periods(periods: &Value, plan: &str, want: &dyn Fn(Metric, i64, i64) -> u64) -> u64 {
    let now = meter_e2e::now_ms();
    let mut frames = 0;
    for period in periods.as_array().expect("periods") {
        assert_eq!(period["period_plan"], plan, "{period}");
        let start = parse_rfc3339(period["period_start"].as_str().expect("period_start")).expect("date-time");
        let cycle = Cycle::containing(start);
        assert_eq!(cycle.start_ms, start, "periods are billing cycles");
        assert_eq!(
            period["period_end"].as_str().and_then(parse_rfc3339),
            (cycle.end_ms <= now).then_some(cycle.end_ms)
        );
        for f in period["consumption"].as_array().expect("consumption") {
            let s = parse_rfc3339(f["timeframe_start"].as_str().expect("start")).expect("date-time");
            let e = parse_rfc3339(f["timeframe_end"].as_str().expect("end")).expect("date-time");
            assert!(cycle.contains(s) && e <= cycle.end_ms, "{f} lies in its period");
            for (field, m) in [
                ("active_time_seconds", Metric::ActiveTimeSeconds),
                ("compute_time_seconds", Metric::ComputeTimeSeconds),
                ("written_data_bytes", Metric::WrittenDataBytes),
                ("synthetic_storage_size_bytes", Metric::LogicalSizeBytes),
            ] {
                assert_eq!(f[field].as_u64(), Some(want(m, s, e)), "{field} in [{}, {}): {f}", rfc3339(s), rfc3339(e));
            }
            for (field, m) in
                [("logical_size_bytes", Metric::LogicalSizeBytes), ("data_transfer_bytes", Metric::DataTransferBytes)]
            {
                if let Some(v) = f.get(field) {
                    assert_eq!(v.as_u64(), Some(want(m, s, e)), "{field}: {f}");
                }
            }
            frames += 1;
        }
    }
    frames
}

/// The projects of every page of `query`, `limit` at a time, checking each
/// page against Neon's schema and `truth`.
async fn all_pages(
    neon: &Neon,
    api: &str,
    query: &str,
    truth: &Truth,
    plans: &dyn Fn(&str) -> &'static str,
) -> Vec<String> {
    let path = "/consumption_history/projects";
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..1000 {
        let (status, body) = get(&format!("{api}/api/v2{path}?{query}{cursor}")).await;
        assert_eq!(status, 200, "{body}");
        neon.check(path, "get", 200, &body);
        let page = body["projects"].as_array().expect("projects");
        for p in page {
            let id = p["project_id"].as_str().expect("project_id").to_owned();
            check_periods(&p["periods"], plans(&id), &|m, s, e| truth.in_timeframe(&id, m, s, e));
            seen.push(id);
        }
        match body["pagination"]["cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => {
                assert!(page.is_empty(), "a page without a cursor is the empty one after the last: {body}");
                return seen;
            }
        }
    }
    panic!("paging did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neon_clients_read_exact_consumption_history() {
    let Some(client) = neon_client() else { return };
    let Some(mut p) = Pipeline::start("neon_api").await else { return };
    p.start_api().await;
    let api = p.api_url.clone();
    let neon = Neon::load();
    let prefix = "neon";
    let truth = simulated_fleet(&p, prefix).await;
    let ids: Vec<String> = truth.projects.keys().cloned().collect();
    let (s, b) = api_put(&format!("{api}/v1/plans/scale"), json!({"quota": {}})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api_put(&format!("{api}/v1/projects/{}/quota", ids[0]), json!({"plan": "scale"})).await;
    assert_eq!(s, 200, "{b}");
    let first = ids[0].clone();
    let plans = move |id: &str| if id == first { "scale" } else { "none" };
    let now = meter_runtime::now_ms();
    let (from, to) = (rfc3339(now - 4 * 86_400_000), rfc3339(now + 3_600_000));

    // Every granularity, all projects on one page: exact, and Neon's shape.
    for g in ["hourly", "daily", "monthly"] {
        let from = if g == "hourly" { rfc3339(now - 160 * 3_600_000) } else { from.clone() };
        let seen =
            all_pages(&neon, &api, &format!("from={from}&to={to}&granularity={g}&limit=100"), &truth, &plans).await;
        assert_eq!(seen, ids, "{g}: every project once, in id order");
    }
    // Paging one project at a time visits every project once.
    let q = format!("from={from}&to={to}&granularity=daily&limit=1");
    assert_eq!(all_pages(&neon, &api, &q, &truth, &plans).await, ids);

    // project_ids repeated, comma-separated or mixed: the same answer.
    let base = format!("{api}/api/v2/consumption_history/projects?from={from}&to={to}&granularity=daily");
    let (a, b, c) = (&ids[3], &ids[1], &ids[2]);
    let mut answers = Vec::new();
    for url in [
        format!("{base}&project_ids={a},{b},{c}"),
        format!("{base}&project_ids={a}&project_ids={b}&project_ids={c}"),
        format!("{base}&project_ids={a},{b}&project_ids={c}"),
    ] {
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        neon.check("/consumption_history/projects", "get", 200, &body);
        let got: Vec<&str> =
            body["projects"].as_array().expect("projects").iter().filter_map(|p| p["project_id"].as_str()).collect();
        assert_eq!(got, [b.as_str(), c.as_str(), a.as_str()], "{url}");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "every form answers the same");

    // Storage and transfer on request (transfer is ours: not in Neon's schema).
    let (status, mut body) =
        get(&format!("{base}&project_ids={a}&metrics=logical_size_bytes,data_transfer_bytes")).await;
    assert_eq!(status, 200, "{body}");
    let frames = check_periods(&body["projects"][0]["periods"], plans(a), &|m, s, e| truth.in_timeframe(a, m, s, e));
    assert!(frames >= 5, "{body}");
    for period in body["projects"][0]["periods"].as_array_mut().expect("periods") {
        for f in period["consumption"].as_array_mut().expect("frames") {
            assert!(f.get("logical_size_bytes").is_some() && f.get("data_transfer_bytes").is_some(), "{f}");
            f.as_object_mut().expect("object").remove("data_transfer_bytes");
        }
    }
    neon.check("/consumption_history/projects", "get", 200, &body);

    // The account: the sum over projects, timeframe by timeframe.
    let path = "/consumption_history/account";
    let (status, body) =
        get(&format!("{api}/api/v2{path}?from={}&to={to}&granularity=hourly", rfc3339(now - 100 * 3_600_000))).await;
    assert_eq!(status, 200, "{body}");
    neon.check(path, "get", 200, &body);
    let sum = |m: Metric, s: i64, e: i64| ids.iter().map(|id| truth.in_timeframe(id, m, s, e)).sum::<u64>();
    assert!(check_periods(&body["periods"], "none", &sum) >= 100);

    // Errors: Neon's flat GeneralError with the request id, and Neon's statuses.
    let week_and_more = format!("from={}&to={to}&granularity=hourly", rfc3339(now - 200 * 3_600_000));
    for (url, status, text) in [
        (format!("{api}/api/v2/consumption_history/projects?{week_and_more}"), 406, "168"),
        (format!("{base}&metrics=cpu_seconds"), 400, "metrics: unknown metric"),
        (format!("{base}&metrics=data_storage_bytes_hour"), 400, "byte-hours"),
        (format!("{base}&limit=101"), 400, "limit"),
        (format!("{base}&cursor=zz"), 400, "cursor"),
        (format!("{base}&granularity=daily"), 400, "granularity: given more than once"),
        (format!("{api}/api/v2/consumption_history/projects?from={from}&to={to}"), 400, "granularity"),
    ] {
        let r = reqwest::Client::new().get(&url).header("x-request-id", "neon-req-1").send().await.expect("api");
        assert_eq!(r.status().as_u16(), status, "{url}");
        let body: Value = r.json().await.expect("json");
        neon.check("/consumption_history/projects", "get", status, &body);
        assert_eq!(body["request_id"], "neon-req-1", "{body}");
        assert!(body["message"].as_str().unwrap_or_default().contains(text), "{url}: {body}");
    }

    // Neon's own client: every page (3 projects each), a project_ids array
    // (its serializer sends `a,b`), and the account, all exact.
    let named = format!("{a},{b}");
    let read = with_neons_client(&client, "read-history.cjs", &api, &[&from, &to, "daily", "3", &named]).await;
    let pages = read["pages"].as_u64().expect("pages");
    assert_eq!(pages, (ids.len() as u64).div_ceil(3) + 1, "full pages, then the empty one: {read}");
    let got: Vec<&String> = read["projects"].as_object().expect("projects").keys().collect();
    assert_eq!(got, ids.iter().collect::<Vec<_>>(), "every project once");
    for id in &ids {
        check_periods(&read["projects"][id], plans(id), &|m, s, e| truth.in_timeframe(id, m, s, e));
    }
    let named: Vec<&str> =
        read["named"]["projects"].as_array().expect("named").iter().filter_map(|p| p["project_id"].as_str()).collect();
    assert_eq!(named, [b.as_str(), a.as_str()]);
    check_periods(&read["account"]["periods"], "none", &sum);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neon_clients_read_projects_and_patch_their_quota() {
    let Some(client) = neon_client() else { return };
    let Some(mut p) = Pipeline::start("neon_project").await else { return };
    p.start_api().await;
    let api = p.api_url.clone();
    let neon = Neon::load();
    let (s, b) = api_put(
        &format!("{api}/v1/plans/launch"),
        json!({"quota": {"written_data_bytes": 1000, "active_time_seconds": 3600}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api_put(&format!("{api}/v1/projects/np-1/quota"), json!({"plan": "launch"})).await;
    assert_eq!(s, 200, "{b}");
    let events = vec![inc("np-1", WireMetric::WrittenDataBytes, 400), inc("np-1", WireMetric::ComputeTimeSeconds, 30)];
    p.client().await.report(report("np-src", 1, events)).await.expect("report accepted");
    let path = "/projects/{project_id}";
    let url = format!("{api}/api/v2/projects/np-1");
    let body = meter_e2e::eventually(std::time::Duration::from_secs(30), "the project shows its usage", || async {
        let (status, body) = get(&url).await;
        (status == 200 && body["project"]["written_data_bytes"] == 400).then_some(body.clone()).ok_or(body.to_string())
    })
    .await;
    neon.check(path, "get", 200, &body);
    let project = &body["project"];
    let cycle = Cycle::containing(meter_e2e::now_ms());
    assert_eq!((project["compute_time_seconds"].as_u64(), project["cpu_used_sec"].as_u64()), (Some(30), Some(30)));
    assert_eq!(project["consumption_period_start"].as_str().and_then(parse_rfc3339), Some(cycle.start_ms));
    assert_eq!(project["quota_reset_at"].as_str().and_then(parse_rfc3339), Some(cycle.end_ms));
    assert_eq!(project["settings"]["quota"], json!({"written_data_bytes": 1000, "active_time_seconds": 3600}));

    // PATCH merges: a limit sent replaces the project's, the rest (and the plan) stay.
    let patch = |quota: Value| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .patch(&url)
                .json(&json!({"project": {"settings": {"quota": quota}}}))
                .send()
                .await;
            let r = r.expect("api");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (s, b) = patch(json!({"written_data_bytes": 5000})).await;
    assert_eq!(s, 200, "{b}");
    neon.check(path, "patch", 200, &b);
    assert_eq!(b["project"]["settings"]["quota"], json!({"written_data_bytes": 5000, "active_time_seconds": 3600}));
    let (_, b) = patch(json!({"compute_time_seconds": 100, "active_time_seconds": 0})).await;
    assert_eq!(
        b["project"]["settings"]["quota"],
        json!({"written_data_bytes": 5000, "compute_time_seconds": 100}),
        "0 lifts a limit"
    );
    let (_, v1) = crate::helpers::api_get(&format!("{api}/v1/projects/np-1/quota")).await;
    assert_eq!(v1["plan"], "launch", "{v1}");
    assert_eq!(
        v1["overrides"],
        json!({"written_data_bytes": 5000, "compute_time_seconds": 100, "active_time_seconds": 0})
    );

    // What it does not manage is refused by name, in Neon's error shape.
    let r =
        reqwest::Client::new().patch(&url).json(&json!({"project": {"name": "renamed"}})).send().await.expect("api");
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.expect("json");
    neon.check(path, "patch", 400, &b);
    assert!(b["message"].as_str().unwrap_or_default().contains("unknown field `name`"), "{b}");
    let (s, b) = get(&format!("{api}/api/v2/projects/never-seen")).await;
    assert_eq!(s, 404, "{b}");
    neon.check(path, "get", 404, &b);

    // Neon's own client: getProject, then updateProject merging one limit.
    let read = with_neons_client(&client, "project.cjs", &api, &["np-1", r#"{"data_transfer_bytes": 777}"#]).await;
    assert_eq!(read["before"]["project"]["written_data_bytes"], 400, "{read}");
    assert_eq!(
        read["after"]["project"]["settings"]["quota"],
        json!({"written_data_bytes": 5000, "compute_time_seconds": 100, "data_transfer_bytes": 777}),
        "{read}"
    );
    p.shutdown().await;
}
